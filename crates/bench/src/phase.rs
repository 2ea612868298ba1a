//! The closed loop: C workers, each with its own keep-alive connection, take the next operation
//! index until the count is reached or the deadline passes. Every operation's latency is kept
//! (tens of thousands of `u32`s are cheaper than any histogram's error).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::OpError;
use crate::http::{Conn, Origin};

/// One kind of operation (an authorization request, a code exchange, a whole login…). `i` is the
/// operation's index: it picks the code, token or user to use.
#[async_trait]
pub trait Op: Send + Sync + 'static {
    type Out: Send + 'static;
    /// Runs operation `i`; returns its output and the number of HTTP requests it took.
    async fn call(&self, conn: &mut Conn, i: usize) -> Result<(Self::Out, usize), OpError>;
}

#[derive(Debug, Clone)]
pub struct Spec {
    pub count: usize,
    pub connections: usize,
    /// The phase stops taking new operations after this long.
    pub max_time: Duration,
    /// One operation that takes longer is an error (a stuck server must not hang the run).
    pub op_timeout: Duration,
}

/// What one set of workers measured.
#[derive(Debug, Default)]
pub struct Measured {
    pub ops: usize,
    pub errors: usize,
    pub requests: usize,
    /// The first few errors, for the report.
    pub samples: Vec<String>,
    pub elapsed: Duration,
    /// Latencies of successful operations, in microseconds, sorted.
    pub latencies_us: Vec<u32>,
    /// Connections opened beyond one per worker: the server closed keep-alive connections.
    pub reconnects: usize,
}

impl Measured {
    /// The `q` quantile (nearest rank) in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let n = self.latencies_us.len();
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
        f64::from(self.latencies_us[rank - 1]) / 1000.0
    }

    pub fn ops_per_sec(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 { self.ops as f64 / s } else { 0.0 }
    }

    fn absorb(&mut self, w: WorkerTally) {
        self.ops += w.lat.len();
        self.errors += w.errors;
        self.requests += w.requests;
        self.reconnects += w.connects.saturating_sub(1);
        for s in w.samples {
            if self.samples.len() < 5 {
                self.samples.push(s);
            }
        }
        self.latencies_us.extend(w.lat);
    }
}

struct WorkerTally {
    lat: Vec<u32>,
    errors: usize,
    requests: usize,
    samples: Vec<String>,
    connects: usize,
}

pub struct Outcome<T> {
    pub measured: Measured,
    /// Outputs of successful operations, by index, in index order.
    pub outputs: Vec<(usize, T)>,
    /// The background load's figures, when there was one.
    pub background: Option<Measured>,
}

async fn open(origin: &Arc<Origin>, n: usize) -> Result<Vec<Conn>, OpError> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let mut c = Conn::new(origin.clone());
        c.connect().await?;
        conns.push(c);
    }
    Ok(conns)
}

#[allow(clippy::too_many_arguments)]
async fn worker<O: Op>(
    op: Arc<O>,
    mut conn: Conn,
    next: Arc<AtomicUsize>,
    count: usize,
    until: Instant,
    stop: Arc<AtomicBool>,
    op_timeout: Duration,
) -> (WorkerTally, Vec<(usize, O::Out)>) {
    let mut t = WorkerTally { lat: Vec::new(), errors: 0, requests: 0, samples: Vec::new(), connects: 0 };
    let mut outs = Vec::new();
    while !stop.load(Ordering::Relaxed) && Instant::now() < until {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= count {
            break;
        }
        let t0 = Instant::now();
        match tokio::time::timeout(op_timeout, op.call(&mut conn, i)).await {
            Ok(Ok((out, requests))) => {
                t.lat.push(u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX));
                t.requests += requests;
                outs.push((i, out));
            }
            Ok(Err(e)) => {
                t.errors += 1;
                if t.samples.len() < 5 {
                    t.samples.push(e.to_string());
                }
            }
            Err(_) => {
                t.errors += 1;
                if t.samples.len() < 5 {
                    t.samples.push(format!("no answer within {op_timeout:?}"));
                }
                // The connection may hold a half-read response: start a fresh one.
                conn = Conn::new(conn.origin());
            }
        }
    }
    t.connects = conn.connects;
    (t, outs)
}

/// Runs `spec.count` operations of `op` on `spec.connections` connections. With `background`,
/// another operation runs on its own connections, over and over, until the foreground is done:
/// it measures one phase while another loads the server.
pub async fn run<O: Op, B: Op>(
    op: Arc<O>,
    origin: &Arc<Origin>,
    spec: &Spec,
    background: Option<(Arc<B>, usize)>,
) -> Result<Outcome<O::Out>, OpError> {
    let conns = open(origin, spec.connections).await?;
    let bg_conns = match &background {
        Some((_, n)) => open(origin, *n).await?,
        None => Vec::new(),
    };
    let start = Instant::now();
    let until = start + spec.max_time;
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicUsize::new(0));
    let mut bg_handles = Vec::new();
    if let Some((bg, _)) = &background {
        let bg_next = Arc::new(AtomicUsize::new(0));
        for c in bg_conns {
            let w = worker(bg.clone(), c, bg_next.clone(), usize::MAX, until, stop.clone(), spec.op_timeout);
            bg_handles.push(tokio::spawn(w));
        }
    }
    let handles: Vec<_> = conns
        .into_iter()
        .map(|c| tokio::spawn(worker(op.clone(), c, next.clone(), spec.count, until, stop.clone(), spec.op_timeout)))
        .collect();
    let mut measured = Measured::default();
    let mut outputs = Vec::new();
    for h in handles {
        let (tally, outs) = h.await.map_err(|_| OpError::Protocol("a worker panicked"))?;
        measured.absorb(tally);
        outputs.extend(outs);
    }
    measured.elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let background = if background.is_some() {
        let mut m = Measured::default();
        for h in bg_handles {
            let (tally, _) = h.await.map_err(|_| OpError::Protocol("a worker panicked"))?;
            m.absorb(tally);
        }
        m.elapsed = start.elapsed();
        m.latencies_us.sort_unstable();
        Some(m)
    } else {
        None
    };
    measured.latencies_us.sort_unstable();
    outputs.sort_unstable_by_key(|(i, _)| *i);
    Ok(Outcome { measured, outputs, background })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_nearest_rank() {
        let m = Measured { latencies_us: (1..=100).map(|v| v * 1000).collect(), ..Default::default() };
        assert_eq!(m.quantile_ms(0.5), 50.0);
        assert_eq!(m.quantile_ms(0.99), 99.0);
        assert_eq!(m.quantile_ms(1.0), 100.0);
        assert_eq!(Measured::default().quantile_ms(0.5), 0.0);
    }
}
