//! [`ReplayStore`] on SQLite: one upsert in the writer's group transaction.

use async_trait::async_trait;
use latchkey_core::UnixTime;
use latchkey_core::replay::{ReplayKind, ReplayStore};
use latchkey_core::store::StoreResult;
use rusqlite::params;

use crate::replay_sql as sql;
use crate::sqlite::SqliteStore;

#[async_trait]
impl ReplayStore for SqliteStore {
    async fn first_use(&self, kind: ReplayKind, key: &str, expires_at: UnixTime, now: UnixTime) -> StoreResult<bool> {
        let key = key.to_owned();
        self.write(move |c| c.prepare_cached(sql::FIRST_USE)?.execute(params![kind.as_str(), key, expires_at, now]))
            .await
            .map(|n| n == 1)
    }
}
