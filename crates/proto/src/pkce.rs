//! Proof Key for Code Exchange (RFC 7636), S256 only.
//!
//! `plain` is refused: it protects nothing if the authorization request is observed, and OAuth 2.1
//! §4.1.1 / RFC 9700 §2.1.1 make S256 the method a server must support and clients must use.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::OAuthError;

/// RFC 7636 §4.1: unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~".
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// A `code_challenge` sent with `code_challenge_method=S256`: the base64url (no padding) SHA-256 of
/// the verifier, so exactly 43 characters of the base64url alphabet.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct CodeChallenge(String);

impl CodeChallenge {
    /// Validates the `code_challenge` / `code_challenge_method` pair of an authorization request.
    pub fn parse_s256(challenge: Option<&str>, method: Option<&str>) -> Result<Self, OAuthError> {
        match method {
            Some("S256") => {}
            Some("plain") => {
                return Err(OAuthError::invalid_request(
                    "code_challenge_method=plain is not allowed: PKCE requires code_challenge_method=S256",
                ));
            }
            Some(_) => {
                return Err(OAuthError::invalid_request(
                    "unsupported code_challenge_method: PKCE requires code_challenge_method=S256",
                ));
            }
            None => {
                return Err(OAuthError::invalid_request(if challenge.is_some() {
                    "code_challenge_method is missing (it would default to plain): PKCE requires code_challenge_method=S256"
                } else {
                    "code_challenge is required: PKCE with code_challenge_method=S256 is mandatory for every client"
                }));
            }
        }
        let Some(c) = challenge else {
            return Err(OAuthError::invalid_request(
                "code_challenge is required: PKCE with code_challenge_method=S256 is mandatory for every client",
            ));
        };
        let well_formed = c.len() == 43
            && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && URL_SAFE_NO_PAD.decode(c).is_ok_and(|d| d.len() == 32);
        if !well_formed {
            return Err(OAuthError::invalid_request(
                "code_challenge must be the base64url-encoded SHA-256 of the code_verifier: 43 characters of [A-Za-z0-9-_] (code_challenge_method=S256)",
            ));
        }
        Ok(Self(c.to_owned()))
    }

    pub fn from_stored(s: String) -> Self {
        Self(s)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A `code_verifier` (RFC 7636 §4.1): 43 to 128 unreserved characters. Secret until the code is
/// redeemed, so it has a redacted `Debug`.
#[derive(Clone)]
pub struct CodeVerifier(String);

impl std::fmt::Debug for CodeVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CodeVerifier([redacted])")
    }
}

impl CodeVerifier {
    pub fn parse(s: &str) -> Result<Self, OAuthError> {
        if !(43..=128).contains(&s.len()) || !s.bytes().all(is_unreserved) {
            return Err(OAuthError::invalid_request(
                "code_verifier must be 43 to 128 characters of [A-Za-z0-9-._~] (RFC 7636 §4.1)",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// A fresh verifier from 32 random bytes: 43 characters, as RFC 7636 §4.1 recommends.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// The S256 challenge of this verifier: BASE64URL(SHA256(ASCII(code_verifier))).
    pub fn challenge(&self) -> CodeChallenge {
        CodeChallenge(URL_SAFE_NO_PAD.encode(Sha256::digest(self.0.as_bytes())))
    }

    /// RFC 7636 §4.6, compared in constant time.
    pub fn matches(&self, challenge: &CodeChallenge) -> bool {
        self.challenge().0.as_bytes().ct_eq(challenge.0.as_bytes()).into()
    }

    /// The verifier itself. Dangerous: with the code, it redeems tokens. Send it only to the token endpoint.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7636 Appendix B.
    #[test]
    fn rfc7636_appendix_b_vector() {
        let v = CodeVerifier::parse("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk").unwrap();
        assert_eq!(v.challenge().as_str(), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        let c = CodeChallenge::parse_s256(Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"), Some("S256")).unwrap();
        assert!(v.matches(&c));
        let other = CodeVerifier::parse("different-verifier-different-verifier-different").unwrap();
        assert!(!other.matches(&c));
    }

    #[test]
    fn plain_and_missing_methods_are_refused_naming_s256() {
        let c = Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        for m in [Some("plain"), None, Some("s256"), Some("S512")] {
            let e = CodeChallenge::parse_s256(c, m).unwrap_err();
            assert_eq!(e.code, crate::ErrorCode::InvalidRequest);
            assert!(e.description.contains("S256"), "{m:?}: {}", e.description);
        }
        let e = CodeChallenge::parse_s256(None, None).unwrap_err();
        assert!(e.description.contains("code_challenge is required"));
    }

    #[test]
    fn malformed_challenges_are_refused() {
        for c in [
            "short",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-c",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-c=",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw+cM",
        ] {
            assert!(CodeChallenge::parse_s256(Some(c), Some("S256")).is_err(), "{c}");
        }
    }

    #[test]
    fn verifier_length_and_alphabet() {
        assert!(CodeVerifier::parse(&"a".repeat(42)).is_err());
        assert!(CodeVerifier::parse(&"a".repeat(43)).is_ok());
        assert!(CodeVerifier::parse(&"a".repeat(128)).is_ok());
        assert!(CodeVerifier::parse(&"a".repeat(129)).is_err());
        assert!(CodeVerifier::parse(&format!("{}+", "a".repeat(43))).is_err());
        assert!(CodeVerifier::parse("different-verifier").is_err());
        let g = CodeVerifier::generate();
        assert_eq!(g.expose_secret().len(), 43);
        assert!(g.matches(&g.challenge()));
        assert_eq!(format!("{g:?}"), "CodeVerifier([redacted])");
    }
}
