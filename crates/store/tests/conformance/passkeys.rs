//! The passkey store's part of the conformance suite: registration rules, the signature counter,
//! and single-use, bounded ceremonies, each under a burst of concurrent calls.

use std::sync::Arc;

use latchkey_core::Store;
use latchkey_core::passkey::store::*;
use latchkey_core::store::Snapshot;
use latchkey_proto::TokenHash;

use super::user;

pub fn passkey(cred_id: &str, user_id: &str, at: i64) -> PasskeyRecord {
    PasskeyRecord {
        cred_id: cred_id.to_owned(),
        user_id: user_id.to_owned(),
        user_handle: "0b3c4e2a-1d2f-4c5b-9a8e-7f6d5c4b3a29".to_owned(),
        name: format!("key {cred_id}"),
        credential: format!("{{\"cred\":\"{cred_id}\"}}"),
        sign_count: 0,
        backup_eligible: true,
        backup_state: false,
        created_at: at,
        last_used_at: None,
    }
}

fn used(count: u32, at: i64) -> PasskeyUse {
    PasskeyUse {
        sign_count: count,
        backup_eligible: true,
        backup_state: true,
        credential: format!("{{\"count\":{count}}}"),
        at,
    }
}

fn ceremony(id: &str, source: &str, expires_at: i64) -> CeremonyRecord {
    CeremonyRecord {
        id: TokenHash::of(id),
        data: format!("{{\"id\":\"{id}\"}}"),
        source: source.to_owned(),
        expires_at,
    }
}

/// Alice (id `user-alice`) and Bob exist; passkeys belong to users.
async fn with_users(s: &Arc<dyn Store>) -> (String, String) {
    let (a, b) = (user("alice"), user("bob"));
    s.insert_user(&a).await.unwrap();
    s.insert_user(&b).await.unwrap();
    (a.id, b.id)
}

pub async fn passkeys_are_registered_once_listed_renamed_and_removed(s: Arc<dyn Store>) {
    let (alice, bob) = with_users(&s).await;
    assert_eq!(s.insert_passkey(&passkey("k1", &alice, 10), 3).await.unwrap(), PasskeyAdded::Added);
    assert_eq!(s.insert_passkey(&passkey("k2", &alice, 5), 3).await.unwrap(), PasskeyAdded::Added);
    // WebAuthn §7.1 step 22: a credential id registered to one account is refused for any other.
    assert_eq!(s.insert_passkey(&passkey("k1", &bob, 11), 3).await.unwrap(), PasskeyAdded::Duplicate);
    assert_eq!(s.insert_passkey(&passkey("k1", &alice, 11), 3).await.unwrap(), PasskeyAdded::Duplicate);
    assert_eq!(s.insert_passkey(&passkey("k3", &alice, 12), 3).await.unwrap(), PasskeyAdded::Added);
    assert_eq!(s.insert_passkey(&passkey("k4", &alice, 13), 3).await.unwrap(), PasskeyAdded::TooMany);
    let list = s.user_passkeys(&alice).await.unwrap();
    assert_eq!(list.iter().map(|p| p.cred_id.as_str()).collect::<Vec<_>>(), ["k2", "k1", "k3"], "oldest first");
    assert_eq!(list[1], passkey("k1", &alice, 10), "every field round-trips");
    assert!(s.user_passkeys(&bob).await.unwrap().is_empty());

    assert!(s.rename_passkey(&alice, "k1", "Work laptop").await.unwrap());
    assert_eq!(s.passkey("k1").await.unwrap().unwrap().name, "Work laptop");
    assert!(!s.rename_passkey(&bob, "k1", "mine now").await.unwrap(), "only its owner renames a passkey");
    assert!(!s.remove_passkey(&bob, "k1").await.unwrap(), "only its owner removes a passkey");
    assert!(s.remove_passkey(&alice, "k1").await.unwrap());
    assert!(s.passkey("k1").await.unwrap().is_none());
    assert!(!s.remove_passkey(&alice, "k1").await.unwrap());
    assert_eq!(s.remove_user_passkeys(&alice).await.unwrap(), 2);
    assert_eq!(s.insert_passkey(&passkey("k5", &alice, 14), 3).await.unwrap(), PasskeyAdded::Added);
    // A user's passkeys go with the user.
    assert!(s.remove_user("alice", 20).await.unwrap().is_some());
    assert!(s.passkey("k5").await.unwrap().is_none());
    assert_eq!(s.table_counts().await.unwrap().passkeys, 0);
}

