//! `/account`: the pages where people manage their own account, signed in with the same session
//! as for applications. Each section has its own handler file (`account_*.rs`); this one holds the
//! sign-in every section shares and the profile overview.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use latchkey_core::account::AccountSession;

use crate::AppState;
use crate::extract::{ClientIp, RequestId, session_cookie};
use crate::handlers::authorize::{internal, render};
use crate::pages;

/// The signed-in person, or the response to send instead: the login page, which leads back to
/// `next` (a path under `/account`) once the person has signed in.
#[allow(clippy::result_large_err)]
pub(crate) async fn signed_in(
    s: &AppState,
    rid: &RequestId,
    ip: Option<std::net::IpAddr>,
    jar: &CookieJar,
    next: &str,
) -> Result<AccountSession, Response> {
    let now = s.clock.now();
    let cookie = session_cookie(jar, s.secure());
    match s.provider.account_session(cookie.as_ref(), now).await {
        Ok(Some(a)) => Ok(a),
        Ok(None) => match s.provider.account_sign_in(next, ip, now).await {
            Ok(step) => Err(render(s, jar.clone(), step, StatusCode::FOUND)),
            Err(e) => Err(internal(rid, e)),
        },
        Err(e) => Err(internal(rid, e)),
    }
}

/// `GET /account`: who is signed in, and their profile.
pub async fn overview(State(s): State<AppState>, rid: RequestId, ClientIp(ip): ClientIp, jar: CookieJar) -> Response {
    let a = match signed_in(&s, &rid, ip, &jar, "/account").await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let u = &a.user;
    let page = pages::AccountOverview {
        section: "profile",
        username: &u.username,
        name: u.name.as_deref(),
        email: &u.email,
        email_verified: u.email_verified,
    };
    pages::html(StatusCode::OK, pages::render(&page)).into_response()
}
