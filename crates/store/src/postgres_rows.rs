//! Decoding PostgreSQL rows into the core's records. A stored value that no longer parses (a
//! scope, a client id, a resource) is an error of the store, never a silently different record.

use anyhow::anyhow;
use latchkey_core::authn::Authentication;
use latchkey_core::store::*;
use latchkey_proto::{ClientId, CodeChallenge, Nonce, RedirectUri, ResourceUri, Scope, TokenHash};
use tokio_postgres::Row;

pub(crate) fn bad(what: &str, e: latchkey_proto::OAuthError) -> anyhow::Error {
    anyhow!("stored {what} is invalid: {}", e.description)
}
pub(crate) fn scope_of(s: String) -> anyhow::Result<Scope> {
    Scope::parse(&s).map_err(|e| bad("scope", e))
}
pub(crate) fn resource_of(s: Option<String>) -> anyhow::Result<Option<ResourceUri>> {
    s.map(|s| ResourceUri::parse(&s).map_err(|e| bad("resource", e))).transpose()
}
pub(crate) fn client_id_of(s: String) -> anyhow::Result<ClientId> {
    ClientId::parse(&s).map_err(|e| bad("client_id", e))
}

pub(crate) fn code_row(r: &Row) -> anyhow::Result<CodeRecord> {
    Ok(CodeRecord {
        hash: TokenHash::from_stored(r.try_get(0)?),
        client_id: client_id_of(r.try_get(1)?)?,
        user_id: r.try_get(2)?,
        redirect_uri: RedirectUri::parse(r.try_get(3)?).map_err(|e| bad("redirect_uri", e))?,
        scope: scope_of(r.try_get(4)?)?,
        code_challenge: CodeChallenge::from_stored(r.try_get(5)?),
        nonce: r.try_get::<_, Option<&str>>(6)?.map(Nonce::parse).transpose().map_err(|e| bad("nonce", e))?,
        sid: r.try_get(7)?,
        auth_time: r.try_get(8)?,
        expires_at: r.try_get(9)?,
        used_at: r.try_get(10)?,
        grant_id: r.try_get(11)?,
        resource: resource_of(r.try_get(12)?)?,
        authn: authn_of(r.try_get(13)?, r.try_get(14)?)?,
        claims: claims_of(r.try_get(15)?)?,
        dpop_jkt: r.try_get(16)?,
    })
}

pub(crate) fn grant_row(r: &Row, o: usize) -> anyhow::Result<GrantRecord> {
    Ok(GrantRecord {
        id: r.try_get(o)?,
        client_id: client_id_of(r.try_get(o + 1)?)?,
        user_id: r.try_get(o + 2)?,
        scope: scope_of(r.try_get(o + 3)?)?,
        sid: r.try_get(o + 4)?,
        offline: r.try_get(o + 5)?,
        auth_time: r.try_get(o + 6)?,
        created_at: r.try_get(o + 7)?,
        expires_at: r.try_get(o + 8)?,
        revoked_at: r.try_get(o + 9)?,
        resource: resource_of(r.try_get(o + 10)?)?,
        authn: match (r.try_get::<_, Option<&str>>(o + 11)?, r.try_get::<_, Option<&str>>(o + 12)?) {
            (Some(amr), Some(acr)) => Some(authn_of(amr, acr)?),
            _ => None,
        },
        claims: claims_of(r.try_get(o + 13)?)?,
        dpop_jkt: r.try_get(o + 14)?,
    })
}

pub(crate) fn user_row(r: &Row) -> anyhow::Result<UserRecord> {
    Ok(UserRecord {
        id: r.try_get(0)?,
        username: r.try_get(1)?,
        email: r.try_get(2)?,
        email_verified: r.try_get(3)?,
        name: r.try_get(4)?,
        password_hash: r.try_get(5)?,
        created_at: r.try_get(6)?,
        phone_number: r.try_get(7)?,
        address: r.try_get(8)?,
        profile: json_of(r, 9)?,
        updated_at: r.try_get(10)?,
        locked_at: r.try_get(11)?,
    })
}

