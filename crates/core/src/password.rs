//! Argon2id password and client-secret hashing, on threads of its own.
//!
//! Parameters are the argon2 crate's defaults, which are OWASP's recommendation for Argon2id
//! (m = 19 MiB, t = 2, p = 1). Hashing is CPU- and memory-heavy by design, so it never runs on the
//! request workers: a fixed set of hashing threads takes jobs from a bounded queue, so a burst of
//! logins can neither starve the other requests nor exhaust memory.
//!
//! - Each thread owns one 19 MiB working area, allocated on first use and reused by every
//!   verification after it. Allocating it per verification (what `PasswordVerifier` does) costs a
//!   page fault per 4 KiB and, worse, glibc's allocator keeps freed areas of that size in
//!   per-thread arenas: `latchkey-bench`'s login phase drove the server's peak RSS to 1.6 GiB that
//!   way, against about 50 MiB with reuse.
//! - The threads run at a lower scheduling priority (nice +10 on Linux): when a request worker and
//!   a hash want the same core, the request goes first, so logins at full load do not stretch the
//!   latency of token, userinfo and page requests; hashing takes the cycles they leave.

use std::sync::{Arc, Mutex};

use anyhow::anyhow;
use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString, rand_core::OsRng};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use subtle::ConstantTimeEq;
use tokio::sync::{mpsc, oneshot};

/// Jobs waiting for a hashing thread; past this, callers wait to enqueue.
const QUEUE: usize = 1024;
/// The nice value of the hashing threads (0 is normal, 19 the lowest priority).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
const NICE: i32 = 10;

enum Job {
    Hash { secret: String, reply: oneshot::Sender<anyhow::Result<String>> },
    Verify { secret: String, phc: String, reply: oneshot::Sender<bool> },
}

#[derive(Clone, Debug)]
pub struct Hasher {
    jobs: mpsc::Sender<Job>,
    threads: usize,
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
    /// Starts `threads` hashing threads (at least one). They stop when the last clone of the
    /// `Hasher` is dropped.
    pub fn new(threads: usize) -> anyhow::Result<Self> {
        let threads = threads.max(1);
        let dummy = hash_blocking(&latchkey_proto::secret::random_token())?;
        let (tx, rx) = mpsc::channel::<Job>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new().name(format!("latchkey-argon2-{i}")).spawn(move || worker(&rx))?;
        }
        Ok(Self { jobs: tx, threads, dummy: Arc::new(dummy), verifications: Default::default() })
    }

    pub async fn hash(&self, secret: String) -> anyhow::Result<String> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Hash { secret, reply }).await?;
        answer.await.map_err(|_| anyhow!("a hashing thread stopped"))?
    }

    /// Verifies `secret` against `phc`, or against the dummy hash when `phc` is `None`, and returns
    /// false in that case: the caller cannot tell the two apart by time.
    pub async fn verify(&self, secret: String, phc: Option<String>) -> anyhow::Result<bool> {
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| self.dummy.as_ref().clone());
        let (reply, answer) = oneshot::channel();
        self.send(Job::Verify { secret, phc, reply }).await?;
        let ok = answer.await.map_err(|_| anyhow!("a hashing thread stopped"))?;
        self.verifications.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(known && ok)
    }

    async fn send(&self, job: Job) -> anyhow::Result<()> {
        self.jobs.send(job).await.map_err(|_| anyhow!("the hashing threads have stopped"))
    }

    /// Argon2 verifications done so far: a login costs one, whether or not the user exists.
    pub fn verifications(&self) -> u64 {
        self.verifications.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The number of hashing threads.
    pub fn threads(&self) -> usize {
        self.threads
    }
}

/// One hashing thread: takes jobs until every sender is gone, with its own working area.
fn worker(jobs: &Mutex<mpsc::Receiver<Job>>) {
    lower_priority();
    let mut area = Vec::new();
    loop {
        // One thread waits on the queue at a time; the others wait for the lock.
        let job = match jobs.lock() {
            Ok(mut rx) => rx.blocking_recv(),
            Err(_) => None,
        };
        match job {
            Some(Job::Hash { secret, reply }) => {
                let _ = reply.send(hash_blocking(&secret));
            }
            Some(Job::Verify { secret, phc, reply }) => {
                let _ = reply.send(verify_in(secret.as_bytes(), &phc, &mut area));
            }
            None => return,
        }
    }
}

/// Lowers this thread's priority (Linux: the nice value is per thread). Best effort: where it
/// fails, hashing runs at normal priority and only loses the ordering described above.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), NICE) {
        tracing::debug!(error = %e, "could not lower the priority of a hashing thread");
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
        assert_eq!(h.threads(), 2);
    }

    /// The hashing threads yield to the request workers (see the module docs).
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn hashing_threads_run_at_a_lower_priority() {
        let h = Hasher::new(1).unwrap();
        assert!(h.verify("x".into(), None).await.is_ok(), "the thread has started and taken a job");
        let mut nice = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap() {
            let dir = task.unwrap().path();
            if std::fs::read_to_string(dir.join("comm")).unwrap_or_default().starts_with("latchkey-argon2") {
                let stat = std::fs::read_to_string(dir.join("stat")).unwrap();
                // Field 19 is the nice value; fields are counted after the ")" closing the name.
                let after = &stat[stat.rfind(')').unwrap() + 2..];
                nice.push(after.split(' ').nth(16).unwrap().parse::<i32>().unwrap());
            }
        }
        assert!(!nice.is_empty() && nice.iter().all(|n| *n == NICE), "{nice:?}");
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
