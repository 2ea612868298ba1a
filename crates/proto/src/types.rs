//! Validated protocol values. Each constructor enforces the grammar of the RFC that defines the value,
//! so code past the edge never sees a malformed one.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::{ErrorCode, OAuthError};

/// RFC 6749 Appendix A: VSCHAR = %x20-7E.
fn is_vschar(s: &str) -> bool {
    s.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// RFC 6749 §2.2 / Appendix A.1: `client_id` = *VSCHAR. We also bound it and require it non-empty.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClientId(String);

impl ClientId {
    pub fn parse(s: &str) -> Result<Self, OAuthError> {
        if s.is_empty() || s.len() > 255 || !is_vschar(s) {
            return Err(OAuthError::invalid_request("client_id must be 1 to 255 printable ASCII characters"));
        }
        Ok(Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An opaque value the client sends and gets back byte for byte (RFC 6749 §4.1.1, `state`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct State(String);

/// Longest `state` or `nonce` accepted. Clients that pack data into `state` stay far below this.
pub const MAX_OPAQUE_LEN: usize = 2048;

impl State {
    pub fn parse(s: &str) -> Result<Self, OAuthError> {
        if s.len() > MAX_OPAQUE_LEN || !is_vschar(s) {
            return Err(OAuthError::invalid_request(format!(
                "state must be at most {MAX_OPAQUE_LEN} printable ASCII characters"
            )));
        }
        Ok(Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// OpenID Connect Core §3.1.2.1 `nonce`: echoed in the id_token to bind it to the client's session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Nonce(String);

impl Nonce {
    pub fn parse(s: &str) -> Result<Self, OAuthError> {
        if s.len() > MAX_OPAQUE_LEN || !is_vschar(s) {
            return Err(OAuthError::invalid_request(format!(
                "nonce must be at most {MAX_OPAQUE_LEN} printable ASCII characters"
            )));
        }
        Ok(Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A redirection endpoint (RFC 6749 §3.1.2): an absolute URI without a fragment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RedirectUri(String);

/// Why a redirect URI cannot be registered.
#[derive(Debug, PartialEq, Eq)]
pub struct RedirectUriRejected(pub &'static str);

impl fmt::Display for RedirectUriRejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl RedirectUri {
    /// Syntax check for a `redirect_uri` parameter: absolute, no fragment (RFC 6749 §3.1.2).
    pub fn parse(s: &str) -> Result<Self, OAuthError> {
        let url = Url::parse(s).map_err(|_| OAuthError::invalid_request("redirect_uri is not an absolute URI"))?;
        if url.fragment().is_some() {
            return Err(OAuthError::invalid_request("redirect_uri must not contain a fragment (RFC 6749 §3.1.2)"));
        }
        Ok(Self(s.to_owned()))
    }

    /// The stricter check made when a client is registered: https, a loopback http URI for native
    /// apps (RFC 8252 §7.3), or a private-use scheme (RFC 8252 §7.1). Plain http to another host
    /// would let a network attacker read the code (RFC 9700 §2.6).
    pub fn parse_registration(s: &str) -> Result<Self, RedirectUriRejected> {
        let url = Url::parse(s).map_err(|_| RedirectUriRejected("not an absolute URI"))?;
        if url.fragment().is_some() {
            return Err(RedirectUriRejected("a redirect URI must not contain a fragment"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(RedirectUriRejected("a redirect URI must not contain user information"));
        }
        match url.scheme() {
            "https" => {}
            // RFC 8252 §8.3: loopback redirects over http "NOT RECOMMENDED" with `localhost`: the
            // name may resolve to another interface, or the port be taken on the other address
            // family by another program. The IP literal also gets any port (§7.3).
            "http" if url.host_str() == Some("localhost") => {
                return Err(RedirectUriRejected(
                    "http redirect URIs may not use the name localhost (RFC 8252 §8.3): register http://127.0.0.1[:PORT]/PATH or http://[::1][:PORT]/PATH instead; any port is then accepted (RFC 8252 §7.3)",
                ));
            }
            "http" if !matches!(url.host_str(), Some("127.0.0.1" | "[::1]")) => {
                return Err(RedirectUriRejected(
                    "http redirect URIs are allowed only for loopback hosts (127.0.0.1, [::1]); use https",
                ));
            }
            "javascript" | "data" | "file" | "vbscript" => {
                return Err(RedirectUriRejected("this URI scheme cannot be a redirect URI"));
            }
            _ => {}
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this requested URI is allowed by a registered one. Exact string comparison
    /// (RFC 9700 §4.1.3), with the one exception of RFC 8252 §7.3: for a registered loopback host
    /// over http, any port is accepted, since native apps get an ephemeral port at run time. The
    /// host itself must match: `localhost` only for `localhost` (Claude Code registers
    /// `http://localhost/callback` and sends `http://localhost:54321/callback`), an IP literal only
    /// for the same literal. Whatever the port, the code stays on this device.
    pub fn matches_registered(&self, registered: &RedirectUri) -> bool {
        if self.0 == registered.0 {
            return true;
        }
        let (Ok(req), Ok(reg)) = (Url::parse(&self.0), Url::parse(&registered.0)) else {
            return false;
        };
        let loopback_ip =
            |u: &Url| u.scheme() == "http" && matches!(u.host_str(), Some("127.0.0.1" | "[::1]" | "localhost"));
        loopback_ip(&reg)
            && loopback_ip(&req)
            && req.host_str() == reg.host_str()
            && req.path() == reg.path()
            && req.query() == reg.query()
            && req.username().is_empty()
            && req.password().is_none()
            && req.fragment().is_none()
            // The unparsed strings must differ only in the port, so that e.g. a differently
            // percent-encoded path that `url` normalises cannot slip through.
            && strip_port(&self.0) == strip_port(&registered.0)
    }
}

/// `http://127.0.0.1:1234/cb` -> `http://127.0.0.1/cb`.
fn strip_port(s: &str) -> String {
    let Some(rest) = s.strip_prefix("http://") else {
        return s.to_owned();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host = if authority.starts_with('[') {
        authority.find(']').map_or(authority, |i| &authority[..=i])
    } else {
        authority.split(':').next().unwrap_or(authority)
    };
    format!("http://{host}{tail}")
}

impl fmt::Display for RedirectUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A set of scope tokens (RFC 6749 §3.3): space-delimited, each 1*NQCHAR, order irrelevant.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Scope(BTreeSet<String>);

impl Scope {
    pub fn parse(s: &str) -> Result<Self, OAuthError> {
        let mut set = BTreeSet::new();
        for token in s.split(' ').filter(|t| !t.is_empty()) {
            // NQCHAR = %x21 / %x23-5B / %x5D-7E
            let ok = token.len() <= 128
                && token.bytes().all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
            if !ok {
                return Err(OAuthError::new(
                    ErrorCode::InvalidScope,
                    "scope must be space-separated tokens of printable ASCII without `\"` or `\\` (RFC 6749 §3.3)",
                ));
            }
            set.insert(token.to_owned());
        }
        if set.len() > 64 {
            return Err(OAuthError::invalid_scope("too many scope values (at most 64)"));
        }
        Ok(Self(set))
    }

    pub fn contains(&self, s: &str) -> bool {
        self.0.contains(s)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn is_subset(&self, other: &Scope) -> bool {
        self.0.is_subset(&other.0)
    }
    /// The tokens of `self` not in `other`, space-separated, for error descriptions.
    pub fn missing_from(&self, other: &Scope) -> String {
        self.0.difference(&other.0).cloned().collect::<Vec<_>>().join(" ")
    }
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
    pub fn intersection(&self, other: &Scope) -> Scope {
        Scope(self.0.intersection(&other.0).cloned().collect())
    }
    pub fn union(&self, other: &Scope) -> Scope {
        Scope(self.0.union(&other.0).cloned().collect())
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for s in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(s)?;
            first = false;
        }
        Ok(())
    }
}

impl From<Scope> for String {
    fn from(s: Scope) -> String {
        s.to_string()
    }
}

impl TryFrom<String> for Scope {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Scope::parse(&s).map_err(|e| e.description.into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> RedirectUri {
        RedirectUri::parse(s).unwrap()
    }

    #[test]
    fn redirect_uris_match_exactly() {
        let reg = RedirectUri::parse_registration("https://app.example.com/callback").unwrap();
        assert!(uri("https://app.example.com/callback").matches_registered(&reg));
        assert!(!uri("https://app.example.com/callback/").matches_registered(&reg));
        assert!(!uri("https://app.example.com/callback?x=1").matches_registered(&reg));
        assert!(!uri("https://app.example.com:443/callback").matches_registered(&reg));
        assert!(!uri("https://APP.example.com/callback").matches_registered(&reg));
        assert!(!uri("https://app.example.com.evil.com/callback").matches_registered(&reg));
    }

    #[test]
    fn loopback_ip_accepts_any_port_rfc8252_7_3() {
        let reg = RedirectUri::parse_registration("http://127.0.0.1/callback").unwrap();
        assert!(uri("http://127.0.0.1:51234/callback").matches_registered(&reg));
        assert!(uri("http://127.0.0.1/callback").matches_registered(&reg));
        assert!(!uri("http://127.0.0.1:51234/other").matches_registered(&reg));
        assert!(!uri("http://localhost:51234/callback").matches_registered(&reg));
        assert!(!uri("http://127.0.0.1:5/callback?x").matches_registered(&reg));
        let reg6 = RedirectUri::parse_registration("http://[::1]:8765/cb").unwrap();
        assert!(uri("http://[::1]:1/cb").matches_registered(&reg6));
        assert!(!uri("http://127.0.0.1:1/cb").matches_registered(&reg6));
        // localhost: any port too (issue 12: Claude Code registers http://localhost/callback and
        // sends an ephemeral port), but only for the name localhost, never for another host.
        let host = uri("http://localhost/callback");
        assert!(uri("http://localhost:54321/callback").matches_registered(&host));
        assert!(uri("http://localhost/callback").matches_registered(&host));
        assert!(!uri("http://127.0.0.1:54321/callback").matches_registered(&host));
        assert!(!uri("http://localhost.evil.example:54321/callback").matches_registered(&host));
        assert!(!uri("http://localhost:54321/callback/x").matches_registered(&host));
        assert!(!uri("https://localhost:54321/callback").matches_registered(&host));
        assert!(!uri("http://user@localhost:54321/callback").matches_registered(&host));
    }

    #[test]
    fn everything_but_loopback_http_is_matched_exactly() {
        let reg = uri("https://app.example.com/cb");
        assert!(!uri("https://app.example.com:8443/cb").matches_registered(&reg));
        let custom = uri("com.example.app://cb");
        assert!(!uri("com.example.app://cb:1").matches_registered(&custom));
        let https_local = uri("https://localhost/cb");
        assert!(!uri("https://localhost:8443/cb").matches_registered(&https_local), "https loopback keeps exact match");
    }

    #[test]
    fn registration_refuses_insecure_uris() {
        assert!(RedirectUri::parse_registration("http://app.example.com/cb").is_err());
        assert!(RedirectUri::parse_registration("https://a.example/cb#frag").is_err());
        assert!(RedirectUri::parse_registration("javascript:alert(1)").is_err());
        assert!(RedirectUri::parse_registration("/relative").is_err());
        assert!(RedirectUri::parse_registration("com.example.app:/oauth2redirect").is_ok());
        assert!(RedirectUri::parse_registration("http://127.0.0.1:8765/callback").is_ok());
        assert!(RedirectUri::parse_registration("http://[::1]/callback").is_ok());
    }

    /// Review finding 19g: the message and the README said 127.0.0.1 and [::1] only, and
    /// RFC 8252 §8.3 says NOT RECOMMENDED; `localhost` was accepted all the same.
    #[test]
    fn registration_refuses_http_localhost_and_points_to_127_0_0_1() {
        for bad in ["http://localhost/cb", "http://localhost:8765/callback", "http://LOCALHOST:1/cb"] {
            let e = RedirectUri::parse_registration(bad).unwrap_err();
            assert!(e.0.contains("localhost") && e.0.contains("http://127.0.0.1"), "{bad}: {e}");
        }
        // https to localhost is not the loopback exception, and stays allowed like any https URI.
        assert!(RedirectUri::parse_registration("https://localhost:8443/cb").is_ok());
    }

    #[test]
    fn scope_parsing() {
        let s = Scope::parse("openid profile  email openid").unwrap();
        assert_eq!(s.to_string(), "email openid profile");
        assert!(s.contains("openid"));
        assert!(Scope::parse("a\"b").is_err());
        let narrow = Scope::parse("openid").unwrap();
        assert!(narrow.is_subset(&s));
        assert!(!s.is_subset(&narrow));
        assert_eq!(s.missing_from(&narrow), "email profile");
    }

    #[test]
    fn state_is_kept_byte_for_byte() {
        let st = State::parse("a b/c?d=e&f%20").unwrap();
        assert_eq!(st.as_str(), "a b/c?d=e&f%20");
        assert!(State::parse("caf\u{e9}").is_err());
        assert!(State::parse(&"x".repeat(MAX_OPAQUE_LEN + 1)).is_err());
    }
}
