//! Passkeys: the username-less sign-in (`/login/passkey/options`, `/login/passkey`) and the
//! account page (`/account/passkeys`: list, add, rename, remove). The decisions are
//! `latchkey_core::passkey`'s; this file parses, calls one core method, and maps the answer.
//!
//! The ceremony endpoints speak JSON to `/assets/passkey.js`. They are protected against
//! cross-site requests three ways: the page's CSRF token must come back in the `X-CSRF-Token`
//! header (the double-submit token of the forms, MAC'd by the server key), the body must be
//! `application/json` (which a cross-site form cannot send, and which needs a CORS preflight we
//! never grant), and a browser's `Sec-Fetch-Site`, where sent, must say `same-origin`.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use latchkey_core::account::AccountSession;
use latchkey_core::authorize::Step;
use latchkey_core::factors::sign_in::{Refusal, TwoStepOutcome};
use latchkey_core::passkey::PasskeyError;
use latchkey_core::passkey::second_factor::StepResult;
use latchkey_core::passkey::sign_in::{PasskeySignedIn, next_location};
use latchkey_proto::Params;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::AppState;
use crate::extract::{ClientIp, PageBody, RequestId, session_cookie, user_agent};
use crate::handlers::account::signed_in;
use crate::handlers::authorize::{
    csrf_header_ok, csrf_token, device_cookie_name, internal, protected_form, redirect_to, render,
};
use crate::handlers::two_step;
use crate::pages;

const PAGE: &str = "/account/passkeys";

/// A JSON answer to the ceremony script.
fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    let mut res = (status, axum::Json(body)).into_response();
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn refused(status: StatusCode, message: &str) -> Response {
    answer(status, json!({ "error": message }))
}

/// The one mapping of passkey refusals to HTTP.
fn refusal(rid: &RequestId, e: PasskeyError) -> Response {
    let status = match &e {
        PasskeyError::Disabled | PasskeyError::NotFound => StatusCode::NOT_FOUND,
        PasskeyError::Busy => StatusCode::SERVICE_UNAVAILABLE,
        PasskeyError::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
        PasskeyError::ReauthRequired(_) | PasskeyError::Locked => StatusCode::FORBIDDEN,
        PasskeyError::Duplicate | PasskeyError::TooMany(_) => StatusCode::CONFLICT,
        PasskeyError::CeremonyExpired
        | PasskeyError::Invalid(_)
        | PasskeyError::UserNotVerified
        | PasskeyError::UnknownCredential
        | PasskeyError::CounterRegression
        | PasskeyError::BadName
        | PasskeyError::NotAccepted
        | PasskeyError::Malformed(_) => StatusCode::BAD_REQUEST,
        PasskeyError::Internal(cause) => {
            tracing::error!(request_id = %rid.0, error = %cause, "internal error in a passkey request");
            let message = format!("The server could not complete this request (request id {}).", rid.0);
            return refused(StatusCode::INTERNAL_SERVER_ERROR, &message);
        }
    };
    let mut res = refused(status, &e.to_string());
    let retry = match e {
        PasskeyError::Throttled(secs) => Some(secs),
        PasskeyError::Busy => Some(60),
        _ => None,
    };
    if let Some(v) = retry.and_then(|s| HeaderValue::from_str(&s.to_string()).ok()) {
        res.headers_mut().insert(header::RETRY_AFTER, v);
    }
    res
}

/// A ceremony request from our own page: same-origin, JSON, with the page's CSRF token.
#[allow(clippy::result_large_err)]
fn ceremony_request<T: DeserializeOwned>(
    s: &AppState,
    jar: &CookieJar,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, Response> {
    let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if site.is_some_and(|v| v != "same-origin") {
        return Err(refused(StatusCode::FORBIDDEN, "passkey requests are accepted from this server's own pages only"));
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json")));
    if !json {
        return Err(refused(StatusCode::UNSUPPORTED_MEDIA_TYPE, "send the request as application/json"));
    }
    let token = headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or("");
    if !csrf_header_ok(s, jar, token) {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "the page's security token is missing or expired; reload the page and try again",
        ));
    }
    serde_json::from_slice(body).map_err(|e| refused(StatusCode::BAD_REQUEST, &format!("malformed request: {e}")))
}

