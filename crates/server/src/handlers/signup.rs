//! `/signup`: self-registration and invitations (`latchkey_core::signup`).

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum_extra::extract::CookieJar;
use latchkey_core::signup::{SignupForm, SignupMode, SignupOutcome};
use latchkey_proto::{Params, Password};

use super::email_flow::{fault, form, not_offered, page, throttled, unavailable, with_jar};
use crate::AppState;
use crate::email_pages::{Message, Signup};
use crate::extract::{ClientIp, PageBody, RequestId};
use crate::handlers::authorize::csrf_token;

fn invitation_gone() -> Response {
    page(
        StatusCode::BAD_REQUEST,
        &Message::alert(
            "This invitation does not work",
            "It was already used, has expired, or was replaced by a newer one. Ask whoever invited you for a new one.",
        ),
    )
}

/// `GET /signup` (open) or `GET /signup?invite=…`.
pub async fn page_for(State(s): State<AppState>, rid: RequestId, jar: CookieJar, RawQuery(q): RawQuery) -> Response {
    let mode = s.provider.signup_mode();
    if mode == SignupMode::Off {
        return not_offered();
    }
    let params = Params::parse(q.unwrap_or_default().as_bytes()).unwrap_or_default();
    let (invitation, email) = match params.get("invite") {
        Some(token) => match s.provider.invitation(token, s.clock.now()).await {
            Ok(Some(email)) => (Some(token), email),
            Ok(None) => return invitation_gone(),
            Err(e) => return fault(&rid, e),
        },
        None if mode == SignupMode::Invite => return invitation_gone(),
        None => (None, String::new()),
    };
    let (jar, csrf) = csrf_token(&s, jar);
    with_jar(jar, StatusCode::OK, &Signup { csrf: &csrf, username: "", email: &email, invitation, error: None })
}

/// `POST /signup`.
pub async fn submit(
    State(s): State<AppState>,
    rid: RequestId,
    ClientIp(ip): ClientIp,
    jar: CookieJar,
    headers: HeaderMap,
    PageBody(body): PageBody,
) -> Response {
    if s.provider.signup_mode() == SignupMode::Off {
        return not_offered();
    }
    let params = match form(&s, &jar, &headers, &body) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (username, email, invitation) =
        (params.get("username").unwrap_or(""), params.get("email").unwrap_or(""), params.get("invite"));
    let f = SignupForm { username, email, password: Password::new(params.get("password").unwrap_or("")), invitation };
    match s.provider.sign_up(f, ip, s.clock.now()).await {
        Ok(SignupOutcome::CheckMail) => page(
            StatusCode::OK,
            &Message::info(
                "Check your email",
                "We have sent a link to the address you gave. Follow it to confirm the address; then you can sign in.",
            ),
        ),
        Ok(SignupOutcome::Created { username }) => {
            let message = format!("The account {username} is ready. Sign in with your new password.");
            page(StatusCode::OK, &Message::info("Account created", &message).with_link("/account", "Sign in"))
        }
        Ok(SignupOutcome::Rejected { field, why }) => {
            let csrf = params.get("csrf").unwrap_or_default();
            page(StatusCode::BAD_REQUEST, &Signup { csrf, username, email, invitation, error: Some((field, &why)) })
        }
        Ok(SignupOutcome::InvalidInvitation) => invitation_gone(),
        Ok(SignupOutcome::Throttled { retry_after }) => throttled("Create an account", retry_after),
        Ok(SignupOutcome::Unavailable) => unavailable("Create an account"),
        Ok(SignupOutcome::Disabled) => not_offered(),
        Err(e) => fault(&rid, e),
    }
}
