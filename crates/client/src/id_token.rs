//! ID Token validation, OpenID Connect Core §3.1.3.7: signature against the provider's JWKS, then
//! `iss`, `aud`/`azp`, `exp`/`iat` against the caller's `now`, `nonce`, and `at_hash`.

use jsonwebtoken::Algorithm;
use latchkey_proto::jose::{ASYMMETRIC_ALGORITHMS, JoseError, KeySet, left_half_hash};
use serde::{Deserialize, Serialize};

use crate::IdTokenError;

/// Clock skew tolerated between us and the provider, in seconds.
pub const LEEWAY: i64 = 60;

/// The claims of a validated id_token that a relying party uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdTokenClaims {
    pub iss: String,
    pub sub: String,
    pub exp: i64,
    pub iat: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// Every other claim (name, email, sid…), as sent.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// What the id_token is checked against.
pub struct Expected<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    /// The nonce sent with the authorization request; `None` after a refresh (Core §12.2).
    pub nonce: Option<&'a str>,
    /// The access token of the same response, for `at_hash`.
    pub access_token: Option<&'a str>,
    /// After a refresh: the subject of the original id_token.
    pub subject: Option<&'a str>,
    pub now: i64,
}

#[derive(Deserialize)]
struct Raw {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default)]
    azp: Option<String>,
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    iat: Option<i64>,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    at_hash: Option<String>,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

/// `aud` is a string or an array of strings (RFC 7519 §4.1.3).
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

/// Validates an id_token. `keys` must be the provider's current JWK Set.
pub fn validate(keys: &KeySet, token: &str, want: &Expected<'_>) -> Result<IdTokenClaims, IdTokenError> {
    let (header, raw): (_, Raw) = keys.verify(token, ASYMMETRIC_ALGORITHMS).map_err(IdTokenError::Signature)?;
    // RFC 9068 §4: an access token must never pass as an id_token.
    if header.typ_is("at+jwt") {
        return Err(IdTokenError::WrongType(header.typ.unwrap_or_default()));
    }
    let iss = raw.iss.ok_or(IdTokenError::MissingClaim("iss"))?;
    if iss != want.issuer {
        return Err(IdTokenError::Issuer { expected: want.issuer.into(), found: iss });
    }
    let sub = raw.sub.ok_or(IdTokenError::MissingClaim("sub"))?;
    let aud = match raw.aud.ok_or(IdTokenError::MissingClaim("aud"))? {
        Audience::One(a) => vec![a],
        Audience::Many(a) => a,
    };
    if !aud.iter().any(|a| a == want.client_id) {
        return Err(IdTokenError::Audience { client_id: want.client_id.into() });
    }
    if (aud.len() > 1 || raw.azp.is_some()) && raw.azp.as_deref() != Some(want.client_id) {
        return Err(IdTokenError::AuthorizedParty);
    }
    let exp = raw.exp.ok_or(IdTokenError::MissingClaim("exp"))?;
    if want.now > exp + LEEWAY {
        return Err(IdTokenError::Expired { exp, now: want.now });
    }
    let iat = raw.iat.ok_or(IdTokenError::MissingClaim("iat"))?;
    if iat > want.now + LEEWAY {
        return Err(IdTokenError::IssuedInFuture { iat, now: want.now });
    }
    if let Some(expected) = want.nonce {
        match raw.nonce.as_deref() {
            None => return Err(IdTokenError::NonceMissing),
            Some(n) if n != expected => return Err(IdTokenError::NonceMismatch),
            Some(_) => {}
        }
    }
    if let (Some(at_hash), Some(access_token)) = (raw.at_hash.as_deref(), want.access_token) {
        let alg: Algorithm = header.alg.parse().map_err(|_| IdTokenError::AtHashMismatch)?;
        if left_half_hash(alg, access_token).as_deref() != Some(at_hash) {
            return Err(IdTokenError::AtHashMismatch);
        }
    }
    if let Some(subject) = want.subject
        && subject != sub
    {
        return Err(IdTokenError::SubjectChanged);
    }
    let mut other = raw.rest;
    other.insert("aud".into(), serde_json::json!(aud));
    if let Some(azp) = raw.azp {
        other.insert("azp".into(), azp.into());
    }
    let auth_time = other.remove("auth_time").and_then(|v| v.as_i64());
    Ok(IdTokenClaims { iss, sub, exp, iat, auth_time, nonce: raw.nonce, other })
}

