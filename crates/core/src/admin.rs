//! Administration: registering clients and users. The CLI calls these; the rules live here.

use latchkey_proto::secret::random_token;
use latchkey_proto::{ClientId, ClientSecret, RedirectUri, Scope, TokenHash};

use crate::UnixTime;
use crate::keys::{KeyEncryptionKey, SigningKey};
use crate::password::Hasher;
use crate::store::{
    ClientKeys, ClientKind, ClientProtection, ClientRecord, GrantType, KeyRecord, SecurityProfile, SigningAlg, Store,
    StoreError, UserRecord, UserRevocation,
};

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
    pub id_token_alg: SigningAlg,
    pub post_logout_redirect_uris: Vec<String>,
    /// Audiences for client-credentials tokens, or (resource servers) whose tokens it may introspect.
    pub audiences: Vec<String>,
    pub client_credentials: bool,
    /// The device authorization grant (RFC 8628): a device without a browser (a CLI over SSH, a
    /// TV) signs its user in on another device. Needs no redirect URI.
    pub device: bool,
    /// A credential for a resource server: it can only introspect, it obtains no tokens.
    pub resource_server: bool,
    /// Back-Channel Logout 1.0 `backchannel_logout_uri`.
    pub backchannel_logout_uri: Option<String>,
    /// `backchannel_logout_session_required` (only with a URI).
    pub backchannel_logout_session_required: bool,
    /// Second factors this client's users need; the deployment's policy applies where stricter.
    pub second_factor: crate::authn::SecondFactorPolicy,
    /// `private_key_jwt` (RFC 7523 §2.2): the client's public keys. A confidential client that
    /// gets no secret: it signs its assertions with its own key.
    pub keys: Option<ClientKeys>,
    /// PAR, DPoP and the security profile required of this client.
    pub protection: ClientProtection,
}

impl NewClient {
    /// A public client for the code flow with refresh tokens and default settings.
    pub fn public(client_id: &str, name: &str, redirect_uris: Vec<String>) -> Self {
        Self {
            client_id: Some(client_id.into()),
            name: name.into(),
            confidential: false,
            redirect_uris,
            first_party: false,
            extra_scopes: vec![],
            refresh_tokens: true,
            id_token_alg: SigningAlg::RS256,
            post_logout_redirect_uris: vec![],
            audiences: vec![],
            client_credentials: false,
            device: false,
            resource_server: false,
            backchannel_logout_uri: None,
            backchannel_logout_session_required: false,
            second_factor: Default::default(),
            keys: None,
            protection: Default::default(),
        }
    }
}