#[derive(Deserialize)]
struct StartSignIn {
    req: String,
}

#[derive(Deserialize)]
struct FinishSignIn {
    req: String,
    ceremony: String,
    credential: serde_json::Value,
}

/// `POST /login/passkey/options`: a challenge for the login page's request.
pub async fn sign_in_options(
    State(s): State<AppState>,
    rid: RequestId,
    ClientIp(ip): ClientIp,
    jar: CookieJar,
    headers: HeaderMap,
    PageBody(body): PageBody,
) -> Response {
    let r: StartSignIn = match ceremony_request(&s, &jar, &headers, &body) {
        Ok(r) => r,
        Err(refusal) => return refusal,
    };
    match s.provider.start_passkey_sign_in(&r.req, ip, s.clock.now()).await {
        Ok(c) => answer(StatusCode::OK, json!({ "ceremony": c.ceremony, "options": c.options })),
        Err(e) => refusal(&rid, e),
    }
}

/// `POST /login/passkey`: the authenticator's answer; signs in as `POST /login` does.
pub async fn sign_in(
    State(s): State<AppState>,
    rid: RequestId,
    ClientIp(ip): ClientIp,
    jar: CookieJar,
    headers: HeaderMap,
    PageBody(body): PageBody,
) -> Response {
    let r: FinishSignIn = match ceremony_request(&s, &jar, &headers, &body) {
        Ok(r) => r,
        Err(refusal) => return refusal,
    };
    let device_name = device_cookie_name(s.secure());
    let device = jar.get(device_name).map(|c| c.value().to_owned());
    let credential = r.credential.to_string();
    let done = match s
        .provider
        .finish_passkey_sign_in(
            &r.req,
            &r.ceremony,
            &credential,
            ip,
            device.as_deref(),
            user_agent(&headers),
            s.clock.now(),
        )
        .await
    {
        Ok(done) => done,
        Err(e) => return refusal(&rid, e),
    };
    match done {
        PasskeySignedIn::Done { session, max_age, device, next } => {
            let Some(location) = next_location(&next) else { return cannot_go_on() };
            let jar = two_step::signed_in(&s, jar, &session, max_age, device);
            (jar, answer(StatusCode::OK, json!({ "location": location }))).into_response()
        }
        PasskeySignedIn::MoreNeeded { next } => step_answer(&s, jar, next),
    }
}

fn cannot_go_on() -> Response {
    refused(StatusCode::BAD_REQUEST, "this sign-in request cannot go on; start again from the application")
}

/// A step to go on to, as the script's JSON: where to, with the partial sign-in's cookie when
/// the second-factor step starts here.
fn step_answer(s: &AppState, jar: CookieJar, next: Step) -> Response {
    let Some(location) = next_location(&next) else {
        return refused(StatusCode::BAD_REQUEST, "this sign-in expired or was already completed; sign in again");
    };
    let jar = match &next {
        Step::SecondFactor { cookie: Some(token), .. } => two_step::with_partial_cookie(s, jar, token),
        _ => jar,
    };
    (jar, answer(StatusCode::OK, json!({ "location": location }))).into_response()
}

