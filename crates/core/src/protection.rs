//! Sender-constrained tokens (RFC 9449 DPoP), pushed authorization requests (RFC 9126),
//! `private_key_jwt` (RFC 7523) and the named security profiles that turn them on together
//! (FAPI 2.0): the deployment's settings, and what they come to for one client.

use jsonwebtoken::Algorithm;

use crate::store::{ClientKind, ClientRecord, SecurityProfile};

/// The longest an authorization code lives under the fapi2 profile, in seconds (FAPI 2.0
/// Security Profile §5.3: authorization codes live at most 60 seconds).
pub const FAPI2_MAX_CODE_TTL: u64 = 60;

/// `[dpop]`, `[par]`, `[client_assertion]` and `profile` of the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtectionConfig {
    /// The deployment's profile; a client's own (`client add --profile`) overrides it.
    pub profile: SecurityProfile,
    pub dpop: DpopConfig,
    pub par: ParConfig,
    pub client_assertion: AssertionConfig,
}

/// How DPoP proofs are checked (RFC 9449 §4.3, §8, §11.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DpopConfig {
    /// `dpop_signing_alg_values_supported`.
    pub algorithms: Vec<Algorithm>,
    /// How old a proof's `iat` may be, in seconds; its `jti` is remembered this long (plus the
    /// skew), so the replay store holds at most this window of proofs.
    pub max_age: i64,
    /// How far in the future `iat` may be (clients' clocks).
    pub max_skew: i64,
    /// Require a server nonce in every proof (§8): a proof made in advance by a thief who
    /// briefly held the key is useless. Off by default: it costs every client one extra round
    /// trip per nonce lifetime.
    pub require_nonce: bool,
    /// How long a nonce is handed out; it is accepted for up to twice this.
    pub nonce_lifetime: i64,
}

/// Pushed authorization requests (RFC 9126).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParConfig {
    /// `require_pushed_authorization_requests` for every client.
    pub require: bool,
    /// `expires_in` of a `request_uri`, in seconds (§2.2: short; FAPI 2.0 wants under 600).
    pub ttl: u64,
    /// Live pushed requests kept per client; past it, pushing answers 503 until some are used
    /// or expire.
    pub max_per_client: u64,
}

/// `private_key_jwt` assertions (RFC 7523 §3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssertionConfig {
    /// `token_endpoint_auth_signing_alg_values_supported`.
    pub algorithms: Vec<Algorithm>,
    /// Longest lifetime (`exp` − now) accepted, in seconds.
    pub max_lifetime: i64,
    /// Clock skew tolerated, in seconds.
    pub skew: i64,
}

impl Default for ProtectionConfig {
    fn default() -> Self {
        Self {
            profile: SecurityProfile::Standard,
            dpop: DpopConfig {
                algorithms: latchkey_proto::dpop::DEFAULT_ALGORITHMS.to_vec(),
                max_age: 60,
                max_skew: 10,
                require_nonce: false,
                nonce_lifetime: 60,
            },
            par: ParConfig { require: false, ttl: 60, max_per_client: 1000 },
            client_assertion: AssertionConfig {
                algorithms: latchkey_proto::client_assertion::DEFAULT_ALGORITHMS.to_vec(),
                max_lifetime: 300,
                skew: 10,
            },
        }
    }
}

impl ProtectionConfig {
    /// The profile that applies to `client`.
    pub fn profile_of(&self, client: &ClientRecord) -> SecurityProfile {
        client.protection.profile.unwrap_or(self.profile)
    }

    /// Whether `client`'s token requests must carry a DPoP proof: it registered
    /// `dpop_bound_access_tokens`, or its profile requires sender-constrained tokens (FAPI 2.0
    /// §5.3.2.1; Latchkey has no mTLS, so DPoP is the way).
    pub fn requires_dpop(&self, client: &ClientRecord) -> bool {
        client.protection.dpop_bound_access_tokens || self.profile_of(client) == SecurityProfile::Fapi2
    }

    /// Whether `/authorize` takes `client`'s requests only through PAR (RFC 9126 §5–6; FAPI 2.0
    /// §5.3.1.2).
    pub fn requires_par(&self, client: &ClientRecord) -> bool {
        self.par.require
            || client.protection.require_pushed_authorization_requests
            || self.profile_of(client) == SecurityProfile::Fapi2
    }

    /// Whether `client` authenticates in a way its profile allows: FAPI 2.0 §5.3.2.1 admits only
    /// `private_key_jwt` (or mTLS) for confidential clients, never a shared secret.
    pub fn allows_client_kind(&self, client: &ClientRecord) -> bool {
        self.profile_of(client) != SecurityProfile::Fapi2 || !matches!(client.kind, ClientKind::Confidential { .. })
    }
}
