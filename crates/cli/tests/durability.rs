//! The real `latchkey serve` process under crashes and shutdowns: SIGKILL in the middle of a load of
//! code exchanges and refreshes, then a restart on the same database, several times; and SIGTERM
//! with a request in flight.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Browser, Page, hidden};
use latchkey_proto::CodeVerifier;
use latchkey_store::SqliteStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_latchkey");
const CLIENT: &str = "latchkey-demo";
const REDIRECT: &str = "http://127.0.0.1:8765/callback";

/// The binary, serving `--dev` on a fixed port and database, so a restart has the same issuer.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(db: &std::path::Path, port: u16, log: &std::path::Path) -> Self {
        let child = Command::new(BIN)
            .args(["serve", "--dev", "--listen", &format!("127.0.0.1:{port}"), "--database"])
            .arg(db)
            .env("RUST_LOG", "info")
            // Strict rotation: without the grace window, a second use of a token must fail.
            .env("LATCHKEY_REFRESH_GRACE", "0")
            .env_remove("LATCHKEY_CONFIG")
            .stdout(Stdio::null())
            .stderr(std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "server did not start: {}", std::fs::read_to_string(log).unwrap());
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port }
    }
    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
    fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([sig, &self.child.id().to_string()]).status().unwrap().success();
        assert!(ok, "kill {sig} failed");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn authorize_url(base: &str, v: &CodeVerifier) -> String {
    let mut u = url::Url::parse(&format!("{base}/authorize")).unwrap();
    u.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", CLIENT)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("scope", "openid profile")
        .append_pair("code_challenge", v.challenge().as_str())
        .append_pair("code_challenge_method", "S256");
    u.into()
}

/// Logs the demo user in and consents once; later authorizations redirect with a code at once.
async fn sign_in(base: &str) -> Browser {
    let b = Browser::new();
    let v = CodeVerifier::generate();
    let page = b.get(&authorize_url(base, &v)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let res = b.submit_login(base, &page.body, "demo", "demo-password").await;
    assert_eq!(res.status, 303, "{}", res.body);
    let consent = b.get(&format!("{base}{}", res.location())).await;
    let res = b.submit_consent(base, &consent.body, "allow").await;
    assert!(res.redirect_query().contains_key("code"));
    b
}

async fn code(b: &Browser, base: &str, v: &CodeVerifier) -> Result<String, String> {
    let res = b.http.get(authorize_url(base, v)).send().await.map_err(|e| e.to_string())?;
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.text().await.map_err(|e| e.to_string())?;
    // A loopback app is asked every time (RFC 8252 §8.6): allow on the consent page.
    let page = if status == 200 && body.contains(r#"value="allow""#) {
        let (req, csrf) = (hidden(&body, "req"), hidden(&body, "csrf"));
        let form = [("req", req.as_str()), ("csrf", csrf.as_str()), ("decision", "allow")];
        let res = b.http.post(format!("{base}/consent")).form(&form).send().await.map_err(|e| e.to_string())?;
        Page { status: res.status().as_u16(), headers: res.headers().clone(), body: String::new() }
    } else {
        Page { status, headers, body }
    };
    page.redirect_query().get("code").cloned().ok_or_else(|| format!("no code: {}", page.location()))
}

/// POST /token; `Err` when no complete response came back (the server died under the request).
async fn token(http: &reqwest::Client, base: &str, form: &[(&str, &str)]) -> Result<(u16, serde_json::Value), String> {
    let res = http.post(format!("{base}/token")).form(form).send().await.map_err(|e| e.to_string())?;
    let status = res.status().as_u16();
    let body = res.json().await.map_err(|e| e.to_string())?;
    Ok((status, body))
}

async fn exchange(
    http: &reqwest::Client,
    base: &str,
    code: &str,
    v: &CodeVerifier,
) -> Result<(u16, serde_json::Value), String> {
    token(
        http,
        base,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("client_id", CLIENT),
            ("code_verifier", v.expose_secret()),
        ],
    )
    .await
}

async fn refresh(http: &reqwest::Client, base: &str, rt: &str) -> Result<(u16, serde_json::Value), String> {
    token(http, base, &[("grant_type", "refresh_token"), ("refresh_token", rt), ("client_id", CLIENT)]).await
}

