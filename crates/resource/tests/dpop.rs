//! DPoP-bound access tokens at an API (RFC 9449 §7): every check a resource server makes of a
//! proof, each with the attack it stops, through a real axum app against a test issuer whose
//! tokens carry `cnf.jkt`. Proofs are made with `latchkey_proto::dpop::DpopKey`, as a client
//! would make them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Request};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use common::*;
use latchkey_proto::dpop::DpopKey;
use latchkey_resource::{Claims, ClientSecret, ConfigError, DpopMode, Verifier, VerifierBuilder};
use serde_json::{Value, json};
use tower::ServiceExt;

/// Where clients call the API: what `htu` must name, whatever the request's Host says.
const API: &str = "https://api.example.com";
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-nonce-secret";

struct Api {
    iss: TestIssuer,
    key: TestKey,
    v: Verifier,
    app: Router,
}

fn app(v: &Verifier) -> Router {
    Router::new()
        .route(
            "/me",
            get(|c: Claims| async move { Json(json!({"sub": c.sub, "jkt": c.dpop_jkt})) }).route_layer(v.layer()),
        )
        .route("/notes", post(|c: Claims| async move { c.sub }).route_layer(v.require("api:write")))
        // Two extractions in one handler, no layer: the second must not see the proof as replayed.
        .route("/twice", get(|a: Claims, b: Claims| async move { format!("{} {}", a.sub, b.sub) }))
        .layer(Extension(v.clone()))
}

async fn setup(configure: impl FnOnce(VerifierBuilder) -> VerifierBuilder) -> Api {
    let key = TestKey::new("k1");
    let iss = TestIssuer::start(&[&key]).await;
    let v = configure(Verifier::builder(&iss.base).clock(iss.clock()).realm("notes")).build().unwrap();
    let app = app(&v);
    Api { iss, key, v, app }
}

fn with_url(b: VerifierBuilder) -> VerifierBuilder {
    b.external_url(API)
}

impl Api {
    /// An access token bound to `dpop` (cnf.jkt), as an issuer mints it after a DPoP token request.
    fn bound(&self, dpop: &DpopKey) -> String {
        self.key.access_token(&self.iss.base, self.iss.now(), json!({"cnf": {"jkt": dpop.jkt()}}))
    }
    fn bearer(&self) -> String {
        self.key.access_token(&self.iss.base, self.iss.now(), json!({}))
    }
    fn proof(&self, dpop: &DpopKey, method: &str, path: &str, token: &str) -> String {
        dpop.proof(method, &format!("{API}{path}"), self.iss.now(), None, Some(token)).unwrap()
    }
    async fn call(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, HeaderMap, Value) {
        call(&self.app, method, path, headers).await
    }
    /// `GET /me` with `Authorization: DPoP <token>` and `proof`.
    async fn dpop(&self, token: &str, proof: &str) -> (u16, HeaderMap, Value) {
        self.call("GET", "/me", &[("authorization", &format!("DPoP {token}")), ("dpop", proof)]).await
    }
}

async fn call(app: &Router, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, HeaderMap, Value) {
    let mut req = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = app.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, headers, body)
}

fn challenges(h: &HeaderMap) -> Vec<String> {
    h.get_all("www-authenticate").iter().map(|v| v.to_str().unwrap().to_owned()).collect()
}

/// A 401 whose body and DPoP challenge say `error` with `why` in the description, and whose
/// Bearer challenge carries no error (RFC 9449 §7.2: the scheme used carries it).
fn assert_dpop_refusal((status, h, body): &(u16, HeaderMap, Value), error: &str, why: &str) {
    assert_eq!(*status, 401, "{body}");
    assert_eq!(body["error"], error, "{body}");
    let d = body["error_description"].as_str().unwrap();
    assert!(d.contains(why), "expected {why:?} in {d:?}");
    let c = challenges(h);
    assert_eq!(c.len(), 2, "{c:?}");
    assert_eq!(c[0], "Bearer realm=\"notes\"", "{c:?}");
    assert!(c[1].starts_with(&format!("DPoP realm=\"notes\", error=\"{error}\"")), "{c:?}");
    assert!(c[1].ends_with("algs=\"ES256 ES384 EdDSA RS256 PS256\""), "{c:?}");
}

