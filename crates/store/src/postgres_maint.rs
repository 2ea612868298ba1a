//! PostgreSQL housekeeping: purge, row counts, export and import (`latchkey db copy`).

use anyhow::Context;
use latchkey_core::UnixTime;
use latchkey_core::store::*;
use latchkey_proto::TokenHash;
use tokio_postgres::IsolationLevel;

use crate::account_sql::{CONSENT_COLS, SESSION_COLS};
use crate::postgres::*;
use crate::postgres_resources::{INSERT_RESOURCE, resource_row};
use crate::purge_sql::{self, Param};
use crate::sqlite::{CODE_COLS, GRANT_COLS, USER_COLS};
use crate::sqlite_resources::RESOURCE_COLS;

pub(crate) async fn purge(s: &PostgresStore, now: UnixTime, policy: &PurgePolicy) -> anyhow::Result<TableCounts> {
    let mut c = s.object().await?;
    let tx = PostgresStore::begin(&mut c).await?;
    let mut out = TableCounts::default();
    // Every instance runs the purge; one at a time is enough, the others skip their turn.
    let ours: bool = tx.query_one("SELECT pg_try_advisory_xact_lock($1)", &[&PURGE_LOCK]).await?.get(0);
    if !ours {
        return Ok(out);
    }
    let cutoff = now.saturating_sub(policy.key_publish_window as i64);
    let audit_cutoff = purge_sql::audit_cutoff(now, policy);
    for (field, param, sql) in purge_sql::statements() {
        let stmt = tx.prepare_cached(&sql).await?;
        let n = match param {
            Param::None => tx.execute(&stmt, &[]).await?,
            Param::Now => tx.execute(&stmt, &[&now]).await?,
            Param::KeyCutoff => tx.execute(&stmt, &[&cutoff]).await?,
            Param::ThrottleCutoff => tx.execute(&stmt, &[&purge_sql::throttle_cutoff(now)]).await?,
            Param::AuditCutoff => tx.execute(&stmt, &[&audit_cutoff]).await?,
        };
        *field(&mut out) += n;
    }
    tx.commit().await?;
    Ok(out)
}

pub(crate) async fn counts(s: &PostgresStore) -> anyhow::Result<TableCounts> {
    let c = s.object().await?;
    let stmt = c.prepare_cached(purge_sql::COUNTS).await?;
    let row = c.query_one(&stmt, &[]).await?;
    let mut v = [0i64; purge_sql::COUNTED];
    for (i, x) in v.iter_mut().enumerate() {
        *x = row.try_get(i)?;
    }
    Ok(purge_sql::from_values(v))
}

pub(crate) async fn export(s: &PostgresStore) -> anyhow::Result<Snapshot> {
    let mut c = s.object().await?;
    // One snapshot for every table: the copy is consistent even while instances keep serving.
    let tx = c.build_transaction().isolation_level(IsolationLevel::RepeatableRead).read_only(true).start().await?;
    macro_rules! rows {
        ($sql:expr, $f:expr) => {
            tx.query($sql, &[]).await?.iter().map($f).collect::<anyhow::Result<Vec<_>>>()?
        };
    }
    let snapshot = Snapshot {
        clients: rows!("SELECT data FROM clients ORDER BY client_id", |r| json_of(r, 0)),
        users: rows!(&format!("SELECT {USER_COLS} FROM users ORDER BY id"), user_row),
        signing_keys: rows!(&format!("SELECT {KEY_COLS} FROM signing_keys ORDER BY kid"), key_row),
        pending: rows!("SELECT id_hash, data FROM pending_authorizations ORDER BY id_hash", |r| Ok((
            TokenHash::from_stored(r.try_get(0)?),
            json_of(r, 1)?
        ))),
        sessions: rows!(&format!("SELECT {SESSION_COLS} FROM sessions ORDER BY hash"), session_row),
        consents: rows!(&format!("SELECT {CONSENT_COLS} FROM consents ORDER BY user_id, client_id"), consent_row),
        codes: rows!(&format!("SELECT {CODE_COLS} FROM codes ORDER BY hash"), code_row),
        grants: rows!(&format!("SELECT {GRANT_COLS} FROM grants g ORDER BY g.id"), |r| grant_row(r, 0)),
        refresh_tokens: rows!(&format!("SELECT {REFRESH_COLS} FROM refresh_tokens ORDER BY hash"), |r| refresh_row(
            r, 0
        )),
        access_tokens: rows!(
            "SELECT jti, grant_id, expires_at, revoked_at FROM access_tokens ORDER BY jti",
            access_row
        ),
        audit_events: rows!(
            "SELECT at, event, user_id, client_id, ip, detail FROM audit_events ORDER BY id",
            audit_row
        ),
        resources: rows!(&format!("SELECT {RESOURCE_COLS} FROM resources ORDER BY uri"), resource_row),
        registrations: rows!(
            &format!("{} ORDER BY client_id", crate::registration_sql::ALL),
            crate::postgres_registration::registration_row
        ),
        outbox: rows!(crate::outbox_sql::ALL, crate::postgres_outbox::outbox_row),
        email_links: rows!(crate::email_link_sql::ALL_LINKS, crate::postgres_email_link::link_row),
        signup_holds: rows!(crate::email_link_sql::ALL_HOLDS, crate::postgres_email_link::hold_row),
        totp: rows!(crate::factors_sql::ALL_TOTP, crate::postgres_factors::totp_row),
        recovery_codes: rows!(crate::factors_sql::ALL_RECOVERY, crate::postgres_factors::recovery_row),
        passkeys: rows!(&crate::passkey_sql::all(), crate::postgres_passkey::passkey_row),
    };
    tx.commit().await?;
    Ok(snapshot)
}

