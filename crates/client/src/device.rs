//! The device authorization grant (RFC 8628), client side: for a device without a browser (an SSH
//! session, a container, a CI runner). [`Client::start_device_authorization`] asks for a pair of
//! codes; the user enters the short `user_code` at the verification URI on another device;
//! [`Client::poll_device_authorization`] polls the token endpoint with the long `device_code` until
//! the user has answered, the codes expire or the provider refuses.
//!
//! Polling follows §3.5: wait `interval` before each poll, add 5 seconds for all later polls on
//! `slow_down`, keep going on `authorization_pending`, stop on anything else, and back off
//! (double the interval) on connection failures and server faults. Time and waiting come from a
//! [`PollClock`], so tests run the whole loop without waiting.

use std::future::Future;
use std::time::Duration;

use latchkey_proto::secret::DeviceCode;
use latchkey_proto::token::DEVICE_CODE_GRANT;
use latchkey_proto::{ResourceUri, Scope};
use serde::Deserialize;
use url::Url;

use crate::authorize::shown;
use crate::tokens::{RawTokenResponse, post_form};
use crate::{Client, Error, TokenSet};

/// §3.2: "If no value is provided, clients MUST use 5 as the default."
pub const DEFAULT_INTERVAL: u64 = 5;
/// §3.5: on `slow_down`, "the interval MUST be increased by 5 seconds for this and all subsequent
/// requests".
pub const SLOW_DOWN_STEP: u64 = 5;
/// The longest interval reached by doubling after connection failures (§3.5 recommends doubling;
/// past a minute the user would wait long after approving).
pub const MAX_BACKOFF_INTERVAL: u64 = 60;
/// Bounds on what a provider may hand out, so that a broken answer cannot make the device wait
/// for days or poll a code forever.
const MAX_EXPIRES_IN: u64 = 24 * 3600;
const MAX_INTERVAL: u64 = 3600;

/// The provider's answer to a device authorization request (RFC 8628 §3.2), checked: what to show
/// the user, and what to poll with.
pub struct DeviceAuthorization {
    device_code: DeviceCode,
    /// What the user types at the verification URI. Never contains control characters (it is
    /// printed to a terminal, where they could rewrite what the user sees).
    pub user_code: String,
    /// Where the user goes (https, or http on a loopback host for a loopback issuer).
    pub verification_uri: Url,
    /// The verification URI with the user code in it, for a link or a QR code (§3.3.1).
    pub verification_uri_complete: Option<Url>,
    /// Seconds the codes live, as the provider said.
    pub expires_in: u64,
    /// The polling interval the provider asked for (5 when it did not say, §3.2).
    pub interval: u64,
    /// When the codes expire by this client's clock (Unix seconds): counted from when the answer
    /// arrived, so never earlier than the provider's own deadline.
    pub expires_at: i64,
    scope: Scope,
}

impl std::fmt::Debug for DeviceAuthorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceAuthorization")
            .field("device_code", &self.device_code)
            .field("user_code", &self.user_code)
            .field("verification_uri", &self.verification_uri.as_str())
            .field("expires_at", &self.expires_at)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl DeviceAuthorization {
    /// The device code: the credential the tokens are handed to.
    pub fn device_code(&self) -> &DeviceCode {
        &self.device_code
    }
    /// The scope requested.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }
}

/// §3.2, read tolerantly: `verification_url` is the name some providers used before the RFC.
#[derive(Deserialize)]
struct RawDeviceAuthorization {
    device_code: String,
    user_code: String,
    #[serde(alias = "verification_url")]
    verification_uri: String,
    #[serde(default)]
    verification_uri_complete: Option<String>,
    expires_in: u64,
    #[serde(default)]
    interval: Option<u64>,
}

/// Where the polling loop reads the time and waits: the system clock and tokio's timer in
/// [`SystemClock`], a fake one in tests.
pub trait PollClock: Send + Sync {
    /// Unix seconds.
    fn now(&self) -> i64;
    fn sleep(&self, wait: Duration) -> impl Future<Output = ()> + Send;
}

/// The real clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl PollClock for SystemClock {
    fn now(&self) -> i64 {
        crate::unix_now()
    }
    fn sleep(&self, wait: Duration) -> impl Future<Output = ()> + Send {
        tokio::time::sleep(wait)
    }
}

