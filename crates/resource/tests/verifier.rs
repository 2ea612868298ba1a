//! Every way an access token is accepted or refused by `latchkey-resource`, through a real axum
//! app, against a test issuer on 127.0.0.1 whose keys and availability the tests control.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Request};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use common::*;
use latchkey_resource::{Claims, ClientSecret, Verifier};
use serde_json::{Value, json};
use tower::ServiceExt;

fn verifier(issuer: &TestIssuer) -> Verifier {
    Verifier::builder(&issuer.base)
        .clock(issuer.clock())
        .refetch_interval(Duration::from_secs(30))
        .max_key_age(Duration::from_secs(3600))
        .realm("notes")
        .build()
        .unwrap()
}

/// The seed's steps 8-9 in miniature: a public route, a route for any valid token, a scoped one,
/// and one that uses the extractor alone.
fn api(v: &Verifier) -> Router {
    Router::new()
        .route("/public", get(|| async { "public" }))
        .route(
            "/me",
            get(|c: Claims| async move {
                Json(json!({"sub": c.sub, "scope": c.scope.to_string(), "client_id": c.client_id,
                    "tenant": c.get("tenant")}))
            })
            .route_layer(v.layer()),
        )
        .route("/notes", post(|c: Claims| async move { c.sub }).route_layer(v.require("api:write")))
        .route("/extractor-only", get(|c: Claims| async move { c.sub }))
        .layer(Extension(v.clone()))
}

async fn call(app: &Router, method: &str, path: &str, auth: Option<&str>) -> (u16, HeaderMap, Value) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let res = app.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, headers, body)
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

fn challenge(h: &HeaderMap) -> String {
    h.get("www-authenticate").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

/// Asserts a 401 invalid_token whose description contains `why`.
async fn refused(app: &Router, token: &str, why: &str) {
    let (status, h, body) = call(app, "GET", "/me", Some(&bearer(token))).await;
    assert_eq!(status, 401, "{body}");
    let c = challenge(&h);
    assert!(c.starts_with("Bearer ") && c.contains("error=\"invalid_token\""), "{c}");
    assert!(c.contains(why), "expected {why:?} in {c}");
    assert_eq!(body["error"], "invalid_token");
    assert!(body["error_description"].as_str().unwrap().contains(why), "{body}");
}

#[tokio::test]
async fn a_valid_token_is_accepted_and_its_claims_reach_the_handler() {
    let key = TestKey::new("k1");
    let iss = TestIssuer::start(&[&key]).await;
    let app = api(&verifier(&iss));
    let t = key.access_token(&iss.base, iss.now(), json!({}));
    let (status, _, body) = call(&app, "GET", "/me", Some(&bearer(&t))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"sub": "user-1", "scope": "api:read openid", "client_id": "app", "tenant": "acme"}));
    let (status, _, body) = call(&app, "GET", "/extractor-only", Some(&bearer(&t))).await;
    assert_eq!((status, body), (200, json!("user-1")));
    assert_eq!(call(&app, "GET", "/public", None).await.0, 200);
    // The keys were fetched once and are reused: no round trip per request.
    for _ in 0..5 {
        assert_eq!(call(&app, "GET", "/me", Some(&bearer(&t))).await.0, 200);
    }
    assert_eq!(iss.jwks_hits(), 1);
    // Custom claims as the API's own type.
    let claims = verifier(&iss).verify(&t).await.unwrap();
    #[derive(serde::Deserialize)]
    struct Tenant {
        tenant: String,
    }
    assert_eq!(claims.custom::<Tenant>().unwrap().tenant, "acme");
}

#[tokio::test]
async fn expired_and_not_yet_valid_tokens_are_refused_with_leeway() {
    let key = TestKey::new("k1");
    let iss = TestIssuer::start(&[&key]).await;
    let app = api(&verifier(&iss));
    let t = key.access_token(&iss.base, iss.now(), json!({}));
    assert_eq!(call(&app, "GET", "/me", Some(&bearer(&t))).await.0, 200);
    iss.advance(600 + 29);
    assert_eq!(call(&app, "GET", "/me", Some(&bearer(&t))).await.0, 200, "within the 30 s leeway");
    iss.advance(1);
    refused(&app, &t, "the access token expired").await;
    let later = key.access_token(&iss.base, iss.now(), json!({"nbf": iss.now() + 120}));
    refused(&app, &later, "not valid yet").await;
}

