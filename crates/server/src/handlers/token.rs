//! `POST /token` (RFC 6749 §3.2), with DPoP proofs (RFC 9449 §5).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use latchkey_core::Error;
use latchkey_proto::TokenRequest;

use crate::AppState;
use crate::error::{ApiError, Scheme};
use crate::extract::{ApiBody, RequestId, authorization, dpop_proofs, form_params};

pub async fn token(State(s): State<AppState>, rid: RequestId, headers: HeaderMap, ApiBody(body): ApiBody) -> Response {
    let now = s.clock.now();
    let parsed = form_params(&headers, &body)
        .and_then(|p| Ok((p, authorization(&headers)?)))
        .and_then(|(p, auth)| TokenRequest::parse(&p, auth))
        .and_then(|req| Ok((req, dpop_proofs(&headers)?)));
    let (req, proofs) = match parsed {
        Ok(r) => r,
        Err(e) => {
            // Debug-quoted: descriptions can quote the request's text, which must not forge log fields.
            tracing::info!(error = %e.code, description = ?e.description, "token refused");
            return with_dpop_nonce(&s, now, ApiError::new(e, Scheme::Basic, &rid.0).into_response());
        }
    };
    let client_id = req.client.client_id().clone();
    let grant_type = req.grant.grant_type();
    let res = match latchkey_core::grant::token(&s.provider, req, &proofs, now).await {
        Ok((_, body)) => {
            tracing::info!(client_id = %client_id, grant_type, token_type = %body.token_type, "token issued");
            let mut res = Json(body).into_response();
            // RFC 6749 §5.1: responses with tokens must not be cached.
            res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            res
        }
        Err(e) => {
            if let Error::OAuth(o) = &e {
                // Debug-quoted: an unauthenticated client_id may hold spaces and quotes.
                tracing::info!(client_id = ?client_id.as_str(), grant_type, error = %o.code, description = ?o.description, "token refused");
            }
            ApiError::new(e, Scheme::Basic, &rid.0).into_response()
        }
    };
    with_dpop_nonce(&s, now, res)
}

/// RFC 9449 §8: where nonces are required, every answer carries the current one, the refusal
/// that asks for it (`use_dpop_nonce`) and successful answers alike (§8.2), so a client always
/// holds a fresh one.
pub(crate) fn with_dpop_nonce(s: &AppState, now: i64, mut res: Response) -> Response {
    if let Some(v) = s.provider.dpop_nonce(now).and_then(|n| HeaderValue::from_str(&n).ok()) {
        res.headers_mut().insert(latchkey_proto::dpop::NONCE_HEADER, v);
    }
    res
}
