//! The device authorization grant (RFC 8628): sign-in for a device without a browser (an SSH
//! session, a container, a TV, a CI runner). The device asks the device authorization endpoint
//! for a pair of codes, shows the user a short `user_code` and where to enter it, and polls the
//! token endpoint with the long `device_code` while the user signs in on another device (a phone,
//! a laptop), checks the request and approves or denies it.
//!
//! What the server guarantees, and where:
//! - The `device_code` is 256 random bits, stored only as its hash: it is the credential the
//!   tokens are handed to (§3.2, §5.2 of the RFC for the user code's weaker entropy).
//! - The `user_code` is 8 characters of a 20-letter alphabet without vowels (§6.1: no words, no
//!   confusable characters), about 34.6 bits: guessing one live code among N needs 2^34.6 / N
//!   tries, and guesses are throttled per network and per session at the verification page.
//!   It is normalised for case, spaces and dashes (§6.1) before it is looked up.
//! - Polling (§3.5) is decided by [`poll`], inside one atomic store operation
//!   ([`DeviceGrantStore::poll_device`]): a poll sooner than `interval` after the last is
//!   `slow_down` and the interval grows by 5 seconds for all later polls, as the RFC says; the
//!   server enforces it rather than trusting the client.
//! - The approval is used once: [`DeviceGrantStore::redeem_device`] removes the approved record
//!   and stores the grant in one transaction, so of concurrent polls exactly one gets tokens.
//! - Pending codes are bounded per client (the endpoint is open to anyone knowing a public
//!   client's id) and expire; the purge removes them.

pub mod request;
pub mod verify;

use async_trait::async_trait;
use latchkey_proto::secret::random_token;
use latchkey_proto::{ClientId, ResourceUri, Scope, TokenHash};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::UnixTime;
use crate::authn::Authentication;
use crate::store::{Issuance, StoreResult};

/// `grant_type` of the token request (RFC 8628 §3.4).
pub const GRANT_TYPE: &str = latchkey_proto::token::DEVICE_CODE_GRANT;

/// The user code's alphabet: RFC 8628 §6.1's example, twenty consonants, no vowels (no words can
/// be spelled) and none of the letters people confuse.
pub const USER_CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
/// Letters in a user code: 20^8 ≈ 2^34.6.
pub const USER_CODE_LEN: usize = 8;
/// RFC 8628 §3.5: on `slow_down`, "the interval MUST be increased by 5 seconds for this and all
/// subsequent requests".
pub const SLOW_DOWN_STEP: u64 = 5;

/// `[device]` of the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceConfig {
    /// `expires_in` of a pair of codes, in seconds: how long the user has to enter the code.
    pub ttl: u64,
    /// The polling `interval` handed out, in seconds (§3.2: 5 when none is given).
    pub interval: u64,
    /// Pending codes kept per client; past it, the endpoint answers `slow_down`-free 503s until
    /// some are used or expire.
    pub max_per_client: u64,
}

impl Default for DeviceConfig {
    fn default() -> Self {
        Self { ttl: 600, interval: 5, max_per_client: 1000 }
    }
}

/// Where a device authorization stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum DeviceStatus {
    /// Waiting for the user.
    Pending,
    /// The user approved: the next poll (at the interval) gets the tokens, once.
    Approved(Approval),
    /// The user said no: the next poll gets `access_denied` and the record goes.
    Denied,
}

/// Who approved a device authorization, and how they had signed in: the grant is theirs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub user_id: String,
    /// The session the user approved from (the grant's `sid`).
    pub sid: String,
    pub auth_time: UnixTime,
    pub authn: Authentication,
}

/// One device authorization request (RFC 8628 §3.1), as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRecord {
    /// Hash of the `device_code`.
    pub device_hash: TokenHash,
    /// Hash of the normalised `user_code` ([`normalize_user_code`]); unique among live records.
    pub user_code_hash: TokenHash,
    pub client_id: ClientId,
    /// The scope requested, already narrowed to what the client may ask for.
    pub scope: Scope,
    /// RFC 8707: the resource the tokens will be for, if the request named one.
    pub resource: Option<ResourceUri>,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
    /// The polling interval in force, in seconds: grows by [`SLOW_DOWN_STEP`] on each `slow_down`.
    pub interval: u64,
    pub last_poll_at: Option<UnixTime>,
    /// The network the request came from (an IPv4 address, an IPv6 /64), shown to the user on
    /// the consent page: a code that someone else's device asked for is a phishing attempt.
    pub requested_from: Option<String>,
    pub status: DeviceStatus,
}

