//! OpenID Connect Back-Channel Logout 1.0 through the real server: a test relying party (an axum
//! server on 127.0.0.1) receives the logout tokens and verifies each with an independent JOSE
//! library (`jsonwebtoken`, against the server's published JWKS, not the server's own code):
//! `typ`, signature and algorithm, `iss`, `aud`, `iat`/`exp`, `jti`, the `events` claim, no
//! `nonce`, and `sid` equal to the ID token's. Covered: RP-initiated logout, a password change and
//! a token revocation by the real binary, eviction of the oldest session, clients without a logout
//! URI and clients outside the session, a relying party down then up, a burst of concurrent
//! logouts, and a self-registered client pointing at the server's own network.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use common::*;
use latchkey_core::admin::NewClient;
use latchkey_core::outbox::{Job, NoTransport, OutboxFilter, RunReport};
use latchkey_core::store::SigningAlg;
use latchkey_core::{Clock, Store};
use latchkey_proto::CodeVerifier;
use latchkey_server::backchannel_send::{LogoutSender, Transports};
use latchkey_store::SqliteStore;
use serde_json::{Value, json};

const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// One logout token as the relying party saw it: its client, and the verified claims or why
/// it was refused.
type Received = (String, Result<Value, String>);

/// A relying party's back-channel logout endpoint, `POST /bcl/{client_id}`.
#[derive(Clone)]
struct Rp {
    issuer: String,
    /// What arrived, per client: the verified claims, or why the token was refused.
    received: Arc<Mutex<Vec<Received>>>,
}