/// A client's keys as an administrator gives them: an inline JWK Set of public keys, or an https
/// `jwks_uri` (the same rules as dynamic registration's).
fn checked_keys(keys: &ClientKeys) -> Result<ClientKeys, AdminError> {
    use latchkey_proto::registration::{client_jwks, jwks_uri};
    Ok(match keys {
        ClientKeys::Inline { jwks } => {
            let value: serde_json::Value =
                serde_json::from_str(jwks).map_err(|e| AdminError::Invalid(format!("jwks is not JSON: {e}")))?;
            ClientKeys::Inline { jwks: client_jwks(&value).map_err(AdminError::Invalid)? }
        }
        ClientKeys::Uri { jwks_uri: uri } => ClientKeys::Uri { jwks_uri: jwks_uri(uri).map_err(AdminError::Invalid)? },
    })
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
    // RFC 9068 §5: client-credentials tokens carry the client id as `sub`, so it must not be a
    // user's subject identifier too (see grant::client_credentials).
    if store.user(client_id.as_str()).await?.is_some() {
        return Err(AdminError::Invalid(format!(
            "client id {client_id} is a user's subject identifier: a client's tokens must not pass for that user's (RFC 9068 §5); choose another id"
        )));
    }
    let keys = new.keys.as_ref().map(checked_keys).transpose()?;
    let confidential = new.confidential || new.resource_server || new.client_credentials || keys.is_some();
    // FAPI 2.0 Security Profile §5.3: a confidential client of this profile authenticates with a key.
    if new.protection.profile == Some(SecurityProfile::Fapi2) && confidential && keys.is_none() {
        return Err(AdminError::Invalid(
            "the fapi2 profile does not allow client secrets: give the client's public keys (--jwks FILE or --jwks-uri URL) for private_key_jwt, or make it --public".into(),
        ));
    }
    if !new.confidential
        && keys.is_none()
        && (new.resource_server || new.client_credentials)
        && !new.redirect_uris.is_empty()
    {
        return Err(AdminError::Invalid(
            "client credentials and resource-server credentials are confidential: add --confidential".into(),
        ));
    }
    if new.resource_server && (!new.redirect_uris.is_empty() || new.client_credentials || new.device) {
        return Err(AdminError::Invalid(
            "a resource-server credential only introspects: no redirect URIs, no grants".into(),
        ));
    }
    if new.redirect_uris.is_empty() && !new.client_credentials && !new.resource_server && !new.device {
        return Err(AdminError::Invalid(
            "at least one --redirect-uri is required (or --device / --client-credentials / --resource-server)".into(),
        ));
    }
    let mut post_logout_redirect_uris = Vec::new();
    for r in &new.post_logout_redirect_uris {
        post_logout_redirect_uris.push(
            RedirectUri::parse_registration(r)
                .map_err(|e| AdminError::Invalid(format!("post-logout redirect URI {r}: {e}")))?,
        );
    }
    for a in &new.audiences {
        // RFC 8707 §2: a resource indicator is an absolute URI without a fragment.
        if url::Url::parse(a).map_or(true, |u| u.fragment().is_some()) {
            return Err(AdminError::Invalid(format!("audience {a}: must be an absolute URI without a fragment")));
        }
    }
    let backchannel_logout = match &new.backchannel_logout_uri {
        Some(u) => {
            // Logout tokens go to clients that got ID tokens in a login session: a client without
            // a redirect URI (client credentials, a resource server) never takes part in one.
            if new.redirect_uris.is_empty() {
                return Err(AdminError::Invalid(
                    "a back-channel logout URI is for a client that signs users in: it needs a redirect URI".into(),
                ));
            }
            let uri = latchkey_proto::registration::backchannel_logout_uri(u, true).map_err(AdminError::Invalid)?;
            Some(crate::store::BackchannelLogout { uri, session_required: new.backchannel_logout_session_required })
        }
        None if new.backchannel_logout_session_required => {
            return Err(AdminError::Invalid(
                "--backchannel-logout-session-required needs --backchannel-logout-uri".into(),
            ));
        }
        None => None,
    };
    let mut redirect_uris = Vec::new();
    for r in &new.redirect_uris {
        redirect_uris.push(
            RedirectUri::parse_registration(r).map_err(|e| AdminError::Invalid(format!("redirect URI {r}: {e}")))?,
        );
    }
    let scopes = crate::provider::STANDARD_SCOPES.iter().map(|s| s.to_string()).chain(new.extra_scopes.iter().cloned());
    let allowed_scope = Scope::parse(&scopes.collect::<Vec<_>>().join(" "))
        .map_err(|e| AdminError::Invalid(format!("scope: {}", e.description)))?;
    let secret = (confidential && keys.is_none()).then(ClientSecret::generate);
    let kind = match (&secret, keys) {
        (_, Some(keys)) => ClientKind::PrivateKeyJwt { keys },
        (Some(s), None) => {
            ClientKind::Confidential { secret_hash: TokenHash::of(s.expose_secret()).as_str().to_owned() }
        }
        (None, None) => ClientKind::Public,
    };
    let mut grant_types = Vec::new();
    if !redirect_uris.is_empty() {
        grant_types.push(GrantType::AuthorizationCode);
    }
    if new.device {
        grant_types.push(GrantType::DeviceCode);
    }
    // Refresh tokens come with a grant that has a user: the code flow's or the device flow's.
    if new.refresh_tokens && (!redirect_uris.is_empty() || new.device) {
        grant_types.push(GrantType::RefreshToken);
    }
    if new.client_credentials {
        grant_types.push(GrantType::ClientCredentials);
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
        id_token_signed_response_alg: new.id_token_alg,
        post_logout_redirect_uris,
        audiences: new.audiences,
        origin: Default::default(),
        backchannel_logout,
        second_factor: new.second_factor,
        protection: new.protection,
    };
    store.insert_client(&record).await?;
    let e = crate::audit::Event {
        client_id: Some(record.client_id.as_str()),
        detail: Some(serde_json::json!({ "public": record.is_public(), "redirect_uris": record.redirect_uris })),
        ..Default::default()
    };
    crate::audit::record(store, now, "client_added", e).await;
    Ok((record, secret))
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: String,
    pub email: String,
    pub name: Option<String>,
    pub phone_number: Option<String>,
    pub address: Option<String>,
}

