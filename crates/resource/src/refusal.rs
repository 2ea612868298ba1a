//! Why a request is refused, and the one place that turns a refusal into an HTTP response
//! (RFC 6750 §3: status code, `WWW-Authenticate` challenge and a JSON body that says the same).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use latchkey_proto::Scope;
use latchkey_proto::jose::JoseError;

/// A refused request. Closed: every way a request can fail has a variant and one mapping below.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No credentials at all, or another authentication scheme: RFC 6750 §3.1 says the challenge
    /// then carries no error code.
    #[error("the request has no bearer token")]
    NoToken,
    /// RFC 6750 §3.1 `invalid_request`: malformed or ambiguous credentials. 400.
    #[error("invalid_request: {0}")]
    InvalidRequest(&'static str),
    /// RFC 6750 §3.1 `invalid_token`: expired, revoked, malformed or not for us. 401.
    #[error("invalid_token: {0}")]
    InvalidToken(TokenError),
    /// RFC 6750 §3.1 `insufficient_scope`: a valid token without the scope this route needs. 403.
    #[error("insufficient_scope: this request needs scope {required}; the token lacks {missing}")]
    InsufficientScope { required: Scope, missing: String },
    /// The token cannot be checked right now (no signing keys yet, introspection endpoint down).
    /// Not the client's fault: 503 with `Retry-After`.
    #[error("the issuer's keys or introspection endpoint are unavailable: {0}")]
    Unavailable(String),
    /// The API is wired wrongly (e.g. the `Claims` extractor without a verifier). 500; the detail
    /// goes to the log only.
    #[error("server misconfiguration: {0}")]
    Misconfigured(&'static str),
}

/// Which check of the access token failed. The description names the check, never the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("{0}")]
    Jose(JoseError),
    /// RFC 9068 §4: an access token's `typ` is `at+jwt`; an id_token must not pass as one.
    #[error("the token's typ is {0:?}, not at+jwt: it is not an access token (RFC 9068 §4)")]
    WrongType(Option<String>),
    #[error("the token was issued by {0:?}, not by the issuer this API trusts")]
    Issuer(String),
    /// RFC 8707 / RFC 9068 §4: `aud` names another API. Both sides are named: the token's
    /// audience is its holder's own information, the accepted one is public (it is this API's
    /// resource identifier).
    #[error(
        "the token's audience is {token:?}, not this API ({accepted}): ask the issuer for a token for this resource (RFC 8707)"
    )]
    Audience { token: String, accepted: String },
    #[error("the access token expired")]
    Expired,
    #[error("the access token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the access token was issued in the future (iat)")]
    IssuedInFuture,
    #[error("the access token has no valid {0} claim")]
    MissingClaim(&'static str),
    /// RFC 7662: the authorization server says the token is not active (revoked, expired, unknown).
    #[error("the access token is not active (introspection)")]
    Inactive,
    /// RFC 7662 §2.2: the introspection answer's `token_type` names another kind of token (a
    /// refresh token, a DPoP-bound token) than the bearer access token this API accepts.
    #[error("the token is of type {0:?} according to introspection, not a Bearer access token")]
    NotAnAccessToken(String),
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NoToken | Self::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::InsufficientScope { .. } => StatusCode::FORBIDDEN,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Misconfigured(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The RFC 6750 §3.1 error code, if this refusal has one.
    pub fn error_code(&self) -> Option<&'static str> {
        match self {
            Self::NoToken => None,
            Self::InvalidRequest(_) => Some("invalid_request"),
            Self::InvalidToken(_) => Some("invalid_token"),
            Self::InsufficientScope { .. } => Some("insufficient_scope"),
            Self::Unavailable(_) => Some("temporarily_unavailable"),
            Self::Misconfigured(_) => Some("server_error"),
        }
    }

    /// What the client is told. Internal details (misconfiguration, upstream errors) stay in the log.
    pub fn description(&self) -> String {
        match self {
            Self::NoToken => "send the access token in the Authorization header: Authorization: Bearer <token>".into(),
            Self::InvalidRequest(d) => (*d).into(),
            Self::InvalidToken(e) => e.to_string(),
            Self::InsufficientScope { required, missing } => {
                format!("this request needs scope \"{required}\"; the token lacks \"{missing}\"")
            }
            Self::Unavailable(_) => "the access token cannot be checked right now; retry shortly".into(),
            Self::Misconfigured(_) => "internal error".into(),
        }
    }

    /// The `WWW-Authenticate` challenge (RFC 6750 §3), for the refusals that carry one.
    pub fn challenge(&self, realm: Option<&str>) -> Option<String> {
        self.challenge_with(&Challenge { realm, ..Challenge::default() })
    }

    /// The challenge with every parameter the API knows. Order: `realm`, `error`,
    /// `error_description`, `resource_metadata`, `scope`. `resource_metadata` (RFC 9728 §5.1)
    /// goes on every challenge; `scope` on 401s names what the route needs (so a client asks for
    /// it at once), on 403 `insufficient_scope` every scope the request needs, granted ones
    /// included (the MCP step-up asks for exactly that set; naming only the missing ones would
    /// make the client drop the others).
    pub fn challenge_with(&self, c: &Challenge<'_>) -> Option<String> {
        let mut params = Vec::new();
        if let Some(r) = c.realm {
            params.push(format!("realm=\"{}\"", quoted(r)));
        }
        let scope = match self {
            Self::NoToken => c.scope.filter(|s| !s.is_empty()),
            Self::InvalidRequest(_) | Self::InvalidToken(_) => {
                params.push(format!("error=\"{}\"", self.error_code().unwrap_or_default()));
                params.push(format!("error_description=\"{}\"", described(&self.description())));
                c.scope.filter(|s| !s.is_empty())
            }
            Self::InsufficientScope { required, .. } => {
                params.push("error=\"insufficient_scope\"".into());
                params.push(format!("error_description=\"{}\"", described(&self.description())));
                Some(required)
            }
            Self::Unavailable(_) | Self::Misconfigured(_) => return None,
        };
        if let Some(url) = c.resource_metadata {
            params.push(format!("resource_metadata=\"{}\"", quoted(url)));
        }
        // Never `scope=""`: clients' parsers read an empty quoted value as the two quote marks.
        if let Some(s) = scope.filter(|s| !s.is_empty()) {
            params.push(format!("scope=\"{}\"", quoted(&s.to_string())));
        }
        Some(if params.is_empty() { "Bearer".into() } else { format!("Bearer {}", params.join(", ")) })
    }

    /// The response, with the challenge's realm.
    pub fn to_response(&self, realm: Option<&str>) -> Response {
        self.to_response_with(&Challenge { realm, ..Challenge::default() })
    }

    /// The response, with every challenge parameter of `c`.
    pub fn to_response_with(&self, c: &Challenge<'_>) -> Response {
        match self {
            Self::Misconfigured(detail) => tracing::error!(%detail, "latchkey-resource is misconfigured"),
            Self::Unavailable(detail) => tracing::warn!(%detail, "cannot check access tokens"),
            other => tracing::debug!(refusal = %other, "request refused"),
        }
        let mut body = serde_json::Map::new();
        if let Some(code) = self.error_code() {
            body.insert("error".into(), code.into());
        }
        body.insert("error_description".into(), self.description().into());
        let mut res = (self.status(), axum::Json(body)).into_response();
        let h = res.headers_mut();
        if let Some(c) = self.challenge_with(c).and_then(|c| HeaderValue::from_str(&c).ok()) {
            h.insert(header::WWW_AUTHENTICATE, c);
        }
        if matches!(self, Self::Unavailable(_)) {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }
}

/// What a challenge says besides the refusal itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct Challenge<'a> {
    /// RFC 6750 §3 `realm`.
    pub realm: Option<&'a str>,
    /// RFC 9728 §5.1: where the client finds this API's protected resource metadata.
    pub resource_metadata: Option<&'a str>,
    /// The scope the request needs, for 401 challenges (403s carry their own).
    pub scope: Option<&'a Scope>,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        self.to_response(None)
    }
}

