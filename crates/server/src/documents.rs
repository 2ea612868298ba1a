//! The discovery and JWK Set documents, serialised once and served as bytes.
//!
//! Both are read far more often than they change: every client and resource server fetches them.
//! Serialising the metadata and re-encoding the public keys on each request cost more than the
//! rest of the request (`latchkey-bench`'s discovery and JWKS phases against a bare hyper server),
//! so the bytes are kept. The metadata never changes while the server runs; the JWK Set changes
//! when the key set is reloaded (a new `Arc<KeySet>`) or when a retired key's publication window
//! ends, and both are checked on each request, which costs a pointer comparison and a few integer
//! comparisons.
//!
//! A `GET` of either document is answered by [`FastPath`], in front of the router and its
//! request-id and tracing layers, with the same headers the router would add (the request id
//! included): those layers cost about as much again as the rest of the request. Such requests get
//! no log line; a public document has nothing to trace. Every other method goes through the router.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, Method, Request, header};
use axum::response::{IntoResponse, Response};
use futures_util::future::Either;
use latchkey_core::keys::KeySet;
use latchkey_core::{Provider, UnixTime};

use crate::AppState;

#[derive(Debug)]
pub(crate) struct Documents {
    metadata: Bytes,
    jwks: Mutex<Option<CachedJwks>>,
}

#[derive(Debug)]
struct CachedJwks {
    keys: Arc<KeySet>,
    /// The published keys (their `kid`s, in order) when `body` was made.
    published: Vec<String>,
    body: Bytes,
}

/// The `kid`s of the keys published at `now`, in the JWK Set's order.
fn published(keys: &KeySet, now: UnixTime, keep: u64) -> impl Iterator<Item = &String> {
    keys.keys().iter().filter(move |k| KeySet::published(k, now, keep)).map(|k| &k.kid)
}

impl Documents {
    pub(crate) fn new(provider: &Provider) -> Self {
        Self { metadata: to_bytes(&provider.metadata()), jwks: Mutex::new(None) }
    }

    pub(crate) fn metadata(&self) -> Bytes {
        self.metadata.clone()
    }

    pub(crate) fn jwks(&self, provider: &Provider, now: UnixTime) -> Bytes {
        let keys = provider.keys();
        let keep = provider.key_publish_window();
        // A poisoned lock only means a panic while replacing the cache; it is rebuilt below.
        let mut cache = self.jwks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cache.as_ref()
            && Arc::ptr_eq(&c.keys, &keys)
            && c.published.iter().eq(published(&keys, now, keep))
        {
            return c.body.clone();
        }
        let body = to_bytes(&keys.jwks(now, keep));
        let kids = published(&keys, now, keep).cloned().collect();
        *cache = Some(CachedJwks { published: kids, keys, body: body.clone() });
        body
    }
}

/// The metadata paths (OpenID Connect Discovery §4, RFC 8414 §3) and the JWK Set's.
pub(crate) const METADATA_PATHS: [&str; 2] =
    ["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"];
pub(crate) const JWKS_PATH: &str = "/jwks.json";

/// A public JSON document: cached by clients, readable from any origin (an SPA doing discovery).
pub(crate) fn public_json(body: Bytes, max_age: &'static str, secure: bool) -> Response {
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(max_age));
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if secure {
        h.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static(crate::HSTS));
    }
    res
}

/// Metadata is fixed while the server runs; keys rotate, so verifiers look again within minutes.
pub(crate) const METADATA_MAX_AGE: &str = "public, max-age=3600";
pub(crate) const JWKS_MAX_AGE: &str = "public, max-age=300";

/// Answers `GET` of the discovery documents and the JWK Set before the inner service.
#[derive(Clone)]
pub(crate) struct FastPath<S> {
    pub(crate) inner: S,
    pub(crate) state: AppState,
    pub(crate) ids: crate::SequentialIds,
}

impl<S> tower::Service<Request<Body>> for FastPath<S>
where
    S: tower::Service<Request<Body>, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<std::future::Ready<Result<Response, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        if req.method() == Method::GET {
            let path = req.uri().path();
            let s = &self.state;
            let body = if METADATA_PATHS.contains(&path) {
                Some((s.docs.metadata(), METADATA_MAX_AGE))
            } else if path == JWKS_PATH {
                Some((s.docs.jwks(&s.provider, s.clock.now()), JWKS_MAX_AGE))
            } else {
                None
            };
            if let Some((body, max_age)) = body {
                let mut res = public_json(body, max_age, s.secure());
                if let Some(id) = self.ids.for_request(req.headers()) {
                    res.headers_mut().insert("x-request-id", id);
                }
                return Either::Left(std::future::ready(Ok(res)));
            }
        }
        Either::Right(self.inner.call(req))
    }
}

fn to_bytes(value: &impl serde::Serialize) -> Bytes {
    // Serialising a struct of strings or a `serde_json::Value` to a Vec cannot fail.
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_core::store::SigningAlg;

    async fn provider(dir: &tempfile::TempDir, now: UnixTime) -> Provider {
        let store = Arc::new(latchkey_store::SqliteStore::open(&dir.path().join("docs.db")).unwrap());
        Provider::open(store, latchkey_core::ProviderConfig::new("http://127.0.0.1:1"), now).await.unwrap()
    }

    #[tokio::test]
    async fn the_jwks_bytes_follow_rotation_and_the_end_of_publication() {
        let now = 1_000_000;
        let dir = tempfile::tempdir().unwrap();
        let p = provider(&dir, now).await;
        let docs = Documents::new(&p);
        let first = docs.jwks(&p, now);
        assert_eq!(first, to_bytes(&p.keys().jwks(now, p.key_publish_window())));
        assert!(first.as_ptr() == docs.jwks(&p, now + 1).as_ptr(), "served from the cache");

        latchkey_core::admin::rotate_keys(p.store.as_ref(), &[SigningAlg::ES256], now + 2).await.unwrap();
        p.reload_keys().await.unwrap();
        let rotated = docs.jwks(&p, now + 3);
        let doc: serde_json::Value = serde_json::from_slice(&rotated).unwrap();
        assert_eq!(doc["keys"].as_array().unwrap().len(), 4, "the retired ES256 key is still published");

        let later = now + 2 + p.key_publish_window() as UnixTime;
        let doc: serde_json::Value = serde_json::from_slice(&docs.jwks(&p, later)).unwrap();
        assert_eq!(doc["keys"].as_array().unwrap().len(), 3, "its window has ended");
        assert_eq!(docs.jwks(&p, later), to_bytes(&p.keys().jwks(later, p.key_publish_window())));
    }

    #[tokio::test]
    async fn the_metadata_bytes_are_the_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let p = provider(&dir, 1).await;
        let doc: serde_json::Value = serde_json::from_slice(&Documents::new(&p).metadata()).unwrap();
        assert_eq!(doc, serde_json::to_value(p.metadata()).unwrap());
    }
}
