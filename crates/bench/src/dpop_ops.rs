//! The operations of issue 14, each the twin of a bearer operation in [`crate::ops`]: DPoP
//! (RFC 9449) code exchange, refresh and userinfo, and a pushed authorization request (RFC 9126)
//! followed by the authorization request that uses it. Plus the client's side of DPoP measured
//! apart ([`proof_costs`]): signing a proof is the client's work, and it shares the machine.
//!
//! The keys: C ES256 keys per target (one per connection's worth). Operation `i` of the
//! authorization phase sends `dpop_jkt` of key `i mod C` (§10: the code is bound to that key),
//! and everything that follows from that code (its exchange, the refresh family, the access
//! tokens) carries the key's index along, since a public client's refresh tokens and every access
//! token are bound to the key of the first proof (§5.2, §6).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hyper::StatusCode;
use hyper::header::{self, HeaderName};
use latchkey_proto::dpop::{DEFAULT_ALGORITHMS, DpopKey, DpopProof, Expected};

use crate::OpError;
use crate::http::{Conn, Req};
use crate::ops::{
    Client, IssuedCode, Pkce, Tokens, authorize_with_session, check_exchange, check_rotated, exchange_request,
    jwt_claims, random_b64, refresh_request, string_field, token_response,
};
use crate::phase::Op;

/// The keys of the DPoP phases, shared by every run of one target.
pub type Keys = Arc<Vec<DpopKey>>;

/// `n` fresh ES256 keys.
pub fn keys(n: usize) -> anyhow::Result<Keys> {
    let keys = (0..n.max(1)).map(|_| DpopKey::generate()).collect::<Result<Vec<_>, _>>()?;
    Ok(Arc::new(keys))
}

