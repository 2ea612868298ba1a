//! The browser part of the flow: follow redirects, fill in the login form, approve the consent
//! form, until the provider redirects to the client's redirect URI with a code.
//!
//! Providers' pages differ; an [`Adapter`] names what differs (the username field, what approving
//! consent sends). Everything else (hidden fields, cookies, relative actions) is read from the page.

use hyper::header;

use crate::OpError;
use crate::forms::{Form, forms};
use crate::http::{Conn, Origin, Req, Resp};
use crate::jar::CookieJar;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Adapter {
    /// Latchkey's pages: `username`/`password`, consent approved with `decision=allow`.
    Latchkey,
    /// The interaction pages of `bench/peer/server.js` (node-oidc-provider's example layout):
    /// `login`/`password`, consent approved by submitting the form as it is.
    NodeOidcProvider,
}

impl Adapter {
    fn username_field(self) -> &'static str {
        match self {
            Self::Latchkey => "username",
            Self::NodeOidcProvider => "login",
        }
    }

    /// The field of the second-factor form that takes a TOTP code, where the provider has one.
    fn totp_field(self) -> Option<&'static str> {
        match self {
            Self::Latchkey => Some("code"),
            Self::NodeOidcProvider => None,
        }
    }

    fn approve(self) -> Option<(&'static str, &'static str)> {
        match self {
            Self::Latchkey => Some(("decision", "allow")),
            Self::NodeOidcProvider => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Latchkey => "latchkey",
            Self::NodeOidcProvider => "node-oidc-provider",
        }
    }
}

/// What the client's redirect URI received.
#[derive(Debug)]
pub struct Callback {
    pub code: String,
}

/// The expectations a callback is checked against.
pub struct Expect<'a> {
    pub redirect_uri: &'a str,
    pub state: &'a str,
    pub issuer: &'a str,
}

/// Parses and checks a redirect to the client: the `state` is ours, `iss` (RFC 9207) names the
/// issuer when present, and there is a code and no error.
pub fn callback(location: &str, expect: &Expect<'_>) -> Result<Callback, OpError> {
    let url = url::Url::parse(location).map_err(|_| OpError::Protocol("the redirect to the client is not a URL"))?;
    let (mut code, mut state, mut iss, mut error) = (None, None, None, None);
    for (k, v) in url.query_pairs() {
        match k.as_ref() {
            "code" => code = Some(v.into_owned()),
            "state" => state = Some(v.into_owned()),
            "iss" => iss = Some(v.into_owned()),
            "error" => error = Some(v.into_owned()),
            _ => {}
        }
    }
    if let Some(e) = error {
        return Err(OpError::Refused(format!("the provider redirected with error={e}")));
    }
    if state.as_deref() != Some(expect.state) {
        return Err(OpError::Protocol("the redirect does not carry our state"));
    }
    if iss.is_some_and(|i| i != expect.issuer) {
        return Err(OpError::Protocol("the redirect's iss is not the issuer"));
    }
    code.map(|code| Callback { code }).ok_or(OpError::Protocol("the redirect to the client has no code"))
}

/// Where a redirect goes: the client (done), or a path on the provider's origin.
enum Next {
    Client(String),
    Provider(String),
}

fn follow(origin: &Origin, current_path: &str, location: &str, redirect_uri: &str) -> Result<Next, OpError> {
    if location.starts_with(redirect_uri) {
        return Ok(Next::Client(location.to_owned()));
    }
    if let Some(p) = origin.path_of(location) {
        return Ok(Next::Provider(p));
    }
    if location.starts_with('/') {
        return Ok(Next::Provider(location.to_owned()));
    }
    if location.starts_with("http://") || location.starts_with("https://") {
        return Err(OpError::Protocol("redirected to another origin"));
    }
    // A relative reference (RFC 3986 §5.2), resolved against the current path.
    let dir = current_path.split('?').next().unwrap_or("/");
    let dir = &dir[..dir.rfind('/').map_or(0, |i| i + 1)];
    Ok(Next::Provider(format!("{dir}{location}")))
}

/// Sends `req` with the jar's cookies and stores the cookies of the answer.
pub(crate) async fn send(conn: &mut Conn, jar: &mut CookieJar, mut req: Req) -> Result<Resp, OpError> {
    if let Some(c) = jar.header_for(&req.path) {
        req = req.header(header::COOKIE, &c)?;
    }
    let path = req.path.clone();
    let res = conn.send(req).await?;
    for v in res.headers.get_all(header::SET_COOKIE) {
        if let Ok(v) = v.to_str() {
            jar.store(v, &path);
        }
    }
    Ok(res)
}

/// At most this many requests per login: a provider that loops is an error, not a hang.
const MAX_STEPS: usize = 16;

/// Who signs in: the password, and the TOTP code to give if the provider asks for a second factor.
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    pub username: &'a str,
    pub password: &'a str,
    pub totp: Option<&'a str>,
}

/// The end of a browser flow.
#[derive(Debug)]
pub struct Browsed {
    pub callback: Callback,
    /// HTTP requests it took.
    pub requests: usize,
    /// The provider asked for a second factor and accepted the code.
    pub second_factor: bool,
}

