//! [`PasskeyStore`] on SQLite. The writer is one connection, so each closure below is one atomic
//! step; across processes, SQLite's write lock serializes them the same way.

use async_trait::async_trait;
use latchkey_core::UnixTime;
use latchkey_core::passkey::store::*;
use latchkey_core::store::StoreResult;
use latchkey_proto::TokenHash;
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::passkey_sql as sql;
use crate::sqlite::SqliteStore;

pub(crate) fn passkey_row(r: &Row<'_>) -> rusqlite::Result<PasskeyRecord> {
    let count: i64 = r.get(5)?;
    Ok(PasskeyRecord {
        cred_id: r.get(0)?,
        user_id: r.get(1)?,
        user_handle: r.get(2)?,
        name: r.get(3)?,
        credential: r.get(4)?,
        sign_count: u32::try_from(count).unwrap_or(u32::MAX),
        backup_eligible: r.get(6)?,
        backup_state: r.get(7)?,
        created_at: r.get(8)?,
        last_used_at: r.get(9)?,
    })
}

pub(crate) fn insert_passkey_row(c: &Connection, p: &PasskeyRecord) -> rusqlite::Result<usize> {
    c.prepare_cached(sql::INSERT)?.execute(params![
        p.cred_id,
        p.user_id,
        p.user_handle,
        p.name,
        p.credential,
        i64::from(p.sign_count),
        p.backup_eligible,
        p.backup_state,
        p.created_at,
        p.last_used_at
    ])
}

#[async_trait]
impl PasskeyStore for SqliteStore {
    async fn insert_passkey(&self, p: &PasskeyRecord, max_per_user: u32) -> StoreResult<PasskeyAdded> {
        let p = p.clone();
        self.write(move |c| {
            let tx = c.savepoint()?;
            let taken: i64 = tx.prepare_cached(sql::EXISTS)?.query_row([&p.cred_id], |r| r.get(0))?;
            if taken > 0 {
                return Ok(PasskeyAdded::Duplicate);
            }
            let n: i64 = tx.prepare_cached(sql::COUNT_FOR_USER)?.query_row([&p.user_id], |r| r.get(0))?;
            if n >= i64::from(max_per_user) {
                return Ok(PasskeyAdded::TooMany);
            }
            insert_passkey_row(&tx, &p)?;
            tx.commit()?;
            Ok(PasskeyAdded::Added)
        })
        .await
    }

    async fn passkey(&self, cred_id: &str) -> StoreResult<Option<PasskeyRecord>> {
        let id = cred_id.to_owned();
        self.lookup(move |c| c.prepare_cached(&sql::by_id())?.query_row([id], passkey_row).optional()).await
    }

    async fn user_passkeys(&self, user_id: &str) -> StoreResult<Vec<PasskeyRecord>> {
        let id = user_id.to_owned();
        self.scan(move |c| c.prepare_cached(&sql::by_user())?.query_map([id], passkey_row)?.collect()).await
    }

    async fn rename_passkey(&self, user_id: &str, cred_id: &str, name: &str) -> StoreResult<bool> {
        let (u, id, name) = (user_id.to_owned(), cred_id.to_owned(), name.to_owned());
        self.write(move |c| c.prepare_cached(sql::RENAME)?.execute(params![name, u, id])).await.map(|n| n > 0)
    }

    async fn remove_passkey(&self, user_id: &str, cred_id: &str) -> StoreResult<bool> {
        let (u, id) = (user_id.to_owned(), cred_id.to_owned());
        self.write(move |c| c.prepare_cached(sql::REMOVE)?.execute(params![u, id])).await.map(|n| n > 0)
    }

    async fn remove_user_passkeys(&self, user_id: &str) -> StoreResult<u64> {
        let u = user_id.to_owned();
        self.write(move |c| c.prepare_cached(sql::REMOVE_FOR_USER)?.execute([u])).await.map(|n| n as u64)
    }

    async fn record_passkey_use(&self, cred_id: &str, u: &PasskeyUse) -> StoreResult<bool> {
        let (id, u) = (cred_id.to_owned(), u.clone());
        self.write(move |c| {
            c.prepare_cached(sql::RECORD_USE)?.execute(params![
                i64::from(u.sign_count),
                u.backup_eligible,
                u.backup_state,
                u.credential,
                u.at,
                id
            ])
        })
        .await
        .map(|n| n > 0)
    }

    async fn insert_ceremony(&self, cer: &CeremonyRecord, now: UnixTime, limits: CeremonyLimits) -> StoreResult<bool> {
        let cer = cer.clone();
        let per_source = i64::try_from(limits.per_source).unwrap_or(i64::MAX);
        let total = i64::try_from(limits.total).unwrap_or(i64::MAX);
        self.write(move |c| {
            let tx = c.savepoint()?;
            tx.prepare_cached(sql::DELETE_EXPIRED_CEREMONIES)?.execute([now])?;
            let mine: i64 = tx.prepare_cached(sql::CEREMONIES_BY_SOURCE)?.query_row([&cer.source], |r| r.get(0))?;
            let all: i64 = tx.prepare_cached(sql::CEREMONIES)?.query_row([], |r| r.get(0))?;
            if mine >= per_source || all >= total {
                // The expired rows stay deleted: that is housekeeping, not the refused insert.
                tx.commit()?;
                return Ok(false);
            }
            tx.prepare_cached(sql::INSERT_CEREMONY)?.execute(params![
                cer.id.as_str(),
                cer.data,
                cer.source,
                cer.expires_at
            ])?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn take_ceremony(&self, id: &TokenHash, now: UnixTime) -> StoreResult<Option<CeremonyRecord>> {
        let id = id.clone();
        self.write(move |c| {
            let row = c
                .prepare_cached(sql::TAKE_CEREMONY)?
                .query_row([id.as_str()], |r| {
                    Ok(CeremonyRecord { id: id.clone(), data: r.get(0)?, source: r.get(1)?, expires_at: r.get(2)? })
                })
                .optional()?;
            // Taken either way: an expired ceremony is of no further use to anyone.
            Ok(row.filter(|c| c.expires_at > now))
        })
        .await
    }
}
