//! [`RegistrationStore`] on PostgreSQL. Each operation is one READ COMMITTED transaction; the
//! read-check-write of a registration runs under advisory locks (the fingerprint's, then the
//! source's, always in that order), so that it is one atomic step across instances too.

use async_trait::async_trait;
use latchkey_core::UnixTime;
use latchkey_core::store::*;
use latchkey_proto::registration::ClientMetadata;
use latchkey_proto::{ClientId, TokenHash};
use tokio_postgres::Row;

use crate::postgres::{PostgresStore, json_of};
use crate::registration_sql as sql;

/// Advisory lock namespaces (the second argument of `hashtextextended`), apart from the pending
/// requests' (7).
const FINGERPRINT_LOCK: i64 = 12;
const SOURCE_LOCK: i64 = 13;

pub(crate) fn registration_row(r: &Row) -> anyhow::Result<RegistrationRecord> {
    Ok(RegistrationRecord {
        client_id: ClientId::parse(r.try_get(0)?)?,
        access_hash: TokenHash::from_stored(r.try_get(1)?),
        fingerprint: r.try_get(2)?,
        shared: r.try_get(3)?,
        metadata: json_of(r, 4)?,
        created_at: r.try_get(5)?,
    })
}

fn backend(e: anyhow::Error) -> StoreError {
    StoreError::Backend(e)
}

impl PostgresStore {
    async fn register_once(
        &self,
        client: &ClientRecord,
        reg: &RegistrationRecord,
        source: &str,
        per_minute: u32,
        now: UnixTime,
    ) -> anyhow::Result<Registered> {
        let data = serde_json::to_string(client)?;
        let meta = serde_json::to_string(&reg.metadata)?;
        let mut c = self.object().await?;
        let tx = Self::begin(&mut c).await?;
        if let Some(fp) = &reg.fingerprint {
            tx.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, $2))", &[fp, &FINGERPRINT_LOCK]).await?;
            if let Some(row) = tx.query_opt(sql::BY_FINGERPRINT, &[fp]).await? {
                let mut e = registration_row(&row)?;
                tx.execute(sql::MARK_SHARED, &[&e.client_id.as_str()]).await?;
                e.shared = true;
                let cl =
                    tx.query_one("SELECT data FROM clients WHERE client_id = $1", &[&e.client_id.as_str()]).await?;
                let cl: ClientRecord = json_of(&cl, 0)?;
                tx.commit().await?;
                return Ok(Registered::Existing(Box::new((cl, e))));
            }
        }
        tx.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, $2))", &[&source, &SOURCE_LOCK]).await?;
        if let Some(row) = tx.query_opt(sql::THROTTLE_STATE, &[&source]).await? {
            let (start, n): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
            if start > now - sql::WINDOW && n >= i64::from(per_minute) {
                return Ok(Registered::Throttled);
            }
        }
        tx.execute(sql::THROTTLE_COUNT, &[&source, &now, &(now - sql::WINDOW)]).await?;
        tx.execute(
            "INSERT INTO clients (client_id, data, created_at) VALUES ($1, $2, $3)",
            &[&client.client_id.as_str(), &data, &client.created_at],
        )
        .await?;
        tx.execute(
            sql::INSERT,
            &[
                &reg.client_id.as_str(),
                &reg.access_hash.as_str(),
                &reg.fingerprint,
                &reg.shared,
                &meta,
                &reg.created_at,
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(Registered::Created)
    }
}

#[async_trait]
impl RegistrationStore for PostgresStore {
    async fn register_client(
        &self,
        client: &ClientRecord,
        reg: &RegistrationRecord,
        source: &str,
        per_minute: u32,
        now: UnixTime,
    ) -> StoreResult<Registered> {
        self.register_once(client, reg, source, per_minute, now).await.map_err(backend)
    }

    async fn registration(&self, client_id: &ClientId) -> StoreResult<Option<RegistrationRecord>> {
        let run = async {
            let c = self.object().await?;
            c.query_opt(sql::BY_CLIENT, &[&client_id.as_str()]).await?.as_ref().map(registration_row).transpose()
        };
        run.await.map_err(backend)
    }

    async fn update_registered_client(&self, client: &ClientRecord, metadata: &ClientMetadata) -> StoreResult<bool> {
        let run = async {
            let data = serde_json::to_string(client)?;
            let meta = serde_json::to_string(metadata)?;
            let id = client.client_id.as_str();
            let mut c = self.object().await?;
            let tx = Self::begin(&mut c).await?;
            if tx.execute(sql::UPDATE, &[&meta, &id]).await? == 0 {
                return Ok(false);
            }
            tx.execute("UPDATE clients SET data = $1 WHERE client_id = $2", &[&data, &id]).await?;
            tx.commit().await?;
            Ok(true)
        };
        run.await.map_err(backend)
    }

    async fn delete_registered_client(&self, client_id: &ClientId) -> StoreResult<bool> {
        let run = async {
            let id = client_id.as_str();
            let mut c = self.object().await?;
            let tx = Self::begin(&mut c).await?;
            if tx.execute("DELETE FROM registrations WHERE client_id = $1 AND shared = FALSE", &[&id]).await? == 0 {
                return Ok(false);
            }
            // Everything issued to the client goes with it, as with `client remove`.
            for table in ["grants", "codes", "consents", "clients"] {
                tx.execute(format!("DELETE FROM {table} WHERE client_id = $1").as_str(), &[&id]).await?;
            }
            tx.commit().await?;
            Ok(true)
        };
        run.await.map_err(backend)
    }

    async fn purge_idle_registrations(&self, now: UnixTime, created_before: UnixTime) -> StoreResult<(u64, u64)> {
        let run = async {
            let mut c = self.object().await?;
            let tx = Self::begin(&mut c).await?;
            let mut clients = 0;
            for stmt in sql::purge_idle() {
                clients = tx.execute(stmt.as_str(), &[&created_before, &now]).await?;
            }
            let counters = tx.execute(sql::PURGE_THROTTLE, &[&(now - sql::WINDOW)]).await?;
            tx.commit().await?;
            Ok((clients, counters))
        };
        run.await.map_err(backend)
    }
}
