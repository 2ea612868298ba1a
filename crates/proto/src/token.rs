//! The token endpoint request (RFC 6749 §3.2, §4.1.3, §6), parsed into a grant enum and a client
//! authentication before any decision is made.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::error::{ErrorCode, OAuthError};
use crate::params::Params;
use crate::pkce::CodeVerifier;
use crate::resource::ResourceUri;
use crate::secret::{AuthorizationCode, ClientSecret, DeviceCode, RefreshToken};
use crate::types::{ClientId, Scope};

/// How the client identified itself (RFC 6749 §2.3). Exactly one method per request.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// `client_id` in the body, no secret: how a public client identifies itself (RFC 6749 §3.2.1).
    None { client_id: ClientId },
    /// `client_secret_basic`: the HTTP Basic scheme (RFC 6749 §2.3.1).
    Basic { client_id: ClientId, secret: ClientSecret },
    /// `client_secret_post`: `client_id` and `client_secret` in the body.
    Post { client_id: ClientId, secret: ClientSecret },
    /// `private_key_jwt` (RFC 7523 §2.2): a JWT signed with the client's own key; verified by the
    /// core against the keys the client registered.
    PrivateKeyJwt { client_id: ClientId, assertion: crate::client_assertion::ClientAssertion },
}

impl ClientAuth {
    pub fn client_id(&self) -> &ClientId {
        match self {
            Self::None { client_id }
            | Self::Basic { client_id, .. }
            | Self::Post { client_id, .. }
            | Self::PrivateKeyJwt { client_id, .. } => client_id,
        }
    }
    /// The name registered in metadata for this method (RFC 8414 §2).
    pub fn method_name(&self) -> &'static str {
        match self {
            Self::None { .. } => "none",
            Self::Basic { .. } => "client_secret_basic",
            Self::Post { .. } => "client_secret_post",
            Self::PrivateKeyJwt { .. } => "private_key_jwt",
        }
    }
    /// Whether the client sent the HTTP Authorization header; RFC 6749 §5.2 then requires a 401
    /// answering with the scheme it used.
    pub fn used_basic(&self) -> bool {
        matches!(self, Self::Basic { .. })
    }
}

/// `grant_type` of the device authorization grant (RFC 8628 §3.4).
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The grants this server implements, as a closed enum: nothing downstream compares `grant_type` strings.
#[derive(Debug, Clone)]
pub enum GrantRequest {
    /// RFC 6749 §4.1.3 with RFC 7636 §4.5.
    AuthorizationCode {
        code: AuthorizationCode,
        /// Kept raw: whether it is present and equal to the authorization request's is a core decision.
        redirect_uri: Option<String>,
        code_verifier: Option<CodeVerifier>,
        /// RFC 8707 §2.2: the resource the access token is for.
        resource: Option<ResourceUri>,
    },
    /// RFC 6749 §6, with RFC 8707 `resource` to narrow the token to one granted resource.
    RefreshToken { refresh_token: RefreshToken, scope: Option<Scope>, resource: Option<ResourceUri> },
    /// RFC 6749 §4.4, with the audience named by `audience` or RFC 8707 `resource`.
    ClientCredentials { scope: Option<Scope>, audience: Option<String> },
    /// RFC 8628 §3.4: a device polling with its device code.
    DeviceCode { device_code: DeviceCode },
}

impl GrantRequest {
    pub fn grant_type(&self) -> &'static str {
        match self {
            Self::AuthorizationCode { .. } => "authorization_code",
            Self::RefreshToken { .. } => "refresh_token",
            Self::ClientCredentials { .. } => "client_credentials",
            Self::DeviceCode { .. } => DEVICE_CODE_GRANT,
        }
    }
}

#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub client: ClientAuth,
    pub grant: GrantRequest,
}

