//! The provider: configuration, the store, keys and the password hasher, shared by every request.

use std::sync::{Arc, RwLock};

use anyhow::Context;
use latchkey_proto::metadata::ProviderMetadata;

use crate::UnixTime;
use crate::keys::{KeyEncryptionKey, KeySet, SigningKey};
use crate::password::Hasher;
use crate::store::{SigningAlg, Store};

/// Lifetimes are in seconds.
#[derive(Clone, Debug)]
pub struct ProviderConfig {
    /// The issuer identifier (OpenID Connect Discovery §3): https URL, no query or fragment, no trailing slash.
    pub issuer: String,
    /// The `aud` of access tokens for requests that name no resource (RFC 9068 §3): the resource
    /// servers that accept them check it.
    pub audience: String,
    /// Accept any https `resource` (RFC 8707), registered or not. Off by default: an unregistered
    /// resource is refused with `invalid_target`.
    pub allow_unregistered_resources: bool,
    /// Authorization codes: short, since they travel through the browser (RFC 6749 §4.1.2 says at most 10 min).
    pub code_ttl: u64,
    pub access_token_ttl: u64,
    /// Absolute lifetime of a refresh-token family (a grant).
    pub refresh_token_ttl: u64,
    /// Idle lifetime: a refresh token not used for this long expires, even if its family has not.
    pub refresh_token_idle_ttl: u64,
    /// Retries of an already-rotated refresh token within this many seconds get the same successor
    /// tokens instead of being treated as reuse. 0 disables the window.
    ///
    /// A trade-off: within the window, a copy of the spent token (from a log or a proxy that saw it
    /// in use) also gets the live successor, and the theft goes undetected. The cached reply goes
    /// only to a retry of the same request (client and scope), and the default is short: 5 s covers
    /// two tabs racing and an immediate network retry.
    pub refresh_grace: u64,
    /// The algorithm access tokens are signed with. ES256 by default: it signs 17x faster than
    /// RS256 (14.6 against 255 µs) and every JOSE library verifies it; RS256 (RFC 9068 §4 requires
    /// support, not use) verifies 3x faster and stays available.
    pub access_token_alg: SigningAlg,
    /// Browser login sessions; refresh tokens without `offline_access` end with them.
    pub session_ttl: u64,
    /// How long a login or consent page may stay open.
    pub pending_ttl: u64,
    /// Live pending authorization requests kept per client; past it, the oldest are evicted.
    pub max_pending_per_client: u64,
    /// Live pending authorization requests allowed per source network (an IPv4 address, an IPv6
    /// /64); past it, that network's new ones get 503 until older ones complete or expire.
    pub max_pending_per_source: u64,
    /// Browser sessions kept per user; a new login ends the oldest beyond this.
    pub max_sessions_per_user: u32,
    /// How long the audit log keeps a record; 0 keeps them forever.
    pub audit_retention: u64,
    /// Seals the private signing keys at rest: new keys are stored sealed, sealed keys are opened
    /// with it. `None`: keys are stored as they are, and a sealed key refuses to load.
    pub key_encryption_key: Option<KeyEncryptionKey>,
    /// Who may register clients at `/register` (RFC 7591): anyone (the default, what MCP hosts
    /// need), holders of an initial access token, or nobody.
    pub registration: crate::registration::RegistrationPolicy,
    /// A self-registered client with no live grant is removed this long after it registered, so
    /// that abandoned registrations do not pile up.
    pub registration_idle_ttl: u64,
    /// Registrations allowed per source network (an IPv4 address, an IPv6 /64) per minute: a
    /// ceiling against floods only, generous because hosted MCP connectors share egress addresses.
    pub registrations_per_minute: u32,
    /// Resolve https URL client ids as client ID metadata documents (`crate::cimd`). Takes effect
    /// only with a fetcher installed ([`Provider::with_metadata_fetcher`]).
    pub cimd: bool,
    /// Outgoing mail and the flows that need it (reset, verification, self-registration).
    pub email: crate::mail::EmailConfig,
    /// Second factors at sign-in for every client (`second_factor`); a client's own policy
    /// applies where it is stricter.
    pub second_factor: crate::authn::SecondFactorPolicy,
    /// `[webauthn]`: passkeys' relying party and the bounds of their ceremonies.
    pub passkeys: crate::passkey::PasskeyConfig,
    /// DPoP, PAR, `private_key_jwt` and the security profile (issue 14).
    pub protection: crate::protection::ProtectionConfig,
    /// `[device]`: the device authorization grant (RFC 8628).
    pub device: crate::device_grant::DeviceConfig,
}