/// What a poll of the token endpoint comes to (RFC 8628 §3.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PollStep {
    /// `authorization_pending`: keep polling at the interval.
    Pending,
    /// `slow_down`: polled too soon; the interval has grown by 5 s.
    SlowDown,
    /// `access_denied`: the user said no. The record is removed.
    Denied,
    /// `expired_token`: the codes expired before the user approved. The record is removed.
    Expired,
    /// The user approved: mint the tokens and redeem ([`DeviceGrantStore::redeem_device`]).
    Approved,
}

/// How the store changes the record after a poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PollUpdate {
    /// Keep it with this interval and last poll time.
    Keep { interval: u64, last_poll_at: UnixTime },
    /// Remove it: the answer was final.
    Remove,
}

/// The polling rules of RFC 8628 §3.5, decided on the record as it is and applied by the store in
/// the same atomic step. Pure: time is a parameter.
///
/// The order is the order of what a client must learn first: an expired code is expired whatever
/// else holds; a poll too soon is `slow_down` even when the user has already answered, so that a
/// client cannot skip the interval by guessing when the user is done (the answer waits one more
/// interval); the first poll may come at once, since some clients poll right after the request.
pub fn poll(record: &DeviceRecord, now: UnixTime) -> (PollStep, PollUpdate) {
    if now >= record.expires_at {
        return (PollStep::Expired, PollUpdate::Remove);
    }
    let interval = record.interval;
    if let Some(last) = record.last_poll_at {
        let waited = now.saturating_sub(last);
        if waited < i64::try_from(interval).unwrap_or(i64::MAX) {
            let interval = interval.saturating_add(SLOW_DOWN_STEP);
            return (PollStep::SlowDown, PollUpdate::Keep { interval, last_poll_at: now });
        }
    }
    match record.status {
        DeviceStatus::Pending => (PollStep::Pending, PollUpdate::Keep { interval, last_poll_at: now }),
        DeviceStatus::Denied => (PollStep::Denied, PollUpdate::Remove),
        // Kept until redeemed: the redemption removes it with the grant's insertion.
        DeviceStatus::Approved(_) => (PollStep::Approved, PollUpdate::Keep { interval, last_poll_at: now }),
    }
}

/// A fresh user code, already normalised: [`USER_CODE_LEN`] letters of [`USER_CODE_ALPHABET`],
/// drawn uniformly from the OS CSPRNG.
pub fn new_user_code() -> String {
    let mut rng = rand::rng();
    (0..USER_CODE_LEN).map(|_| char::from(USER_CODE_ALPHABET[rng.random_range(0..USER_CODE_ALPHABET.len())])).collect()
}

/// A fresh `device_code`: 256 random bits, base64url.
pub fn new_device_code() -> String {
    random_token()
}

/// A user code as typed (`wdjb-mjht`, `WDJB MJHT`, `wdjbmjht`) in the form it is stored: upper
/// case, without separators (§6.1: "the user code is normalised for case and punctuation").
/// `None` when what remains is not a user code this server could have issued, which the page
/// answers exactly as it answers an unknown code.
pub fn normalize_user_code(typed: &str) -> Option<String> {
    // Bounded before any work: the field comes from an unauthenticated form.
    if typed.len() > 64 {
        return None;
    }
    let code: String =
        typed.chars().filter(|c| !matches!(c, '-' | ' ' | '\t' | '.' | '_')).map(|c| c.to_ascii_uppercase()).collect();
    let valid = code.len() == USER_CODE_LEN && code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b));
    valid.then_some(code)
}

/// A normalised user code as shown to people: two groups of four, `WDJB-MJHT` (§6.1).
pub fn display_user_code(code: &str) -> String {
    match code.split_at_checked(USER_CODE_LEN / 2) {
        Some((a, b)) if code.len() == USER_CODE_LEN => format!("{a}-{b}"),
        _ => code.to_owned(),
    }
}

/// The hash a normalised user code is stored and looked up under.
pub fn user_code_hash(normalized: &str) -> TokenHash {
    TokenHash::of(normalized)
}

/// What inserting a device authorization came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceInsert {
    Inserted,
    /// The client has `max_per_client` pending codes already: nothing stored.
    ClientFull,
    /// Another live record has this user code (one chance in 20^8 / N): draw another.
    UserCodeTaken,
}

