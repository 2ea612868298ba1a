//! The HTTP front of Latchkey: `app(state) -> Router`.
//!
//! Handlers are thin: parse at the edge (extractors), one call into `latchkey-core`, and the one
//! response mapping in [`error`]. No SQL and no protocol rule lives here.

mod cors;
pub mod error;
pub mod extract;
mod handlers;
pub mod pages;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::http::{HeaderName, HeaderValue, Request, header};
use axum::routing::{get, post};
use latchkey_core::{Clock, Provider};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

/// What every handler shares.
#[derive(Clone, Debug)]
pub struct AppState {
    pub provider: Arc<Provider>,
    pub clock: Clock,
}

impl AppState {
    pub fn new(provider: Arc<Provider>, clock: Clock) -> Self {
        Self { provider, clock }
    }
    /// Cookies get `Secure` and the `__Host-` prefix when the issuer is served over https.
    pub fn secure(&self) -> bool {
        self.provider.issuer().starts_with("https://")
    }
}

/// Form bodies and queries larger than this are not OAuth requests.
pub const MAX_BODY: usize = 64 * 1024;

pub fn app(state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    // What a single-page app calls from JavaScript: CORS for registered origins only.
    let preflight = || async { StatusCode::NO_CONTENT };
    let api = Router::new()
        .route("/token", post(handlers::token::token).options(preflight))
        .route("/revoke", post(handlers::revoke::revoke).options(preflight))
        .route("/userinfo", get(handlers::userinfo::userinfo).post(handlers::userinfo::userinfo).options(preflight))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), cors::layer));
    Router::new()
        .merge(api)
        .route("/authorize", get(handlers::authorize::get).post(handlers::authorize::post))
        .route("/login", post(handlers::authorize::login))
        .route("/consent", get(handlers::authorize::consent_page).post(handlers::authorize::consent))
        .route("/introspect", post(handlers::revoke::introspect))
        .route("/logout", get(handlers::logout::get).post(handlers::logout::post))
        .route("/.well-known/openid-configuration", get(handlers::discovery::metadata))
        .route("/.well-known/oauth-authorization-server", get(handlers::discovery::metadata))
        .route("/jwks.json", get(handlers::discovery::jwks))
        .route("/assets/latchkey.css", get(handlers::discovery::stylesheet))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(handlers::not_found)
        .with_state(state)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request<_>| {
                    let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
                    // The path only: queries carry state and challenges that do not belong in logs.
                    tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path())
                })
                .on_request(())
                .on_response(|res: &axum::response::Response, latency: Duration, _: &tracing::Span| {
                    tracing::info!(status = res.status().as_u16(), latency_us = latency.as_micros() as u64, "response");
                }),
        )
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

/// Serves until `shutdown` resolves; in-flight requests finish first.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // The peer address feeds login throttling (`extract::ClientIp`).
    axum::serve(listener, app(state).into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}