/// The default of [`ProviderConfig::refresh_grace`], in seconds (see there for the trade-off).
pub const DEFAULT_REFRESH_GRACE: u64 = 5;

impl ProviderConfig {
    pub fn new(issuer: &str) -> Self {
        let issuer = issuer.trim_end_matches('/').to_owned();
        Self {
            audience: issuer.clone(),
            allow_unregistered_resources: false,
            issuer,
            code_ttl: 60,
            access_token_ttl: 600,
            refresh_token_ttl: 30 * 24 * 3600,
            refresh_token_idle_ttl: 7 * 24 * 3600,
            refresh_grace: DEFAULT_REFRESH_GRACE,
            access_token_alg: SigningAlg::ES256,
            session_ttl: 24 * 3600,
            pending_ttl: 600,
            max_pending_per_client: 10_000,
            max_pending_per_source: 256,
            max_sessions_per_user: 32,
            audit_retention: 90 * 24 * 3600,
            key_encryption_key: None,
            registration: Default::default(),
            registration_idle_ttl: 30 * 24 * 3600,
            registrations_per_minute: 60,
            cimd: true,
            email: Default::default(),
            second_factor: Default::default(),
            passkeys: Default::default(),
            protection: Default::default(),
            device: Default::default(),
        }
    }
}

pub struct Provider {
    pub store: Arc<dyn Store>,
    pub config: ProviderConfig,
    pub hasher: Hasher,
    keys: RwLock<Arc<KeySet>>,
    pub(crate) origins: crate::cors::OriginCache,
    /// The MAC key of CSRF tokens and known-device cookies (`server_key`).
    pub server_key: crate::server_key::ServerKey,
    pub(crate) cimd: crate::cimd::CimdState,
    /// `private_key_jwt` clients' keys fetched from their `jwks_uri` (`crate::client_keys`).
    pub(crate) client_keys: crate::client_keys::JwksCache,
    /// Wakes this process's outbox worker when a job is queued here (`crate::outbox`).
    pub outbox_wake: tokio::sync::Notify,
    /// The WebAuthn relying party; `None` when the issuer has no domain name (`crate::passkey`).
    pub(crate) passkeys: Option<crate::passkey::RelyingParty>,
    /// DPoP server nonces (RFC 9449 §8), under a key every instance derives alike (`crate::dpop`).
    pub(crate) dpop_nonces: latchkey_proto::dpop::NonceKeeper,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider").field("issuer", &self.config.issuer).finish_non_exhaustive()
    }
}

/// Scopes this server understands; a client may also be allowed its own API scopes.
pub const STANDARD_SCOPES: &[&str] = &["openid", "profile", "email", "address", "phone", "offline_access"];

