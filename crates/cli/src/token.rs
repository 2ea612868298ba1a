//! `latchkey token`: prints a valid access token, refreshing it first when it expires soon.

use anyhow::{Context, anyhow, bail};
use clap::Args;
use latchkey_client::cache::{CachedLogin, TokenCache};
use latchkey_client::{Client, Error, unix_now};
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

pub async fn run(a: TokenArgs) -> anyhow::Result<()> {
    let cache = TokenCache::new(TokenCache::default_dir()?);
    let login = select(&cache, &a.select)?;
    if !login.expires_within(unix_now(), a.min_valid) {
        println!("{}", login.access_token().expose_secret());
        return Ok(());
    }
    let (issuer, client_id) = (login.issuer.clone(), login.client_id.clone());
    // One refresh at a time per login: a refresh token is single-use (rotation), so a second
    // process must wait and then use what the first one stored.
    let token = cache.locked(&issuer, &client_id, refresh(&cache, &issuer, &client_id, a.min_valid)).await??;
    println!("{token}");
    Ok(())
}

async fn refresh(cache: &TokenCache, issuer: &str, client_id: &str, min_valid: i64) -> anyhow::Result<String> {
    let mut login = cache.load(issuer, client_id)?.ok_or_else(|| anyhow!("the login was removed meanwhile"))?;
    if !login.expires_within(unix_now(), min_valid) {
        return Ok(login.access_token().expose_secret().to_owned());
    }
    let Some(refresh_token) = login.refresh_token() else {
        bail!(
            "the access token has expired and there is no refresh token: run `latchkey login --issuer {issuer} --client-id {client_id}` again"
        );
    };
    let client =
        Client::discover(issuer, ClientId::parse(client_id).map_err(|e| anyhow!("{}", e.description))?).await?;
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
    Ok(tokens.access_token.expose_secret().to_owned())
}
