//! `/account/apps`: the applications a person allowed, and taking that back.
//!
//! Revoking an application removes the remembered consent and, in the same store transaction,
//! revokes every grant of the user with it: its refresh tokens stop at `/token`, its access tokens
//! at userinfo and introspection, and its next authorization asks again.

use std::net::IpAddr;

use latchkey_proto::{ClientId, Scope};
use serde_json::json;

use super::AccountSession;
use crate::account_store::AppRevocation;
use crate::{Error, Provider, UnixTime, audit};

/// One application as the page lists it.
#[derive(Clone, Debug)]
pub struct AppView {
    pub client_id: ClientId,
    /// The client's name, or its id when it is gone.
    pub name: String,
    /// What the user allowed (remembered consent), and what live grants hold.
    pub allowed: Scope,
    /// Claims allowed individually (OpenID Connect Core §5.5).
    pub claims: Vec<String>,
    pub granted: Scope,
    pub live_grants: u64,
    pub allowed_at: Option<UnixTime>,
    pub last_used: Option<UnixTime>,
    /// Registered by an administrator (a self-registered client is shown as unverified).
    pub vetted: bool,
}

impl Provider {
    /// The applications the signed-in user consented to or holds live grants with, most recently
    /// used first.
    pub async fn account_apps(&self, a: &AccountSession, now: UnixTime) -> Result<Vec<AppView>, Error> {
        let mut out = Vec::new();
        for app in self.store.user_apps(&a.user.id, now).await? {
            let client = self.store.client(&app.client_id).await?;
            let (allowed, claims, allowed_at) = match app.consent {
                Some(c) => (c.scope, c.claims, Some(c.updated_at)),
                None => (Scope::default(), Vec::new(), None),
            };
            out.push(AppView {
                name: client.as_ref().map_or_else(|| app.client_id.to_string(), |c| c.name.clone()),
                vetted: client.as_ref().is_some_and(|c| c.vetted()),
                client_id: app.client_id,
                allowed,
                claims,
                granted: app.granted_scope,
                live_grants: app.live_grants,
                allowed_at,
                last_used: app.last_used,
            });
        }
        out.sort_by_key(|v| std::cmp::Reverse(v.last_used.or(v.allowed_at)));
        Ok(out)
    }

    /// Takes back what the signed-in user gave `client_id`: consent, grants, tokens, codes. Only
    /// the signed-in user's own grants are touched (the store selects by user).
    pub async fn revoke_app(
        &self,
        a: &AccountSession,
        client_id: &ClientId,
        ip: Option<IpAddr>,
        now: UnixTime,
    ) -> Result<AppRevocation, Error> {
        let done = self.store.revoke_app(&a.user.id, client_id, now).await?;
        if done.consent_removed || done.grants_revoked > 0 {
            let e = audit::Event {
                user_id: Some(&a.user.id),
                client_id: Some(client_id.as_str()),
                ip,
                detail: Some(json!({ "by": "user", "grants_revoked": done.grants_revoked })),
            };
            audit::record(self.store.as_ref(), now, "app_revoked", e).await;
        }
        Ok(done)
    }
}
