//! `/verify`: confirming an address (`latchkey_core::verification`). Opening the link shows a
//! button; only pressing it (a POST) confirms, so a mail scanner that opens links verifies nothing.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum_extra::extract::CookieJar;
use latchkey_proto::Params;

use super::email_flow::{fault, form, page, with_jar};
use crate::AppState;
use crate::email_pages::{Message, Verify};
use crate::extract::{PageBody, RequestId};
use crate::handlers::authorize::csrf_token;

fn link_gone() -> Response {
    page(
        StatusCode::BAD_REQUEST,
        &Message::alert(
            "This link does not work",
            "The link was already used, has expired, or was replaced by a newer one. Signing in to an account that waits for confirmation sends a new link.",
        ),
    )
}

/// `GET /verify?token=…`.
pub async fn page_for(State(s): State<AppState>, rid: RequestId, jar: CookieJar, RawQuery(q): RawQuery) -> Response {
    let params = Params::parse(q.unwrap_or_default().as_bytes()).unwrap_or_default();
    let token = params.get("token").unwrap_or("");
    match s.provider.verification_link(token, s.clock.now()).await {
        Ok(Some(email)) => {
            let (jar, csrf) = csrf_token(&s, jar);
            with_jar(jar, StatusCode::OK, &Verify { csrf: &csrf, token, email: &email })
        }
        Ok(None) => link_gone(),
        Err(e) => fault(&rid, e),
    }
}

/// `POST /verify`.
pub async fn confirm(
    State(s): State<AppState>,
    rid: RequestId,
    jar: CookieJar,
    headers: HeaderMap,
    PageBody(body): PageBody,
) -> Response {
    let params = match form(&s, &jar, &headers, &body) {
        Ok(p) => p,
        Err(r) => return r,
    };
    match s.provider.verify_email(params.get("token").unwrap_or(""), s.clock.now()).await {
        Ok(Some(v)) => {
            let message = format!("{} is confirmed as the address of {}. You can sign in now.", v.email, v.username);
            page(StatusCode::OK, &Message::info("Address confirmed", &message).with_link("/account", "Sign in"))
        }
        Ok(None) => link_gone(),
        Err(e) => fault(&rid, e),
    }
}
