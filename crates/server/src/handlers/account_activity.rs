//! `/account/activity`: the signed-in person's recent security events.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum_extra::extract::CookieJar;

use super::account::signed_in;
use crate::AppState;
use crate::account_pages::{ActivityPage, EventView};
use crate::extract::{ClientIp, RequestId};
use crate::handlers::authorize::internal;
use crate::pages;

pub async fn get(State(s): State<AppState>, rid: RequestId, ClientIp(ip): ClientIp, jar: CookieJar) -> Response {
    let a = match signed_in(&s, &rid, ip, &jar, "/account/activity").await {
        Ok(a) => a,
        Err(r) => return r,
    };
    match s.provider.account_activity(&a).await {
        Ok(items) => {
            let p = ActivityPage { section: "activity", events: items.iter().map(EventView::of).collect() };
            pages::html(StatusCode::OK, pages::render(&p))
        }
        Err(e) => internal(&rid, e),
    }
}
