//! Configuration: defaults, overlaid by a TOML file, overlaid by `LATCHKEY_*` environment
//! variables, overlaid by flags. An unknown key in the file or the environment is an error that
//! names it: a typo must not silently fall back to a default.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, anyhow, bail};
use latchkey_core::keys::KeyEncryptionKey;
use latchkey_core::store::SigningAlg;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The keys of `latchkey.toml`. Lifetimes are in seconds.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub issuer: Option<String>,
    pub listen: Option<String>,
    pub database: Option<String>,
    pub audience: Option<String>,
    pub code_lifetime: Option<u64>,
    pub access_token_lifetime: Option<u64>,
    pub refresh_token_lifetime: Option<u64>,
    pub refresh_token_idle_lifetime: Option<u64>,
    pub refresh_grace: Option<u64>,
    pub access_token_signing_alg: Option<String>,
    pub session_lifetime: Option<u64>,
    pub audit_retention: Option<u64>,
    pub log_format: Option<LogFormat>,
    pub allow_unregistered_resources: Option<bool>,
    /// `open` (default), `token` or `off` (RFC 7591 dynamic client registration).
    pub registration: Option<String>,
    /// With `registration = "token"`: the file (mode 0600) holding the initial access token.
    pub registration_token_file: Option<std::path::PathBuf>,
    pub registration_idle_ttl: Option<u64>,
    pub registrations_per_minute: Option<u64>,
    /// Resolve https URL client ids as client ID metadata documents (default true).
    pub cimd: Option<bool>,
    /// Tests only: metadata documents may be fetched from loopback addresses and `localhost`.
    pub insecure_cimd_loopback: Option<bool>,
    /// Tests only: a PEM root CA trusted for fetching metadata documents.
    pub insecure_cimd_ca: Option<std::path::PathBuf>,
    /// `optional` (default), `required` or `passkey`: second factors at every sign-in.
    pub second_factor: Option<String>,
    /// Self-registration at `/signup`: `off` (default), `open` or `invite`. Needs `[smtp]`.
    pub signup: Option<String>,
    /// Outgoing mail (password reset, verification, invitations).
    pub smtp: Option<SmtpFile>,
    /// `[webauthn]`: the passkeys' relying party.
    pub webauthn: Option<WebauthnFile>,
    /// `[dpop]`: how DPoP proofs are checked (`crate::config_dpop`).
    pub dpop: Option<crate::config_dpop::DpopFile>,
    /// `[device]`: the device authorization grant (`crate::config_device`).
    pub device: Option<crate::config_device::DeviceFile>,
    /// `standard` (default) or `fapi2`: the security profile of every client that has none of
    /// its own (`client add --profile`).
    pub profile: Option<String>,
    /// `[par]`: pushed authorization requests (RFC 9126).
    pub par: Option<ParFile>,
    /// `[client_assertion]`: `private_key_jwt` client assertions (RFC 7523).
    pub client_assertion: Option<AssertionFile>,
}

/// `[par]` in `latchkey.toml`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParFile {
    /// Every client must push its authorization requests (default false).
    pub require: Option<bool>,
    /// Seconds a `request_uri` stays usable (default 60, at most 600).
    pub ttl: Option<u64>,
    /// Unused pushed requests kept per client (default 1000); past it, pushing answers 503.
    pub max_per_client: Option<u64>,
}

/// `[client_assertion]` in `latchkey.toml`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssertionFile {
    /// The longest lifetime (`exp` − now) accepted, in seconds (default 300).
    pub max_lifetime: Option<u64>,
    /// Clock skew tolerated on `exp`, `iat` and `nbf`, in seconds (default 10).
    pub skew: Option<u64>,
}

/// `[webauthn]` in `latchkey.toml`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebauthnFile {
    /// The relying party id: the issuer's host (the default) or a parent domain of it.
    pub rp_id: Option<String>,
    /// The name authenticators show ("Latchkey").
    pub rp_name: Option<String>,
    /// Origins besides the issuer's whose pages may run the passkey ceremonies.
    pub extra_origins: Option<Vec<String>>,
    /// Passkeys one user may register (20).
    pub max_per_user: Option<u32>,
}

/// The `[smtp]` section of `latchkey.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpFile {
    pub host: String,
    /// Default: 587 with `starttls`, 465 with `implicit`, 25 with `none`.
    pub port: Option<u16>,
    /// `starttls` (default; required, never skipped), `implicit`, or `none` (loopback hosts only).
    pub tls: Option<String>,
    pub username: Option<String>,
    /// A file (mode 0600) holding the SMTP password; required with `username`.
    pub password_file: Option<std::path::PathBuf>,
    /// The `From:` mailbox, e.g. `Latchkey <no-reply@id.example>`.
    pub from: String,
    /// Tests only: a PEM root CA also trusted for the SMTP server's certificate.
    pub insecure_ca_file: Option<std::path::PathBuf>,
    /// Seconds to connect and for each SMTP command (default 30).
    pub timeout: Option<u64>,
}

