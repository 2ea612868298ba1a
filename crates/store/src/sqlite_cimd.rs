//! The client ID metadata document cache on SQLite.

use async_trait::async_trait;
use latchkey_core::UnixTime;
use latchkey_core::store::{CachedDocument, MetadataDocumentCache, StoreResult};
use rusqlite::{OptionalExtension, params};

use crate::SqliteStore;
use crate::cimd_sql;

#[async_trait]
impl MetadataDocumentCache for SqliteStore {
    async fn cached_metadata_document(&self, url: &str, now: UnixTime) -> StoreResult<Option<CachedDocument>> {
        let url = url.to_owned();
        self.lookup(move |c| {
            c.prepare_cached(cimd_sql::GET)?
                .query_row(params![url, now], |r| {
                    Ok(CachedDocument { url: r.get(0)?, body: r.get(1)?, fetched_at: r.get(2)?, expires_at: r.get(3)? })
                })
                .optional()
        })
        .await
    }

    async fn cache_metadata_document(&self, doc: &CachedDocument, max_rows: u64) -> StoreResult<()> {
        let doc = doc.clone();
        let max = i64::try_from(max_rows).unwrap_or(i64::MAX);
        // In the writer's group transaction: a savepoint makes the insert and the eviction one step.
        self.write(move |c| {
            let tx = c.savepoint()?;
            tx.prepare_cached(cimd_sql::PUT)?.execute(params![doc.url, doc.body, doc.fetched_at, doc.expires_at])?;
            tx.prepare_cached(cimd_sql::EVICT)?.execute([max])?;
            tx.commit()
        })
        .await
    }
}
