//! Finding 5 of the December 2026 review: after `latchkey user set-password` (the operator's
//! remedy for a stolen password) the thief's offline_access refresh token and live access tokens
//! must stop working, at `/token`, `/userinfo` and introspection. Also `user revoke-tokens`, and
//! `--keep-grants` for a routine change. The real binary runs against the live server's database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;

use common::*;
use latchkey_core::Store;
use latchkey_core::admin::NewClient;
use latchkey_proto::CodeVerifier;
use latchkey_store::SqliteStore;

const BIN: &str = env!("CARGO_BIN_EXE_latchkey");

/// The binary, run as an operator would, on `db`. Returns (success, stdout, stderr).
fn latchkey(db: &std::path::Path, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.arg("--database").arg(db).args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("LATCHKEY_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

struct Setup {
    s: TestServer,
    db: std::path::PathBuf,
    rs_secret: String,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("live.db");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&db).unwrap());
    let s = TestServer::start_on(store, |_| {}).await;
    let rs_secret =
        s.add(NewClient { resource_server: true, ..NewClient::public("api", "API", vec![]) }).await.unwrap();
    Setup { s, db, rs_secret, _dir: dir }
}

/// What a thief with alice's password gets: an offline_access grant (it outlives sessions).
async fn offline_tokens(s: &TestServer) -> serde_json::Value {
    let v = CodeVerifier::generate();
    let b = s.browser();
    let url = s.authorize_url("spa", &v, "").replace("scope=openid+profile+email", "scope=openid+offline_access");
    let page = b.get(&url).await;
    let res = b.submit_login(&s.base, &page.body, "alice", PASSWORD).await;
    let consent = b.get(&s.url(&res.location())).await;
    let res = b.submit_consent(&s.base, &consent.body, "allow").await;
    let (st, t) = s.exchange("spa", &res.redirect_query()["code"], &v).await;
    assert_eq!(st, 200, "{t}");
    assert!(t["scope"].as_str().unwrap().contains("offline_access"), "{t}");
    t
}

/// Whether each of the thief's tokens still works: (refresh at /token, access at /userinfo,
/// access at introspection).
async fn still_works(x: &Setup, t: &serde_json::Value) -> (bool, bool, bool) {
    let s = &x.s;
    let at = t["access_token"].as_str().unwrap();
    let userinfo = s.userinfo(at).await.status().as_u16() == 200;
    let (_, intro) = s.post_form("/introspect", Some(("api", &x.rs_secret)), &[("token", at)]).await;
    let (st, _) = s.refresh("spa", t["refresh_token"].as_str().unwrap(), None).await;
    (st == 200, userinfo, intro["active"] == true)
}

async fn audit_of(s: &TestServer, event: &str) -> latchkey_core::store::AuditRecord {
    let id = s.store.user_by_username("alice").await.unwrap().unwrap().id;
    let events = s.store.audit_events(None, Some(&id), 100).await.unwrap();
    events.into_iter().find(|e| e.event == event).unwrap_or_else(|| panic!("no {event} record under alice's user_id"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_password_ends_the_thiefs_offline_refresh_token_and_access_token() {
    let x = setup().await;
    let stolen = offline_tokens(&x.s).await;
    let (_, bound) = x.s.tokens_for("spa").await;
    // Before the change the access token works (the refresh token is tried only afterwards: a
    // refresh here would rotate it).
    let at = stolen["access_token"].as_str().unwrap();
    assert_eq!(x.s.userinfo(at).await.status().as_u16(), 200);
    let (_, intro) = x.s.post_form("/introspect", Some(("api", &x.rs_secret)), &[("token", at)]).await;
    assert_eq!(intro["active"], true);

    let (ok, out, err) =
        latchkey(&x.db, &["user", "set-password", "alice", "--password-stdin"], Some("a-new-pass-1\n"));
    assert!(ok, "{err}");

    assert_eq!(still_works(&x, &stolen).await, (false, false, false), "refresh, userinfo, introspection all refuse");
    assert_eq!(still_works(&x, &bound).await, (false, false, false));
    assert!(out.contains("password changed for alice"), "{out}");
    assert!(out.contains("sessions ended: 2"), "both login sessions: {out}");
    assert!(out.contains("grants revoked: 2"), "the offline and the session-bound grant: {out}");
    let rec = audit_of(&x.s, "password_changed").await;
    assert_eq!(rec.detail["grants_revoked"], 2, "{rec:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_grants_leaves_tokens_working_and_says_so() {
    let x = setup().await;
    let t = offline_tokens(&x.s).await;
    let (ok, out, err) = latchkey(
        &x.db,
        &["user", "set-password", "alice", "--password-stdin", "--keep-grants"],
        Some("a-new-pass-1\n"),
    );
    assert!(ok, "{err}");
    assert!(out.contains("grants kept (--keep-grants)"), "{out}");
    let at = t["access_token"].as_str().unwrap();
    assert_eq!(x.s.userinfo(at).await.status().as_u16(), 200);
    let (st, b) = x.s.refresh("spa", t["refresh_token"].as_str().unwrap(), None).await;
    assert_eq!(st, 200, "offline_access outlives the sessions when grants are kept: {b}");
    assert_eq!(audit_of(&x.s, "password_changed").await.detail["grants_kept"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_tokens_ends_every_grant_and_keeps_the_password() {
    let x = setup().await;
    let stolen = offline_tokens(&x.s).await;
    let (ok, out, err) = latchkey(&x.db, &["user", "revoke-tokens", "alice"], None);
    assert!(ok, "{err}");
    assert!(out.contains("revoked the tokens of alice") && out.contains("grants revoked: 1"), "{out}");
    assert_eq!(still_works(&x, &stolen).await, (false, false, false));
    assert_eq!(audit_of(&x.s, "tokens_revoked").await.detail["grants_revoked"], 1);
    // The password is unchanged: alice signs in again and gets working tokens.
    let (_, fresh) = x.s.tokens_for("spa").await;
    assert_eq!(x.s.userinfo(fresh["access_token"].as_str().unwrap()).await.status().as_u16(), 200);
    let (ok, _, err) = latchkey(&x.db, &["user", "revoke-tokens", "nobody"], None);
    assert!(!ok && err.contains("no user named \"nobody\""), "{err}");
}
