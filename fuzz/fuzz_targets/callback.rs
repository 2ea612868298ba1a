//! The client's callback parsing and checks (`latchkey-client`): the query string a browser brings
//! to the loopback redirect URI, parsed into a `Callback` and checked against the authorization
//! request (RFC 6749 §4.1.2, RFC 9207). The literal `STATE` in the input stands for the request's
//! real state, so that the fuzzer reaches the checks after it.
#![no_main]

use std::sync::OnceLock;

use latchkey_client::{AuthorizationRequest, Callback, Client, Error};
use latchkey_proto::discovery::IssuerMetadata;
use latchkey_proto::{ClientId, RedirectUri, Scope};
use libfuzzer_sys::fuzz_target;

const ISSUER: &str = "https://as.example";

fn fixture() -> &'static (Client, AuthorizationRequest, String) {
    static F: OnceLock<(Client, AuthorizationRequest, String)> = OnceLock::new();
    F.get_or_init(|| {
        let metadata: IssuerMetadata = serde_json::from_value(serde_json::json!({
            "issuer": ISSUER,
            "authorization_endpoint": "https://as.example/authorize",
            "token_endpoint": "https://as.example/token",
            "authorization_response_iss_parameter_supported": true,
        }))
        .expect("metadata");
        let client = Client::from_metadata(reqwest::Client::new(), metadata, ClientId::parse("fuzz").expect("id"));
        let redirect = RedirectUri::parse("http://127.0.0.1:8765/callback").expect("redirect");
        let request = client.authorization_request(redirect, Scope::parse("openid").expect("scope")).expect("request");
        let state = request.url.query_pairs().find(|(k, _)| k == "state").map(|(_, v)| v.into_owned()).expect("state");
        (client, request, state)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let (client, request, state) = fixture();
    let query = s.replace("STATE", state);
    let Ok(callback) = Callback::from_query(&query) else { return };
    match client.check_callback(request, &callback) {
        Ok(code) => {
            // Accepted only with our state and our issuer, and never for an error response.
            assert_eq!(callback.get("state"), Some(state.as_str()));
            assert_eq!(callback.get("iss"), Some(ISSUER));
            assert!(callback.get("error").is_none());
            assert_eq!(Some(code.expose_secret()), callback.get("code"));
        }
        Err(Error::StateMismatch) => assert_ne!(callback.get("state"), Some(state.as_str())),
        Err(e) => {
            // Whatever is shown of a refusal is bounded and printable (it reaches a terminal).
            let shown = e.to_string();
            assert!(shown.len() < 4096, "{} bytes", shown.len());
            assert!(!shown.chars().any(|c| c.is_control() && c != '\n'), "{shown:?}");
        }
    }
});
