//! [`FactorStore`] on PostgreSQL. Each single-use rule is one statement (a conditional UPDATE, a
//! DELETE … RETURNING) at READ COMMITTED: a concurrent statement on the same row waits for the
//! first to commit, re-reads the row and changes nothing, on one instance or many.

use std::time::Duration;

use async_trait::async_trait;
use latchkey_core::UnixTime;
use latchkey_core::authn::Authentication;
use latchkey_core::factors::{FactorStore, PARTIAL_SIGN_INS_PER_USER, PartialSignIn, RecoveryCodeRecord, TotpRecord};
use latchkey_core::store::{Snapshot, StoreError, StoreResult};
use latchkey_proto::TokenHash;
use tokio_postgres::Row;

use crate::factors_sql as sql;
use crate::postgres::{ATTEMPTS, PostgresStore, json_of, retryable, retrying};

pub(crate) fn totp_row(r: &Row) -> anyhow::Result<TotpRecord> {
    Ok(TotpRecord {
        user_id: r.try_get(0)?,
        secret: r.try_get(1)?,
        created_at: r.try_get(2)?,
        confirmed_at: r.try_get(3)?,
        last_step: r.try_get(4)?,
    })
}

pub(crate) fn recovery_row(r: &Row) -> anyhow::Result<RecoveryCodeRecord> {
    Ok(RecoveryCodeRecord { user_id: r.try_get(0)?, hash: r.try_get(1)?, created_at: r.try_get(2)? })
}

/// `db copy`: the snapshot's factors, inside the caller's transaction.
pub(crate) async fn import(tx: &deadpool_postgres::Transaction<'_>, s: &Snapshot) -> anyhow::Result<()> {
    for t in &s.totp {
        tx.execute(sql::INSERT_TOTP, &[&t.user_id, &t.secret, &t.created_at, &t.confirmed_at, &t.last_step]).await?;
    }
    for r in &s.recovery_codes {
        tx.execute(sql::INSERT_RECOVERY, &[&r.user_id, &r.hash, &r.created_at]).await?;
    }
    Ok(())
}

async fn replace_codes(
    tx: &deadpool_postgres::Transaction<'_>,
    user_id: &str,
    hashes: &[String],
    now: UnixTime,
) -> anyhow::Result<()> {
    tx.execute(sql::DELETE_RECOVERY, &[&user_id]).await?;
    let stmt = tx.prepare_cached(sql::INSERT_RECOVERY).await?;
    for h in hashes {
        tx.execute(&stmt, &[&user_id, h, &now]).await?;
    }
    Ok(())
}

