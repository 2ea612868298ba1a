//! The email-link store's SQL, shared word for word by both backends (SQLite reads `$1` as a
//! named parameter, bound by position: each statement names its parameters in order). Addresses
//! are compared with `lower()` on both sides, in the database, so that both backends agree.

pub const INSERT_LINK: &str =
    "INSERT INTO email_links (hash, purpose, user_id, email, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)";

/// `$1` purpose, `$2` account: the links a new one replaces.
pub const REPLACED_FOR_USER: &str = "DELETE FROM email_links WHERE purpose = $1 AND user_id = $2";

/// `$1` purpose, `$2` address: the invitations a new one replaces.
pub const REPLACED_FOR_ADDRESS: &str =
    "DELETE FROM email_links WHERE purpose = $1 AND user_id IS NULL AND lower(email) = lower($2)";

/// `$1` hash, `$2` purpose, `$3` now.
pub const GET_LINK: &str = "SELECT hash, purpose, user_id, email, created_at, expires_at FROM email_links
    WHERE hash = $1 AND purpose = $2 AND expires_at > $3";

/// `$1` hash, `$2` purpose, `$3` now: the one step that uses a link.
pub const CONSUME_LINK: &str = "DELETE FROM email_links WHERE hash = $1 AND purpose = $2 AND expires_at > $3
    RETURNING hash, purpose, user_id, email, created_at, expires_at";

/// `$1` hash, `$2` now, `$3` address: an invitation is used only for its own address.
pub const CONSUME_INVITATION: &str = "DELETE FROM email_links WHERE hash = $1 AND purpose = 'invite'
    AND expires_at > $2 AND lower(email) = lower($3) RETURNING email";

/// `$1` user id, `$2` address.
pub const CONFIRM: &str = "UPDATE users SET email_verified = TRUE WHERE id = $1 AND lower(email) = lower($2)";

/// `$1` address, `$2` user id.
pub const SET_VERIFIED_EMAIL: &str = "UPDATE users SET email = $1, email_verified = TRUE WHERE id = $2";

/// `$1` address, `$2` verified, `$3` user id.
pub const SET_EMAIL: &str = "UPDATE users SET email = $1, email_verified = $2 WHERE id = $3";

pub const LIFT_HOLD: &str = "DELETE FROM signup_holds WHERE user_id = $1";

pub const INSERT_HOLD: &str = "INSERT INTO signup_holds (user_id, created_at) VALUES ($1, $2)";

pub const HOLD: &str = "SELECT user_id, created_at FROM signup_holds WHERE user_id = $1";

pub const COUNT_HOLDS: &str = "SELECT count(*) FROM signup_holds";

/// An account with address `$1`, if any.
pub const HOLDER_OF: &str = "SELECT username FROM users WHERE lower(email) = lower($1) ORDER BY created_at LIMIT 1";

pub const USERNAME_TAKEN: &str = "SELECT 1 FROM users WHERE username = $1";

/// `$1` user id.
pub const NAME_AND_EMAIL: &str = "SELECT username, email FROM users WHERE id = $1";

/// Every link and hold, for `db copy`.
pub const ALL_LINKS: &str =
    "SELECT hash, purpose, user_id, email, created_at, expires_at FROM email_links ORDER BY hash";
pub const ALL_HOLDS: &str = "SELECT user_id, created_at FROM signup_holds ORDER BY user_id";
