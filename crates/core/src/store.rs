//! The storage contract. One implementation per backend lives in the `latchkey-store` crate, and
//! one conformance suite there runs against each.
//!
//! One-time guarantees (a code redeemed once, a refresh token rotated once) are expressed as single
//! atomic operations here, so that they hold under concurrency and across server instances.

use async_trait::async_trait;
use latchkey_proto::{ClientId, CodeChallenge, Nonce, RedirectUri, Scope, State, TokenHash};
use serde::{Deserialize, Serialize};

use crate::UnixTime;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique key (client id, username) is taken.
    #[error("{0} already exists")]
    AlreadyExists(&'static str),
    #[error(transparent)]
    Backend(#[from] anyhow::Error),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The grants a client may be registered for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    /// RFC 6749 §4.4: a confidential client acting on its own behalf (service to service).
    ClientCredentials,
}

impl GrantType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
            Self::RefreshToken => "refresh_token",
            Self::ClientCredentials => "client_credentials",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "authorization_code" => Some(Self::AuthorizationCode),
            "refresh_token" => Some(Self::RefreshToken),
            "client_credentials" => Some(Self::ClientCredentials),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientKind {
    /// Cannot keep a secret (SPA, native app, CLI): identified by `client_id` only, PKCE binds the code.
    Public,
    /// Holds a secret; only its Argon2id hash is stored.
    Confidential { secret_hash: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRecord {
    pub client_id: ClientId,
    pub name: String,
    pub kind: ClientKind,
    pub redirect_uris: Vec<RedirectUri>,
    pub grant_types: Vec<GrantType>,
    /// The scopes this client may request.
    pub allowed_scope: Scope,
    /// A client of the deployment's own: the user's consent is implied and no consent page is shown.
    pub first_party: bool,
    pub created_at: UnixTime,
    /// `id_token_signed_response_alg` (OpenID Connect Dynamic Registration §2).
    #[serde(default)]
    pub id_token_signed_response_alg: SigningAlg,
    /// Where RP-initiated logout may send the browser back to (matched exactly).
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<RedirectUri>,
    /// Audiences this client may obtain client-credentials tokens for, and, for a resource server,
    /// the audiences whose tokens it may introspect.
    #[serde(default)]
    pub audiences: Vec<String>,
}

/// The JWS algorithms Latchkey signs with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SigningAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256: the OpenID Connect default every client supports (Core §15.1).
    #[default]
    RS256,
    /// ECDSA P-256 with SHA-256: much cheaper to sign than RSA, small signatures.
    ES256,
    /// Ed25519 (RFC 8037): the cheapest to sign and verify.
    EdDSA,
}

impl SigningAlg {
    pub const ALL: [SigningAlg; 3] = [SigningAlg::RS256, SigningAlg::ES256, SigningAlg::EdDSA];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::ES256 => "ES256",
            Self::EdDSA => "EdDSA",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

impl ClientRecord {
    pub fn is_public(&self) -> bool {
        matches!(self.kind, ClientKind::Public)
    }
    pub fn allows(&self, g: GrantType) -> bool {
        self.grant_types.contains(&g)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// The stable, opaque subject identifier (`sub`).
    pub id: String,
    pub username: String,
    pub email: String,
    pub email_verified: bool,
    pub name: Option<String>,
    /// Argon2id PHC string.
    pub password_hash: String,
    pub created_at: UnixTime,
    pub phone_number: Option<String>,
    /// The postal address, formatted (OpenID Connect Core §5.1.1 `formatted`).
    pub address: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub kid: String,
    pub alg: String,
    /// PKCS#8 DER of the private key, base64. Never leaves the server.
    pub private_pkcs8_b64: String,
    pub created_at: UnixTime,
    /// The newest active key of each algorithm signs.
    pub active: bool,
    /// When a rotation replaced this key. It stays published until every token it signed expired.
    pub retired_at: Option<UnixTime>,
}

/// An authorization request waiting for the user to log in or consent. Stored server side, so the
/// pages carry only its random id and nothing the browser could alter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingAuthorization {
    pub client_id: ClientId,
    pub redirect_uri: RedirectUri,
    pub scope: Scope,
    pub state: Option<State>,
    pub nonce: Option<Nonce>,
    pub code_challenge: CodeChallenge,
    pub expires_at: UnixTime,
    /// OpenID Connect `login_hint`: pre-fills the username field.
    #[serde(default)]
    pub login_hint: Option<String>,
    /// `prompt=consent`: ask for consent even if it was given before, also after a fresh login.
    #[serde(default)]
    pub force_consent: bool,
    /// `prompt=login` / `max_age`: the session must have authenticated at or after this time,
    /// checked at every step, not only at `/authorize`.
    #[serde(default)]
    pub auth_after: Option<UnixTime>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    pub hash: TokenHash,
    /// Public session id, for the `sid` claim and session-bound grants.
    pub sid: String,
    pub user_id: String,
    pub auth_time: UnixTime,
    pub expires_at: UnixTime,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeRecord {
    pub hash: TokenHash,
    pub client_id: ClientId,
    pub user_id: String,
    pub redirect_uri: RedirectUri,
    pub scope: Scope,
    pub code_challenge: CodeChallenge,
    pub nonce: Option<Nonce>,
    pub sid: String,
    pub auth_time: UnixTime,
    pub expires_at: UnixTime,
    pub used_at: Option<UnixTime>,
    /// The grant created when the code was redeemed: what a replay revokes.
    pub grant_id: Option<String>,
}

/// One authorization: what a user granted a client. Refresh tokens form a family under it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantRecord {
    pub id: String,
    pub client_id: ClientId,
    pub user_id: String,
    pub scope: Scope,
    pub sid: String,
    /// `offline_access` was granted: refresh tokens outlive the login session.
    pub offline: bool,
    pub auth_time: UnixTime,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
    pub revoked_at: Option<UnixTime>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshRecord {
    pub hash: TokenHash,
    pub grant_id: String,
    pub scope: Scope,
    pub issued_at: UnixTime,
    pub expires_at: UnixTime,
    pub consumed_at: Option<UnixTime>,
    /// Once rotated: the response that rotation returned, encrypted under a key derived from this
    /// (unstored) token, so a retry within the grace window gets the very same successor tokens.
    pub cached_response: Option<Vec<u8>>,
}

/// An issued access token (a JWT) by `jti`, so that revoking its grant also stops it at userinfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessRecord {
    pub jti: String,
    pub grant_id: String,
    pub expires_at: UnixTime,
    /// Set by RFC 7009 revocation of this one token.
    pub revoked_at: Option<UnixTime>,
}

/// What a successful code redemption writes, all in one transaction.
#[derive(Clone, Debug)]
pub struct Issuance {
    pub grant: GrantRecord,
    pub refresh: Option<RefreshRecord>,
    pub access: AccessRecord,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Redeemed {
    Issued,
    /// Another request redeemed this code first; the grant it created, if any, should be revoked.
    AlreadyUsed {
        grant_id: Option<String>,
    },
}

#[derive(Debug, PartialEq, Eq)]
pub enum Rotated {
    Rotated,
    /// Another request rotated this token first (or it was revoked meanwhile).
    AlreadyConsumed {
        consumed_at: Option<UnixTime>,
        cached_response: Option<Vec<u8>>,
    },
}

/// Failed logins counted under one throttling key (an account, an IP, or both).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThrottleRecord {
    pub key: String,
    pub failures: u32,
    pub last_failure: UnixTime,
    /// Attempts refused while this key blocked, since its last counted failure: aggregated here
    /// rather than written as one audit row each (security review 2026-12, finding 9).
    pub refused: u64,
}

/// Bounds on live pending authorization requests (see [`Store::insert_pending`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingLimits {
    pub per_source: u64,
    pub per_client: u64,
}

/// The outcome of [`Store::throttle_reserve`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reservation {
    /// The attempt may be checked; it was counted as a failure under every key in advance, to be
    /// settled with [`Store::throttle_settle`] if it succeeds. `refused_while_blocked`: attempts
    /// refused under these keys since their last counted failure.
    Reserved { refused_while_blocked: u64 },
    /// The attempt must wait until `until`; nothing was counted. `first`: the first refusal since
    /// the last counted failure, the only one worth an audit record.
    Blocked { until: UnixTime, first: bool },
}

/// One security event, kept for `latchkey audit`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub at: UnixTime,
    /// `login_success`, `login_failure`, `consent_granted`, `refresh_token_reuse`, …
    pub event: String,
    pub user_id: Option<String>,
    pub client_id: Option<String>,
    pub ip: Option<String>,
    /// Event-specific facts. Never a secret.
    pub detail: serde_json::Value,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    // Clients.
    async fn insert_client(&self, client: &ClientRecord) -> StoreResult<()>;
    async fn client(&self, id: &ClientId) -> StoreResult<Option<ClientRecord>>;
    async fn clients(&self) -> StoreResult<Vec<ClientRecord>>;
    async fn remove_client(&self, id: &ClientId) -> StoreResult<bool>;

    // Users.
    async fn insert_user(&self, user: &UserRecord) -> StoreResult<()>;
    async fn user(&self, id: &str) -> StoreResult<Option<UserRecord>>;
    async fn user_by_username(&self, username: &str) -> StoreResult<Option<UserRecord>>;
    async fn users(&self) -> StoreResult<Vec<UserRecord>>;
    async fn remove_user(&self, username: &str) -> StoreResult<bool>;
    async fn set_password_hash(&self, username: &str, hash: &str) -> StoreResult<bool>;

    // Signing keys.
    async fn signing_keys(&self) -> StoreResult<Vec<KeyRecord>>;
    /// Inserts `key`. An active key is inserted only if its algorithm has no active key yet, checked
    /// in the same transaction: several instances starting at once on an empty database must not
    /// create two signers for one algorithm. Returns whether the key was inserted.
    async fn insert_signing_key(&self, key: &KeyRecord) -> StoreResult<bool>;
    /// Makes `key` the active signer of its algorithm: in one transaction, the active keys of that
    /// algorithm become retired at `now` and `key` is inserted.
    async fn rotate_signing_key(&self, key: &KeyRecord, now: UnixTime) -> StoreResult<()>;

    // Pending authorization requests.
    /// Stores a pending request made from `source` (a client network, `throttle::source`) in one
    /// atomic step: refused (`false`) if that source already has `limits.per_source` unexpired
    /// requests; otherwise inserted, and the client's oldest requests beyond `limits.per_client`
    /// are evicted. One source cannot use up a client's capacity, and a flood from many sources
    /// pushes out the oldest requests instead of refusing every new user (review finding 6).
    async fn insert_pending(
        &self,
        id: &TokenHash,
        p: &PendingAuthorization,
        source: &str,
        now: UnixTime,
        limits: PendingLimits,
    ) -> StoreResult<bool>;
    async fn pending(&self, id: &TokenHash, now: UnixTime) -> StoreResult<Option<PendingAuthorization>>;
    /// Deletes a pending request; `true` for the one caller that deleted it, so that two concurrent
    /// decisions on one request cannot both issue a code.
    async fn remove_pending(&self, id: &TokenHash) -> StoreResult<bool>;

    // The server's own secrets (the known-device cookie key).
    /// The secret named `name`: `fresh` is stored if there is none yet, atomically, so several
    /// instances starting at once agree on one value.
    async fn server_secret(&self, name: &str, fresh: &str, now: UnixTime) -> StoreResult<String>;

    // Browser sessions.
    /// Inserts the session and, in the same transaction, ends the user's oldest sessions beyond
    /// the newest `keep` (their session-bound grants are revoked, as at logout).
    async fn insert_session(&self, s: &SessionRecord, keep: u32) -> StoreResult<()>;
    async fn session(&self, hash: &TokenHash, now: UnixTime) -> StoreResult<Option<SessionRecord>>;
    async fn session_by_sid(&self, sid: &str, now: UnixTime) -> StoreResult<Option<SessionRecord>>;
    async fn remove_session(&self, hash: &TokenHash) -> StoreResult<()>;
    /// Logout: deletes the session and, in the same transaction, revokes the grants bound to it
    /// (those without `offline_access`). Returns the session if it existed.
    async fn end_session(&self, sid: &str, now: UnixTime) -> StoreResult<Option<SessionRecord>>;

    // Consent, remembered per user and client.
    async fn consent(&self, user_id: &str, client_id: &ClientId) -> StoreResult<Option<Scope>>;
    async fn put_consent(&self, user_id: &str, client_id: &ClientId, scope: &Scope, now: UnixTime) -> StoreResult<()>;

    // Authorization codes.
    async fn insert_code(&self, code: &CodeRecord) -> StoreResult<()>;
    async fn code(&self, hash: &TokenHash) -> StoreResult<Option<CodeRecord>>;
    /// Marks the code used if and only if it was unused, and in the same transaction stores the
    /// grant and its first tokens. Exactly one of any number of concurrent calls gets `Issued`.
    async fn redeem_code(&self, hash: &TokenHash, now: UnixTime, issue: &Issuance) -> StoreResult<Redeemed>;

    // Grants and tokens.
    /// Stores a grant with its first tokens (client credentials: no code involved).
    async fn insert_grant(&self, issue: &Issuance) -> StoreResult<()>;
    async fn refresh_token(&self, hash: &TokenHash) -> StoreResult<Option<(RefreshRecord, GrantRecord)>>;
    /// Consumes `old` if and only if it is unconsumed and its grant is not revoked, keeping
    /// `cached_response` with it, and stores its successor and the new access token in the same
    /// transaction. Exactly one of any number of concurrent calls gets `Rotated`; the others get
    /// what the winner stored.
    async fn rotate_refresh(
        &self,
        old: &TokenHash,
        now: UnixTime,
        next: &RefreshRecord,
        access: &AccessRecord,
        cached_response: &[u8],
    ) -> StoreResult<Rotated>;
    /// Revokes a grant: its refresh-token family and every access token issued under it.
    async fn revoke_grant(&self, grant_id: &str, now: UnixTime) -> StoreResult<()>;
    /// An access token's record and its grant, by `jti`.
    async fn access_token(&self, jti: &str) -> StoreResult<Option<(AccessRecord, GrantRecord)>>;
    /// RFC 7009 for one access token: it stays revoked until it expires.
    async fn revoke_access_token(&self, jti: &str, now: UnixTime) -> StoreResult<()>;

    // Login throttling (`crate::throttle`).
    /// The counters of these keys, in the order asked (missing keys are left out).
    async fn throttle_state(&self, keys: &[String]) -> StoreResult<Vec<ThrottleRecord>>;
    /// One login attempt, decided and counted in one atomic operation, also across instances: reads
    /// the keys' counters; if [`crate::throttle::blocked_until`] says the attempt must wait, counts
    /// one refusal and returns `Blocked`; otherwise counts one failure under every key (a key whose
    /// last failure is older than [`crate::throttle::FORGET_AFTER`] starts again from one) and
    /// returns `Reserved`. Of any number of concurrent calls, each sees all those before it.
    async fn throttle_reserve(
        &self,
        rules: &[(String, crate::throttle::Rule)],
        now: UnixTime,
    ) -> StoreResult<Reservation>;
    /// After a successful login: deletes the `clear` keys and takes the reserved failure back from
    /// the `refund` keys.
    async fn throttle_settle(&self, clear: &[String], refund: &[String]) -> StoreResult<()>;

    // The audit log.
    async fn record_audit(&self, event: &AuditRecord) -> StoreResult<()>;
    /// Newest first, at most `limit`.
    async fn audit_events(
        &self,
        since: Option<UnixTime>,
        user_id: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<AuditRecord>>;

    // Housekeeping.
    /// Deletes what can no longer be used at `now`, so that tables stay bounded (the policy is
    /// [`TableCounts`]' field by field; the README's "Bounded storage" says the same). Returns how
    /// many rows went from each table. Safe to run from several instances at once.
    async fn purge_expired(&self, now: UnixTime, policy: &PurgePolicy) -> StoreResult<TableCounts>;
    /// How many rows each table holds.
    async fn table_counts(&self) -> StoreResult<TableCounts>;
    /// Every record, read in one consistent snapshot (`latchkey db copy`).
    async fn export(&self) -> StoreResult<Snapshot>;
    /// Writes a snapshot into this store in one transaction. Meant for an empty store: a row that
    /// already exists fails the whole import.
    async fn import(&self, snapshot: &Snapshot) -> StoreResult<()>;
}

/// Rows per table. As the result of [`Store::purge_expired`], the rows deleted, by this policy:
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TableCounts {
    /// Never purged: removed by `client remove`.
    pub clients: u64,
    /// Never purged: removed by `user remove`.
    pub users: u64,
    /// Retired keys, once they have been out of the JWKS for `key_publish_window` (every token they
    /// signed has expired). Active keys stay.
    pub signing_keys: u64,
    /// Expired login and consent pages.
    pub pending_authorizations: u64,
    /// Expired login sessions.
    pub sessions: u64,
    /// Consent is the user's decision and does not expire; it is kept while both its user and its
    /// client exist (at most users × clients rows). Orphans are purged.
    pub consents: u64,
    /// Expired codes that were never redeemed; a redeemed code stays as long as its grant, so that a
    /// late replay still revokes what the code issued (RFC 6749 §4.1.2).
    pub codes: u64,
    /// Dead refresh families: revoked, past their absolute lifetime, with no usable refresh token
    /// left (idle), or bound to a login session that has ended; and only once every access token
    /// issued under them has expired, so that purging never shortens an access token's life.
    /// A live family keeps its rotated tokens, so reuse detection works for the family's whole life.
    pub grants: u64,
    /// The tokens of purged families.
    pub refresh_tokens: u64,
    /// Expired access-token records (an expired JWT is refused before its record is looked up).
    pub access_tokens: u64,
    /// Failure counters whose last failure is older than `throttle::FORGET_AFTER`: they would
    /// start again from zero anyway.
    pub login_throttle: u64,
    /// Records older than [`PurgePolicy::audit_retention`] (90 days by default; 0 keeps them
    /// forever). Repeated refusals are aggregated before they are written (`throttle`), so an
    /// attacker cannot grow the table faster than the login back-off allows.
    pub audit_events: u64,
}

/// What [`Store::purge_expired`] keeps, in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PurgePolicy {
    /// How long a retired signing key stays published.
    pub key_publish_window: u64,
    /// How long audit records are kept; 0 keeps them forever.
    pub audit_retention: u64,
}

impl TableCounts {
    pub fn total(&self) -> u64 {
        self.clients
            + self.users
            + self.signing_keys
            + self.pending_authorizations
            + self.sessions
            + self.consents
            + self.codes
            + self.grants
            + self.refresh_tokens
            + self.access_tokens
            + self.login_throttle
            + self.audit_events
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsentRecord {
    pub user_id: String,
    pub client_id: ClientId,
    pub scope: Scope,
    pub updated_at: UnixTime,
}

/// A whole deployment's data, as stored: secrets only as hashes, private keys as they are. Login
/// throttling counters are transient and not part of it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub clients: Vec<ClientRecord>,
    pub users: Vec<UserRecord>,
    pub signing_keys: Vec<KeyRecord>,
    pub pending: Vec<(TokenHash, PendingAuthorization)>,
    pub sessions: Vec<SessionRecord>,
    pub consents: Vec<ConsentRecord>,
    pub codes: Vec<CodeRecord>,
    pub grants: Vec<GrantRecord>,
    pub refresh_tokens: Vec<RefreshRecord>,
    pub access_tokens: Vec<AccessRecord>,
    /// Oldest first.
    pub audit_events: Vec<AuditRecord>,
}
