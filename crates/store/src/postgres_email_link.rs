//! [`EmailLinkStore`] on PostgreSQL. A link is used by one `DELETE … RETURNING`: a concurrent use
//! of the same row waits for it and then finds nothing. Sign-ups (open and invited) run under one
//! transaction-scoped advisory lock, so the address check, the cap on unverified accounts and the
//! insert are one step across instances; they are rare and throttled, so serializing them costs
//! nothing.

use async_trait::async_trait;
use latchkey_core::UnixTime;
use latchkey_core::email_link::*;
use latchkey_core::store::{StoreError, StoreResult, UserRecord};
use latchkey_proto::TokenHash;
use tokio_postgres::Row;

use crate::PostgresStore;
use crate::email_link_sql as sql;
use crate::postgres::{insert_user_sql, is_unique_violation, user_params, user_row};
use crate::sqlite::USER_COLS;

/// The advisory lock of sign-ups.
const SIGNUP_LOCK: i64 = 0x6c61_7463_686b_6579 + 17;

pub(crate) fn link_row(r: &Row) -> anyhow::Result<EmailLinkRecord> {
    let purpose: String = r.try_get(1)?;
    Ok(EmailLinkRecord {
        hash: TokenHash::from_stored(r.try_get(0)?),
        purpose: LinkPurpose::parse(&purpose).ok_or_else(|| anyhow::anyhow!("stored link purpose {purpose:?}"))?,
        user_id: r.try_get(2)?,
        email: r.try_get(3)?,
        created_at: r.try_get(4)?,
        expires_at: r.try_get(5)?,
    })
}

pub(crate) fn hold_row(r: &Row) -> anyhow::Result<SignupHold> {
    Ok(SignupHold { user_id: r.try_get(0)?, created_at: r.try_get(1)? })
}

fn backend(e: anyhow::Error) -> StoreError {
    StoreError::Backend(e)
}

impl PostgresStore {
    async fn issue_link_once(&self, link: &EmailLinkRecord) -> anyhow::Result<()> {
        let mut c = self.object().await?;
        let tx = Self::begin(&mut c).await?;
        match &link.user_id {
            Some(id) => tx.execute(sql::REPLACED_FOR_USER, &[&link.purpose.as_str(), id]).await?,
            None => tx.execute(sql::REPLACED_FOR_ADDRESS, &[&link.purpose.as_str(), &link.email]).await?,
        };
        tx.execute(
            sql::INSERT_LINK,
            &[
                &link.hash.as_str(),
                &link.purpose.as_str(),
                &link.user_id,
                &link.email,
                &link.created_at,
                &link.expires_at,
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn confirm_once(&self, id: &str, email: &str) -> anyhow::Result<bool> {
        let mut c = self.object().await?;
        let tx = Self::begin(&mut c).await?;
        if tx.execute(sql::CONFIRM, &[&id, &email]).await? == 0 {
            return Ok(false);
        }
        tx.execute(sql::LIFT_HOLD, &[&id]).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn verify_once(&self, hash: &str, now: UnixTime) -> anyhow::Result<Option<VerifiedEmail>> {
        let mut c = self.object().await?;
        let tx = Self::begin(&mut c).await?;
        let purpose = LinkPurpose::VerifyEmail.as_str();
        let Some(row) = tx.query_opt(sql::CONSUME_LINK, &[&hash, &purpose, &now]).await? else { return Ok(None) };
        let link = link_row(&row)?;
        let Some(id) = link.user_id else { return Ok(None) };
        let found = tx.query_opt(&format!("{} FOR UPDATE", sql::NAME_AND_EMAIL), &[&id]).await?;
        let Some(found) = found else { return Ok(None) };
        let (username, previous): (String, String) = (found.try_get(0)?, found.try_get(1)?);
        tx.execute(sql::SET_VERIFIED_EMAIL, &[&link.email, &id]).await?;
        tx.execute(sql::LIFT_HOLD, &[&id]).await?;
        tx.commit().await?;
        Ok(Some(VerifiedEmail { user_id: id, username, previous, email: link.email }))
    }

    async fn signup_once(&self, user: &UserRecord, max: i64, now: UnixTime) -> anyhow::Result<SignupStored> {
        let mut c = self.object().await?;
        let tx = Self::begin(&mut c).await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SIGNUP_LOCK]).await?;
        let waiting: i64 = tx.query_one(sql::COUNT_HOLDS, &[]).await?.try_get(0)?;
        if waiting >= max {
            return Ok(SignupStored::Full);
        }
        if tx.query_opt(sql::USERNAME_TAKEN, &[&user.username]).await?.is_some() {
            return Ok(SignupStored::UsernameTaken);
        }
        if let Some(row) = tx.query_opt(sql::HOLDER_OF, &[&user.email]).await? {
            return Ok(SignupStored::EmailTaken { username: row.try_get(0)? });
        }
        // An administrator's `user add` does not take the lock: a username taken meanwhile fails
        // the insert, which is the same answer.
        let profile = serde_json::to_string(&user.profile)?;
        if let Err(e) = tx.execute(insert_user_sql().as_str(), &user_params(user, &profile)).await {
            let e = anyhow::Error::new(e);
            return if is_unique_violation(&e) { Ok(SignupStored::UsernameTaken) } else { Err(e) };
        }
        tx.execute(sql::INSERT_HOLD, &[&user.id, &now]).await?;
        tx.commit().await?;
        Ok(SignupStored::Created)
    }

    async fn invited_once(&self, hash: &str, user: &UserRecord, now: UnixTime) -> anyhow::Result<InvitedStored> {
        let mut c = self.object().await?;
        let tx = Self::begin(&mut c).await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SIGNUP_LOCK]).await?;
        if tx.query_opt(sql::CONSUME_INVITATION, &[&hash, &now, &user.email]).await?.is_none() {
            return Ok(InvitedStored::InvalidInvitation);
        }
        if tx.query_opt(sql::USERNAME_TAKEN, &[&user.username]).await?.is_some() {
            // Rolled back: the invitation stays.
            return Ok(InvitedStored::UsernameTaken);
        }
        if let Some(row) = tx.query_opt(sql::HOLDER_OF, &[&user.email]).await? {
            let username = row.try_get(0)?;
            tx.commit().await?;
            return Ok(InvitedStored::EmailTaken { username });
        }
        let verified = UserRecord { email_verified: true, ..user.clone() };
        let profile = serde_json::to_string(&verified.profile)?;
        if let Err(e) = tx.execute(insert_user_sql().as_str(), &user_params(&verified, &profile)).await {
            let e = anyhow::Error::new(e);
            return if is_unique_violation(&e) { Ok(InvitedStored::UsernameTaken) } else { Err(e) };
        }
        tx.commit().await?;
        Ok(InvitedStored::Created)
    }
}