/// Every setting, resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    pub issuer: String,
    pub listen: String,
    pub database: String,
    pub audience: Option<String>,
    pub code_lifetime: u64,
    pub access_token_lifetime: u64,
    pub refresh_token_lifetime: u64,
    pub refresh_token_idle_lifetime: u64,
    pub refresh_grace: u64,
    pub access_token_signing_alg: SigningAlg,
    pub session_lifetime: u64,
    /// Seconds the audit log keeps a record; 0 keeps them forever.
    pub audit_retention: u64,
    pub log_format: LogFormat,
    /// Accept any https `resource` (RFC 8707), registered or not (logged at start-up).
    pub allow_unregistered_resources: bool,
    /// `--allow-insecure-db-permissions`: open a SQLite file others can read (logged loudly).
    pub allow_insecure_db_permissions: bool,
    /// Seals the private signing keys at rest (`LATCHKEY_KEY_ENCRYPTION_KEY` or
    /// `--key-encryption-key-file`); `None`: they are stored as they are.
    pub key_encryption_key: Option<KeyEncryptionKey>,
    /// Who may register clients at `/register`.
    pub registration: latchkey_core::registration::RegistrationPolicy,
    /// Seconds after which a self-registered client with no live grant is removed.
    pub registration_idle_ttl: u64,
    pub registrations_per_minute: u32,
    /// `cimd`: resolve https URL client ids as client ID metadata documents.
    pub cimd: bool,
    /// `insecure_cimd_loopback` (tests only, logged loudly).
    pub insecure_cimd_loopback: bool,
    /// `insecure_cimd_ca` (tests only, logged loudly): an extra trusted root for fetching documents.
    pub insecure_cimd_ca: Option<std::path::PathBuf>,
    /// Outgoing mail; `None`: nothing that needs mail is offered.
    pub smtp: Option<latchkey_server::smtp::SmtpSettings>,
    /// Who may create an account at `/signup`.
    pub signup: latchkey_core::signup::SignupMode,
    /// `second_factor`: the deployment's second-factor policy (a client's may be stricter).
    pub second_factor: latchkey_core::authn::SecondFactorPolicy,
    /// `[webauthn]` as configured (the defaults where it is absent).
    pub webauthn: WebauthnFile,
    /// `[dpop]`, checked.
    pub dpop: latchkey_core::protection::DpopConfig,
    /// `[device]`, checked.
    pub device: latchkey_core::device_grant::DeviceConfig,
    /// `profile`: the deployment's security profile.
    pub profile: latchkey_core::store::SecurityProfile,
    /// `[par]`, checked.
    pub par: latchkey_core::protection::ParConfig,
    /// `[client_assertion]`, checked.
    pub client_assertion: latchkey_core::protection::AssertionConfig,
    /// Found while resolving, shown once logging is set up (it is not, yet, during `resolve`).
    pub warnings: Vec<Warning>,
}

/// A setting that works but weakens the deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// The issuer is plain http on a host other than loopback.
    PlainHttpIssuer(String),
    /// `--database` carries a password: every local user sees it in `ps`.
    PasswordInDatabaseFlag,
    /// `allow_unregistered_resources`: tokens may be minted for any https audience.
    UnregisteredResourcesAllowed,
    /// `insecure_cimd_loopback`: metadata-document URLs may point at this machine.
    InsecureCimdLoopback,
    /// `insecure_cimd_ca`: a root trusted only for metadata documents, beyond the public ones.
    InsecureCimdCa(String),
    /// `[smtp] insecure_ca_file`: a root trusted for the SMTP server, beyond the public ones.
    InsecureSmtpCa(String),
}

impl Warning {
    /// Whether `command` should show it: the issuer matters only to `serve`.
    pub fn applies_to_serve_only(&self) -> bool {
        matches!(
            self,
            Self::PlainHttpIssuer(_)
                | Self::UnregisteredResourcesAllowed
                | Self::InsecureCimdLoopback
                | Self::InsecureCimdCa(_)
                | Self::InsecureSmtpCa(_)
        )
    }
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::PlainHttpIssuer(issuer) => write!(
                f,
                "the issuer {issuer} is plain http on a non-loopback host: tokens and passwords travel unencrypted; use https in production"
            ),
            Self::PasswordInDatabaseFlag => f.write_str(
                "--database contains a password, which every local user can read in the process list; set LATCHKEY_DATABASE (or the config file) instead",
            ),
            Self::UnregisteredResourcesAllowed => f.write_str(
                "allow_unregistered_resources: tokens are issued for any https resource a client names, registered or not; register resources with `latchkey resource add` instead",
            ),
            Self::InsecureCimdLoopback => f.write_str(
                "insecure_cimd_loopback is on: anyone can make this server fetch URLs on its own loopback interface (client ID metadata documents, clients' jwks_uri); for tests only, never in production",
            ),
            Self::InsecureCimdCa(path) => write!(
                f,
                "insecure_cimd_ca is set: client ID metadata documents and clients' jwks_uri are also trusted when signed by the CA in {path}; for tests only, never in production"
            ),
            Self::InsecureSmtpCa(path) => write!(
                f,
                "[smtp] insecure_ca_file is set: the SMTP server is also trusted when its certificate is signed by the CA in {path}; for tests only, never in production"
            ),
        }
    }
}

/// What flags may override.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub issuer: Option<String>,
    pub listen: Option<String>,
    pub database: Option<String>,
    pub allow_insecure_db_permissions: bool,
    pub key_encryption_key_file: Option<std::path::PathBuf>,
    /// `--registration open|token|off`.
    pub registration: Option<String>,
    /// `--registration-token-file FILE`.
    pub registration_token_file: Option<std::path::PathBuf>,
    /// `serve --insecure-cimd-loopback`.
    pub insecure_cimd_loopback: bool,
    /// `serve --insecure-cimd-ca`.
    pub insecure_cimd_ca: Option<std::path::PathBuf>,
}

