//! DPoP (RFC 9449): the proof a client sends with a request, checked the same way by the
//! authorization server and by resource servers (§4.3), and made by clients (§4.2).
//!
//! What is decided here is what any verifier must decide: the proof's form, its signature by the
//! key it carries, `htm`, `htu`, the `iat` window and `ath`. What needs state or policy is the
//! caller's: whether `jti` was seen before (§11.1), which nonce it issued (§8, [`NonceKeeper`]
//! helps), and which key a token or code is bound to (compare [`DpopProof::jkt`]).

use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::jose::JwsHeader;

/// The `typ` of a proof (§4.2): it keeps any other JWT from being replayed as a proof.
pub const PROOF_TYP: &str = "dpop+jwt";
/// The HTTP header that carries a proof, and the one that carries a server nonce (§8.1).
pub const DPOP_HEADER: &str = "DPoP";
pub const NONCE_HEADER: &str = "DPoP-Nonce";
/// A proof is a few hundred bytes; 8 KiB bounds the work a forged one can cause.
pub const MAX_PROOF_LEN: usize = 8 * 1024;
/// Longest `jti` kept: §4.2 asks for 96 bits of randomness; a replay store must not hold megabytes.
pub const MAX_JTI_LEN: usize = 256;
/// The algorithms Latchkey accepts in proofs and advertises in `dpop_signing_alg_values_supported`:
/// asymmetric only (§4.3 point 5), the ones browsers' WebCrypto and the common libraries make.
pub const DEFAULT_ALGORITHMS: &[Algorithm] =
    &[Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA, Algorithm::RS256, Algorithm::PS256];

/// Why a proof is refused. Each variant is one check of §4.3, and [`DpopError::is_nonce`] tells
/// the two wire errors apart: `use_dpop_nonce` (§8) or `invalid_dpop_proof` (§5.10, §7.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DpopError {
    /// More than one DPoP header (§4.3 point 1).
    Multiple,
    /// Not a compact JWS, or a part that is not the JSON it should be.
    Malformed(&'static str),
    /// `typ` is not `dpop+jwt` (point 4).
    Typ,
    /// `alg` is `none`, symmetric, or not in the verifier's list (point 5).
    Alg(String),
    /// The `jwk` header is missing, not a public key, or holds private material (points 6–7).
    Jwk(&'static str),
    /// The signature does not verify with the `jwk` (point 6).
    Signature,
    /// A required claim is missing or of the wrong type (point 3).
    Claim(&'static str),
    /// `htm` is not the request's method (point 8).
    Method { proof: String, request: String },
    /// `htu` is not the request's URL, ignoring query and fragment (point 9).
    Url { proof: String, request: String },
    /// `iat` is outside the accepted window (point 11): too old, or from the future.
    Stale { iat: i64, now: i64 },
    /// `ath` is missing although the proof comes with an access token, or is not its hash (point 12).
    Ath,
    /// The proof was signed by another key than the one the token or code is bound to (point 12).
    KeyMismatch,
    /// This `jti` was seen within the window (§11.1).
    Replayed,
    /// The server requires a nonce and the proof has none, or an old one (§8): answered with
    /// `use_dpop_nonce` and a fresh `DPoP-Nonce`.
    Nonce,
}

impl DpopError {
    /// Whether the answer is `use_dpop_nonce` (and a new nonce) rather than `invalid_dpop_proof`.
    pub fn is_nonce(&self) -> bool {
        matches!(self, Self::Nonce)
    }
}

impl std::fmt::Display for DpopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Multiple => f.write_str("the request carries more than one DPoP header"),
            Self::Malformed(what) => write!(f, "the DPoP proof is malformed: {what}"),
            Self::Typ => f.write_str("the DPoP proof's typ header is not dpop+jwt"),
            Self::Alg(alg) => write!(f, "the DPoP proof's alg {alg} is not accepted (asymmetric algorithms only)"),
            Self::Jwk(what) => write!(f, "the DPoP proof's jwk header {what}"),
            Self::Signature => f.write_str("the DPoP proof's signature does not verify with its jwk"),
            Self::Claim(name) => write!(f, "the DPoP proof lacks the {name} claim, or it has the wrong type"),
            Self::Method { proof, request } => {
                write!(f, "the DPoP proof's htm {proof:?} is not this request's method {request}")
            }
            Self::Url { proof, request } => {
                write!(f, "the DPoP proof's htu {proof:?} is not this request's URL {request}")
            }
            Self::Stale { iat, now } if iat > now => {
                write!(f, "the DPoP proof's iat is {}s in the future: check the client's clock", iat - now)
            }
            Self::Stale { iat, now } => {
                write!(f, "the DPoP proof is too old (iat {}s ago): make a fresh one", now - iat)
            }
            Self::Ath => f.write_str("the DPoP proof's ath is missing or is not the hash of this access token"),
            Self::KeyMismatch => {
                f.write_str("the DPoP proof is signed by another key than the one the token is bound to")
            }
            Self::Replayed => {
                f.write_str("this DPoP proof (its jti) was used before: make a new proof for every request")
            }
            Self::Nonce => f.write_str("a DPoP nonce is required: retry with the nonce in the DPoP-Nonce header"),
        }
    }
}