impl Rp {
    /// Starts the relying party on `listener`.
    fn serve(issuer: &str, listener: tokio::net::TcpListener) -> (Self, String) {
        let rp = Self { issuer: issuer.to_owned(), received: Default::default() };
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .route("/bcl/{client}", axum::routing::post(receive))
            // A 307 keeps the method and body: followed, it would deliver the token elsewhere.
            .route(
                "/moved/{client}",
                axum::routing::post(|Path(c): Path<String>| async move {
                    (StatusCode::TEMPORARY_REDIRECT, [("location", format!("/bcl/{c}"))])
                }),
            )
            .with_state(rp.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (rp, base)
    }

    async fn start(issuer: &str) -> (Self, String) {
        Self::serve(issuer, tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap())
    }

    /// The verified claims received so far, for `client`.
    fn tokens_for(&self, client: &str) -> Vec<Value> {
        self.all().into_iter().filter(|(c, _)| c == client).map(|(_, v)| v).collect()
    }

    /// Every verified token, with its client; panics on a token that failed verification.
    fn all(&self) -> Vec<(String, Value)> {
        let got = self.received.lock().unwrap().clone();
        got.into_iter()
            .map(|(c, r)| match r {
                Ok(v) => (c, v),
                Err(e) => panic!("the relying party refused a logout token for {c}: {e}"),
            })
            .collect()
    }

    /// Waits until `n` tokens arrived (the background worker delivers them).
    async fn wait_for(&self, n: usize) {
        for _ in 0..200 {
            if self.received.lock().unwrap().len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("expected {n} logout tokens, got {:?}", self.received.lock().unwrap());
    }
}

#[derive(serde::Deserialize)]
struct LogoutForm {
    logout_token: String,
}

async fn receive(State(rp): State<Rp>, Path(client): Path<String>, Form(f): Form<LogoutForm>) -> StatusCode {
    let outcome = verify(&rp.issuer, &client, &f.logout_token).await;
    let status = if outcome.is_ok() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    rp.received.lock().unwrap().push((client, outcome));
    status
}

/// Back-Channel Logout 1.0 §2.6, as a relying party does it, with `jsonwebtoken` and the JWKS.
async fn verify(issuer: &str, client_id: &str, token: &str) -> Result<Value, String> {
    use jsonwebtoken::{DecodingKey, Validation, decode, decode_header, jwk::JwkSet};
    let header = decode_header(token).map_err(|e| format!("header: {e}"))?;
    if header.typ.as_deref() != Some("logout+jwt") {
        return Err(format!("typ {:?}", header.typ));
    }
    let jwks: JwkSet = reqwest::get(format!("{issuer}/jwks.json")).await.unwrap().json().await.unwrap();
    let kid = header.kid.ok_or("no kid")?;
    let jwk = jwks.find(&kid).ok_or_else(|| format!("kid {kid} not in the JWKS"))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("jwk: {e}"))?;
    let mut v = Validation::new(header.alg);
    v.set_audience(&[client_id]);
    v.set_issuer(&[issuer]);
    v.set_required_spec_claims(&["iss", "aud", "exp", "sub"]);
    let claims = decode::<Value>(token, &key, &v).map_err(|e| format!("signature or claims: {e}"))?.claims;
    if !claims["iat"].is_i64() || !claims["jti"].is_string() || !claims["sid"].is_string() {
        return Err(format!("iat, jti and sid are required here: {claims}"));
    }
    if claims["events"] != json!({ EVENT: {} }) {
        return Err(format!("events: {}", claims["events"]));
    }
    if claims.get("nonce").is_some() {
        return Err("a nonce is prohibited (§2.4)".into());
    }
    Ok(json!({ "alg": format!("{:?}", header.alg), "claims": claims }))
}

/// A relying party client `id` of the test server, signing ID tokens with `alg`, with its
/// back-channel logout URI at `rp` (or none).
async fn add_rp(s: &TestServer, id: &str, alg: SigningAlg, rp: Option<&str>) {
    s.add(NewClient {
        id_token_alg: alg,
        backchannel_logout_uri: rp.map(|base| format!("{base}/bcl/{id}")),
        ..NewClient::public(id, &format!("RP {id}"), vec![REDIRECT.into()])
    })
    .await;
}

/// Alice signs in to `client` with browser `b` (logging in if `b` has no session) and gets tokens.
async fn sign_in(s: &TestServer, b: &Browser, client: &str) -> Value {
    let v = CodeVerifier::generate();
    let mut res = b.get(&s.authorize_url(client, &v, "")).await;
    if res.status == 200 && res.body.contains(r#"name="password""#) {
        res = b.submit_login(&s.base, &res.body, "alice", PASSWORD).await;
    }
    if res.status == 303 && res.location().starts_with("/consent") {
        res = b.get(&s.url(&res.location())).await;
    }
    if res.status == 200 {
        // The consent page, from /authorize with a session or after the login.
        res = b.submit_consent(&s.base, &res.body, "allow").await;
    }
    let (status, t) = s.exchange(client, &res.redirect_query()["code"], &v).await;
    assert_eq!(status, 200, "{t}");
    t
}

fn id_claims(t: &Value) -> Value {
    jwt_parts(t["id_token"].as_str().unwrap()).1
}

/// The server's transports, as `latchkey serve` installs them (mail unconfigured here).
fn transports() -> Transports {
    Transports { mail: Arc::new(NoTransport), logouts: LogoutSender::with_timeout(Duration::from_secs(3)).unwrap() }
}

/// Runs the outbox at the server's current time until nothing more is due.
async fn run_jobs(s: &TestServer) -> RunReport {
    let t = transports();
    let mut total = RunReport::default();
    loop {
        let r = s.provider.run_due_jobs(&t, s.now()).await.unwrap();
        total.delivered += r.delivered;
        total.retried += r.retried;
        total.buried += r.buried;
        if r.claimed() == 0 {
            return total;
        }
    }
}

/// Runs the outbox (as [`run_jobs`]) expecting every due job delivered; returns how many were.
async fn deliver_all(s: &TestServer) -> u32 {
    let r = run_jobs(s).await;
    let left = s.store.outbox_jobs(OutboxFilter::Queued, 10).await.unwrap();
    assert!(r.retried == 0 && r.buried == 0 && left.is_empty(), "{r:?}: {left:?}");
    r.delivered
}

/// The back-channel logout jobs in the outbox in state `f`, as (client, sid).
async fn logout_jobs(s: &TestServer, f: OutboxFilter) -> Vec<(String, String)> {
    let mut out: Vec<_> = s
        .store
        .outbox_jobs(f, 100)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|r| match r.job {
            Job::BackchannelLogout(n) => Some((n.client_id.as_str().to_owned(), n.sid)),
            _ => None,
        })
        .collect();
    out.sort();
    out
}

