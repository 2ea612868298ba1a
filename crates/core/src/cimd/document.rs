//! The pure half of Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document):
//! which `client_id` values are document URLs, what a fetched document must say, and how long it
//! may be cached. No I/O here; `super` fetches and caches.

use latchkey_proto::{ClientId, RedirectUri, Scope};
use serde_json::Value;
use url::Url;

use super::{CimdError, FetchError};
use crate::UnixTime;
use crate::store::{ClientKind, ClientOrigin, ClientRecord, GrantType, SigningAlg};

/// Bytes read from a document before giving up (the draft recommends 5 kilobytes; we read at most
/// 5 KiB = 5,120 bytes). A client's metadata fits easily; a larger answer is refused, never
/// truncated and parsed.
pub const MAX_DOCUMENT_BYTES: usize = 5 * 1024;
/// Cache lifetimes, in seconds: the document's own `Cache-Control: max-age` / `Expires`, held
/// between these bounds. The lower bound also applies to `no-store` and `no-cache`, so a document
/// cannot make us fetch it on every authorization request (a DoS amplifier and a tracking side
/// channel, draft "Privacy Considerations").
pub const MIN_CACHE_SECS: u64 = 60;
pub const MAX_CACHE_SECS: u64 = 24 * 3600;
/// When the response says nothing about caching.
pub const DEFAULT_CACHE_SECS: u64 = 3600;
/// The longest `client_name` kept; it is shown on the consent page, marked as unverified.
pub const MAX_NAME_CHARS: usize = 80;
/// More redirect URIs than any real client needs.
pub const MAX_REDIRECT_URIS: usize = 20;
/// What a client that registered no scope may ask for (plus its resources' scopes).
pub const DEFAULT_SCOPE: &str = "openid profile email offline_access";

/// A `client_id` that names a metadata document: the draft's "Client Identifier URL".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocumentUrl(Url);

impl DocumentUrl {
    /// Whether `client_id` is meant as a document URL at all (the rest are plain ids). Only the
    /// https scheme qualifies; the checks of [`DocumentUrl::parse`] then apply in full.
    pub fn is_candidate(client_id: &str) -> bool {
        client_id.get(..8).is_some_and(|p| p.eq_ignore_ascii_case("https://"))
    }

