//! The purge policy as SQL, shared word for word by both backends so that they cannot drift. Each
//! statement takes one parameter, `$1` (SQLite reads `$1` as a named parameter, bound by position).
//! The policy itself is documented on `latchkey_core::store::TableCounts`.

use latchkey_core::store::TableCounts;

/// A grant (refresh family) that nothing can use any more: revoked, past its absolute lifetime,
/// without a usable refresh token (idle), or bound to a login session that has ended; and with no
/// unexpired access token, so purging never cuts an access token's life short. `$1` is now.
///
/// Once dead, a grant stays dead: a new refresh token only comes from rotating a usable one, and a
/// new access token only from a refresh or a new grant. So deleting by this predicate is safe
/// against concurrent requests.
const DEAD_GRANT: &str = "NOT EXISTS (SELECT 1 FROM access_tokens a WHERE a.grant_id = g.id AND a.expires_at > $1)
    AND (g.revoked_at IS NOT NULL
      OR g.expires_at <= $1
      OR NOT EXISTS (SELECT 1 FROM refresh_tokens r WHERE r.grant_id = g.id AND r.consumed_at IS NULL AND r.expires_at > $1)
      OR (NOT g.offline AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.sid = g.sid AND s.expires_at > $1)))";

/// Unexpired pending requests from one source network (`$1`) at `$2`: the per-source bound.
pub const PENDING_BY_SOURCE: &str = "SELECT count(*) FROM pending_authorizations WHERE source = $1 AND expires_at > $2";

/// Which value `$1` is bound to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Param {
    /// The statement has no parameter.
    None,
    Now,
    /// `now - key_publish_window`: a key retired at or before it is no longer published.
    KeyCutoff,
    /// `now - throttle::FORGET_AFTER`: a failure counter last bumped at or before it is forgotten.
    ThrottleCutoff,
    /// `now - audit_retention`: an audit record from before it is deleted (none when the
    /// retention is 0, kept forever).
    AuditCutoff,
}

/// A purge step: where its count goes, its parameter, its statement. In this order: expired
/// access tokens go before dead grants are judged, dead grants before the codes that point to them.
pub type Field = fn(&mut TableCounts) -> &mut u64;

pub fn statements() -> Vec<(Field, Param, String)> {
    vec![
        (|c| &mut c.pending_authorizations, Param::Now, "DELETE FROM pending_authorizations WHERE expires_at <= $1".into()),
        (|c| &mut c.sessions, Param::Now, "DELETE FROM sessions WHERE expires_at <= $1".into()),
        (|c| &mut c.access_tokens, Param::Now, "DELETE FROM access_tokens WHERE expires_at <= $1".into()),
        (
            |c| &mut c.refresh_tokens,
            Param::Now,
            format!("DELETE FROM refresh_tokens WHERE grant_id IN (SELECT g.id FROM grants g WHERE {DEAD_GRANT})"),
        ),
        (|c| &mut c.grants, Param::Now, format!("DELETE FROM grants WHERE id IN (SELECT g.id FROM grants g WHERE {DEAD_GRANT})")),
        (
            |c| &mut c.codes,
            Param::Now,
            "DELETE FROM codes WHERE expires_at <= $1 AND NOT EXISTS (SELECT 1 FROM grants g WHERE g.id = codes.grant_id)"
                .into(),
        ),
        (
            |c| &mut c.consents,
            Param::None,
            "DELETE FROM consents WHERE (NOT EXISTS (SELECT 1 FROM users u WHERE u.id = consents.user_id)
               OR NOT EXISTS (SELECT 1 FROM clients c WHERE c.client_id = consents.client_id))"
                .into(),
        ),
        (
            |c| &mut c.signing_keys,
            Param::KeyCutoff,
            "DELETE FROM signing_keys WHERE NOT active AND retired_at IS NOT NULL AND retired_at <= $1".into(),
        ),
        (|c| &mut c.login_throttle, Param::ThrottleCutoff, "DELETE FROM login_throttle WHERE last_failure <= $1".into()),
        (|c| &mut c.audit_events, Param::AuditCutoff, "DELETE FROM audit_events WHERE at < $1".into()),
        (
            |c| &mut c.client_metadata_documents,
            Param::Now,
            "DELETE FROM client_metadata_documents WHERE expires_at <= $1".into(),
        ),
        // Delivered jobs are kept a day, dead ones a week (for `latchkey outbox list`): they hold
        // email addresses, which are not kept longer than that serves.
        (
            |c| &mut c.outbox,
            Param::Now,
            "DELETE FROM outbox WHERE (completed_at IS NOT NULL AND completed_at + 86400 <= $1)
               OR (dead = TRUE AND next_attempt_at + 604800 <= $1)"
                .into(),
        ),
        (|c| &mut c.email_links, Param::Now, "DELETE FROM email_links WHERE expires_at <= $1".into()),
        // Sign-ups nobody confirmed: the account goes, its hold and links with it (ON DELETE CASCADE).
        (
            |c| &mut c.users,
            Param::Now,
            format!(
                "DELETE FROM users WHERE id IN (SELECT user_id FROM signup_holds WHERE created_at + {} <= $1)",
                latchkey_core::email_link::UNVERIFIED_SIGNUP_TTL
            ),
        ),
        (|c| &mut c.webauthn_ceremonies, Param::Now, crate::passkey_sql::DELETE_EXPIRED_CEREMONIES.into()),
        (|c| &mut c.replay_marks, Param::Now, crate::replay_sql::DELETE_EXPIRED.into()),
        (|c| &mut c.pushed_requests, Param::Now, crate::pushed_sql::DELETE_EXPIRED.into()),
        (|c| &mut c.device_codes, Param::Now, crate::device_sql::DELETE_EXPIRED.into()),
    ]
}

