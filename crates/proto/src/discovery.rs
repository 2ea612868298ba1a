//! Provider metadata as a relying party or a resource server reads it: OpenID Connect Discovery 1.0
//! and RFC 8414. Unlike [`crate::metadata::ProviderMetadata`] (the document Latchkey serves), every
//! field but `issuer` is optional here, because other providers publish less.

use serde::{Deserialize, Serialize};
use url::Url;

/// The subset of provider metadata a client or an API needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuerMetadata {
    pub issuer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userinfo_endpoint: Option<String>,
    /// RFC 7009 §2 / RFC 8414 §2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_endpoint: Option<String>,
    /// RFC 7662 §2 / RFC 8414 §2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introspection_endpoint: Option<String>,
    /// RFC 9207 §3: when true, every authorization response carries `iss` and a response without
    /// it must be refused.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_challenge_methods_supported: Option<Vec<String>>,
    /// RFC 9126 §5: where a client pushes its authorization request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pushed_authorization_request_endpoint: Option<String>,
    /// RFC 8628 §4: where a device without a browser asks for a user code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_authorization_endpoint: Option<String>,
    /// RFC 9126 §5: when true, the provider accepts only pushed authorization requests.
    #[serde(default)]
    pub require_pushed_authorization_requests: bool,
    /// RFC 9449 §5.1: the algorithms the provider accepts in DPoP proofs (absent: no DPoP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_signing_alg_values_supported: Option<Vec<String>>,
    /// RFC 8414 §2: the algorithms accepted for `private_key_jwt` client assertions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_signing_alg_values_supported: Option<Vec<String>>,
}

/// Why a metadata document cannot be used for the issuer that was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataProblem {
    /// OpenID Connect Discovery §4.3 and RFC 8414 §3.3: the document's `issuer` must be identical
    /// to the issuer it was fetched for, or an attacker's metadata could impersonate another
    /// provider (the mix-up attack, RFC 9700 §4.4).
    IssuerMismatch { expected: String, found: String },
    /// An endpoint the caller needs is not published.
    Missing(&'static str),
    /// An endpoint is not an absolute http(s) URL.
    BadUrl(&'static str),
    /// An endpoint is plain http although the issuer is not a loopback http issuer: tokens,
    /// secrets or (for `jwks_uri`) the keys every signature is checked with would cross the
    /// network in clear, where an attacker can read or replace them.
    InsecureUrl(&'static str),
}

impl std::fmt::Display for MetadataProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::IssuerMismatch { expected, found } => write!(
                f,
                "the metadata names issuer {found:?}, not {expected:?} (they must be identical: OpenID Connect Discovery §4.3, RFC 8414 §3.3)"
            ),
            Self::Missing(field) => write!(f, "the provider metadata has no {field}"),
            Self::BadUrl(field) => write!(f, "the provider metadata's {field} is not an http(s) URL"),
            Self::InsecureUrl(field) => write!(
                f,
                "the provider metadata's {field} is plain http: every endpoint must be https, except for an http issuer on a loopback host (127.0.0.1, [::1], localhost) whose endpoints are loopback too"
            ),
        }
    }
}

impl std::error::Error for MetadataProblem {}

impl IssuerMetadata {
    /// Checks that this document belongs to `expected_issuer`, compared byte for byte.
    pub fn check_issuer(&self, expected_issuer: &str) -> Result<(), MetadataProblem> {
        if self.issuer != expected_issuer {
            return Err(MetadataProblem::IssuerMismatch {
                expected: expected_issuer.to_owned(),
                found: self.issuer.clone(),
            });
        }
        Ok(())
    }

    /// An endpoint that must be present, as a URL.
    pub fn endpoint(&self, field: &'static str) -> Result<Url, MetadataProblem> {
        let value = match field {
            "authorization_endpoint" => &self.authorization_endpoint,
            "token_endpoint" => &self.token_endpoint,
            "jwks_uri" => &self.jwks_uri,
            "userinfo_endpoint" => &self.userinfo_endpoint,
            "revocation_endpoint" => &self.revocation_endpoint,
            "introspection_endpoint" => &self.introspection_endpoint,
            "pushed_authorization_request_endpoint" => &self.pushed_authorization_request_endpoint,
            "device_authorization_endpoint" => &self.device_authorization_endpoint,
            _ => return Err(MetadataProblem::Missing(field)),
        };
        let value = value.as_deref().ok_or(MetadataProblem::Missing(field))?;
        let url = Url::parse(value).map_err(|_| MetadataProblem::BadUrl(field))?;
        match url.scheme() {
            "https" => Ok(url),
            // Plain http only where nothing crosses a network: a development issuer on a loopback
            // host, pointing at loopback endpoints. An https issuer's metadata pointing at an http
            // `jwks_uri` would let a network attacker substitute the keys (review finding 19e).
            "http" if is_loopback_http(&self.issuer) && is_loopback_host(&url) => Ok(url),
            "http" => Err(MetadataProblem::InsecureUrl(field)),
            _ => Err(MetadataProblem::BadUrl(field)),
        }
    }
}

