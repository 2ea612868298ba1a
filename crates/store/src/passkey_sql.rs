//! The passkey store's SQL, shared word for word by both backends (SQLite reads `$1` as a named
//! parameter, bound by position: each statement names its parameters in order).

pub const COLS: &str = "cred_id, user_id, user_handle, name, credential, sign_count, backup_eligible, backup_state, \
                        created_at, last_used_at";

/// Inserts a passkey (`$1`..`$10` in [`COLS`] order) unless its credential id is taken: 0 rows
/// then, whoever holds it.
pub const INSERT: &str = "INSERT INTO passkeys (cred_id, user_id, user_handle, name, credential, sign_count, \
     backup_eligible, backup_state, created_at, last_used_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
     ON CONFLICT (cred_id) DO NOTHING";

/// The number of passkeys of user `$1`.
pub const COUNT_FOR_USER: &str = "SELECT count(*) FROM passkeys WHERE user_id = $1";

/// Whether credential id `$1` is registered (to anyone).
pub const EXISTS: &str = "SELECT count(*) FROM passkeys WHERE cred_id = $1";

pub fn by_id() -> String {
    format!("SELECT {COLS} FROM passkeys WHERE cred_id = $1")
}

pub fn by_user() -> String {
    format!("SELECT {COLS} FROM passkeys WHERE user_id = $1 ORDER BY created_at, cred_id")
}

/// Every passkey, for `db copy`.
pub fn all() -> String {
    format!("SELECT {COLS} FROM passkeys ORDER BY cred_id")
}

/// `$1` new name, `$2` user, `$3` credential id.
pub const RENAME: &str = "UPDATE passkeys SET name = $1 WHERE user_id = $2 AND cred_id = $3";

/// `$1` user, `$2` credential id.
pub const REMOVE: &str = "DELETE FROM passkeys WHERE user_id = $1 AND cred_id = $2";

pub const REMOVE_FOR_USER: &str = "DELETE FROM passkeys WHERE user_id = $1";

/// Records a use (`$1` count, `$2` BE, `$3` BS, `$4` credential, `$5` time, `$6` credential id) if
/// and only if the counter moves forward or stays at 0 on both sides (WebAuthn §6.1.1): one
/// conditional UPDATE, so that of concurrent uses reporting one count only the first is recorded.
pub const RECORD_USE: &str = "UPDATE passkeys SET sign_count = $1, backup_eligible = $2, backup_state = $3, \
     credential = $4, last_used_at = $5 WHERE cred_id = $6 AND (sign_count < $1 OR (sign_count = 0 AND $1 = 0))";

/// Ceremonies that expired at or before `$1`.
pub const DELETE_EXPIRED_CEREMONIES: &str = "DELETE FROM webauthn_ceremonies WHERE expires_at <= $1";

/// Ceremonies started from source `$1`.
pub const CEREMONIES_BY_SOURCE: &str = "SELECT count(*) FROM webauthn_ceremonies WHERE source = $1";

pub const CEREMONIES: &str = "SELECT count(*) FROM webauthn_ceremonies";

pub const INSERT_CEREMONY: &str =
    "INSERT INTO webauthn_ceremonies (id_hash, data, source, expires_at) VALUES ($1, $2, $3, $4)";

/// Takes ceremony `$1`: one DELETE, so exactly one caller gets its row.
pub const TAKE_CEREMONY: &str = "DELETE FROM webauthn_ceremonies WHERE id_hash = $1 RETURNING data, source, expires_at";
