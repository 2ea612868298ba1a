//! DPoP at the authorization server (RFC 9449): tokens bound to a key the client holds, at
//! `/token` (every grant), `/authorize` (`dpop_jkt`), introspection and userinfo.
//!
//! Every refusal is an attack: a copied proof, code or token used without the key, or a proof
//! made for another request. Each test shows the attack failing and, where it matters, that the
//! refusal had no side effect (the honest client's next request still succeeds).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{PASSWORD, REDIRECT, TestServer, jwt_parts};
use latchkey_core::admin::NewClient;
use latchkey_proto::CodeVerifier;
use latchkey_proto::dpop::DpopKey;
use serde_json::Value;

/// A response as the tests read it.
struct Answer {
    status: u16,
    body: Value,
    headers: reqwest::header::HeaderMap,
}

impl Answer {
    fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or_default()
    }
    fn description(&self) -> &str {
        self.body["error_description"].as_str().unwrap_or_default()
    }
    fn nonce(&self) -> Option<String> {
        self.headers.get("dpop-nonce").map(|v| v.to_str().unwrap().to_owned())
    }
    fn challenges(&self) -> Vec<String> {
        self.headers.get_all("www-authenticate").iter().map(|v| v.to_str().unwrap().to_owned()).collect()
    }
    /// Asserts a refusal with `error` whose description contains `needle`.
    fn refused(&self, status: u16, error: &str, needle: &str) {
        assert_eq!((self.status, self.error()), (status, error), "{}", self.body);
        assert!(self.description().contains(needle), "{needle:?} not in {:?}", self.description());
    }
}

async fn answer(res: reqwest::Response) -> Answer {
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.json().await.unwrap_or(Value::Null);
    Answer { status, body, headers }
}

/// POST /token with the given DPoP headers (none, one, or several) and optional Basic auth.
async fn token(s: &TestServer, form: &[(&str, &str)], proofs: &[&str], basic: Option<(&str, &str)>) -> Answer {
    token_at(&s.http, &s.url("/token"), form, proofs, basic).await
}

async fn token_at(
    http: &reqwest::Client,
    url: &str,
    form: &[(&str, &str)],
    proofs: &[&str],
    basic: Option<(&str, &str)>,
) -> Answer {
    let mut req = http.post(url).form(form);
    for p in proofs {
        req = req.header("DPoP", *p);
    }
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    answer(req.send().await.unwrap()).await
}

/// GET /userinfo with `Authorization: <scheme> <token>` and the given DPoP headers.
async fn userinfo(s: &TestServer, scheme: &str, access_token: &str, proofs: &[&str]) -> Answer {
    let mut req = s.http.get(s.url("/userinfo")).header("authorization", format!("{scheme} {access_token}"));
    for p in proofs {
        req = req.header("DPoP", *p);
    }
    answer(req.send().await.unwrap()).await
}

/// A proof by `key` for `method` on this server's `path`, made at the server's "now".
fn proof(s: &TestServer, key: &DpopKey, method: &str, path: &str) -> String {
    key.proof(method, &s.url(path), s.now(), None, None).unwrap()
}

/// A proof for userinfo that presents `access_token` (`ath`).
fn resource_proof(s: &TestServer, key: &DpopKey, access_token: &str) -> String {
    key.proof("GET", &s.url("/userinfo"), s.now(), None, Some(access_token)).unwrap()
}

/// The browser part (authorize, log in, consent) with `extra` query parameters.
async fn code_with(s: &TestServer, client_id: &str, v: &CodeVerifier, extra: &str) -> String {
    let b = s.browser();
    let page = b.get(&s.authorize_url(client_id, v, extra)).await;
    assert_eq!(page.status, 200, "login page expected: {}", page.body);
    let mut res = b.submit_login(&s.base, &page.body, "alice", PASSWORD).await;
    if res.status == 303 && res.location().starts_with("/consent") {
        let consent = b.get(&s.url(&res.location())).await;
        res = b.submit_consent(&s.base, &consent.body, "allow").await;
    }
    res.redirect_query().get("code").unwrap_or_else(|| panic!("no code in {:?}", res.location())).clone()
}

fn exchange_form<'a>(client_id: &'a str, code: &'a str, v: &'a CodeVerifier) -> [(&'a str, &'a str); 5] {
    [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("client_id", client_id),
        ("code_verifier", v.expose_secret()),
    ]
}

