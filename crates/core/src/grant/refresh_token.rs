//! `grant_type=refresh_token` (RFC 6749 §6) with rotation and reuse detection (RFC 9700 §4.14.2).
//!
//! Every refresh token belongs to a family (its grant). Each use rotates it. A retry of a rotated
//! token within the grace window gets the same successor tokens as the first use (so two tabs or a
//! lost response never log the user out); a use after the window is a reuse: the token was copied,
//! so the whole family and every access token of the grant are revoked.
//!
//! The grace window is a trade-off: whoever holds a copy of a token taken at the moment it was used
//! (a log, a proxy) and presents it within the window gets the live successor, undetected. So the
//! window is short (5 s by default), and the cached reply goes only to the same request: same
//! client, same resulting scope, and the same DPoP key if the first use proved one
//! ([`grace::RequestFingerprint`]).
//!
//! DPoP (RFC 9449 §5.2): a public client's family is bound to the key it proved when the code was
//! redeemed, and every refresh must prove that key; a confidential client's family is bound by its
//! authentication, and each new access token is bound to whatever key the refresh proves.
//! A retry that differs is refused with `invalid_grant` and revokes nothing, since the honest
//! client that made the first request may still hold the successor.

use latchkey_proto::dpop::DpopProof;
use latchkey_proto::metadata::TokenResponse;
use latchkey_proto::{ErrorCode, OAuthError, RefreshToken, ResourceUri, Scope};

use super::grace;
use crate::store::{ClientRecord, GrantRecord, GrantType, RefreshRecord, Rotated};
use crate::{Error, Provider, UnixTime};

/// The checks an unconsumed refresh token must pass before it is rotated. Pure; `session_alive`
/// tells whether the login session the grant was made in still exists.
pub fn check(
    token: &RefreshRecord,
    grant: &GrantRecord,
    client: &ClientRecord,
    requested: Option<&Scope>,
    session_alive: bool,
    now: UnixTime,
) -> Result<Scope, OAuthError> {
    if grant.client_id != client.client_id {
        return Err(OAuthError::invalid_grant("the refresh token was issued to another client"));
    }
    if grant.revoked_at.is_some() {
        return Err(OAuthError::invalid_grant("the refresh token has been revoked"));
    }
    if now >= grant.expires_at {
        return Err(OAuthError::invalid_grant(
            "the refresh token has expired (its family reached its absolute lifetime); the user must sign in again",
        ));
    }
    if now >= token.expires_at {
        return Err(OAuthError::invalid_grant(
            "the refresh token has expired (unused for longer than its idle lifetime); the user must sign in again",
        ));
    }
    if !grant.offline && !session_alive {
        return Err(OAuthError::invalid_grant(
            "the login session this refresh token was bound to has ended; request offline_access to keep access after sign-out",
        ));
    }
    if !client.allows(GrantType::RefreshToken) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "this client is not registered for the refresh_token grant",
        ));
    }
    match requested {
        None => Ok(token.scope.clone()),
        Some(s) if s.is_subset(&token.scope) => Ok(s.clone()),
        // RFC 6749 §6: the scope "MUST NOT include any scope not originally granted".
        Some(s) => Err(OAuthError::invalid_scope(format!(
            "a refresh may narrow the scope, never widen it: not originally granted: {}",
            s.missing_from(&token.scope)
        ))),
    }
}

/// What to do with a token that was already rotated. Pure.
#[derive(Debug, PartialEq, Eq)]
pub enum Spent {
    /// Within the grace window: answer with the reply of the first use.
    Replay,
    /// Outside it: a reuse. Revoke the family.
    Reuse,
}

pub fn spent(consumed_at: UnixTime, grace: u64, now: UnixTime) -> Spent {
    if grace > 0 && now - consumed_at <= grace as UnixTime { Spent::Replay } else { Spent::Reuse }
}

/// Whether a grant's refresh tokens may still be used as far as its login session is concerned:
/// an `offline_access` grant outlives the session, any other ends with it (OpenID Connect Core
/// §11). The one predicate for `/token` and `/introspect`, so that they never disagree.
pub(crate) async fn session_alive(p: &Provider, grant: &GrantRecord, now: UnixTime) -> Result<bool, Error> {
    Ok(grant.offline || p.store.session_by_sid(&grant.sid, now).await?.is_some())
}

/// What a retry must repeat to receive the first use's reply: the client, the scope the request
/// resolves to (the requested one, or the token's whole scope) and the DPoP key it proved. Pure.
pub(crate) fn fingerprint(
    client: &ClientRecord,
    token: &RefreshRecord,
    requested: Option<&Scope>,
    proof: Option<&DpopProof>,
) -> grace::RequestFingerprint {
    grace::RequestFingerprint {
        client_id: client.client_id.to_string(),
        scope: requested.unwrap_or(&token.scope).to_string(),
        dpop_jkt: proof.map(|p| p.jkt.clone()),
    }
}

