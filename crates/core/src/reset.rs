//! Password reset by email.
//!
//! The request never reveals whether an account uses the address: the request path only checks
//! the throttles and queues a `Job::PasswordReset { email }`, the same writes for a known and an
//! unknown address, so the page, the status and the timing are the same by construction. The
//! worker resolves the address later, away from the request, and mails a link to each account
//! that uses it (or nothing).
//!
//! The link is single-use and short-lived ([`crate::mail::EmailConfig::reset_ttl`], 30 min), only
//! its hash stored; a newer link replaces the older. Following it and choosing a password uses the
//! link in one atomic store step (of concurrent posts with one link exactly one succeeds), then
//! sets the password as `latchkey user set-password` does: every session of the account ends and
//! every grant is revoked (a reset is what a person does when someone else may know the password,
//! or holds a session).

use std::net::IpAddr;

use latchkey_proto::{Password, TokenHash};
use serde_json::json;

use crate::admin::{AdminError, ExistingGrants};
use crate::email_link::LinkPurpose;
use crate::mail::{Mail, Message};
use crate::outbox::{Deliver, DeliveryError, Job};
use crate::store::Reservation;
use crate::throttle::Rule;
use crate::{Provider, UnixTime, audit};

/// Requests from one network: generous (a household, an office), then slower and slower.
pub const PER_SOURCE: Rule = Rule { free: 10, base: 30, max: 900 };
/// Requests for one address: three in an hour, then one per 5 minutes doubling to an hour, so the
/// address's owner cannot be mail-bombed through this form.
pub const PER_ADDRESS: Rule = Rule { free: 3, base: 300, max: 3600 };

/// The answer to a reset request. `Queued` is the answer for any address, known or not.
#[derive(Debug, PartialEq, Eq)]
pub enum ResetRequested {
    Queued,
    /// What was typed cannot be an address (said as such: it reveals nothing about accounts).
    InvalidAddress,
    /// Too many requests from this network or for this address; the same for every address.
    Throttled {
        retry_after: u64,
    },
    /// The queue is full (logged); the same for every address.
    Unavailable,
    /// No mail transport is configured: reset is not offered.
    Disabled,
}

/// The outcome of choosing a new password through a link.
#[derive(Debug, PartialEq, Eq)]
pub enum ResetDone {
    /// The password is set; the account's sessions ended and its grants were revoked.
    Done { username: String },
    /// The link is unknown, used or expired.
    InvalidLink,
    /// The password does not meet the rules (the message says which); the link still works.
    Rejected(String),
}

/// The throttle key of one address: its hash, so the counters table holds no addresses.
fn address_key(email: &str) -> String {
    format!("reset-addr:{}", TokenHash::of(&crate::mail::normalize(email)).as_str())
}

impl Provider {
    /// Whether password reset by email is offered (a mail transport is configured).
    pub fn password_reset_enabled(&self) -> bool {
        self.config.email.enabled
    }

    /// `POST /reset`: queues a reset for `email`, known or not (see the module's doc).
    pub async fn request_password_reset(
        &self,
        email: &str,
        ip: Option<IpAddr>,
        now: UnixTime,
    ) -> anyhow::Result<ResetRequested> {
        if !self.password_reset_enabled() {
            return Ok(ResetRequested::Disabled);
        }
        let Some(email) = crate::mail::parse_address(email) else { return Ok(ResetRequested::InvalidAddress) };
        let mut rules = vec![(address_key(&email), self.config.email.reset_per_address)];
        if let Some(ip) = ip {
            rules.push((format!("reset-ip:{}", crate::throttle::source(ip)), self.config.email.reset_per_source));
        }
        if let Reservation::Blocked { until, .. } = self.store.throttle_reserve(&rules, now).await? {
            return Ok(ResetRequested::Throttled { retry_after: u64::try_from(until - now).unwrap_or(1).max(1) });
        }
        let job = Job::PasswordReset { email: crate::mail::normalize(&email) };
        Ok(if self.enqueue_untrusted(&job, now).await? { ResetRequested::Queued } else { ResetRequested::Unavailable })
    }

