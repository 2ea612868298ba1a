//! [`PushedRequestStore`] on PostgreSQL. The per-client count and the insert run under a
//! transaction-scoped advisory lock on the client, so concurrent pushes (on any instance) cannot
//! together pass the bound.

use async_trait::async_trait;
use latchkey_core::UnixTime;
use latchkey_core::pushed::{PushedRequest, PushedRequestStore};
use latchkey_core::store::{StoreError, StoreResult};
use latchkey_proto::TokenHash;

use crate::PostgresStore;
use crate::postgres::client_id_of;
use crate::pushed_sql as sql;

/// The second key of the per-client advisory lock (the first is the client id's hash).
const CLIENT_LOCK: i64 = 18;

impl PostgresStore {
    async fn insert_pushed_once(&self, r: &PushedRequest, max: i64, now: UnixTime) -> anyhow::Result<bool> {
        let mut c = self.object().await?;
        let tx = Self::begin(&mut c).await?;
        tx.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, $2))", &[&r.client_id.as_str(), &CLIENT_LOCK])
            .await?;
        let n: i64 = tx.query_one(sql::COUNT_LIVE_FOR_CLIENT, &[&r.client_id.as_str(), &now]).await?.try_get(0)?;
        if n >= max {
            return Ok(false);
        }
        tx.execute(sql::INSERT, &[&r.hash.as_str(), &r.client_id.as_str(), &r.params, &r.created_at, &r.expires_at])
            .await?;
        tx.commit().await?;
        Ok(true)
    }
}

#[async_trait]
impl PushedRequestStore for PostgresStore {
    async fn insert_pushed(&self, r: &PushedRequest, max_per_client: u64, now: UnixTime) -> StoreResult<bool> {
        let max = i64::try_from(max_per_client).unwrap_or(i64::MAX);
        self.insert_pushed_once(r, max, now).await.map_err(StoreError::Backend)
    }

    async fn take_pushed(&self, hash: &TokenHash, now: UnixTime) -> StoreResult<Option<PushedRequest>> {
        let taken = self
            .opt(sql::TAKE, &[&hash.as_str()], |x| {
                Ok(PushedRequest {
                    hash: hash.clone(),
                    client_id: client_id_of(x.try_get(0)?)?,
                    params: x.try_get(1)?,
                    created_at: x.try_get(2)?,
                    expires_at: x.try_get(3)?,
                })
            })
            .await?;
        Ok(taken.filter(|r| r.expires_at > now))
    }
}
