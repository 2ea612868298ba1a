//! RFC 7591 client metadata, as it arrives at `/register` (and RFC 7592 updates), parsed into a
//! validated [`ClientMetadata`] before any decision is made about it; and the registration
//! response, whose wire form is fixed here.
//!
//! Unknown fields are ignored (RFC 7591 §2: "the authorization server MUST ignore any client
//! metadata sent by the client that it does not understand"); `null` is read as absent.

use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::OAuthError;
use crate::types::{RedirectUri, Scope};

/// At most this many redirect URIs (and post-logout redirect URIs, and contacts) per client: real
/// clients register one to three; the bound keeps one registration's row small.
pub const MAX_URIS: usize = 10;
/// The longest URI accepted in client metadata.
pub const MAX_URI_LEN: usize = 2000;
/// The longest free-text field (`client_name`, `software_id`, `software_version`, a contact).
pub const MAX_TEXT_LEN: usize = 200;

/// `token_endpoint_auth_method` (RFC 7591 §2): the ones Latchkey's token endpoint implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// A public client: PKCE binds its codes, it holds no secret.
    None,
    ClientSecretBasic,
    ClientSecretPost,
    /// RFC 7523 §2.2: assertions signed with the client's own key, whose public half it
    /// registers as `jwks` or `jwks_uri`. No shared secret exists.
    PrivateKeyJwt,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
            Self::PrivateKeyJwt => "private_key_jwt",
        }
    }
    fn parse(s: &str) -> Result<Self, OAuthError> {
        match s {
            "none" => Ok(Self::None),
            "client_secret_basic" => Ok(Self::ClientSecretBasic),
            "client_secret_post" => Ok(Self::ClientSecretPost),
            "private_key_jwt" => Ok(Self::PrivateKeyJwt),
            _ => Err(OAuthError::invalid_client_metadata(
                "token_endpoint_auth_method must be none, client_secret_basic, client_secret_post or private_key_jwt",
            )),
        }
    }
    /// Whether the client authenticates with a secret the server generated and hands out.
    pub fn uses_secret(self) -> bool {
        matches!(self, Self::ClientSecretBasic | Self::ClientSecretPost)
    }
}

/// The largest `jwks` accepted: a handful of public keys (an RSA-4096 JWK is under 1 KiB).
pub const MAX_JWKS_LEN: usize = 16 * 1024;

/// A client's `jwks` (OpenID Connect Dynamic Registration §2): a JWK Set of public signing keys,
/// at least one of them usable, and no private key material (a registered private key would be a
/// shared secret, the very thing `private_key_jwt` removes). Returns the document as compact JSON.
pub fn client_jwks(value: &serde_json::Value) -> Result<String, String> {
    let text = value.to_string();
    if text.len() > MAX_JWKS_LEN {
        return Err(format!("jwks is larger than {MAX_JWKS_LEN} bytes"));
    }
    let keys = value.get("keys").and_then(serde_json::Value::as_array).ok_or("jwks must be {\"keys\": [...]}")?;
    // RFC 7517/7518 private members: `d` (EC, OKP, RSA), the RSA CRT values, `k` (oct).
    const PRIVATE: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "k"];
    if keys.iter().any(|k| PRIVATE.iter().any(|m| k.get(m).is_some())) {
        return Err("jwks holds private or symmetric key material; register the public keys only".into());
    }
    let set = crate::jose::KeySet::from_jwks(text.as_bytes()).map_err(|e| format!("jwks: {e}"))?;
    if set.is_empty() {
        return Err("jwks has no usable public signing key (RSA, EC P-256/P-384 or Ed25519)".into());
    }
    Ok(text)
}

/// A client's `jwks_uri`: an absolute https URL without a fragment or user information. Whether
/// its host may be connected to is decided when it is fetched (never a private address).
pub fn jwks_uri(s: &str) -> Result<String, String> {
    let reject = |why: &str| format!("jwks_uri {s:?}: {why}");
    if s.len() > MAX_URI_LEN {
        return Err(format!("jwks_uri is longer than {MAX_URI_LEN} bytes"));
    }
    let url = Url::parse(s).map_err(|_| reject("not an absolute URI"))?;
    if url.scheme() != "https" || url.host_str().is_none() {
        return Err(reject("must be an https URL"));
    }
    if url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err(reject("must not contain a fragment or user information"));
    }
    Ok(s.to_owned())
}

