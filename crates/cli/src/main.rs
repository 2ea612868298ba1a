//! `latchkey`: the one binary. It parses arguments and wires the crates together; the protocol
//! rules live in `latchkey-core`.

mod admin;
mod admin_user;
mod call;
mod config;
mod config_device;
mod config_dpop;
mod db;
mod gate;
mod inspect;
mod kek;
mod login;
mod login_device;
mod logout;
mod mail;
mod pkce;
mod resource;
mod rp;
mod serve;
mod token;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "latchkey", version, about = "An OAuth 2.1 / OpenID Connect provider in one binary")]
struct Cli {
    /// TOML configuration file (also LATCHKEY_CONFIG).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// SQLite database file (or sqlite://PATH), or a postgres:// URL (also LATCHKEY_DATABASE;
    /// default ./latchkey.db).
    #[arg(long, global = true, value_name = "PATH|URL")]
    database: Option<String>,
    /// Open a SQLite database that other accounts on the host can read, instead of refusing. It
    /// holds the private signing keys: logged loudly at every start. Fix the file with chmod 600.
    #[arg(long, global = true)]
    allow_insecure_db_permissions: bool,
    /// File holding the key-encryption key (32 random bytes, base64) that seals the private
    /// signing keys at rest; it must be mode 0600. Or give the key itself in
    /// LATCHKEY_KEY_ENCRYPTION_KEY.
    #[arg(long, global = true, value_name = "FILE")]
    key_encryption_key_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the authorization server.
    Serve(ServeArgs),
    /// Register and manage clients.
    #[command(subcommand)]
    Client(admin::ClientCommand),
    /// Manage users.
    #[command(subcommand)]
    User(admin::UserCommand),
    /// Register the protected resources (APIs, MCP servers) tokens may be issued for (RFC 8707).
    #[command(subcommand)]
    Resource(resource::ResourceCommand),
    /// Rotate and list signing keys.
    #[command(subcommand)]
    Keys(admin::KeysCommand),
    /// Apply pending database migrations, then exit (`serve` also applies them on start).
    Migrate,
    /// Move a deployment between databases.
    #[command(subcommand)]
    Db(db::DbCommand),
    /// Show the audit log of security events.
    Audit(admin::AuditArgs),
    /// See and retry outgoing mail (the durable outbox).
    #[command(subcommand)]
    Outbox(mail::OutboxCommand),
    #[command(flatten)]
    Rp(rp::Command),
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Issuer URL (default http:// + the listen address).
    #[arg(long, value_name = "URL")]
    issuer: Option<String>,
    /// Development mode: create a demo client and user with a known password, and print a
    /// ready-to-open authorization URL. Never use it in production.
    #[arg(long)]
    dev: bool,
    /// Seconds between purges of expired codes, sessions, tokens and dead refresh families.
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    purge_interval: u64,
    /// Seconds between re-reads of the signing keys, so a rotation made elsewhere is published.
    #[arg(long, hide = true, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    key_reload_interval: u64,
    /// Who may register clients (RFC 7591): open (default), token, or off.
    #[arg(long, value_name = "open|token|off")]
    registration: Option<String>,
    /// With --registration token: a file (mode 0600) holding the initial access token.
    #[arg(long, value_name = "FILE")]
    registration_token_file: Option<std::path::PathBuf>,
    /// Tests only: let client ID metadata documents be fetched from loopback addresses and
    /// `localhost` (anyone could then make the server fetch from this machine).
    #[arg(long)]
    insecure_cimd_loopback: bool,
    /// Tests only: also trust this PEM root CA when fetching client ID metadata documents.
    #[arg(long, value_name = "PEM")]
    insecure_cimd_ca: Option<std::path::PathBuf>,
    #[command(flatten)]
    limits: LimitArgs,
}

/// Connection limits against slow clients (slow-loris), shared by `serve` and `gate`.
#[derive(Args, Debug, Clone, Copy)]
pub struct LimitArgs {
    /// Seconds a client has to send a request's headers; also how long an idle keep-alive
    /// connection stays open.
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    header_read_timeout: u64,
    /// Seconds within which a request (its body included) must be answered, or it gets 408.
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    request_timeout: u64,
    /// Connections served at once; further ones wait to be accepted.
    #[arg(long, value_name = "N", default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_connections: u64,
}

impl LimitArgs {
    pub fn limits(&self) -> latchkey_server::conn::Limits {
        latchkey_server::conn::Limits {
            header_read_timeout: std::time::Duration::from_secs(self.header_read_timeout),
            request_timeout: std::time::Duration::from_secs(self.request_timeout),
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Client-side commands need no server configuration: run them before it is resolved.
    if let Command::Rp(c) = cli.command {
        return rp::main(c);
    }
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let (listen_issuer, cimd_flags) = match &cli.command {
        Command::Serve(a) => {
            ((a.listen.clone(), a.issuer.clone()), (a.insecure_cimd_loopback, a.insecure_cimd_ca.clone()))
        }
        _ => ((None, None), (false, None)),
    };
    let registration = match &cli.command {
        Command::Serve(a) => (a.registration.clone(), a.registration_token_file.clone()),
        _ => (None, None),
    };
    let flags = config::Overrides {
        issuer: listen_issuer.1,
        listen: listen_issuer.0,
        database: cli.database.clone(),
        allow_insecure_db_permissions: cli.allow_insecure_db_permissions,
        key_encryption_key_file: cli.key_encryption_key_file.clone(),
        registration: registration.0,
        registration_token_file: registration.1,
        insecure_cimd_loopback: cimd_flags.0,
        insecure_cimd_ca: cimd_flags.1,
    };
    let settings = match config::Settings::resolve(cli.config.as_deref(), &env, &flags) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let serving = matches!(cli.command, Command::Serve(_));
    serve::init_logging(settings.log_format, serving);
    // Only now: warnings from `resolve` had no subscriber to go to.
    for w in settings.warnings.iter().filter(|w| serving || !w.applies_to_serve_only()) {
        tracing::warn!("{w}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => {
                let intervals = serve::Intervals {
                    purge: std::time::Duration::from_secs(args.purge_interval),
                    key_reload: std::time::Duration::from_secs(args.key_reload_interval),
                };
                serve::run(settings, args.dev, intervals, args.limits.limits()).await
            }
            Command::Client(c) => admin::client(&settings, c).await,
            Command::User(c) => admin::user(&settings, c).await,
            Command::Resource(c) => resource::run(&settings, c).await,
            Command::Keys(c) => admin::keys(&settings, c).await,
            Command::Migrate => db::migrate(&settings).await,
            Command::Db(c) => db::run(&settings, c).await,
            Command::Audit(a) => admin::audit(&settings, a).await,
            Command::Outbox(c) => mail::outbox(&settings, c).await,
            Command::Rp(_) => Ok(()), // handled above
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
