//! The durable outbox: work that leaves the server (mail now, back-channel logout tokens later) is
//! written to the store first and delivered by a worker, so that a mail-server outage or a crash
//! loses nothing and every attempt is retried with back-off.
//!
//! - A request path only *enqueues* ([`OutboxStore::enqueue`], or [`OutboxStore::enqueue_capped`]
//!   where the request is unauthenticated: the queue is bounded, and a flood is refused with a log
//!   line instead of filling the disk).
//! - The worker (the server's `outbox_worker`) calls [`crate::Provider::run_due_jobs`]: it claims
//!   due jobs with a *lease* ([`OutboxStore::claim_due`], atomic: two processes on one database
//!   never both hold a job), performs each through a [`Deliver`] (the server's transports), and
//!   completes, retries or buries it. A process that dies holding a lease loses it when the lease
//!   ends: the job is due again and another process takes it.
//! - Delivery is therefore *at least once*: a process that sent a mail and died before it recorded
//!   the completion sends it again after its lease. Every job kind is written so that a repeat is
//!   harmless (a repeated reset mail carries a new link that replaces the first one).
//!
//! Jobs that need a secret (a password-reset link) carry only the *intent* (`PasswordReset {
//! email }`); the secret is minted when the job is performed and only its hash is stored, so the
//! queue at rest holds no live credential.
//!
//! Adding a kind: one variant of [`Job`], one arm in [`crate::Provider::perform`], and, if it
//! needs a new transport, one method of [`Deliver`] with a default body.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::UnixTime;
use crate::store::StoreResult;

/// A job's id in the store.
pub type JobId = i64;

/// What the outbox delivers. Stored as JSON, tagged by `kind`; never holds a secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Job {
    /// A message composed in advance, without any secret in it (notices).
    Mail(crate::mail::MailJob),
    /// Someone asked for a password reset for this address (normalized). The worker resolves the
    /// accounts: the request path does the same write whether or not one exists, so its answer
    /// and its timing cannot tell (`crate::reset`).
    PasswordReset { email: String },
    /// Mail a verification link for `email` to the account `user_id` (a new account, or a
    /// changed address: `crate::verification`).
    VerifyEmail { user_id: String, email: String },
    /// Mail an invitation to sign up to `email` (`latchkey user invite`, `crate::signup`).
    Invitation { email: String },
    /// A back-channel logout token owed to a client; built when it is sent (`crate::backchannel`).
    BackchannelLogout(crate::backchannel::LogoutNotice),
    /// A stored job this binary cannot read: written by a newer version sharing the database. It
    /// is left for one that can (retried with back-off, buried after the give-up time).
    #[serde(skip)]
    Unreadable { payload: String },
}

impl Job {
    /// The JSON stored for this job.
    pub fn to_stored(&self) -> String {
        match self {
            Job::Unreadable { payload } => payload.clone(),
            // Serializing these plain enums cannot fail; an empty object would be buried as unreadable.
            other => serde_json::to_string(other).unwrap_or_else(|_| "{}".into()),
        }
    }
    /// The job stored as `payload`; a kind this binary does not know becomes [`Job::Unreadable`].
    pub fn from_stored(payload: &str) -> Self {
        serde_json::from_str(payload).unwrap_or_else(|_| Job::Unreadable { payload: payload.to_owned() })
    }
    /// The kind, for logs and the admin listing.
    pub fn kind(&self) -> &'static str {
        match self {
            Job::Mail(_) => "mail",
            Job::PasswordReset { .. } => "password_reset",
            Job::VerifyEmail { .. } => "verify_email",
            Job::Invitation { .. } => "invitation",
            Job::BackchannelLogout(_) => "backchannel_logout",
            Job::Unreadable { .. } => "unreadable",
        }
    }
}

/// One queued job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxRecord {
    pub id: JobId,
    pub job: Job,
    /// Attempts started (counted when claimed, so an attempt cut short by a crash counts too).
    pub attempts: u32,
    /// When the job is due; while claimed, when the claim's lease ends.
    pub next_attempt_at: UnixTime,
    pub created_at: UnixTime,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// Given up: kept (without further attempts) for the administrator to see, then purged.
    pub dead: bool,
    /// Delivered at; kept for a day for the administrator to see, then purged.
    pub completed_at: Option<UnixTime>,
}