fn refresh_form<'a>(client_id: &'a str, refresh_token: &'a str) -> [(&'a str, &'a str); 3] {
    [("grant_type", "refresh_token"), ("refresh_token", refresh_token), ("client_id", client_id)]
}

/// A confidential client for client_credentials, returning its secret.
async fn service(s: &TestServer, id: &str) -> String {
    s.add(NewClient {
        confidential: true,
        client_credentials: true,
        extra_scopes: vec!["api:read".into()],
        ..NewClient::public(id, "Service", vec![])
    })
    .await
    .unwrap()
}

const CC: [(&str, &str); 1] = [("grant_type", "client_credentials")];

/// The proof's header and claims, changed by `edit`, re-encoded with the original signature.
fn tampered(proof: &str, edit: impl FnOnce(&mut Value, &mut Value)) -> String {
    let parts: Vec<&str> = proof.split('.').collect();
    let decode = |p: &str| serde_json::from_slice::<Value>(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap();
    let (mut header, mut claims) = (decode(parts[0]), decode(parts[1]));
    edit(&mut header, &mut claims);
    let encode = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.{}", encode(&header), encode(&claims), parts[2])
}

/// Like [`tampered`], but signed again by `key`: a proof its holder really made.
fn resigned(key: &DpopKey, proof: &str, edit: impl FnOnce(&mut Value, &mut Value)) -> String {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
    let changed = tampered(proof, edit);
    let input = changed.rsplit_once('.').unwrap().0;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, key.pkcs8()).unwrap();
    let sig = pair.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}

#[tokio::test]
async fn a_code_exchanged_with_a_proof_gives_tokens_bound_to_the_key_everywhere() {
    let s = TestServer::start().await;
    let rs_secret =
        s.add(NewClient { resource_server: true, ..NewClient::public("api", "API", vec![]) }).await.unwrap();
    let key = DpopKey::generate().unwrap();

    let meta: Value =
        s.http.get(s.url("/.well-known/openid-configuration")).send().await.unwrap().json().await.unwrap();
    let algs = meta["dpop_signing_alg_values_supported"].as_array().unwrap();
    assert!(algs.iter().any(|a| a == "ES256") && !algs.iter().any(|a| a.as_str().unwrap().starts_with("HS")));

    let v = CodeVerifier::generate();
    let code = code_with(&s, "spa", &v, "").await;
    let t = token(&s, &exchange_form("spa", &code, &v), &[&proof(&s, &key, "POST", "/token")], None).await;
    assert_eq!(t.status, 200, "{}", t.body);
    assert_eq!(t.body["token_type"], "DPoP", "RFC 9449 §5");
    let at = t.body["access_token"].as_str().unwrap().to_owned();
    let (_, claims) = jwt_parts(&at);
    assert_eq!(claims["cnf"]["jkt"], key.jkt(), "RFC 9449 §6.1: cnf.jkt is the key's thumbprint");
    assert!(t.nonce().is_none(), "no nonce is handed out unless nonces are required");

    // Introspection tells a resource server the binding (§6.2).
    let (status, i) = s.post_form("/introspect", Some(("api", &rs_secret)), &[("token", &at)]).await;
    assert_eq!(status, 200);
    assert_eq!((i["active"].as_bool(), i["token_type"].as_str()), (Some(true), Some("DPoP")), "{i}");
    assert_eq!(i["cnf"]["jkt"], key.jkt());

    // Userinfo with the DPoP scheme and a proof for this request.
    let u = userinfo(&s, "DPoP", &at, &[&resource_proof(&s, &key, &at)]).await;
    assert_eq!(u.status, 200, "{}", u.body);
    assert_eq!(u.body["preferred_username"], "alice");

    // The refresh (public client: bound to the same key) gives a bound token again.
    let rt = t.body["refresh_token"].as_str().unwrap();
    let r = token(&s, &refresh_form("spa", rt), &[&proof(&s, &key, "POST", "/token")], None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["token_type"], "DPoP");
    assert_eq!(jwt_parts(r.body["access_token"].as_str().unwrap()).1["cnf"]["jkt"], key.jkt());

    // Without a proof everything stays as it was: Bearer, no cnf.
    let v = CodeVerifier::generate();
    let code = code_with(&s, "spa", &v, "").await;
    let t = token(&s, &exchange_form("spa", &code, &v), &[], None).await;
    assert_eq!(t.body["token_type"], "Bearer");
    let bearer = t.body["access_token"].as_str().unwrap();
    assert!(jwt_parts(bearer).1.get("cnf").is_none());
    let (_, i) = s.post_form("/introspect", Some(("api", &rs_secret)), &[("token", bearer)]).await;
    assert_eq!(i["token_type"], "Bearer");
    assert!(i.get("cnf").is_none());
    assert_eq!(userinfo(&s, "Bearer", bearer, &[]).await.status, 200);
}

