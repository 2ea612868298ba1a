//! The HTML a person sees: login, consent and error pages. Plain forms, usable without JavaScript.
//!
//! Every value is HTML-escaped; every page forbids framing (clickjacking of credentials and
//! consent) and caching.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};
use latchkey_proto::Scope;

/// No script at all; styles only from our own stylesheet; no framing; no base-URI tricks.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; frame-ancestors 'none'";

pub fn html(status: StatusCode, body: String) -> Response {
    let mut res = (status, Html(body)).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn layout(title: &str, content: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Latchkey</title>
<link rel="stylesheet" href="/assets/latchkey.css">
</head>
<body>
<main>
{content}
<footer>Latchkey</footer>
</main>
</body>
</html>
"#,
        title = text(title)
    )
}

pub struct LoginPage<'a> {
    pub client_name: &'a str,
    pub pending: &'a str,
    pub csrf: &'a str,
    pub username: &'a str,
    pub error: Option<&'a str>,
}

pub fn login(p: &LoginPage<'_>) -> String {
    let (invalid, error) = match p.error {
        Some(e) => (
            r#" aria-invalid="true" aria-describedby="login-error""#,
            format!(r#"<p class="error" id="login-error" role="alert">{}</p>"#, text(e)),
        ),
        None => ("", String::new()),
    };
    let autofocus_user = if p.username.is_empty() { " autofocus" } else { "" };
    let autofocus_pass = if p.username.is_empty() { "" } else { " autofocus" };
    layout(
        "Sign in",
        &format!(
            r#"<h1>Sign in</h1>
<p class="sub">to continue to <strong>{client}</strong></p>
<form method="post" action="/login">
<input type="hidden" name="req" value="{pending}">
<input type="hidden" name="csrf" value="{csrf}">
<label for="username">Username</label>
<input type="text" id="username" name="username" value="{username}" autocomplete="username" autocapitalize="none" spellcheck="false" required{invalid}{autofocus_user}>
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password" required{invalid}{autofocus_pass}>
{error}
<button type="submit">Sign in</button>
</form>"#,
            client = text(p.client_name),
            pending = attr(p.pending),
            csrf = attr(p.csrf),
            username = attr(p.username),
        ),
    )
}

fn describe(scope: &str) -> String {
    match scope {
        "openid" => "Know who you are (your user identifier)".into(),
        "profile" => "See your name and username".into(),
        "email" => "See your email address".into(),
        "offline_access" => "Keep access when you are not signed in".into(),
        other => format!("Use the permission “{}”", text(other)),
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
}

/// The warning block for an unverified client: its name is its own choice, so the page shows the
/// facts a name cannot fake (the redirect host, the metadata document's host). Every value is
/// escaped; `logo_uri` is never shown (a stranger's logo would lend the page a known brand).
fn unverified_notice(u: &latchkey_core::registration::Unverified) -> String {
    let mut s = format!(
        r#"<div class="warning" role="alert">
<p><strong>Unverified application.</strong> Nobody at this site has checked it; its name is the one it gave itself.</p>
<p>After you answer, you will be sent to <strong>{}</strong>.</p>
"#,
        text(&u.redirect_host)
    );
    if let Some(h) = &u.client_id_host {
        s.push_str(&format!("<p>It is described by a document published at <strong>{}</strong>.</p>\n", text(h)));
    }
    if u.loopback {
        s.push_str(
            "<p>This goes to an app on this device (a loopback address). Allow only if you just started this app yourself.</p>\n",
        );
    }
    s.push_str("</div>\n");
    s
}

pub fn consent(p: &ConsentPage<'_>) -> String {
    // Who you are first, then what the app may see, then how long it may keep access.
    let rank = |s: &str| ["openid", "profile", "email", "offline_access"].iter().position(|k| *k == s).unwrap_or(4);
    let mut scopes: Vec<&str> = p.scope.iter().collect();
    scopes.sort_by_key(|s| rank(s));
    let items: String = scopes.iter().map(|s| format!("<li>{}</li>\n", describe(s))).collect();
    let items = if items.is_empty() { "<li>Sign you in (no other access)</li>".to_owned() } else { items };
    layout(
        "Allow access",
        &format!(
            r#"<h1>Allow access?</h1>
<p class="sub">Signed in as <strong>{user}</strong></p>
{notice}<p><strong>{client}</strong>{mark} would like to:</p>
<ul class="scopes">
{items}</ul>
{resource}<form method="post" action="/consent">
<input type="hidden" name="req" value="{pending}">
<input type="hidden" name="csrf" value="{csrf}">
<button type="submit" name="decision" value="allow" autofocus>Allow</button>
<button type="submit" name="decision" value="deny" class="secondary">Deny</button>
</form>"#,
            user = text(p.username),
            client = text(p.client_name),
            notice = p.unverified.map(unverified_notice).unwrap_or_default(),
            mark = if p.unverified.is_some() { " (unverified)" } else { "" },
            resource = p
                .resource
                .map(|(name, uri)| {
                    let at = if name == uri {
                        format!("<code>{}</code>", text(uri))
                    } else {
                        format!("<strong>{}</strong> (<code>{}</code>)", text(name), text(uri))
                    };
                    format!("<p>This access is for {at} only.</p>\n")
                })
                .unwrap_or_default(),
            pending = attr(p.pending),
            csrf = attr(p.csrf),
        ),
    )
}

pub fn logout_confirm(client_name: Option<&str>, csrf: &str, carried: &[(&str, &str)]) -> String {
    let hidden: String = carried
        .iter()
        .map(|(k, v)| format!(r#"<input type="hidden" name="{}" value="{}">"#, attr(k), attr(v)) + "\n")
        .collect();
    let from = client_name
        .map(|c| format!("<p class=\"sub\"><strong>{}</strong> asked to sign you out.</p>", text(c)))
        .unwrap_or_default();
    layout(
        "Sign out",
        &format!(
            r#"<h1>Sign out?</h1>
{from}
<form method="post" action="/logout">
<input type="hidden" name="csrf" value="{csrf}">
<input type="hidden" name="confirm" value="yes">
{hidden}<button type="submit" autofocus>Sign out</button>
</form>"#,
            csrf = attr(csrf),
        ),
    )
}

pub fn signed_out() -> String {
    layout(
        "Signed out",
        r#"<h1>You are signed out</h1>
<p class="sub">You can close this window.</p>"#,
    )
}

pub fn error(title: &str, message: &str) -> String {
    layout(
        title,
        &format!(
            r#"<h1>{title}</h1>
<p class="error" role="alert">{message}</p>
<p class="sub">If you came here from an application, go back to it and try again. If this keeps happening, tell the application's developer what this page says.</p>"#,
            title = text(title),
            message = text(message)
        ),
    )
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
        });
        assert!(!page.contains("<script>alert"));
        assert!(!page.contains("\"><x"));
        assert!(page.contains("&lt;b&gt;"));
        assert!(page.contains(r#"<label for="password">Password</label>"#));
    }
}
