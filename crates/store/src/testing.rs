//! Test support (feature `test-util`): a PostgreSQL database of the test's own, dropped afterwards.
//!
//! The server is `POSTGRES_TEST_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`).
//! Outside CI a test without a reachable server is skipped with a message on stderr; in CI (`CI`
//! set) it fails, so a missing PostgreSQL can never pass silently.
#![allow(clippy::expect_used)]

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio_postgres::NoTls;

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub struct TestDatabase {
    /// The URL of the new, empty database.
    pub url: String,
    name: String,
    admin: String,
}

fn admin_url() -> String {
    std::env::var("POSTGRES_TEST_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.into())
}

async fn admin_client(url: &str) -> Result<tokio_postgres::Client, String> {
    let mut config: tokio_postgres::Config = url.parse().map_err(|e| format!("{e}"))?;
    config.connect_timeout(Duration::from_secs(5));
    let (client, conn) = config.connect(NoTls).await.map_err(|e| format!("{e}"))?;
    tokio::spawn(conn);
    Ok(client)
}

impl TestDatabase {
    /// A fresh database, or `None` (after printing why) when no PostgreSQL is reachable outside CI.
    pub async fn create(label: &str) -> Option<Self> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let admin = admin_url();
        let client = match admin_client(&admin).await {
            Ok(c) => c,
            Err(e) => {
                assert!(std::env::var_os("CI").is_none(), "CI must have PostgreSQL at {admin}: {e}");
                // Straight to the stream, not through eprintln!, which the test harness captures:
                // a skip must show in a plain `cargo test` run.
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED {label}: no PostgreSQL reachable at {admin} ({e}); start one or set POSTGRES_TEST_URL"
                );
                return None;
            }
        };
        let label: String = label
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(24)
            .collect::<String>()
            .to_lowercase();
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let name = format!("lk_{label}_{}_{}_{nanos}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
        client.batch_execute(&format!("CREATE DATABASE \"{name}\"")).await.expect("CREATE DATABASE");
        let base = admin.split_once('?').map_or(admin.as_str(), |(b, _)| b);
        let server = base.rsplit_once('/').map_or(base, |(s, _)| s);
        Some(Self { url: format!("{server}/{name}"), name, admin })
    }
}

impl TestDatabase {
    /// A URL for a new, empty schema of this database (the connection's `search_path`): as good
    /// as a new database for a test, and far cheaper to drop, since PostgreSQL checkpoints on
    /// every DROP DATABASE.
    pub async fn fresh_schema(&self) -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let schema = format!("s{}", NEXT.fetch_add(1, Ordering::SeqCst));
        let client = admin_client(&self.url).await.expect("connecting to the test database");
        client.batch_execute(&format!("CREATE SCHEMA {schema}")).await.expect("CREATE SCHEMA");
        format!("{}?options=-c%20search_path%3D{schema}", self.url)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop may run inside a runtime, which cannot block on another: use a thread of its own.
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async {
                if let Ok(c) = admin_client(&admin).await {
                    // FORCE: servers started by the test may still hold connections.
                    let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await;
                }
            });
        });
        let _ = done.join();
    }
}