#[tokio::test]
async fn a_bound_token_with_its_proof_passes_and_the_handler_sees_the_key() {
    let api = setup(with_url).await;
    let dk = DpopKey::generate().unwrap();
    let t = api.bound(&dk);
    let (status, h, body) = api.dpop(&t, &api.proof(&dk, "GET", "/me", &t)).await;
    assert_eq!((status, body), (200, json!({"sub": "user-1", "jkt": dk.jkt()})));
    assert!(h.get("dpop-nonce").is_none(), "nonces are off");
    // htu ignores the query (§4.3 point 9); the scheme name is case-insensitive.
    let p = dk.proof("GET", &format!("{API}/me?other=1"), api.iss.now(), None, Some(&t)).unwrap();
    let (status, _, _) = api.call("GET", "/me?page=2", &[("authorization", &format!("dpop {t}")), ("dpop", &p)]).await;
    assert_eq!(status, 200);
    // Two Claims extractors in one handler verify once.
    let p = api.proof(&dk, "GET", "/twice", &t);
    let (status, _, body) = api.call("GET", "/twice", &[("authorization", &format!("DPoP {t}")), ("dpop", &p)]).await;
    assert_eq!((status, body), (200, json!("user-1 user-1")));
}

#[tokio::test]
async fn a_proof_for_another_method_or_url_is_refused() {
    let api = setup(with_url).await;
    let dk = DpopKey::generate().unwrap();
    let t = api.bound(&dk);
    // A proof captured from a POST cannot be used for a GET (htm)…
    assert_dpop_refusal(&api.dpop(&t, &api.proof(&dk, "POST", "/me", &t)).await, "invalid_dpop_proof", "htm");
    // …nor one for another path, scheme or host (htu).
    for url in [format!("{API}/notes"), "http://api.example.com/me".into(), "https://evil.example/me".into()] {
        let p = dk.proof("GET", &url, api.iss.now(), None, Some(&t)).unwrap();
        assert_dpop_refusal(&api.dpop(&t, &p).await, "invalid_dpop_proof", "htu");
    }
    // The Host header is the client's to choose, so it does not make another URL acceptable.
    let p = dk.proof("GET", "https://evil.example/me", api.iss.now(), None, Some(&t)).unwrap();
    let r = api
        .call("GET", "/me", &[("host", "evil.example"), ("authorization", &format!("DPoP {t}")), ("dpop", &p)])
        .await;
    assert_dpop_refusal(&r, "invalid_dpop_proof", "htu");
    let p = dk.proof("GET", "https://evil.example/me", api.iss.now(), None, Some(&t)).unwrap();
    let r = call(&api.app, "GET", "https://evil.example/me", &[("authorization", &format!("DPoP {t}")), ("dpop", &p)])
        .await;
    assert_dpop_refusal(&r, "invalid_dpop_proof", "htu");
}

#[tokio::test]
async fn a_proof_outside_its_iat_window_is_refused() {
    let api = setup(with_url).await;
    let dk = DpopKey::generate().unwrap();
    let t = api.bound(&dk);
    let now = api.iss.now();
    let at = |iat: i64| dk.proof("GET", &format!("{API}/me"), iat, None, Some(&t)).unwrap();
    // Default window: 60 s old, 10 s ahead.
    assert_dpop_refusal(&api.dpop(&t, &at(now - 61)).await, "invalid_dpop_proof", "too old");
    assert_dpop_refusal(&api.dpop(&t, &at(now + 11)).await, "invalid_dpop_proof", "in the future");
    assert_eq!(api.dpop(&t, &at(now - 60)).await.0, 200);
    assert_eq!(api.dpop(&t, &at(now + 10)).await.0, 200);
    // A shorter window is a setting.
    let api = setup(|b| with_url(b).dpop_max_age(Duration::from_secs(5))).await;
    let t = api.bound(&dk);
    let now = api.iss.now();
    let at = |iat: i64| dk.proof("GET", &format!("{API}/me"), iat, None, Some(&t)).unwrap();
    assert_dpop_refusal(&api.dpop(&t, &at(now - 6)).await, "invalid_dpop_proof", "too old");
}

