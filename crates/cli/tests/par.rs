//! Pushed authorization requests (RFC 9126) and the fapi2 profile's rules at `/authorize`: every
//! rule is attacked once (a reused, foreign, expired or forged `request_uri`, a plain request from
//! a client that must push, a bad request pushed), and the pushed flow is run end to end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::{Browser, REDIRECT, TestServer};
use latchkey_core::admin::NewClient;
use latchkey_core::store::{ClientProtection, SecurityProfile};
use latchkey_proto::CodeVerifier;
use latchkey_proto::dpop::DpopKey;

const PREFIX: &str = "urn:ietf:params:oauth:request_uri:";

/// The parameters of a good authorization request of `client_id`.
fn request(client_id: &str, verifier: &CodeVerifier) -> Vec<(String, String)> {
    [
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", REDIRECT),
        ("scope", "openid profile"),
        ("code_challenge", verifier.challenge().as_str()),
        ("code_challenge_method", "S256"),
        ("state", "pushed-state"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn with(mut form: Vec<(String, String)>, key: &str, value: Option<&str>) -> Vec<(String, String)> {
    form.retain(|(k, _)| k != key);
    if let Some(v) = value {
        form.push((key.to_owned(), v.to_owned()));
    }
    form
}

async fn push(s: &TestServer, basic: Option<(&str, &str)>, form: &[(String, String)]) -> (u16, serde_json::Value) {
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    s.post_form("/par", basic, &form).await
}

/// Pushes a good request of `client_id`; returns its `request_uri`.
async fn pushed(s: &TestServer, client_id: &str, verifier: &CodeVerifier) -> String {
    let (status, body) = push(s, None, &request(client_id, verifier)).await;
    assert_eq!(status, 201, "{body}");
    body["request_uri"].as_str().unwrap().to_owned()
}

fn authorize_url(s: &TestServer, client_id: &str, request_uri: &str) -> String {
    let mut u = url::Url::parse(&s.url("/authorize")).unwrap();
    u.query_pairs_mut().append_pair("client_id", client_id).append_pair("request_uri", request_uri);
    u.into()
}

/// An error page (never a redirect to the client) that says `cause`.
fn assert_error_page(page: &common::Page, cause: &str) {
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.location().is_empty(), "never a redirect: {}", page.location());
    let text = html_escape::decode_html_entities(&page.body).to_string();
    assert!(text.contains(cause), "the page should say {cause:?}: {text}");
}

/// A DPoP proof for a token request (the fapi2 profile requires sender-constrained tokens; where
/// DPoP is not enforced the header is ignored).
fn dpop(s: &TestServer, key: &DpopKey) -> String {
    key.proof("POST", &s.url("/token"), s.now(), None, None).unwrap()
}

/// A public client's code exchange with a DPoP proof.
async fn exchange_dpop(s: &TestServer, client_id: &str, code: &str, v: &CodeVerifier) -> (u16, serde_json::Value) {
    let key = DpopKey::generate().unwrap();
    let res = s
        .http
        .post(s.url("/token"))
        .header("DPoP", dpop(s, &key))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("client_id", client_id),
            ("code_verifier", v.expose_secret()),
        ])
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap_or_default())
}

