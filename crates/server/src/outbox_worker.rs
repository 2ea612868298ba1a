//! The outbox worker: delivers what request paths and admin commands queued (`latchkey_core::
//! outbox`). `latchkey serve` starts one per process; several processes on one database share the
//! queue (claims are exclusive and leased, so a process that dies mid-delivery loses nothing).

use std::sync::Arc;
use std::time::Duration;

use latchkey_core::outbox::{BATCH, Deliver};
use latchkey_core::{Clock, Provider};

/// How the worker paces itself.
#[derive(Clone, Copy, Debug)]
pub struct WorkerSettings {
    /// How often the queue is polled when nothing wakes the worker: jobs queued by another
    /// process (an admin command, another instance) and retries that fall due are found then.
    pub poll: Duration,
    /// The pause after a pass that failed to reach the store.
    pub after_error: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self { poll: Duration::from_secs(5), after_error: Duration::from_secs(10) }
    }
}

/// Starts the worker on the current runtime. Jobs queued by this process wake it at once
/// (`Provider::outbox_wake`); others are found by polling.
pub fn spawn(
    provider: Arc<Provider>,
    deliver: Arc<dyn Deliver>,
    clock: Clock,
    settings: WorkerSettings,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let pause = match provider.run_due_jobs(deliver.as_ref(), clock.now()).await {
                // A full batch: more may be due, go on at once.
                Ok(r) if r.claimed() >= BATCH => continue,
                Ok(_) => settings.poll,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "the outbox worker could not reach the store");
                    settings.after_error
                }
            };
            tokio::select! {
                _ = provider.outbox_wake.notified() => {}
                _ = tokio::time::sleep(pause) => {}
            }
        }
    })
}
