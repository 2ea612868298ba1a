//! Passkeys (WebAuthn Level 2/3) with webauthn-rs: registration from the account page, the
//! username-less sign-in on the login page, and the passkey as a second factor.
//!
//! ## Choices
//!
//! - **The crate's safe API.** `webauthn-rs`'s `Passkey` ceremonies, never `webauthn-rs-core`
//!   (its authors mark it unsafe to use directly). That API requires user verification (a PIN or
//!   a biometric) at registration and at every use, and asks the authenticator to protect the
//!   credential with it (credProtect): every passkey here is two factors on its own, and the
//!   "passkey required" policy's demand for user verification holds for every passkey. A
//!   security key without a PIN cannot be registered; the browser asks its owner to set one.
//! - **Discoverable credentials.** The creation options ask for a resident key
//!   (`residentKey: required`), so that the username-less sign-in finds the credential. These
//!   options are hints the server cannot verify (webauthn-rs says so); a credential that turns
//!   out not to be discoverable still works as a second factor.
//! - **The ceremony state stays on the server** ([`store::PasskeyStore`]): the browser holds a
//!   random id, the store its hash and the webauthn-rs state. A ceremony is taken once (one
//!   atomic delete), lives [`PasskeyConfig::ceremony_ttl`] seconds, and the store bounds live
//!   ceremonies per source network and in all, since the username-less sign-in starts one for
//!   anybody who opens the login page.
//! - **Relying party.** Its id is the issuer's host unless configured (`[webauthn] rp_id`, a
//!   registrable suffix of the host); the allowed origin is the issuer's origin plus configured
//!   extras. WebAuthn needs a domain: an issuer on an IP address (`http://127.0.0.1`) has no
//!   passkeys, and the pages offer none (`http://localhost` works, browsers treat it as secure).
//! - **`hwk` or `swk`** (RFC 8176) comes from the backup-eligible flag: a credential that may be
//!   synced to other devices is software-held as far as the server can know (a cloud keychain),
//!   one that cannot leave its authenticator is hardware-held.
//! - **Clone detection.** A signature counter that does not move forward (unless it stays 0,
//!   which synced passkeys report) is refused by webauthn-rs and by the store's conditional
//!   update, and audited as `passkey_counter_regression`.

pub mod manage;
pub mod second_factor;
pub mod sign_in;
#[cfg(any(test, feature = "test-util"))]
pub mod soft;
pub mod store;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latchkey_proto::TokenHash;
use latchkey_proto::secret::random_token;
use serde::{Deserialize, Serialize};
use webauthn_rs::prelude::{Url, Webauthn, WebauthnBuilder, WebauthnError};

use crate::store::StoreError;
use crate::{Provider, UnixTime, throttle};
use store::{CeremonyLimits, CeremonyRecord};

/// `[webauthn]`: the relying party and the bounds of passkey ceremonies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasskeyConfig {
    /// The relying party id; `None`: the issuer's host.
    pub rp_id: Option<String>,
    /// The name authenticators show beside the account ("Latchkey").
    pub rp_name: String,
    /// Origins accepted besides the issuer's (another port or subdomain serving the same pages).
    pub extra_origins: Vec<String>,
    /// Seconds a ceremony may take, from the options to the authenticator's answer.
    pub ceremony_ttl: u64,
    /// Passkeys one user may register.
    pub max_per_user: u32,
    /// Live ceremonies per source network (an IPv4 address, an IPv6 /64).
    pub ceremonies_per_source: u64,
    /// Live ceremonies in all: what unauthenticated requests can make the server hold.
    pub max_ceremonies: u64,
    /// A registration needs a sign-in no older than this many seconds: a stolen session cookie
    /// that has been around for a while cannot add the thief's passkey.
    pub reauth_window: u64,
}

impl Default for PasskeyConfig {
    fn default() -> Self {
        Self {
            rp_id: None,
            rp_name: "Latchkey".to_owned(),
            extra_origins: Vec::new(),
            ceremony_ttl: 300,
            max_per_user: 20,
            ceremonies_per_source: 32,
            max_ceremonies: 10_000,
            reauth_window: 600,
        }
    }
}

/// The relying party, built once from the configuration.
#[derive(Debug)]
pub struct RelyingParty {
    pub(crate) webauthn: Webauthn,
    pub rp_id: String,
}

