//! A software authenticator for tests: answers `navigator.credentials.create()` and `.get()`
//! options as a platform authenticator would (ES256, "none" attestation), with switches for the
//! behaviours the server must refuse (no user verification, a counter that goes backwards, a
//! cloned key). Test code only (`test-util`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// One credential on one authenticator. `Clone` copies the key: a cloned authenticator. It
/// (de)serialises whole, private key included, so that a benchmark fixture can hand a credential
/// from the process that registered it to the one that signs in with it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct SoftAuthenticator {
    pkcs8: Vec<u8>,
    pub cred_id: Vec<u8>,
    pub user_handle: Vec<u8>,
    /// The signature counter; it goes up by one before each signature when `counting`.
    pub counter: u32,
    pub counting: bool,
    /// Sets the UV flag (the person entered a PIN or used a biometric).
    pub user_verified: bool,
    pub backup_eligible: bool,
    pub backup_state: bool,
    rp_id: String,
}

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

fn head(out: &mut Vec<u8>, major: u8, len: usize) {
    match len {
        0..=23 => out.push(major << 5 | len as u8),
        24..=255 => out.extend([major << 5 | 24, len as u8]),
        _ => {
            out.push(major << 5 | 25);
            out.extend((len as u16).to_be_bytes());
        }
    }
}

fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    head(out, 2, b.len());
    out.extend_from_slice(b);
}

fn text(out: &mut Vec<u8>, s: &str) {
    head(out, 3, s.len());
    out.extend_from_slice(s.as_bytes());
}

impl SoftAuthenticator {
    /// A fresh authenticator for relying party `rp_id`: counting, verifying, device-bound.
    pub fn new(rp_id: &str) -> Self {
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
        let mut cred_id = vec![0u8; 32];
        aws_lc_rs::rand::fill(&mut cred_id).unwrap();
        Self {
            pkcs8: key.to_pkcs8v1().unwrap().as_ref().to_vec(),
            cred_id,
            user_handle: Vec::new(),
            counter: 0,
            counting: true,
            user_verified: true,
            backup_eligible: false,
            backup_state: false,
            rp_id: rp_id.to_owned(),
        }
    }

    fn key(&self) -> EcdsaKeyPair {
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &self.pkcs8).unwrap()
    }

    fn flags(&self, attested: bool) -> u8 {
        let mut f = 0x01; // UP
        if self.user_verified {
            f |= 0x04;
        }
        if self.backup_eligible {
            f |= 0x08;
        }
        if self.backup_state {
            f |= 0x10;
        }
        if attested {
            f |= 0x40;
        }
        f
    }

    fn auth_data(&self, attested: bool) -> Vec<u8> {
        let mut d = Sha256::digest(self.rp_id.as_bytes()).to_vec();
        d.push(self.flags(attested));
        d.extend(self.counter.to_be_bytes());
        if attested {
            d.extend([0u8; 16]); // AAGUID
            d.extend((self.cred_id.len() as u16).to_be_bytes());
            d.extend(&self.cred_id);
            // COSE_Key, EC2 P-256 ES256: {1: 2, 3: -7, -1: 1, -2: x, -3: y}
            let public = self.key().public_key().as_ref().to_vec();
            let mut k = vec![0xa5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21];
            bytes(&mut k, &public[1..33]);
            k.push(0x22);
            bytes(&mut k, &public[33..65]);
            d.extend(k);
        }
        d
    }

    fn client_data(kind: &str, options: &Value, origin: &str) -> Vec<u8> {
        let challenge = options["publicKey"]["challenge"].as_str().expect("options carry a challenge");
        json!({ "type": kind, "challenge": challenge, "origin": origin, "crossOrigin": false }).to_string().into_bytes()
    }

    /// The `PublicKeyCredential` (as JSON) that `navigator.credentials.create(options)` returns.
    pub fn create(&mut self, options: &Value, origin: &str) -> Value {
        let user = options["publicKey"]["user"]["id"].as_str().expect("options name a user");
        self.user_handle = URL_SAFE_NO_PAD.decode(user).unwrap();
        let client_data = Self::client_data("webauthn.create", options, origin);
        let mut att = vec![0xa3];
        text(&mut att, "fmt");
        text(&mut att, "none");
        text(&mut att, "attStmt");
        att.push(0xa0);
        text(&mut att, "authData");
        bytes(&mut att, &self.auth_data(true));
        json!({
            "id": b64(&self.cred_id),
            "rawId": b64(&self.cred_id),
            "type": "public-key",
            "response": { "attestationObject": b64(&att), "clientDataJSON": b64(&client_data), "transports": ["internal"] },
            "extensions": {},
        })
    }

    /// The `PublicKeyCredential` (as JSON) that `navigator.credentials.get(options)` returns.
    pub fn get(&mut self, options: &Value, origin: &str) -> Value {
        if self.counting {
            self.counter += 1;
        }
        let client_data = Self::client_data("webauthn.get", options, origin);
        let auth_data = self.auth_data(false);
        let mut signed = auth_data.clone();
        signed.extend(Sha256::digest(&client_data));
        let sig = self.key().sign(&SystemRandom::new(), &signed).unwrap();
        json!({
            "id": b64(&self.cred_id),
            "rawId": b64(&self.cred_id),
            "type": "public-key",
            "response": {
                "authenticatorData": b64(&auth_data),
                "clientDataJSON": b64(&client_data),
                "signature": b64(sig.as_ref()),
                "userHandle": b64(&self.user_handle),
            },
            "extensions": {},
        })
    }
}
