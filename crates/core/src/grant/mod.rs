//! The token endpoint: client authentication, one module per grant, and token minting.

pub mod authorization_code;
pub mod client_auth;
pub mod client_credentials;
pub mod device_code;
mod grace;
pub mod refresh_token;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latchkey_proto::metadata::TokenResponse;
use latchkey_proto::secret::random_token;
use latchkey_proto::{ClientId, Nonce, RefreshToken, Scope, TokenRequest};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};

use crate::store::{AccessRecord, ClientRecord, GrantRecord, GrantType, RefreshRecord, SigningAlg};
use crate::{Error, Provider, UnixTime};

/// RFC 9068 §2.2 claims of a JWT access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: UnixTime,
    pub iat: UnixTime,
    pub jti: String,
    pub client_id: String,
    pub scope: String,
    pub auth_time: UnixTime,
    /// RFC 9068 §2.2.1: how the user authenticated, for resource servers that demand a level
    /// (RFC 9470 step-up). Absent for a client acting for itself.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub acr: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub amr: Vec<String>,
    /// RFC 9449 §6.1: the DPoP key the token is bound to; a resource server accepts the token
    /// only with a proof by that key.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cnf: Option<Confirmation>,
}

/// RFC 7800 `cnf` with RFC 9449 §6.1's `jkt`: the SHA-256 JWK thumbprint of the bound key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    pub jkt: String,
}

/// OpenID Connect Core §2 ID token claims.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: UnixTime,
    pub iat: UnixTime,
    pub auth_time: UnixTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    pub azp: String,
    pub sid: String,
    /// OpenID Connect Core §3.1.3.6: left half of SHA-256 of the access token, base64url.
    pub at_hash: String,
    /// OpenID Connect Core §2: the authentication context class the authentication satisfied.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub acr: Option<String>,
    /// RFC 8176 authentication methods.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub amr: Vec<String>,
    /// The user claims released in the id_token ([`crate::claims`]), `sub` excepted.
    #[serde(flatten)]
    pub user: serde_json::Map<String, serde_json::Value>,
}

/// OpenID Connect Core §3.1.3.6: the left half of the hash of the access token, with the hash of
/// the id_token's JWS algorithm: SHA-256 for RS256 and ES256, SHA-512 for EdDSA with Ed25519.
pub fn at_hash(alg: SigningAlg, access_token: &str) -> String {
    match alg {
        SigningAlg::RS256 | SigningAlg::ES256 => URL_SAFE_NO_PAD.encode(&Sha256::digest(access_token.as_bytes())[..16]),
        SigningAlg::EdDSA => URL_SAFE_NO_PAD.encode(&Sha512::digest(access_token.as_bytes())[..32]),
    }
}

/// What one token response carries, before it is stored.
pub struct Minted {
    pub response: TokenResponse,
    pub access: AccessRecord,
    pub refresh: Option<RefreshRecord>,
}

/// What to put in a token response besides the access token.
pub(crate) struct MintOptions<'a> {
    pub aud: &'a str,
    pub nonce: Option<&'a Nonce>,
    /// An id_token is issued when `openid` is in scope and this is set (not for client credentials).
    pub id_token: bool,
    /// A refresh token is drawn when the client is registered for the refresh grant and this is set.
    pub refresh: bool,
    /// The user the id_token is about: its claims are released as [`crate::claims`] decides.
    pub user: Option<&'a crate::store::UserRecord>,
    /// The thumbprint of the DPoP key the request proved: the access token is bound to it
    /// (`cnf.jkt`) and its `token_type` is `DPoP` (RFC 9449 §5, §6.1).
    pub dpop_jkt: Option<&'a str>,
}

/// The user a grant is for, who must still exist and not be locked: locking revokes the user's
/// grants, and this also refuses one that a token request created in a race with the lock.
pub(crate) async fn user_of(p: &Provider, user_id: &str) -> Result<crate::store::UserRecord, Error> {
    match p.store.user(user_id).await? {
        Some(u) if u.locked_at.is_none() => Ok(u),
        Some(_) => Err(latchkey_proto::OAuthError::invalid_grant("the user's account is locked").into()),
        None => Err(latchkey_proto::OAuthError::invalid_grant("the user of this grant no longer exists").into()),
    }
}

/// The `aud` of access tokens under `grant`: its resource, or the default audience.
pub(crate) fn audience_of(p: &Provider, client: &ClientRecord, grant: &GrantRecord) -> String {
    match &grant.resource {
        Some(r) => r.to_string(),
        None => crate::resource::default_audience(client, &p.config.audience).to_owned(),
    }
}

