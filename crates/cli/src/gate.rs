//! `latchkey gate`: a reverse proxy for APIs not written in Rust. It forwards a request only if it
//! carries a valid access token (the checks of `latchkey-resource`), and tells the upstream who
//! the caller is in headers that it first strips from the incoming request, so a client cannot
//! forge them. The client's address reaches the upstream only as the gate saw it (TCP peer), and
//! the request path cannot leave the upstream's base path.
//!
//! With `--resource` it fronts an MCP server (or any API) as RFC 9728 asks: it serves the
//! protected resource metadata itself at both well-known paths, its challenges carry
//! `resource_metadata` and `scope`, and it accepts only tokens whose `aud` is the resource.
//!
//! DPoP-bound tokens (RFC 9449 §7) are checked as `latchkey-resource` checks them: the proof's
//! `htu` must be `--external-url` (default: the origin of `--resource`) plus the request's path,
//! never a URL built from the `Host` header. The proof is consumed here (its `jti` cannot be used
//! again) and is not forwarded, like the token, unless `--pass-token` is given.
//!
//! Responses are streamed, never buffered: each chunk of the upstream's body (each event of a
//! Streamable HTTP `text/event-stream`) is written to the client as it arrives, and request
//! bodies are streamed to the upstream. Nothing in between buffers or cuts a stream: no
//! compression (reqwest is built without it, so bytes pass as the upstream encoded them), no
//! body limit (the body is never collected), and the request timeout ends when the upstream's
//! response head arrives (tower-http's `TimeoutLayer` bounds the response future, not the body),
//! so a long-lived SSE stream stays open. No idle timeout on response bodies either: an MCP
//! server's GET stream may be silent for minutes by design; `--max-connections` bounds what
//! idle streams can hold.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use clap::{Args, ValueEnum};
use latchkey_resource::{Claims, DpopMode, ProtectedResourceMetadata, Refusal, Scope, TokenError, Verifier};

/// Every incoming header with this prefix is removed before forwarding.
pub const HEADER_PREFIX: &str = "x-latchkey-";
pub const SUBJECT: &str = "x-latchkey-subject";
pub const SCOPE: &str = "x-latchkey-scope";
pub const CLIENT_ID: &str = "x-latchkey-client-id";

#[derive(Args, Debug)]
pub struct GateArgs {
    /// Address to listen on, e.g. 127.0.0.1:8081.
    #[arg(long, value_name = "ADDR")]
    pub listen: String,
    /// The API to forward to, e.g. http://127.0.0.1:3000.
    #[arg(long, value_name = "URL")]
    pub upstream: String,
    /// The issuer whose access tokens are accepted.
    #[arg(long, value_name = "URL")]
    pub issuer: String,
    /// An audience the token must name (repeatable; default: the issuer).
    #[arg(long, value_name = "AUD")]
    pub audience: Vec<String>,
    /// A scope every request needs (repeatable).
    #[arg(long, value_name = "SCOPE")]
    pub require_scope: Vec<String>,
    /// This API's canonical resource URI (RFC 8707), e.g. https://mcp.example.com/mcp: tokens must
    /// name it in `aud`, and the gate serves its RFC 9728 metadata at
    /// /.well-known/oauth-protected-resource<path> and /.well-known/oauth-protected-resource.
    #[arg(long, value_name = "URI")]
    pub resource: Option<String>,
    /// A scope listed in the metadata's `scopes_supported` (repeatable; default: the
    /// --require-scope values). Needs --resource.
    #[arg(long, value_name = "SCOPE", requires = "resource")]
    pub scope: Vec<String>,
    /// The human-readable `resource_name` of the metadata. Needs --resource.
    #[arg(long, value_name = "NAME", requires = "resource")]
    pub resource_name: Option<String>,
    /// Also forward the Authorization header, and the DPoP proof with it (by default the
    /// upstream never sees the token).
    #[arg(long)]
    pub pass_token: bool,
    /// The URL clients call the gate at, e.g. https://api.example.com (behind a TLS proxy, the
    /// public URL, not --listen): a DPoP proof's htu must be this URL plus the request's path.
    /// Default: the origin of --resource.
    #[arg(long, value_name = "URL")]
    pub external_url: Option<String>,
    /// DPoP-bound access tokens (RFC 9449): `allowed` (with Bearer tokens; the default when the
    /// external URL is known), `required` (DPoP-bound tokens only), or `off` (the default
    /// without an external URL). A DPoP-bound token sent as Bearer is refused in every mode.
    #[arg(long, value_name = "MODE")]
    pub dpop: Option<DpopArg>,
    /// Require a nonce of the gate in every DPoP proof (RFC 9449 §9), made with the secret in
    /// this file (at least 32 bytes; gates that share it accept each other's nonces).
    #[arg(long, value_name = "FILE")]
    pub dpop_nonce_secret_file: Option<std::path::PathBuf>,
    /// Seconds a DPoP nonce is handed out for; it is accepted for up to twice that.
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub dpop_nonce_lifetime: u64,
    /// Seconds a DPoP proof is accepted after its iat (and its jti remembered).
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub dpop_max_age: u64,
    /// DPoP proofs remembered at once against replay; when full of live ones, DPoP requests
    /// get 503 rather than a proof being forgotten.
    #[arg(long, value_name = "N", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub dpop_replay_capacity: u64,
    #[command(flatten)]
    pub limits: crate::LimitArgs,
}

