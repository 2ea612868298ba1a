//! `Store` on SQLite. Connections, group commit and migrations are in `sqlite_conn`.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use latchkey_core::UnixTime;
use latchkey_core::authn::Authentication;
use latchkey_core::store::*;
use latchkey_proto::{ClientId, ResourceUri, TokenHash};
use rusqlite::{Connection, OptionalExtension, params};

use crate::account_sql::SESSION_COLS;
use crate::sqlite_conn::{Pool, StoreOptions};
use crate::sqlite_maint;
use crate::sqlite_session_end::{end_user_sessions, take_session};
// The row decoders and column lists live in their own file; the other modules reach them here.
pub(crate) use crate::sqlite_rows::*;

#[derive(Clone)]
pub struct SqliteStore {
    pool: Arc<Pool>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteStore")
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies pending migrations.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        Self::open_with(path, StoreOptions::default())
    }

    /// Opens the database file as [`SqliteStore::open`] does. It is created with mode 0600, and an
    /// existing one that others can read is refused unless `options` allows it.
    pub fn open_with(path: &Path, options: StoreOptions) -> anyhow::Result<Self> {
        Ok(Self { pool: Arc::new(Pool::open(path, options)?) })
    }

    /// `PRAGMA integrity_check`: "ok" when the file is sound.
    pub async fn integrity_check(&self) -> StoreResult<String> {
        self.scan(|c| c.query_row("PRAGMA integrity_check", [], |r| r.get(0))).await
    }

    /// A point lookup by key: runs on the calling task (see [`Pool::lookup`]).
    pub(crate) async fn lookup<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        self.pool.lookup(f).await
    }

    /// A read of many rows: runs on the blocking pool.
    pub(crate) async fn scan<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        self.pool.scan(f).await
    }

    /// `f` runs inside the writer's group transaction: it uses savepoints, never transactions.
    pub(crate) async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        self.pool.write(f).await
    }
}

/// Counts one failure under a key: a key whose last failure is older than the cut-off starts again
/// from one; a counted failure ends the run of refusals.
const THROTTLE_COUNT_SQLITE: &str =
    "INSERT INTO login_throttle (key, failures, last_failure, refused) VALUES (?1, 1, ?2, 0)
     ON CONFLICT (key) DO UPDATE SET
       failures = CASE WHEN last_failure < ?3 THEN 1 ELSE failures + 1 END,
       last_failure = excluded.last_failure, refused = 0";

fn throttle_rows(c: &Connection, keys: &[String]) -> rusqlite::Result<Vec<ThrottleRecord>> {
    let mut stmt =
        c.prepare_cached("SELECT key, failures, last_failure, refused FROM login_throttle WHERE key = ?1")?;
    let mut out = Vec::new();
    for k in keys {
        if let Some(r) = stmt
            .query_row([k], |r| {
                Ok(ThrottleRecord { key: r.get(0)?, failures: r.get(1)?, last_failure: r.get(2)?, refused: r.get(3)? })
            })
            .optional()?
        {
            out.push(r);
        }
    }
    Ok(out)
}

pub(crate) fn is_unique_violation(e: &StoreError) -> bool {
    matches!(e, StoreError::Backend(a) if a.downcast_ref::<rusqlite::Error>().is_some_and(|e| matches!(
        e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation)))
}

/// Ends the sessions of user `id` but `keep_sid` (queueing their logout tokens) and, with
/// `revoke`, revokes their live grants (a revoked grant stops its refresh family at `/token` and
/// its access tokens at userinfo and introspection) and deletes their unredeemed codes, which
/// would otherwise mint a new grant within their minute. Runs inside the caller's savepoint.
fn end_user_access(
    c: &Connection,
    id: String,
    revoke: bool,
    keep_sid: Option<&str>,
    now: UnixTime,
) -> rusqlite::Result<UserRevocation> {
    let ended = end_user_sessions(c, &id, keep_sid, now)?;
    let mut grants_revoked = 0;
    if revoke {
        grants_revoked = c
            .execute("UPDATE grants SET revoked_at = ?2 WHERE user_id = ?1 AND revoked_at IS NULL", params![id, now])?
            as u64;
        c.execute("DELETE FROM codes WHERE user_id = ?1 AND used_at IS NULL", [&id])?;
    }
    Ok(UserRevocation { user_id: id, sessions_ended: ended.len() as u64, grants_revoked, ended })
}

