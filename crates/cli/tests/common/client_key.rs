//! A `private_key_jwt` client's side (RFC 7523 §2.2), made with aws-lc-rs independently of the
//! server's code: an ES256 (or RS256) key pair, its public JWK Set, and signed client assertions.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

/// `client_assertion_type` of a JWT assertion.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

enum Pair {
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

pub struct ClientKey {
    pair: Pair,
    pub kid: String,
}

fn b64(v: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(v)
}

impl ClientKey {
    pub fn generate(kid: &str) -> Self {
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).unwrap();
        Self { pair: Pair::Ec(pair), kid: kid.to_owned() }
    }

    /// An RSA-2048 key that signs RS256.
    pub fn generate_rsa(kid: &str) -> Self {
        Self { pair: Pair::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).unwrap()), kid: kid.to_owned() }
    }

    fn alg(&self) -> &'static str {
        match self.pair {
            Pair::Ec(_) => "ES256",
            Pair::Rsa(_) => "RS256",
        }
    }

    /// The public JWK (EC: the uncompressed point 0x04 || x || y).
    pub fn jwk(&self) -> serde_json::Value {
        match &self.pair {
            Pair::Ec(pair) => {
                let p = pair.public_key().as_ref();
                json!({ "kty": "EC", "crv": "P-256", "kid": self.kid, "alg": "ES256", "use": "sig", "x": b64(&p[1..33]), "y": b64(&p[33..]) })
            }
            Pair::Rsa(pair) => {
                let p = pair.public_key();
                let (n, e) = (p.modulus(), p.exponent());
                json!({ "kty": "RSA", "kid": self.kid, "alg": "RS256", "use": "sig", "n": b64(n.big_endian_without_leading_zero()), "e": b64(e.big_endian_without_leading_zero()) })
            }
        }
    }

    /// The private JWK (EC only: the public members and the scalar `d`, RFC 7518 §6.2.2), for a
    /// client made in another language that signs its own assertions with this key.
    pub fn private_jwk(&self) -> serde_json::Value {
        use aws_lc_rs::encoding::AsBigEndian;
        let Pair::Ec(pair) = &self.pair else { panic!("private_jwk is for EC keys") };
        let d = pair.private_key().as_be_bytes().unwrap();
        let mut jwk = self.jwk();
        jwk["d"] = b64(d.as_ref()).into();
        jwk
    }

    /// A JWK Set of these keys' public halves, as JSON text.
    pub fn jwks(keys: &[&ClientKey]) -> String {
        json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() }).to_string()
    }

    /// A compact JWS of `claims` with `kid` in the header.
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let header = json!({ "alg": self.alg(), "typ": "JWT", "kid": self.kid });
        let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
        let sig = match &self.pair {
            Pair::Ec(pair) => pair.sign(&SystemRandom::new(), input.as_bytes()).unwrap().as_ref().to_vec(),
            Pair::Rsa(pair) => {
                let mut sig = vec![0; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), input.as_bytes(), &mut sig).unwrap();
                sig
            }
        };
        format!("{input}.{}", b64(&sig))
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