/// `application_type` (OpenID Connect Dynamic Client Registration §2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplicationType {
    #[default]
    Web,
    Native,
}

/// The grant types a registered client may ask for. Others (implicit, password, device code,
/// jwt-bearer) are not implemented by this server and are refused, not silently dropped: a client
/// that registers for them expects them to work.
pub const GRANT_TYPES: [&str; 3] = ["authorization_code", "refresh_token", "client_credentials"];

/// The metadata as sent: every field optional and loosely typed, checked by [`ClientMetadata::parse`].
#[derive(Debug, Default, Deserialize)]
struct Raw {
    redirect_uris: Option<Vec<String>>,
    token_endpoint_auth_method: Option<String>,
    grant_types: Option<Vec<String>>,
    response_types: Option<Vec<String>>,
    application_type: Option<String>,
    client_name: Option<String>,
    client_uri: Option<String>,
    logo_uri: Option<String>,
    scope: Option<String>,
    contacts: Option<Vec<String>>,
    software_id: Option<String>,
    software_version: Option<String>,
    id_token_signed_response_alg: Option<String>,
    post_logout_redirect_uris: Option<Vec<String>>,
    backchannel_logout_uri: Option<String>,
    backchannel_logout_session_required: Option<bool>,
    dpop_bound_access_tokens: Option<bool>,
    jwks: Option<serde_json::Value>,
    jwks_uri: Option<String>,
}

/// Validated client metadata. Lists are de-duplicated and sorted, so that two registrations that
/// differ only in order are the same registration (see the fingerprint in `latchkey-core`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientMetadata {
    pub redirect_uris: Vec<RedirectUri>,
    pub token_endpoint_auth_method: AuthMethod,
    /// Each one of [`GRANT_TYPES`].
    pub grant_types: Vec<String>,
    /// `["code"]` with the authorization_code grant, else empty.
    pub response_types: Vec<String>,
    pub application_type: ApplicationType,
    pub client_name: Option<String>,
    pub client_uri: Option<String>,
    pub logo_uri: Option<String>,
    /// `None` when absent or the empty string (the MCP Inspector sends `""`).
    pub scope: Option<Scope>,
    pub contacts: Vec<String>,
    pub software_id: Option<String>,
    pub software_version: Option<String>,
    /// One of `RS256`, `ES256`, `EdDSA`.
    pub id_token_signed_response_alg: Option<String>,
    pub post_logout_redirect_uris: Vec<RedirectUri>,
    /// OpenID Connect Back-Channel Logout 1.0 §2.2: where logout tokens are POSTed. Left out of
    /// the serialized form when absent, so that the fingerprints of registrations made before
    /// back-channel logout existed stay what they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backchannel_logout_uri: Option<String>,
    /// §2.2 `backchannel_logout_session_required`: the client wants `sid` in logout tokens
    /// (Latchkey always sends it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub backchannel_logout_session_required: bool,
    /// RFC 9449 §5.2: every token request of this client must carry a DPoP proof. Left out of
    /// the serialized form when false, so that earlier registrations keep their fingerprints.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dpop_bound_access_tokens: bool,
    /// A `private_key_jwt` client's public keys, as a JWK Set document ([`client_jwks`]); kept
    /// only for that method, and left out of the serialized form when absent (fingerprints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<String>,
    /// Or where to fetch them ([`jwks_uri`]). Exactly one of the two with `private_key_jwt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
}

fn bad(d: impl Into<std::borrow::Cow<'static, str>>) -> OAuthError {
    OAuthError::invalid_client_metadata(d)
}

