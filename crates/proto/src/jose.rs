//! Verifying JWS-signed JWTs against a provider's published JWK Set (RFC 7515, RFC 7517, RFC 7519):
//! what a relying party needs for id_tokens and an API needs for access tokens.
//!
//! Only the signature and the header are checked here. Claims (`iss`, `aud`, `exp`…) are checked
//! by the caller against its own `now`, so that time stays a parameter.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// The signature algorithms accepted by default: asymmetric only. `none` is never accepted (RFC
/// 8725 §3.1), and neither is HMAC: a verifier that holds only public keys and accepts HS256 can
/// be fooled by a token "signed" with the public key as the HMAC secret (RFC 8725 §2.1).
pub const ASYMMETRIC_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Longest token accepted: far above any real JWT, and it bounds the work an attacker can cause.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Why a JWS did not verify. Each variant names one check, so callers can say which one failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoseError {
    /// Not three base64url parts, or a part that is not the JSON it should be.
    Malformed(&'static str),
    /// `alg: none`: an unsigned token (RFC 8725 §3.1).
    AlgNone,
    /// An HMAC algorithm: refused outright (RFC 8725 §2.1, key confusion).
    Symmetric(String),
    /// Any other algorithm outside the allow-list.
    AlgNotAllowed(String),
    /// A `crit` header parameter: it names extensions that we would have to understand (RFC 7515 §4.1.11).
    CriticalHeader,
    /// No published key has this `kid` (or, without a `kid`, no single key fits the algorithm).
    UnknownKey(Option<String>),
    /// The key with this `kid` is of another type, or published for another `alg`.
    KeyMismatch(String),
    /// The signature does not verify with the key.
    BadSignature,
}

impl std::fmt::Display for JoseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Malformed(what) => write!(f, "the token is malformed: {what}"),
            Self::AlgNone => f.write_str("the token is unsigned (alg none), which is never accepted"),
            Self::Symmetric(alg) => write!(f, "the token uses the symmetric algorithm {alg}, which is never accepted"),
            Self::AlgNotAllowed(alg) => write!(f, "the token's signature algorithm {alg} is not allowed"),
            Self::CriticalHeader => f.write_str("the token has a crit header parameter, which is not supported"),
            Self::UnknownKey(Some(kid)) => write!(f, "the token is signed with an unknown key (kid {kid:?})"),
            Self::UnknownKey(None) => f.write_str("the token has no kid and no single published key fits it"),
            Self::KeyMismatch(kid) => write!(f, "the key {kid:?} is not a key for the token's algorithm"),
            Self::BadSignature => f.write_str("the token's signature is invalid"),
        }
    }
}

impl std::error::Error for JoseError {}

/// The protected header of a JWS, as far as verification needs it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct JwsHeader {
    pub alg: String,
    #[serde(default)]
    pub typ: Option<String>,
    #[serde(default)]
    pub kid: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

impl JwsHeader {
    /// Decodes the header of a compact JWS without verifying anything.
    pub fn parse(token: &str) -> Result<Self, JoseError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(JoseError::Malformed("longer than 16 KiB"));
        }
        let mut parts = token.split('.');
        let (Some(h), Some(_), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(JoseError::Malformed("a JWT has three dot-separated parts"));
        };
        let bytes = URL_SAFE_NO_PAD.decode(h).map_err(|_| JoseError::Malformed("the header is not base64url"))?;
        serde_json::from_slice(&bytes).map_err(|_| JoseError::Malformed("the header is not a JSON object with alg"))
    }

    /// The header's algorithm if `allowed` contains it.
    pub fn algorithm(&self, allowed: &[Algorithm]) -> Result<Algorithm, JoseError> {
        if self.alg.eq_ignore_ascii_case("none") {
            return Err(JoseError::AlgNone);
        }
        if self.alg.starts_with("HS") {
            return Err(JoseError::Symmetric(printable(&self.alg)));
        }
        let alg: Algorithm = self.alg.parse().map_err(|_| JoseError::AlgNotAllowed(printable(&self.alg)))?;
        if !allowed.contains(&alg) || alg.family() == AlgorithmFamily::Hmac {
            return Err(JoseError::AlgNotAllowed(printable(&self.alg)));
        }
        if self.crit.is_some() {
            return Err(JoseError::CriticalHeader);
        }
        Ok(alg)
    }

    /// `typ` compared as RFC 7515 §4.1.9 says: case-insensitively, with `application/` optional.
    pub fn typ_is(&self, expected: &str) -> bool {
        self.typ.as_deref().is_some_and(|t| {
            let t = t.strip_prefix("application/").unwrap_or(t);
            t.eq_ignore_ascii_case(expected)
        })
    }
}

