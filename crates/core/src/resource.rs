//! RFC 8707 resource indicators: which API a grant, and each access token, is for.
//!
//! An MCP client names the server it wants a token for (`resource`, on the authorization and the
//! token request); the token's `aud` is exactly that resource, so a token obtained for one API is
//! refused by every other (MCP authorization, "Token Audience Binding"; RFC 9700 §2.3). Without a
//! resource every token would carry the deployment's one audience and be valid everywhere.
//!
//! The resources a deployment protects are registered (`latchkey resource add`), each with the
//! scopes it understands. A resource that is not registered is refused with `invalid_target`,
//! unless the deployment sets `allow_unregistered_resources` (then any https URI is accepted, with
//! no scopes of its own): a typo'd or attacker-chosen audience should fail loudly, not mint tokens
//! no API checks for.
//!
//! One resource per request and per grant: the grant remembers it, a refresh may name it again
//! or leave it out, and can never switch to another (widening). A request without `resource`
//! (some hosts omit it) gets the client's default audience or the deployment's.

use async_trait::async_trait;
use latchkey_proto::{ErrorCode, OAuthError, ResourceUri, Scope};
use serde::{Deserialize, Serialize};

use crate::UnixTime;
use crate::store::{ClientRecord, StoreResult};

/// A protected resource (an API, an MCP server) registered with this server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceRecord {
    /// The canonical URI: the `aud` of its tokens.
    pub uri: ResourceUri,
    /// Shown on the consent page.
    pub name: String,
    /// The scopes this resource understands. Clients nobody vetted may request these when they
    /// target it (see [`allowed_scope`]).
    pub scopes: Scope,
    pub created_at: UnixTime,
}

/// Storage of the resource registry.
#[async_trait]
pub trait ResourceStore: Send + Sync {
    /// Fails with `AlreadyExists` if the URI is registered.
    async fn insert_resource(&self, r: &ResourceRecord) -> StoreResult<()>;
    async fn resource(&self, uri: &ResourceUri) -> StoreResult<Option<ResourceRecord>>;
    /// Ordered by URI.
    async fn resources(&self) -> StoreResult<Vec<ResourceRecord>>;
    async fn remove_resource(&self, uri: &ResourceUri) -> StoreResult<bool>;
}

/// What a request targets, once decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The resource named, `None` when the request named none (the default audience applies).
    pub resource: Option<ResourceUri>,
    /// The scopes the resource understands (empty when none was named or it is not registered).
    pub scopes: Scope,
}

/// Whether `client` may obtain tokens for `requested`. `registered` is the registry's record of
/// it. Pure.
pub fn decide_target(
    client: &ClientRecord,
    requested: Option<&ResourceUri>,
    registered: Option<&ResourceRecord>,
    allow_unregistered: bool,
) -> Result<Target, OAuthError> {
    let Some(uri) = requested else {
        return Ok(Target { resource: None, scopes: Scope::default() });
    };
    if let Some(r) = registered.filter(|r| r.uri == *uri) {
        return Ok(Target { resource: Some(uri.clone()), scopes: r.scopes.clone() });
    }
    // An administrator listed this audience for this client (`client add --audience`).
    let listed = client.vetted() && client.audiences.iter().any(|a| uri.same_as(a));
    if listed || (allow_unregistered && uri.is_https()) {
        return Ok(Target { resource: Some(uri.clone()), scopes: Scope::default() });
    }
    Err(OAuthError::new(
        ErrorCode::InvalidTarget,
        format!("resource {uri} is not a resource registered with this server (`latchkey resource add`)"),
    ))
}

/// The scopes `client` may request for `target`. An administrator's client gets what it was
/// registered for. A client nobody vetted (self-registered, metadata document) gets the scopes
/// it registered plus those of the resource it targets: the resource says what it understands,
/// and the user, shown the consent page every time, decides.
pub fn allowed_scope(client: &ClientRecord, target: &Target) -> Scope {
    if client.vetted() { client.allowed_scope.clone() } else { client.allowed_scope.union(&target.scopes) }
}

/// The audience of tokens for a grant of `client` that named no resource.
pub fn default_audience<'a>(client: &'a ClientRecord, deployment: &'a str) -> &'a str {
    client.audiences.first().map(String::as_str).unwrap_or(deployment)
}

