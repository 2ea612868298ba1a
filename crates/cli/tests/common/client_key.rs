//! A `private_key_jwt` client's side (RFC 7523 §2.2), made with aws-lc-rs independently of the
//! server's code: an ES256 key pair, its public JWK Set, and signed client assertions.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

/// `client_assertion_type` of a JWT assertion.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

pub struct ClientKey {
    pair: EcdsaKeyPair,
    pub kid: String,
}

fn b64(v: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(v)
}

impl ClientKey {
    pub fn generate(kid: &str) -> Self {
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).unwrap();
        Self { pair, kid: kid.to_owned() }
    }

    /// The public JWK (uncompressed point: 0x04 || x || y).
    pub fn jwk(&self) -> serde_json::Value {
        let p = self.pair.public_key().as_ref();
        json!({ "kty": "EC", "crv": "P-256", "kid": self.kid, "alg": "ES256", "use": "sig", "x": b64(&p[1..33]), "y": b64(&p[33..]) })
    }

    /// A JWK Set of these keys' public halves, as JSON text.
    pub fn jwks(keys: &[&ClientKey]) -> String {
        json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() }).to_string()
    }

    /// A compact JWS of `claims` with `kid` in the header.
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let header = json!({ "alg": "ES256", "typ": "JWT", "kid": self.kid });
        let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
        let sig = self.pair.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", b64(sig.as_ref()))
    }

    /// The claims of a good assertion: for `client_id`, to `aud`, made at `now`, valid 60 s, a
    /// fresh `jti`.
    pub fn claims(client_id: &str, aud: &str, now: i64) -> serde_json::Value {
        json!({
            "iss": client_id,
            "sub": client_id,
            "aud": aud,
            "iat": now,
            "exp": now + 60,
            "jti": latchkey_proto::secret::random_token(),
        })
    }

    /// A good assertion (see [`Self::claims`]).
    pub fn assertion(&self, client_id: &str, aud: &str, now: i64) -> String {
        self.sign(&Self::claims(client_id, aud, now))
    }
}
