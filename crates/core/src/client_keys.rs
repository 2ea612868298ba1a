//! The public keys of `private_key_jwt` clients (RFC 7523 §2.2, OpenID Connect Core §9):
//! registered with the client (`jwks`) or fetched from its `jwks_uri`.
//!
//! A `jwks_uri` is a URL someone else chose (an administrator, or anyone at `/register`), so it is
//! fetched like a client metadata document: through [`JwksFetcher`] (the server crate's guarded
//! https client: never a private or loopback address, no redirects, a size cap and a timeout).
//! The keys are cached per client in this process for [`JWKS_CACHE_TTL`]; an assertion naming a
//! `kid` the cache does not know makes one refetch (the client may have rotated its keys), but at
//! most one fetch per client every [`JWKS_REFETCH_INTERVAL`] seconds, failures included, so that
//! assertions with made-up `kid`s cannot turn the server into a traffic source.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use latchkey_proto::ClientId;
use latchkey_proto::jose::KeySet;
use url::Url;

use crate::UnixTime;
use crate::cimd::FetchError;
use crate::store::ClientKeys;

/// How long fetched keys are used before they are fetched again, in seconds. Short enough that a
/// key the client withdrew (because it leaked) stops working within minutes.
pub const JWKS_CACHE_TTL: UnixTime = 300;
/// The least time between two fetches of one client's `jwks_uri`, in seconds (N of the refetch
/// rule above). A client that starts signing with a new key within this time of the last fetch
/// is refused until it passes: publish new keys before using them.
pub const JWKS_REFETCH_INTERVAL: UnixTime = 30;
/// The largest JWK Set document read from a `jwks_uri`.
pub const MAX_FETCHED_JWKS_BYTES: usize = 64 * 1024;
/// Clients whose fetched keys are kept; past it, the least recently fetched are dropped.
pub const MAX_CACHED_CLIENTS: usize = 10_000;

/// Fetches a `jwks_uri`: https only, no redirects, 200 only, at most [`MAX_FETCHED_JWKS_BYTES`],
/// a short timeout, never a connection to a special-use address (the server crate's client).
#[async_trait]
pub trait JwksFetcher: Send + Sync + 'static {
    async fn fetch_jwks(&self, url: &Url) -> Result<Vec<u8>, FetchError>;
}

/// Why a client's keys are not available. Each says what the client's developer must fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeysError {
    /// The registered `jwks` does not parse (it was checked at registration, so rare).
    Inline(String),
    /// No fetcher is installed (a provider built without one, in tests).
    NoFetcher,
    Fetch(FetchError),
    /// The fetched document is not a JWK Set with a usable key.
    NotJwks(String),
}

impl KeysError {
    pub fn description(&self) -> String {
        let what = "the client's jwks_uri";
        match self {
            Self::Inline(why) => format!("the client's registered jwks cannot be used: {why}"),
            Self::NoFetcher => format!("{what} cannot be fetched: this server fetches no URLs"),
            Self::Fetch(FetchError::ForbiddenAddress { host, ip, kind }) => format!(
                "{what} was not fetched: its host {host} resolves to {ip}, {}, which this server never connects to (server-side request forgery protection)",
                kind.as_str()
            ),
            Self::Fetch(FetchError::Unresolvable { host }) => {
                format!("{what} could not be fetched: the host name {host} does not resolve")
            }
            Self::Fetch(FetchError::Unreachable(why)) => format!("{what} could not be fetched: no connection ({why})"),
            Self::Fetch(FetchError::Timeout) => {
                format!("{what} could not be fetched: its server did not answer in time")
            }
            Self::Fetch(FetchError::Redirect { status }) => format!(
                "{what} answered with a redirect (HTTP {status}); redirects are not followed: serve the keys at the registered URL"
            ),
            Self::Fetch(FetchError::Status(s)) => format!("{what} answered HTTP {s}; only 200 is accepted"),
            Self::Fetch(FetchError::TooLarge) => format!("{what} is larger than {MAX_FETCHED_JWKS_BYTES} bytes"),
            Self::NotJwks(why) => format!("{what} did not serve a usable JWK Set: {why}"),
        }
    }
}