pub async fn refresh(
    p: &Provider,
    client: &ClientRecord,
    presented: &RefreshToken,
    requested: Option<&Scope>,
    resource: Option<&ResourceUri>,
    proof: Option<&DpopProof>,
    now: UnixTime,
) -> Result<TokenResponse, Error> {
    let hash = presented.hash();
    let Some((token, grant)) = p.store.refresh_token(&hash).await? else {
        return Err(
            OAuthError::invalid_grant("the refresh token is invalid: it was never issued by this server").into()
        );
    };
    if grant.client_id != client.client_id {
        return Err(OAuthError::invalid_grant("the refresh token was issued to another client").into());
    }
    if grant.revoked_at.is_some() {
        return Err(OAuthError::invalid_grant("the refresh token has been revoked").into());
    }
    // RFC 8707 §2.2: the grant's resource again, or none; never another.
    crate::resource::narrow(grant.resource.as_ref(), resource)?;
    // Before the reuse branch: a spent token without its key is refused and revokes nothing.
    crate::dpop::refresh_binding(&grant, proof)?;
    let request = fingerprint(client, &token, requested, proof);
    if let Some(consumed_at) = token.consumed_at {
        let cached = token.cached_response.as_deref();
        return already_rotated(p, presented, &grant, &request, consumed_at, cached, now).await;
    }
    let session_alive = session_alive(p, &grant, now).await?;
    let scope = check(&token, &grant, client, requested, session_alive, now)?;
    let user = super::user_of(p, &grant.user_id).await?;
    let aud = super::audience_of(p, client, &grant);
    let dpop_jkt = proof.map(|p| p.jkt.as_str());
    let opts =
        super::MintOptions { aud: &aud, nonce: None, id_token: true, refresh: true, user: Some(&user), dpop_jkt };
    let minted = super::mint(p, client, &grant, &scope, opts, now)?;
    // The successor keeps the family's scope, so that a narrowed refresh can be widened back up
    // to what was originally granted (RFC 6749 §6).
    let Some(next) = minted.refresh.map(|r| RefreshRecord { scope: token.scope.clone(), ..r }) else {
        return Err(anyhow::anyhow!("refresh grant allowed but no refresh token minted").into());
    };
    let sealed = grace::seal(presented, &request, &minted.response)?;
    match p.store.rotate_refresh(&hash, now, &next, &minted.access, &sealed).await? {
        Rotated::Rotated => Ok(minted.response),
        // Lost the race to a concurrent use of the same token: answer as a retry would be.
        Rotated::AlreadyConsumed { consumed_at: Some(at), cached_response } => {
            already_rotated(p, presented, &grant, &request, at, cached_response.as_deref(), now).await
        }
        Rotated::AlreadyConsumed { consumed_at: None, .. } => {
            Err(OAuthError::invalid_grant("the refresh token has been revoked").into())
        }
    }
}

