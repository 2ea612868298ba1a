//! The refresh grace window's cached reply.
//!
//! When a refresh token is rotated, the response is kept with the spent token so that a retry
//! (two tabs, a lost response, a network retry) within the grace window receives the very same
//! successor tokens, not a fresh pair and not a family revocation. The reply holds live tokens,
//! so it is sealed with AES-256-GCM under a key derived from the spent refresh token itself,
//! which the server never stores: a database dump cannot open it, only the holder of the token can.
//!
//! The reply is sealed together with a fingerprint of the request that produced it
//! ([`RequestFingerprint`]). A retry gets the reply only if it is the same request: the same client
//! and the same resulting scope. A retry that asks for another scope would otherwise receive tokens
//! it did not ask for (review finding 14).

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use latchkey_proto::RefreshToken;
use latchkey_proto::metadata::TokenResponse;
use serde::{Deserialize, Serialize};

/// What the first use of a refresh token asked for. A retry within the grace window receives the
/// cached reply only if its own fingerprint is equal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestFingerprint {
    /// The authenticated client. (The grant's client is checked before, so this always matches
    /// today; it is kept so that the fingerprint alone says whose request it was.)
    pub client_id: String,
    /// The scope the reply was issued for: the requested scope, or the token's whole scope when
    /// none was requested, in canonical (sorted) form.
    pub scope: String,
    /// The hook for sender-constrained tokens: the JWK SHA-256 thumbprint (RFC 9449 §6.1 `jkt`) of
    /// the DPoP key the first use was bound to. Always `None` until DPoP is supported; then a retry
    /// must prove possession of the same key, so that a stolen spent token alone gets nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_jkt: Option<String>,
}

/// The sealed plaintext.
#[derive(Deserialize)]
struct Cached {
    request: RequestFingerprint,
    response: TokenResponse,
}

/// [`Cached`], borrowed for sealing.
#[derive(Serialize)]
struct CachedRef<'a> {
    request: &'a RequestFingerprint,
    response: &'a TokenResponse,
}

fn key(token: &RefreshToken) -> anyhow::Result<LessSafeKey> {
    // The token has 256 bits of entropy, so one hash with a domain separator is a sound KDF.
    let mut input = b"latchkey refresh grace v1\0".to_vec();
    input.extend_from_slice(token.expose_secret().as_bytes());
    let k = UnboundKey::new(&AES_256_GCM, digest(&SHA256, &input).as_ref()).map_err(|_| anyhow::anyhow!("aead key"))?;
    Ok(LessSafeKey::new(k))
}

pub fn seal(token: &RefreshToken, request: &RequestFingerprint, response: &TokenResponse) -> anyhow::Result<Vec<u8>> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new().fill(&mut nonce).map_err(|_| anyhow::anyhow!("rng"))?;
    let mut data = serde_json::to_vec(&CachedRef { request, response })?;
    key(token)?
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut data)
        .map_err(|_| anyhow::anyhow!("seal"))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&data);
    Ok(out)
}

/// The request fingerprint and the reply; `None` if the blob does not open with this token (it was
/// sealed for another one, or tampered with). A reply sealed by an older version, without a
/// fingerprint, comes with `None` as its fingerprint.
pub fn open(token: &RefreshToken, sealed: &[u8]) -> Option<(Option<RequestFingerprint>, TokenResponse)> {
    if sealed.len() < NONCE_LEN {
        return None;
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let mut data = rest.to_vec();
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let plain = key(token).ok()?.open_in_place(nonce, Aad::empty(), &mut data).ok()?;
    match serde_json::from_slice::<Cached>(plain) {
        Ok(c) => Some((Some(c.request), c.response)),
        // Sealed before fingerprints existed (at most one grace window during an upgrade).
        Err(_) => serde_json::from_slice(plain).ok().map(|r| (None, r)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_spent_token_opens_its_reply() {
        let t = RefreshToken::new("old-refresh-token-value");
        let r = TokenResponse {
            access_token: "at".into(),
            token_type: "Bearer".into(),
            expires_in: 600,
            refresh_token: Some("next".into()),
            id_token: None,
            scope: "openid".into(),
        };
        let fp = RequestFingerprint { client_id: "spa".into(), scope: "openid".into(), dpop_jkt: None };
        let sealed = seal(&t, &fp, &r).unwrap();
        assert!(!String::from_utf8_lossy(&sealed).contains("next"), "sealed, not plain");
        let (request, reply) = open(&t, &sealed).unwrap();
        assert_eq!(reply.refresh_token.as_deref(), Some("next"));
        assert_eq!(request, Some(fp));
        assert!(open(&RefreshToken::new("another"), &sealed).is_none());
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(open(&t, &tampered).is_none());
    }
}
