//! `grant_type=refresh_token` (RFC 6749 §6) with rotation (RFC 9700 §4.14.2): every use returns a
//! new refresh token and the old one stops working.

use latchkey_proto::metadata::TokenResponse;
use latchkey_proto::{ErrorCode, OAuthError, RefreshToken, Scope};

use crate::store::{ClientRecord, GrantRecord, GrantType, RefreshRecord, Rotated};
use crate::{Error, Provider, UnixTime};

/// The checks a refresh token must pass before it is rotated. Pure; `session_alive` tells whether
/// the login session the grant was made in still exists.
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
    if now >= token.expires_at {
        return Err(OAuthError::invalid_grant("the refresh token has expired; the user must sign in again"));
    }
    if token.consumed_at.is_some() {
        return Err(OAuthError::invalid_grant(
            "the refresh token was already used: each refresh returns a new refresh_token, use that one",
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

pub async fn refresh(
    p: &Provider,
    client: &ClientRecord,
    presented: &RefreshToken,
    requested: Option<&Scope>,
    now: UnixTime,
) -> Result<TokenResponse, Error> {
    let hash = presented.hash();
    let Some((token, grant)) = p.store.refresh_token(&hash).await? else {
        return Err(
            OAuthError::invalid_grant("the refresh token is invalid: it was never issued by this server").into()
        );
    };
    let session_alive = grant.offline || p.store.session_by_sid(&grant.sid, now).await?.is_some();
    let scope = check(&token, &grant, client, requested, session_alive, now)?;
    let minted = super::mint(p, client, &grant, &scope, None, now)?;
    // The successor keeps the grant's scope so that a narrowed refresh can be widened back later
    // up to what was originally granted (RFC 6749 §6).
    let next = match minted.refresh {
        Some(r) => RefreshRecord { scope: token.scope.clone(), ..r },
        None => {
            return Err(anyhow::anyhow!("refresh grant allowed but no refresh token minted").into());
        }
    };
    match p.store.rotate_refresh(&hash, now, &next, &minted.access).await? {
        Rotated::Rotated => Ok(minted.response),
        Rotated::AlreadyConsumed => Err(OAuthError::invalid_grant(
            "the refresh token was already used: each refresh returns a new refresh_token, use that one",
        )
        .into()),
    }
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
        };
        let token = RefreshRecord {
            hash: TokenHash::of("r"),
            grant_id: "g".into(),
            scope: grant.scope.clone(),
            issued_at: 0,
            expires_at: 1000,
            consumed_at: None,
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
    fn used_expired_revoked_and_sessionless_tokens_fail() {
        let (t, g, c) = fixtures();
        assert!(check(&t, &g, &c, None, true, 1).is_ok());
        let used = RefreshRecord { consumed_at: Some(1), ..t.clone() };
        assert!(check(&used, &g, &c, None, true, 2).unwrap_err().description.contains("already used"));
        assert!(check(&t, &g, &c, None, true, 1000).unwrap_err().description.contains("expired"));
        let revoked = GrantRecord { revoked_at: Some(1), ..g.clone() };
        assert!(check(&t, &revoked, &c, None, true, 2).unwrap_err().description.contains("revoked"));
        assert!(check(&t, &g, &c, None, false, 2).unwrap_err().description.contains("session"));
        let offline = GrantRecord { offline: true, ..g };
        assert!(check(&t, &offline, &c, None, false, 2).is_ok());
    }
}
