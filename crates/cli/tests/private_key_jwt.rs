//! `private_key_jwt` client authentication (RFC 7523 §2.2, §3; OpenID Connect Core §9) at every
//! endpoint that authenticates clients: each rule attacked once (a replayed, misaddressed,
//! expired, long-lived or foreign-signed assertion; a `jwks_uri` on a private address; made-up
//! `kid`s against the refetch limit), and the whole flow end to end (PAR, login, code, tokens,
//! introspection, revocation). The client's keys and assertions are made here with aws-lc-rs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::sync::Arc;

use common::client_key::{ASSERTION_TYPE, ClientKey};
use common::doc_server::{DocServer, Reply};
use common::{REDIRECT, TestServer};
use latchkey_core::admin::NewClient;
use latchkey_core::client_keys::JWKS_REFETCH_INTERVAL;
use latchkey_core::store::{ClientKeys, ClientProtection, SecurityProfile};
use latchkey_proto::CodeVerifier;
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_latchkey");
const API: &str = "https://api.example";

/// A `private_key_jwt` client `id` for the code flow and client credentials, with `keys`.
fn keyed_client(id: &str, keys: ClientKeys) -> NewClient {
    NewClient {
        keys: Some(keys),
        client_credentials: true,
        audiences: vec![API.into()],
        ..NewClient::public(id, "Keyed app", vec![REDIRECT.into()])
    }
}

fn inline(keys: &[&ClientKey]) -> ClientKeys {
    ClientKeys::Inline { jwks: ClientKey::jwks(keys) }
}

/// POST `path` with `form` and the assertion. Token requests carry a DPoP proof, which the fapi2
/// profile requires (and which is ignored where DPoP is not enforced).
async fn post(s: &TestServer, path: &str, assertion: &str, form: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let mut form = form.to_vec();
    form.extend([("client_assertion_type", ASSERTION_TYPE), ("client_assertion", assertion)]);
    let mut req = s.http.post(s.url(path)).form(&form);
    if path == "/token" {
        let key = latchkey_proto::dpop::DpopKey::generate().unwrap();
        req = req.header("DPoP", key.proof("POST", &s.url(path), s.now(), None, None).unwrap());
    }
    let res = req.send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap_or_default())
}

/// A client-credentials token request authenticated by `assertion`.
async fn cc(s: &TestServer, assertion: &str) -> (u16, serde_json::Value) {
    post(s, "/token", assertion, &[("grant_type", "client_credentials")]).await
}

fn refused(got: (u16, serde_json::Value), cause: &str) {
    let (status, body) = got;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "{cause}: {body}");
    let d = body["error_description"].as_str().unwrap();
    assert!(d.contains(cause), "{cause:?} expected in {d:?}");
}