pub async fn add_user(
    store: &dyn Store,
    hasher: &Hasher,
    new: NewUser,
    password: latchkey_proto::Password,
    now: UnixTime,
) -> Result<UserRecord, AdminError> {
    let username = check_username(&new.username)?;
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
        phone_number: new.phone_number,
        address: new.address,
        profile: Default::default(),
        updated_at: now,
        locked_at: None,
    };
    store.insert_user(&record).await?;
    let e = crate::audit::Event {
        user_id: Some(&record.id),
        detail: Some(serde_json::json!({ "username": record.username })),
        ..Default::default()
    };
    crate::audit::record(store, now, "user_added", e).await;
    Ok(record)
}

/// What a password change does to the user's existing access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExistingGrants {
    /// Revoke every grant of the user (the default): a password is changed because it may be
    /// known to someone else, who may also hold an `offline_access` refresh token.
    Revoke,
    /// Keep them (`--keep-grants`): a routine change by the user themself. Sessions still end.
    Keep,
}

/// Sets a user's password. In the same store transaction the user's sessions end and, unless
/// `grants` is [`ExistingGrants::Keep`], every grant of the user is revoked. `None` when there is
/// no such user.
pub async fn set_password(
    store: &dyn Store,
    hasher: &Hasher,
    username: &str,
    password: latchkey_proto::Password,
    grants: ExistingGrants,
    now: UnixTime,
) -> Result<Option<UserRevocation>, AdminError> {
    let change = PasswordChange { grants, keep_sid: None, by: "admin", ip: None };
    set_password_with(store, hasher, username, password, change, now).await
}

/// How a password is changed, besides the password itself.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PasswordChange<'a> {
    pub grants: ExistingGrants,
    /// The session that stays (the account page's own); every other one ends.
    pub keep_sid: Option<&'a str>,
    /// Who changed it, for the audit log: `admin`, `user`.
    pub by: &'static str,
    pub ip: Option<std::net::IpAddr>,
}

/// [`set_password`], keeping `change.keep_sid`: the one store operation every password change
/// goes through, audited as `password_changed`.
pub(crate) async fn set_password_with(
    store: &dyn Store,
    hasher: &Hasher,
    username: &str,
    password: latchkey_proto::Password,
    change: PasswordChange<'_>,
    now: UnixTime,
) -> Result<Option<UserRevocation>, AdminError> {
    check_password(&password)?;
    let hash = hasher.hash(password.expose_secret().to_owned()).await?;
    let done =
        store.set_password_hash(username, &hash, change.grants == ExistingGrants::Revoke, change.keep_sid, now).await?;
    if let Some(r) = &done {
        let e = crate::audit::Event {
            user_id: Some(&r.user_id),
            ip: change.ip,
            detail: Some(serde_json::json!({
                "username": username,
                "by": change.by,
                "sessions_ended": r.sessions_ended,
                "grants_revoked": r.grants_revoked,
                "grants_kept": change.grants == ExistingGrants::Keep,
            })),
            ..Default::default()
        };
        crate::audit::record(store, now, "password_changed", e).await;
    }
    Ok(done)
}

