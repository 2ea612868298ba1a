//! Recovery codes: ten single-use codes a person keeps on paper for the day their phone is gone.
//!
//! Each is 80 random bits, written as 16 characters of Crockford's base32 in groups of four
//! (`7k2m-q9xd-…`): no I, L, O or U, and typing is forgiving (case, spaces and dashes ignored,
//! `o` read as `0`, `i`/`l` as `1`). Only a hash is stored: SHA-256 over the user's id and the
//! code. 80 bits need no slow hash: a stolen table would take 2^79 guesses per code on average.
//! The user id in the hash keeps one code's hash from matching another user's.

use latchkey_proto::TokenHash;
use rand::RngCore;

/// How many codes a set has.
pub const COUNT: usize = 10;

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
const SYMBOLS: usize = 16;

/// A recovery code, as generated or as typed. Never logged.
#[derive(Clone)]
pub struct RecoveryCode(String);

impl std::fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecoveryCode([redacted])")
    }
}

impl RecoveryCode {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 10];
        rand::rng().fill_bytes(&mut bytes);
        // 80 bits, five at a time.
        let mut acc: u128 = 0;
        for b in bytes {
            acc = (acc << 8) | u128::from(b);
        }
        let s = (0..SYMBOLS).map(|i| ALPHABET[((acc >> (5 * (SYMBOLS - 1 - i))) & 31) as usize] as char).collect();
        Self(s)
    }

    /// A typed code in its canonical form; `None` if it cannot be one.
    pub fn parse(typed: &str) -> Option<Self> {
        let mut out = String::with_capacity(SYMBOLS);
        for c in typed.chars() {
            let c = match c.to_ascii_lowercase() {
                ' ' | '-' | '\t' => continue,
                'o' => '0',
                'i' | 'l' => '1',
                c if ALPHABET.contains(&(c as u8)) && c.is_ascii() => c,
                _ => return None,
            };
            if out.len() == SYMBOLS {
                return None;
            }
            out.push(c);
        }
        (out.len() == SYMBOLS).then_some(Self(out))
    }

    /// The code as shown to the person: four groups of four. Dangerous: only for the one page
    /// that shows a new set.
    pub fn expose_grouped(&self) -> String {
        self.0.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join("-")
    }

    /// The stored form for `user_id`.
    pub fn hash(&self, user_id: &str) -> String {
        TokenHash::of(&format!("latchkey recovery code v1\0{user_id}\0{}", self.0)).as_str().to_owned()
    }
}

/// A fresh set: the codes to show once, and their hashes to store.
pub fn new_set(user_id: &str) -> (Vec<RecoveryCode>, Vec<String>) {
    let codes: Vec<RecoveryCode> = (0..COUNT).map(|_| RecoveryCode::generate()).collect();
    let hashes = codes.iter().map(|c| c.hash(user_id)).collect();
    (codes, hashes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_80_bits_and_typed_forgivingly() {
        let c = RecoveryCode::generate();
        let shown = c.expose_grouped();
        assert_eq!(shown.len(), 19);
        let typed = format!("  {} ", shown.to_uppercase().replace('-', " "));
        assert_eq!(RecoveryCode::parse(&typed).unwrap().hash("u"), c.hash("u"));
        assert_eq!(RecoveryCode::parse("oooo-iiii-llll-0000").unwrap().0, "0000111111110000");
        assert!(RecoveryCode::parse("abcd-efgh-jkmn-pqr").is_none(), "too short");
        assert!(RecoveryCode::parse("abcd-efgh-jkmn-pqrst").is_none(), "too long");
        assert!(RecoveryCode::parse("abcd-efgh-jkmn-pqru").is_none(), "u is not in the alphabet");
        assert_ne!(c.hash("u1"), c.hash("u2"), "bound to the user");
        let (codes, hashes) = new_set("u");
        assert_eq!((codes.len(), hashes.len()), (COUNT, COUNT));
        let distinct: std::collections::BTreeSet<_> = hashes.iter().collect();
        assert_eq!(distinct.len(), COUNT);
        assert_eq!(format!("{c:?}"), "RecoveryCode([redacted])");
    }
}
