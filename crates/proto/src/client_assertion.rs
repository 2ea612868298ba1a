//! `private_key_jwt` client authentication (RFC 7523 §2.2 and §3, OpenID Connect Core §9): the
//! client signs a short-lived JWT with its own private key instead of sending a shared secret.
//!
//! Parsing at the edge only reads who the assertion claims to be from (`iss` = `sub` =
//! `client_id`); nothing is trusted until [`ClientAssertion::verify`] checked the signature with
//! the keys the client registered and every claim. Whether its `jti` was used before is the
//! caller's (a single-use store, RFC 7523 §3 point 7).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde::Deserialize;

use crate::jose::{JoseError, KeySet};
use crate::{ClientId, OAuthError};

/// `client_assertion_type` of a JWT assertion (RFC 7523 §2.2).
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Longest assertion read: far above any real one.
pub const MAX_ASSERTION_LEN: usize = 8 * 1024;
/// Longest `jti` kept in the single-use store.
pub const MAX_JTI_LEN: usize = 256;
/// The algorithms accepted for client assertions and advertised as
/// `token_endpoint_auth_signing_alg_values_supported`: asymmetric only (FAPI 2.0 §5.4: PS256,
/// ES256, EdDSA; RS256 for the many libraries that default to it).
pub const DEFAULT_ALGORITHMS: &[Algorithm] = &[Algorithm::PS256, Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256];

/// A client assertion as received. It is a credential until it expires, so it is redacted.
#[derive(Clone)]
pub struct ClientAssertion(String);

impl std::fmt::Debug for ClientAssertion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientAssertion([redacted])")
    }
}

#[derive(Deserialize)]
struct Unverified {
    iss: Option<serde_json::Value>,
    sub: Option<serde_json::Value>,
}

/// The claims of a verified assertion that the caller still needs: `jti` to mark it used until
/// `exp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAssertion {
    pub jti: String,
    pub exp: i64,
}

/// What a verified assertion must say, for [`ClientAssertion::verify`].
#[derive(Debug, Clone, Copy)]
pub struct AssertionRules<'a> {
    pub client_id: &'a ClientId,
    /// Values `aud` may hold (one is enough): the issuer identifier and the URL of the endpoint
    /// called (RFC 7523 §3 point 3; FAPI 2.0 §5.3.2.1 asks clients for the issuer).
    pub audiences: &'a [&'a str],
    /// `aud` must be one JSON string, not an array (draft-ietf-oauth-rfc7523bis §3; FAPI 2.0
    /// asks for the issuer "as a string"): an array could also name a server the client meant
    /// to talk to, which is how audience-injection attacks reuse assertions.
    pub sole_audience: bool,
    /// Longest accepted lifetime (`exp` − now), in seconds: a long-lived assertion is a
    /// long-lived secret.
    pub max_lifetime: i64,
    /// Clock skew tolerated on `iat`/`nbf` and on `exp`, in seconds.
    pub skew: i64,
}

#[derive(Deserialize)]
struct Claims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<Audience>,
    exp: Option<i64>,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    iat: Option<i64>,
    jti: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains_any(&self, wanted: &[&str]) -> bool {
        match self {
            Self::One(a) => wanted.contains(&a.as_str()),
            Self::Many(v) => v.iter().any(|a| wanted.contains(&a.as_str())),
        }
    }
}

/// Why an assertion is refused; each variant is one rule, and [`AssertionError::description`]
/// names it for `error_description` (answered as `invalid_client`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssertionError {
    Jose(JoseError),
    /// `iss` and `sub` must both be the client's id (RFC 7523 §3 points 1–2).
    Subject,
    /// `aud` names neither the issuer nor this endpoint (point 3).
    Audience,
    /// No `exp`, or `exp` in the past (point 4).
    Expired,
    /// `exp` further away than the server accepts.
    TooLong,
    /// `nbf` or `iat` in the future (point 5–6).
    NotYetValid,
    /// No `jti`, or one too long to keep (point 7).
    Jti,
}

impl AssertionError {
    pub fn description(&self) -> String {
        match self {
            Self::Jose(e) => format!("client assertion: {e}"),
            Self::Subject => "client assertion: iss and sub must both be the client_id".into(),
            Self::Audience => "client assertion: aud must name this server's issuer (or the endpoint's URL)".into(),
            Self::Expired => "client assertion: exp is missing or in the past".into(),
            Self::TooLong => "client assertion: exp is too far in the future; make short-lived assertions".into(),
            Self::NotYetValid => "client assertion: nbf or iat is in the future".into(),
            Self::Jti => "client assertion: jti is missing or too long".into(),
        }
    }
}

impl ClientAssertion {
    /// Reads `client_assertion` (its `client_assertion_type` checked by the caller) at the edge:
    /// the client it claims to be from, before anything is verified.
    pub fn parse(value: &str) -> Result<(ClientId, Self), OAuthError> {
        let bad = |why: &'static str| OAuthError::invalid_client(format!("the client_assertion is malformed: {why}"));
        if value.len() > MAX_ASSERTION_LEN {
            return Err(bad("longer than 8 KiB"));
        }
        let mut parts = value.split('.');
        let (Some(_), Some(payload), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(bad("a JWT has three dot-separated parts"));
        };
        let bytes = URL_SAFE_NO_PAD.decode(payload).map_err(|_| bad("the payload is not base64url"))?;
        let c: Unverified = serde_json::from_slice(&bytes).map_err(|_| bad("the payload is not a JSON object"))?;
        let (Some(serde_json::Value::String(iss)), Some(serde_json::Value::String(sub))) = (c.iss, c.sub) else {
            return Err(bad("iss and sub must be strings naming the client"));
        };
        if iss != sub {
            return Err(OAuthError::invalid_client("client assertion: iss and sub must both be the client_id"));
        }
        let client_id = ClientId::parse(&iss).map_err(|_| bad("iss is not a valid client_id"))?;
        Ok((client_id, Self(value.to_owned())))
    }