/// Signs the access token (and the id_token when `openid` is in scope) and draws a refresh token
/// when the client is registered for the refresh grant.
pub(crate) fn mint(
    p: &Provider,
    client: &ClientRecord,
    grant: &GrantRecord,
    scope: &Scope,
    opts: MintOptions<'_>,
    now: UnixTime,
) -> Result<Minted, Error> {
    let keys = p.keys();
    let cfg = &p.config;
    let exp = now + cfg.access_token_ttl as UnixTime;
    let jti = random_token();
    let access_claims = AccessClaims {
        iss: cfg.issuer.clone(),
        sub: grant.user_id.clone(),
        aud: opts.aud.to_owned(),
        exp,
        iat: now,
        jti: jti.clone(),
        client_id: client.client_id.to_string(),
        scope: scope.to_string(),
        auth_time: grant.auth_time,
        acr: grant.authn.as_ref().map(|a| a.acr().as_str().to_owned()),
        amr: grant.authn.as_ref().map(|a| a.amr_strings()).unwrap_or_default(),
        cnf: opts.dpop_jkt.map(|jkt| Confirmation { jkt: jkt.to_owned() }),
    };
    // RFC 9068 §2.1: typ "at+jwt" keeps an access token from being accepted as an id_token.
    let access_token = keys.signer(cfg.access_token_alg)?.sign("at+jwt", &access_claims)?;
    let id_token = if opts.id_token && scope.contains("openid") {
        let alg = client.id_token_signed_response_alg;
        let mut user = match opts.user {
            Some(u) => crate::claims::release(u, scope, grant.claims.as_ref(), crate::claims::Target::IdToken),
            None => serde_json::Map::new(),
        };
        // `sub` is the grant's, set below.
        user.remove("sub");
        let claims = IdClaims {
            iss: cfg.issuer.clone(),
            sub: grant.user_id.clone(),
            aud: client.client_id.to_string(),
            exp,
            iat: now,
            auth_time: grant.auth_time,
            nonce: opts.nonce.map(|n| n.as_str().to_owned()),
            azp: client.client_id.to_string(),
            sid: grant.sid.clone(),
            at_hash: at_hash(alg, &access_token),
            acr: grant.authn.as_ref().map(|a| a.acr().as_str().to_owned()),
            amr: grant.authn.as_ref().map(|a| a.amr_strings()).unwrap_or_default(),
            user,
        };
        Some(keys.signer(alg)?.sign("JWT", &claims)?)
    } else {
        None
    };
    let refresh_token = (opts.refresh && client.allows(GrantType::RefreshToken)).then(RefreshToken::generate);
    let refresh = refresh_token.as_ref().map(|t| RefreshRecord {
        hash: t.hash(),
        grant_id: grant.id.clone(),
        scope: scope.clone(),
        issued_at: now,
        // Idle lifetime, capped by the family's absolute lifetime.
        expires_at: (now + cfg.refresh_token_idle_ttl as UnixTime).min(grant.expires_at),
        consumed_at: None,
        cached_response: None,
    });
    Ok(Minted {
        response: TokenResponse {
            access_token,
            // RFC 9449 §5: a bound token says so, so that the client presents it with DPoP.
            token_type: if opts.dpop_jkt.is_some() { "DPoP" } else { "Bearer" }.into(),
            expires_in: cfg.access_token_ttl,
            refresh_token: refresh_token.map(|t| t.expose_secret().to_owned()),
            id_token,
            scope: scope.to_string(),
        },
        access: AccessRecord { jti, grant_id: grant.id.clone(), expires_at: exp, revoked_at: None },
        refresh,
    })
}

/// The token endpoint: authenticates the client, checks the DPoP proof if there is one (`dpop`
/// holds the request's raw `DPoP` header values), then dispatches on the grant.
pub async fn token(
    p: &Provider,
    req: TokenRequest,
    dpop: &[&str],
    now: UnixTime,
) -> Result<(ClientId, TokenResponse), Error> {
    let client = client_auth::authenticate(p, &req.client, client_auth::Endpoint::Token, now).await?;
    // After client authentication: an unknown client's proofs cost no replay mark.
    let endpoint = crate::dpop::Endpoint::Token;
    let proof_request = crate::dpop::ProofRequest { values: dpop, method: "POST", endpoint, access_token: None };
    let proof = p.check_dpop_proof(&proof_request, now).await?;
    crate::dpop::required(p.config.protection.requires_dpop(&client), proof.as_ref())?;
    let proof = proof.as_ref();
    let response = match req.grant {
        latchkey_proto::GrantRequest::AuthorizationCode { code, redirect_uri, code_verifier, resource } => {
            let exchange = authorization_code::Exchange {
                code: &code,
                redirect_uri: redirect_uri.as_deref(),
                verifier: code_verifier.as_ref(),
                resource: resource.as_ref(),
                proof,
            };
            authorization_code::exchange(p, &client, exchange, now).await?
        }
        latchkey_proto::GrantRequest::RefreshToken { refresh_token, scope, resource } => {
            refresh_token::refresh(p, &client, &refresh_token, scope.as_ref(), resource.as_ref(), proof, now).await?
        }
        latchkey_proto::GrantRequest::ClientCredentials { scope, audience } => {
            client_credentials::issue(p, &client, scope.as_ref(), audience.as_deref(), proof, now).await?
        }
        latchkey_proto::GrantRequest::DeviceCode { device_code } => {
            device_code::poll(p, &client, &device_code, proof, now).await?
        }
    };
    Ok((client.client_id, response))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// OpenID Connect Core §3.1.3.6 with the example access token of RFC 6749 §4.1.4.
    #[test]
    fn at_hash_uses_the_hash_of_the_signing_algorithm() {
        let t = "2YotnFZFEjr1zCsicMWpAA";
        let sha256_left = &Sha256::digest(t.as_bytes())[..16];
        assert_eq!(at_hash(SigningAlg::RS256, t), URL_SAFE_NO_PAD.encode(sha256_left));
        assert_eq!(at_hash(SigningAlg::ES256, t), at_hash(SigningAlg::RS256, t));
        assert_eq!(at_hash(SigningAlg::RS256, t).len(), 22);
        assert_eq!(at_hash(SigningAlg::EdDSA, t).len(), 43, "left half of SHA-512: 32 bytes");
    }
}
