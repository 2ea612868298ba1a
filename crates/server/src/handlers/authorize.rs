//! `/authorize`, `/login`, `/consent`: the browser side of the code flow.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latchkey_core::Error;
use latchkey_core::authorize::{LoginOutcome, Step};
use latchkey_proto::secret::random_token;
use latchkey_proto::{OAuthError, Params, Password};
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::extract::{
    ClientIp, PageBody, RequestId, build_cookie, cookie_names, form_params, session_cookie, user_agent, wants_json,
};
use crate::pages;

pub async fn get(
    State(s): State<AppState>,
    rid: RequestId,
    ClientIp(ip): ClientIp,
    jar: CookieJar,
    RawQuery(q): RawQuery,
) -> Response {
    let params = Params::parse(q.unwrap_or_default().as_bytes());
    authorize(&s, &rid, ip, jar, params, StatusCode::FOUND).await
}

/// OpenID Connect Core §3.1.2.1: the authorization endpoint accepts POST with a form body too.
pub async fn post(
    State(s): State<AppState>,
    rid: RequestId,
    ClientIp(ip): ClientIp,
    jar: CookieJar,
    headers: HeaderMap,
    PageBody(body): PageBody,
) -> Response {
    let params = form_params(&headers, &body);
    authorize(&s, &rid, ip, jar, params, StatusCode::SEE_OTHER).await
}

async fn authorize(
    s: &AppState,
    rid: &RequestId,
    ip: Option<std::net::IpAddr>,
    jar: CookieJar,
    params: Result<Params, OAuthError>,
    redirect: StatusCode,
) -> Response {
    let params = match params {
        Ok(p) => p,
        // Before the client is known, nothing may be redirected.
        Err(e) => return render(s, jar, Step::ErrorPage(e), redirect),
    };
    let cookie = session_cookie(&jar, s.secure());
    match s.provider.authorize(&params, cookie.as_ref(), ip, s.clock.now()).await {
        Ok(step) => render(s, jar, step, redirect),
        Err(e) => internal(rid, e),
    }
}

/// Turns a core step into a response. `redirect` is 302 after GET, 303 after POST.
pub(crate) fn render(s: &AppState, jar: CookieJar, step: Step, redirect: StatusCode) -> Response {
    match step {
        Step::ErrorPage(e) => {
            tracing::info!(error = %e.code, "authorization request refused with an error page");
            pages::html(StatusCode::BAD_REQUEST, pages::error("This sign-in request is invalid", &e.description))
        }
        Step::Redirect(url) => redirect_to(redirect, &url),
        Step::Login { pending, client_name, login_hint } => {
            let (jar, csrf) = csrf_token(s, jar);
            let body = pages::login(&pages::LoginPage {
                client_name: &client_name,
                pending: &pending,
                csrf: &csrf,
                username: login_hint.as_deref().unwrap_or(""),
                error: None,
                links: s.login_links(),
                passkeys: s.passkeys_offered(),
            });
            (jar, pages::html_with_script(StatusCode::OK, body, s.passkeys_offered())).into_response()
        }
        Step::Consent { pending, client_name, scope, username, unverified, resource, claims } => {
            let (jar, csrf) = csrf_token(s, jar);
            let body = pages::consent(&pages::ConsentPage {
                client_name: &client_name,
                pending: &pending,
                csrf: &csrf,
                username: &username,
                scope: &scope,
                unverified: unverified.as_deref(),
                resource: resource.as_deref().map(|(n, u)| (n.as_str(), u.as_str())),
                claims: &claims.0,
            });
            (jar, pages::html(StatusCode::OK, body)).into_response()
        }
        Step::SecondFactor { pending, cookie } => {
            let jar = match &cookie {
                Some(token) => crate::handlers::two_step::with_partial_cookie(s, jar, token),
                None => jar,
            };
            (jar, redirect_to(redirect, &crate::handlers::two_step::page_url(&pending))).into_response()
        }
    }
}

pub(crate) fn redirect_to(status: StatusCode, url: &str) -> Response {
    match HeaderValue::from_str(url) {
        Ok(v) => {
            let mut res = status.into_response();
            res.headers_mut().insert(header::LOCATION, v);
            res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res
        }
        Err(_) => pages::html(
            StatusCode::BAD_REQUEST,
            pages::error("This sign-in request is invalid", "the redirect URI cannot be used in a Location header"),
        ),
    }
}

pub(crate) fn internal(rid: &RequestId, e: Error) -> Response {
    match e {
        Error::OAuth(e) => {
            pages::html(crate::error::status(e.code), pages::error("This request failed", &e.description))
        }
        Error::Internal(cause) => {
            tracing::error!(request_id = %rid.0, error = %format!("{cause:#}"), "internal error");
            pages::html(
                StatusCode::INTERNAL_SERVER_ERROR,
                pages::error(
                    "Something went wrong",
                    &format!("The server could not complete this request (request id {}).", rid.0),
                ),
            )
        }
    }
}

