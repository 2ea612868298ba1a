//! [`OutboxStore`] on SQLite. Every write runs on the one writer connection, inside `BEGIN
//! IMMEDIATE` (`sqlite_conn`), so a claim's UPDATE … RETURNING is one step that no other process
//! on the file can interleave with: two processes never claim one job.

use async_trait::async_trait;
use latchkey_core::UnixTime;
use latchkey_core::outbox::{Job, JobId, OutboxFilter, OutboxRecord, OutboxStore};
use latchkey_core::store::StoreResult;
use rusqlite::{Row, params};

use crate::SqliteStore;
use crate::outbox_sql as sql;

/// [`sql::COLS`] from column 0.
pub(crate) fn outbox_row(r: &Row<'_>) -> rusqlite::Result<OutboxRecord> {
    Ok(OutboxRecord {
        id: r.get(0)?,
        job: Job::from_stored(&r.get::<_, String>(1)?),
        attempts: r.get(2)?,
        next_attempt_at: r.get(3)?,
        created_at: r.get(4)?,
        last_error: r.get(5)?,
        dead: r.get(6)?,
        completed_at: r.get(7)?,
    })
}

#[async_trait]
impl OutboxStore for SqliteStore {
    async fn enqueue(&self, job: &Job, now: UnixTime) -> StoreResult<JobId> {
        let (kind, payload) = (job.kind(), job.to_stored());
        self.write(move |c| c.prepare_cached(sql::INSERT)?.query_row(params![kind, payload, now], |r| r.get(0))).await
    }

    async fn enqueue_capped(&self, job: &Job, now: UnixTime, cap: u64) -> StoreResult<Option<JobId>> {
        let (kind, payload) = (job.kind(), job.to_stored());
        let cap = i64::try_from(cap).unwrap_or(i64::MAX);
        self.write(move |c| {
            let queued: i64 = c.prepare_cached(sql::QUEUED)?.query_row([], |r| r.get(0))?;
            if queued >= cap {
                return Ok(None);
            }
            c.prepare_cached(sql::INSERT)?.query_row(params![kind, payload, now], |r| r.get(0)).map(Some)
        })
        .await
    }

    async fn claim_due(&self, now: UnixTime, lease_until: UnixTime, limit: u32) -> StoreResult<Vec<OutboxRecord>> {
        self.write(move |c| {
            let mut out: Vec<OutboxRecord> = c
                .prepare_cached(&sql::claim(""))?
                .query_map(params![lease_until, now, limit], outbox_row)?
                .collect::<rusqlite::Result<_>>()?;
            // RETURNING gives no order: oldest due first, as claimed.
            out.sort_by_key(|r| r.id);
            Ok(out)
        })
        .await
    }

    async fn complete(&self, id: JobId, now: UnixTime) -> StoreResult<()> {
        self.write(move |c| c.prepare_cached(sql::COMPLETE)?.execute(params![now, id]).map(|_| ())).await
    }

    async fn retry(&self, id: JobId, next_at: UnixTime, error: &str) -> StoreResult<()> {
        let error = error.to_owned();
        self.write(move |c| c.prepare_cached(sql::RETRY)?.execute(params![next_at, error, id]).map(|_| ())).await
    }

    async fn bury(&self, id: JobId, now: UnixTime, error: &str) -> StoreResult<()> {
        let error = error.to_owned();
        self.write(move |c| c.prepare_cached(sql::BURY)?.execute(params![now, error, id]).map(|_| ())).await
    }

    async fn outbox_jobs(&self, filter: OutboxFilter, limit: u32) -> StoreResult<Vec<OutboxRecord>> {
        self.scan(move |c| c.prepare_cached(&sql::list(filter))?.query_map([limit], outbox_row)?.collect()).await
    }

    async fn revive(&self, id: JobId, now: UnixTime) -> StoreResult<bool> {
        self.write(move |c| Ok(c.prepare_cached(sql::REVIVE)?.execute(params![now, id])? > 0)).await
    }
}
