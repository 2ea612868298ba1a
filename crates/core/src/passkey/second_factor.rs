//! A passkey as the second factor after the password: a ceremony for the passkeys of the user the
//! password named, bound to that sign-in. The second-factor step (`crate::factors`) decides
//! whether a passkey is accepted and what follows; this module proves the assertion.

use std::net::IpAddr;

use latchkey_proto::{PartialSignInToken, SessionToken, TokenHash};
use serde_json::json;
use webauthn_rs::prelude::{Passkey, PublicKeyCredential};

use super::manage::Ceremonial;
use super::sign_in::{AssertionState, PasskeyAssertion};
use super::{Ceremony, PasskeyError, cred_id_text};
use crate::authn::{Acr, Method, Next};
use crate::authorize::Step;
use crate::factors::sign_in::TwoStepOutcome;
use crate::factors::{Factor, VerifiedPasskey};
use crate::{Provider, UnixTime, audit};

impl Provider {
    /// Starts an assertion by one of `user_id`'s passkeys for the sign-in of `pending_id`.
    pub(crate) async fn start_user_passkey(
        &self,
        pending_id: &str,
        user_id: &str,
        ip: Option<IpAddr>,
        now: UnixTime,
    ) -> Result<Ceremonial, PasskeyError> {
        let rp = self.relying_party()?;
        let records = self.store.user_passkeys(user_id).await?;
        if records.is_empty() {
            return Err(PasskeyError::UnknownCredential);
        }
        let keys = records
            .iter()
            .map(|r| serde_json::from_str::<Passkey>(&r.credential))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("reading a stored passkey: {e}"))?;
        let (rcr, state) = rp.webauthn.start_passkey_authentication(&keys)?;
        let options = serde_json::to_value(&rcr).map_err(|e| anyhow::anyhow!("serialising options: {e}"))?;
        let ceremony = Ceremony::SecondFactor {
            pending: TokenHash::of(pending_id).as_str().to_owned(),
            user_id: user_id.to_owned(),
            state,
        };
        let ceremony = self.save_ceremony(&ceremony, ip, now).await?;
        Ok(Ceremonial { ceremony, options })
    }

    /// Verifies the answer to [`Provider::start_user_passkey`]: a passkey of `user_id`, for this
    /// sign-in, whose counter moves forward (recorded in the same step).
    pub(crate) async fn finish_user_passkey(
        &self,
        pending_id: &str,
        user_id: &str,
        ceremony: &str,
        credential: &str,
        now: UnixTime,
    ) -> Result<PasskeyAssertion, PasskeyError> {
        let rp = self.relying_party()?;
        let Ceremony::SecondFactor { pending, user_id: owner, state } = self.take_ceremony(ceremony, now).await? else {
            return Err(PasskeyError::CeremonyExpired);
        };
        if pending != TokenHash::of(pending_id).as_str() || owner != user_id {
            return Err(PasskeyError::CeremonyExpired);
        }
        let cred: PublicKeyCredential =
            serde_json::from_str(credential).map_err(|e| PasskeyError::Malformed(e.to_string()))?;
        let rec = self
            .store
            .passkey(&cred_id_text(cred.get_credential_id()))
            .await?
            .filter(|r| r.user_id == user_id)
            .ok_or(PasskeyError::UnknownCredential)?;
        self.verify_assertion(rp, &cred, AssertionState::Known(Box::new(state)), &rec, now).await
    }
}

/// The step's outcome, or the page to start again from.
pub type StepResult = Result<Result<TwoStepOutcome, Step>, PasskeyError>;

impl Provider {
    /// `POST /login/two-step/passkey/options`: a challenge for the passkeys of the user whose
    /// password this browser gave (its partial sign-in), where the step accepts a passkey.
    pub async fn start_passkey_second_factor(
        &self,
        pending_id: &str,
        cookie: Option<&PartialSignInToken>,
        ip: Option<IpAddr>,
        now: UnixTime,
    ) -> Result<Ceremonial, PasskeyError> {
        let Ok((partial, _, _)) = self.partial(pending_id, cookie, now).await? else {
            return Err(PasskeyError::CeremonyExpired);
        };
        if !matches!(partial.need, Next::Ask { accepted, .. } if accepted.passkey) {
            return Err(PasskeyError::NotAccepted);
        }
        self.start_user_passkey(pending_id, &partial.user_id, ip, now).await
    }

