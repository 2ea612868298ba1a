//! The server's own MAC key, for values it hands out and must recognise later (CSRF tokens,
//! known-device cookies). One random secret kept in the store (`Store::server_secret`), so every
//! instance that shares the database agrees, and independent of the signing keys, so a key
//! rotation voids nothing. Each use gets its own key, derived by purpose: a MAC made for one can
//! never pass as another.

use aws_lc_rs::hmac;

/// The name the secret is kept under in the store.
pub const SECRET_NAME: &str = "server-mac-v1";

pub struct ServerKey(hmac::Key);

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerKey(<redacted>)")
    }
}

impl ServerKey {
    pub fn new(secret: &[u8]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    fn for_purpose(&self, purpose: &str) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, hmac::sign(&self.0, purpose.as_bytes()).as_ref())
    }

    /// HMAC-SHA256 of `message` under this server's key for `purpose`.
    pub fn mac(&self, purpose: &str, message: &[u8]) -> hmac::Tag {
        hmac::sign(&self.for_purpose(purpose), message)
    }

    /// Whether `tag` is the MAC of `message` for `purpose`, compared in constant time.
    pub fn verify(&self, purpose: &str, message: &[u8], tag: &[u8]) -> bool {
        hmac::verify(&self.for_purpose(purpose), message, tag).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mac_is_bound_to_its_key_and_purpose() {
        let k = ServerKey::new(b"0123456789abcdef0123456789abcdef");
        let tag = k.mac("csrf", b"nonce");
        assert!(k.verify("csrf", b"nonce", tag.as_ref()));
        assert!(!k.verify("device", b"nonce", tag.as_ref()), "another purpose");
        assert!(!k.verify("csrf", b"other", tag.as_ref()));
        assert!(!ServerKey::new(b"another deployment's secret key!").verify("csrf", b"nonce", tag.as_ref()));
    }
}