#[tokio::test]
async fn a_pushed_request_signs_in_end_to_end_with_only_its_own_parameters_and_once() {
    let s = TestServer::start().await;
    let meta: serde_json::Value =
        s.http.get(s.url("/.well-known/openid-configuration")).send().await.unwrap().json().await.unwrap();
    assert_eq!(meta["pushed_authorization_request_endpoint"], s.url("/par"));
    assert_eq!(meta["require_pushed_authorization_requests"], false);

    let v = CodeVerifier::generate();
    let (status, body) = push(&s, None, &request("spa", &v)).await;
    assert_eq!(status, 201, "{body}");
    let uri = body["request_uri"].as_str().unwrap();
    assert!(uri.starts_with(PREFIX) && uri.len() == PREFIX.len() + 43, "256 random bits: {uri}");
    assert_eq!(body["expires_in"], 60);
    // RFC 9126 §4: what the browser adds is ignored; the pushed request alone counts.
    let url = format!(
        "{}&state=front-state&scope=openid%20email&redirect_uri=http%3A%2F%2F127.0.0.1%2Floopback",
        authorize_url(&s, "spa", uri)
    );
    let b = s.browser();
    let res = s.sign_in_at(&b, &url).await;
    let q = res.redirect_query();
    assert!(res.location().starts_with(REDIRECT), "the pushed redirect_uri: {}", res.location());
    assert_eq!(q["state"], "pushed-state");
    assert_eq!(q["iss"], s.base, "RFC 9207");
    let (status, tokens) = s.exchange("spa", &q["code"], &v).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["scope"], "openid profile", "the pushed scope");

    // Single use: the same request_uri again, even in the browser that used it.
    let again = b.get(&authorize_url(&s, "spa", uri)).await;
    assert_error_page(&again, "unknown, expired or already used");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_a_burst_of_authorizations_with_one_request_uri_one_goes_through() {
    let s = Arc::new(TestServer::start().await);
    let uri = pushed(&s, "spa", &CodeVerifier::generate()).await;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let url = authorize_url(&s, "spa", &uri);
        tasks.push(tokio::spawn(async move { Browser::new().get(&url).await.status }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|&&st| st == 200).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|&&st| st == 400).count(), 15, "{statuses:?}");
}