pub(crate) fn insert_user_row(c: &Connection, u: &UserRecord) -> rusqlite::Result<usize> {
    let profile = serde_json::to_string(&u.profile).map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
    c.execute(
        &format!("INSERT INTO users ({USER_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"),
        params![
            u.id,
            u.username,
            u.email,
            u.email_verified,
            u.name,
            u.password_hash,
            u.created_at,
            u.phone_number,
            u.address,
            profile,
            u.updated_at,
            u.locked_at
        ],
    )
}

pub(crate) fn insert_key(c: &Connection, k: &KeyRecord) -> rusqlite::Result<usize> {
    c.execute(
        "INSERT INTO signing_keys (kid, alg, private_pkcs8, created_at, active, retired_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![k.kid, k.alg, k.private_pkcs8_b64, k.created_at, k.active, k.retired_at],
    )
}

pub(crate) fn insert_access(tx: &Connection, a: &AccessRecord) -> rusqlite::Result<()> {
    tx.prepare_cached("INSERT INTO access_tokens (jti, grant_id, expires_at, revoked_at) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![a.jti, a.grant_id, a.expires_at, a.revoked_at])?;
    Ok(())
}

pub(crate) fn insert_grant_row(tx: &Connection, g: &GrantRecord) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO grants (id, client_id, user_id, scope, sid, offline, auth_time, created_at, expires_at, revoked_at, resource, amr, acr, claims, dpop_jkt)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    )?
    .execute(params![
        g.id,
        g.client_id.as_str(),
        g.user_id,
        g.scope.to_string(),
        g.sid,
        g.offline,
        g.auth_time,
        g.created_at,
        g.expires_at,
        g.revoked_at,
        g.resource.as_ref().map(ResourceUri::as_str),
        g.authn.as_ref().map(Authentication::amr_text),
        g.authn.as_ref().map(|a| a.acr().as_str()),
        claims_json(&g.claims),
        g.dpop_jkt
    ])?;
    Ok(())
}

pub(crate) fn insert_code_row(c: &Connection, k: &CodeRecord) -> rusqlite::Result<()> {
    c.prepare_cached(&format!(
        "INSERT INTO codes ({CODE_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
    ))?
    .execute(params![
        k.hash.as_str(),
        k.client_id.as_str(),
        k.user_id,
        k.redirect_uri.as_str(),
        k.scope.to_string(),
        k.code_challenge.as_str(),
        k.nonce.as_ref().map(|n| n.as_str().to_owned()),
        k.sid,
        k.auth_time,
        k.expires_at,
        k.used_at,
        k.grant_id,
        k.resource.as_ref().map(ResourceUri::as_str),
        k.authn.amr_text(),
        k.authn.acr().as_str(),
        claims_json(&k.claims),
        k.dpop_jkt
    ])?;
    Ok(())
}

pub(crate) fn insert_consent(c: &Connection, sql: &str, x: &ConsentRecord) -> rusqlite::Result<usize> {
    c.prepare_cached(sql)?.execute(params![
        x.user_id,
        x.client_id.as_str(),
        x.scope.to_string(),
        x.updated_at,
        crate::account_sql::claims_to_column(&x.claims)
    ])
}

pub(crate) fn insert_session_row(c: &Connection, x: &SessionRecord) -> rusqlite::Result<usize> {
    c.prepare_cached(crate::account_sql::INSERT_SESSION)?.execute(params![
        x.hash.as_str(),
        x.sid,
        x.user_id,
        x.auth_time,
        x.expires_at,
        x.meta.network,
        x.meta.device,
        x.authn.amr_text(),
        x.authn.acr().as_str()
    ])
}

