//! [`EmailLinkStore`] on SQLite. Each write is one closure on the single writer connection, inside
//! its savepoint: one atomic step, also against other processes on the file (`BEGIN IMMEDIATE`).

use async_trait::async_trait;
use latchkey_core::UnixTime;
use latchkey_core::email_link::*;
use latchkey_core::store::{StoreResult, UserRecord};
use latchkey_proto::TokenHash;
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::SqliteStore;
use crate::email_link_sql as sql;
use crate::sqlite::{USER_COLS, insert_user_row, is_unique_violation, user_row};

/// [`sql::LINK_COLS`] from column 0.
pub(crate) fn link_row(r: &Row<'_>) -> rusqlite::Result<EmailLinkRecord> {
    let purpose: String = r.get(1)?;
    let purpose = LinkPurpose::parse(&purpose).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, format!("purpose {purpose}").into())
    })?;
    Ok(EmailLinkRecord {
        hash: TokenHash::from_stored(r.get(0)?),
        purpose,
        user_id: r.get(2)?,
        email: r.get(3)?,
        created_at: r.get(4)?,
        expires_at: r.get(5)?,
    })
}

pub(crate) fn hold_row(r: &Row<'_>) -> rusqlite::Result<SignupHold> {
    Ok(SignupHold { user_id: r.get(0)?, created_at: r.get(1)? })
}

pub(crate) fn insert_link_row(c: &Connection, l: &EmailLinkRecord) -> rusqlite::Result<usize> {
    c.prepare_cached(sql::INSERT_LINK)?.execute(params![
        l.hash.as_str(),
        l.purpose.as_str(),
        l.user_id,
        l.email,
        l.created_at,
        l.expires_at
    ])
}

fn holder_of(c: &Connection, email: &str) -> rusqlite::Result<Option<String>> {
    c.prepare_cached(sql::HOLDER_OF)?.query_row([email], |r| r.get(0)).optional()
}

fn username_taken(c: &Connection, name: &str) -> rusqlite::Result<bool> {
    Ok(c.prepare_cached(sql::USERNAME_TAKEN)?.query_row([name], |_| Ok(())).optional()?.is_some())
}

#[async_trait]
impl EmailLinkStore for SqliteStore {
    async fn users_by_email(&self, email: &str) -> StoreResult<Vec<UserRecord>> {
        let email = email.to_owned();
        self.scan(move |c| {
            c.prepare_cached(&format!(
                "SELECT {USER_COLS} FROM users WHERE lower(email) = lower(?1) ORDER BY created_at, username"
            ))?
            .query_map([email], user_row)?
            .collect()
        })
        .await
    }

    async fn issue_link(&self, link: &EmailLinkRecord) -> StoreResult<()> {
        let link = link.clone();
        self.write(move |c| {
            let tx = c.savepoint()?;
            match &link.user_id {
                Some(id) => tx.execute(sql::REPLACED_FOR_USER, params![link.purpose.as_str(), id])?,
                None => tx.execute(sql::REPLACED_FOR_ADDRESS, params![link.purpose.as_str(), link.email])?,
            };
            insert_link_row(&tx, &link)?;
            tx.commit()
        })
        .await
    }

    async fn email_link(
        &self,
        hash: &TokenHash,
        purpose: LinkPurpose,
        now: UnixTime,
    ) -> StoreResult<Option<EmailLinkRecord>> {
        let hash = hash.as_str().to_owned();
        self.lookup(move |c| {
            c.prepare_cached(sql::GET_LINK)?.query_row(params![hash, purpose.as_str(), now], link_row).optional()
        })
        .await
    }

    async fn consume_link(
        &self,
        hash: &TokenHash,
        purpose: LinkPurpose,
        now: UnixTime,
    ) -> StoreResult<Option<EmailLinkRecord>> {
        let hash = hash.as_str().to_owned();
        self.write(move |c| {
            c.prepare_cached(sql::CONSUME_LINK)?.query_row(params![hash, purpose.as_str(), now], link_row).optional()
        })
        .await
    }

