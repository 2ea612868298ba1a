//! The authorization server's decisions.
//!
//! Every function here takes the current time as a parameter (`now`, Unix seconds) and reaches
//! storage only through the [`Store`] trait, so the protocol rules are testable without sockets,
//! clocks or a database. This crate knows nothing of HTTP frameworks or SQL.

pub mod account;
pub mod account_store;
pub mod admin;
pub mod audit;
pub mod authn;
pub mod authorize;
pub mod backchannel;
pub mod cimd;
pub mod claims;
pub mod client_keys;
pub mod cors;
pub mod device;
pub mod device_grant;
pub mod dpop;
pub mod email_link;
pub mod error;
pub mod factors;
pub mod grant;
pub mod introspect;
pub mod keys;
pub mod logout;
pub mod mail;
pub mod outbox;
pub mod par;
pub mod passkey;
pub mod password;
pub mod profile;
pub mod protection;
pub mod provider;
pub mod pushed;
pub mod registration;
pub mod replay;
pub mod reset;
pub mod resource;
pub mod revoke;
pub mod server_key;
pub mod sessions;
pub mod signup;
pub mod store;
pub mod throttle;
pub mod userinfo;
pub mod verification;

pub use error::Error;
pub use provider::{Provider, ProviderConfig};
pub use store::Store;

/// Seconds since the Unix epoch. The only clock read is in the binary's wiring (`Clock::system`).
pub type UnixTime = i64;

/// Where "now" comes from: the system clock in production, a fixed or stepped value in tests.
#[derive(Clone)]
pub struct Clock(std::sync::Arc<dyn Fn() -> UnixTime + Send + Sync>);

impl Clock {
    pub fn system() -> Self {
        Self(std::sync::Arc::new(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as UnixTime)
                .unwrap_or(0)
        }))
    }
    pub fn from_fn(f: impl Fn() -> UnixTime + Send + Sync + 'static) -> Self {
        Self(std::sync::Arc::new(f))
    }
    pub fn now(&self) -> UnixTime {
        (self.0)()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}