/// Double-submit CSRF token in an HttpOnly, SameSite=Lax cookie, repeated in a hidden form field.
/// Another site can neither read the cookie nor (with `__Host-` over https) set it, so it cannot
/// forge a matching form post.
///
/// The token is `nonce.mac`, the MAC made under the server key (`latchkey_core::server_key`, the
/// same on every instance that shares the database). Without it, anyone able to plant a cookie (a
/// sibling subdomain or a network attacker, with an http issuer) could pair a self-chosen cookie
/// with the same field and post a login form in a victim's browser (login CSRF).
pub(crate) fn csrf_token(s: &AppState, jar: CookieJar) -> (CookieJar, String) {
    let name = cookie_names(s.secure()).csrf;
    let key = &s.provider.server_key;
    // Kept while valid, so pages open in other tabs keep working.
    if let Some(c) = jar.get(name).filter(|c| csrf_valid(key, c.value())) {
        let v = c.value().to_owned();
        return (jar, v);
    }
    let nonce = random_token();
    let v = format!("{nonce}.{}", URL_SAFE_NO_PAD.encode(key.mac(CSRF_PURPOSE, nonce.as_bytes())));
    (jar.add(build_cookie(name, v.clone(), None, s.secure())), v)
}

/// What the MAC of a CSRF token is made for: no other use of the server key can yield one.
const CSRF_PURPOSE: &str = "latchkey csrf-token v1";

/// `nonce.mac` with a 256-bit nonce and its MAC under the server key, compared in constant time.
fn csrf_valid(key: &latchkey_core::server_key::ServerKey, token: &str) -> bool {
    let Some((nonce, mac)) = token.split_once('.') else { return false };
    if nonce.len() != 43 || mac.len() != 43 {
        return false;
    }
    URL_SAFE_NO_PAD.decode(mac).is_ok_and(|tag| key.verify(CSRF_PURPOSE, nonce.as_bytes(), &tag))
}

pub(crate) fn csrf_ok(s: &AppState, jar: &CookieJar, params: &Params) -> bool {
    match (jar.get(cookie_names(s.secure()).csrf), params.get("csrf")) {
        (Some(c), Some(f)) => {
            bool::from(c.value().as_bytes().ct_eq(f.as_bytes())) && csrf_valid(&s.provider.server_key, c.value())
        }
        _ => false,
    }
}

/// The CSRF token a page's script sent in a header (the passkey ceremony's JSON requests): the
/// same double-submit token as the forms'.
pub(crate) fn csrf_header_ok(s: &AppState, jar: &CookieJar, given: &str) -> bool {
    match jar.get(cookie_names(s.secure()).csrf) {
        Some(c) => {
            bool::from(c.value().as_bytes().ct_eq(given.as_bytes())) && csrf_valid(&s.provider.server_key, c.value())
        }
        None => false,
    }
}

/// A sign-in request the page cannot act on: HTTP 400 with the reason.
pub(crate) fn invalid_page(title: &str, description: &str) -> Response {
    pages::html(StatusCode::BAD_REQUEST, pages::error(title, description))
}

