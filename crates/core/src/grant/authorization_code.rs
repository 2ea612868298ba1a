//! `grant_type=authorization_code` (RFC 6749 §4.1.3, RFC 7636 §4.5-4.6).

use latchkey_proto::dpop::DpopProof;
use latchkey_proto::metadata::TokenResponse;
use latchkey_proto::secret::random_token;
use latchkey_proto::{AuthorizationCode, CodeVerifier, OAuthError, ResourceUri};

use crate::resource;
use crate::store::{ClientRecord, CodeRecord, GrantRecord, GrantType, Issuance, Redeemed};
use crate::{Error, Provider, UnixTime};

/// The checks a code must pass, in the order a developer would want them reported. Pure: the
/// caller has looked the code up and handles replays.
pub fn check(
    code: &CodeRecord,
    client: &ClientRecord,
    redirect_uri: Option<&str>,
    verifier: Option<&CodeVerifier>,
    now: UnixTime,
) -> Result<(), OAuthError> {
    if code.client_id != client.client_id {
        return Err(OAuthError::invalid_grant("the authorization code was issued to another client"));
    }
    if now >= code.expires_at {
        return Err(OAuthError::invalid_grant(
            "the authorization code has expired: redeem it within seconds of receiving it",
        ));
    }
    // RFC 6749 §4.1.3: redirect_uri is required when the authorization request included it, which
    // ours always does, and must be identical.
    match redirect_uri {
        None => {
            return Err(OAuthError::invalid_grant(
                "redirect_uri is missing: send the same redirect_uri as in the authorization request (RFC 6749 §4.1.3)",
            ));
        }
        Some(r) if r != code.redirect_uri.as_str() => {
            return Err(OAuthError::invalid_grant(
                "redirect_uri does not match the redirect_uri of the authorization request",
            ));
        }
        Some(_) => {}
    }
    let Some(verifier) = verifier else {
        return Err(OAuthError::invalid_request(
            "code_verifier is missing: this code was issued for a PKCE code_challenge, so send the code_verifier it was derived from (RFC 7636 §4.5)",
        ));
    };
    if !verifier.matches(&code.code_challenge) {
        return Err(OAuthError::invalid_grant(
            "code_verifier does not match the code_challenge sent with the authorization request",
        ));
    }
    Ok(())
}

/// What a code-exchange request presents besides the client's authentication.
#[derive(Clone, Copy, Debug)]
pub struct Exchange<'a> {
    pub code: &'a AuthorizationCode,
    pub redirect_uri: Option<&'a str>,
    pub verifier: Option<&'a CodeVerifier>,
    /// RFC 8707 `resource`, when the authorization request named none.
    pub resource: Option<&'a ResourceUri>,
    /// The request's DPoP proof, already checked (`crate::dpop`): the tokens are bound to its key.
    pub proof: Option<&'a DpopProof>,
}

pub async fn exchange(
    p: &Provider,
    client: &ClientRecord,
    req: Exchange<'_>,
    now: UnixTime,
) -> Result<TokenResponse, Error> {
    let Exchange { code, redirect_uri, verifier, resource: requested, proof } = req;
    if !client.allows(GrantType::AuthorizationCode) {
        return Err(OAuthError::new(
            latchkey_proto::ErrorCode::UnauthorizedClient,
            "this client is not registered for the authorization_code grant",
        )
        .into());
    }
    let hash = code.hash();
    let Some(record) = p.store.code(&hash).await? else {
        return Err(OAuthError::invalid_grant(
            "the authorization code is invalid: it was never issued or has been removed",
        )
        .into());
    };
    // Every check comes before the replay branch: only a request that would have redeemed the code
    // had it been unused may revoke what the code issued. The client is authenticated as it was
    // registered (`client_auth::authenticate`: a public client by its client_id, a confidential one
    // by its secret), and it must also send the code's redirect_uri and PKCE verifier, and do it
    // within the code's lifetime. A code read later from a browser history, a proxy log or a Referer
    // therefore revokes nothing, whoever presents it (review finding 13): it gets `invalid_grant`
    // and has no side effect.
    check(&record, client, redirect_uri, verifier, now)?;
    // RFC 9449 §10: a code bound by `dpop_jkt` needs a proof by that key; a thief holding the code
    // and the verifier but not the key revokes nothing either.
    crate::dpop::code_binding(record.dpop_jkt.as_deref(), proof)?;
    let resource = match (&record.resource, requested) {
        (None, Some(r)) => {
            // RFC 8707 §2.2: the token request may name the resource the authorization request
            // left out; it is checked as it would have been there.
            let registered = p.store.resource(r).await?;
            let allow = p.config.allow_unregistered_resources;
            resource::decide_target(client, Some(r), registered.as_ref(), allow)?.resource
        }
        (granted, r) => {
            resource::narrow(granted.as_ref(), r)?;
            granted.clone()
        }
    };
    if record.used_at.is_some() {
        return Err(replayed(p, &record.client_id, record.grant_id.as_deref(), now).await);
    }

    let grant = GrantRecord {
        id: random_token(),
        client_id: client.client_id.clone(),
        user_id: record.user_id.clone(),
        scope: record.scope.clone(),
        sid: record.sid.clone(),
        offline: record.scope.contains("offline_access"),
        auth_time: record.auth_time,
        created_at: now,
        expires_at: now + p.config.refresh_token_ttl as UnixTime,
        revoked_at: None,
        resource,
        authn: Some(record.authn.clone()),
        claims: record.claims.clone(),
        // RFC 9449 §5.2: a public client's refresh tokens are bound to the key it proved here.
        dpop_jkt: crate::dpop::family_key(client, proof),
    };
    let user = super::user_of(p, &record.user_id).await?;
    let aud = super::audience_of(p, client, &grant);
    let opts = super::MintOptions {
        aud: &aud,
        nonce: record.nonce.as_ref(),
        id_token: true,
        refresh: true,
        user: Some(&user),
        dpop_jkt: proof.map(|p| p.jkt.as_str()),
    };
    let minted = super::mint(p, client, &grant, &record.scope, opts, now)?;
    let issuance = Issuance { grant, refresh: minted.refresh, access: minted.access };
    match p.store.redeem_code(&hash, now, &issuance).await? {
        Redeemed::Issued => Ok(minted.response),
        // Lost a race with a concurrent redemption of the same code.
        Redeemed::AlreadyUsed { grant_id } => Err(replayed(p, &record.client_id, grant_id.as_deref(), now).await),
    }
}

