//! `private_key_jwt` at the edge and in the core (RFC 7523): `parse_client_auth` with assertion
//! parameters, `ClientAssertion::parse`, and `verify` against a client's registered keys.
//!
//! The first byte picks how the rest is used:
//! 0: the form body of a token request (`client_assertion_type`, `client_assertion`, …);
//! 1: the whole input is an assertion: if the edge reads a client from it, the id is valid and
//!    `iss` = `sub`; it never verifies against a key the fuzzer does not hold;
//! 2: `payload` as JSON, signed with the registered key: it verifies exactly when every claim rule
//!    holds, checked here independently.
#![no_main]

use std::sync::OnceLock;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latchkey_proto::client_assertion::{ASSERTION_TYPE, AssertionRules, ClientAssertion, DEFAULT_ALGORITHMS};
use latchkey_proto::jose::KeySet;
use latchkey_proto::token::parse_client_auth;
use latchkey_proto::{ClientAuth, ClientId, Params};
use libfuzzer_sys::fuzz_target;

const NOW: i64 = 1_800_000_000;
const ISSUER: &str = "https://id.example";

struct Client {
    pair: EcdsaKeyPair,
    keys: KeySet,
}

fn client() -> &'static Client {
    static C: OnceLock<Client> = OnceLock::new();
    C.get_or_init(|| {
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).expect("key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).expect("key");
        let p = pair.public_key().as_ref();
        let jwks = serde_json::json!({ "keys": [{ "kty": "EC", "crv": "P-256", "kid": "k1",
            "x": URL_SAFE_NO_PAD.encode(&p[1..33]), "y": URL_SAFE_NO_PAD.encode(&p[33..]) }] });
        Client { pair, keys: KeySet::from_jwks(jwks.to_string().as_bytes()).expect("jwks") }
    })
}

fn verify(a: &ClientAssertion, id: &ClientId) -> bool {
    let rules =
        AssertionRules { client_id: id, audiences: &[ISSUER], max_lifetime: 300, skew: 10, sole_audience: false };
    a.verify(&client().keys, DEFAULT_ALGORITHMS, &rules, NOW).is_ok()
}

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = data.split_first() else { return };
    match mode % 3 {
        0 => {
            let Ok(params) = Params::parse(rest) else { return };
            if let Ok(ClientAuth::PrivateKeyJwt { client_id, assertion }) = parse_client_auth(&params, None) {
                assert_eq!(params.get("client_assertion_type"), Some(ASSERTION_TYPE));
                assert!(!params.contains("client_secret"), "two methods accepted");
                assert!(params.get("client_id").is_none_or(|id| id == client_id.as_str()));
                assert!(!format!("{assertion:?}").contains('.'), "the assertion shows in Debug output");
            }
        }
        1 => {
            let Ok(s) = std::str::from_utf8(rest) else { return };
            if let Ok((id, a)) = ClientAssertion::parse(s) {
                assert!(ClientId::parse(id.as_str()).is_ok());
                assert!(!verify(&a, &id), "an assertion the fuzzer made verified");
            }
        }
        _ => {
            let Ok(payload) = serde_json::from_slice::<serde_json::Value>(rest) else { return };
            let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","kid":"k1"}"#);
            let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(payload.to_string()));
            let sig = client().pair.sign(&SystemRandom::new(), input.as_bytes()).expect("sign");
            let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
            let Ok((id, a)) = ClientAssertion::parse(&token) else { return };
            let s = |k: &str| payload.get(k).and_then(|v| v.as_str());
            let i = |k: &str| payload.get(k).map(|v| v.as_i64());
            let aud_ok = match payload.get("aud") {
                Some(serde_json::Value::String(a)) => a == ISSUER,
                Some(serde_json::Value::Array(v)) => {
                    v.iter().all(|x| x.is_string()) && v.iter().any(|x| x.as_str() == Some(ISSUER))
                }
                _ => false,
            };
            let time_ok = |k: &str| match i(k) {
                None => true,
                Some(Some(t)) => t <= NOW + 10,
                Some(None) => false,
            };
            let exp_ok = matches!(i("exp"), Some(Some(e)) if e + 10 > NOW && e - NOW <= 300);
            let jti_ok = s("jti").is_some_and(|j| !j.is_empty() && j.len() <= 256);
            let expected = s("iss") == Some(id.as_str())
                && s("sub") == Some(id.as_str())
                && aud_ok
                && exp_ok
                && time_ok("nbf")
                && time_ok("iat")
                && jti_ok;
            assert_eq!(verify(&a, &id), expected, "{payload}");
        }
    }
});