#[tokio::test]
async fn a_private_key_jwt_client_pushes_signs_in_gets_introspects_and_revokes_tokens() {
    let s = TestServer::start().await;
    let key = ClientKey::generate("rp-1");
    s.add(keyed_client("rp", inline(&[&key]))).await;
    let meta: serde_json::Value =
        s.http.get(s.url("/.well-known/openid-configuration")).send().await.unwrap().json().await.unwrap();
    for m in [
        "token_endpoint_auth_methods_supported",
        "revocation_endpoint_auth_methods_supported",
        "introspection_endpoint_auth_methods_supported",
    ] {
        assert!(meta[m].as_array().unwrap().contains(&json!("private_key_jwt")), "{m}: {meta}");
    }
    assert!(meta["token_endpoint_auth_signing_alg_values_supported"].as_array().unwrap().contains(&json!("ES256")));
    assert!(!meta["token_endpoint_auth_signing_alg_values_supported"].as_array().unwrap().contains(&json!("HS256")));

    // PAR, authenticated with an assertion for the issuer.
    let v = CodeVerifier::generate();
    let challenge = v.challenge();
    let (status, body) = post(
        &s,
        "/par",
        &key.assertion("rp", &s.base, s.now()),
        &[
            ("response_type", "code"),
            ("redirect_uri", REDIRECT),
            ("scope", "openid profile"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("state", "s"),
        ],
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let mut url = url::Url::parse(&s.url("/authorize")).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", "rp")
        .append_pair("request_uri", body["request_uri"].as_str().unwrap());
    let code = s.sign_in_at(&s.browser(), url.as_str()).await.redirect_query()["code"].clone();
    // The code exchange, with an assertion for the token endpoint's URL.
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", v.expose_secret()),
    ];
    let (status, tokens) = post(&s, "/token", &key.assertion("rp", &s.url("/token"), s.now()), &form).await;
    assert_eq!(status, 200, "{tokens}");
    assert!(tokens["id_token"].is_string() && tokens["refresh_token"].is_string());
    let at = tokens["access_token"].as_str().unwrap();
    // Introspection and revocation take assertions too (for the issuer or their own URL).
    let a = key.assertion("rp", &s.url("/introspect"), s.now());
    let (status, v) = post(&s, "/introspect", &a, &[("token", at)]).await;
    assert_eq!((status, &v["active"]), (200, &json!(true)), "{v}");
    let (status, _) = post(&s, "/revoke", &key.assertion("rp", &s.base, s.now()), &[("token", at)]).await;
    assert_eq!(status, 200);
    let a = key.assertion("rp", &s.base, s.now());
    assert_eq!(post(&s, "/introspect", &a, &[("token", at)]).await.1["active"], false);
    // An assertion for one endpoint is not taken at another.
    refused(post(&s, "/revoke", &key.assertion("rp", &s.url("/token"), s.now()), &[("token", at)]).await, "aud");
    // Nor a secret, nor nothing, for this client.
    refused(
        s.post_form("/token", Some(("rp", "guess")), &[("grant_type", "client_credentials")]).await,
        "private_key_jwt",
    );
    refused(
        s.post_form("/token", None, &[("grant_type", "client_credentials"), ("client_id", "rp")]).await,
        "private_key_jwt",
    );
}

#[tokio::test]
async fn every_rule_of_an_assertion_is_enforced() {
    let s = TestServer::start().await;
    let key = ClientKey::generate("k1");
    s.add(keyed_client("svc", inline(&[&key]))).await;
    let now = s.now();
    let good = key.assertion("svc", &s.base, now);
    assert_eq!(cc(&s, &good).await.0, 200);
    refused(cc(&s, &good).await, "already used");
    let with = |k: &str, v: serde_json::Value| {
        let mut c = ClientKey::claims("svc", &s.base, now);
        c[k] = v;
        key.sign(&c)
    };
    refused(cc(&s, &with("aud", json!("https://other-server.example"))).await, "aud must name");
    refused(cc(&s, &with("aud", json!(s.url("/introspect")))).await, "aud");
    refused(cc(&s, &with("exp", json!(now - 60))).await, "exp is missing or in the past");
    refused(cc(&s, &with("exp", json!(now + 3600))).await, "too far in the future");
    refused(cc(&s, &with("iat", json!(now + 600))).await, "in the future");
    refused(cc(&s, &with("jti", json!(null))).await, "jti");
    refused(cc(&s, &with("sub", json!("someone-else"))).await, "iss and sub");
    // Signed by a key the client did not register (with the registered kid, and without).
    let thief = ClientKey::generate("k1");
    refused(cc(&s, &thief.assertion("svc", &s.base, now)).await, "signature is invalid");
    let other_kid = ClientKey::generate("k9");
    refused(cc(&s, &other_kid.assertion("svc", &s.base, now)).await, "unknown key");
    // Another registered client's assertion cannot pass for this one.
    let other = ClientKey::generate("o1");
    s.add(keyed_client("other", inline(&[&other]))).await;
    refused(cc(&s, &other.assertion("svc", &s.base, now)).await, "unknown key");
    // Unsigned, and the wrong assertion type.
    let claims = ClientKey::claims("svc", &s.base, now);
    let b64 = |v: &serde_json::Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let none = format!("{}.{}.", b64(&json!({"alg": "none"})), b64(&claims));
    refused(cc(&s, &none).await, "alg none");
    let (status, body) = s
        .post_form(
            "/token",
            None,
            &[("grant_type", "client_credentials"), ("client_assertion_type", "urn:x"), ("client_assertion", &good)],
        )
        .await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "{body}");
    // A public client cannot authenticate with an assertion.
    refused(cc(&s, &key.assertion("spa", &s.base, now)).await, "public client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_a_burst_of_requests_with_one_assertion_one_is_accepted() {
    let s = Arc::new(TestServer::start().await);
    let key = ClientKey::generate("k1");
    s.add(keyed_client("svc", inline(&[&key]))).await;
    let assertion = key.assertion("svc", &s.base, s.now());
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (s, a) = (s.clone(), assertion.clone());
        tasks.push(tokio::spawn(async move { cc(&s, &a).await.0 }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|&&st| st == 200).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|&&st| st == 401).count(), 15, "{statuses:?}");
}

