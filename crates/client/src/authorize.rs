//! The authorization request (RFC 6749 §4.1.1 with PKCE, RFC 7636) and the checks of its response
//! (`state`, RFC 6749 §10.12; `iss`, RFC 9207).

use latchkey_proto::secret::random_token;
use latchkey_proto::{AuthorizationCode, CodeVerifier, Params, RedirectUri, Scope};
use subtle::ConstantTimeEq;
use url::Url;

use crate::Error;

/// One authorization attempt: what was sent, and the secrets needed to finish it. Keep it until
/// the response arrives; never reuse it for a second attempt.
pub struct AuthorizationRequest {
    /// The URL to open in the user's browser.
    pub url: Url,
    pub redirect_uri: RedirectUri,
    pub scope: Scope,
    state: String,
    nonce: String,
    verifier: CodeVerifier,
}

impl std::fmt::Debug for AuthorizationRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizationRequest")
            .field("redirect_uri", &self.redirect_uri)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl AuthorizationRequest {
    /// A fresh request: a new PKCE verifier (32 random bytes, S256), a new `state` against CSRF and a
    /// new `nonce` that the id_token must echo (OpenID Connect Core §3.1.2.1), each 256 bits.
    pub(crate) fn new(authorization_endpoint: Url, client_id: &str, redirect_uri: RedirectUri, scope: Scope) -> Self {
        let verifier = CodeVerifier::generate();
        let state = random_token();
        let nonce = random_token();
        let mut url = authorization_endpoint;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", client_id)
                .append_pair("redirect_uri", redirect_uri.as_str());
            if !scope.is_empty() {
                q.append_pair("scope", &scope.to_string());
            }
            q.append_pair("state", &state)
                .append_pair("nonce", &nonce)
                .append_pair("code_challenge", verifier.challenge().as_str())
                .append_pair("code_challenge_method", "S256");
        }
        Self { url, redirect_uri, scope, state, nonce, verifier }
    }

    pub fn nonce(&self) -> &str {
        &self.nonce
    }
    /// The PKCE verifier. Dangerous: with the code it redeems tokens; send it only to the token endpoint.
    pub fn verifier(&self) -> &CodeVerifier {
        &self.verifier
    }
    /// Whether the id_token is expected (OpenID Connect requests `openid`).
    pub fn wants_id_token(&self) -> bool {
        self.scope.contains("openid")
    }
}

/// The parameters of an authorization response as they arrived at the redirect URI.
#[derive(Clone)]
pub struct Callback {
    params: Params,
}

impl std::fmt::Debug for Callback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Parameter names only: the code is a credential.
        f.debug_list().entries(self.params.iter().map(|(k, _)| k)).finish()
    }
}

impl Callback {
    /// Parses the query string of the redirect. A repeated parameter is refused (RFC 6749 §3.1).
    pub fn from_query(query: &str) -> Result<Self, Error> {
        Params::parse(query.as_bytes())
            .map(|params| Self { params })
            .map_err(|e| Error::BadCallback(e.description.into_owned()))
    }

    /// Parses the query of a full redirect URL, e.g. one pasted by the user.
    pub fn from_url(url: &str) -> Result<Self, Error> {
        let url = Url::parse(url).map_err(|_| Error::BadCallback("not a URL".into()))?;
        Self::from_query(url.query().unwrap_or(""))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.params.get(name)
    }
}

/// RFC 6749 §4.1.2 and RFC 9207 §2.4. In order: `state` must be ours (else the response is not
/// for this login, and even its error must not be believed); `iss` must be our issuer (or absent
/// when the provider does not promise it); then an error response becomes an error; then the code.
pub(crate) fn check_callback(
    request: &AuthorizationRequest,
    callback: &Callback,
    issuer: &str,
    iss_required: bool,
) -> Result<AuthorizationCode, Error> {
    match callback.get("state") {
        Some(s) if bool::from(s.as_bytes().ct_eq(request.state.as_bytes())) => {}
        _ => return Err(Error::StateMismatch),
    }
    match callback.get("iss") {
        Some(iss) if iss == issuer => {}
        Some(iss) => return Err(Error::IssMismatch { expected: issuer.into(), found: shown(iss) }),
        None if iss_required => return Err(Error::IssMissing),
        None => {}
    }
    if let Some(error) = callback.get("error") {
        return Err(Error::Authorization {
            error: shown(error),
            description: callback.get("error_description").map(shown),
        });
    }
    callback.get("code").map(AuthorizationCode::new).ok_or(Error::CodeMissing)
}

