//! Signing keys: generation, rotation, the JWKS, JWS signing and verification of our own tokens.
//!
//! Signing uses aws-lc-rs directly with each parsed key pair kept in memory (parsing and checking
//! an RSA key costs more than the signature itself); verification uses `jsonwebtoken`.
//! There is one active key per algorithm. A rotated-out key stays published until every token it
//! signed has expired, so verifiers never meet a `kid` they cannot resolve.

use anyhow::{Context, anyhow};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::json;

use crate::UnixTime;
use crate::store::{KeyRecord, SigningAlg};

enum Pair {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// One signing key, parsed once.
pub struct SigningKey {
    pub kid: String,
    pub alg: SigningAlg,
    pub created_at: UnixTime,
    pub active: bool,
    pub retired_at: Option<UnixTime>,
    pair: Pair,
    decoding: DecodingKey,
    jwk: serde_json::Value,
    /// HMAC-SHA256 keyed with the private PKCS#8: the root of [`SigningKey::mac`].
    derive: aws_lc_rs::hmac::Key,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).field("alg", &self.alg).finish_non_exhaustive()
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl SigningKey {
    /// A new key: RSA-2048, ECDSA P-256 or Ed25519. `kid` is the RFC 7638 thumbprint.
    pub fn generate(alg: SigningAlg, now: UnixTime) -> anyhow::Result<KeyRecord> {
        let der: Vec<u8> = match alg {
            SigningAlg::RS256 => {
                let pair = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| anyhow!("RSA key generation failed"))?;
                pair.as_der().map_err(|_| anyhow!("RSA key encoding failed"))?.as_ref().to_vec()
            }
            SigningAlg::ES256 => EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                .and_then(|p| p.to_pkcs8v1())
                .map_err(|_| anyhow!("P-256 key generation failed"))?
                .as_ref()
                .to_vec(),
            SigningAlg::EdDSA => Ed25519KeyPair::generate()
                .and_then(|p| p.to_pkcs8v1())
                .map_err(|_| anyhow!("Ed25519 key generation failed"))?
                .as_ref()
                .to_vec(),
        };
        let key = Self::parse(String::new(), alg, &der, now, true, None)?;
        Ok(KeyRecord {
            kid: key.thumbprint(),
            alg: alg.as_str().into(),
            private_pkcs8_b64: STANDARD.encode(&der),
            created_at: now,
            active: true,
            retired_at: None,
        })
    }

    pub fn from_record(r: &KeyRecord) -> anyhow::Result<Self> {
        let alg =
            SigningAlg::parse(&r.alg).ok_or_else(|| anyhow!("signing key {} has unsupported alg {}", r.kid, r.alg))?;
        let der = STANDARD.decode(&r.private_pkcs8_b64).context("signing key is not base64")?;
        Self::parse(r.kid.clone(), alg, &der, r.created_at, r.active, r.retired_at)
    }

