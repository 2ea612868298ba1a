//! Single-use links sent by mail (password reset, address verification, invitations) and the
//! accounts that wait for their address to be verified, in the store.
//!
//! A link carries a 256-bit random token; only its SHA-256 is stored, so a copy of the database
//! holds no usable link. Every use of a link is one atomic store operation that deletes it while
//! acting on it: of any number of concurrent uses, exactly one succeeds.

use async_trait::async_trait;
use latchkey_proto::TokenHash;

use crate::UnixTime;
use crate::store::{StoreResult, UserRecord};

/// What a link does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkPurpose {
    /// Choose a new password (`crate::reset`).
    PasswordReset,
    /// Confirm an address (`crate::verification`).
    VerifyEmail,
    /// Create an account for the invited address (`crate::signup`).
    Invitation,
}

impl LinkPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PasswordReset => "reset",
            Self::VerifyEmail => "verify",
            Self::Invitation => "invite",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [Self::PasswordReset, Self::VerifyEmail, Self::Invitation].into_iter().find(|p| p.as_str() == s)
    }
}

/// A link sent by mail, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailLinkRecord {
    /// SHA-256 of the token in the link.
    pub hash: TokenHash,
    pub purpose: LinkPurpose,
    /// The account it acts on; `None` for an invitation (the account does not exist yet).
    pub user_id: Option<String>,
    /// The address it was sent to: the one it verifies, or the one an invitation is for.
    pub email: String,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

/// A self-registered account that has not verified its address yet, and since when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignupHold {
    pub user_id: String,
    pub created_at: UnixTime,
}

/// What [`EmailLinkStore::verify_email`] changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedEmail {
    pub user_id: String,
    pub username: String,
    /// The address the account had before; equal to `email` when only its verification changed.
    pub previous: String,
    pub email: String,
}

/// The outcome of [`EmailLinkStore::create_unverified_user`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignupStored {
    Created,
    UsernameTaken,
    /// An account already has this address: nothing was created.
    EmailTaken {
        username: String,
    },
    /// `max_unverified` accounts already wait for verification.
    Full,
}

/// The outcome of [`EmailLinkStore::create_invited_user`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InvitedStored {
    Created,
    /// Nothing changed; the invitation still works.
    UsernameTaken,
    /// No unexpired invitation for this address has this token.
    InvalidInvitation,
    /// The invited address has an account meanwhile; the invitation is used up.
    EmailTaken {
        username: String,
    },
}

#[async_trait]
pub trait EmailLinkStore: Send + Sync {
    /// The accounts whose address is `email`, compared case-insensitively.
    async fn users_by_email(&self, email: &str) -> StoreResult<Vec<UserRecord>>;
    /// Stores `link` and, in the same step, deletes the links of the same purpose for the same
    /// account (an invitation: for the same address): a newer link replaces the older.
    async fn issue_link(&self, link: &EmailLinkRecord) -> StoreResult<()>;
    /// The unexpired link with this hash and purpose, without using it (the page that asks for
    /// the new password, the confirmation button).
    async fn email_link(
        &self,
        hash: &TokenHash,
        purpose: LinkPurpose,
        now: UnixTime,
    ) -> StoreResult<Option<EmailLinkRecord>>;
    /// Uses a link: deletes the unexpired link with this hash and purpose and returns it, in one
    /// atomic step. Of any number of concurrent calls with one link, exactly one gets `Some`.
    async fn consume_link(
        &self,
        hash: &TokenHash,
        purpose: LinkPurpose,
        now: UnixTime,
    ) -> StoreResult<Option<EmailLinkRecord>>;
    /// After a link sent to `email` was followed: if the account's address is still `email`, it
    /// is marked verified and the account's sign-up hold is lifted, in one step. Returns whether
    /// the address was still the account's.
    async fn confirm_address(&self, user_id: &str, email: &str) -> StoreResult<bool>;
    /// In one atomic step: deletes the unexpired verification link `hash`, sets the account's
    /// address to the link's, verified, and lifts its sign-up hold.
    async fn verify_email(&self, hash: &TokenHash, now: UnixTime) -> StoreResult<Option<VerifiedEmail>>;
    /// Open sign-up, in one atomic step: refuses (`Full`) when `max_unverified` accounts already
    /// wait for verification; finds an account with the same address (case-insensitively:
    /// `EmailTaken`, nothing created); else inserts `user` and a hold that keeps it from signing in
    /// until its address is verified.
    async fn create_unverified_user(
        &self,
        user: &UserRecord,
        max_unverified: u64,
        now: UnixTime,
    ) -> StoreResult<SignupStored>;
    /// Invited sign-up, in one atomic step: deletes the unexpired invitation `hash` for
    /// `user.email` and inserts `user` (its address verified: the invitation was mailed there).
    /// A taken username changes nothing.
    async fn create_invited_user(
        &self,
        hash: &TokenHash,
        user: &UserRecord,
        now: UnixTime,
    ) -> StoreResult<InvitedStored>;
    /// Whether the account waits for its address to be verified: it cannot sign in until then.
    async fn signup_hold(&self, user_id: &str) -> StoreResult<Option<SignupHold>>;
    /// Sets the account's address (an administrator's change). `false`: no such account.
    async fn set_email(&self, user_id: &str, email: &str, verified: bool) -> StoreResult<bool>;
}

/// Self-registered accounts whose address was not verified within this many seconds are removed
/// by the purge: sign-ups nobody confirms (typos, bots) do not pile up or hold their usernames.
pub const UNVERIFIED_SIGNUP_TTL: i64 = 7 * 24 * 3600;

impl crate::Provider {
    /// Mints a link for `purpose` to `path` on this server (`?{param}=TOKEN`) and stores its hash,
    /// replacing the older link of the same purpose for the same account or address. The token
    /// exists only in the returned link, which goes into the mail and nowhere else.
    pub(crate) async fn mint_link(
        &self,
        purpose: LinkPurpose,
        user_id: Option<&str>,
        email: &str,
        ttl: u64,
        (path, param): (&str, &str),
        now: UnixTime,
    ) -> Result<crate::mail::SecretLink, crate::outbox::DeliveryError> {
        let token = latchkey_proto::secret::random_token();
        let record = EmailLinkRecord {
            hash: TokenHash::of(&token),
            purpose,
            user_id: user_id.map(str::to_owned),
            email: email.to_owned(),
            created_at: now,
            expires_at: now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)),
        };
        self.store.issue_link(&record).await.map_err(crate::outbox::store_fault)?;
        let mut url = url::Url::parse(&format!("{}{path}", self.issuer()))
            .map_err(|e| crate::outbox::DeliveryError::permanent(format!("the issuer cannot make a link: {e}")))?;
        url.query_pairs_mut().append_pair(param, &token);
        Ok(crate::mail::SecretLink::new(url.into()))
    }
}