#[tokio::test]
async fn wrong_issuer_audience_and_type_are_refused() {
    let key = TestKey::new("k1");
    let iss = TestIssuer::start(&[&key]).await;
    let app = api(&verifier(&iss));
    let now = iss.now();
    refused(&app, &key.access_token(&iss.base, now, json!({"iss": "https://evil.example"})), "evil.example").await;
    refused(&app, &key.access_token(&iss.base, now, json!({"aud": "https://other-api.example"})), "audience").await;
    refused(&app, &key.access_token(&iss.base, now, json!({"sub": null})), "no valid sub claim").await;
    // An id_token (typ JWT) signed by the same issuer is not an access token (RFC 9068 §4).
    let claims = json!({"iss": iss.base, "sub": "user-1", "aud": iss.base, "exp": now + 600, "client_id": "app"});
    refused(&app, &key.sign(json!({"alg": "RS256", "typ": "JWT", "kid": "k1"}), claims.clone()), "not at+jwt").await;
    refused(&app, &key.sign(json!({"alg": "RS256", "kid": "k1"}), claims), "not at+jwt").await;
    // Audience is configurable: this verifier accepts the other API's audience only.
    let other = Verifier::builder(&iss.base).audience("https://other-api.example").clock(iss.clock()).build().unwrap();
    assert!(
        other
            .verify(&key.access_token(&iss.base, now, json!({"aud": ["x", "https://other-api.example"]})))
            .await
            .is_ok()
    );
    assert!(other.verify(&key.access_token(&iss.base, now, json!({}))).await.is_err());
}

#[tokio::test]
async fn unsigned_hmac_and_forged_tokens_are_refused() {
    let key = TestKey::new("k1");
    let iss = TestIssuer::start(&[&key]).await;
    let app = api(&verifier(&iss));
    let claims = json!({"iss": iss.base, "sub": "admin", "aud": iss.base, "exp": iss.now() + 600, "client_id": "app",
        "scope": "api:read api:write"});
    let none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "at+jwt", "kid": "k1"}).to_string()),
        b64(claims.to_string())
    );
    refused(&app, &none, "alg none").await;
    // RFC 8725 §2.1 key confusion: HS256 with the issuer's public key (as published) as the secret.
    let input = format!(
        "{}.{}",
        b64(json!({"alg": "HS256", "typ": "at+jwt", "kid": "k1"}).to_string()),
        b64(claims.to_string())
    );
    for secret in [key.jwk.to_string(), key.jwk["n"].as_str().unwrap().to_owned()] {
        let tag = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes()),
            input.as_bytes(),
        );
        refused(&app, &format!("{input}.{}", b64(tag.as_ref())), "symmetric algorithm HS256").await;
    }
    // A valid signature over other claims, and a token signed by a key the issuer never published.
    let good = key.access_token(&iss.base, iss.now(), json!({}));
    let parts: Vec<&str> = good.split('.').collect();
    refused(&app, &format!("{}.{}.{}", parts[0], b64(claims.to_string()), parts[2]), "signature is invalid").await;
    let impostor = TestKey::new("k1");
    refused(&app, &impostor.access_token(&iss.base, iss.now(), json!({})), "signature is invalid").await;
    refused(&app, "not.a.jwt", "malformed").await;
    refused(&app, "abc", "malformed").await;
    assert_eq!(iss.jwks_hits(), 1, "none of these caused a refetch");
}

