//! Micro-benchmarks of the pieces every token request pays for: PKCE verification, JWS signing
//! and verification per algorithm, the SQLite store's one-time operations, and Argon2id.
//!
//! `cargo bench -p latchkey-bench` (add `-- NAME` to run one group). They inform choices (which
//! signing algorithm, which durability setting) and explain the HTTP benchmark's CPU figures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair, UnparsedPublicKey};
use criterion::{Criterion, criterion_group, criterion_main};
use latchkey_core::Store;
use latchkey_core::keys::{KeySet, SigningKey};
use latchkey_core::store::{AccessRecord, CodeRecord, GrantRecord, Issuance, RefreshRecord};
use latchkey_proto::{ClientId, CodeVerifier, RedirectUri, Scope, TokenHash};
use latchkey_store::SqliteStore;

/// A JWT signing input of realistic size: an RS256 access token's header and claims.
const SIGNING_INPUT: &[u8] = b"eyJhbGciOiJSUzI1NiIsImtpZCI6IjZCTlVfWTVIVGVPaE1KV0ZTOWk5bEhGRnZ5NzlQaGFJRjNTQkpkZ1FqbzQiLCJ0eXAiOiJhdCtqd3QifQ.eyJpc3MiOiJodHRwOi8vMTI3LjAuMC4xOjgwODAiLCJzdWIiOiJQaThDdnlrdGZhMWo0Q3hGWnNfRVpBIiwiYXVkIjoiaHR0cDovLzEyNy4wLjAuMTo4MDgwIiwiZXhwIjoxNzAwMDAwNjAwLCJpYXQiOjE3MDAwMDAwMDAsImp0aSI6IktQWWt0YW5oRXdHdEVGYU9NMmZ4dTRQLURmSE9XQkVKX0pNckdkZEhLOWciLCJjbGllbnRfaWQiOiJsYXRjaGtleS1iZW5jaCIsInNjb3BlIjoiZW1haWwgb3BlbmlkIHByb2ZpbGUiLCJhdXRoX3RpbWUiOjE3MDAwMDAwMDB9";

fn pkce(c: &mut Criterion) {
    // RFC 7636 Appendix B.
    let verifier = CodeVerifier::parse("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk").unwrap();
    let challenge = verifier.challenge();
    c.bench_function("pkce/verify_s256", |b| b.iter(|| std::hint::black_box(verifier.matches(&challenge))));
}

