//! Private keys the client holds, read from files the user keeps: the key that signs
//! `private_key_jwt` client assertions (RFC 7523 §2.2, OpenID Connect Core §9) and a DPoP key
//! given with `--dpop-key` (RFC 9449). Both formats people have at hand are read: PEM (PKCS#8,
//! SEC1 `EC PRIVATE KEY`, PKCS#1 `RSA PRIVATE KEY`) and a private JWK (or a JWK Set holding one).
//!
//! The algorithm follows from the key: P-256 signs ES256, P-384 ES384, Ed25519 EdDSA; an RSA key
//! signs PS256 (FAPI 2.0 §5.4.1 forbids RS256) unless its JWK says `RS256` or the provider accepts
//! only RS256.

use std::path::{Path, PathBuf};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPairComponents, PublicKeyComponents};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, EcdsaSigningAlgorithm,
    Ed25519KeyPair, RSA_PKCS1_SHA256, RSA_PSS_SHA256, RsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use latchkey_proto::dpop::DpopKey;
use latchkey_proto::secret::random_token;
use serde::Deserialize;

use crate::Error;

/// How long a client assertion lives: long enough for one request, short enough that a copy is
/// useless a minute later (RFC 7523 §3 point 4; the server also refuses its `jti` a second time).
pub const ASSERTION_LIFETIME: i64 = 60;

/// A private key read from a file, with the algorithm it signs.
pub struct ClientKey {
    pair: Pair,
    alg: &'static str,
    kid: Option<String>,
    /// Whether the algorithm was fixed by the key file (a JWK's `alg`), not chosen from the key type.
    alg_fixed: bool,
}

enum Pair {
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
    Ed(Ed25519KeyPair),
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientKey").field("alg", &self.alg).field("kid", &self.kid).finish_non_exhaustive()
    }
}

fn key_error(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::ClientKey(format!("{}: {reason}", path.display()))
}

/// Reads a file holding a private key, refusing one that other accounts can read: whoever reads
/// it can authenticate as the client (or use the tokens bound to it).
pub fn read_private_file(path: &Path) -> Result<Vec<u8>, Error> {
    let meta = std::fs::metadata(path).map_err(|e| key_error(path, format!("cannot read it: {e}")))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(key_error(
                path,
                format!(
                    "other accounts can read it (mode {:o}); run chmod 600 on it",
                    meta.permissions().mode() & 0o777
                ),
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    std::fs::read(path).map_err(|e| key_error(path, format!("cannot read it: {e}")))
}

/// The DER inside the first PEM block of `text`, with its label.
fn pem_block(text: &str) -> Option<(String, Vec<u8>)> {
    let start = text.find("-----BEGIN ")?;
    let rest = &text[start + 11..];
    let label_end = rest.find("-----")?;
    let label = rest[..label_end].to_owned();
    let body_start = label_end + 5;
    let end = rest.find(&format!("-----END {label}-----"))?;
    let mut b64 = String::new();
    for line in rest.get(body_start..end)?.lines() {
        // Headers (`Proc-Type: 4,ENCRYPTED`) mark a legacy encrypted key.
        if line.contains(':') {
            return Some(("ENCRYPTED".into(), vec![]));
        }
        b64.push_str(line.trim());
    }
    STANDARD.decode(b64).ok().map(|der| (label, der))
}

#[derive(Deserialize)]
struct PrivateJwk {
    kty: String,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default)]
    d: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    p: Option<String>,
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    dp: Option<String>,
    #[serde(default)]
    dq: Option<String>,
    #[serde(default)]
    qi: Option<String>,
}

fn ec_alg(curve: &str) -> Option<(&'static EcdsaSigningAlgorithm, &'static str)> {
    match curve {
        "P-256" => Some((&ECDSA_P256_SHA256_FIXED_SIGNING, "ES256")),
        "P-384" => Some((&ECDSA_P384_SHA384_FIXED_SIGNING, "ES384")),
        _ => None,
    }
}