/// `--dpop`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DpopArg {
    Off,
    Allowed,
    Required,
}

impl From<DpopArg> for DpopMode {
    fn from(a: DpopArg) -> Self {
        match a {
            DpopArg::Off => Self::Off,
            DpopArg::Allowed => Self::Allowed,
            DpopArg::Required => Self::Required,
        }
    }
}

struct Gate {
    verifier: Verifier,
    scope: Scope,
    upstream: url::Url,
    http: reqwest::Client,
    pass_token: bool,
}

pub async fn run(a: GateArgs) -> anyhow::Result<()> {
    let upstream = url::Url::parse(&a.upstream).with_context(|| format!("--upstream {:?} is not a URL", a.upstream))?;
    if !matches!(upstream.scheme(), "http" | "https") || upstream.query().is_some() {
        bail!("--upstream must be an http(s) URL without a query");
    }
    let mut builder = Verifier::builder(&a.issuer);
    if let Some(r) = &a.resource {
        builder = builder.resource(r);
    }
    for aud in &a.audience {
        builder = builder.audience(aud);
    }
    let verifier = dpop_settings(builder, &a)?.build()?;
    let scope =
        Scope::parse(&a.require_scope.join(" ")).map_err(|e| anyhow::anyhow!("--require-scope: {}", e.description))?;
    let metadata = protected_resource_metadata(&verifier, &a, &scope)?;
    match verifier.refresh_keys().await {
        Ok(n) => tracing::info!(issuer = %a.issuer, keys = n, "fetched the issuer's signing keys"),
        Err(e) => {
            tracing::warn!(issuer = %a.issuer, error = %e, "cannot fetch the issuer's keys yet; will retry on the first request")
        }
    }
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let listener =
        tokio::net::TcpListener::bind(&a.listen).await.with_context(|| format!("cannot listen on {}", a.listen))?;
    let addr = listener.local_addr()?;
    println!("latchkey gate listening on http://{addr}, forwarding to {upstream} (issuer {})", a.issuer);
    if let Some(url) = verifier.resource_metadata_url() {
        tracing::info!(resource = ?verifier.resource(), metadata = %url, "serving protected resource metadata");
    }
    match verifier.dpop_mode() {
        DpopMode::Off => tracing::info!(
            "DPoP off: DPoP-bound tokens are refused (give --external-url, or --resource, to accept them)"
        ),
        mode => tracing::info!(?mode, nonces = a.dpop_nonce_secret_file.is_some(), "DPoP-bound tokens accepted"),
    }
    let state = Arc::new(Gate { verifier, scope, upstream, http, pass_token: a.pass_token });
    let limits = a.limits.limits();
    // The request timeout covers streaming the body to the upstream and its answer's headers.
    let app = gate_router(state, metadata).layer(latchkey_server::conn::request_timeout(&limits));
    latchkey_server::conn::serve_router(listener, app, &limits, crate::serve::shutdown_signal()).await?;
    Ok(())
}