pub async fn a_users_passkey_limit_holds_under_a_burst(s: Arc<dyn Store>) {
    let (alice, _) = with_users(&s).await;
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let (s, alice) = (s.clone(), alice.clone());
            tokio::spawn(async move { s.insert_passkey(&passkey(&format!("b{i}"), &alice, i), 5).await.unwrap() })
        })
        .collect();
    let mut added = 0;
    for t in tasks {
        if t.await.unwrap() == PasskeyAdded::Added {
            added += 1;
        }
    }
    assert_eq!(added, 5, "never more than the limit, however many register at once");
    assert_eq!(s.user_passkeys(&alice).await.unwrap().len(), 5);
}

pub async fn the_signature_counter_only_moves_forward(s: Arc<dyn Store>) {
    let (alice, _) = with_users(&s).await;
    let counting = PasskeyRecord { sign_count: 5, ..passkey("c", &alice, 1) };
    s.insert_passkey(&counting, 10).await.unwrap();
    assert!(s.record_passkey_use("c", &used(6, 100)).await.unwrap());
    let after = s.passkey("c").await.unwrap().unwrap();
    assert_eq!((after.sign_count, after.backup_state, after.last_used_at), (6, true, Some(100)));
    assert_eq!(after.credential, "{\"count\":6}", "the credential's own counter is kept with it");
    assert!(!s.record_passkey_use("c", &used(6, 101)).await.unwrap(), "the same count again: a clone");
    assert!(!s.record_passkey_use("c", &used(2, 102)).await.unwrap(), "a count that went backwards");
    assert!(!s.record_passkey_use("c", &used(0, 103)).await.unwrap(), "0 after counting: a clone too");
    assert_eq!(s.passkey("c").await.unwrap().unwrap().last_used_at, Some(100), "refused uses change nothing");
    // Synced passkeys report 0 every time: accepted as long as both stay 0.
    s.insert_passkey(&passkey("z", &alice, 2), 10).await.unwrap();
    for at in [200, 201, 202] {
        assert!(s.record_passkey_use("z", &used(0, at)).await.unwrap());
    }
    assert!(!s.record_passkey_use("gone", &used(9, 300)).await.unwrap(), "an unknown credential");
    // Of concurrent uses reporting one count, exactly one is recorded (a cloned authenticator
    // cannot slip its use in beside the original's).
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.record_passkey_use("c", &used(7, 400 + i)).await.unwrap() })
        })
        .collect();
    let mut recorded = 0;
    for t in tasks {
        recorded += usize::from(t.await.unwrap());
    }
    assert_eq!(recorded, 1);
}

pub async fn a_ceremony_is_taken_once_and_expires(s: Arc<dyn Store>) {
    let limits = CeremonyLimits { per_source: 10, total: 100 };
    assert!(s.insert_ceremony(&ceremony("c1", "192.0.2.1", 100), 0, limits).await.unwrap());
    assert!(s.take_ceremony(&TokenHash::of("c1"), 99).await.unwrap().is_some_and(|c| c.data == "{\"id\":\"c1\"}"));
    assert!(s.take_ceremony(&TokenHash::of("c1"), 99).await.unwrap().is_none(), "a challenge answers once");
    assert!(s.insert_ceremony(&ceremony("c2", "192.0.2.1", 100), 0, limits).await.unwrap());
    assert!(s.take_ceremony(&TokenHash::of("c2"), 100).await.unwrap().is_none(), "expired");
    assert!(s.take_ceremony(&TokenHash::of("c2"), 50).await.unwrap().is_none(), "and gone once asked for");
    // A burst of takes of one ceremony: exactly one gets it.
    assert!(s.insert_ceremony(&ceremony("c3", "192.0.2.1", 100), 0, limits).await.unwrap());
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.take_ceremony(&TokenHash::of("c3"), 10).await.unwrap().is_some() })
        })
        .collect();
    let mut winners = 0;
    for t in tasks {
        winners += usize::from(t.await.unwrap());
    }
    assert_eq!(winners, 1);
    // Expired ceremonies are purged.
    assert!(s.insert_ceremony(&ceremony("c4", "192.0.2.1", 100), 0, limits).await.unwrap());
    assert!(s.insert_ceremony(&ceremony("c5", "192.0.2.1", 300), 0, limits).await.unwrap());
    let policy = latchkey_core::store::PurgePolicy { key_publish_window: 0, audit_retention: 0 };
    assert_eq!(s.purge_expired(200, &policy).await.unwrap().webauthn_ceremonies, 1);
    assert_eq!(s.table_counts().await.unwrap().webauthn_ceremonies, 1);
}

