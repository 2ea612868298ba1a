//! The pushed authorization request's response (RFC 9126 §2.2).

use serde::Deserialize;

use crate::Error;
use crate::authorize::shown;

#[derive(Deserialize)]
struct PushResponse {
    request_uri: Option<String>,
    expires_in: Option<serde_json::Value>,
}

/// The `request_uri` of a 201 answer. §2.2 requires both `request_uri` and a positive
/// `expires_in`; a response without them is not one a browser should be sent on with.
pub(crate) fn parse_response(body: &[u8]) -> Result<String, Error> {
    let bad = |why: String| Error::Endpoint {
        endpoint: "pushed authorization request endpoint",
        status: 201,
        error: "unusable response".into(),
        description: Some(why),
    };
    let r: PushResponse = serde_json::from_slice(body).map_err(|e| bad(format!("not a JSON object: {e}")))?;
    let uri = r.request_uri.filter(|u| !u.is_empty()).ok_or_else(|| bad("request_uri is missing".into()))?;
    if uri.len() > 2048 || uri.chars().any(char::is_control) {
        return Err(bad(format!("request_uri {:?} is not a URI", shown(&uri))));
    }
    match r.expires_in.as_ref().and_then(serde_json::Value::as_i64) {
        Some(n) if n > 0 => Ok(uri),
        _ => Err(bad("expires_in is missing or not a positive number".into())),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn request_uri_and_expires_in_are_required() {
        let ok = br#"{"request_uri":"urn:ietf:params:oauth:request_uri:x","expires_in":60}"#;
        assert_eq!(parse_response(ok).unwrap(), "urn:ietf:params:oauth:request_uri:x");
        for bad in [
            &br#"{"expires_in":60}"#[..],
            br#"{"request_uri":"","expires_in":60}"#,
            br#"{"request_uri":"urn:x"}"#,
            br#"{"request_uri":"urn:x","expires_in":0}"#,
            br#"{"request_uri":"urn:x","expires_in":"60"}"#,
            b"not json",
        ] {
            let e = parse_response(bad).unwrap_err().to_string();
            assert!(e.contains("pushed authorization request endpoint"), "{e}");
        }
    }
}