#[tokio::test]
async fn a_fapi2_clients_assertions_name_the_issuer_alone_and_use_fapi_algorithms() {
    let s = TestServer::start().await;
    let key = ClientKey::generate("k1");
    s.add(NewClient {
        protection: ClientProtection { profile: Some(SecurityProfile::Fapi2), ..Default::default() },
        ..keyed_client("bank", inline(&[&key]))
    })
    .await;
    let now = s.now();
    refused(cc(&s, &key.assertion("bank", &s.url("/token"), now)).await, "issuer identifier, as one string");
    let mut c = ClientKey::claims("bank", &s.base, now);
    c["aud"] = json!([s.base]);
    refused(cc(&s, &key.sign(&c)).await, "as one string");
    // (A standard client may name the endpoint's URL; see the end-to-end test.)
    assert_eq!(cc(&s, &key.assertion("bank", &s.base, now)).await.0, 200);
    // FAPI 2.0's algorithms are PS256, ES256 and EdDSA: an RS256 assertion is refused for the
    // fapi2 client, and taken from a standard one.
    let rsa = ClientKey::generate_rsa("r1");
    s.add(NewClient {
        protection: ClientProtection { profile: Some(SecurityProfile::Fapi2), ..Default::default() },
        ..keyed_client("bank-rsa", inline(&[&rsa]))
    })
    .await;
    s.add(keyed_client("shop-rsa", inline(&[&rsa]))).await;
    refused(cc(&s, &rsa.assertion("bank-rsa", &s.base, now)).await, "RS256 is not allowed");
    assert_eq!(cc(&s, &rsa.assertion("shop-rsa", &s.base, now)).await.0, 200);
}

