//! `latchkey gate` with DPoP-bound tokens (RFC 9449 §7): the gate checks each proof against its
//! external URL (never the Host header), the token's `cnf.jkt`, its replay cache and its nonces,
//! and no refused request reaches the upstream. The issuer here is a small one of the test's
//! own, since it must mint tokens with `cnf.jkt`; proofs are made with `DpopKey` as a client
//! makes them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use axum::Router;
use axum::http::HeaderMap;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latchkey_proto::dpop::DpopKey;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_latchkey");
/// Where clients reach the gate (a TLS proxy in front of it, say): what proofs name.
const EXTERNAL: &str = "https://api.example.com";

fn b64(v: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(v)
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Discovery and a JWKS on 127.0.0.1, and the RSA key that signs its access tokens.
struct Issuer {
    base: String,
    pair: RsaKeyPair,
}

impl Issuer {
    async fn start() -> Self {
        let pair = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let p = pair.public_key();
        let jwk = json!({"kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig",
            "n": b64(p.modulus().big_endian_without_leading_zero()),
            "e": b64(p.exponent().big_endian_without_leading_zero())});
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let doc = json!({"issuer": base, "jwks_uri": format!("{base}/jwks")});
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(move || async move { axum::Json(doc) }))
            .route("/jwks", get(move || async move { axum::Json(json!({"keys": [jwk]})) }));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { base, pair }
    }

    /// An RFC 9068 access token for the issuer's default audience, bound to `dpop` if given.
    fn token(&self, dpop: Option<&DpopKey>, aud: Option<&str>) -> String {
        let mut claims = json!({"iss": self.base, "sub": "user-1", "aud": aud.unwrap_or(&self.base),
            "exp": now() + 600, "iat": now(), "client_id": "app", "scope": "api:read",
            "jti": b64(now().to_be_bytes()) + &b64(rand_bytes())});
        if let Some(k) = dpop {
            claims["cnf"] = json!({"jkt": k.jkt()});
        }
        let header = json!({"alg": "RS256", "typ": "at+jwt", "kid": "k1"});
        let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        let mut sig = vec![0; self.pair.public_modulus_len()];
        self.pair.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), input.as_bytes(), &mut sig).unwrap();
        format!("{input}.{}", b64(&sig))
    }
}

fn rand_bytes() -> [u8; 8] {
    let mut b = [0; 8];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    b
}

/// An upstream that answers every request with the headers it received, and a `DPoP-Nonce` of
/// its own (which the gate must replace with its own when it hands out nonces).
struct Upstream {
    base: String,
    seen: Arc<Mutex<Vec<HeaderMap>>>,
}

