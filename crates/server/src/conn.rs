//! The accept loop shared by `latchkey serve` and `latchkey gate`: HTTP/1.1 with time limits and
//! a cap on concurrent connections.
//!
//! Without them a client can hold a connection (a descriptor and a task) for as long as it likes
//! by sending headers or a body a byte at a time, or nothing at all (slow-loris); about a thousand
//! such sockets from one host exhaust the common descriptor limit and stop `accept`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::StatusCode;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::Layer;
use tower_http::timeout::TimeoutLayer;

/// Time and connection limits of a listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// A request's header block must arrive whole within this time. Hyper's timer also runs while a
    /// keep-alive connection waits for its next request, so this is the idle limit as well.
    pub header_read_timeout: Duration,
    /// A request must be answered (its body read, the handler done) within this time, or it gets
    /// 408. This bounds a body sent a byte at a time.
    pub request_timeout: Duration,
    /// At most this many connections are served at once. Further ones are not accepted: they wait
    /// in the kernel's listen queue (costing this process nothing) until a slot frees.
    pub max_connections: usize,
}

impl Limits {
    pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
    /// Below the common soft limit of 1024 descriptors, with room for the database and logs.
    pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Self::DEFAULT_HEADER_READ_TIMEOUT,
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// The layer that answers 408 to a request not answered within `limits.request_timeout`.
pub fn request_timeout(limits: &Limits) -> TimeoutLayer {
    TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, limits.request_timeout)
}

/// Serves `router` on `listener` until `shutdown` resolves; in-flight requests then finish and
/// idle connections close. Requests carry the TCP peer as `ConnectInfo<SocketAddr>`.
pub async fn serve_router(
    listener: TcpListener,
    router: Router,
    limits: &Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout).keep_alive(true);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // The slot is taken before `accept`: past the cap, connections wait in the listen queue.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(s) => s,
                Err(_) => break, // the semaphore is never closed
            },
            () = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of descriptors, typically: wait rather than spin.
                    tracing::error!(error = %e, "accept failed");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        () = &mut shutdown => break,
                    }
                }
            },
            () = &mut shutdown => break,
        };
        // No Nagle delay: every response is written whole, and keep-alive clients wait for it.
        let _ = tcp.set_nodelay(true);
        let service = axum::Extension(ConnectInfo(peer)).layer(router.clone());
        let conn = http.serve_connection(TokioIo::new(tcp), TowerToHyperService::new(service));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // Timeouts and resets end up here; they are the client's business, not an error of ours.
            if let Err(e) = conn.await {
                tracing::debug!(peer = %peer, error = %e, "connection ended");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset)
}
