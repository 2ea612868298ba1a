//! [`ReplayStore`] on PostgreSQL: one upsert, so instances sharing the database never both accept
//! a value (the conflicting insert waits for the winner's commit, then updates nothing).

use async_trait::async_trait;
use latchkey_core::UnixTime;
use latchkey_core::replay::{ReplayKind, ReplayStore};
use latchkey_core::store::{StoreError, StoreResult};

use crate::PostgresStore;
use crate::replay_sql as sql;

#[async_trait]
impl ReplayStore for PostgresStore {
    async fn first_use(&self, kind: ReplayKind, key: &str, expires_at: UnixTime, now: UnixTime) -> StoreResult<bool> {
        let n =
            self.exec(sql::FIRST_USE, &[&kind.as_str(), &key, &expires_at, &now]).await.map_err(StoreError::Backend)?;
        Ok(n == 1)
    }
}
