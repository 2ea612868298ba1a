//! Argon2id password and client-secret hashing, off the async worker threads.
//!
//! Parameters are the argon2 crate's defaults, which are OWASP's recommendation for Argon2id
//! (m = 19 MiB, t = 2, p = 1). Hashing is CPU- and memory-heavy by design, so it runs on the
//! blocking pool, at most `permits` at a time: a burst of logins can neither starve the request
//! workers nor exhaust memory.
//!
//! Each permit owns one 19 MiB working area, allocated on first use and reused by every
//! verification after it. Allocating it per verification (what `PasswordVerifier` does) costs a
//! page fault per 4 KiB and, worse, glibc's allocator keeps freed areas of that size in per-thread
//! arenas: `latchkey-bench`'s login phase drove the server's peak RSS to 1.6 GiB that way, against
//! about 50 MiB with reuse.

use std::sync::{Arc, Mutex};

use anyhow::anyhow;
use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString, rand_core::OsRng};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

/// The working areas of the permits, free ones only. A permit always finds one here or makes one.
type Areas = Arc<Mutex<Vec<Vec<Block>>>>;

#[derive(Clone, Debug)]
pub struct Hasher {
    permits: Arc<Semaphore>,
    areas: Areas,
    /// A hash of a random password, verified against when the user does not exist, so that an
    /// unknown username takes as long as a wrong password (no user enumeration by timing).
    dummy: Arc<String>,
    verifications: Arc<std::sync::atomic::AtomicU64>,
}

pub fn hash_blocking(secret: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default().hash_password(secret.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| anyhow!("argon2: {e}"))
}

pub fn verify_blocking(secret: &str, phc: &str) -> bool {
    verify_in(secret.as_bytes(), phc, &mut Vec::new())
}

/// Verifies `secret` against the PHC string `phc`, with `area` as Argon2's working memory. The
/// area grows to the hash's memory cost once; a hash asking for more than the default (made with
/// other parameters) gets a one-off area, so that the kept ones stay at the default size.
fn verify_in(secret: &[u8], phc: &str, area: &mut Vec<Block>) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else { return false };
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else { return false };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm) else { return false };
    let Ok(version) = hash.version.map_or(Ok(Version::default()), Version::try_from) else { return false };
    let Ok(params) = Params::try_from(&hash) else { return false };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else { return false };
    let blocks = params.block_count();
    let mut one_off = Vec::new();
    let memory = if blocks <= Params::DEFAULT_M_COST as usize {
        if area.len() < blocks {
            area.resize(blocks, Block::new());
        }
        &mut area[..blocks]
    } else {
        one_off.resize(blocks, Block::new());
        &mut one_off[..]
    };
    let mut out = vec![0u8; expected.len()];
    if Argon2::new(algorithm, version, params).hash_password_into_with_memory(secret, salt, &mut out, memory).is_err() {
        return false;
    }
    // Constant time: a timing difference would tell how many leading bytes were right.
    out.ct_eq(expected.as_bytes()).into()
}

impl Hasher {
    pub fn new(parallelism: usize) -> anyhow::Result<Self> {
        let dummy = hash_blocking(&latchkey_proto::secret::random_token())?;
        Ok(Self {
            permits: Arc::new(Semaphore::new(parallelism.max(1))),
            areas: Default::default(),
            dummy: Arc::new(dummy),
            verifications: Default::default(),
        })
    }

    pub async fn hash(&self, secret: String) -> anyhow::Result<String> {
        let _permit = self.permits.acquire().await?;
        tokio::task::spawn_blocking(move || hash_blocking(&secret)).await?
    }

    /// Verifies `secret` against `phc`, or against the dummy hash when `phc` is `None`, and returns
    /// false in that case: the caller cannot tell the two apart by time.
    pub async fn verify(&self, secret: String, phc: Option<String>) -> anyhow::Result<bool> {
        let _permit = self.permits.acquire().await?;
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| self.dummy.as_ref().clone());
        let areas = self.areas.clone();
        let ok = tokio::task::spawn_blocking(move || {
            let mut area = take(&areas);
            let ok = verify_in(secret.as_bytes(), &phc, &mut area);
            give_back(&areas, area);
            ok
        })
        .await?;
        self.verifications.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(known && ok)
    }

    /// Argon2 verifications done so far: a login costs one, whether or not the user exists.
    pub fn verifications(&self) -> u64 {
        self.verifications.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Working areas allocated so far: at most one per permit.
    pub fn areas(&self) -> usize {
        self.areas.lock().map_or(0, |a| a.len())
    }
}

fn take(areas: &Areas) -> Vec<Block> {
    areas.lock().map(|mut a| a.pop()).ok().flatten().unwrap_or_default()
}

fn give_back(areas: &Areas, area: Vec<Block>) {
    if let Ok(mut a) = areas.lock() {
        a.push(area);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_and_verify() {
        let h = Hasher::new(2).unwrap();
        let phc = h.hash("correct horse".into()).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(h.verify("correct horse".into(), Some(phc.clone())).await.unwrap());
        assert!(!h.verify("wrong".into(), Some(phc)).await.unwrap());
        assert!(!h.verify("anything".into(), None).await.unwrap());
        assert_eq!(h.areas(), 1, "one permit in use at a time here, so one working area is reused");
    }

    /// The pooled verifier accepts what the argon2 crate's own verifier accepts, including hashes
    /// made with other parameters and variants, and refuses the rest.
    #[test]
    fn pooled_verification_agrees_with_the_crate() {
        use argon2::password_hash::PasswordVerifier;
        let mut area = Vec::new();
        let small = Params::new(4096, 1, 1, Some(32)).unwrap();
        let big = Params::new(Params::DEFAULT_M_COST * 2, 1, 1, None).unwrap();
        for (alg, params) in [
            (Algorithm::Argon2id, Params::default()),
            (Algorithm::Argon2i, small.clone()),
            (Algorithm::Argon2d, small),
            (Algorithm::Argon2id, big),
        ] {
            let salt = SaltString::generate(&mut OsRng);
            let phc = Argon2::new(alg, Version::V0x13, params).hash_password(b"pw", &salt).unwrap().to_string();
            let parsed = PasswordHash::new(&phc).unwrap();
            assert!(Argon2::default().verify_password(b"pw", &parsed).is_ok());
            assert!(verify_in(b"pw", &phc, &mut area), "{phc}");
            assert!(!verify_in(b"pW", &phc, &mut area), "{phc}");
        }
        assert_eq!(area.len(), Params::DEFAULT_M_COST as usize, "the kept area stays at the default size");
        for broken in ["", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ", "$scrypt$ln=1$c2FsdA$aGFzaA", "plain"] {
            assert!(!verify_in(b"pw", broken, &mut area), "{broken}");
        }
    }
}
