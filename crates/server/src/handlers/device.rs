//! `/device`: the verification page of the device authorization grant (RFC 8628 §3.3). A
//! signed-in person types the code their device shows (or follows `verification_uri_complete`,
//! which carries it), sees which client asked for what, when and from where, and approves or
//! denies in one CSRF-protected form.
//!
//! A GET only looks up: approving takes the POST with the page's CSRF token, so a link (a phisher's
//! `verification_uri_complete`) can at most show the consent page with its warning. Every lookup
//! and every answer is throttled in `latchkey_core::device_grant::verify`.
//!
//! A client whose second-factor policy needs more than the person's session has is approved only
//! after a step-up (`POST /device/step-up`): the second-factor step on this session, then back.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum_extra::extract::CookieJar;
use latchkey_core::UnixTime;
use latchkey_core::account::AccountSession;
use latchkey_core::authn::Acr;
use latchkey_core::device_grant::request::VERIFICATION_PATH;
use latchkey_core::device_grant::verify::{Answer, DeviceView, Lookup};
use latchkey_core::device_grant::{display_user_code, normalize_user_code};
use latchkey_proto::Params;

use super::account::{page, signed_in, signed_in_form};
use crate::AppState;
use crate::device_pages::{CodePage, ConsentPage, DonePage, NOT_FOUND, retry_message};
use crate::extract::{ClientIp, PageBody, RequestId};
use crate::handlers::authorize::{csrf_token, internal, invalid_page, redirect_to, render};
use crate::pages;

/// `GET /device` (the form) and `GET /device?user_code=…` (`verification_uri_complete`: the
/// consent page at once, as `gh` and `az` do; a lookup, never an answer).
pub async fn get(
    State(s): State<AppState>,
    rid: RequestId,
    ClientIp(ip): ClientIp,
    jar: CookieJar,
    RawQuery(q): RawQuery,
) -> Response {
    let params = match Params::parse(q.unwrap_or_default().as_bytes()) {
        Ok(p) => p,
        Err(e) => return invalid_page("This request is invalid", &e.description),
    };
    let typed = params.get("user_code");
    // Back here after the sign-in, with the code; a code that cannot be one is dropped and the
    // person types it again.
    let next = next_for(typed);
    let a = match signed_in(&s, &rid, ip, &jar, &next).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    match typed {
        None => code_page(&s, jar, &a, "", None, StatusCode::OK),
        Some(typed) => lookup(&s, &rid, jar, &a, typed, ip).await,
    }
}

/// `POST /device`: `user_code` alone looks the code up (the typed form); with
/// `decision=approve|deny` it answers (the consent page's form).
pub async fn post(
    State(s): State<AppState>,
    rid: RequestId,
    ClientIp(ip): ClientIp,
    jar: CookieJar,
    headers: HeaderMap,
    PageBody(body): PageBody,
) -> Response {
    let (a, params) = match signed_in_form(&s, &rid, ip, &jar, &headers, &body, VERIFICATION_PATH).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let typed = params.get("user_code").unwrap_or_default();
    let answer = match params.get("decision") {
        None => return lookup(&s, &rid, jar, &a, typed, ip).await,
        Some("approve") => Answer::Approve,
        Some("deny") => Answer::Deny,
        Some(_) => return invalid_page("This request is invalid", "choose Approve or Deny"),
    };
    match s.provider.answer_device(&a, typed, answer, ip, s.clock.now()).await {
        Ok(Lookup::Found(v)) => {
            let p = DonePage {
                section: "device",
                approved: answer == Answer::Approve,
                client_name: &v.client_name,
                user_code: &v.user_code,
            };
            pages::html(StatusCode::OK, pages::render(&p))
        }
        Ok(Lookup::NotFound) => refused(&s, jar, &a, typed, None),
        Ok(Lookup::Throttled { until }) => refused(&s, jar, &a, typed, Some(until)),
        // The client's policy needs a stronger sign-in: back to the consent page, which says so
        // and offers the step-up (the form that led here was older than a policy change).
        Ok(Lookup::StepUpNeeded { .. }) => back_to_code(typed),
        Err(e) => internal(&rid, e),
    }
}