fn signing(c: &mut Criterion) {
    let rng = SystemRandom::new();
    let rsa = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let rsa_pub = rsa.public_key().as_ref().to_vec();
    let mut rsa_sig = vec![0u8; rsa.public_modulus_len()];
    let ec_pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let ec = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, ec_pkcs8.as_ref()).unwrap();
    let ed_pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let ed = Ed25519KeyPair::from_pkcs8(ed_pkcs8.as_ref()).unwrap();

    let mut g = c.benchmark_group("sign");
    g.bench_function("rs256_rsa2048", |b| {
        b.iter(|| rsa.sign(&signature::RSA_PKCS1_SHA256, &rng, SIGNING_INPUT, &mut rsa_sig).unwrap())
    });
    g.bench_function("es256_p256", |b| b.iter(|| ec.sign(&rng, SIGNING_INPUT).unwrap()));
    g.bench_function("eddsa_ed25519", |b| b.iter(|| ed.sign(SIGNING_INPUT)));
    g.finish();

    rsa.sign(&signature::RSA_PKCS1_SHA256, &rng, SIGNING_INPUT, &mut rsa_sig).unwrap();
    let ec_sig = ec.sign(&rng, SIGNING_INPUT).unwrap();
    let ed_sig = ed.sign(SIGNING_INPUT);
    let rsa_key = UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, rsa_pub);
    let ec_key = UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, ec.public_key().as_ref().to_vec());
    let ed_key = UnparsedPublicKey::new(&signature::ED25519, ed.public_key().as_ref().to_vec());
    let mut g = c.benchmark_group("verify");
    g.bench_function("rs256_rsa2048", |b| b.iter(|| rsa_key.verify(SIGNING_INPUT, &rsa_sig).unwrap()));
    g.bench_function("es256_p256", |b| b.iter(|| ec_key.verify(SIGNING_INPUT, ec_sig.as_ref()).unwrap()));
    g.bench_function("eddsa_ed25519", |b| b.iter(|| ed_key.verify(SIGNING_INPUT, ed_sig.as_ref()).unwrap()));
    g.finish();

    // Latchkey's own path: claims to JSON, base64url, sign; and the verification userinfo does.
    let record = SigningKey::generate(latchkey_core::store::SigningAlg::RS256, 1).unwrap();
    let keys = KeySet::from_records(std::slice::from_ref(&record)).unwrap();
    let claims = serde_json::json!({
        "iss": "http://127.0.0.1:8080", "sub": "Pi8Cvyktfa1j4CxFZs_EZA", "aud": "http://127.0.0.1:8080",
        "exp": 1_700_000_600, "iat": 1_700_000_000, "jti": "KPYktanhEwGtEFaOM2fxu4P-DfHOWBEJ_JMrGddHK9g",
        "client_id": "latchkey-bench", "scope": "email openid profile", "auth_time": 1_700_000_000
    });
    let token = keys.signer(latchkey_core::store::SigningAlg::RS256).unwrap().sign("at+jwt", &claims).unwrap();
    let mut g = c.benchmark_group("latchkey_jwt");
    g.bench_function("sign_access_token_rs256", |b| {
        b.iter(|| keys.signer(latchkey_core::store::SigningAlg::RS256).unwrap().sign("at+jwt", &claims).unwrap())
    });
    g.bench_function("verify_access_token_rs256", |b| {
        b.iter(|| keys.verify::<serde_json::Value>(&token, "at+jwt").unwrap())
    });
    // Parsing the PKCS#8 key on every signature instead of once (what a naive signer does).
    let der = RsaKeyPair::generate(KeySize::Rsa2048).unwrap().as_der().unwrap().as_ref().to_vec();
    g.bench_function("parse_rsa2048_pkcs8", |b| b.iter(|| RsaKeyPair::from_pkcs8(&der).unwrap()));
    g.finish();
}

fn code_record(hash: TokenHash) -> CodeRecord {
    let verifier = CodeVerifier::parse("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk").unwrap();
    CodeRecord {
        hash,
        client_id: ClientId::parse("latchkey-bench").unwrap(),
        user_id: "user-1".into(),
        redirect_uri: RedirectUri::parse("http://127.0.0.1:8765/callback").unwrap(),
        scope: Scope::parse("openid profile email").unwrap(),
        code_challenge: verifier.challenge(),
        nonce: None,
        sid: "sid-1".into(),
        auth_time: 1,
        expires_at: i64::MAX / 2,
        used_at: None,
        grant_id: None,
        resource: None,
        authn: Default::default(),
        claims: None,
        dpop_jkt: None,
    }
}

fn issuance(n: u64) -> Issuance {
    let grant_id = format!("grant-{n}");
    Issuance {
        grant: GrantRecord {
            id: grant_id.clone(),
            client_id: ClientId::parse("latchkey-bench").unwrap(),
            user_id: "user-1".into(),
            scope: Scope::parse("openid profile email").unwrap(),
            sid: "sid-1".into(),
            offline: false,
            auth_time: 1,
            created_at: 1,
            expires_at: i64::MAX / 2,
            revoked_at: None,
            resource: None,
            authn: Some(Default::default()),
            claims: None,
            dpop_jkt: None,
        },
        refresh: Some(refresh_record(&grant_id, &format!("rt-{n}-0"))),
        access: AccessRecord { jti: format!("jti-{n}-0"), grant_id, expires_at: i64::MAX / 2, revoked_at: None },
    }
}

fn refresh_record(grant_id: &str, token: &str) -> RefreshRecord {
    RefreshRecord {
        hash: TokenHash::of(token),
        grant_id: grant_id.into(),
        scope: Scope::parse("openid profile email").unwrap(),
        issued_at: 1,
        expires_at: i64::MAX / 2,
        consumed_at: None,
        cached_response: None,
    }
}

