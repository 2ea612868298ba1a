//! The operations each phase repeats, as a relying party would perform them. Each one checks the
//! answer it gets (a benchmark that counts wrong answers as throughput measures nothing).

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hyper::StatusCode;
use hyper::header;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::OpError;
use crate::adapter::{Adapter, Credentials, Expect, browse, callback};
use crate::http::{Conn, Origin, Req, Resp};
use crate::jar::CookieJar;
use crate::phase::Op;

/// What every authorization request shares.
#[derive(Debug, Clone)]
pub struct Client {
    pub issuer: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    /// Path of the authorization endpoint on the issuer's origin.
    pub authorize_path: String,
    pub token_path: String,
    /// RFC 8707 `resource`, sent on the authorization and the token request.
    pub resource: Option<String>,
}

/// A PKCE pair (RFC 7636 §4.1-4.2): 32 random bytes as the verifier, its S256 challenge.
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

pub(crate) fn random_b64(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

impl Pkce {
    pub fn generate() -> Self {
        let verifier = random_b64(32);
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        Self { verifier, challenge }
    }
}

impl Client {
    /// A fresh authorization request: its path and query, the PKCE verifier, the state.
    pub fn authorization_request(&self) -> (String, String, String) {
        self.authorization_request_with(&[])
    }

    /// The same, with `extra` parameters (`dpop_jkt`, RFC 9449 §10).
    pub fn authorization_request_with(&self, extra: &[(&str, &str)]) -> (String, String, String) {
        let pkce = Pkce::generate();
        let state = random_b64(12);
        let mut query = form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("scope", &self.scope)
            .append_pair("code_challenge", &pkce.challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", &state);
        if let Some(r) = &self.resource {
            query.append_pair("resource", r);
        }
        query.extend_pairs(extra);
        let query = query.finish();
        (format!("{}?{query}", self.authorize_path), pkce.verifier, state)
    }

    pub(crate) fn expect<'a>(&'a self, state: &'a str) -> Expect<'a> {
        Expect { redirect_uri: &self.redirect_uri, state, issuer: &self.issuer }
    }
}

/// A code waiting to be exchanged, with the verifier of its challenge.
#[derive(Debug, Clone)]
pub struct IssuedCode {
    pub code: String,
    pub verifier: String,
}

#[derive(Debug, Clone)]
pub struct Tokens {
    pub access: String,
    pub refresh: String,
}

/// A user's login: credentials, and the session cookies once logged in.
#[derive(Debug, Clone)]
pub struct User {
    pub username: String,
    pub password: String,
}

/// Logs a user in through the real pages and returns the `Cookie` header the user agent would send
/// to the authorization endpoint from then on (its session).
pub struct Login {
    pub origin: Arc<Origin>,
    pub client: Client,
    pub adapter: Adapter,
    pub users: Arc<Vec<User>>,
}

#[async_trait]
impl Op for Login {
    type Out = String;
    async fn call(&self, conn: &mut Conn, i: usize) -> Result<(String, usize), OpError> {
        let user = &self.users[i % self.users.len()];
        let (path, _, state) = self.client.authorization_request();
        let mut jar = CookieJar::default();
        let creds = Credentials { username: &user.username, password: &user.password, totp: None };
        let done = browse(conn, &mut jar, &self.origin, self.adapter, path, creds, &self.client.expect(&state)).await?;
        let requests = done.requests;
        let session = jar
            .header_for(&self.client.authorize_path)
            .ok_or(OpError::Protocol("logged in, but no cookie for the authorization endpoint"))?;
        Ok((session, requests))
    }
}

/// An authorization request from a logged-in user agent that has consented before: the provider
/// answers with the code at once.
pub struct Authorize {
    pub client: Client,
    /// One `Cookie` header per logged-in user.
    pub sessions: Arc<Vec<String>>,
}

#[async_trait]
impl Op for Authorize {
    type Out = IssuedCode;
    async fn call(&self, conn: &mut Conn, i: usize) -> Result<(IssuedCode, usize), OpError> {
        let (path, verifier, state) = self.client.authorization_request();
        let session = &self.sessions[i % self.sessions.len()];
        let code = authorize_with_session(conn, &self.client, path, &state, session).await?;
        Ok((IssuedCode { code, verifier }, 1))
    }
}

/// `GET` of an authorization URL (`path`) with a session cookie: the answer must be the redirect
/// to the client with a code and our `state`. Returns the code.
pub(crate) async fn authorize_with_session(
    conn: &mut Conn,
    client: &Client,
    path: String,
    state: &str,
    session: &str,
) -> Result<String, OpError> {
    let res = conn.send(Req::get(path).header(header::COOKIE, session)?).await?;
    if !res.is_redirect() {
        return Err(OpError::Status {
            want: 302,
            got: res.status.as_u16(),
            body: "a user with a session and consent should get a code at once".into(),
        });
    }
    let loc = res.location().ok_or(OpError::Protocol("a redirect without Location"))?;
    if !loc.starts_with(&client.redirect_uri) {
        return Err(OpError::Protocol("a user with a session was not redirected to the client"));
    }
    Ok(callback(loc, &client.expect(state))?.code)
}

pub(crate) fn string_field(v: &serde_json::Value, name: &'static str) -> Result<String, OpError> {
    v.get(name).and_then(|t| t.as_str()).map(str::to_owned).ok_or(OpError::Missing(name))
}

/// The claims of a JWT, not verified (the benchmark checks what was issued, not the signature:
/// a relying party verifies once per key set, and that cost is the client's, not the server's).
pub(crate) fn jwt_claims(jwt: &str) -> Result<serde_json::Value, OpError> {
    let payload = jwt.split('.').nth(1).ok_or(OpError::Protocol("the id_token is not a JWT"))?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).map_err(|_| OpError::Protocol("the id_token is not a JWT"))?;
    serde_json::from_slice(&bytes).map_err(|_| OpError::Protocol("the id_token's claims are not JSON"))
}

/// A successful token response of `token_type` (`Bearer`, or `DPoP` for a DPoP-bound token,
/// RFC 9449 §5).
pub(crate) fn token_response(res: Resp, token_type: &str) -> Result<(serde_json::Value, Tokens), OpError> {
    let body = res.expect(StatusCode::OK)?.json()?;
    if !body.get("token_type").and_then(|t| t.as_str()).is_some_and(|t| t.eq_ignore_ascii_case(token_type)) {
        return Err(OpError::Protocol(if token_type == "DPoP" {
            "token_type is not DPoP"
        } else {
            "token_type is not Bearer"
        }));
    }
    let tokens =
        Tokens { access: string_field(&body, "access_token")?, refresh: string_field(&body, "refresh_token")? };
    Ok((body, tokens))
}

/// `grant_type=authorization_code` with the PKCE verifier (RFC 6749 §4.1.3, RFC 7636 §4.5). The
/// answer must carry an access token, an id_token for this client from this issuer, and a
/// refresh token.
pub struct Exchange {
    pub client: Client,
    pub codes: Arc<Vec<IssuedCode>>,
}

#[async_trait]
impl Op for Exchange {
    type Out = Tokens;
    async fn call(&self, conn: &mut Conn, i: usize) -> Result<(Tokens, usize), OpError> {
        let req = exchange_request(&self.client, &self.codes[i]);
        let (body, tokens) = token_response(conn.send(req).await?, "Bearer")?;
        check_exchange(&self.client, &body, &tokens)?;
        Ok((tokens, 1))
    }
}

/// The token request that redeems `c` (RFC 6749 §4.1.3 with RFC 7636's verifier).
pub(crate) fn exchange_request(client: &Client, c: &IssuedCode) -> Req {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", c.code.as_str()),
        ("redirect_uri", client.redirect_uri.as_str()),
        ("client_id", client.client_id.as_str()),
        ("code_verifier", c.verifier.as_str()),
    ];
    if let Some(r) = &client.resource {
        form.push(("resource", r.as_str()));
    }
    Req::form(client.token_path.clone(), &form)
}

