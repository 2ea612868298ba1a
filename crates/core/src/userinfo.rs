//! The UserInfo endpoint (OpenID Connect Core §5.3) and access token validation for our own tokens.

use latchkey_proto::{ErrorCode, OAuthError, Scope};
use serde_json::{Map, Value, json};

use crate::grant::AccessClaims;
use crate::keys::VerifyError;
use crate::store::UserRecord;
use crate::{Error, Provider, UnixTime};

impl Provider {
    /// Validates an access token issued by this server: signature, `typ`, `iss`, `aud`, `exp`, and
    /// that its grant has not been revoked (RFC 6750 §3.1 `invalid_token` otherwise).
    pub async fn validate_access_token(&self, token: &str, now: UnixTime) -> Result<AccessClaims, Error> {
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
            Some((a, g)) if a.revoked_at.is_none() && g.revoked_at.is_none() => Ok(claims),
            _ => Err(OAuthError::invalid_token("the access token has been revoked").into()),
        }
    }

    /// `GET|POST /userinfo`: the claims the granted scopes allow.
    pub async fn userinfo(&self, token: &str, now: UnixTime) -> Result<Value, Error> {
        let claims = self.validate_access_token(token, now).await?;
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
        Ok(user_claims(&user, &scope))
    }
}

/// Claims by scope (OpenID Connect Core §5.4).
pub fn user_claims(user: &UserRecord, scope: &Scope) -> Value {
    let mut m = Map::new();
    m.insert("sub".into(), json!(user.id));
    if scope.contains("profile") {
        m.insert("preferred_username".into(), json!(user.username));
        if let Some(n) = &user.name {
            m.insert("name".into(), json!(n));
        }
    }
    if scope.contains("email") {
        m.insert("email".into(), json!(user.email));
        m.insert("email_verified".into(), json!(user.email_verified));
    }
    // Claims the user does not have are omitted, not sent empty (OpenID Connect Core §5.3.2).
    if scope.contains("phone")
        && let Some(p) = &user.phone_number
    {
        m.insert("phone_number".into(), json!(p));
        m.insert("phone_number_verified".into(), json!(false));
    }
    if scope.contains("address")
        && let Some(a) = &user.address
    {
        m.insert("address".into(), json!({ "formatted": a }));
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_follow_scope() {
        let u = UserRecord {
            id: "u1".into(),
            username: "alice".into(),
            email: "alice@example.com".into(),
            email_verified: false,
            name: Some("Alice".into()),
            password_hash: "x".into(),
            created_at: 0,
            phone_number: Some("+1 555 0100".into()),
            address: None,
        };
        let only = user_claims(&u, &Scope::parse("openid").unwrap());
        assert_eq!(only, json!({"sub": "u1"}));
        let all = user_claims(&u, &Scope::parse("openid profile email").unwrap());
        assert_eq!(all["name"], "Alice");
        assert_eq!(all["preferred_username"], "alice");
        assert_eq!(all["email"], "alice@example.com");
        assert!(all.get("password_hash").is_none());
        let contact = user_claims(&u, &Scope::parse("openid phone address").unwrap());
        assert_eq!(contact["phone_number"], "+1 555 0100");
        assert!(contact.get("address").is_none(), "absent claims are omitted");
    }
}