impl Provider {
    /// Loads the signing keys, generating and storing one for each algorithm that has none.
    pub async fn open(store: Arc<dyn Store>, config: ProviderConfig, now: UnixTime) -> anyhow::Result<Self> {
        // A bad `[webauthn]` setting stops the start-up, before anything is written.
        let passkeys = crate::passkey::RelyingParty::new(&config.issuer, &config.passkeys)?;
        let records = store.signing_keys().await?;
        for alg in SigningAlg::ALL {
            if !records.iter().any(|r| r.active && r.alg == alg.as_str()) {
                let mut rec = tokio::task::spawn_blocking(move || SigningKey::generate(alg, now)).await??;
                if let Some(kek) = &config.key_encryption_key {
                    rec = crate::keys::seal_record(&rec, kek)?;
                }
                // Another instance starting on the same database may have stored one meanwhile:
                // then its key is the signer and ours is dropped.
                if store.insert_signing_key(&rec).await? {
                    tracing::info!(kid = %rec.kid, alg = %rec.alg, "generated a signing key");
                }
            }
        }
        let records = store.signing_keys().await?;
        let kek = config.key_encryption_key.as_ref();
        let keys = KeySet::from_records_with(&records, kek).context("loading signing keys")?;
        let plain = records.iter().filter(|r| !crate::keys::is_sealed(r)).count();
        if kek.is_some() && plain > 0 {
            tracing::warn!(
                plain,
                "a key-encryption key is configured but {plain} signing key(s) are stored unsealed; run `latchkey keys seal`"
            );
        }
        // One core is left to the request workers: while logins hash at full load, the other
        // requests keep their latency (measured by `latchkey-bench`'s "userinfo during logins").
        // The first instance to start stores its candidate; every instance reads the same one.
        let candidate = latchkey_proto::secret::random_token();
        let secret = store.server_secret(crate::server_key::SECRET_NAME, &candidate, now).await?;
        let server_key = crate::server_key::ServerKey::new(secret.as_bytes());
        let dpop_nonces = crate::dpop::nonce_keeper(&server_key, config.protection.dpop.nonce_lifetime);
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let parallelism = cores.saturating_sub(1).max(1);
        Ok(Self {
            store,
            config,
            hasher: Hasher::new(parallelism)?,
            keys: RwLock::new(Arc::new(keys)),
            origins: Default::default(),
            server_key,
            cimd: Default::default(),
            client_keys: Default::default(),
            outbox_wake: Default::default(),
            passkeys,
            dpop_nonces,
        })
    }

    /// Re-reads the keys from the store, so that a rotation made by `latchkey keys rotate` or by
    /// another instance is picked up. Keys already parsed are not parsed again.
    pub async fn reload_keys(&self) -> anyhow::Result<bool> {
        let records = self.store.signing_keys().await?;
        let current = self.keys();
        let unchanged = records.len() == current.keys().len()
            && records.iter().all(|r| {
                current.keys().iter().any(|k| k.kid == r.kid && k.active == r.active && k.retired_at == r.retired_at)
            });
        if unchanged {
            return Ok(false);
        }
        let keys = Arc::new(KeySet::from_records_with(&records, self.config.key_encryption_key.as_ref())?);
        match self.keys.write() {
            Ok(mut g) => *g = keys,
            Err(p) => *p.into_inner() = keys,
        }
        tracing::info!("signing keys reloaded");
        Ok(true)
    }

    /// Deletes expired and dead records (see [`crate::store::TableCounts`] for the policy). `serve`
    /// runs it periodically; every instance may, the store makes concurrent runs safe.
    pub async fn purge_expired(&self, now: UnixTime) -> anyhow::Result<crate::store::TableCounts> {
        let policy = crate::store::PurgePolicy {
            key_publish_window: self.key_publish_window(),
            audit_retention: self.config.audit_retention,
        };
        let mut counts = self.store.purge_expired(now, &policy).await?;
        let idle = i64::try_from(self.config.registration_idle_ttl).unwrap_or(i64::MAX);
        let (clients, counters) = self.store.purge_idle_registrations(now, now.saturating_sub(idle)).await?;
        counts.clients += clients;
        counts.login_throttle += counters;
        Ok(counts)
    }

