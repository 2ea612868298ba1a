//! SQLite connections: one writer thread with group commit, and reader connections.
//!
//! WAL mode, so reads never wait for writes. Durability is `synchronous=FULL`: a commit is on disk
//! before the response that depends on it is sent (a redeemed code stays redeemed after a crash).
//! An fsync costs milliseconds, so one commit per request would cap every write path at a few
//! hundred per second. Instead one thread owns the writer connection and runs every write queued
//! meanwhile (up to `GROUP`) in one transaction, each inside its own savepoint so that one failing
//! write undoes only itself, then commits once. Each caller learns its result only after that
//! commit: group commit changes throughput, not the guarantee.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use anyhow::{Context, anyhow};
use latchkey_core::store::{StoreError, StoreResult};
use rusqlite::{Connection, TransactionBehavior};

use crate::sqlite_schema::MIGRATIONS;

const READERS: usize = 4;
/// Most writes committed together: bounds the latency one fsync adds to a burst.
const GROUP: usize = 128;

type Done = Box<dyn FnOnce(Result<(), String>) + Send>;
type Job = Box<dyn FnOnce(&mut Connection) -> Done + Send>;

pub(crate) struct Pool {
    jobs: Mutex<mpsc::Sender<Job>>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding a connection leaves it usable: SQLite rolls back an open transaction
    // when the next one begins on a fresh statement.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(anyhow::Error::new(e))
}

/// How a store is opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreOptions {
    /// Open a SQLite database file (or its `-wal`/`-shm`) that other accounts on the host may
    /// read, instead of refusing. The file holds the private signing keys: whoever reads it can
    /// mint tokens for any user. Logged loudly at every open.
    pub allow_insecure_db_permissions: bool,
}

/// The files SQLite keeps for the database at `path`: the database, its write-ahead log and its
/// shared-memory index. The last two hold recent pages, so the same secrets as the database.
fn database_files(path: &Path) -> [std::path::PathBuf; 3] {
    let with = |suffix: &str| {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        std::path::PathBuf::from(p)
    };
    [path.to_path_buf(), with("-wal"), with("-shm")]
}

/// Makes sure the database file exists with mode 0600 before SQLite opens it, and refuses an
/// existing database file that others can read (unless `allow_insecure`).
///
/// SQLite creates `-wal` and `-shm` with the permissions of the database file, so a 0600 database
/// gives 0600 companions (the binary tests check all three under umask 022). Creating the file
/// ourselves with `create_new` is what makes the mode independent of the process's umask: the
/// default umask 022 would otherwise give 0644, readable by every local account.
#[cfg(unix)]
fn secure_files(path: &Path, allow_insecure: bool) -> anyhow::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

    check_directory(path);
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("creating SQLite database {}", path.display())),
    }
    let mut exposed = Vec::new();
    for file in database_files(path) {
        match std::fs::metadata(&file) {
            Ok(m) if m.permissions().mode() & 0o077 != 0 => {
                exposed.push(format!("{} (mode {:03o})", file.display(), m.permissions().mode() & 0o777));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("checking the permissions of {}", file.display())),
        }
    }
    if exposed.is_empty() {
        return Ok(());
    }
    if allow_insecure {
        tracing::warn!(
            files = %exposed.join(", "),
            "allow_insecure_db_permissions: the database, which holds the private signing keys, is readable by \
             other accounts on this host; anyone who reads it can mint tokens for any user. Fix it with chmod 600"
        );
        return Ok(());
    }
    Err(anyhow!(
        "refusing to open {}: {} readable by other accounts on this host, and the database holds the private \
         signing keys (whoever reads it can mint tokens for any user). Fix it with: chmod 600 {} \
         (or, knowingly, pass --allow-insecure-db-permissions)",
        path.display(),
        exposed.join(", "),
        database_files(path).iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(" ")
    ))
}

/// Warns about a directory others can write to (they could delete or replace the database, or
/// plant a `-wal` file beside it) and notes one others can list.
#[cfg(unix)]
fn check_directory(path: &Path) {
    use std::os::unix::fs::PermissionsExt;

    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let Ok(mode) = std::fs::metadata(dir).map(|m| m.permissions().mode()) else { return };
    if mode & 0o022 != 0 {
        tracing::warn!(
            directory = %dir.display(),
            mode = %format!("{:03o}", mode & 0o777),
            "the database's directory is writable by other accounts: they can delete or replace the database or \
             plant files beside it; keep the database in a directory only latchkey's account can write (chmod 700)"
        );
    } else if mode & 0o005 != 0 {
        tracing::info!(
            directory = %dir.display(),
            mode = %format!("{:03o}", mode & 0o777),
            "the database's directory can be listed by other accounts (the files themselves are 0600)"
        );
    }
}

#[cfg(not(unix))]
fn secure_files(_path: &Path, _allow_insecure: bool) -> anyhow::Result<()> {
    // No POSIX modes: the directory's ACL decides who can read the database.
    Ok(())
}

