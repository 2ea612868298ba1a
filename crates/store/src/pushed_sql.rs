//! Pushed authorization requests (`latchkey_core::pushed`) as SQL, shared by both backends.

pub const COUNT_LIVE_FOR_CLIENT: &str = "SELECT count(*) FROM pushed_requests WHERE client_id = $1 AND expires_at > $2";

pub const INSERT: &str =
    "INSERT INTO pushed_requests (hash, client_id, params, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)";

/// Takes the request: the DELETE is the single-use decision (of concurrent takers, one deletes
/// the row and gets it back). An expired one is deleted too, and not returned.
pub const TAKE: &str =
    "DELETE FROM pushed_requests WHERE hash = $1 RETURNING client_id, params, created_at, expires_at";

pub const DELETE_EXPIRED: &str = "DELETE FROM pushed_requests WHERE expires_at <= $1";
