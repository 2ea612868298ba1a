//! Why a request is refused, and the one place that turns a refusal into an HTTP response
//! (RFC 6750 §3 and RFC 9449 §7.1: status code, `WWW-Authenticate` challenges and a JSON body
//! that says the same).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use latchkey_proto::Scope;
use latchkey_proto::dpop::DpopError;
use latchkey_proto::jose::JoseError;

use crate::bearer::Scheme;

/// A refused request. Closed: every way a request can fail has a variant and one mapping below.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No credentials at all, or another authentication scheme: RFC 6750 §3.1 says the challenge
    /// then carries no error code.
    #[error("the request has no bearer token")]
    NoToken,
    /// RFC 6750 §3.1 `invalid_request`: malformed or ambiguous credentials. 400.
    #[error("invalid_request: {0}")]
    InvalidRequest(&'static str),
    /// RFC 6750 §3.1 `invalid_token`: expired, revoked, malformed or not for us. 401.
    #[error("invalid_token: {0}")]
    InvalidToken(TokenError),
    /// RFC 9449 §7.1 `invalid_dpop_proof`: the DPoP proof fails a check of §4.3 or was used
    /// before; or `use_dpop_nonce` (§9) when it lacks a current nonce of this API. 401.
    #[error("{code}: {0}", code = if .0.is_nonce() { "use_dpop_nonce" } else { "invalid_dpop_proof" })]
    DpopProof(DpopError),
    /// `Authorization: DPoP` without a `DPoP` header (RFC 9449 §7.1: the proof must be there).
    /// 401 `invalid_dpop_proof`.
    #[error("invalid_dpop_proof: the request has no DPoP proof")]
    MissingDpopProof,
    /// RFC 6750 §3.1 `insufficient_scope`: a valid token without the scope this route needs. 403.
    #[error("insufficient_scope: this request needs scope {required}; the token lacks {missing}")]
    InsufficientScope { required: Scope, missing: String },
    /// The token cannot be checked right now (no signing keys yet, introspection endpoint down).
    /// Not the client's fault: 503 with `Retry-After`.
    #[error("the issuer's keys or introspection endpoint are unavailable: {0}")]
    Unavailable(String),
    /// The API is wired wrongly (e.g. the `Claims` extractor without a verifier). 500; the detail
    /// goes to the log only.
    #[error("server misconfiguration: {0}")]
    Misconfigured(&'static str),
}

/// Which check of the access token failed. The description names the check, never the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("{0}")]
    Jose(JoseError),
    /// RFC 9068 §4: an access token's `typ` is `at+jwt`; an id_token must not pass as one.
    #[error("the token's typ is {0:?}, not at+jwt: it is not an access token (RFC 9068 §4)")]
    WrongType(Option<String>),
    #[error("the token was issued by {0:?}, not by the issuer this API trusts")]
    Issuer(String),
    /// RFC 8707 / RFC 9068 §4: `aud` names another API. Both sides are named: the token's
    /// audience is its holder's own information, the accepted one is public (it is this API's
    /// resource identifier).
    #[error(
        "the token's audience is {token:?}, not this API ({accepted}): ask the issuer for a token for this resource (RFC 8707)"
    )]
    Audience { token: String, accepted: String },
    #[error("the access token expired")]
    Expired,
    #[error("the access token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the access token was issued in the future (iat)")]
    IssuedInFuture,
    #[error("the access token has no valid {0} claim")]
    MissingClaim(&'static str),
    /// RFC 7662: the authorization server says the token is not active (revoked, expired, unknown).
    #[error("the access token is not active (introspection)")]
    Inactive,
    /// RFC 7662 §2.2: the introspection answer's `token_type` names another kind of token (a
    /// refresh token, a DPoP-bound token) than the bearer access token this API accepts.
    #[error("the token is of type {0:?} according to introspection, not a Bearer or DPoP access token")]
    NotAnAccessToken(String),
    /// RFC 9449 §7.2: a DPoP-bound token (`cnf.jkt`) presented as a bearer token. Accepting it
    /// would let whoever copied the token use it without the key.
    #[error(
        "the access token is DPoP-bound (cnf.jkt) and cannot be used as a Bearer token: send Authorization: DPoP <token> with a DPoP proof (RFC 9449 §7.2)"
    )]
    DpopBound,
    /// The DPoP scheme with a token that is bound to no key: a proof by any key would otherwise
    /// make a bearer token pass as sender-constrained.
    #[error("the access token is not DPoP-bound (no cnf.jkt), so it cannot be sent with the DPoP scheme")]
    NotDpopBound,
    /// The API accepts DPoP-bound tokens only ([`crate::DpopMode::Required`]).
    #[error(
        "this API accepts only DPoP-bound access tokens: get one by sending a DPoP proof to the token endpoint, then send Authorization: DPoP <token> with a proof (RFC 9449)"
    )]
    DpopRequired,
    /// RFC 9449 §7.1: the proof was signed by another key than the token's `cnf.jkt`.
    #[error("the DPoP proof is signed by another key than the one the access token is bound to (cnf.jkt)")]
    DpopKeyMismatch,
    /// A `cnf` this API cannot check (RFC 7800): a confirmation method other than `jkt`, such as
    /// an mTLS certificate thumbprint. Accepting the token would drop its sender constraint.
    #[error("the access token is bound by a confirmation this API cannot check ({0})")]
    Confirmation(&'static str),
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NoToken | Self::InvalidToken(_) | Self::DpopProof(_) | Self::MissingDpopProof => {
                StatusCode::UNAUTHORIZED
            }
            Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::InsufficientScope { .. } => StatusCode::FORBIDDEN,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Misconfigured(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The RFC 6750 §3.1 error code, if this refusal has one.
    pub fn error_code(&self) -> Option<&'static str> {
        match self {
            Self::NoToken => None,
            Self::InvalidRequest(_) => Some("invalid_request"),
            Self::InvalidToken(_) => Some("invalid_token"),
            Self::DpopProof(e) if e.is_nonce() => Some("use_dpop_nonce"),
            Self::DpopProof(_) | Self::MissingDpopProof => Some("invalid_dpop_proof"),
            Self::InsufficientScope { .. } => Some("insufficient_scope"),
            Self::Unavailable(_) => Some("temporarily_unavailable"),
            Self::Misconfigured(_) => Some("server_error"),
        }
    }

    /// What the client is told. Internal details (misconfiguration, upstream errors) stay in the log.
    pub fn description(&self) -> String {
        match self {
            Self::NoToken => "send the access token in the Authorization header: Authorization: Bearer <token>".into(),
            Self::InvalidRequest(d) => (*d).into(),
            Self::InvalidToken(e) => e.to_string(),
            Self::DpopProof(e) => e.to_string(),
            Self::MissingDpopProof => {
                "Authorization: DPoP needs a DPoP proof of this request in the DPoP header (RFC 9449 §7.1)".into()
            }
            Self::InsufficientScope { required, missing } => {
                format!("this request needs scope \"{required}\"; the token lacks \"{missing}\"")
            }
            Self::Unavailable(_) => "the access token cannot be checked right now; retry shortly".into(),
            Self::Misconfigured(_) => "internal error".into(),
        }
    }

    /// The `WWW-Authenticate` challenge (RFC 6750 §3), for the refusals that carry one.
    pub fn challenge(&self, realm: Option<&str>) -> Option<String> {
        self.challenge_with(&Challenge { realm, ..Challenge::default() })
    }

    /// The first of [`Refusal::challenges`]: the Bearer challenge, unless only DPoP is accepted.
    pub fn challenge_with(&self, c: &Challenge<'_>) -> Option<String> {
        self.challenges(c).into_iter().next()
    }

    /// One challenge per scheme the API accepts: `Bearer` (unless it accepts DPoP only), then
    /// `DPoP` with its `algs` (RFC 9449 §7.1) when it accepts DPoP. The error goes on the
    /// challenge of the scheme the request used, or on every challenge when that scheme cannot be
    /// told or is not accepted (RFC 9449 §7.2). Order within one: `realm`, `error`,
    /// `error_description`, `algs`, `resource_metadata`, `scope`. `resource_metadata` (RFC 9728
    /// §5.1) goes on every challenge; `scope` on 401s names what the route needs (so a client asks
    /// for it at once), on 403 `insufficient_scope` every scope the request needs, granted ones
    /// included (the MCP step-up asks for exactly that set; naming only the missing ones would
    /// make the client drop the others). None for 503 and 500.
    pub fn challenges(&self, c: &Challenge<'_>) -> Vec<String> {
        let scope = match self {
            Self::NoToken | Self::InvalidRequest(_) | Self::InvalidToken(_) => c.scope.filter(|s| !s.is_empty()),
            Self::DpopProof(_) | Self::MissingDpopProof => c.scope.filter(|s| !s.is_empty()),
            Self::InsufficientScope { required, .. } => Some(required),
            Self::Unavailable(_) | Self::Misconfigured(_) => return Vec::new(),
        };
        let mut schemes = Vec::with_capacity(2);
        if !(c.dpop_required && c.dpop_algs.is_some()) {
            schemes.push(Scheme::Bearer);
        }
        if c.dpop_algs.is_some() {
            schemes.push(Scheme::Dpop);
        }
        let used = c.used.or(match self {
            Self::DpopProof(_) | Self::MissingDpopProof => Some(Scheme::Dpop),
            _ => None,
        });
        let carrier = used.filter(|u| schemes.contains(u));
        schemes
            .into_iter()
            .map(|scheme| {
                let with_error = carrier.is_none_or(|u| u == scheme);
                self.one_challenge(scheme, with_error, scope, c)
            })
            .collect()
    }

    fn one_challenge(&self, scheme: Scheme, with_error: bool, scope: Option<&Scope>, c: &Challenge<'_>) -> String {
        let mut params = Vec::new();
        if let Some(r) = c.realm {
            params.push(format!("realm=\"{}\"", quoted(r)));
        }
        if with_error && let Some(code) = self.error_code() {
            params.push(format!("error=\"{code}\""));
            params.push(format!("error_description=\"{}\"", described(&self.description())));
        }
        if let (Scheme::Dpop, Some(algs)) = (scheme, c.dpop_algs) {
            params.push(format!("algs=\"{}\"", quoted(algs)));
        }
        if let Some(url) = c.resource_metadata {
            params.push(format!("resource_metadata=\"{}\"", quoted(url)));
        }
        // Never `scope=""`: clients' parsers read an empty quoted value as the two quote marks.
        if let Some(s) = scope.filter(|s| !s.is_empty()) {
            params.push(format!("scope=\"{}\"", quoted(&s.to_string())));
        }
        if params.is_empty() { scheme.name().into() } else { format!("{} {}", scheme.name(), params.join(", ")) }
    }

    /// The response, with the challenge's realm.
    pub fn to_response(&self, realm: Option<&str>) -> Response {
        self.to_response_with(&Challenge { realm, ..Challenge::default() })
    }

    /// The response, with every challenge parameter of `c`.
    pub fn to_response_with(&self, c: &Challenge<'_>) -> Response {
        match self {
            Self::Misconfigured(detail) => tracing::error!(%detail, "latchkey-resource is misconfigured"),
            Self::Unavailable(detail) => tracing::warn!(%detail, "cannot check access tokens"),
            other => tracing::debug!(refusal = %other, "request refused"),
        }
        let mut body = serde_json::Map::new();
        if let Some(code) = self.error_code() {
            body.insert("error".into(), code.into());
        }
        body.insert("error_description".into(), self.description().into());
        let mut res = (self.status(), axum::Json(body)).into_response();
        let h = res.headers_mut();
        // One header field per challenge (RFC 9110 §11.6.1 allows either form): a client that
        // reads only the first still gets a complete one.
        for c in self.challenges(c).iter().filter_map(|c| HeaderValue::from_str(c).ok()) {
            h.append(header::WWW_AUTHENTICATE, c);
        }
        if matches!(self, Self::Unavailable(_)) {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }
}

/// What a challenge says besides the refusal itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct Challenge<'a> {
    /// RFC 6750 §3 `realm`.
    pub realm: Option<&'a str>,
    /// RFC 9728 §5.1: where the client finds this API's protected resource metadata.
    pub resource_metadata: Option<&'a str>,
    /// The scope the request needs, for 401 challenges (403s carry their own).
    pub scope: Option<&'a Scope>,
    /// The JWS algorithms accepted in DPoP proofs, space-separated, when the API accepts DPoP:
    /// a `DPoP` challenge is added with them as `algs` (RFC 9449 §7.1).
    pub dpop_algs: Option<&'a str>,
    /// The API accepts DPoP only: no `Bearer` challenge.
    pub dpop_required: bool,
    /// The scheme the request used ([`Scheme::of`]): its challenge carries the error.
    pub used: Option<Scheme>,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        self.to_response(None)
    }
}

