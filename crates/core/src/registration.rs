//! Dynamic Client Registration (RFC 7591) and its management protocol (RFC 7592).
//!
//! [`decide`] is the one decision: validated metadata and `now` in, the client to store out. The
//! [`Provider`] methods add the policy (open, initial access token, off), the store's atomic
//! insert (throttle ceiling and idempotent public registrations in one step) and the audit log.
//!
//! Nobody vetted a self-registered client: it is `ClientOrigin::Registered`, never first-party,
//! and the consent page marks it unverified and shows where its redirect goes.

use std::net::IpAddr;

use latchkey_proto::registration::{AuthMethod, ClientMetadata, RegistrationResponse};
use latchkey_proto::secret::{RegistrationAccessToken, random_token};
use latchkey_proto::{ClientId, ClientSecret, ErrorCode, OAuthError, Scope, TokenHash};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::UnixTime;
use crate::audit;
use crate::error::Error;
use crate::provider::Provider;
use crate::store::{ClientKind, ClientOrigin, ClientRecord, GrantType, Registered, RegistrationRecord, SigningAlg};
use crate::throttle;

/// Who may register (config `registration`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum RegistrationPolicy {
    /// Anyone (RFC 7591 §3 "open registration"): what MCP hosts need, since they arrive unannounced.
    #[default]
    Open,
    /// Only with this initial access token (RFC 7591 §3), held as its hash.
    Token(TokenHash),
    /// No registration endpoint at all.
    Off,
}

/// The scopes a self-registered client that named none may ask for (the common brief: the standard
/// OpenID Connect ones; resource scopes are added per request by the resource rule).
pub const DEFAULT_SCOPE: &str = "openid profile email offline_access";

/// What the consent page shows for a client nobody vetted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unverified {
    /// The host the browser will be sent to with the code (the MCP specification asks for it).
    pub redirect_host: String,
    /// A metadata-document client: the host of its `client_id` URL, which vouches for it.
    pub client_id_host: Option<String>,
    /// The redirect goes to a loopback address: whatever program listens on this device gets the
    /// code, so the page warns that an app on this computer is asking.
    pub loopback: bool,
}

/// `None` for a vetted (administrator-registered) client.
pub fn unverified(client: &ClientRecord, redirect_uri: &latchkey_proto::RedirectUri) -> Option<Unverified> {
    if client.vetted() {
        return None;
    }
    let url = url::Url::parse(redirect_uri.as_str()).ok();
    let redirect_host = match &url {
        Some(u) => match u.host_str() {
            Some(h) => h.to_owned(),
            // A private-use scheme has no host: the scheme names the app.
            None => format!("{}:", u.scheme()),
        },
        None => redirect_uri.as_str().to_owned(),
    };
    let loopback = url.as_ref().is_some_and(|u| {
        u.scheme() == "http"
            && match u.host() {
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                Some(url::Host::Domain(d)) => d == "localhost",
                None => false,
            }
    });
    let client_id_host = match client.origin {
        ClientOrigin::MetadataDocument => {
            url::Url::parse(client.client_id.as_str()).ok().and_then(|u| u.host_str().map(str::to_owned))
        }
        _ => None,
    };
    Some(Unverified { redirect_host, client_id_host, loopback })
}

/// A registration decided, not yet stored.
#[derive(Debug)]
pub struct NewRegistration {
    pub client: ClientRecord,
    pub record: RegistrationRecord,
    /// A confidential client's secret: shown once, stored only as its hash.
    pub secret: Option<ClientSecret>,
    pub token: RegistrationAccessToken,
}