/// The username-less sign-in starts a ceremony for anyone: live ceremonies stay bounded per
/// source and in all, under a burst from one source and from many.
pub async fn ceremonies_are_bounded_per_source_and_in_all(s: Arc<dyn Store>) {
    let limits = CeremonyLimits { per_source: 4, total: 10 };
    let burst: Vec<_> = (0..20)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                s.insert_ceremony(&ceremony(&format!("one-{i}"), "192.0.2.1", 1000), 0, limits).await.unwrap()
            })
        })
        .collect();
    let mut stored = 0;
    for t in burst {
        stored += usize::from(t.await.unwrap());
    }
    assert_eq!(stored, 4, "one source holds at most per_source ceremonies");
    let many: Vec<_> = (0..20)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                s.insert_ceremony(&ceremony(&format!("many-{i}"), &format!("198.51.100.{i}"), 1000), 0, limits)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut more = 0;
    for t in many {
        more += usize::from(t.await.unwrap());
    }
    assert_eq!(more, 6, "never more than total in all");
    assert_eq!(s.table_counts().await.unwrap().webauthn_ceremonies, 10);
    // Once they expire, there is room again: expired ones are cleared by the insert itself.
    assert!(s.insert_ceremony(&ceremony("later", "192.0.2.1", 3000), 1000, limits).await.unwrap());
    assert_eq!(s.table_counts().await.unwrap().webauthn_ceremonies, 1);
}

pub async fn db_copy_carries_passkeys(source: Arc<dyn Store>, target: Arc<dyn Store>) {
    let (alice, _) = with_users(&source).await;
    source.insert_passkey(&passkey("p1", &alice, 1), 5).await.unwrap();
    source.record_passkey_use("p1", &used(3, 50)).await.unwrap();
    let limits = CeremonyLimits { per_source: 4, total: 10 };
    source.insert_ceremony(&ceremony("transient", "192.0.2.1", 100), 0, limits).await.unwrap();
    let snapshot = source.export().await.unwrap();
    assert_eq!(snapshot.passkeys.len(), 1);
    assert_eq!(snapshot.passkeys[0].sign_count, 3);
    target.import(&snapshot).await.unwrap();
    assert_eq!(target.export().await.unwrap(), snapshot);
    assert_eq!(target.passkey("p1").await.unwrap(), source.passkey("p1").await.unwrap());
    assert_eq!(target.table_counts().await.unwrap().webauthn_ceremonies, 0, "ceremonies are not copied");
    // A passkey that exists already fails the whole import.
    let again = Snapshot { passkeys: snapshot.passkeys.clone(), ..Snapshot::default() };
    assert!(target.import(&again).await.is_err());
}

/// Runs every passkey check, each on a fresh store from `make`.
pub async fn suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn Store>>,
{
    passkeys_are_registered_once_listed_renamed_and_removed(make().await).await;
    a_users_passkey_limit_holds_under_a_burst(make().await).await;
    the_signature_counter_only_moves_forward(make().await).await;
    a_ceremony_is_taken_once_and_expires(make().await).await;
    ceremonies_are_bounded_per_source_and_in_all(make().await).await;
    db_copy_carries_passkeys(make().await, make().await).await;
}

/// Two instances on one database: one ceremony taken once, one counter value recorded once, the
/// bounds held as one.
pub async fn across_instances(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let (alice, _) = with_users(&a).await;
    a.insert_passkey(&PasskeyRecord { sign_count: 1, ..passkey("x", &alice, 1) }, 5).await.unwrap();
    let limits = CeremonyLimits { per_source: 3, total: 100 };
    let mut tasks = Vec::new();
    for i in 0..16 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            s.insert_ceremony(&ceremony(&format!("x{i}"), "192.0.2.9", 1000), 0, limits).await.unwrap()
        }));
    }
    let mut stored = 0;
    for t in tasks {
        stored += usize::from(t.await.unwrap());
    }
    assert_eq!(stored, 3, "the per-source bound across instances");
    let uses: Vec<_> = (0..16)
        .map(|i| {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { s.record_passkey_use("x", &used(2, 10 + i)).await.unwrap() })
        })
        .collect();
    let mut recorded = 0;
    for t in uses {
        recorded += usize::from(t.await.unwrap());
    }
    assert_eq!(recorded, 1, "one use per counter value across instances");
}