impl RelyingParty {
    /// `None` when the issuer is on an IP address and no `rp_id` is configured: WebAuthn needs a
    /// domain. A configured `rp_id` that does not fit the issuer is an error at start-up.
    pub fn new(issuer: &str, cfg: &PasskeyConfig) -> anyhow::Result<Option<Self>> {
        let origin = Url::parse(issuer).map_err(|e| anyhow::anyhow!("the issuer is not a URL: {e}"))?;
        let rp_id = match (&cfg.rp_id, origin.domain()) {
            (Some(id), _) => id.clone(),
            (None, Some(host)) => host.to_owned(),
            (None, None) => return Ok(None),
        };
        let mut builder = WebauthnBuilder::new(&rp_id, &origin).map_err(|e| {
            anyhow::anyhow!("[webauthn] rp_id {rp_id:?} must be the issuer's host or a parent domain of it: {e}")
        })?;
        builder = builder.rp_name(&cfg.rp_name);
        for extra in &cfg.extra_origins {
            let url = Url::parse(extra).map_err(|e| anyhow::anyhow!("[webauthn] extra origin {extra:?}: {e}"))?;
            builder = builder.append_allowed_origin(&url);
        }
        let webauthn = builder.build().map_err(|e| anyhow::anyhow!("[webauthn]: {e}"))?;
        Ok(Some(Self { webauthn, rp_id }))
    }
}

/// Why a passkey operation was refused. One message per cause, precise and safe to show.
#[derive(Debug, thiserror::Error)]
pub enum PasskeyError {
    #[error("passkeys are not available on this server (its address is not a domain name)")]
    Disabled,
    #[error("this passkey request expired or was already used; start again")]
    CeremonyExpired,
    /// `latchkey user lock`: said only after the passkey verified, like the password's refusal.
    #[error("this account is locked; ask an administrator")]
    Locked,
    #[error("too many passkey requests are in progress from your network; try again in a few minutes")]
    Busy,
    #[error("the passkey's answer could not be verified: {0}")]
    Invalid(String),
    #[error("your authenticator did not verify you (PIN, fingerprint or face); passkeys need it here")]
    UserNotVerified,
    #[error("this passkey is not registered here, or was removed")]
    UnknownCredential,
    #[error("this passkey is registered already")]
    Duplicate,
    #[error("you have {0} passkeys, the most one account may have; remove one first")]
    TooMany(u32),
    #[error(
        "this passkey's signature counter went backwards, a sign that it was copied; it was refused. Use another \
         sign-in method and consider removing it"
    )]
    CounterRegression,
    #[error("too many sign-in attempts; try again in {0} seconds")]
    Throttled(u64),
    #[error("give the passkey a name of 1 to 64 characters")]
    BadName,
    #[error("sign in again to add a passkey: your sign-in is older than {0} minutes")]
    ReauthRequired(u64),
    #[error("no such passkey")]
    NotFound,
    #[error("this sign-in step does not take a passkey")]
    NotAccepted,
    #[error("the passkey answer is malformed: {0}")]
    Malformed(String),
    #[error(transparent)]
    Internal(#[from] crate::Error),
}

impl From<StoreError> for PasskeyError {
    fn from(e: StoreError) -> Self {
        Self::Internal(e.into())
    }
}

impl From<anyhow::Error> for PasskeyError {
    fn from(e: anyhow::Error) -> Self {
        Self::Internal(e.into())
    }
}

impl From<WebauthnError> for PasskeyError {
    fn from(e: WebauthnError) -> Self {
        match e {
            WebauthnError::UserNotVerified => Self::UserNotVerified,
            WebauthnError::CredentialPossibleCompromise => Self::CounterRegression,
            other => Self::Invalid(other.to_string()),
        }
    }
}

/// A user-chosen passkey name: trimmed, 1 to 64 characters, no control characters.
pub fn valid_name(name: &str) -> Result<String, PasskeyError> {
    let name = name.trim();
    let n = name.chars().count();
    if n == 0 || n > 64 || name.chars().any(char::is_control) {
        return Err(PasskeyError::BadName);
    }
    Ok(name.to_owned())
}

/// A credential id as stored and shown: base64url without padding.
pub fn cred_id_text(raw: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(raw)
}

