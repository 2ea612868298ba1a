//! The second-factor store's SQL (`latchkey_core::factors::FactorStore`), shared word for word
//! by both backends (SQLite reads `$1` as a named parameter, bound by position: each statement
//! names its parameters in order of first use).

pub const GET_TOTP: &str =
    "SELECT user_id, secret, created_at, confirmed_at, last_step FROM totp_secrets WHERE user_id = $1";

/// Every TOTP secret, for `db copy`.
pub const ALL_TOTP: &str =
    "SELECT user_id, secret, created_at, confirmed_at, last_step FROM totp_secrets ORDER BY user_id";

pub const INSERT_TOTP: &str = "INSERT INTO totp_secrets (user_id, secret, created_at, confirmed_at, last_step)
    VALUES ($1, $2, $3, $4, $5)";

/// `$1` user, `$2` secret, `$3` now: a new unconfirmed secret, replacing an unconfirmed one and
/// never a confirmed one (the conflict's update then touches no row).
pub const BEGIN_TOTP: &str = "INSERT INTO totp_secrets (user_id, secret, created_at, confirmed_at, last_step)
    VALUES ($1, $2, $3, NULL, 0)
    ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, created_at = excluded.created_at, last_step = 0
    WHERE totp_secrets.confirmed_at IS NULL";

/// `$1` now, `$2` the step of the confirming code, `$3` user, `$4` the secret that code was
/// checked against.
pub const CONFIRM_TOTP: &str = "UPDATE totp_secrets SET confirmed_at = $1, last_step = $2
    WHERE user_id = $3 AND secret = $4 AND confirmed_at IS NULL";

/// `$1` step, `$2` user: RFC 6238 §5.2, a code is accepted once. The condition is evaluated on the
/// row as it is when the update takes it, so of concurrent updates for one step one changes it.
pub const USE_STEP: &str =
    "UPDATE totp_secrets SET last_step = $1 WHERE user_id = $2 AND confirmed_at IS NOT NULL AND last_step < $1";

pub const DELETE_TOTP: &str = "DELETE FROM totp_secrets WHERE user_id = $1";

pub const COUNT_RECOVERY: &str = "SELECT count(*) FROM recovery_codes WHERE user_id = $1";

/// Every recovery code hash, for `db copy`.
pub const ALL_RECOVERY: &str = "SELECT user_id, hash, created_at FROM recovery_codes ORDER BY user_id, hash";

pub const INSERT_RECOVERY: &str = "INSERT INTO recovery_codes (user_id, hash, created_at) VALUES ($1, $2, $3)";

pub const DELETE_RECOVERY: &str = "DELETE FROM recovery_codes WHERE user_id = $1";

/// `$1` user, `$2` hash: one code consumed by one delete.
pub const USE_RECOVERY: &str = "DELETE FROM recovery_codes WHERE user_id = $1 AND hash = $2";

pub const INSERT_PARTIAL: &str =
    "INSERT INTO partial_sign_ins (hash, user_id, data, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)";

pub const PURGE_PARTIAL: &str = "DELETE FROM partial_sign_ins WHERE expires_at <= $1";

/// `$1` user, `$2` how many to keep: the user's newest stay.
pub const EVICT_PARTIAL: &str = "DELETE FROM partial_sign_ins WHERE user_id = $1 AND hash NOT IN
    (SELECT hash FROM partial_sign_ins WHERE user_id = $1 ORDER BY created_at DESC, hash LIMIT $2)";

pub const GET_PARTIAL: &str = "SELECT data FROM partial_sign_ins WHERE hash = $1 AND expires_at > $2";

/// Single use: of concurrent takers, the one whose delete removed the row gets its data.
pub const TAKE_PARTIAL: &str = "DELETE FROM partial_sign_ins WHERE hash = $1 AND expires_at > $2 RETURNING data";

pub const DELETE_PARTIALS: &str = "DELETE FROM partial_sign_ins WHERE user_id = $1";

/// `$1` new hash, `$2` amr, `$3` acr, `$4` auth_time, `$5` old hash, `$6` now: one conditional
/// update, so a session ended meanwhile is not revived and a step-up happens once.
pub const STEP_UP: &str = "UPDATE sessions SET hash = $1, amr = $2, acr = $3, auth_time = $4
    WHERE hash = $5 AND expires_at > $6";
