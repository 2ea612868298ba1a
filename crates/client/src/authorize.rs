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
    /// The URL to open in the user's browser. After a push (RFC 9126) it carries only
    /// `client_id` and `request_uri`: the parameters went to the provider directly.
    pub url: Url,
    pub redirect_uri: RedirectUri,
    pub scope: Scope,
    state: String,
    nonce: String,
    verifier: CodeVerifier,
    /// The request's parameters but `client_id`, in order: the query of `url`, or the body of a
    /// pushed request.
    params: Vec<(&'static str, String)>,
    /// The `request_uri` the provider gave for the pushed parameters.
    request_uri: Option<String>,
}

impl std::fmt::Debug for AuthorizationRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizationRequest")
            .field("redirect_uri", &self.redirect_uri)
            .field("scope", &self.scope)
            .field("pushed", &self.request_uri.is_some())
            .finish_non_exhaustive()
    }
}

impl AuthorizationRequest {
    /// A fresh request: a new PKCE verifier (32 random bytes, S256), a new `state` against CSRF and a
    /// new `nonce` that the id_token must echo (OpenID Connect Core §3.1.2.1), each 256 bits.
    /// `dpop_jkt` binds the code to the client's DPoP key (RFC 9449 §10), so a stolen code is
    /// useless without it.
    pub(crate) fn new(
        authorization_endpoint: Url,
        client_id: &str,
        redirect_uri: RedirectUri,
        scope: Scope,
        dpop_jkt: Option<&str>,
    ) -> Self {
        let verifier = CodeVerifier::generate();
        let state = random_token();
        let nonce = random_token();
        let mut params = vec![("response_type", "code".to_owned()), ("redirect_uri", redirect_uri.as_str().to_owned())];
        if !scope.is_empty() {
            params.push(("scope", scope.to_string()));
        }
        params.extend([
            ("state", state.clone()),
            ("nonce", nonce.clone()),
            ("code_challenge", verifier.challenge().as_str().to_owned()),
            ("code_challenge_method", "S256".to_owned()),
        ]);
        if let Some(jkt) = dpop_jkt {
            params.push(("dpop_jkt", jkt.to_owned()));
        }
        let mut url = authorization_endpoint;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("client_id", client_id);
            for (k, v) in &params {
                q.append_pair(k, v);
            }
        }
        Self { url, redirect_uri, scope, state, nonce, verifier, params, request_uri: None }
    }

    /// The parameters to push (RFC 9126 §2.1), `client_id` aside (the client authentication adds it).
    pub(crate) fn params(&self) -> &[(&'static str, String)] {
        &self.params
    }

    /// After a push: the browser gets only `client_id` and `request_uri` (RFC 9126 §4).
    pub(crate) fn pushed(&mut self, authorization_endpoint: Url, client_id: &str, request_uri: String) {
        let mut url = authorization_endpoint;
        url.query_pairs_mut().append_pair("client_id", client_id).append_pair("request_uri", &request_uri);
        self.url = url;
        self.request_uri = Some(request_uri);
    }

    /// The `request_uri` of a pushed request.
    pub fn request_uri(&self) -> Option<&str> {
        self.request_uri.as_deref()
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
            None,
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
        assert!(!q.contains_key("dpop_jkt") && !q.contains_key("request_uri"));
        // The pushed parameters are the same as the query, client_id aside.
        let pushed: std::collections::HashMap<_, _> =
            r.params().iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let mut query = q.clone();
        query.remove("client_id");
        query.remove("prompt");
        assert_eq!(pushed, query);
    }

    #[test]
    fn dpop_jkt_binds_the_code_and_a_push_leaves_only_the_request_uri() {
        let mut r = AuthorizationRequest::new(
            Url::parse("https://id.example/authorize").unwrap(),
            "app",
            RedirectUri::parse("http://127.0.0.1:5000/callback").unwrap(),
            Scope::parse("openid").unwrap(),
            Some("thumb-1"),
        );
        let q: std::collections::HashMap<_, _> = r.url.query_pairs().into_owned().collect();
        assert_eq!(q["dpop_jkt"], "thumb-1");
        assert!(r.params().contains(&("dpop_jkt", "thumb-1".to_owned())));
        let urn = "urn:ietf:params:oauth:request_uri:abc";
        r.pushed(Url::parse("https://id.example/authorize").unwrap(), "app", urn.into());
        let q: Vec<(String, String)> = r.url.query_pairs().into_owned().collect();
        assert_eq!(q, [("client_id".to_owned(), "app".to_owned()), ("request_uri".to_owned(), urn.to_owned())]);
        assert_eq!(r.request_uri(), Some(urn));
        // The state and verifier stay with the request: the response is checked as before.
        assert_eq!(r.verifier().expose_secret().len(), 43);
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
