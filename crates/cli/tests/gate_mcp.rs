//! `latchkey gate --resource` in front of an MCP server (Streamable HTTP): it serves RFC 9728
//! metadata itself, its challenges tell a client where to authorize and which scope to ask for, it
//! accepts only tokens minted for its resource, and it streams server-sent events as the upstream
//! sends them, with the MCP session headers passing both ways.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use latchkey_core::admin::NewClient;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::Notify;

const BIN: &str = env!("CARGO_BIN_EXE_latchkey");
const RESOURCE: &str = "https://mcp.example.com/mcp";
const PRM_URL: &str = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp";
/// The gate's request timeout in these tests; the SSE stream below outlives it.
const REQUEST_TIMEOUT: u64 = 2;

/// What the upstream saw of one request: its path and headers (names in lower case).
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    headers: Vec<(String, String)>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// A hand-written HTTP/1.1 upstream, so the test controls exactly when each byte leaves it.
/// `/mcp/stream` answers an SSE stream in chunks: event 1 at once, event 2 only after
/// `go_on` is notified (the test does so once event 1 has come out of the gate) and the
/// gate's request timeout has passed. Any other path answers JSON with an `mcp-session-id`.
struct Upstream {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    go_on: Arc<Notify>,
}

async fn upstream() -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let go_on = Arc::new(Notify::new());
    let (s2, g2) = (seen.clone(), go_on.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(serve_one(tcp, s2.clone(), g2.clone()));
        }
    });
    Upstream { base, seen, go_on }
}

async fn serve_one(tcp: TcpStream, seen: Arc<Mutex<Vec<Seen>>>, go_on: Arc<Notify>) {
    let mut reader = BufReader::new(tcp);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).await.unwrap_or(0) == 0 {
        return;
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("").to_owned();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':').unwrap();
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    let seen_now = Seen { path: path.clone(), headers };
    let length = seen_now.header("content-length").and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await.unwrap();
    seen.lock().unwrap().push(seen_now);
    if path == "/mcp/upload" {
        // A chunked request body: say when the first chunk is here, then read to the end.
        let mut size = String::new();
        reader.read_line(&mut size).await.unwrap();
        let mut first = vec![0; usize::from_str_radix(size.trim(), 16).unwrap() + 2];
        reader.read_exact(&mut first).await.unwrap();
        go_on.notify_one();
        let mut rest = Vec::new();
        while !rest.ends_with(b"0\r\n\r\n") {
            let mut line = Vec::new();
            if reader.read_until(b'\n', &mut line).await.unwrap() == 0 {
                break;
            }
            rest.extend_from_slice(&line);
        }
    }
    let mut tcp = reader.into_inner();
    if path == "/mcp/stream" {
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\
                    mcp-session-id: session-from-upstream\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
        tcp.write_all(head.as_bytes()).await.unwrap();
        let chunk = |s: &str| format!("{:x}\r\n{s}\r\n", s.len());
        tcp.write_all(chunk("id: 1\ndata: {\"event\":1}\n\n").as_bytes()).await.unwrap();
        tcp.flush().await.unwrap();
        // Event 2 waits for the test to see event 1 through the gate: a buffering gate deadlocks
        // here until the test's own timeout fails it.
        if tokio::time::timeout(Duration::from_secs(20), go_on.notified()).await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(REQUEST_TIMEOUT * 1000 + 500)).await;
        tcp.write_all(chunk("id: 2\ndata: {\"event\":2}\n\n").as_bytes()).await.unwrap();
        tcp.write_all(b"0\r\n\r\n").await.unwrap();
    } else {
        let body = r#"{"jsonrpc":"2.0","id":1,"result":{}}"#;
        let res = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nmcp-session-id: session-from-upstream\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        tcp.write_all(res.as_bytes()).await.unwrap();
    }
    let _ = tcp.shutdown().await;
}

struct Setup {
    server: TestServer,
    up: Upstream,
    gate: String,
    http: reqwest::Client,
    _child: Child,
}

