//! The token endpoint (code exchange, RFC 6749 §4.1.3; refresh, §6) and revocation (RFC 7009).

use latchkey_proto::error::ErrorResponse;
use latchkey_proto::secret::AccessToken;
use latchkey_proto::{ClientSecret, RefreshToken, Scope};
use serde::Deserialize;
use url::Url;

use crate::authorize::shown;
use crate::{Error, IdTokenClaims};

/// The tokens of one successful token response, validated.
#[derive(Clone)]
pub struct TokenSet {
    pub access_token: AccessToken,
    pub refresh_token: Option<RefreshToken>,
    /// The raw id_token (it was validated; `id_claims` holds its claims).
    pub id_token: Option<String>,
    pub id_claims: Option<IdTokenClaims>,
    /// When the access token expires (Unix seconds), if the provider said (`expires_in`).
    pub expires_at: Option<i64>,
    /// The granted scope: the response's `scope`, or the requested one when it is omitted
    /// (RFC 6749 §5.1: omitted means "identical to the scope requested").
    pub scope: Scope,
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSet")
            .field("refresh_token", &self.refresh_token.is_some())
            .field("id_token", &self.id_token.is_some())
            .field("expires_at", &self.expires_at)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// RFC 6749 §5.1, read tolerantly: only `access_token` and `token_type` are required.
#[derive(Deserialize)]
pub(crate) struct RawTokenResponse {
    pub access_token: String,
    pub token_type: String,
    #[serde(default)]
    pub expires_in: Option<i64>,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub id_token: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
}

/// How this client authenticates to the token endpoint (RFC 6749 §2.3).
#[derive(Clone, Debug)]
pub(crate) enum Credentials {
    /// A public client: `client_id` in the body, no secret.
    Public,
    /// `client_secret_basic`.
    Basic(ClientSecret),
}

/// POSTs a form to an endpoint with the client's authentication and returns the body of a 2xx
/// answer, or the endpoint's OAuth error.
pub(crate) async fn post_form(
    http: &reqwest::Client,
    endpoint_name: &'static str,
    url: &Url,
    client_id: &str,
    credentials: &Credentials,
    form: &[(&str, &str)],
) -> Result<Vec<u8>, Error> {
    let mut body: Vec<(&str, &str)> = form.to_vec();
    let mut req = http.post(url.clone()).header("accept", "application/json");
    match credentials {
        Credentials::Public => body.push(("client_id", client_id)),
        Credentials::Basic(secret) => {
            // RFC 6749 §2.3.1: both parts are form-urlencoded before being joined.
            let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            req = req.basic_auth(enc(client_id), Some(enc(secret.expose_secret())));
        }
    }
    let res = req.form(&body).send().await.map_err(|source| Error::Http { url: url.to_string(), source })?;
    let status = res.status().as_u16();
    let bytes = res.bytes().await.map_err(|source| Error::Http { url: url.to_string(), source })?;
    if (200..300).contains(&status) {
        return Ok(bytes.to_vec());
    }
    let err: Option<ErrorResponse> = serde_json::from_slice(&bytes).ok();
    Err(match err {
        Some(e) => Error::Endpoint {
            endpoint: endpoint_name,
            status,
            error: shown(&e.error),
            description: e.error_description.as_deref().map(shown),
        },
        None => Error::Endpoint {
            endpoint: endpoint_name,
            status,
            error: "no OAuth error in the response".into(),
            description: None,
        },
    })
}

impl RawTokenResponse {
    pub(crate) fn parse(body: &[u8]) -> Result<Self, Error> {
        let raw: Self =
            serde_json::from_slice(body).map_err(|e| Error::BadTokenResponse(format!("not a token response: {e}")))?;
        // RFC 6750: we only know how to present Bearer tokens; a DPoP-bound token would fail later.
        if !raw.token_type.eq_ignore_ascii_case("bearer") {
            return Err(Error::BadTokenResponse(format!(
                "token_type is {:?}; only Bearer tokens are supported",
                shown(&raw.token_type)
            )));
        }
        if raw.access_token.is_empty() {
            return Err(Error::BadTokenResponse("access_token is empty".into()));
        }
        Ok(raw)
    }

    pub(crate) fn scope_or(&self, requested: &Scope) -> Result<Scope, Error> {
        match &self.scope {
            Some(s) => Scope::parse(s).map_err(|e| Error::BadTokenResponse(format!("scope: {}", e.description))),
            None => Ok(requested.clone()),
        }
    }
}

/// RFC 7009 §2.1 `token_type_hint`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenTypeHint {
    AccessToken,
    RefreshToken,
}

impl TokenTypeHint {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AccessToken => "access_token",
            Self::RefreshToken => "refresh_token",
        }
    }
}
