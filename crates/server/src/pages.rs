//! The HTML a person sees: login, consent and error pages. Plain forms, usable without JavaScript.
//!
//! Every page is an askama template (crates/server/templates/, one per page, extending
//! `layout.html`), checked at compile time; every value is HTML-escaped by the engine; every page forbids framing (clickjacking of credentials and
//! consent) and caching.

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use latchkey_proto::Scope;

/// No script at all; styles only from our own stylesheet; no framing; no base-URI tricks.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; frame-ancestors 'none'";

/// For pages that run the passkey ceremony: our own script file and requests to our own origin,
/// still no inline script (`/assets/passkey.js`).
const CSP_WITH_SCRIPT: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; \
                               img-src 'self'; base-uri 'none'; frame-ancestors 'none'";

pub fn html(status: StatusCode, body: String) -> Response {
    with_csp(status, body, CSP)
}

/// [`html`] for a page that loads `/assets/passkey.js` (when `script`).
pub fn html_with_script(status: StatusCode, body: String, script: bool) -> Response {
    with_csp(status, body, if script { CSP_WITH_SCRIPT } else { CSP })
}

fn with_csp(status: StatusCode, body: String, csp: &'static str) -> Response {
    let mut res = (status, Html(body)).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// Renders a page template. A template that fails to render (it cannot, short of a bug in a
/// `Display` impl) gives a bare error page rather than a half-written one.
pub fn render(page: &impl Template) -> String {
    page.render().unwrap_or_else(|e| {
        tracing::error!(error = %e, "a page template failed to render");
        "<!doctype html><title>Error · Latchkey</title><p>This page could not be shown.</p>".to_owned()
    })
}

/// A link under a form ("Forgot your password?", "Create an account").
#[derive(Clone, Debug)]
pub struct Link {
    pub href: String,
    pub text: &'static str,
}

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage<'a> {
    pub client_name: &'a str,
    pub pending: &'a str,
    pub csrf: &'a str,
    pub username: &'a str,
    pub error: Option<&'a str>,
    /// Other ways forward, as the deployment offers them.
    pub links: Vec<Link>,
    /// Offer "Sign in with a passkey" (the page then needs [`html_with_script`]).
    pub passkeys: bool,
}

pub fn login(p: &LoginPage<'_>) -> String {
    render(p)
}

/// What a scope lets an application do, as the consent and apps pages say it.
pub fn describe_scope(scope: &str) -> String {
    match scope {
        "openid" => "Know who you are (your user identifier)".into(),
        "profile" => "See your name, username and profile details".into(),
        "email" => "See your email address".into(),
        "address" => "See your postal address".into(),
        "phone" => "See your phone number".into(),
        "offline_access" => "Keep access when you are not signed in".into(),
        other => format!("Use the permission “{other}”"),
    }
}

pub struct ConsentPage<'a> {
    pub client_name: &'a str,
    pub pending: &'a str,
    pub csrf: &'a str,
    pub username: &'a str,
    pub scope: &'a Scope,
    /// A client nobody vetted (issue 12): marked unverified, with where it sends the user.
    pub unverified: Option<&'a latchkey_core::registration::Unverified>,
    /// RFC 8707: the API (name, URI) the access is for; tokens will be valid there only.
    pub resource: Option<(&'a str, &'a str)>,
    /// Claims asked for individually beyond the scopes (OpenID Connect Core §5.5).
    pub claims: &'a [&'static str],
}

/// The consent page. An unverified client's name is its own choice, so the page shows the facts a
/// name cannot fake (the redirect host, the metadata document's host); `logo_uri` is never shown
/// (a stranger's logo would lend the page a known brand).
#[derive(Template)]
#[template(path = "consent.html")]
struct ConsentTemplate<'a> {
    client_name: &'a str,
    pending: &'a str,
    csrf: &'a str,
    username: &'a str,
    items: Vec<String>,
    unverified: Option<&'a latchkey_core::registration::Unverified>,
    resource: Option<(&'a str, &'a str)>,
}

