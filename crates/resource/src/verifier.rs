//! The verifier: configuration, the JWKS cache, and the checks of one access token.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use jsonwebtoken::{Algorithm, AlgorithmFamily};
use latchkey_proto::discovery::{IssuerMetadata, well_known_urls};
use latchkey_proto::jose::{ASYMMETRIC_ALGORITHMS, JwsHeader, KeySet};
use latchkey_proto::{ClientSecret, Scope};

use crate::claims::{Expect, RawClaims};
use crate::introspection::Introspector;
use crate::{Challenge, Claims, Clock, ProtectedResourceMetadata, Refusal, RequireTokenLayer, TokenError};

/// After a failed first fetch (no keys at all), how soon to try again. Short, so an API started
/// before its issuer works as soon as the issuer is up, yet a down issuer is not hammered.
const FIRST_FETCH_RETRY: i64 = 5;

/// Checks access tokens for one API. Cheap to clone; clones share the key cache.
#[derive(Clone)]
pub struct Verifier(pub(crate) Arc<Inner>);

pub(crate) struct Inner {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub leeway: i64,
    pub algorithms: Vec<Algorithm>,
    pub refetch_interval: i64,
    pub max_key_age: i64,
    pub realm: Option<String>,
    /// The canonical resource URI (RFC 8707 / RFC 9728) and its metadata URL, when configured.
    pub resource: Option<(String, String)>,
    pub clock: Clock,
    pub http: reqwest::Client,
    state: RwLock<KeyState>,
    /// One fetch at a time: a burst of tokens with a new `kid` causes one JWKS request, not many.
    fetching: tokio::sync::Mutex<()>,
    pub introspection: Option<Introspector>,
}

#[derive(Default)]
struct KeyState {
    metadata: Option<Arc<IssuerMetadata>>,
    keys: Arc<KeySet>,
    fetched_at: Option<i64>,
    last_attempt: Option<i64>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.0.issuer)
            .field("audiences", &self.0.audiences)
            .field("introspection", &self.0.introspection.is_some())
            .finish_non_exhaustive()
    }
}

/// Why a verifier cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "invalid issuer {0:?}: an https URL (plain http only for 127.0.0.1, [::1] or localhost), without query or fragment"
    )]
    Issuer(String),
    #[error(
        "invalid resource {0:?}: an absolute https URL (plain http only for 127.0.0.1, [::1] or localhost), without query or fragment (RFC 8707 §2)"
    )]
    Resource(String),
    #[error("no algorithm left to accept: only asymmetric JWS algorithms (RS*, PS*, ES*, EdDSA) can be allowed")]
    NoAlgorithm,
}

/// Configures a [`Verifier`]. Only the issuer is required.
pub struct VerifierBuilder {
    issuer: String,
    audiences: Vec<String>,
    leeway: Duration,
    algorithms: Vec<Algorithm>,
    refetch_interval: Duration,
    max_key_age: Duration,
    realm: Option<String>,
    resource: Option<String>,
    clock: Clock,
    http: Option<reqwest::Client>,
    introspection: Option<(String, ClientSecret)>,
    introspection_ttl: Duration,
    allow_missing_audience: bool,
}

