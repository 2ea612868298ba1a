//! One closed error type for the relying party. Each check has its own variant, so a caller (and
//! the person reading the CLI's message) sees which one failed. No variant carries a token, a code
//! or a verifier.

use std::time::Duration;

use latchkey_proto::discovery::MetadataProblem;
use latchkey_proto::jose::JoseError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The issuer is not a URL this library will talk to.
    #[error("invalid issuer {issuer:?}: {reason}")]
    InvalidIssuer { issuer: String, reason: &'static str },
    /// The network request itself failed (connection refused, timeout, TLS…).
    #[error("cannot reach {url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// Neither well-known location served usable metadata.
    #[error("discovery failed for issuer {issuer}: {detail}")]
    Discovery { issuer: String, detail: String },
    #[error("provider metadata: {0}")]
    Metadata(#[from] MetadataProblem),
    /// The JWK Set could not be fetched or parsed.
    #[error("cannot use the provider's JWK Set at {url}: {detail}")]
    Jwks { url: String, detail: String },
    /// The metadata lists code challenge methods and S256 is not among them.
    #[error("the provider does not support PKCE with S256 (code_challenge_methods_supported lacks it)")]
    PkceUnsupported,

    /// RFC 6749 §10.12: the `state` of the response is not the one we sent.
    #[error(
        "state mismatch: this authorization response does not belong to the login in progress (a CSRF attempt or a stale browser tab)"
    )]
    StateMismatch,
    /// RFC 9207 §2.4: the provider promises `iss` in authorization responses and this one has none.
    #[error(
        "the authorization response has no iss parameter, although the provider's metadata promises it (RFC 9207 §2.4)"
    )]
    IssMissing,
    /// RFC 9207 §2.4: the response names another issuer: a mix-up attack, or the wrong provider.
    #[error(
        "the authorization response comes from issuer {found:?}, not {expected:?} (RFC 9207 §2.4: possible mix-up attack)"
    )]
    IssMismatch { expected: String, found: String },
    /// The authorization response is malformed (e.g. a repeated parameter).
    #[error("malformed authorization response: {0}")]
    BadCallback(String),
    /// The provider answered the authorization request with an error (RFC 6749 §4.1.2.1).
    #[error("the provider refused the authorization: {error}{}", describe(.description))]
    Authorization { error: String, description: Option<String> },
    #[error("the authorization response has neither a code nor an error")]
    CodeMissing,

    /// The token (or revocation) endpoint answered with an OAuth error (RFC 6749 §5.2).
    #[error("the {endpoint} answered {status}: {error}{}", describe(.description))]
    Endpoint { endpoint: &'static str, status: u16, error: String, description: Option<String> },
    /// The token endpoint's answer is not a token response we can use.
    #[error("the token endpoint's response is unusable: {0}")]
    BadTokenResponse(String),
    #[error("the id_token is invalid: {0}")]
    IdToken(#[from] IdTokenError),

    /// The redirect URI asked for is not one a loopback listener can receive.
    #[error(
        "the redirect URI {0:?} is not a loopback http URI: use http://127.0.0.1[:PORT]/PATH or http://[::1][:PORT]/PATH (RFC 8252 §7.3)"
    )]
    NotLoopback(String),
    #[error("cannot listen for the redirect on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// No redirect came back in time.
    #[error("no authorization response arrived at {redirect_uri} within {} seconds; was the sign-in finished in the browser?", .waited.as_secs())]
    Timeout { redirect_uri: String, waited: Duration },

    #[error("token cache: {0}")]
    Cache(String),

    /// DPoP (RFC 9449) cannot be used: a key problem, or a provider that cannot verify our proofs.
    #[error("DPoP: {0}")]
    Dpop(String),
    /// The private key for `private_key_jwt` (or a DPoP key file) cannot be read or used.
    #[error("cannot use the private key {0}")]
    ClientKey(String),
    /// RFC 9126 §5: the provider accepts only pushed authorization requests.
    #[error(
        "the provider requires pushed authorization requests (require_pushed_authorization_requests, RFC 9126 §5): push the request instead of sending it through the browser"
    )]
    PushRequired,

    /// RFC 8628 §3.5 `access_denied`: the user refused the device on the verification page.
    #[error("the user denied the request on the verification page (access_denied, RFC 8628 §3.5)")]
    DeviceDenied,
    /// RFC 8628 §3.5 `expired_token`, or the codes' lifetime passed while polling.
    #[error(
        "the device code expired after {expires_in} seconds without the user's approval (expired_token, RFC 8628 §3.5): start again"
    )]
    DeviceExpired { expires_in: u64 },
    /// The device authorization endpoint's answer is not one this client can use (RFC 8628 §3.2).
    #[error("the device authorization endpoint's response is unusable: {0}")]
    BadDeviceResponse(String),
}

fn describe(d: &Option<String>) -> String {
    match d {
        Some(d) => format!(" ({d})"),
        None => String::new(),
    }
}

/// Which id_token check failed (OpenID Connect Core §3.1.3.7).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdTokenError {
    #[error("the token response has no id_token although openid was requested")]
    Missing,
    #[error("{0}")]
    Signature(JoseError),
    /// An access token (`typ: at+jwt`) presented as an id_token (RFC 9068 §4).
    #[error("its typ is {0:?}: an access token cannot be used as an id_token")]
    WrongType(String),
    #[error("the claim {0} is missing or has the wrong type")]
    MissingClaim(&'static str),
    #[error("iss is {found:?}, expected {expected:?}")]
    Issuer { expected: String, found: String },
    #[error("aud does not contain this client ({client_id})")]
    Audience { client_id: String },
    /// Core §3.1.3.7 item 5: several audiences require `azp` naming this client.
    #[error("it has several audiences and azp is not this client")]
    AuthorizedParty,
    #[error("it expired at {exp} (now {now})")]
    Expired { exp: i64, now: i64 },
    #[error("it was issued in the future (iat {iat}, now {now})")]
    IssuedInFuture { iat: i64, now: i64 },
    #[error("it has no nonce although one was sent")]
    NonceMissing,
    #[error("its nonce is not the one sent with the authorization request (a replayed or injected id_token)")]
    NonceMismatch,
    #[error("at_hash does not match the access token (Core §3.1.3.6)")]
    AtHashMismatch,
    /// Core §12.2: an id_token from a refresh must be about the same user.
    #[error("its sub differs from the signed-in user's")]
    SubjectChanged,
}
