//! `latchkey token`: prints a valid access token, refreshing it first when it expires soon. For a
//! DPoP-bound login, `--dpop --url URL` prints the two headers of one request instead: the token
//! alone is useless without a proof made by the login's key (RFC 9449 §7.1).

use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use clap::Args;
use latchkey_client::cache::{CachedLogin, TokenCache};
use latchkey_client::{Client, Dpop, Error, TokenType, unix_now};
use latchkey_proto::{ClientId, Scope};

/// Which cached login to use. Without flags: the most recent one.
#[derive(Args, Debug, Clone)]
pub struct Selector {
    /// The issuer of the login (default: the most recent login).
    #[arg(long, value_name = "URL")]
    pub issuer: Option<String>,
    /// The client of the login.
    #[arg(long, value_name = "ID")]
    pub client_id: Option<String>,
}

#[derive(Args, Debug)]
pub struct TokenArgs {
    #[command(flatten)]
    pub select: Selector,
    /// Refresh when the token expires within this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub min_valid: i64,
    /// For a DPoP-bound login (`login --dpop`): with --url, print the `Authorization` and `DPoP`
    /// headers of that one request (for `curl -H @FILE`); without, the token, its type and key
    /// thumbprint as JSON.
    #[arg(long)]
    pub dpop: bool,
    /// The URL of the request the DPoP proof is for (with --dpop).
    #[arg(long, value_name = "URL", requires = "dpop")]
    pub url: Option<String>,
    /// The method of that request.
    #[arg(short = 'X', long, value_name = "METHOD", default_value = "GET", requires = "url")]
    pub method: String,
    /// A nonce the resource asked for (its `DPoP-Nonce` header, RFC 9449 §9).
    #[arg(long, value_name = "NONCE", requires = "url")]
    pub nonce: Option<String>,
}

/// Finds the cached login the flags select, or says how to make one.
pub fn select(cache: &TokenCache, s: &Selector) -> anyhow::Result<CachedLogin> {
    let all = cache.list()?;
    let found = all.into_iter().find(|l| {
        s.issuer.as_deref().is_none_or(|i| i == l.issuer) && s.client_id.as_deref().is_none_or(|c| c == l.client_id)
    });
    found.ok_or_else(|| {
        let what = match (&s.issuer, &s.client_id) {
            (None, None) => String::new(),
            (i, c) => format!(
                " for{}{}",
                i.as_deref().map(|i| format!(" issuer {i}")).unwrap_or_default(),
                c.as_deref().map(|c| format!(" client {c}")).unwrap_or_default()
            ),
        };
        anyhow!("not logged in{what}: run `latchkey login --issuer URL --client-id ID` first")
    })
}

/// A client for a cached login, authenticating and binding as the login did: its
/// `private_key_jwt` key file, its DPoP key.
pub async fn client_for(login: &CachedLogin) -> anyhow::Result<Client> {
    let client_id = ClientId::parse(&login.client_id).map_err(|e| anyhow!("{}", e.description))?;
    let mut client = Client::discover(&login.issuer, client_id).await?;
    if let Some(key) = login.client_key()? {
        client = client.with_private_key_jwt(key)?;
    }
    if let Some(key) = login.dpop_key()? {
        client = client.with_dpop(Arc::new(Dpop::new(key)))?;
    }
    Ok(client)
}

/// The selected login with an access token valid for `min_valid` more seconds, refreshed first
/// if needed.
pub async fn current(cache: &TokenCache, s: &Selector, min_valid: i64) -> anyhow::Result<CachedLogin> {
    let login = select(cache, s)?;
    if !login.expires_within(unix_now(), min_valid) {
        return Ok(login);
    }
    let (issuer, client_id) = (login.issuer.clone(), login.client_id.clone());
    // One refresh at a time per login: a refresh token is single-use (rotation), so a second
    // process must wait and then use what the first one stored.
    cache.locked(&issuer, &client_id, refresh(cache, &issuer, &client_id, min_valid)).await?
}

pub async fn run(a: TokenArgs) -> anyhow::Result<()> {
    let cache = TokenCache::new(TokenCache::default_dir()?);
    let login = current(&cache, &a.select, a.min_valid).await?;
    let token = login.access_token();
    match (a.dpop, login.token_type) {
        (false, TokenType::Bearer) => println!("{}", token.expose_secret()),
        (false, TokenType::Dpop) => {
            println!("{}", token.expose_secret());
            eprintln!(
                "note: this token is DPoP-bound: send it as `Authorization: DPoP …` with a fresh proof per request. Use `latchkey call URL`, or `latchkey token --dpop --url URL [-X METHOD]` for the headers of one request."
            );
        }
        (true, TokenType::Bearer) => bail!(
            "the access token of this login is a Bearer token, not DPoP-bound: log in with `latchkey login --dpop` for one"
        ),
        (true, TokenType::Dpop) => {
            let key = login.dpop_key()?.ok_or_else(|| anyhow!("the cached DPoP login has no key; log in again"))?;
            match &a.url {
                Some(url) => {
                    let url = url::Url::parse(url).map_err(|e| anyhow!("--url: {e}"))?;
                    let dpop = Dpop::new(key);
                    if let Some(n) = &a.nonce {
                        dpop.set_nonce(&url, n);
                    }
                    let h = dpop.api_headers(&a.method.to_ascii_uppercase(), &url, &token, unix_now())?;
                    // One header per line: `curl -H @FILE` reads them so.
                    println!("Authorization: {}", h.authorization);
                    println!("DPoP: {}", h.dpop);
                }
                None => {
                    let out = serde_json::json!({
                        "token_type": "DPoP",
                        "access_token": token.expose_secret(),
                        "dpop_jkt": key.jkt(),
                        "expires_at": login.expires_at,
                    });
                    println!("{out:#}");
                    eprintln!(
                        "A DPoP proof is valid for one request (its method and URL) and is signed by the key in the token cache: get the headers of each request with `latchkey token --dpop --url URL [-X METHOD]`, or let `latchkey call URL` send it."
                    );
                }
            }
        }
    }
    Ok(())
}

async fn refresh(cache: &TokenCache, issuer: &str, client_id: &str, min_valid: i64) -> anyhow::Result<CachedLogin> {
    let mut login = cache.load(issuer, client_id)?.ok_or_else(|| anyhow!("the login was removed meanwhile"))?;
    if !login.expires_within(unix_now(), min_valid) {
        return Ok(login);
    }
    let Some(refresh_token) = login.refresh_token() else {
        bail!(
            "the access token has expired and there is no refresh token: run `latchkey login --issuer {issuer} --client-id {client_id}` again"
        );
    };
    let client = client_for(&login).await?;
    let granted = Scope::parse(&login.scope).unwrap_or_default();
    let now = unix_now();
    let tokens = match client.refresh(&refresh_token, None, &granted, login.subject.as_deref(), now).await {
        Ok(t) => t,
        Err(Error::Endpoint { error, description, .. }) if error == "invalid_grant" => bail!(
            "the provider refused the refresh token ({}): run `latchkey login --issuer {issuer} --client-id {client_id}` again",
            description.unwrap_or(error)
        ),
        Err(e) => return Err(e).context("refreshing the access token"),
    };
    login.update(&tokens, now);
    cache.store(&login)?;
    Ok(login)
}
