//! `latchkey call URL`: one request to an API with the cached login's access token.
//!
//! Named `call`, not `curl`: it takes a few of curl's flags (`-X`, `-d`, `-H`, `-i`) but is not
//! curl, and a name promising curl's hundreds of options would mislead. What it adds is what a
//! shell script with curl cannot easily do: a fresh DPoP proof for each request (RFC 9449 §7.1),
//! the nonce retry (§9), and a refresh when the token is about to expire. A Bearer login works
//! too (`Authorization: Bearer`).

use std::io::{Read, Write};

use anyhow::{Context, anyhow, bail};
use clap::Args;
use latchkey_client::cache::TokenCache;
use latchkey_client::dpop::{ApiRequest, Dpop};
use latchkey_client::{TokenType, discovery, unix_now};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

use crate::token::{Selector, current};

#[derive(Args, Debug)]
pub struct CallArgs {
    /// The API's URL.
    #[arg(value_name = "URL")]
    pub url: String,
    /// The method (default GET, or POST with --data).
    #[arg(short = 'X', long, value_name = "METHOD")]
    pub method: Option<String>,
    /// The request body; @FILE reads it from a file, @- from stdin. Sent as
    /// application/x-www-form-urlencoded unless a Content-Type header is given (as curl does).
    #[arg(short = 'd', long = "data", value_name = "BODY")]
    pub data: Option<String>,
    /// A further request header, "Name: value" (repeatable). Authorization and DPoP are set by
    /// the command.
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,
    /// Print the status line and the response headers before the body.
    #[arg(short = 'i', long)]
    pub include: bool,
    #[command(flatten)]
    pub select: Selector,
    /// Refresh first when the token expires within this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub min_valid: i64,
    /// Send the token over plain http to a host that is not loopback, where anyone on the path
    /// can read it (a DPoP proof limits what they can do with it; a Bearer token does not).
    #[arg(long)]
    pub allow_insecure_http: bool,
}

pub async fn run(a: CallArgs) -> anyhow::Result<()> {
    let url = url::Url::parse(&a.url).map_err(|e| anyhow!("{}: {e}", a.url))?;
    match url.scheme() {
        "https" => {}
        "http" if a.allow_insecure_http || is_loopback(&url) => {}
        "http" => bail!(
            "{url} is plain http: the access token would cross the network in clear. Use https, or --allow-insecure-http if you must"
        ),
        other => bail!("{url}: the scheme {other} is not http(s)"),
    }
    let body = match a.data.as_deref() {
        None => None,
        Some("@-") => {
            let mut b = Vec::new();
            std::io::stdin().read_to_end(&mut b).context("reading the body from stdin")?;
            Some(b)
        }
        Some(d) if d.starts_with('@') => Some(std::fs::read(&d[1..]).with_context(|| format!("reading {}", &d[1..]))?),
        Some(d) => Some(d.as_bytes().to_vec()),
    };
    let method_name = a.method.clone().unwrap_or_else(|| if body.is_some() { "POST" } else { "GET" }.into());
    let method = reqwest::Method::from_bytes(method_name.to_ascii_uppercase().as_bytes())
        .map_err(|_| anyhow!("-X {method_name}: not an HTTP method"))?;
    let mut headers = HeaderMap::new();
    for h in &a.headers {
        let (name, value) = h.split_once(':').ok_or_else(|| anyhow!("-H {h:?}: expected \"Name: value\""))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| anyhow!("-H {h:?}: bad header name"))?;
        if name == reqwest::header::AUTHORIZATION || name.as_str() == "dpop" {
            bail!("-H {h:?}: the command sets {name} itself");
        }
        let value = HeaderValue::from_str(value.trim()).map_err(|_| anyhow!("-H {h:?}: bad header value"))?;
        headers.append(name, value);
    }
    if body.is_some() && !headers.contains_key(CONTENT_TYPE) {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"));
    }

    let cache = TokenCache::new(TokenCache::default_dir()?);
    let login = current(&cache, &a.select, a.min_valid).await?;
    let token = login.access_token();
    // Bounded times and no redirects: a proof is for one URL, and a token is not sent on to
    // wherever a redirect points.
    let http = discovery::http_client();
    let res = match login.token_type {
        TokenType::Dpop => {
            let key = login.dpop_key()?.ok_or_else(|| anyhow!("the cached DPoP login has no key; log in again"))?;
            let dpop = Dpop::new(key);
            let req = ApiRequest { method, url: &url, token: &token, headers, body: body.as_deref() };
            dpop.send(&http, &req, unix_now()).await?
        }
        TokenType::Bearer => {
            let mut req = http.request(method, url.clone()).headers(headers).bearer_auth(token.expose_secret());
            if let Some(b) = body {
                req = req.body(b);
            }
            req.send().await.with_context(|| format!("cannot reach {url}"))?
        }
    };
    let status = res.status();
    let challenge: Vec<String> = res
        .headers()
        .get_all(reqwest::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect();
    let mut out = std::io::stdout().lock();
    if a.include {
        writeln!(out, "{:?} {status}", res.version())?;
        for (k, v) in res.headers() {
            writeln!(out, "{k}: {}", String::from_utf8_lossy(v.as_bytes()))?;
        }
        writeln!(out)?;
    }
    let bytes = res.bytes().await.with_context(|| format!("reading the answer of {url}"))?;
    out.write_all(&bytes)?;
    out.flush()?;
    if status.is_client_error() || status.is_server_error() {
        let why = challenge.first().map(|c| format!(" (WWW-Authenticate: {c})")).unwrap_or_default();
        bail!("{url} answered {status}{why}");
    }
    Ok(())
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}
