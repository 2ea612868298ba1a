//! Access-token validations per second on one core: the full check of `Verifier::verify_at`
//! (header, alg allow-list, typ, kid lookup in the cached JWKS, RS256 signature, claims) with
//! the keys already cached, as in steady state. Run: `cargo bench -p latchkey-resource`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::{TestIssuer, TestKey};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use latchkey_resource::Verifier;
use serde_json::json;

fn validate(c: &mut Criterion) {
    // One thread: the figure is per core.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let key = TestKey::new("bench");
    let (issuer, verifier) = rt.block_on(async {
        let issuer = TestIssuer::start(&[&key]).await;
        let verifier = Verifier::builder(&issuer.base).clock(issuer.clock()).build().unwrap();
        verifier.refresh_keys().await.unwrap();
        (issuer, verifier)
    });
    let now = issuer.now();
    let token = key.access_token(&issuer.base, now, json!({}));
    let forged = key.access_token(&issuer.base, now, json!({"iss": "https://evil.example"}));
    let mut g = c.benchmark_group("verify");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("rs256_access_token_valid", |b| {
        b.iter(|| rt.block_on(verifier.verify_at(&token, now)).unwrap());
    });
    g.bench_function("rs256_access_token_wrong_iss", |b| {
        b.iter(|| rt.block_on(verifier.verify_at(&forged, now)).unwrap_err());
    });
    g.bench_function("alg_none_refused_before_crypto", |b| {
        let none = format!("{}.{}.", common::b64(r#"{"alg":"none","typ":"at+jwt"}"#), common::b64("{}"));
        b.iter(|| rt.block_on(verifier.verify_at(&none, now)).unwrap_err());
    });
    g.finish();
    assert_eq!(issuer.jwks_hits(), 1, "no network round trip per validation");
}

criterion_group!(benches, validate);
criterion_main!(benches);