impl std::error::Error for DpopError {}

#[derive(Deserialize)]
struct ProofHeader {
    #[serde(default)]
    jwk: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ProofClaims {
    jti: Option<serde_json::Value>,
    htm: Option<serde_json::Value>,
    htu: Option<serde_json::Value>,
    iat: Option<serde_json::Value>,
    #[serde(default)]
    ath: Option<serde_json::Value>,
    #[serde(default)]
    nonce: Option<serde_json::Value>,
}

/// A proof whose form and signature were checked ([`DpopProof::parse`]); its claims still have to
/// match the request ([`DpopProof::check`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopProof {
    /// RFC 7638 SHA-256 thumbprint of the proof's public key, base64url: what `cnf.jkt` and
    /// `dpop_jkt` carry.
    pub jkt: String,
    pub jti: String,
    pub htm: String,
    pub htu: String,
    pub iat: i64,
    pub ath: Option<String>,
    pub nonce: Option<String>,
}

/// What the request a proof came with looks like, for [`DpopProof::check`].
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The request's method, e.g. `POST`.
    pub method: &'a str,
    /// The URL the verifier is reachable at, built from its configuration (never from the `Host`
    /// header, which the client chooses).
    pub url: &'a str,
    /// The access token the request presents, whose hash `ath` must be (resource requests and
    /// userinfo); `None` at the token endpoint.
    pub access_token: Option<&'a str>,
    /// How old `iat` may be, in seconds, and how far in the future (clock skew).
    pub max_age: i64,
    pub max_skew: i64,
}

