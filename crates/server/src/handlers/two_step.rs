//! `/login/two-step`, `/login/enrol`, `/login/continue`: the second-factor step of the sign-in
//! (`latchkey_core::factors`). The partial sign-in travels in a cookie of its own, so that only
//! the browser that gave the password can finish it.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::Cookie;
use latchkey_core::authorize::Step;
use latchkey_core::factors::sign_in::{Refusal, TwoStepOutcome, TwoStepPage, TwoStepView};
use latchkey_core::factors::{Factor, RecoveryCode, TotpCode};
use latchkey_proto::{Params, PartialSignInToken, SessionToken};

use crate::AppState;
use crate::extract::{ClientIp, PageBody, RequestId, build_cookie, cookie_names, session_cookie, user_agent};
use crate::handlers::authorize::{
    csrf_token, device_cookie_name, internal, invalid_page, protected_form, redirect_to, render,
};
use crate::pages;
use crate::pages_two_step::{Answered, EnrolPage, RecoveryCodesPage, TwoStepPage as TwoStepTemplate, grouped, qr_svg};

/// The partial sign-in's cookie: `__Host-` prefixed with an https issuer.
pub(crate) fn cookie_name(secure: bool) -> &'static str {
    if secure { "__Host-latchkey_two_step" } else { "latchkey_two_step" }
}

pub(crate) fn partial_cookie(s: &AppState, jar: &CookieJar) -> Option<PartialSignInToken> {
    jar.get(cookie_name(s.secure())).map(|c| PartialSignInToken::new(c.value()))
}

/// Gives the browser the partial sign-in's cookie, for as long as the sign-in page lives.
pub(crate) fn with_partial_cookie(s: &AppState, jar: CookieJar, token: &PartialSignInToken) -> CookieJar {
    let max_age = s.provider.config.pending_ttl;
    jar.add(build_cookie(cookie_name(s.secure()), token.expose_secret().to_owned(), Some(max_age), s.secure()))
}

/// Where the step's page is.
pub(crate) fn page_url(pending: &str) -> String {
    format!("/login/two-step?req={pending}")
}

/// The refusal is the page to answer with (rare, so its size does not matter).
#[allow(clippy::result_large_err)]
fn query(q: Option<String>) -> Result<Params, Response> {
    Params::parse(q.unwrap_or_default().as_bytes())
        .map_err(|e| invalid_page("This sign-in request is invalid", &e.description))
}

#[allow(clippy::result_large_err)]
fn request_id(params: &Params) -> Result<&str, Response> {
    params.get("req").ok_or_else(|| invalid_page("This sign-in request is invalid", "the request id is missing"))
}

/// The page for `view`, with `error` (an answer to the form `answered`) shown; `status` 200, or
/// 429 when throttled.
fn show(
    s: &AppState,
    jar: CookieJar,
    view: &TwoStepView,
    error: Option<(&str, Answered)>,
    status: StatusCode,
) -> Response {
    let (jar, csrf) = csrf_token(s, jar);
    let body = match &view.page {
        TwoStepPage::Ask { accepted } => pages::render(&TwoStepTemplate {
            client_name: &view.client_name,
            username: &view.username,
            pending: &view.pending,
            csrf: &csrf,
            error: error.map(|(e, _)| e),
            answered: error.map_or(Answered::Code, |(_, a)| a),
            totp: accepted.totp,
            recovery_code: accepted.recovery_code,
            passkey: accepted.passkey && s.passkeys_offered(),
        }),
        TwoStepPage::EnrolTotp { uri, secret_base32 } => pages::render(&EnrolPage {
            client_name: &view.client_name,
            username: &view.username,
            pending: Some(&view.pending),
            csrf: &csrf,
            error: error.map(|(e, _)| e),
            secret: &grouped(secret_base32),
            uri,
            qr_src: &format!("/login/two-step/qr.svg?req={}", view.pending),
            action: "/login/enrol",
            ask_password: false,
        }),
        TwoStepPage::EnrolPasskey if s.passkeys_offered() => {
            let page = crate::pages_two_step::PasskeyEnrolPage {
                client_name: &view.client_name,
                username: &view.username,
                pending: &view.pending,
                csrf: &csrf,
            };
            return (jar, pages::html_with_script(status, pages::render(&page), true)).into_response();
        }
        TwoStepPage::EnrolPasskey => {
            return pages::html(
                StatusCode::FORBIDDEN,
                pages::error(
                    "A passkey is required",
                    &format!(
                        "{} requires signing in with a passkey, and passkeys are not available on this server (its address is not a domain name).",
                        view.client_name
                    ),
                ),
            );
        }
    };
    let script = matches!(&view.page, TwoStepPage::Ask { accepted } if accepted.passkey) && s.passkeys_offered();
    (jar, pages::html_with_script(status, body, script)).into_response()
}

