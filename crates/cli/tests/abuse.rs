//! Abuse resistance: login throttling with back-off, and the audit trail of security events.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use latchkey_proto::CodeVerifier;

async fn login_page(s: &TestServer, b: &Browser) -> String {
    b.get(&s.authorize_url("spa", &CodeVerifier::generate(), "")).await.body
}

#[tokio::test]
async fn repeated_failures_are_throttled_with_backoff_and_cleared_by_success() {
    let s = TestServer::start().await;
    let b = Browser::new();
    let page = login_page(&s, &b).await;
    for _ in 0..5 {
        let res = b.submit_login(&s.base, &page, "alice", "wrong password").await;
        assert_eq!(res.status, 200);
        assert!(res.body.contains("Invalid username or password."));
    }
    // Blocked now: even the right password is not checked.
    let res = b.submit_login(&s.base, &page, "alice", PASSWORD).await;
    assert_eq!(res.status, 429);
    assert_eq!(res.header("retry-after"), "1");
    assert!(res.body.contains("Too many sign-in attempts. Try again in 1 second."), "{}", res.body);
    assert!(res.body.contains(r#"aria-invalid="true""#), "the error is shown next to the fields");
    // An API-style caller gets JSON.
    let req = hidden(&page, "req");
    let csrf = hidden(&page, "csrf");
    let api = b
        .http
        .post(s.url("/login"))
        .header("accept", "application/json")
        .form(&[("req", req.as_str()), ("csrf", csrf.as_str()), ("username", "alice"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 429);
    assert_eq!(api.headers()["retry-after"], "1");
    let body: serde_json::Value = api.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
    // Each further failure doubles the wait.
    s.advance(2);
    b.submit_login(&s.base, &page, "alice", "wrong again").await;
    let res = b.submit_login(&s.base, &page, "alice", PASSWORD).await;
    assert_eq!(res.status, 429);
    assert_eq!(res.header("retry-after"), "2");
    // After the wait, the right password works and clears the account's counters.
    s.advance(3);
    let res = b.submit_login(&s.base, &page, "alice", PASSWORD).await;
    assert_eq!(res.status, 303, "{}", res.body);
    let fresh = Browser::new();
    let page = login_page(&s, &fresh).await;
    let res = fresh.submit_login(&s.base, &page, "alice", "one more wrong").await;
    assert_eq!(res.status, 200, "counting starts again from zero");
}

#[tokio::test]
async fn unknown_usernames_are_throttled_exactly_like_real_ones() {
    let s = TestServer::start().await;
    let b = Browser::new();
    let mut statuses = Vec::new();
    for name in ["alice", "nobody"] {
        let page = login_page(&s, &b).await;
        let mut seq = Vec::new();
        for _ in 0..6 {
            seq.push(b.submit_login(&s.base, &page, name, "wrong password").await.status);
        }
        statuses.push(seq);
        s.advance(3600 * 2);
    }
    assert_eq!(statuses[0], statuses[1], "no enumeration through throttling");
    assert_eq!(statuses[0], vec![200, 200, 200, 200, 200, 429]);
}

#[tokio::test]
async fn security_events_are_recorded_for_the_audit_log() {
    let s = TestServer::start().await;
    let b = Browser::new();
    let page = login_page(&s, &b).await;
    b.submit_login(&s.base, &page, "alice", "wrong password").await;
    let v = CodeVerifier::generate();
    let (_, code) = s.code_for("spa", &v).await;
    let (_, t) = s.exchange("spa", &code, &v).await;
    s.exchange("spa", &code, &v).await; // a replay
    s.post_form("/revoke", None, &[("token", t["access_token"].as_str().unwrap()), ("client_id", "spa")]).await;

    let events = s.store.audit_events(None, None, 100).await.unwrap();
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    for want in
        ["client_added", "user_added", "login_failure", "login_success", "consent_granted", "code_replay", "revocation"]
    {
        assert!(names.contains(&want), "{want} in {names:?}");
    }
    let failure = events.iter().find(|e| e.event == "login_failure").unwrap();
    assert_eq!(failure.ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(failure.detail["username"], "alice");
    let alice = s.store.user_by_username("alice").await.unwrap().unwrap().id;
    let hers = s.store.audit_events(None, Some(&alice), 100).await.unwrap();
    assert!(hers.iter().all(|e| e.user_id.as_deref() == Some(alice.as_str())) && !hers.is_empty());
    // Nothing secret in any record.
    let dump = serde_json::to_string(&events).unwrap();
    for secret in [
        code.as_str(),
        t["access_token"].as_str().unwrap(),
        t["refresh_token"].as_str().unwrap(),
        PASSWORD,
        "wrong password",
    ] {
        assert!(!dump.contains(secret));
    }
}

#[tokio::test]
async fn live_sessions_per_user_are_bounded_oldest_first() {
    let s = TestServer::start_with(|c| c.max_sessions_per_user = 2).await;
    let mut tokens = Vec::new();
    for _ in 0..3 {
        let (_, t) = s.tokens_for("spa").await;
        tokens.push(t);
        s.advance(1);
    }
    // The oldest session was ended, and with it its session-bound refresh token.
    let (st, b) = s.refresh("spa", tokens[0]["refresh_token"].as_str().unwrap(), None).await;
    assert_eq!(st, 400, "{b}");
    for t in &tokens[1..] {
        assert_eq!(s.refresh("spa", t["refresh_token"].as_str().unwrap(), None).await.0, 200);
    }
}
