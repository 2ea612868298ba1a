//! [`PasskeyStore`] on PostgreSQL. Each operation is one READ COMMITTED transaction or one
//! statement; the read-check-writes (a user's passkey count, the ceremony bounds) run under
//! advisory locks so that they are one atomic step across instances too, and the single-use and
//! counter rules are one conditional statement each.

use async_trait::async_trait;
use latchkey_core::UnixTime;
use latchkey_core::passkey::store::*;
use latchkey_core::store::{StoreError, StoreResult};
use latchkey_proto::TokenHash;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::passkey_sql as sql;
use crate::postgres::PostgresStore;

/// Advisory lock namespaces (the second argument of `hashtextextended`), apart from the pending
/// requests' (7) and the registrations' (12, 13): one user's passkeys.
const USER_LOCK: i64 = 14;
/// One lock for every ceremony insert: the global cap is a count over the whole table.
const CEREMONY_LOCK: i64 = 0x6c61_7463_686b_6579 + 14;

pub(crate) fn passkey_row(r: &Row) -> anyhow::Result<PasskeyRecord> {
    let count: i64 = r.try_get(5)?;
    Ok(PasskeyRecord {
        cred_id: r.try_get(0)?,
        user_id: r.try_get(1)?,
        user_handle: r.try_get(2)?,
        name: r.try_get(3)?,
        credential: r.try_get(4)?,
        sign_count: u32::try_from(count).unwrap_or(u32::MAX),
        backup_eligible: r.try_get(6)?,
        backup_state: r.try_get(7)?,
        created_at: r.try_get(8)?,
        last_used_at: r.try_get(9)?,
    })
}

/// The parameters of [`sql::INSERT`] for `p`; `count` holds the counter as PostgreSQL's BIGINT.
pub(crate) fn insert_params<'a>(p: &'a PasskeyRecord, count: &'a i64) -> [&'a (dyn ToSql + Sync); 10] {
    [
        &p.cred_id,
        &p.user_id,
        &p.user_handle,
        &p.name,
        &p.credential,
        count,
        &p.backup_eligible,
        &p.backup_state,
        &p.created_at,
        &p.last_used_at,
    ]
}

fn backend(e: anyhow::Error) -> StoreError {
    StoreError::Backend(e)
}

impl PostgresStore {
    async fn insert_passkey_once(&self, p: &PasskeyRecord, max_per_user: u32) -> anyhow::Result<PasskeyAdded> {
        let mut c = self.object().await?;
        let tx = Self::begin(&mut c).await?;
        tx.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, $2))", &[&p.user_id, &USER_LOCK]).await?;
        let n: i64 = tx.query_one(sql::COUNT_FOR_USER, &[&p.user_id]).await?.try_get(0)?;
        if n >= i64::from(max_per_user) {
            return Ok(PasskeyAdded::TooMany);
        }
        let count = i64::from(p.sign_count);
        // A credential id taken by anyone (another user's lock does not cover it) inserts nothing.
        if tx.execute(sql::INSERT, &insert_params(p, &count)).await? == 0 {
            return Ok(PasskeyAdded::Duplicate);
        }
        tx.commit().await?;
        Ok(PasskeyAdded::Added)
    }

    async fn insert_ceremony_once(
        &self,
        cer: &CeremonyRecord,
        now: UnixTime,
        limits: CeremonyLimits,
    ) -> anyhow::Result<bool> {
        let mut c = self.object().await?;
        let tx = Self::begin(&mut c).await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&CEREMONY_LOCK]).await?;
        tx.execute(sql::DELETE_EXPIRED_CEREMONIES, &[&now]).await?;
        let mine: i64 = tx.query_one(sql::CEREMONIES_BY_SOURCE, &[&cer.source]).await?.try_get(0)?;
        let all: i64 = tx.query_one(sql::CEREMONIES, &[]).await?.try_get(0)?;
        let per_source = i64::try_from(limits.per_source).unwrap_or(i64::MAX);
        let total = i64::try_from(limits.total).unwrap_or(i64::MAX);
        let ok = mine < per_source && all < total;
        if ok {
            tx.execute(sql::INSERT_CEREMONY, &[&cer.id.as_str(), &cer.data, &cer.source, &cer.expires_at]).await?;
        }
        tx.commit().await?;
        Ok(ok)
    }
}

#[async_trait]
impl PasskeyStore for PostgresStore {
    async fn insert_passkey(&self, p: &PasskeyRecord, max_per_user: u32) -> StoreResult<PasskeyAdded> {
        self.insert_passkey_once(p, max_per_user).await.map_err(backend)
    }

    async fn passkey(&self, cred_id: &str) -> StoreResult<Option<PasskeyRecord>> {
        self.opt(&sql::by_id(), &[&cred_id], passkey_row).await
    }

    async fn user_passkeys(&self, user_id: &str) -> StoreResult<Vec<PasskeyRecord>> {
        self.all(&sql::by_user(), &[&user_id], passkey_row).await
    }

    async fn rename_passkey(&self, user_id: &str, cred_id: &str, name: &str) -> StoreResult<bool> {
        Ok(self.exec(sql::RENAME, &[&name, &user_id, &cred_id]).await.map_err(backend)? > 0)
    }

    async fn remove_passkey(&self, user_id: &str, cred_id: &str) -> StoreResult<bool> {
        Ok(self.exec(sql::REMOVE, &[&user_id, &cred_id]).await.map_err(backend)? > 0)
    }

    async fn remove_user_passkeys(&self, user_id: &str) -> StoreResult<u64> {
        self.exec(sql::REMOVE_FOR_USER, &[&user_id]).await.map_err(backend)
    }

    async fn record_passkey_use(&self, cred_id: &str, u: &PasskeyUse) -> StoreResult<bool> {
        let count = i64::from(u.sign_count);
        let p: [&(dyn ToSql + Sync); 6] = [&count, &u.backup_eligible, &u.backup_state, &u.credential, &u.at, &cred_id];
        Ok(self.exec(sql::RECORD_USE, &p).await.map_err(backend)? > 0)
    }

    async fn insert_ceremony(&self, c: &CeremonyRecord, now: UnixTime, limits: CeremonyLimits) -> StoreResult<bool> {
        self.insert_ceremony_once(c, now, limits).await.map_err(backend)
    }

    async fn take_ceremony(&self, id: &TokenHash, now: UnixTime) -> StoreResult<Option<CeremonyRecord>> {
        let row = self
            .opt(sql::TAKE_CEREMONY, &[&id.as_str()], |r| {
                Ok(CeremonyRecord {
                    id: id.clone(),
                    data: r.try_get(0)?,
                    source: r.try_get(1)?,
                    expires_at: r.try_get(2)?,
                })
            })
            .await?;
        Ok(row.filter(|c| c.expires_at > now))
    }
}
