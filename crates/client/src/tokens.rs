//! The token endpoint (code exchange, RFC 6749 §4.1.3; refresh, §6) and revocation (RFC 7009).

use std::sync::Arc;

use latchkey_proto::client_assertion::ASSERTION_TYPE;
use latchkey_proto::dpop::DPOP_HEADER;
use latchkey_proto::error::ErrorResponse;
use latchkey_proto::secret::AccessToken;
use latchkey_proto::{ClientSecret, RefreshToken, Scope};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::authorize::shown;
use crate::dpop::{Dpop, token_endpoint_asks_for_nonce};
use crate::keys::ClientKey;
use crate::{Error, IdTokenClaims};

/// The tokens of one successful token response, validated.
#[derive(Clone)]
pub struct TokenSet {
    pub access_token: AccessToken,
    pub refresh_token: Option<RefreshToken>,
    /// The raw id_token (it was validated; `id_claims` holds its claims).
    pub id_token: Option<String>,
    pub id_claims: Option<IdTokenClaims>,
    /// When the access token expires (Unix seconds), if the provider said (`expires_in`).
    pub expires_at: Option<i64>,
    /// The granted scope: the response's `scope`, or the requested one when it is omitted
    /// (RFC 6749 §5.1: omitted means "identical to the scope requested").
    pub scope: Scope,
    /// `Bearer`, or `DPoP` when the token is bound to the client's key.
    pub token_type: TokenType,
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSet")
            .field("refresh_token", &self.refresh_token.is_some())
            .field("id_token", &self.id_token.is_some())
            .field("expires_at", &self.expires_at)
            .field("scope", &self.scope)
            .field("token_type", &self.token_type)
            .finish_non_exhaustive()
    }
}

/// RFC 6749 §5.1, read tolerantly: only `access_token` and `token_type` are required.
#[derive(Deserialize)]
pub(crate) struct RawTokenResponse {
    pub access_token: String,
    pub token_type: String,
    #[serde(default)]
    pub expires_in: Option<i64>,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub id_token: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
}

/// How this client authenticates to the token endpoint (RFC 6749 §2.3).
#[derive(Clone, Debug)]
pub(crate) enum Credentials {
    /// A public client: `client_id` in the body, no secret.
    Public,
    /// `client_secret_basic`.
    Basic(ClientSecret),
    /// `private_key_jwt` (RFC 7523 §2.2): a fresh signed assertion with every request.
    PrivateKeyJwt(Arc<ClientKey>),
}

/// Who calls an endpoint, and how: for [`post_form`].
pub(crate) struct Caller<'a> {
    pub http: &'a reqwest::Client,
    /// The assertion's audience (`private_key_jwt`).
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub credentials: &'a Credentials,
    /// A DPoP proof goes with the request when set (token endpoint, RFC 9449 §5).
    pub dpop: Option<&'a Dpop>,
}

/// POSTs a form to an endpoint with the client's authentication and returns the body of a 2xx
/// answer, or the endpoint's OAuth error. With DPoP, a 400 `use_dpop_nonce` carrying a new
/// `DPoP-Nonce` is answered once, with a fresh proof and a fresh client assertion (the first one's
/// `jti` may be spent already, RFC 7523 §3 point 7).
pub(crate) async fn post_form(
    caller: &Caller<'_>,
    endpoint_name: &'static str,
    url: &Url,
    form: &[(&str, &str)],
    now: i64,
) -> Result<Vec<u8>, Error> {
    let http_err = |source| Error::Http { url: url.to_string(), source };
    let mut sent_nonce = caller.dpop.and_then(|d| d.nonce_for(url));
    for attempt in 0..2 {
        let mut body: Vec<(&str, String)> = form.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        let mut req = caller.http.post(url.clone()).header("accept", "application/json");
        match caller.credentials {
            Credentials::Public => body.push(("client_id", caller.client_id.to_owned())),
            Credentials::Basic(secret) => {
                // RFC 6749 §2.3.1: both parts are form-urlencoded before being joined.
                let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
                req = req.basic_auth(enc(caller.client_id), Some(enc(secret.expose_secret())));
            }
            Credentials::PrivateKeyJwt(key) => {
                body.push(("client_id", caller.client_id.to_owned()));
                body.push(("client_assertion_type", ASSERTION_TYPE.to_owned()));
                body.push(("client_assertion", key.assertion(caller.client_id, caller.issuer, now)?));
            }
        }
        if let Some(dpop) = caller.dpop {
            req = req.header(DPOP_HEADER, dpop.proof("POST", url, now, None)?);
        }
        let res = req.form(&body).send().await.map_err(http_err)?;
        let status = res.status().as_u16();
        let fresh = caller.dpop.and_then(|d| d.observe(url, res.headers()));
        let bytes = res.bytes().await.map_err(http_err)?;
        if (200..300).contains(&status) {
            return Ok(bytes.to_vec());
        }
        if attempt == 0 && token_endpoint_asks_for_nonce(status, &bytes) && fresh.is_some() && fresh != sent_nonce {
            sent_nonce = fresh;
            continue;
        }
        return Err(endpoint_error(endpoint_name, status, &bytes));
    }
    Err(Error::Dpop("unreachable: the nonce retry ended without a response".into()))
}

