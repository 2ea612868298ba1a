//! DPoP on the client side (RFC 9449): the key a login's tokens are bound to, a fresh proof for
//! every request, and the server nonces (§8, §9) remembered per server.
//!
//! A proof names one request (`htm`, `htu`) and, at a resource, the token it comes with (`ath`),
//! so it cannot be prepared in advance or reused: [`Dpop::api_headers`] makes the two headers of
//! one API request, and [`Dpop::send`] sends one, retrying once when the server asks for a nonce.

use std::collections::HashMap;
use std::sync::Mutex;

use latchkey_proto::dpop::{DPOP_HEADER, DpopKey, NONCE_HEADER};
use latchkey_proto::secret::AccessToken;
use reqwest::header::{HeaderMap, WWW_AUTHENTICATE};
use url::Url;

use crate::Error;

/// The longest nonce remembered: a server's nonce is an opaque string, but not a megabyte.
const MAX_NONCE_LEN: usize = 1024;

/// A DPoP key and the latest nonce each server gave.
pub struct Dpop {
    key: DpopKey,
    /// Latest `DPoP-Nonce` per origin (`scheme://host:port`). The authorization server and each
    /// resource server issue their own (§8, §9), so one server's nonce is never sent to another.
    nonces: Mutex<HashMap<String, String>>,
}

impl std::fmt::Debug for Dpop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dpop").field("jkt", &self.key.jkt()).finish_non_exhaustive()
    }
}

/// The two headers of one API request with a DPoP-bound token (§7.1). Both are credentials for
/// that one request: `Debug` hides them.
pub struct ApiHeaders {
    /// `DPoP <access token>`.
    pub authorization: String,
    /// The proof for this method, URL and token.
    pub dpop: String,
}

impl std::fmt::Debug for ApiHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiHeaders([redacted])")
    }
}

impl Dpop {
    pub fn new(key: DpopKey) -> Self {
        Self { key, nonces: Mutex::new(HashMap::new()) }
    }

    pub fn key(&self) -> &DpopKey {
        &self.key
    }

    /// The key's RFC 7638 thumbprint: `dpop_jkt` at the authorization endpoint, `cnf.jkt` in tokens.
    pub fn jkt(&self) -> &str {
        self.key.jkt()
    }

    /// The latest nonce the server at `url`'s origin gave, if any.
    pub fn nonce_for(&self, url: &Url) -> Option<String> {
        self.nonces.lock().ok()?.get(&origin(url)).cloned()
    }

    /// Remembers the nonce a server gave for later proofs to it (§8.2: a server may send a fresh
    /// one with any response, errors or not).
    pub fn set_nonce(&self, url: &Url, nonce: &str) {
        if nonce.is_empty() || nonce.len() > MAX_NONCE_LEN || !nonce.bytes().all(|b| b.is_ascii_graphic()) {
            return;
        }
        if let Ok(mut map) = self.nonces.lock() {
            map.insert(origin(url), nonce.to_owned());
        }
    }

    /// Remembers the `DPoP-Nonce` of a response from `url`, and returns it.
    pub fn observe(&self, url: &Url, headers: &HeaderMap) -> Option<String> {
        let nonce = headers.get(NONCE_HEADER)?.to_str().ok()?.to_owned();
        self.set_nonce(url, &nonce);
        Some(nonce)
    }

    /// A proof for one request to `url`, with the server's latest nonce, and `ath` when
    /// `access_token` is presented with it (§4.2).
    pub fn proof(&self, method: &str, url: &Url, now: i64, access_token: Option<&str>) -> Result<String, Error> {
        let nonce = self.nonce_for(url);
        self.key
            .proof(method, url.as_str(), now, nonce.as_deref(), access_token)
            .map_err(|e| Error::Dpop(e.to_string()))
    }

    /// The `Authorization` and `DPoP` headers of one request to a resource (§7.1).
    pub fn api_headers(&self, method: &str, url: &Url, token: &AccessToken, now: i64) -> Result<ApiHeaders, Error> {
        Ok(ApiHeaders {
            authorization: format!("DPoP {}", token.expose_secret()),
            dpop: self.proof(method, url, now, Some(token.expose_secret()))?,
        })
    }