/// The bytes of a stored credential id (`None` for one that is not base64url, which cannot be).
pub(crate) fn cred_id_bytes(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// The flags of a credential as webauthn-rs serialises a `Passkey` (read from its JSON: the crate
/// keeps the fields private unless a "danger" feature opens them for writing too).
#[derive(Deserialize)]
pub(crate) struct StoredFlags {
    cred: CredFlags,
}

#[derive(Deserialize)]
struct CredFlags {
    counter: u32,
    backup_eligible: bool,
    backup_state: bool,
}

impl StoredFlags {
    pub(crate) fn of(credential_json: &str) -> Result<(u32, bool, bool), PasskeyError> {
        let f: StoredFlags = serde_json::from_str(credential_json)
            .map_err(|e| anyhow::anyhow!("reading a stored passkey's flags: {e}"))?;
        Ok((f.cred.counter, f.cred.backup_eligible, f.cred.backup_state))
    }
}

/// A ceremony in progress, as stored: what it is for, who may finish it, and webauthn-rs's state.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Ceremony {
    /// Adding a passkey, from the account page of session `sid`.
    Register {
        user_id: String,
        sid: String,
        user_handle: String,
        name: String,
        state: webauthn_rs::prelude::PasskeyRegistration,
    },
    /// The username-less sign-in for the pending request whose id hashes to `pending`.
    SignIn { pending: String, state: webauthn_rs::prelude::DiscoverableAuthentication },
    /// A first passkey, added while signing in where the policy requires one (the sign-in of
    /// pending request `pending`, by its partial sign-in's user).
    EnrolAtSignIn {
        pending: String,
        user_id: String,
        user_handle: String,
        name: String,
        state: webauthn_rs::prelude::PasskeyRegistration,
    },
    /// A passkey of `user_id` as the second factor of the sign-in of pending request `pending`.
    SecondFactor { pending: String, user_id: String, state: webauthn_rs::prelude::PasskeyAuthentication },
}

/// What a ceremony id is: a random token the browser holds; its hash is the store's key.
pub(crate) fn new_ceremony_id() -> (String, TokenHash) {
    let id = random_token();
    let hash = TokenHash::of(&id);
    (id, hash)
}

impl Provider {
    /// The relying party, if passkeys are available.
    pub fn passkeys(&self) -> Option<&RelyingParty> {
        self.passkeys.as_ref()
    }

    pub(crate) fn relying_party(&self) -> Result<&RelyingParty, PasskeyError> {
        self.passkeys.as_ref().ok_or(PasskeyError::Disabled)
    }

    /// Stores a ceremony's state under a fresh id; returns the id for the browser.
    pub(crate) async fn save_ceremony<T: Serialize>(
        &self,
        data: &T,
        ip: Option<std::net::IpAddr>,
        now: UnixTime,
    ) -> Result<String, PasskeyError> {
        let cfg = &self.config.passkeys;
        let (id, hash) = new_ceremony_id();
        let rec = CeremonyRecord {
            id: hash,
            data: serde_json::to_string(data).map_err(|e| anyhow::anyhow!("serialising a ceremony: {e}"))?,
            source: ip.map(throttle::source).unwrap_or_else(|| "unknown".to_owned()),
            expires_at: now + cfg.ceremony_ttl as UnixTime,
        };
        let limits = CeremonyLimits { per_source: cfg.ceremonies_per_source, total: cfg.max_ceremonies };
        if !self.store.insert_ceremony(&rec, now, limits).await? {
            return Err(PasskeyError::Busy);
        }
        Ok(id)
    }

    /// Takes a ceremony (once: of concurrent callers, one gets it) and reads its state.
    pub(crate) async fn take_ceremony<T: for<'de> Deserialize<'de>>(
        &self,
        id: &str,
        now: UnixTime,
    ) -> Result<T, PasskeyError> {
        if id.is_empty() || id.len() > 128 {
            return Err(PasskeyError::CeremonyExpired);
        }
        let rec = self.store.take_ceremony(&TokenHash::of(id), now).await?.ok_or(PasskeyError::CeremonyExpired)?;
        // A ceremony of another kind under this id is no ceremony for this step.
        serde_json::from_str(&rec.data).map_err(|_| PasskeyError::CeremonyExpired)
    }
}

#[cfg(test)]
mod tests;
