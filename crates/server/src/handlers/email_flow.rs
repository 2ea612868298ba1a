//! What the email-flow pages share: parsing a protected form, answering with a page.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use latchkey_proto::Params;

use crate::AppState;
use crate::email_pages::Message;
use crate::extract::RequestId;
use crate::pages;

pub(crate) fn page(status: StatusCode, t: &impl askama::Template) -> Response {
    pages::html(status, pages::render(t))
}

/// A page with the CSRF cookie the form on it needs.
pub(crate) fn with_jar(jar: CookieJar, status: StatusCode, t: &impl askama::Template) -> Response {
    (jar, page(status, t)).into_response()
}

/// A form a person posted, with the CSRF token of the page it came from.
#[allow(clippy::result_large_err)]
pub(crate) fn form(s: &AppState, jar: &CookieJar, headers: &HeaderMap, body: &[u8]) -> Result<Params, Response> {
    crate::handlers::authorize::protected_form(s, jar, headers, body)
}

/// A feature this deployment does not offer: as if there were no such page.
pub(crate) fn not_offered() -> Response {
    pages::html(StatusCode::NOT_FOUND, pages::error("Not found", "There is no page at this address."))
}

pub(crate) fn fault(rid: &RequestId, e: anyhow::Error) -> Response {
    crate::handlers::authorize::internal(rid, latchkey_core::Error::Internal(e))
}

/// 429 with `Retry-After`.
pub(crate) fn throttled(title: &str, retry_after: u64) -> Response {
    let unit = if retry_after == 1 { "second" } else { "seconds" };
    let message = format!("Too many requests. Try again in {retry_after} {unit}.");
    let mut res = page(StatusCode::TOO_MANY_REQUESTS, &Message::alert(title, &message));
    if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
        res.headers_mut().insert(header::RETRY_AFTER, v);
    }
    res
}

/// 503: the queue is full or too many sign-ups wait (both logged for the operator).
pub(crate) fn unavailable(title: &str) -> Response {
    let mut res = page(
        StatusCode::SERVICE_UNAVAILABLE,
        &Message::alert(title, "The server cannot send mail right now. Try again later."),
    );
    res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("300"));
    res
}
