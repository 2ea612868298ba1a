//! The registry of protected resources (RFC 8707) on PostgreSQL.

use async_trait::async_trait;
use latchkey_core::resource::{ResourceRecord, ResourceStore};
use latchkey_core::store::{StoreError, StoreResult};
use latchkey_proto::ResourceUri;
use tokio_postgres::Row;

use crate::postgres::{PostgresStore, is_unique_violation, resource_of, scope_of};
use crate::sqlite_resources::RESOURCE_COLS;

pub(crate) fn resource_row(r: &Row) -> anyhow::Result<ResourceRecord> {
    let uri = resource_of(r.try_get(0)?)?.ok_or_else(|| anyhow::anyhow!("stored resource has no URI"))?;
    Ok(ResourceRecord { uri, name: r.try_get(1)?, scopes: scope_of(r.try_get(2)?)?, created_at: r.try_get(3)? })
}

pub(crate) const INSERT_RESOURCE: &str = "INSERT INTO resources (uri, name, scope, created_at) VALUES ($1, $2, $3, $4)";

#[async_trait]
impl ResourceStore for PostgresStore {
    async fn insert_resource(&self, r: &ResourceRecord) -> StoreResult<()> {
        self.exec(INSERT_RESOURCE, &[&r.uri.as_str(), &r.name, &r.scopes.to_string(), &r.created_at])
            .await
            .map(|_| ())
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::AlreadyExists("a resource with this URI")
                } else {
                    StoreError::Backend(e)
                }
            })
    }

    async fn resource(&self, uri: &ResourceUri) -> StoreResult<Option<ResourceRecord>> {
        let sql = format!("SELECT {RESOURCE_COLS} FROM resources WHERE uri = $1");
        self.opt(&sql, &[&uri.as_str()], resource_row).await
    }

    async fn resources(&self) -> StoreResult<Vec<ResourceRecord>> {
        self.all(&format!("SELECT {RESOURCE_COLS} FROM resources ORDER BY uri"), &[], resource_row).await
    }

    async fn remove_resource(&self, uri: &ResourceUri) -> StoreResult<bool> {
        Ok(self.exec("DELETE FROM resources WHERE uri = $1", &[&uri.as_str()]).await? > 0)
    }
}
