//! Second factors: TOTP (RFC 6238), recovery codes, the second-factor step of the sign-in, and
//! step-up of an existing session (OpenID Connect `acr_values`, `max_age`).
//!
//! ## How a sign-in with a second factor goes
//!
//! 1. `POST /login` checks the password ([`Provider::login`](crate::Provider::login)). When
//!    [`crate::authn::decide`] says more is needed, no session is created: a *partial sign-in*
//!    ([`PartialSignIn`]) is stored, keyed by the hash of a fresh random cookie that only this
//!    browser holds, bound to the pending request and short-lived. The pending id travels in the
//!    page and is not enough on its own: a second factor is accepted only from the browser that
//!    gave the password.
//! 2. The second-factor page asks for what [`crate::authn::Next::Ask`] accepts. Each attempt is
//!    [`Provider::submit_second_factor`] with one [`Factor`]; wrong codes are throttled per
//!    account (and per network), like passwords (`crate::throttle`).
//! 3. On success the partial sign-in is taken (single use, one atomic delete) and the session is
//!    created with the `amr`/`acr` of both factors, or, for a step-up, the existing session is
//!    upgraded and its token rotated in one conditional update ([`FactorStore::step_up_session`]).
//! 4. A user who must have a second factor and has none sets up TOTP there and then
//!    ([`Provider::enrol_at_sign_in`]), sees their recovery codes once, and goes on
//!    ([`Provider::continue_sign_in`]).
//!
//! ## Adding a factor (passkeys)
//!
//! A factor is a variant of the closed [`Factor`] enum and nothing else: the step, the
//! throttling, the partial sign-in, the `amr`/`acr` and the session upgrade are shared. A passkey
//! is verified by its own ceremony first; the ceremony's module constructs a [`VerifiedPasskey`]
//! (its fields are crate-private, so nothing else can claim one) and hands it to
//! [`Provider::submit_second_factor`] as [`Factor::Passkey`]. The step accepts it where
//! [`crate::authn::Accepted::passkey`] says so, for the partial sign-in's user only.
//! [`crate::authn::Enrolled::passkeys`] is where the passkey store's count goes, and
//! [`crate::authn::Next::Enrol`] with [`crate::authn::Acr::PhishingResistant`] is where passkey
//! enrolment at sign-in belongs.

pub mod manage;
pub mod recovery;
pub mod sign_in;
pub mod totp;

use async_trait::async_trait;
use latchkey_proto::TokenHash;
use serde::{Deserialize, Serialize};

use crate::UnixTime;
use crate::authn::{Authentication, Method, Next};
use crate::store::StoreResult;

pub use recovery::RecoveryCode;
pub use totp::TotpCode;

/// A second factor as presented at the step. Closed: a new kind of factor is a new variant.
#[derive(Debug)]
pub enum Factor {
    /// The six digits of a TOTP app.
    Totp(TotpCode),
    /// One of the user's single-use recovery codes.
    RecoveryCode(RecoveryCode),
    /// A passkey assertion already verified by the passkey ceremony.
    Passkey(VerifiedPasskey),
}

impl Factor {
    /// The name used in audit records and error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Totp(_) => "totp",
            Self::RecoveryCode(_) => "recovery_code",
            Self::Passkey(_) => "passkey",
        }
    }
}

/// The outcome of a WebAuthn assertion that the passkey module verified for `user_id`. Only this
/// crate can construct one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedPasskey {
    pub(crate) user_id: String,
    pub(crate) hardware: bool,
    pub(crate) user_verified: bool,
}

impl VerifiedPasskey {
    pub(crate) fn method(&self) -> Method {
        Method::Passkey { hardware: self.hardware, user_verified: self.user_verified }
    }
}

/// A user's TOTP secret.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpRecord {
    pub user_id: String,
    /// The secret as stored: sealed (`enc:v1:`) under the key-encryption key when one is
    /// configured, else its base32. Never logged (see the `Debug` impl).
    pub secret: String,
    pub created_at: UnixTime,
    /// When a first code confirmed the secret; until then it is no factor.
    pub confirmed_at: Option<UnixTime>,
    /// The last RFC 6238 time step a code was accepted for; codes of it and earlier steps are
    /// refused (§5.2: a code is accepted once).
    pub last_step: i64,
}

impl std::fmt::Debug for TotpRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TotpRecord")
            .field("user_id", &self.user_id)
            .field("secret", &"[redacted]")
            .field("created_at", &self.created_at)
            .field("confirmed_at", &self.confirmed_at)
            .field("last_step", &self.last_step)
            .finish()
    }
}