/// A rotated token presented again: the first use's reply within the grace window if this is the
/// same request, a side-effect-free refusal if it is another request, else a reuse.
async fn already_rotated(
    p: &Provider,
    presented: &RefreshToken,
    grant: &GrantRecord,
    request: &grace::RequestFingerprint,
    consumed_at: UnixTime,
    cached: Option<&[u8]>,
    now: UnixTime,
) -> Result<TokenResponse, Error> {
    if spent(consumed_at, p.config.refresh_grace, now) == Spent::Replay
        && let Some((first, reply)) = cached.and_then(|c| grace::open(presented, c))
    {
        // A reply sealed before fingerprints existed: what it was issued for is in the reply.
        let first = first.unwrap_or_else(|| grace::RequestFingerprint {
            client_id: grant.client_id.to_string(),
            scope: reply.scope.clone(),
            dpop_jkt: None,
        });
        if first == *request {
            return Ok(reply);
        }
        // Not a retry of the first request. Refuse without revoking: the first request may well be
        // the honest client's, now holding the successor (two tabs asking for different scopes).
        if first.dpop_jkt != request.dpop_jkt {
            return Err(OAuthError::invalid_grant(
                "the refresh token was rotated moments ago by a request with another DPoP key (or none); a retry within the grace window must prove the same key, otherwise use the refresh token it returned",
            )
            .into());
        }
        return Err(OAuthError::invalid_grant(
            "the refresh token was rotated moments ago by a request for another scope; a retry within the grace window must repeat that request exactly, otherwise use the refresh token it returned",
        )
        .into());
    }
    p.store.revoke_grant(&grant.id, now).await?;
    let e = crate::audit::Event {
        user_id: Some(&grant.user_id),
        client_id: Some(grant.client_id.as_str()),
        detail: Some(serde_json::json!({ "grant": "revoked", "rotated_at": consumed_at })),
        ..Default::default()
    };
    crate::audit::record(p.store.as_ref(), now, "refresh_token_reuse", e).await;
    Err(OAuthError::invalid_grant(
        "the refresh token was reused after it had been rotated: the whole token family has been revoked, sign in again (RFC 9700 §4.14.2)",
    )
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ClientKind;
    use latchkey_proto::{ClientId, TokenHash};

    fn fixtures() -> (RefreshRecord, GrantRecord, ClientRecord) {
        let client = ClientRecord {
            client_id: ClientId::parse("spa").unwrap(),
            name: "SPA".into(),
            kind: ClientKind::Public,
            redirect_uris: vec![],
            grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
            allowed_scope: Scope::parse("openid profile").unwrap(),
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
        let grant = GrantRecord {
            id: "g".into(),
            client_id: client.client_id.clone(),
            user_id: "u".into(),
            scope: Scope::parse("openid profile").unwrap(),
            sid: "s".into(),
            offline: false,
            auth_time: 0,
            created_at: 0,
            expires_at: 1000,
            revoked_at: None,
            resource: None,
            authn: None,
            claims: None,
            dpop_jkt: None,
        };
        let token = RefreshRecord {
            hash: TokenHash::of("r"),
            grant_id: "g".into(),
            scope: grant.scope.clone(),
            issued_at: 0,
            expires_at: 500,
            consumed_at: None,
            cached_response: None,
        };
        (token, grant, client)
    }

    #[test]
    fn scope_may_narrow_never_widen() {
        let (t, g, c) = fixtures();
        let narrow = Scope::parse("openid").unwrap();
        assert_eq!(check(&t, &g, &c, Some(&narrow), true, 1).unwrap(), narrow);
        let wide = Scope::parse("openid email").unwrap();
        let e = check(&t, &g, &c, Some(&wide), true, 1).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidScope);
        assert!(e.description.contains("email"));
    }

    #[test]
    fn idle_and_absolute_lifetimes_revocation_and_session() {
        let (t, g, c) = fixtures();
        assert!(check(&t, &g, &c, None, true, 1).is_ok());
        assert!(check(&t, &g, &c, None, true, 500).unwrap_err().description.contains("idle lifetime"));
        let long_idle = RefreshRecord { expires_at: 5000, ..t.clone() };
        assert!(check(&long_idle, &g, &c, None, true, 1000).unwrap_err().description.contains("absolute lifetime"));
        let revoked = GrantRecord { revoked_at: Some(1), ..g.clone() };
        assert!(check(&t, &revoked, &c, None, true, 2).unwrap_err().description.contains("revoked"));
        assert!(check(&t, &g, &c, None, false, 2).unwrap_err().description.contains("session"));
        let offline = GrantRecord { offline: true, ..g };
        assert!(check(&t, &offline, &c, None, false, 2).is_ok());
    }

    #[test]
    fn the_fingerprint_is_the_resulting_scope_the_client_and_the_dpop_key() {
        let (t, _, c) = fixtures();
        let all = fingerprint(&c, &t, None, None);
        assert_eq!(all.scope, "openid profile");
        assert_eq!(all, fingerprint(&c, &t, Some(&Scope::parse("profile openid").unwrap()), None), "same result");
        assert_ne!(all, fingerprint(&c, &t, Some(&Scope::parse("openid").unwrap()), None));
        let other = ClientRecord { client_id: ClientId::parse("other").unwrap(), ..c.clone() };
        assert_ne!(all, fingerprint(&other, &t, None, None));
        assert_eq!(all.dpop_jkt, None, "no proof, no key");
        let key = latchkey_proto::dpop::DpopKey::generate().unwrap();
        let raw = key.proof("POST", "https://id.example/token", 1, None, None).unwrap();
        let proof = DpopProof::parse(&raw, latchkey_proto::dpop::DEFAULT_ALGORITHMS).unwrap();
        let bound = fingerprint(&c, &t, None, Some(&proof));
        assert_eq!(bound.dpop_jkt.as_deref(), Some(key.jkt()));
        assert_ne!(all, bound, "a retry must prove the same key");
    }

    #[test]
    fn a_bound_family_needs_a_proof_by_its_key() {
        let (_, g, _) = fixtures();
        let key = latchkey_proto::dpop::DpopKey::generate().unwrap();
        let other = latchkey_proto::dpop::DpopKey::generate().unwrap();
        let parse = |k: &latchkey_proto::dpop::DpopKey| {
            let raw = k.proof("POST", "https://id.example/token", 1, None, None).unwrap();
            DpopProof::parse(&raw, latchkey_proto::dpop::DEFAULT_ALGORITHMS).unwrap()
        };
        assert!(crate::dpop::refresh_binding(&g, None).is_ok(), "an unbound family");
        assert!(crate::dpop::refresh_binding(&g, Some(&parse(&other))).is_ok());
        let bound = GrantRecord { dpop_jkt: Some(key.jkt().to_owned()), ..g };
        assert!(crate::dpop::refresh_binding(&bound, Some(&parse(&key))).is_ok());
        let e = crate::dpop::refresh_binding(&bound, Some(&parse(&other))).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidDpopProof);
        assert!(e.description.contains("another key"), "{}", e.description);
        let e = crate::dpop::refresh_binding(&bound, None).unwrap_err();
        assert!(e.description.contains("bound to a DPoP key"), "{}", e.description);
    }

    #[test]
    fn grace_window() {
        assert_eq!(spent(100, 10, 100), Spent::Replay);
        assert_eq!(spent(100, 10, 110), Spent::Replay);
        assert_eq!(spent(100, 10, 111), Spent::Reuse);
        assert_eq!(spent(100, 0, 100), Spent::Reuse, "0 disables the window");
    }
}