impl DpopProof {
    /// The one proof among the request's DPoP header values: none is `Ok(None)`, two are refused.
    pub fn single<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Option<&'a str>, DpopError> {
        let mut it = values.into_iter();
        match (it.next(), it.next()) {
            (None, _) => Ok(None),
            (Some(v), None) => Ok(Some(v)),
            _ => Err(DpopError::Multiple),
        }
    }

    /// Checks the proof's form, `typ`, `alg` (from `allowed`) and its signature by its own `jwk`
    /// (§4.3 points 2–7), and reads its claims.
    pub fn parse(token: &str, allowed: &[Algorithm]) -> Result<Self, DpopError> {
        if token.len() > MAX_PROOF_LEN {
            return Err(DpopError::Malformed("longer than 8 KiB"));
        }
        let header = JwsHeader::parse(token).map_err(|_| DpopError::Malformed("not a compact JWS"))?;
        if !header.typ.as_deref().is_some_and(|t| t.eq_ignore_ascii_case(PROOF_TYP)) {
            return Err(DpopError::Typ);
        }
        let alg = header.algorithm(allowed).map_err(|_| DpopError::Alg(printable(&header.alg)))?;
        let raw = token.split('.').next().unwrap_or_default();
        let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| DpopError::Malformed("the header is not base64url"))?;
        let extra: ProofHeader =
            serde_json::from_slice(&bytes).map_err(|_| DpopError::Malformed("the header is not a JSON object"))?;
        let jwk_value = extra.jwk.ok_or(DpopError::Jwk("is missing"))?;
        // §4.3 point 7: a key with private parts is refused (it was leaked by its own client).
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            if jwk_value.get(private).is_some() {
                return Err(DpopError::Jwk("holds a private key"));
            }
        }
        let jwk: Jwk = serde_json::from_value(jwk_value).map_err(|_| DpopError::Jwk("is not a public JWK"))?;
        let key = DecodingKey::from_jwk(&jwk).map_err(|_| DpopError::Jwk("is not a usable public key"))?;
        if key.family() != alg.family() {
            return Err(DpopError::Jwk("is not a key for the proof's alg"));
        }
        let mut validation = Validation::new(alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<ProofClaims>(token, &key, &validation).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => DpopError::Signature,
            jsonwebtoken::errors::ErrorKind::InvalidEcdsaKey
            | jsonwebtoken::errors::ErrorKind::InvalidRsaKey(_)
            | jsonwebtoken::errors::ErrorKind::InvalidKeyFormat
            | jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => DpopError::Jwk("is not a key for the proof's alg"),
            _ => DpopError::Malformed("the claims are not a JSON object"),
        })?;
        let c = data.claims;
        let string = |v: Option<serde_json::Value>, name| match v {
            Some(serde_json::Value::String(s)) if !s.is_empty() => Ok(s),
            _ => Err(DpopError::Claim(name)),
        };
        let jti = string(c.jti, "jti")?;
        if jti.len() > MAX_JTI_LEN {
            return Err(DpopError::Claim("jti"));
        }
        let iat = c.iat.as_ref().and_then(serde_json::Value::as_i64).ok_or(DpopError::Claim("iat"))?;
        let ath = c.ath.map(|v| string(Some(v), "ath")).transpose()?;
        let nonce = c.nonce.map(|v| string(Some(v), "nonce")).transpose()?;
        Ok(Self {
            jkt: jwk.thumbprint(ThumbprintHash::SHA256),
            jti,
            htm: string(c.htm, "htm")?,
            htu: string(c.htu, "htu")?,
            iat,
            ath,
            nonce,
        })
    }

    /// Checks the claims against the request (§4.3 points 8, 9, 11 and 12's `ath`).
    pub fn check(&self, expected: &Expected<'_>, now: i64) -> Result<(), DpopError> {
        if self.htm != expected.method {
            return Err(DpopError::Method { proof: printable(&self.htm), request: expected.method.to_owned() });
        }
        if !same_target(&self.htu, expected.url) {
            return Err(DpopError::Url { proof: printable(&self.htu), request: expected.url.to_owned() });
        }
        if self.iat < now - expected.max_age || self.iat > now + expected.max_skew {
            return Err(DpopError::Stale { iat: self.iat, now });
        }
        match (expected.access_token, &self.ath) {
            (None, _) => {}
            (Some(token), Some(ath)) if constant_eq(ath, &access_token_hash(token)) => {}
            (Some(_), _) => return Err(DpopError::Ath),
        }
        Ok(())
    }

    /// The proof's key must be `bound` (a token's `cnf.jkt`, a code's `dpop_jkt`).
    pub fn check_key(&self, bound: &str) -> Result<(), DpopError> {
        if constant_eq(&self.jkt, bound) { Ok(()) } else { Err(DpopError::KeyMismatch) }
    }

    /// The key under which a replay store keeps this proof: its `jti` per key (§11.1), hashed so
    /// the store's rows have a fixed size whatever the client sent.
    pub fn replay_key(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(format!("{}\n{}", self.jkt, self.jti)))
    }
}

/// `ath` (§4.2): the base64url SHA-256 of the access token's ASCII.
pub fn access_token_hash(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(access_token.as_bytes()))
}

/// Whether `htu` names the same resource as `url`, ignoring query and fragment (§4.3 point 9),
/// with the scheme and host compared as URLs compare them (case, default port).
pub fn same_target(htu: &str, url: &str) -> bool {
    let norm = |s: &str| {
        url::Url::parse(s).ok().map(|mut u| {
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        })
    };
    match (norm(htu), norm(url)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

fn constant_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

fn printable(s: &str) -> String {
    s.chars().filter(|c| c.is_ascii_graphic()).take(120).collect()
}

/// Server nonces (§8) without state: a nonce is an HMAC of a time slot under a secret, so every
/// instance that shares the secret accepts every other's nonces, and nothing is stored. A nonce is
/// accepted during its own slot and the next one (a client holding one is not refused at the turn
/// of a slot), so it lives between one and two slots.
pub struct NonceKeeper {
    key: hmac::Key,
    slot_seconds: i64,
}

impl std::fmt::Debug for NonceKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonceKeeper").field("slot_seconds", &self.slot_seconds).finish_non_exhaustive()
    }
}