/// An error at this stage may come before we know who the client is; `client_auth_failed` tells the
/// server to answer 401 with `WWW-Authenticate`.
impl TokenRequest {
    /// `authorization` is the raw value of the HTTP `Authorization` header, if any.
    pub fn parse(params: &Params, authorization: Option<&str>) -> Result<Self, OAuthError> {
        let client = parse_client_auth(params, authorization)?;
        let grant_type = params.require("grant_type")?;
        let grant = match grant_type {
            "authorization_code" => {
                let code = params.require("code")?;
                if code.len() > 512 {
                    return Err(OAuthError::invalid_grant("the authorization code is invalid"));
                }
                let code_verifier = params.get("code_verifier").map(CodeVerifier::parse).transpose()?;
                GrantRequest::AuthorizationCode {
                    code: AuthorizationCode::new(code),
                    redirect_uri: params.get("redirect_uri").map(str::to_owned),
                    code_verifier,
                    resource: params.get("resource").map(ResourceUri::parse).transpose()?,
                }
            }
            "refresh_token" => {
                let token = params.require("refresh_token")?;
                if token.len() > 512 {
                    return Err(OAuthError::invalid_grant("the refresh token is invalid"));
                }
                GrantRequest::RefreshToken {
                    refresh_token: RefreshToken::new(token),
                    scope: params.get("scope").map(Scope::parse).transpose()?,
                    resource: params.get("resource").map(ResourceUri::parse).transpose()?,
                }
            }
            "client_credentials" => {
                if params.contains("audience") && params.contains("resource") {
                    return Err(OAuthError::invalid_request("send either audience or resource, not both"));
                }
                // `audience` is a free-form name; `resource` is an RFC 8707 URI, canonicalized.
                let audience = match (params.get("audience"), params.get("resource")) {
                    (Some(a), _) => Some(a.to_owned()),
                    (None, Some(r)) => Some(ResourceUri::parse(r)?.to_string()),
                    (None, None) => None,
                };
                if audience.as_ref().is_some_and(|a| a.len() > 512) {
                    return Err(OAuthError::invalid_request("audience is too long"));
                }
                GrantRequest::ClientCredentials { scope: params.get("scope").map(Scope::parse).transpose()?, audience }
            }
            DEVICE_CODE_GRANT => {
                let device_code = params.require("device_code")?;
                if device_code.len() > 512 {
                    return Err(OAuthError::invalid_grant("the device code is invalid"));
                }
                GrantRequest::DeviceCode { device_code: DeviceCode::new(device_code) }
            }
            other => {
                let shown: String = other.chars().filter(char::is_ascii_graphic).take(40).collect();
                return Err(OAuthError::new(
                    ErrorCode::UnsupportedGrantType,
                    format!(
                        "grant_type `{shown}` is not supported; supported: authorization_code, refresh_token, client_credentials, {DEVICE_CODE_GRANT}"
                    ),
                ));
            }
        };
        Ok(Self { client, grant })
    }
}

/// RFC 6749 §2.3: a client "MUST NOT use more than one authentication method in each request".
pub fn parse_client_auth(params: &Params, authorization: Option<&str>) -> Result<ClientAuth, OAuthError> {
    let body_id = params.get("client_id").map(ClientId::parse).transpose()?;
    let body_secret = params.get("client_secret");
    // RFC 7521 §4.2: an assertion is one method; with a secret or Basic it would be two.
    match (params.get("client_assertion_type"), params.get("client_assertion")) {
        (None, None) => {}
        (Some(crate::client_assertion::ASSERTION_TYPE), Some(value)) => {
            if authorization.is_some() || body_secret.is_some() {
                return Err(OAuthError::invalid_request(
                    "the client used two authentication methods (client_assertion and a client secret); use exactly one",
                ));
            }
            let (client_id, assertion) = crate::client_assertion::ClientAssertion::parse(value)?;
            if body_id.as_ref().is_some_and(|id| *id != client_id) {
                return Err(OAuthError::invalid_client(
                    "client_id in the body differs from the client_assertion's iss and sub",
                ));
            }
            return Ok(ClientAuth::PrivateKeyJwt { client_id, assertion });
        }
        (Some(_), Some(_)) => {
            return Err(OAuthError::invalid_client(format!(
                "client_assertion_type must be {}",
                crate::client_assertion::ASSERTION_TYPE
            )));
        }
        (Some(_), None) => return Err(OAuthError::invalid_request("client_assertion_type without client_assertion")),
        (None, Some(_)) => return Err(OAuthError::invalid_request("client_assertion without client_assertion_type")),
    }
    if let Some(header) = authorization {
        let Some(encoded) = header.strip_prefix("Basic ").or_else(|| header.strip_prefix("basic ")) else {
            return Err(OAuthError::invalid_client(
                "the Authorization header must use the Basic scheme for client authentication",
            ));
        };
        let (client_id, secret) = decode_basic(encoded.trim())?;
        if body_secret.is_some() {
            return Err(OAuthError::invalid_request(
                "the client used two authentication methods (HTTP Basic and client_secret in the body); use exactly one",
            ));
        }
        if body_id.as_ref().is_some_and(|id| *id != client_id) {
            return Err(OAuthError::invalid_request(
                "client_id in the body differs from the client authenticated with HTTP Basic",
            ));
        }
        return Ok(ClientAuth::Basic { client_id, secret });
    }
    let Some(client_id) = body_id else {
        return Err(OAuthError::invalid_client(
            "no client identification: send client_id (public clients) or authenticate with HTTP Basic",
        ));
    };
    Ok(match body_secret {
        Some(s) => ClientAuth::Post { client_id, secret: ClientSecret::new(s) },
        None => ClientAuth::None { client_id },
    })
}

