//! The OAuth 2.1 / OpenID Connect wire model.
//!
//! Everything that arrives from the network is parsed here into validated newtypes before any decision
//! is made about it; everything that leaves (error codes, token responses, metadata) has its one wire
//! form here. This crate knows nothing of HTTP frameworks, SQL or async runtimes.

pub mod claims;
pub mod client_assertion;
pub mod discovery;
pub mod dpop;
pub mod error;
pub mod jose;
pub mod metadata;
pub mod params;
pub mod pkce;
pub mod registration;
pub mod resource;
pub mod secret;
pub mod token;
pub mod types;

pub use claims::ClaimsRequest;
pub use error::{ErrorCode, OAuthError};
pub use params::Params;
pub use pkce::{CodeChallenge, CodeVerifier};
pub use resource::ResourceUri;
pub use secret::{
    AuthorizationCode, ClientSecret, DeviceCode, PartialSignInToken, Password, RefreshToken, SessionToken, TokenHash,
};
pub use token::{ClientAuth, GrantRequest, TokenRequest};
pub use types::{ClientId, Nonce, RedirectUri, Scope, State};