#[tokio::test]
async fn a_replayed_proof_is_refused() {
    let api = setup(with_url).await;
    let dk = DpopKey::generate().unwrap();
    let t = api.bound(&dk);
    let p = api.proof(&dk, "GET", "/me", &t);
    assert_eq!(api.dpop(&t, &p).await.0, 200);
    assert_dpop_refusal(&api.dpop(&t, &p).await, "invalid_dpop_proof", "used before");
    // A fresh proof for the same request passes: the client makes one per request.
    assert_eq!(api.dpop(&t, &api.proof(&dk, "GET", "/me", &t)).await.0, 200);
    // A clone of the verifier shares the cache.
    let other = app(&api.v.clone());
    let p = api.proof(&dk, "GET", "/me", &t);
    assert_eq!(api.dpop(&t, &p).await.0, 200);
    let r = call(&other, "GET", "/me", &[("authorization", &format!("DPoP {t}")), ("dpop", &p)]).await;
    assert_dpop_refusal(&r, "invalid_dpop_proof", "used before");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_one_proof_passes_once() {
    let api = setup(with_url).await;
    let dk = DpopKey::generate().unwrap();
    let t = api.bound(&dk);
    // Keys fetched first, so the burst races on the replay cache alone.
    assert_eq!(api.dpop(&t, &api.proof(&dk, "GET", "/me", &t)).await.0, 200);
    let p = api.proof(&dk, "GET", "/me", &t);
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (app, t, p) = (api.app.clone(), t.clone(), p.clone());
            tokio::spawn(async move {
                call(&app, "GET", "/me", &[("authorization", &format!("DPoP {t}")), ("dpop", &p)]).await.0
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 31, "{statuses:?}");
}

#[tokio::test]
async fn a_proof_by_another_key_than_the_tokens_is_refused() {
    let api = setup(with_url).await;
    let (owner, thief) = (DpopKey::generate().unwrap(), DpopKey::generate().unwrap());
    let t = api.bound(&owner);
    // The thief copied the token and signs a perfect proof with its own key.
    let r = api.dpop(&t, &api.proof(&thief, "GET", "/me", &t)).await;
    assert_dpop_refusal(&r, "invalid_token", "another key");
}

#[tokio::test]
async fn a_proof_for_another_token_is_refused() {
    let api = setup(with_url).await;
    let dk = DpopKey::generate().unwrap();
    let (t1, t2) = (api.bound(&dk), api.key.access_token(&api.iss.base, api.iss.now(), json!({"jti": "j2"})));
    // A proof made for t2 (its ath) presented with t1.
    assert_dpop_refusal(&api.dpop(&t1, &api.proof(&dk, "GET", "/me", &t2)).await, "invalid_dpop_proof", "ath");
    // A proof without ath at all (a token-endpoint proof).
    let p = dk.proof("GET", &format!("{API}/me"), api.iss.now(), None, None).unwrap();
    assert_dpop_refusal(&api.dpop(&t1, &p).await, "invalid_dpop_proof", "ath");
}

#[tokio::test]
async fn a_bound_token_sent_as_bearer_is_refused() {
    let api = setup(with_url).await;
    let dk = DpopKey::generate().unwrap();
    let t = api.bound(&dk);
    let p = api.proof(&dk, "GET", "/me", &t);
    for headers in [
        vec![("authorization", format!("Bearer {t}"))],
        vec![("authorization", format!("Bearer {t}")), ("dpop", p.clone())],
    ] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, h, body) = api.call("GET", "/me", &headers).await;
        assert_eq!((status, body["error"].as_str()), (401, Some("invalid_token")), "{body}");
        assert!(body["error_description"].as_str().unwrap().contains("DPoP-bound"), "{body}");
        let c = challenges(&h);
        // The Bearer challenge carries the error; the DPoP one tells the client what to use.
        assert!(c[0].starts_with("Bearer realm=\"notes\", error=\"invalid_token\""), "{c:?}");
        assert_eq!(c[1], "DPoP realm=\"notes\", algs=\"ES256 ES384 EdDSA RS256 PS256\"");
    }
    assert!(api.v.verify(&t).await.is_err(), "verify() is the Bearer check");
    // An API with DPoP off (it knows no URL) refuses it too, whichever way it comes.
    let off = setup(|b| b).await;
    assert_eq!(off.v.dpop_mode(), DpopMode::Off);
    let t = off.bound(&dk);
    let (status, h, body) = off.call("GET", "/me", &[("authorization", &format!("Bearer {t}"))]).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_token")), "{body}");
    assert_eq!(challenges(&h).len(), 1, "no DPoP challenge where DPoP is off");
    let p = off.proof(&dk, "GET", "/me", &t);
    let (status, h, body) = off.dpop(&t, &p).await;
    assert_eq!(status, 401);
    assert!(body.get("error").is_none(), "an unknown scheme, as Basic would be: {body}");
    assert_eq!(challenges(&h), ["Bearer realm=\"notes\""]);
}