/// RFC 6749 §2.3.1: id and secret are form-urlencoded, then joined with ':' and base64-encoded.
fn decode_basic(encoded: &str) -> Result<(ClientId, ClientSecret), OAuthError> {
    let malformed = || OAuthError::invalid_client("malformed HTTP Basic client credentials");
    let raw = STANDARD.decode(encoded).map_err(|_| malformed())?;
    let raw = String::from_utf8(raw).map_err(|_| malformed())?;
    let (id, secret) = raw.split_once(':').ok_or_else(malformed)?;
    let decode = |s: &str| -> Result<String, OAuthError> {
        let plus_as_space = s.replace('+', " ");
        form_urlencoded::parse(format!("v={plus_as_space}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .ok_or_else(malformed)
    };
    let id = decode(id)?;
    let secret = decode(secret)?;
    Ok((ClientId::parse(&id).map_err(|_| malformed())?, ClientSecret::new(secret)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str, auth: Option<&str>) -> Result<TokenRequest, OAuthError> {
        TokenRequest::parse(&Params::parse(body.as_bytes())?, auth)
    }

    #[test]
    fn seed_token_request_parses() {
        let r = parse(
            "grant_type=authorization_code&code=abc&redirect_uri=http%3A%2F%2F127.0.0.1%3A8765%2Fcallback&client_id=demo&code_verifier=dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
            None,
        )
        .unwrap();
        assert!(matches!(r.client, ClientAuth::None { .. }));
        let GrantRequest::AuthorizationCode { redirect_uri, code_verifier, .. } = r.grant else { panic!() };
        assert_eq!(redirect_uri.as_deref(), Some("http://127.0.0.1:8765/callback"));
        assert!(code_verifier.is_some());
    }

    #[test]
    fn grant_type_errors() {
        assert_eq!(parse("client_id=a&code=x", None).unwrap_err().code, ErrorCode::InvalidRequest);
        let e = parse("client_id=a&grant_type=password", None).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnsupportedGrantType);
        assert!(e.description.contains("password"));
    }

    #[test]
    fn two_auth_methods_are_refused() {
        let basic = format!("Basic {}", STANDARD.encode("app:s3cret"));
        let e = parse("grant_type=refresh_token&refresh_token=r&client_secret=s3cret", Some(&basic)).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert!(e.description.contains("two authentication methods"));
        let ok = parse("grant_type=refresh_token&refresh_token=r", Some(&basic)).unwrap();
        assert_eq!(ok.client.client_id().as_str(), "app");
        assert_eq!(ok.client.method_name(), "client_secret_basic");
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let basic = format!("Basic {}", STANDARD.encode("my%20app:a%3Ab"));
        let ClientAuth::Basic { client_id, secret } = parse_client_auth(&Params::default(), Some(&basic)).unwrap()
        else {
            panic!()
        };
        assert_eq!(client_id.as_str(), "my app");
        assert_eq!(secret.expose_secret(), "a:b");
        assert!(parse_client_auth(&Params::default(), Some("Basic !!!")).is_err());
        assert!(parse_client_auth(&Params::default(), Some("Bearer x")).is_err());
    }

    #[test]
    fn malformed_verifier_is_invalid_request() {
        let e = parse("grant_type=authorization_code&code=x&client_id=a&code_verifier=short", None).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert!(e.description.contains("code_verifier"));
    }
}
