//! Storage backends for Latchkey. SQLite is the embedded default: one file, created and migrated
//! on first start.

mod sqlite;
mod sqlite_conn;
mod sqlite_schema;

pub use sqlite::SqliteStore;
