//! [`FactorStore`] on SQLite. The writer is one connection, so each closure below is one atomic
//! step; across processes, SQLite's write lock serializes them the same way.

use async_trait::async_trait;
use latchkey_core::UnixTime;
use latchkey_core::authn::Authentication;
use latchkey_core::factors::{FactorStore, PARTIAL_SIGN_INS_PER_USER, PartialSignIn, RecoveryCodeRecord, TotpRecord};
use latchkey_core::store::{Snapshot, StoreResult};
use latchkey_proto::TokenHash;
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::factors_sql as sql;
use crate::sqlite::{SqliteStore, json_col, to_json};

pub(crate) fn totp_row(r: &Row<'_>) -> rusqlite::Result<TotpRecord> {
    Ok(TotpRecord {
        user_id: r.get(0)?,
        secret: r.get(1)?,
        created_at: r.get(2)?,
        confirmed_at: r.get(3)?,
        last_step: r.get(4)?,
    })
}

fn recovery_row(r: &Row<'_>) -> rusqlite::Result<RecoveryCodeRecord> {
    Ok(RecoveryCodeRecord { user_id: r.get(0)?, hash: r.get(1)?, created_at: r.get(2)? })
}

pub(crate) fn export_totp(c: &Connection) -> rusqlite::Result<Vec<TotpRecord>> {
    c.prepare(sql::ALL_TOTP)?.query_map([], totp_row)?.collect()
}

pub(crate) fn export_recovery_codes(c: &Connection) -> rusqlite::Result<Vec<RecoveryCodeRecord>> {
    c.prepare(sql::ALL_RECOVERY)?.query_map([], recovery_row)?.collect()
}

/// `db copy`: the snapshot's factors, inside the caller's savepoint.
pub(crate) fn import(c: &Connection, s: &Snapshot) -> rusqlite::Result<()> {
    for t in &s.totp {
        c.execute(sql::INSERT_TOTP, params![t.user_id, t.secret, t.created_at, t.confirmed_at, t.last_step])?;
    }
    for r in &s.recovery_codes {
        c.execute(sql::INSERT_RECOVERY, params![r.user_id, r.hash, r.created_at])?;
    }
    Ok(())
}

fn replace_codes(c: &Connection, user_id: &str, hashes: &[String], now: UnixTime) -> rusqlite::Result<()> {
    c.execute(sql::DELETE_RECOVERY, [user_id])?;
    let mut stmt = c.prepare_cached(sql::INSERT_RECOVERY)?;
    for h in hashes {
        stmt.execute(params![user_id, h, now])?;
    }
    Ok(())
}

fn partial_json(data: String) -> rusqlite::Result<PartialSignIn> {
    serde_json::from_str(&data)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into()))
}

#[async_trait]
impl FactorStore for SqliteStore {
    async fn totp(&self, user_id: &str) -> StoreResult<Option<TotpRecord>> {
        let id = user_id.to_owned();
        self.lookup(move |c| c.prepare_cached(sql::GET_TOTP)?.query_row([id], totp_row).optional()).await
    }

    async fn begin_totp(&self, rec: &TotpRecord) -> StoreResult<bool> {
        let rec = rec.clone();
        self.write(move |c| c.execute(sql::BEGIN_TOTP, params![rec.user_id, rec.secret, rec.created_at]))
            .await
            .map(|n| n > 0)
    }