/// `latchkey user revoke-tokens`: ends every session of the user and revokes every grant (refresh
/// families, `offline_access` ones included, and the access tokens issued under them). `None` when
/// there is no such user.
pub async fn revoke_user_tokens(
    store: &dyn Store,
    username: &str,
    now: UnixTime,
) -> Result<Option<UserRevocation>, AdminError> {
    let done = store.revoke_user_tokens(username, now).await?;
    if let Some(r) = &done {
        let e = crate::audit::Event {
            user_id: Some(&r.user_id),
            detail: Some(serde_json::json!({
                "username": username,
                "sessions_ended": r.sessions_ended,
                "grants_revoked": r.grants_revoked,
            })),
            ..Default::default()
        };
        crate::audit::record(store, now, "tokens_revoked", e).await;
    }
    Ok(done)
}

/// Removes a client and everything issued to it.
pub async fn remove_client(store: &dyn Store, client_id: &ClientId, now: UnixTime) -> Result<bool, AdminError> {
    let removed = store.remove_client(client_id).await?;
    if removed {
        let e = crate::audit::Event { client_id: Some(client_id.as_str()), ..Default::default() };
        crate::audit::record(store, now, "client_removed", e).await;
    }
    Ok(removed)
}

/// Registers a protected resource (RFC 8707): its URI is the audience of its tokens, its scopes
/// are what unvetted clients may ask for when they target it.
pub async fn add_resource(
    store: &dyn Store,
    uri: &str,
    name: Option<String>,
    scopes: &[String],
    now: UnixTime,
) -> Result<crate::resource::ResourceRecord, AdminError> {
    let invalid = |e: latchkey_proto::OAuthError| AdminError::Invalid(e.description.into_owned());
    let uri = latchkey_proto::ResourceUri::parse(uri).map_err(invalid)?;
    let scopes = Scope::parse(&scopes.join(" ")).map_err(invalid)?;
    // The OpenID Connect scopes are the server's, not an API's: an API claiming `openid` would let
    // any self-registered client targeting it ask for the user's identity as if it were the API's.
    if let Some(s) = scopes.iter().find(|s| crate::provider::STANDARD_SCOPES.contains(s)) {
        return Err(AdminError::Invalid(format!(
            "scope {s} is an OpenID Connect scope of the server itself; give the API's own scopes (such as mcp:tools)"
        )));
    }
    let name = name.unwrap_or_else(|| uri.to_string());
    if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
        return Err(AdminError::Invalid("a resource name has 1 to 100 printable characters".into()));
    }
    let record = crate::resource::ResourceRecord { uri, name, scopes, created_at: now };
    store.insert_resource(&record).await?;
    let e = crate::audit::Event {
        detail: Some(serde_json::json!({ "resource": record.uri, "scope": record.scopes.to_string() })),
        ..Default::default()
    };
    crate::audit::record(store, now, "resource_added", e).await;
    Ok(record)
}

/// Unregisters a resource: new authorizations for it are refused with `invalid_target`. Grants
/// already bound to it keep working until they end, as their tokens name it anyway; revoke them
/// per user or client to stop them sooner.
pub async fn remove_resource(store: &dyn Store, uri: &str, now: UnixTime) -> Result<bool, AdminError> {
    let uri = latchkey_proto::ResourceUri::parse(uri).map_err(|e| AdminError::Invalid(e.description.into_owned()))?;
    let removed = store.remove_resource(&uri).await?;
    if removed {
        let e = crate::audit::Event { detail: Some(serde_json::json!({ "resource": uri })), ..Default::default() };
        crate::audit::record(store, now, "resource_removed", e).await;
    }
    Ok(removed)
}

