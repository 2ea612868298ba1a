//! Decoding SQLite rows into the core's records, and the column lists they decode. A stored
//! value that no longer parses (a scope, a client id, a resource) is a conversion error of the
//! store, never a silently different record.

use latchkey_core::authn::Authentication;
use latchkey_core::store::*;
use latchkey_proto::{ClientId, CodeChallenge, Nonce, RedirectUri, ResourceUri, Scope, TokenHash};
use rusqlite::Row;
use rusqlite::types::Type;

pub(crate) fn conv<E: std::error::Error + Send + Sync + 'static>(idx: usize) -> impl FnOnce(E) -> rusqlite::Error {
    move |e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e))
}

#[derive(Debug)]
struct Invalid(String);
impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Invalid {}

pub(crate) fn scope_at(r: &Row<'_>, i: usize) -> rusqlite::Result<Scope> {
    Scope::parse(&r.get::<_, String>(i)?).map_err(|e| conv(i)(Invalid(e.description.into_owned())))
}
pub(crate) fn resource_at(r: &Row<'_>, i: usize) -> rusqlite::Result<Option<ResourceUri>> {
    r.get::<_, Option<String>>(i)?
        .map(|s| ResourceUri::parse(&s))
        .transpose()
        .map_err(|e| conv(i)(Invalid(e.description.into_owned())))
}
pub(crate) fn client_id_at(r: &Row<'_>, i: usize) -> rusqlite::Result<ClientId> {
    ClientId::parse(&r.get::<_, String>(i)?).map_err(|e| conv(i)(Invalid(e.description.into_owned())))
}

pub(crate) const CODE_COLS: &str = "hash, client_id, user_id, redirect_uri, scope, code_challenge, nonce, sid, auth_time, expires_at, used_at, grant_id, resource, amr, acr, claims, dpop_jkt";
pub(crate) fn code_row(r: &Row<'_>) -> rusqlite::Result<CodeRecord> {
    Ok(CodeRecord {
        hash: TokenHash::from_stored(r.get(0)?),
        client_id: client_id_at(r, 1)?,
        user_id: r.get(2)?,
        redirect_uri: RedirectUri::parse(&r.get::<_, String>(3)?)
            .map_err(|e| conv(3)(Invalid(e.description.into_owned())))?,
        scope: scope_at(r, 4)?,
        code_challenge: CodeChallenge::from_stored(r.get(5)?),
        nonce: r
            .get::<_, Option<String>>(6)?
            .map(|n| Nonce::parse(&n))
            .transpose()
            .map_err(|e| conv(6)(Invalid(e.description.into_owned())))?,
        sid: r.get(7)?,
        auth_time: r.get(8)?,
        expires_at: r.get(9)?,
        used_at: r.get(10)?,
        grant_id: r.get(11)?,
        resource: resource_at(r, 12)?,
        authn: authn_at(r, 13)?,
        claims: claims_at(r, 15)?,
        dpop_jkt: r.get(16)?,
    })
}

pub(crate) const GRANT_COLS: &str = "g.id, g.client_id, g.user_id, g.scope, g.sid, g.offline, g.auth_time, g.created_at, g.expires_at, g.revoked_at, g.resource, g.amr, g.acr, g.claims, g.dpop_jkt";
pub(crate) fn grant_row(r: &Row<'_>, o: usize) -> rusqlite::Result<GrantRecord> {
    Ok(GrantRecord {
        id: r.get(o)?,
        client_id: client_id_at(r, o + 1)?,
        user_id: r.get(o + 2)?,
        scope: scope_at(r, o + 3)?,
        sid: r.get(o + 4)?,
        offline: r.get(o + 5)?,
        auth_time: r.get(o + 6)?,
        created_at: r.get(o + 7)?,
        expires_at: r.get(o + 8)?,
        revoked_at: r.get(o + 9)?,
        resource: resource_at(r, o + 10)?,
        authn: match (r.get::<_, Option<String>>(o + 11)?, r.get::<_, Option<String>>(o + 12)?) {
            (Some(amr), Some(acr)) => Some(authn_of(&amr, &acr, o + 11)?),
            _ => None,
        },
        claims: claims_at(r, o + 13)?,
        dpop_jkt: r.get(o + 14)?,
    })
}

