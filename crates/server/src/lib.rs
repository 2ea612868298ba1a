//! The HTTP front of Latchkey: `app(state) -> Router`.
//!
//! Handlers are thin: parse at the edge (extractors), one call into `latchkey-core`, and the one
//! response mapping in [`error`]. No SQL and no protocol rule lives here.

mod account_pages;
pub mod backchannel_send;
pub mod cimd_fetch;
pub mod conn;
mod cors;
mod device_pages;
mod documents;
pub mod email_pages;
pub mod error;
pub mod extract;
mod handlers;
pub mod outbox_worker;
pub mod pages;
mod pages_two_step;
pub mod smtp;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, Request, StatusCode, header};
use axum::routing::{MethodRouter, get, post};
use error::{ApiRefusal, PageRefusal, Refusal};
use latchkey_core::{Clock, Provider};
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

/// What every handler shares.
#[derive(Clone, Debug)]
pub struct AppState {
    pub provider: Arc<Provider>,
    pub clock: Clock,
    docs: Arc<documents::Documents>,
}

impl AppState {
    pub fn new(provider: Arc<Provider>, clock: Clock) -> Self {
        let docs = Arc::new(documents::Documents::new(&provider));
        Self { provider, clock, docs }
    }
    /// Cookies get `Secure` and the `__Host-` prefix when the issuer is served over https.
    pub fn secure(&self) -> bool {
        self.provider.issuer().starts_with("https://")
    }
    /// The links under the login form: the ways forward this deployment offers besides a password
    /// (password reset, self-registration), each only where it is configured.
    pub fn login_links(&self) -> Vec<pages::Link> {
        let mut links = Vec::new();
        // Only with outgoing mail configured: a reset link nobody can receive is a dead end.
        if self.provider.password_reset_enabled() {
            links.push(pages::Link { href: "/reset".into(), text: "Forgot your password?" });
        }
        if self.provider.signup_mode() == latchkey_core::signup::SignupMode::Open {
            links.push(pages::Link { href: "/signup".into(), text: "Create an account" });
        }
        links
    }
    /// The login page offers "Sign in with a passkey" (the issuer has a domain name).
    pub fn passkeys_offered(&self) -> bool {
        self.provider.passkeys().is_some()
    }
}

/// Form bodies and queries larger than this are not OAuth requests.
pub const MAX_BODY: usize = 64 * 1024;

/// `Strict-Transport-Security` with an https issuer: browsers then refuse plain http to this host
/// for a year, so a network attacker cannot strip TLS from the login page. No `includeSubDomains`:
/// other hosts under the issuer's domain are not ours to pin.
pub const HSTS: &str = "max-age=31536000";

/// An OAuth endpoint: a method it does not take gets a JSON 405.
fn api(route: MethodRouter<AppState>) -> MethodRouter<AppState> {
    route.fallback(|method: Method| async move { ApiRefusal(Refusal::MethodNotAllowed(method)) })
}

/// A page a person sees: a method it does not take gets an HTML 405.
fn page(route: MethodRouter<AppState>) -> MethodRouter<AppState> {
    route.fallback(|method: Method| async move { PageRefusal(Refusal::MethodNotAllowed(method)) })
}

pub fn app(state: AppState) -> Router {
    app_with(state, &conn::Limits::default())
}

