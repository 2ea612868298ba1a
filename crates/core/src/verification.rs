//! Email verification: for a new self-registered account, and for a changed address.
//!
//! A changed address takes effect only when the link mailed to it is followed: until then the
//! account keeps its old address (and `email_verified` as it was), so a typo or a hijacked session
//! cannot move the account's mail (and its password resets) elsewhere. Once it changes, the old
//! address is told.
//!
//! The link is confirmed with a button (a POST), never by merely opening it: mail scanners open
//! links, and an address must not count as verified because its provider's scanner did.

use latchkey_proto::TokenHash;
use serde_json::json;

use crate::email_link::{LinkPurpose, VerifiedEmail};
use crate::mail::{Mail, MailJob, Message, Notice};
use crate::outbox::{Deliver, DeliveryError, Job};
use crate::store::Reservation;
use crate::throttle::Rule;
use crate::{Provider, UnixTime, audit};

/// Verification mails per account: a few, then at most one every few minutes.
pub const PER_ACCOUNT: Rule = Rule { free: 3, base: 120, max: 3600 };

/// The answer to [`Provider::request_email_change`].
#[derive(Debug, PartialEq, Eq)]
pub enum ChangeRequested {
    /// A link is on its way to the new address.
    Sent,
    /// Nothing to do: the account already has this address, verified.
    Unchanged,
    InvalidAddress,
    Throttled {
        retry_after: u64,
    },
    /// No mail transport, or the queue is full.
    Unavailable,
    NoSuchUser,
}

/// [`Provider::request_email_change`] for a process without a provider (`latchkey user set-email`).
pub async fn request_email_change(
    store: &dyn crate::Store,
    config: &crate::mail::EmailConfig,
    user_id: &str,
    new_email: &str,
    now: UnixTime,
) -> anyhow::Result<ChangeRequested> {
    let Some(email) = crate::mail::parse_address(new_email) else { return Ok(ChangeRequested::InvalidAddress) };
    let Some(user) = store.user(user_id).await? else { return Ok(ChangeRequested::NoSuchUser) };
    if user.email_verified && crate::mail::normalize(&user.email) == crate::mail::normalize(&email) {
        return Ok(ChangeRequested::Unchanged);
    }
    queue_verification(store, config, &user.id, &email, now).await
}

/// Queues a verification mail for `email` to account `user_id`, within the account's throttle and
/// the queue's cap.
async fn queue_verification(
    store: &dyn crate::Store,
    config: &crate::mail::EmailConfig,
    user_id: &str,
    email: &str,
    now: UnixTime,
) -> anyhow::Result<ChangeRequested> {
    if !config.enabled {
        return Ok(ChangeRequested::Unavailable);
    }
    let rules = [(format!("verify-user:{user_id}"), PER_ACCOUNT)];
    if let Reservation::Blocked { until, .. } = store.throttle_reserve(&rules, now).await? {
        return Ok(ChangeRequested::Throttled { retry_after: u64::try_from(until - now).unwrap_or(1).max(1) });
    }
    let job = Job::VerifyEmail { user_id: user_id.to_owned(), email: email.to_owned() };
    let queued = crate::outbox::enqueue_capped(store, config, &job, now).await?;
    Ok(if queued { ChangeRequested::Sent } else { ChangeRequested::Unavailable })
}

impl Provider {
    /// Asks to change `user_id`'s address to `new_email` (or to verify the current one): mails a
    /// verification link there. For the account page and `latchkey user set-email`; throttled per
    /// account.
    pub async fn request_email_change(
        &self,
        user_id: &str,
        new_email: &str,
        now: UnixTime,
    ) -> anyhow::Result<ChangeRequested> {
        let r = request_email_change(self.store.as_ref(), &self.config.email, user_id, new_email, now).await?;
        if r == ChangeRequested::Sent {
            self.outbox_wake.notify_one();
        }
        Ok(r)
    }

    pub(crate) async fn queue_verification(
        &self,
        user_id: &str,
        email: &str,
        now: UnixTime,
    ) -> anyhow::Result<ChangeRequested> {
        let r = queue_verification(self.store.as_ref(), &self.config.email, user_id, email, now).await?;
        if r == ChangeRequested::Sent {
            self.outbox_wake.notify_one();
        }
        Ok(r)
    }

    /// The worker's half: a verification link for `email`, mailed there.
    pub(crate) async fn send_verification(
        &self,
        user_id: &str,
        email: &str,
        deliver: &dyn Deliver,
        now: UnixTime,
    ) -> Result<(), DeliveryError> {
        let fault = crate::outbox::store_fault;
        // An account removed meanwhile gets nothing.
        let Some(user) = self.store.user(user_id).await.map_err(fault)? else { return Ok(()) };
        let new_account = self.store.signup_hold(user_id).await.map_err(fault)?.is_some();
        let ttl = self.config.email.verify_ttl;
        let link =
            self.mint_link(LinkPurpose::VerifyEmail, Some(user_id), email, ttl, ("/verify", "token"), now).await?;
        let message = Message::VerifyEmail { username: user.username, link, valid_hours: ttl / 3600, new_account };
        deliver.send_mail(&Mail { to: email.to_owned(), message }).await
    }

    /// `GET /verify?token=…`: the address the link would confirm, if it still works.
    pub async fn verification_link(&self, token: &str, now: UnixTime) -> anyhow::Result<Option<String>> {
        let link = self.store.email_link(&TokenHash::of(token), LinkPurpose::VerifyEmail, now).await?;
        Ok(link.map(|l| l.email))
    }

    /// `POST /verify`: confirms the address of the link `token` (one atomic store step). A
    /// changed address is announced to the old one.
    pub async fn verify_email(&self, token: &str, now: UnixTime) -> anyhow::Result<Option<VerifiedEmail>> {
        let Some(v) = self.store.verify_email(&TokenHash::of(token), now).await? else { return Ok(None) };
        let changed = crate::mail::normalize(&v.previous) != crate::mail::normalize(&v.email);
        let e = audit::Event {
            user_id: Some(&v.user_id),
            detail: Some(json!({ "username": v.username, "changed": changed })),
            ..Default::default()
        };
        audit::record(self.store.as_ref(), now, "email_verified", e).await;
        if changed {
            let notice = Notice::EmailChanged { username: v.username.clone(), new_email: v.email.clone() };
            self.enqueue(&Job::Mail(MailJob { to: v.previous.clone(), notice }), now).await?;
        }
        Ok(Some(v))
    }

    /// `latchkey user set-email NAME EMAIL --verified`: sets the address at once, as verified (the
    /// administrator vouches for it). Without `--verified` the CLI calls
    /// [`Provider::request_email_change`] instead.
    pub async fn set_verified_email(&self, username: &str, email: &str, now: UnixTime) -> anyhow::Result<bool> {
        let Some(email) = crate::mail::parse_address(email) else {
            anyhow::bail!("{email:?} is not an email address");
        };
        let Some(user) = self.store.user_by_username(username).await? else { return Ok(false) };
        if !self.store.set_email(&user.id, &email, true).await? {
            return Ok(false);
        }
        self.store.confirm_address(&user.id, &email).await?;
        let e = audit::Event {
            user_id: Some(&user.id),
            detail: Some(json!({ "username": user.username, "by": "admin" })),
            ..Default::default()
        };
        audit::record(self.store.as_ref(), now, "email_set", e).await;
        Ok(true)
    }
}
