//! Interoperability with two independent JavaScript clients, unmodified and pinned by
//! `tests/interop-js/package-lock.json`: `openid-client` 6 (`openid_client.mjs`) and the
//! lower-level `oauth4webapi` 3 it is built on (`oauth4webapi.mjs`), each with its own calls.
//!
//! Each script discovers the in-process server, then:
//! - pushes an authorization request (RFC 9126) with PKCE and a DPoP key, exchanges the code for
//!   DPoP-bound tokens (RFC 9449 §5), reads userinfo with DPoP (§7) and refreshes with DPoP;
//!   against a server that requires DPoP nonces (§8) too, where the library must retry;
//! - has a refresh made with another DPoP key refused (`invalid_dpop_proof`, §5.2);
//! - runs a `private_key_jwt` client (RFC 7523 §2.2, ES256) through PAR, `/token`, `/introspect`
//!   and `/revoke`, and has an assertion signed by an unregistered key refused (`invalid_client`).
//!
//! The browser part is this test's: a script prints the authorization URL on stdout, the test
//! signs alice in through Latchkey's pages and writes the callback URL to the script's stdin.
//! The scripts report what they got and a log of every request they sent; the assertions here
//! check the tokens themselves (`cnf.jkt` against the thumbprint the script computed) and ask the
//! server (introspection) independently of the libraries.
//!
//! `openid_client_device.mjs` runs openid-client's device authorization grant (RFC 8628): the
//! test approves (and then denies) on Latchkey's verification page while the library polls.
//!
//! Outside CI the tests are skipped, with a message, when node or the npm packages are missing;
//! with `CI` set they must be there (`.ci/run` installs them).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod rp;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::client_key::ClientKey;
use common::{REDIRECT, TestServer, jwt_parts};
use latchkey_core::Clock;
use latchkey_core::admin::NewClient;
use latchkey_core::store::ClientKeys;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// A whole script run: discovery, two code flows with their sign-ins, a dozen requests.
const TIME_LIMIT: Duration = Duration::from_secs(120);
const PUBLIC: &str = "js-public";
const KEYED: &str = "js-rp";
const KID: &str = "js-rp-1";
const REQUEST_URI_PREFIX: &str = "urn:ietf:params:oauth:request_uri:";

fn package() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop-js").canonicalize().unwrap()
}

/// Whether the scripts can run; outside CI, a message says what is missing.
fn can_run() -> bool {
    let node =
        std::process::Command::new("node").arg("--version").stdout(Stdio::null()).status().is_ok_and(|s| s.success());
    let missing = if !node {
        Some("node is not installed".to_owned())
    } else {
        ["openid-client", "oauth4webapi"]
            .into_iter()
            .find(|l| !package().join("node_modules").join(l).exists())
            .map(|lib| format!("{lib} is not installed: (cd {} && npm ci)", package().display()))
    };
    let Some(what) = missing else { return true };
    assert!(std::env::var_os("CI").is_none(), "CI must run the JavaScript interop tests, but {what}");
    eprintln!("SKIPPED: the JavaScript interop tests need node, openid-client and oauth4webapi; {what}");
    false
}

