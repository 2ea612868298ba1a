//! Sending logout tokens (OpenID Connect Back-Channel Logout 1.0 §2.5): `POST` to the client's
//! `backchannel_logout_uri` with the form `logout_token=…`, on reqwest with rustls.
//!
//! - 200 or 204 is delivered (§2.8 names 200; 204 is what many clients answer). Anything else,
//!   and a timeout or a refused connection, is retried by the outbox with its back-off: a client
//!   down for maintenance is told when it is back.
//! - Redirects are not followed (a 3xx is a failure): the token is for the registered URI only.
//! - A short timeout (10 s; 5 s for a client nobody vetted): the worker performs jobs one after
//!   another, and a client that never answers must not hold up the others for long.
//! - A client nobody vetted (self-registered) is reached only at public addresses, as a client
//!   ID metadata document is fetched (`cimd_fetch`): our resolver hands reqwest only addresses
//!   `cimd::address` allows, and an IP-literal host is checked before the request. Otherwise a
//!   stranger could register `https://10.0.0.5/admin/reset` and make the server POST into its
//!   own network at every logout. An administrator's clients may use any address (an internal
//!   relying party is normal), and http to a loopback host for development.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use latchkey_core::backchannel::LogoutDelivery;
use latchkey_core::cimd::address;
use latchkey_core::outbox::{Deliver, DeliveryError};

use crate::cimd_fetch::{GuardedResolver, refusal};

/// The whole exchange: connection, TLS, request and response headers.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// The same for a client nobody vetted: the worker performs jobs one after another, so a
/// stranger's endpoint that never answers must not hold it long.
pub const UNVETTED_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The https client that POSTs logout tokens.
#[derive(Clone)]
pub struct LogoutSender {
    /// For clients an administrator registered.
    vetted: reqwest::Client,
    /// For the others: public addresses only.
    guarded: reqwest::Client,
}

impl std::fmt::Debug for LogoutSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogoutSender").finish_non_exhaustive()
    }
}

fn builder(timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(CONNECT_TIMEOUT.min(timeout))
        .user_agent(concat!("latchkey/", env!("CARGO_PKG_VERSION"), " (back-channel logout)"))
}

impl LogoutSender {
    pub fn new() -> anyhow::Result<Self> {
        Self::with_timeout(SEND_TIMEOUT)
    }

    pub fn with_timeout(timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            vetted: builder(timeout).build()?,
            // No proxy from the environment: it would resolve the name itself, past our guard.
            guarded: builder(timeout.min(UNVETTED_TIMEOUT))
                .https_only(true)
                .no_proxy()
                .dns_resolver(Arc::new(GuardedResolver { allow_loopback: false }))
                .build()?,
        })
    }

    /// One attempt. A permanent failure (an address no self-registered client may use) is not
    /// retried; every other failure is.
    pub async fn send(&self, d: &LogoutDelivery) -> Result<(), DeliveryError> {
        let url = url::Url::parse(&d.uri).map_err(|_| {
            DeliveryError::permanent(format!("the stored backchannel_logout_uri {} is not a URL", d.uri))
        })?;
        let client = if d.vetted {
            &self.vetted
        } else {
            // reqwest connects to an IP literal without asking the resolver: check it here.
            let literal = match url.host() {
                Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
                Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
                _ => None,
            };
            if let Some(ip) = literal {
                address::allowed(ip, false).map_err(|kind| {
                    DeliveryError::permanent(format!(
                        "{}: {ip} is a {} address, which a self-registered client's logout URI may not reach",
                        d.uri,
                        kind.as_str()
                    ))
                })?;
            }
            &self.guarded
        };
        let res = client.post(url).form(&[("logout_token", d.logout_token.as_str())]).send().await.map_err(|e| {
            if let Some(r) = refusal(&e) {
                return DeliveryError::permanent(format!("{}: {r:?}", d.uri));
            }
            if e.is_timeout() {
                return DeliveryError::transient(format!("{}: no answer in time", d.uri));
            }
            // The innermost cause says most (connection refused, certificate unknown...).
            let mut inner: &(dyn std::error::Error + 'static) = &e;
            while let Some(s) = inner.source() {
                inner = s;
            }
            let mut why = inner.to_string();
            why.truncate(200);
            DeliveryError::transient(format!("{}: {why}", d.uri))
        })?;
        match res.status().as_u16() {
            200 | 204 => Ok(()),
            s if (300..400).contains(&s) => {
                Err(DeliveryError::transient(format!("{}: answered {s}; redirects are not followed", d.uri)))
            }
            s => Err(DeliveryError::transient(format!("{}: answered {s}, not 200", d.uri))),
        }
    }
}

/// The transports of `latchkey serve`'s outbox worker: mail through `mail` (the configured SMTP
/// transport), logout tokens through `logouts`.
pub struct Transports {
    pub mail: Arc<dyn Deliver>,
    pub logouts: LogoutSender,
}

#[async_trait]
impl Deliver for Transports {
    async fn send_mail(&self, mail: &latchkey_core::mail::Mail) -> Result<(), DeliveryError> {
        self.mail.send_mail(mail).await
    }
    async fn post_logout_token(&self, d: &LogoutDelivery) -> Result<(), DeliveryError> {
        self.logouts.send(d).await
    }
}
