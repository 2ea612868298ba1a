//! `grant_type=client_credentials` (RFC 6749 §4.4): a confidential client acting for itself.
//!
//! The token's `sub` is the client id (RFC 9068 §2.2). Scope and audience are limited to what the
//! client is registered for. No refresh token (RFC 6749 §4.4.3) and no id_token: there is no user.
//!
//! RFC 9068 §5: a client id used as `sub` must not collide with a user's subject identifier, or an
//! API would take the client's tokens for that user's. User ids are 22 random characters, so only
//! an administrator choosing `--client-id` could make one collide: `admin::add_client` refuses that,
//! and `issue` refuses to mint for a client registered before that check (or imported).

use latchkey_proto::dpop::DpopProof;
use latchkey_proto::metadata::TokenResponse;
use latchkey_proto::resource::same_audience;
use latchkey_proto::secret::random_token;
use latchkey_proto::{ErrorCode, OAuthError, Scope};

use crate::provider::STANDARD_SCOPES;
use crate::store::{ClientRecord, GrantRecord, GrantType, Issuance};
use crate::{Error, Provider, UnixTime};

/// Scope and audience for the token. Pure.
pub fn decide(
    client: &ClientRecord,
    requested: Option<&Scope>,
    audience: Option<&str>,
    default_audience: &str,
) -> Result<(Scope, String), OAuthError> {
    if client.is_public() {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "client_credentials needs a confidential client: a public client cannot authenticate",
        ));
    }
    if !client.allows(GrantType::ClientCredentials) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "this client is not registered for the client_credentials grant",
        ));
    }
    // The OpenID Connect scopes describe a user; there is none here.
    let api_scopes: Vec<&str> = client.allowed_scope.iter().filter(|s| !STANDARD_SCOPES.contains(s)).collect();
    let allowed = Scope::parse(&api_scopes.join(" "))?;
    let scope = match requested {
        None => allowed,
        Some(s) if s.is_subset(&allowed) => s.clone(),
        Some(s) => {
            return Err(OAuthError::invalid_scope(format!(
                "scope not allowed for this client with client_credentials: {}",
                s.missing_from(&allowed)
            )));
        }
    };
    let aud = match (audience, client.audiences.first()) {
        // The administrator's spelling is the audience: `https://h` and `https://h/` are one.
        (Some(a), _) if let Some(x) = client.audiences.iter().find(|x| same_audience(x, a)) => x.clone(),
        (Some(_), _) => {
            return Err(OAuthError::new(
                ErrorCode::InvalidTarget,
                "this client may not obtain tokens for the requested audience",
            ));
        }
        (None, Some(first)) => first.clone(),
        (None, None) => default_audience.to_owned(),
    };
    Ok((scope, aud))
}

pub async fn issue(
    p: &Provider,
    client: &ClientRecord,
    requested: Option<&Scope>,
    audience: Option<&str>,
    proof: Option<&DpopProof>,
    now: UnixTime,
) -> Result<TokenResponse, Error> {
    let (scope, aud) = decide(client, requested, audience, &p.config.audience)?;
    if p.store.user(client.client_id.as_str()).await?.is_some() {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "this client's id is also a user's subject identifier, so its tokens would pass for that user's (RFC 9068 §5): register the client under another id",
        )
        .into());
    }
    let grant = GrantRecord {
        id: random_token(),
        client_id: client.client_id.clone(),
        user_id: client.client_id.to_string(),
        scope: scope.clone(),
        sid: String::new(),
        offline: false,
        auth_time: now,
        created_at: now,
        expires_at: now + p.config.access_token_ttl as UnixTime,
        revoked_at: None,
        // No refresh token, so nothing reads it back: the token's `aud` is decided above.
        resource: None,
        // Nobody authenticated: a client acting for itself.
        authn: None,
        claims: None,
        dpop_jkt: None,
    };
    // RFC 9449 §5: the access token is bound to the key the request proved, if any.
    let dpop_jkt = proof.map(|p| p.jkt.as_str());
    let opts = super::MintOptions { aud: &aud, nonce: None, id_token: false, refresh: false, user: None, dpop_jkt };
    let minted = super::mint(p, client, &grant, &scope, opts, now)?;
    p.store.insert_grant(&Issuance { grant, refresh: None, access: minted.access }).await?;
    Ok(minted.response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ClientKind;
    use latchkey_proto::ClientId;

    fn service() -> ClientRecord {
        ClientRecord {
            client_id: ClientId::parse("svc").unwrap(),
            name: "svc".into(),
            kind: ClientKind::Confidential { secret_hash: "h".into() },
            redirect_uris: vec![],
            grant_types: vec![GrantType::ClientCredentials],
            allowed_scope: Scope::parse("openid profile api:read api:write").unwrap(),
            first_party: false,
            created_at: 0,
            id_token_signed_response_alg: Default::default(),
            post_logout_redirect_uris: vec![],
            audiences: vec!["https://api.example".into(), "https://other.example".into()],
            origin: Default::default(),
            backchannel_logout: None,
            protection: Default::default(),
            second_factor: Default::default(),
        }
    }

    #[test]
    fn scope_and_audience_limits() {
        let c = service();
        let (scope, aud) = decide(&c, None, None, "https://issuer").unwrap();
        assert_eq!(scope.to_string(), "api:read api:write");
        assert_eq!(aud, "https://api.example");
        let (_, aud) = decide(&c, None, Some("https://other.example"), "x").unwrap();
        assert_eq!(aud, "https://other.example");
        assert_eq!(decide(&c, None, Some("https://evil.example"), "x").unwrap_err().code, ErrorCode::InvalidTarget);
        let e = decide(&c, Some(&Scope::parse("api:read openid").unwrap()), None, "x").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidScope);
        assert!(e.description.contains("openid"));
        let public = ClientRecord { kind: ClientKind::Public, ..service() };
        assert_eq!(decide(&public, None, None, "x").unwrap_err().code, ErrorCode::UnauthorizedClient);
        let no_grant = ClientRecord { grant_types: vec![GrantType::AuthorizationCode], ..service() };
        assert_eq!(decide(&no_grant, None, None, "x").unwrap_err().code, ErrorCode::UnauthorizedClient);
    }
}