impl NonceKeeper {
    /// `secret` is at least 32 random bytes shared by the instances; `slot_seconds` at least 1.
    pub fn new(secret: &[u8], slot_seconds: i64) -> Self {
        Self { key: hmac::Key::new(hmac::HMAC_SHA256, secret), slot_seconds: slot_seconds.max(1) }
    }

    fn for_slot(&self, slot: i64) -> String {
        let tag = hmac::sign(&self.key, format!("dpop-nonce:{slot}").as_bytes());
        // The slot in clear lets the check pick the right one; the tag makes it unforgeable.
        format!("{slot}.{}", URL_SAFE_NO_PAD.encode(&tag.as_ref()[..16]))
    }

    /// The nonce to hand out at `now` (in `DPoP-Nonce`).
    pub fn current(&self, now: i64) -> String {
        self.for_slot(now.div_euclid(self.slot_seconds))
    }

    /// Whether `nonce` is one this keeper (or a sibling instance) handed out for the current or
    /// the previous slot.
    pub fn accepts(&self, nonce: &str, now: i64) -> bool {
        let slot = now.div_euclid(self.slot_seconds);
        [slot, slot - 1].iter().any(|s| constant_eq(nonce, &self.for_slot(*s)))
    }
}

/// A client's DPoP key (ES256, P-256) and the proofs it signs (§4.2). The private key is kept as
/// PKCS#8, redacted from `Debug`; a token cache that stores it must be private to the user.
pub struct DpopKey {
    pair: EcdsaKeyPair,
    pkcs8: Vec<u8>,
    jwk: serde_json::Value,
    jkt: String,
}

impl std::fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopKey").field("jkt", &self.jkt).finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct NewProofClaims<'a> {
    jti: String,
    htm: &'a str,
    htu: &'a str,
    iat: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    ath: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
}

impl DpopKey {
    /// A fresh key from the system's random generator.
    pub fn generate() -> Result<Self, DpopKeyError> {
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .map_err(|_| DpopKeyError)?;
        Self::from_pkcs8(doc.as_ref())
    }

    /// A key kept as PKCS#8 DER (what [`DpopKey::pkcs8`] returns).
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, DpopKeyError> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der).map_err(|_| DpopKeyError)?;
        // The public key is the uncompressed point: 0x04 || x || y, 32 bytes each.
        let public = pair.public_key().as_ref();
        if public.len() != 65 || public[0] != 4 {
            return Err(DpopKeyError);
        }
        let jwk = serde_json::json!({
            "kty": "EC",
            "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&public[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&public[33..65]),
        });
        let parsed: Jwk = serde_json::from_value(jwk.clone()).map_err(|_| DpopKeyError)?;
        let jkt = parsed.thumbprint(ThumbprintHash::SHA256);
        Ok(Self { pair, pkcs8: der.to_vec(), jwk, jkt })
    }

    /// The private key as PKCS#8 DER. Dangerous: whoever holds it can use the tokens bound to it.
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The public key's RFC 7638 thumbprint (`dpop_jkt`, `cnf.jkt`).
    pub fn jkt(&self) -> &str {
        &self.jkt
    }

    /// The public key as a JWK.
    pub fn public_jwk(&self) -> &serde_json::Value {
        &self.jwk
    }

    /// A proof for one request: `method` and `url` of the request (query and fragment are
    /// dropped), `nonce` if the server gave one, `access_token` when the request presents one.
    pub fn proof(
        &self,
        method: &str,
        url: &str,
        now: i64,
        nonce: Option<&str>,
        access_token: Option<&str>,
    ) -> Result<String, DpopKeyError> {
        let mut htu = url::Url::parse(url).map_err(|_| DpopKeyError)?;
        htu.set_query(None);
        htu.set_fragment(None);
        let header = serde_json::json!({ "typ": PROOF_TYP, "alg": "ES256", "jwk": self.jwk });
        let claims = NewProofClaims {
            jti: crate::secret::random_token(),
            htm: method,
            htu: htu.as_str(),
            iat: now,
            ath: access_token.map(access_token_hash),
            nonce,
        };
        let signing_input = format!("{}.{}", b64_json(&header), b64_json(&claims));
        let sig = self.pair.sign(&SystemRandom::new(), signing_input.as_bytes()).map_err(|_| DpopKeyError)?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref())))
    }
}

