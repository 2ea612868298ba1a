//! The refresh grace window's cached reply.
//!
//! When a refresh token is rotated, the response is kept with the spent token so that a retry
//! (two tabs, a lost response, a network retry) within the grace window receives the very same
//! successor tokens, not a fresh pair and not a family revocation. The reply holds live tokens,
//! so it is sealed with AES-256-GCM under a key derived from the spent refresh token itself,
//! which the server never stores: a database dump cannot open it, only the holder of the token can.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use latchkey_proto::RefreshToken;
use latchkey_proto::metadata::TokenResponse;

fn key(token: &RefreshToken) -> anyhow::Result<LessSafeKey> {
    // The token has 256 bits of entropy, so one hash with a domain separator is a sound KDF.
    let mut input = b"latchkey refresh grace v1\0".to_vec();
    input.extend_from_slice(token.expose_secret().as_bytes());
    let k = UnboundKey::new(&AES_256_GCM, digest(&SHA256, &input).as_ref()).map_err(|_| anyhow::anyhow!("aead key"))?;
    Ok(LessSafeKey::new(k))
}

pub fn seal(token: &RefreshToken, response: &TokenResponse) -> anyhow::Result<Vec<u8>> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new().fill(&mut nonce).map_err(|_| anyhow::anyhow!("rng"))?;
    let mut data = serde_json::to_vec(response)?;
    key(token)?
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut data)
        .map_err(|_| anyhow::anyhow!("seal"))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&data);
    Ok(out)
}

/// `None` if the blob does not open with this token (it was sealed for another one, or tampered with).
pub fn open(token: &RefreshToken, sealed: &[u8]) -> Option<TokenResponse> {
    if sealed.len() < NONCE_LEN {
        return None;
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let mut data = rest.to_vec();
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let plain = key(token).ok()?.open_in_place(nonce, Aad::empty(), &mut data).ok()?;
    serde_json::from_slice(plain).ok()
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
        let sealed = seal(&t, &r).unwrap();
        assert!(!String::from_utf8_lossy(&sealed).contains("next"), "sealed, not plain");
        assert_eq!(open(&t, &sealed).unwrap().refresh_token.as_deref(), Some("next"));
        assert!(open(&RefreshToken::new("another"), &sealed).is_none());
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(open(&t, &tampered).is_none());
    }
}
