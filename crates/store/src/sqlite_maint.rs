//! SQLite housekeeping: purge, row counts, export and import (`latchkey db copy`).

use latchkey_core::UnixTime;
use latchkey_core::store::*;
use latchkey_proto::TokenHash;
use rusqlite::{Connection, params};

use crate::account_sql::{CONSENT_COLS, SESSION_COLS};
use crate::purge_sql::{self, Param};
use crate::sqlite::*;
use crate::sqlite_resources::{RESOURCE_COLS, insert_resource_row, resource_row};

/// Runs in the writer's group transaction, hence a savepoint.
pub(crate) fn purge(c: &mut Connection, now: UnixTime, policy: &PurgePolicy) -> rusqlite::Result<TableCounts> {
    let tx = c.savepoint()?;
    let mut out = TableCounts::default();
    for (field, param, sql) in purge_sql::statements() {
        let mut stmt = tx.prepare_cached(&sql)?;
        let n = match param {
            Param::None => stmt.execute([])?,
            Param::Now => stmt.execute([now])?,
            Param::KeyCutoff => stmt.execute([now.saturating_sub(policy.key_publish_window as i64)])?,
            Param::ThrottleCutoff => stmt.execute([purge_sql::throttle_cutoff(now)])?,
            Param::AuditCutoff => stmt.execute([purge_sql::audit_cutoff(now, policy)])?,
        };
        *field(&mut out) += n as u64;
    }
    tx.commit()?;
    Ok(out)
}

pub(crate) fn counts(c: &Connection) -> rusqlite::Result<TableCounts> {
    c.prepare_cached(purge_sql::COUNTS)?.query_row([], |r| {
        let mut v = [0i64; purge_sql::COUNTED];
        for (i, x) in v.iter_mut().enumerate() {
            *x = r.get(i)?;
        }
        Ok(purge_sql::from_values(v))
    })
}

/// On a reader connection: one read transaction, so every SELECT sees the same state of the file.
pub(crate) fn export(c: &Connection) -> rusqlite::Result<Snapshot> {
    let tx = c.unchecked_transaction()?;
    let s = Snapshot {
        clients: tx
            .prepare("SELECT data FROM clients ORDER BY client_id")?
            .query_map([], |r| json_col(r, 0))?
            .collect::<rusqlite::Result<_>>()?,
        users: tx
            .prepare(&format!("SELECT {USER_COLS} FROM users ORDER BY id"))?
            .query_map([], user_row)?
            .collect::<rusqlite::Result<_>>()?,
        signing_keys: tx
            .prepare(&format!("SELECT {KEY_COLS} FROM signing_keys ORDER BY kid"))?
            .query_map([], key_row)?
            .collect::<rusqlite::Result<_>>()?,
        pending: tx
            .prepare("SELECT id_hash, data FROM pending_authorizations ORDER BY id_hash")?
            .query_map([], |r| Ok((TokenHash::from_stored(r.get(0)?), json_col(r, 1)?)))?
            .collect::<rusqlite::Result<_>>()?,
        sessions: tx
            .prepare(&format!("SELECT {SESSION_COLS} FROM sessions ORDER BY hash"))?
            .query_map([], session_row)?
            .collect::<rusqlite::Result<_>>()?,
        consents: tx
            .prepare(&format!("SELECT {CONSENT_COLS} FROM consents ORDER BY user_id, client_id"))?
            .query_map([], consent_row)?
            .collect::<rusqlite::Result<_>>()?,
        codes: tx
            .prepare(&format!("SELECT {CODE_COLS} FROM codes ORDER BY hash"))?
            .query_map([], code_row)?
            .collect::<rusqlite::Result<_>>()?,
        grants: tx
            .prepare(&format!("SELECT {GRANT_COLS} FROM grants g ORDER BY g.id"))?
            .query_map([], |r| grant_row(r, 0))?
            .collect::<rusqlite::Result<_>>()?,
        refresh_tokens: tx
            .prepare(
                "SELECT hash, grant_id, scope, issued_at, expires_at, consumed_at, cached_response
                 FROM refresh_tokens ORDER BY hash",
            )?
            .query_map([], refresh_row)?
            .collect::<rusqlite::Result<_>>()?,
        access_tokens: tx
            .prepare("SELECT jti, grant_id, expires_at, revoked_at FROM access_tokens ORDER BY jti")?
            .query_map([], |r| {
                Ok(AccessRecord { jti: r.get(0)?, grant_id: r.get(1)?, expires_at: r.get(2)?, revoked_at: r.get(3)? })
            })?
            .collect::<rusqlite::Result<_>>()?,
        audit_events: tx
            .prepare("SELECT at, event, user_id, client_id, ip, detail FROM audit_events ORDER BY id")?
            .query_map([], audit_row)?
            .collect::<rusqlite::Result<_>>()?,
        resources: tx
            .prepare(&format!("SELECT {RESOURCE_COLS} FROM resources ORDER BY uri"))?
            .query_map([], resource_row)?
            .collect::<rusqlite::Result<_>>()?,
        registrations: tx
            .prepare(&format!("{} ORDER BY client_id", crate::registration_sql::ALL))?
            .query_map([], crate::sqlite_registration::registration_row)?
            .collect::<rusqlite::Result<_>>()?,
        outbox: tx
            .prepare(crate::outbox_sql::ALL)?
            .query_map([], crate::sqlite_outbox::outbox_row)?
            .collect::<rusqlite::Result<_>>()?,
        email_links: tx
            .prepare(crate::email_link_sql::ALL_LINKS)?
            .query_map([], crate::sqlite_email_link::link_row)?
            .collect::<rusqlite::Result<_>>()?,
        signup_holds: tx
            .prepare(crate::email_link_sql::ALL_HOLDS)?
            .query_map([], crate::sqlite_email_link::hold_row)?
            .collect::<rusqlite::Result<_>>()?,
        totp: crate::sqlite_factors::export_totp(&tx)?,
        recovery_codes: crate::sqlite_factors::export_recovery_codes(&tx)?,
        passkeys: tx
            .prepare(&crate::passkey_sql::all())?
            .query_map([], crate::sqlite_passkey::passkey_row)?
            .collect::<rusqlite::Result<_>>()?,
    };
    tx.commit()?;
    Ok(s)
}

