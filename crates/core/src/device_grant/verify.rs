//! The verification page's decisions (RFC 8628 §3.3): a signed-in person enters a user code,
//! sees what asked for it, and approves or denies.
//!
//! A user code has about 34.6 bits, so guessing is bounded (§5.1): every lookup and every answer
//! is reserved against the throttle first, under the person's session and under their network,
//! and only a code that exists is refunded. An unknown, expired, used and malformed code get the
//! same answer, so the page tells a guesser nothing but "no". Approving someone else's code hands
//! that device the approver's tokens (the reverse of phishing), which is why the answer is
//! throttled as the lookup is, and why the page shows when and from where the code was asked for.

use std::net::IpAddr;

use latchkey_proto::Scope;

use super::{Approval, DeviceRecord, DeviceStatus, display_user_code, normalize_user_code, user_code_hash};
use crate::account::AccountSession;
use crate::authn::Acr;
use crate::store::Reservation;
use crate::throttle::{IP, Rule, source};
use crate::{Error, Provider, UnixTime};

/// User-code misses per session: a typo or two is free, then the waits double up to 15 minutes.
pub const USER_CODE_SESSION: Rule = Rule { free: 5, base: 1, max: 900 };

/// What the consent page shows about a pending device authorization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceView {
    /// As typed back to the person: `WDJB-MJHT`.
    pub user_code: String,
    pub client_id: String,
    pub client_name: String,
    pub scope: Scope,
    pub resource: Option<String>,
    pub requested_at: UnixTime,
    pub requested_from: Option<String>,
    pub expires_at: UnixTime,
    /// The sign-in the client requires (the stricter of the deployment's and the client's second
    /// factor policy) when the person's session falls short of it: approving is refused until
    /// they sign in with it, so the device flow is no way around a client's policy.
    pub needs: Option<Acr>,
}

/// What a code comes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup<T> {
    Found(T),
    /// Unknown, expired, already answered or malformed: one answer for all.
    NotFound,
    /// Too many misses: try again after this time.
    Throttled {
        until: UnixTime,
    },
    /// The client requires a stronger sign-in than this session's (a second factor, a passkey):
    /// nothing was recorded.
    StepUpNeeded {
        level: Acr,
    },
}

/// The person's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    Approve,
    Deny,
}

fn keys(session: &AccountSession, ip: Option<IpAddr>) -> Vec<(String, Rule)> {
    let mut keys = vec![(format!("devcode-sid:{}", session.session.sid), USER_CODE_SESSION)];
    if let Some(ip) = ip {
        keys.push((format!("devcode-ip:{}", source(ip)), IP));
    }
    keys
}

impl Provider {
    /// Reserves one attempt; `Some(until)`: blocked.
    async fn reserve_user_code_attempt(
        &self,
        keys: &[(String, Rule)],
        now: UnixTime,
    ) -> Result<Option<UnixTime>, Error> {
        match self.store.throttle_reserve(keys, now).await? {
            Reservation::Reserved { .. } => Ok(None),
            Reservation::Blocked { until, .. } => Ok(Some(until)),
        }
    }

    async fn refund_user_code_attempt(&self, keys: &[(String, Rule)]) -> Result<(), Error> {
        let refund: Vec<String> = keys.iter().map(|(k, _)| k.clone()).collect();
        Ok(self.store.throttle_settle(&[], &refund).await?)
    }

    /// The live, pending record a typed code names, with the code normalised, after one attempt
    /// was reserved under `keys`. `Err`: the answer to give instead (throttled, or not found; the
    /// attempt stays counted either way).
    async fn reserve_and_find(
        &self,
        keys: &[(String, Rule)],
        typed: &str,
        now: UnixTime,
    ) -> Result<Result<(String, DeviceRecord), Lookup<DeviceView>>, Error> {
        if let Some(until) = self.reserve_user_code_attempt(keys, now).await? {
            return Ok(Err(Lookup::Throttled { until }));
        }
        let Some(code) = normalize_user_code(typed) else { return Ok(Err(Lookup::NotFound)) };
        match self.store.pending_device(&user_code_hash(&code), now).await? {
            Some(record) => Ok(Ok((code, record))),
            None => Ok(Err(Lookup::NotFound)),
        }
    }

