//! The account store (profile, lock, sessions, applications) on PostgreSQL. Each write is one
//! READ COMMITTED transaction, retried on a deadlock like every other (`retrying!`'s rule).

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use latchkey_core::UnixTime;
use latchkey_core::account_store::{AccountStore, AppRecord, AppRevocation, ProfileUpdate, SessionSelector};
use latchkey_core::store::{EndedSessions, SessionRecord, StoreError, StoreResult, UserRevocation};
use latchkey_proto::ClientId;
use tokio_postgres::IsolationLevel;
use tokio_postgres::error::SqlState;

use crate::account_sql as sql;
use crate::postgres::{PostgresStore, client_id_of, consent_row, scope_of, session_row};
use crate::postgres_session_end::{end_user_sessions, ended_sessions};

/// Attempts for a transaction that hit a deadlock or a serialization failure.
const ATTEMPTS: u32 = 5;

/// Runs `op` again on a deadlock or a serialization failure: each attempt is a whole transaction.
async fn retrying<T, F, Fut>(mut op: F) -> StoreResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut attempt = 1;
    loop {
        match op().await {
            Err(e)
                if attempt < ATTEMPTS
                    && e.downcast_ref::<tokio_postgres::Error>().and_then(|e| e.code()).is_some_and(|c| {
                        *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
                    }) =>
            {
                tokio::time::sleep(Duration::from_millis(2u64 << attempt)).await;
                attempt += 1;
            }
            other => return other.map_err(StoreError::Backend),
        }
    }
}

impl PostgresStore {
    async fn revoke_app_once(&self, user_id: &str, client: &str, now: UnixTime) -> anyhow::Result<Vec<u64>> {
        self.tx_exec(&[
            (sql::REVOKE_APP_CONSENT, &[&user_id, &client]),
            (sql::REVOKE_APP_GRANTS, &[&now, &user_id, &client]),
            (sql::REVOKE_APP_CODES, &[&user_id, &client]),
        ])
        .await
    }

    async fn set_locked_once(&self, name: &str, locked_at: Option<UnixTime>) -> anyhow::Result<Option<UserRevocation>> {
        let mut c = self.object().await?;
        let tx = Self::begin(&mut c).await?;
        // The UPDATE takes the user's row lock first: a sign-in inserting a session holds it
        // FOR SHARE (see `insert_session`), so the two are ordered and the session is either
        // refused or deleted below.
        let Some(row) = tx.query_opt(sql::SET_LOCKED, &[&locked_at, &name]).await? else { return Ok(None) };
        let user_id: String = row.try_get(0)?;
        let mut out = UserRevocation { user_id, ..Default::default() };
        if let Some(now) = locked_at {
            out.ended = end_user_sessions(&tx, &out.user_id, None, now).await?;
            out.sessions_ended = out.ended.len() as u64;
            out.grants_revoked = tx.execute(sql::LOCK_REVOKE_GRANTS, &[&now, &out.user_id]).await?;
            tx.execute(sql::LOCK_DELETE_CODES, &[&out.user_id]).await?;
        }
        tx.commit().await?;
        Ok(Some(out))
    }

    async fn end_sessions_once(
        &self,
        user_id: &str,
        which: &SessionSelector,
        now: UnixTime,
    ) -> anyhow::Result<EndedSessions> {
        let mut c = self.object().await?;
        let tx = Self::begin(&mut c).await?;
        let rows = match which {
            SessionSelector::One(sid) => tx.query(sql::END_ONE, &[&user_id, sid]).await?,
            SessionSelector::AllExcept(sid) => tx.query(sql::END_ALL_EXCEPT, &[&user_id, sid]).await?,
            SessionSelector::All => tx.query(sql::END_ALL, &[&user_id]).await?,
        };
        let sids = rows.iter().map(|r| r.try_get::<_, String>(0)).collect::<Result<Vec<_>, _>>()?;
        let ended = ended_sessions(&tx, user_id, sids, now).await?;
        for s in ended.iter() {
            tx.execute(sql::REVOKE_SESSION_GRANTS, &[&now, &s.sid]).await?;
        }
        tx.commit().await?;
        Ok(ended)
    }

    async fn user_apps_once(&self, user_id: &str, now: UnixTime) -> anyhow::Result<Vec<AppRecord>> {
        let mut c = self.object().await?;
        // One snapshot for the three reads.
        let tx = c.build_transaction().isolation_level(IsolationLevel::RepeatableRead).read_only(true).start().await?;
        let mut apps: BTreeMap<String, AppRecord> = BTreeMap::new();
        for r in tx.query(sql::USER_CONSENTS, &[&user_id]).await? {
            let consent = consent_row(&r)?;
            let client_id = consent.client_id.clone();
            sql::app_entry(&mut apps, client_id).consent = Some(consent);
        }
        for r in tx.query(sql::USER_LIVE_GRANTS, &[&user_id, &now]).await? {
            let (client_id, scope) = (client_id_of(r.try_get(0)?)?, scope_of(r.try_get(1)?)?);
            let app = sql::app_entry(&mut apps, client_id);
            app.live_grants += 1;
            app.granted_scope = app.granted_scope.union(&scope);
        }
        for r in tx.query(sql::USER_LAST_USE, &[&user_id]).await? {
            let client_id: String = r.try_get(0)?;
            if let Some(app) = apps.get_mut(&client_id) {
                app.last_used = r.try_get(1)?;
            }
        }
        tx.commit().await?;
        Ok(apps.into_values().collect())
    }
}

#[async_trait]
impl AccountStore for PostgresStore {
    async fn update_profile(&self, id: &str, p: &ProfileUpdate, now: UnixTime) -> StoreResult<bool> {
        let profile = serde_json::to_string(&p.profile).map_err(|e| StoreError::Backend(e.into()))?;
        let n = self
            .exec(
                sql::UPDATE_PROFILE,
                &[&p.name, &p.email_verified, &p.email, &p.phone_number, &p.address, &profile, &now, &id],
            )
            .await
            .map_err(StoreError::Backend)?;
        Ok(n == 1)
    }

    async fn set_locked(&self, username: &str, locked_at: Option<UnixTime>) -> StoreResult<Option<UserRevocation>> {
        retrying(|| self.set_locked_once(username, locked_at)).await
    }

    async fn user_sessions(&self, user_id: &str, now: UnixTime) -> StoreResult<Vec<SessionRecord>> {
        self.all(&sql::user_sessions(), &[&user_id, &now], session_row).await
    }

    async fn end_user_sessions(
        &self,
        user_id: &str,
        which: &SessionSelector,
        now: UnixTime,
    ) -> StoreResult<EndedSessions> {
        retrying(|| self.end_sessions_once(user_id, which, now)).await
    }

    async fn user_apps(&self, user_id: &str, now: UnixTime) -> StoreResult<Vec<AppRecord>> {
        retrying(|| self.user_apps_once(user_id, now)).await
    }

    async fn revoke_app(&self, user_id: &str, client_id: &ClientId, now: UnixTime) -> StoreResult<AppRevocation> {
        let counts = retrying(|| self.revoke_app_once(user_id, client_id.as_str(), now)).await?;
        Ok(AppRevocation {
            consent_removed: counts.first().is_some_and(|n| *n > 0),
            grants_revoked: counts.get(1).copied().unwrap_or(0),
        })
    }
}
