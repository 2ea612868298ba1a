//! Every error code Latchkey can put on the wire, and the one place their strings live.

use std::borrow::Cow;
use std::fmt;

/// The closed set of error codes of RFC 6749 §4.1.2.1 and §5.2, RFC 6750 §3.1, RFC 7009 §2.2.1 and
/// OpenID Connect Core §3.1.2.6. The HTTP status for each is decided once, in the server crate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    UnsupportedResponseType,
    InvalidScope,
    AccessDenied,
    ServerError,
    TemporarilyUnavailable,
    InvalidToken,
    InsufficientScope,
    UnsupportedTokenType,
    LoginRequired,
    ConsentRequired,
    InteractionRequired,
    RequestNotSupported,
    RequestUriNotSupported,
    /// RFC 8707 §2: the requested resource or audience is not one this client may target.
    InvalidTarget,
    /// RFC 7591 §3.2.2: a redirect URI in a registration request is not acceptable.
    InvalidRedirectUri,
    /// RFC 7591 §3.2.2: some other client metadata field is invalid or not allowed.
    InvalidClientMetadata,
    /// OpenID Connect Unmet Authentication Requirements 1.0: the authentication the request
    /// requires (an essential `acr`) is one this server cannot perform.
    UnmetAuthenticationRequirements,
    /// RFC 9449 §5.10 / §7.1: the DPoP proof is missing where required, or fails a check.
    InvalidDpopProof,
    /// RFC 9449 §8: retry with the server's nonce (sent in `DPoP-Nonce`).
    UseDpopNonce,
    /// RFC 9101 §6.2 / RFC 9126 §2.2: the `request_uri` is unknown, expired, used, or another
    /// client's.
    InvalidRequestUri,
    /// RFC 8628 §3.5: the user has not answered yet; poll again at the interval.
    AuthorizationPending,
    /// RFC 8628 §3.5: polled too soon; the interval grew by 5 seconds.
    SlowDown,
    /// RFC 8628 §3.5: the device code expired.
    ExpiredToken,
}

impl ErrorCode {
    /// The exact string the RFCs define for this code.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::InvalidScope => "invalid_scope",
            Self::AccessDenied => "access_denied",
            Self::ServerError => "server_error",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
            Self::InvalidToken => "invalid_token",
            Self::InsufficientScope => "insufficient_scope",
            Self::UnsupportedTokenType => "unsupported_token_type",
            Self::LoginRequired => "login_required",
            Self::ConsentRequired => "consent_required",
            Self::InteractionRequired => "interaction_required",
            Self::RequestNotSupported => "request_not_supported",
            Self::RequestUriNotSupported => "request_uri_not_supported",
            Self::InvalidTarget => "invalid_target",
            Self::InvalidRedirectUri => "invalid_redirect_uri",
            Self::InvalidClientMetadata => "invalid_client_metadata",
            Self::UnmetAuthenticationRequirements => "unmet_authentication_requirements",
            Self::InvalidDpopProof => "invalid_dpop_proof",
            Self::UseDpopNonce => "use_dpop_nonce",
            Self::InvalidRequestUri => "invalid_request_uri",
            Self::AuthorizationPending => "authorization_pending",
            Self::SlowDown => "slow_down",
            Self::ExpiredToken => "expired_token",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A protocol error: a code and a description that names exactly what was wrong.
///
/// Descriptions are written for the developer of the client. They never contain a secret value
/// (codes, tokens, verifiers, secrets, passwords): only the names of parameters and the rule broken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthError {
    pub code: ErrorCode,
    pub description: Cow<'static, str>,
}

impl OAuthError {
    pub fn new(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        Self { code, description: description.into() }
    }
    pub fn invalid_request(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidRequest, d)
    }
    pub fn invalid_grant(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidGrant, d)
    }
    pub fn invalid_client(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidClient, d)
    }
    pub fn invalid_scope(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidScope, d)
    }
    pub fn invalid_client_metadata(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidClientMetadata, d)
    }
    pub fn invalid_redirect_uri(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidRedirectUri, d)
    }
    pub fn invalid_token(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidToken, d)
    }
    /// A refused DPoP proof: `use_dpop_nonce` when only the nonce is missing or old (§8),
    /// `invalid_dpop_proof` otherwise, with the precise check in the description.
    pub fn dpop(e: &crate::dpop::DpopError) -> Self {
        let code = if e.is_nonce() { ErrorCode::UseDpopNonce } else { ErrorCode::InvalidDpopProof };
        Self::new(code, e.to_string())
    }
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.description)
    }
}

impl std::error::Error for OAuthError {}

/// The JSON error body of RFC 6749 §5.2.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct ErrorResponse {
    pub error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}

impl From<&OAuthError> for ErrorResponse {
    fn from(e: &OAuthError) -> Self {
        Self { error: e.code.as_str().to_owned(), error_description: Some(e.description.to_string()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_strings_are_the_rfc_ones() {
        assert_eq!(ErrorCode::InvalidGrant.as_str(), "invalid_grant");
        assert_eq!(ErrorCode::UnsupportedGrantType.as_str(), "unsupported_grant_type");
        assert_eq!(ErrorCode::LoginRequired.to_string(), "login_required");
        assert_eq!(ErrorCode::InvalidRedirectUri.as_str(), "invalid_redirect_uri");
        assert_eq!(ErrorCode::InvalidClientMetadata.as_str(), "invalid_client_metadata");
        assert_eq!(ErrorCode::InvalidDpopProof.as_str(), "invalid_dpop_proof");
        assert_eq!(ErrorCode::UseDpopNonce.as_str(), "use_dpop_nonce");
        assert_eq!(ErrorCode::InvalidRequestUri.as_str(), "invalid_request_uri");
    }
}
