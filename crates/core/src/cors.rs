//! Which browser origins may call the token, revocation and userinfo endpoints from JavaScript.
//!
//! Only the origins of registered redirect URIs: a single-page app registered with
//! `https://app.example/callback` may call from `https://app.example`, and no other site may read
//! the responses. The set is cached for a few seconds, so a new client works right away on the
//! instance that notices it is missing, and everywhere within the refresh interval.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use url::Url;

use crate::{Error, Provider, UnixTime};

const REFRESH: UnixTime = 10;
const MISS_REFRESH: UnixTime = 1;

#[derive(Debug, Default)]
pub struct OriginCache {
    inner: RwLock<(UnixTime, Arc<HashSet<String>>)>,
}

/// `https://app.example:8443/cb?x` -> `https://app.example:8443` (RFC 6454 ASCII serialisation).
pub fn origin_of(uri: &str) -> Option<String> {
    let url = Url::parse(uri).ok()?;
    matches!(url.scheme(), "http" | "https").then(|| url.origin().ascii_serialization())
}

impl Provider {
    pub async fn allowed_origin(&self, origin: &str, now: UnixTime) -> Result<bool, Error> {
        let (loaded, set) = match self.origins.inner.read() {
            Ok(g) => (g.0, g.1.clone()),
            Err(p) => (p.get_ref().0, p.get_ref().1.clone()),
        };
        let hit = set.contains(origin);
        let stale = now - loaded >= REFRESH || (!hit && now - loaded >= MISS_REFRESH);
        if !stale {
            return Ok(hit);
        }
        let mut fresh = HashSet::new();
        for c in self.store.clients().await? {
            fresh.extend(c.redirect_uris.iter().filter_map(|r| origin_of(r.as_str())));
        }
        let hit = fresh.contains(origin);
        let value = (now, Arc::new(fresh));
        match self.origins.inner.write() {
            Ok(mut g) => *g = value,
            Err(p) => *p.into_inner() = value,
        }
        Ok(hit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        assert_eq!(origin_of("https://app.example/cb?x=1").as_deref(), Some("https://app.example"));
        assert_eq!(origin_of("http://127.0.0.1:5173/callback").as_deref(), Some("http://127.0.0.1:5173"));
        assert_eq!(origin_of("https://app.example:443/cb").as_deref(), Some("https://app.example"));
        assert_eq!(origin_of("com.example.app:/oauth"), None);
    }
}