/// The DPoP flags, on the verifier's builder.
fn dpop_settings(
    mut builder: latchkey_resource::VerifierBuilder,
    a: &GateArgs,
) -> anyhow::Result<latchkey_resource::VerifierBuilder> {
    if let Some(url) = &a.external_url {
        builder = builder.external_url(url);
    }
    if let Some(mode) = a.dpop {
        builder = builder.dpop(mode.into());
    }
    if let Some(path) = &a.dpop_nonce_secret_file {
        let secret =
            std::fs::read(path).with_context(|| format!("cannot read --dpop-nonce-secret-file {}", path.display()))?;
        // A trailing newline (from `echo` or an editor) is not part of the secret.
        let secret = secret.trim_ascii_end().to_vec();
        builder = builder.dpop_nonces(secret, Duration::from_secs(a.dpop_nonce_lifetime));
    }
    Ok(builder
        .dpop_max_age(Duration::from_secs(a.dpop_max_age))
        .dpop_replay_capacity(usize::try_from(a.dpop_replay_capacity).unwrap_or(usize::MAX)))
}

/// The metadata document (RFC 9728 §2) when a resource is set: `scopes_supported` from `--scope`,
/// else the required scopes; the issuer exactly as configured.
fn protected_resource_metadata(
    verifier: &Verifier,
    a: &GateArgs,
    required: &Scope,
) -> anyhow::Result<Option<ProtectedResourceMetadata>> {
    let supported: Vec<String> = if a.scope.is_empty() {
        required.iter().map(str::to_owned).collect()
    } else {
        // Validated like any scope, so the document never lists a token a client cannot request.
        Scope::parse(&a.scope.join(" ")).map_err(|e| anyhow::anyhow!("--scope: {}", e.description))?;
        a.scope.iter().flat_map(|s| s.split(' ')).filter(|s| !s.is_empty()).map(str::to_owned).collect()
    };
    let Some(mut doc) = verifier.protected_resource_metadata(supported) else {
        return Ok(None);
    };
    doc.resource_name = a.resource_name.clone();
    Ok(Some(doc))
}

/// The metadata at its well-known paths (answered by the gate, no token needed, never
/// forwarded), everything else through [`forward`].
fn gate_router(state: Arc<Gate>, metadata: Option<ProtectedResourceMetadata>) -> Router {
    let router = match metadata {
        Some(doc) => doc.router(),
        None => Router::new(),
    };
    router.fallback(forward).with_state(state)
}

/// Why the gate refuses a request before any token check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PathRefusal {
    /// A `.` or `..` segment, raw or percent-encoded (`%2e`, with `%2f` or `\` as separators).
    DotSegment,
    /// The joined URL is not under the upstream's base path.
    OutsideBase,
}

impl IntoResponse for PathRefusal {
    fn into_response(self) -> Response {
        let why = match self {
            Self::DotSegment => "the request path must not contain . or .. segments\n",
            Self::OutsideBase => "the request path leaves the upstream's base path\n",
        };
        (StatusCode::BAD_REQUEST, why).into_response()
    }
}

/// The upstream URL for a request path: the base path, then the request's path. A dot segment is
/// refused rather than resolved: `url` resolves `..` and `%2e%2e` (and treats `\` as `/`), so
/// `/../admin` would reach `/admin` on an upstream configured as `http://host/api`. An encoded
/// slash is checked too, since an upstream may decode `..%2f` into `../` before normalising.
fn upstream_url(upstream: &url::Url, path: &str, query: Option<&str>) -> Result<url::Url, PathRefusal> {
    let lower = path.to_ascii_lowercase();
    let decoded = lower.replace("%2e", ".").replace("%2f", "/").replace("%5c", "/").replace('\\', "/");
    if decoded.split('/').any(|segment| segment == "." || segment == "..") {
        return Err(PathRefusal::DotSegment);
    }
    let base = upstream.path().trim_end_matches('/');
    let mut url = upstream.clone();
    url.set_path(&format!("{base}{path}"));
    url.set_query(query);
    // Belt and braces: whatever `url` made of the path must still be under the base.
    let joined = url.path();
    if !(base.is_empty() || joined == base || joined.starts_with(&format!("{base}/"))) {
        return Err(PathRefusal::OutsideBase);
    }
    Ok(url)
}

