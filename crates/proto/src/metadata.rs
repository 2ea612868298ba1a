//! Response documents: the token response and the provider metadata.

use serde::{Deserialize, Serialize};

/// RFC 6749 §5.1 plus the OpenID Connect `id_token`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    pub scope: String,
}

impl std::fmt::Debug for RedactedTokenResponse<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse").field("expires_in", &self.0.expires_in).field("scope", &self.0.scope).finish()
    }
}

/// Debug view of a token response that shows no token.
pub struct RedactedTokenResponse<'a>(pub &'a TokenResponse);

/// OpenID Connect Discovery 1.0 §3 and RFC 8414 §2: one document, served at both well-known paths.
/// It lists exactly what this server does, so clients never try what would be refused.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProviderMetadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub userinfo_endpoint: String,
    pub jwks_uri: String,
    pub revocation_endpoint: String,
    pub introspection_endpoint: String,
    pub end_session_endpoint: String,
    /// RFC 7591 §3, RFC 8414 §2: absent when registration is turned off.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub registration_endpoint: Option<String>,
    pub scopes_supported: Vec<String>,
    pub response_types_supported: Vec<String>,
    pub response_modes_supported: Vec<String>,
    pub grant_types_supported: Vec<String>,
    pub subject_types_supported: Vec<String>,
    pub id_token_signing_alg_values_supported: Vec<String>,
    pub token_endpoint_auth_methods_supported: Vec<String>,
    pub revocation_endpoint_auth_methods_supported: Vec<String>,
    pub introspection_endpoint_auth_methods_supported: Vec<String>,
    pub code_challenge_methods_supported: Vec<String>,
    pub claims_supported: Vec<String>,
    /// OpenID Connect Discovery §3: the `acr` values `acr_values` may ask for.
    #[serde(default)]
    pub acr_values_supported: Vec<String>,
    pub prompt_values_supported: Vec<String>,
    pub authorization_response_iss_parameter_supported: bool,
    pub frontchannel_logout_supported: bool,
    pub backchannel_logout_supported: bool,
    /// Back-Channel Logout 1.0 §2.1: logout tokens carry `sid`, and so do ID tokens.
    pub backchannel_logout_session_supported: bool,
    pub claims_parameter_supported: bool,
    pub request_parameter_supported: bool,
    pub request_uri_parameter_supported: bool,
    /// draft-ietf-oauth-client-id-metadata-document §5: an https URL `client_id` is fetched as
    /// the client's metadata document.
    pub client_id_metadata_document_supported: bool,
    /// RFC 9449 §5.1: the algorithms DPoP proofs may be signed with.
    #[serde(default)]
    pub dpop_signing_alg_values_supported: Vec<String>,
    /// RFC 9126 §5: where clients push authorization requests.
    #[serde(default)]
    pub pushed_authorization_request_endpoint: String,
    /// RFC 8628 §4: where devices without a browser ask for a user code.
    #[serde(default)]
    pub device_authorization_endpoint: String,
    /// RFC 9126 §5: `true` when every client must push its requests (`[par] require`, or the
    /// deployment's `fapi2` profile); a client's own requirement is in its registration.
    #[serde(default)]
    pub require_pushed_authorization_requests: bool,
    /// RFC 8414 §2: the algorithms `private_key_jwt` assertions may be signed with, at each
    /// endpoint that authenticates clients.
    #[serde(default)]
    pub token_endpoint_auth_signing_alg_values_supported: Vec<String>,
    #[serde(default)]
    pub revocation_endpoint_auth_signing_alg_values_supported: Vec<String>,
    #[serde(default)]
    pub introspection_endpoint_auth_signing_alg_values_supported: Vec<String>,
}
