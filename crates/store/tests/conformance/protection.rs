//! Issue 14's records: single-use marks (DPoP proofs, client assertions) and pushed authorization
//! requests, each decided by one atomic step, checked under bursts of concurrent calls and across
//! instances.

use std::sync::Arc;

use latchkey_core::Store;
use latchkey_core::pushed::PushedRequest;
use latchkey_core::replay::ReplayKind;
use latchkey_core::store::PurgePolicy;
use latchkey_proto::{ClientId, TokenHash};

const POLICY: PurgePolicy = PurgePolicy { key_publish_window: 0, audit_retention: 0 };

fn pushed(uri: &str, client: &str, at: i64, ttl: i64) -> PushedRequest {
    PushedRequest {
        hash: TokenHash::of(uri),
        client_id: ClientId::parse(client).unwrap(),
        params: format!("response_type=code&client_id={client}&state={uri}"),
        created_at: at,
        expires_at: at + ttl,
    }
}

/// A value is accepted once among concurrent callers on every store in `instances`; another kind
/// with the same key is another mark; an expired mark no longer blocks, and the purge removes it.
pub async fn a_mark_is_first_used_once(instances: &[Arc<dyn Store>]) {
    let s = &instances[0];
    let calls: Vec<_> = (0..24)
        .map(|i| {
            let s = instances[i % instances.len()].clone();
            tokio::spawn(async move { s.first_use(ReplayKind::DpopProof, "proof-1", 160, 100).await.unwrap() })
        })
        .collect();
    let mut firsts = 0;
    for c in calls {
        firsts += usize::from(c.await.unwrap());
    }
    assert_eq!(firsts, 1, "one proof, one acceptance");
    assert!(s.first_use(ReplayKind::ClientAssertion, "proof-1", 160, 100).await.unwrap(), "kinds are separate");
    assert!(!s.first_use(ReplayKind::DpopProof, "proof-1", 200, 159).await.unwrap(), "live until it expires");
    assert!(s.first_use(ReplayKind::DpopProof, "proof-1", 260, 160).await.unwrap(), "expired: usable again");
    assert!(s.first_use(ReplayKind::DpopProof, "proof-2", 120, 100).await.unwrap());
    assert_eq!(s.table_counts().await.unwrap().replay_marks, 3);
    assert_eq!(s.purge_expired(200, &POLICY).await.unwrap().replay_marks, 2, "the expired marks go");
    assert_eq!(s.table_counts().await.unwrap().replay_marks, 1);
}

/// A pushed request is taken once (also by concurrent takers on every instance), not after it
/// expired, and at most `max` live ones are kept per client, also under a burst.
pub async fn a_pushed_request_is_taken_once_and_bounded(instances: &[Arc<dyn Store>]) {
    let s = &instances[0];
    assert!(s.insert_pushed(&pushed("u1", "app", 100, 60), 3, 100).await.unwrap());
    let takes: Vec<_> = (0..16)
        .map(|i| {
            let s = instances[i % instances.len()].clone();
            tokio::spawn(async move { s.take_pushed(&TokenHash::of("u1"), 110).await.unwrap() })
        })
        .collect();
    let mut got = Vec::new();
    for t in takes {
        got.extend(t.await.unwrap());
    }
    assert_eq!(got, vec![pushed("u1", "app", 100, 60)], "single use");
    assert!(s.insert_pushed(&pushed("u2", "app", 100, 60), 3, 100).await.unwrap());
    assert_eq!(s.take_pushed(&TokenHash::of("u2"), 160).await.unwrap(), None, "expired");
    assert_eq!(s.take_pushed(&TokenHash::of("u2"), 100).await.unwrap(), None, "and gone");

    // A burst of 12 pushes for one client with room for 3: exactly 3 are kept.
    let pushes: Vec<_> = (0..12)
        .map(|i| {
            let s = instances[i % instances.len()].clone();
            tokio::spawn(
                async move { s.insert_pushed(&pushed(&format!("b{i}"), "busy", 200, 60), 3, 200).await.unwrap() },
            )
        })
        .collect();
    let mut kept = 0;
    for p in pushes {
        kept += usize::from(p.await.unwrap());
    }
    assert_eq!(kept, 3, "bounded per client");
    assert!(s.insert_pushed(&pushed("other", "quiet", 200, 60), 3, 200).await.unwrap(), "per client, not in all");
    // Expired ones no longer count against the bound, and the purge removes them.
    assert!(s.insert_pushed(&pushed("late", "busy", 300, 60), 3, 300).await.unwrap());
    assert_eq!(s.purge_expired(300, &POLICY).await.unwrap().pushed_requests, 4);
    assert_eq!(s.table_counts().await.unwrap().pushed_requests, 1);
}