impl ClientKey {
    /// Reads a private key from a PEM or JWK file (mode 0600 on Unix).
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let bytes = read_private_file(path)?;
        Self::parse(&bytes).map_err(|reason| key_error(path, reason))
    }

    /// Parses a PEM or JWK private key; the error says what is wrong with it.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "it is neither PEM nor JSON text".to_owned())?;
        if text.trim_start().starts_with('{') {
            return Self::from_jwk_text(text);
        }
        let Some((label, der)) = pem_block(text) else {
            return Err("it holds no PEM block and is not a JWK".into());
        };
        match label.as_str() {
            "PRIVATE KEY" => Self::from_pkcs8(&der),
            "EC PRIVATE KEY" => [&ECDSA_P256_SHA256_FIXED_SIGNING, &ECDSA_P384_SHA384_FIXED_SIGNING]
                .into_iter()
                .zip(["ES256", "ES384"])
                .find_map(|(a, name)| EcdsaKeyPair::from_private_key_der(a, &der).ok().map(|k| (k, name)))
                .map(|(k, alg)| Self { pair: Pair::Ec(k), alg, kid: None, alg_fixed: false })
                .ok_or_else(|| "its EC key is not on P-256 or P-384".to_owned()),
            "RSA PRIVATE KEY" => RsaKeyPair::from_der(&der)
                .map(|k| Self { pair: Pair::Rsa(k), alg: "PS256", kid: None, alg_fixed: false })
                .map_err(|e| format!("its RSA key is unusable: {e}")),
            "ENCRYPTED PRIVATE KEY" | "ENCRYPTED" => {
                Err("it is encrypted; decrypt it first (openssl pkey -in FILE -out PLAIN.pem)".into())
            }
            "PUBLIC KEY" => Err("it is a public key; the private key is needed to sign".into()),
            other => Err(format!("its PEM block is {other:?}, not a private key")),
        }
    }

    fn from_pkcs8(der: &[u8]) -> Result<Self, String> {
        let plain = |pair, alg| Self { pair, alg, kid: None, alg_fixed: false };
        if let Ok(k) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der) {
            return Ok(plain(Pair::Ec(k), "ES256"));
        }
        if let Ok(k) = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, der) {
            return Ok(plain(Pair::Ec(k), "ES384"));
        }
        if let Ok(k) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
            return Ok(plain(Pair::Ed(k), "EdDSA"));
        }
        if let Ok(k) = RsaKeyPair::from_pkcs8(der) {
            return Ok(plain(Pair::Rsa(k), "PS256"));
        }
        Err("its PKCS#8 key is not EC P-256/P-384, Ed25519 or RSA (2048 bits or more)".into())
    }

    fn from_jwk_text(text: &str) -> Result<Self, String> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("it is not JSON: {e}"))?;
        // A JWK Set is accepted when it holds exactly one private key.
        let jwk = match value.get("keys").and_then(serde_json::Value::as_array) {
            Some(keys) => {
                let private: Vec<_> = keys.iter().filter(|k| k.get("d").is_some()).collect();
                match private.as_slice() {
                    [one] => (*one).clone(),
                    [] => return Err("its JWK Set holds no private key (no \"d\")".into()),
                    _ => return Err("its JWK Set holds several private keys; keep one per file".into()),
                }
            }
            None => value,
        };
        let jwk: PrivateJwk = serde_json::from_value(jwk).map_err(|e| format!("it is not a JWK: {e}"))?;
        let b64 = |v: &Option<String>, name: &str| -> Result<Vec<u8>, String> {
            let s = v.as_deref().ok_or_else(|| format!("the JWK lacks {name:?}"))?;
            URL_SAFE_NO_PAD.decode(s).map_err(|_| format!("the JWK's {name:?} is not base64url"))
        };
        if jwk.d.is_none() {
            return Err("the JWK is a public key (no \"d\"); the private key is needed to sign".into());
        }
        let (pair, alg) = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
            ("EC", Some(crv)) => {
                let (sig, alg) = ec_alg(crv).ok_or_else(|| format!("the JWK's curve {crv} is not P-256 or P-384"))?;
                let mut point = vec![4u8];
                point.extend(b64(&jwk.x, "x")?);
                point.extend(b64(&jwk.y, "y")?);
                let pair = EcdsaKeyPair::from_private_key_and_public_key(sig, &b64(&jwk.d, "d")?, &point)
                    .map_err(|e| format!("the JWK's EC key is inconsistent: {e}"))?;
                (Pair::Ec(pair), alg)
            }
            ("OKP", Some("Ed25519")) => {
                let pair = Ed25519KeyPair::from_seed_and_public_key(&b64(&jwk.d, "d")?, &b64(&jwk.x, "x")?)
                    .map_err(|e| format!("the JWK's Ed25519 key is inconsistent: {e}"))?;
                (Pair::Ed(pair), "EdDSA")
            }
            ("RSA", _) => {
                let parts = KeyPairComponents {
                    public_key: PublicKeyComponents { n: b64(&jwk.n, "n")?, e: b64(&jwk.e, "e")? },
                    d: b64(&jwk.d, "d")?,
                    p: b64(&jwk.p, "p")?,
                    q: b64(&jwk.q, "q")?,
                    dP: b64(&jwk.dp, "dp")?,
                    dQ: b64(&jwk.dq, "dq")?,
                    qInv: b64(&jwk.qi, "qi")?,
                };
                let pair =
                    RsaKeyPair::from_components(&parts).map_err(|e| format!("the JWK's RSA key is unusable: {e}"))?;
                (Pair::Rsa(pair), "PS256")
            }
            (kty, crv) => return Err(format!("the JWK's key type {kty} {} is not supported", crv.unwrap_or(""))),
        };
        let mut key = Self { pair, alg, kid: jwk.kid, alg_fixed: false };
        if let Some(a) = jwk.alg {
            key.alg = match (&key.pair, a.as_str()) {
                (Pair::Rsa(_), "RS256") => "RS256",
                (Pair::Rsa(_), "PS256") => "PS256",
                (_, a) if a == key.alg => key.alg,
                (_, a) => return Err(format!("the JWK's alg {a} does not fit its key (it signs {})", key.alg)),
            };
            key.alg_fixed = true;
        }
        Ok(key)
    }

    /// Sets the `kid` header of the assertions (default: the JWK's `kid`, or none for PEM keys,
    /// when the provider tries each of the client's keys).
    pub fn with_kid(mut self, kid: Option<String>) -> Self {
        if kid.is_some() {
            self.kid = kid;
        }
        self
    }

    /// The JWS algorithm this key signs with.
    pub fn algorithm(&self) -> &'static str {
        self.alg
    }

    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// Fits the algorithm to what the provider accepts (`token_endpoint_auth_signing_alg_values_supported`):
    /// an RSA key whose algorithm the file does not fix falls back to RS256 when the provider lists
    /// it and not PS256. A key the provider cannot verify is refused now, not at the first request.
    pub fn fit_to(mut self, supported: Option<&[String]>) -> Result<Self, Error> {
        let Some(list) = supported else { return Ok(self) };
        let has = |a: &str| list.iter().any(|s| s == a);
        if matches!(self.pair, Pair::Rsa(_)) && !self.alg_fixed && !has("PS256") && has("RS256") {
            self.alg = "RS256";
        }
        // Providers name Ed25519 signatures `EdDSA` or (RFC 9864) `Ed25519`; both are the same bytes.
        let accepted = has(self.alg) || (self.alg == "EdDSA" && has("Ed25519"));
        if !accepted {
            return Err(Error::ClientKey(format!(
                "it signs {}, which the provider does not accept for client assertions (it lists {})",
                self.alg,
                list.join(", ")
            )));
        }
        Ok(self)
    }

    /// A `private_key_jwt` client assertion (RFC 7523 §3): `iss` = `sub` = the client, `aud` = the
    /// issuer (as FAPI 2.0 §5.3.2.1 asks; RFC 7523 allows it), a fresh `jti`, valid for
    /// [`ASSERTION_LIFETIME`] seconds from `now`.
    pub fn assertion(&self, client_id: &str, audience: &str, now: i64) -> Result<String, Error> {
        let mut header = serde_json::json!({ "alg": self.alg, "typ": "JWT" });
        if let Some(kid) = &self.kid {
            header["kid"] = kid.as_str().into();
        }
        let claims = serde_json::json!({
            "iss": client_id,
            "sub": client_id,
            "aud": audience,
            "jti": random_token(),
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
        });
        let input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let sig = self.sign(input.as_bytes())?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        let failed = || Error::ClientKey("signing the client assertion failed".into());
        let rng = SystemRandom::new();
        match &self.pair {
            Pair::Ec(k) => k.sign(&rng, message).map(|s| s.as_ref().to_vec()).map_err(|_| failed()),
            Pair::Ed(k) => Ok(k.sign(message).as_ref().to_vec()),
            Pair::Rsa(k) => {
                let padding = if self.alg == "RS256" { &RSA_PKCS1_SHA256 } else { &RSA_PSS_SHA256 };
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(padding, &rng, message, &mut sig).map_err(|_| failed())?;
                Ok(sig)
            }
        }
    }
}