/// A `claims` column: the JSON of an OpenID Connect `claims` request, or NULL.
pub(crate) fn claims_of(s: Option<&str>) -> anyhow::Result<Option<latchkey_proto::ClaimsRequest>> {
    Ok(s.map(serde_json::from_str).transpose()?)
}

/// `user_id, client_id, scope, updated_at, claims` from column 0.
pub(crate) fn consent_row(r: &Row) -> anyhow::Result<ConsentRecord> {
    Ok(ConsentRecord {
        user_id: r.try_get(0)?,
        client_id: client_id_of(r.try_get(1)?)?,
        scope: scope_of(r.try_get(2)?)?,
        updated_at: r.try_get(3)?,
        claims: crate::account_sql::claims_from_column(r.try_get(4)?),
    })
}

pub(crate) async fn insert_session_row(
    tx: &deadpool_postgres::Transaction<'_>,
    x: &SessionRecord,
) -> anyhow::Result<()> {
    let stmt = tx.prepare_cached(crate::account_sql::INSERT_SESSION).await?;
    tx.execute(
        &stmt,
        &[
            &x.hash.as_str(),
            &x.sid,
            &x.user_id,
            &x.auth_time,
            &x.expires_at,
            &x.meta.network,
            &x.meta.device,
            &x.authn.amr_text(),
            &x.authn.acr().as_str(),
        ],
    )
    .await?;
    Ok(())
}

/// [`SESSION_COLS`] from column 0.
pub(crate) fn session_row(r: &Row) -> anyhow::Result<SessionRecord> {
    Ok(SessionRecord {
        hash: TokenHash::from_stored(r.try_get(0)?),
        sid: r.try_get(1)?,
        user_id: r.try_get(2)?,
        auth_time: r.try_get(3)?,
        expires_at: r.try_get(4)?,
        meta: SessionMeta { network: r.try_get(5)?, device: r.try_get(6)? },
        authn: authn_of(r.try_get(7)?, r.try_get(8)?)?,
    })
}

pub(crate) fn authn_of(amr: &str, acr: &str) -> anyhow::Result<Authentication> {
    Authentication::from_stored(amr, acr).map_err(|e| anyhow!("stored session: {e}"))
}

pub(crate) fn key_row(r: &Row) -> anyhow::Result<KeyRecord> {
    Ok(KeyRecord {
        kid: r.try_get(0)?,
        alg: r.try_get(1)?,
        private_pkcs8_b64: r.try_get(2)?,
        created_at: r.try_get(3)?,
        active: r.try_get(4)?,
        retired_at: r.try_get(5)?,
    })
}

pub(crate) fn refresh_row(r: &Row, o: usize) -> anyhow::Result<RefreshRecord> {
    Ok(RefreshRecord {
        hash: TokenHash::from_stored(r.try_get(o)?),
        grant_id: r.try_get(o + 1)?,
        scope: scope_of(r.try_get(o + 2)?)?,
        issued_at: r.try_get(o + 3)?,
        expires_at: r.try_get(o + 4)?,
        consumed_at: r.try_get(o + 5)?,
        cached_response: r.try_get(o + 6)?,
    })
}

pub(crate) fn access_row(r: &Row) -> anyhow::Result<AccessRecord> {
    Ok(AccessRecord {
        jti: r.try_get(0)?,
        grant_id: r.try_get(1)?,
        expires_at: r.try_get(2)?,
        revoked_at: r.try_get(3)?,
    })
}

pub(crate) fn audit_row(r: &Row) -> anyhow::Result<AuditRecord> {
    Ok(AuditRecord {
        at: r.try_get(0)?,
        event: r.try_get(1)?,
        user_id: r.try_get(2)?,
        client_id: r.try_get(3)?,
        ip: r.try_get(4)?,
        detail: json_of(r, 5)?,
    })
}

pub(crate) fn json_of<T: serde::de::DeserializeOwned>(r: &Row, i: usize) -> anyhow::Result<T> {
    Ok(serde_json::from_str(r.try_get(i)?)?)
}
