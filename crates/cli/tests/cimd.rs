//! Client ID Metadata Documents end to end: `latchkey serve` fetches a client's document from an
//! https server run by this test (a test CA that Latchkey trusts through `--insecure-cimd-ca`),
//! and every rule of draft-ietf-oauth-client-id-metadata-document that protects the server or
//! the user is attacked once. The document server counts its requests, so the tests see what
//! Latchkey fetched, and what it did not.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::doc_server::{DocServer, Reply};
use common::{Browser, PASSWORD, REDIRECT};
use latchkey_proto::CodeVerifier;
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_latchkey");

/// A valid document for `url` (a public client with the test redirect URI).
fn document(url: &str) -> serde_json::Value {
    json!({
        "client_id": url,
        "client_name": "Test MCP Host",
        "redirect_uris": [REDIRECT],
        "grant_types": ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:jwt-bearer"],
        "token_endpoint_auth_method": "none",
    })
}

/// `latchkey serve` as a child process, killed on drop.
struct Latchkey {
    child: Child,
    base: String,
    stderr: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Latchkey {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Latchkey {
    /// With the test CA trusted and, if `loopback`, loopback fetches allowed.
    fn start(docs: &DocServer, loopback: bool) -> Self {
        Self::start_with_env(docs, loopback, &[])
    }

    fn start_with_env(docs: &DocServer, loopback: bool, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("cimd.db");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, &docs.ca_pem).unwrap();
        let mut add = Command::new(BIN)
            .args(["user", "add", "alice", "--email", "alice@example.com", "--password-stdin", "--database"])
            .arg(&db)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut add.stdin.take().unwrap(), PASSWORD.as_bytes()).unwrap();
        assert!(add.wait().unwrap().success());
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let stderr = dir.path().join("serve.stderr");
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--insecure-cimd-ca"])
            .arg(&ca)
            .arg("--database")
            .arg(&db)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap());
        if loopback {
            cmd.arg("--insecure-cimd-loopback");
        }
        let child = cmd.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "latchkey did not start: {}", std::fs::read_to_string(&stderr).unwrap());
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, base: format!("http://127.0.0.1:{port}"), stderr, _dir: dir }
    }

    fn authorize_url(&self, client_id: &str, verifier: &CodeVerifier) -> String {
        let mut u = url::Url::parse(&format!("{}/authorize", self.base)).unwrap();
        u.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", REDIRECT)
            .append_pair("scope", "openid profile")
            .append_pair("code_challenge", verifier.challenge().as_str())
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", "s1");
        u.into()
    }

    /// GET /authorize for `client_id` in a fresh browser.
    async fn authorize(&self, client_id: &str) -> common::Page {
        Browser::new().get(&self.authorize_url(client_id, &CodeVerifier::generate())).await
    }

    async fn token(&self, form: &[(&str, &str)]) -> (u16, serde_json::Value) {
        let res = reqwest::Client::new().post(format!("{}/token", self.base)).form(form).send().await.unwrap();
        (res.status().as_u16(), res.json().await.unwrap_or_default())
    }
}