    async fn confirm_address(&self, user_id: &str, email: &str) -> StoreResult<bool> {
        let (id, email) = (user_id.to_owned(), email.to_owned());
        self.write(move |c| {
            let tx = c.savepoint()?;
            if tx.execute(sql::CONFIRM, params![id, email])? == 0 {
                return Ok(false);
            }
            tx.execute(sql::LIFT_HOLD, [&id])?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn verify_email(&self, hash: &TokenHash, now: UnixTime) -> StoreResult<Option<VerifiedEmail>> {
        let hash = hash.as_str().to_owned();
        self.write(move |c| {
            let tx = c.savepoint()?;
            let Some(link) = tx
                .prepare_cached(sql::CONSUME_LINK)?
                .query_row(params![hash, LinkPurpose::VerifyEmail.as_str(), now], link_row)
                .optional()?
            else {
                return Ok(None);
            };
            let Some(id) = link.user_id else { return Ok(None) };
            let found: Option<(String, String)> =
                tx.prepare_cached(sql::NAME_AND_EMAIL)?.query_row([&id], |r| Ok((r.get(0)?, r.get(1)?))).optional()?;
            let Some((username, previous)) = found else { return Ok(None) };
            tx.execute(sql::SET_VERIFIED_EMAIL, params![link.email, id])?;
            tx.execute(sql::LIFT_HOLD, [&id])?;
            tx.commit()?;
            Ok(Some(VerifiedEmail { user_id: id, username, previous, email: link.email }))
        })
        .await
    }

    async fn create_unverified_user(
        &self,
        user: &UserRecord,
        max_unverified: u64,
        now: UnixTime,
    ) -> StoreResult<SignupStored> {
        let user = user.clone();
        let max = i64::try_from(max_unverified).unwrap_or(i64::MAX);
        self.write(move |c| {
            let tx = c.savepoint()?;
            let waiting: i64 = tx.prepare_cached(sql::COUNT_HOLDS)?.query_row([], |r| r.get(0))?;
            if waiting >= max {
                return Ok(SignupStored::Full);
            }
            if username_taken(&tx, &user.username)? {
                return Ok(SignupStored::UsernameTaken);
            }
            if let Some(username) = holder_of(&tx, &user.email)? {
                return Ok(SignupStored::EmailTaken { username });
            }
            insert_user_row(&tx, &user)?;
            tx.execute(sql::INSERT_HOLD, params![user.id, now])?;
            tx.commit()?;
            Ok(SignupStored::Created)
        })
        .await
    }

    async fn create_invited_user(
        &self,
        hash: &TokenHash,
        user: &UserRecord,
        now: UnixTime,
    ) -> StoreResult<InvitedStored> {
        let (hash, user) = (hash.as_str().to_owned(), user.clone());
        self.write(move |c| {
            let tx = c.savepoint()?;
            let used: Option<String> = tx
                .prepare_cached(sql::CONSUME_INVITATION)?
                .query_row(params![hash, now, user.email], |r| r.get(0))
                .optional()?;
            if used.is_none() {
                return Ok(InvitedStored::InvalidInvitation);
            }
            if username_taken(&tx, &user.username)? {
                // Dropping the savepoint rolls it back: the invitation stays.
                return Ok(InvitedStored::UsernameTaken);
            }
            if let Some(username) = holder_of(&tx, &user.email)? {
                tx.commit()?;
                return Ok(InvitedStored::EmailTaken { username });
            }
            insert_user_row(&tx, &UserRecord { email_verified: true, ..user })?;
            tx.commit()?;
            Ok(InvitedStored::Created)
        })
        .await
        .or_else(|e| if is_unique_violation(&e) { Ok(InvitedStored::UsernameTaken) } else { Err(e) })
    }

    async fn signup_hold(&self, user_id: &str) -> StoreResult<Option<SignupHold>> {
        let id = user_id.to_owned();
        self.lookup(move |c| c.prepare_cached(sql::HOLD)?.query_row([id], hold_row).optional()).await
    }

    async fn set_email(&self, user_id: &str, email: &str, verified: bool) -> StoreResult<bool> {
        let (id, email) = (user_id.to_owned(), email.to_owned());
        self.write(move |c| Ok(c.prepare_cached(sql::SET_EMAIL)?.execute(params![email, verified, id])? > 0)).await
    }
}
