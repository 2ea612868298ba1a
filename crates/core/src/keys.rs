//! Signing keys: generation, rotation, the JWKS, JWS signing and verification of our own tokens.
//!
//! Signing uses aws-lc-rs directly with each parsed key pair kept in memory (parsing and checking
//! an RSA key costs more than the signature itself); verification uses `jsonwebtoken`.
//! There is one active key per algorithm. A rotated-out key stays published until every token it
//! signed has expired, so verifiers never meet a `kid` they cannot resolve.

use anyhow::{Context, anyhow};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
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

/// The prefix of a private key sealed under a key-encryption key. A stored private key without it
/// is the plain PKCS#8 base64 of earlier versions (or of a deployment without a key-encryption
/// key), which keeps loading.
pub const SEALED_PREFIX: &str = "enc:v1:";

/// Domain separation for the associated data: a sealed blob opens only as a signing key, and only
/// under its own `kid`, so rows cannot be swapped (a sealed key moved to another `kid` fails).
const SEAL_AAD: &[u8] = b"latchkey signing key v1\0";

/// The key-encryption key: an AES-256-GCM key that seals the private signing keys at rest, so a
/// copy of the database (a backup, a `-wal` file, a dump) does not give the power to mint tokens.
/// It comes from outside the database (`LATCHKEY_KEY_ENCRYPTION_KEY` or a 0600 file).
#[derive(Clone)]
pub struct KeyEncryptionKey([u8; 32]);

impl std::fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyEncryptionKey(redacted)")
    }
}

/// Why a key-encryption key or a sealed signing key was refused. The messages name the `kid` and
/// the fix; they never contain key material.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error(
        "the key-encryption key must be 32 bytes in base64 (44 characters; make one with `openssl rand -base64 32`)"
    )]
    BadKeyEncryptionKey,
    #[error(
        "signing key {kid} is sealed (enc:v1) but no key-encryption key is configured: set \
         LATCHKEY_KEY_ENCRYPTION_KEY or --key-encryption-key-file to the key it was sealed with"
    )]
    NoKeyEncryptionKey { kid: String },
    #[error(
        "signing key {kid} does not open with the configured key-encryption key: it was sealed with \
         another key, or the stored record was altered"
    )]
    DoesNotOpen { kid: String },
    #[error("signing key {kid} is stored in an unknown format (this latchkey reads plain PKCS#8 and enc:v1)")]
    UnknownFormat { kid: String },
}

impl KeyEncryptionKey {
    /// Standard base64 of exactly 32 bytes (surrounding whitespace, such as a file's final
    /// newline, is ignored).
    pub fn from_base64(s: &str) -> Result<Self, SealError> {
        let bytes = STANDARD.decode(s.trim()).map_err(|_| SealError::BadKeyEncryptionKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| SealError::BadKeyEncryptionKey)?;
        Ok(Self(key))
    }

    fn aead(&self) -> anyhow::Result<LessSafeKey> {
        let k = UnboundKey::new(&AES_256_GCM, &self.0).map_err(|_| anyhow!("AES-256-GCM key"))?;
        Ok(LessSafeKey::new(k))
    }
}

fn seal_aad(kid: &str) -> Vec<u8> {
    let mut aad = SEAL_AAD.to_vec();
    aad.extend_from_slice(kid.as_bytes());
    aad
}

/// Whether the record's private key is sealed under a key-encryption key.
pub fn is_sealed(r: &KeyRecord) -> bool {
    r.private_pkcs8_b64.starts_with(SEALED_PREFIX)
}

