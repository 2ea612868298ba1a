//! `/account/password`: a signed-in person changes their password.
//!
//! The current password is asked first, so that a browser left signed in (or a stolen session
//! cookie) is not enough to take the account over; that check is throttled exactly like a login
//! (reserved before the Argon2 check, `crate::throttle`), so the form cannot be used to guess the
//! password either. The new password follows the administrator's rules (`admin::check_password`)
//! and goes through the same store operation as `latchkey user set-password`: in one transaction
//! it ends every other session of the user and revokes every grant (refresh tokens, offline ones
//! too, and the access tokens issued under them). The session in use stays.

use std::net::IpAddr;

use latchkey_proto::Password;
use serde_json::json;

use super::AccountSession;
use crate::admin::{AdminError, ExistingGrants, PasswordChange};
use crate::mail::{MailJob, Notice};
use crate::outbox::Job;
use crate::store::{Reservation, UserRevocation};
use crate::{Error, Provider, UnixTime, audit, throttle};

/// What a password change came to.
#[derive(Debug)]
pub enum PasswordOutcome {
    /// Changed; what ending the other sessions and the grants did.
    Changed(UserRevocation),
    /// The current password is wrong (nothing changed).
    WrongCurrent,
    /// Too many wrong attempts: retry after this many seconds (nothing was checked).
    Throttled { retry_after: u64 },
    /// The new password breaks a rule, or the confirmation differs: this message says which.
    Invalid(String),
}

impl Provider {
    /// Changes the signed-in user's password: `current` must be right, `new` must follow the
    /// password rules and equal `confirm`.
    pub async fn change_password(
        &self,
        a: &AccountSession,
        current: Password,
        new: Password,
        confirm: Password,
        ip: Option<IpAddr>,
        now: UnixTime,
    ) -> Result<PasswordOutcome, Error> {
        // The cheap checks first: a typo in the confirmation costs no Argon2 and no attempt.
        if new.expose_secret() != confirm.expose_secret() {
            return Ok(PasswordOutcome::Invalid("The new password and its confirmation differ.".into()));
        }
        if let Err(AdminError::Invalid(m)) = crate::admin::check_password(&new) {
            return Ok(PasswordOutcome::Invalid(capitalised(&m)));
        }
        let rules = throttle::keys(&a.user.username, ip, None);
        let refused_before = match self.store.throttle_reserve(&rules, now).await? {
            Reservation::Blocked { until, .. } => {
                return Ok(PasswordOutcome::Throttled { retry_after: (until - now).max(1) as u64 });
            }
            Reservation::Reserved { refused_while_blocked } => refused_while_blocked,
        };
        let user = self.store.user(&a.user.id).await?;
        let ok = self
            .hasher
            .verify(current.expose_secret().to_owned(), user.as_ref().map(|u| u.password_hash.clone()))
            .await?;
        let Some(user) = user.filter(|_| ok) else {
            let mut detail = json!({ "username": a.user.username, "step": "password_change" });
            if refused_before > 0 {
                detail["refused_while_throttled"] = json!(refused_before);
            }
            let e = audit::Event { user_id: Some(&a.user.id), ip, detail: Some(detail), ..Default::default() };
            audit::record(self.store.as_ref(), now, "login_failure", e).await;
            return Ok(PasswordOutcome::WrongCurrent);
        };
        let (clear, refund): (Vec<String>, Vec<String>) =
            rules.into_iter().map(|(k, _)| k).partition(|k| throttle::is_account_key(k));
        self.store.throttle_settle(&clear, &refund).await?;
        let change = PasswordChange { grants: ExistingGrants::Revoke, keep_sid: Some(&a.session.sid), by: "user", ip };
        match crate::admin::set_password_with(self.store.as_ref(), &self.hasher, &user.username, new, change, now).await
        {
            Ok(Some(r)) => {
                // The other sessions ended: their clients' logout tokens, queued by the store in
                // the same transaction, leave now.
                self.sessions_ended(&r.ended);
                self.notify_password_changed(&user, now).await?;
                Ok(PasswordOutcome::Changed(r))
            }
            // Removed meanwhile: there is no password to change.
            Ok(None) => Ok(PasswordOutcome::Invalid("This account no longer exists.".into())),
            Err(AdminError::Invalid(m)) => Ok(PasswordOutcome::Invalid(capitalised(&m))),
            Err(AdminError::Store(e)) => Err(e.into()),
            Err(AdminError::Other(e)) => Err(e.into()),
        }
    }
}

impl Provider {
    /// Tells the account's owner, at its verified address, that its password changed: a thief who
    /// changed it from a stolen session (or through a reset link read in a hijacked mailbox
    /// session) does not go unnoticed. Only with mail configured, and never to an address the
    /// user has not proved (it may be a stranger's typo). The administrator's `set-password`
    /// sends nothing: the administrator tells the person.
    pub(crate) async fn notify_password_changed(
        &self,
        user: &crate::store::UserRecord,
        now: UnixTime,
    ) -> Result<(), Error> {
        if !self.config.email.enabled || !user.email_verified || user.email.is_empty() {
            return Ok(());
        }
        let notice = Notice::PasswordChanged { username: user.username.clone() };
        let job = Job::Mail(MailJob { to: user.email.clone(), notice });
        self.enqueue(&job, now).await.map_err(Error::from)?;
        Ok(())
    }
}

/// The admin path's messages are lower-case fragments; a page shows sentences.
fn capitalised(m: &str) -> String {
    let mut c = m.chars();
    match c.next() {
        Some(f) => format!("{}{}.", f.to_uppercase(), c.as_str().trim_end_matches('.')),
        None => String::new(),
    }
}