#[tokio::test]
async fn the_dpop_scheme_needs_a_bound_token_and_one_proof() {
    let api = setup(with_url).await;
    let dk = DpopKey::generate().unwrap();
    // A bearer token dressed up with a proof by any key: it is bound to nothing.
    let plain = api.bearer();
    let r = api.dpop(&plain, &api.proof(&dk, "GET", "/me", &plain)).await;
    assert_dpop_refusal(&r, "invalid_token", "not DPoP-bound");
    let t = api.bound(&dk);
    let r = api.call("GET", "/me", &[("authorization", &format!("DPoP {t}"))]).await;
    assert_dpop_refusal(&r, "invalid_dpop_proof", "DPoP header");
    let (p1, p2) = (api.proof(&dk, "GET", "/me", &t), api.proof(&dk, "GET", "/me", &t));
    let r = api.call("GET", "/me", &[("authorization", &format!("DPoP {t}")), ("dpop", &p1), ("dpop", &p2)]).await;
    assert_dpop_refusal(&r, "invalid_dpop_proof", "more than one DPoP header");
    assert_dpop_refusal(&api.dpop(&t, "not.a.proof").await, "invalid_dpop_proof", "malformed");
    // None of these used up p1.
    assert_eq!(api.dpop(&t, &p1).await.0, 200);
}

#[tokio::test]
async fn a_proof_next_to_a_bearer_token_is_ignored() {
    let api = setup(with_url).await;
    let plain = api.bearer();
    // A client that attaches proofs to every request, with an unbound token: the proof proves
    // nothing about a bearer token and changes nothing.
    let p = api.proof(&DpopKey::generate().unwrap(), "GET", "/me", &plain);
    for proof in ["garbage", p.as_str()] {
        let (status, h, _) =
            api.call("GET", "/me", &[("authorization", &format!("Bearer {plain}")), ("dpop", proof)]).await;
        assert_eq!(status, 200);
        assert!(h.get("dpop-nonce").is_none());
    }
}

#[tokio::test]
async fn an_api_that_requires_dpop_refuses_every_bearer_token() {
    let resource = "https://api.example.com/notes";
    let api = setup(|b| b.resource(resource).dpop(DpopMode::Required)).await;
    let plain = api.key.access_token(&api.iss.base, api.iss.now(), json!({"aud": resource}));
    let (status, h, body) = api.call("GET", "/me", &[("authorization", &format!("Bearer {plain}"))]).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_token")), "{body}");
    assert!(body["error_description"].as_str().unwrap().contains("only DPoP-bound"), "{body}");
    // One challenge, DPoP's, which carries the error and the metadata URL.
    let c = challenges(&h);
    assert_eq!(c.len(), 1, "{c:?}");
    assert!(c[0].starts_with("DPoP realm=\"notes\", error=\"invalid_token\""), "{c:?}");
    assert!(c[0].contains("resource_metadata=\"https://api.example.com/.well-known/oauth-protected-resource/notes\""));
    assert!(api.v.verify(&plain).await.is_err());
    // The resource's origin is the URL proofs name.
    let dk = DpopKey::generate().unwrap();
    let t = api.key.access_token(&api.iss.base, api.iss.now(), json!({"aud": resource, "cnf": {"jkt": dk.jkt()}}));
    assert_eq!(api.dpop(&t, &api.proof(&dk, "GET", "/me", &t)).await.0, 200);
    // RFC 9728 §2: the metadata says so.
    let doc = serde_json::to_value(api.v.protected_resource_metadata(["notes:read"]).unwrap()).unwrap();
    assert_eq!(doc["dpop_bound_access_tokens_required"], true);
    assert_eq!(doc["dpop_signing_alg_values_supported"], json!(["ES256", "ES384", "EdDSA", "RS256", "PS256"]));
    let allowed = setup(|b| b.resource(resource)).await;
    let doc = serde_json::to_value(allowed.v.protected_resource_metadata(["notes:read"]).unwrap()).unwrap();
    assert!(doc.get("dpop_bound_access_tokens_required").is_none(), "{doc}");
}

