//! [`RegistrationStore`] on SQLite. The writer is one connection, so each closure below is one
//! atomic step; across processes, SQLite's write lock serializes them the same way.

use async_trait::async_trait;
use latchkey_core::UnixTime;
use latchkey_core::store::*;
use latchkey_proto::registration::ClientMetadata;
use latchkey_proto::{ClientId, TokenHash};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::registration_sql as sql;
use crate::sqlite::{SqliteStore, client_id_at, json_col, to_json};

pub(crate) fn registration_row(r: &Row<'_>) -> rusqlite::Result<RegistrationRecord> {
    Ok(RegistrationRecord {
        client_id: client_id_at(r, 0)?,
        access_hash: TokenHash::from_stored(r.get(1)?),
        fingerprint: r.get(2)?,
        shared: r.get(3)?,
        metadata: json_col(r, 4)?,
        created_at: r.get(5)?,
    })
}

fn client_data(c: &Connection, id: &str) -> rusqlite::Result<Option<ClientRecord>> {
    c.prepare_cached("SELECT data FROM clients WHERE client_id = $1")?.query_row([id], |r| json_col(r, 0)).optional()
}

#[async_trait]
impl RegistrationStore for SqliteStore {
    async fn register_client(
        &self,
        client: &ClientRecord,
        reg: &RegistrationRecord,
        source: &str,
        per_minute: u32,
        now: UnixTime,
    ) -> StoreResult<Registered> {
        let data = to_json(client)?;
        let meta = to_json(&reg.metadata)?;
        let (client, reg, source) = (client.clone(), reg.clone(), source.to_owned());
        self.write(move |c| {
            let tx = c.savepoint()?;
            if let Some(fp) = &reg.fingerprint {
                let existing = tx.prepare_cached(sql::BY_FINGERPRINT)?.query_row([fp], registration_row).optional()?;
                if let Some(mut e) = existing {
                    tx.execute(sql::MARK_SHARED, [e.client_id.as_str()])?;
                    e.shared = true;
                    // The registration row is deleted with its client, so the client is there.
                    let found = client_data(&tx, e.client_id.as_str())?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
                    tx.commit()?;
                    return Ok(Registered::Existing(Box::new((found, e))));
                }
            }
            let state: Option<(i64, i64)> = tx
                .prepare_cached(sql::THROTTLE_STATE)?
                .query_row([&source], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            if let Some((start, n)) = state
                && start > now - sql::WINDOW
                && n >= i64::from(per_minute)
            {
                return Ok(Registered::Throttled);
            }
            tx.execute(sql::THROTTLE_COUNT, params![source, now, now - sql::WINDOW])?;
            tx.execute(
                "INSERT INTO clients (client_id, data, created_at) VALUES ($1, $2, $3)",
                params![client.client_id.as_str(), data, client.created_at],
            )?;
            tx.execute(
                sql::INSERT,
                params![
                    reg.client_id.as_str(),
                    reg.access_hash.as_str(),
                    reg.fingerprint,
                    reg.shared,
                    meta,
                    reg.created_at
                ],
            )?;
            tx.commit()?;
            Ok(Registered::Created)
        })
        .await
    }

    async fn registration(&self, client_id: &ClientId) -> StoreResult<Option<RegistrationRecord>> {
        let id = client_id.as_str().to_owned();
        self.lookup(move |c| c.prepare_cached(sql::BY_CLIENT)?.query_row([id], registration_row).optional()).await
    }

    async fn update_registered_client(&self, client: &ClientRecord, metadata: &ClientMetadata) -> StoreResult<bool> {
        let (data, meta, id) = (to_json(client)?, to_json(metadata)?, client.client_id.as_str().to_owned());
        self.write(move |c| {
            let tx = c.savepoint()?;
            if tx.execute(sql::UPDATE, params![meta, id])? == 0 {
                return Ok(false);
            }
            tx.execute("UPDATE clients SET data = $1 WHERE client_id = $2", params![data, id])?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn delete_registered_client(&self, client_id: &ClientId) -> StoreResult<bool> {
        let id = client_id.as_str().to_owned();
        self.write(move |c| {
            let tx = c.savepoint()?;
            let n = tx.execute("DELETE FROM registrations WHERE client_id = $1 AND shared = FALSE", [&id])?;
            if n == 0 {
                return Ok(false);
            }
            // Everything issued to the client goes with it, as with `client remove`.
            for table in ["grants", "codes", "consents", "clients"] {
                tx.execute(&format!("DELETE FROM {table} WHERE client_id = $1"), [&id])?;
            }
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn purge_idle_registrations(&self, now: UnixTime, created_before: UnixTime) -> StoreResult<(u64, u64)> {
        self.write(move |c| {
            let tx = c.savepoint()?;
            let mut clients = 0;
            for stmt in sql::purge_idle() {
                clients = tx.execute(&stmt, params![created_before, now])? as u64;
            }
            let counters = tx.execute(sql::PURGE_THROTTLE, [now - sql::WINDOW])? as u64;
            tx.commit()?;
            Ok((clients, counters))
        })
        .await
    }
}
