//! `latchkey logout`: revokes the refresh token (RFC 7009) and forgets the cached login.

use anyhow::Context;
use latchkey_client::cache::TokenCache;
use latchkey_client::{Error, TokenTypeHint, unix_now};
use latchkey_proto::discovery::MetadataProblem;

use crate::token::{Selector, client_for, select};

pub async fn run(s: Selector) -> anyhow::Result<()> {
    let cache = TokenCache::new(TokenCache::default_dir()?);
    let login = select(&cache, &s)?;
    // Authenticated as the login was made (a `private_key_jwt` client signs an assertion).
    let client = client_for(&login).await?;
    // The refresh token: revoking it also ends its access tokens where the provider supports that
    // (RFC 7009 §2.1). Then the access token, best effort: a provider may not track JWTs
    // (`unsupported_token_type`, §2.2.1).
    let mut revoked = Vec::new();
    let mut no_endpoint = false;
    if let Some(r) = login.refresh_token() {
        match client.revoke(r.expose_secret(), TokenTypeHint::RefreshToken, unix_now()).await {
            Ok(()) => revoked.push("refresh token"),
            Err(Error::Metadata(MetadataProblem::Missing(_))) => no_endpoint = true,
            // Keep the cache: forgetting a token we could not revoke would leave it live and out of reach.
            Err(e) => return Err(e).context("revoking the refresh token (the login is kept; try again)"),
        }
    }
    if !no_endpoint {
        match client.revoke(login.access_token().expose_secret(), TokenTypeHint::AccessToken, unix_now()).await {
            Ok(()) => revoked.push("access token"),
            Err(Error::Metadata(MetadataProblem::Missing(_))) => no_endpoint = true,
            Err(e) => eprintln!("note: the access token was not revoked ({e}); it expires on its own"),
        }
    }
    if no_endpoint {
        eprintln!("warning: {} has no revocation endpoint: the tokens stay valid until they expire", login.issuer);
    }
    cache.remove(&login.issuer, &login.client_id)?;
    let what = if revoked.is_empty() { String::new() } else { format!("{} revoked; ", revoked.join(" and ")) };
    eprintln!("Logged out of {} (client {}): {what}cached tokens removed.", login.issuer, login.client_id);
    Ok(())
}
