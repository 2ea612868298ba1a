//! The account store's contract (`latchkey_core::account_store`): profiles, the lock, a user's
//! sessions and the applications they allowed. Part of the one conformance suite: `checks` runs
//! on every backend from `suite`, and the PostgreSQL test below runs the concurrency rules across
//! two pools (two instances on one database).

use std::sync::Arc;

use latchkey_core::Store;
use latchkey_core::account_store::{AppRevocation, ProfileUpdate, SessionSelector};
use latchkey_core::profile::Profile;
use latchkey_core::store::*;
use latchkey_proto::{ClientId, Scope, TokenHash};
use latchkey_store::PostgresStore;
use latchkey_store::testing::TestDatabase;

use super::{
    alice_ended, alice_with_sessions_grants_and_a_code, code, consent, family, grant_revoked_at, issuance, user,
};

/// Every account check, each on a fresh store from `make`.
pub async fn checks<F, Fut>(make: &F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn Store>>,
{
    a_profile_update_writes_every_claim_and_unverifies_a_changed_email(make().await).await;
    a_lock_ends_everything_and_refuses_new_sessions(make().await).await;
    a_lock_racing_with_sign_ins_leaves_no_session(&[make().await]).await;
    sessions_are_listed_and_ended_only_for_their_user(make().await).await;
    one_session_ended_by_many_at_once_is_ended_once(&[make().await]).await;
    applications_are_listed_and_revoked_in_one_step(make().await).await;
    an_application_revoked_by_many_at_once_is_revoked_once(&[make().await]).await;
}

fn update(email: &str, verified: Option<bool>) -> ProfileUpdate {
    ProfileUpdate {
        name: Some("Alice Liddell".into()),
        email: email.into(),
        email_verified: verified,
        phone_number: None,
        address: Some("1 Main St\nSpringfield".into()),
        profile: Profile {
            given_name: Some("Alice".into()),
            family_name: Some("Liddell".into()),
            picture: Some("https://alice.example/me.png".into()),
            birthdate: Some("0000-05-04".into()),
            zoneinfo: Some("Europe/London".into()),
            ..Default::default()
        },
    }
}

async fn a_profile_update_writes_every_claim_and_unverifies_a_changed_email(s: Arc<dyn Store>) {
    let mut alice = user("alice");
    alice.email_verified = true;
    s.insert_user(&alice).await.unwrap();
    let same = update("alice@example.com", None);
    assert!(s.update_profile("id-alice", &same, 50).await.unwrap());
    let u = s.user("id-alice").await.unwrap().unwrap();
    assert_eq!((u.name.as_deref(), &u.profile, u.updated_at), (Some("Alice Liddell"), &same.profile, 50));
    assert_eq!(u.phone_number, None, "a cleared claim is cleared");
    assert_eq!(u.address.as_deref(), Some("1 Main St\nSpringfield"));
    assert!(u.email_verified, "the same address stays verified");
    assert_eq!(u.password_hash, alice.password_hash, "nothing else changes");

    assert!(s.update_profile("id-alice", &update("alice@new.example", None), 60).await.unwrap());
    let u = s.user("id-alice").await.unwrap().unwrap();
    assert_eq!((u.email.as_str(), u.email_verified), ("alice@new.example", false), "a new address is unverified");
    assert!(s.update_profile("id-alice", &update("alice@new.example", Some(true)), 70).await.unwrap());
    assert!(s.user("id-alice").await.unwrap().unwrap().email_verified, "an administrator may verify it");
    assert!(!s.update_profile("id-nobody", &same, 80).await.unwrap());
}

async fn a_lock_ends_everything_and_refuses_new_sessions(s: Arc<dyn Store>) {
    alice_with_sessions_grants_and_a_code(&s).await;
    let done = s.set_locked("alice", Some(70)).await.unwrap();
    let want =
        UserRevocation { user_id: "id-alice".into(), sessions_ended: 2, grants_revoked: 2, ended: alice_ended() };
    assert_eq!(done, Some(want));
    let alice = s.user("id-alice").await.unwrap().unwrap();
    assert_eq!(alice.locked_at, Some(70));
    assert!(s.session(&TokenHash::of("s1"), 50).await.unwrap().is_none());
    assert_eq!(grant_revoked_at(s.access_token("jti-offline").await.unwrap()), Some(70), "offline_access too");
    assert_eq!(grant_revoked_at(s.access_token("jti-bobs").await.unwrap()), None, "other users untouched");
    assert!(s.code(&TokenHash::of("pending-code")).await.unwrap().is_none(), "no code can mint a grant");

    let session = |sid: &str, user: &str| SessionRecord {
        hash: TokenHash::of(sid),
        sid: sid.into(),
        user_id: user.into(),
        auth_time: 80,
        expires_at: 1000,
        meta: Default::default(),
        authn: Default::default(),
    };
    assert!(
        s.insert_session(&session("late", "id-alice"), 8).await.unwrap().is_none(),
        "a locked user gets no session"
    );
    assert!(s.session_by_sid("late", 90).await.unwrap().is_none());
    assert!(s.insert_session(&session("bobs", "id-bob"), 8).await.unwrap().is_some());
    assert!(s.insert_session(&session("ghost", "id-ghost"), 8).await.unwrap().is_some(), "no user record is no lock");

    let undone = s.set_locked("alice", None).await.unwrap().unwrap();
    assert_eq!((undone.sessions_ended, undone.grants_revoked), (0, 0), "unlocking brings nothing back");
    assert_eq!(s.user("id-alice").await.unwrap().unwrap().locked_at, None);
    assert!(s.insert_session(&session("again", "id-alice"), 8).await.unwrap().is_some());
    assert_eq!(s.set_locked("nobody", Some(1)).await.unwrap(), None);
}

/// A burst of sign-ins of one user on `instances` while an administrator locks the user: whatever
/// the order, the user ends up locked with no session (the lock and each insert are atomic with
/// respect to each other).
async fn a_lock_racing_with_sign_ins_leaves_no_session(instances: &[Arc<dyn Store>]) {
    let s = &instances[0];
    s.insert_user(&user("alice")).await.unwrap();
    let sign_ins: Vec<_> = (0..40)
        .map(|i| {
            let s = instances[i % instances.len()].clone();
            tokio::spawn(async move {
                let sess = SessionRecord {
                    hash: TokenHash::of(&format!("race-{i}")),
                    sid: format!("race-{i}"),
                    user_id: "id-alice".into(),
                    auth_time: 10,
                    expires_at: 1000,
                    meta: Default::default(),
                    authn: Default::default(),
                };
                s.insert_session(&sess, 64).await.unwrap()
            })
        })
        .collect();
    let lock = {
        let s = instances[instances.len() - 1].clone();
        tokio::spawn(async move { s.set_locked("alice", Some(10)).await.unwrap() })
    };
    let mut inserted = 0;
    for t in sign_ins {
        inserted += usize::from(t.await.unwrap().is_some());
    }
    let ended = lock.await.unwrap().unwrap().sessions_ended as usize;
    assert_eq!(ended, inserted, "every session that got in was ended by the lock");
    assert!(s.user_sessions("id-alice", 20).await.unwrap().is_empty(), "a locked user keeps no session");
}

async fn sessions_are_listed_and_ended_only_for_their_user(s: Arc<dyn Store>) {
    alice_with_sessions_grants_and_a_code(&s).await;
    let bobs = SessionRecord {
        hash: TokenHash::of("b1"),
        sid: "bob-sid".into(),
        user_id: "id-bob".into(),
        auth_time: 5,
        expires_at: 1000,
        meta: SessionMeta { network: Some("198.51.100.0/24".into()), device: Some("Chrome on Android".into()) },
        authn: Default::default(),
    };
    assert!(s.insert_session(&bobs, 8).await.unwrap().is_some());
    let mut bound2 = issuance("bound2", "rb2");
    bound2.grant.sid = "sid2".into();
    s.insert_grant(&bound2).await.unwrap();

    assert_eq!(s.user_sessions("id-bob", 10).await.unwrap(), vec![bobs.clone()], "with where it was signed in");
    let alices = s.user_sessions("id-alice", 10).await.unwrap();
    assert_eq!(alices.iter().map(|x| x.sid.as_str()).collect::<Vec<_>>(), vec!["sid", "sid2"]);
    assert!(s.user_sessions("id-alice", 1000).await.unwrap().is_empty(), "expired ones are not listed");

    // Alice names Bob's session: nothing happens to it.
    let none = s.end_user_sessions("id-alice", &SessionSelector::One("bob-sid".into()), 60).await.unwrap();
    assert!(none.is_empty());
    assert!(s.session_by_sid("bob-sid", 10).await.unwrap().is_some(), "another user's session is never ended");
    let none = s.end_user_sessions("id-alice", &SessionSelector::AllExcept("sid".into()), 60).await.unwrap();
    assert_eq!(none.iter().map(|x| x.sid.as_str()).collect::<Vec<_>>(), vec!["sid2"]);
    assert!(s.session_by_sid("bob-sid", 10).await.unwrap().is_some());
    assert_eq!(grant_revoked_at(s.access_token("jti-bound2").await.unwrap()), Some(60), "its bound grants end");
    assert_eq!(grant_revoked_at(s.access_token("jti-bound").await.unwrap()), None, "the kept session's stay");
    let one = s.end_user_sessions("id-alice", &SessionSelector::One("sid".into()), 61).await.unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(grant_revoked_at(s.access_token("jti-bound").await.unwrap()), Some(61));
    assert_eq!(grant_revoked_at(s.access_token("jti-offline").await.unwrap()), None, "offline_access outlives it");
    let all = s.end_user_sessions("id-bob", &SessionSelector::All, 62).await.unwrap();
    assert_eq!(all.iter().map(|x| x.sid.as_str()).collect::<Vec<_>>(), vec![bobs.sid.as_str()]);
    assert!(s.end_user_sessions("id-bob", &SessionSelector::All, 63).await.unwrap().is_empty());
}

/// Two tabs (or two instances) end the same session at once: one of them ends it.
async fn one_session_ended_by_many_at_once_is_ended_once(instances: &[Arc<dyn Store>]) {
    let s = &instances[0];
    alice_with_sessions_grants_and_a_code(s).await;
    let ends: Vec<_> = (0..24)
        .map(|i| {
            let s = instances[i % instances.len()].clone();
            tokio::spawn(async move { s.end_user_sessions("id-alice", &SessionSelector::One("sid".into()), 60).await })
        })
        .collect();
    let mut ended = 0;
    for t in ends {
        ended += t.await.unwrap().unwrap().len();
    }
    assert_eq!(ended, 1, "exactly one call ended the session");
}

async fn applications_are_listed_and_revoked_in_one_step(s: Arc<dyn Store>) {
    alice_with_sessions_grants_and_a_code(&s).await;
    let app = ClientId::parse("app").unwrap();
    let other = ClientId::parse("other").unwrap();
    let remembered = ConsentRecord { claims: vec!["email".into()], ..consent("id-alice", "openid profile", 3) };
    s.put_consent(&remembered).await.unwrap();
    s.put_consent(&consent("id-bob", "openid", 3)).await.unwrap();
    // A grant with another client, without remembered consent (a first-party app), rotated once.
    s.insert_grant(&family("with-other", |i| {
        i.grant.client_id = other.clone();
        i.grant.scope = Scope::parse("openid email").unwrap();
    }))
    .await
    .unwrap();
    let next = RefreshRecord { grant_id: "with-other".into(), ..super::next_refresh("r-other-2", 90) };
    let acc = AccessRecord { grant_id: "with-other".into(), ..super::access("a-other-2") };
    assert_eq!(
        s.rotate_refresh(&TokenHash::of("r-with-other"), 90, &next, &acc, b"x").await.unwrap(),
        Rotated::Rotated
    );

    let apps = s.user_apps("id-alice", 50).await.unwrap();
    assert_eq!(apps.iter().map(|a| a.client_id.as_str()).collect::<Vec<_>>(), vec!["app", "other"]);
    let a = &apps[0];
    assert_eq!(a.consent.as_ref(), Some(&remembered), "the remembered consent, claims and all");
    assert_eq!(a.live_grants, 2, "the bound and the offline grant; not the revoked one");
    assert_eq!(a.granted_scope, Scope::parse("openid").unwrap());
    assert_eq!(a.last_used, Some(20), "the newest grant");
    let o = &apps[1];
    assert_eq!((o.consent.is_none(), o.live_grants, o.last_used), (true, 1, Some(90)), "the newest rotation");
    assert_eq!(o.granted_scope, Scope::parse("email openid").unwrap());
    assert!(s.user_apps("id-alice", 5000).await.unwrap().iter().all(|a| a.live_grants == 0), "expired grants");

    let done = s.revoke_app("id-alice", &app, 100).await.unwrap();
    assert_eq!(done, AppRevocation { consent_removed: true, grants_revoked: 2 });
    assert_eq!(s.consent("id-alice", &app).await.unwrap(), None);
    assert_eq!(grant_revoked_at(s.access_token("jti-offline").await.unwrap()), Some(100), "offline_access too");
    assert_eq!(grant_revoked_at(s.access_token("jti-old").await.unwrap()), Some(5), "the first revocation stays");
    assert!(s.code(&TokenHash::of("pending-code")).await.unwrap().is_none(), "its unredeemed code is gone");
    assert_eq!(grant_revoked_at(s.access_token("jti-with-other").await.unwrap()), None, "other apps untouched");
    assert_eq!(grant_revoked_at(s.access_token("jti-bobs").await.unwrap()), None, "other users untouched");
    assert!(s.consent("id-bob", &app).await.unwrap().is_some());
    let apps = s.user_apps("id-alice", 110).await.unwrap();
    assert_eq!(apps.iter().map(|a| a.client_id.as_str()).collect::<Vec<_>>(), vec!["other"]);
    assert_eq!(s.revoke_app("id-alice", &app, 120).await.unwrap(), AppRevocation::default());
    // Still a session: revoking an application does not sign the user out.
    assert!(s.session_by_sid("sid", 120).await.unwrap().is_some());
    let _ = code("unused");
}

/// A burst of revocations of one application (double clicks, two instances): the consent is
/// removed and each grant revoked once, by whichever call came first.
async fn an_application_revoked_by_many_at_once_is_revoked_once(instances: &[Arc<dyn Store>]) {
    let s = &instances[0];
    alice_with_sessions_grants_and_a_code(s).await;
    s.put_consent(&consent("id-alice", "openid", 3)).await.unwrap();
    let revocations: Vec<_> = (0..24)
        .map(|i| {
            let s = instances[i % instances.len()].clone();
            tokio::spawn(async move { s.revoke_app("id-alice", &ClientId::parse("app").unwrap(), 100).await })
        })
        .collect();
    let (mut removed, mut revoked) = (0, 0);
    for t in revocations {
        let r = t.await.unwrap().unwrap();
        removed += usize::from(r.consent_removed);
        revoked += r.grants_revoked;
    }
    assert_eq!((removed, revoked), (1, 2), "one consent removed, two grants revoked, once each");
}

/// The concurrency rules across two pools on one database: two instances.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_account_rules_hold_across_instances() {
    let Some(db) = TestDatabase::create("account").await else { return };
    let two = || async {
        let url = db.fresh_schema().await;
        let a: Arc<dyn Store> = Arc::new(PostgresStore::connect(&url).await.unwrap());
        let b: Arc<dyn Store> = Arc::new(PostgresStore::connect(&url).await.unwrap());
        [a, b]
    };
    a_lock_racing_with_sign_ins_leaves_no_session(&two().await).await;
    one_session_ended_by_many_at_once_is_ended_once(&two().await).await;
    an_application_revoked_by_many_at_once_is_revoked_once(&two().await).await;
}
