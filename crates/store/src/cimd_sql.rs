//! The client ID metadata document cache as SQL, shared word for word by both backends
//! (`$n` parameters; SQLite binds them by position).

/// The document of `$1` if it has not expired at `$2`.
pub const GET: &str =
    "SELECT url, body, fetched_at, expires_at FROM client_metadata_documents WHERE url = $1 AND expires_at > $2";

/// Insert or replace (a re-fetch after expiry, or two instances fetching at once: last one wins,
/// both wrote a valid document).
pub const PUT: &str = "INSERT INTO client_metadata_documents (url, body, fetched_at, expires_at) VALUES ($1, $2, $3, $4)
    ON CONFLICT (url) DO UPDATE SET body = excluded.body, fetched_at = excluded.fetched_at, expires_at = excluded.expires_at";

/// Keeps the `$1` documents expiring last; deletes nothing while there are at most `$1`.
pub const EVICT: &str = "DELETE FROM client_metadata_documents WHERE url NOT IN
    (SELECT url FROM client_metadata_documents ORDER BY expires_at DESC, url LIMIT $1)";
