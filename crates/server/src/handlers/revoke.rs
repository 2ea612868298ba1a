//! `POST /revoke` (RFC 7009) and `POST /introspect` (RFC 7662).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use latchkey_core::revoke::Hint;
use latchkey_proto::token::parse_client_auth;
use latchkey_proto::{ClientAuth, OAuthError};

use crate::AppState;
use crate::error::{ApiError, Scheme};
use crate::extract::{RequestId, authorization, form_params};

/// The form, the client authentication, the token and its hint: the same edge for both endpoints.
fn parse(headers: &HeaderMap, body: &[u8]) -> Result<(ClientAuth, String, Hint), OAuthError> {
    let params = form_params(headers, body)?;
    let auth = parse_client_auth(&params, authorization(headers)?)?;
    let token = params.require("token")?.to_owned();
    Ok((auth, token, Hint::parse(params.get("token_type_hint"))))
}

fn no_store(mut res: Response) -> Response {
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

pub async fn revoke(State(s): State<AppState>, rid: RequestId, headers: HeaderMap, body: Bytes) -> Response {
    let (auth, token, hint) = match parse(&headers, &body) {
        Ok(x) => x,
        Err(e) => return ApiError::new(e, Scheme::Basic, &rid.0).into_response(),
    };
    match s.provider.revoke(&auth, &token, hint, s.clock.now()).await {
        // RFC 7009 §2.2: 200 whether or not the token was valid.
        Ok(()) => no_store(StatusCode::OK.into_response()),
        Err(e) => ApiError::new(e, Scheme::Basic, &rid.0).into_response(),
    }
}

pub async fn introspect(State(s): State<AppState>, rid: RequestId, headers: HeaderMap, body: Bytes) -> Response {
    let (auth, token, hint) = match parse(&headers, &body) {
        Ok(x) => x,
        Err(e) => return ApiError::new(e, Scheme::Basic, &rid.0).into_response(),
    };
    match s.provider.introspect(&auth, &token, hint, s.clock.now()).await {
        Ok(v) => no_store(Json(v).into_response()),
        Err(e) => ApiError::new(e, Scheme::Basic, &rid.0).into_response(),
    }
}
