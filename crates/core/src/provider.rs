//! The provider: configuration, the store, keys and the password hasher, shared by every request.

use std::sync::{Arc, RwLock};

use anyhow::Context;
use latchkey_proto::metadata::ProviderMetadata;

use crate::UnixTime;
use crate::keys::{KeySet, SigningKey};
use crate::password::Hasher;
use crate::store::Store;

/// Lifetimes are in seconds.
#[derive(Clone, Debug)]
pub struct ProviderConfig {
    /// The issuer identifier (OpenID Connect Discovery §3): https URL, no query or fragment, no trailing slash.
    pub issuer: String,
    /// The `aud` of access tokens (RFC 9068 §3): the resource servers that accept them check it.
    pub audience: String,
    /// Authorization codes: short, since they travel through the browser (RFC 6749 §4.1.2 says at most 10 min).
    pub code_ttl: u64,
    pub access_token_ttl: u64,
    /// Absolute lifetime of a grant's refresh tokens.
    pub refresh_token_ttl: u64,
    /// Browser login sessions; refresh tokens without `offline_access` end with them.
    pub session_ttl: u64,
    /// How long a login or consent page may stay open.
    pub pending_ttl: u64,
}

impl ProviderConfig {
    pub fn new(issuer: &str) -> Self {
        let issuer = issuer.trim_end_matches('/').to_owned();
        Self {
            audience: issuer.clone(),
            issuer,
            code_ttl: 60,
            access_token_ttl: 600,
            refresh_token_ttl: 30 * 24 * 3600,
            session_ttl: 24 * 3600,
            pending_ttl: 600,
        }
    }
}

pub struct Provider {
    pub store: Arc<dyn Store>,
    pub config: ProviderConfig,
    pub hasher: Hasher,
    keys: RwLock<Arc<KeySet>>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider").field("issuer", &self.config.issuer).finish_non_exhaustive()
    }
}

/// Scopes this server understands; a client may also be allowed its own API scopes.
pub const STANDARD_SCOPES: &[&str] = &["openid", "profile", "email", "offline_access"];

impl Provider {
    /// Loads the signing keys, generating and storing the first one if there is none.
    pub async fn open(store: Arc<dyn Store>, config: ProviderConfig, now: UnixTime) -> anyhow::Result<Self> {
        let mut records = store.signing_keys().await?;
        if records.is_empty() {
            let rec = tokio::task::spawn_blocking(move || SigningKey::generate(now)).await??;
            store.insert_signing_key(&rec).await?;
            tracing::info!(kid = %rec.kid, alg = %rec.alg, "generated the first signing key");
            records = store.signing_keys().await?;
        }
        let keys = KeySet::from_records(&records).context("loading signing keys")?;
        let parallelism = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        Ok(Self { store, config, hasher: Hasher::new(parallelism)?, keys: RwLock::new(Arc::new(keys)) })
    }

    pub fn keys(&self) -> Arc<KeySet> {
        // A poisoned lock only means a panic elsewhere while swapping an Arc; the value is intact.
        match self.keys.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    /// One metadata document for both OpenID Connect Discovery and RFC 8414: it lists exactly
    /// what this server implements.
    pub fn metadata(&self) -> ProviderMetadata {
        let i = &self.config.issuer;
        let v = |xs: &[&str]| xs.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        ProviderMetadata {
            issuer: i.clone(),
            authorization_endpoint: format!("{i}/authorize"),
            token_endpoint: format!("{i}/token"),
            userinfo_endpoint: format!("{i}/userinfo"),
            jwks_uri: format!("{i}/jwks.json"),
            scopes_supported: v(STANDARD_SCOPES),
            response_types_supported: v(&["code"]),
            response_modes_supported: v(&["query"]),
            grant_types_supported: v(&["authorization_code", "refresh_token"]),
            subject_types_supported: v(&["public"]),
            id_token_signing_alg_values_supported: v(&["RS256"]),
            token_endpoint_auth_methods_supported: v(&["client_secret_basic", "client_secret_post", "none"]),
            code_challenge_methods_supported: v(&["S256"]),
            claims_supported: v(&[
                "iss",
                "sub",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "nonce",
                "azp",
                "sid",
                "at_hash",
                "name",
                "preferred_username",
                "email",
                "email_verified",
            ]),
            prompt_values_supported: v(&["none", "login", "consent"]),
            authorization_response_iss_parameter_supported: true,
            claims_parameter_supported: false,
            request_parameter_supported: false,
            request_uri_parameter_supported: false,
        }
    }
}
