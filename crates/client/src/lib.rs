//! The relying-party side of OAuth 2.1 / OpenID Connect, for native apps and command-line tools.
//!
//! ```no_run
//! # async fn login() -> Result<(), latchkey_client::Error> {
//! use latchkey_client::{Client, LoopbackListener};
//! use latchkey_proto::{ClientId, Scope};
//! let client = Client::discover("https://id.example", ClientId::parse("my-cli").unwrap()).await?;
//! let listener = LoopbackListener::bind(None).await?;
//! let request = client.authorization_request(listener.redirect_uri().clone(), Scope::parse("openid").unwrap())?;
//! println!("open {}", request.url);
//! let code = listener
//!     .receive(std::time::Duration::from_secs(300), |cb| client.check_callback(&request, cb))
//!     .await?;
//! let tokens = client.exchange_code(&request, code, latchkey_client::unix_now()).await?;
//! # Ok(()) }
//! ```
//!
//! Every check says which one failed ([`Error`], [`IdTokenError`]). Time is a parameter (`now`,
//! Unix seconds) of every function that compares it. Nothing here depends on the Latchkey server:
//! it works with any standards-compliant provider.

mod authorize;
pub mod cache;
pub mod device;
pub mod discovery;
pub mod dpop;
mod error;
pub mod id_token;
pub mod keys;
mod loopback;
mod pushed;
#[cfg(test)]
mod testkey;
mod tokens;

use std::sync::Arc;

use latchkey_proto::discovery::IssuerMetadata;
use latchkey_proto::jose::KeySet;
use latchkey_proto::secret::AccessToken;
use latchkey_proto::{AuthorizationCode, ClientId, ClientSecret, RedirectUri, RefreshToken, Scope};

pub use authorize::{AuthorizationRequest, Callback};
pub use device::{DeviceAuthorization, PollClock, SystemClock};
pub use dpop::Dpop;
pub use error::{Error, IdTokenError};
pub use id_token::IdTokenClaims;
pub use keys::ClientKey;
pub use loopback::LoopbackListener;
pub use tokens::{TokenSet, TokenType, TokenTypeHint};

use tokens::{Caller, Credentials, RawTokenResponse, post_form};

/// The system clock, in Unix seconds: read once, by the caller, and passed as `now`.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// A client registered at one provider.
pub struct Client {
    http: reqwest::Client,
    metadata: IssuerMetadata,
    client_id: ClientId,
    credentials: Credentials,
    /// The DPoP key, when this client binds its tokens (RFC 9449).
    dpop: Option<Arc<Dpop>>,
    /// The provider's JWK Set, fetched when first needed and refetched when a token names a key
    /// it does not contain (key rotation).
    keys: tokio::sync::Mutex<Option<Arc<KeySet>>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("issuer", &self.metadata.issuer).field("client_id", &self.client_id).finish()
    }
}

impl Client {
    /// Discovers the provider (OpenID Connect Discovery, then RFC 8414) and makes a public client.
    pub async fn discover(issuer: &str, client_id: ClientId) -> Result<Self, Error> {
        let http = discovery::http_client();
        let metadata = discovery::discover(&http, issuer).await?;
        Ok(Self::from_metadata(http, metadata, client_id))
    }

    /// A client for metadata obtained elsewhere (e.g. configured by hand).
    pub fn from_metadata(http: reqwest::Client, metadata: IssuerMetadata, client_id: ClientId) -> Self {
        Self {
            http,
            metadata,
            client_id,
            credentials: Credentials::Public,
            dpop: None,
            keys: tokio::sync::Mutex::new(None),
        }
    }

    /// Makes this a confidential client that authenticates with `client_secret_basic`.
    pub fn with_secret(mut self, secret: ClientSecret) -> Self {
        self.credentials = Credentials::Basic(secret);
        self
    }

    /// Makes this a confidential client that authenticates with `private_key_jwt` (RFC 7523
    /// §2.2): every request to the token, PAR and revocation endpoints carries a fresh assertion
    /// signed with `key`. The key's algorithm is fitted to the provider's
    /// `token_endpoint_auth_signing_alg_values_supported`; a key it cannot verify is refused here.
    pub fn with_private_key_jwt(mut self, key: ClientKey) -> Result<Self, Error> {
        let key = key.fit_to(self.metadata.token_endpoint_auth_signing_alg_values_supported.as_deref())?;
        self.credentials = Credentials::PrivateKeyJwt(Arc::new(key));
        Ok(self)
    }