impl VerifierBuilder {
    /// An audience this API accepts (`aud` must contain one). Repeatable. Default: the issuer
    /// itself, which is Latchkey's default `audience`.
    pub fn audience(mut self, aud: impl Into<String>) -> Self {
        self.audiences.push(aud.into());
        self
    }
    /// This API's canonical resource identifier (RFC 8707 §2, RFC 9728), e.g.
    /// `https://mcp.example.com/mcp`: the URI clients send as `resource` when they ask for a
    /// token. Tokens must then name it in `aud` (so a token minted for another API behind the same
    /// issuer is refused; `https://h` and `https://h/` count as one resource, nothing else is
    /// normalized), the issuer is no longer a default audience, and every challenge carries
    /// `resource_metadata` pointing at the metadata of [`Verifier::protected_resource_metadata`]
    /// and, on 401, the `scope` the route needs. Further [`VerifierBuilder::audience`]s are still
    /// accepted besides it.
    pub fn resource(mut self, uri: impl Into<String>) -> Self {
        self.resource = Some(uri.into());
        self
    }
    /// Clock skew tolerated on `exp`, `nbf` and `iat`. Default 30 s.
    pub fn leeway(mut self, d: Duration) -> Self {
        self.leeway = d;
        self
    }
    /// The JWS algorithms accepted. Default: RS256/384/512, PS256/384/512, ES256/384, EdDSA. HMAC
    /// algorithms are dropped even if listed: with public keys they enable key confusion.
    pub fn algorithms(mut self, algs: &[Algorithm]) -> Self {
        self.algorithms = algs.iter().copied().filter(|a| a.family() != AlgorithmFamily::Hmac).collect();
        self
    }
    /// A token with an unknown `kid` makes the verifier refetch the JWKS at most once per this
    /// interval (a burst of forged `kid`s cannot turn it into a flood). Default 30 s.
    pub fn refetch_interval(mut self, d: Duration) -> Self {
        self.refetch_interval = d;
        self
    }
    /// How long keys are used before the JWKS is fetched again (to drop removed keys). While the
    /// issuer is unreachable the old keys keep serving. Default 1 h.
    pub fn max_key_age(mut self, d: Duration) -> Self {
        self.max_key_age = d;
        self
    }
    /// The `realm` of `WWW-Authenticate` challenges (RFC 6750 §3).
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = Some(realm.into());
        self
    }
    /// Where "now" comes from (tests move it).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }
    /// Introspection mode (RFC 7662): every token is checked at the issuer's introspection
    /// endpoint with these client credentials, so a revoked token is refused at once (within the
    /// cache time). Opaque tokens work too. Each new token costs one request to the issuer.
    pub fn introspection(mut self, client_id: impl Into<String>, secret: ClientSecret) -> Self {
        self.introspection = Some((client_id.into(), secret));
        self
    }
    /// How long an introspection answer is reused. Default 10 s: short, since introspection is
    /// chosen to see revocation quickly.
    pub fn introspection_cache(mut self, d: Duration) -> Self {
        self.introspection_ttl = d;
        self
    }
    /// **Weakens a check.** In introspection mode, accept an active answer that has no `aud`, as if
    /// it named this API's first audience, provided it says `token_type: Bearer`. By default such
    /// an answer is refused: without `aud` nothing says the token is meant for this API, and an
    /// issuer may omit it for tokens that are not access tokens at all. Enable only for an issuer
    /// that does not put audiences in its introspection answers (node-oidc-provider without
    /// resource indicators, for one) and that serves this API alone. Logged as a warning when built.
    pub fn allow_missing_audience(mut self) -> Self {
        self.allow_missing_audience = true;
        self
    }

    pub fn build(self) -> Result<Verifier, ConfigError> {
        check_issuer(&self.issuer)?;
        if self.algorithms.is_empty() {
            return Err(ConfigError::NoAlgorithm);
        }
        if let Some(r) = &self.resource {
            check_resource(r)?;
        }
        // The resource comes first: introspection's allow_missing_audience takes the first one.
        let audiences = match (&self.resource, self.audiences.is_empty()) {
            (Some(r), _) => std::iter::once(r.clone()).chain(self.audiences).collect(),
            (None, true) => vec![self.issuer.clone()],
            (None, false) => self.audiences,
        };
        if self.allow_missing_audience {
            tracing::warn!(
                issuer = %self.issuer,
                audience = ?audiences.first(),
                "allow_missing_audience: introspection answers without aud are taken as meant for this API; \
                 a token issued for another API may be accepted"
            );
        }
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        Ok(Verifier(Arc::new(Inner {
            issuer: self.issuer,
            audiences,
            leeway: secs(self.leeway),
            algorithms: self.algorithms,
            refetch_interval: secs(self.refetch_interval),
            max_key_age: secs(self.max_key_age),
            realm: self.realm,
            resource: self.resource.map(|r| {
                let url = crate::prm::metadata_url(&r);
                (r, url)
            }),
            clock: self.clock,
            http: self.http.unwrap_or_else(default_http),
            state: RwLock::new(KeyState::default()),
            fetching: tokio::sync::Mutex::new(()),
            introspection: self.introspection.map(|(id, secret)| {
                Introspector::new(id, secret, secs(self.introspection_ttl), self.allow_missing_audience)
            }),
        })))
    }
}