fn logout_url(s: &TestServer, id_token: &str) -> String {
    let mut u = url::Url::parse(&s.url("/logout")).unwrap();
    u.query_pairs_mut().append_pair("id_token_hint", id_token);
    u.into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rp_initiated_logout_tells_each_client_of_the_session_once_and_no_one_else() {
    let s = TestServer::start().await;
    let (rp, base) = Rp::start(&s.base).await;
    add_rp(&s, "rp-es", SigningAlg::ES256, Some(&base)).await;
    add_rp(&s, "rp-ed", SigningAlg::EdDSA, Some(&base)).await;
    add_rp(&s, "plain", SigningAlg::RS256, None).await;
    add_rp(&s, "elsewhere", SigningAlg::RS256, Some(&base)).await;
    let meta: Value =
        s.http.get(s.url("/.well-known/openid-configuration")).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        (&meta["backchannel_logout_supported"], &meta["backchannel_logout_session_supported"]),
        (&json!(true), &json!(true))
    );

    // The worker as `latchkey serve` runs it, polling only once an hour: what is delivered here
    // was delivered because the logout woke it.
    let (skew, base_time) = (s.skew.clone(), s.now());
    let clock = Clock::from_fn(move || base_time + skew.load(std::sync::atomic::Ordering::SeqCst));
    let settings = latchkey_server::outbox_worker::WorkerSettings {
        poll: Duration::from_secs(3600),
        after_error: Duration::from_secs(3600),
    };
    let worker = latchkey_server::outbox_worker::spawn(s.provider.clone(), Arc::new(transports()), clock, settings);

    let b = s.browser();
    let es = sign_in(&s, &b, "rp-es").await;
    let ed = sign_in(&s, &b, "rp-ed").await;
    sign_in(&s, &b, "plain").await;
    let sid = id_claims(&es)["sid"].as_str().unwrap().to_owned();
    assert_eq!(id_claims(&ed)["sid"], sid.as_str(), "one login session, one sid");
    // Alice also signed in to `elsewhere`, in another browser: another session.
    let other = sign_in(&s, &s.browser(), "elsewhere").await;
    assert_ne!(id_claims(&other)["sid"], sid.as_str());

    let res = b.get(&logout_url(&s, es["id_token"].as_str().unwrap())).await;
    assert!(matches!(res.status, 200 | 303), "{} {}", res.status, res.body);
    rp.wait_for(2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    worker.abort();

    let sub = id_claims(&es)["sub"].clone();
    let mut jtis = Vec::new();
    for (client, alg) in [("rp-es", "ES256"), ("rp-ed", "EdDSA")] {
        let got = rp.tokens_for(client);
        assert_eq!(got.len(), 1, "{client}: one token: {got:?}");
        let c = &got[0]["claims"];
        assert_eq!(got[0]["alg"], alg, "signed with the client's ID token algorithm");
        assert_eq!(
            (c["sid"].as_str(), &c["sub"]),
            (Some(sid.as_str()), &sub),
            "{client}: the session and user of its ID token"
        );
        assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 120);
        jtis.push(c["jti"].as_str().unwrap().to_owned());
    }
    assert_ne!(jtis[0], jtis[1]);
    assert_eq!(rp.all().len(), 2, "nothing for a client outside the session: {:?}", rp.all());
    let done = logout_jobs(&s, OutboxFilter::Completed).await;
    assert_eq!(done, [("rp-ed".to_owned(), sid.clone()), ("rp-es".to_owned(), sid.clone())], "no job for `plain`");
    assert_eq!(logout_jobs(&s, OutboxFilter::Queued).await, []);
}