const ENV_KEYS: &[&str] = &[
    "CONFIG",
    "ISSUER",
    "LISTEN",
    "DATABASE",
    "AUDIENCE",
    "CODE_LIFETIME",
    "AUDIT_RETENTION",
    "ACCESS_TOKEN_LIFETIME",
    "REFRESH_TOKEN_LIFETIME",
    "REFRESH_TOKEN_IDLE_LIFETIME",
    "REFRESH_GRACE",
    "ACCESS_TOKEN_SIGNING_ALG",
    "SESSION_LIFETIME",
    "LOG_FORMAT",
    "KEY_ENCRYPTION_KEY",
    "REGISTRATION",
    "REGISTRATION_TOKEN_FILE",
    "REGISTRATION_IDLE_TTL",
    "REGISTRATIONS_PER_MINUTE",
    "CIMD",
    "INSECURE_CIMD_LOOPBACK",
    "INSECURE_CIMD_CA",
    "SIGNUP",
    "SECOND_FACTOR",
    "PROFILE",
];

/// `1`/`true`/`yes`/`on` or `0`/`false`/`no`/`off`.
fn parse_bool(key: &str, v: &str) -> anyhow::Result<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => bail!("LATCHKEY_{key} must be true or false, not {v:?}"),
    }
}

impl Settings {
    /// `env` is the process environment (a map in tests).
    pub fn resolve(
        config_flag: Option<&Path>,
        env: &BTreeMap<String, String>,
        flags: &Overrides,
    ) -> anyhow::Result<Self> {
        let mut ours = BTreeMap::new();
        for (k, v) in env {
            if let Some(key) = k.strip_prefix("LATCHKEY_") {
                if !ENV_KEYS.contains(&key) {
                    bail!(
                        "unknown environment variable {k}; known: {}",
                        ENV_KEYS.iter().map(|k| format!("LATCHKEY_{k}")).collect::<Vec<_>>().join(", ")
                    );
                }
                ours.insert(key, v.clone());
            }
        }
        let path = config_flag.map(Path::to_path_buf).or_else(|| ours.get("CONFIG").map(Into::into));
        let file: FileConfig = match &path {
            Some(p) => {
                let text =
                    std::fs::read_to_string(p).with_context(|| format!("reading config file {}", p.display()))?;
                toml::from_str(&text).map_err(|e| anyhow!("config file {}: {}", p.display(), e.message()))?
            }
            None => FileConfig::default(),
        };
        let num0 = |key: &str, file_v: Option<u64>, default: u64| -> anyhow::Result<u64> {
            match ours.get(key) {
                Some(s) => {
                    s.parse().map_err(|_| anyhow!("LATCHKEY_{key} must be a whole number of seconds, not {s:?}"))
                }
                None => Ok(file_v.unwrap_or(default)),
            }
        };
        let num = |key: &str, file_v: Option<u64>, default: u64| -> anyhow::Result<u64> {
            let v = match ours.get(key) {
                Some(s) => {
                    s.parse().map_err(|_| anyhow!("LATCHKEY_{key} must be a whole number of seconds, not {s:?}"))?
                }
                None => file_v.unwrap_or(default),
            };
            if v == 0 {
                bail!("{} must be at least 1 second", key.to_lowercase());
            }
            Ok(v)
        };
        let log_format = match ours.get("LOG_FORMAT").map(String::as_str) {
            Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => bail!("LATCHKEY_LOG_FORMAT must be text or json, not {other:?}"),
            None => file.log_format.unwrap_or(LogFormat::Text),
        };
        let pick = |flag: &Option<String>, key: &str, file_v: &Option<String>| {
            flag.clone().or_else(|| ours.get(key).cloned()).or_else(|| file_v.clone())
        };
        let listen = pick(&flags.listen, "LISTEN", &file.listen).unwrap_or_else(|| "127.0.0.1:8080".into());
        let issuer = pick(&flags.issuer, "ISSUER", &file.issuer).unwrap_or_else(|| format!("http://{listen}"));
        let (issuer, issuer_warning) = validate_issuer(&issuer)?;
        let mut warnings: Vec<Warning> = issuer_warning.into_iter().collect();
        if flags.database.as_deref().is_some_and(has_password) {
            warnings.push(Warning::PasswordInDatabaseFlag);
        }
        let allow_unregistered_resources = match ours.get("ALLOW_UNREGISTERED_RESOURCES").map(String::as_str) {
            Some("1" | "true") => true,
            Some("0" | "false") => false,
            Some(other) => bail!("LATCHKEY_ALLOW_UNREGISTERED_RESOURCES must be true or false, not {other:?}"),
            None => file.allow_unregistered_resources.unwrap_or(false),
        };
        if allow_unregistered_resources {
            warnings.push(Warning::UnregisteredResourcesAllowed);
        }
        let flag_or = |key: &str, file_v: Option<bool>, default: bool| -> anyhow::Result<bool> {
            match ours.get(key) {
                Some(v) => parse_bool(key, v),
                None => Ok(file_v.unwrap_or(default)),
            }
        };
        let cimd = flag_or("CIMD", file.cimd, true)?;
        let insecure_cimd_loopback =
            flags.insecure_cimd_loopback || flag_or("INSECURE_CIMD_LOOPBACK", file.insecure_cimd_loopback, false)?;
        let insecure_cimd_ca = flags
            .insecure_cimd_ca
            .clone()
            .or_else(|| ours.get("INSECURE_CIMD_CA").map(Into::into))
            .or(file.insecure_cimd_ca);
        // Also with cimd off: private_key_jwt clients' jwks_uri are fetched by the same client.
        if insecure_cimd_loopback {
            warnings.push(Warning::InsecureCimdLoopback);
        }
        if let Some(ca) = insecure_cimd_ca.as_ref() {
            warnings.push(Warning::InsecureCimdCa(ca.display().to_string()));
        }
        let code_lifetime = num("CODE_LIFETIME", file.code_lifetime, 60)?;
        if code_lifetime > 600 {
            bail!("code_lifetime may be at most 600 seconds (RFC 6749 §4.1.2)");
        }
        let registration = registration_policy(
            flags.registration.clone().or_else(|| ours.get("REGISTRATION").cloned()).or(file.registration),
            flags
                .registration_token_file
                .clone()
                .or_else(|| ours.get("REGISTRATION_TOKEN_FILE").map(Into::into))
                .or(file.registration_token_file),
        )?;
        let per_minute = num("REGISTRATIONS_PER_MINUTE", file.registrations_per_minute, 60)?;
        let smtp = match &file.smtp {
            Some(s) => Some(smtp_settings(s, &mut warnings)?),
            None => None,
        };
        let signup = ours.get("SIGNUP").cloned().or(file.signup).unwrap_or_else(|| "off".into());
        let signup = latchkey_core::signup::SignupMode::parse(&signup)
            .ok_or_else(|| anyhow!("signup must be off, open or invite, not {signup:?}"))?;
        if signup != latchkey_core::signup::SignupMode::Off && smtp.is_none() {
            bail!(
                "signup = \"{}\" needs outgoing mail (verification links, invitations): add an [smtp] section to the config file, or set signup = \"off\"",
                if signup == latchkey_core::signup::SignupMode::Open { "open" } else { "invite" }
            );
        }
        let second_factor = match ours.get("SECOND_FACTOR").cloned().or(file.second_factor) {
            None => Default::default(),
            Some(v) => latchkey_core::authn::SecondFactorPolicy::parse(&v)
                .ok_or_else(|| anyhow!("second_factor must be optional, required or passkey, not {v:?}"))?,
        };
        let (profile, par, client_assertion) = protection_settings(
            ours.get("PROFILE").cloned().or(file.profile),
            &file.par.unwrap_or_default(),
            &file.client_assertion.unwrap_or_default(),
            code_lifetime,
        )?;
        Ok(Self {
            profile,
            par,
            client_assertion,
            smtp,
            signup,
            registration,
            registration_idle_ttl: num("REGISTRATION_IDLE_TTL", file.registration_idle_ttl, 30 * 24 * 3600)?,
            registrations_per_minute: u32::try_from(per_minute).unwrap_or(u32::MAX),
            issuer,
            listen,
            database: pick(&flags.database, "DATABASE", &file.database).unwrap_or_else(|| "latchkey.db".into()),
            audience: ours.get("AUDIENCE").cloned().or(file.audience),
            code_lifetime,
            access_token_lifetime: num("ACCESS_TOKEN_LIFETIME", file.access_token_lifetime, 600)?,
            refresh_token_lifetime: num("REFRESH_TOKEN_LIFETIME", file.refresh_token_lifetime, 30 * 24 * 3600)?,
            refresh_token_idle_lifetime: num(
                "REFRESH_TOKEN_IDLE_LIFETIME",
                file.refresh_token_idle_lifetime,
                7 * 24 * 3600,
            )?,
            // 0 is meaningful here: it disables the grace window. The default and its trade-off
            // are documented next to `ProviderConfig::refresh_grace`.
            refresh_grace: num0("REFRESH_GRACE", file.refresh_grace, latchkey_core::provider::DEFAULT_REFRESH_GRACE)?,
            access_token_signing_alg: {
                let s = ours
                    .get("ACCESS_TOKEN_SIGNING_ALG")
                    .cloned()
                    .or(file.access_token_signing_alg)
                    .unwrap_or_else(|| "ES256".into());
                SigningAlg::parse(&s)
                    .ok_or_else(|| anyhow!("access_token_signing_alg must be RS256, ES256 or EdDSA, not {s:?}"))?
            },
            session_lifetime: num("SESSION_LIFETIME", file.session_lifetime, 24 * 3600)?,
            // 0 is meaningful: keep the audit log forever.
            audit_retention: num0("AUDIT_RETENTION", file.audit_retention, 90 * 24 * 3600)?,
            log_format,
            allow_unregistered_resources,
            allow_insecure_db_permissions: flags.allow_insecure_db_permissions,
            key_encryption_key: crate::kek::resolve(
                ours.get("KEY_ENCRYPTION_KEY").map(String::as_str),
                flags.key_encryption_key_file.as_deref(),
            )?,
            cimd,
            insecure_cimd_loopback,
            insecure_cimd_ca,
            second_factor,
            webauthn: file.webauthn.unwrap_or_default(),
            dpop: crate::config_dpop::resolve(file.dpop.as_ref())?,
            device: crate::config_device::resolve(file.device.as_ref())?,
            warnings,
        })
    }

