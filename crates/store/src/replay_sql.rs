//! Single-use marks (`latchkey_core::replay`) as SQL, shared by both backends.

/// Marks `($1 kind, $2 key)` used until `$3`; a mark that expired at or before `$4` (now) is
/// replaced. One row touched: first use; none: a live mark exists, a replay. Both SQLite (3.24+)
/// and PostgreSQL run this as one atomic statement.
pub const FIRST_USE: &str = "INSERT INTO replay_marks (kind, key, expires_at) VALUES ($1, $2, $3)
    ON CONFLICT (kind, key) DO UPDATE SET expires_at = excluded.expires_at WHERE replay_marks.expires_at <= $4";

pub const DELETE_EXPIRED: &str = "DELETE FROM replay_marks WHERE expires_at <= $1";