#[async_trait]
impl EmailLinkStore for PostgresStore {
    async fn users_by_email(&self, email: &str) -> StoreResult<Vec<UserRecord>> {
        let q = format!("SELECT {USER_COLS} FROM users WHERE lower(email) = lower($1) ORDER BY created_at, username");
        self.all(&q, &[&email], user_row).await
    }

    async fn issue_link(&self, link: &EmailLinkRecord) -> StoreResult<()> {
        self.issue_link_once(link).await.map_err(backend)
    }

    async fn email_link(
        &self,
        hash: &TokenHash,
        purpose: LinkPurpose,
        now: UnixTime,
    ) -> StoreResult<Option<EmailLinkRecord>> {
        self.opt(sql::GET_LINK, &[&hash.as_str(), &purpose.as_str(), &now], link_row).await
    }

    async fn consume_link(
        &self,
        hash: &TokenHash,
        purpose: LinkPurpose,
        now: UnixTime,
    ) -> StoreResult<Option<EmailLinkRecord>> {
        self.opt(sql::CONSUME_LINK, &[&hash.as_str(), &purpose.as_str(), &now], link_row).await
    }

    async fn confirm_address(&self, user_id: &str, email: &str) -> StoreResult<bool> {
        self.confirm_once(user_id, email).await.map_err(backend)
    }

    async fn verify_email(&self, hash: &TokenHash, now: UnixTime) -> StoreResult<Option<VerifiedEmail>> {
        self.verify_once(hash.as_str(), now).await.map_err(backend)
    }

    async fn create_unverified_user(
        &self,
        user: &UserRecord,
        max_unverified: u64,
        now: UnixTime,
    ) -> StoreResult<SignupStored> {
        self.signup_once(user, i64::try_from(max_unverified).unwrap_or(i64::MAX), now).await.map_err(backend)
    }

    async fn create_invited_user(
        &self,
        hash: &TokenHash,
        user: &UserRecord,
        now: UnixTime,
    ) -> StoreResult<InvitedStored> {
        self.invited_once(hash.as_str(), user, now).await.map_err(backend)
    }

    async fn signup_hold(&self, user_id: &str) -> StoreResult<Option<SignupHold>> {
        self.opt(sql::HOLD, &[&user_id], hold_row).await
    }

    async fn set_email(&self, user_id: &str, email: &str, verified: bool) -> StoreResult<bool> {
        Ok(self.exec(sql::SET_EMAIL, &[&email, &verified, &user_id]).await.map_err(backend)? > 0)
    }
}