/// Removes a user, their sessions and everything issued to them.
pub async fn remove_user(store: &dyn Store, username: &str, now: UnixTime) -> Result<bool, AdminError> {
    let id = store.user_by_username(username).await?.map(|u| u.id);
    let Some(ended) = store.remove_user(username, now).await? else { return Ok(false) };
    let e = crate::audit::Event {
        user_id: id.as_deref(),
        detail: Some(serde_json::json!({ "username": username, "sessions_ended": ended.len() })),
        ..Default::default()
    };
    crate::audit::record(store, now, "user_removed", e).await;
    Ok(true)
}

/// A username: 1 to 64 characters without spaces or control characters (trimmed first).
pub(crate) fn check_username(name: &str) -> Result<&str, AdminError> {
    let username = name.trim();
    if username.is_empty() || username.len() > 64 || username.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(AdminError::Invalid("a username is 1 to 64 characters without spaces".into()));
    }
    Ok(username)
}

/// NIST SP 800-63B §5.1.1.2: at least 8 characters; no composition rules.
pub(crate) fn check_password(p: &latchkey_proto::Password) -> Result<(), AdminError> {
    let n = p.expose_secret().chars().count();
    if n < 8 {
        return Err(AdminError::Invalid("a password needs at least 8 characters".into()));
    }
    if n > 1024 {
        return Err(AdminError::Invalid("a password may have at most 1024 characters".into()));
    }
    Ok(())
}

/// `latchkey keys rotate`: a new key for each of `algs` becomes its signer. The previous keys stay
/// published (see `KeySet::jwks`) until the tokens they signed have expired.
pub async fn rotate_keys(store: &dyn Store, algs: &[SigningAlg], now: UnixTime) -> Result<Vec<KeyRecord>, AdminError> {
    rotate_keys_with(store, algs, now, None).await
}

/// As [`rotate_keys`]; with `kek` the new keys are stored sealed. Without it, while the stored
/// keys are sealed, it refuses: a new key in clear would undo the sealing.
pub async fn rotate_keys_with(
    store: &dyn Store,
    algs: &[SigningAlg],
    now: UnixTime,
    kek: Option<&KeyEncryptionKey>,
) -> Result<Vec<KeyRecord>, AdminError> {
    if kek.is_none() && store.signing_keys().await?.iter().any(crate::keys::is_sealed) {
        return Err(AdminError::Invalid(
            "the stored signing keys are sealed: give the key-encryption key (LATCHKEY_KEY_ENCRYPTION_KEY or \
             --key-encryption-key-file) so that the new keys are sealed too"
                .into(),
        ));
    }
    let mut out = Vec::new();
    for alg in algs.iter().copied() {
        let mut rec =
            tokio::task::spawn_blocking(move || SigningKey::generate(alg, now)).await.map_err(anyhow::Error::new)??;
        if let Some(kek) = kek {
            rec = crate::keys::seal_record(&rec, kek)?;
        }
        store.rotate_signing_key(&rec, now).await?;
        let e = crate::audit::Event {
            detail: Some(serde_json::json!({ "kid": rec.kid, "alg": rec.alg })),
            ..Default::default()
        };
        crate::audit::record(store, now, "key_rotation", e).await;
        out.push(rec);
    }
    Ok(out)
}

/// `latchkey keys seal`: seals every signing key stored in clear under `kek`. Each key is first
/// opened with `kek` (sealed ones) or parsed (plain ones), so a wrong key or a broken record stops
/// the command before anything is written. Returns the kids sealed now.
pub async fn seal_keys(store: &dyn Store, kek: &KeyEncryptionKey, now: UnixTime) -> Result<Vec<String>, AdminError> {
    let records = store.signing_keys().await?;
    crate::keys::KeySet::from_records_with(&records, Some(kek))?;
    let mut sealed = Vec::new();
    for r in records.iter().filter(|r| !crate::keys::is_sealed(r)) {
        let s = crate::keys::seal_record(r, kek)?;
        // Conditional: a key rotated or sealed meanwhile by another process is left to it.
        if store.replace_private_key(&r.kid, &r.private_pkcs8_b64, &s.private_pkcs8_b64).await? {
            sealed.push(r.kid.clone());
        }
    }
    if !sealed.is_empty() {
        let e = crate::audit::Event { detail: Some(serde_json::json!({ "kids": sealed })), ..Default::default() };
        crate::audit::record(store, now, "keys_sealed", e).await;
    }
    Ok(sealed)
}

