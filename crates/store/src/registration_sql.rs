//! The registration store's SQL, shared word for word by both backends (SQLite reads `$1` as a
//! named parameter, bound by position: each statement names its parameters in order).

pub const INSERT: &str = "INSERT INTO registrations (client_id, access_hash, fingerprint, shared, metadata, created_at)
    VALUES ($1, $2, $3, $4, $5, $6)";

/// The registration with fingerprint `$1`.
pub const BY_FINGERPRINT: &str = "SELECT client_id, access_hash, fingerprint, shared, metadata, created_at FROM registrations WHERE fingerprint = $1";

/// Every registration, for `db copy` (the caller adds its ORDER BY).
pub const ALL: &str = "SELECT client_id, access_hash, fingerprint, shared, metadata, created_at FROM registrations";

pub const BY_CLIENT: &str =
    "SELECT client_id, access_hash, fingerprint, shared, metadata, created_at FROM registrations WHERE client_id = $1";

/// `$1` client id: it was handed to an identical registration.
pub const MARK_SHARED: &str = "UPDATE registrations SET shared = TRUE WHERE client_id = $1";

/// `$1` metadata, `$2` client id: an RFC 7592 update, only while not shared.
pub const UPDATE: &str =
    "UPDATE registrations SET metadata = $1, fingerprint = NULL WHERE client_id = $2 AND shared = FALSE";

/// One source's counter (`$1`): its window's start and count.
pub const THROTTLE_STATE: &str = "SELECT window_start, count FROM registration_throttle WHERE source = $1";

/// Counts one registration under source `$1` at `$2`; `$3` is `$2 - 60`: a window that started at or
/// before it has ended, and the count starts again from one.
pub const THROTTLE_COUNT: &str = "INSERT INTO registration_throttle (source, window_start, count) VALUES ($1, $2, 1)
    ON CONFLICT (source) DO UPDATE SET
      count = CASE WHEN registration_throttle.window_start <= $3 THEN 1 ELSE registration_throttle.count + 1 END,
      window_start = CASE WHEN registration_throttle.window_start <= $3 THEN $2 ELSE registration_throttle.window_start END";

/// The length of a throttle window, in seconds.
pub const WINDOW: i64 = 60;

/// Self-registered clients registered before `$1` with no live grant at `$2`.
const IDLE: &str = "SELECT r.client_id FROM registrations r WHERE r.created_at < $1
    AND NOT EXISTS (SELECT 1 FROM grants g WHERE g.client_id = r.client_id AND g.revoked_at IS NULL AND g.expires_at > $2)";

/// The idle purge, in order: what was issued to an idle client, then the client (its registration
/// goes with it, `ON DELETE CASCADE`). Each takes `$1` (registered before) and `$2` (now). The last
/// one's count is the number of clients removed.
pub fn purge_idle() -> [String; 4] {
    [
        format!("DELETE FROM codes WHERE client_id IN ({IDLE})"),
        format!("DELETE FROM consents WHERE client_id IN ({IDLE})"),
        format!("DELETE FROM grants WHERE client_id IN ({IDLE})"),
        format!("DELETE FROM clients WHERE client_id IN ({IDLE})"),
    ]
}

/// Counters whose window has ended (`$1` = now - [`WINDOW`]).
pub const PURGE_THROTTLE: &str = "DELETE FROM registration_throttle WHERE window_start <= $1";
