//! `POST /device_authorization`: the device authorization endpoint (RFC 8628 §3.1-3.2).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use latchkey_core::Error;
use latchkey_proto::token::parse_client_auth;
use serde_json::json;

use crate::AppState;
use crate::error::{ApiError, Scheme};
use crate::extract::{ApiBody, ClientIp, RequestId, authorization, form_params};

pub async fn request(
    State(s): State<AppState>,
    rid: RequestId,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    ApiBody(body): ApiBody,
) -> Response {
    let now = s.clock.now();
    // §3.1: the client authenticates as at the token endpoint (a public client by its client_id).
    let parsed = form_params(&headers, &body).and_then(|p| Ok((parse_client_auth(&p, authorization(&headers)?)?, p)));
    let (auth, params) = match parsed {
        Ok(x) => x,
        Err(e) => {
            // Debug-quoted: descriptions can quote the request's text, which must not forge log fields.
            tracing::info!(error = %e.code, description = ?e.description, "device authorization refused");
            return ApiError::new(e, Scheme::Basic, &rid.0).into_response();
        }
    };
    match s.provider.device_authorization(&auth, &params, ip, now).await {
        Ok(d) => {
            let body = json!({
                "device_code": d.device_code,
                "user_code": d.user_code,
                "verification_uri": d.verification_uri,
                "verification_uri_complete": d.verification_uri_complete,
                "expires_in": d.expires_in,
                "interval": d.interval,
            });
            let mut res = Json(body).into_response();
            // The device code is a credential until it is redeemed.
            res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res
        }
        Err(e) => {
            if let Error::OAuth(o) = &e {
                // Debug-quoted: an unauthenticated client_id may hold spaces and quotes.
                tracing::info!(client_id = ?auth.client_id().as_str(), error = %o.code, description = ?o.description, "device authorization refused");
            }
            ApiError::new(e, Scheme::Basic, &rid.0).into_response()
        }
    }
}