fn endpoint_error(endpoint: &'static str, status: u16, bytes: &[u8]) -> Error {
    let err: Option<ErrorResponse> = serde_json::from_slice(bytes).ok();
    match err {
        Some(e) => Error::Endpoint {
            endpoint,
            status,
            error: shown(&e.error),
            description: e.error_description.as_deref().map(shown),
        },
        None => Error::Endpoint { endpoint, status, error: "no OAuth error in the response".into(), description: None },
    }
}

/// How an access token is presented (RFC 6750; RFC 9449 §7.1): the `Authorization` scheme.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenType {
    #[default]
    Bearer,
    /// Bound to the client's DPoP key: every request needs a proof made with it.
    #[serde(rename = "DPoP")]
    Dpop,
}

impl TokenType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bearer => "Bearer",
            Self::Dpop => "DPoP",
        }
    }
}

impl RawTokenResponse {
    /// Parses a token response and its `token_type`. `dpop_sent`: whether the request carried a
    /// DPoP proof. Then the token must be `DPoP`: a `Bearer` answer means the provider ignored the
    /// proof (RFC 9449 §5 lets it), and a client that asked for a bound token does not silently
    /// accept one anyone can use. Without a proof, a `DPoP` token could not be presented.
    pub(crate) fn parse(body: &[u8], dpop_sent: bool) -> Result<(Self, TokenType), Error> {
        let raw: Self =
            serde_json::from_slice(body).map_err(|e| Error::BadTokenResponse(format!("not a token response: {e}")))?;
        let token_type = match (raw.token_type.to_ascii_lowercase().as_str(), dpop_sent) {
            ("dpop", true) => TokenType::Dpop,
            ("bearer", false) => TokenType::Bearer,
            ("bearer", true) => {
                return Err(Error::BadTokenResponse(
                    "token_type is Bearer although a DPoP proof was sent: the provider does not bind tokens to keys (RFC 9449 §5); log in without DPoP to accept bearer tokens".into(),
                ));
            }
            ("dpop", false) => {
                return Err(Error::BadTokenResponse(
                    "token_type is DPoP although no DPoP proof was sent (RFC 9449 §5)".into(),
                ));
            }
            (other, _) => {
                return Err(Error::BadTokenResponse(format!(
                    "token_type is {:?}; only Bearer and DPoP tokens are supported",
                    shown(other)
                )));
            }
        };
        if raw.access_token.is_empty() {
            return Err(Error::BadTokenResponse("access_token is empty".into()));
        }
        Ok((raw, token_type))
    }

    pub(crate) fn scope_or(&self, requested: &Scope) -> Result<Scope, Error> {
        match &self.scope {
            Some(s) => Scope::parse(s).map_err(|e| Error::BadTokenResponse(format!("scope: {}", e.description))),
            None => Ok(requested.clone()),
        }
    }
}

/// RFC 7009 §2.1 `token_type_hint`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenTypeHint {
    AccessToken,
    RefreshToken,
}

impl TokenTypeHint {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AccessToken => "access_token",
            Self::RefreshToken => "refresh_token",
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Mutex;

    use axum::Router;
    use axum::http::{HeaderMap, HeaderValue, StatusCode};
    use axum::response::{IntoResponse, Response};
    use latchkey_proto::dpop::{DEFAULT_ALGORITHMS, DpopKey, DpopProof, NONCE_HEADER};

