//! The outbox worker against a real store with a transport the test controls: delivered jobs are
//! completed, failed ones retried with back-off (the clock is the test's), permanent failures and
//! jobs older than a day buried, and a job queued in this process wakes the worker at once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use latchkey_core::mail::{Mail, MailJob, Notice};
use latchkey_core::outbox::{Deliver, DeliveryError, Job, OutboxFilter};
use latchkey_core::{Clock, Provider, ProviderConfig, Store};
use latchkey_store::SqliteStore;

/// Records what it sends; fails while `failing` is above zero (counting down), permanently for
/// addresses at `refused.example`.
#[derive(Default)]
struct Recorder {
    sent: Mutex<Vec<String>>,
    failing: AtomicU32,
}

#[async_trait]
impl Deliver for Recorder {
    async fn send_mail(&self, mail: &Mail) -> Result<(), DeliveryError> {
        if mail.to.ends_with("@refused.example") {
            return Err(DeliveryError::permanent("550 5.1.1 no such mailbox"));
        }
        if self.failing.load(Ordering::SeqCst) > 0 {
            self.failing.fetch_sub(1, Ordering::SeqCst);
            return Err(DeliveryError::transient("connection refused"));
        }
        self.sent.lock().unwrap().push(mail.to.clone());
        Ok(())
    }
}

fn notice(to: &str) -> Job {
    Job::Mail(MailJob { to: to.into(), notice: Notice::Test })
}

async fn provider(dir: &tempfile::TempDir, now: i64) -> Arc<Provider> {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("outbox.db")).unwrap());
    Arc::new(Provider::open(store, ProviderConfig::new("http://127.0.0.1:1"), now).await.unwrap())
}

#[tokio::test]
async fn failed_deliveries_back_off_and_are_given_up_after_a_day() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = 1_700_000_000;
    let p = provider(&dir, t0).await;
    let deliver = Recorder { failing: AtomicU32::new(3), ..Default::default() };
    p.enqueue(&notice("alice@example.com"), t0).await.unwrap();
    p.enqueue(&notice("bob@refused.example"), t0).await.unwrap();

    let r = p.run_due_jobs(&deliver, t0).await.unwrap();
    assert_eq!((r.delivered, r.retried, r.buried), (0, 1, 1), "the refused address is buried at once");
    let queued = p.store.outbox_jobs(OutboxFilter::Queued, 10).await.unwrap();
    let next = queued[0].next_attempt_at - t0;
    assert!((22..=30).contains(&next), "first retry after 30 s less jitter: {next}");
    assert_eq!(queued[0].last_error.as_deref(), Some("connection refused"));
    assert_eq!(p.run_due_jobs(&deliver, t0 + next - 1).await.unwrap().claimed(), 0, "not due yet");
    // Second and third failures: the delay doubles.
    let mut at = t0 + next;
    for expected in [60, 120] {
        assert_eq!(p.run_due_jobs(&deliver, at).await.unwrap().retried, 1);
        let q = p.store.outbox_jobs(OutboxFilter::Queued, 10).await.unwrap();
        let d = q[0].next_attempt_at - at;
        assert!((expected * 3 / 4..=expected).contains(&d), "{d} for {expected}");
        at = q[0].next_attempt_at;
    }
    assert_eq!(p.run_due_jobs(&deliver, at).await.unwrap().delivered, 1, "the mail server is back");
    assert_eq!(*deliver.sent.lock().unwrap(), ["alice@example.com"]);
    assert!(p.store.outbox_jobs(OutboxFilter::Queued, 10).await.unwrap().is_empty());
    let dead = p.store.outbox_jobs(OutboxFilter::Dead, 10).await.unwrap();
    assert_eq!(dead[0].last_error.as_deref(), Some("550 5.1.1 no such mailbox"));

    // A job that keeps failing is given up once it is a day old.
    let down = Recorder { failing: AtomicU32::new(u32::MAX), ..Default::default() };
    p.enqueue(&notice("carol@example.com"), at).await.unwrap();
    let mut now = at;
    let mut attempts = 0;
    loop {
        let r = p.run_due_jobs(&down, now).await.unwrap();
        attempts += r.claimed();
        if r.buried == 1 {
            break;
        }
        now += 3600;
        assert!(now - at <= 25 * 3600, "never given up");
    }
    assert!(now - at >= 24 * 3600, "given up too early, after {} s", now - at);
    assert!(attempts >= 20, "retried through the day: {attempts} attempts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_delivers_what_is_queued_without_waiting_for_its_poll() {
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicI64::new(1_700_000_000));
    let n = now.clone();
    let clock = Clock::from_fn(move || n.load(Ordering::SeqCst));
    let p = provider(&dir, clock.now()).await;
    let deliver = Arc::new(Recorder::default());
    let settings = latchkey_server::outbox_worker::WorkerSettings {
        poll: Duration::from_secs(3600),
        after_error: Duration::from_secs(3600),
    };
    let worker = latchkey_server::outbox_worker::spawn(p.clone(), deliver.clone(), clock.clone(), settings);
    tokio::time::sleep(Duration::from_millis(100)).await;
    p.enqueue(&notice("dave@example.com"), clock.now()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while deliver.sent.lock().unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the worker was not woken");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(p.store.outbox_jobs(OutboxFilter::Completed, 10).await.unwrap().len(), 1);
    worker.abort();
}