    fn parse(
        kid: String,
        alg: SigningAlg,
        der: &[u8],
        created_at: UnixTime,
        active: bool,
        retired_at: Option<UnixTime>,
    ) -> anyhow::Result<Self> {
        let (pair, decoding, jwk) = match alg {
            SigningAlg::RS256 => {
                let pair = RsaKeyPair::from_pkcs8(der).map_err(|e| anyhow!("invalid RSA private key: {e}"))?;
                let public = pair.public_key();
                let n = b64(public.modulus().big_endian_without_leading_zero());
                let e = b64(public.exponent().big_endian_without_leading_zero());
                let decoding = DecodingKey::from_rsa_components(&n, &e).context("RSA public key")?;
                (Pair::Rsa(pair), decoding, json!({ "kty": "RSA", "n": n, "e": e }))
            }
            SigningAlg::ES256 => {
                let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(|e| anyhow!("invalid P-256 private key: {e}"))?;
                // Uncompressed point: 0x04 || x (32 bytes) || y (32 bytes).
                let point = pair.public_key().as_ref();
                if point.len() != 65 {
                    return Err(anyhow!("unexpected P-256 public key length"));
                }
                let (x, y) = (b64(&point[1..33]), b64(&point[33..]));
                let decoding = DecodingKey::from_ec_components(&x, &y).context("P-256 public key")?;
                (Pair::Ec(pair), decoding, json!({ "kty": "EC", "crv": "P-256", "x": x, "y": y }))
            }
            SigningAlg::EdDSA => {
                let pair = Ed25519KeyPair::from_pkcs8(der).map_err(|e| anyhow!("invalid Ed25519 private key: {e}"))?;
                let x = b64(pair.public_key().as_ref());
                let decoding = DecodingKey::from_ed_components(&x).context("Ed25519 public key")?;
                (Pair::Ed(pair), decoding, json!({ "kty": "OKP", "crv": "Ed25519", "x": x }))
            }
        };
        let derive = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, der);
        let mut key = Self { kid, alg, created_at, active, retired_at, pair, decoding, jwk, derive };
        key.jwk["use"] = json!("sig");
        key.jwk["alg"] = json!(alg.as_str());
        key.jwk["kid"] = json!(key.kid);
        Ok(key)
    }

    /// HMAC-SHA256 of `message` under a secret derived from this private key for `purpose` only.
    /// Every instance that shares the database computes the same value, with no secret of its own
    /// (the server binds its CSRF tokens with it). HMAC is a PRF: the output reveals nothing about
    /// the key, and each purpose gets an independent key.
    pub fn mac(&self, purpose: &str, message: &[u8]) -> impl AsRef<[u8]> + use<> {
        use aws_lc_rs::hmac;
        let purpose_key = hmac::sign(&self.derive, purpose.as_bytes());
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, purpose_key.as_ref()), message)
    }

    /// RFC 7638 JWK thumbprint: SHA-256 over the required members in lexicographic order.
    fn thumbprint(&self) -> String {
        let j = &self.jwk;
        let s = |k: &str| j[k].as_str().unwrap_or_default().to_owned();
        let canonical = match self.alg {
            SigningAlg::RS256 => format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, s("e"), s("n")),
            SigningAlg::ES256 => format!(r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#, s("x"), s("y")),
            SigningAlg::EdDSA => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, s("x")),
        };
        b64(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes()).as_ref())
    }

    /// A compact JWS (RFC 7515 §7.1) with header `{"alg","kid","typ"}`.
    pub fn sign<C: Serialize>(&self, typ: &str, claims: &C) -> anyhow::Result<String> {
        let header = json!({ "alg": self.alg.as_str(), "kid": self.kid, "typ": typ });
        let mut input = b64(&serde_json::to_vec(&header)?);
        input.push('.');
        input.push_str(&b64(&serde_json::to_vec(claims)?));
        let sig = match &self.pair {
            Pair::Rsa(pair) => {
                let mut sig = vec![0u8; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), input.as_bytes(), &mut sig)
                    .map_err(|_| anyhow!("RSA signing failed"))?;
                sig
            }
            Pair::Ec(pair) => pair
                .sign(&SystemRandom::new(), input.as_bytes())
                .map_err(|_| anyhow!("ECDSA signing failed"))?
                .as_ref()
                .to_vec(),
            Pair::Ed(pair) => pair.sign(input.as_bytes()).as_ref().to_vec(),
        };
        input.push('.');
        input.push_str(&b64(&sig));
        Ok(input)
    }

    fn jws_alg(&self) -> Algorithm {
        match self.alg {
            SigningAlg::RS256 => Algorithm::RS256,
            SigningAlg::ES256 => Algorithm::ES256,
            SigningAlg::EdDSA => Algorithm::EdDSA,
        }
    }
}

