//! `Scope::parse` (RFC 6749 §3.3): accepted scopes round-trip through their wire form.
#![no_main]

use latchkey_proto::{ErrorCode, Scope};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    match Scope::parse(s) {
        Ok(scope) => {
            let wire = scope.to_string();
            assert_eq!(Scope::parse(&wire).as_ref(), Ok(&scope), "round trip of {wire:?}");
            for token in scope.iter() {
                assert!(!token.is_empty() && token.len() <= 128);
                assert!(token.bytes().all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b)));
                assert!(scope.contains(token));
            }
            assert!(scope.is_subset(&scope) && scope.missing_from(&scope).is_empty());
        }
        Err(e) => assert_eq!(e.code, ErrorCode::InvalidScope),
    }
});