/// RFC 6749 §4.1.2: "If an authorization code is used more than once, the authorization server
/// MUST deny the request and SHOULD revoke (when possible) all tokens previously issued based on
/// that authorization code." Called only for a replay that passed [`check`]: the code's own,
/// authenticated client, with its redirect_uri and PKCE verifier, before the code expired. That is
/// when a second use means the code was intercepted and redeemed by someone holding the verifier
/// too (or the legitimate client lost a race to them); anything else is refused without revoking.
async fn replayed(p: &Provider, client_id: &latchkey_proto::ClientId, grant_id: Option<&str>, now: UnixTime) -> Error {
    if let Some(g) = grant_id
        && let Err(e) = p.store.revoke_grant(g, now).await
    {
        return e.into();
    }
    let e = crate::audit::Event { client_id: Some(client_id.as_str()), ..Default::default() };
    crate::audit::record(p.store.as_ref(), now, "code_replay", e).await;
    OAuthError::invalid_grant(
        "the authorization code was already used; the tokens issued for it have been revoked (RFC 6749 §4.1.2)",
    )
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ClientKind;
    use latchkey_proto::{ClientId, RedirectUri, Scope, TokenHash};

    fn fixtures() -> (CodeRecord, ClientRecord, CodeVerifier) {
        let verifier = CodeVerifier::parse("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk").unwrap();
        let client = ClientRecord {
            client_id: ClientId::parse("spa").unwrap(),
            name: "SPA".into(),
            kind: ClientKind::Public,
            redirect_uris: vec![RedirectUri::parse("http://127.0.0.1:8765/callback").unwrap()],
            grant_types: vec![GrantType::AuthorizationCode],
            allowed_scope: Scope::parse("openid").unwrap(),
            first_party: false,
            created_at: 0,
            id_token_signed_response_alg: Default::default(),
            post_logout_redirect_uris: vec![],
            audiences: vec![],
            origin: Default::default(),
            backchannel_logout: None,
            protection: Default::default(),
            second_factor: Default::default(),
        };
        let code = CodeRecord {
            hash: TokenHash::of("c"),
            client_id: client.client_id.clone(),
            user_id: "u".into(),
            redirect_uri: RedirectUri::parse("http://127.0.0.1:8765/callback").unwrap(),
            scope: Scope::parse("openid").unwrap(),
            code_challenge: verifier.challenge(),
            nonce: None,
            sid: "s".into(),
            auth_time: 100,
            expires_at: 160,
            used_at: None,
            grant_id: None,
            resource: None,
            authn: Default::default(),
            claims: None,
            dpop_jkt: None,
        };
        (code, client, verifier)
    }

    const URI: Option<&str> = Some("http://127.0.0.1:8765/callback");

    #[test]
    fn the_seed_request_passes() {
        let (code, client, v) = fixtures();
        assert!(check(&code, &client, URI, Some(&v), 159).is_ok());
    }

    #[test]
    fn each_pitfall_is_named() {
        let (code, client, v) = fixtures();
        let other = CodeVerifier::parse("different-verifier-different-verifier-different").unwrap();
        let e = check(&code, &client, URI, Some(&other), 120).unwrap_err();
        assert_eq!(e.code, latchkey_proto::ErrorCode::InvalidGrant);
        assert!(e.description.contains("code_verifier does not match the code_challenge"));

        let e = check(&code, &client, URI, None, 120).unwrap_err();
        assert_eq!(e.code, latchkey_proto::ErrorCode::InvalidRequest);
        assert!(e.description.contains("code_verifier is missing"));

        let e = check(&code, &client, None, Some(&v), 120).unwrap_err();
        assert_eq!(e.code, latchkey_proto::ErrorCode::InvalidGrant);
        assert!(e.description.contains("redirect_uri is missing"));

        let e = check(&code, &client, Some("http://127.0.0.1:8765/other"), Some(&v), 120).unwrap_err();
        assert!(e.description.contains("redirect_uri does not match"));

        let e = check(&code, &client, URI, Some(&v), 160).unwrap_err();
        assert!(e.description.contains("expired"));

        let mut stranger = client.clone();
        stranger.client_id = ClientId::parse("other").unwrap();
        let e = check(&code, &stranger, URI, Some(&v), 120).unwrap_err();
        assert!(e.description.contains("another client"));
    }
}