#[tokio::test]
async fn each_check_of_a_proof_refuses_a_forged_or_misdirected_one() {
    let s = TestServer::start().await;
    let key = DpopKey::generate().unwrap();
    let v = CodeVerifier::generate();
    let code = code_with(&s, "spa", &v, "").await;
    let form = exchange_form("spa", &code, &v);
    let good = proof(&s, &key, "POST", "/token");
    let now = s.now();
    let port = s.base.rsplit(':').next().unwrap().to_owned();

    let cases: Vec<(&str, String, &str)> = vec![
        ("wrong htm", proof(&s, &key, "GET", "/token"), "htm \"GET\" is not this request's method POST"),
        ("another path", proof(&s, &key, "POST", "/userinfo"), "htu"),
        (
            "another host",
            key.proof("POST", &format!("http://evil.example:{port}/token"), now, None, None).unwrap(),
            "htu",
        ),
        ("stale iat", key.proof("POST", &s.url("/token"), now - 61, None, None).unwrap(), "too old"),
        ("future iat", key.proof("POST", &s.url("/token"), now + 11, None, None).unwrap(), "in the future"),
        (
            "a private key in the jwk",
            tampered(&good, |h, _| h["jwk"]["d"] = "c2VjcmV0".into()),
            "jwk header holds a private key",
        ),
        ("alg none", tampered(&good, |h, _| h["alg"] = "none".into()), "alg none is not accepted"),
        ("alg HS256", tampered(&good, |h, _| h["alg"] = "HS256".into()), "alg HS256 is not accepted"),
        ("typ JWT", tampered(&good, |h, _| h["typ"] = "JWT".into()), "typ header is not dpop+jwt"),
        (
            "another key's jwk",
            tampered(&good, |h, _| h["jwk"] = DpopKey::generate().unwrap().public_jwk().clone()),
            "signature does not verify",
        ),
        ("changed claims", tampered(&good, |_, c| c["htu"] = s.url("/token?x=1").into()), "signature does not verify"),
        ("no jti", resigned(&key, &good, |_, c| drop(c.as_object_mut().unwrap().remove("jti"))), "lacks the jti claim"),
        ("htm not a string", resigned(&key, &good, |_, c| c["htm"] = 1.into()), "lacks the htm claim"),
        ("not a JWS", "not-a-proof".to_owned(), "malformed"),
    ];
    for (what, p, needle) in &cases {
        let a = token(&s, &form, &[p], None).await;
        assert_eq!(a.status, 400, "{what}: {}", a.body);
        assert_eq!(a.error(), "invalid_dpop_proof", "{what}: {}", a.body);
        assert!(a.description().contains(needle), "{what}: {needle:?} not in {:?}", a.description());
    }
    // Two proofs in one request (§4.3 point 1), even two good ones.
    let two = token(&s, &form, &[&good, &proof(&s, &key, "POST", "/token")], None).await;
    two.refused(400, "invalid_dpop_proof", "more than one DPoP header");

    // None of these refusals touched the code: the honest request still redeems it.
    let t = token(&s, &form, &[&good], None).await;
    assert_eq!((t.status, t.body["token_type"].as_str()), (200, Some("DPoP")), "{}", t.body);
}

