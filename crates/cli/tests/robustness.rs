//! Thousands of generated malformed requests against every endpoint of a real server on 127.0.0.1:
//! wrong methods, broken percent-encoding, huge values, missing and repeated parameters, non-UTF-8
//! bytes, wrong content types, oversized bodies, broken framing. None may get a 5xx or panic the
//! server, every refusal must be well formed, and afterwards the full flow still works.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use latchkey_proto::CodeVerifier;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How many generated requests; bounded in count and in time, so the test always ends.
const REQUESTS: usize = 6000;
const TIME_LIMIT: Duration = Duration::from_secs(90);
const CONCURRENCY: usize = 8;

/// Every route, and one that does not exist.
const PATHS: &[&str] = &[
    "/authorize",
    "/login",
    "/consent",
    "/token",
    "/userinfo",
    "/.well-known/openid-configuration",
    "/.well-known/oauth-authorization-server",
    "/jwks.json",
    "/assets/latchkey.css",
    "/healthz",
    "/nope",
];

/// Endpoints that speak JSON; the others are pages a person sees.
fn is_api(path: &str) -> bool {
    matches!(path, "/token" | "/userinfo" | "/jwks.json") || path.starts_with("/.well-known/")
}

const NAMES: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "prompt",
    "code_challenge",
    "code_challenge_method",
    "grant_type",
    "code",
    "code_verifier",
    "refresh_token",
    "client_secret",
    "req",
    "csrf",
    "username",
    "password",
    "decision",
    "response_mode",
    "request",
];

/// xorshift64*: deterministic, so a failure reproduces from its seed and index.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// A parameter value: plausible, empty, huge, or broken in one of the ways clients break them.
fn value(rng: &mut Rng, challenge: &str) -> Vec<u8> {
    let plausible: &[&str] = &[
        "code",
        "spa",
        "http%3A%2F%2F127.0.0.1%3A8765%2Fcallback",
        "http://127.0.0.1:8765/callback",
        "openid+profile+email",
        "S256",
        "plain",
        "authorization_code",
        "refresh_token",
        "alice",
        "allow",
        "deny",
        "none",
        "login",
        "query",
        challenge,
    ];
    match rng.below(14) {
        0..=3 => plausible[rng.below(plausible.len())].as_bytes().to_vec(),
        4 => Vec::new(),
        5 => "A".repeat(8193 + rng.below(4000)).into_bytes(),
        6 => "%41".repeat(3000).into_bytes(),
        7 => rng.pick(&["%", "%G1", "%zz", "abc%", "%%", "%4", "%E9", "%C3%28", "%ED%A0%80"]).as_bytes().to_vec(),
        8 => rng.pick(&["%FF%FE%FD", "%00", "%0D%0A", "%0A", "%22%3E%3Cscript%3E", "%E2%80%AE"]).as_bytes().to_vec(),
        9 => vec![0xff, 0xfe, b'x', 0x80, 0xc3],
        10 => "+".repeat(1 + rng.below(200)).into_bytes(),
        11 => (0..rng.below(64)).map(|_| (rng.below(95) + 32) as u8).collect(),
        12 => "x".repeat(rng.below(129)).into_bytes(),
        _ => "é€\u{0}\u{feff}".as_bytes().to_vec(),
    }
}

/// A query string or form body: random names from the protocol, some missing, some repeated,
/// sometimes too many of them, sometimes with no `=` or stray `&`.
fn params(rng: &mut Rng, challenge: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let count = if rng.chance(5) { 60 + rng.below(20) } else { rng.below(10) };
    for i in 0..count {
        if i > 0 {
            out.extend_from_slice(if rng.chance(3) { b"&&" } else { b"&" });
        }
        let name = if rng.chance(5) { format!("x{}", rng.below(1000)) } else { (*rng.pick(NAMES)).to_owned() };
        out.extend_from_slice(name.as_bytes());
        if rng.chance(95) {
            out.push(b'=');
            out.extend(value(rng, challenge));
        }
        if rng.chance(5) {
            // The same parameter again (RFC 6749 §3.1 forbids it).
            out.extend_from_slice(format!("&{name}=again").as_bytes());
        }
    }
    out
}

struct Generated {
    path: &'static str,
    method: &'static str,
    raw: Vec<u8>,
    /// The request line itself is not valid HTTP: hyper answers it before any handler runs.
    broken_http: bool,
}

