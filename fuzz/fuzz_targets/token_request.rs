//! `TokenRequest::parse`: a form body plus the raw `Authorization` header. The input's first line is
//! the header (absent when the input has no newline), the rest is the body.
#![no_main]

use latchkey_proto::{ClientAuth, ClientId, ErrorCode, GrantRequest, Params, TokenRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (header, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (std::str::from_utf8(&data[..i]).ok(), &data[i + 1..]),
        None => (None, data),
    };
    let Ok(params) = Params::parse(body) else { return };
    match TokenRequest::parse(&params, header) {
        Ok(req) => {
            // Whatever was accepted is a well-formed client id and one authentication method.
            assert!(ClientId::parse(req.client.client_id().as_str()).is_ok());
            match &req.client {
                ClientAuth::Basic { .. } => assert!(header.is_some() && !params.contains("client_secret")),
                ClientAuth::Post { .. } => assert!(header.is_none() && params.contains("client_secret")),
                ClientAuth::None { .. } => assert!(header.is_none() && !params.contains("client_secret")),
                ClientAuth::PrivateKeyJwt { .. } => assert!(
                    header.is_none()
                        && !params.contains("client_secret")
                        && params.get("client_assertion_type")
                            == Some(latchkey_proto::client_assertion::ASSERTION_TYPE)
                ),
            }
            match &req.grant {
                GrantRequest::AuthorizationCode { .. } => {
                    assert_eq!(params.get("grant_type"), Some("authorization_code"))
                }
                GrantRequest::RefreshToken { .. } => assert_eq!(params.get("grant_type"), Some("refresh_token")),
                GrantRequest::ClientCredentials { .. } => {
                    assert_eq!(params.get("grant_type"), Some("client_credentials"))
                }
                GrantRequest::DeviceCode { device_code } => {
                    assert_eq!(params.get("grant_type"), Some(latchkey_proto::token::DEVICE_CODE_GRANT));
                    assert_eq!(params.get("device_code"), Some(device_code.expose_secret()));
                }
            }
            // Secrets never show in Debug output (they would end up in logs). Checked for secrets
            // that cannot also be found in a field that is shown, such as the client_id (a first
            // version of this check tripped over exactly that).
            let shown_elsewhere = |key: &str, s: &str| {
                header.is_some_and(|h| h.contains(s)) || params.iter().any(|(k, v)| k != key && v.contains(s))
            };
            for key in ["client_secret", "device_code"] {
                if let Some(s) = params.get(key).filter(|s| {
                    s.len() > 12 && s.bytes().all(|b| b.is_ascii_alphanumeric()) && !shown_elsewhere(key, s)
                }) {
                    assert!(!format!("{req:?}").contains(s), "{key} in Debug output");
                }
            }
        }
        Err(e) => assert!(matches!(
            e.code,
            ErrorCode::InvalidRequest
                | ErrorCode::InvalidClient
                | ErrorCode::InvalidGrant
                | ErrorCode::InvalidScope
                | ErrorCode::UnsupportedGrantType
        )),
    }
});
