//! TOTP (RFC 6238) with the parameters every authenticator app supports: HMAC-SHA-1, 6 digits,
//! 30-second steps, and one step of skew either way (§5.2). The code arithmetic is the `totp-rs`
//! crate's; what is ours is the secret's life: generated from the OS CSPRNG (160 bits, RFC 4226
//! §4), sealed at rest, and a code accepted once ([`super::FactorStore::use_totp_step`]).

use rand::RngCore;
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, Builder, Secret, Totp};

use crate::UnixTime;
use crate::keys::{KeyEncryptionKey, SEALED_PREFIX, open_bytes, seal_bytes};

/// RFC 6238 §5.2: 30 seconds, "a balance between security and usability".
pub const STEP: u64 = 30;
/// Steps accepted before and after the current one (§5.2 recommends at most one).
pub const SKEW: u16 = 1;
pub const DIGITS: u8 = 6;

/// Domain separation for sealed TOTP secrets: a sealed blob opens only as this user's secret, so
/// rows cannot be swapped between users or with signing keys.
const SEAL_AAD: &[u8] = b"latchkey totp secret v1\0";

/// A code as typed by the person: six digits (spaces ignored, as apps show "123 456").
#[derive(Clone)]
pub struct TotpCode(String);

impl TotpCode {
    /// `None` unless it is exactly six digits once spaces are removed.
    pub fn parse(typed: &str) -> Option<Self> {
        let digits: String = typed.chars().filter(|c| !c.is_whitespace()).collect();
        (digits.len() == DIGITS as usize && digits.bytes().all(|b| b.is_ascii_digit())).then_some(Self(digits))
    }
}

impl std::fmt::Debug for TotpCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpCode([redacted])")
    }
}

/// A TOTP secret in the clear. Never logged; compared in constant time.
#[derive(Clone)]
pub struct TotpSecret([u8; 20]);

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSecret([redacted])")
    }
}

impl PartialEq for TotpSecret {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}
impl Eq for TotpSecret {}

impl TotpSecret {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 20];
        rand::rng().fill_bytes(&mut bytes);
        Self(bytes)
    }

    fn totp(&self, issuer: &str, account: &str) -> Totp {
        // Builder::build only refuses what these constants and 160-bit secrets never are;
        // `build_noncompliant` gives the same value without a fallible path.
        Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(DIGITS)
            .with_skew(SKEW)
            .with_step_duration(STEP)
            .with_secret(Secret::new_stack(self.0))
            .with_issuer(Some(label(issuer)))
            .with_account_name(label(account))
            .build_noncompliant()
    }

    /// The secret in base32 without padding, as people type it into an app by hand. Dangerous:
    /// shown only on the setup page to the account's own session.
    pub fn expose_base32(&self) -> String {
        Secret::new_stack(self.0).to_base32()
    }

    /// The `otpauth://totp/…` URI apps read from the QR code (Key URI Format): `issuer` names the
    /// service (the issuer's host), `account` the user.
    pub fn otpauth_uri(&self, issuer: &str, account: &str) -> String {
        self.totp(issuer, account).to_url().unwrap_or_default()
    }

    /// The time step the code belongs to, within one step of `now`'s; `None` if it is none of
    /// them. The caller must still accept the step once ([`super::FactorStore::use_totp_step`]).
    pub fn step_of(&self, code: &TotpCode, now: UnixTime) -> Option<i64> {
        let now = u64::try_from(now).ok()?;
        let step = self.totp("-", "-").check(&code.0, now)?;
        i64::try_from(step).ok()
    }

    /// The code for `time` (for tests and the self-check at setup).
    pub fn code_at(&self, time: UnixTime) -> String {
        self.totp("-", "-").generate(u64::try_from(time).unwrap_or(0)).to_string()
    }

    /// The form stored: sealed under `kek` for `user_id` when there is one, else base32.
    pub fn to_stored(&self, kek: Option<&KeyEncryptionKey>, user_id: &str) -> anyhow::Result<String> {
        match kek {
            Some(k) => seal_bytes(k, &aad(user_id), &self.0),
            None => Ok(self.expose_base32()),
        }
    }

    /// Reads a stored secret. A sealed one needs the key it was sealed with.
    pub fn from_stored(stored: &str, kek: Option<&KeyEncryptionKey>, user_id: &str) -> anyhow::Result<Self> {
        let bytes = if stored.starts_with(SEALED_PREFIX) {
            let kek = kek.ok_or_else(|| {
                anyhow::anyhow!("the TOTP secret of user {user_id} is sealed but no key-encryption key is configured")
            })?;
            open_bytes(kek, &aad(user_id), stored).ok_or_else(|| {
                anyhow::anyhow!("the TOTP secret of user {user_id} does not open with the key-encryption key")
            })?
        } else {
            Secret::try_from_base32(stored)
                .map_err(|_| anyhow::anyhow!("the TOTP secret of user {user_id} is not base32"))?
                .as_bytes()
                .to_vec()
        };
        let bytes: [u8; 20] =
            bytes.try_into().map_err(|_| anyhow::anyhow!("the TOTP secret of user {user_id} is not 160 bits"))?;
        Ok(Self(bytes))
    }
}

