//! Single-use marks for values a client makes up and must never send twice: DPoP proofs' `jti`
//! (RFC 9449 §11.1) and client assertions' `jti` (RFC 7523 §3 point 7).
//!
//! A mark lives until the value could no longer be accepted anyway (the end of the proof's `iat`
//! window, the assertion's `exp`), so the table holds at most what the accepted lifetimes allow and
//! the purge removes the rest. One atomic store step decides, so two instances on one PostgreSQL
//! database never both accept the same value.

use async_trait::async_trait;

use crate::UnixTime;
use crate::store::StoreResult;

/// What a mark is for: the same string in two kinds is two marks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayKind {
    /// A DPoP proof, keyed by [`latchkey_proto::dpop::DpopProof::replay_key`].
    DpopProof,
    /// A `private_key_jwt` client assertion, keyed by client and `jti`.
    ClientAssertion,
}

impl ReplayKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DpopProof => "dpop",
            Self::ClientAssertion => "assertion",
        }
    }
}

#[async_trait]
pub trait ReplayStore: Send + Sync {
    /// Marks `key` of `kind` as used until `expires_at`, in one atomic step. `true`: this is the
    /// first use (no live mark existed; an expired one is replaced); `false`: a replay.
    async fn first_use(&self, kind: ReplayKind, key: &str, expires_at: UnixTime, now: UnixTime) -> StoreResult<bool>;
}