    async fn confirm_totp(
        &self,
        user_id: &str,
        secret: &str,
        step: i64,
        recovery: &[String],
        now: UnixTime,
    ) -> StoreResult<bool> {
        let (id, secret, recovery) = (user_id.to_owned(), secret.to_owned(), recovery.to_vec());
        self.write(move |c| {
            let tx = c.savepoint()?;
            if tx.execute(sql::CONFIRM_TOTP, params![now, step, id, secret])? == 0 {
                return Ok(false);
            }
            replace_codes(&tx, &id, &recovery, now)?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn use_totp_step(&self, user_id: &str, step: i64) -> StoreResult<bool> {
        let id = user_id.to_owned();
        self.write(move |c| c.execute(sql::USE_STEP, params![step, id])).await.map(|n| n > 0)
    }

    async fn remove_totp(&self, user_id: &str, recovery_too: bool) -> StoreResult<bool> {
        let id = user_id.to_owned();
        self.write(move |c| {
            let tx = c.savepoint()?;
            let removed = tx.execute(sql::DELETE_TOTP, [&id])? > 0;
            if recovery_too {
                tx.execute(sql::DELETE_RECOVERY, [&id])?;
            }
            tx.commit()?;
            Ok(removed)
        })
        .await
    }

    async fn recovery_codes_left(&self, user_id: &str) -> StoreResult<u32> {
        let id = user_id.to_owned();
        let n: i64 = self.lookup(move |c| c.prepare_cached(sql::COUNT_RECOVERY)?.query_row([id], |r| r.get(0))).await?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    async fn replace_recovery_codes(&self, user_id: &str, hashes: &[String], now: UnixTime) -> StoreResult<()> {
        let (id, hashes) = (user_id.to_owned(), hashes.to_vec());
        self.write(move |c| {
            let tx = c.savepoint()?;
            replace_codes(&tx, &id, &hashes, now)?;
            tx.commit()
        })
        .await
    }

    async fn use_recovery_code(&self, user_id: &str, hash: &str) -> StoreResult<bool> {
        let (id, hash) = (user_id.to_owned(), hash.to_owned());
        self.write(move |c| c.execute(sql::USE_RECOVERY, params![id, hash])).await.map(|n| n > 0)
    }

    async fn reset_factors(&self, user_id: &str) -> StoreResult<(bool, u64)> {
        let id = user_id.to_owned();
        self.write(move |c| {
            let tx = c.savepoint()?;
            let totp = tx.execute(sql::DELETE_TOTP, [&id])? > 0;
            let codes = tx.execute(sql::DELETE_RECOVERY, [&id])? as u64;
            tx.execute(sql::DELETE_PARTIALS, [&id])?;
            tx.commit()?;
            Ok((totp, codes))
        })
        .await
    }

    async fn insert_partial_sign_in(&self, hash: &TokenHash, p: &PartialSignIn, now: UnixTime) -> StoreResult<()> {
        let data = to_json(p)?;
        let (hash, user) = (hash.as_str().to_owned(), p.user_id.clone());
        let (expires_at, keep) = (p.expires_at, i64::from(PARTIAL_SIGN_INS_PER_USER));
        self.write(move |c| {
            let tx = c.savepoint()?;
            tx.prepare_cached(sql::PURGE_PARTIAL)?.execute([now])?;
            tx.prepare_cached(sql::INSERT_PARTIAL)?.execute(params![hash, user, data, now, expires_at])?;
            tx.prepare_cached(sql::EVICT_PARTIAL)?.execute(params![user, keep])?;
            tx.commit()
        })
        .await
    }

    async fn partial_sign_in(&self, hash: &TokenHash, now: UnixTime) -> StoreResult<Option<PartialSignIn>> {
        let h = hash.as_str().to_owned();
        self.lookup(move |c| {
            c.prepare_cached(sql::GET_PARTIAL)?.query_row(params![h, now], |r| json_col(r, 0)).optional()
        })
        .await
    }

    async fn take_partial_sign_in(&self, hash: &TokenHash, now: UnixTime) -> StoreResult<Option<PartialSignIn>> {
        let h = hash.as_str().to_owned();
        let data: Option<String> = self
            .write(move |c| c.prepare_cached(sql::TAKE_PARTIAL)?.query_row(params![h, now], |r| r.get(0)).optional())
            .await?;
        data.map(partial_json).transpose().map_err(crate::sqlite_conn::backend)
    }

    async fn step_up_session(
        &self,
        old: &TokenHash,
        new: &TokenHash,
        authn: &Authentication,
        auth_time: UnixTime,
        now: UnixTime,
    ) -> StoreResult<bool> {
        let (old, new, amr, acr) =
            (old.as_str().to_owned(), new.as_str().to_owned(), authn.amr_text(), authn.acr().as_str());
        self.write(move |c| c.execute(sql::STEP_UP, params![new, amr, acr, auth_time, old, now])).await.map(|n| n > 0)
    }
}
