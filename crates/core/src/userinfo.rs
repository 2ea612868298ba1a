//! The UserInfo endpoint (OpenID Connect Core §5.3) and access token validation for our own tokens.

use latchkey_proto::{ErrorCode, OAuthError, Scope};
use serde_json::Value;

use crate::dpop::{AccessScheme, Endpoint, ProofRequest};
use crate::grant::AccessClaims;
use crate::keys::VerifyError;
use crate::store::GrantRecord;
use crate::{Error, Provider, UnixTime};

/// A request to a protected resource of this server, as the edge parsed it.
#[derive(Clone, Copy, Debug)]
pub struct ResourceRequest<'a> {
    /// The scheme of the `Authorization` header.
    pub scheme: AccessScheme,
    /// The access token. Dangerous to log: it is a credential.
    pub token: &'a str,
    /// The raw values of the request's `DPoP` headers.
    pub proofs: &'a [&'a str],
    /// The request's method, which the proof's `htm` must be.
    pub method: &'a str,
}

impl Provider {
    /// Validates an access token issued by this server: signature, `typ`, `iss`, `aud`, `exp`, and
    /// that its grant has not been revoked (RFC 6750 §3.1 `invalid_token` otherwise).
    pub async fn validate_access_token(&self, token: &str, now: UnixTime) -> Result<AccessClaims, Error> {
        self.access_token_and_grant(token, now).await.map(|(c, _)| c)
    }

    /// [`Provider::validate_access_token`], with the grant the token was issued under.
    async fn access_token_and_grant(&self, token: &str, now: UnixTime) -> Result<(AccessClaims, GrantRecord), Error> {
        let claims: AccessClaims = self.keys().verify(token, "at+jwt").map_err(|e| {
            OAuthError::invalid_token(match e {
                VerifyError::Malformed => "the access token is not a well-formed JWT",
                VerifyError::UnknownKey => "the access token was signed by a key this server does not know",
                VerifyError::BadSignature => "the access token signature is invalid",
                VerifyError::WrongType => "the token is not an access token (typ must be at+jwt)",
            })
        })?;
        if claims.iss != self.config.issuer {
            return Err(OAuthError::invalid_token("the access token was issued by another issuer").into());
        }
        if claims.aud != self.config.audience {
            return Err(OAuthError::invalid_token("the access token is for another audience").into());
        }
        if now >= claims.exp {
            return Err(OAuthError::invalid_token("the access token has expired").into());
        }
        match self.store.access_token(&claims.jti).await? {
            Some((a, g)) if a.revoked_at.is_none() && g.revoked_at.is_none() => Ok((claims, g)),
            _ => Err(OAuthError::invalid_token("the access token has been revoked").into()),
        }
    }

    /// `GET|POST /userinfo`: the claims the granted scopes and the grant's `claims` request allow
    /// ([`crate::claims`]). A DPoP-bound token is accepted only with `Authorization: DPoP` and a
    /// proof by its key for this request (RFC 9449 §7); an unbound one only as a bearer token.
    pub async fn userinfo(&self, req: &ResourceRequest<'_>, now: UnixTime) -> Result<Value, Error> {
        let (claims, grant) = self.access_token_and_grant(req.token, now).await?;
        let cnf_jkt = claims.cnf.as_ref().map(|c| c.jkt.as_str());
        // A proof is checked (and spent) only where it is what authorizes the request: a Bearer
        // request's DPoP header is ignored, as a resource unaware of DPoP would (§7.2).
        let proof = match (req.scheme, cnf_jkt) {
            (AccessScheme::Dpop, Some(_)) => {
                let proof_request = ProofRequest {
                    values: req.proofs,
                    method: req.method,
                    endpoint: Endpoint::Userinfo,
                    access_token: Some(req.token),
                };
                self.check_dpop_proof(&proof_request, now).await?
            }
            _ => None,
        };
        crate::dpop::resource_access(req.scheme, cnf_jkt, proof.as_ref())?;
        let scope = Scope::parse(&claims.scope)?;
        if !scope.contains("openid") {
            return Err(OAuthError::new(
                ErrorCode::InsufficientScope,
                "the userinfo endpoint requires an access token with the openid scope",
            )
            .into());
        }
        let Some(user) = self.store.user(&claims.sub).await? else {
            return Err(OAuthError::invalid_token("the user of this access token no longer exists").into());
        };
        // Locking revokes every grant; this also stops a token issued in a race with the lock.
        if user.locked_at.is_some() {
            return Err(OAuthError::invalid_token("the account of this access token is locked").into());
        }
        let released = crate::claims::release(&user, &scope, grant.claims.as_ref(), crate::claims::Target::Userinfo);
        Ok(Value::Object(released))
    }
}
