//! Ended sessions, as OpenID Connect Back-Channel Logout needs them: every operation that ends
//! login sessions reports them with their clients and queues, in the same transaction, one logout
//! token job per session for each client that registered a logout URI; a session ended by several
//! concurrent operations (on one instance or several) is reported and queued by exactly one, so
//! each client gets one logout token per session.

use std::collections::BTreeMap;

use latchkey_core::account_store::SessionSelector;
use latchkey_core::backchannel::LogoutNotice;
use latchkey_core::outbox::{Job, OutboxFilter};

use super::*;

/// Client `id`, with a back-channel logout URI or without.
fn rp(id: &str, logout_uri: bool) -> ClientRecord {
    let backchannel_logout =
        logout_uri.then(|| BackchannelLogout { uri: format!("https://{id}.example/bcl"), session_required: false });
    ClientRecord { backchannel_logout, ..client(id) }
}

/// The logout notices queued in the outbox, as (client, sid), in order.
async fn queued_notices(s: &Arc<dyn Store>) -> Vec<(String, String)> {
    let mut out: Vec<_> = s
        .outbox_jobs(OutboxFilter::Queued, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|r| match r.job {
            Job::BackchannelLogout(LogoutNotice { client_id, sid, .. }) => Some((client_id.as_str().to_owned(), sid)),
            _ => None,
        })
        .collect();
    out.sort();
    out
}