/// Base64url of a value's JSON (serialising these plain values cannot fail).
fn b64_json<T: Serialize>(v: &T) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap_or_default())
}

/// A DPoP key could not be made or read (bad PKCS#8, a failed random source).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DpopKeyError;

impl std::fmt::Display for DpopKeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the DPoP key could not be made or read (not an ES256 PKCS#8 key?)")
    }
}

impl std::error::Error for DpopKeyError {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const URL: &str = "https://id.example/token";

    fn expected<'a>(access_token: Option<&'a str>) -> Expected<'a> {
        Expected { method: "POST", url: URL, access_token, max_age: 60, max_skew: 5 }
    }

    #[test]
    fn a_proof_made_by_a_key_verifies_and_carries_its_thumbprint() {
        let key = DpopKey::generate().unwrap();
        let proof = key.proof("POST", "https://id.example/token?x=1#f", 1000, Some("n-1"), None).unwrap();
        let p = DpopProof::parse(&proof, DEFAULT_ALGORITHMS).unwrap();
        assert_eq!(p.jkt, key.jkt());
        assert_eq!((p.htm.as_str(), p.htu.as_str(), p.iat), ("POST", URL, 1000));
        assert_eq!(p.nonce.as_deref(), Some("n-1"));
        assert!(p.jti.len() >= 16, "at least 96 bits of randomness");
        p.check(&expected(None), 1010).unwrap();
        // A key read back from its PKCS#8 is the same key.
        let again = DpopKey::from_pkcs8(key.pkcs8()).unwrap();
        assert_eq!(again.jkt(), key.jkt());
    }

    /// RFC 7638 §3.1's example key and thumbprint.
    #[test]
    fn thumbprint_of_rfc_7638_example() {
        let jwk: Jwk = serde_json::from_value(serde_json::json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        }))
        .unwrap();
        assert_eq!(jwk.thumbprint(ThumbprintHash::SHA256), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }

    fn tamper(proof: &str, header: Option<serde_json::Value>, claims: Option<serde_json::Value>) -> String {
        let parts: Vec<&str> = proof.split('.').collect();
        let h = header.map_or(parts[0].to_owned(), |v| URL_SAFE_NO_PAD.encode(v.to_string()));
        let c = claims.map_or(parts[1].to_owned(), |v| URL_SAFE_NO_PAD.encode(v.to_string()));
        format!("{h}.{c}.{}", parts[2])
    }

    fn decoded(part: &str) -> serde_json::Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    #[test]
    fn each_check_of_section_4_3_refuses() {
        let key = DpopKey::generate().unwrap();
        let proof = key.proof("POST", URL, 1000, None, None).unwrap();
        let parts: Vec<&str> = proof.split('.').collect();
        let (header, claims) = (decoded(parts[0]), decoded(parts[1]));

        let mut h = header.clone();
        h["typ"] = "JWT".into();
        assert_eq!(DpopProof::parse(&tamper(&proof, Some(h), None), DEFAULT_ALGORITHMS), Err(DpopError::Typ));
        let mut h = header.clone();
        h["alg"] = "HS256".into();
        assert!(matches!(DpopProof::parse(&tamper(&proof, Some(h), None), DEFAULT_ALGORITHMS), Err(DpopError::Alg(_))));
        let mut h = header.clone();
        h["alg"] = "none".into();
        assert!(matches!(DpopProof::parse(&tamper(&proof, Some(h), None), DEFAULT_ALGORITHMS), Err(DpopError::Alg(_))));
        assert!(matches!(DpopProof::parse(&proof, &[Algorithm::RS256]), Err(DpopError::Alg(_))), "not in the list");
        let mut h = header.clone();
        h["jwk"]["d"] = "AAAA".into();
        assert_eq!(
            DpopProof::parse(&tamper(&proof, Some(h), None), DEFAULT_ALGORITHMS),
            Err(DpopError::Jwk("holds a private key"))
        );
        let mut h = header.clone();
        h.as_object_mut().unwrap().remove("jwk");
        assert_eq!(
            DpopProof::parse(&tamper(&proof, Some(h), None), DEFAULT_ALGORITHMS),
            Err(DpopError::Jwk("is missing"))
        );
        // Another key in the header: the signature no longer verifies.
        let other = DpopKey::generate().unwrap();
        let mut h = header.clone();
        h["jwk"] = other.public_jwk().clone();
        assert_eq!(DpopProof::parse(&tamper(&proof, Some(h), None), DEFAULT_ALGORITHMS), Err(DpopError::Signature));
        // Changed claims: the signature no longer verifies.
        let mut c = claims.clone();
        c["htm"] = "GET".into();
        assert_eq!(DpopProof::parse(&tamper(&proof, None, Some(c)), DEFAULT_ALGORITHMS), Err(DpopError::Signature));

        let p = DpopProof::parse(&proof, DEFAULT_ALGORITHMS).unwrap();
        let get = Expected { method: "GET", ..expected(None) };
        assert!(matches!(p.check(&get, 1000), Err(DpopError::Method { .. })));
        let elsewhere = Expected { url: "https://id.example/userinfo", ..expected(None) };
        assert!(matches!(p.check(&elsewhere, 1000), Err(DpopError::Url { .. })));
        let other_host = Expected { url: "https://evil.example/token", ..expected(None) };
        assert!(matches!(p.check(&other_host, 1000), Err(DpopError::Url { .. })));
        assert_eq!(p.check(&expected(None), 1061), Err(DpopError::Stale { iat: 1000, now: 1061 }));
        assert_eq!(p.check(&expected(None), 994), Err(DpopError::Stale { iat: 1000, now: 994 }));
        p.check(&expected(None), 996).unwrap();
        // With an access token, ath must be there and be its hash.
        assert_eq!(p.check(&expected(Some("token")), 1000), Err(DpopError::Ath));
        let with_ath =
            DpopProof::parse(&key.proof("POST", URL, 1000, None, Some("token")).unwrap(), DEFAULT_ALGORITHMS).unwrap();
        with_ath.check(&expected(Some("token")), 1000).unwrap();
        assert_eq!(with_ath.check(&expected(Some("another")), 1000), Err(DpopError::Ath));
        assert_eq!(with_ath.check_key(other.jkt()), Err(DpopError::KeyMismatch));
        with_ath.check_key(key.jkt()).unwrap();
    }

    #[test]
    fn missing_claims_and_multiple_headers_are_refused() {
        assert_eq!(DpopProof::single(["a", "b"]), Err(DpopError::Multiple));
        assert_eq!(DpopProof::single(Vec::<&str>::new()), Ok(None));
        assert_eq!(DpopProof::single(["a"]), Ok(Some("a")));
        assert!(matches!(DpopProof::parse("a.b", DEFAULT_ALGORITHMS), Err(DpopError::Malformed(_))));
        assert!(matches!(
            DpopProof::parse(&"a".repeat(MAX_PROOF_LEN + 1), DEFAULT_ALGORITHMS),
            Err(DpopError::Malformed(_))
        ));
    }

    #[test]
    fn htu_ignores_query_fragment_case_and_default_port() {
        assert!(same_target("https://ID.example:443/token?a=b#c", "https://id.example/token"));
        assert!(!same_target("https://id.example/token/", "https://id.example/token"));
        assert!(!same_target("http://id.example/token", "https://id.example/token"));
        assert!(!same_target("not a url", "https://id.example/token"));
    }

    #[test]
    fn nonces_live_one_to_two_slots_and_are_shared_by_instances() {
        let a = NonceKeeper::new(&[7; 32], 60);
        let b = NonceKeeper::new(&[7; 32], 60);
        let other = NonceKeeper::new(&[8; 32], 60);
        let n = a.current(120);
        assert!(b.accepts(&n, 120) && b.accepts(&n, 179) && b.accepts(&n, 239));
        assert!(!b.accepts(&n, 240), "two slots later");
        assert!(!other.accepts(&n, 120), "another deployment's secret");
        assert!(!a.accepts("120.forged", 120));
    }
}
