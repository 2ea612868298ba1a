//! The validated claims of an access token, as handlers receive them, and the claim checks of
//! RFC 9068 §4 (`iss`, `aud`, `exp`, `nbf`) against a given `now`.

use latchkey_proto::Scope;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::{Refusal, TokenError};

/// What a handler knows about the caller once the token is valid.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    /// The user (or, for a client acting for itself, the client).
    pub sub: String,
    /// The granted scope.
    pub scope: Scope,
    /// The client the token was issued to.
    pub client_id: String,
    pub iss: String,
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: Option<i64>,
    pub jti: Option<String>,
    /// The RFC 7638 thumbprint of the key the token is bound to (`cnf.jkt`, RFC 9449 §6): the
    /// request came with a DPoP proof by that key. `None` for a bearer token.
    pub dpop_jkt: Option<String>,
    /// Every other claim, for [`Claims::custom`] and [`Claims::get`].
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Claims {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scope.contains(scope)
    }

    /// Refuses with 403 `insufficient_scope` unless every scope in `required` was granted.
    pub fn require_scope(&self, required: &Scope) -> Result<(), Refusal> {
        if required.is_subset(&self.scope) {
            return Ok(());
        }
        Err(Refusal::InsufficientScope { required: required.clone(), missing: required.missing_from(&self.scope) })
    }

    /// One custom claim.
    pub fn get(&self, name: &str) -> Option<&serde_json::Value> {
        self.extra.get(name)
    }

    /// The custom claims as your own type, e.g. `#[derive(Deserialize)] struct Mine { tenant: String }`.
    pub fn custom<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_value(serde_json::Value::Object(self.extra.clone()))
    }
}

/// What the checks need to know.
pub(crate) struct Expect<'a> {
    pub issuer: &'a str,
    pub audiences: &'a [String],
    pub leeway: i64,
    pub now: i64,
}

/// A JWT access token's claims or an introspection response (RFC 7662 §2.2 uses the same names).
#[derive(Deserialize)]
pub(crate) struct RawClaims {
    #[serde(default)]
    pub iss: Option<String>,
    #[serde(default)]
    pub sub: Option<String>,
    #[serde(default)]
    pub aud: Option<Audience>,
    #[serde(default)]
    pub exp: Option<i64>,
    #[serde(default)]
    pub nbf: Option<i64>,
    #[serde(default)]
    pub iat: Option<i64>,
    #[serde(default)]
    pub jti: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
    /// RFC 7800 confirmation: `{"jkt": …}` for a DPoP-bound token (RFC 9449 §6.1, §6.2).
    #[serde(default)]
    pub cnf: Option<serde_json::Value>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// RFC 7519 §4.1.3: a string or an array of strings.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum Audience {
    One(String),
    Many(Vec<String>),
}

impl RawClaims {
    /// RFC 9068 §4 in order: issuer, audience, expiry (with `leeway` seconds of clock skew), then
    /// the claims a handler relies on.
    pub(crate) fn check(self, want: &Expect<'_>) -> Result<Claims, TokenError> {
        let iss = self.iss.ok_or(TokenError::MissingClaim("iss"))?;
        if iss != want.issuer {
            return Err(TokenError::Issuer(printable(&iss)));
        }
        let aud = match self.aud.ok_or(TokenError::MissingClaim("aud"))? {
            Audience::One(a) => vec![a],
            Audience::Many(a) => a,
        };
        // RFC 8707 / RFC 9068 §4: a token for another API behind the same issuer is refused.
        if !aud.iter().any(|a| want.audiences.iter().any(|w| crate::prm::same_resource(w, a))) {
            return Err(TokenError::Audience { token: printable(&aud.join(" ")), accepted: want.audiences.join(" ") });
        }
        let exp = self.exp.ok_or(TokenError::MissingClaim("exp"))?;
        if want.now >= exp.saturating_add(want.leeway) {
            return Err(TokenError::Expired);
        }
        if self.nbf.is_some_and(|nbf| want.now < nbf.saturating_sub(want.leeway)) {
            return Err(TokenError::NotYetValid);
        }
        if self.iat.is_some_and(|iat| iat > want.now.saturating_add(want.leeway)) {
            return Err(TokenError::IssuedInFuture);
        }
        let sub = self.sub.filter(|s| !s.is_empty()).ok_or(TokenError::MissingClaim("sub"))?;
        let client_id = self.client_id.ok_or(TokenError::MissingClaim("client_id"))?;
        let scope = match self.scope {
            Some(s) => Scope::parse(&s).map_err(|_| TokenError::MissingClaim("scope"))?,
            None => Scope::default(),
        };
        let dpop_jkt = confirmation(self.cnf)?;
        Ok(Claims { sub, scope, client_id, iss, aud, exp, iat: self.iat, jti: self.jti, dpop_jkt, extra: self.extra })
    }
}

