//! Administration: registering clients and users. The CLI calls these; the rules live here.

use latchkey_proto::secret::random_token;
use latchkey_proto::{ClientId, ClientSecret, RedirectUri, Scope, TokenHash};

use crate::UnixTime;
use crate::password::Hasher;
use crate::store::{ClientKind, ClientRecord, GrantType, Store, StoreError, UserRecord};

#[derive(Debug, Clone)]
pub struct NewClient {
    pub client_id: Option<String>,
    pub name: String,
    pub confidential: bool,
    pub redirect_uris: Vec<String>,
    pub first_party: bool,
    /// Extra scopes (for APIs) on top of the standard OpenID Connect ones.
    pub extra_scopes: Vec<String>,
    pub refresh_tokens: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

pub async fn add_client(
    store: &dyn Store,
    new: NewClient,
    now: UnixTime,
) -> Result<(ClientRecord, Option<ClientSecret>), AdminError> {
    let client_id = match &new.client_id {
        Some(id) => ClientId::parse(id).map_err(|e| AdminError::Invalid(e.description.into_owned()))?,
        None => ClientId::parse(&random_token()[..22]).map_err(|e| AdminError::Invalid(e.description.into_owned()))?,
    };
    if new.redirect_uris.is_empty() {
        return Err(AdminError::Invalid("at least one --redirect-uri is required".into()));
    }
    let mut redirect_uris = Vec::new();
    for r in &new.redirect_uris {
        redirect_uris.push(
            RedirectUri::parse_registration(r).map_err(|e| AdminError::Invalid(format!("redirect URI {r}: {e}")))?,
        );
    }
    let scopes = crate::provider::STANDARD_SCOPES.iter().map(|s| s.to_string()).chain(new.extra_scopes.iter().cloned());
    let allowed_scope = Scope::parse(&scopes.collect::<Vec<_>>().join(" "))
        .map_err(|e| AdminError::Invalid(format!("scope: {}", e.description)))?;
    let secret = new.confidential.then(ClientSecret::generate);
    let kind = match &secret {
        Some(s) => ClientKind::Confidential { secret_hash: TokenHash::of(s.expose_secret()).as_str().to_owned() },
        None => ClientKind::Public,
    };
    let mut grant_types = vec![GrantType::AuthorizationCode];
    if new.refresh_tokens {
        grant_types.push(GrantType::RefreshToken);
    }
    let name = if new.name.trim().is_empty() { client_id.to_string() } else { new.name.trim().to_owned() };
    let record = ClientRecord {
        client_id,
        name,
        kind,
        redirect_uris,
        grant_types,
        allowed_scope,
        first_party: new.first_party,
        created_at: now,
    };
    store.insert_client(&record).await?;
    Ok((record, secret))
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: String,
    pub email: String,
    pub name: Option<String>,
}

pub async fn add_user(
    store: &dyn Store,
    hasher: &Hasher,
    new: NewUser,
    password: latchkey_proto::Password,
    now: UnixTime,
) -> Result<UserRecord, AdminError> {
    let username = new.username.trim();
    if username.is_empty() || username.len() > 64 || username.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(AdminError::Invalid("a username is 1 to 64 characters without spaces".into()));
    }
    if !new.email.contains('@') || new.email.len() > 254 {
        return Err(AdminError::Invalid("--email must be an email address".into()));
    }
    check_password(&password)?;
    let record = UserRecord {
        id: random_token()[..22].to_owned(),
        username: username.to_owned(),
        email: new.email,
        email_verified: false,
        name: new.name,
        password_hash: hasher.hash(password.expose_secret().to_owned()).await?,
        created_at: now,
    };
    store.insert_user(&record).await?;
    Ok(record)
}

pub async fn set_password(
    store: &dyn Store,
    hasher: &Hasher,
    username: &str,
    password: latchkey_proto::Password,
) -> Result<bool, AdminError> {
    check_password(&password)?;
    let hash = hasher.hash(password.expose_secret().to_owned()).await?;
    Ok(store.set_password_hash(username, &hash).await?)
}

/// NIST SP 800-63B §5.1.1.2: at least 8 characters; no composition rules.
fn check_password(p: &latchkey_proto::Password) -> Result<(), AdminError> {
    let n = p.expose_secret().chars().count();
    if n < 8 {
        return Err(AdminError::Invalid("a password needs at least 8 characters".into()));
    }
    if n > 1024 {
        return Err(AdminError::Invalid("a password may have at most 1024 characters".into()));
    }
    Ok(())
}