    /// Sends one request to a resource with a DPoP-bound token. When the resource answers 401
    /// with `WWW-Authenticate: DPoP error="use_dpop_nonce"` and a new `DPoP-Nonce` (§9), it is sent
    /// again, once, with a fresh proof carrying that nonce. Redirects are not followed (the
    /// client's choice): a proof is for one URL.
    pub async fn send(
        &self,
        http: &reqwest::Client,
        request: &ApiRequest<'_>,
        now: i64,
    ) -> Result<reqwest::Response, Error> {
        let mut sent_nonce = self.nonce_for(request.url);
        for attempt in 0..2 {
            let h = self.api_headers(request.method.as_str(), request.url, request.token, now)?;
            let mut req = http
                .request(request.method.clone(), request.url.clone())
                .headers(request.headers.clone())
                .header(reqwest::header::AUTHORIZATION, h.authorization)
                .header(DPOP_HEADER, h.dpop);
            if let Some(body) = request.body {
                req = req.body(body.to_vec());
            }
            let res = req.send().await.map_err(|source| Error::Http { url: request.url.to_string(), source })?;
            let fresh = self.observe(request.url, res.headers());
            let asked = resource_asks_for_nonce(res.status().as_u16(), res.headers());
            if attempt == 0 && asked && fresh.is_some() && fresh != sent_nonce {
                sent_nonce = fresh;
                continue;
            }
            return Ok(res);
        }
        Err(Error::Dpop("unreachable: the nonce retry ended without a response".into()))
    }
}

/// One request to a resource, for [`Dpop::send`].
#[derive(Debug)]
pub struct ApiRequest<'a> {
    pub method: reqwest::Method,
    pub url: &'a Url,
    pub token: &'a AccessToken,
    /// Further headers (`Content-Type`, `Accept`…). `Authorization` and `DPoP` are set by `send`.
    pub headers: HeaderMap,
    pub body: Option<&'a [u8]>,
}

fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// §8 at the token (or PAR) endpoint: 400 with `"error": "use_dpop_nonce"` in the JSON body.
pub(crate) fn token_endpoint_asks_for_nonce(status: u16, body: &[u8]) -> bool {
    status == 400
        && serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .is_some_and(|v| v.get("error").and_then(serde_json::Value::as_str) == Some("use_dpop_nonce"))
}

/// §9 at a resource: 401 with a `DPoP` challenge whose `error` is `use_dpop_nonce`.
pub fn resource_asks_for_nonce(status: u16, headers: &HeaderMap) -> bool {
    status == 401
        && headers.get_all(WWW_AUTHENTICATE).iter().filter_map(|v| v.to_str().ok()).any(|v| {
            challenges(v).iter().any(|c| {
                c.scheme.eq_ignore_ascii_case("DPoP")
                    && c.params.iter().any(|(k, v)| k.eq_ignore_ascii_case("error") && v == "use_dpop_nonce")
            })
        })
}

/// One challenge of a `WWW-Authenticate` header (RFC 9110 §11.6.1).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Challenge {
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

