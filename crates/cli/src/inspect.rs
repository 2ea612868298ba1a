//! `latchkey inspect`: what is in a JWT, and whether its issuer signed it.

use std::io::Read;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::Args;
use latchkey_client::{discovery, unix_now};
use latchkey_proto::jose::{ASYMMETRIC_ALGORITHMS, JwsHeader};

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The token, or `-` to read it from standard input (keeps it out of shell history and `ps`).
    #[arg(value_name = "TOKEN")]
    pub token: String,
    /// Verify the signature against this issuer's published keys (JWKS from discovery).
    #[arg(long, value_name = "URL")]
    pub issuer: Option<String>,
}

pub async fn run(a: InspectArgs) -> anyhow::Result<()> {
    let token = if a.token == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).context("reading the token from standard input")?;
        s.trim().to_owned()
    } else {
        a.token.trim().to_owned()
    };
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        bail!("not a JWT: a signed JWT has three dot-separated parts, this has {}", parts.len());
    }
    let decode = |i: usize, what: &str| -> anyhow::Result<serde_json::Value> {
        let bytes = URL_SAFE_NO_PAD.decode(parts[i]).map_err(|_| anyhow!("the {what} is not base64url"))?;
        serde_json::from_slice(&bytes).map_err(|_| anyhow!("the {what} is not JSON"))
    };
    let header = decode(0, "header")?;
    let claims = decode(1, "payload")?;
    println!("header: {}", serde_json::to_string_pretty(&header)?);
    println!("claims: {}", serde_json::to_string_pretty(&claims)?);
    let now = unix_now();
    for (name, label) in [("iat", "issued"), ("nbf", "not before"), ("auth_time", "authenticated"), ("exp", "expires")]
    {
        if let Some(t) = claims.get(name).and_then(serde_json::Value::as_i64) {
            println!("{label}: {}", when(t, now));
        }
    }
    let Some(issuer) = a.issuer else {
        println!("signature: not verified (pass --issuer URL to verify it)");
        return Ok(());
    };
    let http = discovery::http_client();
    let metadata = discovery::discover(&http, &issuer).await?;
    let keys = discovery::fetch_jwks(&http, &metadata).await?;
    let jwks = metadata.jwks_uri.as_deref().unwrap_or_default();
    match keys.verify::<serde_json::Value>(&token, ASYMMETRIC_ALGORITHMS) {
        Ok((h, _)) => {
            println!("signature: valid ({}, kid {}) with a key from {jwks}", h.alg, h.kid.as_deref().unwrap_or("-"))
        }
        Err(e) => bail!("signature: INVALID against {jwks}: {e}"),
    }
    let iss = claims.get("iss").and_then(serde_json::Value::as_str);
    if iss != Some(issuer.as_str()) {
        bail!("iss is {iss:?}, not {issuer:?}: this token is not from that issuer");
    }
    let typ = JwsHeader::parse(&token).ok().and_then(|h| h.typ);
    println!("issuer: matches ({issuer}); typ: {}", typ.as_deref().unwrap_or("-"));
    if claims.get("exp").and_then(serde_json::Value::as_i64).is_some_and(|exp| exp <= now) {
        bail!("the token has expired");
    }
    Ok(())
}

/// `2026-01-02T03:04:05Z (in 9m 58s)` / `(2h 3m ago)`.
fn when(t: i64, now: i64) -> String {
    let at = u64::try_from(t).map(|s| UNIX_EPOCH + Duration::from_secs(s));
    let stamp = at.map(|a| humantime::format_rfc3339_seconds(a).to_string()).unwrap_or_else(|_| t.to_string());
    let d = |s: i64| humantime::format_duration(Duration::from_secs(s.unsigned_abs())).to_string();
    match t.cmp(&now) {
        std::cmp::Ordering::Greater => format!("{stamp} (in {})", d(t - now)),
        std::cmp::Ordering::Less => format!("{stamp} ({} ago)", d(now - t)),
        std::cmp::Ordering::Equal => format!("{stamp} (now)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_times() {
        assert_eq!(when(1_700_000_600, 1_700_000_000), "2023-11-14T22:23:20Z (in 10m)");
        assert_eq!(when(1_700_000_000, 1_700_003_723), "2023-11-14T22:13:20Z (1h 2m 3s ago)");
    }
}
