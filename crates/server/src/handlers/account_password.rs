//! `/account/password`: change the password (the current one first; see
//! `latchkey_core::account::password`).

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use latchkey_core::account::password::PasswordOutcome;
use latchkey_proto::Password;

use super::account::{done, page, signed_in, signed_in_form};
use crate::AppState;
use crate::account_pages::PasswordPage;
use crate::extract::{ClientIp, PageBody, RequestId};
use crate::handlers::authorize::{csrf_token, internal, redirect_to};
use crate::pages;

const PATH: &str = "/account/password";

pub async fn get(
    State(s): State<AppState>,
    rid: RequestId,
    ClientIp(ip): ClientIp,
    jar: CookieJar,
    RawQuery(q): RawQuery,
) -> Response {
    let a = match signed_in(&s, &rid, ip, &jar, PATH).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let notice = (done(q.as_deref()).as_deref() == Some("changed")).then_some(
        "Your password was changed. Your other sessions were signed out, and your apps will ask you to sign in again.",
    );
    let (jar, csrf) = csrf_token(&s, jar);
    let p = PasswordPage {
        section: "password",
        username: &a.user.username,
        csrf: &csrf,
        current_error: None,
        new_error: None,
        notice,
    };
    page(jar, pages::render(&p))
}

pub async fn post(
    State(s): State<AppState>,
    rid: RequestId,
    ClientIp(ip): ClientIp,
    jar: CookieJar,
    headers: HeaderMap,
    PageBody(body): PageBody,
) -> Response {
    let (a, params) = match signed_in_form(&s, &rid, ip, &jar, &headers, &body, PATH).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let field = |k: &str| Password::new(params.get(k).unwrap_or(""));
    let now = s.clock.now();
    let outcome = s.provider.change_password(&a, field("current"), field("new"), field("confirm"), ip, now).await;
    let (current_error, new_error, retry_after) = match outcome {
        Ok(PasswordOutcome::Changed(_)) => return redirect_to(StatusCode::SEE_OTHER, "/account/password?done=changed"),
        Ok(PasswordOutcome::WrongCurrent) => (Some("The current password is wrong.".to_owned()), None, None),
        Ok(PasswordOutcome::Throttled { retry_after }) => {
            let unit = if retry_after == 1 { "second" } else { "seconds" };
            (Some(format!("Too many attempts. Try again in {retry_after} {unit}.")), None, Some(retry_after))
        }
        Ok(PasswordOutcome::Invalid(m)) => (None, Some(m), None),
        Err(e) => return internal(&rid, e),
    };
    let (jar, csrf) = csrf_token(&s, jar);
    let p = PasswordPage {
        section: "password",
        username: &a.user.username,
        csrf: &csrf,
        current_error,
        new_error,
        notice: None,
    };
    let mut res = (jar, pages::html(StatusCode::OK, pages::render(&p))).into_response();
    if let Some(secs) = retry_after {
        *res.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    res
}