#[tokio::test]
async fn an_unknown_kid_refetches_at_most_once_per_interval() {
    let k1 = TestKey::new("k1");
    let iss = TestIssuer::start(&[&k1]).await;
    let app = api(&verifier(&iss));
    assert_eq!(call(&app, "GET", "/me", Some(&bearer(&k1.access_token(&iss.base, iss.now(), json!({}))))).await.0, 200);
    assert_eq!(iss.jwks_hits(), 1);
    // A forged kid: one refetch, then no more within the interval, however many tokens come.
    iss.advance(31);
    let stranger = TestKey::new("k-unknown");
    for _ in 0..5 {
        refused(&app, &stranger.access_token(&iss.base, iss.now(), json!({})), "unknown key (kid").await;
        refused(&app, &stranger.access_token(&iss.base, iss.now(), json!({})), "k-unknown").await;
    }
    assert_eq!(iss.jwks_hits(), 2, "one refetch for the unknown kid");
    // The issuer rotates in a new key: within the interval it is not fetched yet…
    let k2 = TestKey::new("k2");
    iss.publish(&k2);
    let t2 = k2.access_token(&iss.base, iss.now(), json!({}));
    refused(&app, &t2, "unknown key").await;
    assert_eq!(iss.jwks_hits(), 2);
    // …and once the interval has passed, the next token with that kid refetches and passes.
    iss.advance(30);
    assert_eq!(call(&app, "GET", "/me", Some(&bearer(&t2))).await.0, 200);
    assert_eq!(iss.jwks_hits(), 3);
    assert_eq!(call(&app, "GET", "/me", Some(&bearer(&t2))).await.0, 200);
    assert_eq!(iss.jwks_hits(), 3);
}

#[tokio::test]
async fn the_cache_keeps_serving_while_the_issuer_is_down() {
    let key = TestKey::new("k1");
    let iss = TestIssuer::start(&[&key]).await;
    let app = api(&verifier(&iss));
    assert_eq!(
        call(&app, "GET", "/me", Some(&bearer(&key.access_token(&iss.base, iss.now(), json!({}))))).await.0,
        200
    );
    iss.set_down(true);
    // Past max_key_age the verifier tries to refresh, fails, and keeps the keys it has.
    iss.advance(3601);
    let t = key.access_token(&iss.base, iss.now(), json!({}));
    assert_eq!(call(&app, "GET", "/me", Some(&bearer(&t))).await.0, 200);
    assert_eq!(call(&app, "GET", "/me", Some(&bearer(&t))).await.0, 200);
    assert_eq!(iss.jwks_hits(), 2, "one attempt while down, not one per request");
    refused(&app, &TestKey::new("k9").access_token(&iss.base, iss.now(), json!({})), "unknown key").await;
    // Back up: the next refresh succeeds.
    iss.set_down(false);
    iss.advance(31);
    assert_eq!(call(&app, "GET", "/me", Some(&bearer(&t))).await.0, 200);
    assert_eq!(iss.jwks_hits(), 3);
}

#[tokio::test]
async fn no_keys_at_all_is_a_503_not_the_clients_fault() {
    let key = TestKey::new("k1");
    let iss = TestIssuer::start(&[&key]).await;
    iss.set_down(true);
    let app = api(&verifier(&iss));
    let t = key.access_token(&iss.base, iss.now(), json!({}));
    let (status, h, body) = call(&app, "GET", "/me", Some(&bearer(&t))).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(h["retry-after"], "5");
    assert!(h.get("www-authenticate").is_none());
    assert_eq!(body["error"], "temporarily_unavailable");
    assert!(!body.to_string().contains(&iss.base), "internal detail stays in the log: {body}");
    // The issuer comes up: a few seconds later the same token passes.
    iss.set_down(false);
    iss.advance(5);
    assert_eq!(call(&app, "GET", "/me", Some(&bearer(&t))).await.0, 200);
}

#[tokio::test]
async fn insufficient_scope_is_403_naming_the_scope() {
    let key = TestKey::new("k1");
    let iss = TestIssuer::start(&[&key]).await;
    let app = api(&verifier(&iss));
    let reader = key.access_token(&iss.base, iss.now(), json!({}));
    let (status, h, body) = call(&app, "POST", "/notes", Some(&bearer(&reader))).await;
    assert_eq!(status, 403);
    let c = challenge(&h);
    assert!(c.contains("error=\"insufficient_scope\"") && c.contains("scope=\"api:write\""), "{c}");
    assert_eq!(body["error"], "insufficient_scope");
    assert!(body["error_description"].as_str().unwrap().contains("api:write"));
    let writer = key.access_token(&iss.base, iss.now(), json!({"scope": "api:write"}));
    let (status, _, body) = call(&app, "POST", "/notes", Some(&bearer(&writer))).await;
    assert_eq!((status, body), (200, json!("user-1")));
}