fn default_http() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(concat!("latchkey-resource/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

fn check_issuer(issuer: &str) -> Result<(), ConfigError> {
    if https_or_loopback(issuer) { Ok(()) } else { Err(ConfigError::Issuer(issuer.to_owned())) }
}

/// RFC 8707 §2: absolute, no fragment; no query either (RFC 9728 §3.1 would have to carry it
/// into the metadata URL, and RFC 8707 says it SHOULD NOT be there). No userinfo.
fn check_resource(resource: &str) -> Result<(), ConfigError> {
    let ok = https_or_loopback(resource)
        && url::Url::parse(resource).is_ok_and(|u| u.username().is_empty() && u.password().is_none())
        && !resource.contains(['?', '#']);
    if ok { Ok(()) } else { Err(ConfigError::Resource(resource.to_owned())) }
}

fn https_or_loopback(uri: &str) -> bool {
    let Ok(url) = url::Url::parse(uri) else {
        return false;
    };
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    (url.scheme() == "https" || (url.scheme() == "http" && loopback))
        && url.query().is_none()
        && url.fragment().is_none()
}

impl Verifier {
    pub fn builder(issuer: impl Into<String>) -> VerifierBuilder {
        VerifierBuilder {
            issuer: issuer.into(),
            audiences: Vec::new(),
            leeway: Duration::from_secs(30),
            algorithms: ASYMMETRIC_ALGORITHMS.to_vec(),
            refetch_interval: Duration::from_secs(30),
            max_key_age: Duration::from_secs(3600),
            realm: None,
            resource: None,
            clock: Clock::system(),
            http: None,
            introspection: None,
            introspection_ttl: Duration::from_secs(10),
            allow_missing_audience: false,
        }
    }

    pub fn issuer(&self) -> &str {
        &self.0.issuer
    }
    pub fn realm(&self) -> Option<&str> {
        self.0.realm.as_deref()
    }
    /// The canonical resource URI set with [`VerifierBuilder::resource`].
    pub fn resource(&self) -> Option<&str> {
        self.0.resource.as_ref().map(|(r, _)| r.as_str())
    }
    /// The URL of this API's protected resource metadata (RFC 9728 §3.1, path-inserted form).
    pub fn resource_metadata_url(&self) -> Option<&str> {
        self.0.resource.as_ref().map(|(_, u)| u.as_str())
    }

    /// The RFC 9728 document for this API: its resource, the issuer exactly as configured, and
    /// `scopes_supported`. Serve it with [`ProtectedResourceMetadata::router`]. `None` without a
    /// [`VerifierBuilder::resource`].
    pub fn protected_resource_metadata<I, S>(&self, scopes_supported: I) -> Option<ProtectedResourceMetadata>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let r = self.resource()?;
        Some(ProtectedResourceMetadata::new(r, &self.0.issuer).scopes_supported(scopes_supported))
    }

    /// The response for a refused request to a route that needs `scope`: the challenge has this
    /// API's realm, and with a resource configured, its `resource_metadata` and (on 401) the scope.
    /// Without a resource the challenge is as before (RFC 6750 alone).
    pub fn refuse(&self, refusal: &Refusal, scope: &Scope) -> Response {
        let resource_metadata = self.resource_metadata_url();
        refusal.to_response_with(&Challenge {
            realm: self.realm(),
            resource_metadata,
            scope: resource_metadata.map(|_| scope),
        })
    }

    /// A tower layer that lets through only requests with a valid token carrying every scope in
    /// `scope` (space-separated; empty for "any valid token"), and hands [`Claims`] to handlers.
    ///
    /// # Panics
    /// If `scope` is not a valid scope string: a programming error caught at start-up.
    #[allow(clippy::expect_used)]
    pub fn require(&self, scope: &str) -> RequireTokenLayer {
        let scope = Scope::parse(scope).expect("require(): invalid scope string");
        RequireTokenLayer::new(self.clone(), scope)
    }

    /// [`Verifier::require`] with no scope: any valid token.
    pub fn layer(&self) -> RequireTokenLayer {
        RequireTokenLayer::new(self.clone(), Scope::default())
    }

    /// Finds the bearer token in a request and verifies it.
    pub async fn verify_request(&self, headers: &HeaderMap, uri: &Uri) -> Result<Claims, Refusal> {
        let token = crate::bearer::bearer_token(headers, uri)?;
        self.verify(token).await
    }

    /// Verifies a token now (by the verifier's clock).
    pub async fn verify(&self, token: &str) -> Result<Claims, Refusal> {
        self.verify_at(token, self.0.clock.now()).await
    }

    /// Verifies a token at `now` (Unix seconds).
    pub async fn verify_at(&self, token: &str, now: i64) -> Result<Claims, Refusal> {
        if let Some(intro) = &self.0.introspection {
            let metadata = self.metadata().await?;
            return intro.check(&self.0, &metadata, token, now).await;
        }
        let invalid = |e| Refusal::InvalidToken(TokenError::Jose(e));
        // Header checks first: a token with alg none, HMAC or the wrong typ costs no I/O.
        let header = JwsHeader::parse(token).map_err(invalid)?;
        header.algorithm(&self.0.algorithms).map_err(invalid)?;
        // RFC 9068 §4: "typ" must be at+jwt, so that an id_token is never accepted as an access token.
        if !header.typ_is("at+jwt") {
            return Err(Refusal::InvalidToken(TokenError::WrongType(header.typ.clone())));
        }
        let mut keys = self.keys(now).await?;
        if let Some(kid) = header.kid.as_deref()
            && !keys.has_kid(kid)
        {
            // Perhaps the issuer rotated its keys: refetch, at most once per interval.
            keys = self.fetch(now, self.0.refetch_interval).await.unwrap_or(keys);
        }
        let (_, raw): (_, RawClaims) = keys.verify(token, &self.0.algorithms).map_err(invalid)?;
        raw.check(&self.expect(now)).map_err(Refusal::InvalidToken)
    }

    pub(crate) fn expect(&self, now: i64) -> Expect<'_> {
        Expect { issuer: &self.0.issuer, audiences: &self.0.audiences, leeway: self.0.leeway, now }
    }

    /// Fetches the issuer's metadata and keys now, e.g. at start-up so the first request is fast
    /// and a misconfiguration shows at once.
    pub async fn refresh_keys(&self) -> Result<usize, Refusal> {
        let now = self.0.clock.now();
        self.fetch(now, 0).await.map(|k| k.len())
    }

    /// The cached keys; fetched first if there are none or they are older than `max_key_age`. If
    /// that fetch fails, the keys already cached keep serving (the issuer may be down briefly).
    async fn keys(&self, now: i64) -> Result<Arc<KeySet>, Refusal> {
        let (keys, fresh, have_any) = {
            let st = self.0.state.read().map_err(|_| Refusal::Misconfigured("key cache lock poisoned"))?;
            let fresh = st.fetched_at.is_some_and(|t| now - t < self.0.max_key_age);
            (st.keys.clone(), fresh, st.fetched_at.is_some())
        };
        if fresh {
            return Ok(keys);
        }
        let gap = if have_any { self.0.refetch_interval } else { FIRST_FETCH_RETRY };
        match self.fetch(now, gap).await {
            Ok(k) => Ok(k),
            Err(_) if have_any => Ok(keys),
            Err(e) => Err(e),
        }
    }

    async fn metadata(&self) -> Result<Arc<IssuerMetadata>, Refusal> {
        if let Some(m) = self.0.state.read().ok().and_then(|st| st.metadata.clone()) {
            return Ok(m);
        }
        let _one = self.0.fetching.lock().await;
        if let Some(m) = self.0.state.read().ok().and_then(|st| st.metadata.clone()) {
            return Ok(m);
        }
        let m = Arc::new(self.discover().await?);
        if let Ok(mut st) = self.0.state.write() {
            st.metadata = Some(m.clone());
        }
        Ok(m)
    }

    /// Fetches the JWKS (and the metadata, the first time) unless another fetch was attempted less
    /// than `min_gap` seconds ago; then returns the current keys, or the error if there are none.
    async fn fetch(&self, now: i64, min_gap: i64) -> Result<Arc<KeySet>, Refusal> {
        let _one = self.0.fetching.lock().await;
        let (metadata, recent) = {
            let st = self.0.state.read().map_err(|_| Refusal::Misconfigured("key cache lock poisoned"))?;
            (st.metadata.clone(), st.last_attempt.is_some_and(|t| now - t < min_gap))
        };
        if recent {
            let st = self.0.state.read().map_err(|_| Refusal::Misconfigured("key cache lock poisoned"))?;
            return if st.fetched_at.is_some() {
                Ok(st.keys.clone())
            } else {
                Err(Refusal::Unavailable("the issuer's keys could not be fetched; retrying shortly".into()))
            };
        }
        if let Ok(mut st) = self.0.state.write() {
            st.last_attempt = Some(now);
        }
        let result = async {
            let metadata = match metadata {
                Some(m) => m,
                None => Arc::new(self.discover().await?),
            };
            let keys = self.fetch_jwks(&metadata).await?;
            Ok::<_, Refusal>((metadata, keys))
        }
        .await;
        let mut st = self.0.state.write().map_err(|_| Refusal::Misconfigured("key cache lock poisoned"))?;
        match result {
            Ok((metadata, keys)) => {
                tracing::debug!(issuer = %self.0.issuer, keys = keys.len(), "fetched the issuer's JWKS");
                st.metadata = Some(metadata);
                st.keys = Arc::new(keys);
                st.fetched_at = Some(now);
                Ok(st.keys.clone())
            }
            Err(e) => {
                tracing::warn!(issuer = %self.0.issuer, error = %e, cached_keys = st.keys.len(), "JWKS fetch failed");
                Err(e)
            }
        }
    }

    /// OpenID Connect Discovery, then RFC 8414; the document must name our issuer exactly.
    async fn discover(&self) -> Result<IssuerMetadata, Refusal> {
        let unavailable = |what: String| Refusal::Unavailable(format!("discovery for {}: {what}", self.0.issuer));
        let urls = well_known_urls(&self.0.issuer).map_err(|e| unavailable(e.to_string()))?;
        let mut last = String::new();
        for url in urls {
            let res = self.0.http.get(url.clone()).send().await.map_err(|e| unavailable(e.to_string()))?;
            if !res.status().is_success() {
                last = format!("{url} answered {}", res.status().as_u16());
                continue;
            }
            let Ok(m) = res.json::<IssuerMetadata>().await else {
                last = format!("{url} is not provider metadata");
                continue;
            };
            m.check_issuer(&self.0.issuer).map_err(|e| unavailable(e.to_string()))?;
            return Ok(m);
        }
        Err(unavailable(last))
    }

    async fn fetch_jwks(&self, metadata: &IssuerMetadata) -> Result<KeySet, Refusal> {
        let unavailable = |what: String| Refusal::Unavailable(format!("JWKS of {}: {what}", self.0.issuer));
        let url = metadata.endpoint("jwks_uri").map_err(|e| unavailable(e.to_string()))?;
        let res = self.0.http.get(url.clone()).send().await.map_err(|e| unavailable(e.to_string()))?;
        if !res.status().is_success() {
            return Err(unavailable(format!("{url} answered {}", res.status().as_u16())));
        }
        let body = res.bytes().await.map_err(|e| unavailable(e.to_string()))?;
        KeySet::from_jwks(&body).map_err(|e| unavailable(e.to_string()))
    }
}
