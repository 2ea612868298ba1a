//! `latchkey gate`: a reverse proxy for APIs not written in Rust. It forwards a request only if it
//! carries a valid access token (the checks of `latchkey-resource`), and tells the upstream who
//! the caller is in headers that it first strips from the incoming request, so a client cannot
//! forge them.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use clap::Args;
use latchkey_resource::{Claims, Refusal, Scope, TokenError, Verifier};

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
    /// Also forward the Authorization header (by default the upstream never sees the token).
    #[arg(long)]
    pub pass_token: bool,
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
    for aud in &a.audience {
        builder = builder.audience(aud);
    }
    let verifier = builder.build()?;
    let scope =
        Scope::parse(&a.require_scope.join(" ")).map_err(|e| anyhow::anyhow!("--require-scope: {}", e.description))?;
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
    let state = Arc::new(Gate { verifier, scope, upstream, http, pass_token: a.pass_token });
    let app = Router::new().fallback(forward).with_state(state);
    axum::serve(listener, app).with_graceful_shutdown(crate::serve::shutdown_signal()).await?;
    Ok(())
}

async fn forward(State(gate): State<Arc<Gate>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let claims = match gate.verifier.verify_request(&parts.headers, &parts.uri).await {
        Ok(c) => c,
        Err(r) => return r.to_response(gate.verifier.realm()),
    };
    if let Err(r) = claims.require_scope(&gate.scope) {
        return r.to_response(gate.verifier.realm());
    }
    let identity = match identity_headers(&claims) {
        Ok(h) => h,
        Err(r) => return r.to_response(gate.verifier.realm()),
    };
    let mut url = gate.upstream.clone();
    let base = gate.upstream.path().trim_end_matches('/');
    url.set_path(&format!("{base}{}", parts.uri.path()));
    url.set_query(parts.uri.query());
    let mut headers = forwarded_headers(&parts.headers, gate.pass_token);
    headers.extend(identity);
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
            }
            out.body(Body::from_stream(res.bytes_stream())).unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
        }
        Err(e) => {
            tracing::warn!(error = %e, "upstream request failed");
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

/// The request headers to forward: without hop-by-hop headers (RFC 9110 §7.6.1), without `Host`
/// (the upstream's is set by the client library), without any `X-Latchkey-*` header the caller
/// sent (only the gate may set those), and without the token unless asked.
fn forwarded_headers(incoming: &HeaderMap, pass_token: bool) -> HeaderMap {
    let mut h = without_hop_by_hop(incoming);
    h.remove(header::HOST);
    if !pass_token {
        h.remove(header::AUTHORIZATION);
    }
    let forged: Vec<HeaderName> = h.keys().filter(|k| k.as_str().starts_with(HEADER_PREFIX)).cloned().collect();
    for k in forged {
        h.remove(k);
    }
    h
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
            ("authorization", "Bearer t"),
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
        assert!(forwarded_headers(&h, true).contains_key("authorization"));
    }
}
