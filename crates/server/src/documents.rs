//! The discovery and JWK Set documents, serialised once and served as bytes.
//!
//! Both are read far more often than they change: every client and resource server fetches them.
//! Serialising the metadata and re-encoding the public keys on each request cost more than the
//! rest of the request (`latchkey-bench`'s discovery and JWKS phases against a bare hyper server),
//! so the bytes are kept. The metadata never changes while the server runs; the JWK Set changes
//! when the key set is reloaded (a new `Arc<KeySet>`) or when a retired key's publication window
//! ends, and both are checked on each request, which costs a pointer comparison and a few integer
//! comparisons.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use latchkey_core::keys::KeySet;
use latchkey_core::{Provider, UnixTime};

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

fn published(keys: &KeySet, now: UnixTime, keep: u64) -> Vec<String> {
    keys.keys().iter().filter(|k| KeySet::published(k, now, keep)).map(|k| k.kid.clone()).collect()
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
            && c.published.iter().eq(keys.keys().iter().filter(|k| KeySet::published(k, now, keep)).map(|k| &k.kid))
        {
            return c.body.clone();
        }
        let body = to_bytes(&keys.jwks(now, keep));
        *cache = Some(CachedJwks { published: published(&keys, now, keep), keys, body: body.clone() });
        body
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