/// Which jobs [`OutboxStore::outbox_jobs`] lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutboxFilter {
    /// Waiting for an attempt or being attempted.
    Queued,
    /// Given up.
    Dead,
    /// Delivered (kept a day).
    Completed,
}

/// The outbox in the store. Every operation is one atomic step on every backend.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Queues `job`, due at `now`. For trusted paths (admin commands, the worker itself).
    async fn enqueue(&self, job: &Job, now: UnixTime) -> StoreResult<JobId>;
    /// Queues `job` unless `cap` or more jobs are queued (not delivered, not dead), counted and
    /// inserted in one atomic step, also across instances. `None`: refused, the queue is full.
    /// For work an unauthenticated request causes.
    async fn enqueue_capped(&self, job: &Job, now: UnixTime, cap: u64) -> StoreResult<Option<JobId>>;
    /// Claims at most `limit` queued jobs due at `now` (oldest due first): in one atomic step their
    /// attempt count goes up by one and they stay unavailable to every other caller until
    /// `lease_until`. Two processes on one database never claim the same job.
    async fn claim_due(&self, now: UnixTime, lease_until: UnixTime, limit: u32) -> StoreResult<Vec<OutboxRecord>>;
    /// The job was delivered.
    async fn complete(&self, id: JobId, now: UnixTime) -> StoreResult<()>;
    /// The attempt failed; try again at `next_at`.
    async fn retry(&self, id: JobId, next_at: UnixTime, error: &str) -> StoreResult<()>;
    /// Give up on the job: it stays, marked dead with `error`, for the administrator to see.
    async fn bury(&self, id: JobId, now: UnixTime, error: &str) -> StoreResult<()>;
    /// Jobs in one state, newest first, at most `limit` (`latchkey outbox`).
    async fn outbox_jobs(&self, filter: OutboxFilter, limit: u32) -> StoreResult<Vec<OutboxRecord>>;
    /// Makes a dead job due again at `now`, with its attempts reset (`latchkey outbox retry`).
    /// Returns whether there was such a dead job.
    async fn revive(&self, id: JobId, now: UnixTime) -> StoreResult<bool>;
}

/// Why one delivery attempt failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DeliveryError {
    /// Retrying cannot help (the address was refused as nonexistent, a 5xx SMTP reply): the job
    /// is buried at once.
    pub permanent: bool,
    /// For the log and the dead job's record. Never a secret.
    pub message: String,
}

impl DeliveryError {
    pub fn transient(message: impl Into<String>) -> Self {
        Self { permanent: false, message: message.into() }
    }
    pub fn permanent(message: impl Into<String>) -> Self {
        Self { permanent: true, message: message.into() }
    }
}

/// The transports jobs are delivered through, implemented by the server (SMTP with lettre).
/// A transport a deployment does not configure keeps the default body: its jobs wait, retried
/// with back-off, and are buried after [`RetryPolicy::give_up_after`].
#[async_trait]
pub trait Deliver: Send + Sync {
    async fn send_mail(&self, _mail: &crate::mail::Mail) -> Result<(), DeliveryError> {
        Err(DeliveryError::transient("no mail transport is configured ([smtp])"))
    }
    /// POSTs a logout token (Back-Channel Logout 1.0 §2.5).
    async fn post_logout_token(&self, _d: &crate::backchannel::LogoutDelivery) -> Result<(), DeliveryError> {
        Err(DeliveryError::transient("no back-channel logout transport in this process"))
    }
}

/// A transport that delivers nothing (every job waits): for tests and for processes that only
/// enqueue.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoTransport;

#[async_trait]
impl Deliver for NoTransport {}