/// One client's fetched keys. Behind an async mutex: concurrent requests of one client wait for
/// one fetch instead of each making its own.
#[derive(Default)]
struct Slot {
    uri: String,
    keys: Option<Arc<KeySet>>,
    fetched_at: UnixTime,
    /// The last fetch, whatever its outcome: the rate limit counts from here.
    attempted_at: Option<UnixTime>,
    /// The outcome of the last attempt when it failed, answered until the next may be made.
    failure: Option<KeysError>,
}

/// The provider's `jwks_uri` state: the fetcher and the per-client cache.
#[derive(Default)]
pub struct JwksCache {
    fetcher: Option<Arc<dyn JwksFetcher>>,
    slots: Mutex<HashMap<ClientId, Arc<tokio::sync::Mutex<Slot>>>>,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache").field("fetcher", &self.fetcher.is_some()).finish_non_exhaustive()
    }
}

impl JwksCache {
    pub fn with_fetcher(fetcher: Arc<dyn JwksFetcher>) -> Self {
        Self { fetcher: Some(fetcher), slots: Default::default() }
    }

    fn slot(&self, client: &ClientId) -> Arc<tokio::sync::Mutex<Slot>> {
        // A poisoned map only means a panic while inserting or removing an Arc.
        let mut map = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = map.get(client) {
            return s.clone();
        }
        if map.len() >= MAX_CACHED_CLIENTS {
            // Drop the slots nobody is using right now; a client whose keys go is fetched again.
            map.retain(|_, s| Arc::strong_count(s) > 1);
        }
        map.entry(client.clone()).or_default().clone()
    }

    /// The keys `client` verifies with. `kid_unknown`: the last verification named a key the
    /// cached set lacks, so a refetch is wanted (granted at most once per
    /// [`JWKS_REFETCH_INTERVAL`]).
    pub async fn keys(
        &self,
        client: &ClientId,
        keys: &ClientKeys,
        kid_unknown: bool,
        now: UnixTime,
    ) -> Result<Arc<KeySet>, KeysError> {
        let uri = match keys {
            ClientKeys::Inline { jwks } => {
                let set = KeySet::from_jwks(jwks.as_bytes()).map_err(|e| KeysError::Inline(e.to_string()))?;
                return Ok(Arc::new(set));
            }
            ClientKeys::Uri { jwks_uri } => jwks_uri,
        };
        let slot = self.slot(client);
        let mut slot = slot.lock().await;
        if slot.uri != *uri {
            // A new client, or one whose registration changed its jwks_uri.
            *slot = Slot { uri: uri.clone(), ..Default::default() };
        }
        let fresh = slot.keys.is_some() && now < slot.fetched_at + JWKS_CACHE_TTL;
        if fresh && !kid_unknown {
            return slot.keys.clone().ok_or(KeysError::NoFetcher);
        }
        if slot.attempted_at.is_some_and(|t| now < t + JWKS_REFETCH_INTERVAL) {
            // Too soon to fetch again: what the last attempt gave stands.
            return match (&slot.keys, &slot.failure) {
                (Some(k), None) if fresh => Ok(k.clone()),
                (_, Some(f)) => Err(f.clone()),
                _ => Err(KeysError::NotJwks("no keys were fetched".into())),
            };
        }
        slot.attempted_at = Some(now);
        match self.fetch(uri).await {
            Ok(set) => {
                let set = Arc::new(set);
                slot.keys = Some(set.clone());
                slot.fetched_at = now;
                slot.failure = None;
                tracing::info!(client_id = %client, keys = set.len(), "fetched a client's jwks_uri");
                Ok(set)
            }
            Err(e) => {
                // Fail closed: stale keys may include one the client withdrew.
                tracing::info!(client_id = %client, error = %e.description(), "could not fetch a client's jwks_uri");
                slot.keys = None;
                slot.failure = Some(e.clone());
                Err(e)
            }
        }
    }