/// What an exchange's answer must carry beyond the tokens: the resource as the access token's
/// `aud` when one was asked for, and an id_token from this issuer for this client.
pub(crate) fn check_exchange(client: &Client, body: &serde_json::Value, tokens: &Tokens) -> Result<(), OpError> {
    if let Some(r) = &client.resource {
        // The point of the resource: the token is for it, and for nothing else.
        let aud = jwt_claims(&tokens.access)?.get("aud").cloned();
        let bound = match aud {
            Some(serde_json::Value::String(a)) => a == *r,
            Some(serde_json::Value::Array(a)) => a.len() == 1 && a[0].as_str() == Some(r.as_str()),
            _ => false,
        };
        if !bound {
            return Err(OpError::Protocol("the access token's aud is not the requested resource"));
        }
    }
    let claims = jwt_claims(&string_field(body, "id_token")?)?;
    if claims.get("iss").and_then(|v| v.as_str()) != Some(client.issuer.as_str()) {
        return Err(OpError::Protocol("the id_token's iss is not the issuer"));
    }
    let aud_ok = match claims.get("aud") {
        Some(serde_json::Value::String(a)) => *a == client.client_id,
        Some(serde_json::Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(&client.client_id)),
        _ => false,
    };
    if !aud_ok {
        return Err(OpError::Protocol("the id_token's aud is not the client"));
    }
    Ok(())
}

/// `grant_type=refresh_token` (RFC 6749 §6). Each token is used once; the answer must carry a new
/// refresh token (rotation, RFC 9700 §4.14.2) and a new access token.
pub struct Refresh {
    pub client: Client,
    pub tokens: Arc<Vec<Tokens>>,
}

