//! DPoP at the resource (RFC 9449 §7): the proof that comes with `Authorization: DPoP <token>`,
//! checked against this request and the token's `cnf.jkt`, a bounded `jti` replay cache, and
//! optional server nonces (§9).
//!
//! What a proof must match is decided here from the verifier's configuration, never from the
//! request's `Host` header: `htu` is the configured external URL followed by the request's path.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use axum::http::{HeaderMap, HeaderValue, Method, Uri};
use jsonwebtoken::Algorithm;
use latchkey_proto::dpop::{DPOP_HEADER, DpopError, DpopProof, Expected, NonceKeeper};
use sha2::{Digest, Sha256};

use crate::{Refusal, TokenError};

/// Which access tokens an API takes (RFC 9449 §7.1, §7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpopMode {
    /// Bearer tokens only. A DPoP-bound token is refused whichever way it comes (§7.2), and
    /// `Authorization: DPoP` is an unknown scheme.
    Off,
    /// Bearer tokens, and DPoP-bound tokens with their proofs. A bound token sent as Bearer is
    /// refused (§7.2).
    Allowed,
    /// Only DPoP-bound tokens with their proofs: for APIs that accept sender-constrained tokens
    /// alone (FAPI 2.0 §5.3.4). Bearer tokens, bound or not, are refused.
    Required,
}

/// `DPoP-Nonce` (RFC 9449 §8.1) as `HeaderName::from_static` wants it: in lower case.
pub(crate) const NONCE_HEADER_NAME: &str = "dpop-nonce";

/// The `iat` window and the replay cache's capacity, as the builder sets them.
pub(crate) const DEFAULT_MAX_AGE: i64 = 60;
pub(crate) const DEFAULT_MAX_SKEW: i64 = 10;
/// At 60 s of `max_age` this holds 1,600 DPoP requests a second, in about 10 MB.
pub(crate) const DEFAULT_REPLAY_CAPACITY: usize = 100_000;

/// The DPoP checks of one verifier (absent when DPoP is off).
pub(crate) struct DpopCheck {
    pub required: bool,
    /// The external base URL, without a trailing `/`: `htu` is this plus the request's path.
    pub base: String,
    pub algorithms: Vec<Algorithm>,
    /// `algs` of the challenge and `dpop_signing_alg_values_supported` of the metadata.
    pub alg_names: Vec<String>,
    pub max_age: i64,
    pub max_skew: i64,
    pub nonces: Option<NonceKeeper>,
    pub replay: ReplayCache,
}

impl DpopCheck {
    /// The URL a proof for this request must name: the configured base and the request's path
    /// (§4.3 point 9 ignores the query). Never the `Host` header: a client chooses it, and
    /// behind a proxy it names the proxy's upstream, not what the client called.
    pub fn htu(&self, uri: &Uri) -> String {
        format!("{}{}", self.base, uri.path())
    }

    /// The space-separated `algs` of a `WWW-Authenticate: DPoP` challenge (§7.1).
    pub fn algs(&self) -> String {
        self.alg_names.join(" ")
    }

    /// The proof of a request with `Authorization: DPoP <token>`: exactly one `DPoP` header,
    /// well formed and signed by its own key (§4.3 points 1–7), for this method and URL, fresh,
    /// with the token's `ath`, and with a nonce of ours when nonces are on (§9). The key binding
    /// and the replay check come after the token itself is verified ([`DpopCheck::bind`]).
    pub fn proof(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        token: &str,
        now: i64,
    ) -> Result<DpopProof, Refusal> {
        let values: Vec<&HeaderValue> = headers.get_all(DPOP_HEADER).iter().collect();
        let raw = DpopProof::single(values.iter().map(|v| v.to_str().unwrap_or("")))
            .map_err(Refusal::DpopProof)?
            .ok_or(Refusal::MissingDpopProof)?;
        if raw.is_empty() {
            // Not ASCII (to_str failed above), or an empty header.
            return Err(Refusal::DpopProof(DpopError::Malformed("the DPoP header is empty or not ASCII")));
        }
        let proof = DpopProof::parse(raw, &self.algorithms).map_err(Refusal::DpopProof)?;
        let url = self.htu(uri);
        let expected = Expected {
            method: method.as_str(),
            url: &url,
            access_token: Some(token),
            max_age: self.max_age,
            max_skew: self.max_skew,
        };
        proof.check(&expected, now).map_err(Refusal::DpopProof)?;
        // §11.3: once nonces are on, a proof without one (or with a stale or forged one) is
        // refused with a fresh nonce, so a proof made in advance cannot be used.
        if let Some(keeper) = &self.nonces
            && !proof.nonce.as_deref().is_some_and(|n| keeper.accepts(n, now))
        {
            return Err(Refusal::DpopProof(DpopError::Nonce));
        }
        Ok(proof)
    }