/// The key a token is bound to. Only `jkt` is understood: a `cnf` with any other member (an
/// mTLS certificate's `x5t#S256`, RFC 8705 §3.1) is refused, since this API cannot check it and
/// accepting the token would turn it back into a bearer token.
fn confirmation(cnf: Option<serde_json::Value>) -> Result<Option<String>, TokenError> {
    let Some(cnf) = cnf else {
        return Ok(None);
    };
    let serde_json::Value::Object(members) = cnf else {
        return Err(TokenError::Confirmation("cnf is not a JSON object"));
    };
    if members.keys().any(|k| k != "jkt") {
        return Err(TokenError::Confirmation("cnf has a member other than jkt"));
    }
    match members.get("jkt") {
        Some(serde_json::Value::String(jkt)) if !jkt.is_empty() => Ok(Some(jkt.clone())),
        _ => Err(TokenError::Confirmation("cnf.jkt is missing or not a string")),
    }
}

/// A claim echoed in a description: no control characters, at most 100 of them.
fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(100).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn check(v: serde_json::Value, now: i64) -> Result<Claims, TokenError> {
        let raw: RawClaims = serde_json::from_value(v).unwrap();
        raw.check(&Expect { issuer: "https://id.example", audiences: &["api".into()], leeway: 30, now })
    }

    fn good() -> serde_json::Value {
        json!({"iss": "https://id.example", "sub": "u1", "aud": ["other", "api"], "exp": 1000, "iat": 400,
               "client_id": "app", "scope": "read write", "tenant": "t1"})
    }

    #[test]
    fn checks_in_order_with_leeway() {
        let c = check(good(), 500).unwrap();
        assert_eq!(c.sub, "u1");
        assert!(c.has_scope("read") && !c.has_scope("admin"));
        #[derive(Deserialize)]
        struct Mine {
            tenant: String,
        }
        assert_eq!(c.custom::<Mine>().unwrap().tenant, "t1");
        assert_eq!(c.get("tenant").unwrap(), "t1");
        let e = c.require_scope(&Scope::parse("read admin").unwrap()).unwrap_err();
        assert!(matches!(e, Refusal::InsufficientScope { ref missing, .. } if missing == "admin"));

        assert!(check(good(), 1029).is_ok(), "within the leeway");
        assert_eq!(check(good(), 1030).unwrap_err(), TokenError::Expired);
        let mut v = good();
        v["nbf"] = 600.into();
        assert_eq!(check(v.clone(), 500).unwrap_err(), TokenError::NotYetValid);
        assert!(check(v, 571).is_ok());
        let mut v = good();
        v["iat"] = 900.into();
        assert_eq!(check(v, 500).unwrap_err(), TokenError::IssuedInFuture);
        let mut v = good();
        v["iss"] = "https://evil.example".into();
        assert!(matches!(check(v, 500).unwrap_err(), TokenError::Issuer(_)));
        let mut v = good();
        v["aud"] = "other".into();
        assert!(matches!(check(v, 500).unwrap_err(), TokenError::Audience { .. }));
        assert_eq!(check(good(), 500).unwrap().dpop_jkt, None);
        let mut v = good();
        v["cnf"] = json!({"jkt": "abc"});
        assert_eq!(check(v, 500).unwrap().dpop_jkt.as_deref(), Some("abc"));
        for cnf in [json!({"x5t#S256": "abc"}), json!({"jkt": "abc", "x5t#S256": "d"}), json!({"jkt": 1}), json!("abc")]
        {
            let mut v = good();
            v["cnf"] = cnf.clone();
            assert!(matches!(check(v, 500).unwrap_err(), TokenError::Confirmation(_)), "{cnf}");
        }
        for claim in ["iss", "aud", "exp", "sub", "client_id"] {
            let mut v = good();
            v.as_object_mut().unwrap().remove(claim);
            assert_eq!(check(v, 500).unwrap_err(), TokenError::MissingClaim(claim));
        }
    }
}