/// `http://127.0.0.1…`, `http://[::1]…`, `http://localhost…` (any port).
fn is_loopback_http(issuer: &str) -> bool {
    Url::parse(issuer).is_ok_and(|u| u.scheme() == "http" && is_loopback_host(&u))
}

fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Where to look for an issuer's metadata, in order: OpenID Connect Discovery §4 appends
/// `/.well-known/openid-configuration` to the issuer; RFC 8414 §3.1 inserts
/// `/.well-known/oauth-authorization-server` between the host and the issuer's path.
pub fn well_known_urls(issuer: &str) -> Result<[Url; 2], url::ParseError> {
    let base = Url::parse(issuer)?;
    let path = base.path().trim_end_matches('/').to_owned();
    let mut oidc = base.clone();
    oidc.set_query(None);
    oidc.set_fragment(None);
    oidc.set_path(&format!("{path}/.well-known/openid-configuration"));
    let mut oauth = oidc.clone();
    oauth.set_path(&format!("/.well-known/oauth-authorization-server{path}"));
    Ok([oidc, oauth])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_urls_for_root_and_path_issuers() {
        let [o, a] = well_known_urls("https://id.example").unwrap();
        assert_eq!(o.as_str(), "https://id.example/.well-known/openid-configuration");
        assert_eq!(a.as_str(), "https://id.example/.well-known/oauth-authorization-server");
        // RFC 8414 §3.1's example: the path goes after the well-known suffix.
        let [o, a] = well_known_urls("https://example.com/issuer1").unwrap();
        assert_eq!(o.as_str(), "https://example.com/issuer1/.well-known/openid-configuration");
        assert_eq!(a.as_str(), "https://example.com/.well-known/oauth-authorization-server/issuer1");
        assert!(well_known_urls("not a url").is_err());
    }

    #[test]
    fn issuer_must_match_exactly() {
        let m: IssuerMetadata =
            serde_json::from_str(r#"{"issuer":"https://id.example","token_endpoint":"https://id.example/token"}"#)
                .unwrap();
        assert!(m.check_issuer("https://id.example").is_ok());
        let e = m.check_issuer("https://id.example/").unwrap_err();
        assert!(matches!(e, MetadataProblem::IssuerMismatch { .. }));
        assert!(e.to_string().contains("identical"));
        assert_eq!(m.endpoint("token_endpoint").unwrap().as_str(), "https://id.example/token");
        assert_eq!(m.endpoint("jwks_uri").unwrap_err(), MetadataProblem::Missing("jwks_uri"));
        assert!(!m.authorization_response_iss_parameter_supported);
    }

    fn with_jwks(issuer: &str, jwks_uri: &str) -> IssuerMetadata {
        IssuerMetadata { issuer: issuer.into(), jwks_uri: Some(jwks_uri.into()), ..Default::default() }
    }

    /// Review finding 19e: an https issuer's metadata must not send a client or an API to plain
    /// http for anything, the keys least of all.
    #[test]
    fn endpoints_are_https_unless_issuer_and_endpoint_are_loopback_http() {
        for (issuer, jwks) in [
            ("https://id.example", "http://id.example/jwks"),
            ("https://id.example", "http://127.0.0.1/jwks"),
            ("https://127.0.0.1:8443", "http://127.0.0.1:8080/jwks"),
            ("http://127.0.0.1:8080", "http://keys.example/jwks"),
            ("http://localhost:8080", "http://10.0.0.1/jwks"),
        ] {
            let e = with_jwks(issuer, jwks).endpoint("jwks_uri").unwrap_err();
            assert_eq!(e, MetadataProblem::InsecureUrl("jwks_uri"), "{issuer} {jwks}");
            assert!(e.to_string().contains("must be https"), "{e}");
        }
        for (issuer, jwks) in [
            ("https://id.example", "https://keys.example/jwks"),
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080/jwks"),
            ("http://127.0.0.1:8080", "https://keys.example/jwks"),
            ("http://[::1]:8080", "http://[::1]:8080/jwks"),
            ("http://localhost:9443", "http://localhost:9443/jwks"),
        ] {
            assert!(with_jwks(issuer, jwks).endpoint("jwks_uri").is_ok(), "{issuer} {jwks}");
        }
        assert_eq!(
            with_jwks("https://id.example", "ftp://id.example/jwks").endpoint("jwks_uri").unwrap_err(),
            MetadataProblem::BadUrl("jwks_uri")
        );
    }
}