/// What one client learned during the load. Only what it received counts: a request cut off by
/// the crash may or may not have committed, and the client cannot know which.
#[derive(Default, Debug)]
struct Ledger {
    /// Codes whose exchange returned tokens.
    redeemed: Vec<(String, CodeVerifier)>,
    /// Codes sent for exchange with no answer.
    codes_in_flight: Vec<(String, CodeVerifier)>,
    families: Vec<Family>,
}

#[derive(Default, Debug)]
struct Family {
    /// The newest refresh token the client received.
    current: String,
    /// The ones it already exchanged for a newer one.
    rotated: Vec<String>,
    /// `current` was sent with no answer: it may have rotated or not.
    in_flight: bool,
}

/// Code exchanges and refreshes until the server dies or `stop` is set.
async fn load(b: Arc<Browser>, base: String, ledger: Arc<Mutex<Ledger>>, stop: Arc<AtomicBool>) {
    let http = reqwest::Client::new();
    while !stop.load(Ordering::SeqCst) {
        let v = CodeVerifier::generate();
        let Ok(code) = code(&b, &base, &v).await else { return };
        let tokens = match exchange(&http, &base, &code, &v).await {
            Ok((200, t)) => t,
            Ok((st, body)) => panic!("exchange refused during load: {st} {body}"),
            Err(_) => {
                ledger.lock().unwrap().codes_in_flight.push((code, v));
                return;
            }
        };
        let mut rt = tokens["refresh_token"].as_str().unwrap().to_owned();
        let family = {
            let mut l = ledger.lock().unwrap();
            l.redeemed.push((code, v));
            l.families.push(Family { current: rt.clone(), ..Family::default() });
            l.families.len() - 1
        };
        for _ in 0..3 {
            match refresh(&http, &base, &rt).await {
                Ok((200, t)) => {
                    let new = t["refresh_token"].as_str().unwrap().to_owned();
                    let mut l = ledger.lock().unwrap();
                    let f = &mut l.families[family];
                    f.rotated.push(std::mem::replace(&mut f.current, new.clone()));
                    rt = new;
                }
                Ok((st, body)) => panic!("refresh refused during load: {st} {body}"),
                Err(_) => {
                    ledger.lock().unwrap().families[family].in_flight = true;
                    return;
                }
            }
        }
    }
}

