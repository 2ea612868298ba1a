//! `/account/apps`: the applications the signed-in person allowed; remove one's access.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum_extra::extract::CookieJar;
use latchkey_proto::ClientId;

use super::account::{done, page, signed_in, signed_in_form};
use crate::AppState;
use crate::account_pages::{AppItem, AppsPage};
use crate::extract::{ClientIp, PageBody, RequestId};
use crate::handlers::authorize::{csrf_token, internal, invalid_page, redirect_to};
use crate::pages;

const PATH: &str = "/account/apps";

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
    let apps = match s.provider.account_apps(&a, s.clock.now()).await {
        Ok(list) => list,
        Err(e) => return internal(&rid, e),
    };
    let notice = match done(q.as_deref()).as_deref() {
        Some("removed") => Some("The app's access was removed."),
        Some("none") => Some("That app had no access left."),
        _ => None,
    };
    let (jar, csrf) = csrf_token(&s, jar);
    let p = AppsPage { section: "apps", csrf: &csrf, apps: apps.iter().map(AppItem::of).collect(), notice };
    page(jar, pages::render(&p))
}

/// `POST /account/apps`: `client_id=…` loses the signed-in user's consent and grants.
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
    let client_id = match params.get("client_id").map(ClientId::parse) {
        Some(Ok(id)) => id,
        Some(Err(e)) => return invalid_page("This request is invalid", &e.description),
        None => return invalid_page("This request is invalid", "name the app whose access to remove"),
    };
    match s.provider.revoke_app(&a, &client_id, ip, s.clock.now()).await {
        Ok(r) if r.consent_removed || r.grants_revoked > 0 => {
            redirect_to(StatusCode::SEE_OTHER, "/account/apps?done=removed")
        }
        Ok(_) => redirect_to(StatusCode::SEE_OTHER, "/account/apps?done=none"),
        Err(e) => internal(&rid, e),
    }
}
