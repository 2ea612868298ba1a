//! `grant_type=urn:ietf:params:oauth:grant-type:device_code` (RFC 8628 §3.4-3.5): the device
//! polls with its `device_code` until the user has answered on the verification page.

use latchkey_proto::dpop::DpopProof;
use latchkey_proto::metadata::TokenResponse;
use latchkey_proto::secret::random_token;
use latchkey_proto::{ErrorCode, OAuthError};

use crate::device_grant::{DeviceStatus, PollStep};
use crate::store::{ClientRecord, GrantRecord, GrantType, Issuance};
use crate::{Error, Provider, UnixTime};

/// The refusals of §3.5 with what a client (and the developer reading its log) needs to know.
fn refusal(step: PollStep, interval: u64) -> OAuthError {
    match step {
        PollStep::Pending => OAuthError::new(
            ErrorCode::AuthorizationPending,
            format!("the user has not answered yet: poll again in {interval} seconds"),
        ),
        PollStep::SlowDown => OAuthError::new(
            ErrorCode::SlowDown,
            format!("polled sooner than the interval: the interval is now {interval} seconds (RFC 8628 §3.5)"),
        ),
        PollStep::Denied => OAuthError::new(ErrorCode::AccessDenied, "the user denied the request"),
        PollStep::Expired => OAuthError::new(
            ErrorCode::ExpiredToken,
            "the device code expired before the user approved it: start again with a new device authorization request",
        ),
        PollStep::Approved => OAuthError::invalid_grant("the device code was already used"),
    }
}

fn unknown() -> OAuthError {
    OAuthError::invalid_grant(
        "the device code is invalid: it was never issued, was already used, or was denied or expired and removed",
    )
}

/// One poll of the token endpoint with a device code.
pub async fn poll(
    p: &Provider,
    client: &ClientRecord,
    device_code: &latchkey_proto::DeviceCode,
    proof: Option<&DpopProof>,
    now: UnixTime,
) -> Result<TokenResponse, Error> {
    if !client.allows(GrantType::DeviceCode) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "this client is not registered for the device authorization grant",
        )
        .into());
    }
    let hash = device_code.hash();
    let Some((record, step)) = p.store.poll_device(&hash, now).await? else {
        return Err(unknown().into());
    };
    // Another client's code is unknown to this one; its poll still counted against the interval,
    // which only the holder of a 256-bit device code can reach.
    if record.client_id != client.client_id {
        tracing::warn!(client_id = %client.client_id, "a device code was presented by another client");
        return Err(unknown().into());
    }
    let interval = match step {
        PollStep::SlowDown => record.interval.saturating_add(crate::device_grant::SLOW_DOWN_STEP),
        _ => record.interval,
    };
    let DeviceStatus::Approved(approval) = &record.status else {
        return Err(refusal(step, interval).into());
    };
    if step != PollStep::Approved {
        return Err(refusal(step, interval).into());
    }
    let grant = GrantRecord {
        id: random_token(),
        client_id: client.client_id.clone(),
        user_id: approval.user_id.clone(),
        scope: record.scope.clone(),
        sid: approval.sid.clone(),
        // The device's sign-in is its own: signing out of the browser the user approved from (a
        // phone, someone else's laptop) does not sign the device out, as with `gh auth login`.
        // The grant ends when it expires, is revoked from the account's apps page, or the
        // password changes. `sid` still names the approving session, for the record.
        offline: true,
        auth_time: approval.auth_time,
        created_at: now,
        expires_at: now + p.config.refresh_token_ttl as UnixTime,
        revoked_at: None,
        resource: record.resource.clone(),
        authn: Some(approval.authn.clone()),
        claims: None,
        dpop_jkt: crate::dpop::family_key(client, proof),
    };
    let user = super::user_of(p, &approval.user_id).await?;
    let aud = super::audience_of(p, client, &grant);
    let opts = super::MintOptions {
        aud: &aud,
        nonce: None,
        id_token: true,
        refresh: true,
        user: Some(&user),
        dpop_jkt: proof.map(|p| p.jkt.as_str()),
    };
    let minted = super::mint(p, client, &grant, &record.scope, opts, now)?;
    let issuance = Issuance { grant, refresh: minted.refresh, access: minted.access };
    if !p.store.redeem_device(&hash, &issuance).await? {
        // A concurrent poll with the same code redeemed it first.
        return Err(refusal(PollStep::Approved, interval).into());
    }
    tracing::info!(client_id = %client.client_id, "device authorization redeemed");
    Ok(minted.response)
}