/// The binary, run as an operator would, on `db`. Returns (success, stdout, stderr).
fn latchkey(db: &std::path::Path, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_latchkey"));
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

/// The binary queues with the system clock, while the test server's stands still: bring the
/// server's up to it, as the two agree in a deployment.
fn catch_up(s: &TestServer) {
    s.advance((Clock::system().now() - s.now()).max(0) + 1);
}

/// A server on a database file the binary can open too, with a relying party and client `rp`.
async fn server_on_file() -> (TestServer, Rp, std::path::PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("live.db");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&db).unwrap());
    let s = TestServer::start_on(store, |_| {}).await;
    let (rp, base) = Rp::start(&s.base).await;
    // Registered by the binary, as an operator does.
    let uri = format!("{base}/bcl/rp");
    let add = ["client", "add", "--public", "--redirect-uri", REDIRECT];
    let (ok, out, err) = latchkey(
        &db,
        &[&add[..], &["--client-id", "rp", "--backchannel-logout-uri", &uri, "--backchannel-logout-session-required"]]
            .concat(),
        None,
    );
    assert!(ok, "{out} {err}");
    let (ok, out, err) = latchkey(&db, &["client", "show", "rp"], None);
    assert!(ok, "{err}");
    assert!(out.contains(&format!("backchannel_logout_uri: {uri}")), "{out}");
    assert!(out.contains("backchannel_logout_session_required: true"), "{out}");
    let (ok, _, err) = latchkey(
        &db,
        &[&add[..], &["--client-id", "rp2", "--backchannel-logout-uri", "http://rp.example/bcl"]].concat(),
        None,
    );
    assert!(!ok && err.contains("plain http is allowed only to a loopback host"), "{err}");
    (s, rp, db, dir)
}

/// `latchkey user set-password` and `user revoke-tokens` end every session of the user from
/// another process, without the server's keys: the tokens are queued there and the server sends
/// them, one per session, each naming its session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_and_a_token_revocation_by_the_binary_tell_the_clients_of_every_session() {
    let (s, rp, db, _dir) = server_on_file().await;
    let sids: Vec<Value> = [sign_in(&s, &s.browser(), "rp").await, sign_in(&s, &s.browser(), "rp").await]
        .iter()
        .map(|t| id_claims(t)["sid"].clone())
        .collect();
    let (ok, out, err) = latchkey(&db, &["user", "set-password", "alice", "--password-stdin"], Some("a-new-pass-1\n"));
    assert!(ok && out.contains("sessions ended: 2"), "{out} {err}");
    catch_up(&s);
    assert_eq!(deliver_all(&s).await, 2);
    let mut got: Vec<Value> = rp.tokens_for("rp").iter().map(|v| v["claims"]["sid"].clone()).collect();
    got.sort_by_key(|v| v.to_string());
    let mut want = sids.clone();
    want.sort_by_key(|v| v.to_string());
    assert_eq!(got, want, "one token per ended session");

    // A new session (the new password), then an administrator revokes everything.
    let b = s.browser();
    let v = CodeVerifier::generate();
    let page = b.get(&s.authorize_url("rp", &v, "")).await;
    let res = b.submit_login(&s.base, &page.body, "alice", "a-new-pass-1").await;
    let res = if res.location().starts_with("/consent") {
        let consent = b.get(&s.url(&res.location())).await;
        b.submit_consent(&s.base, &consent.body, "allow").await
    } else {
        res
    };
    let (_, t) = s.exchange("rp", &res.redirect_query()["code"], &v).await;
    let (ok, out, err) = latchkey(&db, &["user", "revoke-tokens", "alice"], None);
    assert!(ok, "{out} {err}");
    catch_up(&s);
    assert_eq!(deliver_all(&s).await, 1);
    let last = rp.tokens_for("rp").pop().unwrap();
    assert_eq!(last["claims"]["sid"], id_claims(&t)["sid"]);
    assert_eq!(rp.all().len(), 3);
}

