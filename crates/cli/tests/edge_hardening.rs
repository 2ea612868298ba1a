//! The edges hold against hostile clients: `serve` and `gate` close slow and idle connections and
//! cap how many they hold (slow-loris); the gate lets no client forge identity or address headers
//! and no path leave the upstream's base; CSRF tokens are bound server-side; request text cannot
//! forge log fields; and unsafe settings (`--dev` off loopback, a plain http issuer, a password on
//! the command line, a leftover demo user) are refused or reported.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use latchkey_core::admin::NewClient;
use latchkey_core::{Clock, Provider, ProviderConfig};
use latchkey_proto::CodeVerifier;
use latchkey_server::AppState;
use latchkey_server::conn::Limits;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_latchkey");

// ---------------------------------------------------------------------------------------------
// Raw sockets

/// Reads until the server closes the connection or `within` passes. `Some(bytes)` if it closed
/// (a reset counts), `None` if it is still open.
async fn closed_within(sock: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, sock.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads until at least one response head has arrived, or `within` passes.
async fn response_within(sock: &mut TcpStream, within: Duration) -> Option<String> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout_at(deadline, sock.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&got).into_owned())
}

/// One request on its own connection (`Connection: close`), the whole answer as text.
async fn raw_request(addr: &str, head: &str) -> String {
    let mut sock = TcpStream::connect(addr).await.unwrap();
    sock.write_all(head.as_bytes()).await.unwrap();
    let got = closed_within(&mut sock, Duration::from_secs(20)).await.expect("an answer, then close");
    String::from_utf8_lossy(&got).into_owned()
}

// ---------------------------------------------------------------------------------------------
// `serve` in-process, with limits short enough for a test