/// An `error_description` value: [`quoted`], and without `=`, so that the naive
/// `name="value"` searches of MCP SDK clients cannot find a `scope=` or `resource_metadata=`
/// inside a description that echoes a claim.
fn described(s: &str) -> String {
    quoted(s).replace('=', ":")
}

/// RFC 6750 §3: error_description and scope are restricted to %x20-21 / %x23-5B / %x5D-7E, so
/// no `"` or `\` (which would break out of the quoted string) and nothing outside printable ASCII.
fn quoted(s: &str) -> String {
    s.chars().map(|c| if c == '"' { '\'' } else { c }).filter(|c| (' '..='~').contains(c) && *c != '\\').collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn challenges_follow_rfc6750_section_3() {
        assert_eq!(Refusal::NoToken.challenge(None).unwrap(), "Bearer");
        assert_eq!(Refusal::NoToken.challenge(Some("api")).unwrap(), "Bearer realm=\"api\"");
        let c = Refusal::InvalidToken(TokenError::Expired).challenge(Some("api")).unwrap();
        assert_eq!(c, "Bearer realm=\"api\", error=\"invalid_token\", error_description=\"the access token expired\"");
        let s = Refusal::InsufficientScope { required: Scope::parse("b a").unwrap(), missing: "b".into() };
        let c = s.challenge(None).unwrap();
        assert!(c.contains("error=\"insufficient_scope\"") && c.ends_with("scope=\"a b\""), "{c}");
        assert_eq!(s.status(), StatusCode::FORBIDDEN);
        assert!(Refusal::Unavailable("x".into()).challenge(None).is_none());
        assert_eq!(quoted("a\"b\\c\u{e9}\n"), "a'bc");
        assert_eq!(described("aud https://x/?scope=admin"), "aud https://x/?scope:admin");
    }

    /// RFC 9449 §7.2's recommendations, Figures 17 and 18.
    #[test]
    fn the_error_goes_on_the_challenge_of_the_scheme_used() {
        let both = Challenge { dpop_algs: Some("ES256 PS256"), ..Challenge::default() };
        assert_eq!(Refusal::NoToken.challenges(&both), ["Bearer", "DPoP algs=\"ES256 PS256\""]);
        let bad = Refusal::InvalidToken(TokenError::Expired);
        let c = bad.challenges(&Challenge { used: Some(Scheme::Bearer), ..both });
        assert!(c[0].starts_with("Bearer error=\"invalid_token\"") && c[1] == "DPoP algs=\"ES256 PS256\"", "{c:?}");
        let c = bad.challenges(&Challenge { used: Some(Scheme::Dpop), ..both });
        assert!(c[0] == "Bearer" && c[1].starts_with("DPoP error=\"invalid_token\""), "{c:?}");
        assert!(c[1].ends_with("algs=\"ES256 PS256\""), "{c:?}");
        // Unknown scheme (two Authorization headers): on both.
        let c = Refusal::InvalidRequest("x").challenges(&both);
        assert!(c.iter().all(|c| c.contains("error=\"invalid_request\"")), "{c:?}");
        // A nonce refusal says use_dpop_nonce, on the DPoP challenge even without `used`.
        let c = Refusal::DpopProof(DpopError::Nonce).challenges(&both);
        assert!(c[0] == "Bearer" && c[1].starts_with("DPoP error=\"use_dpop_nonce\""), "{c:?}");
        // DPoP only: one challenge, which carries the error of a Bearer request.
        let only = Challenge { dpop_required: true, used: Some(Scheme::Bearer), ..both };
        let c = Refusal::InvalidToken(TokenError::DpopRequired).challenges(&only);
        assert_eq!(c.len(), 1);
        assert!(c[0].starts_with("DPoP error=\"invalid_token\""), "{c:?}");
        assert_eq!(Refusal::DpopProof(DpopError::Replayed).status(), StatusCode::UNAUTHORIZED);
        assert_eq!(Refusal::MissingDpopProof.error_code(), Some("invalid_dpop_proof"));
    }
}
