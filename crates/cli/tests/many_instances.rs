//! One deployment, several processes: two `latchkey serve` binaries on one PostgreSQL database, as
//! behind a load balancer, and a deployment moved from SQLite to PostgreSQL with `db copy`.
//!
//! Needs PostgreSQL (see `latchkey_store::testing`): skipped with a message outside CI when none
//! is reachable, a failure in CI.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Browser, REDIRECT, jwt_parts};
use latchkey_core::store::{CodeRecord, SessionRecord};
use latchkey_proto::{ClientId, CodeVerifier, RedirectUri, Scope, TokenHash};
use latchkey_store::testing::TestDatabase;

const BIN: &str = env!("CARGO_BIN_EXE_latchkey");
/// The one public URL of the deployment (the load balancer's); neither instance listens on it.
const ISSUER: &str = "http://localhost:9443";
const PASSWORD: &str = "a long enough password";

fn latchkey(db: &str, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args).arg("--database").arg(db).env_remove("RUST_LOG");
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("LATCHKEY_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd.spawn().unwrap();
    let input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        let mut input = input;
        input.write_all(s.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

fn field<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines().find_map(|l| l.strip_prefix(&format!("{key}: "))).unwrap_or_else(|| panic!("no {key} in {out}"))
}

/// Registers the public client `spa`, the resource server `api` (returns its secret) and alice.
fn provision(db: &str) -> String {
    let (ok, _, err) =
        latchkey(db, &["client", "add", "--public", "--client-id", "spa", "--redirect-uri", REDIRECT], None);
    assert!(ok, "{err}");
    let (ok, out, err) = latchkey(db, &["client", "add", "--resource-server", "--client-id", "api"], None);
    assert!(ok, "{err}");
    let (ok, _, err) =
        latchkey(db, &["user", "add", "alice", "--email", "alice@example.com", "--password-stdin"], Some(PASSWORD));
    assert!(ok, "{err}");
    field(&out, "client_secret").to_owned()
}

struct Server {
    child: Child,
    base: String,
    log: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Spawns `serve`; `ready` waits for it to listen.
    fn spawn(dir: &std::path::Path, name: &str, db: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = dir.join(format!("{name}.log"));
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--issuer", ISSUER, "--database", db])
            .args(["--key-reload-interval", "1", "--purge-interval", "1"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, _) in std::env::vars() {
            if k.starts_with("LATCHKEY_") {
                cmd.env_remove(k);
            }
        }
        Self { child: cmd.spawn().unwrap(), base: format!("http://127.0.0.1:{port}"), log }
    }

    fn ready(self) -> Self {
        let port: u16 = self.base.rsplit(':').next().unwrap().parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "server did not start: {}", std::fs::read_to_string(&self.log).unwrap());
            std::thread::sleep(Duration::from_millis(50));
        }
        self
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

fn authorize_url(base: &str, verifier: &CodeVerifier) -> String {
    let mut u = url::Url::parse(&format!("{base}/authorize")).unwrap();
    u.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", "spa")
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("scope", "openid profile")
        .append_pair("code_challenge", verifier.challenge().as_str())
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", "xyz");
    u.into()
}

/// The browser part on `on`: log in if the browser has no session yet, consent if asked. Returns
/// the code.
async fn code_on(b: &Browser, on: &Server, verifier: &CodeVerifier) -> String {
    let mut page = b.get(&authorize_url(&on.base, verifier)).await;
    if page.status == 200 {
        page = b.submit_login(&on.base, &page.body, "alice", PASSWORD).await;
    }
    if page.status == 303 && page.location().starts_with("/consent") {
        let consent = b.get(&on.url(&page.location())).await;
        assert_eq!(consent.status, 200, "{}", consent.body);
        page = b.submit_consent(&on.base, &consent.body, "allow").await;
    }
    page.redirect_query().get("code").unwrap_or_else(|| panic!("no code: {}", page.location())).clone()
}

async fn post(url: &str, basic: Option<(&str, &str)>, form: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let mut req = reqwest::Client::new().post(url).form(form);
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(serde_json::Value::Null))
}

async fn exchange(on: &Server, code: &str, verifier: &CodeVerifier) -> (u16, serde_json::Value) {
    post(
        &on.url("/token"),
        None,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("client_id", "spa"),
            ("code_verifier", verifier.expose_secret()),
        ],
    )
    .await
}

async fn refresh(on: &Server, token: &str) -> (u16, serde_json::Value) {
    post(&on.url("/token"), None, &[("grant_type", "refresh_token"), ("refresh_token", token), ("client_id", "spa")])
        .await
}