#[tokio::test]
async fn a_proof_is_used_once_even_by_a_burst_of_concurrent_requests() {
    let s = TestServer::start().await;
    let secret = service(&s, "svc").await;
    let key = DpopKey::generate().unwrap();

    let p = proof(&s, &key, "POST", "/token");
    let first = token(&s, &CC, &[&p], Some(("svc", &secret))).await;
    assert_eq!((first.status, first.body["token_type"].as_str()), (200, Some("DPoP")), "{}", first.body);
    assert_eq!(jwt_parts(first.body["access_token"].as_str().unwrap()).1["cnf"]["jkt"], key.jkt());
    token(&s, &CC, &[&p], Some(("svc", &secret))).await.refused(400, "invalid_dpop_proof", "was used before");

    // One proof, 16 requests at once: exactly one is accepted.
    let p = Arc::new(proof(&s, &key, "POST", "/token"));
    let (url, secret) = (s.url("/token"), Arc::new(secret));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (http, url, p, secret) = (s.http.clone(), url.clone(), p.clone(), secret.clone());
        set.spawn(async move { token_at(&http, &url, &CC, &[&p], Some(("svc", &secret))).await });
    }
    let answers: Vec<Answer> = set.join_all().await;
    let ok = answers.iter().filter(|a| a.status == 200).count();
    assert_eq!(ok, 1, "exactly one use of one proof");
    for a in answers.iter().filter(|a| a.status != 200) {
        a.refused(400, "invalid_dpop_proof", "was used before");
    }
}

#[tokio::test]
async fn the_url_a_proof_names_is_the_configured_issuers_not_the_host_header() {
    // The server is reached at 127.0.0.1:port but knows itself as https://id.example (a proxy
    // in front): a proof for the address the client happened to use is not for this server.
    let s = TestServer::start_with(|c| c.issuer = "https://id.example".into()).await;
    let secret = service(&s, "svc").await;
    let key = DpopKey::generate().unwrap();
    let for_host = proof(&s, &key, "POST", "/token");
    token(&s, &CC, &[&for_host], Some(("svc", &secret))).await.refused(400, "invalid_dpop_proof", "htu");
    let for_issuer = key.proof("POST", "https://id.example/token", s.now(), None, None).unwrap();
    let ok = token(&s, &CC, &[&for_issuer], Some(("svc", &secret))).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
}

