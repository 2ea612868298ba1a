//! Introspection mode (RFC 7662): ask the issuer about each token, with a short cache.

use std::collections::HashMap;
use std::sync::Mutex;

use latchkey_proto::ClientSecret;
use latchkey_proto::discovery::IssuerMetadata;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::claims::{Audience, RawClaims};
use crate::verifier::Inner;
use crate::{Claims, Refusal, TokenError};

/// Entries kept at most; past it, expired entries go, then everything (a flood of distinct
/// invalid tokens must not grow memory without bound).
const MAX_ENTRIES: usize = 10_000;

/// When the answer was fetched, and the answer.
type Entry = (i64, Result<Claims, TokenError>);

pub(crate) struct Introspector {
    client_id: String,
    secret: ClientSecret,
    ttl: i64,
    /// [`crate::VerifierBuilder::allow_missing_audience`].
    allow_missing_audience: bool,
    /// Keyed by the SHA-256 of the token, so the cache holds no usable token.
    cache: Mutex<HashMap<[u8; 32], Entry>>,
}

/// RFC 7662 §2.2: `active` plus the usual claims.
#[derive(Deserialize)]
struct Response {
    active: bool,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(flatten)]
    claims: RawClaims,
}

impl Introspector {
    pub(crate) fn new(client_id: String, secret: ClientSecret, ttl: i64, allow_missing_audience: bool) -> Self {
        Self { client_id, secret, ttl, allow_missing_audience, cache: Mutex::new(HashMap::new()) }
    }

    pub(crate) async fn check(
        &self,
        v: &Inner,
        metadata: &IssuerMetadata,
        token: &str,
        now: i64,
    ) -> Result<Claims, Refusal> {
        if token.len() > latchkey_proto::jose::MAX_TOKEN_LEN {
            return Err(Refusal::InvalidToken(TokenError::Jose(latchkey_proto::jose::JoseError::Malformed(
                "longer than 16 KiB",
            ))));
        }
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let cached = self.cache.lock().ok().and_then(|c| c.get(&key).filter(|(at, _)| now - at < self.ttl).cloned());
        let result = match cached {
            Some((_, r)) => r,
            None => {
                let r = self.ask(v, metadata, token, now).await?;
                if let Ok(mut c) = self.cache.lock() {
                    if c.len() >= MAX_ENTRIES {
                        c.retain(|_, (at, _)| now - *at < self.ttl);
                        if c.len() >= MAX_ENTRIES {
                            c.clear();
                        }
                    }
                    c.insert(key, (now, r.clone()));
                }
                r
            }
        };
        let claims = result.map_err(Refusal::InvalidToken)?;
        // A cached answer may outlive the token itself.
        if now >= claims.exp.saturating_add(v.leeway) {
            return Err(Refusal::InvalidToken(TokenError::Expired));
        }
        Ok(claims)
    }

    /// One introspection request. `Err(Refusal)` when the endpoint cannot answer (not cached);
    /// `Ok(Err(_))` for a definite "this token is not acceptable" (cached).
    async fn ask(
        &self,
        v: &Inner,
        metadata: &IssuerMetadata,
        token: &str,
        now: i64,
    ) -> Result<Result<Claims, TokenError>, Refusal> {
        let unavailable = |what: String| Refusal::Unavailable(format!("introspection at {}: {what}", v.issuer));
        let url = metadata.endpoint("introspection_endpoint").map_err(|e| unavailable(e.to_string()))?;
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let res = v
            .http
            .post(url.clone())
            .basic_auth(enc(&self.client_id), Some(enc(self.secret.expose_secret())))
            .header("accept", "application/json")
            .form(&[("token", token), ("token_type_hint", "access_token")])
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if !res.status().is_success() {
            // 401 here means our own client credentials are wrong: an operator's problem.
            return Err(unavailable(format!("{url} answered {}", res.status().as_u16())));
        }
        let body: Response =
            res.json().await.map_err(|e| unavailable(format!("not an introspection response: {e}")))?;
        if !body.active {
            return Ok(Err(TokenError::Inactive));
        }
        Ok(self.accept(v, body, now))
    }

