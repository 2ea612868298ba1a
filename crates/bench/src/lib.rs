//! `latchkey-bench`: drives the OAuth 2.1 / OpenID Connect code flow over HTTP against any
//! provider, Latchkey or another, and reports throughput, latency, server CPU per operation and
//! peak memory, phase by phase.
//!
//! For each target: discovery; U users logged in once each through the real login and consent
//! pages (a cookie jar, no browser); then, per run, closed-loop phases on C keep-alive connections,
//! each bounded in count and time: authorization with a session (the N codes of the run), code
//! exchange, refresh (each token once, rotation checked), userinfo, discovery, JWKS, full logins
//! (password hashing), and userinfo while logins load the server. Targets alternate run by run, so
//! that drift on a shared machine hits all of them alike. Medians over the runs are reported.
//!
//! On Latchkey, the account phases of issue 13 run beside the full login and are quoted as ratios
//! to it: a full login with a TOTP second factor, a username-less passkey sign-in, and requests to
//! reset a password for known and unknown addresses ([`account_ops`]).
//!
//! Also on Latchkey, with `--dpop` and `--par` (issue 14), DPoP twins of the code exchange, the
//! refresh and userinfo, and a pushed authorization request with the authorization that follows
//! it, each quoted against its bearer (or plain) counterpart of the same run ([`dpop_ops`]).

pub mod account_ops;
pub mod accounts;
pub mod adapter;
pub mod dpop_ops;
pub mod forms;
pub mod hello;
pub mod http;
pub mod jar;
pub mod ops;
pub mod phase;
pub mod procfs;
pub mod report;
mod runner;
pub mod seed;

use std::time::Duration;

pub use adapter::Adapter;
pub use report::Report;
pub use runner::run;

/// Why one operation failed. Every failure counts as an error and fails the run.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("HTTP: {0}")]
    Http(hyper::Error),
    #[error("expected HTTP {want}, got {got}: {body}")]
    Status { want: u16, got: u16, body: String },
    #[error("the response has no {0}")]
    Missing(&'static str),
    #[error("{0}")]
    Protocol(&'static str),
    #[error("{0}")]
    Refused(String),
}

/// One provider under test.
#[derive(Debug, Clone)]
pub struct Target {
    /// A short name for tables: `latchkey`, `node-oidc-provider`.
    pub name: String,
    pub issuer: url::Url,
    pub adapter: Adapter,
    /// The server's process id: with it, server CPU per operation and peak RSS are reported.
    pub pid: Option<u32>,
}

/// A bare HTTP server to compare discovery and JWKS with (`latchkey-bench hello`).
#[derive(Debug, Clone)]
pub struct Baseline {
    pub url: url::Url,
    pub pid: Option<u32>,
}

/// The workload, the same for every target.
#[derive(Debug, Clone)]
pub struct Workload {
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    /// U: users logged in once each; codes are issued round-robin over their sessions.
    pub users: usize,
    /// Users are `{user_prefix}{i}` for i in 0..U, all with `password`.
    pub user_prefix: String,
    pub password: String,
    /// N: codes issued (then exchanged, then refreshed) per run; also the count of userinfo,
    /// discovery and JWKS requests.
    pub codes: usize,
    /// C: keep-alive connections per phase.
    pub connections: usize,
    /// Full logins (password hashing) per run.
    pub logins: usize,
    /// Measured runs per target (medians are quoted), after one smaller warm-up run if `warmup`.
    pub runs: usize,
    pub warmup: bool,
    /// A phase stops taking new operations after this long.
    pub max_phase_time: Duration,
    pub op_timeout: Duration,
    /// Also measure userinfo while logins load the server (half the connections each).
    pub userinfo_during_logins: bool,
    /// Send load to a non-loopback address. A load generator pointed at a server that is not yours
    /// is an attack: the default refuses.
    pub allow_non_loopback: bool,
    /// An RFC 8707 resource: when set, codes are also issued and exchanged for it, and the access
    /// token must name it as `aud`.
    pub resource: Option<String>,
    /// Dynamic client registrations per run (0: none), where the provider has an endpoint.
    pub registrations: usize,
    /// Users with TOTP and with passkeys (`seed-latchkey --fixtures-out`): with them, Latchkey
    /// targets also run the TOTP and passkey sign-in phases.
    pub accounts: Option<std::sync::Arc<accounts::AccountFixtures>>,
    /// Sign-ins per run of each of those phases.
    pub account_logins: usize,
    /// Password-reset requests per run on Latchkey targets (0: none; needs `[smtp]`).
    pub resets: usize,
    /// Run the DPoP phases (RFC 9449) on Latchkey targets: authorization with `dpop_jkt`, code
    /// exchange, refresh and userinfo with proofs, N of each, and time proof signing apart.
    pub dpop: bool,
    /// Run the pushed authorization request phase (RFC 9126) on Latchkey targets, N per run.
    pub par: bool,
}

impl Workload {
    /// The configuration: 64 connections, 1,000 users, 20,000 codes.
    pub fn standard() -> Self {
        Self {
            client_id: "latchkey-bench".into(),
            redirect_uri: "https://client.example/callback".into(),
            scope: "openid profile email".into(),
            users: 1000,
            user_prefix: "bench-".into(),
            password: "bench-password".into(),
            codes: 20_000,
            connections: 64,
            logins: 500,
            runs: 3,
            warmup: true,
            max_phase_time: Duration::from_secs(120),
            op_timeout: Duration::from_secs(30),
            userinfo_during_logins: true,
            allow_non_loopback: false,
            resource: None,
            registrations: 0,
            accounts: None,
            account_logins: 500,
            resets: 0,
            dpop: false,
            par: false,
        }
    }
}
