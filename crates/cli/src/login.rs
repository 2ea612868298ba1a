//! `latchkey login`: the authorization code flow with PKCE for a command-line user (RFC 8252).

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use latchkey_client::cache::{CachedLogin, TokenCache};
use latchkey_client::{Client, LoopbackListener, unix_now};
use latchkey_proto::{ClientId, Scope};

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// The provider's issuer URL (discovery happens there).
    #[arg(long, value_name = "URL")]
    pub issuer: String,
    /// This client's id at the provider (a public client).
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
}

pub async fn run(a: LoginArgs) -> anyhow::Result<()> {
    let client_id = ClientId::parse(&a.client_id).map_err(|e| anyhow::anyhow!("--client-id: {}", e.description))?;
    let scope = Scope::parse(&a.scope.join(" ")).map_err(|e| anyhow::anyhow!("--scope: {}", e.description))?;
    let client = Client::discover(&a.issuer, client_id).await?;
    let cache = TokenCache::new(TokenCache::default_dir()?);
    let listener = LoopbackListener::bind(a.redirect_uri.as_deref()).await?;
    let request = client.authorization_request(listener.redirect_uri().clone(), scope)?;

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
    let login = CachedLogin::new(client.issuer(), client.client_id().as_str(), &tokens, now);
    let path = cache.store(&login).context("storing the tokens")?;
    let who = login.subject.as_deref().map(|s| format!(" as {s}")).unwrap_or_default();
    eprintln!("Logged in to {}{who} (scope: {}).", client.issuer(), login.scope);
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