fn session(sid: &str, auth_time: i64) -> SessionRecord {
    SessionRecord {
        hash: TokenHash::of(&format!("h-{sid}")),
        sid: sid.into(),
        user_id: "id-alice".into(),
        auth_time,
        expires_at: 10_000,
        authn: Default::default(),
        meta: Default::default(),
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
    s.insert_client(&rp("app", true)).await.unwrap();
    s.insert_client(&rp("other", true)).await.unwrap();
    s.insert_grant(&grant_in("sid2", "other")).await.unwrap();
    let mut want = alice_ended();
    want.0[1].clients = vec![ClientId::parse("other").unwrap()];
    assert_eq!(s.remove_user("alice", 1).await.unwrap(), Some(want), "the clients are read before the grants go");
    assert!(s.session_by_sid("sid", 10).await.unwrap().is_none());
    assert_eq!(queued_notices(&s).await, [("app".into(), "sid".into()), ("other".into(), "sid2".into())]);
    let job = &s.outbox_jobs(OutboxFilter::Queued, 10).await.unwrap()[0];
    assert_eq!((job.created_at, job.next_attempt_at, job.attempts), (1, 1, 0), "due at once");
}

/// Each operation that ends sessions queues their logout tokens, for the clients that asked only.
pub(crate) async fn ending_sessions_queues_logout_tokens_for_clients_that_asked(s: Arc<dyn Store>) {
    s.insert_user(&user("alice")).await.unwrap();
    s.insert_client(&rp("app", true)).await.unwrap();
    s.insert_client(&rp("web", false)).await.unwrap();
    let login = |sid: &str, at| {
        let s = s.clone();
        let sid = sid.to_owned();
        async move {
            let evicted = s.insert_session(&session(&sid, at), 2).await.unwrap().unwrap();
            s.insert_grant(&grant_in(&sid, "app")).await.unwrap();
            s.insert_grant(&grant_in(&sid, "web")).await.unwrap();
            evicted
        }
    };
    assert!(login("a", 1).await.is_empty());
    assert!(login("b", 2).await.is_empty());
    assert_eq!(queued_notices(&s).await, [], "nothing has ended");
    // A third login evicts the oldest.
    assert_eq!(login("c", 3).await.len(), 1);
    assert_eq!(queued_notices(&s).await, [("app".into(), "a".into())], "web registered no logout URI");
    assert_eq!(s.end_session("b", 4).await.unwrap().len(), 1);
    assert_eq!(queued_notices(&s).await.len(), 2);
    let done = s.set_password_hash("alice", "$new", false, None, 5).await.unwrap().unwrap();
    assert_eq!(done.ended.len(), 1);
    assert!(login("d", 6).await.is_empty());
    assert_eq!(s.revoke_user_tokens("alice", 7).await.unwrap().unwrap().ended.len(), 1);
    // The account page and the administrator: one session, a password change keeping the page's
    // own session (which is not announced), the lock.
    assert!(login("e", 8).await.is_empty());
    assert!(login("f", 9).await.is_empty());
    let one = s.end_user_sessions("id-alice", &SessionSelector::One("e".into()), 10).await.unwrap();
    assert_eq!(one.len(), 1);
    assert!(login("g", 11).await.is_empty());
    let done = s.set_password_hash("alice", "$newer", true, Some("g"), 12).await.unwrap().unwrap();
    assert_eq!(done.ended.iter().map(|e| e.sid.as_str()).collect::<Vec<_>>(), ["f"], "the kept one stays");
    assert!(s.session_by_sid("g", 12).await.unwrap().is_some());
    let locked = s.set_locked("alice", Some(13)).await.unwrap().unwrap();
    assert_eq!(locked.ended.iter().map(|e| e.sid.as_str()).collect::<Vec<_>>(), ["g"]);
    assert_eq!(locked.sessions_ended, 1);
    let want: Vec<(String, String)> = ["a", "b", "c", "d", "e", "f", "g"].map(|sid| ("app".into(), sid.into())).into();
    assert_eq!(queued_notices(&s).await, want);
    // A job carries who and which session, nothing secret.
    let jobs = s.outbox_jobs(OutboxFilter::Queued, 10).await.unwrap();
    let d = jobs.iter().find(|j| matches!(&j.job, Job::BackchannelLogout(n) if n.sid == "d")).unwrap();
    let n = LogoutNotice { client_id: ClientId::parse("app").unwrap(), sub: "id-alice".into(), sid: "d".into() };
    assert_eq!((&d.job, d.created_at), (&Job::BackchannelLogout(n), 7));
    // Nothing left to end: nothing more is queued.
    assert!(s.end_session("d", 14).await.unwrap().is_empty());
    assert!(s.end_user_sessions("id-alice", &SessionSelector::All, 14).await.unwrap().is_empty());
    assert_eq!(queued_notices(&s).await.len(), 7);
}

pub(crate) async fn concurrent_enders_report_each_session_once(s: Arc<dyn Store>) {
    concurrent_enders(&[s.clone(), s]).await;
}

/// Alice has eight sessions, each with grants of two clients, one of which registered a logout
/// URI. A burst of logouts of every session (three each), password changes, token revocations and
/// new logins that evict the older sessions, all at once, spread over `instances`: every session
/// that ended is reported exactly once, with both its clients, and has exactly one logout token
/// queued; no session still alive is reported.
pub(crate) async fn concurrent_enders(instances: &[Arc<dyn Store>]) {
    let s = &instances[0];
    s.insert_user(&user("alice")).await.unwrap();
    s.insert_client(&rp("app", true)).await.unwrap();
    s.insert_client(&rp("web", false)).await.unwrap();
    let sids: Vec<String> = (0..8).map(|i| format!("sid-{i}")).collect();
    for (i, sid) in sids.iter().enumerate() {
        assert!(s.insert_session(&session(sid, i as i64), 100).await.unwrap().unwrap().is_empty());
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
                // The account page's "sign out everywhere else".
                1 => s.end_user_sessions("id-alice", &SessionSelector::AllExcept(sid), 50).await.unwrap(),
                6 => s.set_password_hash("alice", "$new", false, None, 1).await.unwrap().unwrap().ended,
                // A new login keeping only the newest two sessions.
                9 => s.insert_session(&session(&format!("new-{i}"), 100 + i as i64), 2).await.unwrap().unwrap(),
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
    // One token per session for `app` (new sessions had no grant yet: no client to tell).
    let want: Vec<(String, String)> = sids.iter().map(|sid| ("app".to_owned(), sid.clone())).collect();
    assert_eq!(queued_notices(s).await, want, "one logout token per ended session, for the client that asked");
}

/// A new login never evicts itself, even beside a session logged in within the same second (the
/// tie on `auth_time` used to fall to the `sid` order).
pub(crate) async fn a_new_session_outlives_an_older_one_of_the_same_second(s: Arc<dyn Store>) {
    assert!(s.insert_session(&session("a", 5), 1).await.unwrap().unwrap().is_empty());
    let evicted = s.insert_session(&session("z", 5), 1).await.unwrap().unwrap();
    assert_eq!(evicted.iter().map(|e| e.sid.as_str()).collect::<Vec<_>>(), ["a"]);
    assert!(s.session_by_sid("z", 6).await.unwrap().is_some(), "the new session is the one kept");
}
