//! Redirect URI parsing, registration rules and matching (RFC 9700 §4.1.3, RFC 8252 §7.3).
//! The input is `requested\nregistered`.
#![no_main]

use latchkey_proto::RedirectUri;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let (requested, registered) = s.split_once('\n').unwrap_or((s, s));
    let req = RedirectUri::parse(requested);
    let reg = RedirectUri::parse_registration(registered);
    if let Ok(r) = &reg {
        // Whatever can be registered is also a valid redirect_uri parameter, and matches itself.
        let again = RedirectUri::parse(r.as_str()).expect("a registered URI parses as a parameter");
        assert!(again.matches_registered(r));
        assert!(!r.as_str().contains('#'), "registered URI with a fragment: {r}");
    }
    if let (Ok(q), Ok(r)) = (&req, &reg)
        && q.matches_registered(r)
        && q.as_str() != r.as_str()
    {
        // The only inexact match allowed: the port of a loopback host over http (the IP literals,
        // and `localhost`, which self-registered clients may register).
        for u in [q.as_str(), r.as_str()] {
            assert!(
                u.starts_with("http://127.0.0.1") || u.starts_with("http://[::1]") || u.starts_with("http://localhost"),
                "inexact match outside loopback: {q} ~ {r}"
            );
        }
        assert!(!q.as_str().contains('#') && !q.as_str().contains('@'), "{q} ~ {r}");
    }
});
