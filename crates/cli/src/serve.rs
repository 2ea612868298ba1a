//! `latchkey serve`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use latchkey_core::admin::{AdminError, NewClient, NewUser};
use latchkey_core::{Clock, Provider, Store};
use latchkey_proto::{CodeVerifier, Password};
use latchkey_server::AppState;
use tokio::time::MissedTickBehavior;

use crate::config::{LogFormat, Settings};

pub fn init_logging(format: LogFormat, verbose: bool) {
    let default = if verbose { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).init(),
        LogFormat::Text => builder.init(),
    }
}

/// The store the database setting names: a SQLite path or a postgres:// URL, migrated.
pub async fn open_store(database: &str, options: latchkey_store::StoreOptions) -> anyhow::Result<Arc<dyn Store>> {
    latchkey_store::open_with(database, options).await
}

/// How often `serve`'s background tasks run.
#[derive(Clone, Copy, Debug)]
pub struct Intervals {
    /// Expired and dead records are deleted (`Store::purge_expired`).
    pub purge: Duration,
    /// Signing keys are re-read, so a rotation made by the CLI or another instance is published.
    pub key_reload: Duration,
}

pub const DEV_CLIENT: &str = "latchkey-demo";
pub const DEV_REDIRECT: &str = "http://127.0.0.1:8765/callback";
pub const DEV_POST_LOGOUT: &str = "http://127.0.0.1:8765/";
pub const DEV_USER: &str = "demo";
pub const DEV_PASSWORD: &str = "demo-password";

pub async fn run(
    settings: Settings,
    dev: bool,
    intervals: Intervals,
    limits: latchkey_server::conn::Limits,
) -> anyhow::Result<()> {
    if dev {
        dev_allowed(&settings.listen, &settings.issuer)?;
    }
    let store = open_store(&settings.database, settings.store_options()).await?;
    let clock = Clock::system();
    let mut provider = Provider::open(store.clone(), settings.provider_config(), clock.now()).await?;
    match provider.passkeys() {
        Some(rp) => tracing::info!(rp_id = %rp.rp_id, "passkeys are available"),
        None => tracing::info!(
            "passkeys are off: WebAuthn needs a domain name and the issuer is on an IP address (use http://localhost for development)"
        ),
    }
    // One guarded https client fetches what clients point the server at: metadata documents
    // (with `cimd` on) and private_key_jwt clients' jwks_uri (always).
    let fetcher = Arc::new(metadata_fetcher(&settings)?);
    if settings.cimd {
        provider = provider.with_metadata_fetcher(fetcher.clone());
    }
    provider = provider.with_jwks_fetcher(fetcher);
    let provider = Arc::new(provider);
    match &settings.registration {
        latchkey_core::registration::RegistrationPolicy::Open => tracing::info!(
            per_minute = settings.registrations_per_minute,
            "open client registration at /register (RFC 7591): anyone may register a client, shown to users as unverified"
        ),
        latchkey_core::registration::RegistrationPolicy::Token(_) => {
            tracing::info!("client registration at /register needs the initial access token")
        }
        latchkey_core::registration::RegistrationPolicy::Off => tracing::info!("client registration is off"),
    }
    let mailer: Arc<dyn latchkey_core::outbox::Deliver> = match &settings.smtp {
        Some(smtp) => {
            tracing::info!(
                host = %smtp.host,
                port = smtp.port,
                tls = ?smtp.tls,
                signup = ?settings.signup,
                "outgoing mail through SMTP: password reset by email is offered"
            );
            Arc::new(latchkey_server::smtp::SmtpMailer::new(smtp, &settings.issuer)?)
        }
        None => {
            tracing::info!(
                "no [smtp] section: password reset by email, email verification and self-registration are off"
            );
            Arc::new(latchkey_core::outbox::NoTransport)
        }
    };
    // Set-up happens before the port opens: once it accepts connections, the server is ready.
    if dev {
        dev_bootstrap(&provider, &clock).await?;
    } else if demo_user_remains(&provider).await? {
        // A database once used with --dev and now served for real: anyone can sign in as `demo`.
        tracing::warn!(
            "user {DEV_USER:?}, created by --dev, still has the publicly known password {DEV_PASSWORD:?}: anyone can sign in as this user. Remove it (latchkey user remove {DEV_USER}) or change its password"
        );
        // Also in the banner on stdout, for whoever runs it by hand with logs filtered.
        println!(
            "\nWARNING: user {DEV_USER:?} (made by --dev) still has the public password {DEV_PASSWORD:?}; remove it with `latchkey user remove {DEV_USER}`"
        );
    }
    if !dev && store.clients().await?.is_empty() {
        println!("\nNo clients are registered yet. Add one and a user, in another terminal:");
        println!("  latchkey client add --public --name \"My SPA\" --redirect-uri http://127.0.0.1:8765/callback");
        println!(
            "  printf '%s' 'a-good-password' | latchkey user add alice --email alice@example.com --password-stdin"
        );
        println!("(or restart with --dev for a ready-made demo client and user)");
    }
    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let addr = listener.local_addr()?;
    // A PostgreSQL URL may carry a password: show it redacted.
    let database = latchkey_store::redacted(&settings.database);
    tracing::info!(listen = %addr, issuer = %settings.issuer, database = %database, "latchkey is serving");
    println!("\nLatchkey {} listening on http://{addr}", env!("CARGO_PKG_VERSION"));
    println!("issuer: {}", settings.issuer);
    println!("database: {database}");
    // Keys rotated by `latchkey keys rotate` (or another instance) are picked up without a restart.
    let reloader = provider.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(intervals.key_reload);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = reloader.reload_keys().await {
                tracing::warn!(error = %format!("{e:#}"), "could not reload signing keys");
            }
        }
    });
    // Bounded storage: expired and dead records go (every instance runs this; the store lets one
    // at a time do the work).
    let (purger, purge_clock) = (provider.clone(), clock.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(intervals.purge);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match purger.purge_expired(purge_clock.now()).await {
                Ok(n) if n.total() > 0 => tracing::info!(purged = ?n, "purged expired records"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "could not purge expired records"),
            }
        }
    });
    // Outgoing mail and other queued jobs (`latchkey_core::outbox`): every instance runs a worker;
    // claims are exclusive, so they share the queue.
    let transports = latchkey_server::backchannel_send::Transports {
        mail: mailer,
        logouts: latchkey_server::backchannel_send::LogoutSender::new()?,
    };
    latchkey_server::outbox_worker::spawn(provider.clone(), Arc::new(transports), clock.clone(), Default::default());
    latchkey_server::serve_with(listener, AppState::new(provider, clock), limits, shutdown_signal()).await?;
    tracing::info!("shut down cleanly");
    Ok(())
}