/// A value from the network as it may appear in a message: printable and bounded.
pub(crate) fn shown(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(200).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const ISS: &str = "https://id.example";

    fn request() -> AuthorizationRequest {
        AuthorizationRequest::new(
            Url::parse("https://id.example/authorize?prompt=login").unwrap(),
            "app",
            RedirectUri::parse("http://127.0.0.1:5000/callback").unwrap(),
            Scope::parse("openid profile").unwrap(),
        )
    }

    fn cb(pairs: &[(&str, &str)]) -> Callback {
        let q: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
        Callback::from_query(&q).unwrap()
    }

    #[test]
    fn the_url_carries_pkce_state_and_nonce() {
        let r = request();
        let q: std::collections::HashMap<_, _> = r.url.query_pairs().into_owned().collect();
        assert_eq!(q["prompt"], "login", "existing query parameters of the endpoint are kept");
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["client_id"], "app");
        assert_eq!(q["redirect_uri"], "http://127.0.0.1:5000/callback");
        assert_eq!(q["scope"], "openid profile");
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["code_challenge"], r.verifier().challenge().as_str());
        assert_eq!(r.verifier().expose_secret().len(), 43);
        assert_eq!(q["state"].len(), 43);
        assert_eq!(q["nonce"], r.nonce());
        assert_ne!(q["state"], q["nonce"]);
        assert!(!format!("{r:?}").contains(&q["state"]), "Debug shows no secret");
    }

    #[test]
    fn state_iss_error_and_code_are_checked_in_order() {
        let r = request();
        let st = r.state.clone();
        let ok = cb(&[("code", "c1"), ("state", &st), ("iss", ISS)]);
        assert_eq!(check_callback(&r, &ok, ISS, true).unwrap().expose_secret(), "c1");

        let e = check_callback(&r, &cb(&[("code", "c1"), ("state", "other"), ("iss", ISS)]), ISS, true);
        assert!(matches!(e, Err(Error::StateMismatch)));
        let e = check_callback(&r, &cb(&[("code", "c1"), ("iss", ISS)]), ISS, true);
        assert!(matches!(e, Err(Error::StateMismatch)), "a missing state is a mismatch");
        // A forged error response with the wrong state is not believed either.
        let e = check_callback(&r, &cb(&[("error", "access_denied"), ("state", "x")]), ISS, true);
        assert!(matches!(e, Err(Error::StateMismatch)));

        let e = check_callback(&r, &cb(&[("code", "c1"), ("state", &st), ("iss", "https://evil.example")]), ISS, false);
        assert!(matches!(e, Err(Error::IssMismatch { ref found, .. }) if found == "https://evil.example"), "{e:?}");
        let e = check_callback(&r, &cb(&[("code", "c1"), ("state", &st)]), ISS, true);
        assert!(matches!(e, Err(Error::IssMissing)));
        assert!(check_callback(&r, &cb(&[("code", "c1"), ("state", &st)]), ISS, false).is_ok());

        let denied =
            cb(&[("error", "access_denied"), ("error_description", "the user said no"), ("state", &st), ("iss", ISS)]);
        let e = check_callback(&r, &denied, ISS, true).unwrap_err();
        assert!(matches!(e, Error::Authorization { ref error, .. } if error == "access_denied"));
        assert!(e.to_string().contains("the user said no"));
        let e = check_callback(&r, &cb(&[("state", &st), ("iss", ISS)]), ISS, true);
        assert!(matches!(e, Err(Error::CodeMissing)));
        assert!(matches!(Callback::from_query("code=a&code=b"), Err(Error::BadCallback(_))));
    }
}
