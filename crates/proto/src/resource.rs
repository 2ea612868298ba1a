//! RFC 8707 resource indicators: the URI of the protected resource (the API) a token is for.
//!
//! The URI becomes the access token's `aud`, so that a token an MCP client obtained for server A
//! is refused by server B (MCP authorization, "Token Audience Binding"). Two spellings of one
//! resource must be one audience: `https://h` and `https://h/` are the same URI (RFC 3986 §6.2.3,
//! an empty path is `/` for http and https), and clients disagree on which they send (the MCP
//! TypeScript SDK adds the slash, some hosts do not). So every resource is kept in the one form
//! the WHATWG URL serializer gives: scheme and host lowercased, default port dropped, empty path `/`.

use std::fmt;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::{ErrorCode, OAuthError};

/// Longest resource URI accepted.
pub const MAX_RESOURCE_LEN: usize = 512;

/// A canonical resource URI: absolute, `https` (or `http` on a loopback address, for APIs on the
/// same machine), no fragment (RFC 8707 §2: MUST NOT), no query (SHOULD NOT: a query would make
/// one API many audiences), no userinfo.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ResourceUri(String);

impl ResourceUri {
    /// Every refusal is `invalid_target` (RFC 8707 §2), with the reason.
    pub fn parse(s: &str) -> Result<Self, OAuthError> {
        let bad = |why: &str| OAuthError::new(ErrorCode::InvalidTarget, format!("resource {why}"));
        if s.len() > MAX_RESOURCE_LEN {
            return Err(bad(&format!("is longer than {MAX_RESOURCE_LEN} bytes")));
        }
        let url = Url::parse(s)
            .map_err(|_| bad("must be an absolute URI (RFC 8707 §2), such as https://api.example.com/mcp"))?;
        if url.fragment().is_some() || s.contains('#') {
            return Err(bad("must not contain a fragment (RFC 8707 §2)"));
        }
        if url.query().is_some() {
            return Err(bad("must not contain a query: name the API by its base URI (RFC 8707 §2)"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("must not contain user information"));
        }
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&url) => {}
            "http" => return Err(bad("must use https (http is accepted only for a loopback address)")),
            _ => return Err(bad("must be an https URI")),
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(bad("must name a host"));
        }
        Ok(Self(url.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_https(&self) -> bool {
        self.0.starts_with("https://")
    }

    /// Whether `other` (any spelling: an audience configured by hand, a `resource` parameter) names
    /// this resource.
    pub fn same_as(&self, other: &str) -> bool {
        other == self.0 || Self::parse(other).is_ok_and(|o| o == *self)
    }
}

/// `a` and `b` name the same audience: equal, or two spellings of one resource URI.
pub fn same_audience(a: &str, b: &str) -> bool {
    a == b || ResourceUri::parse(a).is_ok_and(|r| r.same_as(b))
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

impl fmt::Display for ResourceUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ResourceUri {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s).map_err(|e| e.description.into_owned())
    }
}

impl From<ResourceUri> for String {
    fn from(r: ResourceUri) -> String {
        r.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> String {
        ResourceUri::parse(s).unwrap().0
    }
    fn refused(s: &str) -> String {
        let e = ResourceUri::parse(s).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidTarget, "{s}");
        e.description.into_owned()
    }

    #[test]
    fn one_resource_one_spelling() {
        assert_eq!(ok("https://h.example"), "https://h.example/");
        assert_eq!(ok("https://h.example/"), "https://h.example/");
        assert_eq!(ok("HTTPS://H.Example:443/mcp"), "https://h.example/mcp");
        assert_eq!(ok("http://127.0.0.1:3000/mcp"), "http://127.0.0.1:3000/mcp");
        // A path is part of the identity: /mcp and /mcp/ are two resources, as the URIs differ.
        assert_ne!(ok("https://h.example/mcp"), ok("https://h.example/mcp/"));
        assert!(same_audience("https://h.example", "https://h.example/"));
        assert!(!same_audience("https://a.example/mcp", "https://b.example/mcp"));
        assert!(same_audience("api", "api"));
    }

    #[test]
    fn malformed_resources_are_invalid_target() {
        assert!(refused("/mcp").contains("absolute"));
        assert!(refused("mcp.example.com").contains("absolute"));
        assert!(refused("https://h.example/mcp#x").contains("fragment"));
        assert!(refused("https://h.example/mcp#").contains("fragment"));
        assert!(refused("https://h.example/mcp?tenant=1").contains("query"));
        assert!(refused("https://u:p@h.example/").contains("user"));
        assert!(refused("http://api.example/").contains("https"));
        assert!(refused("urn:example:api").contains("https"));
        assert!(refused(&format!("https://h.example/{}", "a".repeat(600))).contains("longer"));
    }
}