/// The second-factor step's outcome as the script's JSON.
fn step_outcome(s: &AppState, rid: &RequestId, jar: CookieJar, outcome: StepResult) -> Response {
    match outcome {
        Err(e) => refusal(rid, e),
        Ok(Err(step)) => step_answer(s, jar, step),
        Ok(Ok(TwoStepOutcome::Done { session, max_age, device, next })) => {
            let Some(location) = next_location(&next) else { return cannot_go_on() };
            let jar = two_step::signed_in(s, jar, &session, max_age, device);
            (jar, answer(StatusCode::OK, json!({ "location": location }))).into_response()
        }
        Ok(Ok(TwoStepOutcome::Refused { refusal, .. })) => {
            let mut res = refused(StatusCode::BAD_REQUEST, &refusal.message());
            if let Refusal::Throttled { retry_after } = refusal {
                *res.status_mut() = StatusCode::TOO_MANY_REQUESTS;
                if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
                    res.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            res
        }
        // Only a TOTP enrolment shows recovery codes; a passkey step never gets here.
        Ok(Ok(TwoStepOutcome::Enrolled { .. })) => cannot_go_on(),
    }
}

#[derive(Deserialize)]
struct StepStart {
    req: String,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
struct StepFinish {
    req: String,
    ceremony: String,
    credential: serde_json::Value,
}

/// `POST /login/two-step/passkey/options`: a challenge for this sign-in's user's passkeys.
pub async fn second_factor_options(
    State(s): State<AppState>,
    rid: RequestId,
    ClientIp(ip): ClientIp,
    jar: CookieJar,
    headers: HeaderMap,
    PageBody(body): PageBody,
) -> Response {
    let r: StepStart = match ceremony_request(&s, &jar, &headers, &body) {
        Ok(r) => r,
        Err(refusal) => return refusal,
    };
    let cookie = two_step::partial_cookie(&s, &jar);
    match s.provider.start_passkey_second_factor(&r.req, cookie.as_ref(), ip, s.clock.now()).await {
        Ok(c) => answer(StatusCode::OK, json!({ "ceremony": c.ceremony, "options": c.options })),
        Err(e) => refusal(&rid, e),
    }
}

/// `POST /login/two-step/passkey`: the passkey as the second factor.
pub async fn second_factor(
    State(s): State<AppState>,
    rid: RequestId,
    ClientIp(ip): ClientIp,
    jar: CookieJar,
    headers: HeaderMap,
    PageBody(body): PageBody,
) -> Response {
    let r: StepFinish = match ceremony_request(&s, &jar, &headers, &body) {
        Ok(r) => r,
        Err(refusal) => return refusal,
    };
    let (cookie, session) = (two_step::partial_cookie(&s, &jar), session_cookie(&jar, s.secure()));
    let device = jar.get(device_cookie_name(s.secure())).map(|c| c.value().to_owned());
    let credential = r.credential.to_string();
    let outcome = s
        .provider
        .finish_passkey_second_factor(
            &r.req,
            cookie.as_ref(),
            session.as_ref(),
            &r.ceremony,
            &credential,
            ip,
            device.as_deref(),
            user_agent(&headers),
            s.clock.now(),
        )
        .await;
    step_outcome(&s, &rid, jar, outcome)
}

/// `POST /login/enrol/passkey/options`: options for a first passkey where one is required.
pub async fn enrol_options(
    State(s): State<AppState>,
    rid: RequestId,
    ClientIp(ip): ClientIp,
    jar: CookieJar,
    headers: HeaderMap,
    PageBody(body): PageBody,
) -> Response {
    let r: StepStart = match ceremony_request(&s, &jar, &headers, &body) {
        Ok(r) => r,
        Err(refusal) => return refusal,
    };
    let cookie = two_step::partial_cookie(&s, &jar);
    match s.provider.start_passkey_enrolment(&r.req, cookie.as_ref(), &r.name, ip, s.clock.now()).await {
        Ok(c) => answer(StatusCode::OK, json!({ "ceremony": c.ceremony, "options": c.options })),
        Err(e) => refusal(&rid, e),
    }
}

/// `POST /login/enrol/passkey`: the first passkey, which completes the sign-in.
pub async fn enrol(
    State(s): State<AppState>,
    rid: RequestId,
    ClientIp(ip): ClientIp,
    jar: CookieJar,
    headers: HeaderMap,
    PageBody(body): PageBody,
) -> Response {
    let r: StepFinish = match ceremony_request(&s, &jar, &headers, &body) {
        Ok(r) => r,
        Err(refusal) => return refusal,
    };
    let (cookie, session) = (two_step::partial_cookie(&s, &jar), session_cookie(&jar, s.secure()));
    let device = jar.get(device_cookie_name(s.secure())).map(|c| c.value().to_owned());
    let credential = r.credential.to_string();
    let outcome = s
        .provider
        .finish_passkey_enrolment(
            &r.req,
            cookie.as_ref(),
            session.as_ref(),
            &r.ceremony,
            &credential,
            ip,
            device.as_deref(),
            user_agent(&headers),
            s.clock.now(),
        )
        .await;
    step_outcome(&s, &rid, jar, outcome)
}

/// The account session for a ceremony request, or a JSON 401.
#[allow(clippy::result_large_err)]
async fn account(s: &AppState, rid: &RequestId, jar: &CookieJar) -> Result<AccountSession, Response> {
    let cookie = session_cookie(jar, s.secure());
    match s.provider.account_session(cookie.as_ref(), s.clock.now()).await {
        Ok(Some(a)) => Ok(a),
        Ok(None) => Err(refused(StatusCode::UNAUTHORIZED, "you are signed out; reload the page and sign in again")),
        Err(e) => Err(refusal(rid, PasskeyError::Internal(e))),
    }
}

#[derive(Deserialize)]
struct StartRegistration {
    name: String,
}

#[derive(Deserialize)]
struct FinishRegistration {
    ceremony: String,
    credential: serde_json::Value,
}

/// `POST /account/passkeys/options`: creation options for a new passkey.
pub async fn register_options(
    State(s): State<AppState>,
    rid: RequestId,
    ClientIp(ip): ClientIp,
    jar: CookieJar,
    headers: HeaderMap,
    PageBody(body): PageBody,
) -> Response {
    let r: StartRegistration = match ceremony_request(&s, &jar, &headers, &body) {
        Ok(r) => r,
        Err(refusal) => return refusal,
    };
    let a = match account(&s, &rid, &jar).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    match s.provider.start_passkey_registration(&a, &r.name, ip, s.clock.now()).await {
        Ok(c) => answer(StatusCode::OK, json!({ "ceremony": c.ceremony, "options": c.options })),
        Err(e) => refusal(&rid, e),
    }
}

/// `POST /account/passkeys`: the new credential.
pub async fn register(
    State(s): State<AppState>,
    rid: RequestId,
    ClientIp(ip): ClientIp,
    jar: CookieJar,
    headers: HeaderMap,
    PageBody(body): PageBody,
) -> Response {
    let r: FinishRegistration = match ceremony_request(&s, &jar, &headers, &body) {
        Ok(r) => r,
        Err(refusal) => return refusal,
    };
    let a = match account(&s, &rid, &jar).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let credential = r.credential.to_string();
    match s.provider.finish_passkey_registration(&a, &r.ceremony, &credential, ip, s.clock.now()).await {
        Ok(_) => answer(StatusCode::OK, json!({ "location": format!("{PAGE}?done=added") })),
        Err(e) => refusal(&rid, e),
    }
}

/// `GET /account/passkeys`.
pub async fn page(
    State(s): State<AppState>,
    rid: RequestId,
    ClientIp(ip): ClientIp,
    jar: CookieJar,
    RawQuery(q): RawQuery,
) -> Response {
    let a = match signed_in(&s, &rid, ip, &jar, PAGE).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let done = Params::parse(q.unwrap_or_default().as_bytes()).ok().and_then(|p| p.get("done").map(str::to_owned));
    let notice = match done.as_deref() {
        Some("added") => Some("Your passkey was added. You can now sign in with it."),
        Some("renamed") => Some("The passkey was renamed."),
        Some("removed") => Some("The passkey was removed: it no longer signs you in."),
        _ => None,
    };
    show(&s, &rid, jar, &a, StatusCode::OK, notice, None).await
}

/// The passkeys page with a notice or an error.
async fn show(
    s: &AppState,
    rid: &RequestId,
    jar: CookieJar,
    a: &AccountSession,
    status: StatusCode,
    notice: Option<&str>,
    error: Option<&str>,
) -> Response {
    let list = match s.provider.user_passkeys(&a.user.id).await {
        Ok(l) => l,
        Err(e) => return refusal_page(rid, e),
    };
    let now = s.clock.now();
    let cfg = &s.provider.config.passkeys;
    let enabled = s.provider.passkeys().is_some();
    let passkeys = list
        .into_iter()
        .map(|p| pages::PasskeyItem {
            id: p.cred_id,
            name: p.name,
            created: pages::date(p.created_at),
            last_used: p.last_used_at.map(pages::date),
            syncable: p.backup_eligible,
            backed_up: p.backup_state,
        })
        .collect::<Vec<_>>();
    let suggested =
        if passkeys.is_empty() { "My passkey".to_owned() } else { format!("Passkey {}", passkeys.len() + 1) };
    let (jar, csrf) = csrf_token(s, jar);
    let body = pages::render(&pages::AccountPasskeys {
        section: "passkeys",
        passkeys,
        csrf: &csrf,
        enabled,
        fresh: now - a.session.auth_time <= cfg.reauth_window as i64,
        window_minutes: cfg.reauth_window / 60,
        suggested: &suggested,
        notice,
        error,
    });
    (jar, pages::html_with_script(status, body, enabled)).into_response()
}

fn refusal_page(rid: &RequestId, e: PasskeyError) -> Response {
    match e {
        PasskeyError::Internal(e) => internal(rid, e),
        other => pages::html(StatusCode::BAD_REQUEST, pages::error("This request failed", &other.to_string())),
    }
}

/// `POST /account/passkeys/rename` (a form: `csrf`, `id`, `name`).
pub async fn rename(
    State(s): State<AppState>,
    rid: RequestId,
    ClientIp(ip): ClientIp,
    jar: CookieJar,
    headers: HeaderMap,
    PageBody(body): PageBody,
) -> Response {
    let params = match protected_form(&s, &jar, &headers, &body) {
        Ok(p) => p,
        Err(refusal) => return refusal,
    };
    let a = match signed_in(&s, &rid, ip, &jar, PAGE).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let (id, name) = (params.get("id").unwrap_or(""), params.get("name").unwrap_or(""));
    match s.provider.rename_passkey(&a.user.id, id, name).await {
        Ok(()) => redirect_to(StatusCode::SEE_OTHER, &format!("{PAGE}?done=renamed")),
        Err(PasskeyError::Internal(e)) => internal(&rid, e),
        Err(e) => show(&s, &rid, jar, &a, StatusCode::BAD_REQUEST, None, Some(&e.to_string())).await,
    }
}

/// `POST /account/passkeys/remove` (a form: `csrf`, `id`).
pub async fn remove(
    State(s): State<AppState>,
    rid: RequestId,
    ClientIp(ip): ClientIp,
    jar: CookieJar,
    headers: HeaderMap,
    PageBody(body): PageBody,
) -> Response {
    let params = match protected_form(&s, &jar, &headers, &body) {
        Ok(p) => p,
        Err(refusal) => return refusal,
    };
    let a = match signed_in(&s, &rid, ip, &jar, PAGE).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    match s.provider.remove_passkey(&a.user.id, params.get("id").unwrap_or(""), ip, s.clock.now()).await {
        Ok(()) => redirect_to(StatusCode::SEE_OTHER, &format!("{PAGE}?done=removed")),
        Err(PasskeyError::Internal(e)) => internal(&rid, e),
        Err(e) => show(&s, &rid, jar, &a, StatusCode::BAD_REQUEST, None, Some(&e.to_string())).await,
    }
}

/// `POST /account/passkeys/reauth`: signs in again (the login page), back to the passkeys page
/// with a fresh sign-in, so that a passkey may be added.
pub async fn reauth(
    State(s): State<AppState>,
    rid: RequestId,
    ClientIp(ip): ClientIp,
    jar: CookieJar,
    headers: HeaderMap,
    PageBody(body): PageBody,
) -> Response {
    if let Err(refusal) = protected_form(&s, &jar, &headers, &body) {
        return refusal;
    }
    match s.provider.account_sign_in(PAGE, ip, s.clock.now()).await {
        Ok(step) => render(&s, jar, step, StatusCode::SEE_OTHER),
        Err(e) => internal(&rid, e),
    }
}