    /// The checks of an active answer. Pure.
    fn accept(&self, v: &Inner, body: Response, now: i64) -> Result<Claims, TokenError> {
        // RFC 7662 §2.2 `token_type` is optional, but when present it must be an access token's:
        // an issuer also answers `active: true` for refresh tokens (to their own client, which may
        // be the credential this API introspects with), and a refresh token must never pass as an
        // access token. RFC 6749 §5.1: token types are case-insensitive. A DPoP-bound token says
        // `DPoP` and carries `cnf.jkt` (RFC 9449 §6.2), which the caller checks against the
        // request's proof like a JWT's; without `cnf.jkt` its binding cannot be checked.
        let dpop = match body.token_type.as_deref() {
            None => false,
            Some(t) if t.eq_ignore_ascii_case("bearer") => false,
            Some(t) if t.eq_ignore_ascii_case("dpop") => true,
            Some(t) => {
                return Err(TokenError::NotAnAccessToken(t.chars().filter(|c| !c.is_control()).take(64).collect()));
            }
        };
        if dpop && body.claims.cnf.is_none() {
            return Err(TokenError::Confirmation("token_type DPoP without cnf.jkt"));
        }
        let mut raw = body.claims;
        // RFC 7662 makes every claim optional. The issuer we asked vouches for the token, so an
        // absent `iss` is that issuer. An absent `aud` is refused like a JWT without one (RFC 9068
        // §4): the token might be meant for another API, and "not audience-restricted" cannot be
        // told apart from "the issuer omits it" (Latchkey omits it for refresh tokens). Only an
        // explicit `allow_missing_audience` takes it as this API's, and then only if the answer
        // says it is a Bearer access token: node-oidc-provider, for one, answers for a refresh
        // token with neither `aud` nor `token_type`.
        raw.iss.get_or_insert_with(|| v.issuer.clone());
        if raw.aud.is_none() && self.allow_missing_audience {
            if body.token_type.is_none() {
                return Err(TokenError::MissingClaim("token_type"));
            }
            raw.aud = v.audiences.first().cloned().map(Audience::One);
        }
        raw.check(&crate::claims::Expect { issuer: &v.issuer, audiences: &v.audiences, leeway: v.leeway, now })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    const ISSUER: &str = "https://id.example";
    const NOW: i64 = 1_000;

    fn accept(allow_missing_audience: bool, answer: serde_json::Value) -> Result<Claims, TokenError> {
        let mut b = crate::Verifier::builder(ISSUER).introspection("api", ClientSecret::new("s"));
        if allow_missing_audience {
            b = b.allow_missing_audience();
        }
        let v = b.build().unwrap();
        let intro = v.0.introspection.as_ref().unwrap();
        intro.accept(&v.0, serde_json::from_value(answer).unwrap(), NOW)
    }

    fn answer(patch: serde_json::Value) -> serde_json::Value {
        let mut a = json!({"active": true, "token_type": "Bearer", "iss": ISSUER, "aud": ISSUER, "sub": "u",
            "client_id": "app", "scope": "openid", "exp": NOW + 600});
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                a.as_object_mut().unwrap().remove(k);
            } else {
                a[k] = v.clone();
            }
        }
        a
    }

    /// Review finding 18: `token_type` was ignored, so a refresh token that the issuer reports as
    /// active (to its own client, the credential a BFF's API may introspect with) passed as an
    /// access token.
    #[test]
    fn only_bearer_access_tokens_pass() {
        assert!(accept(false, answer(json!({}))).is_ok());
        assert!(accept(false, answer(json!({"token_type": "bearer"}))).is_ok(), "case-insensitive (RFC 6749 §5.1)");
        assert!(accept(false, answer(json!({"token_type": null}))).is_ok(), "token_type is optional (RFC 7662)");
        for other in ["refresh_token", "N_A", "mac"] {
            let e = accept(true, answer(json!({"token_type": other}))).unwrap_err();
            assert_eq!(e, TokenError::NotAnAccessToken(other.into()));
        }
    }

    /// RFC 9449 §6.2: a bound token is answered with `token_type: DPoP` and `cnf.jkt`; the
    /// thumbprint reaches the caller, which checks it against the proof.
    #[test]
    fn a_dpop_answer_carries_its_key_and_needs_one() {
        let c = accept(false, answer(json!({"token_type": "DPoP", "cnf": {"jkt": "thumb"}}))).unwrap();
        assert_eq!(c.dpop_jkt.as_deref(), Some("thumb"));
        let e = accept(false, answer(json!({"token_type": "DPoP"}))).unwrap_err();
        assert!(matches!(e, TokenError::Confirmation(_)), "{e}");
        // A Bearer answer with cnf.jkt is bound all the same: cnf decides, not the label.
        let c = accept(false, answer(json!({"cnf": {"jkt": "thumb"}}))).unwrap();
        assert_eq!(c.dpop_jkt.as_deref(), Some("thumb"));
    }

    /// Review finding 18: an absent `aud` was replaced by the API's own audience.
    #[test]
    fn an_answer_without_aud_is_refused_unless_explicitly_allowed() {
        let no_aud = answer(json!({"aud": null}));
        assert_eq!(accept(false, no_aud.clone()).unwrap_err(), TokenError::MissingClaim("aud"));
        let c = accept(true, no_aud).unwrap();
        assert_eq!(c.aud, vec![ISSUER.to_owned()]);
        // Even then, it must say it is a bearer access token (node-oidc-provider answers for
        // refresh tokens with neither aud nor token_type).
        let bare = answer(json!({"aud": null, "token_type": null}));
        assert_eq!(accept(true, bare).unwrap_err(), TokenError::MissingClaim("token_type"));
        // A present aud is checked as always, allowed or not.
        assert!(matches!(
            accept(true, answer(json!({"aud": "https://other.example"}))).unwrap_err(),
            TokenError::Audience { .. }
        ));
    }
}