/// [`app`] with the request timeout of `limits`.
pub fn app_with(state: AppState, limits: &conn::Limits) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let ids = SequentialIds::new();
    let secure = state.secure();
    // `/userinfo` answers with a user's data to a bearer token: CORS for registered origins only.
    let preflight = || async { StatusCode::NO_CONTENT };
    let cors_api = Router::new()
        .route(
            "/userinfo",
            api(get(handlers::userinfo::userinfo).post(handlers::userinfo::userinfo).options(preflight)),
        )
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), cors::layer));
    // What a browser-based MCP host calls before it has a registered origin: CORS for any origin,
    // never with credentials (`cors::open_layer` says why that is safe).
    let register_routes = Router::new()
        .route("/register", api(post(handlers::register::register).options(preflight)))
        .route(
            "/register/{client_id}",
            api(get(handlers::register::read)
                .put(handlers::register::update)
                .delete(handlers::register::delete)
                .options(preflight)),
        )
        .layer(DefaultBodyLimit::max(handlers::register::MAX_METADATA));
    let open_api = Router::new()
        .route("/token", api(post(handlers::token::token).options(preflight)))
        .route("/revoke", api(post(handlers::revoke::revoke).options(preflight)))
        // RFC 9126: authenticated like /token, so open to any origin like it (`cors::open_layer`).
        .route("/par", api(post(handlers::par::push).options(preflight)))
        // RFC 8628 §3.1: called by devices, not pages; no CORS beyond what any API gets.
        .route("/device_authorization", api(post(handlers::device_authorization::request)))
        .route("/.well-known/openid-configuration", api(get(handlers::discovery::metadata).options(preflight)))
        .route("/.well-known/oauth-authorization-server", api(get(handlers::discovery::metadata).options(preflight)))
        .route("/jwks.json", api(get(handlers::discovery::jwks).options(preflight)))
        .merge(register_routes)
        .route_layer(axum::middleware::from_fn(cors::open_layer));
    let router = Router::new()
        .merge(cors_api)
        .merge(open_api)
        .route("/authorize", page(get(handlers::authorize::get).post(handlers::authorize::post)))
        .route("/login", page(post(handlers::authorize::login)))
        .route("/consent", page(get(handlers::authorize::consent_page).post(handlers::authorize::consent)))
        .route("/introspect", api(post(handlers::revoke::introspect)))
        .route("/logout", page(get(handlers::logout::get).post(handlers::logout::post)))
        .route("/reset", page(get(handlers::reset::request_page).post(handlers::reset::request)))
        .route("/reset/confirm", page(get(handlers::reset::confirm_page).post(handlers::reset::confirm)))
        .route("/verify", page(get(handlers::verify::page_for).post(handlers::verify::confirm)))
        .route("/signup", page(get(handlers::signup::page_for).post(handlers::signup::submit)))
        .route("/login/two-step", page(get(handlers::two_step::page).post(handlers::two_step::submit)))
        .route("/login/two-step/qr.svg", page(get(handlers::two_step::qr)))
        .route("/login/enrol", page(post(handlers::two_step::enrol)))
        .route("/login/continue", page(post(handlers::two_step::continue_sign_in)))
        .route("/account/two-step", page(get(handlers::account_two_step::page).post(handlers::account_two_step::post)))
        .route("/account/two-step/qr.svg", page(get(handlers::account_two_step::qr)))
        .route("/account/passkeys", page(get(handlers::passkeys::page).post(handlers::passkeys::register)))
        .route("/account/passkeys/options", page(post(handlers::passkeys::register_options)))
        .route("/account/passkeys/rename", page(post(handlers::passkeys::rename)))
        .route("/account/passkeys/remove", page(post(handlers::passkeys::remove)))
        .route("/account/passkeys/reauth", page(post(handlers::passkeys::reauth)))
        .route("/login/passkey/options", page(post(handlers::passkeys::sign_in_options)))
        .route("/login/passkey", page(post(handlers::passkeys::sign_in)))
        .route("/login/two-step/passkey/options", page(post(handlers::passkeys::second_factor_options)))
        .route("/login/two-step/passkey", page(post(handlers::passkeys::second_factor)))
        .route("/login/enrol/passkey/options", page(post(handlers::passkeys::enrol_options)))
        .route("/login/enrol/passkey", page(post(handlers::passkeys::enrol)))
        .route("/assets/passkey.js", page(get(handlers::discovery::passkey_script)))
        .route("/account", page(get(handlers::account::overview).post(handlers::account::save_profile)))
        .route("/account/password", page(get(handlers::account_password::get).post(handlers::account_password::post)))
        .route("/account/sessions", page(get(handlers::account_sessions::get).post(handlers::account_sessions::post)))
        .route("/account/apps", page(get(handlers::account_apps::get).post(handlers::account_apps::post)))
        .route("/account/activity", page(get(handlers::account_activity::get)))
        // RFC 8628 §3.3: the verification page, where a person answers a device's request.
        .route("/device", page(get(handlers::device::get).post(handlers::device::post)))
        .route("/device/step-up", page(post(handlers::device::step_up)))
        .route("/assets/latchkey.css", page(get(handlers::discovery::stylesheet)))
        .route("/healthz", page(get(|| async { "ok" })))
        .fallback(handlers::not_found)
        .with_state(state.clone())
        // Inside the response-header, request-id and trace layers, so a 408 is logged like any
        // answer; the discovery/JWKS fast path reads no body and needs no timer.
        .layer(conn::request_timeout(limits))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ));
    let router = if secure {
        router.layer(SetResponseHeaderLayer::if_not_present(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        ))
    } else {
        router
    };
    router
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request<_>| {
                    let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
                    // The path only: queries carry state and challenges that do not belong in logs.
                    // Debug-quoted: a path is the client's text and must not forge fields of a text log.
                    tracing::info_span!("request", request_id = %id, method = %req.method(), path = ?req.uri().path())
                })
                .on_request(())
                .on_response(|res: &axum::response::Response, latency: Duration, _: &tracing::Span| {
                    tracing::info!(status = res.status().as_u16(), latency_us = latency.as_micros() as u64, "response");
                }),
        )
        .layer(SetRequestIdLayer::new(request_id, ids.clone()))
        .layer(axum::middleware::map_request(drop_unsafe_request_id))
        .layer(tower::layer::layer_fn(move |inner| documents::FastPath {
            inner,
            state: state.clone(),
            ids: ids.clone(),
        }))
}

