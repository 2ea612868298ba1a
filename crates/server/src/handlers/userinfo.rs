//! `GET|POST /userinfo` (OpenID Connect Core §5.3), a protected resource (RFC 6750) that also
//! takes DPoP-bound tokens (RFC 9449 §7).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use latchkey_core::dpop::AccessScheme;
use latchkey_core::userinfo::ResourceRequest;

use crate::AppState;
use crate::error::{ApiError, Scheme};
use crate::extract::{RequestId, access_token, dpop_proofs};
use crate::handlers::token::with_dpop_nonce;

pub async fn userinfo(State(s): State<AppState>, rid: RequestId, method: Method, headers: HeaderMap) -> Response {
    let now = s.clock.now();
    let algs = s.provider.dpop_algs();
    let (scheme, token) = match access_token(&headers) {
        Ok(Some(t)) => t,
        // RFC 6750 §3.1: no credentials at all gets a bare challenge, without an error code, for
        // each scheme this resource takes (RFC 9449 §7.1).
        Ok(None) => {
            let mut res = StatusCode::UNAUTHORIZED.into_response();
            let h = res.headers_mut();
            h.append(header::WWW_AUTHENTICATE, HeaderValue::from_static(r#"Bearer realm="latchkey""#));
            if let Ok(v) = HeaderValue::from_str(&format!(r#"DPoP algs="{algs}""#)) {
                h.append(header::WWW_AUTHENTICATE, v);
            }
            return res;
        }
        Err(e) => return ApiError::new(e, Scheme::Resource { dpop: false, algs }, &rid.0).into_response(),
    };
    let dpop = scheme == AccessScheme::Dpop;
    // A Bearer request's DPoP header is ignored (§7.2), so it is not even read.
    let proofs = match dpop.then(|| dpop_proofs(&headers)).transpose() {
        Ok(p) => p.unwrap_or_default(),
        Err(e) => return ApiError::new(e, Scheme::Resource { dpop, algs }, &rid.0).into_response(),
    };
    let req = ResourceRequest { scheme, token, proofs: &proofs, method: method.as_str() };
    let res = match s.provider.userinfo(&req, now).await {
        Ok(claims) => {
            let mut res = Json(claims).into_response();
            res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res
        }
        Err(e) => ApiError::new(e, Scheme::Resource { dpop, algs }, &rid.0).into_response(),
    };
    with_dpop_nonce(&s, now, res)
}
