//! `Store` on PostgreSQL, for deployments of several instances sharing one database.
//!
//! A connection pool (deadpool) with per-connection prepared-statement caches. Every transaction
//! runs at READ COMMITTED, chosen explicitly: the one-time guarantees are conditional UPDATEs
//! (`… WHERE used_at IS NULL`, `… WHERE consumed_at IS NULL`). A concurrent call that finds the row
//! locked waits for the winner's commit, re-reads the row, updates nothing, and its next statement
//! sees what the winner stored. So exactly one call wins and the losers read the winner's reply,
//! across any number of instances, without serialization failures to handle. Deadlocks (and
//! serialization failures, should a server force a stricter isolation) are retried a few times,
//! never surfaced as errors to a request.

use std::time::Duration;

use anyhow::{Context, anyhow};
use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use latchkey_core::UnixTime;
use latchkey_core::authn::Authentication;
use latchkey_core::store::*;
use latchkey_proto::{ClientId, TokenHash};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{IsolationLevel, NoTls, Row};

use crate::account_sql::SESSION_COLS;
use crate::postgres_schema::MIGRATIONS;
use crate::postgres_session_end::{end_user_sessions, take_session};
use crate::sqlite::{CODE_COLS, GRANT_COLS, USER_COLS};
// The row decoders live in their own file; the other PostgreSQL modules reach them through here.
pub(crate) use crate::postgres_rows::*;

/// Connections per instance. PostgreSQL's default `max_connections` is 100: room for several
/// instances plus the admin commands.
const POOL_SIZE: usize = 16;
/// Attempts for a transaction that hit a deadlock or a serialization failure.
pub(crate) const ATTEMPTS: u32 = 5;
/// Advisory-lock keys ("latchkey" in ASCII, then +1, +2): migrations, key changes, the purge.
const MIGRATION_LOCK: i64 = 0x6c61_7463_686b_6579;
const KEYS_LOCK: i64 = MIGRATION_LOCK + 1;
pub(crate) const PURGE_LOCK: i64 = MIGRATION_LOCK + 2;

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PostgresStore")
    }
}

/// Runs `$op` (an expression giving a fresh future each time) again on a deadlock or a
/// serialization failure: each attempt is a whole transaction, so a retry is safe.
macro_rules! retrying {
    ($op:expr) => {{
        let mut attempt = 1;
        loop {
            match $op.await {
                Err(e) if attempt < ATTEMPTS && retryable(&e) => {
                    tracing::debug!(attempt, error = %e, "retrying a PostgreSQL transaction");
                    tokio::time::sleep(Duration::from_millis(2u64 << attempt)).await;
                    attempt += 1;
                }
                other => break other.map_err(StoreError::Backend),
            }
        }
    }};
}
pub(crate) use retrying;

fn throttle_row(r: &Row) -> anyhow::Result<ThrottleRecord> {
    let failures: i32 = r.try_get(1)?;
    let refused: i64 = r.try_get(3)?;
    Ok(ThrottleRecord {
        key: r.try_get(0)?,
        failures: u32::try_from(failures).unwrap_or(0),
        last_failure: r.try_get(2)?,
        refused: u64::try_from(refused).unwrap_or(0),
    })
}

pub(crate) fn retryable(e: &anyhow::Error) -> bool {
    e.downcast_ref::<tokio_postgres::Error>()
        .and_then(|e| e.code())
        .is_some_and(|c| *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE)
}