    /// The worker's half of a reset request: a link to every account that uses `email`.
    pub(crate) async fn send_password_reset(
        &self,
        email: &str,
        deliver: &dyn Deliver,
        now: UnixTime,
    ) -> Result<(), DeliveryError> {
        let users = self.store.users_by_email(email).await.map_err(crate::outbox::store_fault)?;
        if users.is_empty() {
            tracing::debug!("a password reset was requested for an address no account uses");
        }
        let ttl = self.config.email.reset_ttl;
        for user in users {
            let link = self
                .mint_link(
                    LinkPurpose::PasswordReset,
                    Some(&user.id),
                    &user.email,
                    ttl,
                    ("/reset/confirm", "token"),
                    now,
                )
                .await?;
            let message = Message::PasswordReset { username: user.username.clone(), link, valid_minutes: ttl / 60 };
            deliver.send_mail(&Mail { to: user.email.clone(), message }).await?;
            let e = audit::Event { user_id: Some(&user.id), ..Default::default() };
            audit::record(self.store.as_ref(), now, "password_reset_link_sent", e).await;
        }
        Ok(())
    }

    /// `GET /reset/confirm?token=…`: the account the link is for, if it still works.
    pub async fn password_reset_link(&self, token: &str, now: UnixTime) -> anyhow::Result<Option<String>> {
        let Some(link) = self.store.email_link(&TokenHash::of(token), LinkPurpose::PasswordReset, now).await? else {
            return Ok(None);
        };
        let Some(id) = link.user_id else { return Ok(None) };
        Ok(self.store.user(&id).await?.map(|u| u.username))
    }

    /// `POST /reset/confirm`: sets `password` for the account of the link `token` (see the
    /// module's doc). `ip` goes to the audit record.
    pub async fn complete_password_reset(
        &self,
        token: &str,
        password: Password,
        ip: Option<IpAddr>,
        now: UnixTime,
    ) -> anyhow::Result<ResetDone> {
        let hash = TokenHash::of(token);
        // A cheap look first: a wrong link costs no password hashing.
        if self.store.email_link(&hash, LinkPurpose::PasswordReset, now).await?.is_none() {
            return Ok(ResetDone::InvalidLink);
        }
        if let Err(AdminError::Invalid(why)) = crate::admin::check_password(&password) {
            return Ok(ResetDone::Rejected(why));
        }
        // The one step that decides: of concurrent posts with this link, one gets it.
        let Some(link) = self.store.consume_link(&hash, LinkPurpose::PasswordReset, now).await? else {
            return Ok(ResetDone::InvalidLink);
        };
        let Some(user) = (match &link.user_id {
            Some(id) => self.store.user(id).await?,
            None => None,
        }) else {
            return Ok(ResetDone::InvalidLink);
        };
        let done = crate::admin::set_password(
            self.store.as_ref(),
            &self.hasher,
            &user.username,
            password,
            ExistingGrants::Revoke,
            now,
        )
        .await
        .map_err(anyhow::Error::new)?;
        let Some(revoked) = done else { return Ok(ResetDone::InvalidLink) };
        // The ended sessions' back-channel logout tokens were queued with them: send them now.
        self.sessions_ended(&revoked.ended);
        // Following the link proved the address (if it is still the account's).
        let verified = self.store.confirm_address(&user.id, &link.email).await?;
        let e = audit::Event {
            user_id: Some(&user.id),
            ip,
            detail: Some(json!({
                "username": user.username,
                "sessions_ended": revoked.sessions_ended,
                "grants_revoked": revoked.grants_revoked,
                "email_verified": verified,
            })),
            ..Default::default()
        };
        audit::record(self.store.as_ref(), now, "password_reset", e).await;
        // The address may have been verified just now (`confirm_address`): read the user again.
        if let Some(user) = self.store.user(&user.id).await? {
            self.notify_password_changed(&user, now).await?;
        }
        Ok(ResetDone::Done { username: user.username })
    }
}
