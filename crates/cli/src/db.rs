//! `latchkey migrate` and `latchkey db copy`: schema and moving a deployment between databases.

use anyhow::bail;
use clap::Subcommand;
use latchkey_core::store::TableCounts;
use latchkey_store::{StoreOptions, redacted};

use crate::config::Settings;
use crate::serve::open_store;

#[derive(Subcommand, Debug)]
pub enum DbCommand {
    /// Copy every record (clients, users, signing keys, consents, sessions, live grants and their
    /// refresh tokens, as stored: secrets only as hashes) into a new, empty database, e.g.
    /// `--from sqlite://latchkey.db --to postgres://…`. Stop the servers first: what they write
    /// after the copy's snapshot is not copied.
    Copy {
        /// The database to read (a SQLite path or sqlite://PATH, or a postgres:// URL).
        #[arg(long, value_name = "PATH|URL")]
        from: String,
        /// The database to fill; it is created or migrated, and must hold no data yet.
        #[arg(long, value_name = "PATH|URL")]
        to: String,
    },
}

pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let version = latchkey_store::migrate_with(&settings.database, settings.store_options()).await?;
    println!("database {} is at schema version {version}", redacted(&settings.database));
    Ok(())
}

pub async fn run(settings: &Settings, cmd: DbCommand) -> anyhow::Result<()> {
    match cmd {
        DbCommand::Copy { from, to } => copy(&from, &to, settings.store_options()).await,
    }
}

fn lines(c: &TableCounts) -> Vec<(&'static str, u64)> {
    vec![
        ("clients", c.clients),
        ("users", c.users),
        ("signing_keys", c.signing_keys),
        ("consents", c.consents),
        ("sessions", c.sessions),
        ("grants", c.grants),
        ("refresh_tokens", c.refresh_tokens),
        ("access_tokens", c.access_tokens),
        ("codes", c.codes),
        ("pending_authorizations", c.pending_authorizations),
        ("audit_events", c.audit_events),
    ]
}

/// A SQLite target is created with mode 0600 (`StoreOptions`), like every database this binary
/// opens: the copy holds the private signing keys too, sealed or not as they were.
async fn copy(from: &str, to: &str, options: StoreOptions) -> anyhow::Result<()> {
    if from == to {
        bail!("--from and --to name the same database");
    }
    let source = open_store(from, options).await?;
    let target = open_store(to, options).await?;
    let existing = target.table_counts().await?;
    if existing.total() > 0 {
        bail!(
            "the target database {} already holds {} rows: db copy only fills an empty database",
            redacted(to),
            existing.total()
        );
    }
    let snapshot = source.export().await?;
    if snapshot.clients.is_empty() && snapshot.users.is_empty() && snapshot.signing_keys.is_empty() {
        bail!("the source database {} holds no clients, users or keys: nothing to copy", redacted(from));
    }
    target.import(&snapshot).await?;
    let copied = target.table_counts().await?;
    println!("copied {} to {}:", redacted(from), redacted(to));
    for (table, n) in lines(&copied) {
        println!("  {table}: {n}");
    }
    Ok(())
}