/// All keys the server knows.
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
        let mut keys = records.iter().map(SigningKey::from_record).collect::<anyhow::Result<Vec<_>>>()?;
        // Newest first, so the first active key of an algorithm is its signer.
        keys.sort_by_key(|k| std::cmp::Reverse((k.active, k.created_at)));
        Ok(Self { keys })
    }

    /// The active key for `alg`.
    pub fn signer(&self, alg: SigningAlg) -> anyhow::Result<&SigningKey> {
        self.keys
            .iter()
            .find(|k| k.active && k.alg == alg)
            .ok_or_else(|| anyhow!("no active {} signing key", alg.as_str()))
    }

    pub fn keys(&self) -> &[SigningKey] {
        &self.keys
    }

    /// Whether a key is still published at `now`: active, or retired less than `keep` seconds ago
    /// (the longest lifetime of a token it may have signed).
    pub fn published(key: &SigningKey, now: UnixTime, keep: u64) -> bool {
        key.active || key.retired_at.is_some_and(|r| r + keep as UnixTime > now)
    }

    /// The JWK Set document (RFC 7517 §5): public parts only.
    pub fn jwks(&self, now: UnixTime, keep: u64) -> serde_json::Value {
        let keys: Vec<_> = self.keys.iter().filter(|k| Self::published(k, now, keep)).map(|k| k.jwk.clone()).collect();
        json!({ "keys": keys })
    }

    /// Verifies signature, `alg` (that of the key named by `kid`: never `none`, never HMAC, no
    /// algorithm confusion) and `typ` of one of our tokens. Claims such as `exp`, `iss` and `aud`
    /// are checked by the caller against its `now`.
    pub fn verify<C: DeserializeOwned>(&self, token: &str, typ: &str) -> Result<C, VerifyError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Malformed)?;
        if header.typ.as_deref() != Some(typ) {
            return Err(VerifyError::WrongType);
        }
        let kid = header.kid.ok_or(VerifyError::UnknownKey)?;
        let key = self.keys.iter().find(|k| k.kid == kid).ok_or(VerifyError::UnknownKey)?;
        if header.alg != key.jws_alg() {
            return Err(VerifyError::BadSignature);
        }
        let mut v = Validation::new(key.jws_alg());
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
    fn every_algorithm_signs_verifies_and_publishes() {
        let recs: Vec<KeyRecord> = SigningAlg::ALL.iter().map(|a| SigningKey::generate(*a, 1).unwrap()).collect();
        let set = KeySet::from_records(&recs).unwrap();
        for alg in SigningAlg::ALL {
            let token = set.signer(alg).unwrap().sign("at+jwt", &json!({"sub": "u1"})).unwrap();
            let claims: serde_json::Value = set.verify(&token, "at+jwt").unwrap();
            assert_eq!(claims["sub"], "u1", "{alg:?}");
            assert_eq!(set.verify::<serde_json::Value>(&token, "JWT").unwrap_err(), VerifyError::WrongType);
            // A flipped signature byte fails.
            let mut bad = token.clone().into_bytes();
            let i = bad.len() - 5;
            bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
            assert!(set.verify::<serde_json::Value>(std::str::from_utf8(&bad).unwrap(), "at+jwt").is_err());
        }
        let jwks = set.jwks(1, 600);
        let keys = jwks["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 3);
        for k in keys {
            assert!(k.get("d").is_none(), "no private part");
            assert!(recs.iter().any(|r| r.kid == k["kid"].as_str().unwrap()));
        }
    }

    #[test]
    fn alg_none_and_header_swaps_are_refused() {
        let rec = SigningKey::generate(SigningAlg::RS256, 1).unwrap();
        let set = KeySet::from_records(std::slice::from_ref(&rec)).unwrap();
        let header = b64(format!(r#"{{"alg":"none","typ":"at+jwt","kid":"{}"}}"#, rec.kid).as_bytes());
        let body = b64(br#"{"sub":"x"}"#);
        assert!(set.verify::<serde_json::Value>(&format!("{header}.{body}."), "at+jwt").is_err());
        let hs = b64(format!(r#"{{"alg":"HS256","typ":"at+jwt","kid":"{}"}}"#, rec.kid).as_bytes());
        assert_eq!(
            set.verify::<serde_json::Value>(&format!("{hs}.{body}.AAAA"), "at+jwt").unwrap_err(),
            VerifyError::BadSignature
        );
    }

    #[test]
    fn retired_keys_are_published_until_their_tokens_expire() {
        let mut old = SigningKey::generate(SigningAlg::ES256, 1).unwrap();
        old.active = false;
        old.retired_at = Some(100);
        let new = SigningKey::generate(SigningAlg::ES256, 100).unwrap();
        let set = KeySet::from_records(&[old.clone(), new.clone()]).unwrap();
        assert_eq!(set.signer(SigningAlg::ES256).unwrap().kid, new.kid);
        assert_eq!(set.jwks(699, 600)["keys"].as_array().unwrap().len(), 2);
        assert_eq!(set.jwks(700, 600)["keys"].as_array().unwrap().len(), 1);
        assert!(!format!("{set:?}").contains(&old.private_pkcs8_b64));
    }
}
