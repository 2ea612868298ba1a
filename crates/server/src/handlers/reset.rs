//! `/reset` and `/reset/confirm`: password reset by email (`latchkey_core::reset`).
//!
//! `POST /reset` answers every well-formed address with the very same page and status: the core
//! does the same writes for a known and an unknown address, and this handler adds nothing that
//! depends on it (the form's page is not shown again, so no cookie is set either).

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum_extra::extract::CookieJar;
use latchkey_core::reset::{ResetDone, ResetRequested};
use latchkey_proto::{Params, Password};

use super::email_flow::{fault, form, not_offered, page, throttled, unavailable, with_jar};
use crate::AppState;
use crate::email_pages::{Message, ResetForm, ResetRequest};
use crate::extract::{ClientIp, PageBody, RequestId};
use crate::handlers::authorize::csrf_token;

const SENT: &str = "If an account uses this address, we have sent a link to it. The link works once, for 30 minutes. \
    If nothing arrives, check the spam folder, or ask again in a few minutes.";

/// `GET /reset`.
pub async fn request_page(State(s): State<AppState>, jar: CookieJar) -> Response {
    if !s.provider.password_reset_enabled() {
        return not_offered();
    }
    let (jar, csrf) = csrf_token(&s, jar);
    with_jar(jar, StatusCode::OK, &ResetRequest { csrf: &csrf, email: "", error: None })
}

/// `POST /reset`.
pub async fn request(
    State(s): State<AppState>,
    rid: RequestId,
    ClientIp(ip): ClientIp,
    jar: CookieJar,
    headers: HeaderMap,
    PageBody(body): PageBody,
) -> Response {
    if !s.provider.password_reset_enabled() {
        return not_offered();
    }
    let params = match form(&s, &jar, &headers, &body) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let email = params.get("email").unwrap_or("");
    match s.provider.request_password_reset(email, ip, s.clock.now()).await {
        Ok(ResetRequested::Queued) => page(StatusCode::OK, &Message::info("Check your email", SENT)),
        Ok(ResetRequested::InvalidAddress) => {
            let csrf = params.get("csrf").unwrap_or_default();
            let error = Some("Enter an email address, such as name@example.com.");
            page(StatusCode::BAD_REQUEST, &ResetRequest { csrf, email, error })
        }
        Ok(ResetRequested::Throttled { retry_after }) => throttled("Reset your password", retry_after),
        Ok(ResetRequested::Unavailable) => unavailable("Reset your password"),
        Ok(ResetRequested::Disabled) => not_offered(),
        Err(e) => fault(&rid, e),
    }
}

fn link_gone() -> Response {
    page(
        StatusCode::BAD_REQUEST,
        &Message::alert(
            "This link does not work",
            "The link was already used, has expired, or was replaced by a newer one. Ask for a new link.",
        )
        .with_link("/reset", "Ask for a new link"),
    )
}

/// `GET /reset/confirm?token=…`: the new-password form. Opening the link changes nothing (mail
/// scanners open links too).
pub async fn confirm_page(
    State(s): State<AppState>,
    rid: RequestId,
    jar: CookieJar,
    RawQuery(q): RawQuery,
) -> Response {
    if !s.provider.password_reset_enabled() {
        return not_offered();
    }
    let params = Params::parse(q.unwrap_or_default().as_bytes()).unwrap_or_default();
    let token = params.get("token").unwrap_or("");
    match s.provider.password_reset_link(token, s.clock.now()).await {
        Ok(Some(username)) => {
            let (jar, csrf) = csrf_token(&s, jar);
            with_jar(jar, StatusCode::OK, &ResetForm { csrf: &csrf, token, username: &username, error: None })
        }
        Ok(None) => link_gone(),
        Err(e) => fault(&rid, e),
    }
}

/// `POST /reset/confirm`.
pub async fn confirm(
    State(s): State<AppState>,
    rid: RequestId,
    ClientIp(ip): ClientIp,
    jar: CookieJar,
    headers: HeaderMap,
    PageBody(body): PageBody,
) -> Response {
    if !s.provider.password_reset_enabled() {
        return not_offered();
    }
    let params = match form(&s, &jar, &headers, &body) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let token = params.get("token").unwrap_or("");
    let password = Password::new(params.get("password").unwrap_or(""));
    match s.provider.complete_password_reset(token, password, ip, s.clock.now()).await {
        Ok(ResetDone::Done { .. }) => page(
            StatusCode::OK,
            &Message::info(
                "Your password was changed",
                "Every session of your account was signed out, and applications must ask for access again. Sign in with the new password.",
            )
            .with_link("/account", "Sign in"),
        ),
        Ok(ResetDone::InvalidLink) => link_gone(),
        Ok(ResetDone::Rejected(why)) => {
            let (csrf, username) = (params.get("csrf").unwrap_or_default(), params.get("username").unwrap_or(""));
            page(StatusCode::BAD_REQUEST, &ResetForm { csrf, token, username, error: Some(&why) })
        }
        Err(e) => fault(&rid, e),
    }
}
