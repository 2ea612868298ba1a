//! `/account/sessions`: the signed-in person's sessions; end one, or every other one. Ending goes
//! through `latchkey_core::sessions::end_sessions`, which only ever touches the signed-in user's
//! own sessions, whatever `sid` a form names.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use latchkey_core::account_store::SessionSelector;
use latchkey_core::sessions::{EndCause, EndSessions};

use super::account::{done, page, signed_in, signed_in_form};
use crate::AppState;
use crate::account_pages::{SessionView, SessionsPage};
use crate::extract::{ClientIp, PageBody, RequestId, build_cookie, cookie_names};
use crate::handlers::authorize::{csrf_token, internal, invalid_page, redirect_to};
use crate::pages;

const PATH: &str = "/account/sessions";

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
    let sessions = match s.provider.account_sessions(&a, s.clock.now()).await {
        Ok(list) => list,
        Err(e) => return internal(&rid, e),
    };
    // The count is a number the page was redirected with; anything else shows nothing.
    let notice = done(q.as_deref()).and_then(|d| d.parse::<u32>().ok()).map(|n| match n {
        0 => "No session was signed out: it had already ended.".to_owned(),
        1 => "1 session was signed out.".to_owned(),
        n => format!("{n} sessions were signed out."),
    });
    let mut views: Vec<SessionView> = sessions.iter().map(|x| SessionView::of(x, &a.session.sid)).collect();
    // This one first: it is the one a person looks for.
    views.sort_by_key(|v| !v.current);
    let others = views.iter().filter(|v| !v.current).count();
    let (jar, csrf) = csrf_token(&s, jar);
    page(jar, pages::render(&SessionsPage { section: "sessions", csrf: &csrf, sessions: views, others, notice }))
}

/// `POST /account/sessions`: `sid=…` ends that session, `others=end` every other one.
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
    let which = match (params.get("sid"), params.get("others")) {
        (Some(sid), None) if sid.len() <= 128 => SessionSelector::One(sid.to_owned()),
        (None, Some("end")) => SessionSelector::AllExcept(a.session.sid.clone()),
        _ => return invalid_page("This request is invalid", "name one session to sign out, or all the others"),
    };
    let req = EndSessions { user_id: &a.user.id, which, cause: EndCause::User, client_id: None, ip };
    let ended = match s.provider.end_sessions(req, s.clock.now()).await {
        Ok(e) => e,
        Err(e) => return internal(&rid, e),
    };
    if ended.iter().any(|x| x.sid == a.session.sid) {
        // This browser's own session: it is signed out, the cookie goes too.
        let name = cookie_names(s.secure()).session;
        let jar = jar.remove(build_cookie(name, String::new(), None, s.secure()));
        return (jar, pages::html(StatusCode::OK, pages::signed_out())).into_response();
    }
    redirect_to(StatusCode::SEE_OTHER, &format!("{PATH}?done={}", ended.len()))
}
