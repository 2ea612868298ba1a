//! The username-less sign-in: "Sign in with a passkey" on the login page, for an application's
//! request or for the account pages alike. A discoverable credential names its user (the user
//! handle); user verification makes it two factors in one step.

use std::net::IpAddr;

use latchkey_proto::{SessionToken, TokenHash};
use serde_json::json;
use webauthn_rs::prelude::{Passkey, PublicKeyCredential};

use super::manage::Ceremonial;
use super::store::{PasskeyRecord, PasskeyUse};
use super::{Ceremony, PasskeyError, cred_id_text};
use crate::authn::{Authentication, Method, Next};
use crate::authorize::Step;
use crate::store::{Reservation, UserRecord};
use crate::{Provider, UnixTime, audit, throttle};

/// A passkey that signed someone in: what the sign-in learned about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasskeyAssertion {
    pub user_id: String,
    pub cred_id: String,
    /// The credential cannot leave its authenticator (not backup-eligible): RFC 8176 `hwk`;
    /// otherwise `swk`.
    pub hardware: bool,
    /// The authenticator verified the person (always, with webauthn-rs's passkey ceremonies).
    pub user_verified: bool,
}

impl PasskeyAssertion {
    /// The RFC 8176 method this passkey stands for.
    pub fn amr(&self) -> &'static str {
        if self.hardware { "hwk" } else { "swk" }
    }

    /// As an authentication method (`crate::authn`).
    pub fn method(&self) -> Method {
        Method::Passkey { hardware: self.hardware, user_verified: self.user_verified }
    }
}

/// The ceremony an assertion answers: the username-less sign-in's (any discoverable
/// credential), or one for a known user's passkeys (the second factor).
pub(crate) enum AssertionState {
    Discoverable(Box<webauthn_rs::prelude::DiscoverableAuthentication>),
    Known(Box<webauthn_rs::prelude::PasskeyAuthentication>),
}

/// The end of a passkey sign-in.
#[derive(Debug)]
pub enum PasskeySignedIn {
    /// Signed in: set the session and known-device cookies, and go on to `next`.
    Done { session: SessionToken, max_age: u64, device: String, next: Step },
    /// The policy or the request needs more than the passkey gave: `next` is the second-factor
    /// step ([`Step::SecondFactor`], with its cookie).
    MoreNeeded { next: Step },
}

impl Provider {
    /// Starts a username-less sign-in for the pending request `pending_id` (the login page's).
    pub async fn start_passkey_sign_in(
        &self,
        pending_id: &str,
        ip: Option<IpAddr>,
        now: UnixTime,
    ) -> Result<Ceremonial, PasskeyError> {
        let rp = self.relying_party()?;
        if self.load_pending(pending_id, now).await?.is_err() {
            return Err(PasskeyError::CeremonyExpired);
        }
        let (rcr, state) = rp.webauthn.start_discoverable_authentication()?;
        let mut options = serde_json::to_value(&rcr).map_err(|e| anyhow::anyhow!("serialising options: {e}"))?;
        // A button press, not the autofill of conditional mediation: the page asks when the person does.
        if let Some(o) = options.as_object_mut() {
            o.remove("mediation");
        }
        let ceremony = Ceremony::SignIn { pending: TokenHash::of(pending_id).as_str().to_owned(), state };
        let ceremony = self.save_ceremony(&ceremony, ip, now).await?;
        Ok(Ceremonial { ceremony, options })
    }