    /// The pending device authorization a typed user code names, for the consent page.
    pub async fn device_by_user_code(
        &self,
        session: &AccountSession,
        typed: &str,
        ip: Option<IpAddr>,
        now: UnixTime,
    ) -> Result<Lookup<DeviceView>, Error> {
        let keys = keys(session, ip);
        let (code, record) = match self.reserve_and_find(&keys, typed, now).await? {
            Ok(found) => found,
            Err(answer) => return Ok(answer),
        };
        self.refund_user_code_attempt(&keys).await?;
        let client = self.store.client(&record.client_id).await?;
        Ok(Lookup::Found(self.device_view(&record, client, &code, session)))
    }

    fn device_view(
        &self,
        r: &DeviceRecord,
        client: Option<crate::store::ClientRecord>,
        code: &str,
        session: &AccountSession,
    ) -> DeviceView {
        let needs = self.step_up_needed(client.as_ref(), session);
        DeviceView {
            needs,
            user_code: display_user_code(code),
            client_id: r.client_id.to_string(),
            client_name: client.map_or_else(|| r.client_id.to_string(), |c| c.name),
            scope: r.scope.clone(),
            resource: r.resource.as_ref().map(ToString::to_string),
            requested_at: r.created_at,
            requested_from: r.requested_from.clone(),
            expires_at: r.expires_at,
        }
    }

    /// Records the person's answer to the device authorization a user code names. The grant
    /// will be theirs, from this session, with the session's authentication (`amr`, `acr`).
    pub async fn answer_device(
        &self,
        session: &AccountSession,
        typed: &str,
        answer: Answer,
        ip: Option<IpAddr>,
        now: UnixTime,
    ) -> Result<Lookup<DeviceView>, Error> {
        let keys = keys(session, ip);
        let (code, record) = match self.reserve_and_find(&keys, typed, now).await? {
            Ok(found) => found,
            Err(answer) => return Ok(answer),
        };
        let client = self.store.client(&record.client_id).await?;
        if answer == Answer::Approve
            && let Some(level) = self.step_up_needed(client.as_ref(), session)
        {
            // Not refunded: a guesser gains nothing by holding a weak session.
            return Ok(Lookup::StepUpNeeded { level });
        }
        let s = &session.session;
        let status = match answer {
            Answer::Approve => DeviceStatus::Approved(Approval {
                user_id: session.user.id.clone(),
                sid: s.sid.clone(),
                auth_time: s.auth_time,
                authn: s.authn.clone(),
            }),
            Answer::Deny => DeviceStatus::Denied,
        };
        // Atomic: of two answers (two tabs, two people with the same code), one is recorded.
        if !self.store.decide_device(&record.user_code_hash, &status, now).await? {
            return Ok(Lookup::NotFound);
        }
        self.refund_user_code_attempt(&keys).await?;
        let name = match answer {
            Answer::Approve => "device_approved",
            Answer::Deny => "device_denied",
        };
        let detail = serde_json::json!({ "scope": record.scope.to_string(), "requested_from": record.requested_from });
        let e = crate::audit::Event {
            user_id: Some(&session.user.id),
            client_id: Some(record.client_id.as_str()),
            ip,
            detail: Some(detail),
        };
        crate::audit::record(self.store.as_ref(), now, name, e).await;
        Ok(Lookup::Found(self.device_view(&record, client, &code, session)))
    }

    /// The level the client's sign-ins must reach (the stricter of the deployment's and the
    /// client's policy, as at `/authorize`), when this session has not reached it.
    fn step_up_needed(&self, client: Option<&crate::store::ClientRecord>, session: &AccountSession) -> Option<Acr> {
        let policy = client.map_or(self.config.second_factor, |c| self.config.second_factor.max(c.second_factor));
        let level = policy.level();
        (session.session.authn.acr() < level).then_some(level)
    }
}
