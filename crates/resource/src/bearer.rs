//! Finding the access token in a request (RFC 6750 §2, RFC 9449 §7.1), parsed at the edge.

use axum::http::{HeaderMap, Uri, header};

use crate::Refusal;

/// The authentication scheme a request used for its access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `Authorization: Bearer <token>` (RFC 6750 §2.1).
    Bearer,
    /// `Authorization: DPoP <token>` with a proof in the `DPoP` header (RFC 9449 §7.1).
    Dpop,
}

impl Scheme {
    /// The scheme's name as challenges spell it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bearer => "Bearer",
            Self::Dpop => "DPoP",
        }
    }

    /// The scheme of the request's one `Authorization` header, if it is one of these two: which
    /// challenge carries the error of a refusal (RFC 9449 §7.2).
    pub fn of(headers: &HeaderMap) -> Option<Self> {
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return None;
        };
        let value = value.to_str().ok()?;
        let scheme = value.split_once(' ').map_or(value, |(s, _)| s);
        if scheme.eq_ignore_ascii_case("bearer") {
            Some(Self::Bearer)
        } else if scheme.eq_ignore_ascii_case("dpop") {
            Some(Self::Dpop)
        } else {
            None
        }
    }
}

/// The token of `Authorization: Bearer <token>`.
///
/// - No `Authorization` header, or another scheme (Basic…): [`Refusal::NoToken`], whose challenge
///   has no error code (RFC 6750 §3.1).
/// - Two `Authorization` headers, a `Bearer` without a well-formed token, or an `access_token` in
///   the query: `invalid_request`. The query method (RFC 6750 §2.3) is refused because URLs end up
///   in logs and Referer headers (RFC 9700 §4.3.2, OAuth 2.1 §5.1.1 drops it).
pub fn bearer_token<'a>(headers: &'a HeaderMap, uri: &Uri) -> Result<&'a str, Refusal> {
    match access_token(headers, uri, false)? {
        (Scheme::Bearer, token) => Ok(token),
        (Scheme::Dpop, _) => Err(Refusal::NoToken),
    }
}

/// The token of `Authorization: Bearer <token>` or, when `dpop` is accepted,
/// `Authorization: DPoP <token>` (whose syntax is Bearer's, RFC 9449 §7.1), with the scheme it
/// came with. The refusals are those of [`bearer_token`]; with `dpop` off, the DPoP scheme is an
/// unknown one.
pub(crate) fn access_token<'a>(headers: &'a HeaderMap, uri: &Uri, dpop: bool) -> Result<(Scheme, &'a str), Refusal> {
    let in_query =
        uri.query().is_some_and(|q| q.split('&').any(|p| p == "access_token" || p.starts_with("access_token=")));
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (first, second) = (values.next(), values.next());
    if second.is_some() {
        return Err(Refusal::InvalidRequest("more than one Authorization header"));
    }
    let Some(value) = first else {
        return Err(if in_query {
            Refusal::InvalidRequest(
                "access tokens in the URL query are not accepted: send Authorization: Bearer <token> (RFC 6750 §2.1)",
            )
        } else {
            Refusal::NoToken
        });
    };
    let value = value.to_str().map_err(|_| Refusal::InvalidRequest("the Authorization header is not ASCII"))?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        Scheme::Bearer
    } else if dpop && scheme.eq_ignore_ascii_case("dpop") {
        Scheme::Dpop
    } else {
        return Err(Refusal::NoToken);
    };
    if in_query {
        return Err(Refusal::InvalidRequest("the access token was sent twice (header and query); use only the header"));
    }
    let token = rest.trim_start_matches(' ');
    if token.is_empty() {
        return Err(Refusal::InvalidRequest(match scheme {
            Scheme::Bearer => "the Bearer credentials are empty: Authorization: Bearer <token>",
            Scheme::Dpop => "the DPoP credentials are empty: Authorization: DPoP <token>",
        }));
    }
    if !is_b64token(token) {
        return Err(Refusal::InvalidRequest(match scheme {
            Scheme::Bearer => {
                "the Bearer token is malformed: it must be one b64token (RFC 6750 §2.1), no spaces or quotes"
            }
            Scheme::Dpop => "the DPoP token is malformed: it must be one b64token (RFC 9449 §7.1), no spaces or quotes",
        }));
    }
    Ok((scheme, token))
}

/// RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
fn is_b64token(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/'))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::http::HeaderValue;

    fn with(auth: &[&str], uri: &str) -> Result<String, Refusal> {
        let mut h = HeaderMap::new();
        for a in auth {
            h.append(header::AUTHORIZATION, HeaderValue::from_str(a).unwrap());
        }
        bearer_token(&h, &uri.parse().unwrap()).map(str::to_owned)
    }

    #[test]
    fn bearer_tokens_are_found_and_malformed_ones_refused() {
        assert_eq!(with(&["Bearer abc.def-_~+/=="], "/").unwrap(), "abc.def-_~+/==");
        assert_eq!(with(&["bearer   abc"], "/").unwrap(), "abc", "scheme is case-insensitive");
        assert_eq!(with(&[], "/").unwrap_err(), Refusal::NoToken);
        assert_eq!(with(&["Basic dXNlcjpwYXNz"], "/").unwrap_err(), Refusal::NoToken);
        for bad in ["Bearer", "Bearer ", "Bearer a b", "Bearer \"abc\"", "Bearer ===", "Bearer a=b"] {
            assert!(matches!(with(&[bad], "/").unwrap_err(), Refusal::InvalidRequest(_)), "{bad}");
        }
        assert!(matches!(with(&["Bearer a", "Bearer b"], "/").unwrap_err(), Refusal::InvalidRequest(_)));
        assert!(matches!(with(&[], "/x?access_token=abc").unwrap_err(), Refusal::InvalidRequest(_)));
        assert!(matches!(with(&["Bearer abc"], "/x?a=1&access_token=abc").unwrap_err(), Refusal::InvalidRequest(_)));
        assert_eq!(with(&["Bearer abc"], "/x?my_access_token=1").unwrap(), "abc");
        // DPoP is another scheme to the Bearer-only reader.
        assert_eq!(with(&["DPoP abc"], "/").unwrap_err(), Refusal::NoToken);
    }

    #[test]
    fn the_dpop_scheme_is_read_only_when_accepted() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("dpop abc.d"));
        let uri: Uri = "/".parse().unwrap();
        assert_eq!(access_token(&h, &uri, true).unwrap(), (Scheme::Dpop, "abc.d"));
        assert_eq!(access_token(&h, &uri, false).unwrap_err(), Refusal::NoToken);
        assert_eq!(Scheme::of(&h), Some(Scheme::Dpop));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("DPoP a b"));
        assert!(matches!(access_token(&h, &uri, true).unwrap_err(), Refusal::InvalidRequest(_)));
        h.append(header::AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        assert_eq!(Scheme::of(&h), None, "two headers: no one scheme");
    }
}