#[tokio::test]
async fn another_clients_expired_or_forged_request_uri_is_refused() {
    let s = TestServer::start().await;
    s.add_client("other", false, false).await;
    // Another client brings spa's request_uri: refused, and the request is spent (whoever saw
    // it, it is not to be trusted any more).
    let uri = pushed(&s, "spa", &CodeVerifier::generate()).await;
    assert_error_page(&s.browser().get(&authorize_url(&s, "other", &uri)).await, "pushed by another client");
    assert_error_page(&s.browser().get(&authorize_url(&s, "spa", &uri)).await, "already used");
    // No client_id at all.
    let uri = pushed(&s, "spa", &CodeVerifier::generate()).await;
    let page = s.browser().get(&format!("{}?request_uri={}", s.url("/authorize"), urlencode(&uri))).await;
    assert_error_page(&page, "client_id is required with request_uri");
    // Expired: pushed requests live [par] ttl (60 s).
    let uri = pushed(&s, "spa", &CodeVerifier::generate()).await;
    s.advance(61);
    assert_error_page(&s.browser().get(&authorize_url(&s, "spa", &uri)).await, "expired");
    // Made up, or from elsewhere.
    let forged = format!("{PREFIX}{}", "A".repeat(43));
    assert_error_page(&s.browser().get(&authorize_url(&s, "spa", &forged)).await, "unknown, expired or already used");
    let page = s.browser().get(&authorize_url(&s, "spa", "https://attacker.example/request.jwt")).await;
    assert_error_page(&page, "not one this server issued");
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn a_client_that_must_push_cannot_send_a_plain_request() {
    let s = TestServer::start().await;
    s.add(NewClient {
        protection: ClientProtection { require_pushed_authorization_requests: true, ..Default::default() },
        ..NewClient::public("pushy", "Pushy", vec![REDIRECT.into()])
    })
    .await;
    let v = CodeVerifier::generate();
    let plain = s.browser().get(&s.authorize_url("pushy", &v, "")).await;
    assert_error_page(&plain, "must push its authorization requests");
    // Others are not affected, and the pushed way works.
    assert_eq!(s.browser().get(&s.authorize_url("spa", &v, "")).await.status, 200);
    let uri = pushed(&s, "pushy", &v).await;
    let code = s.sign_in_at(&s.browser(), &authorize_url(&s, "pushy", &uri)).await.redirect_query()["code"].clone();
    assert_eq!(s.exchange("pushy", &code, &v).await.0, 200);

    // `[par] require`: every client, and discovery says so.
    let s = TestServer::start_with(|c| c.protection.par.require = true).await;
    let meta: serde_json::Value =
        s.http.get(s.url("/.well-known/oauth-authorization-server")).send().await.unwrap().json().await.unwrap();
    assert_eq!(meta["require_pushed_authorization_requests"], true);
    assert_error_page(&s.browser().get(&s.authorize_url("spa", &v, "")).await, "must push");
    let uri = pushed(&s, "spa", &v).await;
    assert_eq!(s.browser().get(&authorize_url(&s, "spa", &uri)).await.status, 200);
}

#[tokio::test]
async fn a_bad_request_is_refused_at_the_par_endpoint_not_later() {
    let s = TestServer::start().await;
    let secret = s.add_client("backend", true, false).await.unwrap();
    let v = CodeVerifier::generate();
    let good = request("spa", &v);
    for (form, code, cause) in [
        (
            with(good.clone(), "redirect_uri", Some("https://attacker.example/cb")),
            "invalid_request",
            "redirect_uri is not registered",
        ),
        (with(good.clone(), "redirect_uri", None), "invalid_request", "redirect_uri parameter is missing"),
        (with(good.clone(), "code_challenge_method", Some("plain")), "invalid_request", "S256"),
        (with(good.clone(), "code_challenge", None), "invalid_request", "code_challenge"),
        (with(good.clone(), "scope", Some("openid admin")), "invalid_scope", "admin"),
        (with(good.clone(), "response_type", Some("token")), "unsupported_response_type", "response_type=code"),
        (
            with(good.clone(), "request_uri", Some(&format!("{PREFIX}x"))),
            "invalid_request",
            "request_uri must not be sent",
        ),
        (with(good.clone(), "request", Some("e30.e30.")), "request_not_supported", "request objects"),
    ] {
        let (status, body) = push(&s, None, &form).await;
        assert_eq!((status, body["error"].as_str().unwrap()), (400, code), "{body}");
        assert!(body["error_description"].as_str().unwrap().contains(cause), "{cause}: {body}");
    }
    // Client authentication as at /token.
    let (status, body) = push(&s, None, &with(good.clone(), "client_id", Some("nobody"))).await;
    assert_eq!((status, body["error"].as_str().unwrap()), (401, "invalid_client"), "{body}");
    let backend = with(good.clone(), "client_id", Some("backend"));
    let (status, body) = push(&s, None, &backend).await;
    assert_eq!(status, 401, "a confidential client must authenticate: {body}");
    let (status, body) = push(&s, Some(("backend", "wrong")), &with(backend.clone(), "client_id", None)).await;
    assert_eq!(status, 401, "{body}");
    // With HTTP Basic the body needs no client_id; the pushed request gets the client's.
    let (status, body) = push(&s, Some(("backend", &secret)), &with(backend.clone(), "client_id", None)).await;
    assert_eq!(status, 201, "{body}");
    let uri = body["request_uri"].as_str().unwrap();
    assert_eq!(s.browser().get(&authorize_url(&s, "backend", uri)).await.status, 200);
    // A body client_id naming another client than the authenticated one.
    let (status, body) = push(&s, Some(("backend", &secret)), &good).await;
    assert_eq!(status, 400, "{body}");
    // CORS like /token: any origin, no credentials.
    let res = s.http.post(s.url("/par")).header("origin", "https://spa.example").form(&good).send().await.unwrap();
    assert_eq!(res.headers()["access-control-allow-origin"], "*");
    assert_eq!(res.status(), 201);
}

#[tokio::test]
async fn pushed_requests_are_bounded_per_client() {
    let s = TestServer::start_with(|c| c.protection.par.max_per_client = 3).await;
    s.add_client("other", false, false).await;
    let v = CodeVerifier::generate();
    let mut uris = Vec::new();
    for _ in 0..3 {
        uris.push(pushed(&s, "spa", &v).await);
    }
    let (status, body) = push(&s, None, &request("spa", &v)).await;
    assert_eq!((status, body["error"].as_str().unwrap()), (503, "temporarily_unavailable"), "{body}");
    // Another client is not affected; a used request frees its place.
    assert_eq!(push(&s, None, &request("other", &v)).await.0, 201);
    assert_eq!(s.browser().get(&authorize_url(&s, "spa", &uris[0])).await.status, 200);
    assert_eq!(push(&s, None, &request("spa", &v)).await.0, 201);
}

#[tokio::test]
async fn the_fapi2_profile_refuses_plain_requests_and_client_secrets_and_keeps_codes_short() {
    let s = TestServer::start_with(|c| {
        c.protection.profile = SecurityProfile::Fapi2;
        c.code_ttl = 300;
    })
    .await;
    let key = DpopKey::generate().unwrap();
    let v = CodeVerifier::generate();
    // A confidential client with a shared secret: refused at /token and at /par alike.
    let secret = s.add_client("backend", true, false).await.unwrap();
    let res = s
        .http
        .post(s.url("/token"))
        .basic_auth("backend", Some(&secret))
        .header("DPoP", dpop(&s, &key))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
    assert!(body["error_description"].as_str().unwrap().contains("fapi2"), "{body}");
    let (status, body) = push(&s, Some(("backend", &secret)), &with(request("backend", &v), "client_id", None)).await;
    assert_eq!(status, 401, "{body}");
    // Plain requests are refused, pushed ones work.
    assert_error_page(&s.browser().get(&s.authorize_url("spa", &v, "")).await, "must push");
    // Codes live 60 s under fapi2 whatever code_lifetime says.
    let uri = pushed(&s, "spa", &v).await;
    let code = s.sign_in_at(&s.browser(), &authorize_url(&s, "spa", &uri)).await.redirect_query()["code"].clone();
    s.advance(61);
    let (status, body) = exchange_dpop(&s, "spa", &code, &v).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");

    // Per client: the standard deployment keeps 300 s codes for others, 60 s for a fapi2 client.
    let s = TestServer::start_with(|c| c.code_ttl = 300).await;
    s.add(NewClient {
        protection: ClientProtection { profile: Some(SecurityProfile::Fapi2), ..Default::default() },
        ..NewClient::public("strict", "Strict", vec![REDIRECT.into()])
    })
    .await;
    assert_error_page(&s.browser().get(&s.authorize_url("strict", &v, "")).await, "must push");
    let (_, plain_code) = s.code_for("spa", &v).await;
    let uri = pushed(&s, "strict", &v).await;
    let strict_code =
        s.sign_in_at(&s.browser(), &authorize_url(&s, "strict", &uri)).await.redirect_query()["code"].clone();
    s.advance(61);
    assert_eq!(s.exchange("spa", &plain_code, &v).await.0, 200, "a standard client's code lives code_lifetime");
    let (status, body) = exchange_dpop(&s, "strict", &strict_code, &v).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "60 s for the fapi2 client: {body}");
}