#[tokio::test]
async fn with_nonces_a_proof_needs_a_current_one() {
    let lifetime = Duration::from_secs(60);
    let api = setup(|b| with_url(b).dpop_nonces(SECRET, lifetime)).await;
    let dk = DpopKey::generate().unwrap();
    let t = api.bound(&dk);
    // A proof made without a nonce (made in advance, or by a client that has none yet).
    let r = api.dpop(&t, &api.proof(&dk, "GET", "/me", &t)).await;
    assert_dpop_refusal(&r, "use_dpop_nonce", "nonce");
    let nonce = r.1["dpop-nonce"].to_str().unwrap().to_owned();
    assert_eq!(r.1["cache-control"], "no-store");
    // The retry with it passes, and the answer carries the current nonce.
    let p = dk.proof("GET", &format!("{API}/me"), api.iss.now(), Some(&nonce), Some(&t)).unwrap();
    let (status, h, _) = api.dpop(&t, &p).await;
    assert_eq!(status, 200);
    assert_eq!(h["dpop-nonce"].to_str().unwrap(), nonce);
    // Another instance with the same secret accepts it (no shared state); one with another
    // secret does not, and neither does a made-up nonce.
    let sibling = app(&Verifier::builder(&api.iss.base)
        .clock(api.iss.clock())
        .realm("notes")
        .external_url(API)
        .dpop_nonces(SECRET, lifetime)
        .build()
        .unwrap());
    let p = dk.proof("GET", &format!("{API}/me"), api.iss.now(), Some(&nonce), Some(&t)).unwrap();
    let r = call(&sibling, "GET", "/me", &[("authorization", &format!("DPoP {t}")), ("dpop", &p)]).await;
    assert_eq!(r.0, 200, "{}", r.2);
    let stranger = setup(|b| with_url(b).dpop_nonces([7u8; 32].to_vec(), lifetime)).await;
    let t2 = stranger.bound(&dk);
    let p = dk.proof("GET", &format!("{API}/me"), stranger.iss.now(), Some(&nonce), Some(&t2)).unwrap();
    assert_dpop_refusal(&stranger.dpop(&t2, &p).await, "use_dpop_nonce", "nonce");
    let p = dk.proof("GET", &format!("{API}/me"), api.iss.now(), Some("1.forged"), Some(&t)).unwrap();
    assert_dpop_refusal(&api.dpop(&t, &p).await, "use_dpop_nonce", "nonce");
    // Two lifetimes later the nonce is too old; the refusal hands out the new one.
    api.iss.advance(120);
    let t = api.bound(&dk);
    let p = dk.proof("GET", &format!("{API}/me"), api.iss.now(), Some(&nonce), Some(&t)).unwrap();
    let r = api.dpop(&t, &p).await;
    assert_dpop_refusal(&r, "use_dpop_nonce", "nonce");
    assert_ne!(r.1["dpop-nonce"].to_str().unwrap(), nonce);
}

#[tokio::test]
async fn a_full_replay_cache_refuses_rather_than_forgets() {
    let api = setup(|b| with_url(b).dpop_replay_capacity(3)).await;
    let dk = DpopKey::generate().unwrap();
    let t = api.bound(&dk);
    let proofs: Vec<String> = (0..3).map(|_| api.proof(&dk, "GET", "/me", &t)).collect();
    for p in &proofs {
        assert_eq!(api.dpop(&t, p).await.0, 200);
    }
    let (status, h, body) = api.dpop(&t, &api.proof(&dk, "GET", "/me", &t)).await;
    assert_eq!((status, body["error"].as_str()), (503, Some("temporarily_unavailable")), "{body}");
    assert_eq!(h["retry-after"], "5");
    assert!(!body.to_string().contains("replay cache"), "internal detail stays in the log: {body}");
    // Nothing was evicted to make room: the proofs already used are still refused.
    assert_dpop_refusal(&api.dpop(&t, &proofs[0]).await, "invalid_dpop_proof", "used before");
    // Once they are past their iat window, the room is back.
    api.iss.advance(61);
    let t = api.bound(&dk);
    assert_eq!(api.dpop(&t, &api.proof(&dk, "GET", "/me", &t)).await.0, 200);
}