/// The account page's "sign out this session" and an administrator's lock end sessions through
/// the store operations that queue their logout tokens in the same transaction: each ended
/// session is announced to its client, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_a_session_on_the_account_page_and_locking_the_user_tell_the_clients() {
    let s = TestServer::start().await;
    let (rp, base) = Rp::start(&s.base).await;
    add_rp(&s, "rp", SigningAlg::RS256, Some(&base)).await;
    let (b1, b2, b3) = (s.browser(), s.browser(), s.browser());
    let sid = |t: &Value| id_claims(t)["sid"].as_str().unwrap().to_owned();
    let one = sid(&sign_in(&s, &b1, "rp").await);
    let two = sid(&sign_in(&s, &b2, "rp").await);
    let three = sid(&sign_in(&s, &b3, "rp").await);

    // In browser 1, the account page signs out browser 2's session.
    let page = b1.get(&s.url("/account/sessions")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(&two), "{}", page.body);
    let csrf = hidden(&page.body, "csrf");
    let res = b1.post(&s.url("/account/sessions"), &[("csrf", csrf.as_str()), ("sid", two.as_str())]).await;
    assert_eq!((res.status, res.location().as_str()), (303, "/account/sessions?done=1"), "{}", res.body);
    assert_eq!(logout_jobs(&s, OutboxFilter::Queued).await, [("rp".to_owned(), two.clone())]);
    assert_eq!(deliver_all(&s).await, 1);
    assert_eq!(rp.tokens_for("rp")[0]["claims"]["sid"], two.as_str());

    // An administrator locks Alice: her other two sessions end, each announced.
    let done = latchkey_core::admin::lock_user(s.store.as_ref(), "alice", s.now()).await.unwrap().unwrap();
    assert_eq!(done.sessions_ended, 2);
    let mut want = vec![("rp".to_owned(), one.clone()), ("rp".to_owned(), three.clone())];
    want.sort();
    assert_eq!(logout_jobs(&s, OutboxFilter::Queued).await, want);
    assert_eq!(deliver_all(&s).await, 2);
    let mut got: Vec<String> =
        rp.tokens_for("rp").iter().map(|v| v["claims"]["sid"].as_str().unwrap().to_owned()).collect();
    got.sort();
    let mut all = vec![one, two, three];
    all.sort();
    assert_eq!(got, all, "one token per ended session, none twice");
}

/// `max_sessions_per_user`: the login that evicts the oldest session tells that session's clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_evicted_by_a_new_login_is_announced() {
    let s = TestServer::start_with(|c| c.max_sessions_per_user = 1).await;
    let (rp, base) = Rp::start(&s.base).await;
    add_rp(&s, "rp", SigningAlg::RS256, Some(&base)).await;
    let first = sign_in(&s, &s.browser(), "rp").await;
    assert_eq!(run_jobs(&s).await.claimed(), 0, "nothing has ended yet");
    sign_in(&s, &s.browser(), "rp").await;
    assert_eq!(deliver_all(&s).await, 1);
    assert_eq!(rp.tokens_for("rp")[0]["claims"]["sid"], id_claims(&first)["sid"]);
}

/// The relying party is down at the logout: the attempt fails, is retried with back-off, and the
/// token arrives once it is back (the test clock is moved past the delay).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relying_party_down_at_logout_gets_its_token_when_it_is_back() {
    let s = TestServer::start().await;
    // A port with nothing listening yet.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    add_rp(&s, "rp", SigningAlg::ES256, Some(&format!("http://127.0.0.1:{port}"))).await;
    let b = s.browser();
    let t = sign_in(&s, &b, "rp").await;
    b.get(&logout_url(&s, t["id_token"].as_str().unwrap())).await;

    let r = run_jobs(&s).await;
    assert_eq!((r.delivered, r.retried), (0, 1), "refused connection: retried later");
    let job = &s.store.outbox_jobs(OutboxFilter::Queued, 10).await.unwrap()[0];
    let wait = job.next_attempt_at - s.now();
    assert!((1..=30).contains(&wait), "back-off of the outbox (30 s, less jitter): {wait}");
    assert!(job.last_error.as_deref().unwrap_or_default().contains(&port.to_string()), "{job:?}");

    let (rp, _) = Rp::serve(&s.base, tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap());
    assert_eq!(run_jobs(&s).await.claimed(), 0, "not due before its time");
    s.advance(wait);
    assert_eq!(deliver_all(&s).await, 1);
    let got = rp.tokens_for("rp");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["claims"]["sid"], id_claims(&t)["sid"]);
    assert_eq!(got[0]["claims"]["iat"], s.now(), "built when sent, not when queued: a fresh exp");
}

/// The token goes to the registered URI only: a redirect is a failed attempt, not followed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_from_the_logout_uri_is_not_followed() {
    let s = TestServer::start().await;
    let (rp, base) = Rp::start(&s.base).await;
    s.add(NewClient {
        backchannel_logout_uri: Some(format!("{base}/moved/rp")),
        ..NewClient::public("rp", "RP", vec![REDIRECT.into()])
    })
    .await;
    let b = s.browser();
    let t = sign_in(&s, &b, "rp").await;
    b.get(&logout_url(&s, t["id_token"].as_str().unwrap())).await;
    assert_eq!(run_jobs(&s).await.retried, 1);
    assert!(rp.received.lock().unwrap().is_empty(), "the redirect target got nothing");
    let job = &s.store.outbox_jobs(OutboxFilter::Queued, 10).await.unwrap()[0];
    assert!(job.last_error.as_deref().unwrap_or_default().contains("redirects are not followed"), "{job:?}");
}

