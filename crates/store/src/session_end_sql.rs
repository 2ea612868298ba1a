//! Ending login sessions, shared word for word by both backends: each ended session is reported
//! with the clients that took part in it, and the back-channel logout tokens owed to them are
//! queued in the outbox in the same transaction (`latchkey_core::backchannel::logout_jobs`). A
//! session counts as ended by the one statement that deleted it, so concurrent operations ending
//! the same session (a logout racing a password change, on two instances) queue its tokens once.
//! `$n` parameters (SQLite reads them as named parameters, bound by position).

/// Deletes session `$1`; returns its user if this statement deleted it.
pub const DELETE_SESSION: &str = "DELETE FROM sessions WHERE sid = $1 RETURNING user_id";

/// Deletes every session of user `$1` but `$2` (the account page's own when its user changes
/// their password there; `''`, which no sid is, to keep none); returns the sids this statement
/// deleted.
pub const DELETE_USER_SESSIONS: &str = "DELETE FROM sessions WHERE user_id = $1 AND sid <> $2 RETURNING sid";

/// The clients with a grant made in session `$1`, revoked or not: each got an ID token with this
/// `sid`. Read in the transaction that ended the session, before a user's removal deletes them.
pub const SESSION_CLIENTS: &str = "SELECT DISTINCT client_id FROM grants WHERE sid = $1 ORDER BY client_id";

/// The stored record of client `$1` (JSON), to see whether it wants logout tokens.
pub const CLIENT_DATA: &str = "SELECT data FROM clients WHERE client_id = $1";