#[tokio::test]
async fn challenges_name_both_schemes_and_a_403_goes_on_the_scheme_used() {
    let api = setup(with_url).await;
    let (_, h, _) = api.call("GET", "/me", &[]).await;
    assert_eq!(
        challenges(&h),
        ["Bearer realm=\"notes\"", "DPoP realm=\"notes\", algs=\"ES256 ES384 EdDSA RS256 PS256\""]
    );
    let dk = DpopKey::generate().unwrap();
    let t = api.bound(&dk);
    let p = api.proof(&dk, "POST", "/notes", &t);
    let (status, h, body) = api.call("POST", "/notes", &[("authorization", &format!("DPoP {t}")), ("dpop", &p)]).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("insufficient_scope")), "{body}");
    let c = challenges(&h);
    assert_eq!(c[0], "Bearer realm=\"notes\", scope=\"api:write\"", "{c:?}");
    assert!(c[1].starts_with("DPoP realm=\"notes\", error=\"insufficient_scope\""), "{c:?}");
}

#[tokio::test]
async fn behind_a_proxy_the_external_url_carries_the_prefix() {
    // The proxy serves https://example.com/api/* and forwards /api/me as /me.
    let api = setup(|b| b.external_url("https://example.com/api/")).await;
    let dk = DpopKey::generate().unwrap();
    let t = api.bound(&dk);
    let p = dk.proof("GET", "https://example.com/api/me", api.iss.now(), None, Some(&t)).unwrap();
    assert_eq!(api.dpop(&t, &p).await.0, 200);
    let p = dk.proof("GET", "https://example.com/me", api.iss.now(), None, Some(&t)).unwrap();
    assert_dpop_refusal(&api.dpop(&t, &p).await, "invalid_dpop_proof", "https://example.com/api/me");
}

#[tokio::test]
async fn introspection_answers_are_bound_the_same_way() {
    let api = setup(|b| {
        with_url(b)
            .introspection(INTROSPECTION_CLIENT, ClientSecret::new(INTROSPECTION_SECRET))
            .introspection_cache(Duration::from_secs(10))
    })
    .await;
    let (owner, thief) = (DpopKey::generate().unwrap(), DpopKey::generate().unwrap());
    let t = api.bound(&owner);
    // The test issuer answers token_type DPoP with the token's cnf (RFC 9449 §6.2).
    let (status, _, body) = api.dpop(&t, &api.proof(&owner, "GET", "/me", &t)).await;
    assert_eq!((status, body), (200, json!({"sub": "user-1", "jkt": owner.jkt()})));
    assert_dpop_refusal(&api.dpop(&t, &api.proof(&thief, "GET", "/me", &t)).await, "invalid_token", "another key");
    let (status, _, body) = api.call("GET", "/me", &[("authorization", &format!("Bearer {t}"))]).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_token")), "{body}");
    assert!(body["error_description"].as_str().unwrap().contains("DPoP-bound"), "{body}");
    // A bearer token still passes as Bearer.
    let (status, _, _) = api.call("GET", "/me", &[("authorization", &format!("Bearer {}", api.bearer()))]).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn dpop_settings_are_checked_when_built() {
    let b = || Verifier::builder("https://id.example");
    assert!(matches!(b().dpop(DpopMode::Required).build().unwrap_err(), ConfigError::DpopWithoutUrl));
    assert!(matches!(b().dpop(DpopMode::Allowed).build().unwrap_err(), ConfigError::DpopWithoutUrl));
    for bad in ["http://api.example.com", "https://api.example.com/?x=1", "https://u@api.example.com", "api"] {
        assert!(matches!(b().external_url(bad).build().unwrap_err(), ConfigError::ExternalUrl(_)), "{bad}");
    }
    let short = b().external_url(API).dpop_nonces(b"short".to_vec(), Duration::from_secs(60));
    assert!(matches!(short.build().unwrap_err(), ConfigError::NonceSecret));
    let hmac_only = b().external_url(API).dpop_algorithms(&[latchkey_resource::Algorithm::HS256]);
    assert!(matches!(hmac_only.build().unwrap_err(), ConfigError::NoAlgorithm));
    assert_eq!(b().build().unwrap().dpop_mode(), DpopMode::Off);
    assert_eq!(b().external_url(API).build().unwrap().dpop_mode(), DpopMode::Allowed);
    assert_eq!(b().external_url(API).dpop(DpopMode::Off).build().unwrap().dpop_mode(), DpopMode::Off);
}