/// `GET /login/two-step?req=…`.
pub async fn page(State(s): State<AppState>, rid: RequestId, jar: CookieJar, RawQuery(q): RawQuery) -> Response {
    let params = match query(q) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let pending = match request_id(&params) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let cookie = partial_cookie(&s, &jar);
    match s.provider.two_step_page(pending, cookie.as_ref(), s.clock.now()).await {
        Err(e) => internal(&rid, e),
        Ok(Err(step)) => render(&s, jar, step, StatusCode::FOUND),
        Ok(Ok(view)) => show(&s, jar, &view, None, StatusCode::OK),
    }
}

/// `GET /login/two-step/qr.svg?req=…`: the QR code of the TOTP app being set up at this step.
pub async fn qr(State(s): State<AppState>, rid: RequestId, jar: CookieJar, RawQuery(q): RawQuery) -> Response {
    let params = match query(q) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let pending = match request_id(&params) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let cookie = partial_cookie(&s, &jar);
    match s.provider.two_step_page(pending, cookie.as_ref(), s.clock.now()).await {
        Err(e) => internal(&rid, e),
        Ok(Ok(TwoStepView { page: TwoStepPage::EnrolTotp { uri, .. }, .. })) => svg(&uri),
        Ok(_) => crate::handlers::not_found().await,
    }
}

/// An SVG image that holds a secret: never cached, no script, no framing.
pub(crate) fn svg(text: &str) -> Response {
    let Some(body) = qr_svg(text) else { return StatusCode::INTERNAL_SERVER_ERROR.into_response() };
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/svg+xml"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"));
    res
}

/// The form sent (`code`, TOTP, or `recovery_code`) and the factor it carries. `Err`: what was
/// typed cannot be one (the page says so without spending an attempt).
fn factor(params: &Params) -> (Answered, Result<Factor, Refusal>) {
    let typed = |k| params.get(k).map(str::trim).filter(|v| !v.is_empty());
    if let Some(code) = typed("code") {
        return (Answered::Code, TotpCode::parse(code).map(Factor::Totp).ok_or(Refusal::Wrong));
    }
    if let Some(code) = typed("recovery_code") {
        let factor = RecoveryCode::parse(code).map(Factor::RecoveryCode).ok_or(Refusal::Wrong);
        return (Answered::RecoveryCode, factor);
    }
    let answered = if params.get("recovery_code").is_some() { Answered::RecoveryCode } else { Answered::Code };
    (answered, Err(Refusal::Wrong))
}

/// `POST /login/two-step`.
pub async fn submit(
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
    let pending = match request_id(&params) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (now, cookie, session) = (s.clock.now(), partial_cookie(&s, &jar), session_cookie(&jar, s.secure()));
    let device = jar.get(device_cookie_name(s.secure())).map(|c| c.value().to_owned());
    let (answered, factor) = factor(&params);
    let outcome = match factor {
        Ok(f) => {
            let p = &s.provider;
            let ua = user_agent(&headers);
            p.submit_second_factor(pending, cookie.as_ref(), session.as_ref(), f, ip, device.as_deref(), ua, now).await
        }
        Err(refusal) => match s.provider.two_step_page(pending, cookie.as_ref(), now).await {
            Ok(Ok(view)) => Ok(Ok(TwoStepOutcome::Refused { view, refusal })),
            Ok(Err(step)) => Ok(Err(step)),
            Err(e) => Err(e),
        },
    };
    respond(&s, &rid, jar, outcome, answered)
}