#[tokio::test]
async fn required_nonces_are_asked_for_handed_out_and_checked() {
    let s = TestServer::start_with(|c| c.protection.dpop.require_nonce = true).await;
    let secret = service(&s, "svc").await;
    let key = DpopKey::generate().unwrap();
    let url = s.url("/token");

    // §8: a proof without a nonce is answered with use_dpop_nonce and the nonce to use.
    let first = token(&s, &CC, &[&proof(&s, &key, "POST", "/token")], Some(("svc", &secret))).await;
    first.refused(400, "use_dpop_nonce", "DPoP-Nonce");
    let nonce = first.nonce().expect("a DPoP-Nonce header");
    // A nonce this deployment never issued is not one.
    let forged = key.proof("POST", &url, s.now(), Some("12345.AAAAAAAAAAAAAAAAAAAAAA"), None).unwrap();
    token(&s, &CC, &[&forged], Some(("svc", &secret))).await.refused(400, "use_dpop_nonce", "nonce");

    let with = key.proof("POST", &url, s.now(), Some(&nonce), None).unwrap();
    let ok = token(&s, &CC, &[&with], Some(("svc", &secret))).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(ok.nonce().is_some(), "§8.2: a fresh nonce on success too");

    // Userinfo asks for it the way a resource does: 401 and a DPoP challenge.
    let v = CodeVerifier::generate();
    let code = code_with(&s, "spa", &v, "").await;
    let p = key.proof("POST", &url, s.now(), Some(&nonce), None).unwrap();
    let t = token(&s, &exchange_form("spa", &code, &v), &[&p], None).await;
    assert_eq!(t.status, 200, "{}", t.body);
    let at = t.body["access_token"].as_str().unwrap();
    let u = userinfo(&s, "DPoP", at, &[&resource_proof(&s, &key, at)]).await;
    u.refused(401, "use_dpop_nonce", "DPoP-Nonce");
    assert!(u.challenges()[0].starts_with(r#"DPoP error="use_dpop_nonce""#), "{:?}", u.challenges());
    let nonce = u.nonce().expect("a DPoP-Nonce header");
    let p = key.proof("GET", &s.url("/userinfo"), s.now(), Some(&nonce), Some(at)).unwrap();
    let u = userinfo(&s, "DPoP", at, &[&p]).await;
    assert_eq!(u.status, 200, "{}", u.body);

    // A nonce lives one to two lifetimes (60 s): two lifetimes later it is refused.
    s.advance(120);
    let stale = key.proof("POST", &url, s.now(), Some(&nonce), None).unwrap();
    token(&s, &CC, &[&stale], Some(("svc", &secret))).await.refused(400, "use_dpop_nonce", "nonce");
}

#[tokio::test]
async fn a_public_clients_refresh_tokens_are_bound_to_its_key() {
    let s = TestServer::start().await;
    let (key, thief) = (DpopKey::generate().unwrap(), DpopKey::generate().unwrap());
    let v = CodeVerifier::generate();
    let code = code_with(&s, "spa", &v, "").await;
    let t = token(&s, &exchange_form("spa", &code, &v), &[&proof(&s, &key, "POST", "/token")], None).await;
    let rt = t.body["refresh_token"].as_str().unwrap().to_owned();

    // A thief holding the refresh token but not the key: without a proof, or with its own key.
    token(&s, &refresh_form("spa", &rt), &[], None).await.refused(400, "invalid_dpop_proof", "bound to a DPoP key");
    token(&s, &refresh_form("spa", &rt), &[&proof(&s, &thief, "POST", "/token")], None).await.refused(
        400,
        "invalid_dpop_proof",
        "another key",
    );
    // Neither attempt spent or revoked anything: the owner refreshes.
    let r = token(&s, &refresh_form("spa", &rt), &[&proof(&s, &key, "POST", "/token")], None).await;
    assert_eq!((r.status, r.body["token_type"].as_str()), (200, Some("DPoP")), "{}", r.body);

    // Within the grace window, a retry must prove the same key to get the cached reply.
    let again = token(&s, &refresh_form("spa", &rt), &[&proof(&s, &key, "POST", "/token")], None).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["refresh_token"], r.body["refresh_token"], "the same reply");
    let stolen = token(&s, &refresh_form("spa", &rt), &[&proof(&s, &thief, "POST", "/token")], None).await;
    stolen.refused(400, "invalid_dpop_proof", "another key");
}

#[tokio::test]
async fn a_confidential_clients_refresh_is_bound_by_its_secret_and_each_token_by_its_proof() {
    let s = TestServer::start().await;
    let secret = s.add_client("web", true, false).await.unwrap();
    let (a, b) = (DpopKey::generate().unwrap(), DpopKey::generate().unwrap());
    let v = CodeVerifier::generate();
    let code = code_with(&s, "web", &v, "").await;
    let auth = Some(("web", secret.as_str()));
    let t = token(&s, &exchange_form("web", &code, &v), &[&proof(&s, &a, "POST", "/token")], auth).await;
    assert_eq!(t.body["token_type"], "DPoP", "{}", t.body);
    let rt = t.body["refresh_token"].as_str().unwrap();

    // The refresh token needs the client's secret, not the key; the new access token is bound to
    // the key this request proves (here another one).
    let r = token(&s, &refresh_form("web", rt), &[&proof(&s, &b, "POST", "/token")], auth).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(jwt_parts(r.body["access_token"].as_str().unwrap()).1["cnf"]["jkt"], b.jkt());
    let rt = r.body["refresh_token"].as_str().unwrap();
    let r = token(&s, &refresh_form("web", rt), &[], auth).await;
    assert_eq!((r.status, r.body["token_type"].as_str()), (200, Some("Bearer")), "{}", r.body);
    assert!(jwt_parts(r.body["access_token"].as_str().unwrap()).1.get("cnf").is_none());
}

#[tokio::test]
async fn a_code_bound_by_dpop_jkt_is_redeemed_only_with_that_key() {
    let s = TestServer::start().await;
    let (key, thief) = (DpopKey::generate().unwrap(), DpopKey::generate().unwrap());
    let v = CodeVerifier::generate();
    let code = code_with(&s, "spa", &v, &format!("&dpop_jkt={}", key.jkt())).await;
    let form = exchange_form("spa", &code, &v);

    // Whoever intercepted the code (and the verifier) but not the key gets nothing (§10).
    token(&s, &form, &[&proof(&s, &thief, "POST", "/token")], None).await.refused(
        400,
        "invalid_dpop_proof",
        "dpop_jkt",
    );
    token(&s, &form, &[], None).await.refused(400, "invalid_dpop_proof", "dpop_jkt");
    let t = token(&s, &form, &[&proof(&s, &key, "POST", "/token")], None).await;
    assert_eq!((t.status, t.body["token_type"].as_str()), (200, Some("DPoP")), "{}", t.body);

    // A dpop_jkt that is not a thumbprint is refused to the client, with its state.
    let b = s.browser();
    let page = b.get(&s.authorize_url("spa", &v, "&dpop_jkt=abc")).await;
    let q = page.redirect_query();
    assert_eq!(q["error"], "invalid_request");
    assert!(q["error_description"].contains("dpop_jkt"), "{q:?}");
}

#[tokio::test]
async fn userinfo_takes_a_bound_token_only_with_a_proof_by_its_key_for_this_request() {
    let s = TestServer::start().await;
    let (key, thief) = (DpopKey::generate().unwrap(), DpopKey::generate().unwrap());
    let v = CodeVerifier::generate();
    let code = code_with(&s, "spa", &v, "").await;
    let t = token(&s, &exchange_form("spa", &code, &v), &[&proof(&s, &key, "POST", "/token")], None).await;
    let at = t.body["access_token"].as_str().unwrap().to_owned();
    let other = {
        let v = CodeVerifier::generate();
        let code = code_with(&s, "spa", &v, "").await;
        let t = token(&s, &exchange_form("spa", &code, &v), &[&proof(&s, &key, "POST", "/token")], None).await;
        t.body["access_token"].as_str().unwrap().to_owned()
    };

    // §7.2: a bound token used as a bearer token (what a thief without the key would do).
    let u = userinfo(&s, "Bearer", &at, &[]).await;
    u.refused(401, "invalid_token", "bound to a DPoP key");
    let c = u.challenges();
    assert!(c[0].starts_with(r#"Bearer realm="latchkey", error="invalid_token""#), "{c:?}");
    assert!(c.iter().any(|c| c.starts_with(r#"DPoP algs="ES256"#)), "{c:?}");
    // Even with a valid proof beside it: the Bearer scheme does not bind.
    userinfo(&s, "Bearer", &at, &[&resource_proof(&s, &key, &at)]).await.refused(401, "invalid_token", "bound");

    let cases: Vec<(&str, String, &str)> = vec![
        ("ath of another token", resource_proof(&s, &key, &other), "ath"),
        ("no ath", proof(&s, &key, "GET", "/userinfo"), "ath"),
        ("another key", resource_proof(&s, &thief, &at), "another key"),
        ("POST proof for a GET", key.proof("POST", &s.url("/userinfo"), s.now(), None, Some(&at)).unwrap(), "htm"),
        ("the token endpoint's htu", key.proof("GET", &s.url("/token"), s.now(), None, Some(&at)).unwrap(), "htu"),
    ];
    for (what, p, needle) in &cases {
        let u = userinfo(&s, "DPoP", &at, &[p]).await;
        assert_eq!((u.status, u.error()), (401, "invalid_dpop_proof"), "{what}: {}", u.body);
        assert!(u.description().contains(needle), "{what}: {needle:?} not in {:?}", u.description());
        assert!(u.challenges()[0].starts_with(r#"DPoP error="invalid_dpop_proof""#), "{what}: {:?}", u.challenges());
    }
    userinfo(&s, "DPoP", &at, &[]).await.refused(401, "invalid_dpop_proof", "needs a DPoP proof");

    // A proof is good for one request only.
    let p = resource_proof(&s, &key, &at);
    assert_eq!(userinfo(&s, "DPoP", &at, &[&p]).await.status, 200);
    userinfo(&s, "DPoP", &at, &[&p]).await.refused(401, "invalid_dpop_proof", "was used before");

    // An unbound token is not presented as a DPoP one; and no credentials at all get both challenges.
    let v = CodeVerifier::generate();
    let code = code_with(&s, "spa", &v, "").await;
    let bearer = token(&s, &exchange_form("spa", &code, &v), &[], None).await.body["access_token"].clone();
    let bearer = bearer.as_str().unwrap();
    userinfo(&s, "DPoP", bearer, &[&resource_proof(&s, &key, bearer)]).await.refused(
        401,
        "invalid_token",
        "not DPoP-bound",
    );
    let bare = answer(s.http.get(s.url("/userinfo")).send().await.unwrap()).await;
    assert_eq!(bare.status, 401);
    assert_eq!(bare.challenges()[0], r#"Bearer realm="latchkey""#);
    assert!(
        bare.challenges()[1].starts_with(r#"DPoP algs="ES256 ES384 EdDSA RS256 PS256""#),
        "{:?}",
        bare.challenges()
    );
}

#[tokio::test]
async fn a_client_registered_for_dpop_cannot_get_tokens_without_a_proof() {
    let s = TestServer::start().await;
    s.add(NewClient {
        protection: latchkey_core::store::ClientProtection { dpop_bound_access_tokens: true, ..Default::default() },
        ..NewClient::public("bound", "Bound", vec![REDIRECT.into()])
    })
    .await;
    let key = DpopKey::generate().unwrap();
    let v = CodeVerifier::generate();
    let code = code_with(&s, "bound", &v, "").await;
    let form = exchange_form("bound", &code, &v);
    token(&s, &form, &[], None).await.refused(400, "invalid_dpop_proof", "dpop_bound_access_tokens");
    let t = token(&s, &form, &[&proof(&s, &key, "POST", "/token")], None).await;
    assert_eq!((t.status, t.body["token_type"].as_str()), (200, Some("DPoP")), "{}", t.body);

    // The same through dynamic registration (RFC 7591): accepted, echoed and enforced.
    let reg = serde_json::json!({
        "redirect_uris": [REDIRECT],
        "token_endpoint_auth_method": "client_secret_basic",
        "grant_types": ["authorization_code", "client_credentials"],
        "dpop_bound_access_tokens": true,
    });
    let res = s.http.post(s.url("/register")).json(&reg).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let reg: Value = res.json().await.unwrap();
    assert_eq!(reg["dpop_bound_access_tokens"], true, "{reg}");
    let auth = Some((reg["client_id"].as_str().unwrap(), reg["client_secret"].as_str().unwrap()));
    token(&s, &CC, &[], auth).await.refused(400, "invalid_dpop_proof", "dpop_bound_access_tokens");
    let ok = token(&s, &CC, &[&proof(&s, &key, "POST", "/token")], auth).await;
    assert_eq!((ok.status, ok.body["token_type"].as_str()), (200, Some("DPoP")), "{}", ok.body);
}

/// Two servers on one PostgreSQL database, as behind a load balancer: a proof accepted by one is
/// a replay at the other, also when both receive it at the same moment; a nonce handed out by one
/// is accepted by the other.
#[tokio::test]
async fn two_instances_share_replay_marks_and_nonces() {
    use latchkey_core::{Clock, Provider, ProviderConfig};
    let Some(db) = latchkey_store::testing::TestDatabase::create("dpop").await else { return };
    let store: Arc<dyn latchkey_core::Store> = Arc::new(latchkey_store::PostgresStore::connect(&db.url).await.unwrap());
    let a = TestServer::start_on(store.clone(), |c| c.protection.dpop.require_nonce = true).await;
    let secret = service(&a, "svc").await;
    // B: a second server on the same database, with the same issuer (the load balancer's URL).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b_token = format!("http://{}/token", listener.local_addr().unwrap());
    let mut config = ProviderConfig::new(&a.base);
    config.protection.dpop.require_nonce = true;
    let clock = Clock::system();
    let provider = Arc::new(Provider::open(store, config, clock.now()).await.unwrap());
    let state = latchkey_server::AppState::new(provider, clock);
    tokio::spawn(latchkey_server::serve(listener, state, std::future::pending()));

    let key = DpopKey::generate().unwrap();
    let auth = Some(("svc", secret.as_str()));
    let issuer_url = a.url("/token");
    // A nonce from A, used at B.
    let asked = token(&a, &CC, &[&proof(&a, &key, "POST", "/token")], auth).await;
    let nonce = asked.nonce().unwrap();
    let p = key.proof("POST", &issuer_url, a.now(), Some(&nonce), None).unwrap();
    let at_b = token_at(&a.http, &b_token, &CC, &[&p], auth).await;
    assert_eq!(at_b.status, 200, "B accepts A's nonce: {}", at_b.body);
    // The same proof at A: a replay.
    token(&a, &CC, &[&p], auth).await.refused(400, "invalid_dpop_proof", "was used before");

    // One proof sent to both at once, eight times each: one token in all.
    let p = Arc::new(key.proof("POST", &issuer_url, a.now(), Some(&nonce), None).unwrap());
    let secret = Arc::new(secret);
    let mut set = tokio::task::JoinSet::new();
    for i in 0..16 {
        let url = if i % 2 == 0 { issuer_url.clone() } else { b_token.clone() };
        let (http, p, secret) = (a.http.clone(), p.clone(), secret.clone());
        set.spawn(async move { token_at(&http, &url, &CC, &[&p], Some(("svc", &secret))).await });
    }
    let answers = set.join_all().await;
    assert_eq!(answers.iter().filter(|a| a.status == 200).count(), 1, "one proof, one token, two instances");
    for r in answers.iter().filter(|a| a.status != 200) {
        r.refused(400, "invalid_dpop_proof", "was used before");
    }
}

#[test]
fn client_add_dpop_registers_a_client_that_must_prove_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("dpop.db");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"))
            .args(args)
            .arg("--database")
            .arg(&db)
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&["client", "add", "--public", "--dpop", "--client-id", "cli", "--redirect-uri", REDIRECT]);
    run(&["client", "add", "--public", "--client-id", "plain", "--redirect-uri", REDIRECT]);
    assert!(run(&["client", "show", "cli"]).lines().any(|l| l == "dpop_bound_access_tokens: true"));
    assert!(run(&["client", "show", "plain"]).lines().any(|l| l == "dpop_bound_access_tokens: false"));
    let json: Value = serde_json::from_str(&run(&["client", "show", "cli", "--json"])).unwrap();
    assert_eq!(json["dpop_bound_access_tokens"], true);
}

/// The two parties end to end: a token this server bound to a key is accepted by
/// `latchkey-resource` (JWKS from the server's discovery) only with a fresh proof by that key for
/// the API's own URL, and refused as Bearer, with another key's proof, or with a replayed proof.
#[tokio::test]
async fn latchkey_resource_accepts_this_servers_bound_tokens_only_with_the_key() {
    use axum::http::{HeaderMap, HeaderValue, Method, Uri};
    use latchkey_resource::{DpopMode, Verifier};

    let s = TestServer::start().await;
    let key = DpopKey::generate().unwrap();
    let v = CodeVerifier::generate();
    let code = code_with(&s, "spa", &v, "").await;
    let t = token(&s, &exchange_form("spa", &code, &v), &[&proof(&s, &key, "POST", "/token")], None).await;
    assert_eq!(t.body["token_type"], "DPoP", "{}", t.body);
    let at = t.body["access_token"].as_str().unwrap().to_owned();
    let aud = jwt_parts(&at).1["aud"].as_str().unwrap().to_owned();

    let (skew, t0) = (s.skew.clone(), s.now() - s.skew.load(std::sync::atomic::Ordering::SeqCst));
    let verifier = Verifier::builder(s.provider.issuer())
        .audience(aud)
        .external_url("https://api.example")
        .dpop(DpopMode::Allowed)
        .clock(latchkey_resource::Clock::from_fn(move || t0 + skew.load(std::sync::atomic::Ordering::SeqCst)))
        .build()
        .unwrap();
    let uri: Uri = "/notes?page=2".parse().unwrap();
    let headers = |scheme: &str, proof: Option<&str>| {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_str(&format!("{scheme} {at}")).unwrap());
        if let Some(p) = proof {
            h.insert("dpop", HeaderValue::from_str(p).unwrap());
        }
        h
    };
    let fresh = |k: &DpopKey| k.proof("GET", "https://api.example/notes", s.now(), None, Some(&at)).unwrap();

    let good = fresh(&key);
    let claims = verifier.verify_request(&Method::GET, &uri, &headers("DPoP", Some(&good))).await;
    let claims = claims.unwrap_or_else(|r| panic!("refused: {r:?}"));
    assert_eq!(claims.sub, jwt_parts(&at).1["sub"].as_str().unwrap());
    assert_eq!(claims.dpop_jkt.as_deref(), Some(key.jkt()));
    // The same proof again: a replay.
    assert!(verifier.verify_request(&Method::GET, &uri, &headers("DPoP", Some(&good))).await.is_err());
    // The token copied and used as Bearer, or with a thief's key: refused.
    assert!(verifier.verify_request(&Method::GET, &uri, &headers("Bearer", None)).await.is_err());
    let thief = DpopKey::generate().unwrap();
    assert!(verifier.verify_request(&Method::GET, &uri, &headers("DPoP", Some(&fresh(&thief)))).await.is_err());
    // A proof made for another method: refused; a new proof by the key: accepted.
    let post = key.proof("POST", "https://api.example/notes", s.now(), None, Some(&at)).unwrap();
    assert!(verifier.verify_request(&Method::GET, &uri, &headers("DPoP", Some(&post))).await.is_err());
    assert!(verifier.verify_request(&Method::GET, &uri, &headers("DPoP", Some(&fresh(&key)))).await.is_ok());
}