/// Something issued for, or bound to, the key `key` of [`Keys`].
#[derive(Debug, Clone)]
pub struct Bound<T> {
    pub value: T,
    pub key: usize,
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// A fresh proof for one request (§4.2: a new `jti` every time; the server refuses a replay).
fn proof(key: &DpopKey, method: &str, url: &str, access_token: Option<&str>) -> Result<String, OpError> {
    key.proof(method, url, unix_now(), None, access_token).map_err(|_| OpError::Protocol("could not sign a DPoP proof"))
}

/// `DPoP` (RFC 9449 §4.1); header names are case-insensitive, and `HeaderName` holds them in
/// lower case.
fn dpop_header() -> HeaderName {
    HeaderName::from_static("dpop")
}

/// The access token must be bound to the key that proved the request (`cnf.jkt`, §6.1): a
/// server that answered `token_type=DPoP` with an unbound token would be measured doing less.
fn check_bound(access_token: &str, key: &DpopKey) -> Result<(), OpError> {
    let claims = jwt_claims(access_token)?;
    if claims.pointer("/cnf/jkt").and_then(|v| v.as_str()) != Some(key.jkt()) {
        return Err(OpError::Protocol("the access token's cnf.jkt is not the thumbprint of the proof's key"));
    }
    Ok(())
}

/// An authorization request with a session, as [`crate::ops::Authorize`], naming the key the
/// code will be redeemed with (`dpop_jkt`, RFC 9449 §10).
pub struct DpopAuthorize {
    pub client: Client,
    pub sessions: Arc<Vec<String>>,
    pub keys: Keys,
}

#[async_trait]
impl Op for DpopAuthorize {
    type Out = Bound<IssuedCode>;
    async fn call(&self, conn: &mut Conn, i: usize) -> Result<(Bound<IssuedCode>, usize), OpError> {
        let key = i % self.keys.len();
        let (path, verifier, state) = self.client.authorization_request_with(&[("dpop_jkt", self.keys[key].jkt())]);
        let session = &self.sessions[i % self.sessions.len()];
        let code = authorize_with_session(conn, &self.client, path, &state, session).await?;
        Ok((Bound { value: IssuedCode { code, verifier }, key }, 1))
    }
}

/// The code exchange of [`crate::ops::Exchange`] with a DPoP proof by the code's key (§5): the
/// answer must be `token_type=DPoP` and the access token bound to that key.
pub struct DpopExchange {
    pub client: Client,
    /// The token endpoint's absolute URL: the proof's `htu`.
    pub token_url: String,
    pub codes: Arc<Vec<Bound<IssuedCode>>>,
    pub keys: Keys,
}

#[async_trait]
impl Op for DpopExchange {
    type Out = Bound<Tokens>;
    async fn call(&self, conn: &mut Conn, i: usize) -> Result<(Bound<Tokens>, usize), OpError> {
        let c = &self.codes[i];
        let key = &self.keys[c.key];
        let req = exchange_request(&self.client, &c.value)
            .header(dpop_header(), &proof(key, "POST", &self.token_url, None)?)?;
        let (body, tokens) = token_response(conn.send(req).await?, "DPoP")?;
        check_exchange(&self.client, &body, &tokens)?;
        check_bound(&tokens.access, key)?;
        Ok((Bound { value: tokens, key: c.key }, 1))
    }
}

/// The refresh of [`crate::ops::Refresh`] with a proof by the family's key (§5.2: a public
/// client's refresh tokens are bound to it).
pub struct DpopRefresh {
    pub client: Client,
    pub token_url: String,
    pub tokens: Arc<Vec<Bound<Tokens>>>,
    pub keys: Keys,
}

#[async_trait]
impl Op for DpopRefresh {
    type Out = Bound<Tokens>;
    async fn call(&self, conn: &mut Conn, i: usize) -> Result<(Bound<Tokens>, usize), OpError> {
        let old = &self.tokens[i];
        let key = &self.keys[old.key];
        let req = refresh_request(&self.client, &old.value.refresh)
            .header(dpop_header(), &proof(key, "POST", &self.token_url, None)?)?;
        let (_, new) = token_response(conn.send(req).await?, "DPoP")?;
        check_rotated(&old.value, &new)?;
        check_bound(&new.access, key)?;
        Ok((Bound { value: new, key: old.key }, 1))
    }
}

/// `GET /userinfo` with `Authorization: DPoP` and a proof carrying `ath`, the access token's
/// hash (§7.1).
pub struct DpopUserinfo {
    pub path: String,
    pub url: String,
    pub access_tokens: Arc<Vec<Bound<String>>>,
    pub keys: Keys,
}

#[async_trait]
impl Op for DpopUserinfo {
    type Out = ();
    async fn call(&self, conn: &mut Conn, i: usize) -> Result<((), usize), OpError> {
        let t = &self.access_tokens[i % self.access_tokens.len()];
        let proof = proof(&self.keys[t.key], "GET", &self.url, Some(&t.value))?;
        let req = Req::get(self.path.clone())
            .header(header::AUTHORIZATION, &format!("DPoP {}", t.value))?
            .header(dpop_header(), &proof)?;
        let body = conn.send(req).await?.expect(StatusCode::OK)?.json()?;
        string_field(&body, "sub")?;
        Ok(((), 1))
    }
}

/// `POST /par` with the authorization request's parameters (RFC 9126 §2.1), then the
/// authorization request that names only `client_id` and the `request_uri` (§4), with the user's
/// session: two requests, until the redirect with the code, where [`crate::ops::Authorize`] takes
/// one.
pub struct ParAuthorize {
    pub client: Client,
    pub par_path: String,
    pub sessions: Arc<Vec<String>>,
}

#[async_trait]
impl Op for ParAuthorize {
    type Out = IssuedCode;
    async fn call(&self, conn: &mut Conn, i: usize) -> Result<(IssuedCode, usize), OpError> {
        let pkce = Pkce::generate();
        let state = random_b64(12);
        let c = &self.client;
        let form = [
            ("response_type", "code"),
            ("client_id", c.client_id.as_str()),
            ("redirect_uri", c.redirect_uri.as_str()),
            ("scope", c.scope.as_str()),
            ("code_challenge", pkce.challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("state", state.as_str()),
        ];
        // §2.2: 201 Created, and a request_uri that stands for the request.
        let pushed = conn.send(Req::form(self.par_path.clone(), &form)).await?.expect(StatusCode::CREATED)?.json()?;
        let request_uri = string_field(&pushed, "request_uri")?;
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", &c.client_id)
            .append_pair("request_uri", &request_uri)
            .finish();
        let session = &self.sessions[i % self.sessions.len()];
        let code = authorize_with_session(conn, c, format!("{}?{query}", c.authorize_path), &state, session).await?;
        Ok((IssuedCode { code, verifier: pkce.verifier }, 2))
    }
}

/// The client's and the verifier's side of one proof, timed on one thread of the bench process.
#[derive(Debug, Clone, Copy)]
pub struct ProofCosts {
    pub proofs: usize,
    /// Signing one proof (the JSON, a fresh `jti`, one ES256 signature): the client's work.
    pub sign_us: f64,
    /// Checking one proof as Latchkey does before its replay mark ([`DpopProof::parse`] and
    /// [`DpopProof::check`]: the JWK read and thumbprinted, the ES256 signature verified, the
    /// claims compared): the server's work without the store.
    pub verify_us: f64,
    /// Whether the figures are the thread's CPU time (`/proc/thread-self/stat`) rather than wall
    /// time (where `/proc` is missing).
    pub cpu_time: bool,
}

/// Signs proofs for `budget`, then verifies each of them, on the calling thread. Run it on a
/// thread of its own (`spawn_blocking`) and between phases, while the server is idle.
pub fn proof_costs(key: &DpopKey, url: &str, budget: Duration) -> Result<ProofCosts, OpError> {
    // Thread CPU time, not wall time: on a machine shared with the server and other work, wall
    // time would bill preemption to the signature.
    let cpu = || crate::procfs::cpu_us("thread-self");
    let cpu_time = cpu().is_some();
    let clock = |t0: Instant, c0: Option<u64>| match (cpu(), c0) {
        (Some(c), Some(c0)) => c.saturating_sub(c0) as f64,
        _ => t0.elapsed().as_secs_f64() * 1e6,
    };
    let (t0, c0) = (Instant::now(), cpu());
    let mut proofs = Vec::new();
    while t0.elapsed() < budget || proofs.len() < 100 {
        proofs.push(proof(key, "POST", url, None)?);
    }
    let sign = clock(t0, c0);
    let (t0, c0) = (Instant::now(), cpu());
    let now = unix_now();
    let expected = Expected { method: "POST", url, access_token: None, max_age: 60, max_skew: 10 };
    for p in &proofs {
        let parsed = DpopProof::parse(p, DEFAULT_ALGORITHMS).map_err(|e| OpError::Refused(e.to_string()))?;
        parsed.check(&expected, now).map_err(|e| OpError::Refused(e.to_string()))?;
        parsed.check_key(key.jkt()).map_err(|e| OpError::Refused(e.to_string()))?;
    }
    let verify = clock(t0, c0);
    let n = proofs.len() as f64;
    Ok(ProofCosts { proofs: proofs.len(), sign_us: sign / n, verify_us: verify / n, cpu_time })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_verify_and_are_fresh() {
        let keys = keys(2).unwrap();
        let url = "http://localhost:8080/token";
        let a = proof(&keys[0], "POST", url, None).unwrap();
        let b = proof(&keys[0], "POST", url, None).unwrap();
        let (pa, pb) =
            (DpopProof::parse(&a, DEFAULT_ALGORITHMS).unwrap(), DpopProof::parse(&b, DEFAULT_ALGORITHMS).unwrap());
        assert_ne!(pa.jti, pb.jti, "every request needs its own jti");
        assert_eq!(pa.jkt, keys[0].jkt());
        assert_ne!(keys[0].jkt(), keys[1].jkt());
        let costs = proof_costs(&keys[1], url, Duration::from_millis(20)).unwrap();
        assert!(costs.proofs >= 100 && costs.sign_us >= 0.0 && costs.verify_us >= 0.0, "{costs:?}");
    }

    #[test]
    fn an_unbound_token_is_refused() {
        use base64::Engine;
        let key = DpopKey::generate().unwrap();
        let jwt = |claims: serde_json::Value| {
            let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            format!("{}.{}.sig", b.encode(b"{}"), b.encode(claims.to_string()))
        };
        assert!(check_bound(&jwt(serde_json::json!({ "cnf": { "jkt": key.jkt() } })), &key).is_ok());
        assert!(check_bound(&jwt(serde_json::json!({ "sub": "u" })), &key).is_err());
        assert!(check_bound(&jwt(serde_json::json!({ "cnf": { "jkt": "other" } })), &key).is_err());
    }
}