/// Whether an id_token failed only because its key is not in the cached JWK Set, in which case
/// the caller refetches the set once (the provider may have rotated its keys) and retries.
pub fn unknown_key(e: &IdTokenError) -> bool {
    matches!(e, IdTokenError::Signature(JoseError::UnknownKey(_)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::testkey::TestKey;
    use serde_json::json;

    const ISS: &str = "https://id.example";

    fn want<'a>(nonce: Option<&'a str>, at: Option<&'a str>) -> Expected<'a> {
        Expected { issuer: ISS, client_id: "app", nonce, access_token: at, subject: None, now: 1000 }
    }

    fn claims() -> serde_json::Value {
        json!({"iss": ISS, "sub": "u1", "aud": "app", "exp": 1600, "iat": 1000, "nonce": "n1",
               "auth_time": 990, "name": "Ann",
               "at_hash": left_half_hash(Algorithm::RS256, "the-access-token").unwrap()})
    }

    #[test]
    fn a_good_id_token_validates() {
        let k = TestKey::new("k1");
        let t = k.sign(json!({"alg":"RS256","kid":"k1","typ":"JWT"}), claims());
        let c = validate(&k.set(), &t, &want(Some("n1"), Some("the-access-token"))).unwrap();
        assert_eq!(c.sub, "u1");
        assert_eq!(c.auth_time, Some(990));
        assert_eq!(c.other["name"], "Ann");
    }

    #[test]
    fn each_check_fails_on_its_own() {
        let k = TestKey::new("k1");
        let h = json!({"alg":"RS256","kid":"k1"});
        let with = |patch: serde_json::Value| {
            let mut c = claims();
            for (key, v) in patch.as_object().unwrap() {
                if v.is_null() {
                    c.as_object_mut().unwrap().remove(key);
                } else {
                    c[key] = v.clone();
                }
            }
            k.sign(h.clone(), c)
        };
        let set = k.set();
        let w = want(Some("n1"), Some("the-access-token"));
        let err = |t: &str| validate(&set, t, &w).unwrap_err();
        assert!(matches!(err(&with(json!({"iss": "https://evil.example"}))), IdTokenError::Issuer { .. }));
        assert!(matches!(err(&with(json!({"aud": "other"}))), IdTokenError::Audience { .. }));
        assert_eq!(err(&with(json!({"aud": ["app", "other"]}))), IdTokenError::AuthorizedParty);
        assert!(validate(&set, &with(json!({"aud": ["app", "other"], "azp": "app"})), &w).is_ok());
        assert!(matches!(err(&with(json!({"exp": 900}))), IdTokenError::Expired { exp: 900, now: 1000 }));
        assert!(validate(&set, &with(json!({"exp": 990})), &w).is_ok(), "within the leeway");
        assert!(matches!(err(&with(json!({"iat": 2000}))), IdTokenError::IssuedInFuture { .. }));
        assert_eq!(err(&with(json!({"nonce": "n2"}))), IdTokenError::NonceMismatch);
        assert_eq!(err(&with(json!({"nonce": null}))), IdTokenError::NonceMissing);
        assert_eq!(err(&with(json!({"at_hash": "AAAAAAAAAAAAAAAAAAAAAA"}))), IdTokenError::AtHashMismatch);
        assert_eq!(err(&with(json!({"sub": null}))), IdTokenError::MissingClaim("sub"));
        assert_eq!(err(&with(json!({"exp": null}))), IdTokenError::MissingClaim("exp"));
        let at = k.sign(json!({"alg":"RS256","kid":"k1","typ":"at+jwt"}), claims());
        assert_eq!(err(&at), IdTokenError::WrongType("at+jwt".into()));
        let other_key = TestKey::new("k1").sign(h.clone(), claims());
        assert_eq!(err(&other_key), IdTokenError::Signature(JoseError::BadSignature));
        let unknown = k.sign(json!({"alg":"RS256","kid":"k9"}), claims());
        assert!(unknown_key(&err(&unknown)));
        let after_refresh = Expected { subject: Some("u2"), nonce: None, ..want(None, None) };
        assert_eq!(
            validate(&set, &with(json!({"nonce": null})), &after_refresh).unwrap_err(),
            IdTokenError::SubjectChanged
        );
    }
}
