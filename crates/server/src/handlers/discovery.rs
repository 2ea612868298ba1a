//! Discovery (OpenID Connect Discovery §4, RFC 8414 §3) and the JWK Set.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::AppState;

fn public_json(body: Bytes, max_age: &'static str) -> Response {
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(max_age));
    // Public documents: any origin (an SPA doing discovery) may read them.
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    res
}

pub async fn metadata(State(s): State<AppState>) -> Response {
    public_json(s.docs.metadata(), "public, max-age=3600")
}

/// Short cache: after a key rotation, verifiers see the new key within minutes.
pub async fn jwks(State(s): State<AppState>) -> Response {
    public_json(s.docs.jwks(&s.provider, s.clock.now()), "public, max-age=300")
}

pub async fn stylesheet() -> Response {
    let mut res = include_str!("../../assets/latchkey.css").into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=86400"));
    res
}
