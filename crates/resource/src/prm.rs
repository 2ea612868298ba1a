//! OAuth 2.0 Protected Resource Metadata (RFC 9728): the document that tells a client which
//! authorization server issues tokens for this API, and the canonical resource identifier whose
//! tokens it accepts. MCP clients start here: they read the `resource_metadata` URL of a 401
//! challenge, or try the well-known URLs of §3.1, then ask the listed issuer for a token with
//! `resource=<canonical URI>` (RFC 8707).

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};

/// The well-known path suffix of RFC 9728 §3.
pub const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// RFC 9728 §2. Fields with no value are left out rather than sent as `null` or `[]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtectedResourceMetadata {
    /// The resource identifier, exactly as the API was configured with it (RFC 9728 §3.3: the
    /// client checks it against the URL it derived the metadata URL from).
    pub resource: String,
    /// The issuers whose tokens this API accepts, each exactly as configured (clients compare
    /// the issuer of the server metadata byte for byte, RFC 8414 §3.3).
    pub authorization_servers: Vec<String>,
    /// The scopes this API understands; MCP clients request these when a challenge names none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes_supported: Vec<String>,
    /// Only the Authorization header: tokens in URLs or bodies are refused (see [`crate::bearer_token`]).
    pub bearer_methods_supported: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_documentation: Option<String>,
    /// The JWS algorithms this API accepts in DPoP proofs (RFC 9728 §2), when it accepts DPoP.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dpop_signing_alg_values_supported: Vec<String>,
    /// Every token must be DPoP-bound (RFC 9728 §2); left out when false, its default.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dpop_bound_access_tokens_required: bool,
}

impl ProtectedResourceMetadata {
    /// Metadata for `resource`, protected by tokens of `issuer`, with the header as the one way to
    /// send them.
    pub fn new(resource: impl Into<String>, issuer: impl Into<String>) -> Self {
        Self {
            resource: resource.into(),
            authorization_servers: vec![issuer.into()],
            scopes_supported: Vec::new(),
            bearer_methods_supported: vec!["header".into()],
            resource_name: None,
            resource_documentation: None,
            dpop_signing_alg_values_supported: Vec::new(),
            dpop_bound_access_tokens_required: false,
        }
    }

    pub fn scopes_supported<I: IntoIterator<Item = S>, S: Into<String>>(mut self, scopes: I) -> Self {
        self.scopes_supported = scopes.into_iter().map(Into::into).collect();
        self
    }

    pub fn resource_name(mut self, name: impl Into<String>) -> Self {
        self.resource_name = Some(name.into());
        self
    }

    /// Serves this document at both well-known paths of [`well_known_paths`]: the path-inserted
    /// one (RFC 9728 §3.1) and the root one, which MCP clients try second. Merge it into your
    /// router before any authenticated route: the document is public (no token needed). CORS is
    /// open (`*`, no credentials) so browser-based MCP hosts can read it.
    pub fn router<S: Clone + Send + Sync + 'static>(self) -> Router<S> {
        let (inserted, root) = well_known_paths(&self.resource);
        let doc = Arc::new(self);
        let handler = move || {
            let doc = doc.clone();
            async move { metadata_response(&doc) }
        };
        let route = get(handler).options(preflight);
        let router = Router::new().route(&root, route.clone());
        if inserted == root { router } else { router.route(&inserted, route) }
    }
}

fn metadata_response(doc: &ProtectedResourceMetadata) -> Response {
    let mut res = axum::Json(doc).into_response();
    let h = res.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=300"));
    res
}

/// A CORS preflight: MCP SDKs send `mcp-protocol-version` with the metadata request.
async fn preflight() -> Response {
    let mut res = StatusCode::NO_CONTENT.into_response();
    let h = res.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, OPTIONS"));
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("mcp-protocol-version, content-type"));
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    res
}

/// The two paths at which clients look for the metadata of `resource`: the path-inserted form
/// (RFC 9728 §3.1: the well-known suffix goes between the host and the resource's path, a
/// terminating `/` removed) and the root form. Equal when the resource has no path.
pub fn well_known_paths(resource: &str) -> (String, String) {
    let path = resource_path(resource);
    (format!("{WELL_KNOWN}{path}"), WELL_KNOWN.to_owned())
}

/// The URL of the metadata document of `resource`, for the `resource_metadata` parameter of
/// challenges (RFC 9728 §5.1): same origin, path-inserted form.
pub fn metadata_url(resource: &str) -> String {
    let (scheme_host, _) = split_origin(resource);
    format!("{scheme_host}{}", well_known_paths(resource).0)
}

/// The path of `resource` as RFC 9728 §3.1 inserts it: "" for no path or a lone `/`.
fn resource_path(resource: &str) -> &str {
    let (_, path) = split_origin(resource);
    if path == "/" { "" } else { path }
}

/// `https://host:port` of `resource`: where clients send requests for it.
pub(crate) fn origin(resource: &str) -> &str {
    split_origin(resource).0
}

/// `https://host:port` and the rest (path, without query or fragment, which resources here
/// never have: the builder refuses them).
fn split_origin(resource: &str) -> (&str, &str) {
    let after_scheme = resource.find("://").map_or(0, |i| i + 3);
    let rest = &resource[after_scheme..];
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    match rest[..end].find('/') {
        Some(slash) => resource.split_at(after_scheme + slash),
        None => (&resource[..after_scheme + end], ""),
    }
}

/// The form a resource identifier is compared in: `https://h` and `https://h/` name one resource
/// (RFC 3986 §6.2.3: an empty path is equivalent to `/`; the MCP SDKs add the slash, other
/// clients do not). Nothing else is rewritten: `/mcp` and `/mcp/` stay two resources, as an
/// authorization server that issues `aud` exactly as requested (RFC 8707) treats them.
pub(crate) fn comparable(uri: &str) -> std::borrow::Cow<'_, str> {
    let (origin, path) = split_origin(uri);
    if path.is_empty() && origin.len() == uri.len() && uri.contains("://") {
        format!("{uri}/").into()
    } else {
        uri.into()
    }
}

/// Whether two resource identifiers name the same resource (see [`comparable`]).
pub(crate) fn same_resource(a: &str, b: &str) -> bool {
    comparable(a) == comparable(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_urls_follow_rfc9728_section_3_1() {
        // RFC 9728 §3.1's example: resource https://resource.example.com/resource_1.
        assert_eq!(
            metadata_url("https://resource.example.com/resource_1"),
            "https://resource.example.com/.well-known/oauth-protected-resource/resource_1"
        );
        assert_eq!(metadata_url("https://h.example"), "https://h.example/.well-known/oauth-protected-resource");
        assert_eq!(metadata_url("https://h.example/"), "https://h.example/.well-known/oauth-protected-resource");
        assert_eq!(
            metadata_url("http://127.0.0.1:8080/a/mcp"),
            "http://127.0.0.1:8080/.well-known/oauth-protected-resource/a/mcp"
        );
        assert_eq!(
            well_known_paths("https://h/mcp"),
            ("/.well-known/oauth-protected-resource/mcp".into(), WELL_KNOWN.into())
        );
    }

    #[test]
    fn an_empty_path_is_the_only_equivalence() {
        assert!(same_resource("https://h", "https://h/"));
        assert!(same_resource("https://h:8443", "https://h:8443/"));
        assert!(!same_resource("https://h/mcp", "https://h/mcp/"));
        assert!(!same_resource("https://h", "https://h.evil"));
        assert!(!same_resource("https://h/a", "https://h/b"));
        assert!(!same_resource("api", "api/"));
    }
}