/// The https client that fetches client ID metadata documents and `jwks_uri`, with the test-only
/// settings.
fn metadata_fetcher(settings: &Settings) -> anyhow::Result<latchkey_server::cimd_fetch::HttpFetcher> {
    let pem = match &settings.insecure_cimd_ca {
        Some(p) => Some(std::fs::read(p).with_context(|| format!("reading insecure_cimd_ca {}", p.display()))?),
        None => None,
    };
    latchkey_server::cimd_fetch::HttpFetcher::new(&latchkey_server::cimd_fetch::FetcherSettings {
        insecure_allow_loopback: settings.insecure_cimd_loopback,
        insecure_extra_root_pem: pem,
        timeout: None,
    })
}

/// SIGINT or SIGTERM: stop accepting, let in-flight requests finish.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}

/// `--dev` makes a user with a published password: it is refused unless only this machine can
/// reach the server (a loopback listen address and issuer), so it cannot end up in production.
fn dev_allowed(listen: &str, issuer: &str) -> anyhow::Result<()> {
    let listen_ok = match listen.parse::<std::net::SocketAddr>() {
        Ok(a) => a.ip().is_loopback(),
        Err(_) => listen.rsplit_once(':').is_some_and(|(host, _)| host.eq_ignore_ascii_case("localhost")),
    };
    let issuer_ok = url::Url::parse(issuer).is_ok_and(|u| match u.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    });
    if !listen_ok || !issuer_ok {
        anyhow::bail!(
            "--dev creates user {DEV_USER:?} with a publicly known password, so it needs a loopback --listen address and issuer (listen {listen}, issuer {issuer})"
        );
    }
    Ok(())
}

/// Whether user `demo` exists and still has the `--dev` password (one Argon2 verification).
async fn demo_user_remains(p: &Provider) -> anyhow::Result<bool> {
    match p.store.user_by_username(DEV_USER).await? {
        Some(u) => p.hasher.verify(DEV_PASSWORD.to_owned(), Some(u.password_hash)).await,
        None => Ok(false),
    }
}

/// `--dev`: idempotently creates a demo public client and a demo user, and prints a ready-to-open
/// authorization URL with a fresh PKCE verifier.
async fn dev_bootstrap(p: &Provider, clock: &Clock) -> anyhow::Result<()> {
    tracing::warn!(
        "--dev: a demo user with a publicly known password exists in this database; never use --dev in production"
    );
    let client = NewClient {
        post_logout_redirect_uris: vec![DEV_POST_LOGOUT.into()],
        ..NewClient::public(DEV_CLIENT, "Latchkey demo app", vec![DEV_REDIRECT.into()])
    };
    match latchkey_core::admin::add_client(p.store.as_ref(), client, clock.now()).await {
        Ok(_) | Err(AdminError::Store(latchkey_core::store::StoreError::AlreadyExists(_))) => {}
        Err(e) => return Err(e.into()),
    }
    let user = NewUser {
        username: DEV_USER.into(),
        email: "demo@example.com".into(),
        name: Some("Demo User".into()),
        phone_number: None,
        address: None,
    };
    match latchkey_core::admin::add_user(p.store.as_ref(), &p.hasher, user, Password::new(DEV_PASSWORD), clock.now())
        .await
    {
        Ok(_) | Err(AdminError::Store(latchkey_core::store::StoreError::AlreadyExists(_))) => {}
        Err(e) => return Err(e.into()),
    }
    let verifier = CodeVerifier::generate();
    let state = latchkey_proto::secret::random_token();
    let mut url = url::Url::parse(&format!("{}/authorize", p.issuer()))?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", DEV_CLIENT)
        .append_pair("redirect_uri", DEV_REDIRECT)
        .append_pair("scope", "openid profile email")
        .append_pair("code_challenge", verifier.challenge().as_str())
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", &state[..16]);
    println!("\n--dev: demo client and user (a known password: development only)");
    println!("client_id: {DEV_CLIENT}");
    println!("redirect_uri: {DEV_REDIRECT}");
    println!("username: {DEV_USER}");
    println!("password: {DEV_PASSWORD}");
    println!("code_verifier: {}", verifier.expose_secret());
    println!("\nOpen this URL, sign in, then copy `code` from the address bar of the (failing) redirect:");
    println!("{url}");
    println!("\nExchange the code:");
    println!(
        "curl -s {}/token -d grant_type=authorization_code -d client_id={DEV_CLIENT} --data-urlencode redirect_uri={DEV_REDIRECT} -d code_verifier={} -d code=PASTE_CODE",
        p.issuer(),
        verifier.expose_secret()
    );
    Ok(())
}
