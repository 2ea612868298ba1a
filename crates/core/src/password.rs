//! Argon2id password and client-secret hashing, off the async worker threads.
//!
//! Parameters are the argon2 crate's defaults, which are OWASP's recommendation for Argon2id
//! (m = 19 MiB, t = 2, p = 1). Hashing is CPU- and memory-heavy by design, so it runs on the
//! blocking pool, at most `permits` at a time, so that a burst of logins can neither starve the
//! request workers nor exhaust memory.

use std::sync::Arc;

use anyhow::anyhow;
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng};
use tokio::sync::Semaphore;

#[derive(Clone, Debug)]
pub struct Hasher {
    permits: Arc<Semaphore>,
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
    PasswordHash::new(phc).is_ok_and(|h| Argon2::default().verify_password(secret.as_bytes(), &h).is_ok())
}

impl Hasher {
    pub fn new(parallelism: usize) -> anyhow::Result<Self> {
        let dummy = hash_blocking(&latchkey_proto::secret::random_token())?;
        Ok(Self {
            permits: Arc::new(Semaphore::new(parallelism.max(1))),
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
        let ok = tokio::task::spawn_blocking(move || verify_blocking(&secret, &phc)).await?;
        self.verifications.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(known && ok)
    }

    /// Argon2 verifications done so far: a login costs one, whether or not the user exists.
    pub fn verifications(&self) -> u64 {
        self.verifications.load(std::sync::atomic::Ordering::Relaxed)
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
    }
}