    pub fn store_options(&self) -> latchkey_store::StoreOptions {
        latchkey_store::StoreOptions { allow_insecure_db_permissions: self.allow_insecure_db_permissions }
    }

    pub fn provider_config(&self) -> latchkey_core::ProviderConfig {
        let mut c = self.provider_config_without_passkeys();
        let w = &self.webauthn;
        c.passkeys.rp_id = w.rp_id.clone();
        if let Some(name) = &w.rp_name {
            c.passkeys.rp_name = name.clone();
        }
        c.passkeys.extra_origins = w.extra_origins.clone().unwrap_or_default();
        if let Some(n) = w.max_per_user {
            c.passkeys.max_per_user = n;
        }
        c
    }

    fn provider_config_without_passkeys(&self) -> latchkey_core::ProviderConfig {
        let mut c = latchkey_core::ProviderConfig::new(&self.issuer);
        if let Some(a) = &self.audience {
            c.audience = a.clone();
        }
        c.code_ttl = self.code_lifetime;
        c.access_token_ttl = self.access_token_lifetime;
        c.refresh_token_ttl = self.refresh_token_lifetime;
        c.refresh_token_idle_ttl = self.refresh_token_idle_lifetime;
        c.refresh_grace = self.refresh_grace;
        c.access_token_alg = self.access_token_signing_alg;
        c.session_ttl = self.session_lifetime;
        c.audit_retention = self.audit_retention;
        c.allow_unregistered_resources = self.allow_unregistered_resources;
        c.key_encryption_key = self.key_encryption_key.clone();
        c.registration = self.registration.clone();
        c.registration_idle_ttl = self.registration_idle_ttl;
        c.registrations_per_minute = self.registrations_per_minute;
        c.cimd = self.cimd;
        c.email.enabled = self.smtp.is_some();
        c.email.signup = self.signup;
        c.second_factor = self.second_factor;
        c.protection.dpop = self.dpop.clone();
        c.device = self.device.clone();
        c.protection.profile = self.profile;
        c.protection.par = self.par.clone();
        c.protection.client_assertion = self.client_assertion.clone();
        c
    }
}

