//! `/account`: the pages where people manage their own account, signed in with the same session
//! as for applications. Each section has its own handler file (`account_*.rs`); this one holds the
//! sign-in every section shares and the profile.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use latchkey_core::account::AccountSession;
use latchkey_core::profile::{EditOutcome, EmailChange, Field, FieldErrors, ProfileEdit};
use latchkey_proto::Params;

use crate::AppState;
use crate::account_pages::ProfilePage;
use crate::extract::{ClientIp, PageBody, RequestId, session_cookie};
use crate::handlers::authorize::{csrf_token, internal, protected_form, redirect_to, render};
use crate::pages;

/// The signed-in person, or the response to send instead: the login page, which leads back to
/// `next` (an account page or the device page, as `safe_next` allows) once the person has signed in.
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

/// A form posted to an account page: the signed-in person and the form's fields, CSRF checked.
/// The refusal is the response to send (the login page, or the CSRF refusal).
#[allow(clippy::result_large_err)]
pub(crate) async fn signed_in_form(
    s: &AppState,
    rid: &RequestId,
    ip: Option<std::net::IpAddr>,
    jar: &CookieJar,
    headers: &HeaderMap,
    body: &[u8],
    page: &str,
) -> Result<(AccountSession, Params), Response> {
    // The token first: a forged post learns nothing, not even whether a session exists.
    let params = protected_form(s, jar, headers, body)?;
    let a = signed_in(s, rid, ip, jar, page).await?;
    Ok((a, params))
}

/// The one-word outcome a page was redirected with (`?done=…`), mapped to a fixed message: the
/// address never carries text of its own to show.
pub(crate) fn done(q: Option<&str>) -> Option<String> {
    Params::parse(q.unwrap_or_default().as_bytes()).ok()?.get("done").map(str::to_owned)
}

/// An account page with a fresh CSRF token in `jar`.
pub(crate) fn page(jar: CookieJar, body: String) -> Response {
    (jar, pages::html(StatusCode::OK, body)).into_response()
}

/// `GET /account`: who is signed in, and their profile form.
pub async fn overview(
    State(s): State<AppState>,
    rid: RequestId,
    ClientIp(ip): ClientIp,
    jar: CookieJar,
    RawQuery(q): RawQuery,
) -> Response {
    let a = match signed_in(&s, &rid, ip, &jar, "/account").await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let notice = match done(q.as_deref()).as_deref() {
        Some("saved") => Some("Your profile was saved."),
        Some("email") => Some("Your profile was saved. Your new email address is not verified yet."),
        Some("link") => Some(
            "Your profile was saved. We sent a link to your new email address: it replaces the current one when you follow it.",
        ),
        _ => None,
    };
    let (jar, csrf) = csrf_token(&s, jar);
    page(jar, pages::render(&ProfilePage::new(&a.user, &csrf, None, &FieldErrors::default(), notice)))
}

/// `POST /account`: the profile form. Refused values are shown next to their fields, with every
/// value as typed, so nothing is lost.
pub async fn save_profile(
    State(s): State<AppState>,
    rid: RequestId,
    ClientIp(ip): ClientIp,
    jar: CookieJar,
    headers: HeaderMap,
    PageBody(body): PageBody,
) -> Response {
    let (a, params) = match signed_in_form(&s, &rid, ip, &jar, &headers, &body, "/account").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    // Every field of the form; one left empty is sent without a value, which clears it.
    let values: Vec<(Field, String)> =
        Field::ALL.iter().map(|f| (*f, params.get(f.claim()).unwrap_or("").to_owned())).collect();
    let edit = ProfileEdit { values, email_verified: None };
    match s.provider.edit_profile(&a.user.id, &edit, ip, s.clock.now()).await {
        Ok(EditOutcome::Saved { email, .. }) => redirect_to(
            StatusCode::SEE_OTHER,
            match email {
                EmailChange::StoredUnverified => "/account?done=email",
                EmailChange::LinkSent => "/account?done=link",
                EmailChange::None | EmailChange::StoredVerified => "/account?done=saved",
            },
        ),
        Ok(EditOutcome::Invalid(errors)) => {
            let (jar, csrf) = csrf_token(&s, jar);
            page(jar, pages::render(&ProfilePage::new(&a.user, &csrf, Some(&edit.values), &errors, None)))
        }
        Err(e) => internal(&rid, e),
    }
}