/// The record with its private key sealed: `enc:v1:` + base64(nonce || AES-256-GCM(PKCS#8) || tag),
/// the `kid` as associated data. A record already sealed is returned as it is.
pub fn seal_record(r: &KeyRecord, kek: &KeyEncryptionKey) -> anyhow::Result<KeyRecord> {
    if is_sealed(r) {
        return Ok(r.clone());
    }
    let mut data = STANDARD.decode(&r.private_pkcs8_b64).context("signing key is not base64")?;
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new().fill(&mut nonce).map_err(|_| anyhow!("random nonce"))?;
    kek.aead()?
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(seal_aad(&r.kid)), &mut data)
        .map_err(|_| anyhow!("sealing signing key {}", r.kid))?;
    let mut blob = nonce.to_vec();
    blob.extend_from_slice(&data);
    Ok(KeyRecord { private_pkcs8_b64: format!("{SEALED_PREFIX}{}", STANDARD.encode(blob)), ..r.clone() })
}

/// Seals `data` under `kek` with `aad` (which names what the data is and whose): base64 of
/// nonce || AES-256-GCM ciphertext || tag, prefixed with [`SEALED_PREFIX`]. For other secrets at
/// rest than signing keys (TOTP secrets, `crate::factors::totp`).
pub(crate) fn seal_bytes(kek: &KeyEncryptionKey, aad: &[u8], data: &[u8]) -> anyhow::Result<String> {
    let mut data = data.to_vec();
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new().fill(&mut nonce).map_err(|_| anyhow!("random nonce"))?;
    kek.aead()?
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut data)
        .map_err(|_| anyhow!("sealing a secret"))?;
    let mut blob = nonce.to_vec();
    blob.extend_from_slice(&data);
    Ok(format!("{SEALED_PREFIX}{}", STANDARD.encode(blob)))
}

/// Opens what [`seal_bytes`] sealed with the same `aad`; `None` if it does not open (another key,
/// another `aad`, an altered blob) or is not sealed.
pub(crate) fn open_bytes(kek: &KeyEncryptionKey, aad: &[u8], sealed: &str) -> Option<Vec<u8>> {
    let blob = STANDARD.decode(sealed.strip_prefix(SEALED_PREFIX)?).ok()?;
    if blob.len() < NONCE_LEN {
        return None;
    }
    let (nonce, rest) = blob.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut data = rest.to_vec();
    let plain = kek.aead().ok()?.open_in_place(nonce, Aad::from(aad), &mut data).ok()?;
    Some(plain.to_vec())
}

