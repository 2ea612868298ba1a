//! Discovery (OpenID Connect Discovery 1.0, then RFC 8414) and the provider's JWK Set.

use std::time::Duration;

use latchkey_proto::discovery::{IssuerMetadata, well_known_urls};
use latchkey_proto::jose::KeySet;
use url::Url;

use crate::Error;

/// The HTTP client used for every request to the provider: bounded times, and no redirects, so a
/// token request with credentials is never replayed to another host.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(concat!("latchkey-client/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// An issuer must be https; plain http is accepted only on loopback hosts, where nothing crosses a
/// network (for development and tests). Tokens and codes over plain http can be read by anyone on
/// the path.
pub fn check_issuer_url(issuer: &str) -> Result<Url, Error> {
    let url = Url::parse(issuer).map_err(|_| Error::InvalidIssuer { issuer: issuer.into(), reason: "not a URL" })?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::InvalidIssuer { issuer: issuer.into(), reason: "an issuer has no query or fragment" });
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback_host(&url) => Ok(url),
        "http" => Err(Error::InvalidIssuer {
            issuer: issuer.into(),
            reason: "plain http is allowed only for loopback hosts (127.0.0.1, [::1], localhost); use https",
        }),
        _ => Err(Error::InvalidIssuer { issuer: issuer.into(), reason: "an issuer is an https URL" }),
    }
}

/// A plain-http issuer on a loopback host: a development provider, whose pages may be http too.
pub(crate) fn is_loopback_http(issuer: &str) -> bool {
    Url::parse(issuer).is_ok_and(|u| u.scheme() == "http" && is_loopback_host(&u))
}

pub(crate) fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Fetches the issuer's metadata: OpenID Connect's well-known location first, then RFC 8414's.
/// The document's `issuer` must be the one asked for, byte for byte.
pub async fn discover(http: &reqwest::Client, issuer: &str) -> Result<IssuerMetadata, Error> {
    check_issuer_url(issuer)?;
    let urls =
        well_known_urls(issuer).map_err(|_| Error::InvalidIssuer { issuer: issuer.into(), reason: "not a URL" })?;
    let mut tried = Vec::new();
    for url in urls {
        let res = http.get(url.clone()).header("accept", "application/json").send().await;
        let res = match res {
            Ok(r) => r,
            // The host is unreachable: the second location is on the same host, so stop here.
            Err(source) => return Err(Error::Http { url: url.to_string(), source }),
        };
        if !res.status().is_success() {
            tried.push(format!("{url} answered {}", res.status().as_u16()));
            continue;
        }
        let body = res.bytes().await.map_err(|source| Error::Http { url: url.to_string(), source })?;
        let metadata: IssuerMetadata = match serde_json::from_slice(&body) {
            Ok(m) => m,
            Err(e) => {
                tried.push(format!("{url} is not provider metadata ({e})"));
                continue;
            }
        };
        metadata.check_issuer(issuer)?;
        return Ok(metadata);
    }
    Err(Error::Discovery { issuer: issuer.into(), detail: tried.join("; ") })
}

/// Fetches and parses the JWK Set at the metadata's `jwks_uri`.
pub async fn fetch_jwks(http: &reqwest::Client, metadata: &IssuerMetadata) -> Result<KeySet, Error> {
    let url = metadata.endpoint("jwks_uri")?;
    let res = http
        .get(url.clone())
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|source| Error::Http { url: url.to_string(), source })?;
    if !res.status().is_success() {
        return Err(Error::Jwks { url: url.to_string(), detail: format!("it answered {}", res.status().as_u16()) });
    }
    let body = res.bytes().await.map_err(|source| Error::Http { url: url.to_string(), source })?;
    KeySet::from_jwks(&body).map_err(|e| Error::Jwks { url: url.to_string(), detail: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_urls() {
        assert!(check_issuer_url("https://id.example").is_ok());
        assert!(check_issuer_url("http://127.0.0.1:8080").is_ok());
        assert!(check_issuer_url("http://[::1]:8080").is_ok());
        assert!(check_issuer_url("http://localhost:8080").is_ok());
        for bad in ["http://id.example", "ftp://id.example", "https://id.example?x=1", "id.example"] {
            assert!(matches!(check_issuer_url(bad), Err(Error::InvalidIssuer { .. })), "{bad}");
        }
    }
}