async fn upstream() -> Upstream {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let app = Router::new().fallback(move |h: HeaderMap| {
        let seen = s2.clone();
        async move {
            seen.lock().unwrap().push(h);
            ([("dpop-nonce", "upstream-nonce")], "ok")
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Upstream { base, seen }
}

struct Gate {
    url: String,
    _child: Child,
}

async fn gate(issuer: &Issuer, up: &Upstream, extra: &[&str]) -> Gate {
    let mut child = Command::new(BIN)
        .args(["gate", "--listen", "127.0.0.1:0", "--upstream", &up.base, "--issuer", &issuer.base])
        .args(extra)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await.unwrap().unwrap().unwrap();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let url = line.split_whitespace().find(|w| w.starts_with("http://")).unwrap().trim_end_matches(',').to_owned();
    Gate { url, _child: child }
}

/// `method path` at the gate with `Authorization: <scheme> <token>` and, if given, a proof.
async fn send(g: &Gate, method: &str, path: &str, auth: &str, proof: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .request(method.parse().unwrap(), format!("{}{path}", g.url))
        .header("authorization", auth);
    if let Some(p) = proof {
        req = req.header("dpop", p);
    }
    req.send().await.unwrap()
}

fn proof(k: &DpopKey, method: &str, path: &str, token: &str, nonce: Option<&str>) -> String {
    k.proof(method, &format!("{EXTERNAL}{path}"), now(), nonce, Some(token)).unwrap()
}

fn challenges(res: &reqwest::Response) -> Vec<String> {
    res.headers().get_all("www-authenticate").iter().map(|v| v.to_str().unwrap().to_owned()).collect()
}

/// A 401 with `error` on the DPoP challenge and `why` in the description.
async fn refused(res: reqwest::Response, error: &str, why: &str) {
    assert_eq!(res.status(), 401);
    let c = challenges(&res);
    assert!(c.iter().any(|c| c.starts_with(&format!("DPoP error=\"{error}\""))), "{c:?}");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], error, "{body}");
    assert!(body["error_description"].as_str().unwrap().contains(why), "expected {why:?}: {body}");
}

#[tokio::test]
async fn the_gate_checks_proofs_against_its_external_url_and_forwards_neither_token_nor_proof() {
    let (iss, up) = (Issuer::start().await, upstream().await);
    let g = gate(&iss, &up, &["--external-url", EXTERNAL]).await;
    let (owner, thief) = (DpopKey::generate().unwrap(), DpopKey::generate().unwrap());
    let t = iss.token(Some(&owner), None);
    let dpop = format!("DPoP {t}");
    let p = proof(&owner, "GET", "/v1/items", &t, None);
    let res = send(&g, "GET", "/v1/items?page=2", &dpop, Some(&p)).await;
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("dpop-nonce").is_some_and(|v| v == "upstream-nonce"), "nonces off: passed as is");
    {
        let seen = up.seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0]["x-latchkey-subject"], "user-1");
        assert!(seen[0].get("authorization").is_none() && seen[0].get("dpop").is_none(), "{:?}", seen[0]);
    }
    // The same proof again: a replay.
    refused(send(&g, "GET", "/v1/items", &dpop, Some(&p)).await, "invalid_dpop_proof", "used before").await;
    // A proof for the URL the gate listens at (the Host the request carries) is not one for
    // the URL clients call: the Host header is never trusted.
    let local = owner.proof("GET", &format!("{}/v1/items", g.url), now(), None, Some(&t)).unwrap();
    refused(send(&g, "GET", "/v1/items", &dpop, Some(&local)).await, "invalid_dpop_proof", "htu").await;
    let post = proof(&owner, "POST", "/v1/items", &t, None);
    refused(send(&g, "GET", "/v1/items", &dpop, Some(&post)).await, "invalid_dpop_proof", "htm").await;
    let stale = owner.proof("GET", &format!("{EXTERNAL}/v1/items"), now() - 120, None, Some(&t)).unwrap();
    refused(send(&g, "GET", "/v1/items", &dpop, Some(&stale)).await, "invalid_dpop_proof", "too old").await;
    // A thief with the token but not the key, with a proof of its own key.
    let theirs = proof(&thief, "GET", "/v1/items", &t, None);
    refused(send(&g, "GET", "/v1/items", &dpop, Some(&theirs)).await, "invalid_token", "another key").await;
    // A proof made for another token (its ath).
    let other = iss.token(Some(&owner), None);
    let for_other = proof(&owner, "GET", "/v1/items", &other, None);
    refused(send(&g, "GET", "/v1/items", &dpop, Some(&for_other)).await, "invalid_dpop_proof", "ath").await;
    // …or with the token as a bearer token (RFC 9449 §7.2).
    let res = send(&g, "GET", "/v1/items", &format!("Bearer {t}"), None).await;
    assert_eq!(res.status(), 401);
    let c = challenges(&res);
    assert!(c[0].starts_with("Bearer error=\"invalid_token\"") && c[1].starts_with("DPoP algs="), "{c:?}");
    assert_eq!(up.seen.lock().unwrap().len(), 1, "nothing refused reached the upstream");
    // Bearer tokens still pass, and a proof sent next to one is ignored.
    let plain = iss.token(None, None);
    assert_eq!(send(&g, "GET", "/v1/items", &format!("Bearer {plain}"), Some("junk")).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_one_proof_through_the_gate_passes_once() {
    let (iss, up) = (Issuer::start().await, upstream().await);
    let g = Arc::new(gate(&iss, &up, &["--external-url", EXTERNAL]).await);
    let k = DpopKey::generate().unwrap();
    let t = iss.token(Some(&k), None);
    let warm = proof(&k, "GET", "/x", &t, None);
    assert_eq!(send(&g, "GET", "/x", &format!("DPoP {t}"), Some(&warm)).await.status(), 200);
    let p = proof(&k, "GET", "/x", &t, None);
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (g, t, p) = (g.clone(), t.clone(), p.clone());
            tokio::spawn(async move { send(&g, "GET", "/x", &format!("DPoP {t}"), Some(&p)).await.status().as_u16() })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 15, "{statuses:?}");
    assert_eq!(up.seen.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn dpop_required_with_nonces_in_front_of_a_resource() {
    let (iss, up) = (Issuer::start().await, upstream().await);
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("nonce-secret");
    std::fs::write(&secret, "a-long-random-secret-shared-by-the-gates-0123456789\n").unwrap();
    let resource = format!("{EXTERNAL}/mcp");
    let g = gate(
        &iss,
        &up,
        &["--resource", &resource, "--dpop", "required", "--dpop-nonce-secret-file", secret.to_str().unwrap()],
    )
    .await;
    // RFC 9728 §2: the metadata says DPoP is required and with which algorithms.
    let doc: Value = reqwest::get(format!("{}/.well-known/oauth-protected-resource/mcp", g.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["dpop_bound_access_tokens_required"], true, "{doc}");
    assert_eq!(doc["dpop_signing_alg_values_supported"][0], "ES256", "{doc}");
    // A bearer token, even one for this resource: refused, with only a DPoP challenge.
    let plain = iss.token(None, Some(&resource));
    let res = send(&g, "POST", "/mcp", &format!("Bearer {plain}"), None).await;
    assert_eq!(res.status(), 401);
    let c = challenges(&res);
    assert_eq!(c.len(), 1, "{c:?}");
    assert!(c[0].starts_with("DPoP error=\"invalid_token\"") && c[0].contains("resource_metadata="), "{c:?}");
    // A bound token whose proof has no nonce: use_dpop_nonce, with one to use.
    let k = DpopKey::generate().unwrap();
    let t = iss.token(Some(&k), Some(&resource));
    let res = send(&g, "POST", "/mcp", &format!("DPoP {t}"), Some(&proof(&k, "POST", "/mcp", &t, None))).await;
    let nonce = res.headers()["dpop-nonce"].to_str().unwrap().to_owned();
    refused(res, "use_dpop_nonce", "nonce").await;
    assert_eq!(up.seen.lock().unwrap().len(), 0);
    // The retry with it passes; the answer carries the gate's nonce, not the upstream's.
    let res = send(&g, "POST", "/mcp", &format!("DPoP {t}"), Some(&proof(&k, "POST", "/mcp", &t, Some(&nonce)))).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers().get_all("dpop-nonce").iter().collect::<Vec<_>>(), [nonce.as_str()]);
}

#[tokio::test]
async fn pass_token_forwards_the_proof_and_the_replay_cache_is_bounded() {
    let (iss, up) = (Issuer::start().await, upstream().await);
    let g = gate(&iss, &up, &["--external-url", EXTERNAL, "--pass-token", "--dpop-replay-capacity", "2"]).await;
    let k = DpopKey::generate().unwrap();
    let t = iss.token(Some(&k), None);
    let p = proof(&k, "GET", "/a", &t, None);
    assert_eq!(send(&g, "GET", "/a", &format!("DPoP {t}"), Some(&p)).await.status(), 200);
    {
        let seen = up.seen.lock().unwrap();
        assert_eq!(seen[0]["authorization"], format!("DPoP {t}").as_str());
        assert_eq!(seen[0]["dpop"], p.as_str());
    }
    assert_eq!(
        send(&g, "GET", "/a", &format!("DPoP {t}"), Some(&proof(&k, "GET", "/a", &t, None))).await.status(),
        200
    );
    // Two live proofs fill it: the third is refused, not an old one forgotten.
    let res = send(&g, "GET", "/a", &format!("DPoP {t}"), Some(&proof(&k, "GET", "/a", &t, None))).await;
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "5");
    refused(send(&g, "GET", "/a", &format!("DPoP {t}"), Some(&p)).await, "invalid_dpop_proof", "used before").await;
    assert_eq!(up.seen.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn without_an_external_url_dpop_is_off_and_bound_tokens_are_refused() {
    let (iss, up) = (Issuer::start().await, upstream().await);
    let g = gate(&iss, &up, &[]).await;
    let k = DpopKey::generate().unwrap();
    let t = iss.token(Some(&k), None);
    let res = send(&g, "GET", "/a", &format!("DPoP {t}"), Some(&proof(&k, "GET", "/a", &t, None))).await;
    assert_eq!(res.status(), 401);
    assert_eq!(challenges(&res), ["Bearer"], "an unknown scheme: no error, no DPoP challenge");
    let res = send(&g, "GET", "/a", &format!("Bearer {t}"), None).await;
    assert_eq!(res.status(), 401);
    assert!(challenges(&res)[0].starts_with("Bearer error=\"invalid_token\""));
    assert_eq!(up.seen.lock().unwrap().len(), 0);
}

#[tokio::test]
async fn dpop_settings_that_cannot_work_stop_the_gate_at_start_up() {
    let (iss, up) = (Issuer::start().await, upstream().await);
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short");
    std::fs::write(&short, "too short\n").unwrap();
    for (args, why) in [
        (vec!["--dpop", "required"], "external_url"),
        (vec!["--external-url", EXTERNAL, "--dpop-nonce-secret-file", short.to_str().unwrap()], "32 bytes"),
        (vec!["--external-url", "http://api.example.com"], "external URL"),
    ] {
        let out = Command::new(BIN)
            .args(["gate", "--listen", "127.0.0.1:0", "--upstream", &up.base, "--issuer", &iss.base])
            .args(&args)
            .env_remove("RUST_LOG")
            .output()
            .await
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{args:?}: {err}");
    }
}