/// The store's one-time operations as the token endpoint calls them, with Latchkey's durability
/// (WAL, synchronous=FULL: an fsync per commit). Each iteration is sequential: this is the latency
/// of one commit, the throughput ceiling of one writer connection without group commit.
fn store(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("bench.db")).unwrap());
    let mut g = c.benchmark_group("store_sqlite_full");
    g.sample_size(20).measurement_time(Duration::from_secs(4));
    let mut n = 0u64;
    g.bench_function("insert_code", |b| {
        b.iter(|| {
            n += 1;
            rt.block_on(store.insert_code(&code_record(TokenHash::of(&format!("code-a-{n}"))))).unwrap();
        })
    });
    g.bench_function("redeem_code", |b| {
        b.iter_custom(|iters| {
            // Codes are inserted outside the timed part.
            let codes: Vec<TokenHash> = (0..iters)
                .map(|i| {
                    let h = TokenHash::of(&format!("code-b-{n}-{i}"));
                    rt.block_on(store.insert_code(&code_record(h.clone()))).unwrap();
                    h
                })
                .collect();
            let start = Instant::now();
            for (i, h) in codes.iter().enumerate() {
                rt.block_on(store.redeem_code(h, 2, &issuance(n * 1_000_000 + i as u64))).unwrap();
            }
            n += 1;
            start.elapsed()
        })
    });
    // One refresh family, rotated over and over.
    let family = issuance(u64::MAX / 2);
    let code = TokenHash::of("family-code");
    rt.block_on(store.insert_code(&code_record(code.clone()))).unwrap();
    rt.block_on(store.redeem_code(&code, 2, &family)).unwrap();
    let mut current = "rt-9223372036854775807-0".to_owned();
    let mut k = 0u64;
    g.bench_function("rotate_refresh", |b| {
        b.iter(|| {
            k += 1;
            let next = format!("rt-family-{k}");
            let access = AccessRecord {
                jti: format!("jti-family-{k}"),
                grant_id: family.grant.id.clone(),
                expires_at: 9,
                revoked_at: None,
            };
            let r = rt.block_on(store.rotate_refresh(
                &TokenHash::of(&current),
                3,
                &refresh_record(&family.grant.id, &next),
                &access,
                b"sealed reply",
            ));
            assert_eq!(r.unwrap(), latchkey_core::store::Rotated::Rotated);
            current = next;
        })
    });
    g.bench_function("read_refresh_token", |b| {
        b.iter(|| rt.block_on(store.refresh_token(&TokenHash::of(&current))).unwrap().unwrap())
    });
    g.finish();
}

/// One small write transaction under each durability setting, straight on rusqlite: what an fsync
/// per commit costs on this disk, and what synchronous=NORMAL (WAL: durable at checkpoint, never
/// corrupt) would save.
fn sqlite_commit(c: &mut Criterion) {
    let mut g = c.benchmark_group("sqlite_commit");
    g.sample_size(20).measurement_time(Duration::from_secs(4));
    for sync in ["FULL", "NORMAL"] {
        let dir = tempfile::tempdir().unwrap();
        let conn = rusqlite::Connection::open(dir.path().join("commit.db")).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.pragma_update(None, "synchronous", sync).unwrap();
        conn.execute_batch("CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT NOT NULL)").unwrap();
        let mut i = 0u64;
        g.bench_function(format!("wal_synchronous_{}", sync.to_lowercase()), |b| {
            b.iter(|| {
                i += 1;
                conn.execute(
                    "INSERT INTO t (k, v) VALUES (?1, 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx')",
                    [i.to_string()],
                )
                .unwrap();
            })
        });
    }
    g.finish();
}

fn argon2(c: &mut Criterion) {
    let phc = latchkey_core::password::hash_blocking("bench-password").unwrap();
    let mut g = c.benchmark_group("argon2id_owasp");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    g.bench_function("verify", |b| {
        b.iter(|| assert!(latchkey_core::password::verify_blocking("bench-password", &phc)))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = pkce, signing, store, sqlite_commit, argon2
}
criterion_main!(benches);
