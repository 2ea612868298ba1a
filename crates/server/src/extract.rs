//! Edge parsing helpers: request ids, form bodies, bearer tokens, cookies.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use latchkey_core::dpop::AccessScheme;
use latchkey_proto::dpop::DpopError;
use latchkey_proto::{OAuthError, Params, SessionToken};

use crate::error::{ApiRefusal, PageRefusal, Refusal};

/// The request id set by the middleware (or by a proxy in front), for logs and 500 bodies.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let id = parts.headers.get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
        Ok(Self(id.to_owned()))
    }
}

/// The client's IP address: the TCP peer. Behind a reverse proxy this is the proxy, so login
/// throttling then counts per proxy; run Latchkey where it sees client addresses, or accept that.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
        Ok(Self(peer))
    }
}

/// Whether the caller wants JSON rather than a page (an API-style caller of a form endpoint).
pub fn wants_json(headers: &HeaderMap) -> bool {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    accept.contains("application/json") && !accept.contains("text/html")
}

/// Reads the body up to the router's `DefaultBodyLimit` ([`crate::MAX_BODY`]).
async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, Refusal> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Refusal::BodyTooLarge
        } else {
            Refusal::BodyUnreadable
        }
    })
}

/// The body of a request to an OAuth endpoint; a body that is too large or unreadable is refused
/// with a JSON error.
#[derive(Debug)]
pub struct ApiBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for ApiBody {
    type Rejection = ApiRefusal;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        read_body(req, state).await.map(Self).map_err(ApiRefusal)
    }
}

/// The body of a form a person submits; a body that is too large or unreadable is refused with
/// an HTML page.
#[derive(Debug)]
pub struct PageBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for PageBody {
    type Rejection = PageRefusal;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        read_body(req, state).await.map(Self).map_err(PageRefusal)
    }
}

/// A form body (RFC 6749 §3.2: the token endpoint takes `application/x-www-form-urlencoded`).
pub fn form_params(headers: &HeaderMap, body: &[u8]) -> Result<Params, OAuthError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(OAuthError::invalid_request(
            "the request body must be application/x-www-form-urlencoded (RFC 6749 §3.2)",
        ));
    }
    Params::parse(body)
}

/// The `Authorization` header, if present and readable.
pub fn authorization(headers: &HeaderMap) -> Result<Option<&str>, OAuthError> {
    match headers.get_all(header::AUTHORIZATION).iter().collect::<Vec<_>>().as_slice() {
        [] => Ok(None),
        [one] => {
            one.to_str().map(Some).map_err(|_| OAuthError::invalid_request("the Authorization header is not ASCII"))
        }
        _ => Err(OAuthError::invalid_request("more than one Authorization header")),
    }
}

/// RFC 6750 §2.1 bearer token from the header. `Ok(None)` means no credentials at all.
pub fn bearer(headers: &HeaderMap) -> Result<Option<&str>, OAuthError> {
    let Some(v) = authorization(headers)? else {
        return Ok(None);
    };
    let (scheme, token) = v.split_once(' ').unwrap_or((v, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(OAuthError::invalid_request("the Authorization header must use the Bearer scheme"));
    }
    let token = token.trim();
    if token.is_empty() || token.len() > 8192 {
        return Err(OAuthError::invalid_request("the Bearer credentials are empty or too long"));
    }
    Ok(Some(token))
}

/// The access token of a request to a protected resource and the scheme it came with: `Bearer`
/// (RFC 6750 §2.1) or `DPoP` (RFC 9449 §7.1). `Ok(None)` means no credentials at all.
pub fn access_token(headers: &HeaderMap) -> Result<Option<(AccessScheme, &str)>, OAuthError> {
    let Some(v) = authorization(headers)? else {
        return Ok(None);
    };
    let (scheme, token) = v.split_once(' ').unwrap_or((v, ""));
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        AccessScheme::Bearer
    } else if scheme.eq_ignore_ascii_case("dpop") {
        AccessScheme::Dpop
    } else {
        return Err(OAuthError::invalid_request("the Authorization header must use the Bearer or the DPoP scheme"));
    };
    let token = token.trim();
    if token.is_empty() || token.len() > 8192 {
        return Err(OAuthError::invalid_request("the access token in the Authorization header is empty or too long"));
    }
    Ok(Some((scheme, token)))
}

/// The raw values of every `DPoP` header (RFC 9449 §4.1), for the core to check: one proof is
/// the rule, and the core refuses more. A value that is not visible ASCII cannot be a JWS.
pub fn dpop_proofs(headers: &HeaderMap) -> Result<Vec<&str>, OAuthError> {
    headers
        .get_all(latchkey_proto::dpop::DPOP_HEADER)
        .iter()
        .map(|v| v.to_str().map_err(|_| OAuthError::dpop(&DpopError::Malformed("the DPoP header is not ASCII"))))
        .collect()
}

/// Cookie names; with an https issuer the `__Host-` prefix pins them to this exact origin.
pub struct CookieNames {
    pub session: &'static str,
    pub csrf: &'static str,
}

pub fn cookie_names(secure: bool) -> CookieNames {
    if secure {
        CookieNames { session: "__Host-latchkey_session", csrf: "__Host-latchkey_csrf" }
    } else {
        CookieNames { session: "latchkey_session", csrf: "latchkey_csrf" }
    }
}

pub fn session_cookie(jar: &CookieJar, secure: bool) -> Option<SessionToken> {
    jar.get(cookie_names(secure).session).map(|c| SessionToken::new(c.value()))
}

/// HttpOnly (no script can read it), SameSite=Lax (not sent on cross-site POSTs), Secure over https.
pub fn build_cookie(name: &'static str, value: String, max_age: Option<u64>, secure: bool) -> Cookie<'static> {
    let mut c = Cookie::build((name, value)).path("/").http_only(true).same_site(SameSite::Lax).secure(secure);
    if let Some(s) = max_age {
        c = c.max_age(cookie::time::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX)));
    }
    c.build()
}

/// The browser's `User-Agent`, summarised by the core into the session list's device name
/// (`sessions::meta`); never used for a security decision, since any client can set it.
pub fn user_agent(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok())
}