    /// Finishes a username-less sign-in: verifies the assertion (`credential`, the browser's
    /// `PublicKeyCredential` as JSON) and creates the session exactly as a password sign-in does,
    /// with the same throttling and audit events.
    #[allow(clippy::too_many_arguments)]
    pub async fn finish_passkey_sign_in(
        &self,
        pending_id: &str,
        ceremony: &str,
        credential: &str,
        ip: Option<IpAddr>,
        device: Option<&str>,
        user_agent: Option<&str>,
        now: UnixTime,
    ) -> Result<PasskeySignedIn, PasskeyError> {
        let rp = self.relying_party()?;
        let Ceremony::SignIn { pending: bound, state } = self.take_ceremony(ceremony, now).await? else {
            return Err(PasskeyError::CeremonyExpired);
        };
        if bound != TokenHash::of(pending_id).as_str() {
            return Err(PasskeyError::CeremonyExpired);
        }
        let Ok((pending, client)) = self.load_pending(pending_id, now).await? else {
            return Err(PasskeyError::CeremonyExpired);
        };
        let cred: PublicKeyCredential =
            serde_json::from_str(credential).map_err(|e| PasskeyError::Malformed(e.to_string()))?;
        let client_id = client.client_id.as_str().to_owned();
        let (rec, user) = match self.identify(&cred).await? {
            Some(x) => x,
            None => {
                // Counted under the network's key only: there is no account to count it under.
                let rules: Vec<_> =
                    throttle::keys("", ip, None).into_iter().filter(|(k, _)| !throttle::is_account_key(k)).collect();
                self.reserve(&rules, &client_id, ip, now).await?;
                let detail = json!({ "method": "passkey", "unknown_credential": true });
                let e = audit::Event { client_id: Some(&client_id), ip, detail: Some(detail), ..Default::default() };
                audit::record(self.store.as_ref(), now, "login_failure", e).await;
                return Err(PasskeyError::UnknownCredential);
            }
        };
        let known_device = device.and_then(|c| crate::device::verify(&self.server_key, c, &user.id, now));
        let rules = throttle::keys(&user.username, ip, known_device);
        let refused_before = self.reserve(&rules, &client_id, ip, now).await?;
        let state = AssertionState::Discoverable(Box::new(state));
        let assertion = match self.verify_assertion(rp, &cred, state, &rec, now).await {
            Ok(a) => a,
            Err(e) => {
                let mut detail = json!({ "method": "passkey", "username": user.username, "reason": e.to_string() });
                if refused_before > 0 {
                    detail["refused_while_throttled"] = json!(refused_before);
                }
                let ev =
                    audit::Event { user_id: Some(&user.id), client_id: Some(&client_id), ip, detail: Some(detail) };
                audit::record(self.store.as_ref(), now, "login_failure", ev).await;
                return Err(e);
            }
        };
        // A locked account signs in with no method (`latchkey user lock`); as for a password, the
        // attempt stays counted as a failure.
        if user.locked_at.is_some() {
            return Err(self.passkey_refuse_locked(&user, &client_id, ip, now).await);
        }
        // A success clears this account's counters and refunds the IP's, as for a password.
        let (clear, refund): (Vec<String>, Vec<String>) =
            rules.into_iter().map(|(k, _)| k).partition(|k| throttle::is_account_key(k));
        self.store.throttle_settle(&clear, &refund).await?;
        let mut detail = json!({ "method": "passkey", "amr": assertion.amr(), "passkey": rec.name });
        if refused_before > 0 {
            detail["refused_while_throttled"] = json!(refused_before);
        }
        let e = audit::Event { user_id: Some(&user.id), client_id: Some(&client_id), ip, detail: Some(detail) };
        audit::record(self.store.as_ref(), now, "login_success", e).await;
        // One step, two factors: the authenticator's device and the person's PIN or biometric.
        let authn = Authentication::of(&[assertion.method()]);
        // The policy, the request's `acr` and the user's own factors decide, as after a password;
        // a verified passkey reaches the highest level, so nothing more is asked in practice.
        let enrolled = self.enrolled(&user.id).await?;
        let need = crate::authn::decide(self.policy_for(&client), pending.acr.as_ref(), &enrolled, Some(&authn));
        if need != Next::Done {
            let next = self.begin_second_factor(pending_id, &user.id, authn, None, need, now).await?;
            return Ok(PasskeySignedIn::MoreNeeded { next });
        }
        let meta = crate::sessions::meta(ip, user_agent);
        // Refused when a lock landed since the user was read: the store checks it atomically.
        let Some((session, record)) = self.create_session(&user.id, authn, meta, now).await? else {
            return Err(self.passkey_refuse_locked(&user, &client_id, ip, now).await);
        };
        let device = crate::device::issue(&self.server_key, known_device, &user.id, now);
        let next = match self.finish_sign_in(pending_id, &pending, &client, &record, now).await? {
            Ok(next) => next,
            Err(_) => return Err(PasskeyError::CeremonyExpired),
        };
        Ok(PasskeySignedIn::Done { session, max_age: self.config.session_ttl, device, next })
    }

    async fn passkey_refuse_locked(
        &self,
        user: &UserRecord,
        client_id: &str,
        ip: Option<IpAddr>,
        now: UnixTime,
    ) -> PasskeyError {
        let detail = Some(json!({ "username": user.username, "method": "passkey" }));
        let e = audit::Event { user_id: Some(&user.id), client_id: Some(client_id), ip, detail };
        audit::record(self.store.as_ref(), now, "login_refused_locked", e).await;
        PasskeyError::Locked
    }