#[tokio::test]
async fn missing_and_malformed_credentials() {
    let key = TestKey::new("k1");
    let iss = TestIssuer::start(&[&key]).await;
    let app = api(&verifier(&iss));
    // No credentials (or another scheme): 401 with a challenge that has no error code (RFC 6750 §3.1).
    for auth in [None, Some("Basic dXNlcjpwYXNz")] {
        let (status, h, body) = call(&app, "GET", "/me", auth).await;
        assert_eq!(status, 401);
        assert_eq!(challenge(&h), "Bearer realm=\"notes\"");
        assert!(body.get("error").is_none(), "{body}");
    }
    for auth in ["Bearer", "Bearer two words", "Bearer \"quoted\""] {
        let (status, h, body) = call(&app, "GET", "/me", Some(auth)).await;
        assert_eq!(status, 400, "{auth}");
        assert!(challenge(&h).contains("error=\"invalid_request\""));
        assert_eq!(body["error"], "invalid_request");
    }
    let t = key.access_token(&iss.base, iss.now(), json!({}));
    let (status, _, body) = call(&app, "GET", &format!("/me?access_token={t}"), None).await;
    assert_eq!(status, 400);
    assert!(body["error_description"].as_str().unwrap().contains("Authorization: Bearer"));
    assert_eq!(iss.jwks_hits(), 0, "nothing malformed reached the key cache");
}

#[tokio::test]
async fn the_extractor_without_a_verifier_is_a_500_that_says_nothing() {
    let app: Router = Router::new().route("/x", get(|c: Claims| async move { c.sub }));
    let (status, _, body) = call(&app, "GET", "/x", Some("Bearer abc")).await;
    assert_eq!(status, 500);
    assert_eq!(body["error_description"], "internal error");
}

#[tokio::test]
async fn hmac_cannot_be_allowed_and_http_issuers_must_be_loopback() {
    assert!(
        Verifier::builder("https://id.example").algorithms(&[latchkey_resource::Algorithm::HS256]).build().is_err()
    );
    assert!(Verifier::builder("http://id.example").build().is_err());
    assert!(Verifier::builder("http://127.0.0.1:8080").build().is_ok());
}

#[tokio::test]
async fn introspection_mode_sees_revocation_after_the_short_cache() {
    let key = TestKey::new("k1");
    let iss = TestIssuer::start(&[&key]).await;
    let v = Verifier::builder(&iss.base)
        .clock(iss.clock())
        .introspection(INTROSPECTION_CLIENT, ClientSecret::new(INTROSPECTION_SECRET))
        .introspection_cache(Duration::from_secs(10))
        .build()
        .unwrap();
    let app = api(&v);
    let t = key.access_token(&iss.base, iss.now(), json!({}));
    let hits = || iss.state.introspection_hits.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(call(&app, "GET", "/me", Some(&bearer(&t))).await.0, 200);
    assert_eq!(call(&app, "GET", "/me", Some(&bearer(&t))).await.0, 200);
    assert_eq!(hits(), 1, "the answer is cached");
    iss.state.revoked.lock().unwrap().insert(t.clone());
    assert_eq!(call(&app, "GET", "/me", Some(&bearer(&t))).await.0, 200, "still cached");
    iss.advance(10);
    refused(&app, &t, "not active").await;
    assert_eq!(hits(), 2);
    // Claims from introspection are checked like a JWT's.
    refused(&app, &key.access_token(&iss.base, iss.now(), json!({"aud": "https://other.example"})), "audience").await;
    let (status, _, _) =
        call(&app, "POST", "/notes", Some(&bearer(&key.access_token(&iss.base, iss.now(), json!({}))))).await;
    assert_eq!(status, 403);
    // Wrong client credentials at the introspection endpoint: the API cannot check, 503.
    let wrong = Verifier::builder(&iss.base)
        .clock(iss.clock())
        .introspection(INTROSPECTION_CLIENT, ClientSecret::new("wrong"))
        .build()
        .unwrap();
    let (status, _, _) = call(&api(&wrong), "GET", "/me", Some(&bearer(&t))).await;
    assert_eq!(status, 503);
}