/// Pushes `form` as the public client would, with `proofs` as its `DPoP` headers; the status, the
/// body and the `DPoP-Nonce` header.
async fn push_dpop(
    s: &TestServer,
    form: &[(String, String)],
    proofs: &[&str],
) -> (u16, serde_json::Value, Option<String>) {
    let mut req = s.http.post(s.url("/par")).form(form);
    for p in proofs {
        req = req.header("DPoP", *p);
    }
    let res = req.send().await.unwrap();
    let nonce = res.headers().get("DPoP-Nonce").map(|v| v.to_str().unwrap().to_owned());
    (res.status().as_u16(), res.json().await.unwrap_or_default(), nonce)
}

/// A code exchange of `spa` with a proof by `key`.
async fn exchange_with(s: &TestServer, key: &DpopKey, code: &str, v: &CodeVerifier) -> (u16, serde_json::Value) {
    let res = s
        .http
        .post(s.url("/token"))
        .header("DPoP", dpop(s, key))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("client_id", "spa"),
            ("code_verifier", v.expose_secret()),
        ])
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap_or_default())
}

#[tokio::test]
async fn a_dpop_proof_at_the_par_endpoint_binds_the_code_to_its_key() {
    let s = TestServer::start().await;
    let key = DpopKey::generate().unwrap();
    let v = CodeVerifier::generate();
    // RFC 9449 §10.1: the proof is for the PAR endpoint's URL; one made for /token is refused.
    let misdirected = dpop(&s, &key);
    let (status, body, _) = push_dpop(&s, &request("spa", &v), &[&misdirected]).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_dpop_proof");
    assert!(body["error_description"].as_str().unwrap().contains("htu"), "{body}");

    let at_par = key.proof("POST", &s.url("/par"), s.now(), None, None).unwrap();
    let (status, body, _) = push_dpop(&s, &request("spa", &v), &[&at_par]).await;
    assert_eq!(status, 201, "{body}");
    // The proof is single-use here as at /token (§11.1).
    let (status, again, _) = push_dpop(&s, &request("spa", &v), &[&at_par]).await;
    assert_eq!(status, 400, "{again}");
    assert_eq!(again["error"], "invalid_dpop_proof");

    let b = s.browser();
    let res = s.sign_in_at(&b, &authorize_url(&s, "spa", body["request_uri"].as_str().unwrap())).await;
    let code = res.redirect_query()["code"].clone();
    // A thief holding the code but another key is refused, and the code is not spent by it.
    let (status, refused) = exchange_with(&s, &DpopKey::generate().unwrap(), &code, &v).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"], "invalid_dpop_proof");
    assert!(refused["error_description"].as_str().unwrap().contains("dpop_jkt"), "{refused}");
    // Without any proof, likewise.
    let (status, plain) = s.exchange("spa", &code, &v).await;
    assert_eq!(status, 400, "{plain}");
    assert_eq!(plain["error"], "invalid_dpop_proof");
    let (status, tokens) = exchange_with(&s, &key, &code, &v).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["token_type"], "DPoP");
}

