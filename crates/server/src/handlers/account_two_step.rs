//! `/account/two-step`: the signed-in person's authenticator app and recovery codes.

use std::time::{Duration, UNIX_EPOCH};

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use latchkey_core::factors::manage::{ManageRefusal, Proof, TotpStatus};
use latchkey_core::factors::sign_in::Refusal;
use latchkey_core::factors::{Factor, RecoveryCode, TotpCode};
use latchkey_proto::{Params, Password};

use crate::AppState;
use crate::extract::{ClientIp, PageBody, RequestId};
use crate::handlers::account::signed_in;
use crate::handlers::authorize::{csrf_token, internal, protected_form, redirect_to};
use crate::pages;
use crate::pages_two_step::{AccountTwoStep, RecoveryCodesPage, TotpView, grouped};

const PATH: &str = "/account/two-step";

/// What a redirect after a change tells the page to say.
fn notice(q: Option<&str>) -> Option<&'static str> {
    match Params::parse(q.unwrap_or_default().as_bytes()).ok()?.get("done")? {
        "removed" => Some("The authenticator app is off."),
        _ => None,
    }
}

/// `GET /account/two-step`.
pub async fn page(
    State(s): State<AppState>,
    rid: RequestId,
    ClientIp(ip): ClientIp,
    jar: CookieJar,
    RawQuery(q): RawQuery,
) -> Response {
    show(&s, &rid, ip, jar, None, notice(q.as_deref()), StatusCode::OK).await
}

async fn show(
    s: &AppState,
    rid: &RequestId,
    ip: Option<std::net::IpAddr>,
    jar: CookieJar,
    error: Option<&str>,
    notice: Option<&str>,
    status: StatusCode,
) -> Response {
    let a = match signed_in(s, rid, ip, &jar, PATH).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let st = match s.provider.two_step_status(&a.user).await {
        Ok(st) => st,
        Err(e) => return internal(rid, e),
    };
    let has_factor = !matches!(st.totp, TotpStatus::Off | TotpStatus::Pending { .. }) || st.passkeys > 0;
    let totp = match st.totp {
        TotpStatus::Off => TotpView::Off,
        TotpStatus::Pending { uri, secret_base32 } => TotpView::Pending { secret: grouped(&secret_base32), uri },
        TotpStatus::On { since } => {
            let t = UNIX_EPOCH + Duration::from_secs(u64::try_from(since).unwrap_or(0));
            TotpView::On { since: httpdate::fmt_http_date(t) }
        }
    };
    let (jar, csrf) = csrf_token(s, jar);
    let body = pages::render(&AccountTwoStep {
        section: "two-step",
        username: &a.user.username,
        csrf: &csrf,
        totp,
        recovery_codes: st.recovery_codes,
        has_factor,
        error,
        notice,
    });
    (jar, pages::html(status, body)).into_response()
}

/// `GET /account/two-step/qr.svg`: the QR code of the app being set up.
pub async fn qr(State(s): State<AppState>, rid: RequestId, ClientIp(ip): ClientIp, jar: CookieJar) -> Response {
    let a = match signed_in(&s, &rid, ip, &jar, PATH).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    match s.provider.two_step_status(&a.user).await {
        Ok(st) => match st.totp {
            TotpStatus::Pending { uri, .. } => crate::handlers::two_step::svg(&uri),
            _ => crate::handlers::not_found().await,
        },
        Err(e) => internal(&rid, e),
    }
}

/// What proves the person: a current code (from the app, or a recovery code) if one was typed,
/// else the password, else nothing. `Err`: what was typed as a code cannot be one.
fn proof(params: &Params) -> Result<Option<Proof>, ManageRefusal> {
    let typed = |k| params.get(k).filter(|v| !v.trim().is_empty());
    if let Some(code) = typed("code") {
        let factor = match (TotpCode::parse(code), RecoveryCode::parse(code)) {
            (Some(c), _) => Factor::Totp(c),
            (None, Some(c)) => Factor::RecoveryCode(c),
            (None, None) => return Err(ManageRefusal::Factor(Refusal::Wrong)),
        };
        return Ok(Some(Proof::Factor(factor)));
    }
    Ok(typed("password").map(|p| Proof::Password(Password::new(p))))
}

fn status_of(r: ManageRefusal) -> StatusCode {
    match r {
        ManageRefusal::Factor(Refusal::Throttled { .. }) | ManageRefusal::PasswordThrottled { .. } => {
            StatusCode::TOO_MANY_REQUESTS
        }
        _ => StatusCode::OK,
    }
}

/// `POST /account/two-step`: `action` = setup, confirm, remove or regenerate.
pub async fn post(
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
    let a = match signed_in(&s, &rid, ip, &jar, PATH).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let (p, now) = (&s.provider, s.clock.now());
    let done = match params.get("action") {
        Some("setup") => p.start_totp_setup(&a, now).await.map(|_| Ok(None)),
        Some("confirm") => {
            let code = params.get("code").and_then(TotpCode::parse);
            let password = Password::new(params.get("password").unwrap_or(""));
            p.confirm_totp_setup(&a, code, password, ip, now).await.map(|r| r.map(Some))
        }
        // Cancelling an unconfirmed setup needs no proof (the core asks for one only to turn a
        // working app off).
        Some("remove") => match proof(&params) {
            Ok(proof) => p.remove_totp(&a, proof, ip, now).await.map(|r| r.map(|()| None)),
            Err(r) => Ok(Err(r)),
        },
        Some("regenerate") => match proof(&params) {
            Ok(proof) => p.regenerate_recovery_codes(&a, proof, ip, now).await.map(|r| r.map(Some)),
            Err(r) => Ok(Err(r)),
        },
        _ => return crate::handlers::authorize::invalid_page("This form is invalid", "choose an action"),
    };
    match done {
        Err(e) => internal(&rid, e),
        Ok(Err(r)) => show(&s, &rid, ip, jar, Some(&r.message()), None, status_of(r)).await,
        // New recovery codes: shown once, on this response only.
        Ok(Ok(Some(codes))) => {
            let (jar, csrf) = csrf_token(&s, jar);
            let codes = codes.iter().map(RecoveryCode::expose_grouped).collect();
            let body = pages::render(&RecoveryCodesPage { codes, pending: None, csrf: &csrf });
            (jar, pages::html(StatusCode::OK, body)).into_response()
        }
        Ok(Ok(None)) => {
            let to = if params.get("action") == Some("remove") { "/account/two-step?done=removed" } else { PATH };
            redirect_to(StatusCode::SEE_OTHER, to)
        }
    }
}