fn generate(rng: &mut Rng, challenge: &str, cookie_names: &[&str]) -> Generated {
    let path = *rng.pick(PATHS);
    let method =
        *rng.pick(&["GET", "GET", "POST", "POST", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "BREW"]);
    let mut target = path.as_bytes().to_vec();
    if rng.chance(60) {
        target.push(b'?');
        target.extend(params(rng, challenge));
    }
    // Bytes the request target may not carry raw; the server must still answer sanely.
    let broken_http = rng.chance(2);
    if broken_http {
        target.extend_from_slice(&[0xff, b' ', 0x01]);
    }
    // Everything else is percent-encoded as a client library would send it, except `%` itself, so
    // broken escapes stay broken.
    let target: Vec<u8> = if broken_http {
        target
    } else {
        target
            .iter()
            .flat_map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' => vec![*b],
                b'-' | b'.' | b'_' | b'~' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' => {
                    vec![*b]
                }
                b'=' | b':' | b'@' | b'/' | b'?' | b'%' => vec![*b],
                _ => format!("%{b:02X}").into_bytes(),
            })
            .collect()
    };
    // The `http` crate refuses longer request targets; hyper answers 414 before any handler runs.
    let broken_http = broken_http || target.len() > usize::from(u16::MAX - 1);

    let mut headers: Vec<Vec<u8>> = vec![b"Host: 127.0.0.1".to_vec(), b"Connection: close".to_vec()];
    let content_type = *rng.pick(&[
        Some("application/x-www-form-urlencoded"),
        Some("application/x-www-form-urlencoded"),
        Some("application/x-www-form-urlencoded; charset=ISO-8859-1"),
        Some("application/json"),
        Some("text/plain"),
        Some("multipart/form-data; boundary=x"),
        Some("x-garbage/\u{e9}t\u{e9}"),
        None,
    ]);
    if let Some(ct) = content_type {
        headers.push(format!("Content-Type: {ct}").into_bytes());
    }
    match rng.below(8) {
        0 => headers.push(b"Authorization: Basic !!!not-base64".to_vec()),
        1 => headers.push(b"Authorization: Basic c3BhOg==".to_vec()),
        2 => headers.push(format!("Authorization: Bearer {}", "e".repeat(rng.below(10_000))).into_bytes()),
        3 => headers.push([b"Authorization: Basic ".as_slice(), &[0xff, 0xfe, 0x80]].concat()),
        4 => {
            headers.push(b"Authorization: Bearer a".to_vec());
            headers.push(b"Authorization: Bearer b".to_vec());
        }
        5 => headers.push(b"Authorization: Bearer eyJhbGciOiJub25lIn0.e30.".to_vec()),
        _ => {}
    }
    if rng.chance(30) {
        let name = rng.pick(cookie_names);
        // Header values may carry any visible byte, never a control character.
        let v: String =
            String::from_utf8_lossy(&value(rng, challenge)).chars().filter(|c| !c.is_control() && *c != ';').collect();
        headers.push(format!("Cookie: {name}={v}; {name}=second").into_bytes());
    }
    if rng.chance(5) {
        headers.push([b"X-Request-Id: ".as_slice(), &[0xc3, 0x28, b'r']].concat());
    }

    let mut body =
        if method == "GET" || method == "HEAD" || rng.chance(10) { Vec::new() } else { params(rng, challenge) };
    if rng.chance(4) {
        body = vec![b'a'; 64 * 1024 + 1 + rng.below(20_000)];
    }
    if rng.chance(3) {
        body.extend_from_slice(&[0xff, 0x00, 0xfe]);
    }
    let chunked = rng.chance(10);
    if chunked {
        headers.push(b"Transfer-Encoding: chunked".to_vec());
        let mut framed = Vec::new();
        for chunk in body.chunks(4096) {
            framed.extend(format!("{:x}\r\n", chunk.len()).into_bytes());
            framed.extend_from_slice(chunk);
            framed.extend_from_slice(b"\r\n");
        }
        if rng.chance(20) {
            framed.extend_from_slice(b"zz\r\nbroken chunk size\r\n");
        }
        framed.extend_from_slice(b"0\r\n\r\n");
        body = framed;
    } else {
        headers.push(format!("Content-Length: {}", body.len()).into_bytes());
    }

    let mut raw = Vec::new();
    raw.extend_from_slice(method.as_bytes());
    raw.push(b' ');
    raw.extend(target);
    raw.extend_from_slice(b" HTTP/1.1\r\n");
    for h in headers {
        raw.extend(h);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"\r\n");
    raw.extend(body);
    Generated { path, method, raw, broken_http }
}

struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Sends raw bytes and reads one response until the server closes (`Connection: close`). The body
/// is written from another task, so a server that answers early (a 413) is read, not deadlocked.
async fn exchange(addr: &str, raw: Vec<u8>) -> Result<RawResponse, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        // The server may close early and reset the rest: a refused upload is not a failure.
        let _ = wr.write_all(&raw).await;
        let _ = wr.flush().await;
        wr
    });
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match rd.read(&mut chunk).await {
                Ok(0) => return Ok(()),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                // A reset after the whole response arrived (the server closed with our upload unread).
                Err(_) if !buf.is_empty() => return Ok::<(), String>(()),
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    })
    .await
    .map_err(|_| "no response within 20 s".to_owned())?;
    read?;
    drop(writer.await);
    parse_response(&buf)
}

fn parse_response(buf: &[u8]) -> Result<RawResponse, String> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| format!("no response head in {buf:?}"))?;
    let head = std::str::from_utf8(&buf[..end])
        .map_err(|_| format!("response head is not UTF-8: {:?}", String::from_utf8_lossy(&buf[..end])))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status =
        status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or(format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = buf[end + 4..].to_vec();
    if headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked")) {
        body = dechunk(&body)?;
    }
    Ok(RawResponse { status, headers, body })
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let nl = b.windows(2).position(|w| w == b"\r\n").ok_or("bad chunk")?;
        let size = usize::from_str_radix(std::str::from_utf8(&b[..nl]).map_err(|_| "bad chunk")?.trim(), 16)
            .map_err(|_| "bad chunk size")?;
        b = &b[nl + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(b.get(..size).ok_or("short chunk")?);
        b = b.get(size + 2..).ok_or("short chunk")?;
    }
}