    use super::*;

    const BEARER: &[u8] = br#"{"access_token":"a","token_type":"bearer"}"#;
    const DPOP: &[u8] = br#"{"access_token":"a","token_type":"DPoP"}"#;

    #[test]
    fn the_token_type_must_match_what_was_sent() {
        assert_eq!(RawTokenResponse::parse(BEARER, false).unwrap().1, TokenType::Bearer);
        assert_eq!(RawTokenResponse::parse(DPOP, true).unwrap().1, TokenType::Dpop);
        // A proof was sent and a bearer token came back: a downgrade, refused.
        let e = RawTokenResponse::parse(BEARER, true).err().unwrap().to_string();
        assert!(e.contains("does not bind tokens"), "{e}");
        assert!(RawTokenResponse::parse(DPOP, false).is_err());
        assert!(RawTokenResponse::parse(br#"{"access_token":"a","token_type":"mac"}"#, false).is_err());
    }

    /// What the fake token endpoint saw of each request.
    #[derive(Default)]
    struct Seen {
        nonces: Vec<Option<String>>,
        assertions: Vec<String>,
    }

    /// A token endpoint that requires a DPoP nonce (RFC 9449 §8): 400 `use_dpop_nonce` with
    /// `DPoP-Nonce` until a proof carries it, then a DPoP token.
    async fn token_endpoint(seen: std::sync::Arc<Mutex<Seen>>) -> Url {
        let app = Router::new().fallback(move |headers: HeaderMap, body: String| {
            let seen = seen.clone();
            async move {
                let proof = headers.get("dpop").unwrap().to_str().unwrap();
                let p = DpopProof::parse(proof, DEFAULT_ALGORITHMS).unwrap();
                let form: std::collections::HashMap<String, String> =
                    url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
                let mut s = seen.lock().unwrap();
                s.nonces.push(p.nonce.clone());
                s.assertions.push(form.get("client_assertion").cloned().unwrap_or_default());
                let mut res: Response = if p.nonce.as_deref() == Some("as-nonce") {
                    (StatusCode::OK, r#"{"access_token":"at","token_type":"DPoP"}"#).into_response()
                } else {
                    (StatusCode::BAD_REQUEST, r#"{"error":"use_dpop_nonce","error_description":"nonce"}"#)
                        .into_response()
                };
                res.headers_mut().insert(NONCE_HEADER, HeaderValue::from_static("as-nonce"));
                res
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Url::parse(&format!("http://{addr}/token")).unwrap()
    }

    #[tokio::test]
    async fn the_token_endpoint_nonce_is_fetched_once_with_a_fresh_assertion() {
        let seen = std::sync::Arc::new(Mutex::new(Seen::default()));
        let url = token_endpoint(seen.clone()).await;
        let dpop = Dpop::new(DpopKey::generate().unwrap());
        let key = DpopKey::generate().unwrap();
        let client_key = ClientKey::parse(crate::keys::to_pem("PRIVATE KEY", key.pkcs8()).as_bytes()).unwrap();
        let credentials = Credentials::PrivateKeyJwt(Arc::new(client_key));
        let http = reqwest::Client::new();
        let caller = Caller {
            http: &http,
            issuer: "https://id.example",
            client_id: "app",
            credentials: &credentials,
            dpop: Some(&dpop),
        };
        let body = post_form(&caller, "token endpoint", &url, &[("grant_type", "refresh_token")], 1000).await.unwrap();
        assert_eq!(RawTokenResponse::parse(&body, true).unwrap().1, TokenType::Dpop);
        {
            let s = seen.lock().unwrap();
            assert_eq!(s.nonces, [None, Some("as-nonce".to_owned())], "one refusal, one retry with the nonce");
            assert_ne!(s.assertions[0], s.assertions[1], "the retry has its own assertion (a jti is single-use)");
            assert!(s.assertions.iter().all(|a| !a.is_empty()));
        }
        // The nonce is remembered for the next request to the same server.
        post_form(&caller, "token endpoint", &url, &[("grant_type", "refresh_token")], 1001).await.unwrap();
        assert_eq!(seen.lock().unwrap().nonces.len(), 3);
    }
}