async fn integrity(db: &std::path::Path) {
    let store = SqliteStore::open(db).unwrap();
    assert_eq!(store.integrity_check().await.unwrap(), "ok", "PRAGMA integrity_check after the crash");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_load_loses_nothing_a_client_was_told_and_replays_nothing() {
    const CYCLES: usize = 5;
    const WORKERS: usize = 6;
    let dir = tempfile::tempdir().unwrap();
    let (db, log) = (dir.path().join("crash.db"), dir.path().join("server.log"));
    let port = free_port();
    let mut browser: Option<Arc<Browser>> = None;
    let mut totals: HashMap<&str, usize> = HashMap::new();

    for cycle in 0..CYCLES {
        let mut server = Server::start(&db, port, &log);
        let base = server.base();
        let b = match &browser {
            Some(b) => b.clone(),
            None => browser.insert(Arc::new(sign_in(&base).await)).clone(),
        };
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> =
            (0..WORKERS).map(|_| tokio::spawn(load(b.clone(), base.clone(), ledger.clone(), stop.clone()))).collect();
        // Kill once the load is well under way, at a different point in every cycle: after more
        // rotations each time, and a few milliseconds off any request boundary.
        let deadline = Instant::now() + Duration::from_secs(30);
        let rotations = |l: &Ledger| l.families.iter().map(|f| f.rotated.len()).sum::<usize>();
        while rotations(&ledger.lock().unwrap()) < 50 * (cycle + 1) {
            assert!(Instant::now() < deadline, "cycle {cycle}: the load made no progress");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(1 + (cycle as u64 * 37) % 50)).await;
        server.child.kill().unwrap();
        let status = server.child.wait().unwrap();
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9), "killed by SIGKILL");
        for w in workers {
            w.await.unwrap();
        }
        stop.store(true, Ordering::SeqCst);
        drop(server);
        integrity(&db).await;

        let server = Server::start(&db, port, &log);
        let http = reqwest::Client::new();
        let l = std::mem::take(&mut *ledger.lock().unwrap());
        assert!(
            l.families.iter().any(|f| !f.rotated.is_empty()),
            "cycle {cycle}: the load did nothing before the kill"
        );

        // Every refresh token the client received works exactly once; the ones it rotated never.
        // One sent when the server died either rotated or not, but never works twice.
        for f in &l.families {
            let (st, body) = refresh(&http, &base, &f.current).await.unwrap();
            if f.in_flight {
                assert!(st == 200 || st == 400, "{st}: {body}");
            } else {
                assert_eq!(st, 200, "cycle {cycle}: a refresh token the client received was lost: {body}");
            }
            let (st, body) = refresh(&http, &base, &f.current).await.unwrap();
            assert_eq!((st, body["error"].as_str()), (400, Some("invalid_grant")), "cycle {cycle}: used twice");
            for old in &f.rotated {
                let (st, _) = refresh(&http, &base, old).await.unwrap();
                assert_eq!(st, 400, "cycle {cycle}: a rotated refresh token works again");
            }
        }
        // No code that succeeded succeeds again; one cut off by the crash succeeds at most once.
        for (code, v) in &l.redeemed {
            let (st, body) = exchange(&http, &base, code, v).await.unwrap();
            assert_eq!((st, body["error"].as_str()), (400, Some("invalid_grant")), "cycle {cycle}: code replayed");
        }
        for (code, v) in &l.codes_in_flight {
            let first = exchange(&http, &base, code, v).await.unwrap().0;
            assert!(first == 200 || first == 400, "{first}");
            assert_eq!(exchange(&http, &base, code, v).await.unwrap().0, 400, "cycle {cycle}: code redeemed twice");
        }
        for (k, n) in [
            ("refresh families", l.families.len()),
            ("rotations", l.families.iter().map(|f| f.rotated.len()).sum()),
            ("codes redeemed", l.redeemed.len()),
            ("in-flight refreshes", l.families.iter().filter(|f| f.in_flight).count()),
            ("in-flight codes", l.codes_in_flight.len()),
        ] {
            *totals.entry(k).or_default() += n;
        }
        drop(server);
    }
    integrity(&db).await;
    eprintln!("crash test: {CYCLES} SIGKILL/restart cycles; checked {totals:?}");
}

/// SIGTERM: the listener closes at once, a request already in flight still gets its answer, and
/// the process exits 0.
#[tokio::test]
async fn sigterm_finishes_the_request_in_flight_refuses_new_ones_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let (db, log) = (dir.path().join("term.db"), dir.path().join("server.log"));
    let mut server = Server::start(&db, free_port(), &log);
    let base = server.base();
    let b = sign_in(&base).await;
    let v = CodeVerifier::generate();
    let code = code(&b, &base, &v).await.unwrap();

    // A token request whose body is only half sent when the signal arrives.
    let body = format!(
        "grant_type=authorization_code&code={code}&redirect_uri={}&client_id={CLIENT}&code_verifier={}",
        url::form_urlencoded::byte_serialize(REDIRECT.as_bytes()).collect::<String>(),
        v.expose_secret()
    );
    let mut in_flight = tokio::net::TcpStream::connect(("127.0.0.1", server.port)).await.unwrap();
    let head = format!(
        "POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    in_flight.write_all(head.as_bytes()).await.unwrap();
    in_flight.write_all(&body.as_bytes()[..10]).await.unwrap();
    // An idle keep-alive connection, which shutdown closes instead of waiting for.
    let mut idle = tokio::net::TcpStream::connect(("127.0.0.1", server.port)).await.unwrap();
    // Time for the server to read the request head, so the request is in flight, not queued.
    tokio::time::sleep(Duration::from_secs(1)).await;

    server.signal("-TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", server.port)).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting connections 10 s after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut buf = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(10), idle.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "the idle connection is closed: {closed:?}");
    assert!(server.child.try_wait().unwrap().is_none(), "exited with a request in flight");

    in_flight.write_all(&body.as_bytes()[10..]).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), in_flight.read_to_end(&mut response)).await.unwrap().unwrap();
    let response = String::from_utf8(response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 "), "{response}");
    assert!(response.contains("\"access_token\""), "{response}");

    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "did not exit after its last request");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM");
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.contains("shutdown signal received") && logs.contains("shut down cleanly"), "{logs}");
}
