//! A cookie jar for one user agent: enough of RFC 6265 for login flows on one origin (name, value,
//! path, deletion by `Max-Age=0` or a past `Expires`). Domains are ignored: every request goes to
//! the issuer's origin.

#[derive(Debug, Clone, Default)]
pub struct CookieJar {
    cookies: Vec<Cookie>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Cookie {
    name: String,
    value: String,
    path: String,
}

impl CookieJar {
    /// Takes in one `Set-Cookie` header value. `request_path` gives the default path (RFC 6265
    /// §5.1.4) when the cookie names none.
    pub fn store(&mut self, set_cookie: &str, request_path: &str) {
        let mut parts = set_cookie.split(';');
        let Some((name, value)) = parts.next().and_then(|nv| nv.split_once('=')) else { return };
        let (name, value) = (name.trim(), value.trim());
        if name.is_empty() {
            return;
        }
        let mut path = None;
        let mut delete = false;
        for attr in parts {
            let (k, v) = attr.split_once('=').unwrap_or((attr, ""));
            let (k, v) = (k.trim(), v.trim());
            if k.eq_ignore_ascii_case("path") && v.starts_with('/') {
                path = Some(v.to_owned());
            } else if k.eq_ignore_ascii_case("max-age") {
                delete |= v.parse::<i64>().is_ok_and(|s| s <= 0);
            } else if k.eq_ignore_ascii_case("expires") {
                // Servers delete cookies with the epoch; any date before 2000 is in the past.
                delete |= v.split_whitespace().any(|w| w.parse::<u32>().is_ok_and(|y| (1900..2000).contains(&y)));
            }
        }
        let path = path.unwrap_or_else(|| default_path(request_path));
        self.cookies.retain(|c| !(c.name == name && c.path == path));
        if !delete {
            self.cookies.push(Cookie { name: name.to_owned(), value: value.to_owned(), path });
        }
    }

    /// The `Cookie` header for a request to `path` (query ignored), or `None` when nothing matches.
    pub fn header_for(&self, path: &str) -> Option<String> {
        let path = path.split('?').next().unwrap_or("/");
        let mut matching: Vec<&Cookie> = self.cookies.iter().filter(|c| path_matches(&c.path, path)).collect();
        // RFC 6265 §5.4: longer paths first.
        matching.sort_by_key(|c| std::cmp::Reverse(c.path.len()));
        let header = matching.iter().map(|c| format!("{}={}", c.name, c.value)).collect::<Vec<_>>().join("; ");
        (!header.is_empty()).then_some(header)
    }

    pub fn is_empty(&self) -> bool {
        self.cookies.is_empty()
    }
}

fn default_path(request_path: &str) -> String {
    let path = request_path.split('?').next().unwrap_or("/");
    match path.rfind('/') {
        Some(0) | None => "/".into(),
        Some(i) => path[..i].to_owned(),
    }
}

/// RFC 6265 §5.1.4 path-match.
fn path_matches(cookie_path: &str, request_path: &str) -> bool {
    request_path == cookie_path
        || (request_path.starts_with(cookie_path)
            && (cookie_path.ends_with('/') || request_path.as_bytes().get(cookie_path.len()) == Some(&b'/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_deletion() {
        let mut jar = CookieJar::default();
        jar.store("latchkey_csrf=abc; Path=/; HttpOnly; SameSite=Lax", "/authorize");
        jar.store("_interaction=u1; path=/interaction/u1; expires=Wed, 25 Nov 2026 01:28:38 GMT; httponly", "/auth");
        jar.store("_session=s; path=/; samesite=lax", "/interaction/u1/login");
        assert_eq!(
            jar.header_for("/interaction/u1/login").as_deref(),
            Some("_interaction=u1; latchkey_csrf=abc; _session=s")
        );
        assert_eq!(jar.header_for("/interaction/u10").as_deref(), Some("latchkey_csrf=abc; _session=s"));
        jar.store("_session=; path=/; expires=Thu, 01 Jan 1970 00:00:00 GMT", "/");
        jar.store("latchkey_csrf=; Path=/; Max-Age=0", "/");
        assert_eq!(jar.header_for("/token?x=1"), None);
        jar.store("a=1", "/x/y");
        assert_eq!(jar.header_for("/x/z").as_deref(), Some("a=1"));
    }
}