/// What one poll of the token endpoint came to (§3.5).
#[derive(Debug)]
enum PollAnswer {
    /// A token response (2xx): its body.
    Tokens(Vec<u8>),
    /// `authorization_pending`.
    Pending,
    /// `slow_down`.
    SlowDown,
    /// `access_denied`.
    Denied,
    /// `expired_token`.
    Expired,
    /// The provider could not be reached, or failed (5xx, 429): try again later, less often.
    Unavailable(Error),
    /// Any other refusal ends the flow (`invalid_grant`, `invalid_client`, `unauthorized_client`…).
    Refused(Error),
}

fn classify(result: Result<Vec<u8>, Error>) -> PollAnswer {
    match result {
        Ok(body) => PollAnswer::Tokens(body),
        Err(Error::Endpoint { error, status, description, endpoint }) => match error.as_str() {
            "authorization_pending" => PollAnswer::Pending,
            "slow_down" => PollAnswer::SlowDown,
            "access_denied" => PollAnswer::Denied,
            "expired_token" => PollAnswer::Expired,
            _ if status >= 500 || status == 429 => {
                PollAnswer::Unavailable(Error::Endpoint { endpoint, status, error, description })
            }
            _ => PollAnswer::Refused(Error::Endpoint { endpoint, status, error, description }),
        },
        Err(e @ Error::Http { .. }) => PollAnswer::Unavailable(e),
        Err(e) => PollAnswer::Refused(e),
    }
}

/// A URI from the provider that a person will open: an absolute http(s) URL, https unless the
/// issuer itself is plain http on a loopback host (development). An http page for an https
/// provider would have the user type a password where the network can read it.
fn person_facing_uri(issuer: &str, field: &str, value: &str) -> Result<Url, Error> {
    let bad = |why: &str| Error::BadDeviceResponse(format!("{field} {why}"));
    let url = Url::parse(value).map_err(|_| bad("is not an absolute URL"))?;
    match url.scheme() {
        "https" => {}
        "http" if crate::discovery::is_loopback_http(issuer) && crate::discovery::is_loopback_host(&url) => {}
        "http" => return Err(bad("is plain http although the provider is not a loopback development issuer")),
        _ => return Err(bad("is not an http(s) URL")),
    }
    Ok(url)
}

impl RawDeviceAuthorization {
    fn check(self, issuer: &str, scope: Scope, now: i64) -> Result<DeviceAuthorization, Error> {
        let bad = |why: String| Error::BadDeviceResponse(why);
        if self.device_code.is_empty() {
            return Err(bad("device_code is empty".into()));
        }
        // Printed to the terminal: a control character could hide or rewrite what the user reads
        // (an escape sequence), so it is refused rather than filtered.
        if self.user_code.is_empty() || self.user_code.len() > 64 || self.user_code.chars().any(char::is_control) {
            return Err(bad(format!(
                "user_code {:?} is not a code a person can type (empty, over 64 bytes, or with control characters)",
                shown(&self.user_code)
            )));
        }
        let verification_uri = person_facing_uri(issuer, "verification_uri", &self.verification_uri)?;
        let verification_uri_complete = self
            .verification_uri_complete
            .as_deref()
            .map(|u| person_facing_uri(issuer, "verification_uri_complete", u))
            .transpose()?;
        if self.expires_in == 0 || self.expires_in > MAX_EXPIRES_IN {
            return Err(bad(format!("expires_in {} is not between 1 and {MAX_EXPIRES_IN} seconds", self.expires_in)));
        }
        let interval = self.interval.unwrap_or(DEFAULT_INTERVAL);
        if interval > MAX_INTERVAL {
            return Err(bad(format!("interval {interval} is over {MAX_INTERVAL} seconds")));
        }
        Ok(DeviceAuthorization {
            device_code: DeviceCode::new(self.device_code),
            user_code: self.user_code,
            verification_uri,
            verification_uri_complete,
            expires_in: self.expires_in,
            // An interval of 0 would poll in a tight loop: at least one second between polls.
            interval: interval.max(1),
            expires_at: now.saturating_add(i64::try_from(self.expires_in).unwrap_or(i64::MAX)),
            scope,
        })
    }
}