/// Parses the challenges of a `WWW-Authenticate` value: `Bearer realm="a", DPoP error="b",
/// algs="ES256"` is two challenges. Commas inside quoted strings do not split.
pub(crate) fn challenges(header: &str) -> Vec<Challenge> {
    // Split on commas outside quotes.
    let mut items = Vec::new();
    let (mut cur, mut quoted, mut escaped) = (String::new(), false, false);
    for c in header.chars() {
        match c {
            _ if escaped => {
                escaped = false;
                cur.push(c);
            }
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => items.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    items.push(cur);
    let mut out: Vec<Challenge> = Vec::new();
    for item in items.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let is_param =
            |s: &str| s.split_once('=').is_some_and(|(k, _)| !k.trim().is_empty() && !k.trim().contains(' '));
        if is_param(item) {
            if let (Some(last), Some((k, v))) = (out.last_mut(), item.split_once('=')) {
                last.params.push((k.trim().to_owned(), v.trim().to_owned()));
            }
            continue;
        }
        // A new challenge: its scheme, then perhaps its first parameter.
        let (scheme, rest) = item.split_once(' ').unwrap_or((item, ""));
        let mut ch = Challenge { scheme: scheme.to_owned(), params: vec![] };
        if let Some((k, v)) = rest.trim().split_once('=') {
            ch.params.push((k.trim().to_owned(), v.trim().to_owned()));
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::http::{HeaderValue, StatusCode};
    use axum::response::{IntoResponse, Response};
    use latchkey_proto::dpop::{DEFAULT_ALGORITHMS, DpopProof, Expected};

    use super::*;

    #[test]
    fn proofs_carry_the_nonce_of_their_own_server_only() {
        let dpop = Dpop::new(DpopKey::generate().unwrap());
        let api = Url::parse("https://api.example/notes?page=2").unwrap();
        let issuer = Url::parse("https://id.example/token").unwrap();
        let mut h = HeaderMap::new();
        h.insert(NONCE_HEADER, HeaderValue::from_static("n-api"));
        assert_eq!(dpop.observe(&api, &h).as_deref(), Some("n-api"));
        let p = DpopProof::parse(&dpop.proof("GET", &api, 1000, Some("at")).unwrap(), DEFAULT_ALGORITHMS).unwrap();
        assert_eq!(p.nonce.as_deref(), Some("n-api"));
        assert_eq!(p.htu, "https://api.example/notes", "htu drops the query (§4.2)");
        assert_eq!(p.jkt, dpop.jkt());
        let expected = Expected {
            method: "GET",
            url: "https://api.example/notes",
            access_token: Some("at"),
            max_age: 60,
            max_skew: 5,
        };
        p.check(&expected, 1000).unwrap();
        let p = DpopProof::parse(&dpop.proof("POST", &issuer, 1000, None).unwrap(), DEFAULT_ALGORITHMS).unwrap();
        assert_eq!(p.nonce, None, "the API's nonce is not sent to the authorization server");
        assert_eq!(p.ath, None);
        // A nonce with a control character or a huge one is not kept.
        dpop.set_nonce(&api, "bad\nnonce");
        dpop.set_nonce(&api, &"x".repeat(MAX_NONCE_LEN + 1));
        assert_eq!(dpop.nonce_for(&api).as_deref(), Some("n-api"));
    }

    #[test]
    fn api_headers_bind_the_proof_to_the_token() {
        let dpop = Dpop::new(DpopKey::generate().unwrap());
        let url = Url::parse("https://api.example/me").unwrap();
        let h = dpop.api_headers("DELETE", &url, &AccessToken::new("tok-1"), 50).unwrap();
        assert_eq!(h.authorization, "DPoP tok-1");
        let p = DpopProof::parse(&h.dpop, DEFAULT_ALGORITHMS).unwrap();
        assert_eq!((p.htm.as_str(), p.iat), ("DELETE", 50));
        assert_eq!(p.ath.as_deref(), Some(latchkey_proto::dpop::access_token_hash("tok-1").as_str()));
        assert_eq!(format!("{h:?}"), "ApiHeaders([redacted])");
        let again = dpop.api_headers("DELETE", &url, &AccessToken::new("tok-1"), 50).unwrap();
        assert_ne!(DpopProof::parse(&again.dpop, DEFAULT_ALGORITHMS).unwrap().jti, p.jti, "a new jti per proof");
    }

    #[test]
    fn challenges_are_split_outside_quotes() {
        let c = challenges(
            r#"Bearer realm="a, b", DPoP error="use_dpop_nonce", error_description="x, y", algs="ES256 EdDSA""#,
        );
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!(c[0], Challenge { scheme: "Bearer".into(), params: vec![("realm".into(), "a, b".into())] });
        assert_eq!(c[1].scheme, "DPoP");
        assert_eq!(c[1].params[0], ("error".into(), "use_dpop_nonce".into()));
        assert_eq!(c[1].params[2], ("algs".into(), "ES256 EdDSA".into()));
        let mut h = HeaderMap::new();
        h.append(WWW_AUTHENTICATE, HeaderValue::from_static(r#"DPoP error="use_dpop_nonce""#));
        assert!(resource_asks_for_nonce(401, &h));
        assert!(!resource_asks_for_nonce(403, &h));
        let mut bearer = HeaderMap::new();
        bearer.append(WWW_AUTHENTICATE, HeaderValue::from_static(r#"Bearer error="use_dpop_nonce""#));
        assert!(!resource_asks_for_nonce(401, &bearer), "only a DPoP challenge asks for a DPoP nonce");
        let mut other = HeaderMap::new();
        other.append(WWW_AUTHENTICATE, HeaderValue::from_static(r#"DPoP error="invalid_token""#));
        assert!(!resource_asks_for_nonce(401, &other));
        assert!(token_endpoint_asks_for_nonce(400, br#"{"error":"use_dpop_nonce"}"#));
        assert!(!token_endpoint_asks_for_nonce(400, br#"{"error":"invalid_dpop_proof"}"#));
        assert!(!token_endpoint_asks_for_nonce(401, br#"{"error":"use_dpop_nonce"}"#));
    }

    #[derive(Clone, Copy)]
    enum Fake {
        /// Requires this nonce and hands it out (§9).
        Requires(&'static str),
        /// Asks for a nonce without giving one.
        AsksWithoutNonce,
        /// Hands out a new nonce with every answer and never accepts any.
        AlwaysRefuses,
    }

    /// A resource that answers 401 `use_dpop_nonce` unless the proof has the nonce it wants, and
    /// 200 with the proof's `htm` and the `Authorization` header otherwise.
    async fn fake_resource(hits: Arc<AtomicUsize>, fake: Fake) -> Url {
        let app = Router::new().fallback(move |req: axum::extract::Request| {
            let hits = hits.clone();
            async move {
                let n = hits.fetch_add(1, Ordering::SeqCst);
                let proof = req.headers().get("dpop").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                let p = DpopProof::parse(&proof, DEFAULT_ALGORITHMS).unwrap();
                let (accept, give) = match fake {
                    Fake::Requires(nonce) => (p.nonce.as_deref() == Some(nonce), Some(nonce.to_owned())),
                    Fake::AsksWithoutNonce => (false, None),
                    Fake::AlwaysRefuses => (false, Some(format!("n-{n}"))),
                };
                let mut res: Response = if accept {
                    let auth = req.headers()["authorization"].to_str().unwrap();
                    (StatusCode::OK, format!("{} {auth}", p.htm)).into_response()
                } else {
                    let mut r = StatusCode::UNAUTHORIZED.into_response();
                    r.headers_mut().insert(
                        "www-authenticate",
                        HeaderValue::from_static(r#"DPoP error="use_dpop_nonce", error_description="nonce required""#),
                    );
                    r
                };
                if let Some(nonce) = give {
                    res.headers_mut().insert(NONCE_HEADER, HeaderValue::from_str(&nonce).unwrap());
                }
                res
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Url::parse(&format!("http://{addr}/api/notes")).unwrap()
    }

    fn get<'a>(url: &'a Url, token: &'a AccessToken) -> ApiRequest<'a> {
        ApiRequest { method: reqwest::Method::GET, url, token, headers: HeaderMap::new(), body: None }
    }

    #[tokio::test]
    async fn a_nonce_challenge_is_answered_once_and_remembered() {
        let hits = Arc::new(AtomicUsize::new(0));
        let url = fake_resource(hits.clone(), Fake::Requires("n-1")).await;
        let dpop = Dpop::new(DpopKey::generate().unwrap());
        let token = AccessToken::new("at-1");
        let http = reqwest::Client::new();
        let req = ApiRequest { method: reqwest::Method::POST, body: Some(b"x"), ..get(&url, &token) };
        let res = dpop.send(&http, &req, 1000).await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.text().await.unwrap(), "POST DPoP at-1");
        assert_eq!(hits.load(Ordering::SeqCst), 2, "one refusal, one retry with the nonce");
        // The nonce is remembered: the next request needs no retry.
        let res = dpop.send(&http, &req, 1001).await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(hits.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn the_nonce_retry_happens_once_and_only_with_a_new_nonce() {
        let dpop = Dpop::new(DpopKey::generate().unwrap());
        let token = AccessToken::new("at-1");
        let http = reqwest::Client::new();
        // Asked for a nonce but given none: nothing to retry with.
        let hits = Arc::new(AtomicUsize::new(0));
        let url = fake_resource(hits.clone(), Fake::AsksWithoutNonce).await;
        assert_eq!(dpop.send(&http, &get(&url, &token), 1000).await.unwrap().status(), 401);
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        // A new nonce every time and never satisfied: one retry, then its answer is returned.
        let hits = Arc::new(AtomicUsize::new(0));
        let url = fake_resource(hits.clone(), Fake::AlwaysRefuses).await;
        let res = dpop.send(&http, &get(&url, &token), 1000).await.unwrap();
        assert_eq!(res.status(), 401);
        assert!(resource_asks_for_nonce(401, res.headers()));
        assert_eq!(hits.load(Ordering::SeqCst), 2, "retried once, not in a loop");
        assert_eq!(dpop.nonce_for(&url).as_deref(), Some("n-1"), "the latest nonce is kept");
    }
}