    async fn fetch(&self, uri: &str) -> Result<KeySet, KeysError> {
        let fetcher = self.fetcher.as_ref().ok_or(KeysError::NoFetcher)?;
        let url = Url::parse(uri).map_err(|_| KeysError::NotJwks("the registered jwks_uri is not a URL".into()))?;
        let body = fetcher.fetch_jwks(&url).await.map_err(KeysError::Fetch)?;
        let set = KeySet::from_jwks(&body).map_err(|e| KeysError::NotJwks(e.to_string()))?;
        if set.is_empty() {
            return Err(KeysError::NotJwks("it holds no usable public signing key".into()));
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A fetcher that serves a fixed document and counts its fetches.
    struct Counting {
        body: Mutex<Vec<u8>>,
        fetches: AtomicUsize,
    }

    #[async_trait]
    impl JwksFetcher for Counting {
        async fn fetch_jwks(&self, _: &Url) -> Result<Vec<u8>, FetchError> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            let body = self.body.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if body.is_empty() { Err(FetchError::Status(500)) } else { Ok(body) }
        }
    }

    const JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;

    fn setup() -> (Arc<Counting>, JwksCache, ClientId, ClientKeys) {
        let f = Arc::new(Counting { body: Mutex::new(JWKS.as_bytes().to_vec()), fetches: AtomicUsize::new(0) });
        let cache = JwksCache::with_fetcher(f.clone());
        let keys = ClientKeys::Uri { jwks_uri: "https://rp.example/jwks.json".into() };
        (f, cache, ClientId::parse("rp").unwrap_or_else(|_| unreachable!()), keys)
    }

    #[tokio::test]
    async fn cached_keys_are_reused_and_unknown_kids_refetch_at_most_once_per_interval() {
        let (f, cache, id, keys) = setup();
        let n = || f.fetches.load(Ordering::SeqCst);
        assert!(cache.keys(&id, &keys, false, 1000).await.is_ok_and(|k| k.has_kid("k1")));
        assert!(cache.keys(&id, &keys, false, 1001).await.is_ok());
        assert_eq!(n(), 1, "cached");
        // An unknown kid right after the fetch: no new fetch inside the interval.
        assert!(cache.keys(&id, &keys, true, 1000 + JWKS_REFETCH_INTERVAL - 1).await.is_ok());
        assert_eq!(n(), 1, "rate limited");
        assert!(cache.keys(&id, &keys, true, 1000 + JWKS_REFETCH_INTERVAL).await.is_ok());
        assert_eq!(n(), 2, "refetched once the interval passed");
        // Expired: fetched again; a failure is not retried inside the interval, and fails closed.
        *f.body.lock().unwrap_or_else(|p| p.into_inner()) = vec![];
        let t = 1000 + JWKS_REFETCH_INTERVAL + JWKS_CACHE_TTL;
        assert_eq!(cache.keys(&id, &keys, false, t).await.err(), Some(KeysError::Fetch(FetchError::Status(500))));
        assert_eq!(cache.keys(&id, &keys, false, t + 1).await.err(), Some(KeysError::Fetch(FetchError::Status(500))));
        assert_eq!(n(), 3);
    }

    #[tokio::test]
    async fn a_burst_of_requests_for_an_uncached_client_fetches_once() {
        let (f, cache, id, keys) = setup();
        let cache = Arc::new(cache);
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (cache, id, keys) = (cache.clone(), id.clone(), keys.clone());
            tasks.push(tokio::spawn(async move { cache.keys(&id, &keys, false, 1000).await.is_ok() }));
        }
        for t in tasks {
            assert!(t.await.unwrap_or(false));
        }
        assert_eq!(f.fetches.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn inline_keys_need_no_fetch_and_a_non_jwks_is_refused() {
        let (f, cache, id, _) = setup();
        let inline = ClientKeys::Inline { jwks: JWKS.into() };
        assert!(cache.keys(&id, &inline, false, 1).await.is_ok());
        assert_eq!(f.fetches.load(Ordering::SeqCst), 0);
        *f.body.lock().unwrap_or_else(|p| p.into_inner()) = br#"{"keys":[]}"#.to_vec();
        let uri = ClientKeys::Uri { jwks_uri: "https://rp.example/other.json".into() };
        assert!(matches!(cache.keys(&id, &uri, false, 1).await, Err(KeysError::NotJwks(_))));
    }
}