/// A header value as it may appear in an error description: short and printable.
fn printable(s: &str) -> String {
    s.chars().filter(char::is_ascii_graphic).take(20).collect()
}

/// One public key from a JWK Set.
struct VerifyingKey {
    kid: Option<String>,
    alg: Option<Algorithm>,
    key: DecodingKey,
}

impl VerifyingKey {
    fn fits(&self, alg: Algorithm) -> bool {
        self.key.family() == alg.family() && self.alg.is_none_or(|a| a == alg)
    }
}

/// The signing keys a provider publishes (RFC 7517 §5), ready to verify tokens.
#[derive(Default)]
pub struct KeySet {
    keys: Vec<VerifyingKey>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.keys.iter().map(|k| k.kid.as_deref().unwrap_or("-"))).finish()
    }
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

impl KeySet {
    /// Parses a JWK Set document. Keys that cannot verify signatures are skipped: encryption keys
    /// (`use: enc`), symmetric keys (a JWKS is public, so an `oct` key in it is no secret), and key
    /// types this library does not know. An error only if the document is not a JWK Set.
    pub fn from_jwks(document: &[u8]) -> Result<Self, JoseError> {
        let raw: RawSet =
            serde_json::from_slice(document).map_err(|_| JoseError::Malformed("the JWKS is not {\"keys\": [...]}"))?;
        let mut keys = Vec::new();
        for value in raw.keys {
            let Ok(jwk) = serde_json::from_value::<Jwk>(value) else { continue };
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                continue;
            }
            let Ok(key) = DecodingKey::from_jwk(&jwk) else { continue };
            if key.family() == AlgorithmFamily::Hmac {
                continue;
            }
            let alg = match jwk.common.key_algorithm {
                None => None,
                Some(a) => match a.to_string().parse::<Algorithm>() {
                    Ok(alg) => Some(alg),
                    // Published for an algorithm we cannot use (e.g. RSA-OAEP): not a signing key.
                    Err(_) => continue,
                },
            };
            keys.push(VerifyingKey { kid: jwk.common.key_id, alg, key });
        }
        Ok(Self { keys })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    fn select(&self, kid: Option<&str>, alg: Algorithm) -> Result<&VerifyingKey, JoseError> {
        match kid {
            Some(kid) => {
                let key = self
                    .keys
                    .iter()
                    .find(|k| k.kid.as_deref() == Some(kid))
                    .ok_or_else(|| JoseError::UnknownKey(Some(printable(kid))))?;
                if !key.fits(alg) {
                    return Err(JoseError::KeyMismatch(printable(kid)));
                }
                Ok(key)
            }
            // Without a kid, only an unambiguous key is used: never "try them all".
            None => {
                let mut fitting = self.keys.iter().filter(|k| k.fits(alg));
                match (fitting.next(), fitting.next()) {
                    (Some(k), None) => Ok(k),
                    _ => Err(JoseError::UnknownKey(None)),
                }
            }
        }
    }

    /// Verifies the signature of a compact JWS with the key its `kid` names and an algorithm from
    /// `allowed`, and returns the header and the claims. Keys are never taken from the token itself
    /// (`jwk`, `jku`, `x5u` headers are ignored).
    pub fn verify<C: DeserializeOwned>(&self, token: &str, allowed: &[Algorithm]) -> Result<(JwsHeader, C), JoseError> {
        let header = JwsHeader::parse(token)?;
        let alg = header.algorithm(allowed)?;
        let key = self.select(header.kid.as_deref(), alg)?;
        let mut validation = Validation::new(alg);
        // Claims are the caller's: it checks them against its own clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<C>(token, &key.key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::InvalidSignature => JoseError::BadSignature,
                K::InvalidAlgorithm | K::InvalidKeyFormat | K::InvalidRsaKey(_) | K::InvalidEcdsaKey => {
                    JoseError::KeyMismatch(header.kid.as_deref().map(printable).unwrap_or_default())
                }
                _ => JoseError::Malformed("the claims are not the expected JSON object"),
            }
        })?;
        Ok((header, data.claims))
    }
}

