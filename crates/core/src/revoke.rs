//! Token revocation (RFC 7009).
//!
//! Revoking a refresh token ends its whole family and every access token of the grant. Revoking an
//! access token (a JWT) records its `jti` as revoked until it expires. An unknown, malformed or
//! already-expired token is answered with success (RFC 7009 §2.2): the client's goal is reached.

use latchkey_proto::{ClientAuth, ErrorCode, OAuthError, RefreshToken};

use crate::grant::{AccessClaims, client_auth};
use crate::{Error, Provider, UnixTime, audit};

/// Which kind a token is to be tried as first (`token_type_hint`, RFC 7009 §2.1). An unknown hint
/// is ignored, as the RFC allows, and every kind is tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint {
    AccessToken,
    RefreshToken,
    None,
}

impl Hint {
    pub fn parse(s: Option<&str>) -> Self {
        match s {
            Some("access_token") => Self::AccessToken,
            Some("refresh_token") => Self::RefreshToken,
            _ => Self::None,
        }
    }
}

fn not_yours() -> Error {
    // RFC 7009 §2.1: the server verifies the token was issued to the requesting client and refuses otherwise.
    OAuthError::new(ErrorCode::UnauthorizedClient, "the token was not issued to this client, so it cannot revoke it")
        .into()
}

impl Provider {
    pub async fn revoke(&self, auth: &ClientAuth, token: &str, hint: Hint, now: UnixTime) -> Result<(), Error> {
        let client = client_auth::authenticate(self, auth, client_auth::Endpoint::Revocation, now).await?;
        let order = match hint {
            Hint::AccessToken | Hint::None if token.matches('.').count() == 2 => {
                [Hint::AccessToken, Hint::RefreshToken]
            }
            Hint::AccessToken => [Hint::AccessToken, Hint::RefreshToken],
            _ => [Hint::RefreshToken, Hint::AccessToken],
        };
        for kind in order {
            let done = match kind {
                Hint::AccessToken => self.revoke_access(&client.client_id, token, now).await?,
                _ => self.revoke_refresh(&client.client_id, token, now).await?,
            };
            if done {
                return Ok(());
            }
        }
        Ok(())
    }

    /// `Ok(true)` when the token was one of ours of this kind (and is now revoked).
    async fn revoke_refresh(
        &self,
        client: &latchkey_proto::ClientId,
        token: &str,
        now: UnixTime,
    ) -> Result<bool, Error> {
        if token.len() > 512 {
            return Ok(false);
        }
        let Some((_, grant)) = self.store.refresh_token(&RefreshToken::new(token).hash()).await? else {
            return Ok(false);
        };
        if grant.client_id != *client {
            return Err(not_yours());
        }
        self.store.revoke_grant(&grant.id, now).await?;
        let e = audit::Event {
            user_id: Some(&grant.user_id),
            client_id: Some(client.as_str()),
            detail: Some(serde_json::json!({ "token_type": "refresh_token" })),
            ..Default::default()
        };
        audit::record(self.store.as_ref(), now, "revocation", e).await;
        Ok(true)
    }

    async fn revoke_access(
        &self,
        client: &latchkey_proto::ClientId,
        token: &str,
        now: UnixTime,
    ) -> Result<bool, Error> {
        let Ok(claims) = self.keys().verify::<AccessClaims>(token, "at+jwt") else { return Ok(false) };
        if claims.iss != self.config.issuer {
            return Ok(false);
        }
        if claims.client_id != client.as_str() {
            return Err(not_yours());
        }
        if claims.exp > now {
            self.store.revoke_access_token(&claims.jti, now).await?;
            let e = audit::Event {
                user_id: Some(&claims.sub),
                client_id: Some(client.as_str()),
                detail: Some(serde_json::json!({ "token_type": "access_token" })),
                ..Default::default()
            };
            audit::record(self.store.as_ref(), now, "revocation", e).await;
        }
        Ok(true)
    }
}
