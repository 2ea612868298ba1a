//! The outbox's SQL, shared word for word by both backends where they agree (SQLite reads `$1` as
//! a named parameter, bound by position: each statement names its parameters in order). `dead` is
//! compared with TRUE/FALSE, which SQLite reads as 1/0 and PostgreSQL as booleans.

/// The columns [`crate::sqlite_outbox::outbox_row`] and its PostgreSQL twin read, in order.
pub const COLS: &str = "id, payload, attempts, next_attempt_at, created_at, last_error, dead, completed_at";

/// `$1` kind, `$2` payload, `$3` now: due at once.
pub const INSERT: &str = "INSERT INTO outbox (kind, payload, attempts, next_attempt_at, created_at, dead)
    VALUES ($1, $2, 0, $3, $3, FALSE) RETURNING id";

/// Jobs still to deliver: the ones the cap counts.
pub const QUEUED: &str = "SELECT count(*) FROM outbox WHERE completed_at IS NULL AND dead = FALSE";

/// The due jobs a claim takes: `$2` now, `$3` the batch size (`$1` is the lease's end, set by the
/// UPDATE around it). PostgreSQL appends `FOR UPDATE SKIP LOCKED`.
const DUE: &str = "SELECT id FROM outbox WHERE completed_at IS NULL AND dead = FALSE AND next_attempt_at <= $2
    ORDER BY next_attempt_at, id LIMIT $3";

/// One statement: the due jobs get one more attempt and become due again only when the lease
/// (`$1`) ends. `lock` is the row-locking clause of the subquery ("" on SQLite, whose one writer
/// runs statements one at a time).
pub fn claim(lock: &str) -> String {
    format!(
        "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $1 WHERE id IN ({DUE} {lock}) RETURNING {COLS}"
    )
}

/// `$1` now, `$2` id.
pub const COMPLETE: &str = "UPDATE outbox SET completed_at = $1, last_error = NULL WHERE id = $2";

/// `$1` next attempt, `$2` error, `$3` id. A job delivered or buried meanwhile stays so.
pub const RETRY: &str =
    "UPDATE outbox SET next_attempt_at = $1, last_error = $2 WHERE id = $3 AND completed_at IS NULL AND dead = FALSE";

/// `$1` now (kept as the time it was buried), `$2` error, `$3` id.
pub const BURY: &str =
    "UPDATE outbox SET dead = TRUE, next_attempt_at = $1, last_error = $2 WHERE id = $3 AND completed_at IS NULL";

/// `$1` now, `$2` id: a dead job starts again, with a new give-up time.
pub const REVIVE: &str = "UPDATE outbox SET dead = FALSE, attempts = 0, next_attempt_at = $1, created_at = $1,
    last_error = NULL WHERE id = $2 AND dead = TRUE";

/// Newest first, `$1` at most.
pub fn list(filter: latchkey_core::outbox::OutboxFilter) -> String {
    use latchkey_core::outbox::OutboxFilter;
    let wh = match filter {
        OutboxFilter::Queued => "completed_at IS NULL AND dead = FALSE",
        OutboxFilter::Dead => "dead = TRUE",
        OutboxFilter::Completed => "completed_at IS NOT NULL",
    };
    format!("SELECT {COLS} FROM outbox WHERE {wh} ORDER BY id DESC LIMIT $1")
}

/// Every job, for `db copy`.
pub const ALL: &str =
    "SELECT id, payload, attempts, next_attempt_at, created_at, last_error, dead, completed_at FROM outbox ORDER BY id";

/// `db copy`: a job as it was, under a new id. `$1` kind … `$8` completed_at.
pub const IMPORT: &str =
    "INSERT INTO outbox (kind, payload, attempts, next_attempt_at, created_at, last_error, dead, completed_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