/// A free-text field: bounded, no control characters (it is shown on the consent page and logged).
fn text(field: &str, v: Option<String>) -> Result<Option<String>, OAuthError> {
    let Some(v) = v else { return Ok(None) };
    if v.chars().count() > MAX_TEXT_LEN || v.chars().any(char::is_control) {
        return Err(bad(format!("{field} must be at most {MAX_TEXT_LEN} characters without control characters")));
    }
    Ok(if v.trim().is_empty() { None } else { Some(v) })
}

/// `client_uri`, `logo_uri`: an absolute http(s) URL. Never fetched, never shown as an image (a
/// logo from a stranger would lend a phishing page the look of a known brand).
fn web_url(field: &str, v: Option<String>) -> Result<Option<String>, OAuthError> {
    let Some(v) = v else { return Ok(None) };
    let ok = v.len() <= MAX_URI_LEN
        && Url::parse(&v).is_ok_and(|u| matches!(u.scheme(), "https" | "http") && u.username().is_empty());
    if !ok {
        return Err(bad(format!("{field} must be an absolute http or https URL of at most {MAX_URI_LEN} bytes")));
    }
    Ok(Some(v))
}

/// A redirect URI a client registers for itself (RFC 7591 §2, RFC 8252, RFC 9700 §2.1):
/// https; http only to a loopback host (`127.0.0.1`, `[::1]`, `localhost`), where the code never
/// leaves the device; or a private-use scheme in reverse-domain form (RFC 8252 §7.1: it must
/// contain a period, so that it names a domain its app controls, not `myapp:`).
pub fn self_registered_redirect(s: &str) -> Result<RedirectUri, OAuthError> {
    let reject = |why: &str| OAuthError::invalid_redirect_uri(format!("redirect URI {s:?}: {why}"));
    if s.len() > MAX_URI_LEN {
        return Err(OAuthError::invalid_redirect_uri(format!("a redirect URI is longer than {MAX_URI_LEN} bytes")));
    }
    let url = Url::parse(s).map_err(|_| reject("not an absolute URI"))?;
    if url.fragment().is_some() {
        return Err(reject("must not contain a fragment (RFC 6749 §3.1.2)"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(reject("must not contain user information"));
    }
    match url.scheme() {
        "https" => {}
        "http" if matches!(url.host_str(), Some("127.0.0.1" | "[::1]" | "localhost")) => {}
        "http" => {
            return Err(reject(
                "plain http is allowed only to a loopback host (127.0.0.1, [::1], localhost); a code sent over http to another host can be read on the network (RFC 9700 §2.6); use https",
            ));
        }
        scheme if !scheme.contains('.') => {
            return Err(reject(
                "a private-use URI scheme must be in reverse domain-name form, such as com.example.app (RFC 8252 §7.1)",
            ));
        }
        _ => {}
    }
    RedirectUri::parse(s).map_err(|e| reject(&e.description))
}

/// A `backchannel_logout_uri` (Back-Channel Logout 1.0 §2.2): an absolute https URL without a
/// fragment or user information; its query, if any, is kept when the token is POSTed.
/// `loopback_http`: http to a loopback host is accepted too, for a client an administrator
/// registers for development. Not for a self-registered one: unlike a redirect URI, which the
/// user's browser follows on the user's device, this URI is requested by the server, and its
/// loopback is the server's own (where the delivery also refuses private addresses for it).
pub fn backchannel_logout_uri(s: &str, loopback_http: bool) -> Result<String, String> {
    let reject = |why: &str| format!("backchannel_logout_uri {s:?}: {why}");
    if s.len() > MAX_URI_LEN {
        return Err(format!("backchannel_logout_uri is longer than {MAX_URI_LEN} bytes"));
    }
    let url = Url::parse(s).map_err(|_| reject("not an absolute URI"))?;
    if url.fragment().is_some() {
        return Err(reject("must not contain a fragment (Back-Channel Logout §2.2)"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(reject("must not contain user information"));
    }
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "[::1]" | "localhost"));
    match url.scheme() {
        "https" if url.host_str().is_some() => Ok(s.to_owned()),
        "http" if loopback && loopback_http => Ok(s.to_owned()),
        "http" if loopback_http => {
            Err(reject("plain http is allowed only to a loopback host (127.0.0.1, [::1], localhost); use https"))
        }
        _ => Err(reject("must be an https URL")),
    }
}

fn uris(field: &str, v: Option<Vec<String>>) -> Result<Vec<RedirectUri>, OAuthError> {
    let v = v.unwrap_or_default();
    if v.len() > MAX_URIS {
        let e = format!("{field} has {} entries; at most {MAX_URIS} are accepted", v.len());
        return Err(if field == "redirect_uris" { OAuthError::invalid_redirect_uri(e) } else { bad(e) });
    }
    let mut out = Vec::with_capacity(v.len());
    for s in &v {
        let u = self_registered_redirect(s)?;
        if !out.contains(&u) {
            out.push(u);
        }
    }
    out.sort_by(|a: &RedirectUri, b| a.as_str().cmp(b.as_str()));
    Ok(out)
}

impl ClientMetadata {
    /// Parses an RFC 7591 registration request body (JSON). Every refusal names the field and the
    /// rule; `invalid_redirect_uri` for a redirect URI, `invalid_client_metadata` for the rest.
    pub fn parse(body: &[u8]) -> Result<Self, OAuthError> {
        let raw: Raw = serde_json::from_slice(body)
            .map_err(|e| bad(format!("the body must be a JSON object of client metadata (RFC 7591 §2): {e}")))?;
        let redirect_uris = uris("redirect_uris", raw.redirect_uris)?;
        let post_logout_redirect_uris = uris("post_logout_redirect_uris", raw.post_logout_redirect_uris)?;
        let token_endpoint_auth_method = match raw.token_endpoint_auth_method.as_deref() {
            // RFC 7591 §2: the default is client_secret_basic.
            None => AuthMethod::ClientSecretBasic,
            Some(m) => AuthMethod::parse(m)?,
        };
        let mut grant_types = raw.grant_types.unwrap_or_else(|| vec!["authorization_code".to_owned()]);
        if let Some(g) = grant_types.iter().find(|g| !GRANT_TYPES.contains(&g.as_str())) {
            return Err(bad(format!(
                "grant type {g:?} is not supported; use authorization_code, refresh_token or client_credentials"
            )));
        }
        grant_types.sort();
        grant_types.dedup();
        if grant_types.is_empty() {
            return Err(bad("grant_types must not be empty"));
        }
        let has_code = grant_types.iter().any(|g| g == "authorization_code");
        let mut response_types =
            raw.response_types.unwrap_or_else(|| if has_code { vec!["code".to_owned()] } else { vec![] });
        if let Some(r) = response_types.iter().find(|r| r.as_str() != "code") {
            return Err(bad(format!("response type {r:?} is not supported; only code is (OAuth 2.1)")));
        }
        response_types.dedup();
        // RFC 7591 §2.1: grant_types and response_types must agree.
        if has_code == response_types.is_empty() {
            return Err(bad("grant type authorization_code and response type code go together (RFC 7591 §2.1)"));
        }
        if has_code && redirect_uris.is_empty() {
            return Err(OAuthError::invalid_redirect_uri(
                "redirect_uris is required for the authorization_code grant (RFC 7591 §2)",
            ));
        }
        let application_type = match raw.application_type.as_deref() {
            None => ApplicationType::Web,
            Some("web") => ApplicationType::Web,
            Some("native") => ApplicationType::Native,
            Some(_) => return Err(bad("application_type must be web or native")),
        };
        let scope = match raw.scope.as_deref() {
            None => None,
            Some(s) => {
                let s = Scope::parse(s).map_err(|e| bad(format!("scope: {}", e.description)))?;
                (!s.is_empty()).then_some(s)
            }
        };
        let mut contacts = raw.contacts.unwrap_or_default();
        if contacts.len() > MAX_URIS {
            return Err(bad(format!("contacts has {} entries; at most {MAX_URIS} are accepted", contacts.len())));
        }
        for c in &contacts {
            text("a contact", Some(c.clone()))?;
        }
        contacts.retain(|c| !c.trim().is_empty());
        contacts.sort();
        contacts.dedup();
        let id_token_signed_response_alg = match raw.id_token_signed_response_alg {
            None => None,
            Some(a) if matches!(a.as_str(), "RS256" | "ES256" | "EdDSA") => Some(a),
            Some(_) => return Err(bad("id_token_signed_response_alg must be RS256, ES256 or EdDSA")),
        };
        let backchannel_logout_uri = match raw.backchannel_logout_uri {
            None => None,
            Some(u) => Some(backchannel_logout_uri(&u, false).map_err(bad)?),
        };
        let backchannel_logout_session_required = raw.backchannel_logout_session_required.unwrap_or(false);
        // OpenID Connect Dynamic Registration §2: `jwks` and `jwks_uri` never both. Other methods
        // have no use for keys: what they send is ignored, as unknown metadata is.
        let (jwks, jwks_uri) = match (token_endpoint_auth_method, raw.jwks, raw.jwks_uri) {
            (AuthMethod::PrivateKeyJwt, Some(_), Some(_)) => {
                return Err(bad("send jwks or jwks_uri, not both (OpenID Connect Dynamic Registration §2)"));
            }
            (AuthMethod::PrivateKeyJwt, Some(j), None) => (Some(client_jwks(&j).map_err(bad)?), None),
            (AuthMethod::PrivateKeyJwt, None, Some(u)) => (None, Some(jwks_uri(&u).map_err(bad)?)),
            (AuthMethod::PrivateKeyJwt, None, None) => {
                return Err(bad(
                    "token_endpoint_auth_method private_key_jwt needs the client's public keys: jwks or jwks_uri",
                ));
            }
            _ => (None, None),
        };
        if backchannel_logout_session_required && backchannel_logout_uri.is_none() {
            // Back-Channel Logout §2.2: it "MAY only be present if backchannel_logout_uri is".
            return Err(bad(
                "backchannel_logout_session_required needs a backchannel_logout_uri (Back-Channel Logout §2.2)",
            ));
        }
        Ok(Self {
            redirect_uris,
            token_endpoint_auth_method,
            grant_types,
            response_types,
            application_type,
            client_name: text("client_name", raw.client_name)?,
            client_uri: web_url("client_uri", raw.client_uri)?,
            logo_uri: web_url("logo_uri", raw.logo_uri)?,
            scope,
            contacts,
            software_id: text("software_id", raw.software_id)?,
            software_version: text("software_version", raw.software_version)?,
            id_token_signed_response_alg,
            post_logout_redirect_uris,
            backchannel_logout_uri,
            backchannel_logout_session_required,
            dpop_bound_access_tokens: raw.dpop_bound_access_tokens.unwrap_or(false),
            jwks,
            jwks_uri,
        })
    }

    pub fn is_public(&self) -> bool {
        self.token_endpoint_auth_method == AuthMethod::None
    }
}

/// The registration response (RFC 7591 §3.2.1) and the RFC 7592 read/update response. Every
/// accepted field is echoed; absent ones are left out, never sent as `null` (several SDKs' schemas
/// refuse `null` where they expect a string).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RegistrationResponse {
    pub client_id: String,
    /// Present once, in the answer to the registration that created a confidential client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// 0: the secret does not expire (RFC 7591 §3.2.1). Present with a confidential client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret_expires_at: Option<u64>,
    pub client_id_issued_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registration_access_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registration_client_uri: Option<String>,
    pub token_endpoint_auth_method: AuthMethod,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub response_types: Vec<String>,
    pub application_type: ApplicationType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logo_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub contacts: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub software_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub software_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token_signed_response_alg: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub post_logout_redirect_uris: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub backchannel_logout_uri: Option<String>,
    /// Echoed with a `backchannel_logout_uri` only.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub backchannel_logout_session_required: Option<bool>,
    /// RFC 9449 §5.2, echoed when registered true.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub dpop_bound_access_tokens: bool,
    /// A `private_key_jwt` client's keys, as registered.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub jwks: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub jwks_uri: Option<String>,
}

impl std::fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    fn parse(json: &str) -> Result<ClientMetadata, OAuthError> {
        ClientMetadata::parse(json.as_bytes())
    }

    fn code(json: &str) -> ErrorCode {
        parse(json).unwrap_err().code
    }

    #[test]
    fn a_typical_mcp_host_registration_is_accepted_and_unknown_fields_ignored() {
        let m = parse(
            r#"{"redirect_uris":["http://localhost:6274/oauth/callback","http://127.0.0.1/cb"],
                "token_endpoint_auth_method":"none","grant_types":["authorization_code","refresh_token"],
                "response_types":["code"],"client_name":"MCP Inspector","scope":"","tos_uri":null,
                "jwks":{"keys":[]},"software_statement":"x.y.z"}"#,
        )
        .unwrap();
        assert!(m.is_public());
        assert_eq!(m.scope, None, "an empty scope string is no scope");
        assert_eq!(m.redirect_uris.len(), 2);
        assert_eq!(m.grant_types, ["authorization_code", "refresh_token"]);
    }

    #[test]
    fn defaults_follow_rfc_7591() {
        let m = parse(r#"{"redirect_uris":["https://app.example/cb"]}"#).unwrap();
        assert_eq!(m.token_endpoint_auth_method, AuthMethod::ClientSecretBasic);
        assert_eq!(m.grant_types, ["authorization_code"]);
        assert_eq!(m.application_type, ApplicationType::Web);
    }

    #[test]
    fn redirect_uris_of_each_kind() {
        for ok in [
            "https://a.example/cb",
            "http://127.0.0.1/cb",
            "http://[::1]:8080/cb",
            "http://localhost/callback",
            "com.example.app:/oauth",
        ] {
            assert!(self_registered_redirect(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://app.example/cb",
            "http://10.0.0.1/cb",
            "myapp:/cb",
            "javascript:alert(1)",
            "https://a.example/cb#frag",
            "https://user:pw@a.example/cb",
            "/relative",
        ] {
            assert_eq!(self_registered_redirect(bad).unwrap_err().code, ErrorCode::InvalidRedirectUri, "{bad}");
        }
    }

    #[test]
    fn each_refusal_names_its_rule() {
        assert_eq!(code(r#"{"redirect_uris":["http://evil.example/cb"]}"#), ErrorCode::InvalidRedirectUri);
        assert_eq!(code(r#"{"redirect_uris":[]}"#), ErrorCode::InvalidRedirectUri);
        assert_eq!(code(r#"{}"#), ErrorCode::InvalidRedirectUri, "authorization_code needs a redirect URI");
        let many: Vec<String> = (0..11).map(|i| format!("\"https://a.example/{i}\"")).collect();
        assert_eq!(code(&format!(r#"{{"redirect_uris":[{}]}}"#, many.join(","))), ErrorCode::InvalidRedirectUri);
        let long = format!("https://a.example/{}", "a".repeat(MAX_URI_LEN));
        assert_eq!(code(&format!(r#"{{"redirect_uris":["{long}"]}}"#)), ErrorCode::InvalidRedirectUri);
        let r = r#""redirect_uris":["https://a.example/cb"]"#;
        for (body, why) in [
            (format!(r#"{{{r},"grant_types":["implicit"]}}"#), "implicit"),
            (format!(r#"{{{r},"grant_types":["urn:ietf:params:oauth:grant-type:jwt-bearer"]}}"#), "jwt-bearer"),
            (format!(r#"{{{r},"grant_types":[]}}"#), "empty grant types"),
            (format!(r#"{{{r},"response_types":["token"]}}"#), "token response type"),
            (format!(r#"{{{r},"token_endpoint_auth_method":"private_key_jwt"}}"#), "private_key_jwt without keys"),
            (format!(r#"{{{r},"application_type":"desktop"}}"#), "application_type"),
            (format!(r#"{{{r},"scope":"a\"b"}}"#), "scope"),
            (format!(r#"{{{r},"client_name":"{}"}}"#, "x".repeat(MAX_TEXT_LEN + 1)), "long name"),
            (format!(r#"{{{r},"client_name":"a\u0000b"}}"#), "control character"),
            (format!(r#"{{{r},"logo_uri":"javascript:alert(1)"}}"#), "logo_uri"),
            (format!(r#"{{{r},"id_token_signed_response_alg":"none"}}"#), "alg none"),
            (format!(r#"{{{r},"redirect_uris":"https://a.example/cb"}}"#), "a string, not a list"),
            ("[1,2]".to_owned(), "not an object"),
        ] {
            assert_eq!(code(&body), ErrorCode::InvalidClientMetadata, "{why}");
        }
    }

    #[test]
    fn order_and_duplicates_do_not_make_another_registration() {
        let a = parse(r#"{"redirect_uris":["https://b.example/cb","https://a.example/cb"],"grant_types":["refresh_token","authorization_code"]}"#).unwrap();
        let b = parse(r#"{"redirect_uris":["https://a.example/cb","https://b.example/cb","https://a.example/cb"],"grant_types":["authorization_code","refresh_token"]}"#).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn backchannel_logout_uris_are_https_without_fragment_or_loopback_http_for_admins() {
        for ok in ["https://rp.example/bcl", "https://rp.example:8443/bcl?tenant=a"] {
            assert_eq!(backchannel_logout_uri(ok, false).as_deref(), Ok(ok), "{ok}");
        }
        for dev in ["http://127.0.0.1:9000/bcl", "http://localhost/bcl", "http://[::1]/bcl"] {
            assert_eq!(backchannel_logout_uri(dev, true).as_deref(), Ok(dev), "{dev}: an administrator's client");
            assert!(backchannel_logout_uri(dev, false).is_err(), "{dev}: not for a self-registered one");
        }
        for bad in [
            "http://rp.example/bcl",
            "http://10.0.0.1/bcl",
            "https://rp.example/bcl#x",
            "https://u:p@rp.example/bcl",
            "ftp://rp.example/bcl",
            "com.example.app:/bcl",
            "/bcl",
        ] {
            assert!(backchannel_logout_uri(bad, true).is_err(), "{bad}");
        }
        let r = r#""redirect_uris":["https://a.example/cb"]"#;
        let m = parse(&format!(
            r#"{{{r},"backchannel_logout_uri":"https://a.example/bcl","backchannel_logout_session_required":true}}"#
        ))
        .unwrap();
        assert_eq!(m.backchannel_logout_uri.as_deref(), Some("https://a.example/bcl"));
        assert!(m.backchannel_logout_session_required);
        assert_eq!(
            code(&format!(r#"{{{r},"backchannel_logout_uri":"http://a.example/bcl"}}"#)),
            ErrorCode::InvalidClientMetadata
        );
        assert_eq!(
            code(&format!(r#"{{{r},"backchannel_logout_session_required":true}}"#)),
            ErrorCode::InvalidClientMetadata,
            "session_required without a URI"
        );
        // A registration without back-channel logout serializes as before the fields existed,
        // so that its fingerprint is unchanged.
        let plain = serde_json::to_string(&parse(&format!("{{{r}}}")).unwrap()).unwrap();
        assert!(!plain.contains("backchannel"), "{plain}");
    }

    /// A P-256 public key (RFC 7515 Appendix A.3's).
    const EC_PUBLIC: &str = r#"{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;

    #[test]
    fn private_key_jwt_registers_public_keys_by_value_or_by_https_url() {
        let r = r#""redirect_uris":["https://a.example/cb"],"token_endpoint_auth_method":"private_key_jwt""#;
        let m = parse(&format!(r#"{{{r},"jwks":{{"keys":[{EC_PUBLIC}]}}}}"#)).unwrap();
        assert_eq!(m.token_endpoint_auth_method, AuthMethod::PrivateKeyJwt);
        assert!(m.jwks.as_deref().unwrap().contains("f83OJ3D2"));
        let m = parse(&format!(r#"{{{r},"jwks_uri":"https://a.example/jwks.json"}}"#)).unwrap();
        assert_eq!(m.jwks_uri.as_deref(), Some("https://a.example/jwks.json"));
        let private = EC_PUBLIC.replace("\"kty\"", "\"d\":\"jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI\",\"kty\"");
        for (body, why) in [
            (format!(r#"{{{r},"jwks":{{"keys":[{EC_PUBLIC}]}},"jwks_uri":"https://a.example/j"}}"#), "both"),
            (format!(r#"{{{r},"jwks":{{"keys":[{private}]}}}}"#), "a private key"),
            (format!(r#"{{{r},"jwks":{{"keys":[{{"kty":"oct","k":"c2VjcmV0"}}]}}}}"#), "a symmetric key"),
            (format!(r#"{{{r},"jwks":{{"keys":[]}}}}"#), "no key"),
            (format!(r#"{{{r},"jwks":[1]}}"#), "not a JWK Set"),
            (format!(r#"{{{r},"jwks_uri":"http://a.example/jwks.json"}}"#), "plain http"),
            (format!(r#"{{{r},"jwks_uri":"https://u:p@a.example/jwks.json"}}"#), "user information"),
        ] {
            assert_eq!(code(&body), ErrorCode::InvalidClientMetadata, "{why}");
        }
        // Another method's keys are ignored, as unknown metadata is (MCP hosts send `jwks: {keys: []}`).
        let none = parse(r#"{"redirect_uris":["https://a.example/cb"],"token_endpoint_auth_method":"none","jwks_uri":"https://a.example/j"}"#).unwrap();
        assert_eq!((none.jwks, none.jwks_uri), (None, None));
        assert!(AuthMethod::ClientSecretPost.uses_secret() && !AuthMethod::PrivateKeyJwt.uses_secret());
    }

    #[test]
    fn dpop_bound_access_tokens_is_read_and_left_out_when_false() {
        let r = r#""redirect_uris":["https://a.example/cb"],"token_endpoint_auth_method":"none""#;
        assert!(!parse(&format!("{{{r}}}")).unwrap().dpop_bound_access_tokens);
        let m = parse(&format!(r#"{{{r},"dpop_bound_access_tokens":true}}"#)).unwrap();
        assert!(m.dpop_bound_access_tokens);
        assert!(serde_json::to_string(&m).unwrap().contains("dpop_bound_access_tokens"));
        // Earlier registrations serialize (and so fingerprint) as before.
        let off = serde_json::to_string(&parse(&format!(r#"{{{r},"dpop_bound_access_tokens":false}}"#)).unwrap());
        assert!(!off.unwrap().contains("dpop"));
        assert_eq!(code(&format!(r#"{{{r},"dpop_bound_access_tokens":"yes"}}"#)), ErrorCode::InvalidClientMetadata);
    }

    #[test]
    fn the_response_never_has_null() {
        let m = parse(r#"{"redirect_uris":["https://a.example/cb"],"token_endpoint_auth_method":"none"}"#).unwrap();
        let r = RegistrationResponse {
            client_id: "c".into(),
            client_secret: None,
            client_secret_expires_at: None,
            client_id_issued_at: 1,
            registration_access_token: None,
            registration_client_uri: None,
            token_endpoint_auth_method: m.token_endpoint_auth_method,
            redirect_uris: vec!["https://a.example/cb".into()],
            grant_types: m.grant_types,
            response_types: vec!["code".into()],
            application_type: m.application_type,
            client_name: None,
            client_uri: None,
            logo_uri: None,
            scope: None,
            contacts: vec![],
            software_id: None,
            software_version: None,
            id_token_signed_response_alg: None,
            post_logout_redirect_uris: vec![],
            backchannel_logout_uri: None,
            backchannel_logout_session_required: None,
            dpop_bound_access_tokens: false,
            jwks: None,
            jwks_uri: None,
        };
        let s = serde_json::to_string(&r).unwrap();
        assert!(!s.contains("null"), "{s}");
        assert!(s.contains(r#""token_endpoint_auth_method":"none""#));
    }
}