/// `profile`, `[par]` and `[client_assertion]`, checked against the specifications' bounds.
fn protection_settings(
    profile: Option<String>,
    par: &ParFile,
    assertion: &AssertionFile,
    code_lifetime: u64,
) -> anyhow::Result<(
    latchkey_core::store::SecurityProfile,
    latchkey_core::protection::ParConfig,
    latchkey_core::protection::AssertionConfig,
)> {
    use latchkey_core::protection::{FAPI2_MAX_CODE_TTL, ProtectionConfig};
    use latchkey_core::store::SecurityProfile;
    let profile = match profile.as_deref() {
        None | Some("standard") => SecurityProfile::Standard,
        Some("fapi2") => SecurityProfile::Fapi2,
        Some(other) => bail!("profile must be standard or fapi2, not {other:?}"),
    };
    if profile == SecurityProfile::Fapi2 && code_lifetime > FAPI2_MAX_CODE_TTL {
        bail!(
            "profile = \"fapi2\" allows code_lifetime of at most {FAPI2_MAX_CODE_TTL} seconds (FAPI 2.0 Security Profile §5.3)"
        );
    }
    let defaults = ProtectionConfig::default();
    let mut p = defaults.par;
    p.require = par.require.unwrap_or(p.require);
    p.ttl = par.ttl.unwrap_or(p.ttl);
    p.max_per_client = par.max_per_client.unwrap_or(p.max_per_client);
    // RFC 9126 §2.2: short-lived; FAPI 2.0 (§5.3) wants under 600 seconds.
    if !(1..=600).contains(&p.ttl) {
        bail!("[par] ttl must be between 1 and 600 seconds, not {}", p.ttl);
    }
    if p.max_per_client == 0 {
        bail!("[par] max_per_client must be at least 1");
    }
    let mut a = defaults.client_assertion;
    a.max_lifetime = assertion.max_lifetime.map_or(a.max_lifetime, |v| i64::try_from(v).unwrap_or(i64::MAX));
    a.skew = assertion.skew.map_or(a.skew, |v| i64::try_from(v).unwrap_or(i64::MAX));
    if !(1..=3600).contains(&a.max_lifetime) {
        bail!("[client_assertion] max_lifetime must be between 1 and 3600 seconds, not {}", a.max_lifetime);
    }
    if a.skew > 300 {
        bail!("[client_assertion] skew must be at most 300 seconds, not {}", a.skew);
    }
    Ok((profile, p, a))
}

/// `registration = open | token | off`; with `token`, the initial access token is read from
/// `token_file`, which only its owner may read (it is a credential), and only its hash is kept.
fn registration_policy(
    mode: Option<String>,
    token_file: Option<std::path::PathBuf>,
) -> anyhow::Result<latchkey_core::registration::RegistrationPolicy> {
    use latchkey_core::registration::RegistrationPolicy;
    match mode.as_deref().unwrap_or("open") {
        "open" => Ok(RegistrationPolicy::Open),
        "off" => Ok(RegistrationPolicy::Off),
        "token" => {
            let path = token_file.ok_or_else(|| {
                anyhow!("registration = \"token\" needs --registration-token-file (LATCHKEY_REGISTRATION_TOKEN_FILE)")
            })?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(&path)
                    .with_context(|| format!("reading the registration token file {}", path.display()))?
                    .permissions()
                    .mode();
                if mode & 0o077 != 0 {
                    bail!(
                        "the registration token file {} can be read by others (mode {:o}); chmod 600 it",
                        path.display(),
                        mode & 0o777
                    );
                }
            }
            let token = std::fs::read_to_string(&path)
                .with_context(|| format!("reading the registration token file {}", path.display()))?;
            let token = token.trim();
            if token.len() < 16 {
                bail!("the initial access token in {} must be at least 16 characters", path.display());
            }
            Ok(RegistrationPolicy::Token(latchkey_proto::TokenHash::of(token)))
        }
        other => bail!("registration must be open, token or off, not {other:?}"),
    }
}