async fn get_json(url: &str) -> serde_json::Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

fn kids(jwks: &serde_json::Value) -> Vec<String> {
    jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_on_one_postgres_database_serve_one_deployment() {
    let Some(db) = TestDatabase::create("instances").await else { return };
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, err) = latchkey(&db.url, &["migrate"], None);
    assert!(ok && out.contains("schema version"), "{out}{err}");
    let rs_secret = provision(&db.url);

    // Both start at once on a database without keys: one signer per algorithm all the same.
    let t0 = Instant::now();
    let (a, b) = (Server::spawn(dir.path(), "a", &db.url), Server::spawn(dir.path(), "b", &db.url));
    let (a, b) = (a.ready(), b.ready());
    eprintln!("both instances listening after {:?}", t0.elapsed());
    let (ok, out, _) = latchkey(&db.url, &["keys", "list", "--json"], None);
    assert!(ok);
    let keys: serde_json::Value = serde_json::from_str(&out).unwrap();
    for alg in ["RS256", "ES256", "EdDSA"] {
        let active = keys.as_array().unwrap().iter().filter(|k| k["alg"] == alg && k["state"] == "active").count();
        assert_eq!(active, 1, "one active {alg} key: {keys}");
    }
    assert_eq!(get_json(&a.url("/.well-known/openid-configuration")).await["issuer"], ISSUER);
    assert_eq!(get_json(&a.url("/jwks.json")).await, get_json(&b.url("/jwks.json")).await);

    // The flow across instances: login and authorize on A, token on B, refresh on A, revoke on B,
    // introspect on A.
    let t1 = Instant::now();
    let browser = Browser::new();
    let v = CodeVerifier::generate();
    let code = code_on(&browser, &a, &v).await;
    let (st, tokens) = exchange(&b, &code, &v).await;
    assert_eq!(st, 200, "{tokens}");
    let (st, refreshed) = refresh(&a, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(st, 200, "{refreshed}");
    let at = refreshed["access_token"].as_str().unwrap();
    let userinfo = reqwest::Client::new().get(b.url("/userinfo")).bearer_auth(at).send().await.unwrap();
    assert_eq!(userinfo.status(), 200);
    let rs = Some(("api", rs_secret.as_str()));
    let (st, active) = post(&a.url("/introspect"), rs, &[("token", at)]).await;
    assert_eq!((st, &active["active"]), (200, &serde_json::json!(true)), "{active}");
    let rt = refreshed["refresh_token"].as_str().unwrap();
    let (st, _) = post(&b.url("/revoke"), None, &[("token", rt), ("client_id", "spa")]).await;
    assert_eq!(st, 200);
    let (st, inactive) = post(&a.url("/introspect"), rs, &[("token", at)]).await;
    assert_eq!((st, &inactive["active"]), (200, &serde_json::json!(false)), "revoked on B, seen on A: {inactive}");
    let (st, refused) = refresh(&a, rt).await;
    assert_eq!((st, refused["error"].as_str()), (400, Some("invalid_grant")));
    eprintln!("flow across the instances in {:?}", t1.elapsed());

    // A key rotated through the CLI is published by both within the reload interval, and a token
    // one instance signs with it is accepted by the other. ES256 signs access tokens by default.
    let (ok, out, err) = latchkey(&db.url, &["keys", "rotate", "--alg", "ES256"], None);
    assert!(ok, "{err}");
    let kid = out.split_whitespace().nth(1).unwrap().to_owned();
    let t2 = Instant::now();
    loop {
        let (ka, kb) = (kids(&get_json(&a.url("/jwks.json")).await), kids(&get_json(&b.url("/jwks.json")).await));
        if ka.contains(&kid) && kb.contains(&kid) {
            break;
        }
        assert!(t2.elapsed() < Duration::from_secs(15), "rotated key {kid} not published by both: {ka:?} {kb:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("rotated key published by both after {:?}", t2.elapsed());
    let v = CodeVerifier::generate();
    let code = code_on(&browser, &b, &v).await;
    let (st, fresh) = exchange(&b, &code, &v).await;
    assert_eq!(st, 200, "{fresh}");
    assert_eq!(jwt_parts(fresh["access_token"].as_str().unwrap()).0["kid"], kid.as_str(), "B signs with the new key");
    let res = reqwest::Client::new().get(a.url("/userinfo")).bearer_auth(fresh["access_token"].as_str().unwrap());
    assert_eq!(res.send().await.unwrap().status(), 200, "A accepts it");

    // Many concurrent redemptions of one code, split across both: exactly one succeeds.
    let t3 = Instant::now();
    let (a, b) = (Arc::new(a), Arc::new(b));
    let v = CodeVerifier::generate();
    let code = code_on(&browser, &a, &v).await;
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let on = if i % 2 == 0 { a.clone() } else { b.clone() };
            let (code, v) = (code.clone(), CodeVerifier::parse(v.expose_secret()).unwrap());
            tokio::spawn(async move { exchange(&on, &code, &v).await })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        let (st, body) = t.await.unwrap();
        match st {
            200 => wins += 1,
            400 => assert_eq!(body["error"], "invalid_grant", "{body}"),
            other => panic!("status {other}: {body}"),
        }
    }
    assert_eq!(wins, 1, "exactly one redemption across both instances");

    // Concurrent refreshes of one token across both: all get the same successor, none fails.
    let v = CodeVerifier::generate();
    let code = code_on(&browser, &b, &v).await;
    let (_, tokens) = exchange(&a, &code, &v).await;
    let rt = tokens["refresh_token"].as_str().unwrap().to_owned();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let on = if i % 2 == 0 { a.clone() } else { b.clone() };
            let rt = rt.clone();
            tokio::spawn(async move { refresh(&on, &rt).await })
        })
        .collect();
    let mut bodies = Vec::new();
    for t in tasks {
        let (st, body) = t.await.unwrap();
        assert_eq!(st, 200, "no refusal, no 5xx: {body}");
        bodies.push(body);
    }
    assert!(bodies.iter().all(|x| *x == bodies[0]), "one successor for all, from either instance");
    let (st, _) = refresh(&b, bodies[0]["refresh_token"].as_str().unwrap()).await;
    assert_eq!(st, 200, "the successor works");
    eprintln!("concurrent redemptions and refreshes across both in {:?}", t3.elapsed());

    // The instances' cleanup task removes expired records on its own (every second here).
    let store = latchkey_store::open(&db.url).await.unwrap();
    let planted = CodeRecord {
        hash: TokenHash::of("planted"),
        client_id: ClientId::parse("spa").unwrap(),
        user_id: "nobody".into(),
        redirect_uri: RedirectUri::parse(REDIRECT).unwrap(),
        scope: Scope::parse("openid").unwrap(),
        code_challenge: v.challenge(),
        nonce: None,
        sid: "gone".into(),
        auth_time: 1,
        expires_at: 2,
        used_at: None,
        grant_id: None,
        resource: None,
        authn: Default::default(),
        claims: None,
        dpop_jkt: None,
    };
    store.insert_code(&planted).await.unwrap();
    let old = SessionRecord {
        hash: TokenHash::of("old"),
        sid: "old".into(),
        user_id: "x".into(),
        auth_time: 1,
        expires_at: 2,
        authn: Default::default(),
        meta: Default::default(),
    };
    assert!(store.insert_session(&old, 32).await.unwrap().unwrap().is_empty());
    let t4 = Instant::now();
    while store.code(&planted.hash).await.unwrap().is_some() || store.session_by_sid("old", 0).await.unwrap().is_some()
    {
        assert!(t4.elapsed() < Duration::from_secs(15), "expired records were not purged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("expired records purged by the serve task after {:?}", t4.elapsed());
    // The purge deletes, then logs: the line can land a moment after the rows are gone (CI saw
    // the read win that race), so wait for it within the same bound.
    let read_logs = || std::fs::read_to_string(&a.log).unwrap() + &std::fs::read_to_string(&b.log).unwrap();
    let mut logs = read_logs();
    while !logs.contains("purged expired records") {
        assert!(t4.elapsed() < Duration::from_secs(15), "the purge logs what it removed");
        tokio::time::sleep(Duration::from_millis(100)).await;
        logs = read_logs();
    }
    assert!(!logs.contains(PASSWORD) && !logs.contains(&rt), "no secret in the logs");
}

/// Issue 14's single-use values across instances: a request_uri pushed to A is used once, on B;
/// one client assertion sent to both at once is accepted once (RFC 7523 §3 point 7).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pushed_requests_and_client_assertions_are_single_use_across_instances() {
    use common::client_key::{ASSERTION_TYPE, ClientKey};
    let Some(db) = TestDatabase::create("protection").await else { return };
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, err) = latchkey(&db.url, &["migrate"], None);
    assert!(ok, "{out}{err}");
    provision(&db.url);
    let key = ClientKey::generate("svc-1");
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, ClientKey::jwks(&[&key])).unwrap();
    let args = ["client", "add", "--client-id", "svc", "--client-credentials", "--audience", "https://api.example"];
    let (ok, _, err) = latchkey(&db.url, &[&args[..], &["--jwks", jwks.to_str().unwrap()]].concat(), None);
    assert!(ok, "{err}");
    let (a, b) = (Server::spawn(dir.path(), "a", &db.url), Server::spawn(dir.path(), "b", &db.url));
    let (a, b) = (a.ready(), b.ready());

    let v = CodeVerifier::generate();
    let challenge = v.challenge();
    let form = [
        ("response_type", "code"),
        ("client_id", "spa"),
        ("redirect_uri", REDIRECT),
        ("scope", "openid"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let (status, body) = post(&a.url("/par"), None, &form).await;
    assert_eq!(status, 201, "{body}");
    let at = |on: &Server| {
        let mut u = url::Url::parse(&on.url("/authorize")).unwrap();
        u.query_pairs_mut()
            .append_pair("client_id", "spa")
            .append_pair("request_uri", body["request_uri"].as_str().unwrap());
        String::from(u)
    };
    assert_eq!(Browser::new().get(&at(&b)).await.status, 200, "pushed on A, used on B");
    assert_eq!(Browser::new().get(&at(&a)).await.status, 400, "and never again, on either");

    let assertion = key.assertion("svc", ISSUER, latchkey_core::Clock::system().now());
    let mut tasks = Vec::new();
    for i in 0..16 {
        let url = if i % 2 == 0 { a.url("/token") } else { b.url("/token") };
        let assertion = assertion.clone();
        tasks.push(tokio::spawn(async move {
            let form = [
                ("grant_type", "client_credentials"),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", assertion.as_str()),
            ];
            post(&url, None, &form).await.0
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|&&s| s == 200).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|&&s| s == 401).count(), 15, "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_copy_moves_a_sqlite_deployment_to_postgres() {
    let Some(db) = TestDatabase::create("copy").await else { return };
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("latchkey.db").display());
    provision(&sqlite);

    // On SQLite: sign in, get tokens.
    let browser = Browser::new();
    let v = CodeVerifier::generate();
    let (tokens, jwks_before) = {
        let s = Server::spawn(dir.path(), "sqlite", &sqlite).ready();
        let code = code_on(&browser, &s, &v).await;
        let (st, tokens) = exchange(&s, &code, &v).await;
        assert_eq!(st, 200, "{tokens}");
        (tokens, get_json(&s.url("/jwks.json")).await)
    };

    let (ok, out, err) = latchkey(&sqlite, &["db", "copy", "--from", &sqlite, "--to", &db.url], None);
    assert!(ok, "{err}");
    assert!(out.contains("clients: 2") && out.contains("users: 1") && out.contains("grants: 1"), "{out}");
    let (ok, _, err) = latchkey(&sqlite, &["db", "copy", "--from", &sqlite, "--to", &db.url], None);
    assert!(!ok && err.contains("already holds"), "a second copy is refused: {err}");

    // On PostgreSQL: the same keys, the refresh token issued on SQLite works, the browser's
    // session is still signed in, and the user's password still works.
    let p = Server::spawn(dir.path(), "postgres", &db.url).ready();
    assert_eq!(get_json(&p.url("/jwks.json")).await, jwks_before, "the signing keys moved");
    let (st, refreshed) = refresh(&p, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(st, 200, "{refreshed}");
    let v = CodeVerifier::generate();
    let page = browser.get(&authorize_url(&p.base, &v)).await;
    // A loopback app is asked every time (RFC 8252 §8.6): the consent page, but no login.
    assert_eq!(page.status, 200);
    assert!(
        !page.body.contains(r#"name="password""#) && page.body.contains(r#"value="allow""#),
        "the session moved: no login page: {}",
        page.body
    );
    let fresh = Browser::new();
    let code = code_on(&fresh, &p, &v).await;
    let (st, _) = exchange(&p, &code, &v).await;
    assert_eq!(st, 200, "the password hash moved");

    // And back: PostgreSQL to a new SQLite file.
    drop(p);
    let back = format!("sqlite://{}", dir.path().join("back.db").display());
    let (ok, out, err) = latchkey(&back, &["db", "copy", "--from", &db.url, "--to", &back], None);
    assert!(ok && out.contains("clients: 2") && out.contains("users: 1"), "{out}{err}");
    let (ok, out, _) = latchkey(&back, &["client", "show", "spa"], None);
    assert!(ok && out.contains("type: public"), "{out}");
}
