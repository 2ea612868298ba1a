//! CORS. `/userinfo` ([`layer`]): allowed only for the origins of registered redirect URIs. The
//! metadata documents, `/register`, `/token`, `/par` and `/revoke` ([`open_layer`]): any origin.
//! No cookies are involved (`Access-Control-Allow-Credentials` is never sent), so a CORS response
//! never exposes a session.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AppState;

pub async fn layer(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let origin = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let Some(origin) = origin else { return next.run(req).await };
    let allowed = match s.provider.allowed_origin(&origin, s.clock.now()).await {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "could not load the allowed origins");
            false
        }
    };
    let preflight =
        req.method() == Method::OPTIONS && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut res = if preflight {
        if !allowed {
            // Debug-quoted: the Origin header is the client's text (spaces and quotes included) and
            // must not forge fields of a text log (`origin=x event="login_success"`).
            tracing::info!(origin = ?origin, "CORS preflight from an origin of no registered client");
            return (StatusCode::FORBIDDEN, "this origin is not the origin of any registered redirect URI")
                .into_response();
        }
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST"));
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("authorization, content-type, dpop"));
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        r
    } else {
        next.run(req).await
    };
    let h = res.headers_mut();
    h.append(header::VARY, HeaderValue::from_static("origin"));
    if allowed && let Ok(v) = HeaderValue::from_str(&origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSE_HEADERS));
    }
    res
}

/// Headers a browser host may send: `authorization` (client credentials, registration tokens),
/// `content-type` (JSON and form bodies), `mcp-protocol-version` (the MCP SDKs add it to every
/// request, discovery included), `dpop` (a browser client's proofs, RFC 9449 §4.1).
const OPEN_ALLOW_HEADERS: &str = "authorization, content-type, mcp-protocol-version, dpop";

/// Response headers a page may read: the challenges, and the DPoP nonce it must put in its next
/// proof (RFC 9449 §8).
const EXPOSE_HEADERS: &str = "www-authenticate, dpop-nonce";

/// CORS for any origin, on the endpoints a browser-based MCP host (the MCP Inspector) calls before
/// it has any registered origin: the metadata documents, `/register`, `/token`, `/revoke`.
///
/// Why this is safe: these endpoints use no cookie and no other ambient authority. Every request
/// carries its own proof (a code with its PKCE verifier, a refresh token, a client secret, a
/// registration access token), which a page from another origin can only have if it obtained
/// it itself; and `Access-Control-Allow-Credentials` is never sent, so the browser never attaches
/// the login session cookie to such a request. The login and consent pages, which do use the
/// session, get no CORS at all; `/userinfo` keeps the registered-origins rule of [`layer`].
pub async fn open_layer(req: Request, next: Next) -> Response {
    let cross_origin = req.headers().contains_key(header::ORIGIN);
    let preflight =
        req.method() == Method::OPTIONS && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut res = if preflight {
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, PUT, DELETE"));
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static(OPEN_ALLOW_HEADERS));
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        r
    } else {
        next.run(req).await
    };
    let h = res.headers_mut();
    if cross_origin {
        // `*` rather than the echoed origin: with `*` a browser refuses to send credentials at
        // all (Fetch standard, CORS check), whatever a future handler might add; and the
        // client's Origin text is never copied into a response.
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSE_HEADERS));
    }
    // Whatever a handler may have set: this layer never lets credentials through.
    h.remove(header::ACCESS_CONTROL_ALLOW_CREDENTIALS);
    res
}
