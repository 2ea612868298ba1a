//! Fetching client ID metadata documents and `private_key_jwt` clients' `jwks_uri` over https:
//! `latchkey_core::cimd::MetadataFetcher` and `latchkey_core::client_keys::JwksFetcher` on reqwest
//! with rustls.
//!
//! Server-side request forgery is the danger: the URL comes from whoever sends an authorization
//! request or registers a client. So (draft-ietf-oauth-client-id-metadata-document, "SSRF
//! attacks"; the same rules for a `jwks_uri`):
//! - the host name is resolved by our own resolver, which hands reqwest only addresses that
//!   `cimd::address` allows: reqwest connects to exactly the addresses checked, with no second
//!   resolution an attacker's DNS could answer differently (DNS rebinding); an IP-literal host
//!   (which reqwest does not resolve) is checked before the request;
//! - no proxy from the environment (it would resolve the name itself), no redirects, no cookies;
//! - https only, 200 only, a cap on what is read (5 KiB for a document, 64 KiB for a JWK Set),
//!   one timeout for the whole exchange.

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use latchkey_core::UnixTime;
use latchkey_core::cimd::{CacheHints, DocumentUrl, FetchError, Fetched, MAX_DOCUMENT_BYTES, MetadataFetcher, address};
use latchkey_core::client_keys::{JwksFetcher, MAX_FETCHED_JWKS_BYTES};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header;

/// The whole fetch (resolution, connection, TLS, headers and body). An authorization request
/// waits for it, so it is short; a legitimate document is a few hundred bytes.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How the fetcher is set up.
#[derive(Clone, Debug, Default)]
pub struct FetcherSettings {
    /// `insecure_cimd_loopback` (tests only): loopback addresses and `localhost` may be fetched.
    pub insecure_allow_loopback: bool,
    /// `insecure_cimd_ca` (tests only): one more trusted root, PEM.
    pub insecure_extra_root_pem: Option<Vec<u8>>,
    /// Defaults to [`FETCH_TIMEOUT`].
    pub timeout: Option<Duration>,
}

/// The fetcher `latchkey serve` installs.
#[derive(Clone)]
pub struct HttpFetcher {
    client: reqwest::Client,
    allow_loopback: bool,
}

impl std::fmt::Debug for HttpFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpFetcher").field("allow_loopback", &self.allow_loopback).finish_non_exhaustive()
    }
}

/// A refusal from our resolver, found again in reqwest's error chain.
#[derive(Debug)]
pub(crate) struct Refused(pub(crate) FetchError);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "refused by the metadata-document resolver: {:?}", self.0)
    }
}

impl StdError for Refused {}

/// Resolves with the system resolver, then keeps only the addresses a fetch may reach. Also
/// guards the back-channel logout POSTs to self-registered clients (`backchannel_send`).
pub(crate) struct GuardedResolver {
    pub(crate) allow_loopback: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_loopback = self.allow_loopback;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let unresolvable = || Refused(FetchError::Unresolvable { host: host.clone() });
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await.map_err(|_| unresolvable())?.collect();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| match address::allowed(a.ip(), allow_loopback) {
                    Ok(()) => true,
                    Err(kind) => {
                        refused.get_or_insert((a.ip(), kind));
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                return Err(match refused {
                    Some((ip, kind)) => {
                        Box::new(Refused(FetchError::ForbiddenAddress { host: host.clone(), ip, kind }))
                    }
                    None => Box::new(unresolvable()),
                } as Box<dyn StdError + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

impl HttpFetcher {
    pub fn new(settings: &FetcherSettings) -> anyhow::Result<Self> {
        let mut b = reqwest::Client::builder()
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(settings.timeout.unwrap_or(FETCH_TIMEOUT))
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("latchkey/", env!("CARGO_PKG_VERSION"), " (client metadata and keys fetch)"))
            .dns_resolver(Arc::new(GuardedResolver { allow_loopback: settings.insecure_allow_loopback }));
        if let Some(pem) = &settings.insecure_extra_root_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| anyhow::anyhow!("insecure_cimd_ca is not a PEM certificate: {e}"))?;
            if certs.is_empty() {
                anyhow::bail!("insecure_cimd_ca holds no PEM certificate");
            }
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        Ok(Self { client: b.build()?, allow_loopback: settings.insecure_allow_loopback })
    }
}

/// Our resolver's refusal, if it is in reqwest's error chain.
pub(crate) fn refusal(e: &reqwest::Error) -> Option<FetchError> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(x) = cur {
        if let Some(Refused(r)) = x.downcast_ref::<Refused>() {
            return Some(r.clone());
        }
        cur = x.source();
    }
    None
}

/// reqwest's error, as one of ours: our resolver's refusal if it is in the chain.
fn classify(e: &reqwest::Error) -> FetchError {
    if let Some(r) = refusal(e) {
        return r;
    }
    if e.is_timeout() {
        return FetchError::Timeout;
    }
    // The innermost cause says most (connection refused, certificate unknown...).
    let mut inner: &(dyn StdError + 'static) = e;
    while let Some(s) = inner.source() {
        inner = s;
    }
    let mut why = inner.to_string();
    why.truncate(200);
    FetchError::Unreachable(why)
}

#[async_trait]
impl MetadataFetcher for HttpFetcher {
    async fn fetch(&self, url: &DocumentUrl) -> Result<Fetched, FetchError> {
        self.get(url.url(), MAX_DOCUMENT_BYTES).await
    }
}

#[async_trait]
impl JwksFetcher for HttpFetcher {
    async fn fetch_jwks(&self, url: &url::Url) -> Result<Vec<u8>, FetchError> {
        if url.scheme() != "https" {
            return Err(FetchError::Unreachable("the jwks_uri is not an https URL".into()));
        }
        Ok(self.get(url, MAX_FETCHED_JWKS_BYTES).await?.body)
    }
}

impl HttpFetcher {
    /// GET `url` under the rules of this module, reading at most `cap` bytes.
    async fn get(&self, url: &url::Url, cap: usize) -> Result<Fetched, FetchError> {
        // reqwest connects to an IP literal without asking the resolver: check it here.
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(ip) = literal {
            address::allowed(ip, self.allow_loopback).map_err(|kind| FetchError::ForbiddenAddress {
                host: url.host_str().unwrap_or_default().to_owned(),
                ip,
                kind,
            })?;
        }
        let mut res = self
            .client
            .get(url.as_str())
            .header(header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| classify(&e))?;
        let status = res.status();
        if status.is_redirection() {
            return Err(FetchError::Redirect { status: status.as_u16() });
        }
        if status != reqwest::StatusCode::OK {
            return Err(FetchError::Status(status.as_u16()));
        }
        if res.content_length().is_some_and(|n| n > cap as u64) {
            return Err(FetchError::TooLarge);
        }
        let text = |h: header::HeaderName| res.headers().get(h).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let cache_control = text(header::CACHE_CONTROL);
        let expires = text(header::EXPIRES).and_then(|v| httpdate::parse_http_date(&v).ok()).map(|t| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| UnixTime::try_from(d.as_secs()).unwrap_or(UnixTime::MAX))
        });
        // Read at most the cap (plus one chunk): a document that does not end by then is refused,
        // whatever Content-Length said or did not say.
        let mut body = Vec::new();
        while let Some(chunk) = res.chunk().await.map_err(|e| classify(&e))? {
            body.extend_from_slice(&chunk);
            if body.len() > cap {
                return Err(FetchError::TooLarge);
            }
        }
        Ok(Fetched { body, cache: CacheHints::from_headers(cache_control.as_deref(), expires) })
    }
}