fn aad(user_id: &str) -> Vec<u8> {
    let mut a = SEAL_AAD.to_vec();
    a.extend_from_slice(user_id.as_bytes());
    a
}

/// Key URI labels may not contain a colon (it separates issuer and account).
fn label(s: &str) -> String {
    let s = s.replace(':', "_");
    if s.trim().is_empty() { "Latchkey".to_owned() } else { s }
}

/// The issuer label apps show next to the code: the issuer URL's host.
pub fn issuer_label(issuer: &str) -> String {
    url::Url::parse(issuer).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_else(|| "Latchkey".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    /// RFC 6238 Appendix B, SHA-1 rows (the 20-byte ASCII key "12345678901234567890"), last six
    /// digits of each eight-digit value.
    #[test]
    fn rfc_6238_appendix_b_vectors() {
        let s = TotpSecret(*b"12345678901234567890");
        for (t, eight) in [
            (59, "94287082"),
            (1111111109, "07081804"),
            (1111111111, "14050471"),
            (1234567890, "89005924"),
            (2000000000, "69279037"),
        ] {
            assert_eq!(s.code_at(t), eight[2..], "T = {t}");
        }
    }

    #[test]
    fn one_step_of_skew_either_way_and_no_more() {
        let s = TotpSecret::generate();
        let now = 1_700_000_015; // mid-step
        let step = now / 30;
        for (offset, expect) in [(-60, None), (-30, Some(step - 1)), (0, Some(step)), (30, Some(step + 1)), (60, None)]
        {
            let code = TotpCode::parse(&s.code_at(now + offset)).unwrap();
            assert_eq!(s.step_of(&code, now), expect, "offset {offset}");
        }
        assert!(TotpCode::parse("123 456").is_some());
        assert!(TotpCode::parse("12345").is_none());
        assert!(TotpCode::parse("+12345").is_none());
        assert!(TotpCode::parse("１２３４５６").is_none(), "ASCII digits only");
    }

    #[test]
    fn sealed_secrets_open_only_for_their_user_with_their_key() {
        let kek = KeyEncryptionKey::from_base64(&base64::engine::general_purpose::STANDARD.encode([7u8; 32])).unwrap();
        let other =
            KeyEncryptionKey::from_base64(&base64::engine::general_purpose::STANDARD.encode([8u8; 32])).unwrap();
        let s = TotpSecret::generate();
        let stored = s.to_stored(Some(&kek), "u1").unwrap();
        assert!(stored.starts_with(SEALED_PREFIX));
        assert!(!stored.contains(&s.expose_base32()));
        assert_eq!(TotpSecret::from_stored(&stored, Some(&kek), "u1").unwrap(), s);
        assert!(TotpSecret::from_stored(&stored, Some(&kek), "u2").is_err(), "moved to another user");
        assert!(TotpSecret::from_stored(&stored, Some(&other), "u1").is_err());
        assert!(TotpSecret::from_stored(&stored, None, "u1").is_err());
        let plain = s.to_stored(None, "u1").unwrap();
        assert_eq!(TotpSecret::from_stored(&plain, None, "u1").unwrap(), s);
        assert_eq!(format!("{s:?}"), "TotpSecret([redacted])");
    }

    #[test]
    fn the_uri_names_issuer_account_and_secret() {
        let s = TotpSecret(*b"12345678901234567890");
        let uri = s.otpauth_uri(&issuer_label("https://id.example.com"), "ali:ce");
        assert_eq!(
            uri,
            "otpauth://totp/id.example.com:ali_ce?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=id.example.com"
        );
    }
}
