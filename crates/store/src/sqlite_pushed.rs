//! [`PushedRequestStore`] on SQLite. The writer is one connection, so the count-then-insert below
//! is one atomic step; across processes SQLite's write lock serializes it the same way.

use async_trait::async_trait;
use latchkey_core::UnixTime;
use latchkey_core::pushed::{PushedRequest, PushedRequestStore};
use latchkey_core::store::StoreResult;
use latchkey_proto::TokenHash;
use rusqlite::{OptionalExtension, params};

use crate::pushed_sql as sql;
use crate::sqlite::{SqliteStore, client_id_at};

#[async_trait]
impl PushedRequestStore for SqliteStore {
    async fn insert_pushed(&self, r: &PushedRequest, max_per_client: u64, now: UnixTime) -> StoreResult<bool> {
        let r = r.clone();
        let max = i64::try_from(max_per_client).unwrap_or(i64::MAX);
        self.write(move |c| {
            let tx = c.savepoint()?;
            let n: i64 = tx
                .prepare_cached(sql::COUNT_LIVE_FOR_CLIENT)?
                .query_row(params![r.client_id.as_str(), now], |x| x.get(0))?;
            if n >= max {
                return Ok(false);
            }
            tx.prepare_cached(sql::INSERT)?.execute(params![
                r.hash.as_str(),
                r.client_id.as_str(),
                r.params,
                r.created_at,
                r.expires_at
            ])?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn take_pushed(&self, hash: &TokenHash, now: UnixTime) -> StoreResult<Option<PushedRequest>> {
        let h = hash.clone();
        let taken = self
            .write(move |c| {
                c.prepare_cached(sql::TAKE)?
                    .query_row([h.as_str()], |x| {
                        Ok(PushedRequest {
                            hash: h.clone(),
                            client_id: client_id_at(x, 0)?,
                            params: x.get(1)?,
                            created_at: x.get(2)?,
                            expires_at: x.get(3)?,
                        })
                    })
                    .optional()
            })
            .await?;
        Ok(taken.filter(|r| r.expires_at > now))
    }
}