/// A proxy's `X-Request-Id` is kept only if it is one short value of visible ASCII: it is written
/// into every log line of the request and echoed in the response, so anything else (control or
/// non-ASCII bytes, kilobytes of text) is replaced by an id of our own.
async fn drop_unsafe_request_id(mut req: Request<axum::body::Body>) -> Request<axum::body::Body> {
    if safe_request_id(req.headers()).is_none() {
        req.headers_mut().remove("x-request-id");
    }
    req
}

/// The request's own `X-Request-Id` when it is safe to keep (see [`drop_unsafe_request_id`]).
fn safe_request_id(headers: &axum::http::HeaderMap) -> Option<&HeaderValue> {
    let mut values = headers.get_all("x-request-id").iter();
    match (values.next(), values.next()) {
        (Some(v), None) if (1..=128).contains(&v.len()) && v.as_bytes().iter().all(u8::is_ascii_graphic) => Some(v),
        _ => None,
    }
}

/// Request ids: a random prefix per process and a counter. They only need to be unique, to find a
/// request's log lines; a UUID v4 per request cost a `getrandom` system call on every request.
#[derive(Clone, Debug)]
pub(crate) struct SequentialIds {
    prefix: Arc<str>,
    next: Arc<std::sync::atomic::AtomicU64>,
}

impl SequentialIds {
    fn new() -> Self {
        let random = latchkey_proto::secret::random_token();
        let prefix = random.chars().filter(char::is_ascii_alphanumeric).take(8).collect::<String>();
        Self { prefix: prefix.into(), next: Default::default() }
    }
}

impl SequentialIds {
    /// The request's own id if it is safe to keep, or the next of ours.
    fn for_request(&self, headers: &axum::http::HeaderMap) -> Option<HeaderValue> {
        if let Some(v) = safe_request_id(headers) {
            return Some(v.clone());
        }
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        HeaderValue::from_str(&format!("{}-{n:x}", self.prefix)).ok()
    }
}

impl MakeRequestId for SequentialIds {
    fn make_request_id<B>(&mut self, req: &Request<B>) -> Option<RequestId> {
        self.for_request(req.headers()).map(RequestId::new)
    }
}

/// Serves until `shutdown` resolves; in-flight requests finish first. Default [`conn::Limits`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, state, conn::Limits::default(), shutdown).await
}

/// [`serve`] with the given header, request and connection limits.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    state: AppState,
    limits: conn::Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // The peer address (`ConnectInfo`) feeds login throttling (`extract::ClientIp`).
    conn::serve_router(listener, app_with(state, &limits), &limits, shutdown).await
}