/// A burst of concurrent logouts of one session, with administrators revoking the user's tokens
/// at the same time: each client of the session gets exactly one token.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_concurrent_logouts_of_one_session_sends_one_token_per_client() {
    let s = Arc::new(TestServer::start().await);
    let (rp, base) = Rp::start(&s.base).await;
    add_rp(&s, "rp-a", SigningAlg::RS256, Some(&base)).await;
    add_rp(&s, "rp-b", SigningAlg::ES256, Some(&base)).await;
    let b = Arc::new(s.browser());
    let t = sign_in(&s, &b, "rp-a").await;
    sign_in(&s, &b, "rp-b").await;
    let hint = logout_url(&s, t["id_token"].as_str().unwrap());
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let (s, b, hint) = (s.clone(), b.clone(), hint.clone());
            tokio::spawn(async move {
                if i % 6 == 5 {
                    latchkey_core::admin::revoke_user_tokens(s.store.as_ref(), "alice", s.now()).await.unwrap();
                } else {
                    let res = b.get(&hint).await;
                    assert!(matches!(res.status, 200 | 303), "{}", res.status);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(deliver_all(&s).await, 2);
    assert_eq!((rp.tokens_for("rp-a").len(), rp.tokens_for("rp-b").len()), (1, 1), "{:?}", rp.all());
}

/// A self-registered client is a stranger: a logout URI into the server's own network is never
/// requested (server-side request forgery), while the same URI of an administrator's client is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_registered_client_cannot_make_the_server_post_into_its_own_network() {
    let s = TestServer::start().await;
    // A listener that only counts connections.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = connections.clone();
    tokio::spawn(async move {
        while let Ok((c, _)) = listener.accept().await {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(c);
        }
    });
    let register = |uri: &str| {
        let body = json!({
            "redirect_uris": [REDIRECT],
            "token_endpoint_auth_method": "none",
            "backchannel_logout_uri": uri,
            "backchannel_logout_session_required": true,
        });
        let req = s.http.post(s.url("/register")).json(&body);
        async move {
            let res = req.send().await.unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }
    };
    let (st, e) = register(&format!("http://127.0.0.1:{port}/bcl")).await;
    assert_eq!((st, e["error"].as_str()), (400, Some("invalid_client_metadata")), "no plain http: {e}");
    let uri = format!("https://127.0.0.1:{port}/bcl");
    let (st, reg) = register(&uri).await;
    assert_eq!(st, 201, "{reg}");
    assert_eq!(
        (reg["backchannel_logout_uri"].as_str(), &reg["backchannel_logout_session_required"]),
        (Some(uri.as_str()), &json!(true))
    );
    let stranger = reg["client_id"].as_str().unwrap().to_owned();

    let b = s.browser();
    let t = sign_in(&s, &b, &stranger).await;
    b.get(&logout_url(&s, t["id_token"].as_str().unwrap())).await;
    let r = run_jobs(&s).await;
    assert_eq!(r.buried, 1, "refused for good: {r:?}");
    let dead = s.store.outbox_jobs(OutboxFilter::Dead, 10).await.unwrap();
    assert!(dead[0].last_error.as_deref().unwrap_or_default().contains("self-registered"), "{dead:?}");
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 0, "not even a TCP connection");

    // The control: an administrator's client with the very same URI is reached (the TLS
    // handshake then fails against this listener, and the attempt is retried).
    s.add(NewClient {
        backchannel_logout_uri: Some(uri.clone()),
        ..NewClient::public("vetted", "Vetted", vec![REDIRECT.into()])
    })
    .await;
    let b = s.browser();
    let t = sign_in(&s, &b, "vetted").await;
    b.get(&logout_url(&s, t["id_token"].as_str().unwrap())).await;
    assert_eq!(run_jobs(&s).await.retried, 1);
    assert!(connections.load(std::sync::atomic::Ordering::SeqCst) >= 1);
}