/// A client-credentials token from the test issuer for `audience`, with `scope`.
async fn token(s: &TestServer, id: &str, audience: &str, scope: &str) -> String {
    let secret = s
        .add(NewClient {
            confidential: true,
            client_credentials: true,
            extra_scopes: scope.split(' ').map(str::to_owned).collect(),
            audiences: vec![audience.into()],
            ..NewClient::public(id, id, vec![])
        })
        .await
        .unwrap();
    let (st, t) = s
        .post_form("/token", Some((id, secret.as_str())), &[("grant_type", "client_credentials"), ("scope", scope)])
        .await;
    assert_eq!(st, 200, "{t}");
    t["access_token"].as_str().unwrap().to_owned()
}

/// The issuer, the upstream, and a gate for RESOURCE that needs `mcp:tools`.
async fn setup() -> Setup {
    let server = TestServer::start().await;
    let up = upstream().await;
    let mut child = Command::new(BIN)
        .args(["gate", "--listen", "127.0.0.1:0", "--upstream", &up.base, "--issuer", &server.base])
        .args(["--resource", RESOURCE, "--require-scope", "mcp:tools", "--resource-name", "Test MCP"])
        .args(["--scope", "mcp:tools", "--scope", "mcp:admin"])
        .args(["--request-timeout", &REQUEST_TIMEOUT.to_string()])
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
        .find(|w| w.starts_with("http://"))
        .expect("the gate's address")
        .trim_end_matches(',')
        .to_owned();
    Setup { server, up, gate, http: reqwest::Client::new(), _child: child }
}

fn challenge(res: &reqwest::Response) -> String {
    res.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

#[tokio::test]
async fn metadata_is_served_by_the_gate_at_both_well_known_paths() {
    let s = setup().await;
    let want = json!({
        "resource": RESOURCE,
        "authorization_servers": [s.server.base],
        "scopes_supported": ["mcp:tools", "mcp:admin"],
        "bearer_methods_supported": ["header"],
        "resource_name": "Test MCP",
        // DPoP-bound tokens are accepted by default once the gate knows its URL (the resource's).
        "dpop_signing_alg_values_supported": ["ES256", "ES384", "EdDSA", "RS256", "PS256"],
    });
    for path in ["/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"] {
        let res = s.http.get(format!("{}{path}", s.gate)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}: no token needed");
        assert_eq!(res.json::<Value>().await.unwrap(), want, "{path}");
    }
    assert!(s.up.seen.lock().unwrap().is_empty(), "answered by the gate, not forwarded");
}

#[tokio::test]
async fn challenges_point_at_the_metadata_and_name_the_scope() {
    let s = setup().await;
    let mcp = format!("{}/mcp", s.gate);
    let res = s.http.post(&mcp).body("{}").send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(challenge(&res), format!("Bearer resource_metadata=\"{PRM_URL}\", scope=\"mcp:tools\""));

    let res = s.http.post(&mcp).bearer_auth("garbage").body("{}").send().await.unwrap();
    assert_eq!(res.status(), 401);
    let c = challenge(&res);
    assert!(c.starts_with("Bearer error=\"invalid_token\", error_description=\""), "{c}");
    assert!(c.ends_with(&format!("resource_metadata=\"{PRM_URL}\", scope=\"mcp:tools\"")), "{c}");

    // A token for this resource without the route's scope: 403 naming it, metadata included.
    let narrow = token(&s.server, "narrow", RESOURCE, "mcp:read").await;
    let res = s.http.post(&mcp).bearer_auth(&narrow).body("{}").send().await.unwrap();
    assert_eq!(res.status(), 403);
    let c = challenge(&res);
    assert!(c.starts_with("Bearer error=\"insufficient_scope\""), "{c}");
    assert!(c.ends_with(&format!("resource_metadata=\"{PRM_URL}\", scope=\"mcp:tools\"")), "{c}");
    assert!(s.up.seen.lock().unwrap().is_empty(), "nothing refused reaches the upstream");
}

#[tokio::test]
async fn a_token_minted_for_another_resource_is_refused() {
    let s = setup().await;
    let other = token(&s.server, "other", "https://other.example.com/mcp", "mcp:tools").await;
    let res = s.http.post(format!("{}/mcp", s.gate)).bearer_auth(&other).body("{}").send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert!(challenge(&res).contains("error=\"invalid_token\""));
    let body: Value = res.json().await.unwrap();
    let d = body["error_description"].as_str().unwrap();
    assert!(d.contains("https://other.example.com/mcp") && d.contains(RESOURCE), "{d}");
    assert!(s.up.seen.lock().unwrap().is_empty());
    // The issuer's default audience is not this resource either.
    let default = token(&s.server, "plain", &s.server.base, "mcp:tools").await;
    let res = s.http.post(format!("{}/mcp", s.gate)).bearer_auth(&default).body("{}").send().await.unwrap();
    assert_eq!(res.status(), 401);
    // The right one passes, and the session headers cross both ways.
    let good = token(&s.server, "good", RESOURCE, "mcp:tools").await;
    let res = s
        .http
        .post(format!("{}/mcp", s.gate))
        .bearer_auth(&good)
        .header("mcp-session-id", "session-from-client")
        .header("mcp-protocol-version", "2025-11-25")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["mcp-session-id"], "session-from-upstream");
    let seen = s.up.seen.lock().unwrap()[0].clone();
    assert_eq!(seen.header("mcp-session-id"), Some("session-from-client"));
    assert_eq!(seen.header("mcp-protocol-version"), Some("2025-11-25"));
}