struct Served {
    addr: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

async fn serve(limits: Limits) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(latchkey_store::SqliteStore::open(&dir.path().join("edge.db")).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let clock = Clock::system();
    let provider =
        Arc::new(Provider::open(store, ProviderConfig::new(&format!("http://{addr}")), clock.now()).await.unwrap());
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let done = tokio::spawn(latchkey_server::serve_with(listener, AppState::new(provider, clock), limits, async {
        let _ = rx.await;
    }));
    Served { addr, stop: Some(stop), done, _dir: dir }
}

fn short_limits(max_connections: usize) -> Limits {
    Limits { header_read_timeout: Duration::from_secs(1), request_timeout: Duration::from_secs(2), max_connections }
}

/// The slow-loris shapes of the review (finding 7) against a server with a 1 s header timeout and
/// a 2 s request timeout: each socket is closed (or answered 408) within a few seconds, all at
/// once, while a well-behaved client is served (`GET /healthz` gets `status`). `auth` is a header
/// line that lets the short body past the gate's token check.
async fn slow_clients_are_cut_off(addr: &str, status: &str, auth: &str) {
    let status = format!("HTTP/1.1 {status} ");
    let path_ok = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    // Nothing sent at all.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    // Half a header block.
    let mut partial = TcpStream::connect(addr).await.unwrap();
    partial.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    // A body shorter than its Content-Length.
    let mut short_body = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /token HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant_type"
    );
    short_body.write_all(head.as_bytes()).await.unwrap();
    // A keep-alive connection left idle after one answered request.
    let mut kept = TcpStream::connect(addr).await.unwrap();
    kept.write_all(path_ok.as_bytes()).await.unwrap();
    assert!(response_within(&mut kept, Duration::from_secs(10)).await.unwrap().starts_with(&status));
    // Headers trickled a byte at a time: the header timeout is a deadline, not an idle timer.
    let trickle_addr = addr.to_owned();
    let trickle = tokio::spawn(async move {
        let mut s = TcpStream::connect(&trickle_addr).await.unwrap();
        let started = Instant::now();
        for b in b"GET /healthz HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
            .iter()
            .cycle()
            .take(200)
        {
            if s.write_all(&[*b]).await.is_err() {
                return started.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        started.elapsed()
    });

    let limit = Duration::from_secs(6);
    assert!(closed_within(&mut idle, limit).await.is_some(), "a silent connection is closed");
    assert!(closed_within(&mut partial, limit).await.is_some(), "partial headers: closed");
    let answer = closed_within(&mut short_body, limit).await.expect("a short body: answered and closed");
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408"), "{}", String::from_utf8_lossy(&answer));
    assert!(closed_within(&mut kept, limit).await.is_some(), "an idle keep-alive connection is closed");
    let trickled = trickle.await.unwrap();
    assert!(trickled < Duration::from_secs(8), "trickled headers cut off after {trickled:?}");
    // Meanwhile, and afterwards, an ordinary request is answered.
    let last = raw_request(addr, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert!(last.starts_with(&status), "{last}");
}

#[tokio::test]
async fn serve_closes_silent_slow_and_idle_connections() {
    let s = serve(short_limits(64)).await;
    slow_clients_are_cut_off(&s.addr, "200", "").await;
}

#[tokio::test]
async fn serve_caps_concurrent_connections_and_the_excess_waits() {
    // Long timeouts: only closing a held connection frees a slot.
    let limits = Limits { header_read_timeout: Duration::from_secs(30), max_connections: 2, ..Limits::default() };
    let s = serve(limits).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(TcpStream::connect(&s.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut third = TcpStream::connect(&s.addr).await.unwrap();
    third.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    assert!(
        response_within(&mut third, Duration::from_millis(1500)).await.is_none(),
        "a third connection is not served while two are held"
    );
    drop(held.pop());
    let res = response_within(&mut third, Duration::from_secs(10)).await.expect("served once a slot frees");
    assert!(res.contains(" 200 "), "{res}");
}

#[tokio::test]
async fn graceful_shutdown_finishes_requests_in_flight() {
    let mut s = serve(short_limits(16)).await;
    let mut idle = TcpStream::connect(&s.addr).await.unwrap();
    let mut inflight = TcpStream::connect(&s.addr).await.unwrap();
    let body = "grant_type=client_credentials&client_id=nobody";
    let head = format!(
        "POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    inflight.write_all(head.as_bytes()).await.unwrap();
    inflight.write_all(&body.as_bytes()[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(s.stop.take());
    tokio::time::sleep(Duration::from_millis(200)).await;
    inflight.write_all(&body.as_bytes()[10..]).await.unwrap();
    let res = response_within(&mut inflight, Duration::from_secs(5)).await.expect("the request in flight is answered");
    assert!(res.starts_with("HTTP/1.1 40"), "{res}");
    assert!(closed_within(&mut idle, Duration::from_secs(5)).await.is_some());
    tokio::time::timeout(Duration::from_secs(10), &mut s.done).await.expect("serve returns").unwrap().unwrap();
    assert!(TcpStream::connect(&s.addr).await.is_err(), "no longer listening");
}

// ---------------------------------------------------------------------------------------------
// The gate, as a process in front of an echoing upstream

/// An upstream that answers with the path and every header (repeated ones included) it got.
async fn echo_upstream() -> (String, Arc<AtomicUsize>) {
    use axum::extract::Request;
    let hits = Arc::new(AtomicUsize::new(0));
    let h2 = hits.clone();
    let app = axum::Router::new().fallback(move |req: Request| {
        let hits = h2.clone();
        async move {
            hits.fetch_add(1, Ordering::SeqCst);
            let (parts, body) = req.into_parts();
            let _ = axum::body::to_bytes(body, 1 << 20).await;
            let headers: Vec<(String, String)> = parts
                .headers
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                .collect();
            axum::Json(serde_json::json!({"path": parts.uri.path(), "headers": headers}))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, hits)
}

struct GateSetup {
    _issuer: TestServer,
    gate: String,
    token: String,
    hits: Arc<AtomicUsize>,
    _child: Child,
}

/// An issuer, a client-credentials token for `https://api.example`, an echo upstream and a gate
/// to its `/api` with short limits.
async fn gate_setup(max_connections: &str, header_read_timeout: &str) -> GateSetup {
    let s = TestServer::start().await;
    let secret = s
        .add(NewClient {
            confidential: true,
            client_credentials: true,
            extra_scopes: vec!["api:read".into()],
            audiences: vec!["https://api.example".into()],
            ..NewClient::public("svc", "Service", vec![])
        })
        .await
        .unwrap();
    let (st, t) = s
        .post_form(
            "/token",
            Some(("svc", secret.as_str())),
            &[("grant_type", "client_credentials"), ("scope", "api:read")],
        )
        .await;
    assert_eq!(st, 200, "{t}");
    let token = t["access_token"].as_str().unwrap().to_owned();
    let (upstream, hits) = echo_upstream().await;
    let mut child = Command::new(BIN)
        .args(["gate", "--listen", "127.0.0.1:0", "--upstream", &format!("{upstream}/api"), "--issuer", &s.base])
        .args(["--audience", "https://api.example", "--require-scope", "api:read"])
        .args(["--header-read-timeout", header_read_timeout, "--request-timeout", "2"])
        .args(["--max-connections", max_connections])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await.unwrap().unwrap().unwrap();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let gate = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http://"))
        .expect("the gate's address")
        .trim_end_matches(',')
        .to_owned();
    GateSetup { _issuer: s, gate, token, hits, _child: child }
}

fn echo(answer: &str) -> serde_json::Value {
    let body = &answer[answer.find("\r\n\r\n").expect("a response") + 4..];
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"))
}

fn values<'a>(echo: &'a serde_json::Value, name: &str) -> Vec<&'a str> {
    echo["headers"].as_array().unwrap().iter().filter(|p| p[0] == name).map(|p| p[1].as_str().unwrap()).collect()
}

#[tokio::test]
async fn gate_forwards_no_smuggled_identity_or_client_address_headers() {
    let g = gate_setup("64", "10").await;
    let head = format!(
        "GET /v1/items HTTP/1.1\r\nHost: gate\r\nAuthorization: Bearer {}\r\n\
         X_Latchkey_Subject: admin\r\nx_latchkey_scope: notes:admin\r\nX-Latchkey-Subject: admin\r\n\
         X_LATCHKEY-Client_Id: evil\r\nX_Anything: with-underscore\r\n\
         X-Forwarded-For: 10.9.9.9\r\nForwarded: for=10.9.9.9\r\nX-Real-IP: 10.9.9.9\r\n\
         X-Forwarded-Host: evil.example\r\nX-Forwarded-Proto: https\r\n\
         Accept: application/json\r\nConnection: close\r\n\r\n",
        g.token
    );
    let answer = raw_request(&g.gate, &head).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let e = echo(&answer);
    let names: Vec<&str> = e["headers"].as_array().unwrap().iter().map(|p| p[0].as_str().unwrap()).collect();
    assert!(names.iter().all(|n| !n.contains('_')), "no underscore header reaches the upstream: {names:?}");
    // What a CGI/WSGI upstream sees: each identity variable once, with the verified value.
    for (var, want) in
        [("x-latchkey-subject", "svc"), ("x-latchkey-scope", "api:read"), ("x-latchkey-client-id", "svc")]
    {
        let cgi = |n: &str| n.replace('_', "-").to_ascii_lowercase();
        let seen: Vec<&str> = e["headers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| cgi(p[0].as_str().unwrap()) == var)
            .map(|p| p[1].as_str().unwrap())
            .collect();
        assert_eq!(seen, vec![want], "{var}");
    }
    assert_eq!(values(&e, "x-forwarded-for"), vec!["127.0.0.1"], "the TCP peer, not the client's claim");
    assert_eq!(values(&e, "forwarded"), vec!["for=127.0.0.1;proto=http"]);
    assert_eq!(values(&e, "x-forwarded-proto"), vec!["http"]);
    assert!(values(&e, "x-real-ip").is_empty() && values(&e, "x-forwarded-host").is_empty(), "{e}");
    assert_eq!(values(&e, "accept"), vec!["application/json"]);
}

#[tokio::test]
async fn gate_keeps_requests_inside_the_upstream_base_path() {
    let g = gate_setup("64", "10").await;
    let get = |path: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: gate\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n", g.token)
    };
    let ok = raw_request(&g.gate, &get("/v1/items")).await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert_eq!(echo(&ok)["path"], "/api/v1/items");
    let before = g.hits.load(Ordering::SeqCst);
    for path in [
        "/../admin",
        "/%2e%2e/admin",
        "/%2E%2E/admin",
        "/%2e%2E/admin",
        "/.%2e/admin",
        "/v1/../../admin",
        "/v1/%2e%2e/%2E%2E/admin",
        "/..%2fadmin",
        "/..%2Fadmin",
        "/.%2E%2Fadmin",
    ] {
        let answer = raw_request(&g.gate, &get(path)).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
    }
    assert_eq!(g.hits.load(Ordering::SeqCst), before, "no escaping request reached the upstream");
}

#[tokio::test]
async fn gate_closes_slow_connections_and_caps_them() {
    let g = gate_setup("64", "1").await;
    slow_clients_are_cut_off(&g.gate, "401", &format!("Authorization: Bearer {}\r\n", g.token)).await;

    let g = gate_setup("2", "3").await;
    let mut held = vec![TcpStream::connect(&g.gate).await.unwrap(), TcpStream::connect(&g.gate).await.unwrap()];
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut third = TcpStream::connect(&g.gate).await.unwrap();
    third.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    assert!(response_within(&mut third, Duration::from_millis(1500)).await.is_none(), "the third waits");
    // The held ones time out (3 s): the third is then served (401: it has no token).
    let res = response_within(&mut third, Duration::from_secs(10)).await.expect("served once a slot frees");
    assert!(res.starts_with("HTTP/1.1 401"), "{res}");
    held.clear();
}

// ---------------------------------------------------------------------------------------------
// CSRF tokens bound server-side (review 19b)

#[tokio::test]
async fn a_self_chosen_csrf_cookie_and_field_pair_is_refused() {
    let s = TestServer::start().await;
    let b = Browser::new();
    let page = b.get(&s.authorize_url("spa", &CodeVerifier::generate(), "")).await;
    let req = hidden(&page.body, "req");
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let login = |cookie: String, field: String| {
        let http = http.clone();
        let (url, req) = (s.url("/login"), req.clone());
        async move {
            let form = [("req", req.as_str()), ("csrf", field.as_str()), ("username", "alice"), ("password", PASSWORD)];
            let res = http.post(url).header("cookie", format!("latchkey_csrf={cookie}")).form(&form).send().await;
            res.unwrap().status().as_u16()
        }
    };
    // The shapes an attacker can plant: a bare random value, and nonce.mac with a made-up MAC.
    let z = "Z".repeat(43);
    assert_eq!(login(z.clone(), z.clone()).await, 403, "a self-chosen pair is refused");
    let fake = format!("{}.{}", "A".repeat(43), "B".repeat(43));
    assert_eq!(login(fake.clone(), fake).await, 403, "a made-up MAC is refused");
    // The server's own token, as issued, works from any client that has the pair.
    let csrf = hidden(&page.body, "csrf");
    assert_eq!(login(csrf.clone(), csrf).await, 303);
}

#[tokio::test]
async fn csrf_tokens_made_by_one_instance_are_accepted_by_another() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn latchkey_core::Store> =
        Arc::new(latchkey_store::SqliteStore::open(&dir.path().join("shared.db")).unwrap());
    let a = TestServer::start_on(store.clone(), |_| {}).await;
    // B: a second server on the same database (what a second `latchkey serve` is).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b_base = format!("http://{}", listener.local_addr().unwrap());
    let clock = Clock::system();
    let provider = Arc::new(Provider::open(store, ProviderConfig::new(&a.base), clock.now()).await.unwrap());
    tokio::spawn(latchkey_server::serve(listener, AppState::new(provider, clock), std::future::pending()));
    let browser = Browser::new();
    let page = browser.get(&a.authorize_url("spa", &CodeVerifier::generate(), "")).await;
    let (req, csrf) = (hidden(&page.body, "req"), hidden(&page.body, "csrf"));
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let form = [("req", req.as_str()), ("csrf", csrf.as_str()), ("username", "alice"), ("password", PASSWORD)];
    let res = http
        .post(format!("{b_base}/login"))
        .header("cookie", format!("latchkey_csrf={csrf}"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "a page from A posts to B");
}

// ---------------------------------------------------------------------------------------------
// The binary's start-up checks

struct Started {
    stdout: String,
    stderr: String,
    ok: bool,
}

/// Runs `latchkey args…`; if it prints a line containing `until` on stdout, it is stopped there.
async fn run_until(args: &[&str], until: &str) -> Started {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("LATCHKEY_DATABASE")
        .env_remove("LATCHKEY_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stdout = String::new();
    let read = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(l)) = lines.next_line().await {
            stdout.push_str(&l);
            stdout.push('\n');
            if l.contains(until) {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    if read {
        child.start_kill().unwrap();
    }
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await.unwrap().unwrap();
    Started { stdout, stderr: String::from_utf8_lossy(&out.stderr).into_owned(), ok: out.status.success() }
}

#[tokio::test]
async fn a_plain_http_issuer_and_a_password_on_the_command_line_are_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    let out = run_until(
        &["serve", "--listen", "127.0.0.1:0", "--issuer", "http://id.example.com", "--database", db.to_str().unwrap()],
        "listening on",
    )
    .await;
    assert!(out.stdout.contains("listening on"), "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("plain http"), "stderr: {}", out.stderr);

    // Refused to connect at once (nothing listens on port 1): the warning comes first.
    let out = run_until(&["migrate", "--database", "postgres://latchkey:s3cret@127.0.0.1:1/latchkey"], "\u{0}").await;
    assert!(!out.ok);
    assert!(out.stderr.contains("LATCHKEY_DATABASE"), "stderr: {}", out.stderr);
    assert!(!out.stderr.contains("s3cret"), "the password itself is not repeated: {}", out.stderr);
}

#[tokio::test]
async fn dev_mode_is_refused_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("d.db");
    // 192.0.2.1 (TEST-NET-1) is no address of this machine: nothing is bound, with or without the check.
    let out = run_until(
        &["serve", "--dev", "--listen", "192.0.2.1:8080", "--database", db.to_str().unwrap()],
        "listening on",
    )
    .await;
    assert!(!out.ok);
    assert!(out.stderr.contains("loopback"), "{}", out.stderr);
    let out = run_until(
        &[
            "serve",
            "--dev",
            "--listen",
            "127.0.0.1:0",
            "--issuer",
            "https://id.example.com",
            "--database",
            db.to_str().unwrap(),
        ],
        "listening on",
    )
    .await;
    assert!(!out.ok && out.stderr.contains("loopback"), "a public issuer in front of a loopback --dev: {}", out.stderr);
}

#[tokio::test]
async fn a_demo_user_left_by_dev_mode_is_reported_at_every_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let db = db.to_str().unwrap();
    let out = run_until(&["serve", "--dev", "--listen", "127.0.0.1:0", "--database", db], "listening on").await;
    assert!(out.stdout.contains("listening on"), "{}{}", out.stdout, out.stderr);
    for _ in 0..2 {
        let out = run_until(&["serve", "--listen", "127.0.0.1:0", "--database", db], "listening on").await;
        assert!(out.stderr.contains("publicly known password"), "stderr: {}", out.stderr);
    }
    // Once the password is changed, the warning goes.
    let out = Command::new(BIN)
        .args(["user", "set-password", "demo", "--password-stdin", "--database", db])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = out;
    out.stdin.take().unwrap().write_all(b"a-new-long-password").await.unwrap();
    let done = out.wait_with_output().await.unwrap();
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    let out = run_until(&["serve", "--listen", "127.0.0.1:0", "--database", db], "listening on").await;
    assert!(!out.stderr.contains("publicly known password"), "stderr: {}", out.stderr);
}

// ---------------------------------------------------------------------------------------------
// Log fields cannot be forged (review 19a)

#[tokio::test]
async fn request_text_cannot_forge_fields_of_the_text_log() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log.db");
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--database", db.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .env("LATCHKEY_LOG_FORMAT", "text")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let listen = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(l)) = lines.next_line().await {
            if let Some(at) = l.find("listening on http://") {
                return l[at + "listening on http://".len()..].trim().to_owned();
            }
        }
        panic!("the server did not start");
    })
    .await
    .unwrap();
    let forged = r#"https://x.example event="login_success" user_id="admin""#;
    let http = reqwest::Client::new();
    let res = http
        .request(reqwest::Method::OPTIONS, format!("http://{listen}/userinfo"))
        .header("origin", forged)
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let res = http
        .post(format!("http://{listen}/token"))
        // Well-formed, so it reaches the client lookup and is refused (and logged) there.
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", "c"),
            ("redirect_uri", "http://127.0.0.1:8765/callback"),
            ("code_verifier", &"v".repeat(43)),
            ("client_id", r#"x" user_id="admin"#),
        ])
        .send()
        .await
        .unwrap();
    assert!(res.status().is_client_error());
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.start_kill().unwrap();
    let out = child.wait_with_output().await.unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    let cors = log.lines().find(|l| l.contains("CORS preflight")).unwrap_or_else(|| panic!("{log}"));
    assert!(cors.contains(r#"origin="https://x.example event=\"login_success\" user_id=\"admin\"""#), "{cors}");
    let token = log.lines().find(|l| l.contains("token refused")).unwrap_or_else(|| panic!("{log}"));
    assert!(token.contains(r#"client_id="x\" user_id=\"admin""#), "{token}");
    assert!(!log.contains(r#" user_id="admin""#), "no forged field: {log}");
}