/// Refuses a secret file others can read (it holds a credential).
fn private_file(path: &Path, what: &str) -> anyhow::Result<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .with_context(|| format!("reading the {what} {}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            bail!("the {what} {} can be read by others (mode {:o}); chmod 600 it", path.display(), mode & 0o777);
        }
    }
    std::fs::read_to_string(path).with_context(|| format!("reading the {what} {}", path.display()))
}

/// Whether `host` is this machine (a loopback address or `localhost`).
fn loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The `[smtp]` section, checked: `tls = "none"` only to a loopback host (a local relay), since it
/// would send the password and every reset link in clear; the password only from a private file.
fn smtp_settings(s: &SmtpFile, warnings: &mut Vec<Warning>) -> anyhow::Result<latchkey_server::smtp::SmtpSettings> {
    use latchkey_server::smtp::{SmtpPassword, SmtpSettings, SmtpTls};
    let tls_name = s.tls.as_deref().unwrap_or("starttls");
    let tls = SmtpTls::parse(tls_name)
        .ok_or_else(|| anyhow!("[smtp] tls must be starttls, implicit or none, not {tls_name:?}"))?;
    if tls == SmtpTls::None && !loopback_host(&s.host) {
        bail!(
            "[smtp] tls = \"none\" would send the SMTP password and every reset link in clear to {}: it is only allowed to a loopback host (a local relay); use starttls or implicit",
            s.host
        );
    }
    if s.host.trim().is_empty() {
        bail!("[smtp] host is empty");
    }
    let credentials = match (&s.username, &s.password_file) {
        (Some(u), Some(p)) => {
            let password = private_file(p, "SMTP password file")?;
            let password = password.lines().next().unwrap_or("").to_owned();
            if password.is_empty() {
                bail!("the SMTP password file {} is empty", p.display());
            }
            Some((u.clone(), SmtpPassword::new(password)))
        }
        (Some(_), None) => bail!("[smtp] username needs password_file (a file of mode 0600 holding the password)"),
        (None, Some(_)) => bail!("[smtp] password_file needs username"),
        (None, None) => None,
    };
    s.from
        .parse::<lettre::message::Mailbox>()
        .map_err(|e| anyhow!("[smtp] from {:?} is not a mailbox: {e}", s.from))?;
    let insecure_extra_root_pem = match &s.insecure_ca_file {
        Some(p) => {
            warnings.push(Warning::InsecureSmtpCa(p.display().to_string()));
            Some(std::fs::read(p).with_context(|| format!("reading [smtp] insecure_ca_file {}", p.display()))?)
        }
        None => None,
    };
    Ok(SmtpSettings {
        host: s.host.clone(),
        port: s.port.unwrap_or(tls.default_port()),
        tls,
        credentials,
        from: s.from.clone(),
        insecure_extra_root_pem,
        timeout: std::time::Duration::from_secs(s.timeout.unwrap_or(30).clamp(1, 120)),
    })
}

/// Whether a database URL carries a password (`postgres://user:secret@…` or `?password=…`).
fn has_password(database: &str) -> bool {
    url::Url::parse(database)
        .is_ok_and(|u| u.password().is_some() || u.query_pairs().any(|(k, _)| k.eq_ignore_ascii_case("password")))
}