impl Pool {
    pub(crate) fn open(path: &Path, options: StoreOptions) -> anyhow::Result<Self> {
        secure_files(path, options.allow_insecure_db_permissions)?;
        let mut writer =
            Connection::open(path).with_context(|| format!("opening SQLite database {}", path.display()))?;
        writer.pragma_update(None, "journal_mode", "WAL").context("enabling WAL")?;
        configure(&writer)?;
        migrate(&mut writer)?;
        let readers = (0..READERS)
            .map(|_| {
                let c = Connection::open(path)?;
                configure(&c)?;
                Ok(Mutex::new(c))
            })
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new().name("latchkey-sqlite-writer".into()).spawn(move || writer_loop(writer, rx))?;
        Ok(Self { jobs: Mutex::new(tx), readers, next_reader: AtomicUsize::new(0) })
    }

    /// Runs a point lookup (a primary-key or unique-index read of a few rows) on the calling task.
    ///
    /// In WAL mode a reader never waits for the writer, and such a read costs microseconds; sending
    /// it to the blocking pool costs two thread hand-offs, which measured three to five times the
    /// CPU of the whole request (`latchkey-bench`: authorization with a session went from 390 to
    /// 78 µs of server CPU per operation). Only when every reader connection is busy does the
    /// read go to the blocking pool instead of waiting here.
    pub(crate) async fn lookup<T, F>(self: &Arc<Self>, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let n = self.readers.len();
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        for k in 0..n {
            if let Ok(conn) = self.readers[(start + k) % n].try_lock() {
                return f(&conn).map_err(backend);
            }
        }
        self.scan(f).await
    }

    /// Runs a read that may touch many rows (a listing, a count, an export) on the blocking pool,
    /// so that it never holds up the request workers.
    pub(crate) async fn scan<T, F>(self: &Arc<Self>, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let pool = self.clone();
        tokio::task::spawn_blocking(move || {
            let i = pool.next_reader.fetch_add(1, Ordering::Relaxed) % pool.readers.len();
            let conn = lock(&pool.readers[i]);
            f(&conn).map_err(backend)
        })
        .await
        .map_err(|e| StoreError::Backend(anyhow!("store task failed: {e}")))?
    }

    /// Runs `f` in the next group transaction. `f` may open savepoints (`Connection::savepoint`)
    /// but not transactions: it is already inside one.
    pub(crate) async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel::<StoreResult<T>>();
        let job: Job = Box::new(move |conn: &mut Connection| -> Done {
            let result = run_in_savepoint(conn, f);
            Box::new(move |commit: Result<(), String>| {
                let out = match (result, commit) {
                    (Err(e), _) => Err(backend(e)),
                    (Ok(_), Err(msg)) => Err(StoreError::Backend(anyhow!("commit failed: {msg}"))),
                    (Ok(v), Ok(())) => Ok(v),
                };
                let _ = tx.send(out);
            })
        });
        lock(&self.jobs).send(job).map_err(|_| StoreError::Backend(anyhow!("the SQLite writer thread has stopped")))?;
        rx.await.map_err(|_| StoreError::Backend(anyhow!("the SQLite writer dropped a write")))?
    }
}

fn run_in_savepoint<T>(
    conn: &mut Connection,
    f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    // Cached statements: `execute_batch` would parse the SQL again for every write.
    conn.prepare_cached("SAVEPOINT job")?.execute([])?;
    match f(conn) {
        Ok(v) => {
            conn.prepare_cached("RELEASE job")?.execute([])?;
            Ok(v)
        }
        Err(e) => {
            // Undo this write only; the others in the group stand.
            let _ = conn.execute_batch("ROLLBACK TO job; RELEASE job");
            Err(e)
        }
    }
}

fn writer_loop(mut conn: Connection, rx: mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < GROUP {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        // IMMEDIATE takes the write lock now (waiting up to busy_timeout for another process,
        // such as an admin command), so no job can fail half-way for want of it.
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            let msg = e.to_string();
            tracing::error!(error = %msg, "could not begin a write transaction");
            // The jobs must not run outside a transaction: dropping them unrun answers each
            // caller with an error.
            drop(jobs);
            continue;
        }
        let done: Vec<Done> = jobs.into_iter().map(|job| job(&mut conn)).collect();
        let commit = conn.execute_batch("COMMIT").map_err(|e| e.to_string());
        if commit.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for d in done {
            d(commit.clone());
        }
    }
}

fn migrate(conn: &mut Connection) -> anyhow::Result<()> {
    let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > MIGRATIONS.len() {
        return Err(anyhow!(
            "the database schema (version {version}) is newer than this latchkey binary knows ({}); upgrade latchkey",
            MIGRATIONS.len()
        ));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(sql).with_context(|| format!("migration {}", i + 1))?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "applied database migration");
    }
    Ok(())
}
