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
    /// Keyed by the SHA-256 of the token, so the cache holds no usable token.
    cache: Mutex<HashMap<[u8; 32], Entry>>,
}

/// RFC 7662 §2.2: `active` plus the usual claims.
#[derive(Deserialize)]
struct Response {
    active: bool,
    #[serde(flatten)]
    claims: RawClaims,
}

impl Introspector {
    pub(crate) fn new(client_id: String, secret: ClientSecret, ttl: i64) -> Self {
        Self { client_id, secret, ttl, cache: Mutex::new(HashMap::new()) }
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
        let mut raw = body.claims;
        // RFC 7662 makes every claim optional. The issuer we asked vouches for the token, so an
        // absent `iss` is that issuer; an absent `aud` means the token is not audience-restricted.
        // When present, both must match, exactly as for a JWT.
        raw.iss.get_or_insert_with(|| v.issuer.clone());
        if raw.aud.is_none() {
            raw.aud = v.audiences.first().cloned().map(Audience::One);
        }
        Ok(raw.check(&crate::claims::Expect { issuer: &v.issuer, audiences: &v.audiences, leeway: v.leeway, now }))
    }
}
