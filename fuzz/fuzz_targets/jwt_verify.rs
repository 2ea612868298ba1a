//! `KeySet::verify`: the JWS parsing and verification every bearer token goes through (userinfo).
//!
//! The first byte picks how the rest is used, so the fuzzer reaches past base64 and JSON:
//! 0: the whole input is the token;
//! 1: `header\npayload\nsignature`, each part base64url-encoded by the harness;
//! 2: `typ\nclaims`, signed with the real key: it must verify exactly when `typ` is the one asked for.
#![no_main]

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latchkey_core::keys::{KeySet, SigningKey, VerifyError};
use libfuzzer_sys::fuzz_target;

fn keys() -> &'static KeySet {
    static KEYS: OnceLock<KeySet> = OnceLock::new();
    KEYS.get_or_init(|| {
        let record = SigningKey::generate(latchkey_core::store::SigningAlg::RS256, 0).expect("key generation");
        KeySet::from_records(&[record]).expect("key set")
    })
}

/// JSON equality, with floats equal to within rounding: serde_json (without `float_roundtrip`) may
/// parse the same decimal text to neighbouring floats, e.g. 1e-82. Our own claims are integers and
/// strings; this is a property of the JSON parser, not a change made by signing (found by this target).
fn same(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value::{Array, Number, Object};
    match (a, b) {
        (Number(x), Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
            x == y || (x - y).abs() <= f64::EPSILON * 4.0 * x.abs().max(y.abs())
        }
        (Array(x), Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y)),
        (Object(x), Object(y)) => x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w))),
        _ => a == b,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = data.split_first() else { return };
    let keys = keys();
    match mode % 3 {
        0 => {
            let Ok(token) = std::str::from_utf8(rest) else { return };
            // Nobody but us holds the private key: arbitrary input never verifies.
            assert!(keys.verify::<serde_json::Value>(token, "at+jwt").is_err());
        }
        1 => {
            let mut parts = rest.splitn(3, |b| *b == b'\n');
            let token = [parts.next(), parts.next(), parts.next()]
                .map(|p| URL_SAFE_NO_PAD.encode(p.unwrap_or_default()))
                .join(".");
            assert!(keys.verify::<serde_json::Value>(&token, "at+jwt").is_err());
        }
        _ => {
            let Ok(s) = std::str::from_utf8(rest) else { return };
            let (typ, claims) = s.split_once('\n').unwrap_or(("at+jwt", s));
            let Ok(claims) = serde_json::from_str::<serde_json::Value>(claims) else { return };
            let token = keys
                .signer(latchkey_core::store::SigningAlg::RS256)
                .expect("signer")
                .sign(typ, &claims)
                .expect("signing");
            match keys.verify::<serde_json::Value>(&token, "at+jwt") {
                Ok(back) => {
                    assert_eq!(typ, "at+jwt");
                    assert!(same(&back, &claims), "claims changed on the way through: {claims} -> {back}");
                }
                Err(VerifyError::WrongType) => assert_ne!(typ, "at+jwt"),
                // Claims that are not a JSON object are not a JWT claims set (RFC 7519 §7.2).
                Err(VerifyError::Malformed) => assert!(!claims.is_object(), "own token refused: {claims}"),
                Err(e) => panic!("a token we signed failed with {e:?}"),
            }
        }
    }
});