/// The full browser flow from an authorization request: log in as `user` (when a login form
/// appears), give the TOTP code (when a second-factor form appears), approve consent (when
/// asked), and return the code.
pub async fn browse(
    conn: &mut Conn,
    jar: &mut CookieJar,
    origin: &Origin,
    adapter: Adapter,
    authorize_path: String,
    user: Credentials<'_>,
    expect: &Expect<'_>,
) -> Result<Browsed, OpError> {
    let mut req = Req::get(authorize_path);
    let (mut logged_in, mut second_factor) = (false, false);
    for step in 1..=MAX_STEPS {
        let path = req.path.clone();
        let res = send(conn, jar, req).await?;
        if res.is_redirect() {
            let loc = res.location().ok_or(OpError::Protocol("a redirect without Location"))?;
            match follow(origin, &path, loc, expect.redirect_uri)? {
                Next::Client(url) => {
                    return Ok(Browsed { callback: callback(&url, expect)?, requests: step, second_factor });
                }
                Next::Provider(p) => req = Req::get(p),
            }
            continue;
        }
        let res = res.expect(hyper::StatusCode::OK)?;
        let html = std::str::from_utf8(&res.body).map_err(|_| OpError::Protocol("a page that is not UTF-8"))?;
        let page = forms(html);
        let posts = || page.iter().filter(|f| f.method == "post");
        let totp_form = adapter.totp_field().and_then(|name| posts().find(|f| f.inputs.iter().any(|i| i.name == name)));
        if let Some(form) = posts().find(|f| f.has_password()) {
            if logged_in {
                return Err(OpError::Refused("the login form came back: the credentials were refused".into()));
            }
            logged_in = true;
            req = login(form, adapter, (user.username, user.password), &path)?;
        } else if let (Some(form), Some(field)) = (totp_form, adapter.totp_field()) {
            if second_factor {
                return Err(OpError::Refused("the second-factor form came back: the TOTP code was refused".into()));
            }
            let code = user.totp.ok_or_else(|| {
                OpError::Refused("the provider asked for a second factor this user does not have".into())
            })?;
            second_factor = true;
            let mut fields: Vec<(&str, &str)> = form.hidden().collect();
            fields.push((field, code));
            req = Req::form(action(form, &path), &fields);
        } else if let Some(form) = posts().next() {
            req = consent(form, adapter, &path)?;
        } else {
            return Err(OpError::Protocol("a page with no login, second-factor or consent form"));
        }
    }
    Err(OpError::Protocol("too many steps before a code"))
}

fn action(form: &Form, current_path: &str) -> String {
    if form.action.is_empty() {
        return current_path.to_owned();
    }
    if form.action.starts_with('/') {
        return form.action.clone();
    }
    let dir = current_path.split('?').next().unwrap_or("/");
    format!("{}{}", &dir[..dir.rfind('/').map_or(0, |i| i + 1)], form.action)
}

fn login(form: &Form, adapter: Adapter, (username, password): (&str, &str), path: &str) -> Result<Req, OpError> {
    let pw_field = form.password_field().ok_or(OpError::Protocol("no password field"))?;
    let user_field = adapter.username_field();
    if !form.inputs.iter().any(|i| i.name == user_field) {
        return Err(OpError::Protocol("the login form has no field for the username (wrong --adapter?)"));
    }
    let mut fields: Vec<(&str, &str)> = form.hidden().collect();
    fields.push((user_field, username));
    fields.push((pw_field, password));
    Ok(Req::form(action(form, path), &fields))
}

fn consent(form: &Form, adapter: Adapter, path: &str) -> Result<Req, OpError> {
    let mut fields: Vec<(&str, &str)> = form.hidden().collect();
    if let Some((name, value)) = adapter.approve() {
        if !form.buttons.iter().any(|(n, v)| n == name && v == value) {
            return Err(OpError::Protocol("the consent form has no approve button (wrong --adapter?)"));
        }
        fields.push((name, value));
    }
    Ok(Req::form(action(form, path), &fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callbacks_are_checked() {
        let e = Expect { redirect_uri: "http://127.0.0.1:8765/callback", state: "s1", issuer: "http://127.0.0.1:8080" };
        let ok = "http://127.0.0.1:8765/callback?code=abc&state=s1&iss=http%3A%2F%2F127.0.0.1%3A8080";
        assert_eq!(callback(ok, &e).unwrap().code, "abc");
        assert!(callback("http://127.0.0.1:8765/callback?code=abc&state=s2", &e).is_err());
        assert!(callback("http://127.0.0.1:8765/callback?code=abc&state=s1&iss=http%3A%2F%2Fevil", &e).is_err());
        assert!(callback("http://127.0.0.1:8765/callback?error=access_denied&state=s1", &e).is_err());
    }

    #[test]
    fn redirects_and_actions_resolve() {
        let o = Origin::of(&url::Url::parse("http://127.0.0.1:3000").unwrap(), false).unwrap();
        let cb = "http://127.0.0.1:8765/callback";
        assert!(matches!(follow(&o, "/auth", "/interaction/u1", cb), Ok(Next::Provider(p)) if p == "/interaction/u1"));
        assert!(matches!(follow(&o, "/a/b", "c?x=1", cb), Ok(Next::Provider(p)) if p == "/a/c?x=1"));
        assert!(
            matches!(follow(&o, "/auth", "http://127.0.0.1:3000/auth/u1", cb), Ok(Next::Provider(p)) if p == "/auth/u1")
        );
        assert!(matches!(follow(&o, "/auth", "http://127.0.0.1:8765/callback?code=1", cb), Ok(Next::Client(_))));
        assert!(follow(&o, "/auth", "https://elsewhere.example/", cb).is_err());
    }
}
