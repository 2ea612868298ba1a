//! `latchkey login`: the authorization code flow with PKCE for a command-line user (RFC 8252),
//! optionally with DPoP-bound tokens (RFC 9449), a pushed request (RFC 9126) and, for a
//! confidential client, `private_key_jwt` (RFC 7523 §2.2). With `--device`, the device
//! authorization grant instead (RFC 8628, `login_device.rs`).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use clap::Args;
use latchkey_client::cache::{CachedLogin, TokenCache};
use latchkey_client::keys::dpop_key_from_file;
use latchkey_client::{Client, ClientKey, Dpop, LoopbackListener, TokenSet, TokenType, unix_now};
use latchkey_proto::dpop::DpopKey;
use latchkey_proto::{ClientId, Scope};

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// The provider's issuer URL (discovery happens there).
    #[arg(long, value_name = "URL")]
    pub issuer: String,
    /// This client's id at the provider (a public client, or with --client-key a confidential one).
    #[arg(long, value_name = "ID")]
    pub client_id: String,
    /// Scopes to request, space-separated or repeated (default: openid).
    #[arg(long, value_name = "SCOPE", num_args = 1, default_value = "openid")]
    pub scope: Vec<String>,
    /// Print the authorization URL on stdout instead of opening a browser (e.g. to open it
    /// elsewhere).
    #[arg(long)]
    pub no_browser: bool,
    /// A loopback redirect URI, e.g. http://127.0.0.1/callback (an ephemeral port is used when it
    /// has none). Default: http://127.0.0.1:{ephemeral}/callback.
    #[arg(long, value_name = "URI")]
    pub redirect_uri: Option<String>,
    /// Seconds to wait for the sign-in to finish.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub timeout: u64,
    /// Bind the tokens to a key (DPoP, RFC 9449): a stolen token is useless without it. A new
    /// EC P-256 key is made for this login and kept in its token cache file (mode 0600).
    #[arg(long)]
    pub dpop: bool,
    /// Use this DPoP key (EC P-256, PEM or JWK, mode 0600) instead of a new one; implies --dpop.
    /// The cache keeps its path, not the key.
    #[arg(long, value_name = "FILE")]
    pub dpop_key: Option<PathBuf>,
    /// Push the authorization request to the provider first (PAR, RFC 9126), even when it does
    /// not require it; it is pushed anyway when its metadata says
    /// require_pushed_authorization_requests.
    #[arg(long)]
    pub par: bool,
    /// Authenticate as a confidential client with private_key_jwt (RFC 7523 §2.2), signing with
    /// this private key (PEM or JWK; EC P-256/P-384, Ed25519 or RSA; mode 0600). The cache keeps
    /// its path, for refreshes and logout.
    #[arg(long, value_name = "FILE")]
    pub client_key: Option<PathBuf>,
    /// The kid to name in the client assertions (default: the JWK's kid; none for PEM keys).
    #[arg(long, value_name = "KID", requires = "client_key")]
    pub client_key_id: Option<String>,
    /// Sign in on another device (the device authorization grant, RFC 8628): for a machine
    /// without a browser (SSH, a container). Prints a URL and a code to enter there, then waits
    /// until the code is approved, denied or expires. The client must allow the grant
    /// (`latchkey client add --device`).
    #[arg(long, conflicts_with_all = ["no_browser", "redirect_uri", "par"])]
    pub device: bool,
    /// With --device: also print the link as a QR code when stdout is not a terminal (it is
    /// printed on a terminal anyway).
    #[arg(long, requires = "device")]
    pub qr: bool,
}

