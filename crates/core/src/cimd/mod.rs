//! Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document): a `client_id`
//! that is an https URL names a JSON document, served by the client at that URL, that describes
//! it. The server fetches it (through [`MetadataFetcher`], so this crate stays free of HTTP),
//! validates it ([`document`]), and caches it in the store so that every instance shares it.
//!
//! Every client lookup goes through [`Provider::client`]: plain ids are read from the store,
//! document URLs from the cache or a fetch. Such clients are public, never first-party, and
//! marked as unvetted (`ClientOrigin::MetadataDocument`).

pub mod address;
pub mod document;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use latchkey_proto::{ClientId, ErrorCode, OAuthError};
use tokio::sync::OnceCell;

pub use document::{CacheHints, DocumentUrl, MAX_DOCUMENT_BYTES};

use crate::store::{CachedDocument, ClientRecord};
use crate::{Error, Provider, UnixTime};

/// Documents kept in the cache; past it, those expiring soonest are evicted. Each is at most
/// [`MAX_DOCUMENT_BYTES`], so the table stays under ~50 MB whatever URLs attackers send.
pub const MAX_CACHED_DOCUMENTS: u64 = 10_000;
/// Distinct URLs fetched at once by this instance; more get `temporarily_unavailable`. Requests
/// for a URL already being fetched wait for that fetch instead of starting another.
pub const MAX_CONCURRENT_FETCHES: usize = 64;

/// How a fetch failed. The fetcher decides; the server shows the description on the error page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchError {
    /// The host is, or resolves only to, an address no fetch may reach (SSRF, see [`address`]).
    /// Refused before any connection is made.
    ForbiddenAddress { host: String, ip: IpAddr, kind: address::Special },
    /// The name does not resolve.
    Unresolvable { host: String },
    /// No TCP or TLS connection (refused, reset, certificate not trusted...).
    Unreachable(String),
    /// The whole fetch took longer than the fetcher's timeout.
    Timeout,
    /// A 3xx answer: redirects are never followed (draft §4).
    Redirect { status: u16 },
    /// Anything but 200 (draft §4: "MUST treat all other HTTP status codes as an error").
    Status(u16),
    /// More than [`MAX_DOCUMENT_BYTES`].
    TooLarge,
}

/// What the fetcher got: the body (at most [`MAX_DOCUMENT_BYTES`]) and its caching headers.
#[derive(Clone, Debug)]
pub struct Fetched {
    pub body: Vec<u8>,
    pub cache: CacheHints,
}

/// Fetches a metadata document: https only, no redirects, 200 only, size-capped, a short timeout,
/// and never a connection to a special-use address (the server crate's implementation).
#[async_trait]
pub trait MetadataFetcher: Send + Sync + 'static {
    async fn fetch(&self, url: &DocumentUrl) -> Result<Fetched, FetchError>;
}

/// Why a document URL gave no client. Closed: each kind has its own precise description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CimdError {
    /// The `client_id` breaks the draft's URL rules; the text says which.
    InvalidUrl(&'static str),
    /// `cimd = false`, or no fetcher configured.
    Disabled,
    Fetch(FetchError),
    /// The response body is not a JSON object.
    NotJson(String),
    /// The document's `client_id` (shown, shortened) is not the URL.
    ClientIdMismatch(String),
    /// `client_secret` or `client_secret_expires_at` in the document.
    SecretInDocument,
    /// A method built on a shared secret (named).
    SharedSecretMethod(String),
    /// A method we do not support for these clients (named), such as `private_key_jwt` alone.
    UnsupportedAuthMethod(String),
    /// Any other field is wrong; the text says which and why.
    InvalidMetadata(String),
    /// Too many different documents are being fetched at once.
    Busy,
}