/// In the writer's group transaction, in a savepoint of its own: all or nothing.
pub(crate) fn import(c: &mut Connection, s: &Snapshot) -> rusqlite::Result<()> {
    let tx = c.savepoint()?;
    for client in &s.clients {
        let data = serde_json::to_string(client).map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
        tx.execute(
            "INSERT INTO clients (client_id, data, created_at) VALUES (?1, ?2, ?3)",
            params![client.client_id.as_str(), data, client.created_at],
        )?;
    }
    // After the clients: a registration belongs to one.
    for r in &s.registrations {
        let meta = serde_json::to_string(&r.metadata).map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
        tx.execute(
            crate::registration_sql::INSERT,
            params![r.client_id.as_str(), r.access_hash.as_str(), r.fingerprint, r.shared, meta, r.created_at],
        )?;
    }
    for u in &s.users {
        insert_user_row(&tx, u)?;
    }
    crate::sqlite_factors::import(&tx, s)?;
    // After the users: a passkey belongs to one.
    for p in &s.passkeys {
        if crate::sqlite_passkey::insert_passkey_row(&tx, p)? == 0 {
            return Err(rusqlite::Error::StatementChangedRows(0));
        }
    }
    for r in &s.resources {
        insert_resource_row(&tx, r)?;
    }
    for k in &s.signing_keys {
        insert_key(&tx, k)?;
    }
    for (id, p) in &s.pending {
        let data = serde_json::to_string(p).map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
        tx.execute(
            "INSERT INTO pending_authorizations (id_hash, data, expires_at, client_id) VALUES (?1, ?2, ?3, ?4)",
            params![id.as_str(), data, p.expires_at, p.client_id.as_str()],
        )?;
    }
    for x in &s.sessions {
        insert_session_row(&tx, x)?;
    }
    for x in &s.consents {
        insert_consent(&tx, crate::account_sql::INSERT_CONSENT, x)?;
    }
    for x in &s.codes {
        insert_code_row(&tx, x)?;
    }
    for g in &s.grants {
        insert_grant_row(&tx, g)?;
    }
    for r in &s.refresh_tokens {
        insert_refresh(&tx, r)?;
    }
    for a in &s.access_tokens {
        insert_access(&tx, a)?;
    }
    for e in &s.audit_events {
        tx.execute(
            "INSERT INTO audit_events (at, event, user_id, client_id, ip, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![e.at, e.event, e.user_id, e.client_id, e.ip, e.detail.to_string()],
        )?;
    }
    // After the users: links and holds belong to one.
    for l in &s.email_links {
        crate::sqlite_email_link::insert_link_row(&tx, l)?;
    }
    for h in &s.signup_holds {
        tx.execute(crate::email_link_sql::INSERT_HOLD, params![h.user_id, h.created_at])?;
    }
    for j in &s.outbox {
        tx.execute(
            crate::outbox_sql::IMPORT,
            params![
                j.job.kind(),
                j.job.to_stored(),
                j.attempts,
                j.next_attempt_at,
                j.created_at,
                j.last_error,
                j.dead,
                j.completed_at
            ],
        )?;
    }
    tx.commit()
}