impl Client {
    /// Asks the provider's `device_authorization_endpoint` for a pair of codes (RFC 8628 §3.1),
    /// authenticated as this client authenticates at the token endpoint. `resource` names the API
    /// the tokens are for (RFC 8707). `now` is when the request is sent (it dates a client
    /// assertion and starts the codes' lifetime).
    pub async fn start_device_authorization(
        &self,
        scope: Scope,
        resource: Option<&ResourceUri>,
        now: i64,
    ) -> Result<DeviceAuthorization, Error> {
        let endpoint = self.metadata.endpoint("device_authorization_endpoint")?;
        let scope_s = scope.to_string();
        let mut form = vec![("scope", scope_s.as_str())];
        if let Some(r) = resource {
            form.push(("resource", r.as_str()));
        }
        // No DPoP proof: RFC 9449 defines none for this endpoint; the polls carry one, and the
        // tokens are bound to the key that signed the successful poll.
        let body = post_form(&self.caller(false), "device authorization endpoint", &endpoint, &form, now).await?;
        let raw: RawDeviceAuthorization = serde_json::from_slice(&body)
            .map_err(|e| Error::BadDeviceResponse(format!("not a device authorization response: {e}")))?;
        raw.check(&self.metadata.issuer, scope, now)
    }

    /// Polls the token endpoint until the user has answered (RFC 8628 §3.4-3.5), waiting the
    /// interval before each poll, and returns the validated tokens. Stops with
    /// [`Error::DeviceDenied`], [`Error::DeviceExpired`] (the provider's `expired_token`, or the
    /// codes' lifetime passed by `clock`), or the provider's other refusal. With DPoP, every poll
    /// carries a proof and the tokens must come back bound to the key.
    pub async fn poll_device_authorization(
        &self,
        device: &DeviceAuthorization,
        clock: &impl PollClock,
    ) -> Result<TokenSet, Error> {
        let endpoint = self.metadata.endpoint("token_endpoint")?;
        let expired = || Error::DeviceExpired { expires_in: device.expires_in };
        let mut interval = device.interval;
        loop {
            // A poll after the deadline can only be answered `expired_token`: our deadline is
            // counted from when the answer arrived, so it is never before the provider's.
            if clock.now().saturating_add(i64::try_from(interval).unwrap_or(i64::MAX)) > device.expires_at {
                return Err(expired());
            }
            clock.sleep(Duration::from_secs(interval)).await;
            let now = clock.now();
            let form = [("grant_type", DEVICE_CODE_GRANT), ("device_code", device.device_code.expose_secret())];
            let sent = post_form(&self.caller(true), "token endpoint", &endpoint, &form, now).await;
            match classify(sent) {
                PollAnswer::Tokens(body) => return self.device_tokens(&body, device, clock.now()).await,
                PollAnswer::Pending => {}
                PollAnswer::SlowDown => {
                    interval = interval.saturating_add(SLOW_DOWN_STEP);
                    tracing::debug!(interval, "slow_down: polling less often (RFC 8628 §3.5)");
                }
                PollAnswer::Denied => return Err(Error::DeviceDenied),
                PollAnswer::Expired => return Err(expired()),
                PollAnswer::Unavailable(e) => {
                    // §3.5: "clients MUST unilaterally reduce their polling frequency before
                    // retrying"; doubling is what it recommends.
                    interval = interval.saturating_mul(2).min(MAX_BACKOFF_INTERVAL.max(interval));
                    tracing::warn!("{e}; trying again in {interval} seconds");
                }
                PollAnswer::Refused(e) => return Err(e),
            }
        }
    }

    async fn device_tokens(&self, body: &[u8], device: &DeviceAuthorization, now: i64) -> Result<TokenSet, Error> {
        let (raw, token_type) = RawTokenResponse::parse(body, self.dpop.is_some())?;
        let scope = raw.scope_or(&device.scope)?;
        // No nonce was sent (there is no authorization request): the id_token is checked for
        // everything else, `at_hash` included.
        let id_claims = match &raw.id_token {
            Some(t) => Some(self.validate_id_token(t, None, Some(&raw.access_token), None, now).await?),
            None => None,
        };
        Ok(self.token_set(raw, token_type, scope, id_claims, now))
    }
}

#[cfg(test)]
#[path = "device_tests.rs"]
mod tests;
