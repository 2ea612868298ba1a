//! Storage of passkeys and of WebAuthn ceremonies in progress ([`PasskeyStore`]).
//!
//! The store keeps the WebAuthn data as text it does not interpret (the credential and the
//! ceremony state are JSON made and read by [`crate::passkey`]); what it decides itself are the
//! rules that must hold under concurrency and across instances: a credential registered once, at
//! most so many per user, a signature counter that never goes backwards, a ceremony taken once,
//! and bounded ceremony state.

use async_trait::async_trait;
use latchkey_proto::TokenHash;

use crate::UnixTime;
use crate::store::StoreResult;

/// One registered passkey (a WebAuthn public-key credential) of a user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasskeyRecord {
    /// The credential id, base64url without padding: unique across every user (WebAuthn §7.1
    /// step 22: a credential id registered to one account must not be registered to another).
    pub cred_id: String,
    pub user_id: String,
    /// The WebAuthn user handle (`user.id`) the authenticator stores with the credential, a UUID
    /// in text: random, no personal data (WebAuthn §14.6.1). A username-less sign-in returns it,
    /// and it must match the credential's.
    pub user_handle: String,
    /// The name the user gave it ("Work laptop").
    pub name: String,
    /// The credential as webauthn-rs stores it (public key, algorithm, counter, flags), JSON.
    pub credential: String,
    /// The authenticator's signature counter as of the last use (0: it keeps none).
    pub sign_count: u32,
    /// The credential may be synced to other devices (a "synced passkey", BE flag).
    pub backup_eligible: bool,
    /// It is backed up now (BS flag), as of the last use.
    pub backup_state: bool,
    pub created_at: UnixTime,
    pub last_used_at: Option<UnixTime>,
}

/// What one successful use of a passkey changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasskeyUse {
    pub sign_count: u32,
    pub backup_eligible: bool,
    pub backup_state: bool,
    /// The credential with its counter and flags updated, JSON.
    pub credential: String,
    pub at: UnixTime,
}

/// The outcome of [`PasskeyStore::insert_passkey`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasskeyAdded {
    Added,
    /// The credential id is registered already (to this user or another).
    Duplicate,
    /// The user has the maximum number of passkeys.
    TooMany,
}

/// A WebAuthn ceremony in progress: the challenge and what it is for, kept on the server so that
/// the browser holds only its random id (webauthn-rs: the state must never travel to the client,
/// or an old challenge could be replayed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CeremonyRecord {
    /// SHA-256 of the id the browser holds.
    pub id: TokenHash,
    /// The ceremony's purpose and webauthn-rs state, JSON.
    pub data: String,
    /// The source network that started it (`throttle::source`), for the per-source bound.
    pub source: String,
    pub expires_at: UnixTime,
}

/// Bounds on live ceremonies (see [`PasskeyStore::insert_ceremony`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CeremonyLimits {
    pub per_source: u64,
    pub total: u64,
}

/// Passkeys and ceremonies. Every method is one atomic step on every backend, across instances.
#[async_trait]
pub trait PasskeyStore: Send + Sync {
    /// Stores `p` unless its credential id is registered already (`Duplicate`) or its user has
    /// `max_per_user` passkeys (`TooMany`), decided in the same step as the insert.
    async fn insert_passkey(&self, p: &PasskeyRecord, max_per_user: u32) -> StoreResult<PasskeyAdded>;
    async fn passkey(&self, cred_id: &str) -> StoreResult<Option<PasskeyRecord>>;
    /// The user's passkeys, oldest first.
    async fn user_passkeys(&self, user_id: &str) -> StoreResult<Vec<PasskeyRecord>>;
    /// Renames the user's passkey; `false` if the user has no such passkey.
    async fn rename_passkey(&self, user_id: &str, cred_id: &str, name: &str) -> StoreResult<bool>;
    /// Removes the user's passkey; `false` if the user has no such passkey.
    async fn remove_passkey(&self, user_id: &str, cred_id: &str) -> StoreResult<bool>;
    /// Removes every passkey of the user (an administrator resetting their factors); how many.
    async fn remove_user_passkeys(&self, user_id: &str) -> StoreResult<u64>;
    /// Records a use of the passkey if and only if it still exists and its signature counter moves
    /// forward: the stored count is below `u.sign_count`, or both are 0 (authenticators that keep
    /// no counter, synced passkeys among them, always report 0). Returns whether it was recorded.
    /// Of concurrent uses reporting the same count, exactly one is recorded: a cloned
    /// authenticator cannot slip a second use in beside the first (WebAuthn §6.1.1).
    async fn record_passkey_use(&self, cred_id: &str, u: &PasskeyUse) -> StoreResult<bool>;
    /// Stores a ceremony in one atomic step: refused (`false`) when its source already has
    /// `limits.per_source` unexpired ceremonies, or when `limits.total` unexpired ceremonies exist
    /// in all; expired ones are deleted first. Unauthenticated requests start ceremonies (the
    /// username-less sign-in), so their state must stay bounded whoever asks.
    async fn insert_ceremony(&self, c: &CeremonyRecord, now: UnixTime, limits: CeremonyLimits) -> StoreResult<bool>;
    /// Deletes the ceremony and returns it if it had not expired at `now`. Exactly one of any
    /// number of concurrent calls gets it: a challenge answers once.
    async fn take_ceremony(&self, id: &TokenHash, now: UnixTime) -> StoreResult<Option<CeremonyRecord>>;
}