/// A server that fetches `jwks_uri` from the test's https server (its CA trusted, loopback
/// allowed as `insecure_cimd_loopback` does).
async fn server_fetching_from(docs: &DocServer) -> TestServer {
    let fetcher = latchkey_server::cimd_fetch::HttpFetcher::new(&latchkey_server::cimd_fetch::FetcherSettings {
        insecure_allow_loopback: true,
        insecure_extra_root_pem: Some(docs.ca_pem.as_bytes().to_vec()),
        timeout: None,
    })
    .unwrap();
    TestServer::start_hooked(|_| {}, |p| p.with_jwks_fetcher(Arc::new(fetcher))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_uri_keys_are_cached_refetched_for_a_new_kid_and_at_most_once_per_interval() {
    let docs = DocServer::start().await;
    let s = server_fetching_from(&docs).await;
    let (k1, k2, k3) = (ClientKey::generate("k1"), ClientKey::generate("k2"), ClientKey::generate("k3"));
    let serve = |keys: &[&ClientKey]| docs.set("/jwks.json", Reply::raw(200, ClientKey::jwks(keys).into_bytes()));
    serve(&[&k1]);
    s.add(keyed_client("svc", ClientKeys::Uri { jwks_uri: docs.url("localhost", "/jwks.json") })).await;
    let hits = || docs.hits("/jwks.json");
    assert_eq!(cc(&s, &k1.assertion("svc", &s.base, s.now())).await.0, 200);
    assert_eq!(cc(&s, &k1.assertion("svc", &s.base, s.now())).await.0, 200);
    assert_eq!(hits(), 1, "cached");
    // The client rotates: a new kid makes one refetch (the last fetch is old enough).
    s.advance(JWKS_REFETCH_INTERVAL);
    serve(&[&k1, &k2]);
    assert_eq!(cc(&s, &k2.assertion("svc", &s.base, s.now())).await.0, 200);
    assert_eq!(hits(), 2);
    // Made-up kids right after: no fetch at all, however many.
    serve(&[&k1, &k2, &k3]);
    for i in 0..10 {
        let fake = ClientKey::generate(&format!("made-up-{i}"));
        refused(cc(&s, &fake.assertion("svc", &s.base, s.now())).await, "unknown key");
    }
    refused(cc(&s, &k3.assertion("svc", &s.base, s.now())).await, "unknown key");
    assert_eq!(hits(), 2, "at most one fetch per client every {JWKS_REFETCH_INTERVAL} s");
    s.advance(JWKS_REFETCH_INTERVAL);
    assert_eq!(cc(&s, &k3.assertion("svc", &s.base, s.now())).await.0, 200);
    assert_eq!(hits(), 3);
    // A jwks_uri that stops answering: refused, naming the cause, and not hammered.
    s.advance(3600);
    docs.set("/jwks.json", Reply::raw(500, vec![]));
    refused(cc(&s, &k1.assertion("svc", &s.base, s.now())).await, "answered HTTP 500");
    refused(cc(&s, &k1.assertion("svc", &s.base, s.now())).await, "answered HTTP 500");
    assert_eq!(hits(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_uri_on_a_private_address_is_never_fetched() {
    let docs = DocServer::start().await;
    let s = server_fetching_from(&docs).await;
    let key = ClientKey::generate("k1");
    for (id, host, kind) in
        [("intranet", "10.0.0.1", "a private-network address"), ("metadata", "169.254.169.254", "a link-local address")]
    {
        s.add(keyed_client(id, ClientKeys::Uri { jwks_uri: format!("https://{host}/jwks.json") })).await;
        let got = cc(&s, &key.assertion(id, &s.base, s.now())).await;
        refused(got, &format!("resolves to {host}, {kind}, which this server never connects to"));
    }
    // Without a fetcher (no HTTPS client installed), nothing is fetched either.
    let bare = TestServer::start().await;
    bare.add(keyed_client("svc", ClientKeys::Uri { jwks_uri: docs.url("localhost", "/jwks.json") })).await;
    refused(cc(&bare, &key.assertion("svc", &bare.base, bare.now())).await, "fetches no URLs");
    assert_eq!(docs.hits("/jwks.json"), 0);
}

#[tokio::test]
async fn a_client_registers_itself_for_private_key_jwt_and_authenticates_with_its_key() {
    let s = TestServer::start().await;
    let key = ClientKey::generate("dyn-1");
    let jwks: serde_json::Value = serde_json::from_str(&ClientKey::jwks(&[&key])).unwrap();
    let res = s
        .http
        .post(s.url("/register"))
        .json(&json!({
            "redirect_uris": ["https://app.example/cb"],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": jwks,
            "client_name": "Keyed",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let reg: serde_json::Value = res.json().await.unwrap();
    assert_eq!(reg["token_endpoint_auth_method"], "private_key_jwt");
    assert!(reg.get("client_secret").is_none() && reg.get("client_secret_expires_at").is_none(), "{reg}");
    assert_eq!(reg["jwks"]["keys"][0]["kid"], "dyn-1");
    let id = reg["client_id"].as_str().unwrap();
    let v = CodeVerifier::generate();
    let challenge = v.challenge();
    let form = [
        ("response_type", "code"),
        ("redirect_uri", "https://app.example/cb"),
        ("scope", "openid"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let (status, body) = post(&s, "/par", &key.assertion(id, &s.base, s.now()), &form).await;
    assert_eq!(status, 201, "{body}");
    let thief = ClientKey::generate("dyn-1");
    refused(post(&s, "/par", &thief.assertion(id, &s.base, s.now()), &form).await, "signature is invalid");
    // Private keys are not registered.
    let mut private = jwks.clone();
    private["keys"][0]["d"] = json!("jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI");
    let res = s
        .http
        .post(s.url("/register"))
        .json(&json!({ "redirect_uris": ["https://app.example/cb"], "token_endpoint_auth_method": "private_key_jwt", "jwks": private }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(body["error_description"].as_str().unwrap().contains("private"), "{body}");
}

fn latchkey(db: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args).arg("--database").arg(db).env_remove("RUST_LOG");
    for (k, _) in std::env::vars() {
        if k.starts_with("LATCHKEY_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd.output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn client_add_takes_keys_and_the_fapi2_profile_refuses_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cli.db");
    let key = ClientKey::generate("cli-1");
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, ClientKey::jwks(&[&key])).unwrap();
    let jwks_arg = jwks.to_str().unwrap();
    let (ok, out, err) = latchkey(
        &db,
        &[
            "client",
            "add",
            "--client-id",
            "bank",
            "--jwks",
            jwks_arg,
            "--redirect-uri",
            REDIRECT,
            "--profile",
            "fapi2",
            "--require-par",
        ],
    );
    assert!(ok, "{err}");
    assert!(!out.contains("client_secret"), "no secret for a private_key_jwt client: {out}");
    let (ok, out, _) = latchkey(&db, &["client", "show", "bank"]);
    assert!(ok);
    for line in [
        "token_endpoint_auth_method: private_key_jwt",
        "jwks: 1 key(s): cli-1",
        "profile: fapi2",
        "require_pushed_authorization_requests: true",
    ] {
        assert!(out.contains(line), "{line:?} in {out}");
    }
    let (ok, out, _) = latchkey(&db, &["client", "show", "bank", "--json"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["jwks"]["keys"][0]["kid"], "cli-1");
    let (ok, _, err) = latchkey(
        &db,
        &["client", "add", "--client-id", "uri", "--jwks-uri", "https://rp.example/jwks.json", "--client-credentials"],
    );
    assert!(ok, "{err}");
    let (_, out, _) = latchkey(&db, &["client", "show", "uri"]);
    assert!(out.contains("jwks_uri: https://rp.example/jwks.json"), "{out}");
    // Refused: a secret under fapi2, a private key, plain http, keys for a public client.
    let (ok, _, err) =
        latchkey(&db, &["client", "add", "--confidential", "--profile", "fapi2", "--redirect-uri", REDIRECT]);
    assert!(!ok && err.contains("fapi2 profile does not allow client secrets"), "{err}");
    std::fs::write(&jwks, r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#).unwrap();
    let (ok, _, err) = latchkey(&db, &["client", "add", "--jwks", jwks_arg, "--redirect-uri", REDIRECT]);
    assert!(!ok && err.contains("private or symmetric key material"), "{err}");
    let (ok, _, err) =
        latchkey(&db, &["client", "add", "--jwks-uri", "http://rp.example/jwks.json", "--redirect-uri", REDIRECT]);
    assert!(!ok && err.contains("https"), "{err}");
    let (ok, _, err) =
        latchkey(&db, &["client", "add", "--public", "--jwks-uri", "https://rp.example/j", "--redirect-uri", REDIRECT]);
    assert!(!ok && err.contains("cannot be used with"), "{err}");
}