/// A form a person submitted: parsed, and carrying the CSRF token of the page it came from.
/// The refusal is the page to answer with (rare, so its size does not matter).
#[allow(clippy::result_large_err)]
pub(crate) fn protected_form(
    s: &AppState,
    jar: &CookieJar,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Params, Response> {
    let params =
        form_params(headers, body).map_err(|e| invalid_page("This sign-in request is invalid", &e.description))?;
    if !csrf_ok(s, jar, &params) {
        return Err(csrf_failed());
    }
    Ok(params)
}

pub(crate) fn csrf_failed() -> Response {
    pages::html(
        StatusCode::FORBIDDEN,
        pages::error(
            "This form has expired",
            "The form was submitted without its security token, or from another site. Go back to the application and sign in again.",
        ),
    )
}

/// `POST /login`.
pub async fn login(
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
    let (Some(pending), Some(username)) = (params.get("req"), params.get("username")) else {
        return pages::html(
            StatusCode::BAD_REQUEST,
            pages::error("This sign-in request is invalid", "the form is missing the request id or the username"),
        );
    };
    let password = Password::new(params.get("password").unwrap_or(""));
    let device_name = device_cookie_name(s.secure());
    let device = jar.get(device_name).map(|c| c.value().to_owned());
    let ua = user_agent(&headers);
    match s.provider.login(pending, username, password, ip, device.as_deref(), ua, s.clock.now()).await {
        Err(e) => internal(&rid, e),
        Ok(Err(step)) => render(&s, jar, step, StatusCode::SEE_OTHER),
        Ok(Ok(LoginOutcome::Failed { client_name })) => {
            let csrf = params.get("csrf").unwrap_or_default();
            let body = pages::login(&pages::LoginPage {
                client_name: &client_name,
                pending,
                csrf,
                username,
                // One message for an unknown user and a wrong password: no user enumeration.
                error: Some("Invalid username or password."),
                links: s.login_links(),
                passkeys: s.passkeys_offered(),
            });
            pages::html_with_script(StatusCode::OK, body, s.passkeys_offered())
        }
        Ok(Ok(LoginOutcome::Locked { client_name })) => {
            let csrf = params.get("csrf").unwrap_or_default();
            let body = pages::login(&pages::LoginPage {
                client_name: &client_name,
                pending,
                csrf,
                username,
                // Shown only after the right password (`LoginOutcome::Locked` says why).
                error: Some("This account is locked. Contact your administrator."),
                links: s.login_links(),
                passkeys: s.passkeys_offered(),
            });
            pages::html_with_script(StatusCode::FORBIDDEN, body, s.passkeys_offered())
        }
        Ok(Ok(LoginOutcome::Unverified { client_name })) => {
            let csrf = params.get("csrf").unwrap_or_default();
            let body = pages::login(&pages::LoginPage {
                client_name: &client_name,
                pending,
                csrf,
                username,
                // Only after the right password: it tells nothing to someone guessing.
                error: Some(
                    "Confirm your email address first: follow the link we sent to it (we have just sent a new one).",
                ),
                links: s.login_links(),
                passkeys: s.passkeys_offered(),
            });
            pages::html_with_script(StatusCode::FORBIDDEN, body, s.passkeys_offered())
        }
        Ok(Ok(LoginOutcome::Throttled { client_name, retry_after })) => {
            let unit = if retry_after == 1 { "second" } else { "seconds" };
            let message = format!("Too many sign-in attempts. Try again in {retry_after} {unit}.");
            let mut res = if wants_json(&headers) {
                let body = latchkey_proto::error::ErrorResponse {
                    error: latchkey_proto::ErrorCode::TemporarilyUnavailable.as_str().to_owned(),
                    error_description: Some(format!("too many attempts, try again in {retry_after} s")),
                };
                (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response()
            } else {
                let csrf = params.get("csrf").unwrap_or_default();
                let page = pages::login(&pages::LoginPage {
                    client_name: &client_name,
                    pending,
                    csrf,
                    username,
                    error: Some(&message),
                    links: s.login_links(),
                    passkeys: s.passkeys_offered(),
                });
                pages::html_with_script(StatusCode::TOO_MANY_REQUESTS, page, s.passkeys_offered())
            };
            if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
                res.headers_mut().insert(header::RETRY_AFTER, v);
            }
            res
        }
        // The password was right; the second factor comes before any session.
        Ok(Ok(LoginOutcome::SecondFactor { next })) => render(&s, jar, next, StatusCode::SEE_OTHER),
        Ok(Ok(LoginOutcome::Done { session, max_age, device, next })) => {
            let jar = jar
                .add(build_cookie(
                    cookie_names(s.secure()).session,
                    session.expose_secret().to_owned(),
                    Some(max_age),
                    s.secure(),
                ))
                .add(build_cookie(device_name, device, Some(latchkey_core::device::DEVICE_TTL), s.secure()));
            let next = match next {
                // Post/redirect/get: a reload of the consent page must not re-post the password.
                Step::Consent { pending, .. } => redirect_to(StatusCode::SEE_OTHER, &format!("/consent?req={pending}")),
                other => render(&s, CookieJar::new(), other, StatusCode::SEE_OTHER),
            };
            (jar, next).into_response()
        }
    }
}

/// The known-device cookie (`latchkey_core::device`): `__Host-` prefixed with an https issuer, so
/// that a sibling subdomain cannot plant one.
pub(crate) fn device_cookie_name(secure: bool) -> &'static str {
    if secure { "__Host-latchkey_device" } else { "latchkey_device" }
}

/// `GET /consent?req=…`.
pub async fn consent_page(
    State(s): State<AppState>,
    rid: RequestId,
    jar: CookieJar,
    RawQuery(q): RawQuery,
) -> Response {
    let params = match Params::parse(q.unwrap_or_default().as_bytes()) {
        Ok(p) => p,
        Err(e) => {
            return pages::html(
                StatusCode::BAD_REQUEST,
                pages::error("This sign-in request is invalid", &e.description),
            );
        }
    };
    let Some(pending) = params.get("req") else {
        return pages::html(
            StatusCode::BAD_REQUEST,
            pages::error("This sign-in request is invalid", "the request id is missing"),
        );
    };
    let cookie = session_cookie(&jar, s.secure());
    match s.provider.consent_page(pending, cookie.as_ref(), s.clock.now()).await {
        Ok(step) => render(&s, jar, step, StatusCode::FOUND),
        Err(e) => internal(&rid, e),
    }
}

/// `POST /consent`.
pub async fn consent(
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
    let Some(pending) = params.get("req") else {
        return pages::html(
            StatusCode::BAD_REQUEST,
            pages::error("This sign-in request is invalid", "the request id is missing"),
        );
    };
    let approve = match params.get("decision") {
        Some("allow") => true,
        Some("deny") => false,
        _ => {
            return pages::html(
                StatusCode::BAD_REQUEST,
                pages::error("This sign-in request is invalid", "choose Allow or Deny"),
            );
        }
    };
    let cookie = session_cookie(&jar, s.secure());
    match s.provider.decide_consent(pending, cookie.as_ref(), approve, s.clock.now()).await {
        Ok(step) => render(&s, jar, step, StatusCode::SEE_OTHER),
        Err(e) => internal(&rid, e),
    }
}