/// The checks every answer must pass. Returns a description of what is wrong, if anything.
fn judge(g: &Generated, r: &RawResponse) -> Result<(), String> {
    if r.status >= 500 {
        return Err(format!("{} (server error): {}", r.status, String::from_utf8_lossy(&r.body)));
    }
    if r.header("x-request-id").is_none() {
        // Only hyper's HTTP parser answers without going through the app, and only for what is not
        // HTTP at all (a raw control byte in the target) or a target over the `http` crate's limit.
        return if g.broken_http && matches!(r.status, 400 | 414) && r.body.is_empty() {
            Ok(())
        } else {
            Err(format!("{} without x-request-id", r.status))
        };
    }
    if !(400..500).contains(&r.status) || g.method == "HEAD" {
        return Ok(());
    }
    let ct = r.header("content-type").unwrap_or("");
    if is_api(g.path) && !(g.path == "/userinfo" && r.status == 401 && r.body.is_empty()) {
        // RFC 6749 §5.2 / RFC 6750 §3: a JSON object with an `error` code.
        if !ct.starts_with("application/json") {
            return Err(format!("{} with content-type {ct:?}: {}", r.status, String::from_utf8_lossy(&r.body)));
        }
        let v: serde_json::Value =
            serde_json::from_slice(&r.body).map_err(|e| format!("{} not JSON: {e}", r.status))?;
        let error = v["error"].as_str().ok_or(format!("{} without error: {v}", r.status))?;
        if error.is_empty() || !error.bytes().all(|b| b == b'_' || b.is_ascii_lowercase()) {
            return Err(format!("bad error code {error:?}"));
        }
        if r.header("cache-control") != Some("no-store") {
            return Err(format!("{} JSON error without Cache-Control: no-store", r.status));
        }
    } else if g.path == "/userinfo" {
        // RFC 6750 §3.1: no credentials at all is a bare challenge.
        if !r.header("www-authenticate").is_some_and(|v| v.starts_with("Bearer realm=")) {
            return Err("401 without a Bearer challenge".to_owned());
        }
    } else {
        let body = std::str::from_utf8(&r.body).map_err(|_| "HTML page is not UTF-8".to_owned())?;
        if !ct.starts_with("text/html") || !body.starts_with("<!doctype html>") || !body.trim_end().ends_with("</html>")
        {
            return Err(format!("{} is not a whole HTML page ({ct}): {body}", r.status));
        }
        if !body.contains(r#"<p class="error" role="alert">"#) {
            return Err(format!("{} page does not say what went wrong: {body}", r.status));
        }
        for (h, want) in
            [("x-frame-options", "DENY"), ("x-content-type-options", "nosniff"), ("referrer-policy", "no-referrer")]
        {
            if r.header(h) != Some(want) {
                return Err(format!("{} page without {h}: {want}", r.status));
            }
        }
        if !r.header("content-security-policy").is_some_and(|v| v.contains("frame-ancestors 'none'")) {
            return Err(format!("{} page without its CSP", r.status));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousands_of_malformed_requests_get_well_formed_refusals_and_the_flow_still_works() {
    // A panic anywhere in the server (a handler, a hyper task) is counted, not only a dropped connection.
    let panics = Arc::new(AtomicUsize::new(0));
    let counter = panics.clone();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        counter.fetch_add(1, Ordering::SeqCst);
        previous(info);
    }));

    let s = Arc::new(TestServer::start().await);
    let addr = s.base.trim_start_matches("http://").to_owned();
    let challenge = CodeVerifier::generate().challenge().as_str().to_owned();
    let seed = std::env::var("ROBUSTNESS_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x5eed_1a7c_4e11_0001u64);
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (next, addr, challenge) = (next.clone(), addr.clone(), challenge.clone());
        workers.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= REQUESTS || started.elapsed() > TIME_LIMIT {
                    return (failures, statuses);
                }
                let mut rng = Rng(seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let g = generate(&mut rng, &challenge, &["latchkey_session", "latchkey_csrf", "other"]);
                let outcome = exchange(&addr, g.raw.clone()).await.and_then(|r| {
                    *statuses.entry(r.status).or_default() += 1;
                    judge(&g, &r)
                });
                if let Err(e) = outcome {
                    let shown = String::from_utf8_lossy(&g.raw[..g.raw.len().min(300)]).into_owned();
                    failures.push(format!("request #{i} ({} {}): {e}\n  sent: {shown:?}", g.method, g.path));
                }
            }
        }));
    }
    let mut failures = Vec::new();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for w in workers {
        let (f, st) = w.await.unwrap();
        failures.extend(f);
        for (k, v) in st {
            *statuses.entry(k).or_default() += v;
        }
    }
    let sent = next.load(Ordering::SeqCst).min(REQUESTS);
    eprintln!("robustness: {sent} requests in {:?}; statuses {statuses:?}", started.elapsed());
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed:\n{}",
        failures.len(),
        failures[..failures.len().min(10)].join("\n")
    );
    assert!(sent >= 2000, "only {sent} requests ran within {TIME_LIMIT:?}");
    // The generator really exercised the refusals this test is about.
    for status in [400, 404, 405, 413] {
        assert!(statuses.get(&status).copied().unwrap_or(0) > 10, "too few {status}: {statuses:?}");
    }
    assert_eq!(panics.load(Ordering::SeqCst), 0, "the server panicked");

    // Afterwards the server still serves the whole flow.
    let v = CodeVerifier::generate();
    let (_, code) = s.code_for("spa", &v).await;
    let (st, tokens) = s.exchange("spa", &code, &v).await;
    assert_eq!(st, 200, "{tokens}");
    assert_eq!(s.userinfo(tokens["access_token"].as_str().unwrap()).await.status(), 200);
    let (st, refreshed) = s.refresh("spa", tokens["refresh_token"].as_str().unwrap(), None).await;
    assert_eq!(st, 200, "{refreshed}");
}

/// The limits over a real socket: an announced oversized body and a chunked one are both 413.
#[tokio::test]
async fn oversized_bodies_over_a_socket_are_413_json_for_the_token_endpoint() {
    let s = TestServer::start().await;
    let addr = s.base.trim_start_matches("http://");
    let body = vec![b'a'; 200 * 1024];
    let mut announced = format!(
        "POST /token HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    announced.extend_from_slice(&body);
    let mut chunked = b"POST /token HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for c in body.chunks(8192) {
        chunked.extend(format!("{:x}\r\n", c.len()).into_bytes());
        chunked.extend_from_slice(c);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    for raw in [announced, chunked] {
        let r = exchange(addr, raw).await.unwrap();
        assert_eq!(r.status, 413);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["error"], "invalid_request");
        assert!(v["error_description"].as_str().unwrap().contains("larger than 65536 bytes"), "{v}");
    }
}
