//! `POST /register` (RFC 7591) and `GET|PUT|DELETE /register/{client_id}` (RFC 7592).
//!
//! The edge: the policy's existence check, the Bearer token, the body (capped at
//! [`MAX_METADATA`]) parsed into `ClientMetadata`; then one core call each.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use latchkey_proto::registration::ClientMetadata;
use latchkey_proto::{ErrorCode, OAuthError};

use crate::AppState;
use crate::error::{ApiError, ApiRefusal, Refusal, Scheme};
use crate::extract::{ClientIp, RequestId, bearer};

/// Client metadata is a few hundred bytes; 16 KiB leaves room for long lists and refuses floods
/// of large bodies before they are parsed.
pub const MAX_METADATA: usize = 16 * 1024;

fn no_store(mut res: Response) -> Response {
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// Reads at most [`MAX_METADATA`] bytes; more is refused with 413 and a JSON error.
async fn body(req: Request) -> Result<Bytes, Response> {
    // The routes carry `DefaultBodyLimit::max(MAX_METADATA)` (`lib.rs`), which this read obeys.
    Bytes::from_request(req, &()).await.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiRefusal(Refusal::MetadataTooLarge(MAX_METADATA)).into_response()
        } else {
            ApiRefusal(Refusal::BodyUnreadable).into_response()
        }
    })
}

/// With registration off the endpoint does not exist: a JSON 404, as for any unknown API path.
fn off() -> Response {
    let body = latchkey_proto::error::ErrorResponse {
        error: ErrorCode::InvalidRequest.as_str().to_owned(),
        error_description: Some("client registration is turned off on this server".to_owned()),
    };
    no_store((StatusCode::NOT_FOUND, Json(body)).into_response())
}

fn error(e: impl Into<latchkey_core::Error>, rid: &RequestId) -> Response {
    // RFC 7591 §3 / RFC 7592 §2: token problems are RFC 6750 Bearer errors.
    ApiError::new(e, Scheme::Bearer, &rid.0).into_response()
}

fn token(headers: &HeaderMap) -> Result<Option<&str>, OAuthError> {
    bearer(headers)
}

pub async fn register(State(s): State<AppState>, rid: RequestId, ip: ClientIp, req: Request) -> Response {
    if !s.provider.registration_enabled() {
        return off();
    }
    // The initial access token first: nothing about the metadata is said to a caller without it.
    let checked = token(req.headers()).and_then(|t| s.provider.check_initial_access(t));
    if let Err(e) = checked {
        return error(e, &rid);
    }
    let bytes = match body(req).await {
        Ok(b) => b,
        Err(res) => return res,
    };
    let meta = match ClientMetadata::parse(&bytes) {
        Ok(m) => m,
        Err(e) => return error(e, &rid),
    };
    match s.provider.register(meta, ip.0, s.clock.now()).await {
        // 201 also when an identical registration is returned: it is what RFC 7591 §3.2.1 says a
        // successful registration answers, and what every SDK expects.
        Ok((res, _created)) => no_store((StatusCode::CREATED, Json(res)).into_response()),
        Err(e) => error(e, &rid),
    }
}

pub async fn read(
    State(s): State<AppState>,
    rid: RequestId,
    Path(client_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !s.provider.registration_enabled() {
        return off();
    }
    let t = match token(&headers) {
        Ok(t) => t,
        Err(e) => return error(e, &rid),
    };
    match s.provider.read_registration(&client_id, t).await {
        Ok(res) => no_store(Json(res).into_response()),
        Err(e) => error(e, &rid),
    }
}

pub async fn update(
    State(s): State<AppState>,
    rid: RequestId,
    ip: ClientIp,
    Path(client_id): Path<String>,
    req: Request,
) -> Response {
    if !s.provider.registration_enabled() {
        return off();
    }
    let t = match token(req.headers()) {
        Ok(t) => t.map(str::to_owned),
        Err(e) => return error(e, &rid),
    };
    let bytes = match body(req).await {
        Ok(b) => b,
        Err(res) => return res,
    };
    let meta = match ClientMetadata::parse(&bytes) {
        Ok(m) => m,
        Err(e) => return error(e, &rid),
    };
    match s.provider.update_registration(&client_id, t.as_deref(), meta, ip.0, s.clock.now()).await {
        Ok(res) => no_store(Json(res).into_response()),
        Err(e) => error(e, &rid),
    }
}

pub async fn delete(
    State(s): State<AppState>,
    rid: RequestId,
    ip: ClientIp,
    Path(client_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !s.provider.registration_enabled() {
        return off();
    }
    let t = match token(&headers) {
        Ok(t) => t,
        Err(e) => return error(e, &rid),
    };
    match s.provider.delete_registration(&client_id, t, ip.0, s.clock.now()).await {
        // RFC 7592 §2.3: 204 No Content.
        Ok(()) => no_store(StatusCode::NO_CONTENT.into_response()),
        Err(e) => error(e, &rid),
    }
}
