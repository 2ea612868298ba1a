//! Token introspection (RFC 7662) for resource servers.
//!
//! Only authenticated callers (confidential clients, including resource-server credentials) may
//! introspect (§4: otherwise it is a token-scanning oracle). A token is `active` only if it is ours,
//! unexpired, unrevoked, and meant for the caller (§4: "the authorization server MUST determine
//! whether or not the token can be used at the resource server making the introspection call"):
//! - an access token, to the client it was issued to, and to a resource-server credential whose
//!   registered audiences include the token's `aud`. Any other confidential client gets
//!   `active: false`, so that an ordinary relying party cannot read the claims of other clients'
//!   tokens (review finding 15);
//! - a refresh token, to the client it was issued to, and only while `/token` would accept it:
//!   the same predicate decides (review finding 19c).

use latchkey_proto::{ClientAuth, OAuthError, RefreshToken};
use serde_json::{Value, json};

use crate::grant::{AccessClaims, client_auth, refresh_token};
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
        let caller = client_auth::authenticate(self, auth, client_auth::Endpoint::Introspection, now).await?;
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

    /// Whether `caller` may see an access token issued to `client_id` for `aud`.
    fn may_see_access_token(&self, caller: &ClientRecord, client_id: &str, aud: &str) -> bool {
        caller.client_id.as_str() == client_id || (is_resource_server(caller) && self.serves(caller, aud))
    }

    /// The audiences a resource server's credential serves: those registered with `--audience`, or,
    /// when none was, the server's default audience (the one access tokens carry by default).
    fn serves(&self, resource_server: &ClientRecord, aud: &str) -> bool {
        if resource_server.audiences.is_empty() {
            aud == self.config.audience
        } else {
            resource_server.audiences.iter().any(|a| latchkey_proto::resource::same_audience(a, aud))
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
        if c.iss != self.config.issuer || now >= c.exp || !self.may_see_access_token(caller, &c.client_id, &c.aud) {
            return Ok(Some(inactive()));
        }
        match self.store.access_token(&c.jti).await? {
            Some((a, g)) if a.revoked_at.is_none() && g.revoked_at.is_none() => {
                let mut v = json!({
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
                });
                // RFC 9449 §6.2: a resource server that introspects learns the key the token is
                // bound to, and must then demand a proof by it.
                if let Some(cnf) = &c.cnf {
                    v["token_type"] = json!("DPoP");
                    v["cnf"] = json!({ "jkt": cnf.jkt });
                }
                Ok(Some(v))
            }
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
        // Only the token's own client learns anything about it. Then exactly what `/token` checks
        // (`refresh_token::check`: revocation, both lifetimes, the login session of a grant without
        // offline_access, the client's registration), plus not yet rotated.
        if g.client_id != caller.client_id || r.consumed_at.is_some() {
            return Ok(Some(inactive()));
        }
        let session_alive = refresh_token::session_alive(self, &g, now).await?;
        if refresh_token::check(&r, &g, caller, None, session_alive, now).is_err() {
            return Ok(Some(inactive()));
        }
        let mut v = json!({
            "active": true,
            "scope": r.scope.to_string(),
            "client_id": g.client_id,
            "sub": g.user_id,
            "exp": r.expires_at,
            "iat": r.issued_at,
            "iss": self.config.issuer,
            "token_type": "refresh_token",
        });
        // A public client's family bound to a DPoP key (RFC 9449 §5.2): the key it needs.
        if let Some(jkt) = &g.dpop_jkt {
            v["cnf"] = json!({ "jkt": jkt });
        }
        Ok(Some(v))
    }
}

/// A resource-server credential (`client add --resource-server`): confidential, registered for no
/// grant at all, so it can only introspect. The registration rules in `admin::add_client` make
/// every such client one.
fn is_resource_server(c: &ClientRecord) -> bool {
    c.kind.is_confidential() && c.grant_types.is_empty()
}
