//! Form and query parameters, parsed once at the edge.
//!
//! RFC 6749 §3.1 and §3.2: "Request and response parameters MUST NOT be included more than once."
//! Parameters sent without a value are treated as omitted (same sections).

use crate::error::OAuthError;

/// Largest number of parameters accepted in one request; anything larger is not a real client.
pub const MAX_PARAMS: usize = 64;
/// Longest parameter value accepted. The longest legitimate ones (`state`, `nonce`, a JWT hint)
/// stay far below; the cap keeps a request from making us hash, store or echo megabytes.
pub const MAX_VALUE_LEN: usize = 8192;
/// Longest parameter name accepted. Unknown parameters are ignored (RFC 6749 §3.1), but only
/// after they have been read, so their size is bounded too.
pub const MAX_NAME_LEN: usize = 256;

#[derive(Debug, Default, Clone)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Parses `application/x-www-form-urlencoded` bytes (a query string or a form body).
    pub fn parse(input: &[u8]) -> Result<Self, OAuthError> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (k, v) in form_urlencoded::parse(input) {
            if k.len() > MAX_NAME_LEN {
                return Err(OAuthError::invalid_request(format!(
                    "a parameter name is longer than {MAX_NAME_LEN} bytes (`{}…`)",
                    printable(&k)
                )));
            }
            if v.len() > MAX_VALUE_LEN {
                return Err(OAuthError::invalid_request(format!(
                    "parameter `{}` is longer than {MAX_VALUE_LEN} bytes",
                    printable(&k)
                )));
            }
            if v.is_empty() {
                continue;
            }
            if out.iter().any(|(seen, _)| *seen == k) {
                if k == "resource" {
                    // RFC 8707 §2 allows several; Latchkey binds each grant to one API, so that
                    // every token it issues is valid at exactly one.
                    return Err(OAuthError::new(
                        crate::ErrorCode::InvalidTarget,
                        "send one resource parameter: Latchkey binds each authorization to one resource",
                    ));
                }
                return Err(OAuthError::invalid_request(format!(
                    "parameter `{}` was sent more than once (RFC 6749 §3.1)",
                    printable(&k)
                )));
            }
            if out.len() == MAX_PARAMS {
                return Err(OAuthError::invalid_request(format!("too many parameters (at most {MAX_PARAMS})")));
            }
            out.push((k.into_owned(), v.into_owned()));
        }
        Ok(Self(out))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name).ok_or_else(|| OAuthError::invalid_request(format!("the `{name}` parameter is required")))
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// A parameter name as it may appear in a description: short and printable, never a value.
fn printable(name: &str) -> String {
    name.chars().filter(|c| c.is_ascii_graphic()).take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_refused_by_name() {
        let e = Params::parse(b"code=a&code=b").unwrap_err();
        assert!(e.description.contains("`code` was sent more than once"));
    }

    #[test]
    fn empty_values_count_as_absent() {
        let p = Params::parse(b"state=&client_id=x&state=y").unwrap();
        assert_eq!(p.get("state"), Some("y"));
        assert_eq!(p.get("client_id"), Some("x"));
        assert!(p.require("code").unwrap_err().description.contains("`code`"));
    }

    #[test]
    fn percent_decoding() {
        let p = Params::parse(b"scope=openid%20profile+email").unwrap();
        assert_eq!(p.get("scope"), Some("openid profile email"));
    }

    #[test]
    fn too_many_parameters() {
        let body: Vec<String> = (0..MAX_PARAMS).map(|i| format!("p{i}=v")).collect();
        assert!(Params::parse(body.join("&").as_bytes()).is_ok());
        let body: Vec<String> = (0..=MAX_PARAMS).map(|i| format!("p{i}=v")).collect();
        let e = Params::parse(body.join("&").as_bytes()).unwrap_err();
        assert_eq!(e.description, "too many parameters (at most 64)");
    }

    #[test]
    fn too_long_names_and_values() {
        let ok = format!("state={}", "s".repeat(MAX_VALUE_LEN));
        assert!(Params::parse(ok.as_bytes()).is_ok());
        let e = Params::parse(format!("{ok}s").as_bytes()).unwrap_err();
        assert_eq!(e.description, "parameter `state` is longer than 8192 bytes");
        // Percent-encoding does not hide the length: it is the decoded value that counts.
        let encoded = format!("state={}", "%41".repeat(MAX_VALUE_LEN + 1));
        assert!(Params::parse(encoded.as_bytes()).is_err());
        let name = "n".repeat(MAX_NAME_LEN + 1);
        let e = Params::parse(format!("{name}=v").as_bytes()).unwrap_err();
        assert!(e.description.starts_with("a parameter name is longer than 256 bytes"), "{}", e.description);
        assert!(Params::parse(format!("{}=v", &name[1..]).as_bytes()).is_ok());
    }
}
