//! The client ID metadata document cache on PostgreSQL: one table for every instance, so a
//! document fetched by one is used by all.

use async_trait::async_trait;
use latchkey_core::UnixTime;
use latchkey_core::store::{CachedDocument, MetadataDocumentCache, StoreResult};

use crate::PostgresStore;
use crate::cimd_sql;

#[async_trait]
impl MetadataDocumentCache for PostgresStore {
    async fn cached_metadata_document(&self, url: &str, now: UnixTime) -> StoreResult<Option<CachedDocument>> {
        self.opt(cimd_sql::GET, &[&url, &now], |r| {
            Ok(CachedDocument {
                url: r.try_get(0)?,
                body: r.try_get(1)?,
                fetched_at: r.try_get(2)?,
                expires_at: r.try_get(3)?,
            })
        })
        .await
    }

    async fn cache_metadata_document(&self, doc: &CachedDocument, max_rows: u64) -> StoreResult<()> {
        let max = i64::try_from(max_rows).unwrap_or(i64::MAX);
        self.tx_exec(&[
            (cimd_sql::PUT, &[&doc.url, &doc.body, &doc.fetched_at, &doc.expires_at]),
            (cimd_sql::EVICT, &[&max]),
        ])
        .await
        .map(|_| ())
        .map_err(latchkey_core::store::StoreError::Backend)
    }
}