/// `POST /device/step-up`: `acr` (the level the consent page said the client requires) for the
/// signed-in session, then back to the consent page of `user_code`: the second-factor step on
/// this session, or setting a factor up where the person has none that reaches it.
pub async fn step_up(
    State(s): State<AppState>,
    rid: RequestId,
    ClientIp(ip): ClientIp,
    jar: CookieJar,
    headers: HeaderMap,
    PageBody(body): PageBody,
) -> Response {
    let (a, params) = match signed_in_form(&s, &rid, ip, &jar, &headers, &body, VERIFICATION_PATH).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(level) = params.get("acr").and_then(Acr::parse) else {
        return invalid_page("This request is invalid", "the form names no sign-in level this server knows");
    };
    let next = next_for(params.get("user_code"));
    match s.provider.account_step_up(&a, level, &next, ip, s.clock.now()).await {
        Ok(step) => render(&s, jar, step, StatusCode::SEE_OTHER),
        Err(e) => internal(&rid, e),
    }
}

/// Where the page comes back to: the consent page of `typed`, in the one form `safe_next` lets
/// through, or the form when `typed` cannot be a code.
fn next_for(typed: Option<&str>) -> String {
    match typed.and_then(normalize_user_code) {
        Some(code) => format!("{VERIFICATION_PATH}?user_code={}", display_user_code(&code)),
        None => VERIFICATION_PATH.to_owned(),
    }
}

/// Back to the consent page of `typed` (a GET, which only looks up).
fn back_to_code(typed: &str) -> Response {
    redirect_to(StatusCode::SEE_OTHER, &next_for(Some(typed)))
}

/// Looks a typed code up: the consent page, or the form again with why not.
async fn lookup(
    s: &AppState,
    rid: &RequestId,
    jar: CookieJar,
    a: &AccountSession,
    typed: &str,
    ip: Option<std::net::IpAddr>,
) -> Response {
    let now = s.clock.now();
    match s.provider.device_by_user_code(a, typed, ip, now).await {
        Ok(Lookup::Found(v)) => consent_page(s, jar, a, &v, ip),
        Ok(Lookup::NotFound) => refused(s, jar, a, typed, None),
        Ok(Lookup::Throttled { until }) => refused(s, jar, a, typed, Some(until)),
        // Only an approval asks for a step-up (the consent page says when it will); were a lookup
        // ever to, the form, rather than a redirect back here.
        Ok(Lookup::StepUpNeeded { .. }) => refused(s, jar, a, typed, None),
        Err(e) => internal(rid, e),
    }
}

fn consent_page(
    s: &AppState,
    jar: CookieJar,
    a: &AccountSession,
    v: &DeviceView,
    ip: Option<std::net::IpAddr>,
) -> Response {
    let (jar, csrf) = csrf_token(s, jar);
    let here = ip.map(latchkey_core::throttle::source);
    page(jar, pages::render(&ConsentPage::new(v, &a.user.username, &csrf, here.as_deref(), s.clock.now())))
}

/// The form again: one message for every code that names nothing live, or, `throttled` until
/// then, the wait (HTTP 429, with `Retry-After`).
fn refused(s: &AppState, jar: CookieJar, a: &AccountSession, typed: &str, throttled: Option<UnixTime>) -> Response {
    let Some(until) = throttled else {
        return code_page(s, jar, a, typed, Some(NOT_FOUND.to_owned()), StatusCode::OK);
    };
    let wait = u64::try_from(until.saturating_sub(s.clock.now())).unwrap_or(0).max(1);
    let mut res = code_page(s, jar, a, typed, Some(retry_message(wait)), StatusCode::TOO_MANY_REQUESTS);
    if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
        res.headers_mut().insert(header::RETRY_AFTER, v);
    }
    res
}

fn code_page(
    s: &AppState,
    jar: CookieJar,
    a: &AccountSession,
    typed: &str,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let (jar, csrf) = csrf_token(s, jar);
    // Given back so that a typo can be fixed; no longer than the field takes.
    let typed: String = typed.chars().take(64).collect();
    let p = CodePage { section: "device", username: &a.user.username, csrf: &csrf, typed: &typed, error };
    let mut res = page(jar, pages::render(&p));
    *res.status_mut() = status;
    res
}