/// The fingerprint of a public client's metadata: identical registrations (after the
/// normalization of [`ClientMetadata::parse`]: sorted, de-duplicated lists) share one.
pub fn fingerprint(meta: &ClientMetadata) -> String {
    // Serialising a struct of strings and lists cannot fail.
    let bytes = serde_json::to_vec(meta).unwrap_or_default();
    Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// What a registration is allowed to become. Pure: metadata and `now` in, records out.
pub fn decide(meta: ClientMetadata, now: UnixTime) -> Result<NewRegistration, OAuthError> {
    let (kind, secret) = kind_for(&meta)?;
    let client_id = ClientId::parse(&format!("dcr_{}", random_token()))?;
    let token = RegistrationAccessToken::generate();
    let client = client_record(client_id.clone(), &meta, kind, now)?;
    let record = RegistrationRecord {
        client_id,
        access_hash: token.hash(),
        fingerprint: meta.is_public().then(|| fingerprint(&meta)),
        shared: false,
        metadata: meta,
        created_at: now,
    };
    Ok(NewRegistration { client, record, secret, token })
}

fn kind_for(meta: &ClientMetadata) -> Result<(ClientKind, Option<ClientSecret>), OAuthError> {
    if meta.is_public() {
        // RFC 6749 §4.4: the client credentials grant is for clients that can authenticate.
        if meta.grant_types.iter().any(|g| g == "client_credentials") {
            return Err(OAuthError::invalid_client_metadata(
                "grant type client_credentials needs a confidential client (token_endpoint_auth_method client_secret_basic or client_secret_post)",
            ));
        }
        return Ok((ClientKind::Public, None));
    }
    // RFC 7523 §2.2: the client proves itself with its own key; no secret is made.
    if let Some(keys) = registered_keys(meta) {
        return Ok((ClientKind::PrivateKeyJwt { keys }, None));
    }
    let secret = ClientSecret::generate();
    let secret_hash = secret.hash().as_str().to_owned();
    Ok((ClientKind::Confidential { secret_hash }, Some(secret)))
}

/// A `private_key_jwt` registration's keys (the metadata parser made sure there is exactly one
/// of `jwks` and `jwks_uri` with that method, and none with the others).
fn registered_keys(meta: &ClientMetadata) -> Option<crate::store::ClientKeys> {
    use crate::store::ClientKeys;
    if meta.token_endpoint_auth_method != AuthMethod::PrivateKeyJwt {
        return None;
    }
    match (&meta.jwks, &meta.jwks_uri) {
        (Some(jwks), _) => Some(ClientKeys::Inline { jwks: jwks.clone() }),
        (None, Some(uri)) => Some(ClientKeys::Uri { jwks_uri: uri.clone() }),
        (None, None) => None,
    }
}

/// How a client proves itself, in the classes an update may not move it between.
fn credential_class(m: AuthMethod) -> u8 {
    match m {
        AuthMethod::None => 0,
        AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost => 1,
        AuthMethod::PrivateKeyJwt => 2,
    }
}

fn client_record(
    client_id: ClientId,
    meta: &ClientMetadata,
    kind: ClientKind,
    created_at: UnixTime,
) -> Result<ClientRecord, OAuthError> {
    let allowed_scope = match &meta.scope {
        Some(s) => s.clone(),
        None => Scope::parse(DEFAULT_SCOPE)?,
    };
    // The consent page shows the redirect host next to the name, so a borrowed name alone does
    // not pass; a client without a name is named after where it sends the user.
    let name = meta.client_name.clone().unwrap_or_else(|| match meta.redirect_uris.first() {
        Some(r) => url::Url::parse(r.as_str())
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_else(|| "an unnamed application".to_owned()),
        None => "an unnamed application".to_owned(),
    });
    Ok(ClientRecord {
        client_id,
        name,
        kind,
        redirect_uris: meta.redirect_uris.clone(),
        grant_types: meta.grant_types.iter().filter_map(|g| GrantType::parse(g)).collect(),
        allowed_scope,
        first_party: false,
        created_at,
        id_token_signed_response_alg: meta
            .id_token_signed_response_alg
            .as_deref()
            .and_then(SigningAlg::parse)
            .unwrap_or_default(),
        post_logout_redirect_uris: meta.post_logout_redirect_uris.clone(),
        audiences: Vec::new(),
        origin: ClientOrigin::Registered,
        backchannel_logout: meta.backchannel_logout_uri.as_ref().map(|uri| crate::store::BackchannelLogout {
            uri: uri.clone(),
            session_required: meta.backchannel_logout_session_required,
        }),
        second_factor: Default::default(),
        protection: crate::store::ClientProtection {
            dpop_bound_access_tokens: meta.dpop_bound_access_tokens,
            ..Default::default()
        },
    })
}

/// The RFC 7591 §3.2.1 / RFC 7592 §3 response for a stored registration.
pub fn response(
    issuer: &str,
    reg: &RegistrationRecord,
    secret: Option<&ClientSecret>,
    token: Option<&RegistrationAccessToken>,
) -> RegistrationResponse {
    let m = &reg.metadata;
    let strings = |v: &[latchkey_proto::RedirectUri]| v.iter().map(|u| u.as_str().to_owned()).collect();
    RegistrationResponse {
        client_id: reg.client_id.as_str().to_owned(),
        client_secret: secret.map(|s| s.expose_secret().to_owned()),
        // RFC 7591 §3.2.1: REQUIRED with a secret; 0 means it does not expire.
        client_secret_expires_at: m.token_endpoint_auth_method.uses_secret().then_some(0),
        client_id_issued_at: reg.created_at,
        registration_access_token: token.map(|t| t.expose_secret().to_owned()),
        registration_client_uri: token.map(|_| format!("{issuer}/register/{}", reg.client_id)),
        token_endpoint_auth_method: m.token_endpoint_auth_method,
        redirect_uris: strings(&m.redirect_uris),
        grant_types: m.grant_types.clone(),
        response_types: m.response_types.clone(),
        application_type: m.application_type,
        client_name: m.client_name.clone(),
        client_uri: m.client_uri.clone(),
        logo_uri: m.logo_uri.clone(),
        scope: m.scope.as_ref().map(|s| s.to_string()),
        contacts: m.contacts.clone(),
        software_id: m.software_id.clone(),
        software_version: m.software_version.clone(),
        id_token_signed_response_alg: m.id_token_signed_response_alg.clone(),
        post_logout_redirect_uris: strings(&m.post_logout_redirect_uris),
        backchannel_logout_uri: m.backchannel_logout_uri.clone(),
        backchannel_logout_session_required: m
            .backchannel_logout_uri
            .as_ref()
            .map(|_| m.backchannel_logout_session_required),
        dpop_bound_access_tokens: m.dpop_bound_access_tokens,
        jwks: m.jwks.as_deref().and_then(|j| serde_json::from_str(j).ok()),
        jwks_uri: m.jwks_uri.clone(),
    }
}

fn bad_token() -> OAuthError {
    // RFC 7592 §2: an unknown client and a wrong token get the same answer, so the endpoint does
    // not tell which client ids exist.
    OAuthError::invalid_token("the registration access token is missing or not valid for this client")
}

fn tokens_match(presented: &str, stored: &TokenHash) -> bool {
    // Both sides are SHA-256 hex of the same length; the comparison takes the same time wherever
    // they differ.
    TokenHash::of(presented).as_str().as_bytes().ct_eq(stored.as_str().as_bytes()).into()
}

fn shared_refusal() -> OAuthError {
    OAuthError::invalid_client_metadata(
        "this registration was also returned to an identical registration request, so it is shared and can no longer be changed or deleted with its registration access token; register a new client instead",
    )
}

impl Provider {
    /// Whether `/register` exists under the configured policy.
    pub fn registration_enabled(&self) -> bool {
        self.config.registration != RegistrationPolicy::Off
    }

    /// RFC 7591 §3: with the `token` policy, the initial access token must be presented (Bearer).
    /// Checked before the metadata is even parsed.
    pub fn check_initial_access(&self, bearer: Option<&str>) -> Result<(), OAuthError> {
        match &self.config.registration {
            RegistrationPolicy::Open => Ok(()),
            RegistrationPolicy::Off => Err(OAuthError::invalid_request("client registration is turned off here")),
            RegistrationPolicy::Token(hash) => match bearer {
                Some(t) if tokens_match(t, hash) => Ok(()),
                Some(_) => Err(OAuthError::invalid_token("the initial access token is not valid")),
                None => Err(OAuthError::invalid_token(
                    "registration on this server needs an initial access token (RFC 7591 §3), sent as a Bearer token",
                )),
            },
        }
    }

    /// `POST /register`, after [`Provider::check_initial_access`].
    pub async fn register(
        &self,
        meta: ClientMetadata,
        ip: Option<IpAddr>,
        now: UnixTime,
    ) -> Result<(RegistrationResponse, bool), Error> {
        let new = decide(meta, now)?;
        let source = ip.map(throttle::source).unwrap_or_else(|| "unknown".to_owned());
        let limit = self.config.registrations_per_minute;
        let issuer = &self.config.issuer;
        match self.store.register_client(&new.client, &new.record, &source, limit, now).await? {
            Registered::Created => {
                let e = audit::Event {
                    client_id: Some(new.client.client_id.as_str()),
                    ip,
                    detail: Some(json!({
                        "client_name": new.client.name,
                        "redirect_uris": new.record.metadata.redirect_uris,
                        "token_endpoint_auth_method": new.record.metadata.token_endpoint_auth_method,
                    })),
                    ..Default::default()
                };
                audit::record(self.store.as_ref(), now, "client_registered", e).await;
                Ok((response(issuer, &new.record, new.secret.as_ref(), Some(&new.token)), true))
            }
            // Identical public metadata: the existing client, without a registration access
            // token (handing one out would let anyone who copies a popular host's metadata
            // change or delete the client every user of that host shares).
            Registered::Existing(existing) => Ok((response(issuer, &existing.1, None, None), false)),
            Registered::Throttled => {
                tracing::warn!(source = %source, "client registrations throttled");
                Err(OAuthError::new(
                    ErrorCode::TemporarilyUnavailable,
                    format!(
                        "more than {limit} clients were registered from your network in the last minute; try again in a minute"
                    ),
                )
                .into())
            }
        }
    }

    /// The registration of `client_id`, if `token` is its registration access token.
    async fn registration_for(&self, client_id: &str, token: Option<&str>) -> Result<RegistrationRecord, Error> {
        let Some(token) = token else { return Err(bad_token().into()) };
        let Ok(id) = ClientId::parse(client_id) else { return Err(bad_token().into()) };
        match self.store.registration(&id).await? {
            Some(r) if tokens_match(token, &r.access_hash) => Ok(r),
            _ => Err(bad_token().into()),
        }
    }

    /// RFC 7592 §2.1 read.
    pub async fn read_registration(&self, client_id: &str, token: Option<&str>) -> Result<RegistrationResponse, Error> {
        let reg = self.registration_for(client_id, token).await?;
        Ok(response(&self.config.issuer, &reg, None, None))
    }

    /// RFC 7592 §2.2 update: the metadata is replaced as a whole. A client cannot turn from public
    /// to confidential or back: its credentials would change under it.
    pub async fn update_registration(
        &self,
        client_id: &str,
        token: Option<&str>,
        meta: ClientMetadata,
        ip: Option<IpAddr>,
        now: UnixTime,
    ) -> Result<RegistrationResponse, Error> {
        let reg = self.registration_for(client_id, token).await?;
        if reg.shared {
            return Err(shared_refusal().into());
        }
        if credential_class(meta.token_endpoint_auth_method)
            != credential_class(reg.metadata.token_endpoint_auth_method)
        {
            return Err(OAuthError::invalid_client_metadata(
                "token_endpoint_auth_method cannot change between none, a client secret method and private_key_jwt; register a new client",
            )
            .into());
        }
        let Some(current) = self.store.client(&reg.client_id).await? else { return Err(bad_token().into()) };
        let (kind, _) = kind_for(&meta)?;
        // A confidential client keeps its secret; a private_key_jwt client takes its new keys.
        let kind = if matches!(kind, ClientKind::Confidential { .. }) { current.kind.clone() } else { kind };
        let client = client_record(reg.client_id.clone(), &meta, kind, current.created_at)?;
        if !self.store.update_registered_client(&client, &meta).await? {
            return Err(shared_refusal().into());
        }
        let e = audit::Event {
            client_id: Some(client.client_id.as_str()),
            ip,
            detail: Some(json!({ "client_name": client.name, "redirect_uris": meta.redirect_uris })),
            ..Default::default()
        };
        audit::record(self.store.as_ref(), now, "client_registration_updated", e).await;
        let reg = RegistrationRecord { metadata: meta, fingerprint: None, ..reg };
        Ok(response(&self.config.issuer, &reg, None, None))
    }

    /// RFC 7592 §2.3 delete: the client and everything issued to it.
    pub async fn delete_registration(
        &self,
        client_id: &str,
        token: Option<&str>,
        ip: Option<IpAddr>,
        now: UnixTime,
    ) -> Result<(), Error> {
        let reg = self.registration_for(client_id, token).await?;
        if reg.shared || !self.store.delete_registered_client(&reg.client_id).await? {
            return Err(shared_refusal().into());
        }
        let e = audit::Event { client_id: Some(reg.client_id.as_str()), ip, ..Default::default() };
        audit::record(self.store.as_ref(), now, "client_registration_deleted", e).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(json: &str) -> ClientMetadata {
        ClientMetadata::parse(json.as_bytes()).unwrap()
    }

    #[test]
    fn a_public_client_is_registered_unvetted_with_the_default_scope() {
        let m = meta(
            r#"{"redirect_uris":["http://localhost/callback"],"token_endpoint_auth_method":"none","grant_types":["authorization_code","refresh_token"],"client_name":"Claude Code"}"#,
        );
        let n = decide(m, 1000).unwrap();
        assert_eq!(n.client.origin, ClientOrigin::Registered);
        assert!(!n.client.first_party && !n.client.vetted() && n.client.is_public());
        assert_eq!(n.client.allowed_scope, Scope::parse(DEFAULT_SCOPE).unwrap());
        assert!(n.secret.is_none());
        assert!(n.record.fingerprint.is_some());
        assert_eq!(n.record.access_hash, n.token.hash());
        assert_eq!(n.client.grant_types, [GrantType::AuthorizationCode, GrantType::RefreshToken]);
    }

    #[test]
    fn a_registered_scope_is_the_allowed_scope() {
        let n = decide(meta(r#"{"redirect_uris":["https://a.example/cb"],"token_endpoint_auth_method":"none","scope":"mcp:tools openid"}"#), 1).unwrap();
        assert_eq!(n.client.allowed_scope, Scope::parse("openid mcp:tools").unwrap());
    }

    #[test]
    fn a_confidential_client_gets_a_secret_stored_only_as_its_hash_and_no_fingerprint() {
        let n = decide(meta(r#"{"redirect_uris":["https://a.example/cb"],"token_endpoint_auth_method":"client_secret_post","grant_types":["authorization_code","client_credentials"]}"#), 1).unwrap();
        let secret = n.secret.unwrap();
        assert_eq!(n.client.kind, ClientKind::Confidential { secret_hash: secret.hash().as_str().to_owned() });
        assert_eq!(n.record.fingerprint, None, "confidential registrations are never merged: each has its own secret");
        let r = response("https://as.example", &n.record, Some(&secret), Some(&n.token));
        assert_eq!(r.client_secret_expires_at, Some(0));
        assert_eq!(r.registration_client_uri.unwrap(), format!("https://as.example/register/{}", n.client.client_id));
    }

    #[test]
    fn a_public_client_cannot_register_for_client_credentials() {
        let m = meta(
            r#"{"redirect_uris":["https://a.example/cb"],"token_endpoint_auth_method":"none","grant_types":["authorization_code","client_credentials"]}"#,
        );
        assert_eq!(decide(m, 1).unwrap_err().code, ErrorCode::InvalidClientMetadata);
    }

    #[test]
    fn identical_metadata_has_one_fingerprint_and_different_metadata_another() {
        let a = meta(
            r#"{"redirect_uris":["https://a.example/cb","http://127.0.0.1/cb"],"token_endpoint_auth_method":"none"}"#,
        );
        let b = meta(
            r#"{"redirect_uris":["http://127.0.0.1/cb","https://a.example/cb"],"token_endpoint_auth_method":"none"}"#,
        );
        let c = meta(
            r#"{"redirect_uris":["https://a.example/cb","http://127.0.0.1/cb"],"token_endpoint_auth_method":"none","client_name":"x"}"#,
        );
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&c));
    }

    #[test]
    fn the_consent_page_facts_of_an_unverified_client() {
        let n =
            decide(meta(r#"{"redirect_uris":["http://localhost/callback"],"token_endpoint_auth_method":"none"}"#), 1)
                .unwrap();
        let r = latchkey_proto::RedirectUri::parse("http://localhost:54321/callback").unwrap();
        let u = unverified(&n.client, &r).unwrap();
        assert_eq!(u, Unverified { redirect_host: "localhost".into(), client_id_host: None, loopback: true });
        let https = latchkey_proto::RedirectUri::parse("https://evil.example/cb").unwrap();
        assert!(!unverified(&n.client, &https).unwrap().loopback);
        let mut cimd = n.client.clone();
        cimd.origin = ClientOrigin::MetadataDocument;
        cimd.client_id = ClientId::parse("https://app.example/client.json").unwrap();
        assert_eq!(unverified(&cimd, &https).unwrap().client_id_host.as_deref(), Some("app.example"));
        let mut admin = n.client;
        admin.origin = ClientOrigin::Admin;
        assert_eq!(unverified(&admin, &https), None);
    }

    #[test]
    fn a_token_is_checked_against_its_hash() {
        let t = RegistrationAccessToken::generate();
        assert!(tokens_match(t.expose_secret(), &t.hash()));
        assert!(!tokens_match("guess", &t.hash()));
    }
}
