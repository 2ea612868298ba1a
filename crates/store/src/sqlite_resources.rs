//! The registry of protected resources (RFC 8707) on SQLite.

use async_trait::async_trait;
use latchkey_core::resource::{ResourceRecord, ResourceStore};
use latchkey_core::store::{StoreError, StoreResult};
use latchkey_proto::ResourceUri;
use rusqlite::{OptionalExtension, Row, params};

use crate::sqlite::{SqliteStore, is_unique_violation, resource_at, scope_at};

pub(crate) const RESOURCE_COLS: &str = "uri, name, scope, created_at";

pub(crate) fn resource_row(r: &Row<'_>) -> rusqlite::Result<ResourceRecord> {
    let uri =
        resource_at(r, 0)?.ok_or(rusqlite::Error::InvalidColumnType(0, "uri".into(), rusqlite::types::Type::Null))?;
    Ok(ResourceRecord { uri, name: r.get(1)?, scopes: scope_at(r, 2)?, created_at: r.get(3)? })
}

pub(crate) fn insert_resource_row(c: &rusqlite::Connection, r: &ResourceRecord) -> rusqlite::Result<usize> {
    c.prepare_cached(&format!("INSERT INTO resources ({RESOURCE_COLS}) VALUES (?1, ?2, ?3, ?4)"))?.execute(params![
        r.uri.as_str(),
        r.name,
        r.scopes.to_string(),
        r.created_at
    ])
}

#[async_trait]
impl ResourceStore for SqliteStore {
    async fn insert_resource(&self, r: &ResourceRecord) -> StoreResult<()> {
        let r = r.clone();
        self.write(move |c| insert_resource_row(c, &r)).await.map(|_| ()).map_err(|e| {
            if is_unique_violation(&e) { StoreError::AlreadyExists("a resource with this URI") } else { e }
        })
    }

    async fn resource(&self, uri: &ResourceUri) -> StoreResult<Option<ResourceRecord>> {
        let uri = uri.to_string();
        self.lookup(move |c| {
            c.prepare_cached(&format!("SELECT {RESOURCE_COLS} FROM resources WHERE uri = ?1"))?
                .query_row([uri], resource_row)
                .optional()
        })
        .await
    }

    async fn resources(&self) -> StoreResult<Vec<ResourceRecord>> {
        self.scan(|c| {
            c.prepare_cached(&format!("SELECT {RESOURCE_COLS} FROM resources ORDER BY uri"))?
                .query_map([], resource_row)?
                .collect()
        })
        .await
    }

    async fn remove_resource(&self, uri: &ResourceUri) -> StoreResult<bool> {
        let uri = uri.to_string();
        self.write(move |c| c.execute("DELETE FROM resources WHERE uri = ?1", [uri])).await.map(|n| n > 0)
    }
}