/// One unused recovery code, as its hash ([`recovery::hash`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryCodeRecord {
    pub user_id: String,
    pub hash: String,
    pub created_at: UnixTime,
}

/// A sign-in whose first factor succeeded and which waits for its second (or for enrolment):
/// not a session, and nothing can be done with it but the step it was made for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartialSignIn {
    pub user_id: String,
    /// The hash of the pending authorization request's id it belongs to.
    pub pending: String,
    /// What is established so far: the password, or, for a step-up, the session's authentication.
    pub authn: Authentication,
    /// A step-up: the hash of the session token to upgrade, instead of creating a session.
    pub step_up: Option<String>,
    /// What the step needs ([`Next::Ask`] or [`Next::Enrol`]).
    pub need: Next,
    pub expires_at: UnixTime,
}

/// Partial sign-ins kept per user; a new one evicts the oldest beyond this. Only a correct
/// password (or a live session) makes one, so this bounds what a password thief can pile up.
pub const PARTIAL_SIGN_INS_PER_USER: u32 = 8;

/// Storage of second factors and partial sign-ins. Every single-use rule is one atomic operation
/// on every backend, also across instances sharing the database.
#[async_trait]
pub trait FactorStore: Send + Sync {
    /// The user's TOTP secret, confirmed or not.
    async fn totp(&self, user_id: &str) -> StoreResult<Option<TotpRecord>>;
    /// Stores an unconfirmed secret, replacing an unconfirmed one. Refused (`false`) when the
    /// user has a confirmed secret: setting up anew needs removing it first.
    async fn begin_totp(&self, rec: &TotpRecord) -> StoreResult<bool>;
    /// In one transaction: confirms the user's secret if it is still unconfirmed and still
    /// `secret` (another setup may have replaced it), marks `step` used, and replaces the user's
    /// recovery codes with `recovery` (hashes). Returns whether it was confirmed.
    async fn confirm_totp(
        &self,
        user_id: &str,
        secret: &str,
        step: i64,
        recovery: &[String],
        now: UnixTime,
    ) -> StoreResult<bool>;
    /// Accepts `step` for the user's confirmed secret if no code of it or of a later step was
    /// accepted: one conditional update, so of concurrent submissions of one code exactly one
    /// gets `true`.
    async fn use_totp_step(&self, user_id: &str, step: i64) -> StoreResult<bool>;
    /// Removes the user's TOTP secret and, with `recovery_too`, their recovery codes, in one
    /// transaction. Returns whether a secret was removed.
    async fn remove_totp(&self, user_id: &str, recovery_too: bool) -> StoreResult<bool>;
    async fn recovery_codes_left(&self, user_id: &str) -> StoreResult<u32>;
    /// Replaces every recovery code of the user with `hashes`, in one transaction.
    async fn replace_recovery_codes(&self, user_id: &str, hashes: &[String], now: UnixTime) -> StoreResult<()>;
    /// Consumes one recovery code: one delete, so of concurrent uses exactly one gets `true`.
    async fn use_recovery_code(&self, user_id: &str, hash: &str) -> StoreResult<bool>;
    /// Removes every factor of the user and their partial sign-ins (`latchkey user
    /// reset-factors`). Returns (whether a TOTP secret went, recovery codes removed).
    async fn reset_factors(&self, user_id: &str) -> StoreResult<(bool, u64)>;

    /// Stores a partial sign-in under `hash`, in one transaction with deleting expired ones and
    /// the user's oldest beyond [`PARTIAL_SIGN_INS_PER_USER`].
    async fn insert_partial_sign_in(&self, hash: &TokenHash, p: &PartialSignIn, now: UnixTime) -> StoreResult<()>;
    async fn partial_sign_in(&self, hash: &TokenHash, now: UnixTime) -> StoreResult<Option<PartialSignIn>>;
    /// Deletes and returns the partial sign-in if unexpired: single use, so of concurrent takers
    /// exactly one gets it.
    async fn take_partial_sign_in(&self, hash: &TokenHash, now: UnixTime) -> StoreResult<Option<PartialSignIn>>;

    /// A step-up: if the session `old` still exists and is unexpired at `now`, gives it the token
    /// hash `new`, `authn` and `auth_time`, in one conditional update (its `sid`, and so the
    /// grants bound to it, stay). Returns whether it was upgraded.
    async fn step_up_session(
        &self,
        old: &TokenHash,
        new: &TokenHash,
        authn: &Authentication,
        auth_time: UnixTime,
        now: UnixTime,
    ) -> StoreResult<bool>;
}