/// The version package.json pins for `lib` (exact: no range).
fn pinned(lib: &str) -> String {
    let text = std::fs::read_to_string(package().join("package.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["dependencies"][lib].as_str().unwrap().to_owned()
}

struct Setup {
    server: TestServer,
    key: ClientKey,
    /// The secret of a resource server that introspects on the test's behalf.
    rs_secret: String,
}

/// A server (requiring DPoP nonces if `nonces`), a public client, a `private_key_jwt` client
/// with one registered ES256 key, and a resource server.
async fn setup(nonces: bool) -> Setup {
    let server = TestServer::start_with(|c| c.protection.dpop.require_nonce = nonces).await;
    server.add_client(PUBLIC, false, false).await;
    let key = ClientKey::generate(KID);
    server
        .add(NewClient {
            keys: Some(ClientKeys::Inline { jwks: ClientKey::jwks(&[&key]) }),
            ..NewClient::public(KEYED, "JS confidential app", vec![REDIRECT.into()])
        })
        .await;
    let rs = NewClient { resource_server: true, ..NewClient::public("api", "API", vec![]) };
    let rs_secret = server.add(rs).await.unwrap();
    follow_the_real_clock(&server);
    Setup { server, key, rs_secret }
}

/// The test server's clock is frozen at its start, but the libraries date their DPoP proofs and
/// client assertions by the real clock, and Latchkey allows them only a few seconds in the future
/// (RFC 9449 §11.1, RFC 7523 §3): the server's time follows the real one for these tests.
fn follow_the_real_clock(server: &TestServer) {
    let skew = server.skew.clone();
    let start = server.now() - skew.load(Ordering::SeqCst);
    tokio::spawn(async move {
        loop {
            skew.store(Clock::system().now() - start, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

/// Runs `script` against the server, signing in for each authorization URL it prints, and
/// returns its result (asserted successful). The child is killed if it outlives [`TIME_LIMIT`].
async fn run(setup: &Setup, script: &str) -> Value {
    let s = &setup.server;
    let mut child = tokio::process::Command::new("node")
        .arg(script)
        .current_dir(package())
        .env("LATCHKEY_ISSUER", &s.base)
        .env("LATCHKEY_REDIRECT", REDIRECT)
        .env("LATCHKEY_PUBLIC_CLIENT", PUBLIC)
        .env("LATCHKEY_KEYED_CLIENT", KEYED)
        .env("LATCHKEY_CLIENT_JWK", setup.key.private_jwk().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = child.stderr.take().unwrap();
    let errors = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let dialogue = async {
        let mut sign_ins = 0;
        while let Some(line) = stdout.next_line().await.unwrap() {
            let Ok(message) = serde_json::from_str::<Value>(&line) else { continue };
            if let Some(url) = message["authorize"].as_str() {
                let page = s.sign_in_at(&s.browser(), url).await;
                let callback = page.location();
                assert!(callback.starts_with(REDIRECT), "{script}: sign-in did not end at the client: {callback:?}");
                stdin.write_all(format!("{callback}\n").as_bytes()).await.unwrap();
                sign_ins += 1;
            } else if message.get("ok").is_some() {
                return (message, sign_ins);
            }
        }
        (Value::Null, sign_ins)
    };
    let Ok((result, sign_ins)) = tokio::time::timeout(TIME_LIMIT, dialogue).await else {
        let _ = child.kill().await;
        panic!("{script} took longer than {TIME_LIMIT:?}: {}", errors.await.unwrap());
    };
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await.expect("node exits").unwrap();
    let errors = errors.await.unwrap();
    assert!(result["ok"] == true && status.success(), "{script} failed: {}\nstderr: {errors}", pretty(&result));
    assert_eq!(sign_ins, 2, "{script}: one sign-in for each code flow");
    result
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap()
}

/// The requests of the script's log to `path`.
fn requests<'a>(r: &'a Value, path: &str) -> Vec<&'a Value> {
    r["requests"].as_array().unwrap().iter().filter(|q| q["path"] == path).collect()
}

/// The authorization URL carries only `client_id` and a pushed `request_uri` (RFC 9126 §4): the
/// request's parameters went to `/par`.
fn assert_pushed(url: &str, client_id: &str) {
    let url = url::Url::parse(url).unwrap();
    assert_eq!(url.path(), "/authorize");
    let mut q: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    q.sort();
    assert_eq!(q.len(), 2, "only client_id and request_uri: {url}");
    assert_eq!(q[0], ("client_id".into(), client_id.into()));
    assert_eq!(q[1].0, "request_uri");
    assert!(q[1].1.starts_with(REQUEST_URI_PREFIX), "{url}");
}

/// An access token's `cnf.jkt` (RFC 9449 §6.1).
fn jkt_of(access_token: &Value) -> Value {
    jwt_parts(access_token.as_str().unwrap()).1["cnf"]["jkt"].clone()
}

async fn introspect(setup: &Setup, token: &Value) -> Value {
    let s = &setup.server;
    let (status, body) =
        s.post_form("/introspect", Some(("api", &setup.rs_secret)), &[("token", token.as_str().unwrap())]).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Everything a run must show, whatever the library.
async fn check(setup: &Setup, r: &Value, lib: &str, nonces: bool) {
    let ctx = pretty(r);
    assert_eq!(r["library"], lib);
    assert_eq!(r["version"], pinned(lib).as_str(), "the run used the pinned {lib}");

    // DPoP: the tokens are bound to the script's key, the thumbprint it computed itself.
    let d = &r["dpop"];
    let jkt = d["jkt"].as_str().unwrap();
    assert_eq!(jkt.len(), 43, "a base64url SHA-256 thumbprint: {ctx}");
    assert_pushed(d["authorization_url"].as_str().unwrap(), PUBLIC);
    for (step, t) in [("code", d), ("refresh", &d["refresh"]), ("refresh after the refusal", &d["after_refusal"])] {
        assert!(t["token_type"].as_str().unwrap().eq_ignore_ascii_case("dpop"), "{step}: token_type DPoP: {ctx}");
        assert_eq!(jkt_of(&t["access_token"]), jkt, "{step}: cnf.jkt is the script's key: {ctx}");
    }
    assert_eq!(d["userinfo"]["preferred_username"], "alice", "{ctx}");
    assert_eq!(d["userinfo"]["sub"], d["id_token_sub"], "{ctx}");
    // The server says the same as the token, to a resource server that asks.
    let i = introspect(setup, &d["after_refusal"]["access_token"]).await;
    assert_eq!((&i["active"], &i["token_type"], &i["cnf"]["jkt"]), (&Value::from(true), &"DPoP".into(), &jkt.into()));
    // §5.2: another key's proof for the refresh is refused; the honest refresh still works
    // (checked above), so the refusal spent nothing.
    let refused = &d["other_key_refresh"];
    assert_eq!((&refused["error"], &refused["status"]), (&"invalid_dpop_proof".into(), &400.into()), "{ctx}");

    // Every DPoP proof was for the request it went with (htm, htu from the discovered
    // endpoints), and by the script's key but for the thief's one.
    let proofs: Vec<&Value> = r["requests"].as_array().unwrap().iter().filter(|q| q["dpop"].is_object()).collect();
    for q in &proofs {
        let url = format!("{}{}", setup.server.base, q["path"].as_str().unwrap());
        assert_eq!((&q["dpop"]["htm"], &q["dpop"]["htu"]), (&q["method"], &url.into()), "{ctx}");
    }
    let thief: Vec<_> = proofs.iter().filter(|q| q["dpop"]["jkt"] != jkt).collect();
    assert!(!thief.is_empty() && thief.iter().all(|q| q["status"] != 200), "only the thief's proofs fail: {ctx}");
    for path in ["/token", "/userinfo"] {
        assert!(proofs.iter().any(|q| q["path"] == path && q["status"] == 200), "a proof at {path}: {ctx}");
    }
    assert!(requests(r, "/userinfo").iter().all(|q| q["scheme"] == "DPoP"), "userinfo with the DPoP scheme: {ctx}");

    // §8: with nonces required, the library was told to use one (`use_dpop_nonce`, in the body
    // or the WWW-Authenticate challenge) and retried at the same endpoint with the nonce; every
    // proof Latchkey accepted carries one. Without, none is asked for and none is sent.
    let asked = |q: &Value| {
        q["error"] == "use_dpop_nonce" || q["www_authenticate"].as_str().is_some_and(|w| w.contains("use_dpop_nonce"))
    };
    let accepted = |q: &Value| q["status"].as_u64().is_some_and(|s| (200..300).contains(&s));
    if nonces {
        let retried = proofs.iter().enumerate().filter(|(_, q)| asked(q)).map(|(i, q)| {
            proofs[i + 1..]
                .iter()
                .any(|later| later["path"] == q["path"] && accepted(later) && later["dpop"]["nonce"].is_string())
        });
        let retried: Vec<bool> = retried.collect();
        assert!(!retried.is_empty() && retried.iter().all(|&r| r), "asked for a nonce, retried with it: {ctx}");
        assert!(proofs.iter().filter(|q| accepted(q)).all(|q| q["dpop"]["nonce"].is_string()), "{ctx}");
    } else {
        assert!(!proofs.iter().any(|q| asked(q)), "no nonce asked for: {ctx}");
        assert!(proofs.iter().all(|q| q["dpop"]["nonce"].is_null()), "{ctx}");
    }

    // private_key_jwt: every request of the keyed client carried an ES256 assertion by its key.
    let k = &r["keyed"];
    assert_pushed(k["authorization_url"].as_str().unwrap(), KEYED);
    let keyed: Vec<&Value> = r["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|q| q["assertion"]["iss"] == KEYED && q["assertion"]["kid"] == KID)
        .collect();
    for (path, ok) in [("/par", 201), ("/token", 200), ("/introspect", 200), ("/revoke", 200)] {
        let q = keyed.iter().find(|q| q["path"] == path).unwrap_or_else(|| panic!("no assertion at {path}: {ctx}"));
        assert_eq!((&q["status"], &q["assertion"]["alg"]), (&ok.into(), &"ES256".into()), "{path}: {ctx}");
        assert!(q["params"].as_array().unwrap().contains(&"client_assertion_type".into()), "{ctx}");
    }
    assert!(k["token_type"].as_str().unwrap().eq_ignore_ascii_case("bearer"), "{ctx}");
    assert_eq!((&k["introspection"]["active"], &k["introspection"]["client_id"]), (&true.into(), &KEYED.into()));
    assert_eq!(k["after_revoke"]["active"], false, "{ctx}");
    assert_eq!(introspect(setup, &k["access_token"]).await["active"], false, "revoked for everyone");
    // An assertion by a key the client never registered is refused: the library sees a 401. It
    // reports the Basic challenge Latchkey adds to every refused client authentication (RFC 6749
    // §5.2 lists the schemes supported), not the body's error, so the code is read from the log.
    assert_eq!(k["unregistered_key"]["status"], 401, "{ctx}");
    let foreign: Vec<&Value> = r["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|q| q["assertion"]["iss"] == KEYED && q["assertion"]["kid"] != KID)
        .collect();
    assert_eq!(foreign.len(), 1, "one request with the unregistered key: {ctx}");
    assert_eq!((&foreign[0]["status"], &foreign[0]["error"]), (&401.into(), &"invalid_client".into()), "{ctx}");
}

async fn interop(script: &str, lib: &str, nonces: bool) {
    if !can_run() {
        return;
    }
    let setup = setup(nonces).await;
    let result = run(&setup, script).await;
    check(&setup, &result, lib, nonces).await;
}

#[tokio::test]
async fn openid_client_with_dpop_nonces_par_and_private_key_jwt() {
    interop("openid_client.mjs", "openid-client", true).await;
}

#[tokio::test]
async fn openid_client_without_dpop_nonces() {
    interop("openid_client.mjs", "openid-client", false).await;
}

#[tokio::test]
async fn oauth4webapi_with_dpop_nonces_par_and_private_key_jwt() {
    interop("oauth4webapi.mjs", "oauth4webapi", true).await;
}

#[tokio::test]
async fn oauth4webapi_without_dpop_nonces() {
    interop("oauth4webapi.mjs", "oauth4webapi", false).await;
}

/// The device grant's client, a public one.
const DEVICE: &str = "js-tv";

/// Runs `openid_client_device.mjs`: for each device request it prints, the test answers on the
/// verification page as alice while the library polls.
async fn run_device(server: &TestServer) -> Value {
    let mut child = tokio::process::Command::new("node")
        .arg("openid_client_device.mjs")
        .current_dir(package())
        .env("LATCHKEY_ISSUER", &server.base)
        .env("LATCHKEY_DEVICE_CLIENT", DEVICE)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = child.stderr.take().unwrap();
    let errors = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let dialogue = async {
        let mut answers = Vec::new();
        while let Some(line) = stdout.next_line().await.unwrap() {
            let Ok(message) = serde_json::from_str::<Value>(&line) else { continue };
            if let Some(decision) = message["device"].as_str() {
                let (uri, code) =
                    (message["verification_uri"].as_str().unwrap(), message["user_code"].as_str().unwrap());
                // The approval through the link that carries the code, the denial typed at /device.
                let start =
                    if decision == "approve" { message["verification_uri_complete"].as_str().unwrap() } else { uri };
                let page = rp::answer_device(start, code, "alice", common::PASSWORD, decision).await;
                answers.push((decision.to_owned(), page));
            } else if message.get("ok").is_some() {
                return (message, answers);
            }
        }
        (Value::Null, answers)
    };
    let Ok((result, answers)) = tokio::time::timeout(TIME_LIMIT, dialogue).await else {
        let _ = child.kill().await;
        panic!("openid_client_device.mjs took longer than {TIME_LIMIT:?}: {}", errors.await.unwrap());
    };
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await.expect("node exits").unwrap();
    let errors = errors.await.unwrap();
    assert!(result["ok"] == true && status.success(), "the device flow failed: {}\nstderr: {errors}", pretty(&result));
    let decisions: Vec<&str> = answers.iter().map(|(d, _)| d.as_str()).collect();
    assert_eq!(decisions, ["approve", "deny"]);
    assert!(answers[0].1.contains("You can return to your device"), "{}", answers[0].1);
    assert!(answers[1].1.contains("Denied"), "{}", answers[1].1);
    result
}

#[tokio::test]
async fn openid_client_device_flow_with_dpop() {
    if !can_run() {
        return;
    }
    // One second between polls keeps the run short; the server's clock follows the real one,
    // which the library's waits and proofs are timed by.
    let server = TestServer::start_with(|c| c.device.interval = 1).await;
    server.add(NewClient { device: true, ..NewClient::public(DEVICE, "JS device", vec![]) }).await;
    follow_the_real_clock(&server);
    let r = run_device(&server).await;
    let ctx = pretty(&r);
    assert_eq!(r["version"], pinned("openid-client").as_str(), "the run used the pinned openid-client");
    assert_eq!(r["interval"], 1, "{ctx}");
    // The tokens are the approving user's, bound to the library's DPoP key (RFC 9449 §5), for
    // the polls and for the refresh.
    let jkt = r["jkt"].as_str().unwrap();
    for t in [&r, &r["refresh"]] {
        assert!(t["token_type"].as_str().unwrap().eq_ignore_ascii_case("dpop"), "{ctx}");
        assert_eq!(jkt_of(&t["access_token"]), jkt, "{ctx}");
    }
    assert_eq!(r["has_refresh_token"], true, "{ctx}");
    assert_eq!(r["userinfo"]["preferred_username"], "alice", "{ctx}");
    assert_eq!(r["userinfo"]["sub"], r["id_token_sub"], "{ctx}");
    // The denial reached the library as the RFC's error.
    assert_eq!((&r["denial"]["error"], &r["denial"]["status"]), (&"access_denied".into(), &400.into()), "{ctx}");
    // What went over the wire: the requests at /device_authorization, the polls at /token with
    // the grant type; the first poll of each request waited for the interval, so none was early
    // enough to be refused as too fast before the user answered.
    let asked = requests(&r, "/device_authorization");
    assert_eq!(asked.len(), 2, "{ctx}");
    assert!(asked.iter().all(|q| q["status"] == 200 && q["dpop"].is_null()), "{ctx}");
    let polls = requests(&r, "/token");
    let errors: Vec<&str> = polls.iter().filter_map(|q| q["error"].as_str()).collect();
    assert!(
        errors.iter().all(|e| ["authorization_pending", "slow_down", "access_denied"].contains(e)),
        "only the RFC's polling answers: {ctx}"
    );
    assert!(polls.iter().any(|q| q["status"] == 200 && q["dpop"]["jkt"] == jkt), "{ctx}");
}
