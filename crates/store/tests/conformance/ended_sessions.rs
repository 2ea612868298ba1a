//! Ended sessions, as OpenID Connect Back-Channel Logout needs them: every operation that ends
//! login sessions reports them with their clients, and a session ended by several concurrent
//! operations (on one instance or several) is reported by exactly one, so each client gets one
//! logout token per session.

use std::collections::BTreeMap;

use super::*;

fn session(sid: &str, auth_time: i64) -> SessionRecord {
    SessionRecord {
        hash: TokenHash::of(&format!("h-{sid}")),
        sid: sid.into(),
        user_id: "id-alice".into(),
        auth_time,
        expires_at: 10_000,
    }
}

/// A grant of `client` made in session `sid`.
fn grant_in(sid: &str, client: &str) -> Issuance {
    let id = format!("g-{sid}-{client}");
    let mut i = issuance(&id, &format!("r-{id}"));
    i.grant.sid = sid.into();
    i.grant.client_id = ClientId::parse(client).unwrap();
    i.access.jti = format!("jti-{id}");
    i
}

pub(crate) async fn removing_a_user_reports_their_sessions_with_clients(s: Arc<dyn Store>) {
    alice_with_sessions_grants_and_a_code(&s).await;
    s.insert_grant(&grant_in("sid2", "other")).await.unwrap();
    let mut want = alice_ended();
    want.0[1].clients = vec![ClientId::parse("other").unwrap()];
    assert_eq!(s.remove_user("alice").await.unwrap(), Some(want), "the clients are read before the grants go");
    assert!(s.session_by_sid("sid", 10).await.unwrap().is_none());
}

pub(crate) async fn concurrent_enders_report_each_session_once(s: Arc<dyn Store>) {
    concurrent_enders(&[s.clone(), s]).await;
}

/// Alice has eight sessions, each with grants of two clients. A burst of logouts of every session
/// (three each), password changes, token revocations and new logins that evict the older
/// sessions, all at once, spread over `instances`: every session that ended is reported exactly
/// once, with both its clients, and no session still alive is reported.
pub(crate) async fn concurrent_enders(instances: &[Arc<dyn Store>]) {
    let s = &instances[0];
    s.insert_user(&user("alice")).await.unwrap();
    let sids: Vec<String> = (0..8).map(|i| format!("sid-{i}")).collect();
    for (i, sid) in sids.iter().enumerate() {
        assert!(s.insert_session(&session(sid, i as i64), 100).await.unwrap().is_empty());
        s.insert_grant(&grant_in(sid, "app")).await.unwrap();
        s.insert_grant(&grant_in(sid, "web")).await.unwrap();
    }
    let mut tasks = Vec::new();
    for i in 0..40usize {
        let s = instances[i % instances.len()].clone();
        let sid = sids[i % sids.len()].clone();
        tasks.push(tokio::spawn(async move {
            match i % 10 {
                3 => s.revoke_user_tokens("alice", 50).await.unwrap().unwrap().ended,
                6 => s.set_password_hash("alice", "$new", None).await.unwrap().unwrap().ended,
                // A new login keeping only the newest two sessions.
                9 => s.insert_session(&session(&format!("new-{i}"), 100 + i as i64), 2).await.unwrap(),
                _ => s.end_session(&sid, 50).await.unwrap(),
            }
        }));
    }
    let mut reported: BTreeMap<String, usize> = BTreeMap::new();
    for t in tasks {
        for e in t.await.unwrap().0 {
            *reported.entry(e.sid.clone()).or_default() += 1;
            if e.sid.starts_with("sid-") {
                let want = ["app", "web"].map(|c| ClientId::parse(c).unwrap());
                assert_eq!(e.clients, want, "{}: both clients", e.sid);
            }
            assert_eq!(e.user_id, "id-alice");
        }
    }
    for sid in &sids {
        assert_eq!(reported.get(sid), Some(&1), "{sid} ended and reported once: {reported:?}");
    }
    for i in (9..40).step_by(10) {
        let sid = format!("new-{i}");
        let alive = s.session_by_sid(&sid, 60).await.unwrap().is_some();
        assert_eq!(reported.get(&sid).copied().unwrap_or(0), usize::from(!alive), "{sid}: alive {alive}, {reported:?}");
    }
}
