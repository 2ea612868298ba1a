//! Secrets as types: redacted `Debug`, constant-time comparison, hashing for storage.
//!
//! A value of these types is never logged and never placed in an error description. Only its
//! [`TokenHash`] is stored, so a database dump does not hand out live credentials.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A fresh random token: 32 bytes from the OS CSPRNG, base64url without padding (43 characters).
/// 256 bits make guessing any live code, token or session infeasible (RFC 6749 §10.10).
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// SHA-256 of a high-entropy token, base64url. Used as the storage key of codes, refresh tokens and
/// sessions. A plain hash (no salt, no stretching) is right here because the input has 256 bits of
/// entropy; passwords and client secrets chosen by people use Argon2id instead.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct TokenHash(String);

impl TokenHash {
    pub fn of(value: &str) -> Self {
        Self(URL_SAFE_NO_PAD.encode(Sha256::digest(value.as_bytes())))
    }
    pub fn from_stored(s: String) -> Self {
        Self(s)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! secret_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name(String);

        impl $name {
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }
            /// The secret value itself. Dangerous: whatever receives it can act as its holder.
            /// Use it only to put the value on the wire to its owner or to hash it; never log it.
            pub fn expose_secret(&self) -> &str {
                &self.0
            }
            /// The storage key for this value.
            pub fn hash(&self) -> TokenHash {
                TokenHash::of(&self.0)
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), "([redacted])"))
            }
        }

        /// Constant-time: comparing secrets must not reveal how long a matching prefix is.
        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
            }
        }
        impl Eq for $name {}
    };
}

secret_type!(
    /// An authorization code (RFC 6749 §4.1.2).
    AuthorizationCode
);
secret_type!(
    /// An opaque refresh token (RFC 6749 §1.5).
    RefreshToken
);
secret_type!(
    /// The device code of the device authorization grant (RFC 8628 §3.2): what the device polls
    /// with, the credential the tokens are handed to.
    DeviceCode
);
secret_type!(
    /// A confidential client's secret (RFC 6749 §2.3.1).
    ClientSecret
);
secret_type!(
    /// A user's password, as typed into the login form.
    Password
);
secret_type!(
    /// The value of the browser session cookie.
    SessionToken
);
secret_type!(
    /// A signed access token (a JWT, RFC 9068) as presented by a client.
    AccessToken
);

secret_type!(
    /// An RFC 7592 registration access token: manages one self-registered client's registration.
    RegistrationAccessToken
);

secret_type!(
    /// The value of the partial sign-in cookie: the browser that gave the password, waiting for
    /// its second factor.
    PartialSignInToken
);

impl PartialSignInToken {
    pub fn generate() -> Self {
        Self(random_token())
    }
}

impl RegistrationAccessToken {
    pub fn generate() -> Self {
        Self(random_token())
    }
}

impl AuthorizationCode {
    pub fn generate() -> Self {
        Self(random_token())
    }
}
impl RefreshToken {
    pub fn generate() -> Self {
        Self(random_token())
    }
}
impl SessionToken {
    pub fn generate() -> Self {
        Self(random_token())
    }
}
impl ClientSecret {
    pub fn generate() -> Self {
        Self(random_token())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = RefreshToken::new("super-secret-value");
        assert_eq!(format!("{s:?}"), "RefreshToken([redacted])");
        assert!(!format!("{:?}", Password::new("hunter2")).contains("hunter2"));
    }

    #[test]
    fn equality_compares_values() {
        assert_eq!(ClientSecret::new("abc"), ClientSecret::new("abc"));
        assert_ne!(ClientSecret::new("abc"), ClientSecret::new("abd"));
        assert_ne!(ClientSecret::new("abc"), ClientSecret::new("abcd"));
    }

    #[test]
    fn random_tokens_are_43_chars_and_distinct() {
        let a = random_token();
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_token());
    }

    #[test]
    fn hash_is_stable_and_not_the_value() {
        let c = AuthorizationCode::new("code-1");
        assert_eq!(c.hash(), TokenHash::of("code-1"));
        assert_ne!(c.hash().as_str(), "code-1");
    }
}