/// RFC 8707 §2.2 at the token endpoint: the resource of an access token issued under a grant for
/// `granted`. Naming the granted resource again, or nothing, is fine; naming another is widening.
pub fn narrow(granted: Option<&ResourceUri>, requested: Option<&ResourceUri>) -> Result<(), OAuthError> {
    match (granted, requested) {
        (_, None) => Ok(()),
        (Some(g), Some(r)) if g == r => Ok(()),
        (Some(g), Some(r)) => Err(OAuthError::new(
            ErrorCode::InvalidTarget,
            format!("this grant is for resource {g}; a token for {r} needs its own authorization"),
        )),
        (None, Some(r)) => Err(OAuthError::new(
            ErrorCode::InvalidTarget,
            format!("this grant named no resource; a token for {r} needs an authorization request naming it"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ClientKind, ClientOrigin, GrantType};
    use latchkey_proto::ClientId;

    fn client(origin: ClientOrigin) -> ClientRecord {
        ClientRecord {
            client_id: ClientId::parse("c").unwrap(),
            name: "c".into(),
            kind: ClientKind::Public,
            redirect_uris: vec![],
            grant_types: vec![GrantType::AuthorizationCode],
            allowed_scope: Scope::parse("openid profile").unwrap(),
            first_party: false,
            created_at: 0,
            id_token_signed_response_alg: Default::default(),
            post_logout_redirect_uris: vec![],
            audiences: vec!["https://listed.example".into()],
            origin,
            backchannel_logout: None,
            protection: Default::default(),
            second_factor: Default::default(),
        }
    }
    fn uri(s: &str) -> ResourceUri {
        ResourceUri::parse(s).unwrap()
    }
    fn registered(s: &str) -> ResourceRecord {
        ResourceRecord { uri: uri(s), name: "A".into(), scopes: Scope::parse("mcp:tools").unwrap(), created_at: 0 }
    }

    #[test]
    fn only_registered_or_listed_resources_are_targets() {
        let admin = client(ClientOrigin::Admin);
        let a = registered("https://a.example/mcp");
        let t = decide_target(&admin, Some(&uri("https://a.example/mcp")), Some(&a), false).unwrap();
        assert_eq!(t.resource, Some(uri("https://a.example/mcp")));
        assert_eq!(t.scopes.to_string(), "mcp:tools");
        // Unregistered: refused, unless the deployment accepts any https resource.
        let e = decide_target(&admin, Some(&uri("https://b.example/mcp")), None, false).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidTarget);
        assert!(e.description.contains("https://b.example/mcp"));
        assert!(decide_target(&admin, Some(&uri("https://b.example/mcp")), None, true).is_ok());
        assert!(decide_target(&admin, Some(&uri("http://127.0.0.1:9/mcp")), None, true).is_err());
        // A record for another URI does not vouch for this one.
        assert!(decide_target(&admin, Some(&uri("https://b.example/mcp")), Some(&a), false).is_err());
        // An administrator's audience list counts for its own clients only.
        assert!(decide_target(&admin, Some(&uri("https://listed.example/")), None, false).is_ok());
        let dcr = client(ClientOrigin::Registered);
        assert!(decide_target(&dcr, Some(&uri("https://listed.example/")), None, false).is_err());
        assert_eq!(decide_target(&dcr, None, None, false).unwrap().resource, None);
    }

    #[test]
    fn unvetted_clients_may_ask_for_the_scopes_of_their_target_only() {
        let a = registered("https://a.example/mcp");
        let t = decide_target(&client(ClientOrigin::Admin), Some(&a.uri), Some(&a), false).unwrap();
        assert_eq!(allowed_scope(&client(ClientOrigin::Admin), &t).to_string(), "openid profile");
        assert_eq!(allowed_scope(&client(ClientOrigin::Registered), &t).to_string(), "mcp:tools openid profile");
        assert_eq!(allowed_scope(&client(ClientOrigin::MetadataDocument), &t).to_string(), "mcp:tools openid profile");
        let none = decide_target(&client(ClientOrigin::Registered), None, None, false).unwrap();
        assert_eq!(allowed_scope(&client(ClientOrigin::Registered), &none).to_string(), "openid profile");
    }

    #[test]
    fn a_refresh_may_narrow_never_widen() {
        let a = uri("https://a.example/mcp");
        let b = uri("https://b.example/mcp");
        assert!(narrow(Some(&a), None).is_ok());
        assert!(narrow(Some(&a), Some(&uri("https://a.example/mcp"))).is_ok());
        assert_eq!(narrow(Some(&a), Some(&b)).unwrap_err().code, ErrorCode::InvalidTarget);
        assert_eq!(narrow(None, Some(&b)).unwrap_err().code, ErrorCode::InvalidTarget);
        assert!(narrow(None, None).is_ok());
    }
}
