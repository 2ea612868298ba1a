//! Storage backends for Latchkey. SQLite is the embedded default: one file, created and migrated
//! on first start. PostgreSQL serves deployments of several instances sharing one database.
//!
//! `open` is the one place that chooses a backend, from the database setting: a path or
//! `sqlite://PATH` for SQLite, `postgres://…` (or `postgresql://…`) for PostgreSQL. Everything
//! above it sees only the `Store` trait.

mod account_sql;
mod cimd_sql;
mod device_sql;
mod email_link_sql;
mod factors_sql;
mod outbox_sql;
mod passkey_sql;
mod postgres;
mod postgres_account;
mod postgres_cimd;
mod postgres_device;
mod postgres_email_link;
mod postgres_factors;
mod postgres_maint;
mod postgres_outbox;
mod postgres_passkey;
mod postgres_pushed;
mod postgres_registration;
mod postgres_replay;
mod postgres_resources;
mod postgres_rows;
mod postgres_schema;
mod postgres_session_end;
mod purge_sql;
mod pushed_sql;
mod registration_sql;
mod replay_sql;
mod session_end_sql;
mod sqlite;
mod sqlite_account;
mod sqlite_cimd;
mod sqlite_conn;
mod sqlite_device;
mod sqlite_email_link;
mod sqlite_factors;
mod sqlite_maint;
mod sqlite_outbox;
mod sqlite_passkey;
mod sqlite_pushed;
mod sqlite_registration;
mod sqlite_replay;
mod sqlite_resources;
mod sqlite_rows;
mod sqlite_schema;
mod sqlite_session_end;
#[cfg(feature = "test-util")]
pub mod testing;

use std::sync::Arc;

use latchkey_core::Store;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;
pub use sqlite_conn::StoreOptions;

/// Which backend a database setting names.
enum Target<'a> {
    Sqlite(&'a str),
    Postgres(&'a str),
}

fn target(database: &str) -> anyhow::Result<Target<'_>> {
    if database.starts_with("postgres://") || database.starts_with("postgresql://") {
        return Ok(Target::Postgres(database));
    }
    let path = database.strip_prefix("sqlite://").unwrap_or(database);
    if path.contains("://") {
        anyhow::bail!(
            "unsupported database {:?}: give a SQLite file path (or sqlite://PATH) or a postgres:// URL",
            redacted(database)
        );
    }
    Ok(Target::Sqlite(path))
}

/// Opens the store `database` names, applying pending migrations.
pub async fn open(database: &str) -> anyhow::Result<Arc<dyn Store>> {
    open_with(database, StoreOptions::default()).await
}

/// Opens the store `database` names as [`open`] does, with `options`.
pub async fn open_with(database: &str, options: StoreOptions) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match target(database)? {
        Target::Sqlite(path) => Arc::new(SqliteStore::open_with(std::path::Path::new(path), options)?),
        Target::Postgres(url) => Arc::new(PostgresStore::connect(url).await?),
    })
}

/// Applies pending migrations to `database` and returns its schema version.
pub async fn migrate(database: &str) -> anyhow::Result<usize> {
    migrate_with(database, StoreOptions::default()).await
}

/// Applies pending migrations as [`migrate`] does, with `options`.
pub async fn migrate_with(database: &str, options: StoreOptions) -> anyhow::Result<usize> {
    match target(database)? {
        Target::Sqlite(path) => {
            SqliteStore::open_with(std::path::Path::new(path), options)?;
            Ok(sqlite_schema::MIGRATIONS.len())
        }
        Target::Postgres(url) => PostgresStore::connect(url).await?.migrate().await,
    }
}

/// The database setting as it may be shown or logged: a URL loses its password and its query
/// (where `password=` may also be given).
pub fn redacted(database: &str) -> String {
    let Some((scheme, rest)) = database.split_once("://") else { return database.to_owned() };
    let rest = rest.split_once('?').map_or(rest, |(r, _)| r);
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_owned(),
    };
    format!("{scheme}://{authority}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_secrets() {
        assert_eq!(
            redacted("postgres://app:s3cret@db.internal:5432/latchkey"),
            "postgres://app:***@db.internal:5432/latchkey"
        );
        assert_eq!(redacted("postgres://app@db/latchkey?password=s3cret"), "postgres://app@db/latchkey");
        assert_eq!(redacted("latchkey.db"), "latchkey.db");
        assert!(target("mysql://x").is_err());
        assert!(matches!(target("sqlite://a.db"), Ok(Target::Sqlite("a.db"))));
        assert!(matches!(target("postgresql://h/db"), Ok(Target::Postgres(_))));
    }
}
