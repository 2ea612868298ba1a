//! The device authorization endpoint (RFC 8628 §3.1-3.2): the device's request for a pair of
//! codes, authenticated as at the token endpoint, checked as an authorization request would be
//! (the grant, the scope, the resource), and stored, bounded per client.

use std::net::IpAddr;

use latchkey_proto::{ClientAuth, ErrorCode, OAuthError, Params, ResourceUri, Scope};

use super::{DeviceInsert, DeviceRecord, DeviceStatus, display_user_code, new_device_code, new_user_code};
use crate::grant::client_auth::{self, Endpoint};
use crate::store::GrantType;
use crate::{Error, Provider, UnixTime, resource};

/// The path of the verification page, under the issuer.
pub const VERIFICATION_PATH: &str = "/device";

/// The answer of the device authorization endpoint (RFC 8628 §3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceAuthorization {
    pub device_code: String,
    /// As shown to people: `WDJB-MJHT`.
    pub user_code: String,
    pub verification_uri: String,
    /// The verification URI with the user code in it, for a QR code or a link (§3.3.1).
    pub verification_uri_complete: String,
    pub expires_in: u64,
    pub interval: u64,
}

/// How many times a freshly drawn user code may collide before the request fails: with N live
/// codes the chance of one collision is N / 20^8, so a second draw practically never happens.
const USER_CODE_DRAWS: usize = 5;

impl Provider {
    /// `POST /device_authorization`.
    pub async fn device_authorization(
        &self,
        auth: &ClientAuth,
        params: &Params,
        ip: Option<IpAddr>,
        now: UnixTime,
    ) -> Result<DeviceAuthorization, Error> {
        let client = client_auth::authenticate(self, auth, Endpoint::DeviceAuthorization, now).await?;
        if !client.allows(GrantType::DeviceCode) {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "this client is not registered for the device authorization grant (latchkey client add --device)",
            )
            .into());
        }
        // The resource first: the scopes a client may ask for can depend on it (RFC 8707).
        let requested = params.get("resource").map(ResourceUri::parse).transpose()?;
        let registered = match &requested {
            Some(uri) => self.store.resource(uri).await?,
            None => None,
        };
        let allow = self.config.allow_unregistered_resources;
        let target = resource::decide_target(&client, requested.as_ref(), registered.as_ref(), allow)?;
        let allowed = resource::allowed_scope(&client, &target);
        let scope = Scope::parse(params.get("scope").unwrap_or(""))?;
        if !scope.is_subset(&allowed) {
            return Err(OAuthError::invalid_scope(format!(
                "scope not allowed for this client: {}",
                scope.missing_from(&allowed)
            ))
            .into());
        }
        let cfg = &self.config.device;
        let device_code = new_device_code();
        for _ in 0..USER_CODE_DRAWS {
            let user_code = new_user_code();
            let record = DeviceRecord {
                device_hash: latchkey_proto::TokenHash::of(&device_code),
                user_code_hash: super::user_code_hash(&user_code),
                client_id: client.client_id.clone(),
                scope: scope.clone(),
                resource: target.resource.clone(),
                created_at: now,
                expires_at: now.saturating_add(i64::try_from(cfg.ttl).unwrap_or(i64::MAX)),
                interval: cfg.interval,
                last_poll_at: None,
                requested_from: ip.map(crate::throttle::source),
                status: DeviceStatus::Pending,
            };
            match self.store.insert_device(&record, cfg.max_per_client, now).await? {
                DeviceInsert::Inserted => {
                    tracing::info!(client_id = %client.client_id, "device authorization requested");
                    let shown = display_user_code(&user_code);
                    let verification_uri = format!("{}{VERIFICATION_PATH}", self.issuer());
                    return Ok(DeviceAuthorization {
                        device_code,
                        verification_uri_complete: format!("{verification_uri}?user_code={shown}"),
                        verification_uri,
                        user_code: shown,
                        expires_in: cfg.ttl,
                        interval: cfg.interval,
                    });
                }
                DeviceInsert::UserCodeTaken => continue,
                DeviceInsert::ClientFull => {
                    tracing::warn!(client_id = %client.client_id, "device authorization: the client's limit is reached");
                    return Err(OAuthError::new(
                        ErrorCode::TemporarilyUnavailable,
                        format!(
                            "this client already has {} device codes waiting for a user; they expire {} seconds after they were issued",
                            cfg.max_per_client, cfg.ttl
                        ),
                    )
                    .into());
                }
            }
        }
        Err(anyhow::anyhow!("no free user code after {USER_CODE_DRAWS} draws").into())
    }
}
