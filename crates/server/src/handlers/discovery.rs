//! Discovery (OpenID Connect Discovery §4, RFC 8414 §3) and the JWK Set.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::documents::{JWKS_MAX_AGE, METADATA_MAX_AGE, public_json};

// `GET` is answered by `documents::FastPath` before the router; these serve the other methods
// the router maps to them (HEAD).
pub async fn metadata(State(s): State<AppState>) -> Response {
    public_json(s.docs.metadata(), METADATA_MAX_AGE, s.secure())
}

pub async fn jwks(State(s): State<AppState>) -> Response {
    public_json(s.docs.jwks(&s.provider, s.clock.now()), JWKS_MAX_AGE, s.secure())
}

pub async fn stylesheet() -> Response {
    let mut res = include_str!("../../assets/latchkey.css").into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=86400"));
    res
}

/// The passkey ceremony's script (`pages::html_with_script` allows exactly our own files).
pub async fn passkey_script() -> Response {
    let mut res = include_str!("../../assets/passkey.js").into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/javascript; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    res
}