/// OpenID Connect Core §3.1.3.6 (`at_hash`) / §3.3.2.11 (`c_hash`): the base64url of the left half
/// of the hash of `value`, the hash being the one of the token's signature algorithm.
pub fn left_half_hash(alg: Algorithm, value: &str) -> Option<String> {
    use sha2::Digest;
    let digest: Vec<u8> = match alg {
        Algorithm::RS256 | Algorithm::PS256 | Algorithm::ES256 => sha2::Sha256::digest(value).to_vec(),
        Algorithm::RS384 | Algorithm::PS384 | Algorithm::ES384 => sha2::Sha384::digest(value).to_vec(),
        // EdDSA with Ed25519 uses SHA-512 (OpenID Connect Core errata / common practice).
        Algorithm::RS512 | Algorithm::PS512 | Algorithm::EdDSA => sha2::Sha512::digest(value).to_vec(),
        _ => return None,
    };
    Some(URL_SAFE_NO_PAD.encode(&digest[..digest.len() / 2]))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use aws_lc_rs::encoding::AsBigEndian;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};

    fn b64(v: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(v)
    }

    fn rsa() -> (RsaKeyPair, serde_json::Value) {
        let pair = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let p = pair.public_key();
        let jwk = serde_json::json!({"kty":"RSA","kid":"k1","alg":"RS256","use":"sig",
            "n": b64(p.modulus().big_endian_without_leading_zero()),
            "e": b64(p.exponent().big_endian_without_leading_zero())});
        (pair, jwk)
    }

    fn rs256(pair: &RsaKeyPair, header: &serde_json::Value, claims: &serde_json::Value) -> String {
        let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
        let mut sig = vec![0; pair.public_modulus_len()];
        pair.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), input.as_bytes(), &mut sig).unwrap();
        format!("{input}.{}", b64(&sig))
    }

    fn set(keys: &[serde_json::Value]) -> KeySet {
        KeySet::from_jwks(serde_json::json!({ "keys": keys }).to_string().as_bytes()).unwrap()
    }

    #[test]
    fn rs256_verifies_and_tampering_does_not() {
        let (pair, jwk) = rsa();
        let keys = set(&[jwk]);
        let t = rs256(
            &pair,
            &serde_json::json!({"alg":"RS256","kid":"k1","typ":"at+jwt"}),
            &serde_json::json!({"sub":"u"}),
        );
        let (h, c): (JwsHeader, serde_json::Value) = keys.verify(&t, ASYMMETRIC_ALGORITHMS).unwrap();
        assert!(h.typ_is("at+jwt") && !h.typ_is("jwt"));
        let long = JwsHeader { typ: Some("application/AT+JWT".into()), ..h.clone() };
        assert!(long.typ_is("at+jwt"), "RFC 7515 §4.1.9: media type, case-insensitive, prefix optional");
        assert_eq!(c["sub"], "u");
        let (head, rest) = t.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        let forged = format!("{head}.{}.{sig}", b64(br#"{"sub":"admin"}"#));
        assert_eq!(
            keys.verify::<serde_json::Value>(&forged, ASYMMETRIC_ALGORITHMS).unwrap_err(),
            JoseError::BadSignature
        );
        let other = rs256(&pair, &serde_json::json!({"alg":"RS256","kid":"k2"}), &serde_json::json!({}));
        assert_eq!(
            keys.verify::<serde_json::Value>(&other, ASYMMETRIC_ALGORITHMS).unwrap_err(),
            JoseError::UnknownKey(Some("k2".into()))
        );
        // Allowed algorithms are the caller's choice.
        assert_eq!(
            keys.verify::<serde_json::Value>(&t, &[Algorithm::ES256]).unwrap_err(),
            JoseError::AlgNotAllowed("RS256".into())
        );
    }

    #[test]
    fn none_hmac_and_crit_are_refused() {
        let (_, jwk) = rsa();
        let keys = set(std::slice::from_ref(&jwk));
        let none = format!("{}.{}.", b64(br#"{"alg":"none","kid":"k1"}"#), b64(br#"{"sub":"u"}"#));
        assert_eq!(keys.verify::<serde_json::Value>(&none, ASYMMETRIC_ALGORITHMS).unwrap_err(), JoseError::AlgNone);
        // RFC 8725 §2.1: HS256 "signed" with the public key's modulus as the secret.
        let input = format!("{}.{}", b64(br#"{"alg":"HS256","kid":"k1"}"#), b64(br#"{"sub":"u"}"#));
        let secret = jwk["n"].as_str().unwrap();
        let tag = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes()),
            input.as_bytes(),
        );
        let hs = format!("{input}.{}", b64(tag.as_ref()));
        assert_eq!(
            keys.verify::<serde_json::Value>(&hs, ASYMMETRIC_ALGORITHMS).unwrap_err(),
            JoseError::Symmetric("HS256".into())
        );
        let crit = format!("{}.{}.AAAA", b64(br#"{"alg":"RS256","kid":"k1","crit":["exp"]}"#), b64(b"{}"));
        assert_eq!(
            keys.verify::<serde_json::Value>(&crit, ASYMMETRIC_ALGORITHMS).unwrap_err(),
            JoseError::CriticalHeader
        );
        for bad in ["", "a.b", "a.b.c.d", "!!!.e30.AA"] {
            assert!(matches!(
                keys.verify::<serde_json::Value>(bad, ASYMMETRIC_ALGORITHMS).unwrap_err(),
                JoseError::Malformed(_)
            ));
        }
    }

    #[test]
    fn jwks_skips_unusable_keys_and_matches_alg() {
        let (pair, jwk) = rsa();
        let mut enc = jwk.clone();
        enc["use"] = "enc".into();
        enc["kid"] = "enc".into();
        let keys = set(&[
            serde_json::json!({"kty":"oct","kid":"sym","k":"c2VjcmV0"}),
            serde_json::json!({"kty":"weird","kid":"w"}),
            enc,
            jwk.clone(),
        ]);
        assert_eq!(keys.len(), 1);
        assert!(keys.has_kid("k1") && !keys.has_kid("sym"));
        // A PS256 token naming an RS256-only key.
        let t = format!("{}.{}.AAAA", b64(br#"{"alg":"PS256","kid":"k1"}"#), b64(b"{}"));
        assert_eq!(
            keys.verify::<serde_json::Value>(&t, ASYMMETRIC_ALGORITHMS).unwrap_err(),
            JoseError::KeyMismatch("k1".into())
        );
        // Without a kid, the one fitting key is used.
        let t = rs256(&pair, &serde_json::json!({"alg":"RS256"}), &serde_json::json!({"sub":"u"}));
        assert!(keys.verify::<serde_json::Value>(&t, ASYMMETRIC_ALGORITHMS).is_ok());
        assert!(KeySet::from_jwks(b"[1,2]").is_err());
    }

    #[test]
    fn es256_keys_verify() {
        let alg = &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pair = EcdsaKeyPair::generate(alg).unwrap();
        let point: aws_lc_rs::encoding::EcPublicKeyUncompressedBin = pair.public_key().as_be_bytes().unwrap();
        let point = point.as_ref();
        let jwk =
            serde_json::json!({"kty":"EC","crv":"P-256","kid":"ec","x": b64(&point[1..33]),"y": b64(&point[33..65])});
        let input = format!("{}.{}", b64(br#"{"alg":"ES256","kid":"ec"}"#), b64(br#"{"sub":"e"}"#));
        let sig = pair.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        let t = format!("{input}.{}", b64(sig.as_ref()));
        let (_, c): (JwsHeader, serde_json::Value) = set(&[jwk]).verify(&t, ASYMMETRIC_ALGORITHMS).unwrap();
        assert_eq!(c["sub"], "e");
    }

    /// OpenID Connect Core §3.1.3.6 with the access token of the spec's example in Appendix A.3.
    #[test]
    fn at_hash_of_the_spec_example() {
        assert_eq!(
            left_half_hash(Algorithm::RS256, "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y").as_deref(),
            Some("77QmUPtjPfzWtF2AnpK9RQ")
        );
    }
}