/// What an application asks for, in words, in the order a consent page lists it: who you are
/// first, then what the app may see, then how long it may keep access.
pub fn access_items(scope: &Scope, claims: &[&'static str]) -> Vec<String> {
    let rank = |s: &str| {
        ["openid", "profile", "email", "address", "phone", "offline_access"].iter().position(|k| *k == s).unwrap_or(6)
    };
    let mut scopes: Vec<&str> = scope.iter().collect();
    scopes.sort_by_key(|s| rank(s));
    let mut items: Vec<String> = scopes.iter().map(|s| describe_scope(s)).collect();
    items.extend(claims.iter().map(|c| latchkey_core::claims::describe(c)));
    if items.is_empty() {
        items.push("Sign you in (no other access)".to_owned());
    }
    items
}

pub fn consent(p: &ConsentPage<'_>) -> String {
    render(&ConsentTemplate {
        client_name: p.client_name,
        pending: p.pending,
        csrf: p.csrf,
        username: p.username,
        items: access_items(p.scope, p.claims),
        unverified: p.unverified,
        resource: p.resource,
    })
}

/// One passkey as `/account/passkeys` lists it.
pub struct PasskeyItem {
    pub id: String,
    pub name: String,
    pub created: String,
    pub last_used: Option<String>,
    pub syncable: bool,
    pub backed_up: bool,
}

/// `/account/passkeys`.
#[derive(Template)]
#[template(path = "account_passkeys.html")]
pub struct AccountPasskeys<'a> {
    pub section: &'static str,
    pub passkeys: Vec<PasskeyItem>,
    pub csrf: &'a str,
    /// Passkeys are available (the issuer has a domain name).
    pub enabled: bool,
    /// The sign-in is recent enough to add a passkey.
    pub fresh: bool,
    pub window_minutes: u64,
    pub suggested: &'a str,
    pub notice: Option<&'a str>,
    pub error: Option<&'a str>,
}

/// A time as people read it, in UTC: "2026-12-03 16:24 UTC".
pub fn date(t: i64) -> String {
    // Days to a civil date (Howard Hinnant's algorithm, proleptic Gregorian).
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", secs / 3600, secs % 3600 / 60)
}

#[derive(Template)]
#[template(path = "logout_confirm.html")]
struct LogoutConfirm<'a> {
    client_name: Option<&'a str>,
    csrf: &'a str,
    carried: &'a [(&'a str, &'a str)],
}

pub fn logout_confirm(client_name: Option<&str>, csrf: &str, carried: &[(&str, &str)]) -> String {
    render(&LogoutConfirm { client_name, csrf, carried })
}

#[derive(Template)]
#[template(path = "signed_out.html")]
struct SignedOut;

pub fn signed_out() -> String {
    render(&SignedOut)
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    message: &'a str,
}

pub fn error(title: &str, message: &str) -> String {
    render(&ErrorPage { title, message })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped() {
        let page = login(&LoginPage {
            client_name: "<script>alert(1)</script>",
            pending: "\"><x",
            csrf: "c",
            username: "a\"b",
            error: Some("<b>"),
            links: Vec::new(),
            passkeys: true,
        });
        assert!(!page.contains("<script>alert"));
        assert!(page.contains(r#"<script src="/assets/passkey.js" defer></script>"#), "the script file, never inline");
        assert!(!page.contains("\"><x"));
        assert!(!page.contains("<b>"), "the error message is escaped");
        assert!(
            page.contains("role=\"alert\">&#60;b&#62;</p>") || page.contains("role=\"alert\">&lt;b&gt;</p>"),
            "{page}"
        );
        assert!(page.contains(r#"<label for="password">Password</label>"#));
    }

    #[test]
    fn dates_are_civil_utc() {
        assert_eq!(date(0), "1970-01-01 00:00 UTC");
        assert_eq!(date(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(date(1_796_401_440), "2026-12-04 16:24 UTC");
    }
}