/// OpenID Connect Discovery §3: an https URL (http is tolerated for loopback and development)
/// with no query or fragment. Plain http elsewhere comes back as a warning.
fn validate_issuer(s: &str) -> anyhow::Result<(String, Option<Warning>)> {
    let url = url::Url::parse(s).map_err(|e| anyhow!("issuer {s:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "https" | "http") {
        bail!("issuer must be an https URL");
    }
    if url.query().is_some() || url.fragment().is_some() {
        bail!("issuer must not have a query or fragment");
    }
    let issuer = s.trim_end_matches('/').to_owned();
    let warning = (url.scheme() == "http" && !matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]")))
        .then(|| Warning::PlainHttpIssuer(issuer.clone()));
    Ok((issuer, warning))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults() {
        let s = Settings::resolve(None, &env(&[]), &Overrides::default()).unwrap();
        assert_eq!(s.listen, "127.0.0.1:8080");
        assert_eq!(s.issuer, "http://127.0.0.1:8080");
        assert_eq!(s.database, "latchkey.db");
        assert_eq!(s.code_lifetime, 60);
    }

    #[test]
    fn file_then_env_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("latchkey.toml");
        std::fs::write(&p, "listen = \"127.0.0.1:9000\"\naccess_token_lifetime = 300\ndatabase = \"file.db\"\n")
            .unwrap();
        let e = env(&[("LATCHKEY_DATABASE", "env.db"), ("LATCHKEY_ACCESS_TOKEN_LIFETIME", "120"), ("PATH", "/bin")]);
        let s = Settings::resolve(Some(&p), &e, &Overrides::default()).unwrap();
        assert_eq!(s.listen, "127.0.0.1:9000");
        assert_eq!(s.issuer, "http://127.0.0.1:9000");
        assert_eq!(s.database, "env.db");
        assert_eq!(s.access_token_lifetime, 120);
        let flags = Overrides { database: Some("flag.db".into()), ..Default::default() };
        assert_eq!(Settings::resolve(Some(&p), &e, &flags).unwrap().database, "flag.db");
    }

    #[test]
    fn weak_settings_come_back_as_warnings() {
        let flags = Overrides {
            issuer: Some("http://id.example.com".into()),
            database: Some("postgres://latchkey:s3cret@db.internal/latchkey".into()),
            ..Default::default()
        };
        let s = Settings::resolve(None, &env(&[]), &flags).unwrap();
        assert_eq!(
            s.warnings,
            vec![Warning::PlainHttpIssuer("http://id.example.com".into()), Warning::PasswordInDatabaseFlag]
        );
        // The same URL from the environment is not in the process list; loopback http is fine.
        let e = env(&[("LATCHKEY_DATABASE", "postgres://latchkey:s3cret@db.internal/latchkey")]);
        assert!(Settings::resolve(None, &e, &Overrides::default()).unwrap().warnings.is_empty());
        assert!(has_password("postgres://db.internal/latchkey?user=l&password=x"));
        assert!(!has_password("postgres://latchkey@db.internal/latchkey"));
        assert!(!has_password("latchkey.db"));
    }

    #[test]
    fn the_second_factor_policy_is_read_and_checked() {
        use latchkey_core::authn::SecondFactorPolicy;
        assert_eq!(
            Settings::resolve(None, &env(&[]), &Overrides::default()).unwrap().second_factor,
            SecondFactorPolicy::Optional
        );
        let s =
            Settings::resolve(None, &env(&[("LATCHKEY_SECOND_FACTOR", "required")]), &Overrides::default()).unwrap();
        assert_eq!(s.provider_config().second_factor, SecondFactorPolicy::Required);
        let e =
            Settings::resolve(None, &env(&[("LATCHKEY_SECOND_FACTOR", "always")]), &Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("optional, required or passkey"), "{e}");
    }

    #[test]
    fn cimd_settings_and_their_warnings() {
        let s = Settings::resolve(None, &env(&[]), &Overrides::default()).unwrap();
        assert!(s.cimd && !s.insecure_cimd_loopback && s.insecure_cimd_ca.is_none());
        assert!(s.warnings.is_empty());
        let e = env(&[("LATCHKEY_INSECURE_CIMD_LOOPBACK", "1"), ("LATCHKEY_INSECURE_CIMD_CA", "/tmp/ca.pem")]);
        let s = Settings::resolve(None, &e, &Overrides::default()).unwrap();
        assert!(s.insecure_cimd_loopback);
        assert_eq!(s.warnings, vec![Warning::InsecureCimdLoopback, Warning::InsecureCimdCa("/tmp/ca.pem".into())]);
        assert!(s.warnings.iter().all(Warning::applies_to_serve_only));
        let flags = Overrides { insecure_cimd_loopback: true, ..Default::default() };
        assert!(Settings::resolve(None, &env(&[]), &flags).unwrap().insecure_cimd_loopback);
        let off = Settings::resolve(None, &env(&[("LATCHKEY_CIMD", "false")]), &Overrides::default()).unwrap();
        assert!(!off.cimd && !off.provider_config().cimd);
        assert!(Settings::resolve(None, &env(&[("LATCHKEY_CIMD", "maybe")]), &Overrides::default()).is_err());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("latchkey.toml");
        std::fs::write(&p, "cimd = false\ninsecure_cimd_loopback = true\n").unwrap();
        let s = Settings::resolve(Some(&p), &env(&[]), &Overrides::default()).unwrap();
        assert!(!s.cimd && s.insecure_cimd_loopback);
        assert_eq!(s.warnings, vec![Warning::InsecureCimdLoopback], "jwks_uri are fetched with cimd off too");
    }

    #[test]
    fn the_profile_par_and_client_assertion_settings_are_read_and_checked() {
        use latchkey_core::store::SecurityProfile;
        let s = Settings::resolve(None, &env(&[]), &Overrides::default()).unwrap();
        let c = s.provider_config().protection;
        assert_eq!(
            (c.profile, c.par.require, c.par.ttl, c.par.max_per_client),
            (SecurityProfile::Standard, false, 60, 1000)
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("latchkey.toml");
        let resolve = |text: &str| {
            std::fs::write(&p, text).unwrap();
            Settings::resolve(Some(&p), &env(&[]), &Overrides::default())
        };
        let s = resolve("profile = \"fapi2\"\n[par]\nrequire = true\nttl = 30\nmax_per_client = 5\n[client_assertion]\nmax_lifetime = 120\nskew = 5\n").unwrap();
        let c = s.provider_config().protection;
        assert_eq!((c.profile, c.par.require, c.par.ttl, c.par.max_per_client), (SecurityProfile::Fapi2, true, 30, 5));
        assert_eq!((c.client_assertion.max_lifetime, c.client_assertion.skew), (120, 5));
        for (text, why) in [
            ("profile = \"fapi\"\n", "standard or fapi2"),
            ("profile = \"fapi2\"\ncode_lifetime = 120\n", "code_lifetime"),
            ("[par]\nttl = 3600\n", "[par] ttl"),
            ("[par]\nmax_per_client = 0\n", "max_per_client"),
            ("[par]\nrequired = true\n", "required"),
            ("[client_assertion]\nmax_lifetime = 86400\n", "max_lifetime"),
        ] {
            let e = resolve(text).unwrap_err().to_string();
            assert!(e.contains(why), "{text}: {e}");
        }
        let e = Settings::resolve(None, &env(&[("LATCHKEY_PROFILE", "fapi2")]), &Overrides::default()).unwrap();
        assert_eq!(e.profile, SecurityProfile::Fapi2);
    }

    #[test]
    fn unknown_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("latchkey.toml");
        std::fs::write(&p, "issuer = \"https://id.example\"\nacess_token_lifetime = 5\n").unwrap();
        let err = Settings::resolve(Some(&p), &env(&[]), &Overrides::default()).unwrap_err().to_string();
        assert!(err.contains("acess_token_lifetime"), "{err}");
        let err =
            Settings::resolve(None, &env(&[("LATCHKEY_ISSUR", "x")]), &Overrides::default()).unwrap_err().to_string();
        assert!(err.contains("LATCHKEY_ISSUR"), "{err}");
        let err = Settings::resolve(None, &env(&[("LATCHKEY_CODE_LIFETIME", "ten")]), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("LATCHKEY_CODE_LIFETIME"), "{err}");
    }

    #[test]
    fn registration_defaults_to_open_and_the_token_file_must_be_private() {
        use latchkey_core::registration::RegistrationPolicy;
        use std::os::unix::fs::PermissionsExt;
        let s = Settings::resolve(None, &env(&[]), &Overrides::default()).unwrap();
        assert_eq!(s.registration, RegistrationPolicy::Open);
        assert_eq!((s.registration_idle_ttl, s.registrations_per_minute), (30 * 24 * 3600, 60));
        let off = Settings::resolve(None, &env(&[("LATCHKEY_REGISTRATION", "off")]), &Overrides::default()).unwrap();
        assert_eq!(off.registration, RegistrationPolicy::Off);
        let err = Settings::resolve(None, &env(&[("LATCHKEY_REGISTRATION", "closed")]), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("open, token or off"), "{err}");
        let err = Settings::resolve(None, &env(&[("LATCHKEY_REGISTRATION", "token")]), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("--registration-token-file"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("initial-token");
        std::fs::write(&file, "an-initial-access-token-0123456789\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let flags = Overrides {
            registration: Some("token".into()),
            registration_token_file: Some(file.clone()),
            ..Default::default()
        };
        let err = Settings::resolve(None, &env(&[]), &flags).unwrap_err().to_string();
        assert!(err.contains("can be read by others"), "a world-readable credential is refused: {err}");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let s = Settings::resolve(None, &env(&[]), &flags).unwrap();
        let hash = latchkey_proto::TokenHash::of("an-initial-access-token-0123456789");
        assert_eq!(s.registration, RegistrationPolicy::Token(hash), "trimmed, kept only as its hash");
        assert_eq!(s.provider_config().registration, s.registration);
    }

    #[test]
    fn smtp_is_checked_and_signup_needs_it() {
        use latchkey_server::smtp::SmtpTls;
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("latchkey.toml");
        let resolve = |text: &str| {
            std::fs::write(&cfg, text).unwrap();
            Settings::resolve(Some(&cfg), &env(&[]), &Overrides::default())
        };
        let s = resolve("").unwrap();
        assert!(s.smtp.is_none() && !s.provider_config().email.enabled);
        let err = resolve("signup = \"open\"\n").unwrap_err().to_string();
        assert!(err.contains("[smtp]"), "signup without mail is refused at start-up: {err}");
        let s = resolve("[smtp]\nhost = \"smtp.example.com\"\nfrom = \"Latchkey <id@example.com>\"\n").unwrap();
        let smtp = s.smtp.as_ref().unwrap();
        assert_eq!((smtp.tls, smtp.port), (SmtpTls::StartTls, 587), "STARTTLS by default");
        assert!(s.provider_config().email.enabled);
        let err = resolve("[smtp]\nhost = \"smtp.example.com\"\ntls = \"none\"\nfrom = \"a@example.com\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("in clear"), "{err}");
        let s = resolve("[smtp]\nhost = \"127.0.0.1\"\ntls = \"none\"\nfrom = \"a@example.com\"\n").unwrap();
        assert_eq!(s.smtp.unwrap().port, 25, "a local relay may be plain");
        let pw = dir.path().join("smtp-password");
        std::fs::write(&pw, "s3cret\n").unwrap();
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();
        let with_auth = format!(
            "signup = \"invite\"\n[smtp]\nhost = \"smtp.example.com\"\ntls = \"implicit\"\nusername = \"lk\"\npassword_file = \"{}\"\nfrom = \"a@example.com\"\n",
            pw.display()
        );
        let err = resolve(&with_auth).unwrap_err().to_string();
        assert!(err.contains("can be read by others"), "{err}");
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
        let s = resolve(&with_auth).unwrap();
        let smtp = s.smtp.as_ref().unwrap();
        assert_eq!((smtp.tls, smtp.port), (SmtpTls::Implicit, 465));
        assert!(!format!("{smtp:?}").contains("s3cret"), "the password never shows");
        assert_eq!(s.signup, latchkey_core::signup::SignupMode::Invite);
        assert!(resolve("[smtp]\nhost = \"h\"\nfrom = \"not a mailbox\"\n").is_err());
        assert!(resolve("[smtp]\nhost = \"h\"\nfrom = \"a@example.com\"\nusername = \"u\"\n").is_err());
    }
}
