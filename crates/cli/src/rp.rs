//! The client-side commands: `login`, `token`, `call`, `logout`, `pkce`, `inspect` and `gate`. They need no
//! server configuration (no database, no `latchkey.toml`), so they run before it is resolved.

use std::process::ExitCode;

use clap::Subcommand;

use crate::{call, gate, inspect, login, logout, pkce, token};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Log in to a provider in the browser (PKCE, loopback redirect) and cache the tokens.
    Login(login::LoginArgs),
    /// Print a valid access token from the cache, refreshing it first if needed.
    Token(token::TokenArgs),
    /// Call an API with the cached login's token: a fresh DPoP proof per request, the nonce
    /// retry, and a refresh when the token is about to expire.
    Call(call::CallArgs),
    /// Revoke the cached refresh token at the provider and forget the login.
    Logout(token::Selector),
    /// Print a fresh PKCE code_verifier and its S256 code_challenge.
    Pkce,
    /// Decode a JWT (header, claims, expiry) and, with --issuer, verify its signature.
    Inspect(inspect::InspectArgs),
    /// Reverse proxy that forwards only requests with a valid access token.
    Gate(gate::GateArgs),
}

/// Runs a client-side command: its own runtime, warnings on stderr, `error: …` and exit code 1 on
/// failure.
pub fn main(command: Command) -> ExitCode {
    crate::serve::init_logging(crate::config::LogFormat::Text, matches!(command, Command::Gate(_)));
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match command {
            Command::Login(a) => login::run(a).await,
            Command::Token(a) => token::run(a).await,
            Command::Call(a) => call::run(a).await,
            Command::Logout(a) => logout::run(a).await,
            Command::Pkce => pkce::run(),
            Command::Inspect(a) => inspect::run(a).await,
            Command::Gate(a) => gate::run(a).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            // 128 + SIGINT, as shells report an interrupted command.
            if e.is::<crate::login_device::Interrupted>() { ExitCode::from(130) } else { ExitCode::FAILURE }
        }
    }
}