pub(crate) async fn import(s: &PostgresStore, snap: &Snapshot) -> anyhow::Result<()> {
    let mut c = s.object().await?;
    let tx = PostgresStore::begin(&mut c).await?;
    let stmt = tx.prepare("INSERT INTO clients (client_id, data, created_at) VALUES ($1, $2, $3)").await?;
    for client in &snap.clients {
        let data = serde_json::to_string(client)?;
        tx.execute(&stmt, &[&client.client_id.as_str(), &data, &client.created_at])
            .await
            .with_context(|| format!("client {}", client.client_id))?;
    }
    let stmt = tx.prepare(&insert_user_sql()).await?;
    for u in &snap.users {
        let profile = serde_json::to_string(&u.profile)?;
        tx.execute(&stmt, &user_params(u, &profile)).await.with_context(|| format!("user {}", u.username))?;
    }
    crate::postgres_factors::import(&tx, snap).await?;
    // After the users: a passkey belongs to one. A credential id already there fails the import.
    for p in &snap.passkeys {
        let count = i64::from(p.sign_count);
        let n = tx
            .execute(crate::passkey_sql::INSERT, &crate::postgres_passkey::insert_params(p, &count))
            .await
            .with_context(|| format!("passkey {}", p.cred_id))?;
        anyhow::ensure!(n == 1, "passkey {} already exists", p.cred_id);
    }
    for k in &snap.signing_keys {
        insert_key(&tx, k).await.with_context(|| format!("signing key {}", k.kid))?;
    }
    // After the clients: a registration belongs to one.
    for r in &snap.registrations {
        let meta = serde_json::to_string(&r.metadata)?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
            [&r.client_id.as_str(), &r.access_hash.as_str(), &r.fingerprint, &r.shared, &meta, &r.created_at];
        tx.execute(crate::registration_sql::INSERT, &params)
            .await
            .with_context(|| format!("registration {}", r.client_id))?;
    }
    for r in &snap.resources {
        tx.execute(INSERT_RESOURCE, &[&r.uri.as_str(), &r.name, &r.scopes.to_string(), &r.created_at])
            .await
            .with_context(|| format!("resource {}", r.uri))?;
    }
    let stmt = tx
        .prepare("INSERT INTO pending_authorizations (id_hash, data, expires_at, client_id) VALUES ($1, $2, $3, $4)")
        .await?;
    for (id, p) in &snap.pending {
        let data = serde_json::to_string(p)?;
        tx.execute(&stmt, &[&id.as_str(), &data, &p.expires_at, &p.client_id.as_str()]).await?;
    }
    for x in &snap.sessions {
        insert_session_row(&tx, x).await?;
    }
    let stmt = tx.prepare(crate::account_sql::INSERT_CONSENT).await?;
    for x in &snap.consents {
        let (scope, claims) = (x.scope.to_string(), crate::account_sql::claims_to_column(&x.claims));
        tx.execute(&stmt, &[&x.user_id, &x.client_id.as_str(), &scope, &x.updated_at, &claims]).await?;
    }
    for x in &snap.codes {
        insert_code_row(&tx, x).await?;
    }
    for g in &snap.grants {
        insert_grant_row(&tx, g).await?;
    }
    for r in &snap.refresh_tokens {
        insert_refresh(&tx, r).await?;
    }
    for a in &snap.access_tokens {
        insert_access(&tx, a).await?;
    }
    let stmt = tx
        .prepare("INSERT INTO audit_events (at, event, user_id, client_id, ip, detail) VALUES ($1, $2, $3, $4, $5, $6)")
        .await?;
    for e in &snap.audit_events {
        tx.execute(&stmt, &[&e.at, &e.event, &e.user_id, &e.client_id, &e.ip, &e.detail.to_string()]).await?;
    }
    // After the users: links and holds belong to one.
    for l in &snap.email_links {
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
            [&l.hash.as_str(), &l.purpose.as_str(), &l.user_id, &l.email, &l.created_at, &l.expires_at];
        tx.execute(crate::email_link_sql::INSERT_LINK, &params).await.context("email link")?;
    }
    for h in &snap.signup_holds {
        tx.execute(crate::email_link_sql::INSERT_HOLD, &[&h.user_id, &h.created_at]).await.context("sign-up hold")?;
    }
    for j in &snap.outbox {
        let attempts = i32::try_from(j.attempts).unwrap_or(i32::MAX);
        let (kind, payload) = (j.job.kind(), j.job.to_stored());
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 8] =
            [&kind, &payload, &attempts, &j.next_attempt_at, &j.created_at, &j.last_error, &j.dead, &j.completed_at];
        tx.execute(crate::outbox_sql::IMPORT, &params).await.with_context(|| format!("outbox job {}", j.id))?;
    }
    tx.commit().await?;
    Ok(())
}