/// `POST /login/enrol`: the first code of the app set up at this step.
pub async fn enrol(
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
    let pending = match request_id(&params) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (now, cookie, session) = (s.clock.now(), partial_cookie(&s, &jar), session_cookie(&jar, s.secure()));
    let device = jar.get(device_cookie_name(s.secure())).map(|c| c.value().to_owned());
    let code = params.get("code").and_then(TotpCode::parse);
    let (p, ua) = (&s.provider, user_agent(&headers));
    let outcome =
        p.enrol_at_sign_in(pending, cookie.as_ref(), session.as_ref(), code, ip, device.as_deref(), ua, now).await;
    respond(&s, &rid, jar, outcome, Answered::Code)
}

fn respond(
    s: &AppState,
    rid: &RequestId,
    jar: CookieJar,
    outcome: Result<Result<TwoStepOutcome, Step>, latchkey_core::Error>,
    answered: Answered,
) -> Response {
    match outcome {
        Err(e) => internal(rid, e),
        Ok(Err(step)) => render(s, jar, step, StatusCode::SEE_OTHER),
        Ok(Ok(TwoStepOutcome::Refused { view, refusal })) => {
            let status = match refusal {
                Refusal::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::OK,
            };
            let message = match (refusal, answered) {
                // A recovery code has no clock to check: "the time on your phone" would mislead.
                (Refusal::Wrong, Answered::RecoveryCode) => {
                    "That recovery code is not right, or it was used already.".to_owned()
                }
                _ => refusal.message(),
            };
            let mut res = show(s, jar, &view, Some((&message, answered)), status);
            if let Refusal::Throttled { retry_after } = refusal
                && let Ok(v) = HeaderValue::from_str(&retry_after.to_string())
            {
                res.headers_mut().insert(header::RETRY_AFTER, v);
            }
            res
        }
        Ok(Ok(TwoStepOutcome::Done { session, max_age, device, next })) => {
            let jar = signed_in(s, jar, &session, max_age, device);
            let next = match next {
                // Post/redirect/get: a reload of the consent page must not re-post the code.
                Step::Consent { pending, .. } => redirect_to(StatusCode::SEE_OTHER, &format!("/consent?req={pending}")),
                other => render(s, CookieJar::new(), other, StatusCode::SEE_OTHER),
            };
            (jar, next).into_response()
        }
        Ok(Ok(TwoStepOutcome::Enrolled { session, max_age, device, codes, pending })) => {
            let jar = signed_in(s, jar, &session, max_age, device);
            let (jar, csrf) = csrf_token(s, jar);
            let codes = codes.iter().map(RecoveryCode::expose_grouped).collect();
            let body = pages::render(&RecoveryCodesPage { codes, pending: Some(&pending), csrf: &csrf });
            (jar, pages::html(StatusCode::OK, body)).into_response()
        }
    }
}

/// The session cookie (new, or rotated by a step-up) and the known-device cookie set, the partial
/// sign-in's cookie cleared.
pub(crate) fn signed_in(
    s: &AppState,
    jar: CookieJar,
    session: &SessionToken,
    max_age: u64,
    device: String,
) -> CookieJar {
    let secure = s.secure();
    jar.add(build_cookie(cookie_names(secure).session, session.expose_secret().to_owned(), Some(max_age), secure))
        .add(build_cookie(device_cookie_name(secure), device, Some(latchkey_core::device::DEVICE_TTL), secure))
        .remove(Cookie::build(cookie_name(secure)).path("/"))
}

/// `POST /login/continue`: after the recovery codes, on to the application.
pub async fn continue_sign_in(
    State(s): State<AppState>,
    rid: RequestId,
    jar: CookieJar,
    headers: HeaderMap,
    PageBody(body): PageBody,
) -> Response {
    let params = match protected_form(&s, &jar, &headers, &body) {
        Ok(p) => p,
        Err(refusal) => return refusal,
    };
    let pending = match request_id(&params) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let session = session_cookie(&jar, s.secure());
    match s.provider.continue_sign_in(pending, session.as_ref(), s.clock.now()).await {
        Err(e) => internal(&rid, e),
        Ok(Step::Consent { pending, .. }) => redirect_to(StatusCode::SEE_OTHER, &format!("/consent?req={pending}")),
        Ok(step) => render(&s, jar, step, StatusCode::SEE_OTHER),
    }
}