/// A grant with its first tokens, inside the caller's transaction.
pub(crate) fn insert_issuance(tx: &Connection, issue: &Issuance) -> rusqlite::Result<()> {
    insert_grant_row(tx, &issue.grant)?;
    if let Some(r) = &issue.refresh {
        insert_refresh(tx, r)?;
    }
    insert_access(tx, &issue.access)
}

pub(crate) fn insert_refresh(tx: &Connection, r: &RefreshRecord) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO refresh_tokens (hash, grant_id, scope, issued_at, expires_at, consumed_at, cached_response)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        r.hash.as_str(),
        r.grant_id,
        r.scope.to_string(),
        r.issued_at,
        r.expires_at,
        r.consumed_at,
        r.cached_response
    ])?;
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn insert_client(&self, client: &ClientRecord) -> StoreResult<()> {
        let (id, data, at) = (client.client_id.to_string(), to_json(client)?, client.created_at);
        self.write(move |c| {
            c.execute("INSERT INTO clients (client_id, data, created_at) VALUES (?1, ?2, ?3)", params![id, data, at])
        })
        .await
        .map(|_| ())
        .map_err(|e| {
            if is_unique_violation(&e) { StoreError::AlreadyExists("a client with this client_id") } else { e }
        })
    }

    async fn client(&self, id: &ClientId) -> StoreResult<Option<ClientRecord>> {
        let id = id.to_string();
        self.lookup(move |c| {
            c.prepare_cached("SELECT data FROM clients WHERE client_id = ?1")?
                .query_row([id], |r| json_col(r, 0))
                .optional()
        })
        .await
    }

    async fn clients(&self) -> StoreResult<Vec<ClientRecord>> {
        self.scan(|c| {
            c.prepare_cached("SELECT data FROM clients ORDER BY created_at, client_id")?
                .query_map([], |r| json_col(r, 0))?
                .collect()
        })
        .await
    }

    async fn remove_client(&self, id: &ClientId) -> StoreResult<bool> {
        let id = id.to_string();
        self.write(move |c| {
            let tx = c.savepoint()?;
            let n = tx.execute("DELETE FROM clients WHERE client_id = ?1", [&id])?;
            // Everything issued to the client goes with it.
            tx.execute("DELETE FROM grants WHERE client_id = ?1", [&id])?;
            tx.execute("DELETE FROM codes WHERE client_id = ?1", [&id])?;
            tx.execute("DELETE FROM consents WHERE client_id = ?1", [&id])?;
            tx.execute(crate::device_sql::DELETE_FOR_CLIENT, [&id])?;
            tx.commit()?;
            Ok(n > 0)
        })
        .await
    }

    async fn insert_user(&self, u: &UserRecord) -> StoreResult<()> {
        let u = u.clone();
        self.write(move |c| insert_user_row(c, &u)).await.map(|_| ()).map_err(|e| {
            if is_unique_violation(&e) { StoreError::AlreadyExists("a user with this username") } else { e }
        })
    }

    async fn user(&self, id: &str) -> StoreResult<Option<UserRecord>> {
        let id = id.to_owned();
        self.lookup(move |c| {
            c.prepare_cached(&format!("SELECT {USER_COLS} FROM users WHERE id = ?1"))?
                .query_row([id], user_row)
                .optional()
        })
        .await
    }

    async fn user_by_username(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        let name = username.to_owned();
        self.lookup(move |c| {
            c.prepare_cached(&format!("SELECT {USER_COLS} FROM users WHERE username = ?1"))?
                .query_row([name], user_row)
                .optional()
        })
        .await
    }

    async fn users(&self) -> StoreResult<Vec<UserRecord>> {
        self.scan(|c| {
            c.prepare_cached(&format!("SELECT {USER_COLS} FROM users ORDER BY created_at, username"))?
                .query_map([], user_row)?
                .collect()
        })
        .await
    }

    async fn remove_user(&self, username: &str, now: UnixTime) -> StoreResult<Option<EndedSessions>> {
        let name = username.to_owned();
        self.write(move |c| {
            let tx = c.savepoint()?;
            let id: Option<String> =
                tx.query_row("SELECT id FROM users WHERE username = ?1", [&name], |r| r.get(0)).optional()?;
            let Some(id) = id else { return Ok(None) };
            // Sessions first: their clients are read from the grants deleted next.
            let ended = end_user_sessions(&tx, &id, None, now)?;
            for sql in [
                "DELETE FROM grants WHERE user_id = ?1",
                "DELETE FROM codes WHERE user_id = ?1",
                "DELETE FROM consents WHERE user_id = ?1",
                // A removed user's second factors go with them.
                "DELETE FROM totp_secrets WHERE user_id = ?1",
                "DELETE FROM recovery_codes WHERE user_id = ?1",
                "DELETE FROM partial_sign_ins WHERE user_id = ?1",
                "DELETE FROM users WHERE id = ?1",
            ] {
                tx.execute(sql, [&id])?;
            }
            tx.commit()?;
            Ok(Some(ended))
        })
        .await
    }

    async fn set_password_hash(
        &self,
        username: &str,
        hash: &str,
        revoke_grants: bool,
        keep_sid: Option<&str>,
        now: UnixTime,
    ) -> StoreResult<Option<UserRevocation>> {
        let (name, hash, keep) = (username.to_owned(), hash.to_owned(), keep_sid.map(str::to_owned));
        self.write(move |c| {
            let tx = c.savepoint()?;
            let id: Option<String> =
                tx.query_row("SELECT id FROM users WHERE username = ?1", [&name], |r| r.get(0)).optional()?;
            let Some(id) = id else { return Ok(None) };
            tx.execute("UPDATE users SET password_hash = ?2 WHERE id = ?1", params![id, hash])?;
            let out = end_user_access(&tx, id, revoke_grants, keep.as_deref(), now)?;
            tx.commit()?;
            Ok(Some(out))
        })
        .await
    }

    async fn revoke_user_tokens(&self, username: &str, now: UnixTime) -> StoreResult<Option<UserRevocation>> {
        let name = username.to_owned();
        self.write(move |c| {
            let tx = c.savepoint()?;
            let id: Option<String> =
                tx.query_row("SELECT id FROM users WHERE username = ?1", [&name], |r| r.get(0)).optional()?;
            let Some(id) = id else { return Ok(None) };
            let out = end_user_access(&tx, id, true, None, now)?;
            tx.commit()?;
            Ok(Some(out))
        })
        .await
    }

    async fn replace_private_key(&self, kid: &str, old: &str, new: &str) -> StoreResult<bool> {
        let (kid, old, new) = (kid.to_owned(), old.to_owned(), new.to_owned());
        self.write(move |c| {
            // The replaced value was a private key in clear: zero the bytes SQLite frees instead of
            // leaving them in free pages of the file.
            c.pragma_update(None, "secure_delete", "ON")?;
            let n = c.execute(
                "UPDATE signing_keys SET private_pkcs8 = ?3 WHERE kid = ?1 AND private_pkcs8 = ?2",
                params![kid, old, new],
            );
            c.pragma_update(None, "secure_delete", "OFF")?;
            Ok(n? == 1)
        })
        .await
    }

    async fn signing_keys(&self) -> StoreResult<Vec<KeyRecord>> {
        self.scan(|c| {
            c.prepare_cached(&format!("SELECT {KEY_COLS} FROM signing_keys ORDER BY created_at, kid"))?
                .query_map([], key_row)?
                .collect()
        })
        .await
    }

    async fn insert_signing_key(&self, k: &KeyRecord) -> StoreResult<bool> {
        let k = k.clone();
        self.write(move |c| {
            // The writer's group transaction holds the write lock (BEGIN IMMEDIATE), so the check
            // and the insert are one step even against another process on the same file.
            let tx = c.savepoint()?;
            if k.active {
                let taken: bool = tx.query_row(
                    "SELECT EXISTS (SELECT 1 FROM signing_keys WHERE alg = ?1 AND active = 1)",
                    [&k.alg],
                    |r| r.get(0),
                )?;
                if taken {
                    return Ok(false);
                }
            }
            insert_key(&tx, &k)?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn rotate_signing_key(&self, key: &KeyRecord, now: UnixTime) -> StoreResult<()> {
        let k = key.clone();
        self.write(move |c| {
            let tx = c.savepoint()?;
            tx.execute(
                "UPDATE signing_keys SET active = 0, retired_at = ?2 WHERE alg = ?1 AND active = 1",
                params![k.alg, now],
            )?;
            insert_key(&tx, &k)?;
            tx.commit()
        })
        .await
    }

    async fn insert_pending(
        &self,
        id: &TokenHash,
        p: &PendingAuthorization,
        source: &str,
        now: UnixTime,
        limits: PendingLimits,
    ) -> StoreResult<bool> {
        let (id, data, exp, client) = (id.as_str().to_owned(), to_json(p)?, p.expires_at, p.client_id.to_string());
        let source = source.to_owned();
        let per_source = i64::try_from(limits.per_source).unwrap_or(i64::MAX);
        let per_client = i64::try_from(limits.per_client).unwrap_or(i64::MAX);
        self.write(move |c| {
            let tx = c.savepoint()?;
            let n: i64 = tx
                .prepare_cached(crate::purge_sql::PENDING_BY_SOURCE)?
                .query_row(params![source, now], |r| r.get(0))?;
            if n >= per_source {
                return Ok(false);
            }
            tx.prepare_cached(
                "INSERT INTO pending_authorizations (id_hash, data, expires_at, client_id, source)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![id, data, exp, client, source])?;
            tx.prepare_cached(
                "DELETE FROM pending_authorizations WHERE id_hash IN (
                   SELECT id_hash FROM pending_authorizations WHERE client_id = ?1
                   ORDER BY expires_at DESC LIMIT -1 OFFSET ?2)",
            )?
            .execute(params![client, per_client])?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn pending(&self, id: &TokenHash, now: UnixTime) -> StoreResult<Option<PendingAuthorization>> {
        let id = id.as_str().to_owned();
        self.lookup(move |c| {
            c.prepare_cached("SELECT data FROM pending_authorizations WHERE id_hash = ?1 AND expires_at > ?2")?
                .query_row(params![id, now], |r| json_col(r, 0))
                .optional()
        })
        .await
    }

    async fn remove_pending(&self, id: &TokenHash) -> StoreResult<bool> {
        let id = id.as_str().to_owned();
        self.write(move |c| c.prepare_cached("DELETE FROM pending_authorizations WHERE id_hash = ?1")?.execute([id]))
            .await
            .map(|n| n > 0)
    }

    async fn server_secret(&self, name: &str, fresh: &str, now: UnixTime) -> StoreResult<String> {
        let (name, fresh) = (name.to_owned(), fresh.to_owned());
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO server_secrets (name, secret, created_at) VALUES (?1, ?2, ?3) ON CONFLICT (name) DO NOTHING",
            )?
            .execute(params![name, fresh, now])?;
            c.prepare_cached("SELECT secret FROM server_secrets WHERE name = ?1")?.query_row([name], |r| r.get(0))
        })
        .await
    }

    async fn insert_session(&self, s: &SessionRecord, keep: u32) -> StoreResult<Option<EndedSessions>> {
        let s = s.clone();
        self.write(move |c| {
            let tx = c.savepoint()?;
            // The lock check and the insert are one statement, in the single writer's transaction.
            let inserted = tx
                .prepare_cached(
                    "INSERT INTO sessions (hash, sid, user_id, auth_time, expires_at, network, device, amr, acr)
                     SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9
                     WHERE NOT EXISTS (SELECT 1 FROM users WHERE id = $3 AND locked_at IS NOT NULL)",
                )?
                .execute(params![
                    s.hash.as_str(),
                    s.sid,
                    s.user_id,
                    s.auth_time,
                    s.expires_at,
                    s.meta.network,
                    s.meta.device,
                    s.authn.amr_text(),
                    s.authn.acr().as_str()
                ])?;
            if inserted == 0 {
                return Ok(None);
            }
            // The new session always stays, even beside one logged in within the same second: the
            // others beyond the newest `keep - 1` end.
            let evicted: Vec<String> = tx
                .prepare_cached(
                    "SELECT sid FROM sessions WHERE user_id = ?1 AND sid <> ?3
                     ORDER BY auth_time DESC, sid LIMIT -1 OFFSET ?2",
                )?
                .query_map(params![s.user_id, keep.saturating_sub(1), s.sid], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let mut ended = Vec::new();
            for sid in evicted {
                ended.extend(take_session(&tx, &sid, s.auth_time)?.0);
                tx.execute(
                    "UPDATE grants SET revoked_at = ?2 WHERE sid = ?1 AND offline = 0 AND revoked_at IS NULL",
                    params![sid, s.auth_time],
                )?;
            }
            tx.commit()?;
            Ok(Some(EndedSessions(ended)))
        })
        .await
    }

    async fn session(&self, hash: &TokenHash, now: UnixTime) -> StoreResult<Option<SessionRecord>> {
        let h = hash.as_str().to_owned();
        self.lookup(move |c| {
            c.prepare_cached(&format!("SELECT {SESSION_COLS} FROM sessions WHERE hash = ?1 AND expires_at > ?2"))?
                .query_row(params![h, now], session_row)
                .optional()
        })
        .await
    }

    async fn session_by_sid(&self, sid: &str, now: UnixTime) -> StoreResult<Option<SessionRecord>> {
        let sid = sid.to_owned();
        self.lookup(move |c| {
            c.prepare_cached(&format!("SELECT {SESSION_COLS} FROM sessions WHERE sid = ?1 AND expires_at > ?2"))?
                .query_row(params![sid, now], session_row)
                .optional()
        })
        .await
    }

    async fn remove_session(&self, hash: &TokenHash) -> StoreResult<()> {
        let h = hash.as_str().to_owned();
        self.write(move |c| c.execute("DELETE FROM sessions WHERE hash = ?1", [h])).await.map(|_| ())
    }

    async fn end_session(&self, sid: &str, now: UnixTime) -> StoreResult<EndedSessions> {
        let sid = sid.to_owned();
        self.write(move |c| {
            let tx = c.savepoint()?;
            let ended = take_session(&tx, &sid, now)?;
            // Refresh tokens without offline_access live only as long as the login session.
            tx.execute(
                "UPDATE grants SET revoked_at = ?2 WHERE sid = ?1 AND offline = 0 AND revoked_at IS NULL",
                params![sid, now],
            )?;
            tx.commit()?;
            Ok(ended)
        })
        .await
    }

    async fn consent(&self, user_id: &str, client_id: &ClientId) -> StoreResult<Option<ConsentRecord>> {
        let (u, cl) = (user_id.to_owned(), client_id.to_string());
        self.lookup(move |c| {
            c.prepare_cached(crate::account_sql::CONSENT)?.query_row(params![u, cl], consent_row).optional()
        })
        .await
    }

    async fn put_consent(&self, consent: &ConsentRecord) -> StoreResult<()> {
        let x = consent.clone();
        self.write(move |c| insert_consent(c, crate::account_sql::PUT_CONSENT, &x)).await.map(|_| ())
    }

    async fn insert_code(&self, code: &CodeRecord) -> StoreResult<()> {
        let k = code.clone();
        self.write(move |c| insert_code_row(c, &k)).await
    }

    async fn code(&self, hash: &TokenHash) -> StoreResult<Option<CodeRecord>> {
        let h = hash.as_str().to_owned();
        self.lookup(move |c| {
            c.prepare_cached(&format!("SELECT {CODE_COLS} FROM codes WHERE hash = ?1"))?
                .query_row([h], code_row)
                .optional()
        })
        .await
    }

    async fn redeem_code(&self, hash: &TokenHash, now: UnixTime, issue: &Issuance) -> StoreResult<Redeemed> {
        let (h, issue) = (hash.as_str().to_owned(), issue.clone());
        self.write(move |c| {
            let tx = c.savepoint()?;
            // The conditional update is the single point of truth for "used once".
            let won = tx
                .prepare_cached("UPDATE codes SET used_at = ?2, grant_id = ?3 WHERE hash = ?1 AND used_at IS NULL")?
                .execute(params![h, now, issue.grant.id])?
                == 1;
            if !won {
                let grant_id: Option<String> = tx
                    .prepare_cached("SELECT grant_id FROM codes WHERE hash = ?1")?
                    .query_row([&h], |r| r.get(0))
                    .optional()?
                    .flatten();
                return Ok(Redeemed::AlreadyUsed { grant_id });
            }
            insert_issuance(&tx, &issue)?;
            tx.commit()?;
            Ok(Redeemed::Issued)
        })
        .await
    }

    async fn insert_grant(&self, issue: &Issuance) -> StoreResult<()> {
        let issue = issue.clone();
        self.write(move |c| {
            let tx = c.savepoint()?;
            insert_issuance(&tx, &issue)?;
            tx.commit()
        })
        .await
    }

    async fn refresh_token(&self, hash: &TokenHash) -> StoreResult<Option<(RefreshRecord, GrantRecord)>> {
        let h = hash.as_str().to_owned();
        self.lookup(move |c| {
            c.prepare_cached(&format!(
                "SELECT r.hash, r.grant_id, r.scope, r.issued_at, r.expires_at, r.consumed_at, r.cached_response, {GRANT_COLS}
                 FROM refresh_tokens r JOIN grants g ON g.id = r.grant_id WHERE r.hash = ?1"
            ))?
            .query_row([h], |r| {
                Ok((
                    refresh_row(r)?,
                    grant_row(r, 7)?,
                ))
            })
            .optional()
        })
        .await
    }

    async fn rotate_refresh(
        &self,
        old: &TokenHash,
        now: UnixTime,
        next: &RefreshRecord,
        access: &AccessRecord,
        cached_response: &[u8],
    ) -> StoreResult<Rotated> {
        let (h, next, access, cached) =
            (old.as_str().to_owned(), next.clone(), access.clone(), cached_response.to_vec());
        self.write(move |c| {
            let tx = c.savepoint()?;
            let won = tx
                .prepare_cached(
                    "UPDATE refresh_tokens SET consumed_at = ?2, cached_response = ?3 WHERE hash = ?1 AND consumed_at IS NULL
                     AND EXISTS (SELECT 1 FROM grants g WHERE g.id = refresh_tokens.grant_id AND g.revoked_at IS NULL)",
                )?
                .execute(params![h, now, cached])?
                == 1;
            if !won {
                let (consumed_at, cached_response) = tx
                    .prepare_cached("SELECT consumed_at, cached_response FROM refresh_tokens WHERE hash = ?1")?
                    .query_row([&h], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?
                    .unwrap_or((None, None));
                return Ok(Rotated::AlreadyConsumed { consumed_at, cached_response });
            }
            insert_refresh(&tx, &next)?;
            insert_access(&tx, &access)?;
            tx.commit()?;
            Ok(Rotated::Rotated)
        })
        .await
    }

    async fn revoke_grant(&self, grant_id: &str, now: UnixTime) -> StoreResult<()> {
        let g = grant_id.to_owned();
        self.write(move |c| {
            c.execute("UPDATE grants SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL", params![g, now])
        })
        .await
        .map(|_| ())
    }

    async fn access_token(&self, jti: &str) -> StoreResult<Option<(AccessRecord, GrantRecord)>> {
        let j = jti.to_owned();
        self.lookup(move |c| {
            c.prepare_cached(&format!(
                "SELECT a.jti, a.grant_id, a.expires_at, a.revoked_at, {GRANT_COLS}
                 FROM access_tokens a JOIN grants g ON g.id = a.grant_id WHERE a.jti = ?1"
            ))?
            .query_row([j], |r| {
                Ok((
                    AccessRecord { jti: r.get(0)?, grant_id: r.get(1)?, expires_at: r.get(2)?, revoked_at: r.get(3)? },
                    grant_row(r, 4)?,
                ))
            })
            .optional()
        })
        .await
    }

    async fn revoke_access_token(&self, jti: &str, now: UnixTime) -> StoreResult<()> {
        let j = jti.to_owned();
        self.write(move |c| {
            c.execute("UPDATE access_tokens SET revoked_at = ?2 WHERE jti = ?1 AND revoked_at IS NULL", params![j, now])
        })
        .await
        .map(|_| ())
    }

    async fn throttle_state(&self, keys: &[String]) -> StoreResult<Vec<ThrottleRecord>> {
        let keys = keys.to_vec();
        self.lookup(move |c| throttle_rows(c, &keys)).await
    }

    async fn throttle_reserve(
        &self,
        rules: &[(String, latchkey_core::throttle::Rule)],
        now: UnixTime,
    ) -> StoreResult<Reservation> {
        let rules = rules.to_vec();
        // The single writer runs this closure alone, and across processes the write transaction
        // holds SQLite's lock: the read, the decision and the count are one atomic step.
        self.write(move |c| {
            let tx = c.savepoint()?;
            let keys: Vec<String> = rules.iter().map(|(k, _)| k.clone()).collect();
            let records = throttle_rows(&tx, &keys)?;
            let refused = records.iter().map(|r| r.refused).max().unwrap_or(0);
            let out = match latchkey_core::throttle::blocked_until(&records, &rules, now) {
                Some(until) => {
                    for k in &keys {
                        tx.prepare_cached("UPDATE login_throttle SET refused = refused + 1 WHERE key = ?1")?
                            .execute([k])?;
                    }
                    Reservation::Blocked { until, first: refused == 0 }
                }
                None => {
                    let forget = now - latchkey_core::throttle::FORGET_AFTER as UnixTime;
                    for k in &keys {
                        tx.prepare_cached(THROTTLE_COUNT_SQLITE)?.execute(params![k, now, forget])?;
                    }
                    Reservation::Reserved { refused_while_blocked: refused }
                }
            };
            tx.commit()?;
            Ok(out)
        })
        .await
    }

    async fn throttle_settle(&self, clear: &[String], refund: &[String]) -> StoreResult<()> {
        let (clear, refund) = (clear.to_vec(), refund.to_vec());
        self.write(move |c| {
            let tx = c.savepoint()?;
            for k in &clear {
                tx.prepare_cached("DELETE FROM login_throttle WHERE key = ?1")?.execute([k])?;
            }
            // A counter back at zero is no counter: deleted, so that successful logins leave no rows.
            for k in &refund {
                tx.prepare_cached("DELETE FROM login_throttle WHERE key = ?1 AND failures <= 1")?.execute([k])?;
                tx.prepare_cached("UPDATE login_throttle SET failures = failures - 1 WHERE key = ?1")?.execute([k])?;
            }
            tx.commit()
        })
        .await
    }

    async fn record_audit(&self, e: &AuditRecord) -> StoreResult<()> {
        let (e, detail) = (e.clone(), e.detail.to_string());
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO audit_events (at, event, user_id, client_id, ip, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![e.at, e.event, e.user_id, e.client_id, e.ip, detail])
        })
        .await
        .map(|_| ())
    }

    async fn audit_events(
        &self,
        since: Option<UnixTime>,
        user_id: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<AuditRecord>> {
        let user = user_id.map(str::to_owned);
        self.scan(move |c| {
            c.prepare_cached(
                "SELECT at, event, user_id, client_id, ip, detail FROM audit_events
                 WHERE at >= ?1 AND (?2 IS NULL OR user_id = ?2) ORDER BY at DESC, id DESC LIMIT ?3",
            )?
            .query_map(params![since.unwrap_or(i64::MIN), user, limit], audit_row)?
            .collect()
        })
        .await
    }

    async fn purge_expired(&self, now: UnixTime, policy: &PurgePolicy) -> StoreResult<TableCounts> {
        let policy = *policy;
        self.write(move |c| sqlite_maint::purge(c, now, &policy)).await
    }

    async fn table_counts(&self) -> StoreResult<TableCounts> {
        self.scan(sqlite_maint::counts).await
    }

    async fn export(&self) -> StoreResult<Snapshot> {
        self.scan(sqlite_maint::export).await
    }

    async fn import(&self, snapshot: &Snapshot) -> StoreResult<()> {
        let snapshot = snapshot.clone();
        self.write(move |c| sqlite_maint::import(c, &snapshot)).await
    }
}
