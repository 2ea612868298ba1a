//! The verifier: configuration, the JWKS cache, and the checks of one access token.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, Method, Uri};
use axum::response::Response;
use jsonwebtoken::{Algorithm, AlgorithmFamily};
use latchkey_proto::discovery::{IssuerMetadata, well_known_urls};
use latchkey_proto::dpop::NonceKeeper;
use latchkey_proto::jose::{ASYMMETRIC_ALGORITHMS, JwsHeader, KeySet};
use latchkey_proto::{ClientSecret, Scope};

use crate::bearer::Scheme;
use crate::claims::{Expect, RawClaims};
use crate::dpop::{DpopCheck, DpopMode, NONCE_HEADER_NAME, ReplayCache};
use crate::introspection::Introspector;
use crate::{Challenge, Claims, Clock, ProtectedResourceMetadata, Refusal, RequireTokenLayer, TokenError};

/// A nonce secret shorter than this could be guessed offline from the nonces handed out.
const MIN_NONCE_SECRET: usize = 32;

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
    /// DPoP (RFC 9449 §7), unless it is off.
    pub dpop: Option<DpopCheck>,
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
            .field("dpop", &self.dpop_mode())
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
    #[error(
        "invalid external URL {0:?}: an https URL (plain http only for 127.0.0.1, [::1] or localhost), without query, fragment or user"
    )]
    ExternalUrl(String),
    #[error(
        "DPoP needs the URL clients call this API at, to check each proof's htu (RFC 9449 §4.3): set external_url (or resource)"
    )]
    DpopWithoutUrl,
    #[error("the DPoP nonce secret must be at least {MIN_NONCE_SECRET} bytes (random, shared by the API's instances)")]
    NonceSecret,
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
    external_url: Option<String>,
    dpop_mode: Option<DpopMode>,
    dpop_algorithms: Vec<Algorithm>,
    dpop_max_age: Duration,
    dpop_max_skew: Duration,
    dpop_nonces: Option<(Vec<u8>, Duration)>,
    dpop_replay_capacity: usize,
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
    /// The URL clients call this API at, e.g. `https://api.example.com` (or
    /// `https://example.com/api` behind a proxy that strips `/api`). A DPoP proof's `htu` must be
    /// this URL followed by the path the verifier sees (RFC 9449 §4.3 point 9): the `Host` header
    /// is never used, since a client chooses it. Behind a proxy or load balancer, give the public
    /// URL, not the one the proxy forwards to; inside a nested axum router, include the nest's
    /// prefix. Default: the origin of [`VerifierBuilder::resource`], when set.
    pub fn external_url(mut self, url: impl Into<String>) -> Self {
        self.external_url = Some(url.into());
        self
    }
    /// Which tokens are accepted: [`DpopMode::Allowed`] by default when the verifier knows its
    /// URL ([`VerifierBuilder::external_url`] or [`VerifierBuilder::resource`]), else
    /// [`DpopMode::Off`]. In every mode a DPoP-bound token sent as Bearer is refused (RFC 9449
    /// §7.2). `Allowed` and `Required` need the URL.
    pub fn dpop(mut self, mode: DpopMode) -> Self {
        self.dpop_mode = Some(mode);
        self
    }
    /// The JWS algorithms accepted in DPoP proofs. Default: ES256, ES384, EdDSA, RS256, PS256.
    /// HMAC is dropped even if listed (RFC 9449 §11.6).
    pub fn dpop_algorithms(mut self, algs: &[Algorithm]) -> Self {
        self.dpop_algorithms = algs.iter().copied().filter(|a| a.family() != AlgorithmFamily::Hmac).collect();
        self
    }
    /// How old a proof's `iat` may be, and so how long its `jti` is remembered. Default 60 s.
    pub fn dpop_max_age(mut self, d: Duration) -> Self {
        self.dpop_max_age = d;
        self
    }
    /// How far in the future a proof's `iat` may be (clients' clocks). Default 10 s.
    pub fn dpop_max_skew(mut self, d: Duration) -> Self {
        self.dpop_max_skew = d;
        self
    }
    /// Require a nonce of this API in every proof (RFC 9449 §9), so that a proof made in advance
    /// by someone who briefly held the key is useless. A proof without a current nonce is
    /// answered 401 `use_dpop_nonce` with a `DPoP-Nonce` header, and every response to a DPoP
    /// request carries the current nonce. Nonces are an HMAC of the time under `secret` (at
    /// least 32 random bytes): instances that share the secret accept each other's nonces, and
    /// nothing is stored. A nonce is handed out for `lifetime` and accepted for up to twice that.
    pub fn dpop_nonces(mut self, secret: impl Into<Vec<u8>>, lifetime: Duration) -> Self {
        self.dpop_nonces = Some((secret.into(), lifetime));
        self
    }
    /// How many proofs the `jti` replay cache holds (RFC 9449 §11.1). When it is full of proofs
    /// still within their `iat` window, further DPoP requests get 503 rather than a forgotten
    /// proof becoming replayable. Default 100,000 (about 10 MB).
    pub fn dpop_replay_capacity(mut self, n: usize) -> Self {
        self.dpop_replay_capacity = n;
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
        let dpop = self.dpop_check()?;
        if let Some(d) = &dpop {
            tracing::debug!(
                required = d.required,
                url = %d.base,
                nonces = d.nonces.is_some(),
                "DPoP-bound access tokens accepted"
            );
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
            dpop,
        })))
    }

    /// The DPoP checks the settings come to, or `None` when DPoP is off.
    fn dpop_check(&self) -> Result<Option<DpopCheck>, ConfigError> {
        let base = match (&self.external_url, &self.resource) {
            (Some(url), _) => {
                check_external_url(url)?;
                Some(url.trim_end_matches('/').to_owned())
            }
            // A resource's origin: clients call the resource URI itself (RFC 9728 §3.3).
            (None, Some(r)) => Some(crate::prm::origin(r).to_owned()),
            (None, None) => None,
        };
        let mode = self.dpop_mode.unwrap_or(if base.is_some() { DpopMode::Allowed } else { DpopMode::Off });
        if mode == DpopMode::Off {
            return Ok(None);
        }
        let base = base.ok_or(ConfigError::DpopWithoutUrl)?;
        if self.dpop_algorithms.is_empty() {
            return Err(ConfigError::NoAlgorithm);
        }
        let nonces = match &self.dpop_nonces {
            Some((secret, _)) if secret.len() < MIN_NONCE_SECRET => return Err(ConfigError::NonceSecret),
            Some((secret, lifetime)) => {
                Some(NonceKeeper::new(secret, i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX)))
            }
            None => None,
        };
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        Ok(Some(DpopCheck {
            required: mode == DpopMode::Required,
            base,
            alg_names: self.dpop_algorithms.iter().map(|a| format!("{a:?}")).collect(),
            algorithms: self.dpop_algorithms.clone(),
            max_age: secs(self.dpop_max_age),
            max_skew: secs(self.dpop_max_skew),
            nonces,
            replay: ReplayCache::new(self.dpop_replay_capacity),
        }))
    }
}