pub async fn run(a: LoginArgs) -> anyhow::Result<()> {
    let client_id = ClientId::parse(&a.client_id).map_err(|e| anyhow::anyhow!("--client-id: {}", e.description))?;
    let scope = Scope::parse(&a.scope.join(" ")).map_err(|e| anyhow::anyhow!("--scope: {}", e.description))?;
    let mut client = Client::discover(&a.issuer, client_id).await?;
    if let Some(file) = &a.client_key {
        client = client.with_private_key_jwt(ClientKey::from_file(file)?.with_kid(a.client_key_id.clone()))?;
    }
    let dpop_key = match (&a.dpop_key, a.dpop) {
        (Some(file), _) => Some(dpop_key_from_file(file)?),
        (None, true) => Some(DpopKey::generate().map_err(|e| anyhow!("making a DPoP key: {e}"))?),
        (None, false) => None,
    };
    if let Some(key) = dpop_key {
        client = client.with_dpop(Arc::new(Dpop::new(key)))?;
    }
    let cache = TokenCache::new(TokenCache::default_dir()?);
    if a.device {
        let tokens = crate::login_device::run(&client, scope, a.qr).await?;
        return save(&client, &cache, &a, &tokens, unix_now());
    }
    let listener = LoopbackListener::bind(a.redirect_uri.as_deref()).await?;
    let request = client.start_authorization(listener.redirect_uri().clone(), scope, a.par, unix_now()).await.context(
        if a.par || client.metadata().require_pushed_authorization_requests {
            "pushing the authorization request (RFC 9126)"
        } else {
            "preparing the authorization request"
        },
    )?;
    if request.request_uri().is_some() {
        eprintln!(
            "The authorization request was pushed to the provider; the browser gets only its request_uri, which expires soon."
        );
    }

    let mut pasted = None;
    if a.no_browser {
        // The URL alone on stdout, so that a script (or a test) can read it.
        println!("{}", request.url);
        std::io::stdout().flush().ok();
        eprintln!(
            "Open the URL above in a browser and sign in. Waiting for the redirect to {} …",
            request.redirect_uri
        );
        eprintln!(
            "If that browser runs on another machine, its redirect to 127.0.0.1 fails there: paste the address it shows here."
        );
        pasted = Some(stdin_lines());
    } else {
        eprintln!("Opening the browser to sign in at {} …", client.issuer());
        if webbrowser::open(request.url.as_str()).is_err() {
            eprintln!("Could not open a browser. Open this URL yourself:");
            println!("{}", request.url);
        } else {
            eprintln!("If no browser opened, visit:\n{}", request.url);
        }
    }

    let code = listener
        .receive_or_pasted(Duration::from_secs(a.timeout), pasted, |callback| client.check_callback(&request, callback))
        .await?;
    let now = unix_now();
    let tokens = client.exchange_code(&request, code, now).await?;
    save(&client, &cache, &a, &tokens, now)
}

/// Caches a login's tokens (the browser's or a device's, in the same file and format, so that
/// `latchkey token`, `call` and `logout` work after either) and says what was done.
fn save(client: &Client, cache: &TokenCache, a: &LoginArgs, tokens: &TokenSet, now: i64) -> anyhow::Result<()> {
    let mut login = CachedLogin::new(client.issuer(), client.client_id().as_str(), tokens, now);
    if let Some(d) = client.dpop() {
        login = login.with_dpop_key(d.key(), a.dpop_key.as_deref());
    }
    if let Some(file) = &a.client_key {
        login = login.with_client_key(file, a.client_key_id.clone());
    }
    let path = cache.store(&login).context("storing the tokens")?;
    let who = login.subject.as_deref().map(|s| format!(" as {s}")).unwrap_or_default();
    eprintln!("Logged in to {}{who} (scope: {}).", client.issuer(), login.scope);
    if let (TokenType::Dpop, Some(d)) = (login.token_type, client.dpop()) {
        eprintln!("The tokens are DPoP-bound to key {} (RFC 9449): call APIs with `latchkey call URL`.", d.jkt());
    }
    eprintln!("Tokens cached in {} (readable by you only). Get an access token with `latchkey token`.", path.display());
    Ok(())
}

/// Lines typed on standard input. A plain thread, not the runtime's blocking pool: a read that
/// never returns must not keep the process alive after the login.
fn stdin_lines() -> tokio::sync::mpsc::Receiver<String> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    rx
}
