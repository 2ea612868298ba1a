//! `POST /par`: pushed authorization requests (RFC 9126 §2).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use latchkey_core::Error;
use latchkey_proto::token::parse_client_auth;
use serde_json::json;

use crate::AppState;
use crate::error::{ApiError, Scheme};
use crate::extract::{ApiBody, RequestId, authorization, dpop_proofs, form_params};
use crate::handlers::token::with_dpop_nonce;

pub async fn push(State(s): State<AppState>, rid: RequestId, headers: HeaderMap, ApiBody(body): ApiBody) -> Response {
    let now = s.clock.now();
    // Client authentication as at the token endpoint (§2: "the same rules"); a DPoP proof binds
    // the code (RFC 9449 §10.1).
    let parsed = form_params(&headers, &body).and_then(|p| {
        let auth = parse_client_auth(&p, authorization(&headers)?)?;
        Ok((p, auth, dpop_proofs(&headers)?))
    });
    let (params, auth, proofs) = match parsed {
        Ok(x) => x,
        Err(e) => {
            // Debug-quoted: descriptions can quote the request's text, which must not forge log fields.
            tracing::info!(error = %e.code, description = ?e.description, "pushed request refused");
            return with_dpop_nonce(&s, now, ApiError::new(e, Scheme::Basic, &rid.0).into_response());
        }
    };
    // §8.2: the nonce travels on every answer, so a client that must send one always holds it.
    let res = match s.provider.push_authorization_request(&auth, &params, &proofs, now).await {
        Ok(pushed) => {
            // §2.2: 201 Created; the request_uri is a credential for the request until used.
            let body = json!({ "request_uri": pushed.request_uri, "expires_in": pushed.expires_in });
            let mut res = (StatusCode::CREATED, Json(body)).into_response();
            res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res
        }
        Err(e) => {
            if let Error::OAuth(o) = &e {
                // Debug-quoted: an unauthenticated client_id may hold spaces and quotes.
                tracing::info!(client_id = ?auth.client_id().as_str(), error = %o.code, description = ?o.description, "pushed request refused");
            }
            ApiError::new(e, Scheme::Basic, &rid.0).into_response()
        }
    };
    with_dpop_nonce(&s, now, res)
}
