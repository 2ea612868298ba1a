//! A test issuer on 127.0.0.1 (discovery, JWKS, introspection) whose keys, availability and
//! revocations a test controls, and an RSA key that signs any header and claims.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use latchkey_resource::Clock;
use serde_json::{Value, json};

pub const INTROSPECTION_CLIENT: &str = "api";
pub const INTROSPECTION_SECRET: &str = "api-secret";

pub fn b64(v: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(v)
}

pub struct TestKey {
    pair: RsaKeyPair,
    pub kid: String,
    pub jwk: Value,
}

impl TestKey {
    pub fn new(kid: &str) -> Self {
        let pair = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let p = pair.public_key();
        let jwk = json!({"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
            "n": b64(p.modulus().big_endian_without_leading_zero()),
            "e": b64(p.exponent().big_endian_without_leading_zero())});
        Self { pair, kid: kid.into(), jwk }
    }

    pub fn sign(&self, header: Value, claims: Value) -> String {
        let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        let mut sig = vec![0; self.pair.public_modulus_len()];
        self.pair.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), input.as_bytes(), &mut sig).unwrap();
        format!("{input}.{}", b64(&sig))
    }

    /// A well-formed RFC 9068 access token for `issuer`, valid from `now` for 600 s.
    pub fn access_token(&self, issuer: &str, now: i64, patch: Value) -> String {
        let mut claims = json!({"iss": issuer, "sub": "user-1", "aud": issuer, "exp": now + 600, "iat": now,
            "jti": "j1", "client_id": "app", "scope": "openid api:read", "tenant": "acme"});
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        self.sign(json!({"alg": "RS256", "typ": "at+jwt", "kid": self.kid}), claims)
    }
}

#[derive(Clone, Default)]
pub struct IssuerState {
    pub base: Arc<Mutex<String>>,
    pub jwks: Arc<Mutex<Vec<Value>>>,
    pub jwks_hits: Arc<AtomicUsize>,
    pub introspection_hits: Arc<AtomicUsize>,
    pub down: Arc<AtomicBool>,
    pub revoked: Arc<Mutex<HashSet<String>>>,
}

pub struct TestIssuer {
    pub base: String,
    pub state: IssuerState,
    pub now: Arc<AtomicI64>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl TestIssuer {
    pub async fn start(keys: &[&TestKey]) -> Self {
        let state = IssuerState::default();
        *state.jwks.lock().unwrap() = keys.iter().map(|k| k.jwk.clone()).collect();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        *state.base.lock().unwrap() = base.clone();
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(metadata))
            .route("/jwks", get(jwks))
            .route("/introspect", post(introspect))
            .with_state(state.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Self { base, state, now: Arc::new(AtomicI64::new(1_700_000_000)), _stop: tx }
    }

    pub fn clock(&self) -> Clock {
        let now = self.now.clone();
        Clock::from_fn(move || now.load(Ordering::SeqCst))
    }
    pub fn now(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }
    pub fn advance(&self, secs: i64) {
        self.now.fetch_add(secs, Ordering::SeqCst);
    }
    pub fn jwks_hits(&self) -> usize {
        self.state.jwks_hits.load(Ordering::SeqCst)
    }
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }
    pub fn publish(&self, key: &TestKey) {
        self.state.jwks.lock().unwrap().push(key.jwk.clone());
    }
}

async fn metadata(State(s): State<IssuerState>) -> Response {
    if s.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let base = s.base.lock().unwrap().clone();
    axum::Json(json!({"issuer": base, "jwks_uri": format!("{base}/jwks"),
        "introspection_endpoint": format!("{base}/introspect")}))
    .into_response()
}

async fn jwks(State(s): State<IssuerState>) -> Response {
    s.jwks_hits.fetch_add(1, Ordering::SeqCst);
    if s.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    axum::Json(json!({"keys": *s.jwks.lock().unwrap()})).into_response()
}

/// RFC 7662 with client_secret_basic: active unless revoked; the claims are the JWT's own
/// (`cnf` included).
async fn introspect(State(s): State<IssuerState>, headers: HeaderMap, body: String) -> Response {
    s.introspection_hits.fetch_add(1, Ordering::SeqCst);
    if s.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let expected = format!("Basic {}", STANDARD.encode(format!("{INTROSPECTION_CLIENT}:{INTROSPECTION_SECRET}")));
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "invalid_client"}))).into_response();
    }
    let token = url::form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let claims = token
        .split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    match claims {
        Some(mut c) if !s.revoked.lock().unwrap().contains(&token) => {
            c["active"] = true.into();
            // RFC 9449 §6.2: a bound token is introspected as DPoP, with its cnf.
            c["token_type"] = if c.get("cnf").is_some() { "DPoP" } else { "Bearer" }.into();
            axum::Json(c).into_response()
        }
        _ => axum::Json(json!({"active": false})).into_response(),
    }
}
