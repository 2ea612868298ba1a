//! `GET|POST /userinfo` (OpenID Connect Core §5.3), a protected resource (RFC 6750).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::error::{ApiError, Scheme};
use crate::extract::{RequestId, bearer};

pub async fn userinfo(State(s): State<AppState>, rid: RequestId, headers: HeaderMap) -> Response {
    let token = match bearer(&headers) {
        Ok(Some(t)) => t,
        // RFC 6750 §3.1: no credentials at all gets a bare challenge, without an error code.
        Ok(None) => {
            let mut res = StatusCode::UNAUTHORIZED.into_response();
            res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(r#"Bearer realm="latchkey""#));
            return res;
        }
        Err(e) => return ApiError::new(e, Scheme::Bearer, &rid.0).into_response(),
    };
    match s.provider.userinfo(token, s.clock.now()).await {
        Ok(claims) => {
            let mut res = Json(claims).into_response();
            res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res
        }
        Err(e) => ApiError::new(e, Scheme::Bearer, &rid.0).into_response(),
    }
}
