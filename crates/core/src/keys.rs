//! Signing keys: generation, the JWKS, JWS signing and verification of our own tokens.
//!
//! Signing uses aws-lc-rs directly with the parsed key pair kept in memory (parsing and checking an
//! RSA key costs more than the signature itself); verification uses `jsonwebtoken`.

use anyhow::{Context, anyhow};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Serialize, de::DeserializeOwned};

use crate::UnixTime;
use crate::store::KeyRecord;

/// RS256 is the algorithm OpenID Connect requires every provider to support (Core §15.1).
pub const RS256: &str = "RS256";

/// One RSA signing key, parsed once.
pub struct SigningKey {
    pub kid: String,
    pair: RsaKeyPair,
    decoding: DecodingKey,
    jwk: serde_json::Value,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A new RSA-2048 key. `kid` is the RFC 7638 thumbprint, so it is stable and unique per key.
    pub fn generate(now: UnixTime) -> anyhow::Result<KeyRecord> {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| anyhow!("RSA key generation failed"))?;
        let der = pair.as_der().map_err(|_| anyhow!("RSA key encoding failed"))?;
        let key = Self::from_pkcs8("pending".into(), der.as_ref())?;
        Ok(KeyRecord {
            kid: key.thumbprint(),
            alg: RS256.into(),
            private_pkcs8_b64: STANDARD.encode(der.as_ref()),
            created_at: now,
            active: true,
        })
    }

    pub fn from_record(r: &KeyRecord) -> anyhow::Result<Self> {
        if r.alg != RS256 {
            return Err(anyhow!("signing key {} has unsupported alg {}", r.kid, r.alg));
        }
        let der = STANDARD.decode(&r.private_pkcs8_b64).context("signing key is not base64")?;
        Self::from_pkcs8(r.kid.clone(), &der)
    }

    fn from_pkcs8(kid: String, der: &[u8]) -> anyhow::Result<Self> {
        let pair = RsaKeyPair::from_pkcs8(der).map_err(|e| anyhow!("invalid RSA private key: {e}"))?;
        let public = pair.public_key();
        let n = URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero());
        let e = URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero());
        let decoding = DecodingKey::from_rsa_components(&n, &e).context("RSA public key")?;
        let jwk = serde_json::json!({ "kty": "RSA", "use": "sig", "alg": RS256, "kid": kid, "n": n, "e": e });
        Ok(Self { kid, pair, decoding, jwk })
    }

    /// RFC 7638 JWK thumbprint (SHA-256 over the required members in lexicographic order).
    fn thumbprint(&self) -> String {
        let canonical = format!(
            r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
            self.jwk["e"].as_str().unwrap_or(""),
            self.jwk["n"].as_str().unwrap_or("")
        );
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
        URL_SAFE_NO_PAD.encode(digest.as_ref())
    }

    /// A compact JWS (RFC 7515 §7.1) with header `{"alg":"RS256","kid":…,"typ":typ}`.
    pub fn sign<C: Serialize>(&self, typ: &str, claims: &C) -> anyhow::Result<String> {
        let header = serde_json::json!({ "alg": RS256, "kid": self.kid, "typ": typ });
        let mut input = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?);
        input.push('.');
        input.push_str(&URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims)?));
        let mut sig = vec![0u8; self.pair.public_modulus_len()];
        self.pair
            .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), input.as_bytes(), &mut sig)
            .map_err(|_| anyhow!("RSA signing failed"))?;
        input.push('.');
        input.push_str(&URL_SAFE_NO_PAD.encode(&sig));
        Ok(input)
    }
}

/// All keys the server knows: the newest active one signs, every one is published and verifies.
#[derive(Debug)]
pub struct KeySet {
    keys: Vec<SigningKey>,
}

/// Why a token of ours did not verify. Mapped to `invalid_token` descriptions by the caller.
#[derive(Debug, PartialEq, Eq)]
pub enum VerifyError {
    Malformed,
    UnknownKey,
    BadSignature,
    WrongType,
}

impl KeySet {
    pub fn from_records(records: &[KeyRecord]) -> anyhow::Result<Self> {
        let mut sorted: Vec<&KeyRecord> = records.iter().collect();
        sorted.sort_by_key(|r| std::cmp::Reverse((r.active, r.created_at)));
        let keys = sorted.into_iter().map(SigningKey::from_record).collect::<anyhow::Result<Vec<_>>>()?;
        if keys.is_empty() {
            return Err(anyhow!("no signing key"));
        }
        Ok(Self { keys })
    }

    pub fn signer(&self) -> &SigningKey {
        &self.keys[0]
    }

    /// The JWK Set document (RFC 7517 §5): public parts only.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({ "keys": self.keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() })
    }

    /// Verifies signature, `alg` (RS256 only: never `none`, never HMAC) and `typ` of one of our
    /// tokens. Claims such as `exp`, `iss` and `aud` are checked by the caller against `now`.
    pub fn verify<C: DeserializeOwned>(&self, token: &str, typ: &str) -> Result<C, VerifyError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Malformed)?;
        if header.alg != Algorithm::RS256 {
            return Err(VerifyError::BadSignature);
        }
        if header.typ.as_deref() != Some(typ) {
            return Err(VerifyError::WrongType);
        }
        let kid = header.kid.ok_or(VerifyError::UnknownKey)?;
        let key = self.keys.iter().find(|k| k.kid == kid).ok_or(VerifyError::UnknownKey)?;
        let mut v = Validation::new(Algorithm::RS256);
        // Time is checked by the caller against its `now`, not the system clock.
        v.validate_exp = false;
        v.validate_aud = false;
        v.required_spec_claims.clear();
        jsonwebtoken::decode::<C>(token, &key.decoding, &v).map(|d| d.claims).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => VerifyError::BadSignature,
            _ => VerifyError::Malformed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_jwks() {
        let rec = SigningKey::generate(1).unwrap();
        let set = KeySet::from_records(std::slice::from_ref(&rec)).unwrap();
        let token = set.signer().sign("at+jwt", &serde_json::json!({"sub": "u1"})).unwrap();
        let claims: serde_json::Value = set.verify(&token, "at+jwt").unwrap();
        assert_eq!(claims["sub"], "u1");
        assert_eq!(set.verify::<serde_json::Value>(&token, "JWT").unwrap_err(), VerifyError::WrongType);
        // A flipped signature byte fails.
        let mut bad = token.clone().into_bytes();
        let i = bad.len() - 5;
        bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            set.verify::<serde_json::Value>(std::str::from_utf8(&bad).unwrap(), "at+jwt").unwrap_err(),
            VerifyError::BadSignature
        );
        let jwks = set.jwks();
        assert_eq!(jwks["keys"][0]["kid"], rec.kid.as_str());
        assert!(jwks["keys"][0].get("d").is_none(), "no private part");
        assert!(!format!("{:?}", set).contains(&rec.private_pkcs8_b64));
    }

    #[test]
    fn alg_none_is_refused() {
        let rec = SigningKey::generate(1).unwrap();
        let set = KeySet::from_records(std::slice::from_ref(&rec)).unwrap();
        let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"none","typ":"at+jwt","kid":"{}"}}"#, rec.kid));
        let body = URL_SAFE_NO_PAD.encode(r#"{"sub":"x"}"#);
        assert!(set.verify::<serde_json::Value>(&format!("{header}.{body}."), "at+jwt").is_err());
    }
}
