//! The account store (profile, lock, sessions, applications) on SQLite. Every write runs in the
//! single writer's transaction, inside a savepoint of its own: atomic across every process on the
//! file (SQLite's write lock).

use std::collections::BTreeMap;

use async_trait::async_trait;
use latchkey_core::UnixTime;
use latchkey_core::account_store::{AccountStore, AppRecord, AppRevocation, ProfileUpdate, SessionSelector};
use latchkey_core::store::{EndedSessions, SessionRecord, StoreResult, UserRevocation};
use latchkey_proto::ClientId;
use rusqlite::{OptionalExtension, params};

use crate::account_sql as sql;
use crate::sqlite::{SqliteStore, client_id_at, consent_row, scope_at, session_row, to_json};
use crate::sqlite_session_end::{end_user_sessions, ended_sessions};

/// The sid a `DELETE … RETURNING sid` returned.
fn sid_at(r: &rusqlite::Row<'_>) -> rusqlite::Result<String> {
    r.get(0)
}

#[async_trait]
impl AccountStore for SqliteStore {
    async fn update_profile(&self, id: &str, p: &ProfileUpdate, now: UnixTime) -> StoreResult<bool> {
        let (id, p, profile) = (id.to_owned(), p.clone(), to_json(&p.profile)?);
        self.write(move |c| {
            c.prepare_cached(sql::UPDATE_PROFILE)?.execute(params![
                p.name,
                p.email_verified,
                p.email,
                p.phone_number,
                p.address,
                profile,
                now,
                id
            ])
        })
        .await
        .map(|n| n == 1)
    }

    async fn set_locked(&self, username: &str, locked_at: Option<UnixTime>) -> StoreResult<Option<UserRevocation>> {
        let name = username.to_owned();
        self.write(move |c| {
            let tx = c.savepoint()?;
            let id: Option<String> =
                tx.prepare_cached(sql::SET_LOCKED)?.query_row(params![locked_at, name], |r| r.get(0)).optional()?;
            let Some(user_id) = id else { return Ok(None) };
            let mut out = UserRevocation { user_id, ..Default::default() };
            if let Some(now) = locked_at {
                out.ended = end_user_sessions(&tx, &out.user_id, None, now)?;
                out.sessions_ended = out.ended.len() as u64;
                out.grants_revoked =
                    tx.prepare_cached(sql::LOCK_REVOKE_GRANTS)?.execute(params![now, out.user_id])? as u64;
                tx.prepare_cached(sql::LOCK_DELETE_CODES)?.execute([&out.user_id])?;
            }
            tx.commit()?;
            Ok(Some(out))
        })
        .await
    }

    async fn user_sessions(&self, user_id: &str, now: UnixTime) -> StoreResult<Vec<SessionRecord>> {
        let id = user_id.to_owned();
        self.scan(move |c| c.prepare_cached(&sql::user_sessions())?.query_map(params![id, now], session_row)?.collect())
            .await
    }

    async fn end_user_sessions(
        &self,
        user_id: &str,
        which: &SessionSelector,
        now: UnixTime,
    ) -> StoreResult<EndedSessions> {
        let (id, which) = (user_id.to_owned(), which.clone());
        self.write(move |c| {
            let tx = c.savepoint()?;
            let sids: Vec<String> = {
                let mut stmt;
                let rows = match &which {
                    SessionSelector::One(sid) => {
                        stmt = tx.prepare_cached(sql::END_ONE)?;
                        stmt.query_map(params![id, sid], sid_at)?
                    }
                    SessionSelector::AllExcept(sid) => {
                        stmt = tx.prepare_cached(sql::END_ALL_EXCEPT)?;
                        stmt.query_map(params![id, sid], sid_at)?
                    }
                    SessionSelector::All => {
                        stmt = tx.prepare_cached(sql::END_ALL)?;
                        stmt.query_map(params![id], sid_at)?
                    }
                };
                rows.collect::<rusqlite::Result<_>>()?
            };
            let ended = ended_sessions(&tx, &id, sids, now)?;
            for s in ended.iter() {
                tx.prepare_cached(sql::REVOKE_SESSION_GRANTS)?.execute(params![now, s.sid])?;
            }
            tx.commit()?;
            Ok(ended)
        })
        .await
    }

    async fn user_apps(&self, user_id: &str, now: UnixTime) -> StoreResult<Vec<AppRecord>> {
        let id = user_id.to_owned();
        self.scan(move |c| {
            // One read transaction: the three reads see one state of the file.
            let tx = c.unchecked_transaction()?;
            let mut apps: BTreeMap<String, AppRecord> = BTreeMap::new();
            for consent in tx.prepare_cached(sql::USER_CONSENTS)?.query_map([&id], consent_row)? {
                let consent = consent?;
                let client_id = consent.client_id.clone();
                sql::app_entry(&mut apps, client_id).consent = Some(consent);
            }
            let mut stmt = tx.prepare_cached(sql::USER_LIVE_GRANTS)?;
            let grants = stmt.query_map(params![id, now], |r| Ok((client_id_at(r, 0)?, scope_at(r, 1)?)))?;
            for g in grants {
                let (client_id, scope) = g?;
                let app = sql::app_entry(&mut apps, client_id);
                app.live_grants += 1;
                app.granted_scope = app.granted_scope.union(&scope);
            }
            drop(stmt);
            let mut stmt = tx.prepare_cached(sql::USER_LAST_USE)?;
            let uses = stmt.query_map([&id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<i64>>(1)?)))?;
            for u in uses {
                let (client_id, at) = u?;
                // Only applications listed for their consent or live grants.
                if let Some(app) = apps.get_mut(&client_id) {
                    app.last_used = at;
                }
            }
            drop(stmt);
            tx.commit()?;
            Ok(apps.into_values().collect())
        })
        .await
    }

    async fn revoke_app(&self, user_id: &str, client_id: &ClientId, now: UnixTime) -> StoreResult<AppRevocation> {
        let (id, client) = (user_id.to_owned(), client_id.to_string());
        self.write(move |c| {
            let tx = c.savepoint()?;
            let consents = tx.prepare_cached(sql::REVOKE_APP_CONSENT)?.execute(params![id, client])?;
            let grants = tx.prepare_cached(sql::REVOKE_APP_GRANTS)?.execute(params![now, id, client])?;
            tx.prepare_cached(sql::REVOKE_APP_CODES)?.execute(params![id, client])?;
            tx.commit()?;
            Ok(AppRevocation { consent_removed: consents > 0, grants_revoked: grants as u64 })
        })
        .await
    }
}