impl CimdError {
    /// A short, stable name for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidUrl(_) => "invalid_url",
            Self::Disabled => "disabled",
            Self::Fetch(FetchError::ForbiddenAddress { .. }) => "forbidden_address",
            Self::Fetch(FetchError::Unresolvable { .. }) => "unresolvable",
            Self::Fetch(FetchError::Unreachable(_)) => "unreachable",
            Self::Fetch(FetchError::Timeout) => "timeout",
            Self::Fetch(FetchError::Redirect { .. }) => "redirect",
            Self::Fetch(FetchError::Status(_)) => "status",
            Self::Fetch(FetchError::TooLarge) => "too_large",
            Self::NotJson(_) => "not_json",
            Self::ClientIdMismatch(_) => "client_id_mismatch",
            Self::SecretInDocument => "secret_in_document",
            Self::SharedSecretMethod(_) => "shared_secret_method",
            Self::UnsupportedAuthMethod(_) => "unsupported_auth_method",
            Self::InvalidMetadata(_) => "invalid_metadata",
            Self::Busy => "busy",
        }
    }

    /// The description a developer needs to fix their document.
    pub fn description(&self) -> String {
        let doc = "the client's metadata document (at its client_id URL)";
        match self {
            Self::InvalidUrl(why) => {
                format!("the client_id is an https URL but not a valid client ID metadata document URL: {why}")
            }
            Self::Disabled => {
                "this server does not accept client ID metadata documents (cimd = false): use a registered client_id"
                    .into()
            }
            Self::Fetch(FetchError::ForbiddenAddress { host, ip, kind }) => format!(
                "{doc} was not fetched: its host {host} resolves to {ip}, {}, which this server never connects to (server-side request forgery protection)",
                kind.as_str()
            ),
            Self::Fetch(FetchError::Unresolvable { host }) => {
                format!("{doc} could not be fetched: the host name {host} does not resolve")
            }
            Self::Fetch(FetchError::Unreachable(why)) => format!("{doc} could not be fetched: no connection ({why})"),
            Self::Fetch(FetchError::Timeout) => {
                format!("{doc} could not be fetched: the server did not answer in time")
            }
            Self::Fetch(FetchError::Redirect { status }) => format!(
                "{doc} answered with a redirect (HTTP {status}); redirects are not followed: serve the document at the client_id URL itself"
            ),
            Self::Fetch(FetchError::Status(404)) => format!("{doc} was not found (HTTP 404)"),
            Self::Fetch(FetchError::Status(s)) => format!("{doc} answered HTTP {s}; only 200 is accepted"),
            Self::Fetch(FetchError::TooLarge) => format!("{doc} is larger than {MAX_DOCUMENT_BYTES} bytes"),
            Self::NotJson(why) => format!("{doc} is not a JSON object: {why}"),
            Self::ClientIdMismatch(found) => {
                format!("the client_id in {doc} ({found}) is not exactly the URL it was fetched from")
            }
            Self::SecretInDocument => format!(
                "{doc} contains client_secret or client_secret_expires_at: a public document cannot hold a secret"
            ),
            Self::SharedSecretMethod(m) => format!(
                "{doc} asks for token endpoint authentication method {m}, which needs a shared secret that a metadata document cannot establish; use none"
            ),
            Self::UnsupportedAuthMethod(m) => format!(
                "{doc} asks for token endpoint authentication method {m:?}, which this server does not support for metadata-document clients; use none (a public client with PKCE)"
            ),
            Self::InvalidMetadata(why) => format!("{doc} is invalid: {why}"),
            Self::Busy => {
                "too many client metadata documents are being fetched right now; try again in a moment".into()
            }
        }
    }

    /// At the token endpoint this is `invalid_client`; at `/authorize`, [`for_page`] shows it as
    /// an error page.
    pub fn to_oauth(&self) -> OAuthError {
        match self {
            Self::Busy => OAuthError::new(ErrorCode::TemporarilyUnavailable, self.description()),
            _ => OAuthError::invalid_client(self.description()),
        }
    }
}

/// At `/authorize` a document failure is an error page, never a redirect (the redirect URI comes
/// from the very document that failed): shown as `invalid_request`, with a 400, not `invalid_client`'s
/// 401 (which would need an HTTP authentication challenge).
pub fn for_page(e: Error) -> Error {
    match e {
        Error::OAuth(o) if o.code == ErrorCode::InvalidClient => {
            Error::OAuth(OAuthError::invalid_request(o.description))
        }
        other => other,
    }
}

#[derive(Clone, Debug)]
enum Failure {
    Refused(CimdError),
    Internal(Arc<anyhow::Error>),
}

impl From<crate::store::StoreError> for Failure {
    fn from(e: crate::store::StoreError) -> Self {
        Failure::Internal(Arc::new(anyhow::Error::new(e)))
    }
}

type Flight = Arc<OnceCell<Result<CachedDocument, Failure>>>;

/// The provider's CIMD state: the fetcher, and the fetches in flight (single-flight per URL, in
/// this process; other instances share the result through the store's cache).
#[derive(Default)]
pub struct CimdState {
    fetcher: Option<Arc<dyn MetadataFetcher>>,
    inflight: Mutex<HashMap<String, Flight>>,
}

impl std::fmt::Debug for CimdState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CimdState").field("fetcher", &self.fetcher.is_some()).finish_non_exhaustive()
    }
}

impl CimdState {
    fn flights(&self) -> std::sync::MutexGuard<'_, HashMap<String, Flight>> {
        // A poisoned map only means a panic while inserting or removing an Arc.
        self.inflight.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Leaves the in-flight map when the last request waiting on a fetch is done with it, also when
/// that request is cancelled (the client went away), so entries cannot pile up.
struct FlightGuard<'a> {
    state: &'a CimdState,
    url: &'a str,
    flight: Flight,
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        let mut map = self.state.flights();
        // Under the lock, clones are made only through the map: map + this guard = last one.
        if map.get(self.url).is_some_and(|f| Arc::ptr_eq(f, &self.flight)) && Arc::strong_count(&self.flight) <= 2 {
            map.remove(self.url);
        }
    }
}

