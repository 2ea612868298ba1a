//! Pushed authorization requests as stored (RFC 9126): the request a client sent to the PAR
//! endpoint, validated there, waiting for the browser to bring its `request_uri` to `/authorize`.
//!
//! The `request_uri` is `urn:ietf:params:oauth:request_uri:` followed by 256 random bits; only its
//! hash is stored. It is single-use (taken atomically), short-lived, and bound to the client that
//! pushed it. Live requests are bounded per client, so a client (or anyone knowing a public
//! client's id) cannot fill the table.

use async_trait::async_trait;
use latchkey_proto::{ClientId, TokenHash};

use crate::UnixTime;
use crate::store::StoreResult;

/// The prefix of every `request_uri` (RFC 9126 §2.2).
pub const REQUEST_URI_PREFIX: &str = "urn:ietf:params:oauth:request_uri:";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushedRequest {
    /// Hash of the `request_uri`'s random part.
    pub hash: TokenHash,
    pub client_id: ClientId,
    /// The authorization request's parameters, form-encoded, as validated at the PAR endpoint.
    pub params: String,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

#[async_trait]
pub trait PushedRequestStore: Send + Sync {
    /// Stores `r` unless its client already has `max_per_client` or more live requests, counted
    /// and inserted in one atomic step. `false`: refused, nothing stored.
    async fn insert_pushed(&self, r: &PushedRequest, max_per_client: u64, now: UnixTime) -> StoreResult<bool>;
    /// Removes and returns the live request with this hash: of concurrent calls, one gets it.
    async fn take_pushed(&self, hash: &TokenHash, now: UnixTime) -> StoreResult<Option<PushedRequest>>;
}