pub fn refresh_request(client: &Client, refresh_token: &str) -> Req {
    Req::form(
        client.token_path.clone(),
        &[("grant_type", "refresh_token"), ("refresh_token", refresh_token), ("client_id", &client.client_id)],
    )
}

#[async_trait]
impl Op for Refresh {
    type Out = Tokens;
    async fn call(&self, conn: &mut Conn, i: usize) -> Result<(Tokens, usize), OpError> {
        let old = &self.tokens[i];
        let (_, new) = token_response(conn.send(refresh_request(&self.client, &old.refresh)).await?, "Bearer")?;
        check_rotated(old, &new)?;
        Ok((new, 1))
    }
}

/// RFC 9700 §4.14.2: a refresh answers with a new refresh token and a new access token.
pub(crate) fn check_rotated(old: &Tokens, new: &Tokens) -> Result<(), OpError> {
    if new.refresh == old.refresh {
        return Err(OpError::Protocol("the refresh token was not rotated"));
    }
    if new.access == old.access {
        return Err(OpError::Protocol("the refresh returned the same access token"));
    }
    Ok(())
}

/// `GET /userinfo` with a bearer access token (OpenID Connect Core §5.3).
pub struct Userinfo {
    pub path: String,
    pub access_tokens: Arc<Vec<String>>,
}

#[async_trait]
impl Op for Userinfo {
    type Out = ();
    async fn call(&self, conn: &mut Conn, i: usize) -> Result<((), usize), OpError> {
        let token = &self.access_tokens[i % self.access_tokens.len()];
        let req = Req::get(self.path.clone()).header(header::AUTHORIZATION, &format!("Bearer {token}"))?;
        let body = conn.send(req).await?.expect(StatusCode::OK)?.json()?;
        string_field(&body, "sub")?;
        Ok(((), 1))
    }
}

/// A GET of a public document (discovery, the JWK Set, the bare server's hello). The body is
/// checked for its first byte only: parsing a 2 kB document on every request would bill the
/// client's JSON parser to the server on a machine where both share the cores.
pub struct Fetch {
    pub path: String,
    pub first_byte: Option<u8>,
}

#[async_trait]
impl Op for Fetch {
    type Out = ();
    async fn call(&self, conn: &mut Conn, _: usize) -> Result<((), usize), OpError> {
        let res = conn.send(Req::get(self.path.clone())).await?.expect(StatusCode::OK)?;
        if let Some(b) = self.first_byte
            && res.body.first() != Some(&b)
        {
            return Err(OpError::Protocol("the document does not start as expected"));
        }
        Ok(((), 1))
    }
}

/// RFC 7591 registration of a public client, each with its own redirect URI (identical metadata
/// could be answered with the existing client, which measures a lookup, not a registration).
pub struct Register {
    pub path: String,
}

#[async_trait]
impl Op for Register {
    type Out = ();
    async fn call(&self, conn: &mut Conn, i: usize) -> Result<((), usize), OpError> {
        let nonce = random_b64(6);
        let body = serde_json::json!({
            "client_name": format!("bench host {i}"),
            "redirect_uris": [format!("http://127.0.0.1:{}/callback/{nonce}", 20000 + i % 40000)],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
            "application_type": "native",
        });
        let res = conn.send(Req::json(self.path.clone(), &body)).await?;
        if res.status != StatusCode::CREATED && res.status != StatusCode::OK {
            return Err(OpError::Status {
                want: 201,
                got: res.status.as_u16(),
                body: String::from_utf8_lossy(&res.body).chars().take(200).collect(),
            });
        }
        string_field(&res.json()?, "client_id")?;
        Ok(((), 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_matches_rfc7636_appendix_b() {
        // RFC 7636 Appendix B: this verifier has this S256 challenge.
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(b"dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"));
        assert_eq!(challenge, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        let p = Pkce::generate();
        assert_eq!(p.verifier.len(), 43);
        assert_eq!(p.challenge, URL_SAFE_NO_PAD.encode(Sha256::digest(p.verifier.as_bytes())));
    }

    #[test]
    fn authorization_requests_are_fresh() {
        let c = Client {
            issuer: "http://127.0.0.1:8080".into(),
            client_id: "app".into(),
            redirect_uri: "http://127.0.0.1:8765/callback".into(),
            scope: "openid profile email".into(),
            authorize_path: "/authorize".into(),
            token_path: "/token".into(),
            resource: None,
        };
        let (a, va, sa) = c.authorization_request();
        let (b, vb, sb) = c.authorization_request();
        assert!(a.starts_with("/authorize?response_type=code&client_id=app&redirect_uri=http%3A%2F%2F127.0.0.1"));
        assert!(a.contains("scope=openid+profile+email") && a.contains("code_challenge_method=S256"));
        assert!(va != vb && sa != sb && a != b);
    }
}
