//! The one mapping from errors to HTTP responses.
//!
//! Status codes and `WWW-Authenticate` are decided here and nowhere else. A server fault never
//! becomes a 4xx, and its cause goes to the log with the request id, never to the client.

use axum::Json;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use latchkey_core::Error;
use latchkey_proto::error::ErrorResponse;
use latchkey_proto::{ErrorCode, OAuthError};

/// RFC 6749 §5.2, RFC 6750 §3.1, OpenID Connect Core §3.1.2.6.
pub fn status(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidClient | ErrorCode::InvalidToken => StatusCode::UNAUTHORIZED,
        ErrorCode::InsufficientScope => StatusCode::FORBIDDEN,
        ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::InvalidRequest
        | ErrorCode::InvalidGrant
        | ErrorCode::UnauthorizedClient
        | ErrorCode::UnsupportedGrantType
        | ErrorCode::UnsupportedResponseType
        | ErrorCode::InvalidScope
        | ErrorCode::AccessDenied
        | ErrorCode::UnsupportedTokenType
        | ErrorCode::LoginRequired
        | ErrorCode::ConsentRequired
        | ErrorCode::InteractionRequired
        | ErrorCode::RequestNotSupported
        | ErrorCode::RequestUriNotSupported
        | ErrorCode::InvalidTarget
        | ErrorCode::InvalidRedirectUri
        | ErrorCode::InvalidClientMetadata
        | ErrorCode::UnmetAuthenticationRequirements
        // RFC 9449 §5.10 and §8: at the token endpoint; a protected resource answers 401 with a
        // DPoP challenge instead (§7.1, decided where the challenge is built).
        | ErrorCode::InvalidDpopProof
        | ErrorCode::UseDpopNonce
        | ErrorCode::InvalidRequestUri
        // RFC 8628 §3.5: token endpoint error responses (RFC 6749 §5.2).
        | ErrorCode::AuthorizationPending
        | ErrorCode::SlowDown
        | ErrorCode::ExpiredToken => StatusCode::BAD_REQUEST,
    }
}

/// How the failing endpoint speaks: which `WWW-Authenticate` scheme applies.
#[derive(Clone, Debug)]
pub enum Scheme {
    /// The token endpoint: client authentication is HTTP Basic (RFC 6749 §5.2).
    Basic,
    /// Endpoints that take a bearer credential only (RFC 6750 §3), such as registration access
    /// tokens.
    Bearer,
    /// A protected resource that takes bearer and DPoP-bound access tokens (userinfo): every
    /// challenge offers both schemes, the DPoP one with the algorithms a proof may use (RFC 9449
    /// §7.1), and the error goes in the challenge of the scheme the request used. DPoP errors are
    /// 401 here, not 400 as at the token endpoint.
    Resource {
        /// The request used `Authorization: DPoP` (or failed on its proof).
        dpop: bool,
        /// `algs`, space-separated.
        algs: String,
    },
}

/// A JSON error response of an OAuth endpoint.
#[derive(Debug)]
pub struct ApiError {
    pub error: Error,
    pub scheme: Scheme,
    pub request_id: String,
}

impl ApiError {
    pub fn new(error: impl Into<Error>, scheme: Scheme, request_id: &str) -> Self {
        Self { error: error.into(), scheme, request_id: request_id.to_owned() }
    }
}

