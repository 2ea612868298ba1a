//! `GET|POST /logout`: the end_session_endpoint (OpenID Connect RP-Initiated Logout 1.0).

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use latchkey_core::logout::LogoutStep;
use latchkey_proto::Params;

use super::authorize::{csrf_failed, csrf_ok, csrf_token, internal, invalid_page, redirect_to};
use crate::AppState;
use crate::extract::{PageBody, RequestId, build_cookie, cookie_names, form_params, session_cookie};
use crate::pages;

pub async fn get(State(s): State<AppState>, rid: RequestId, jar: CookieJar, RawQuery(q): RawQuery) -> Response {
    match Params::parse(q.unwrap_or_default().as_bytes()) {
        Ok(p) => logout(&s, &rid, jar, p, false).await,
        Err(e) => {
            pages::html(StatusCode::BAD_REQUEST, pages::error("This sign-out request is invalid", &e.description))
        }
    }
}

/// A POST is either an RP's form post of the same parameters, or the user's confirmation, which
/// must carry the CSRF token of the confirmation page.
pub async fn post(
    State(s): State<AppState>,
    rid: RequestId,
    jar: CookieJar,
    headers: HeaderMap,
    PageBody(body): PageBody,
) -> Response {
    let params = match form_params(&headers, &body) {
        Ok(p) => p,
        Err(e) => return invalid_page("This sign-out request is invalid", &e.description),
    };
    let confirmed = params.get("confirm") == Some("yes");
    if confirmed && !csrf_ok(&s, &jar, &params) {
        return csrf_failed();
    }
    logout(&s, &rid, jar, params, confirmed).await
}

async fn logout(s: &AppState, rid: &RequestId, jar: CookieJar, params: Params, confirmed: bool) -> Response {
    let cookie = session_cookie(&jar, s.secure());
    match s.provider.logout(&params, cookie.as_ref(), confirmed, s.clock.now()).await {
        Err(e) => internal(rid, e),
        Ok(LogoutStep::ErrorPage(e)) => {
            pages::html(StatusCode::BAD_REQUEST, pages::error("This sign-out request is invalid", &e.description))
        }
        Ok(LogoutStep::Confirm { client_name }) => {
            let (jar, csrf) = csrf_token(s, jar);
            let carried: Vec<(&str, &str)> = ["id_token_hint", "post_logout_redirect_uri", "state", "client_id"]
                .iter()
                .filter_map(|k| params.get(k).map(|v| (*k, v)))
                .collect();
            let body = pages::logout_confirm(client_name.as_deref(), &csrf, &carried);
            (jar, pages::html(StatusCode::OK, body)).into_response()
        }
        Ok(LogoutStep::Done { redirect, .. }) => {
            let name = cookie_names(s.secure()).session;
            let jar = jar.remove(build_cookie(name, String::new(), None, s.secure()));
            let next = match redirect {
                Some(url) => redirect_to(StatusCode::SEE_OTHER, &url),
                None => pages::html(StatusCode::OK, pages::signed_out()),
            };
            (jar, next).into_response()
        }
    }
}
