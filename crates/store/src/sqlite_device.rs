//! [`DeviceGrantStore`] on SQLite. Every operation runs in the single writer's group transaction
//! (a savepoint), and across processes SQLite's write lock serializes writers the same way: each
//! read-decide-write below is one atomic step.

use async_trait::async_trait;
use latchkey_core::UnixTime;
use latchkey_core::device_grant::{
    self, DeviceGrantStore, DeviceInsert, DeviceRecord, DeviceStatus, PollStep, PollUpdate,
};
use latchkey_core::store::{Issuance, StoreError, StoreResult};
use latchkey_proto::TokenHash;
use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::device_sql::{self as sql, DeviceColumns, DeviceRow};
use crate::sqlite::{SqliteStore, insert_issuance};

fn device_row(r: &Row<'_>) -> rusqlite::Result<DeviceRecord> {
    DeviceRow {
        device_hash: r.get(0)?,
        user_code_hash: r.get(1)?,
        client_id: r.get(2)?,
        scope: r.get(3)?,
        resource: r.get(4)?,
        created_at: r.get(5)?,
        expires_at: r.get(6)?,
        interval_s: r.get(7)?,
        last_poll_at: r.get(8)?,
        requested_from: r.get(9)?,
        status: r.get(10)?,
    }
    .into_record()
    .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, Type::Text, e.into()))
}

fn insert(c: &Connection, x: &DeviceColumns) -> rusqlite::Result<usize> {
    c.prepare_cached(sql::INSERT)?.execute(params![
        x.device_hash,
        x.user_code_hash,
        x.client_id,
        x.scope,
        x.resource,
        x.created_at,
        x.expires_at,
        x.interval_s,
        x.last_poll_at,
        x.requested_from,
        x.state,
        x.status
    ])
}

#[async_trait]
impl DeviceGrantStore for SqliteStore {
    async fn insert_device(&self, r: &DeviceRecord, max_per_client: u64, now: UnixTime) -> StoreResult<DeviceInsert> {
        let x = DeviceColumns::of(r).map_err(StoreError::Backend)?;
        let max = i64::try_from(max_per_client).unwrap_or(i64::MAX);
        self.write(move |c| {
            let tx = c.savepoint()?;
            tx.prepare_cached(sql::DELETE_EXPIRED_USER_CODE)?.execute(params![x.user_code_hash, now])?;
            let n: i64 =
                tx.prepare_cached(sql::COUNT_LIVE_FOR_CLIENT)?.query_row(params![x.client_id, now], |r| r.get(0))?;
            if n >= max {
                return Ok(DeviceInsert::ClientFull);
            }
            let taken: i64 = tx.prepare_cached(sql::COUNT_USER_CODE)?.query_row([&x.user_code_hash], |r| r.get(0))?;
            if taken > 0 {
                return Ok(DeviceInsert::UserCodeTaken);
            }
            insert(&tx, &x)?;
            tx.commit()?;
            Ok(DeviceInsert::Inserted)
        })
        .await
    }

    async fn pending_device(&self, user_code_hash: &TokenHash, now: UnixTime) -> StoreResult<Option<DeviceRecord>> {
        let h = user_code_hash.as_str().to_owned();
        self.lookup(move |c| c.prepare_cached(&sql::pending())?.query_row(params![h, now], device_row).optional()).await
    }

    async fn decide_device(
        &self,
        user_code_hash: &TokenHash,
        status: &DeviceStatus,
        now: UnixTime,
    ) -> StoreResult<bool> {
        let (h, state) = (user_code_hash.as_str().to_owned(), sql::state_of(status));
        let json = sql::status_json(status).map_err(StoreError::Backend)?;
        self.write(move |c| c.prepare_cached(sql::DECIDE)?.execute(params![state, json, h, now])).await.map(|n| n == 1)
    }

    async fn poll_device(
        &self,
        device_hash: &TokenHash,
        now: UnixTime,
    ) -> StoreResult<Option<(DeviceRecord, PollStep)>> {
        let h = device_hash.as_str().to_owned();
        self.write(move |c| {
            let tx = c.savepoint()?;
            let Some(record) = tx.prepare_cached(&sql::by_device())?.query_row([&h], device_row).optional()? else {
                return Ok(None);
            };
            let (step, update) = device_grant::poll(&record, now);
            match update {
                PollUpdate::Keep { interval, last_poll_at } => {
                    tx.prepare_cached(sql::KEEP)?.execute(params![sql::interval_column(interval), last_poll_at, h])?
                }
                PollUpdate::Remove => tx.prepare_cached(sql::REMOVE)?.execute([&h])?,
            };
            tx.commit()?;
            Ok(Some((record, step)))
        })
        .await
    }

    async fn redeem_device(&self, device_hash: &TokenHash, issue: &Issuance) -> StoreResult<bool> {
        let (h, issue) = (device_hash.as_str().to_owned(), issue.clone());
        self.write(move |c| {
            let tx = c.savepoint()?;
            // The DELETE is the single point of truth for "redeemed once".
            if tx.prepare_cached(sql::REDEEM)?.execute(params![h, issue.grant.client_id.as_str()])? != 1 {
                return Ok(false);
            }
            insert_issuance(&tx, &issue)?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }
}