pub(crate) fn is_unique_violation(e: &anyhow::Error) -> bool {
    e.downcast_ref::<tokio_postgres::Error>().and_then(|e| e.code()).is_some_and(|c| *c == SqlState::UNIQUE_VIOLATION)
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user@host:port/db`) and applies pending migrations. The
    /// migrations hold an advisory lock, so instances starting together apply them once.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| anyhow!("invalid PostgreSQL URL: {e}"))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("latchkey");
        }
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(30)))
            .create_timeout(Some(Duration::from_secs(10)))
            .build()
            .context("building the PostgreSQL connection pool")?;
        let store = Self { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn conn(&self) -> anyhow::Result<Object> {
        self.pool.get().await.map_err(|e| anyhow!("cannot connect to PostgreSQL: {e}"))
    }

    /// Applies pending migrations; returns the schema version.
    pub async fn migrate(&self) -> anyhow::Result<usize> {
        let mut c = self.conn().await?;
        let tx = c.build_transaction().isolation_level(IsolationLevel::ReadCommitted).start().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS latchkey_schema (version INTEGER NOT NULL)").await?;
        let version = tx.query_opt("SELECT version FROM latchkey_schema", &[]).await?.map(|r| r.get::<_, i32>(0));
        let current = version.unwrap_or(0).max(0) as usize;
        if current > MIGRATIONS.len() {
            return Err(anyhow!(
                "the database schema (version {current}) is newer than this latchkey binary knows ({}); upgrade latchkey",
                MIGRATIONS.len()
            ));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
            tx.batch_execute(sql).await.with_context(|| format!("PostgreSQL migration {}", i + 1))?;
            tracing::info!(version = i + 1, "applied database migration");
        }
        let latest = MIGRATIONS.len() as i32;
        if version.is_none() {
            tx.execute("INSERT INTO latchkey_schema (version) VALUES ($1)", &[&latest]).await?;
        } else {
            tx.execute("UPDATE latchkey_schema SET version = $1", &[&latest]).await?;
        }
        tx.commit().await?;
        Ok(MIGRATIONS.len())
    }

    pub(crate) async fn opt<T>(
        &self,
        sql: &str,
        p: Params<'_>,
        f: impl Fn(&Row) -> anyhow::Result<T>,
    ) -> StoreResult<Option<T>> {
        let run = async {
            let c = self.conn().await?;
            let stmt = c.prepare_cached(sql).await?;
            c.query_opt(&stmt, p).await?.as_ref().map(&f).transpose()
        };
        run.await.map_err(StoreError::Backend)
    }

    pub(crate) async fn all<T>(
        &self,
        sql: &str,
        p: Params<'_>,
        f: impl Fn(&Row) -> anyhow::Result<T>,
    ) -> StoreResult<Vec<T>> {
        let run = async {
            let c = self.conn().await?;
            let stmt = c.prepare_cached(sql).await?;
            c.query(&stmt, p).await?.iter().map(&f).collect::<anyhow::Result<Vec<T>>>()
        };
        run.await.map_err(StoreError::Backend)
    }

    pub(crate) async fn exec(&self, sql: &str, p: Params<'_>) -> anyhow::Result<u64> {
        let c = self.conn().await?;
        let stmt = c.prepare_cached(sql).await?;
        Ok(c.execute(&stmt, p).await?)
    }

    /// Runs `statements` in one READ COMMITTED transaction; returns the rows each touched.
    pub(crate) async fn tx_exec(&self, statements: &[(&str, Params<'_>)]) -> anyhow::Result<Vec<u64>> {
        let mut c = self.conn().await?;
        let tx = c.build_transaction().isolation_level(IsolationLevel::ReadCommitted).start().await?;
        let mut out = Vec::with_capacity(statements.len());
        for (sql, p) in statements {
            let stmt = tx.prepare_cached(sql).await?;
            out.push(tx.execute(&stmt, p).await?);
        }
        tx.commit().await?;
        Ok(out)
    }

    pub(crate) async fn begin(c: &mut Object) -> anyhow::Result<deadpool_postgres::Transaction<'_>> {
        Ok(c.build_transaction().isolation_level(IsolationLevel::ReadCommitted).start().await?)
    }

    pub(crate) async fn object(&self) -> anyhow::Result<Object> {
        self.conn().await
    }

    async fn redeem_once(&self, h: &str, now: UnixTime, issue: &Issuance) -> anyhow::Result<Redeemed> {
        let mut c = self.conn().await?;
        let tx = Self::begin(&mut c).await?;
        // The single point of truth for "used once": a concurrent redemption waits here for our
        // commit, then finds used_at set and updates nothing.
        let stmt = tx
            .prepare_cached("UPDATE codes SET used_at = $2, grant_id = $3 WHERE hash = $1 AND used_at IS NULL")
            .await?;
        if tx.execute(&stmt, &[&h, &now, &issue.grant.id]).await? != 1 {
            // A new statement, a new snapshot: it sees the winner's committed grant id.
            let stmt = tx.prepare_cached("SELECT grant_id FROM codes WHERE hash = $1").await?;
            let grant_id = tx.query_opt(&stmt, &[&h]).await?.and_then(|r| r.get::<_, Option<String>>(0));
            tx.commit().await?;
            return Ok(Redeemed::AlreadyUsed { grant_id });
        }
        insert_issuance(&tx, issue).await?;
        tx.commit().await?;
        Ok(Redeemed::Issued)
    }

    async fn rotate_once(
        &self,
        h: &str,
        now: UnixTime,
        next: &RefreshRecord,
        access: &AccessRecord,
        cached: &[u8],
    ) -> anyhow::Result<Rotated> {
        let mut c = self.conn().await?;
        let tx = Self::begin(&mut c).await?;
        let stmt = tx
            .prepare_cached(
                "UPDATE refresh_tokens SET consumed_at = $2, cached_response = $3 WHERE hash = $1 AND consumed_at IS NULL
                 AND EXISTS (SELECT 1 FROM grants g WHERE g.id = refresh_tokens.grant_id AND g.revoked_at IS NULL)",
            )
            .await?;
        if tx.execute(&stmt, &[&h, &now, &cached]).await? != 1 {
            // The winner has committed (we waited on its row lock): read its reply.
            let stmt =
                tx.prepare_cached("SELECT consumed_at, cached_response FROM refresh_tokens WHERE hash = $1").await?;
            let (consumed_at, cached_response) =
                tx.query_opt(&stmt, &[&h]).await?.map(|r| (r.get(0), r.get(1))).unwrap_or((None, None));
            tx.commit().await?;
            return Ok(Rotated::AlreadyConsumed { consumed_at, cached_response });
        }
        insert_refresh(&tx, next).await?;
        insert_access(&tx, access).await?;
        tx.commit().await?;
        Ok(Rotated::Rotated)
    }

    async fn insert_key_once(&self, k: &KeyRecord) -> anyhow::Result<bool> {
        let mut c = self.conn().await?;
        let tx = Self::begin(&mut c).await?;
        // Key changes are rare: one at a time across all instances keeps "one active key per
        // algorithm" true without a unique-violation dance.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&KEYS_LOCK]).await?;
        if k.active {
            let taken: bool = tx
                .query_one("SELECT EXISTS (SELECT 1 FROM signing_keys WHERE alg = $1 AND active)", &[&k.alg])
                .await?
                .get(0);
            if taken {
                return Ok(false);
            }
        }
        insert_key(&tx, k).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn rotate_key_once(&self, k: &KeyRecord, now: UnixTime) -> anyhow::Result<()> {
        let mut c = self.conn().await?;
        let tx = Self::begin(&mut c).await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&KEYS_LOCK]).await?;
        tx.execute(
            "UPDATE signing_keys SET active = FALSE, retired_at = $2 WHERE alg = $1 AND active",
            &[&k.alg, &now],
        )
        .await?;
        insert_key(&tx, k).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn insert_session_once(&self, s: &SessionRecord, keep: u32) -> anyhow::Result<Option<EndedSessions>> {
        let mut c = self.conn().await?;
        let tx = Self::begin(&mut c).await?;
        // FOR SHARE: a concurrent `user lock` (which updates this row, then deletes the user's
        // sessions) either waits for this insert to commit, and then deletes its session too, or
        // committed first, and then this reads the lock. A missing user is no lock.
        let row = tx.query_opt("SELECT locked_at FROM users WHERE id = $1 FOR SHARE", &[&s.user_id]).await?;
        if row.is_some_and(|r| r.get::<_, Option<i64>>(0).is_some()) {
            return Ok(None);
        }
        insert_session_row(&tx, s).await?;
        // The user's sessions beyond the newest `keep` end, as at logout; the new one always stays,
        // even beside one logged in within the same second.
        let evicted = tx
            .query(
                "SELECT sid FROM sessions WHERE user_id = $1 AND sid <> $3 ORDER BY auth_time DESC, sid OFFSET $2",
                &[&s.user_id, &i64::from(keep.saturating_sub(1)), &s.sid],
            )
            .await?;
        let mut ended = Vec::new();
        for row in evicted {
            let sid: String = row.try_get(0)?;
            ended.extend(take_session(&tx, &sid, s.auth_time).await?.0);
            tx.execute(
                "UPDATE grants SET revoked_at = $2 WHERE sid = $1 AND NOT offline AND revoked_at IS NULL",
                &[&sid, &s.auth_time],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(Some(EndedSessions(ended)))
    }

    async fn throttle_reserve_once(
        &self,
        rules: &[(String, latchkey_core::throttle::Rule)],
        now: UnixTime,
    ) -> anyhow::Result<Reservation> {
        // Keys in one order everywhere, so that two transactions locking overlapping keys cannot
        // deadlock.
        let mut keys: Vec<String> = rules.iter().map(|(k, _)| k.clone()).collect();
        keys.sort();
        let mut c = self.conn().await?;
        let tx = Self::begin(&mut c).await?;
        // Every key gets a row, then every row is locked: a concurrent attempt on any of these keys,
        // from this instance or another, waits here until this one has counted (finding 1).
        let create = tx
            .prepare_cached(
                "INSERT INTO login_throttle (key, failures, last_failure, refused) VALUES ($1, 0, $2, 0)
                 ON CONFLICT (key) DO NOTHING",
            )
            .await?;
        for k in &keys {
            tx.execute(&create, &[k, &now]).await?;
        }
        let rows = tx
            .query(
                "SELECT key, failures, last_failure, refused FROM login_throttle WHERE key = ANY($1) ORDER BY key
                 FOR UPDATE",
                &[&keys],
            )
            .await?;
        let records = rows.iter().map(throttle_row).collect::<anyhow::Result<Vec<_>>>()?;
        let refused = records.iter().map(|r| r.refused).max().unwrap_or(0);
        let out = match latchkey_core::throttle::blocked_until(&records, rules, now) {
            Some(until) => {
                tx.execute("UPDATE login_throttle SET refused = refused + 1 WHERE key = ANY($1)", &[&keys]).await?;
                Reservation::Blocked { until, first: refused == 0 }
            }
            None => {
                let forget = now - latchkey_core::throttle::FORGET_AFTER as UnixTime;
                tx.execute(
                    "UPDATE login_throttle SET
                       failures = CASE WHEN last_failure < $3 THEN 1 ELSE failures + 1 END,
                       last_failure = $2, refused = 0
                     WHERE key = ANY($1)",
                    &[&keys, &now, &forget],
                )
                .await?;
                Reservation::Reserved { refused_while_blocked: refused }
            }
        };
        tx.commit().await?;
        Ok(out)
    }

    async fn insert_pending_once(
        &self,
        id: &TokenHash,
        p: &PendingAuthorization,
        source: &str,
        now: UnixTime,
        limits: PendingLimits,
    ) -> anyhow::Result<bool> {
        let data = to_json(p)?;
        let mut c = self.conn().await?;
        let tx = Self::begin(&mut c).await?;
        // One source's requests are counted and inserted under one lock, across instances.
        tx.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))", &[&source]).await?;
        let n: i64 = tx.query_one(crate::purge_sql::PENDING_BY_SOURCE.trim(), &[&source, &now]).await?.try_get(0)?;
        if n.max(0) as u64 >= limits.per_source {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO pending_authorizations (id_hash, data, expires_at, client_id, source) VALUES ($1, $2, $3, $4, $5)",
            &[&id.as_str(), &data, &p.expires_at, &p.client_id.as_str(), &source],
        )
        .await?;
        let per_client = i64::try_from(limits.per_client).unwrap_or(i64::MAX);
        tx.execute(
            "DELETE FROM pending_authorizations WHERE id_hash IN (
               SELECT id_hash FROM pending_authorizations WHERE client_id = $1
               ORDER BY expires_at DESC OFFSET $2)",
            &[&p.client_id.as_str(), &per_client],
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn end_session_once(&self, sid: &str, now: UnixTime) -> anyhow::Result<EndedSessions> {
        let mut c = self.conn().await?;
        let tx = Self::begin(&mut c).await?;
        let ended = take_session(&tx, sid, now).await?;
        // Refresh tokens without offline_access live only as long as the login session.
        tx.execute(
            "UPDATE grants SET revoked_at = $2 WHERE sid = $1 AND NOT offline AND revoked_at IS NULL",
            &[&sid, &now],
        )
        .await?;
        tx.commit().await?;
        Ok(ended)
    }

    /// One transaction: sets the password hash (if given), ends the user's sessions (queueing their
    /// logout tokens) and, with `revoke`, revokes their live grants (a revoked grant stops its refresh family at `/token`
    /// and its access tokens at userinfo and introspection) and deletes their unredeemed codes,
    /// which would otherwise mint a new grant within their minute.
    async fn end_user_access_once(
        &self,
        name: &str,
        hash: Option<&str>,
        revoke: bool,
        keep_sid: Option<&str>,
        now: UnixTime,
    ) -> anyhow::Result<Option<UserRevocation>> {
        let mut c = self.conn().await?;
        let tx = Self::begin(&mut c).await?;
        // FOR UPDATE: a concurrent `user remove` or password change waits for this one.
        let Some(row) = tx.query_opt("SELECT id FROM users WHERE username = $1 FOR UPDATE", &[&name]).await? else {
            return Ok(None);
        };
        let id: String = row.get(0);
        if let Some(hash) = hash {
            tx.execute("UPDATE users SET password_hash = $2 WHERE id = $1", &[&id, &hash]).await?;
        }
        let ended = end_user_sessions(&tx, &id, keep_sid, now).await?;
        let mut grants_revoked = 0;
        if revoke {
            grants_revoked = tx
                .execute("UPDATE grants SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL", &[&id, &now])
                .await?;
            tx.execute("DELETE FROM codes WHERE user_id = $1 AND used_at IS NULL", &[&id]).await?;
        }
        tx.commit().await?;
        Ok(Some(UserRevocation { user_id: id, sessions_ended: ended.len() as u64, grants_revoked, ended }))
    }

    async fn remove_user_once(&self, name: &str, now: UnixTime) -> anyhow::Result<Option<EndedSessions>> {
        let mut c = self.conn().await?;
        let tx = Self::begin(&mut c).await?;
        let Some(row) = tx.query_opt("SELECT id FROM users WHERE username = $1 FOR UPDATE", &[&name]).await? else {
            return Ok(None);
        };
        let id: String = row.get(0);
        // Sessions first: their clients are read from the grants deleted next.
        let ended = end_user_sessions(&tx, &id, None, now).await?;
        for sql in [
            "DELETE FROM grants WHERE user_id = $1",
            "DELETE FROM codes WHERE user_id = $1",
            "DELETE FROM consents WHERE user_id = $1",
            // A removed user's second factors go with them (a new user of the same name starts clean).
            "DELETE FROM totp_secrets WHERE user_id = $1",
            "DELETE FROM recovery_codes WHERE user_id = $1",
            "DELETE FROM partial_sign_ins WHERE user_id = $1",
            "DELETE FROM users WHERE id = $1",
        ] {
            tx.execute(sql, &[&id]).await?;
        }
        tx.commit().await?;
        Ok(Some(ended))
    }
}

pub(crate) const KEY_COLS: &str = "kid, alg, private_pkcs8, created_at, active, retired_at";
pub(crate) const REFRESH_COLS: &str = "hash, grant_id, scope, issued_at, expires_at, consumed_at, cached_response";

pub(crate) async fn insert_key(tx: &deadpool_postgres::Transaction<'_>, k: &KeyRecord) -> anyhow::Result<()> {
    let stmt =
        tx.prepare_cached(&format!("INSERT INTO signing_keys ({KEY_COLS}) VALUES ($1, $2, $3, $4, $5, $6)")).await?;
    tx.execute(&stmt, &[&k.kid, &k.alg, &k.private_pkcs8_b64, &k.created_at, &k.active, &k.retired_at]).await?;
    Ok(())
}

pub(crate) async fn insert_access(tx: &deadpool_postgres::Transaction<'_>, a: &AccessRecord) -> anyhow::Result<()> {
    let stmt = tx
        .prepare_cached("INSERT INTO access_tokens (jti, grant_id, expires_at, revoked_at) VALUES ($1, $2, $3, $4)")
        .await?;
    tx.execute(&stmt, &[&a.jti, &a.grant_id, &a.expires_at, &a.revoked_at]).await?;
    Ok(())
}

pub(crate) async fn insert_grant_row(tx: &deadpool_postgres::Transaction<'_>, g: &GrantRecord) -> anyhow::Result<()> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO grants (id, client_id, user_id, scope, sid, offline, auth_time, created_at, expires_at, revoked_at, resource, amr, acr, claims, dpop_jkt)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &g.id,
            &g.client_id.as_str(),
            &g.user_id,
            &g.scope.to_string(),
            &g.sid,
            &g.offline,
            &g.auth_time,
            &g.created_at,
            &g.expires_at,
            &g.revoked_at,
            &g.resource.as_ref().map(|r| r.as_str()),
            &g.authn.as_ref().map(Authentication::amr_text),
            &g.authn.as_ref().map(|a| a.acr().as_str()),
            &crate::sqlite::claims_json(&g.claims),
            &g.dpop_jkt,
        ],
    )
    .await?;
    Ok(())
}

pub(crate) async fn insert_refresh(tx: &deadpool_postgres::Transaction<'_>, r: &RefreshRecord) -> anyhow::Result<()> {
    let stmt = tx
        .prepare_cached(&format!("INSERT INTO refresh_tokens ({REFRESH_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"))
        .await?;
    tx.execute(
        &stmt,
        &[
            &r.hash.as_str(),
            &r.grant_id,
            &r.scope.to_string(),
            &r.issued_at,
            &r.expires_at,
            &r.consumed_at,
            &r.cached_response,
        ],
    )
    .await?;
    Ok(())
}

pub(crate) async fn insert_code_row(tx: &deadpool_postgres::Transaction<'_>, k: &CodeRecord) -> anyhow::Result<()> {
    let stmt = tx
        .prepare_cached(&format!(
            "INSERT INTO codes ({CODE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
        ))
        .await?;
    tx.execute(
        &stmt,
        &[
            &k.hash.as_str(),
            &k.client_id.as_str(),
            &k.user_id,
            &k.redirect_uri.as_str(),
            &k.scope.to_string(),
            &k.code_challenge.as_str(),
            &k.nonce.as_ref().map(|n| n.as_str()),
            &k.sid,
            &k.auth_time,
            &k.expires_at,
            &k.used_at,
            &k.grant_id,
            &k.resource.as_ref().map(|r| r.as_str()),
            &k.authn.amr_text(),
            &k.authn.acr().as_str(),
            &crate::sqlite::claims_json(&k.claims),
            &k.dpop_jkt,
        ],
    )
    .await?;
    Ok(())
}

/// A grant with its first tokens, inside the caller's transaction.
pub(crate) async fn insert_issuance(tx: &deadpool_postgres::Transaction<'_>, issue: &Issuance) -> anyhow::Result<()> {
    insert_grant_row(tx, &issue.grant).await?;
    if let Some(r) = &issue.refresh {
        insert_refresh(tx, r).await?;
    }
    insert_access(tx, &issue.access).await
}

fn to_json<T: serde::Serialize>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Backend(e.into()))
}

/// The values of `INSERT INTO users ({USER_COLS})`, in column order; `profile` is the JSON of
/// `u.profile`.
pub(crate) fn user_params<'a>(u: &'a UserRecord, profile: &'a String) -> [&'a (dyn ToSql + Sync); 12] {
    [
        &u.id,
        &u.username,
        &u.email,
        &u.email_verified,
        &u.name,
        &u.password_hash,
        &u.created_at,
        &u.phone_number,
        &u.address,
        profile,
        &u.updated_at,
        &u.locked_at,
    ]
}

/// `INSERT INTO users`, every column.
pub(crate) fn insert_user_sql() -> String {
    format!("INSERT INTO users ({USER_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)")
}

#[async_trait]
impl Store for PostgresStore {
    async fn insert_client(&self, client: &ClientRecord) -> StoreResult<()> {
        let data = to_json(client)?;
        self.exec(
            "INSERT INTO clients (client_id, data, created_at) VALUES ($1, $2, $3)",
            &[&client.client_id.as_str(), &data, &client.created_at],
        )
        .await
        .map(|_| ())
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::AlreadyExists("a client with this client_id")
            } else {
                StoreError::Backend(e)
            }
        })
    }

    async fn client(&self, id: &ClientId) -> StoreResult<Option<ClientRecord>> {
        self.opt("SELECT data FROM clients WHERE client_id = $1", &[&id.as_str()], |r| json_of(r, 0)).await
    }

    async fn clients(&self) -> StoreResult<Vec<ClientRecord>> {
        self.all("SELECT data FROM clients ORDER BY created_at, client_id", &[], |r| json_of(r, 0)).await
    }

    async fn remove_client(&self, id: &ClientId) -> StoreResult<bool> {
        let id = id.as_str();
        let counts = retrying!(self.tx_exec(&[
            ("DELETE FROM clients WHERE client_id = $1", &[&id]),
            // Everything issued to the client goes with it.
            ("DELETE FROM grants WHERE client_id = $1", &[&id]),
            ("DELETE FROM codes WHERE client_id = $1", &[&id]),
            ("DELETE FROM consents WHERE client_id = $1", &[&id]),
            (crate::device_sql::DELETE_FOR_CLIENT, &[&id]),
        ]))?;
        Ok(counts.first().is_some_and(|n| *n > 0))
    }

    async fn insert_user(&self, u: &UserRecord) -> StoreResult<()> {
        let profile = serde_json::to_string(&u.profile).map_err(|e| StoreError::Backend(e.into()))?;
        self.exec(&insert_user_sql(), &user_params(u, &profile)).await.map(|_| ()).map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::AlreadyExists("a user with this username")
            } else {
                StoreError::Backend(e)
            }
        })
    }

    async fn user(&self, id: &str) -> StoreResult<Option<UserRecord>> {
        self.opt(&format!("SELECT {USER_COLS} FROM users WHERE id = $1"), &[&id], user_row).await
    }

    async fn user_by_username(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        self.opt(&format!("SELECT {USER_COLS} FROM users WHERE username = $1"), &[&username], user_row).await
    }

    async fn users(&self) -> StoreResult<Vec<UserRecord>> {
        self.all(&format!("SELECT {USER_COLS} FROM users ORDER BY created_at, username"), &[], user_row).await
    }

    async fn remove_user(&self, username: &str, now: UnixTime) -> StoreResult<Option<EndedSessions>> {
        retrying!(self.remove_user_once(username, now))
    }

    async fn set_password_hash(
        &self,
        username: &str,
        hash: &str,
        revoke_grants: bool,
        keep_sid: Option<&str>,
        now: UnixTime,
    ) -> StoreResult<Option<UserRevocation>> {
        retrying!(self.end_user_access_once(username, Some(hash), revoke_grants, keep_sid, now))
    }

    async fn revoke_user_tokens(&self, username: &str, now: UnixTime) -> StoreResult<Option<UserRevocation>> {
        retrying!(self.end_user_access_once(username, None, true, None, now))
    }

    async fn replace_private_key(&self, kid: &str, old: &str, new: &str) -> StoreResult<bool> {
        self.exec(
            "UPDATE signing_keys SET private_pkcs8 = $3 WHERE kid = $1 AND private_pkcs8 = $2",
            &[&kid, &old, &new],
        )
        .await
        .map(|n| n == 1)
        .map_err(StoreError::Backend)
    }

    async fn signing_keys(&self) -> StoreResult<Vec<KeyRecord>> {
        self.all(&format!("SELECT {KEY_COLS} FROM signing_keys ORDER BY created_at, kid"), &[], key_row).await
    }

    async fn insert_signing_key(&self, key: &KeyRecord) -> StoreResult<bool> {
        retrying!(self.insert_key_once(key))
    }

    async fn rotate_signing_key(&self, key: &KeyRecord, now: UnixTime) -> StoreResult<()> {
        retrying!(self.rotate_key_once(key, now))
    }

    async fn insert_pending(
        &self,
        id: &TokenHash,
        p: &PendingAuthorization,
        source: &str,
        now: UnixTime,
        limits: PendingLimits,
    ) -> StoreResult<bool> {
        retrying!(self.insert_pending_once(id, p, source, now, limits))
    }

    async fn pending(&self, id: &TokenHash, now: UnixTime) -> StoreResult<Option<PendingAuthorization>> {
        self.opt(
            "SELECT data FROM pending_authorizations WHERE id_hash = $1 AND expires_at > $2",
            &[&id.as_str(), &now],
            |r| json_of(r, 0),
        )
        .await
    }

    async fn remove_pending(&self, id: &TokenHash) -> StoreResult<bool> {
        self.exec("DELETE FROM pending_authorizations WHERE id_hash = $1", &[&id.as_str()])
            .await
            .map(|n| n > 0)
            .map_err(StoreError::Backend)
    }

    async fn server_secret(&self, name: &str, fresh: &str, now: UnixTime) -> StoreResult<String> {
        // The first instance to ask stores its candidate; every instance then reads the same one.
        self.exec(
            "INSERT INTO server_secrets (name, secret, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
            &[&name, &fresh, &now],
        )
        .await
        .map_err(StoreError::Backend)?;
        self.opt("SELECT secret FROM server_secrets WHERE name = $1", &[&name], |r| Ok(r.try_get::<_, String>(0)?))
            .await?
            .ok_or_else(|| StoreError::Backend(anyhow!("the server secret {name} vanished")))
    }

    async fn insert_session(&self, s: &SessionRecord, keep: u32) -> StoreResult<Option<EndedSessions>> {
        retrying!(self.insert_session_once(s, keep))
    }

    async fn session(&self, hash: &TokenHash, now: UnixTime) -> StoreResult<Option<SessionRecord>> {
        let sql = format!("SELECT {SESSION_COLS} FROM sessions WHERE hash = $1 AND expires_at > $2");
        self.opt(&sql, &[&hash.as_str(), &now], session_row).await
    }

    async fn session_by_sid(&self, sid: &str, now: UnixTime) -> StoreResult<Option<SessionRecord>> {
        let sql = format!("SELECT {SESSION_COLS} FROM sessions WHERE sid = $1 AND expires_at > $2");
        self.opt(&sql, &[&sid, &now], session_row).await
    }

    async fn remove_session(&self, hash: &TokenHash) -> StoreResult<()> {
        self.exec("DELETE FROM sessions WHERE hash = $1", &[&hash.as_str()])
            .await
            .map(|_| ())
            .map_err(StoreError::Backend)
    }

    async fn end_session(&self, sid: &str, now: UnixTime) -> StoreResult<EndedSessions> {
        retrying!(self.end_session_once(sid, now))
    }

    async fn consent(&self, user_id: &str, client_id: &ClientId) -> StoreResult<Option<ConsentRecord>> {
        self.opt(crate::account_sql::CONSENT, &[&user_id, &client_id.as_str()], consent_row).await
    }

    async fn put_consent(&self, c: &ConsentRecord) -> StoreResult<()> {
        let (scope, claims) = (c.scope.to_string(), crate::account_sql::claims_to_column(&c.claims));
        self.exec(crate::account_sql::PUT_CONSENT, &[&c.user_id, &c.client_id.as_str(), &scope, &c.updated_at, &claims])
            .await
            .map(|_| ())
            .map_err(StoreError::Backend)
    }

    async fn insert_code(&self, code: &CodeRecord) -> StoreResult<()> {
        let run = async {
            let mut c = self.conn().await?;
            let tx = Self::begin(&mut c).await?;
            insert_code_row(&tx, code).await?;
            tx.commit().await?;
            anyhow::Ok(())
        };
        run.await.map_err(StoreError::Backend)
    }

    async fn code(&self, hash: &TokenHash) -> StoreResult<Option<CodeRecord>> {
        self.opt(&format!("SELECT {CODE_COLS} FROM codes WHERE hash = $1"), &[&hash.as_str()], code_row).await
    }

    async fn redeem_code(&self, hash: &TokenHash, now: UnixTime, issue: &Issuance) -> StoreResult<Redeemed> {
        retrying!(self.redeem_once(hash.as_str(), now, issue))
    }

    async fn insert_grant(&self, issue: &Issuance) -> StoreResult<()> {
        let run = async {
            let mut c = self.conn().await?;
            let tx = Self::begin(&mut c).await?;
            insert_issuance(&tx, issue).await?;
            tx.commit().await?;
            anyhow::Ok(())
        };
        run.await.map_err(StoreError::Backend)
    }

    async fn refresh_token(&self, hash: &TokenHash) -> StoreResult<Option<(RefreshRecord, GrantRecord)>> {
        self.opt(
            &format!(
                "SELECT r.hash, r.grant_id, r.scope, r.issued_at, r.expires_at, r.consumed_at, r.cached_response, {GRANT_COLS}
                 FROM refresh_tokens r JOIN grants g ON g.id = r.grant_id WHERE r.hash = $1"
            ),
            &[&hash.as_str()],
            |r| Ok((refresh_row(r, 0)?, grant_row(r, 7)?)),
        )
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
        retrying!(self.rotate_once(old.as_str(), now, next, access, cached_response))
    }

    async fn revoke_grant(&self, grant_id: &str, now: UnixTime) -> StoreResult<()> {
        self.exec("UPDATE grants SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL", &[&grant_id, &now])
            .await
            .map(|_| ())
            .map_err(StoreError::Backend)
    }

    async fn access_token(&self, jti: &str) -> StoreResult<Option<(AccessRecord, GrantRecord)>> {
        self.opt(
            &format!(
                "SELECT a.jti, a.grant_id, a.expires_at, a.revoked_at, {GRANT_COLS}
                 FROM access_tokens a JOIN grants g ON g.id = a.grant_id WHERE a.jti = $1"
            ),
            &[&jti],
            |r| Ok((access_row(r)?, grant_row(r, 4)?)),
        )
        .await
    }

    async fn revoke_access_token(&self, jti: &str, now: UnixTime) -> StoreResult<()> {
        self.exec("UPDATE access_tokens SET revoked_at = $2 WHERE jti = $1 AND revoked_at IS NULL", &[&jti, &now])
            .await
            .map(|_| ())
            .map_err(StoreError::Backend)
    }

    async fn throttle_state(&self, keys: &[String]) -> StoreResult<Vec<ThrottleRecord>> {
        let run = async {
            let c = self.conn().await?;
            let stmt = c
                .prepare_cached("SELECT key, failures, last_failure, refused FROM login_throttle WHERE key = $1")
                .await?;
            let mut out = Vec::new();
            // In the order asked, as on SQLite.
            for k in keys {
                if let Some(r) = c.query_opt(&stmt, &[k]).await? {
                    out.push(throttle_row(&r)?);
                }
            }
            anyhow::Ok(out)
        };
        run.await.map_err(StoreError::Backend)
    }

    async fn throttle_reserve(
        &self,
        rules: &[(String, latchkey_core::throttle::Rule)],
        now: UnixTime,
    ) -> StoreResult<Reservation> {
        retrying!(self.throttle_reserve_once(rules, now))
    }

    async fn throttle_settle(&self, clear: &[String], refund: &[String]) -> StoreResult<()> {
        self.tx_exec(&[
            ("DELETE FROM login_throttle WHERE key = ANY($1)", &[&clear]),
            // A counter back at zero is no counter: deleted, so that successful logins leave no rows.
            ("DELETE FROM login_throttle WHERE key = ANY($1) AND failures <= 1", &[&refund]),
            ("UPDATE login_throttle SET failures = failures - 1 WHERE key = ANY($1)", &[&refund]),
        ])
        .await
        .map(|_| ())
        .map_err(StoreError::Backend)
    }

    async fn record_audit(&self, e: &AuditRecord) -> StoreResult<()> {
        self.exec(
            "INSERT INTO audit_events (at, event, user_id, client_id, ip, detail) VALUES ($1, $2, $3, $4, $5, $6)",
            &[&e.at, &e.event, &e.user_id, &e.client_id, &e.ip, &e.detail.to_string()],
        )
        .await
        .map(|_| ())
        .map_err(StoreError::Backend)
    }

    async fn audit_events(
        &self,
        since: Option<UnixTime>,
        user_id: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<AuditRecord>> {
        self.all(
            "SELECT at, event, user_id, client_id, ip, detail FROM audit_events
             WHERE at >= $1 AND ($2::TEXT IS NULL OR user_id = $2) ORDER BY at DESC, id DESC LIMIT $3",
            &[&since.unwrap_or(i64::MIN), &user_id, &i64::from(limit)],
            audit_row,
        )
        .await
    }

    async fn purge_expired(&self, now: UnixTime, policy: &PurgePolicy) -> StoreResult<TableCounts> {
        retrying!(crate::postgres_maint::purge(self, now, policy))
    }

    async fn table_counts(&self) -> StoreResult<TableCounts> {
        crate::postgres_maint::counts(self).await.map_err(StoreError::Backend)
    }

    async fn export(&self) -> StoreResult<Snapshot> {
        crate::postgres_maint::export(self).await.map_err(StoreError::Backend)
    }

    async fn import(&self, snapshot: &Snapshot) -> StoreResult<()> {
        crate::postgres_maint::import(self, snapshot).await.map_err(StoreError::Backend)
    }
}