/// The external URL: like an issuer, and without user information.
fn check_external_url(url: &str) -> Result<(), ConfigError> {
    let ok = https_or_loopback(url)
        && url::Url::parse(url).is_ok_and(|u| u.username().is_empty() && u.password().is_none())
        && !url.contains(['?', '#']);
    if ok { Ok(()) } else { Err(ConfigError::ExternalUrl(url.to_owned())) }
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
            external_url: None,
            dpop_mode: None,
            dpop_algorithms: latchkey_proto::dpop::DEFAULT_ALGORITHMS.to_vec(),
            dpop_max_age: Duration::from_secs(crate::dpop::DEFAULT_MAX_AGE.unsigned_abs()),
            dpop_max_skew: Duration::from_secs(crate::dpop::DEFAULT_MAX_SKEW.unsigned_abs()),
            dpop_nonces: None,
            dpop_replay_capacity: crate::dpop::DEFAULT_REPLAY_CAPACITY,
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
        let mut doc = ProtectedResourceMetadata::new(r, &self.0.issuer).scopes_supported(scopes_supported);
        if let Some(d) = &self.0.dpop {
            doc.dpop_signing_alg_values_supported = d.alg_names.clone();
            doc.dpop_bound_access_tokens_required = d.required;
        }
        Some(doc)
    }

    /// Which access tokens this verifier accepts.
    pub fn dpop_mode(&self) -> DpopMode {
        match &self.0.dpop {
            None => DpopMode::Off,
            Some(d) if d.required => DpopMode::Required,
            Some(_) => DpopMode::Allowed,
        }
    }

    /// The nonce to send in a `DPoP-Nonce` header now, when nonces are on
    /// ([`VerifierBuilder::dpop_nonces`]).
    pub fn dpop_nonce(&self) -> Option<String> {
        let keeper = self.0.dpop.as_ref()?.nonces.as_ref()?;
        Some(keeper.current(self.0.clock.now()))
    }

    /// The response for a refused request to a route that needs `scope`: the challenges have this
    /// API's realm, and with a resource configured, its `resource_metadata` and (on 401) the scope.
    /// Without a resource the challenge is as before (RFC 6750 alone). With DPoP on, a `DPoP`
    /// challenge follows the Bearer one (or replaces it, when DPoP is required), and with nonces
    /// on, a `DPoP-Nonce` header comes along. Use [`Verifier::refuse_request`] where the request's
    /// headers are at hand, so the error goes on the challenge of the scheme it used.
    pub fn refuse(&self, refusal: &Refusal, scope: &Scope) -> Response {
        self.refuse_as(refusal, scope, None)
    }

    /// [`Verifier::refuse`] for a request with these headers: the challenge of the scheme the
    /// request used carries the error (RFC 9449 §7.2).
    pub fn refuse_request(&self, refusal: &Refusal, scope: &Scope, headers: &HeaderMap) -> Response {
        self.refuse_as(refusal, scope, Scheme::of(headers))
    }

    fn refuse_as(&self, refusal: &Refusal, scope: &Scope, used: Option<Scheme>) -> Response {
        let resource_metadata = self.resource_metadata_url();
        let algs = self.0.dpop.as_ref().map(DpopCheck::algs);
        let mut res = refusal.to_response_with(&Challenge {
            realm: self.realm(),
            resource_metadata,
            scope: resource_metadata.map(|_| scope),
            dpop_algs: algs.as_deref(),
            dpop_required: self.dpop_mode() == DpopMode::Required,
            used,
        });
        self.add_dpop_nonce(res.headers_mut());
        res
    }

    /// Sets `DPoP-Nonce` to the current nonce, when nonces are on (RFC 9449 §8.2, §9): on every
    /// refusal, and on the responses to DPoP requests, so clients move to a new nonce without an
    /// extra round trip.
    pub fn add_dpop_nonce(&self, headers: &mut HeaderMap) {
        if let Some(d) = &self.0.dpop
            && let Some(v) = d.nonce_header(self.0.clock.now())
        {
            headers.insert(HeaderName::from_static(NONCE_HEADER_NAME), v);
        }
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

    /// Finds the access token in a request and verifies it, with its DPoP proof when it comes
    /// with the DPoP scheme. `uri` is the request's as this API sees it: its path follows the
    /// external URL in the `htu` a proof must name.
    ///
    /// - `Authorization: Bearer`: the token, which must not be DPoP-bound (RFC 9449 §7.2). A
    ///   `DPoP` header next to it is ignored: RFC 9449 gives it no meaning there, and it proves
    ///   nothing about a bearer token (a bound one is refused whatever comes with it).
    /// - `Authorization: DPoP` (unless DPoP is off): the proof (one `DPoP` header, §4.3), then
    ///   the token, whose `cnf.jkt` must be the proof's key; last, the proof's `jti` must be new.
    pub async fn verify_request(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Result<Claims, Refusal> {
        let now = self.0.clock.now();
        let dpop = self.0.dpop.as_ref();
        match (crate::bearer::access_token(headers, uri, dpop.is_some())?, dpop) {
            ((Scheme::Dpop, token), Some(d)) => {
                // The proof first: it costs no I/O, and a bad one spares the issuer a request.
                let proof = d.proof(method, uri, headers, token, now)?;
                let claims = self.token_claims(token, now).await?;
                d.bind(&proof, claims.dpop_jkt.as_deref(), now)?;
                Ok(claims)
            }
            ((_, token), _) => self.verify_at(token, now).await,
        }
    }

    /// Verifies a token sent as a bearer token, now (by the verifier's clock).
    pub async fn verify(&self, token: &str) -> Result<Claims, Refusal> {
        self.verify_at(token, self.0.clock.now()).await
    }

    /// Verifies a token sent as a bearer token, at `now` (Unix seconds). A DPoP-bound token is
    /// refused (RFC 9449 §7.2), and so is every token when DPoP is required: without its proof a
    /// bound token is just a copied string.
    pub async fn verify_at(&self, token: &str, now: i64) -> Result<Claims, Refusal> {
        if self.dpop_mode() == DpopMode::Required {
            return Err(Refusal::InvalidToken(TokenError::DpopRequired));
        }
        let claims = self.token_claims(token, now).await?;
        if claims.dpop_jkt.is_some() {
            return Err(Refusal::InvalidToken(TokenError::DpopBound));
        }
        Ok(claims)
    }

    /// The token's own checks (signature or introspection, then claims), whatever its scheme.
    async fn token_claims(&self, token: &str, now: i64) -> Result<Claims, Refusal> {
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