impl PostgresStore {
    async fn confirm_totp_once(
        &self,
        user_id: &str,
        secret: &str,
        step: i64,
        recovery: &[String],
        now: UnixTime,
    ) -> anyhow::Result<bool> {
        let mut c = self.object().await?;
        let tx = Self::begin(&mut c).await?;
        if tx.execute(sql::CONFIRM_TOTP, &[&now, &step, &user_id, &secret]).await? == 0 {
            return Ok(false);
        }
        replace_codes(&tx, user_id, recovery, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn replace_codes_once(&self, user_id: &str, hashes: &[String], now: UnixTime) -> anyhow::Result<()> {
        let mut c = self.object().await?;
        let tx = Self::begin(&mut c).await?;
        replace_codes(&tx, user_id, hashes, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn reset_once(&self, user_id: &str) -> anyhow::Result<(bool, u64)> {
        let mut c = self.object().await?;
        let tx = Self::begin(&mut c).await?;
        let totp = tx.execute(sql::DELETE_TOTP, &[&user_id]).await? > 0;
        let codes = tx.execute(sql::DELETE_RECOVERY, &[&user_id]).await?;
        tx.execute(sql::DELETE_PARTIALS, &[&user_id]).await?;
        tx.commit().await?;
        Ok((totp, codes))
    }

    async fn remove_totp_once(&self, user_id: &str, recovery_too: bool) -> anyhow::Result<bool> {
        let mut c = self.object().await?;
        let tx = Self::begin(&mut c).await?;
        let removed = tx.execute(sql::DELETE_TOTP, &[&user_id]).await? > 0;
        if recovery_too {
            tx.execute(sql::DELETE_RECOVERY, &[&user_id]).await?;
        }
        tx.commit().await?;
        Ok(removed)
    }
}

#[async_trait]
impl FactorStore for PostgresStore {
    async fn totp(&self, user_id: &str) -> StoreResult<Option<TotpRecord>> {
        self.opt(sql::GET_TOTP, &[&user_id], totp_row).await
    }

    async fn begin_totp(&self, rec: &TotpRecord) -> StoreResult<bool> {
        let n = self.exec(sql::BEGIN_TOTP, &[&rec.user_id, &rec.secret, &rec.created_at]).await?;
        Ok(n > 0)
    }

    async fn confirm_totp(
        &self,
        user_id: &str,
        secret: &str,
        step: i64,
        recovery: &[String],
        now: UnixTime,
    ) -> StoreResult<bool> {
        retrying!(self.confirm_totp_once(user_id, secret, step, recovery, now))
    }

    async fn use_totp_step(&self, user_id: &str, step: i64) -> StoreResult<bool> {
        Ok(self.exec(sql::USE_STEP, &[&step, &user_id]).await? > 0)
    }

    async fn remove_totp(&self, user_id: &str, recovery_too: bool) -> StoreResult<bool> {
        retrying!(self.remove_totp_once(user_id, recovery_too))
    }

    async fn recovery_codes_left(&self, user_id: &str) -> StoreResult<u32> {
        let n = self.opt(sql::COUNT_RECOVERY, &[&user_id], |r| Ok(r.try_get::<_, i64>(0)?)).await?.unwrap_or(0);
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    async fn replace_recovery_codes(&self, user_id: &str, hashes: &[String], now: UnixTime) -> StoreResult<()> {
        retrying!(self.replace_codes_once(user_id, hashes, now))
    }

    async fn use_recovery_code(&self, user_id: &str, hash: &str) -> StoreResult<bool> {
        Ok(self.exec(sql::USE_RECOVERY, &[&user_id, &hash]).await? > 0)
    }

    async fn reset_factors(&self, user_id: &str) -> StoreResult<(bool, u64)> {
        retrying!(self.reset_once(user_id))
    }

    async fn insert_partial_sign_in(&self, hash: &TokenHash, p: &PartialSignIn, now: UnixTime) -> StoreResult<()> {
        let data = serde_json::to_string(p).map_err(|e| StoreError::Backend(e.into()))?;
        let keep = i64::from(PARTIAL_SIGN_INS_PER_USER);
        retrying!(self.tx_exec(&[
            (sql::PURGE_PARTIAL, &[&now]),
            (sql::INSERT_PARTIAL, &[&hash.as_str(), &p.user_id, &data, &now, &p.expires_at]),
            (sql::EVICT_PARTIAL, &[&p.user_id, &keep]),
        ]))
        .map(|_| ())
    }

    async fn partial_sign_in(&self, hash: &TokenHash, now: UnixTime) -> StoreResult<Option<PartialSignIn>> {
        self.opt(sql::GET_PARTIAL, &[&hash.as_str(), &now], |r| json_of(r, 0)).await
    }

    async fn take_partial_sign_in(&self, hash: &TokenHash, now: UnixTime) -> StoreResult<Option<PartialSignIn>> {
        self.opt(sql::TAKE_PARTIAL, &[&hash.as_str(), &now], |r| json_of(r, 0)).await
    }

    async fn step_up_session(
        &self,
        old: &TokenHash,
        new: &TokenHash,
        authn: &Authentication,
        auth_time: UnixTime,
        now: UnixTime,
    ) -> StoreResult<bool> {
        let amr = authn.amr_text();
        let n = self
            .exec(sql::STEP_UP, &[&new.as_str(), &amr, &authn.acr().as_str(), &auth_time, &old.as_str(), &now])
            .await?;
        Ok(n > 0)
    }
}