async fn forward(State(gate): State<Arc<Gate>>, ConnectInfo(peer): ConnectInfo<SocketAddr>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let url = match upstream_url(&gate.upstream, parts.uri.path(), parts.uri.query()) {
        Ok(u) => u,
        Err(r) => return r.into_response(),
    };
    let refuse = |r: &Refusal| gate.verifier.refuse_request(r, &gate.scope, &parts.headers);
    let claims = match gate.verifier.verify_request(&parts.method, &parts.uri, &parts.headers).await {
        Ok(c) => c,
        Err(r) => return refuse(&r),
    };
    if let Err(r) = claims.require_scope(&gate.scope) {
        return refuse(&r);
    }
    let identity = match identity_headers(&claims) {
        Ok(h) => h,
        Err(r) => return refuse(&r),
    };
    let mut headers = forwarded_headers(&parts.headers, gate.pass_token);
    set_forwarded_for(&mut headers, peer);
    // Set, never appended: no value of the client's may stand next to the verified one.
    for (name, value) in &identity {
        headers.insert(name.clone(), value.clone());
    }
    let upstream = gate
        .http
        .request(parts.method.clone(), url)
        .headers(headers)
        .body(reqwest::Body::wrap_stream(body.into_data_stream()))
        .send()
        .await;
    match upstream {
        Ok(res) => {
            let mut out = Response::builder().status(res.status());
            if let Some(h) = out.headers_mut() {
                *h = without_hop_by_hop(res.headers());
                // With nonces on, the gate's nonce (RFC 9449 §8.2), replacing any of the upstream's.
                if claims.dpop_jkt.is_some() {
                    gate.verifier.add_dpop_nonce(h);
                }
            }
            out.body(Body::from_stream(res.bytes_stream())).unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
        }
        Err(e) => {
            // Without the URL: its query is the client's and may carry secrets.
            tracing::warn!(error = %e.without_url(), "upstream request failed");
            (StatusCode::BAD_GATEWAY, "the upstream API is unreachable\n").into_response()
        }
    }
}

/// The verified identity, for the upstream.
fn identity_headers(c: &Claims) -> Result<HeaderMap, Refusal> {
    let mut h = HeaderMap::new();
    let value = |s: &str, claim: &'static str| {
        HeaderValue::from_str(s).map_err(|_| Refusal::InvalidToken(TokenError::MissingClaim(claim)))
    };
    h.insert(HeaderName::from_static(SUBJECT), value(&c.sub, "sub")?);
    h.insert(HeaderName::from_static(SCOPE), value(&c.scope.to_string(), "scope")?);
    h.insert(HeaderName::from_static(CLIENT_ID), value(&c.client_id, "client_id")?);
    Ok(h)
}

/// Client-address headers a client could forge; the gate sets its own from the TCP peer.
const CLIENT_ADDRESS_HEADERS: &[&str] = &[
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-server",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "cf-connecting-ip",
];

/// The request headers to forward: without hop-by-hop headers (RFC 9110 §7.6.1), without `Host`
/// (the upstream's is set by the client library), without the token and its DPoP proof unless
/// asked (the proof is for the gate's URL and already used here; it is of use only to an
/// upstream that is handed the token and checks the binding itself), and without:
/// - any header whose name has an underscore (as nginx does by default): CGI and WSGI upstreams
///   map `X_Latchkey_Subject` and `X-Latchkey-Subject` to the same `HTTP_X_LATCHKEY_SUBJECT`, so
///   a client could smuggle an identity header past a check for hyphens;
/// - any `X-Latchkey-*` header (only the gate may set those), the name compared with `_` as `-`;
/// - client-address headers (`X-Forwarded-For`, `Forwarded`, `X-Real-IP`…): an upstream that
///   trusts its proxy for the client's address would believe the client.
fn forwarded_headers(incoming: &HeaderMap, pass_token: bool) -> HeaderMap {
    let mut h = without_hop_by_hop(incoming);
    h.remove(header::HOST);
    if !pass_token {
        h.remove(header::AUTHORIZATION);
        h.remove(latchkey_proto::dpop::DPOP_HEADER);
    }
    let forged: Vec<HeaderName> = h
        .keys()
        .filter(|k| {
            let name = k.as_str(); // lower case already
            name.contains('_')
                || name.replace('_', "-").starts_with(HEADER_PREFIX)
                || CLIENT_ADDRESS_HEADERS.contains(&name)
        })
        .cloned()
        .collect();
    for k in forged {
        h.remove(k);
    }
    h
}