/// One way a user proves who they are, as `latchkey user show` lists it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FactorSummary {
    /// `password`, `totp`, `recovery_codes`, `passkey`, …
    pub kind: &'static str,
    /// What an administrator needs to know about it ("3 of 10 left", a passkey's name).
    pub detail: String,
    pub created_at: Option<UnixTime>,
    pub last_used: Option<UnixTime>,
}

/// The factors user `user` has. Each factor module reports its own here, one call each (TOTP and
/// recovery codes: branch `auth`; passkeys: branch `passkey`), so that `user show` and the account
/// overview list them without knowing their stores.
pub async fn factors(_store: &dyn Store, user: &UserRecord) -> Result<Vec<FactorSummary>, AdminError> {
    let out = vec![FactorSummary {
        kind: "password",
        detail: "Argon2id hash".into(),
        created_at: Some(user.created_at),
        last_used: None,
    }];
    Ok(out)
}

/// `latchkey user lock`: the user can no longer sign in; in the same store transaction every
/// session of theirs ends and every grant is revoked. Audited. `None` when there is no such user.
pub async fn lock_user(store: &dyn Store, username: &str, now: UnixTime) -> Result<Option<UserRevocation>, AdminError> {
    let done = store.set_locked(username, Some(now)).await?;
    if let Some(r) = &done {
        let e = crate::audit::Event {
            user_id: Some(&r.user_id),
            detail: Some(serde_json::json!({
                "username": username,
                "sessions_ended": r.sessions_ended,
                "grants_revoked": r.grants_revoked,
            })),
            ..Default::default()
        };
        crate::audit::record(store, now, "user_locked", e).await;
    }
    Ok(done)
}

/// `latchkey user unlock`: the user may sign in again (nothing that the lock ended comes back).
/// `false` when there is no such user.
pub async fn unlock_user(store: &dyn Store, username: &str, now: UnixTime) -> Result<bool, AdminError> {
    let Some(r) = store.set_locked(username, None).await? else { return Ok(false) };
    let e = crate::audit::Event {
        user_id: Some(&r.user_id),
        detail: Some(serde_json::json!({ "username": username })),
        ..Default::default()
    };
    crate::audit::record(store, now, "user_unlocked", e).await;
    Ok(true)
}

/// `latchkey user end-sessions`: ends one session of the user (`sid`) or all of them, through
/// [`crate::sessions::end_sessions`] (their logout tokens queued, for the server's worker to
/// send). `None` when there is no such user.
pub async fn end_user_sessions(
    store: &dyn Store,
    username: &str,
    sid: Option<&str>,
    now: UnixTime,
) -> Result<Option<crate::store::EndedSessions>, AdminError> {
    let Some(user) = store.user_by_username(username).await? else { return Ok(None) };
    let which = match sid {
        Some(s) => crate::account_store::SessionSelector::One(s.to_owned()),
        None => crate::account_store::SessionSelector::All,
    };
    let req = crate::sessions::EndSessions {
        user_id: &user.id,
        which,
        cause: crate::sessions::EndCause::Admin,
        client_id: None,
        ip: None,
    };
    let ended = crate::sessions::end_sessions(store, req, now).await.map_err(|e| match e {
        crate::Error::OAuth(o) => AdminError::Invalid(o.description.into_owned()),
        crate::Error::Internal(a) => AdminError::Other(a),
    })?;
    Ok(Some(ended))
}
