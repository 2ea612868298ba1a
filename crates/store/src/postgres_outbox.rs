//! [`OutboxStore`] on PostgreSQL. A claim is one UPDATE over a subquery that locks the due rows
//! `FOR UPDATE SKIP LOCKED`: instances claiming at once each take rows the others have not
//! locked, never the same one, and never wait for each other. The capped insert counts and
//! inserts under a transaction-scoped advisory lock, so two instances cannot both see room for
//! one more job.

use async_trait::async_trait;
use latchkey_core::UnixTime;
use latchkey_core::outbox::{Job, JobId, OutboxFilter, OutboxRecord, OutboxStore};
use latchkey_core::store::{StoreError, StoreResult};
use tokio_postgres::Row;

use crate::PostgresStore;
use crate::outbox_sql as sql;

/// The advisory lock of the capped insert (apart from the other namespaces in use).
const CAP_LOCK: i64 = 0x6c61_7463_686b_6579 + 16;

/// [`sql::COLS`] from column 0.
pub(crate) fn outbox_row(r: &Row) -> anyhow::Result<OutboxRecord> {
    let attempts: i32 = r.try_get(2)?;
    Ok(OutboxRecord {
        id: r.try_get(0)?,
        job: Job::from_stored(r.try_get(1)?),
        attempts: u32::try_from(attempts).unwrap_or(0),
        next_attempt_at: r.try_get(3)?,
        created_at: r.try_get(4)?,
        last_error: r.try_get(5)?,
        dead: r.try_get(6)?,
        completed_at: r.try_get(7)?,
    })
}

impl PostgresStore {
    async fn enqueue_capped_once(&self, job: &Job, now: UnixTime, cap: u64) -> anyhow::Result<Option<JobId>> {
        let (kind, payload) = (job.kind(), job.to_stored());
        let cap = i64::try_from(cap).unwrap_or(i64::MAX);
        let mut c = self.object().await?;
        let tx = Self::begin(&mut c).await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&CAP_LOCK]).await?;
        let queued: i64 = tx.query_one(sql::QUEUED, &[]).await?.try_get(0)?;
        if queued >= cap {
            return Ok(None);
        }
        let id: i64 = tx.query_one(sql::INSERT, &[&kind, &payload, &now]).await?.try_get(0)?;
        tx.commit().await?;
        Ok(Some(id))
    }
}

#[async_trait]
impl OutboxStore for PostgresStore {
    async fn enqueue(&self, job: &Job, now: UnixTime) -> StoreResult<JobId> {
        let (kind, payload) = (job.kind(), job.to_stored());
        let row = self.opt(sql::INSERT, &[&kind, &payload, &now], |r| Ok(r.try_get::<_, i64>(0)?)).await?;
        row.ok_or_else(|| StoreError::Backend(anyhow::anyhow!("INSERT … RETURNING gave no row")))
    }

    async fn enqueue_capped(&self, job: &Job, now: UnixTime, cap: u64) -> StoreResult<Option<JobId>> {
        self.enqueue_capped_once(job, now, cap).await.map_err(StoreError::Backend)
    }

    async fn claim_due(&self, now: UnixTime, lease_until: UnixTime, limit: u32) -> StoreResult<Vec<OutboxRecord>> {
        let limit = i64::from(limit);
        let mut out =
            self.all(&sql::claim("FOR UPDATE SKIP LOCKED"), &[&lease_until, &now, &limit], outbox_row).await?;
        out.sort_by_key(|r| r.id);
        Ok(out)
    }

    async fn complete(&self, id: JobId, now: UnixTime) -> StoreResult<()> {
        self.exec(sql::COMPLETE, &[&now, &id]).await.map(|_| ()).map_err(StoreError::Backend)
    }

    async fn retry(&self, id: JobId, next_at: UnixTime, error: &str) -> StoreResult<()> {
        self.exec(sql::RETRY, &[&next_at, &error, &id]).await.map(|_| ()).map_err(StoreError::Backend)
    }

    async fn bury(&self, id: JobId, now: UnixTime, error: &str) -> StoreResult<()> {
        self.exec(sql::BURY, &[&now, &error, &id]).await.map(|_| ()).map_err(StoreError::Backend)
    }

    async fn outbox_jobs(&self, filter: OutboxFilter, limit: u32) -> StoreResult<Vec<OutboxRecord>> {
        self.all(&sql::list(filter), &[&i64::from(limit)], outbox_row).await
    }

    async fn revive(&self, id: JobId, now: UnixTime) -> StoreResult<bool> {
        Ok(self.exec(sql::REVIVE, &[&now, &id]).await.map_err(StoreError::Backend)? > 0)
    }
}
