//! The account store's SQL, shared word for word by both backends where they agree (SQLite reads
//! `$1` as a named parameter bound by position: each statement names its parameters in order).

/// The columns of a session, in `session_row` order.
pub const SESSION_COLS: &str = "hash, sid, user_id, auth_time, expires_at, network, device, amr, acr";

/// A session row, as written by a sign-in and by `db copy`.
pub const INSERT_SESSION: &str =
    "INSERT INTO sessions (hash, sid, user_id, auth_time, expires_at, network, device, amr, acr)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

/// The columns of a consent, in `consent_row` order; `claims` are space-separated claim names.
pub const CONSENT_COLS: &str = "user_id, client_id, scope, updated_at, claims";

pub const INSERT_CONSENT: &str =
    "INSERT INTO consents (user_id, client_id, scope, updated_at, claims) VALUES ($1, $2, $3, $4, $5)";

/// Stores a consent, replacing the one of the same user and client.
pub const PUT_CONSENT: &str =
    "INSERT INTO consents (user_id, client_id, scope, updated_at, claims) VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (user_id, client_id) DO UPDATE SET
      scope = excluded.scope, updated_at = excluded.updated_at, claims = excluded.claims";

pub const CONSENT: &str =
    "SELECT user_id, client_id, scope, updated_at, claims FROM consents WHERE user_id = $1 AND client_id = $2";

/// `$1` name, `$2` stated email_verified (NULL: keep it only if the address is unchanged), `$3`
/// email, `$4` phone, `$5` address, `$6` profile JSON, `$7` updated_at, `$8` id. Every SET reads
/// the row as it was, so `email = $3` compares with the stored address: one statement decides
/// and writes, and a verification cannot slip in between.
pub const UPDATE_PROFILE: &str = "UPDATE users SET
      name = $1,
      email_verified = COALESCE($2, CASE WHEN email = $3 THEN email_verified ELSE FALSE END),
      email = $3, phone_number = $4, address = $5, profile = $6, updated_at = $7
    WHERE id = $8";

/// `$1` locked_at (NULL unlocks), `$2` username; returns the user's id.
pub const SET_LOCKED: &str = "UPDATE users SET locked_at = $1 WHERE username = $2 RETURNING id";

/// The unexpired sessions of user `$1` at `$2`, newest sign-in first.
pub fn user_sessions() -> String {
    format!("SELECT {SESSION_COLS} FROM sessions WHERE user_id = $1 AND expires_at > $2 ORDER BY auth_time DESC, sid")
}

/// Ends sessions of user `$1`: the one `$2`, every one but `$2`, or all of them; each returns the
/// sids it deleted (for `*_session_end::ended_sessions`, which queues their logout tokens).
pub const END_ONE: &str = "DELETE FROM sessions WHERE user_id = $1 AND sid = $2 RETURNING sid";
pub const END_ALL_EXCEPT: &str = "DELETE FROM sessions WHERE user_id = $1 AND sid <> $2 RETURNING sid";
pub const END_ALL: &str = "DELETE FROM sessions WHERE user_id = $1 RETURNING sid";

/// The grants bound to ended session `$2` die with it at `$1` (those without offline_access).
pub const REVOKE_SESSION_GRANTS: &str =
    "UPDATE grants SET revoked_at = $1 WHERE sid = $2 AND NOT offline AND revoked_at IS NULL";

/// A locked user's access, all of it (revoked at `$1`, of user `$2`; the sessions end through
/// `*_session_end::end_user_sessions`, which queues their logout tokens).
pub const LOCK_REVOKE_GRANTS: &str = "UPDATE grants SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL";
pub const LOCK_DELETE_CODES: &str = "DELETE FROM codes WHERE user_id = $1 AND used_at IS NULL";

/// The consents of user `$1`.
pub const USER_CONSENTS: &str = "SELECT user_id, client_id, scope, updated_at, claims FROM consents WHERE user_id = $1";

/// The live grants of user `$1` at `$2`: client and scope.
pub const USER_LIVE_GRANTS: &str =
    "SELECT client_id, scope FROM grants WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2";

/// The last use of each client by user `$1`: its newest grant or refresh-token rotation.
pub const USER_LAST_USE: &str = "SELECT g.client_id, MAX(COALESCE(
        (SELECT MAX(r.issued_at) FROM refresh_tokens r WHERE r.grant_id = g.id), g.created_at))
    FROM grants g WHERE g.user_id = $1 GROUP BY g.client_id";

/// Revoking an application, in one transaction (`$1` user id, `$2` client id; the grants revoked
/// at `$1`, of user `$2` and client `$3`).
pub const REVOKE_APP_CONSENT: &str = "DELETE FROM consents WHERE user_id = $1 AND client_id = $2";
pub const REVOKE_APP_GRANTS: &str =
    "UPDATE grants SET revoked_at = $1 WHERE user_id = $2 AND client_id = $3 AND revoked_at IS NULL";
pub const REVOKE_APP_CODES: &str = "DELETE FROM codes WHERE user_id = $1 AND client_id = $2 AND used_at IS NULL";

/// The entry of `client_id` in an application listing being built, created blank.
pub fn app_entry(
    apps: &mut std::collections::BTreeMap<String, latchkey_core::account_store::AppRecord>,
    client_id: latchkey_proto::ClientId,
) -> &mut latchkey_core::account_store::AppRecord {
    apps.entry(client_id.to_string()).or_insert_with(|| latchkey_core::account_store::AppRecord {
        client_id,
        consent: None,
        live_grants: 0,
        granted_scope: latchkey_proto::Scope::default(),
        last_used: None,
    })
}

/// Consent claims as stored: names joined by spaces (claim names have none, `crate::claims`).
pub fn claims_to_column(claims: &[String]) -> String {
    claims.join(" ")
}

pub fn claims_from_column(s: &str) -> Vec<String> {
    s.split(' ').filter(|c| !c.is_empty()).map(str::to_owned).collect()
}