/// An `error_description` value: [`quoted`], and without `=`, so that the naive
/// `name="value"` searches of MCP SDK clients cannot find a `scope=` or `resource_metadata=`
/// inside a description that echoes a claim.
fn described(s: &str) -> String {
    quoted(s).replace('=', ":")
}

/// RFC 6750 §3: error_description and scope are restricted to %x20-21 / %x23-5B / %x5D-7E, so
/// no `"` or `\` (which would break out of the quoted string) and nothing outside printable ASCII.
fn quoted(s: &str) -> String {
    s.chars().map(|c| if c == '"' { '\'' } else { c }).filter(|c| (' '..='~').contains(c) && *c != '\\').collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn challenges_follow_rfc6750_section_3() {
        assert_eq!(Refusal::NoToken.challenge(None).unwrap(), "Bearer");
        assert_eq!(Refusal::NoToken.challenge(Some("api")).unwrap(), "Bearer realm=\"api\"");
        let c = Refusal::InvalidToken(TokenError::Expired).challenge(Some("api")).unwrap();
        assert_eq!(c, "Bearer realm=\"api\", error=\"invalid_token\", error_description=\"the access token expired\"");
        let s = Refusal::InsufficientScope { required: Scope::parse("b a").unwrap(), missing: "b".into() };
        let c = s.challenge(None).unwrap();
        assert!(c.contains("error=\"insufficient_scope\"") && c.ends_with("scope=\"a b\""), "{c}");
        assert_eq!(s.status(), StatusCode::FORBIDDEN);
        assert!(Refusal::Unavailable("x".into()).challenge(None).is_none());
        assert_eq!(quoted("a\"b\\c\u{e9}\n"), "a'bc");
        assert_eq!(described("aud https://x/?scope=admin"), "aud https://x/?scope:admin");
    }
}