/// When attempts are repeated and when they stop. In seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The delay after the first failure; it doubles with each further one.
    pub first_delay: u64,
    /// The longest delay between two attempts.
    pub max_delay: u64,
    /// A job failing this long after it was queued is buried: a reset link or a logout notice a
    /// day late is worth less than the noise of sending it.
    pub give_up_after: u64,
    /// How long a claim holds a job: longer than any one attempt may take (the SMTP client's
    /// timeouts are shorter), so that only a process that died loses its claim.
    pub lease: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        // 30 s, 1 min, 2 min, … 1 h, 1 h, …: about 30 attempts in a day.
        Self { first_delay: 30, max_delay: 3600, give_up_after: 24 * 3600, lease: 300 }
    }
}

impl RetryPolicy {
    /// The delay after the `attempts`-th failed attempt (1 for the first), before jitter.
    pub fn delay(&self, attempts: u32) -> u64 {
        let doublings = attempts.saturating_sub(1).min(40);
        self.first_delay.saturating_mul(1u64 << doublings).min(self.max_delay)
    }

    /// When to try again after the `attempts`-th failure at `now`, or `None` to give up.
    /// `jitter` in [0, 1) takes up to a quarter off the delay, so that jobs that failed together
    /// (a mail server that was down) do not all come back in the same second. Pure.
    pub fn next_attempt(&self, attempts: u32, created_at: UnixTime, now: UnixTime, jitter: f64) -> Option<UnixTime> {
        if now.saturating_sub(created_at) >= i64::try_from(self.give_up_after).unwrap_or(i64::MAX) {
            return None;
        }
        let delay = self.delay(attempts);
        let off = (delay as f64 / 4.0 * jitter.clamp(0.0, 1.0)) as u64;
        Some(now.saturating_add(i64::try_from(delay - off.min(delay)).unwrap_or(i64::MAX)))
    }
}

/// What one [`crate::Provider::run_due_jobs`] pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunReport {
    pub delivered: u32,
    pub retried: u32,
    pub buried: u32,
}

impl RunReport {
    pub fn claimed(&self) -> u32 {
        self.delivered + self.retried + self.buried
    }
}

/// Jobs claimed per pass: each is performed before the next is claimed, so a small batch keeps
/// the leases short and lets other instances share the work.
pub const BATCH: u32 = 16;

impl crate::Provider {
    /// One pass of the worker: claims the jobs due at `now`, performs each, and records the
    /// outcome (delivered, retried with back-off, or buried).
    pub async fn run_due_jobs(&self, deliver: &dyn Deliver, now: UnixTime) -> anyhow::Result<RunReport> {
        let policy = self.config.email.retry;
        let lease_until = now.saturating_add(i64::try_from(policy.lease).unwrap_or(i64::MAX));
        let jobs = self.store.claim_due(now, lease_until, BATCH).await?;
        let mut report = RunReport::default();
        for rec in jobs {
            let outcome = match &rec.job {
                Job::Unreadable { .. } => {
                    Err(DeliveryError::transient("this version of latchkey cannot read this job; a newer one will"))
                }
                job => self.perform(job, deliver, now).await,
            };
            match outcome {
                Ok(()) => {
                    self.store.complete(rec.id, now).await?;
                    tracing::info!(
                        job = rec.id,
                        kind = rec.job.kind(),
                        attempts = rec.attempts,
                        "outbox job delivered"
                    );
                    report.delivered += 1;
                }
                Err(e) => {
                    let next = if e.permanent {
                        None
                    } else {
                        policy.next_attempt(rec.attempts, rec.created_at, now, rand::random::<f64>())
                    };
                    match next {
                        Some(at) => {
                            self.store.retry(rec.id, at, &e.message).await?;
                            tracing::warn!(
                                job = rec.id,
                                kind = rec.job.kind(),
                                attempts = rec.attempts,
                                retry_in = at - now,
                                error = %e.message,
                                "outbox job failed; will retry"
                            );
                            report.retried += 1;
                        }
                        None => {
                            self.store.bury(rec.id, now, &e.message).await?;
                            tracing::error!(
                                job = rec.id,
                                kind = rec.job.kind(),
                                attempts = rec.attempts,
                                error = %e.message,
                                "outbox job given up (see `latchkey outbox list --dead`)"
                            );
                            report.buried += 1;
                        }
                    }
                }
            }
        }
        Ok(report)
    }