/// `now - audit_retention`, or the beginning of time when the audit log is kept forever (0).
pub fn audit_cutoff(now: i64, policy: &latchkey_core::store::PurgePolicy) -> i64 {
    match policy.audit_retention {
        0 => i64::MIN,
        r => now.saturating_sub(i64::try_from(r).unwrap_or(i64::MAX)),
    }
}

/// The tables [`COUNTS`] counts.
pub const COUNTED: usize = 21;

/// `now - throttle::FORGET_AFTER`.
pub fn throttle_cutoff(now: i64) -> i64 {
    now.saturating_sub(latchkey_core::throttle::FORGET_AFTER as i64)
}

/// One row, one column per table, in `TableCounts` field order.
pub const COUNTS: &str = "SELECT
    (SELECT count(*) FROM clients), (SELECT count(*) FROM users), (SELECT count(*) FROM signing_keys),
    (SELECT count(*) FROM pending_authorizations), (SELECT count(*) FROM sessions), (SELECT count(*) FROM consents),
    (SELECT count(*) FROM codes), (SELECT count(*) FROM grants), (SELECT count(*) FROM refresh_tokens),
    (SELECT count(*) FROM access_tokens), (SELECT count(*) FROM login_throttle), (SELECT count(*) FROM audit_events),
    (SELECT count(*) FROM client_metadata_documents), (SELECT count(*) FROM outbox),
    (SELECT count(*) FROM email_links), (SELECT count(*) FROM signup_holds), (SELECT count(*) FROM passkeys),
    (SELECT count(*) FROM webauthn_ceremonies), (SELECT count(*) FROM replay_marks),
    (SELECT count(*) FROM pushed_requests), (SELECT count(*) FROM device_codes)";

/// `TableCounts` from the values of [`COUNTS`].
pub fn from_values(v: [i64; COUNTED]) -> TableCounts {
    let u = |i: usize| v[i].max(0) as u64;
    TableCounts {
        clients: u(0),
        users: u(1),
        signing_keys: u(2),
        pending_authorizations: u(3),
        sessions: u(4),
        consents: u(5),
        codes: u(6),
        grants: u(7),
        refresh_tokens: u(8),
        access_tokens: u(9),
        login_throttle: u(10),
        audit_events: u(11),
        client_metadata_documents: u(12),
        outbox: u(13),
        email_links: u(14),
        signup_holds: u(15),
        passkeys: u(16),
        webauthn_ceremonies: u(17),
        replay_marks: u(18),
        pushed_requests: u(19),
        device_codes: u(20),
    }
}
