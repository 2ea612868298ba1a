//! `DpopProof::parse` and `check` (RFC 9449 §4.3): what the token endpoint, userinfo, the resource
//! library and the gate run on every `DPoP` header, before anything is known about the client.
//!
//! The first byte picks how the rest is used:
//! 0: the whole input is the proof;
//! 1: `header\npayload\nsignature`, each part base64url-encoded by the harness (reaches the JSON
//!    and key handling past base64);
//! 2: `method\nurl\nnonce`, made into a proof by a real key: it must parse, carry that key's
//!    thumbprint, and pass `check` for exactly that method and URL.
#![no_main]

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latchkey_proto::dpop::{DEFAULT_ALGORITHMS, DpopError, DpopKey, DpopProof, Expected};
use libfuzzer_sys::fuzz_target;

fn key() -> &'static DpopKey {
    static KEY: OnceLock<DpopKey> = OnceLock::new();
    KEY.get_or_init(|| DpopKey::generate().expect("key generation"))
}

const NOW: i64 = 1_800_000_000;

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = data.split_first() else { return };
    match mode % 3 {
        0 => {
            let Ok(proof) = std::str::from_utf8(rest) else { return };
            // Nothing the fuzzer writes carries a valid signature by the key in its own header.
            assert!(DpopProof::parse(proof, DEFAULT_ALGORITHMS).is_err());
        }
        1 => {
            let mut parts = rest.splitn(3, |b| *b == b'\n');
            let proof = [parts.next(), parts.next(), parts.next()]
                .map(|p| URL_SAFE_NO_PAD.encode(p.unwrap_or_default()))
                .join(".");
            assert!(DpopProof::parse(&proof, DEFAULT_ALGORITHMS).is_err());
        }
        _ => {
            let Ok(s) = std::str::from_utf8(rest) else { return };
            let mut it = s.splitn(3, '\n');
            let (method, url, nonce) = (it.next().unwrap_or(""), it.next().unwrap_or(""), it.next());
            let nonce = nonce.filter(|n| !n.is_empty());
            // A client cannot make a proof for a URL that does not parse (`proof` refuses it).
            let Ok(proof) = key().proof(method, url, NOW, nonce, Some("token")) else { return };
            match DpopProof::parse(&proof, DEFAULT_ALGORITHMS) {
                Ok(p) => {
                    assert_eq!(p.jkt, key().jkt());
                    assert_eq!((p.htm.as_str(), p.nonce.as_deref()), (method, nonce));
                    let expected = Expected { method, url, access_token: Some("token"), max_age: 60, max_skew: 5 };
                    assert_eq!(p.check(&expected, NOW), Ok(()), "own proof refused for {method:?} {url:?}");
                    let other_method = format!("{method}X");
                    let wrong = Expected { method: &other_method, ..expected };
                    assert!(matches!(p.check(&wrong, NOW), Err(DpopError::Method { .. })));
                    assert!(matches!(p.check(&expected, NOW + 61), Err(DpopError::Stale { .. })));
                    assert_eq!(
                        p.check(&Expected { access_token: Some("other"), ..expected }, NOW),
                        Err(DpopError::Ath)
                    );
                }
                // The only proof of ours that may be refused: one with an empty method.
                Err(e) => assert!(method.is_empty() && e == DpopError::Claim("htm"), "{e:?} for {method:?} {url:?}"),
            }
        }
    }
});