    /// Performs one job: the one dispatch over [`Job`]'s kinds.
    pub async fn perform(&self, job: &Job, deliver: &dyn Deliver, now: UnixTime) -> Result<(), DeliveryError> {
        match job {
            Job::Mail(m) => deliver.send_mail(&m.compose()).await,
            Job::PasswordReset { email } => self.send_password_reset(email, deliver, now).await,
            Job::VerifyEmail { user_id, email } => self.send_verification(user_id, email, deliver, now).await,
            Job::Invitation { email } => self.send_invitation(email, deliver, now).await,
            Job::BackchannelLogout(n) => self.send_logout_token(n, deliver, now).await,
            Job::Unreadable { .. } => Err(DeliveryError::transient("unreadable job")),
        }
    }

    /// Queues `job` from a trusted path (an admin command, a signed-in user's own request) and
    /// wakes this process's worker.
    pub async fn enqueue(&self, job: &Job, now: UnixTime) -> anyhow::Result<JobId> {
        let id = self.store.enqueue(job, now).await?;
        self.outbox_wake.notify_one();
        Ok(id)
    }

    /// Queues `job` from an unauthenticated request, within [`crate::mail::EmailConfig::max_queued`].
    /// `false`: the queue is full and the job was refused (logged: an operator should look).
    pub async fn enqueue_untrusted(&self, job: &Job, now: UnixTime) -> anyhow::Result<bool> {
        let queued = enqueue_capped(self.store.as_ref(), &self.config.email, job, now).await?;
        if queued {
            self.outbox_wake.notify_one();
        }
        Ok(queued)
    }
}

/// Queues `job` within `config.max_queued`; `false` (logged) when the queue is full. Wakes no
/// worker: for processes that have none (admin commands), whose jobs the servers find by polling.
pub async fn enqueue_capped(
    store: &dyn crate::Store,
    config: &crate::mail::EmailConfig,
    job: &Job,
    now: UnixTime,
) -> anyhow::Result<bool> {
    let cap = config.max_queued;
    if store.enqueue_capped(job, now, cap).await?.is_some() {
        return Ok(true);
    }
    tracing::error!(
        kind = job.kind(),
        cap,
        "the outbox is full: a {} job was refused; is mail delivery down, or is someone flooding the server?",
        job.kind()
    );
    Ok(false)
}

/// A store error as a failed attempt: retried like a network fault.
pub(crate) fn store_fault(e: impl std::fmt::Display) -> DeliveryError {
    DeliveryError::transient(format!("store: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_from_30_seconds_to_an_hour_and_gives_up_after_a_day() {
        let p = RetryPolicy::default();
        assert_eq!([p.delay(1), p.delay(2), p.delay(3), p.delay(4)], [30, 60, 120, 240]);
        assert_eq!(p.delay(8), 3600);
        assert_eq!(p.delay(200), 3600, "no overflow, capped");
        assert_eq!(p.next_attempt(1, 1000, 1000, 0.0), Some(1030));
        assert_eq!(p.next_attempt(3, 1000, 2000, 0.0), Some(2120));
        // Jitter takes at most a quarter off, never adds.
        let jittered = p.next_attempt(3, 1000, 2000, 0.999).unwrap();
        assert!((2090..=2120).contains(&jittered), "{jittered}");
        assert_eq!(p.next_attempt(30, 1000, 1000 + 24 * 3600, 0.0), None);
        assert!(p.next_attempt(30, 1000, 1000 + 24 * 3600 - 1, 0.0).is_some());
    }

    #[test]
    fn jobs_round_trip_and_unknown_kinds_are_kept_unread() {
        let j = Job::Mail(crate::mail::MailJob { to: "a@example.com".into(), notice: crate::mail::Notice::Test });
        let s = j.to_stored();
        assert!(s.contains(r#""kind":"mail""#), "{s}");
        assert_eq!(Job::from_stored(&s), j);
        let future = r#"{"kind":"carrier_pigeon","to":"x"}"#;
        let u = Job::from_stored(future);
        assert_eq!(u, Job::Unreadable { payload: future.into() });
        assert_eq!(u.to_stored(), future, "kept byte for byte for the version that knows it");
    }
}