#[async_trait]
pub trait DeviceGrantStore: Send + Sync {
    /// Stores `r` unless its client already has `max_per_client` live records or a live record
    /// has the same user code; counted, checked and inserted in one atomic step.
    async fn insert_device(&self, r: &DeviceRecord, max_per_client: u64, now: UnixTime) -> StoreResult<DeviceInsert>;
    /// The live, pending record with this user code: what the verification page shows.
    async fn pending_device(&self, user_code_hash: &TokenHash, now: UnixTime) -> StoreResult<Option<DeviceRecord>>;
    /// Records the user's answer if and only if the record is live and still pending: of
    /// concurrent answers, one wins. `false`: nothing changed (expired, answered, unknown).
    async fn decide_device(
        &self,
        user_code_hash: &TokenHash,
        status: &DeviceStatus,
        now: UnixTime,
    ) -> StoreResult<bool>;
    /// One poll: reads the record, decides with [`poll`] and applies the update, in one atomic
    /// step (concurrent polls see each other's `last_poll_at`). `None`: no such record.
    async fn poll_device(
        &self,
        device_hash: &TokenHash,
        now: UnixTime,
    ) -> StoreResult<Option<(DeviceRecord, PollStep)>>;
    /// Removes the approved record and stores the grant and its first tokens in one transaction.
    /// `false`: the record was not there any more (a concurrent poll redeemed it): nothing stored.
    async fn redeem_device(&self, device_hash: &TokenHash, issue: &Issuance) -> StoreResult<bool>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: DeviceStatus, last_poll_at: Option<UnixTime>) -> DeviceRecord {
        DeviceRecord {
            device_hash: TokenHash::of("d"),
            user_code_hash: user_code_hash("BCDFGHJK"),
            client_id: ClientId::parse("tv").unwrap(),
            scope: Scope::parse("openid").unwrap(),
            resource: None,
            created_at: 1000,
            expires_at: 1600,
            interval: 5,
            last_poll_at,
            requested_from: Some("192.0.2.1".into()),
            status,
        }
    }

    fn approval() -> Approval {
        Approval { user_id: "u".into(), sid: "s".into(), auth_time: 1000, authn: Authentication::default() }
    }

    #[test]
    fn polling_follows_rfc_8628_section_3_5() {
        // The first poll may come at once; then at the interval.
        let r = record(DeviceStatus::Pending, None);
        assert_eq!(poll(&r, 1000), (PollStep::Pending, PollUpdate::Keep { interval: 5, last_poll_at: 1000 }));
        let r = record(DeviceStatus::Pending, Some(1000));
        assert_eq!(poll(&r, 1005), (PollStep::Pending, PollUpdate::Keep { interval: 5, last_poll_at: 1005 }));
        // Too soon: slow_down, and the interval grows by 5 s for this and every later poll.
        assert_eq!(poll(&r, 1004), (PollStep::SlowDown, PollUpdate::Keep { interval: 10, last_poll_at: 1004 }));
        let slowed = DeviceRecord { interval: 10, last_poll_at: Some(1004), ..r.clone() };
        assert_eq!(poll(&slowed, 1013).0, PollStep::SlowDown, "10 s now, counted from the refused poll");
        assert_eq!(poll(&slowed, 1014).0, PollStep::Pending);
        // Expiry comes first, whatever the state; it removes the record.
        for status in [DeviceStatus::Pending, DeviceStatus::Denied, DeviceStatus::Approved(approval())] {
            assert_eq!(poll(&record(status, Some(1599)), 1600), (PollStep::Expired, PollUpdate::Remove));
        }
        // The user's answer reaches only a poll at the interval.
        let denied = record(DeviceStatus::Denied, Some(1000));
        assert_eq!(poll(&denied, 1002).0, PollStep::SlowDown);
        assert_eq!(poll(&denied, 1005), (PollStep::Denied, PollUpdate::Remove));
        let approved = record(DeviceStatus::Approved(approval()), Some(1000));
        assert_eq!(poll(&approved, 1001).0, PollStep::SlowDown);
        assert_eq!(poll(&approved, 1005).0, PollStep::Approved);
    }

    #[test]
    fn user_codes_are_normalised_and_checked() {
        for typed in ["wdjb-mjht", "WDJB MJHT", "wdjbmjht", " WdJb-MjHt ", "WDJB_MJHT"] {
            assert_eq!(normalize_user_code(typed).as_deref(), Some("WDJBMJHT"), "{typed:?}");
        }
        for bad in ["", "WDJB-MJH", "WDJB-MJHTX", "AEIO-UAEI", "WDJB-MJH1", "WDJB/MJHT", &"B".repeat(100)] {
            assert_eq!(normalize_user_code(bad), None, "{bad:?}");
        }
        assert_eq!(display_user_code("WDJBMJHT"), "WDJB-MJHT");
    }

    #[test]
    fn new_user_codes_use_the_whole_alphabet_and_normalise_to_themselves() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..2000 {
            let c = new_user_code();
            assert_eq!(normalize_user_code(&display_user_code(&c)).as_deref(), Some(c.as_str()));
            seen.extend(c.bytes());
        }
        assert_eq!(seen.len(), USER_CODE_ALPHABET.len(), "every letter appears: the draw is not biased away from any");
        assert_ne!(new_device_code(), new_device_code());
        assert_eq!(new_device_code().len(), 43);
    }
}
