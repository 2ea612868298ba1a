//! [`DeviceGrantStore`] on PostgreSQL, for instances sharing one database. Transactions run at
//! READ COMMITTED (see `postgres.rs`):
//! - the insert counts and inserts under a transaction-scoped advisory lock on the client, so
//!   concurrent requests (on any instance) cannot together pass the bound; two clients drawing
//!   the same user code at once meet at the unique constraint, which is `UserCodeTaken`;
//! - a poll reads its row `FOR UPDATE`: concurrent polls queue on the row lock and each decides
//!   on what the one before it wrote (its `last_poll_at`, its grown interval);
//! - the answer and the redemption are conditional statements: a concurrent caller waits on the
//!   row lock, re-checks the condition on the committed row and changes nothing.

use std::time::Duration;

use async_trait::async_trait;
use latchkey_core::UnixTime;
use latchkey_core::device_grant::{
    self, DeviceGrantStore, DeviceInsert, DeviceRecord, DeviceStatus, PollStep, PollUpdate,
};
use latchkey_core::store::{Issuance, StoreError, StoreResult};
use latchkey_proto::TokenHash;
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;

use crate::PostgresStore;
use crate::device_sql::{self as sql, DeviceColumns, DeviceRow};
use crate::postgres::{ATTEMPTS, insert_issuance, retryable, retrying};

/// The second key of the per-client advisory lock (the first is the client id's hash); apart from
/// the other namespaces of `hashtextextended` in use (7, 12, 13, 14, 18).
const CLIENT_LOCK: i64 = 19;

/// The name of the user code's unique constraint (migration 11).
const USER_CODE_CONSTRAINT: &str = "device_codes_user_code";

fn device_row(r: &Row) -> anyhow::Result<DeviceRecord> {
    DeviceRow {
        device_hash: r.try_get(0)?,
        user_code_hash: r.try_get(1)?,
        client_id: r.try_get(2)?,
        scope: r.try_get(3)?,
        resource: r.try_get(4)?,
        created_at: r.try_get(5)?,
        expires_at: r.try_get(6)?,
        interval_s: r.try_get(7)?,
        last_poll_at: r.try_get(8)?,
        requested_from: r.try_get(9)?,
        status: r.try_get(10)?,
    }
    .into_record()
}

/// Another transaction committed a row with this user code between our check and our insert.
fn user_code_clash(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
        && e.as_db_error().and_then(|d| d.constraint()) == Some(USER_CODE_CONSTRAINT)
}

impl PostgresStore {
    async fn insert_device_once(&self, x: &DeviceColumns, max: i64, now: UnixTime) -> anyhow::Result<DeviceInsert> {
        let mut c = self.object().await?;
        let tx = Self::begin(&mut c).await?;
        tx.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, $2))", &[&x.client_id, &CLIENT_LOCK]).await?;
        tx.execute(sql::DELETE_EXPIRED_USER_CODE, &[&x.user_code_hash, &now]).await?;
        let n: i64 = tx.query_one(sql::COUNT_LIVE_FOR_CLIENT, &[&x.client_id, &now]).await?.try_get(0)?;
        if n >= max {
            return Ok(DeviceInsert::ClientFull);
        }
        let taken: i64 = tx.query_one(sql::COUNT_USER_CODE, &[&x.user_code_hash]).await?.try_get(0)?;
        if taken > 0 {
            return Ok(DeviceInsert::UserCodeTaken);
        }
        let inserted = tx
            .execute(
                sql::INSERT,
                &[
                    &x.device_hash,
                    &x.user_code_hash,
                    &x.client_id,
                    &x.scope,
                    &x.resource,
                    &x.created_at,
                    &x.expires_at,
                    &x.interval_s,
                    &x.last_poll_at,
                    &x.requested_from,
                    &x.state,
                    &x.status,
                ],
            )
            .await;
        match inserted {
            // The transaction is aborted; dropping it rolls back.
            Err(e) if user_code_clash(&e) => return Ok(DeviceInsert::UserCodeTaken),
            other => other?,
        };
        tx.commit().await?;
        Ok(DeviceInsert::Inserted)
    }

    async fn poll_device_once(&self, h: &str, now: UnixTime) -> anyhow::Result<Option<(DeviceRecord, PollStep)>> {
        let mut c = self.object().await?;
        let tx = Self::begin(&mut c).await?;
        let stmt = tx.prepare_cached(&format!("{} FOR UPDATE", sql::by_device())).await?;
        let Some(row) = tx.query_opt(&stmt, &[&h]).await? else { return Ok(None) };
        let record = device_row(&row)?;
        let (step, update) = device_grant::poll(&record, now);
        match update {
            PollUpdate::Keep { interval, last_poll_at } => {
                tx.execute(sql::KEEP, &[&sql::interval_column(interval), &last_poll_at, &h]).await?
            }
            PollUpdate::Remove => tx.execute(sql::REMOVE, &[&h]).await?,
        };
        tx.commit().await?;
        Ok(Some((record, step)))
    }

    async fn redeem_device_once(&self, h: &str, issue: &Issuance) -> anyhow::Result<bool> {
        let mut c = self.object().await?;
        let tx = Self::begin(&mut c).await?;
        // The single point of truth for "redeemed once": a concurrent redemption waits here for
        // our commit, then finds no row and stores nothing.
        if tx.execute(sql::REDEEM, &[&h, &issue.grant.client_id.as_str()]).await? != 1 {
            return Ok(false);
        }
        insert_issuance(&tx, issue).await?;
        tx.commit().await?;
        Ok(true)
    }
}

#[async_trait]
impl DeviceGrantStore for PostgresStore {
    async fn insert_device(&self, r: &DeviceRecord, max_per_client: u64, now: UnixTime) -> StoreResult<DeviceInsert> {
        let x = DeviceColumns::of(r).map_err(StoreError::Backend)?;
        let max = i64::try_from(max_per_client).unwrap_or(i64::MAX);
        retrying!(self.insert_device_once(&x, max, now))
    }

    async fn pending_device(&self, user_code_hash: &TokenHash, now: UnixTime) -> StoreResult<Option<DeviceRecord>> {
        self.opt(&sql::pending(), &[&user_code_hash.as_str(), &now], device_row).await
    }

    async fn decide_device(
        &self,
        user_code_hash: &TokenHash,
        status: &DeviceStatus,
        now: UnixTime,
    ) -> StoreResult<bool> {
        let json = sql::status_json(status).map_err(StoreError::Backend)?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
            [&sql::state_of(status), &json, &user_code_hash.as_str(), &now];
        self.exec(sql::DECIDE, &params).await.map(|n| n == 1).map_err(StoreError::Backend)
    }

    async fn poll_device(
        &self,
        device_hash: &TokenHash,
        now: UnixTime,
    ) -> StoreResult<Option<(DeviceRecord, PollStep)>> {
        retrying!(self.poll_device_once(device_hash.as_str(), now))
    }

    async fn redeem_device(&self, device_hash: &TokenHash, issue: &Issuance) -> StoreResult<bool> {
        retrying!(self.redeem_device_once(device_hash.as_str(), issue))
    }
}