    /// The stored passkey and its user that an assertion names, if its user handle matches.
    async fn identify(&self, cred: &PublicKeyCredential) -> Result<Option<(PasskeyRecord, UserRecord)>, PasskeyError> {
        let rp = self.relying_party()?;
        let Ok((handle, raw_id)) = rp.webauthn.identify_discoverable_authentication(cred) else {
            return Ok(None);
        };
        let Some(rec) = self.store.passkey(&cred_id_text(raw_id)).await? else { return Ok(None) };
        // WebAuthn §7.2 step 6: the user handle must be the credential's owner's.
        if !rec.user_handle.eq_ignore_ascii_case(&handle.to_string()) {
            return Ok(None);
        }
        let Some(user) = self.store.user(&rec.user_id).await? else { return Ok(None) };
        Ok(Some((rec, user)))
    }

    /// One attempt, counted in advance like a password attempt (`throttle`); the refusals since
    /// the last counted failure, or `Throttled`.
    async fn reserve(
        &self,
        rules: &[(String, throttle::Rule)],
        client_id: &str,
        ip: Option<IpAddr>,
        now: UnixTime,
    ) -> Result<u64, PasskeyError> {
        match self.store.throttle_reserve(rules, now).await? {
            Reservation::Blocked { until, first } => {
                if first {
                    let detail = json!({ "retry_after": until - now, "method": "passkey" });
                    let e = audit::Event { client_id: Some(client_id), ip, detail: Some(detail), ..Default::default() };
                    audit::record(self.store.as_ref(), now, "login_throttled", e).await;
                }
                Err(PasskeyError::Throttled((until - now).max(1) as u64))
            }
            Reservation::Reserved { refused_while_blocked } => Ok(refused_while_blocked),
        }
    }

    /// Verifies an assertion against the stored passkey and records the use, the counter moving
    /// forward in the same conditional update (clone detection, WebAuthn §6.1.1).
    pub(crate) async fn verify_assertion(
        &self,
        rp: &super::RelyingParty,
        cred: &PublicKeyCredential,
        state: AssertionState,
        rec: &PasskeyRecord,
        now: UnixTime,
    ) -> Result<PasskeyAssertion, PasskeyError> {
        let mut passkey: Passkey =
            serde_json::from_str(&rec.credential).map_err(|e| anyhow::anyhow!("reading a stored passkey: {e}"))?;
        let verified = match state {
            AssertionState::Discoverable(state) => {
                rp.webauthn.finish_discoverable_authentication_v2(cred, *state, &passkey)
            }
            AssertionState::Known(state) => rp.webauthn.finish_passkey_authentication(cred, &state),
        };
        let res = match verified {
            Ok(r) => r,
            Err(e) => {
                let e = PasskeyError::from(e);
                if matches!(e, PasskeyError::CounterRegression) {
                    self.audit_regression(rec, None, now).await;
                }
                return Err(e);
            }
        };
        passkey.update_credential(&res);
        let credential = serde_json::to_string(&passkey).map_err(|e| anyhow::anyhow!("serialising a passkey: {e}"))?;
        let used = PasskeyUse {
            sign_count: res.counter(),
            backup_eligible: res.backup_eligible(),
            backup_state: res.backup_state(),
            credential,
            at: now,
        };
        if !self.store.record_passkey_use(&rec.cred_id, &used).await? {
            // Removed meanwhile, or another use with this counter value got there first.
            if self.store.passkey(&rec.cred_id).await?.is_none() {
                return Err(PasskeyError::UnknownCredential);
            }
            self.audit_regression(rec, Some(res.counter()), now).await;
            return Err(PasskeyError::CounterRegression);
        }
        Ok(PasskeyAssertion {
            user_id: rec.user_id.clone(),
            cred_id: rec.cred_id.clone(),
            hardware: !res.backup_eligible(),
            user_verified: res.user_verified(),
        })
    }

    async fn audit_regression(&self, rec: &PasskeyRecord, reported: Option<u32>, now: UnixTime) {
        let detail = json!({ "passkey": rec.name, "stored_count": rec.sign_count, "reported_count": reported });
        let e = audit::Event { user_id: Some(&rec.user_id), detail: Some(detail), ..Default::default() };
        audit::record(self.store.as_ref(), now, "passkey_counter_regression", e).await;
    }
}

/// The JSON a finished passkey step answers the page with: where the browser goes next.
pub fn next_location(step: &Step) -> Option<String> {
    match step {
        Step::Redirect(url) => Some(url.clone()),
        Step::Consent { pending, .. } => Some(format!("/consent?req={pending}")),
        Step::SecondFactor { pending, .. } => Some(format!("/login/two-step?req={pending}")),
        Step::Login { .. } | Step::ErrorPage(_) => None,
    }
}
