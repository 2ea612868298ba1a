//! PKCE parameters (RFC 7636): `code_challenge` + `code_challenge_method`, and `code_verifier`.
//! The input is `method\nvalue`; a method of `-` stands for an absent one.
#![no_main]

use latchkey_proto::{CodeChallenge, CodeVerifier, ErrorCode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let (method, value) = s.split_once('\n').unwrap_or(("S256", s));
    let method = (method != "-").then_some(method);
    match CodeChallenge::parse_s256(Some(value), method) {
        Ok(c) => {
            assert_eq!(method, Some("S256"), "only S256 is accepted");
            assert_eq!(c.as_str().len(), 43);
        }
        Err(e) => assert_eq!(e.code, ErrorCode::InvalidRequest),
    }
    match CodeVerifier::parse(value) {
        Ok(v) => {
            // RFC 7636 §4.1: 43-128 unreserved characters; its S256 challenge is a valid challenge
            // that this verifier, and no other, matches.
            assert!((43..=128).contains(&value.len()));
            let challenge = v.challenge();
            let parsed = CodeChallenge::parse_s256(Some(challenge.as_str()), Some("S256")).expect("own challenge");
            assert!(v.matches(&parsed));
            if let Ok(other) = CodeChallenge::parse_s256(Some(value.get(..43).unwrap_or(value)), Some("S256")) {
                assert_eq!(v.matches(&other), other == parsed);
            }
        }
        Err(e) => assert_eq!(e.code, ErrorCode::InvalidRequest),
    }
});
