//! What every request meets before an endpoint's logic: size and parameter limits, methods, and the
//! security headers. Driven through `app()` with `oneshot`, no socket, so an https issuer can be tested.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use latchkey_core::admin::NewClient;
use latchkey_core::{Clock, Provider, ProviderConfig, Store};
use latchkey_proto::CodeVerifier;
use latchkey_server::{AppState, HSTS, MAX_BODY, app};
use latchkey_store::SqliteStore;
use tower::ServiceExt;

const REDIRECT: &str = "http://127.0.0.1:8765/callback";

struct Fixture {
    state: AppState,
    _dir: tempfile::TempDir,
}

async fn fixture(issuer: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("edge.db")).unwrap());
    let clock = Clock::from_fn(|| 1_700_000_000);
    let provider = Arc::new(Provider::open(store.clone(), ProviderConfig::new(issuer), clock.now()).await.unwrap());
    latchkey_core::admin::add_client(store.as_ref(), NewClient::public("spa", "App spa", vec![REDIRECT.into()]), 0)
        .await
        .unwrap();
    Fixture { state: AppState::new(provider, clock), _dir: dir }
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", |v| v.to_str().unwrap())
    }
    fn json(&self) -> serde_json::Value {
        assert!(self.header("content-type").starts_with("application/json"), "{}", self.header("content-type"));
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    fn assert_html_page(&self) {
        assert!(self.header("content-type").starts_with("text/html"), "{}: {}", self.status, self.body);
        assert!(self.body.starts_with("<!doctype html>") && self.body.trim_end().ends_with("</html>"), "{}", self.body);
        assert!(self.header("content-security-policy").contains("frame-ancestors 'none'"));
        // No script but our own files (the passkey ceremony's, where passkeys are offered): never
        // inline, never from elsewhere.
        let csp = self.header("content-security-policy");
        let scripts = csp.split(';').map(str::trim).filter(|d| d.starts_with("script-src"));
        assert!(!csp.contains("unsafe") && scripts.into_iter().all(|d| d == "script-src 'self'"), "{csp}");
        assert_eq!(self.header("x-frame-options"), "DENY");
        assert_eq!(self.header("x-content-type-options"), "nosniff");
        assert_eq!(self.header("referrer-policy"), "no-referrer");
        assert_eq!(self.header("cache-control"), "no-store");
    }
}

async fn send(f: &Fixture, req: Request<Body>) -> Reply {
    let res = app(f.state.clone()).oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
    Reply { status, headers, body: String::from_utf8(body.to_vec()).unwrap() }
}

fn form(method: Method, path: &str, body: impl Into<Body>) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body.into())
        .unwrap()
}

fn get(path: &str) -> Request<Body> {
    Request::builder().uri(path).body(Body::empty()).unwrap()
}

fn authorize_path(extra: &str) -> String {
    let v = CodeVerifier::generate();
    let mut u = url::Url::parse("http://x/authorize").unwrap();
    u.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", "spa")
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("scope", "openid")
        .append_pair("code_challenge", v.challenge().as_str())
        .append_pair("code_challenge_method", "S256");
    format!("/authorize?{}{extra}", u.query().unwrap())
}

#[tokio::test]
async fn an_oversized_body_is_413_with_a_clear_message_in_the_endpoints_format() {
    let f = fixture("http://127.0.0.1:9").await;
    let big = format!("grant_type=refresh_token&refresh_token={}", "a".repeat(MAX_BODY));

    let r = send(&f, form(Method::POST, "/token", big.clone())).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    let body = r.json();
    assert_eq!(body["error"], "invalid_request");
    assert_eq!(
        body["error_description"],
        "the request body is larger than 65536 bytes; OAuth requests are far smaller"
    );

    // With a Content-Length over the limit, the body is refused before it is read.
    let mut req = form(Method::POST, "/token", big.clone());
    req.headers_mut().insert(header::CONTENT_LENGTH, big.len().into());
    let r = send(&f, req).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.json()["error"], "invalid_request");

    for path in ["/login", "/consent", "/authorize"] {
        let r = send(&f, form(Method::POST, path, big.clone())).await;
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{path}");
        r.assert_html_page();
        assert!(r.body.contains("larger than 65536 bytes"), "{path}: {}", r.body);
    }

    // Exactly at the limit the body is read, and refused for what it says, not for its size.
    let at_limit = format!("grant_type=x&pad={}", "a".repeat(MAX_BODY - "grant_type=x&pad=".len()));
    assert_eq!(at_limit.len(), MAX_BODY);
    let r = send(&f, form(Method::POST, "/token", at_limit)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.json()["error_description"].as_str().unwrap().contains("`pad` is longer than 8192 bytes"));
}