    /// `POST /login/two-step/passkey`: the assertion, verified, then presented to the
    /// second-factor step as [`Factor::Passkey`] (which checks it is this sign-in's user's).
    #[allow(clippy::too_many_arguments)]
    pub async fn finish_passkey_second_factor(
        &self,
        pending_id: &str,
        cookie: Option<&PartialSignInToken>,
        session: Option<&SessionToken>,
        ceremony: &str,
        credential: &str,
        ip: Option<IpAddr>,
        device: Option<&str>,
        user_agent: Option<&str>,
        now: UnixTime,
    ) -> StepResult {
        let partial = match self.partial(pending_id, cookie, now).await? {
            Ok((partial, _, _)) => partial,
            Err(step) => return Ok(Err(step)),
        };
        let a = match self.finish_user_passkey(pending_id, &partial.user_id, ceremony, credential, now).await {
            Ok(a) => a,
            Err(e) => {
                let detail = json!({ "factor": "passkey", "reason": e.to_string() });
                let ev =
                    audit::Event { user_id: Some(&partial.user_id), ip, detail: Some(detail), ..Default::default() };
                audit::record(self.store.as_ref(), now, "second_factor_failure", ev).await;
                return Err(e);
            }
        };
        let factor = Factor::Passkey(VerifiedPasskey {
            user_id: a.user_id,
            hardware: a.hardware,
            user_verified: a.user_verified,
        });
        Ok(self.submit_second_factor(pending_id, cookie, session, factor, ip, device, user_agent, now).await?)
    }

    /// `POST /login/enrol/passkey/options`: where the policy requires a passkey and the user has
    /// none, creation options for their first one, bound to this browser's partial sign-in.
    pub async fn start_passkey_enrolment(
        &self,
        pending_id: &str,
        cookie: Option<&PartialSignInToken>,
        name: &str,
        ip: Option<IpAddr>,
        now: UnixTime,
    ) -> Result<Ceremonial, PasskeyError> {
        let name = super::valid_name(name)?;
        let Ok((partial, _, _)) = self.partial(pending_id, cookie, now).await? else {
            return Err(PasskeyError::CeremonyExpired);
        };
        if !matches!(partial.need, Next::Enrol { level: Acr::PhishingResistant }) {
            return Err(PasskeyError::NotAccepted);
        }
        let user = self.store.user(&partial.user_id).await?.ok_or(PasskeyError::CeremonyExpired)?;
        let (options, state, user_handle) = self.registration_options(&user).await?;
        let ceremony = Ceremony::EnrolAtSignIn {
            pending: TokenHash::of(pending_id).as_str().to_owned(),
            user_id: user.id,
            user_handle,
            name,
            state,
        };
        let ceremony = self.save_ceremony(&ceremony, ip, now).await?;
        Ok(Ceremonial { ceremony, options })
    }

    /// `POST /login/enrol/passkey`: the new passkey is stored and, made with user verification by
    /// the person who just gave the password, completes the sign-in as its second factor.
    #[allow(clippy::too_many_arguments)]
    pub async fn finish_passkey_enrolment(
        &self,
        pending_id: &str,
        cookie: Option<&PartialSignInToken>,
        session: Option<&SessionToken>,
        ceremony: &str,
        credential: &str,
        ip: Option<IpAddr>,
        device: Option<&str>,
        user_agent: Option<&str>,
        now: UnixTime,
    ) -> StepResult {
        let rp = self.relying_party()?;
        let (partial, pending, client) = match self.partial(pending_id, cookie, now).await? {
            Ok(x) => x,
            Err(step) => return Ok(Err(step)),
        };
        let Ceremony::EnrolAtSignIn { pending: bound, user_id, user_handle, name, state } =
            self.take_ceremony(ceremony, now).await?
        else {
            return Err(PasskeyError::CeremonyExpired);
        };
        if bound != TokenHash::of(pending_id).as_str() || user_id != partial.user_id {
            return Err(PasskeyError::CeremonyExpired);
        }
        let rec = self.store_registration(rp, credential, &state, &user_id, user_handle, name, ip, now).await?;
        let Some(cookie) = cookie else { return Ok(Err(crate::authorize::expired_step())) };
        // Registration verified the person (webauthn-rs requires it): both factors are there.
        let method = Method::Passkey { hardware: !rec.backup_eligible, user_verified: true };
        Ok(self
            .complete(
                pending_id,
                cookie,
                session,
                &pending,
                &client,
                method,
                device,
                crate::sessions::meta(ip, user_agent),
                now,
                "passkey",
            )
            .await?)
    }
}
