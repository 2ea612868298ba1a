//! What the account pages and the user administration need from the store: profile edits, the
//! lock, a user's sessions and the applications they allowed. Every operation that changes
//! security state is one atomic step on every backend (one transaction, or one statement).

use async_trait::async_trait;
use latchkey_proto::{ClientId, Scope};

use crate::UnixTime;
use crate::profile::Profile;
use crate::store::{ConsentRecord, EndedSessions, SessionRecord, StoreResult, UserRevocation};

/// The profile columns of a user, as [`AccountStore::update_profile`] writes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfileUpdate {
    pub name: Option<String>,
    pub email: String,
    /// `None`: the address stays verified only if it is unchanged (decided by the store in the
    /// same statement). `Some`: an administrator's statement.
    pub email_verified: Option<bool>,
    pub phone_number: Option<String>,
    pub address: Option<String>,
    pub profile: Profile,
}

/// Which of a user's sessions to end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionSelector {
    /// This one (by its public `sid`), if it is the user's.
    One(String),
    /// Every one but this one: "sign out everywhere else".
    AllExcept(String),
    All,
}

/// An application as the account page shows it: what the user allowed it and what it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppRecord {
    pub client_id: ClientId,
    /// The remembered consent, if any.
    pub consent: Option<ConsentRecord>,
    /// Grants neither revoked nor expired.
    pub live_grants: u64,
    /// The union of the scopes of those grants.
    pub granted_scope: Scope,
    /// The latest grant or refresh-token rotation of the user with this client.
    pub last_used: Option<UnixTime>,
}

/// What revoking an application did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AppRevocation {
    pub consent_removed: bool,
    pub grants_revoked: u64,
}

#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Writes the profile columns of user `id` and sets `updated_at` to `now`. In the same
    /// statement, `email_verified` becomes `p.email_verified` if given, else stays as it was only
    /// when the address is unchanged. Returns whether the user exists.
    async fn update_profile(&self, id: &str, p: &ProfileUpdate, now: UnixTime) -> StoreResult<bool>;

    /// `Some(at)` locks the user named `username` and, in the same transaction, ends every session
    /// of theirs, revokes every live grant (their refresh and access tokens die with it) and
    /// deletes their unredeemed codes; the logout tokens owed for the ended sessions are queued in
    /// the same transaction (`UserRevocation::ended`). `None` unlocks (nothing else changes).
    /// `None` as the result when there is no such user.
    async fn set_locked(&self, username: &str, locked_at: Option<UnixTime>) -> StoreResult<Option<UserRevocation>>;

    /// The user's unexpired sessions, newest sign-in first.
    async fn user_sessions(&self, user_id: &str, now: UnixTime) -> StoreResult<Vec<SessionRecord>>;

    /// Ends the selected sessions of user `user_id` (never another user's, whatever `sid` is
    /// named) and, in the same transaction, revokes the grants bound to them (those without
    /// `offline_access`) and queues the back-channel logout tokens owed to their clients at `now`,
    /// as at logout. Returns the sessions this call ended (of concurrent calls, one reports each).
    async fn end_user_sessions(
        &self,
        user_id: &str,
        which: &SessionSelector,
        now: UnixTime,
    ) -> StoreResult<EndedSessions>;

    /// The clients user `user_id` consented to or holds live grants with, by client id.
    async fn user_apps(&self, user_id: &str, now: UnixTime) -> StoreResult<Vec<AppRecord>>;

    /// In one transaction: removes the user's consent for the client, revokes every grant of the
    /// user with the client (refresh families and access tokens with them, offline ones too) and
    /// deletes their unredeemed codes, so that nothing issued before keeps working and the next
    /// authorization asks again.
    async fn revoke_app(&self, user_id: &str, client_id: &ClientId, now: UnixTime) -> StoreResult<AppRevocation>;
}