/// The refusal every document failure gets at /authorize: an error page naming `cause`, and no
/// redirect to the document's (untrusted) redirect URI.
fn assert_error_page(page: &common::Page, cause: &str) {
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.location().is_empty(), "never a redirect: {}", page.location());
    let text = html_escape::decode_html_entities(&page.body).to_string();
    assert!(text.contains(cause), "the page should say {cause:?}: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metadata_document_client_signs_in_gets_tokens_and_its_document_is_cached() {
    let docs = DocServer::start().await;
    let lk = Latchkey::start(&docs, true);
    let stderr = std::fs::read_to_string(&lk.stderr).unwrap();
    assert!(stderr.contains("insecure_cimd_loopback is on"), "start-up warning: {stderr}");
    assert!(stderr.contains("insecure_cimd_ca is set"), "start-up warning: {stderr}");
    let meta: serde_json::Value = reqwest::get(format!("{}/.well-known/oauth-authorization-server", lk.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["client_id_metadata_document_supported"], true);

    let id = docs.url("localhost", "/mcp/client.json");
    docs.set("/mcp/client.json", Reply::json(document(&id)));
    let verifier = CodeVerifier::generate();
    let b = Browser::new();
    let page = b.get(&lk.authorize_url(&id, &verifier)).await;
    assert_eq!(page.status, 200, "login page: {}", page.body);
    let res = b.submit_login(&lk.base, &page.body, "alice", PASSWORD).await;
    // Nobody vetted this client: the user is always asked.
    assert_eq!(res.status, 303);
    assert!(res.location().starts_with("/consent"), "consent expected, got {}", res.location());
    let consent = b.get(&format!("{}{}", lk.base, res.location())).await;
    assert!(consent.body.contains("Test MCP Host"), "{}", consent.body);
    let res = b.submit_consent(&lk.base, &consent.body, "allow").await;
    let code = res.redirect_query().get("code").cloned().expect("a code");
    let (status, body) = lk
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("client_id", &id),
            ("code_verifier", verifier.expose_secret()),
        ])
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["access_token"].is_string());
    assert!(body["refresh_token"].is_string(), "refresh_token was listed, jwt-bearer dropped: {body}");
    // A public client: a secret is refused.
    let res = reqwest::Client::new()
        .post(format!("{}/token", lk.base))
        .basic_auth(&id, Some("guess"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", body["refresh_token"].as_str().unwrap())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // Authorize, login, consent, token: one fetch; the cache served the rest.
    assert_eq!(lk.authorize(&id).await.status, 200);
    assert_eq!(docs.hits("/mcp/client.json"), 1, "the cached document is used");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fetch_failure_is_an_error_page_naming_its_cause() {
    let docs = DocServer::start().await;
    let lk = Latchkey::start(&docs, true);
    let host = "127.0.0.1";
    let doc = |path: &str| document(&docs.url(host, path));
    let with = |path: &str, f: &dyn Fn(&mut serde_json::Value)| {
        let mut d = doc(path);
        f(&mut d);
        Reply::json(d)
    };

    // 404.
    assert_error_page(&lk.authorize(&docs.url(host, "/missing.json")).await, "was not found (HTTP 404)");
    // 500.
    docs.set("/broken.json", Reply::raw(500, b"oops".to_vec()));
    assert_error_page(&lk.authorize(&docs.url(host, "/broken.json")).await, "answered HTTP 500");
    // A redirect to a valid document is not followed.
    docs.set(
        "/moved.json",
        Reply { headers: vec![("Location".into(), "/target.json".into())], ..Reply::raw(302, vec![]) },
    );
    docs.set("/target.json", Reply::json(doc("/moved.json")));
    assert_error_page(&lk.authorize(&docs.url(host, "/moved.json")).await, "redirect (HTTP 302)");
    assert_eq!(docs.hits("/target.json"), 0, "the redirect was not followed");
    // Over 5 KiB, announced by Content-Length or not.
    let padded = |path: &str| with(path, &|d| d["padding"] = json!("x".repeat(6000)));
    docs.set("/big.json", padded("/big.json"));
    assert_error_page(&lk.authorize(&docs.url(host, "/big.json")).await, "larger than 5120 bytes");
    docs.set("/big-stream.json", Reply { no_length: true, ..padded("/big-stream.json") });
    assert_error_page(&lk.authorize(&docs.url(host, "/big-stream.json")).await, "larger than 5120 bytes");
    // Not JSON.
    docs.set("/page.json", Reply::raw(200, b"<html>hello</html>".to_vec()));
    assert_error_page(&lk.authorize(&docs.url(host, "/page.json")).await, "is not a JSON object");
    // Someone else's document: client_id differs from the URL.
    docs.set("/copy.json", Reply::json(doc("/original.json")));
    assert_error_page(&lk.authorize(&docs.url(host, "/copy.json")).await, "is not exactly the URL it was fetched from");
    // Shared-secret methods and secrets.
    for m in ["client_secret_basic", "client_secret_post", "client_secret_jwt"] {
        docs.set("/secret-method.json", with("/secret-method.json", &|d| d["token_endpoint_auth_method"] = json!(m)));
        assert_error_page(
            &lk.authorize(&docs.url(host, "/secret-method.json")).await,
            &format!("authentication method {m}, which needs a shared secret"),
        );
    }
    docs.set("/secret.json", with("/secret.json", &|d| d["client_secret"] = json!("hunter2")));
    assert_error_page(&lk.authorize(&docs.url(host, "/secret.json")).await, "contains client_secret");
    docs.set(
        "/pkjwt.json",
        with("/pkjwt.json", &|d| {
            d.as_object_mut().unwrap().remove("token_endpoint_auth_method");
            d["token_endpoint_auth_methods_supported"] = json!(["private_key_jwt"]);
        }),
    );
    assert_error_page(&lk.authorize(&docs.url(host, "/pkjwt.json")).await, "\"private_key_jwt\"");
    // The ChatGPT form (none listed with private_key_jwt) is accepted.
    docs.set(
        "/chatgpt.json",
        with("/chatgpt.json", &|d| {
            d.as_object_mut().unwrap().remove("token_endpoint_auth_method");
            d["token_endpoint_auth_methods_supported"] = json!(["none", "private_key_jwt"]);
        }),
    );
    assert_eq!(lk.authorize(&docs.url(host, "/chatgpt.json")).await.status, 200);
    // A bad URL is refused before any fetch.
    assert_error_page(&lk.authorize(&format!("{}?x=1", docs.url(host, "/q.json"))).await, "must not contain a query");
    assert_eq!(docs.hits("/q.json"), 0);
    // At the token endpoint a failing document is invalid_client.
    let (status, body) = lk
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", "whatever"),
            ("redirect_uri", REDIRECT),
            ("client_id", &docs.url(host, "/secret.json")),
            ("code_verifier", CodeVerifier::generate().expose_secret()),
        ])
        .await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "{body}");
    assert!(body["error_description"].as_str().unwrap().contains("client_secret"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_not_cached_a_fixed_document_works_on_the_next_request() {
    let docs = DocServer::start().await;
    let lk = Latchkey::start(&docs, true);
    let id = docs.url("127.0.0.1", "/later.json");
    docs.set(
        "/later.json",
        Reply::json(json!({"client_id": "https://elsewhere.example/c", "redirect_uris": [REDIRECT]})),
    );
    assert_error_page(&lk.authorize(&id).await, "is not exactly the URL");
    docs.set("/later.json", Reply::json(document(&id)));
    assert_eq!(lk.authorize(&id).await.status, 200, "fetched again, not served from a cache of the failure");
    assert_eq!(docs.hits("/later.json"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_loopback_setting_special_addresses_are_refused_before_connecting() {
    let docs = DocServer::start().await;
    let lk = Latchkey::start(&docs, false);
    for (host, shown) in [
        // A name resolving to loopback: refused after resolution, before connecting.
        ("localhost", "resolves to 127.0.0.1, a loopback address"),
        ("127.0.0.1", "a loopback address"),
        ("[::ffff:7f00:1]", "a loopback address"),
    ] {
        let id = docs.url(host, "/private.json");
        docs.set("/private.json", Reply::json(document(&id)));
        let page = lk.authorize(&id).await;
        assert_error_page(&page, "server-side request forgery");
        assert!(html_escape::decode_html_entities(&page.body).contains(shown), "{host}: {}", page.body);
    }
    // Private and link-local literals never get a connection attempt either.
    for host in ["10.0.0.1", "169.254.169.254", "192.168.1.1"] {
        assert_error_page(&lk.authorize(&format!("https://{host}/c.json")).await, "server-side request forgery");
    }
    assert_eq!(docs.hits("/private.json"), 0, "no request reached the address");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_authorizations_for_an_uncached_document_fetches_it_once() {
    let docs = DocServer::start().await;
    let lk = Arc::new(Latchkey::start(&docs, true));
    let id = docs.url("127.0.0.1", "/burst.json");
    // Slow enough that every request arrives while the first fetch is in flight.
    docs.set("/burst.json", Reply { delay: Duration::from_millis(700), ..Reply::json(document(&id)) });
    let requests: Vec<_> = (0..30)
        .map(|_| {
            let (lk, id) = (lk.clone(), id.clone());
            tokio::spawn(async move { lk.authorize(&id).await.status })
        })
        .collect();
    for r in requests {
        assert_eq!(r.await.unwrap(), 200);
    }
    assert_eq!(docs.hits("/burst.json"), 1, "one fetch for the whole burst");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_server_that_does_not_answer_in_time_is_a_timeout() {
    let docs = DocServer::start().await;
    let lk = Latchkey::start(&docs, true);
    let id = docs.url("127.0.0.1", "/slow.json");
    docs.set("/slow.json", Reply { delay: Duration::from_secs(8), ..Reply::json(document(&id)) });
    let started = Instant::now();
    assert_error_page(&lk.authorize(&id).await, "did not answer in time");
    assert!(started.elapsed() < Duration::from_secs(7), "the fetch timeout (5 s) applies");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_cimd_off_url_client_ids_are_refused_and_not_advertised() {
    let docs = DocServer::start().await;
    let lk = Latchkey::start_with_env(&docs, true, &[("LATCHKEY_CIMD", "false")]);
    let meta: serde_json::Value =
        reqwest::get(format!("{}/.well-known/openid-configuration", lk.base)).await.unwrap().json().await.unwrap();
    assert_eq!(meta["client_id_metadata_document_supported"], false);
    let id = docs.url("127.0.0.1", "/off.json");
    docs.set("/off.json", Reply::json(document(&id)));
    assert_error_page(&lk.authorize(&id).await, "cimd = false");
    assert_eq!(docs.hits("/off.json"), 0);
}
