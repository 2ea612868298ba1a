//! An RSA key that signs test tokens with any header, valid or not.
#![allow(clippy::unwrap_used)]

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latchkey_proto::jose::KeySet;

pub struct TestKey {
    pair: RsaKeyPair,
    pub jwk: serde_json::Value,
}

impl TestKey {
    pub fn new(kid: &str) -> Self {
        let pair = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let p = pair.public_key();
        let jwk = serde_json::json!({"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
            "n": URL_SAFE_NO_PAD.encode(p.modulus().big_endian_without_leading_zero()),
            "e": URL_SAFE_NO_PAD.encode(p.exponent().big_endian_without_leading_zero())});
        Self { pair, jwk }
    }

    pub fn set(&self) -> KeySet {
        KeySet::from_jwks(serde_json::json!({ "keys": [self.jwk] }).to_string().as_bytes()).unwrap()
    }

    pub fn sign(&self, header: serde_json::Value, claims: serde_json::Value) -> String {
        let input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let mut sig = vec![0; self.pair.public_modulus_len()];
        self.pair.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), input.as_bytes(), &mut sig).unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(&sig))
    }
}