pub(crate) const USER_COLS: &str = "id, username, email, email_verified, name, password_hash, created_at, phone_number, address, profile, updated_at, locked_at";
pub(crate) fn user_row(r: &Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        id: r.get(0)?,
        username: r.get(1)?,
        email: r.get(2)?,
        email_verified: r.get(3)?,
        name: r.get(4)?,
        password_hash: r.get(5)?,
        created_at: r.get(6)?,
        phone_number: r.get(7)?,
        address: r.get(8)?,
        profile: json_col(r, 9)?,
        updated_at: r.get(10)?,
        locked_at: r.get(11)?,
    })
}

/// A `claims` column: the JSON of an OpenID Connect `claims` request, or NULL.
pub(crate) fn claims_at(r: &Row<'_>, i: usize) -> rusqlite::Result<Option<latchkey_proto::ClaimsRequest>> {
    r.get::<_, Option<String>>(i)?.map(|s| serde_json::from_str(&s).map_err(conv(i))).transpose()
}

/// The column value of an optional `claims` request.
pub(crate) fn claims_json(c: &Option<latchkey_proto::ClaimsRequest>) -> Option<String> {
    c.as_ref().and_then(|c| serde_json::to_string(c).ok())
}

pub(crate) fn session_row(r: &Row<'_>) -> rusqlite::Result<SessionRecord> {
    Ok(SessionRecord {
        hash: TokenHash::from_stored(r.get(0)?),
        sid: r.get(1)?,
        user_id: r.get(2)?,
        auth_time: r.get(3)?,
        expires_at: r.get(4)?,
        meta: SessionMeta { network: r.get(5)?, device: r.get(6)? },
        authn: authn_at(r, 7)?,
    })
}

/// `user_id, client_id, scope, updated_at, claims` from column 0.
pub(crate) fn consent_row(r: &Row<'_>) -> rusqlite::Result<ConsentRecord> {
    Ok(ConsentRecord {
        user_id: r.get(0)?,
        client_id: client_id_at(r, 1)?,
        scope: scope_at(r, 2)?,
        updated_at: r.get(3)?,
        claims: crate::account_sql::claims_from_column(&r.get::<_, String>(4)?),
    })
}

/// `amr, acr` at columns `i`, `i + 1` (`latchkey_core::authn`).
pub(crate) fn authn_at(r: &Row<'_>, i: usize) -> rusqlite::Result<Authentication> {
    authn_of(&r.get::<_, String>(i)?, &r.get::<_, String>(i + 1)?, i)
}

fn authn_of(amr: &str, acr: &str, i: usize) -> rusqlite::Result<Authentication> {
    Authentication::from_stored(amr, acr).map_err(|e| conv(i)(Invalid(e)))
}

/// `hash, grant_id, scope, issued_at, expires_at, consumed_at, cached_response` from column 0.
pub(crate) fn refresh_row(r: &Row<'_>) -> rusqlite::Result<RefreshRecord> {
    Ok(RefreshRecord {
        hash: TokenHash::from_stored(r.get(0)?),
        grant_id: r.get(1)?,
        scope: scope_at(r, 2)?,
        issued_at: r.get(3)?,
        expires_at: r.get(4)?,
        consumed_at: r.get(5)?,
        cached_response: r.get(6)?,
    })
}

/// `at, event, user_id, client_id, ip, detail` from column 0.
pub(crate) fn audit_row(r: &Row<'_>) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord {
        at: r.get(0)?,
        event: r.get(1)?,
        user_id: r.get(2)?,
        client_id: r.get(3)?,
        ip: r.get(4)?,
        detail: json_col(r, 5)?,
    })
}

pub(crate) fn json_col<T: serde::de::DeserializeOwned>(r: &Row<'_>, i: usize) -> rusqlite::Result<T> {
    serde_json::from_str(&r.get::<_, String>(i)?).map_err(conv(i))
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Backend(e.into()))
}

pub(crate) const KEY_COLS: &str = "kid, alg, private_pkcs8, created_at, active, retired_at";

pub(crate) fn key_row(r: &Row<'_>) -> rusqlite::Result<KeyRecord> {
    Ok(KeyRecord {
        kid: r.get(0)?,
        alg: r.get(1)?,
        private_pkcs8_b64: r.get(2)?,
        created_at: r.get(3)?,
        active: r.get(4)?,
        retired_at: r.get(5)?,
    })
}