/// The PKCS#8 DER of the record's private key, unsealing it if it is sealed.
fn private_der(r: &KeyRecord, kek: Option<&KeyEncryptionKey>) -> anyhow::Result<Vec<u8>> {
    let Some(sealed) = r.private_pkcs8_b64.strip_prefix(SEALED_PREFIX) else {
        if r.private_pkcs8_b64.starts_with("enc:") {
            return Err(SealError::UnknownFormat { kid: r.kid.clone() }.into());
        }
        return STANDARD.decode(&r.private_pkcs8_b64).context("signing key is not base64");
    };
    let kek = kek.ok_or_else(|| SealError::NoKeyEncryptionKey { kid: r.kid.clone() })?;
    let does_not_open = || SealError::DoesNotOpen { kid: r.kid.clone() };
    let blob = STANDARD.decode(sealed).map_err(|_| does_not_open())?;
    if blob.len() < NONCE_LEN {
        return Err(does_not_open().into());
    }
    let (nonce, rest) = blob.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| does_not_open())?;
    let mut data = rest.to_vec();
    let der = kek.aead()?.open_in_place(nonce, Aad::from(seal_aad(&r.kid)), &mut data).map_err(|_| does_not_open())?;
    Ok(der.to_vec())
}

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
        Self::from_record_with(r, None)
    }

    /// Parses a stored key, unsealing it with `kek` if it is sealed. A sealed key without `kek`,
    /// or one that does not open with it, is an error ([`SealError`]).
    pub fn from_record_with(r: &KeyRecord, kek: Option<&KeyEncryptionKey>) -> anyhow::Result<Self> {
        let alg =
            SigningAlg::parse(&r.alg).ok_or_else(|| anyhow!("signing key {} has unsupported alg {}", r.kid, r.alg))?;
        let der = private_der(r, kek)?;
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
        let mut key = Self { kid, alg, created_at, active, retired_at, pair, decoding, jwk };
        key.jwk["use"] = json!("sig");
        key.jwk["alg"] = json!(alg.as_str());
        key.jwk["kid"] = json!(key.kid);
        Ok(key)
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
        Self::from_records_with(records, None)
    }

    /// As [`KeySet::from_records`], unsealing sealed keys with `kek`.
    pub fn from_records_with(records: &[KeyRecord], kek: Option<&KeyEncryptionKey>) -> anyhow::Result<Self> {
        let mut keys =
            records.iter().map(|r| SigningKey::from_record_with(r, kek)).collect::<anyhow::Result<Vec<_>>>()?;
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

    fn kek(byte: u8) -> KeyEncryptionKey {
        KeyEncryptionKey::from_base64(&STANDARD.encode([byte; 32])).unwrap()
    }

    #[test]
    fn sealed_keys_open_only_with_their_key_and_kid() {
        let plain = SigningKey::generate(SigningAlg::ES256, 1).unwrap();
        let sealed = seal_record(&plain, &kek(7)).unwrap();
        assert!(sealed.private_pkcs8_b64.starts_with(SEALED_PREFIX));
        // The PKCS#8 bytes are not in the stored value in any form.
        let der = STANDARD.decode(&plain.private_pkcs8_b64).unwrap();
        assert!(!sealed.private_pkcs8_b64.contains(&plain.private_pkcs8_b64[..40]));
        assert!(
            !STANDARD
                .decode(&sealed.private_pkcs8_b64[SEALED_PREFIX.len()..])
                .unwrap()
                .windows(16)
                .any(|w| der.windows(16).any(|d| d == w))
        );
        // Opens with the key and signs like the original.
        let set = KeySet::from_records_with(std::slice::from_ref(&sealed), Some(&kek(7))).unwrap();
        let token = set.signer(SigningAlg::ES256).unwrap().sign("at+jwt", &json!({"sub": "u"})).unwrap();
        let original = KeySet::from_records(std::slice::from_ref(&plain)).unwrap();
        assert_eq!(original.verify::<serde_json::Value>(&token, "at+jwt").unwrap()["sub"], "u");
        // Sealing twice changes nothing.
        assert_eq!(seal_record(&sealed, &kek(7)).unwrap(), sealed);
        // Without the key, with another key, or moved to another kid: refused with the reason.
        let err = |r: &KeyRecord, k: Option<&KeyEncryptionKey>| {
            KeySet::from_records_with(std::slice::from_ref(r), k).unwrap_err().downcast::<SealError>().unwrap()
        };
        assert_eq!(err(&sealed, None), SealError::NoKeyEncryptionKey { kid: sealed.kid.clone() });
        assert_eq!(err(&sealed, Some(&kek(8))), SealError::DoesNotOpen { kid: sealed.kid.clone() });
        let moved = KeyRecord { kid: "other".into(), ..sealed.clone() };
        assert_eq!(err(&moved, Some(&kek(7))), SealError::DoesNotOpen { kid: "other".into() });
        let future = KeyRecord { private_pkcs8_b64: "enc:v2:AAAA".into(), ..sealed.clone() };
        assert_eq!(err(&future, Some(&kek(7))), SealError::UnknownFormat { kid: sealed.kid.clone() });
        // Plain records (existing deployments) keep loading with a key configured.
        assert!(KeySet::from_records_with(std::slice::from_ref(&plain), Some(&kek(7))).is_ok());
    }

    #[test]
    fn a_key_encryption_key_is_32_bytes_of_base64_and_never_shown() {
        assert!(KeyEncryptionKey::from_base64(&format!("{}\n", STANDARD.encode([1u8; 32]))).is_ok());
        for bad in ["", "short", &STANDARD.encode([1u8; 31]), &STANDARD.encode([1u8; 33])] {
            assert_eq!(KeyEncryptionKey::from_base64(bad).unwrap_err(), SealError::BadKeyEncryptionKey, "{bad}");
        }
        assert_eq!(format!("{:?}", kek(3)), "KeyEncryptionKey(redacted)");
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
