//! Token introspection (RFC 7662) for resource servers.
//!
//! Only authenticated callers (confidential clients, including resource-server credentials) may
//! introspect (§4: otherwise it is a token-scanning oracle). A token is `active` only if it is ours,
//! unexpired, unrevoked, and meant for the caller: an access token whose audience is one the caller
//! serves, or a refresh token issued to the caller.

use latchkey_proto::{ClientAuth, OAuthError, RefreshToken};
use serde_json::{Value, json};

use crate::grant::{AccessClaims, client_auth};
use crate::revoke::Hint;
use crate::store::ClientRecord;
use crate::{Error, Provider, UnixTime};

fn inactive() -> Value {
    json!({ "active": false })
}

impl Provider {
    pub async fn introspect(&self, auth: &ClientAuth, token: &str, hint: Hint, now: UnixTime) -> Result<Value, Error> {
        if matches!(auth, ClientAuth::None { .. }) {
            return Err(OAuthError::invalid_client(
                "introspection requires client authentication: use a confidential client or a resource-server credential",
            )
            .into());
        }
        let caller = client_auth::authenticate(self, auth).await?;
        let jwt_like = token.matches('.').count() == 2;
        let access_first = hint == Hint::AccessToken || (hint == Hint::None && jwt_like);
        for access in if access_first { [true, false] } else { [false, true] } {
            let found = if access {
                self.introspect_access(&caller, token, now).await?
            } else {
                self.introspect_refresh(&caller, token, now).await?
            };
            if let Some(v) = found {
                return Ok(v);
            }
        }
        Ok(inactive())
    }

    /// The audiences whose access tokens `caller` may see.
    fn serves(&self, caller: &ClientRecord, aud: &str) -> bool {
        if caller.audiences.is_empty() {
            aud == self.config.audience
        } else {
            caller.audiences.iter().any(|a| a == aud)
        }
    }

    /// `Some` when the token is one of our access tokens (active or not).
    async fn introspect_access(
        &self,
        caller: &ClientRecord,
        token: &str,
        now: UnixTime,
    ) -> Result<Option<Value>, Error> {
        let Ok(c) = self.keys().verify::<AccessClaims>(token, "at+jwt") else { return Ok(None) };
        if c.iss != self.config.issuer || now >= c.exp || !self.serves(caller, &c.aud) {
            return Ok(Some(inactive()));
        }
        match self.store.access_token(&c.jti).await? {
            Some((a, g)) if a.revoked_at.is_none() && g.revoked_at.is_none() => Ok(Some(json!({
                "active": true,
                "scope": c.scope,
                "client_id": c.client_id,
                "sub": c.sub,
                "exp": c.exp,
                "iat": c.iat,
                "iss": c.iss,
                "aud": c.aud,
                "jti": c.jti,
                "token_type": "Bearer",
            }))),
            _ => Ok(Some(inactive())),
        }
    }

    async fn introspect_refresh(
        &self,
        caller: &ClientRecord,
        token: &str,
        now: UnixTime,
    ) -> Result<Option<Value>, Error> {
        if token.len() > 512 {
            return Ok(None);
        }
        let Some((r, g)) = self.store.refresh_token(&RefreshToken::new(token).hash()).await? else { return Ok(None) };
        let active = g.client_id == caller.client_id
            && g.revoked_at.is_none()
            && r.consumed_at.is_none()
            && now < r.expires_at
            && now < g.expires_at;
        if !active {
            return Ok(Some(inactive()));
        }
        Ok(Some(json!({
            "active": true,
            "scope": r.scope.to_string(),
            "client_id": g.client_id,
            "sub": g.user_id,
            "exp": r.expires_at,
            "iat": r.issued_at,
            "iss": self.config.issuer,
            "token_type": "refresh_token",
        })))
    }
}