#[tokio::test]
async fn a_pushed_request_whose_proof_and_dpop_jkt_disagree_is_refused() {
    let s = TestServer::start().await;
    let key = DpopKey::generate().unwrap();
    let other = DpopKey::generate().unwrap();
    let v = CodeVerifier::generate();
    let form = with(request("spa", &v), "dpop_jkt", Some(other.jkt()));
    let proof = key.proof("POST", &s.url("/par"), s.now(), None, None).unwrap();
    let (status, body, _) = push_dpop(&s, &form, &[&proof]).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_dpop_proof");
    assert!(body["error_description"].as_str().unwrap().contains("dpop_jkt"), "{body}");

    // Agreeing, they are one binding; a malformed dpop_jkt alone is refused at PAR, not later.
    let form = with(request("spa", &v), "dpop_jkt", Some(key.jkt()));
    let proof = key.proof("POST", &s.url("/par"), s.now(), None, None).unwrap();
    let (status, body, _) = push_dpop(&s, &form, &[&proof]).await;
    assert_eq!(status, 201, "{body}");
    let (status, body, _) = push_dpop(&s, &with(request("spa", &v), "dpop_jkt", Some("abc")), &[]).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_request");
}

#[tokio::test]
async fn the_par_endpoint_asks_for_a_dpop_nonce_where_they_are_required() {
    let s = TestServer::start_with(|c| c.protection.dpop.require_nonce = true).await;
    let key = DpopKey::generate().unwrap();
    let v = CodeVerifier::generate();
    let bare = key.proof("POST", &s.url("/par"), s.now(), None, None).unwrap();
    let (status, body, nonce) = push_dpop(&s, &request("spa", &v), &[&bare]).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "use_dpop_nonce");
    let nonce = nonce.expect("§8: the nonce to use comes with use_dpop_nonce");
    let with_nonce = key.proof("POST", &s.url("/par"), s.now(), Some(&nonce), None).unwrap();
    let (status, body, fresh) = push_dpop(&s, &request("spa", &v), &[&with_nonce]).await;
    assert_eq!(status, 201, "{body}");
    assert!(fresh.is_some(), "§8.2: a fresh nonce on success too");
}