    /// Binds this client's tokens to a DPoP key (RFC 9449): the authorization request carries
    /// `dpop_jkt`, token requests carry a proof, and the tokens come back as `DPoP`. Refused when
    /// the provider lists its DPoP algorithms without ES256 (the key's).
    pub fn with_dpop(mut self, dpop: Arc<Dpop>) -> Result<Self, Error> {
        if let Some(algs) = &self.metadata.dpop_signing_alg_values_supported
            && !algs.iter().any(|a| a == "ES256")
        {
            return Err(Error::Dpop(format!(
                "the provider accepts DPoP proofs signed with {} only, not ES256",
                algs.join(", ")
            )));
        }
        self.dpop = Some(dpop);
        Ok(self)
    }

    /// The DPoP key and nonces, when this client uses DPoP: the same ones sign proofs for the
    /// resources its tokens are for.
    pub fn dpop(&self) -> Option<&Arc<Dpop>> {
        self.dpop.as_ref()
    }

    fn caller(&self, with_dpop: bool) -> Caller<'_> {
        Caller {
            http: &self.http,
            issuer: &self.metadata.issuer,
            client_id: self.client_id.as_str(),
            credentials: &self.credentials,
            dpop: if with_dpop { self.dpop.as_deref() } else { None },
        }
    }

    pub fn metadata(&self) -> &IssuerMetadata {
        &self.metadata
    }
    pub fn issuer(&self) -> &str {
        &self.metadata.issuer
    }
    pub fn client_id(&self) -> &ClientId {
        &self.client_id
    }

    /// A new authorization request with PKCE (S256), `state`, `nonce` and, with DPoP, `dpop_jkt`,
    /// all in the URL the browser opens. A provider that requires pushed requests refuses it:
    /// then use [`Client::start_authorization`].
    pub fn authorization_request(
        &self,
        redirect_uri: RedirectUri,
        scope: Scope,
    ) -> Result<AuthorizationRequest, Error> {
        if self.metadata.require_pushed_authorization_requests {
            return Err(Error::PushRequired);
        }
        self.new_request(redirect_uri, scope)
    }

    /// Starts an authorization: pushes the request (RFC 9126) when `push` is set or the provider
    /// requires it (`require_pushed_authorization_requests`), and otherwise puts it in the URL.
    /// A pushed request is authenticated like a token request, its parameters never pass through
    /// the browser, and the URL the browser opens carries only `client_id` and `request_uri`.
    pub async fn start_authorization(
        &self,
        redirect_uri: RedirectUri,
        scope: Scope,
        push: bool,
        now: i64,
    ) -> Result<AuthorizationRequest, Error> {
        let mut request = self.new_request(redirect_uri, scope)?;
        if !push && !self.metadata.require_pushed_authorization_requests {
            return Ok(request);
        }
        let endpoint = self.metadata.endpoint("pushed_authorization_request_endpoint")?;
        let form: Vec<(&str, &str)> = request.params().iter().map(|(k, v)| (*k, v.as_str())).collect();
        // The code is bound by `dpop_jkt` among the parameters (RFC 9449 §10.1), so no proof is
        // sent here.
        let body =
            post_form(&self.caller(false), "pushed authorization request endpoint", &endpoint, &form, now).await?;
        let request_uri = pushed::parse_response(&body)?;
        request.pushed(self.metadata.endpoint("authorization_endpoint")?, self.client_id.as_str(), request_uri);
        Ok(request)
    }

    fn new_request(&self, redirect_uri: RedirectUri, scope: Scope) -> Result<AuthorizationRequest, Error> {
        if let Some(methods) = &self.metadata.code_challenge_methods_supported
            && !methods.iter().any(|m| m == "S256")
        {
            return Err(Error::PkceUnsupported);
        }
        let endpoint = self.metadata.endpoint("authorization_endpoint")?;
        let jkt = self.dpop.as_ref().map(|d| d.jkt());
        Ok(AuthorizationRequest::new(endpoint, self.client_id.as_str(), redirect_uri, scope, jkt))
    }

    /// Checks an authorization response (`state`, `iss`, error) and returns its code.
    pub fn check_callback(
        &self,
        request: &AuthorizationRequest,
        callback: &Callback,
    ) -> Result<AuthorizationCode, Error> {
        authorize::check_callback(
            request,
            callback,
            &self.metadata.issuer,
            self.metadata.authorization_response_iss_parameter_supported,
        )
    }

    /// Exchanges the code (with the PKCE verifier) and validates the id_token when `openid` was
    /// requested: signature, `iss`, `aud`, `exp`, `nonce`, `at_hash`.
    pub async fn exchange_code(
        &self,
        request: &AuthorizationRequest,
        code: AuthorizationCode,
        now: i64,
    ) -> Result<TokenSet, Error> {
        let endpoint = self.metadata.endpoint("token_endpoint")?;
        let body = post_form(
            &self.caller(true),
            "token endpoint",
            &endpoint,
            &[
                ("grant_type", "authorization_code"),
                ("code", code.expose_secret()),
                ("redirect_uri", request.redirect_uri.as_str()),
                ("code_verifier", request.verifier().expose_secret()),
            ],
            now,
        )
        .await?;
        let (raw, token_type) = RawTokenResponse::parse(&body, self.dpop.is_some())?;
        let scope = raw.scope_or(&request.scope)?;
        let id_claims = match &raw.id_token {
            Some(t) => {
                Some(self.validate_id_token(t, Some(request.nonce()), Some(&raw.access_token), None, now).await?)
            }
            None if request.wants_id_token() => return Err(IdTokenError::Missing.into()),
            None => None,
        };
        Ok(self.token_set(raw, token_type, scope, id_claims, now))
    }

    /// Uses a refresh token (RFC 6749 §6). `scope` narrows the request; `subject` is the user of
    /// the original login, whom a new id_token must be about (OpenID Connect Core §12.2).
    pub async fn refresh(
        &self,
        refresh_token: &RefreshToken,
        scope: Option<&Scope>,
        granted: &Scope,
        subject: Option<&str>,
        now: i64,
    ) -> Result<TokenSet, Error> {
        let endpoint = self.metadata.endpoint("token_endpoint")?;
        let scope_s = scope.map(Scope::to_string);
        let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", refresh_token.expose_secret())];
        if let Some(s) = &scope_s {
            form.push(("scope", s));
        }
        // A refresh token bound to the DPoP key (public clients, RFC 9449 §5) is refused without
        // a proof by that key.
        let body = post_form(&self.caller(true), "token endpoint", &endpoint, &form, now).await?;
        let (raw, token_type) = RawTokenResponse::parse(&body, self.dpop.is_some())?;
        let scope = raw.scope_or(scope.unwrap_or(granted))?;
        let id_claims = match &raw.id_token {
            Some(t) => Some(self.validate_id_token(t, None, Some(&raw.access_token), subject, now).await?),
            None => None,
        };
        let mut set = self.token_set(raw, token_type, scope, id_claims, now);
        // RFC 6749 §6: without a new refresh token, the old one stays valid.
        if set.refresh_token.is_none() {
            set.refresh_token = Some(refresh_token.clone());
        }
        Ok(set)
    }

    /// Revokes a token (RFC 7009 §2.1). Revoking a refresh token also ends the access tokens
    /// issued with it at providers that support it (§2.1).
    /// `now` dates the client assertion of a `private_key_jwt` client.
    pub async fn revoke(&self, token: &str, hint: TokenTypeHint, now: i64) -> Result<(), Error> {
        let endpoint = self.metadata.endpoint("revocation_endpoint")?;
        let form = [("token", token), ("token_type_hint", hint.as_str())];
        post_form(&self.caller(false), "revocation endpoint", &endpoint, &form, now).await?;
        Ok(())
    }

    /// Validates an id_token from this provider. `nonce` is the one sent (none after a refresh).
    pub async fn validate_id_token(
        &self,
        token: &str,
        nonce: Option<&str>,
        access_token: Option<&str>,
        subject: Option<&str>,
        now: i64,
    ) -> Result<IdTokenClaims, Error> {
        let want = id_token::Expected {
            issuer: &self.metadata.issuer,
            client_id: self.client_id.as_str(),
            nonce,
            access_token,
            subject,
            now,
        };
        let keys = self.keys(false).await?;
        match id_token::validate(&keys, token, &want) {
            Err(e) if id_token::unknown_key(&e) => {
                let keys = self.keys(true).await?;
                Ok(id_token::validate(&keys, token, &want)?)
            }
            other => Ok(other?),
        }
    }

    /// The provider's JWK Set, fetched once and again when `refresh` is set.
    pub async fn keys(&self, refresh: bool) -> Result<Arc<KeySet>, Error> {
        let mut cached = self.keys.lock().await;
        if let Some(k) = cached.as_ref()
            && !refresh
        {
            return Ok(k.clone());
        }
        let fresh = Arc::new(discovery::fetch_jwks(&self.http, &self.metadata).await?);
        *cached = Some(fresh.clone());
        Ok(fresh)
    }

    fn token_set(
        &self,
        raw: RawTokenResponse,
        token_type: TokenType,
        scope: Scope,
        id_claims: Option<IdTokenClaims>,
        now: i64,
    ) -> TokenSet {
        TokenSet {
            token_type,
            access_token: AccessToken::new(raw.access_token),
            refresh_token: raw.refresh_token.map(RefreshToken::new),
            id_token: raw.id_token,
            id_claims,
            expires_at: raw.expires_in.map(|s| now.saturating_add(s)),
            scope,
        }
    }
}