#[tokio::test]
async fn server_sent_events_stream_through_the_gate_as_the_upstream_sends_them() {
    let s = setup().await;
    let good = token(&s.server, "good", RESOURCE, "mcp:tools").await;
    let mut res = s
        .http
        .get(format!("{}/mcp/stream", s.gate))
        .bearer_auth(&good)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", "session-from-client")
        .header("last-event-id", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    assert_eq!(res.headers()["mcp-session-id"], "session-from-upstream");
    {
        let seen = s.up.seen.lock().unwrap()[0].clone();
        assert_eq!(seen.path, "/mcp/stream");
        assert_eq!(seen.header("mcp-session-id"), Some("session-from-client"));
        assert_eq!(seen.header("last-event-id"), Some("0"));
    }
    // Event 1 must arrive while the upstream holds event 2 back.
    let mut got = String::new();
    while !got.contains("\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), res.chunk())
            .await
            .expect("event 1 did not come through while the upstream waits: the gate buffers the stream")
            .unwrap()
            .expect("the stream ended before event 1");
        got.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert_eq!(got, "id: 1\ndata: {\"event\":1}\n\n");
    s.up.go_on.notify_one();
    // Event 2 comes after the gate's request timeout has passed: the stream is not cut.
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(15), res.chunk()).await.unwrap().unwrap() {
        got.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert_eq!(got, "id: 1\ndata: {\"event\":1}\n\nid: 2\ndata: {\"event\":2}\n\n");
}

#[tokio::test]
async fn request_bodies_stream_to_the_upstream() {
    let s = setup().await;
    let good = token(&s.server, "good", RESOURCE, "mcp:tools").await;
    let mut tcp = TcpStream::connect(s.gate.trim_start_matches("http://")).await.unwrap();
    let head = format!(
        "POST /mcp/upload HTTP/1.1\r\nHost: gate\r\nAuthorization: Bearer {good}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nfirst\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    // The upstream must see the first chunk while the client still holds the rest back.
    tokio::time::timeout(Duration::from_secs(10), s.up.go_on.notified())
        .await
        .expect("the first chunk did not reach the upstream: the gate buffers request bodies");
    tcp.write_all(b"6\r\nsecond\r\n0\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_string(&mut answer)).await.unwrap().unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