    /// Verifies the signature with the client's `keys` and an algorithm from `allowed`, then every
    /// claim against `rules` at `now`.
    pub fn verify(
        &self,
        keys: &KeySet,
        allowed: &[Algorithm],
        rules: &AssertionRules<'_>,
        now: i64,
    ) -> Result<VerifiedAssertion, AssertionError> {
        let (_, c): (_, Claims) = keys.verify(&self.0, allowed).map_err(AssertionError::Jose)?;
        let id = rules.client_id.as_str();
        if c.iss.as_deref() != Some(id) || c.sub.as_deref() != Some(id) {
            return Err(AssertionError::Subject);
        }
        if !c.aud.as_ref().is_some_and(|a| a.contains_any(rules.audiences))
            || (rules.sole_audience && !matches!(c.aud, Some(Audience::One(_))))
        {
            return Err(AssertionError::Audience);
        }
        let exp = c.exp.ok_or(AssertionError::Expired)?;
        if exp + rules.skew <= now {
            return Err(AssertionError::Expired);
        }
        if exp - now > rules.max_lifetime {
            return Err(AssertionError::TooLong);
        }
        if c.nbf.is_some_and(|t| t > now + rules.skew) || c.iat.is_some_and(|t| t > now + rules.skew) {
            return Err(AssertionError::NotYetValid);
        }
        let jti = c.jti.filter(|j| !j.is_empty() && j.len() <= MAX_JTI_LEN).ok_or(AssertionError::Jti)?;
        Ok(VerifiedAssertion { jti, exp })
    }

    /// The assertion itself. Dangerous: it authenticates its client until it expires.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    use serde_json::json;

    use super::*;

    fn b64(v: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(v)
    }

    fn key() -> (EcdsaKeyPair, KeySet) {
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).unwrap();
        let p = pair.public_key().as_ref();
        let jwks =
            json!({ "keys": [{ "kty": "EC", "crv": "P-256", "kid": "k1", "x": b64(&p[1..33]), "y": b64(&p[33..]) }] });
        (pair, KeySet::from_jwks(jwks.to_string().as_bytes()).unwrap())
    }

    fn sign(pair: &EcdsaKeyPair, claims: &serde_json::Value) -> String {
        let input = format!(
            "{}.{}",
            b64(json!({ "alg": "ES256", "kid": "k1" }).to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = pair.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", b64(sig.as_ref()))
    }

    fn claims() -> serde_json::Value {
        json!({ "iss": "app", "sub": "app", "aud": "https://id.example", "exp": 1060, "iat": 1000, "jti": "j-1" })
    }

    fn check(pair: &EcdsaKeyPair, keys: &KeySet, c: &serde_json::Value) -> Result<VerifiedAssertion, AssertionError> {
        let (id, a) = ClientAssertion::parse(&sign(pair, c)).unwrap();
        let rules = AssertionRules {
            client_id: &id,
            audiences: &["https://id.example", "https://id.example/token"],
            max_lifetime: 300,
            skew: 5,
            sole_audience: c.get("sole").is_some(),
        };
        a.verify(keys, DEFAULT_ALGORITHMS, &rules, 1000)
    }

    #[test]
    fn a_good_assertion_verifies_and_each_rule_refuses() {
        let (pair, keys) = key();
        assert_eq!(check(&pair, &keys, &claims()), Ok(VerifiedAssertion { jti: "j-1".into(), exp: 1060 }));
        let with = |k: &str, v: serde_json::Value| {
            let mut c = claims();
            c[k] = v;
            c
        };
        assert!(check(&pair, &keys, &with("aud", json!(["x", "https://id.example/token"]))).is_ok());
        let mut sole = with("aud", json!(["https://id.example"]));
        sole["sole"] = json!(true);
        assert_eq!(check(&pair, &keys, &sole), Err(AssertionError::Audience), "an array, where one string is required");
        sole["aud"] = json!("https://id.example");
        assert!(check(&pair, &keys, &sole).is_ok());
        assert_eq!(check(&pair, &keys, &with("aud", json!("https://evil.example"))), Err(AssertionError::Audience));
        assert_eq!(check(&pair, &keys, &with("exp", json!(990))), Err(AssertionError::Expired));
        assert_eq!(check(&pair, &keys, &with("exp", json!(5000))), Err(AssertionError::TooLong));
        assert_eq!(check(&pair, &keys, &with("iat", json!(1100))), Err(AssertionError::NotYetValid));
        assert_eq!(check(&pair, &keys, &with("jti", json!(""))), Err(AssertionError::Jti));
        let mut no_exp = claims();
        no_exp.as_object_mut().unwrap().remove("exp");
        assert_eq!(check(&pair, &keys, &no_exp), Err(AssertionError::Expired));
        // Another key: the registered keys do not verify it.
        let (other, _) = key();
        assert!(matches!(check(&other, &keys, &claims()), Err(AssertionError::Jose(JoseError::BadSignature))));
    }

    #[test]
    fn the_edge_reads_the_client_and_refuses_mismatched_subjects() {
        let (pair, _) = key();
        let mut c = claims();
        c["sub"] = "other".into();
        assert!(ClientAssertion::parse(&sign(&pair, &c)).unwrap_err().description.contains("iss and sub"));
        assert!(ClientAssertion::parse("a.b").is_err());
        let (id, a) = ClientAssertion::parse(&sign(&pair, &claims())).unwrap();
        assert_eq!(id.as_str(), "app");
        assert_eq!(format!("{a:?}"), "ClientAssertion([redacted])");
    }
}