    /// How long a retired key stays in the JWKS: the longest life of a token it signed, plus a
    /// minute of clock skew.
    pub fn key_publish_window(&self) -> u64 {
        self.config.access_token_ttl + 60
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

    /// Installs the fetcher of `private_key_jwt` clients' `jwks_uri` (the server crate's guarded
    /// HTTPS client). Without one, such clients cannot authenticate; inline `jwks` work anyway.
    pub fn with_jwks_fetcher(mut self, fetcher: Arc<dyn crate::client_keys::JwksFetcher>) -> Self {
        self.client_keys = crate::client_keys::JwksCache::with_fetcher(fetcher);
        self
    }

    /// One metadata document for both OpenID Connect Discovery and RFC 8414: it lists exactly
    /// what this server implements.
    pub fn metadata(&self) -> ProviderMetadata {
        let i = &self.config.issuer;
        let v = |xs: &[&str]| xs.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let assertion_algs: Vec<String> =
            self.config.protection.client_assertion.algorithms.iter().map(|a| format!("{a:?}")).collect();
        ProviderMetadata {
            issuer: i.clone(),
            authorization_endpoint: format!("{i}/authorize"),
            token_endpoint: format!("{i}/token"),
            userinfo_endpoint: format!("{i}/userinfo"),
            jwks_uri: format!("{i}/jwks.json"),
            revocation_endpoint: format!("{i}/revoke"),
            introspection_endpoint: format!("{i}/introspect"),
            end_session_endpoint: format!("{i}/logout"),
            registration_endpoint: self.registration_enabled().then(|| format!("{i}/register")),
            scopes_supported: v(STANDARD_SCOPES),
            response_types_supported: v(&["code"]),
            response_modes_supported: v(&["query"]),
            grant_types_supported: v(&[
                "authorization_code",
                "refresh_token",
                "client_credentials",
                crate::device_grant::GRANT_TYPE,
            ]),
            subject_types_supported: v(&["public"]),
            id_token_signing_alg_values_supported: v(&["RS256", "ES256", "EdDSA"]),
            token_endpoint_auth_methods_supported: v(&[
                "client_secret_basic",
                "client_secret_post",
                "private_key_jwt",
                "none",
            ]),
            revocation_endpoint_auth_methods_supported: v(&[
                "client_secret_basic",
                "client_secret_post",
                "private_key_jwt",
                "none",
            ]),
            introspection_endpoint_auth_methods_supported: v(&[
                "client_secret_basic",
                "client_secret_post",
                "private_key_jwt",
            ]),
            code_challenge_methods_supported: v(&["S256"]),
            // Computed from what the server releases ([`crate::claims`]), so it cannot drift.
            claims_supported: crate::claims::supported(),
            acr_values_supported: crate::authn::Acr::ALL.iter().map(|a| a.as_str().to_owned()).collect(),
            prompt_values_supported: v(&["none", "login", "consent"]),
            authorization_response_iss_parameter_supported: true,
            frontchannel_logout_supported: false,
            backchannel_logout_supported: true,
            backchannel_logout_session_supported: true,
            claims_parameter_supported: true,
            request_parameter_supported: false,
            request_uri_parameter_supported: false,
            client_id_metadata_document_supported: self.metadata_documents_supported(),
            dpop_signing_alg_values_supported: crate::dpop::alg_names(&self.config.protection.dpop.algorithms),
            pushed_authorization_request_endpoint: format!("{i}/par"),
            device_authorization_endpoint: format!(
                "{i}{}",
                crate::grant::client_auth::Endpoint::DeviceAuthorization.path()
            ),
            require_pushed_authorization_requests: self.config.protection.par.require
                || self.config.protection.profile == crate::store::SecurityProfile::Fapi2,
            token_endpoint_auth_signing_alg_values_supported: assertion_algs.clone(),
            revocation_endpoint_auth_signing_alg_values_supported: assertion_algs.clone(),
            introspection_endpoint_auth_signing_alg_values_supported: assertion_algs,
        }
    }
}