    /// Draft §2: https, a path, no userinfo, no dot segments, no fragment; we also refuse a query
    /// (the draft says SHOULD NOT). The URL must be written in its normal form, because the
    /// draft compares it with the document's `client_id` as a plain string: `Url` would silently
    /// rewrite `HTTPS://A/./x` or `https://a:443/x`, and a different string is a different client.
    pub fn parse(client_id: &str) -> Result<Self, CimdError> {
        let bad = CimdError::InvalidUrl;
        let url = Url::parse(client_id).map_err(|_| bad("it is not a valid URL"))?;
        if url.scheme() != "https" || !client_id.starts_with("https://") {
            return Err(bad("it must use the https scheme, written in lower case"));
        }
        if !url.username().is_empty()
            || url.password().is_some()
            || client_id[8..].split('/').next().is_some_and(|a| a.contains('@'))
        {
            return Err(bad("it must not contain user information"));
        }
        if url.fragment().is_some() || client_id.contains('#') {
            return Err(bad("it must not contain a fragment"));
        }
        if url.query().is_some() || client_id.contains('?') {
            return Err(bad("it must not contain a query"));
        }
        let after_host = &client_id[8..];
        let path = after_host.find('/').map(|i| &after_host[i..]).unwrap_or("");
        if path.is_empty() {
            return Err(bad("it must contain a path, such as https://app.example/oauth-client.json"));
        }
        if path.split('/').any(|seg| {
            let seg = seg.to_ascii_lowercase();
            matches!(seg.as_str(), "." | ".." | "%2e" | "%2e%2e" | ".%2e" | "%2e.")
        }) {
            return Err(bad("it must not contain . or .. path segments"));
        }
        if url.as_str() != client_id {
            return Err(bad(
                "it is not in normal form (lower-case scheme and host, no default port, percent-encoding only where needed): the client_id is compared as a plain string",
            ));
        }
        if client_id.len() > 255 {
            return Err(bad("it is longer than 255 characters"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(bad("it has no host"));
        }
        Ok(Self(url))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn url(&self) -> &Url {
        &self.0
    }

    /// The host as it appears in the URL (a name, or an IP literal, IPv6 in brackets).
    pub fn host(&self) -> &str {
        self.0.host_str().unwrap_or_default()
    }
}

/// What the response said about caching (RFC 9111), as the fetcher read it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CacheHints {
    /// `Cache-Control: max-age`.
    pub max_age: Option<u64>,
    /// `no-store` or `no-cache`.
    pub no_store: bool,
    /// `Expires`, as Unix time.
    pub expires: Option<UnixTime>,
}

impl CacheHints {
    /// Reads `Cache-Control` (its directives are case-insensitive; the last `max-age` wins) and
    /// an already parsed `Expires`.
    pub fn from_headers(cache_control: Option<&str>, expires: Option<UnixTime>) -> Self {
        let mut h = Self { expires, ..Self::default() };
        for d in cache_control.unwrap_or_default().split(',') {
            let d = d.trim().to_ascii_lowercase();
            match d.split_once('=') {
                Some(("max-age", v)) => h.max_age = v.trim_matches('"').parse().ok().or(Some(0)),
                None if d == "no-store" || d == "no-cache" => h.no_store = true,
                _ => {}
            }
        }
        h
    }

    /// Seconds to cache a document fetched at `now`: `max-age` wins over `Expires` (RFC 9111
    /// §5.3), both held within [`MIN_CACHE_SECS`, `MAX_CACHE_SECS`].
    pub fn lifetime(&self, now: UnixTime) -> u64 {
        let wanted = if self.no_store {
            0
        } else if let Some(a) = self.max_age {
            a
        } else if let Some(e) = self.expires {
            u64::try_from(e.saturating_sub(now)).unwrap_or(0)
        } else {
            DEFAULT_CACHE_SECS
        };
        wanted.clamp(MIN_CACHE_SECS, MAX_CACHE_SECS)
    }
}

fn shorten(s: &str, max: usize) -> String {
    let s: String = s.chars().filter(|c| !c.is_control()).collect();
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

/// Token endpoint authentication methods built on a shared secret: impossible for a client
/// nobody registered (draft "Credential and Key Material Restrictions").
const SHARED_SECRET_METHODS: &[&str] = &["client_secret_basic", "client_secret_post", "client_secret_jwt"];

/// Checks a fetched document against the URL it came from and turns it into a public client.
/// Pure; `fetched_at` becomes the record's `created_at`.
pub fn client_from_document(url: &DocumentUrl, body: &[u8], fetched_at: UnixTime) -> Result<ClientRecord, CimdError> {
    if body.len() > MAX_DOCUMENT_BYTES {
        return Err(CimdError::Fetch(FetchError::TooLarge));
    }
    let doc: Value = serde_json::from_slice(body).map_err(|e| CimdError::NotJson(shorten(&e.to_string(), 120)))?;
    let Value::Object(doc) = doc else {
        return Err(CimdError::NotJson("the document is not a JSON object".into()));
    };
    let invalid = |s: String| Err(CimdError::InvalidMetadata(s));
    match doc.get("client_id") {
        Some(Value::String(id)) if id == url.as_str() => {}
        Some(Value::String(id)) => return Err(CimdError::ClientIdMismatch(shorten(id, 120))),
        _ => return Err(CimdError::ClientIdMismatch("(missing)".into())),
    }
    if doc.contains_key("client_secret") || doc.contains_key("client_secret_expires_at") {
        return Err(CimdError::SecretInDocument);
    }
    pick_auth_method(&doc)?;

    let Some(Value::Array(uris)) = doc.get("redirect_uris") else {
        return invalid("redirect_uris is missing: the document must list the client's redirect URIs".into());
    };
    if uris.is_empty() || uris.len() > MAX_REDIRECT_URIS {
        return invalid(format!("redirect_uris must list 1 to {MAX_REDIRECT_URIS} redirect URIs"));
    }
    let redirect_uris = uri_list(uris, "redirect_uris")?;
    let post_logout_redirect_uris = match doc.get("post_logout_redirect_uris") {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(a)) if a.len() <= MAX_REDIRECT_URIS => uri_list(a, "post_logout_redirect_uris")?,
        Some(_) => {
            return invalid(format!("post_logout_redirect_uris must be an array of at most {MAX_REDIRECT_URIS} URIs"));
        }
    };

    // RFC 7591 §2: grant_types defaults to authorization_code. A public client may use the code
    // and refresh grants; anything else listed (client_credentials, jwt-bearer, device_code...)
    // is dropped rather than refused, since some hosts list grants they never use.
    let grant_types = match doc.get("grant_types") {
        None | Some(Value::Null) => vec![GrantType::AuthorizationCode],
        Some(Value::Array(a)) => {
            let mut g: Vec<GrantType> = a
                .iter()
                .filter_map(Value::as_str)
                .filter_map(GrantType::parse)
                .filter(|g| matches!(g, GrantType::AuthorizationCode | GrantType::RefreshToken))
                .collect();
            g.dedup();
            if !g.contains(&GrantType::AuthorizationCode) {
                return invalid(
                    "grant_types does not include authorization_code, the only flow a metadata-document client can start here".into(),
                );
            }
            g
        }
        Some(_) => return invalid("grant_types must be an array of strings".into()),
    };
    if let Some(rt) = doc.get("response_types") {
        let ok = rt.as_array().is_some_and(|a| a.iter().any(|v| v.as_str() == Some("code")));
        if !ok {
            return invalid("response_types must include code".into());
        }
    }
    let default_scope =
        || Scope::parse(DEFAULT_SCOPE).map_err(|e| CimdError::InvalidMetadata(e.description.into_owned()));
    let allowed_scope = match doc.get("scope") {
        None | Some(Value::Null) => default_scope()?,
        Some(Value::String(s)) if s.trim().is_empty() => default_scope()?,
        Some(Value::String(s)) => Scope::parse(s)
            .map_err(|e| CimdError::InvalidMetadata(format!("scope is not a valid scope list: {}", e.description)))?,
        Some(_) => return invalid("scope must be a string of space-separated scope tokens".into()),
    };
    let id_token_signed_response_alg = match doc.get("id_token_signed_response_alg") {
        None | Some(Value::Null) => SigningAlg::default(),
        Some(Value::String(a)) => SigningAlg::parse(a).ok_or_else(|| {
            CimdError::InvalidMetadata(format!(
                "id_token_signed_response_alg {:?} is not supported: use RS256, ES256 or EdDSA",
                shorten(a, 20)
            ))
        })?,
        Some(_) => return invalid("id_token_signed_response_alg must be a string".into()),
    };
    let name = match doc.get("client_name").and_then(Value::as_str).map(str::trim) {
        Some(n) if !n.is_empty() => shorten(n, MAX_NAME_CHARS),
        _ => url.host().to_owned(),
    };
    // RFC 9449 §5.2: a client may ask that its tokens be DPoP-bound only.
    let dpop_bound_access_tokens = match doc.get("dpop_bound_access_tokens") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return invalid("dpop_bound_access_tokens must be true or false".into()),
    };
    let client_id =
        ClientId::parse(url.as_str()).map_err(|_| CimdError::InvalidUrl("it is longer than 255 characters"))?;
    Ok(ClientRecord {
        client_id,
        name,
        kind: ClientKind::Public,
        redirect_uris,
        grant_types,
        allowed_scope,
        first_party: false,
        created_at: fetched_at,
        id_token_signed_response_alg,
        post_logout_redirect_uris,
        audiences: vec![],
        origin: ClientOrigin::MetadataDocument,
        backchannel_logout: None,
        protection: crate::store::ClientProtection { dpop_bound_access_tokens, ..Default::default() },
        second_factor: Default::default(),
    })
}

fn uri_list(uris: &[Value], field: &str) -> Result<Vec<RedirectUri>, CimdError> {
    uris.iter()
        .map(|u| {
            let s = u.as_str().ok_or_else(|| CimdError::InvalidMetadata(format!("{field} must hold strings")))?;
            // The rules of self-registered clients (RFC 8252): loopback including the name
            // `localhost` (Claude Code's document lists http://localhost/callback), https, or a
            // reverse-domain private-use scheme.
            latchkey_proto::registration::self_registered_redirect(s).map_err(|e| {
                CimdError::InvalidMetadata(format!("{field}: {:?} is refused: {}", shorten(s, 100), e.description))
            })
        })
        .collect()
}

/// The one method a metadata-document client may use here: `none` (a public client; PKCE binds
/// its codes). `token_endpoint_auth_method` wins; without it, the list some hosts send in
/// `token_endpoint_auth_methods_supported` (ChatGPT: `["none", "private_key_jwt"]`) is read,
/// and `none` chosen if listed. Nothing said at all also means `none`: a document cannot carry
/// the secret RFC 7591's default (`client_secret_basic`) would need.
fn pick_auth_method(doc: &serde_json::Map<String, Value>) -> Result<(), CimdError> {
    let methods: Vec<&str> =
        match (doc.get("token_endpoint_auth_method"), doc.get("token_endpoint_auth_methods_supported")) {
            (Some(Value::String(m)), _) => vec![m.as_str()],
            (Some(_), _) => {
                return Err(CimdError::InvalidMetadata("token_endpoint_auth_method must be a string".into()));
            }
            (None, Some(Value::Array(a))) => a.iter().filter_map(Value::as_str).collect(),
            (None, Some(_)) => {
                return Err(CimdError::InvalidMetadata(
                    "token_endpoint_auth_methods_supported must be an array".into(),
                ));
            }
            (None, None) => return Ok(()),
        };
    if let Some(m) = methods.iter().find(|m| SHARED_SECRET_METHODS.contains(m)) {
        return Err(CimdError::SharedSecretMethod((*m).to_owned()));
    }
    if methods.contains(&"none") {
        return Ok(());
    }
    Err(CimdError::UnsupportedAuthMethod(methods.first().map(|m| shorten(m, 40)).unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const URL: &str = "https://app.example/oauth/client.json";

    fn url() -> DocumentUrl {
        DocumentUrl::parse(URL).unwrap()
    }

    fn doc(extra: Value) -> Vec<u8> {
        let mut d = json!({
            "client_id": URL,
            "client_name": "Example App",
            "redirect_uris": ["http://127.0.0.1/callback", "https://app.example/cb"],
            "token_endpoint_auth_method": "none",
        });
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                d.as_object_mut().unwrap().remove(k);
            } else {
                d[k] = v.clone();
            }
        }
        serde_json::to_vec(&d).unwrap()
    }

    fn check(extra: Value) -> Result<ClientRecord, CimdError> {
        client_from_document(&url(), &doc(extra), 1000)
    }

    #[test]
    fn a_good_document_is_an_unvetted_public_client() {
        let c = check(json!({})).unwrap();
        assert_eq!(c.client_id.as_str(), URL);
        assert_eq!(c.name, "Example App");
        assert!(c.is_public());
        assert!(!c.first_party);
        assert!(!c.vetted());
        assert_eq!(c.origin, ClientOrigin::MetadataDocument);
        assert_eq!(c.grant_types, vec![GrantType::AuthorizationCode]);
        assert_eq!(c.allowed_scope, Scope::parse(DEFAULT_SCOPE).unwrap());
        assert_eq!(c.redirect_uris.len(), 2);
        assert_eq!(c.created_at, 1000);
    }

    #[test]
    fn url_rules_of_the_draft() {
        for ok in [URL, "https://app.example/c", "https://app.example:8443/c.json", "https://127.0.0.1:9/x"] {
            assert!(DocumentUrl::parse(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("http://app.example/c", "https"),
            ("HTTPS://app.example/c", "https"),
            ("https://app.example", "path"),
            ("https://app.example/", ""),
            ("https://user:pw@app.example/c", "user information"),
            ("https://user@app.example/c", "user information"),
            ("https://app.example/c#frag", "fragment"),
            ("https://app.example/c?x=1", "query"),
            ("https://app.example/a/../c", ". or .."),
            ("https://app.example/./c", ". or .."),
            ("https://app.example/a/%2e%2e/c", ". or .."),
            ("https://APP.example/c", "normal form"),
            ("https://app.example:443/c", "normal form"),
            ("https://app.example/a b", "normal form"),
        ] {
            match DocumentUrl::parse(bad) {
                Err(CimdError::InvalidUrl(d)) => assert!(d.contains(why), "{bad}: {d}"),
                // `https://app.example/` has a path ("/"): allowed, if not recommended.
                Ok(_) if why.is_empty() => {}
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert!(DocumentUrl::is_candidate("https://x/y"));
        assert!(!DocumentUrl::is_candidate("spa"));
        assert!(!DocumentUrl::is_candidate("http://x/y"));
    }

    #[test]
    fn client_id_must_equal_the_url_exactly() {
        assert!(matches!(
            check(json!({"client_id": "https://evil.example/oauth/client.json"})),
            Err(CimdError::ClientIdMismatch(_))
        ));
        assert!(matches!(
            check(json!({"client_id": "https://app.example:443/oauth/client.json"})),
            Err(CimdError::ClientIdMismatch(_))
        ));
        assert!(matches!(check(json!({"client_id": null})), Err(CimdError::ClientIdMismatch(_))));
    }

    #[test]
    fn secrets_and_shared_secret_methods_are_refused() {
        assert_eq!(check(json!({"client_secret": "s"})).unwrap_err(), CimdError::SecretInDocument);
        assert_eq!(check(json!({"client_secret_expires_at": 0})).unwrap_err(), CimdError::SecretInDocument);
        for m in SHARED_SECRET_METHODS {
            assert_eq!(
                check(json!({"token_endpoint_auth_method": m})).unwrap_err(),
                CimdError::SharedSecretMethod((*m).into())
            );
            assert_eq!(
                check(
                    json!({"token_endpoint_auth_method": null, "token_endpoint_auth_methods_supported": ["none", m]})
                )
                .unwrap_err(),
                CimdError::SharedSecretMethod((*m).into())
            );
        }
    }

    #[test]
    fn auth_method_none_is_picked_from_the_supported_list() {
        // ChatGPT's form.
        let c = check(
            json!({"token_endpoint_auth_method": null, "token_endpoint_auth_methods_supported": ["none", "private_key_jwt"]}),
        );
        assert!(c.unwrap().is_public());
        assert!(check(json!({"token_endpoint_auth_method": null})).is_ok(), "nothing said means none");
        assert_eq!(
            check(json!({"token_endpoint_auth_method": "private_key_jwt"})).unwrap_err(),
            CimdError::UnsupportedAuthMethod("private_key_jwt".into())
        );
        assert_eq!(
            check(json!({"token_endpoint_auth_method": null, "token_endpoint_auth_methods_supported": ["private_key_jwt"]})).unwrap_err(),
            CimdError::UnsupportedAuthMethod("private_key_jwt".into())
        );
    }

    #[test]
    fn redirect_uris_are_required_and_checked() {
        assert!(
            matches!(check(json!({"redirect_uris": null})), Err(CimdError::InvalidMetadata(d)) if d.contains("redirect_uris is missing"))
        );
        assert!(matches!(check(json!({"redirect_uris": []})), Err(CimdError::InvalidMetadata(_))));
        for bad in
            ["http://app.example/cb", "javascript:alert(1)", "myapp:/cb", "https://app.example/cb#x", "relative/cb"]
        {
            assert!(
                matches!(check(json!({"redirect_uris": [bad]})), Err(CimdError::InvalidMetadata(d)) if d.contains("redirect_uris")),
                "{bad}"
            );
        }
        let many: Vec<String> = (0..21).map(|i| format!("https://app.example/cb{i}")).collect();
        assert!(check(json!({"redirect_uris": many})).is_err());
        // Loopback (the name localhost too: Claude Code's document), https and reverse-domain
        // private-use schemes are fine.
        let uris = ["http://[::1]/cb", "http://localhost/callback", "https://a.example/cb", "com.example.app:/oauth"];
        assert!(check(json!({ "redirect_uris": uris })).is_ok());
    }

    #[test]
    fn unusable_grant_types_are_dropped_not_refused() {
        let c = check(json!({"grant_types": ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:jwt-bearer", "client_credentials"]})).unwrap();
        assert_eq!(c.grant_types, vec![GrantType::AuthorizationCode, GrantType::RefreshToken]);
        assert!(check(json!({"grant_types": ["client_credentials"]})).is_err());
        assert!(check(json!({"response_types": ["token"]})).is_err());
    }

    #[test]
    fn dpop_bound_access_tokens_is_honoured() {
        assert!(!check(json!({})).unwrap().protection.dpop_bound_access_tokens);
        assert!(check(json!({ "dpop_bound_access_tokens": true })).unwrap().protection.dpop_bound_access_tokens);
        assert!(matches!(
            check(json!({ "dpop_bound_access_tokens": "yes" })),
            Err(CimdError::InvalidMetadata(m)) if m.contains("dpop_bound_access_tokens")
        ));
    }

    #[test]
    fn scope_name_and_size() {
        assert_eq!(
            check(json!({"scope": "openid mcp:tools"})).unwrap().allowed_scope,
            Scope::parse("mcp:tools openid").unwrap()
        );
        assert_eq!(check(json!({"scope": ""})).unwrap().allowed_scope, Scope::parse(DEFAULT_SCOPE).unwrap());
        assert!(check(json!({"scope": "bad\"scope"})).is_err());
        let long = "N".repeat(500);
        assert_eq!(check(json!({"client_name": long})).unwrap().name.chars().count(), MAX_NAME_CHARS + 1);
        assert_eq!(check(json!({"client_name": null})).unwrap().name, "app.example");
        assert_eq!(check(json!({"client_name": "a\u{7}b"})).unwrap().name, "ab");
        let big = doc(json!({"padding": "x".repeat(MAX_DOCUMENT_BYTES)}));
        assert_eq!(client_from_document(&url(), &big, 0).unwrap_err(), CimdError::Fetch(FetchError::TooLarge));
        assert!(matches!(client_from_document(&url(), b"<html>", 0), Err(CimdError::NotJson(_))));
        assert!(matches!(client_from_document(&url(), b"[1]", 0), Err(CimdError::NotJson(_))));
    }

    #[test]
    fn cache_lifetimes_stay_within_bounds() {
        let now = 10_000;
        let h = |cc: Option<&str>, exp: Option<i64>| CacheHints::from_headers(cc, exp).lifetime(now);
        assert_eq!(h(None, None), DEFAULT_CACHE_SECS);
        assert_eq!(h(Some("public, max-age=600"), None), 600);
        assert_eq!(h(Some("Max-Age=600"), None), 600);
        assert_eq!(h(Some("max-age=5"), None), MIN_CACHE_SECS);
        assert_eq!(h(Some("max-age=0"), None), MIN_CACHE_SECS);
        assert_eq!(h(Some("no-store"), None), MIN_CACHE_SECS);
        assert_eq!(h(Some("no-cache, max-age=900"), None), MIN_CACHE_SECS);
        assert_eq!(h(Some("max-age=99999999"), None), MAX_CACHE_SECS);
        assert_eq!(h(Some("max-age=garbage"), None), MIN_CACHE_SECS);
        assert_eq!(h(None, Some(now + 1200)), 1200);
        assert_eq!(h(None, Some(now - 5)), MIN_CACHE_SECS);
        assert_eq!(h(Some("max-age=300"), Some(now + 5000)), 300, "max-age wins over Expires");
    }
}