fn quote(s: &str) -> String {
    // RFC 6750 §3: the description is a quoted-string of printable ASCII without `"` and `\`.
    s.chars().filter(|c| (' '..='~').contains(c) && *c != '"' && *c != '\\').collect()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let oauth = match self.error {
            Error::OAuth(e) => e,
            Error::Internal(cause) => {
                tracing::error!(request_id = %self.request_id, error = %format!("{cause:#}"), "internal error");
                OAuthError::new(
                    ErrorCode::ServerError,
                    format!(
                        "internal server error; the server log has the details under request id {}",
                        self.request_id
                    ),
                )
            }
        };
        let dpop_error = matches!(oauth.code, ErrorCode::InvalidDpopProof | ErrorCode::UseDpopNonce);
        let status = match &self.scheme {
            // RFC 9449 §7.1: a protected resource refuses a proof with 401 and a DPoP challenge.
            Scheme::Resource { .. } if dpop_error => StatusCode::UNAUTHORIZED,
            _ => status(oauth.code),
        };
        let mut res = (status, Json(ErrorResponse::from(&oauth))).into_response();
        let h = res.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        let with_error = |scheme: &str| {
            let mut v =
                format!(r#"{scheme} error="{}", error_description="{}""#, oauth.code, quote(&oauth.description));
            if oauth.code == ErrorCode::InsufficientScope {
                v.push_str(r#", scope="openid""#);
            }
            v
        };
        let challenges = match (self.scheme, status) {
            (Scheme::Basic, StatusCode::UNAUTHORIZED) => vec![r#"Basic realm="latchkey", charset="UTF-8""#.to_owned()],
            (Scheme::Bearer, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::BAD_REQUEST) => {
                vec![with_error(r#"Bearer realm="latchkey","#)]
            }
            (
                Scheme::Resource { dpop, algs },
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::BAD_REQUEST,
            ) => {
                let algs = format!(r#"algs="{}""#, quote(&algs));
                if dpop || dpop_error {
                    vec![format!("{}, {algs}", with_error("DPoP")), r#"Bearer realm="latchkey""#.to_owned()]
                } else {
                    vec![with_error(r#"Bearer realm="latchkey","#), format!("DPoP {algs}")]
                }
            }
            _ => vec![],
        };
        for v in challenges.iter().filter_map(|v| HeaderValue::from_str(v).ok()) {
            h.append(header::WWW_AUTHENTICATE, v);
        }
        res
    }
}

/// Refusals made before an endpoint reads its parameters. They are not protocol errors, so their
/// status is not the one of an OAuth code; their body still says `invalid_request` and exactly why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The body is larger than [`crate::MAX_BODY`] (RFC 9110 §15.5.14).
    BodyTooLarge,
    /// Client metadata (RFC 7591) larger than this many bytes.
    MetadataTooLarge(usize),
    /// The body could not be read: the client broke the framing (e.g. bad chunked encoding).
    BodyUnreadable,
    /// The route exists, this method does not (RFC 9110 §15.5.6; axum adds the `Allow` header).
    MethodNotAllowed(Method),
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BodyTooLarge | Self::MetadataTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyUnreadable => StatusCode::BAD_REQUEST,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    pub fn description(&self) -> String {
        match self {
            Self::BodyTooLarge => {
                format!("the request body is larger than {} bytes; OAuth requests are far smaller", crate::MAX_BODY)
            }
            Self::MetadataTooLarge(n) => {
                format!("the client metadata is larger than {n} bytes; a registration is far smaller")
            }
            Self::BodyUnreadable => "the request body could not be read (broken framing or encoding)".to_owned(),
            Self::MethodNotAllowed(m) => {
                let shown: String = m.as_str().chars().filter(char::is_ascii_graphic).take(20).collect();
                format!("the {shown} method is not allowed here; the Allow header lists the ones that are")
            }
        }
    }

    /// As an OAuth endpoint answers: a JSON error body (RFC 6749 §5.2 shape).
    pub fn json(&self) -> Response {
        let body = ErrorResponse {
            error: ErrorCode::InvalidRequest.as_str().to_owned(),
            error_description: Some(self.description()),
        };
        let mut res = (self.status(), Json(body)).into_response();
        res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }

    /// As the pages a person sees answer: an HTML error page.
    pub fn page(&self) -> Response {
        crate::pages::html(self.status(), crate::pages::error("This request cannot be handled", &self.description()))
    }
}

/// [`Refusal`] answered as JSON: the rejection of API extractors and routes.
#[derive(Debug)]
pub struct ApiRefusal(pub Refusal);

impl IntoResponse for ApiRefusal {
    fn into_response(self) -> Response {
        self.0.json()
    }
}

/// [`Refusal`] answered as an HTML page: the rejection of page extractors and routes.
#[derive(Debug)]
pub struct PageRefusal(pub Refusal);

impl IntoResponse for PageRefusal {
    fn into_response(self) -> Response {
        self.0.page()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(status(ErrorCode::InvalidClient), StatusCode::UNAUTHORIZED);
        assert_eq!(status(ErrorCode::InvalidGrant), StatusCode::BAD_REQUEST);
        assert_eq!(status(ErrorCode::ServerError), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(status(ErrorCode::InsufficientScope), StatusCode::FORBIDDEN);
    }

    #[test]
    fn internal_errors_say_nothing_of_the_cause() {
        let e = ApiError::new(anyhow::anyhow!("disk /var/db full, password=hunter2"), Scheme::Basic, "rid-1");
        let res = e.into_response();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    fn challenges(res: &Response) -> Vec<String> {
        res.headers().get_all(header::WWW_AUTHENTICATE).iter().map(|v| v.to_str().unwrap().to_owned()).collect()
    }

    #[test]
    fn a_protected_resource_answers_proof_errors_with_401_and_both_schemes() {
        let resource = |dpop| Scheme::Resource { dpop, algs: "ES256 EdDSA".into() };
        let e = OAuthError::new(ErrorCode::UseDpopNonce, "a DPoP nonce is required");
        let res = ApiError::new(e.clone(), resource(true), "r").into_response();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "RFC 9449 §7.1, not 400");
        assert_eq!(
            challenges(&res),
            [
                r#"DPoP error="use_dpop_nonce", error_description="a DPoP nonce is required", algs="ES256 EdDSA""#,
                r#"Bearer realm="latchkey""#
            ]
        );
        // At the token endpoint the same error is a 400 without a challenge (§5.10, §8).
        let res = ApiError::new(e, Scheme::Basic, "r").into_response();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert!(challenges(&res).is_empty());
        // A Bearer request's error goes in the Bearer challenge; DPoP is still offered.
        let res = ApiError::new(OAuthError::invalid_token("revoked"), resource(false), "r").into_response();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            challenges(&res),
            [
                r#"Bearer realm="latchkey", error="invalid_token", error_description="revoked""#,
                r#"DPoP algs="ES256 EdDSA""#
            ]
        );
    }

    #[test]
    fn refusal_statuses() {
        assert_eq!(Refusal::BodyTooLarge.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(Refusal::BodyUnreadable.status(), StatusCode::BAD_REQUEST);
        assert_eq!(Refusal::MethodNotAllowed(Method::PUT).status(), StatusCode::METHOD_NOT_ALLOWED);
        assert!(Refusal::MethodNotAllowed(Method::PUT).description().contains("PUT method is not allowed"));
        assert!(Refusal::BodyTooLarge.description().contains("65536 bytes"));
    }
}