    /// The proof's key must be the one the token is bound to (§7.1, §6.1), and the proof must
    /// not have been used before (§11.1). A token without `cnf.jkt` sent with the DPoP scheme is
    /// refused: otherwise any bearer token plus a proof by any key would pass an API that
    /// requires DPoP.
    pub fn bind(&self, proof: &DpopProof, jkt: Option<&str>, now: i64) -> Result<(), Refusal> {
        let jkt = jkt.ok_or(Refusal::InvalidToken(TokenError::NotDpopBound))?;
        proof.check_key(jkt).map_err(|_| Refusal::InvalidToken(TokenError::DpopKeyMismatch))?;
        // The proof is accepted until iat + max_age; past that `check` refuses it as stale, so
        // the cache may forget it then.
        let expires_at = proof.iat.saturating_add(self.max_age).saturating_add(1);
        let key: [u8; 32] = Sha256::digest(proof.replay_key().as_bytes()).into();
        match self.replay.first_use(key, expires_at, now) {
            FirstUse::Fresh => Ok(()),
            FirstUse::Replayed => Err(Refusal::DpopProof(DpopError::Replayed)),
            FirstUse::Full => Err(Refusal::Unavailable(format!(
                "the DPoP replay cache is full ({} proofs within {} s): raise dpop_replay_capacity, or \
                 one client is flooding",
                self.replay.capacity, self.max_age
            ))),
        }
    }

    /// The value of the `DPoP-Nonce` header to send, when nonces are on.
    pub fn nonce_header(&self, now: i64) -> Option<HeaderValue> {
        let keeper = self.nonces.as_ref()?;
        HeaderValue::from_str(&keeper.current(now)).ok()
    }
}

/// What the replay cache says of a proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FirstUse {
    Fresh,
    Replayed,
    /// Every slot holds a proof that may still be replayed: refused rather than forgotten.
    Full,
}

/// The `jti`s (per key) of the proofs accepted within their `iat` window (§11.1), bounded.
///
/// When it is full of unexpired entries, a new proof is refused (503) rather than an old one
/// forgotten: forgetting would let a captured proof be replayed, and only a holder of a valid
/// bound token can fill the cache at all (a proof is recorded only after the token, the key
/// binding and the other checks have passed). The price is that such a holder can make other
/// clients' DPoP requests wait until entries expire (at most `max_age` seconds); the refusal is
/// logged, so an operator sees it and raises the capacity or revokes the client.
pub(crate) struct ReplayCache {
    capacity: usize,
    state: Mutex<ReplayState>,
}

#[derive(Default)]
struct ReplayState {
    /// Hash of (jkt, jti) -> when it may be forgotten.
    seen: HashMap<[u8; 32], i64>,
    /// The same entries by expiry, so purging costs only what it removes.
    by_expiry: BTreeSet<(i64, [u8; 32])>,
}

impl ReplayCache {
    pub fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), state: Mutex::new(ReplayState::default()) }
    }

    /// Records `key` unless it is there already, atomically: of concurrent requests with the same
    /// proof, exactly one is `Fresh`.
    pub fn first_use(&self, key: [u8; 32], expires_at: i64, now: i64) -> FirstUse {
        let Ok(mut st) = self.state.lock() else {
            // A poisoned lock: refuse rather than let replays through.
            return FirstUse::Full;
        };
        while let Some(&(exp, k)) = st.by_expiry.first() {
            if exp > now {
                break;
            }
            st.by_expiry.pop_first();
            st.seen.remove(&k);
        }
        if st.seen.contains_key(&key) {
            return FirstUse::Replayed;
        }
        if st.seen.len() >= self.capacity {
            return FirstUse::Full;
        }
        st.seen.insert(key, expires_at);
        st.by_expiry.insert((expires_at, key));
        FirstUse::Fresh
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.state.lock().map(|s| s.seen.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn k(n: u8) -> [u8; 32] {
        [n; 32]
    }

    #[test]
    fn the_nonce_header_is_the_rfcs() {
        assert!(NONCE_HEADER_NAME.eq_ignore_ascii_case(latchkey_proto::dpop::NONCE_HEADER));
        assert_eq!(NONCE_HEADER_NAME, NONCE_HEADER_NAME.to_ascii_lowercase());
    }

    #[test]
    fn a_key_is_fresh_once_until_it_expires() {
        let c = ReplayCache::new(10);
        assert_eq!(c.first_use(k(1), 160, 100), FirstUse::Fresh);
        assert_eq!(c.first_use(k(1), 160, 159), FirstUse::Replayed);
        // At its expiry the proof itself is stale, so forgetting it is safe.
        assert_eq!(c.first_use(k(1), 220, 160), FirstUse::Fresh);
    }

    #[test]
    fn a_full_cache_refuses_rather_than_forgets() {
        let c = ReplayCache::new(3);
        for n in 1..=3 {
            assert_eq!(c.first_use(k(n), 100 + i64::from(n), 50), FirstUse::Fresh);
        }
        assert_eq!(c.first_use(k(9), 200, 50), FirstUse::Full);
        // The old ones are still remembered: nothing was evicted to make room.
        assert_eq!(c.first_use(k(1), 101, 50), FirstUse::Replayed);
        // Once one expires, there is room again, and only the expired one was dropped.
        assert_eq!(c.first_use(k(9), 200, 101), FirstUse::Fresh);
        assert_eq!(c.len(), 3);
        assert_eq!(c.first_use(k(2), 102, 101), FirstUse::Replayed);
    }
}