#[tokio::test]
async fn too_many_or_too_long_parameters_are_400_with_a_clear_message() {
    let f = fixture("http://127.0.0.1:9").await;
    let many: Vec<String> = (0..65).map(|i| format!("p{i}=v")).collect();
    let r = send(&f, form(Method::POST, "/token", many.join("&"))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error_description"], "too many parameters (at most 64)");

    let long = format!("grant_type=refresh_token&client_id=spa&refresh_token={}", "r".repeat(8193));
    let r = send(&f, form(Method::POST, "/token", long)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error_description"], "parameter `refresh_token` is longer than 8192 bytes");

    // Pages say it on a page, and never redirect a request they could not read.
    let r = send(&f, get(&authorize_path(&format!("&state={}", "s".repeat(8193))))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    r.assert_html_page();
    assert!(r.body.contains("parameter `state` is longer than 8192 bytes"), "{}", r.body);
    let r = send(&f, form(Method::POST, "/login", many.join("&"))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    r.assert_html_page();
    assert!(r.body.contains("too many parameters (at most 64)"), "{}", r.body);
}

#[tokio::test]
async fn a_wrong_method_is_405_with_allow_in_the_endpoints_format() {
    let f = fixture("http://127.0.0.1:9").await;
    for (method, path, allow) in [
        (Method::GET, "/token", "POST,OPTIONS"),
        (Method::PUT, "/token", "POST,OPTIONS"),
        (Method::DELETE, "/userinfo", "GET,HEAD,POST,OPTIONS"),
        (Method::POST, "/jwks.json", "GET,HEAD,OPTIONS"),
        (Method::PATCH, "/.well-known/openid-configuration", "GET,HEAD,OPTIONS"),
    ] {
        let r = send(&f, Request::builder().method(method.clone()).uri(path).body(Body::empty()).unwrap()).await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_eq!(r.header("allow"), allow, "{method} {path}");
        let body = r.json();
        assert_eq!(body["error"], "invalid_request");
        assert!(body["error_description"].as_str().unwrap().contains(&format!("the {method} method is not allowed")));
    }
    for (method, path, allow) in [
        (Method::GET, "/login", "POST"),
        (Method::DELETE, "/authorize", "GET,HEAD,POST"),
        (Method::PUT, "/consent", "GET,HEAD,POST"),
    ] {
        let r = send(&f, Request::builder().method(method.clone()).uri(path).body(Body::empty()).unwrap()).await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_eq!(r.header("allow"), allow, "{method} {path}");
        r.assert_html_page();
    }
}

#[tokio::test]
async fn https_issuer_gets_hsts_on_every_response_and_host_prefixed_secure_cookies() {
    let f = fixture("https://login.example.com").await;
    let login = send(&f, get(&authorize_path(""))).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    login.assert_html_page();
    let cookies: Vec<&str> = login.headers.get_all("set-cookie").iter().map(|v| v.to_str().unwrap()).collect();
    let csrf = cookies.iter().find(|c| c.starts_with("__Host-latchkey_csrf=")).expect("__Host- CSRF cookie");
    // `__Host-` (RFC 6265bis §4.1.3.2): Secure, Path=/, and no Domain, so no other host can set or read it.
    assert!(csrf.contains("Secure") && csrf.contains("Path=/") && csrf.contains("HttpOnly"), "{csrf}");
    assert!(!csrf.to_ascii_lowercase().contains("domain="), "{csrf}");

    let responses = [
        login,
        send(&f, get("/nowhere")).await,
        send(&f, get("/jwks.json")).await,
        send(&f, get("/authorize")).await,
        send(&f, form(Method::POST, "/token", "grant_type=x")).await,
        send(&f, Request::builder().method(Method::PUT).uri("/token").body(Body::empty()).unwrap()).await,
        send(&f, get("/userinfo")).await,
    ];
    for r in &responses {
        assert_eq!(r.header("strict-transport-security"), HSTS, "{}: {}", r.status, r.body);
        assert_eq!(r.header("x-content-type-options"), "nosniff");
        assert_eq!(r.header("referrer-policy"), "no-referrer");
    }
    assert_eq!(HSTS, "max-age=31536000");
}

#[tokio::test]
async fn http_issuer_gets_no_hsts_and_plain_cookies() {
    let f = fixture("http://127.0.0.1:9").await;
    let login = send(&f, get(&authorize_path(""))).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    login.assert_html_page();
    // HSTS on a plain-http issuer would be ignored by browsers at best, and lock out a dev setup at worst.
    assert_eq!(login.header("strict-transport-security"), "");
    let cookie = login.header("set-cookie");
    assert!(cookie.starts_with("latchkey_csrf=") && !cookie.contains("Secure"), "{cookie}");

    // Every page a person can land on carries the page headers: error page, 404.
    for r in [send(&f, get("/authorize")).await, send(&f, get("/nowhere")).await, send(&f, get("/consent")).await] {
        assert!(r.status.is_client_error(), "{}", r.status);
        r.assert_html_page();
    }
}

#[tokio::test]
async fn a_proxys_request_id_is_kept_only_when_it_is_safe_to_log() {
    let f = fixture("http://127.0.0.1:9").await;
    // The JWKS is answered in front of the router (documents::FastPath): the same rule holds.
    for path in ["/healthz", "/jwks.json"] {
        let with_id = |id: &[u8]| Request::builder().uri(path).header("x-request-id", id).body(Body::empty()).unwrap();
        let r = send(&f, with_id(b"proxy-7f3a.1:2")).await;
        assert_eq!(r.header("x-request-id"), "proxy-7f3a.1:2");
        for bad in [&b"caf\xc3\xa9"[..], b"a b", &[b'x'; 129][..], b"\xff"] {
            let r = send(&f, with_id(bad)).await;
            let id = r.header("x-request-id");
            // Replaced by our own (a per-process prefix, a dash and a hex counter), not echoed.
            let (prefix, n) = id.split_once('-').unwrap_or_else(|| panic!("{id:?} for {bad:?}"));
            assert_eq!(prefix.len(), 8, "{id:?}");
            assert!(!n.is_empty() && n.bytes().all(|b| b.is_ascii_hexdigit()), "{id:?}");
        }
    }
}
