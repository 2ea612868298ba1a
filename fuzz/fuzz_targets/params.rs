//! `Params::parse` on arbitrary bytes: a query string or a form body exactly as a client sends it.
#![no_main]

use latchkey_proto::params::MAX_PARAMS;
use latchkey_proto::{ErrorCode, Params};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match Params::parse(data) {
        Ok(p) => {
            let all: Vec<(&str, &str)> = p.iter().collect();
            assert!(all.len() <= MAX_PARAMS, "more than MAX_PARAMS parameters accepted");
            for (i, (k, v)) in all.iter().enumerate() {
                // RFC 6749 §3.1: an empty value counts as absent, and no name appears twice.
                assert!(!v.is_empty(), "empty value kept for {k:?}");
                assert!(all[..i].iter().all(|(seen, _)| seen != k), "duplicate {k:?} accepted");
                assert_eq!(p.get(k), Some(*v));
            }
        }
        Err(e) => {
            // RFC 8707 §2: a repeated `resource` is invalid_target; any other fault invalid_request.
            if e.code == ErrorCode::InvalidTarget {
                assert!(e.description.contains("resource"), "{}", e.description);
            } else {
                assert_eq!(e.code, ErrorCode::InvalidRequest);
            }
            // The description names the parameter, never a value; it must stay printable and short.
            assert!(e.description.len() < 200, "description too long: {}", e.description.len());
        }
    }
});
