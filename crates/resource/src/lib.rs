//! Accept OAuth 2.1 access tokens in a Rust API.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use latchkey_resource::{Claims, Verifier};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let verifier = Verifier::builder("https://id.example").audience("https://api.example").build()?;
//! let app: Router = Router::new()
//!     .route("/notes", get(|c: Claims| async move { format!("notes of {}", c.sub) })
//!         .route_layer(verifier.require("notes:read")))
//!     .route("/health", get(|| async { "ok" }));
//! # Ok(()) }
//! ```
//!
//! A token is accepted only if (RFC 9068 §4, RFC 8725): its JWS algorithm is asymmetric and
//! allowed (never `none`, never HMAC); its `typ` is `at+jwt`; its signature verifies with the
//! issuer's key named by `kid` (the JWKS is fetched from discovery, cached, refetched on an unknown
//! `kid` at most once per interval, and kept while the issuer is unreachable); `iss` is the issuer;
//! `aud` contains this API; `exp`/`nbf`/`iat` hold within a small leeway. No network round trip
//! per request. Refusals follow RFC 6750 §3 ([`Refusal`]). An introspection mode (RFC 7662) asks
//! the issuer instead, for APIs that must see revocation at once.
//!
//! DPoP-bound tokens (RFC 9449 §7) are accepted with `Authorization: DPoP <token>` and a proof
//! in the `DPoP` header ([`DpopMode`]): the proof's method, URL (the configured
//! [`VerifierBuilder::external_url`] plus the request's path), age, `ath` and key (the token's
//! `cnf.jkt`) are checked, its `jti` is refused a second time, and nonces can be required. A
//! bound token sent as Bearer is always refused.
//!
//! This crate knows nothing of the Latchkey server; it works with any compliant issuer.

mod bearer;
mod claims;
mod dpop;
mod introspection;
mod middleware;
pub mod prm;
mod refusal;
mod verifier;

pub use bearer::{Scheme, bearer_token};
pub use claims::Claims;
pub use dpop::DpopMode;
pub use middleware::{RequireToken, RequireTokenLayer};
pub use prm::ProtectedResourceMetadata;
pub use refusal::{Challenge, Refusal, TokenError};
pub use verifier::{ConfigError, Verifier, VerifierBuilder};

pub use jsonwebtoken::Algorithm;
pub use latchkey_proto::{ClientSecret, Scope};

/// Where "now" comes from, in Unix seconds: the system clock, or one a test moves.
#[derive(Clone)]
pub struct Clock(std::sync::Arc<dyn Fn() -> i64 + Send + Sync>);

impl Clock {
    pub fn system() -> Self {
        Self(std::sync::Arc::new(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
        }))
    }
    pub fn from_fn(f: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        Self(std::sync::Arc::new(f))
    }
    pub fn now(&self) -> i64 {
        (self.0)()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}