/// Reads a DPoP key from a file: an EC P-256 private key (ES256, what [`DpopKey`] signs) as PEM
/// or JWK, mode 0600.
pub fn dpop_key_from_file(path: &Path) -> Result<DpopKey, Error> {
    let bytes = read_private_file(path)?;
    let key = ClientKey::parse(&bytes).map_err(|reason| key_error(path, reason))?;
    let Pair::Ec(pair) = &key.pair else {
        return Err(key_error(path, format!("a DPoP key must be EC P-256 (ES256); this one signs {}", key.alg)));
    };
    if key.alg != "ES256" {
        return Err(key_error(path, format!("a DPoP key must be EC P-256 (ES256); this one signs {}", key.alg)));
    }
    let pkcs8 = pair.to_pkcs8v1().map_err(|_| key_error(path, "its key cannot be re-encoded as PKCS#8"))?;
    DpopKey::from_pkcs8(pkcs8.as_ref()).map_err(|e| key_error(path, e.to_string()))
}

/// An absolute form of a key file's path, for the token cache to find it again from any
/// directory.
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// PEM text of DER bytes (for tests and for writing generated keys).
pub fn to_pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use aws_lc_rs::encoding::{AsBigEndian, AsDer};
    use aws_lc_rs::signature::KeyPair;
    use latchkey_proto::client_assertion::{AssertionRules, ClientAssertion, DEFAULT_ALGORITHMS};
    use latchkey_proto::jose::KeySet;

    const ISS: &str = "https://id.example";

    /// Latchkey's own verifier (crates/proto) checks what this module signs.
    fn verify(assertion: &str, public_jwk: serde_json::Value, now: i64) -> Result<(), String> {
        let keys = KeySet::from_jwks(serde_json::json!({ "keys": [public_jwk] }).to_string().as_bytes()).unwrap();
        let (id, a) = ClientAssertion::parse(assertion).map_err(|e| e.description.into_owned())?;
        let rules =
            AssertionRules { client_id: &id, audiences: &[ISS], max_lifetime: 300, skew: 5, sole_audience: false };
        a.verify(&keys, DEFAULT_ALGORITHMS, &rules, now).map(|_| ()).map_err(|e| e.description())
    }

    fn claims(assertion: &str) -> (serde_json::Value, serde_json::Value) {
        let p: Vec<&str> = assertion.split('.').collect();
        let d = |s: &str| serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).unwrap()).unwrap();
        (d(p[0]), d(p[1]))
    }

    #[test]
    fn an_es256_pem_key_signs_assertions_the_verifier_accepts() {
        let dpop = DpopKey::generate().unwrap();
        let pem = to_pem("PRIVATE KEY", dpop.pkcs8());
        let key = ClientKey::parse(pem.as_bytes()).unwrap();
        assert_eq!(key.algorithm(), "ES256");
        let a = key.assertion("app", ISS, 1000).unwrap();
        let (h, c) = claims(&a);
        assert_eq!(h["alg"], "ES256");
        assert!(h.get("kid").is_none(), "a PEM key has no kid unless one is given");
        assert_eq!((c["iss"].as_str(), c["sub"].as_str(), c["aud"].as_str()), (Some("app"), Some("app"), Some(ISS)));
        assert_eq!(c["exp"].as_i64(), Some(1000 + ASSERTION_LIFETIME));
        assert_eq!(c["iat"].as_i64(), Some(1000));
        verify(&a, dpop.public_jwk().clone(), 1010).unwrap();
        // Each assertion has its own jti: a server refuses a jti it saw (RFC 7523 §3 point 7).
        let b = key.assertion("app", ISS, 1000).unwrap();
        assert_ne!(claims(&b).1["jti"], c["jti"]);
        // After its minute it is refused.
        assert!(verify(&a, dpop.public_jwk().clone(), 1000 + ASSERTION_LIFETIME + 6).unwrap_err().contains("exp"));
        // Another client's key does not verify it.
        let other = DpopKey::generate().unwrap();
        assert!(verify(&a, other.public_jwk().clone(), 1010).is_err());
        let with_kid = ClientKey::parse(pem.as_bytes()).unwrap().with_kid(Some("k-7".into()));
        assert_eq!(claims(&with_kid.assertion("app", ISS, 1).unwrap()).0["kid"], "k-7");
    }

    #[test]
    fn jwk_keys_of_each_type_sign_with_the_algorithm_they_imply() {
        // EC P-256 as a private JWK, inside a JWK Set.
        let dpop = DpopKey::generate().unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, dpop.pkcs8()).unwrap();
        let d = pair.private_key().as_be_bytes().unwrap();
        let mut jwk = dpop.public_jwk().clone();
        jwk["d"] = URL_SAFE_NO_PAD.encode(d.as_ref()).into();
        jwk["kid"] = "ec-1".into();
        let set = serde_json::json!({ "keys": [dpop.public_jwk(), jwk] });
        let key = ClientKey::parse(set.to_string().as_bytes()).unwrap();
        assert_eq!((key.algorithm(), key.kid()), ("ES256", Some("ec-1")));
        let mut public = dpop.public_jwk().clone();
        public["kid"] = "ec-1".into();
        verify(&key.assertion("app", ISS, 1000).unwrap(), public, 1000).unwrap();

        // The same EC key as SEC1 (`EC PRIVATE KEY`, what `openssl ecparam -genkey` writes).
        let sec1 = pair.private_key().as_der().unwrap();
        let from_sec1 = ClientKey::parse(to_pem("EC PRIVATE KEY", sec1.as_ref()).as_bytes()).unwrap();
        assert_eq!(from_sec1.algorithm(), "ES256");
        verify(&from_sec1.assertion("app", ISS, 1000).unwrap(), dpop.public_jwk().clone(), 1000).unwrap();

        // Ed25519 as PKCS#8 PEM: EdDSA.
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let ed = ClientKey::parse(to_pem("PRIVATE KEY", doc.as_ref()).as_bytes()).unwrap();
        assert_eq!(ed.algorithm(), "EdDSA");
        let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
        let public = serde_json::json!({ "kty": "OKP", "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()) });
        verify(&ed.assertion("app", ISS, 1000).unwrap(), public, 1000).unwrap();

        // RSA as PKCS#8 PEM: PS256 by default, RS256 when the provider accepts only that.
        let rsa = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let der = rsa.as_der().unwrap();
        let pem = to_pem("PRIVATE KEY", der.as_ref());
        let p = rsa.public_key();
        let public = serde_json::json!({ "kty": "RSA",
            "n": URL_SAFE_NO_PAD.encode(p.modulus().big_endian_without_leading_zero()),
            "e": URL_SAFE_NO_PAD.encode(p.exponent().big_endian_without_leading_zero()) });
        let ps = ClientKey::parse(pem.as_bytes()).unwrap();
        assert_eq!(ps.algorithm(), "PS256");
        verify(&ps.assertion("app", ISS, 1000).unwrap(), public.clone(), 1000).unwrap();
        let rs = ClientKey::parse(pem.as_bytes()).unwrap().fit_to(Some(&["RS256".into(), "ES256".into()])).unwrap();
        assert_eq!(rs.algorithm(), "RS256");
        let a = rs.assertion("app", ISS, 1000).unwrap();
        assert_eq!(claims(&a).0["alg"], "RS256");
        verify(&a, public, 1000).unwrap();
    }

    #[test]
    fn unusable_keys_say_why() {
        let e = |text: &str| ClientKey::parse(text.as_bytes()).unwrap_err();
        assert!(e("hello").contains("no PEM block"));
        assert!(e("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n").contains("public key"));
        assert!(
            e("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n")
                .contains("encrypted")
        );
        let dpop = DpopKey::generate().unwrap();
        assert!(e(&dpop.public_jwk().to_string()).contains("public key"));
        let mut jwk = dpop.public_jwk().clone();
        jwk["d"] = URL_SAFE_NO_PAD.encode([1u8; 32]).into();
        assert!(e(&jwk.to_string()).contains("inconsistent"), "a d that is not the x/y's private key");
        // The provider lists algorithms and this key's is not among them: refused before any request.
        let es = ClientKey::parse(to_pem("PRIVATE KEY", dpop.pkcs8()).as_bytes()).unwrap();
        let err = es.fit_to(Some(&["RS256".into()])).unwrap_err().to_string();
        assert!(err.contains("signs ES256") && err.contains("RS256"), "{err}");
    }

    #[test]
    fn key_files_must_be_private_and_dpop_keys_p256() {
        let dir = tempfile::tempdir().unwrap();
        let dpop = DpopKey::generate().unwrap();
        let path = dir.path().join("dpop.pem");
        std::fs::write(&path, to_pem("PRIVATE KEY", dpop.pkcs8())).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = dpop_key_from_file(&path).unwrap_err().to_string();
            assert!(e.contains("chmod 600"), "{e}");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        assert_eq!(dpop_key_from_file(&path).unwrap().jkt(), dpop.jkt(), "the same key, read back");
        let ed = dir.path().join("ed.pem");
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        std::fs::write(&ed, to_pem("PRIVATE KEY", doc.as_ref())).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&ed, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let e = dpop_key_from_file(&ed).unwrap_err().to_string();
        assert!(e.contains("must be EC P-256"), "{e}");
    }
}