impl Provider {
    /// Installs the fetcher of metadata documents (the server crate's HTTPS client). Without
    /// one, URL client ids are refused and the metadata does not advertise support.
    pub fn with_metadata_fetcher(mut self, fetcher: Arc<dyn MetadataFetcher>) -> Self {
        self.cimd.fetcher = Some(fetcher);
        self
    }

    /// Whether URL client ids are resolved (`client_id_metadata_document_supported`).
    pub fn metadata_documents_supported(&self) -> bool {
        self.config.cimd && self.cimd.fetcher.is_some()
    }

    /// The one client lookup of every endpoint. A client in the store wins (an administrator may
    /// register a URL id, draft §7.2); an unknown https URL id is resolved as a metadata document,
    /// and its failure is an `invalid_client` error naming the exact cause. Other unknown ids are
    /// `None`.
    pub async fn client(&self, id: &ClientId, now: UnixTime) -> Result<Option<ClientRecord>, Error> {
        if let Some(c) = self.store.client(id).await? {
            return Ok(Some(c));
        }
        if !DocumentUrl::is_candidate(id.as_str()) {
            return Ok(None);
        }
        match self.metadata_client(id, now).await {
            Ok(c) => Ok(Some(c)),
            Err(Failure::Refused(e)) => {
                // Logged, not audited: anyone can send any URL, and the audit table must not grow
                // with what an unauthenticated sender chooses.
                tracing::info!(client_id = %id, kind = e.kind(), "client metadata document refused");
                Err(e.to_oauth().into())
            }
            Err(Failure::Internal(e)) => Err(Error::Internal(anyhow::anyhow!("{e:#}"))),
        }
    }

    async fn metadata_client(&self, id: &ClientId, now: UnixTime) -> Result<ClientRecord, Failure> {
        let url = DocumentUrl::parse(id.as_str()).map_err(Failure::Refused)?;
        if !self.metadata_documents_supported() {
            return Err(Failure::Refused(CimdError::Disabled));
        }
        let doc = match self.store.cached_metadata_document(url.as_str(), now).await? {
            Some(d) => d,
            None => self.fetch_once(&url, now).await?,
        };
        document::client_from_document(&url, doc.body.as_bytes(), doc.fetched_at).map_err(Failure::Refused)
    }

    /// One fetch per URL at a time: concurrent requests for an uncached URL wait for the first
    /// one's result (success or failure) instead of each fetching it.
    async fn fetch_once(&self, url: &DocumentUrl, now: UnixTime) -> Result<CachedDocument, Failure> {
        let flight = {
            let mut map = self.cimd.flights();
            match map.get(url.as_str()) {
                Some(f) => f.clone(),
                None if map.len() >= MAX_CONCURRENT_FETCHES => return Err(Failure::Refused(CimdError::Busy)),
                None => map.entry(url.as_str().to_owned()).or_default().clone(),
            }
        };
        let guard = FlightGuard { state: &self.cimd, url: url.as_str(), flight };
        guard.flight.get_or_init(|| self.fetch_and_cache(url, now)).await.clone()
    }

    async fn fetch_and_cache(&self, url: &DocumentUrl, now: UnixTime) -> Result<CachedDocument, Failure> {
        // A fetch that just finished (here or on another instance) may have filled the cache.
        if let Some(d) = self.store.cached_metadata_document(url.as_str(), now).await? {
            return Ok(d);
        }
        let fetcher = self.cimd.fetcher.clone().ok_or(Failure::Refused(CimdError::Disabled))?;
        let fetched = fetcher.fetch(url).await.map_err(|e| Failure::Refused(CimdError::Fetch(e)))?;
        // Draft §4.2: invalid documents and errors are never cached.
        document::client_from_document(url, &fetched.body, now).map_err(Failure::Refused)?;
        let body = String::from_utf8(fetched.body)
            .map_err(|_| Failure::Refused(CimdError::NotJson("the document is not UTF-8".into())))?;
        let lifetime = fetched.cache.lifetime(now);
        let doc = CachedDocument {
            url: url.as_str().to_owned(),
            body,
            fetched_at: now,
            expires_at: now.saturating_add(lifetime as UnixTime),
        };
        self.store.cache_metadata_document(&doc, MAX_CACHED_DOCUMENTS).await?;
        tracing::info!(client_id = %url.as_str(), lifetime, "fetched a client metadata document");
        Ok(doc)
    }
}