/// `X-Forwarded-For` and `Forwarded` (RFC 7239 §4, IPv6 quoted in brackets) with the TCP peer:
/// the one client address the gate knows to be true. Upstream proxies in front of the gate are
/// not trusted, so their `X-Forwarded-For` is dropped, not extended.
fn set_forwarded_for(h: &mut HeaderMap, peer: SocketAddr) {
    let ip = peer.ip().to_canonical();
    let forwarded = match ip {
        std::net::IpAddr::V4(v4) => format!("for={v4};proto=http"),
        std::net::IpAddr::V6(v6) => format!("for=\"[{v6}]\";proto=http"),
    };
    if let Ok(v) = HeaderValue::from_str(&ip.to_string()) {
        h.insert(HeaderName::from_static("x-forwarded-for"), v);
    }
    if let Ok(v) = HeaderValue::from_str(&forwarded) {
        h.insert(header::FORWARDED, v);
    }
    h.insert(HeaderName::from_static("x-forwarded-proto"), HeaderValue::from_static("http"));
}

fn without_hop_by_hop(headers: &HeaderMap) -> HeaderMap {
    // Headers named in Connection are hop-by-hop too.
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
        .collect();
    let mut out = HeaderMap::new();
    for (k, v) in headers {
        let name = k.as_str();
        let hop = matches!(
            name,
            "connection"
                | "keep-alive"
                | "proxy-connection"
                | "proxy-authenticate"
                | "proxy-authorization"
                | "te"
                | "trailer"
                | "transfer-encoding"
                | "upgrade"
        ) || named.iter().any(|n| n == name);
        if !hop {
            out.append(k.clone(), v.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn forged_identity_and_hop_by_hop_headers_are_stripped() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("x-latchkey-subject", "admin"),
            ("X-Latchkey-Anything", "x"),
            ("authorization", "DPoP t"),
            ("dpop", "proof"),
            ("connection", "close, x-secret-hop"),
            ("x-secret-hop", "1"),
            ("transfer-encoding", "chunked"),
            ("host", "gate"),
            ("accept", "application/json"),
        ] {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_static(v));
        }
        let out = forwarded_headers(&h, false);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out["accept"], "application/json");
        let passed = forwarded_headers(&h, true);
        assert!(passed.contains_key("authorization") && passed.contains_key("dpop"));
    }

    #[test]
    fn dot_segments_in_any_spelling_are_refused() {
        let up = url::Url::parse("http://127.0.0.1:3000/api").unwrap();
        for bad in [
            "/../admin",
            "/%2e%2e/admin",
            "/%2E%2E/admin",
            "/.%2E/admin",
            "/%2e./admin",
            "/v1/../../admin",
            "/./x",
            "/..%2fadmin",
            "/..%2Fadmin",
            "/..%5cadmin",
            "/..\\admin",
            "/v1/..",
        ] {
            assert_eq!(upstream_url(&up, bad, None), Err(PathRefusal::DotSegment), "{bad}");
        }
        for good in ["/v1/items", "/v1/a..b", "/v1/.hidden", "/v1/%2e%2ex", "/"] {
            let u = upstream_url(&up, good, Some("x=1")).unwrap();
            assert!(u.path().starts_with("/api/"), "{good} -> {u}");
        }
        let root = url::Url::parse("http://127.0.0.1:3000").unwrap();
        assert_eq!(upstream_url(&root, "/v1/x", None).unwrap().path(), "/v1/x");
    }
}
