//! The second-factor step of the sign-in and of a step-up (see the module documentation of
//! [`crate::factors`] for the whole flow). One entry point per action:
//!
//! - [`Provider::two_step_page`]: what the second-factor page shows (`GET /login/two-step`);
//! - [`Provider::submit_second_factor`]: one [`Factor`] presented (`POST /login/two-step`);
//! - [`Provider::enrol_at_sign_in`]: the first code of a TOTP app set up while signing in;
//! - [`Provider::continue_sign_in`]: on to the application once the recovery codes were shown.

use std::net::IpAddr;

use latchkey_proto::{PartialSignInToken, SessionToken, TokenHash};
use serde_json::json;

use super::recovery::{self, RecoveryCode};
use super::totp::{TotpCode, TotpSecret};
use super::{Factor, PartialSignIn, TotpRecord};
use crate::authn::{Accepted, Acr, Authentication, Enrolled, Method, Next};
use crate::authorize::{Step, expired_step};
use crate::store::{ClientRecord, PendingAuthorization, Reservation, SessionRecord};
use crate::{Error, Provider, UnixTime, audit, throttle};

/// What the second-factor page shows.
#[derive(Debug, PartialEq, Eq)]
pub enum TwoStepPage {
    /// Ask for a factor among those accepted.
    Ask { accepted: Accepted },
    /// Set up a TOTP app: the `otpauth://` URI (for the QR code) and the secret to type by hand.
    EnrolTotp { uri: String, secret_base32: String },
    /// A passkey is required and the user has none.
    EnrolPasskey,
}

/// The second-factor page of one pending sign-in.
#[derive(Debug, PartialEq, Eq)]
pub struct TwoStepView {
    pub pending: String,
    pub client_name: String,
    pub username: String,
    pub page: TwoStepPage,
}

/// Why a factor was not accepted; the page says so and asks again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not the code of this moment (or not a code at all).
    Wrong,
    /// The right code, but one already used: RFC 6238 §5.2 accepts each code once.
    Replayed,
    /// A kind of factor this step does not accept.
    NotAccepted,
    /// Too many wrong codes: try again after this many seconds (nothing was checked).
    Throttled { retry_after: u64 },
}

impl Refusal {
    /// What the person is told.
    pub fn message(self) -> String {
        match self {
            Self::Wrong => "That code is not right. Check the time on your phone and try the code shown now.".into(),
            Self::Replayed => "That code was already used. Wait for your app to show the next one.".into(),
            Self::NotAccepted => "This sign-in needs another kind of second factor.".into(),
            Self::Throttled { retry_after } => {
                let unit = if retry_after == 1 { "second" } else { "seconds" };
                format!("Too many wrong codes. Try again in {retry_after} {unit}.")
            }
        }
    }
}

/// The outcome of a factor presented at the step.
#[derive(Debug)]
pub enum TwoStepOutcome {
    /// Show the page again with the refusal.
    Refused { view: TwoStepView, refusal: Refusal },
    /// Signed in (or stepped up): set the session cookie (`session`, new or rotated) and the
    /// known-device cookie, clear the partial sign-in's, and go on to `next`.
    Done { session: SessionToken, max_age: u64, device: String, next: Step },
    /// TOTP was set up while signing in and the session exists: show these recovery codes once,
    /// then `POST /login/continue` with `pending`.
    Enrolled { session: SessionToken, max_age: u64, device: String, codes: Vec<RecoveryCode>, pending: String },
}

/// What checking a factor for a user found.
pub(crate) enum Checked {
    Ok(Method),
    Refused(Refusal),
}

impl Provider {
    /// The second factors `user_id` has set up.
    pub async fn enrolled(&self, user_id: &str) -> Result<Enrolled, Error> {
        let totp = self.store.totp(user_id).await?.is_some_and(|t| t.confirmed_at.is_some());
        let recovery_codes = self.store.recovery_codes_left(user_id).await?;
        let passkeys = u32::try_from(self.store.user_passkeys(user_id).await?.len()).unwrap_or(u32::MAX);
        Ok(Enrolled { totp, recovery_codes, passkeys })
    }

    /// Starts the step after a correct password (`step_up: None`) or on an existing session
    /// (`step_up`: its token hash): stores the partial sign-in under a fresh cookie and, for a
    /// TOTP enrolment, a fresh unconfirmed secret.
    pub(crate) async fn begin_second_factor(
        &self,
        pending_id: &str,
        user_id: &str,
        authn: Authentication,
        step_up: Option<&TokenHash>,
        need: Next,
        now: UnixTime,
    ) -> Result<Step, Error> {
        if need == (Next::Enrol { level: Acr::TwoFactor }) {
            self.new_totp_secret(user_id, now).await?;
        }
        let token = PartialSignInToken::generate();
        let partial = PartialSignIn {
            user_id: user_id.to_owned(),
            pending: TokenHash::of(pending_id).as_str().to_owned(),
            authn,
            step_up: step_up.map(|h| h.as_str().to_owned()),
            need,
            expires_at: now + self.config.pending_ttl as UnixTime,
        };
        self.store.insert_partial_sign_in(&token.hash(), &partial, now).await?;
        Ok(Step::SecondFactor { pending: pending_id.to_owned(), cookie: Some(token) })
    }

    /// `/authorize` with a session that needs more (`need`, not [`Next::Done`]).
    pub(crate) async fn begin_step_up(
        &self,
        pending_id: String,
        session: &SessionRecord,
        need: Next,
        now: UnixTime,
    ) -> Result<Step, Error> {
        let (user, authn) = (&session.user_id, session.authn.clone());
        self.begin_second_factor(&pending_id, user, authn, Some(&session.hash), need, now).await
    }

    /// Stores a fresh unconfirmed TOTP secret for `user_id` (sealed when a key-encryption key is
    /// configured). `false` when the user has a confirmed one.
    pub(crate) async fn new_totp_secret(&self, user_id: &str, now: UnixTime) -> Result<bool, Error> {
        let secret = TotpSecret::generate();
        let rec = TotpRecord {
            user_id: user_id.to_owned(),
            secret: secret.to_stored(self.config.key_encryption_key.as_ref(), user_id)?,
            created_at: now,
            confirmed_at: None,
            last_step: 0,
        };
        Ok(self.store.begin_totp(&rec).await?)
    }

    /// The secret of a stored record, opened.
    pub(crate) fn open_totp(&self, rec: &TotpRecord) -> Result<TotpSecret, Error> {
        Ok(TotpSecret::from_stored(&rec.secret, self.config.key_encryption_key.as_ref(), &rec.user_id)?)
    }

    /// The partial sign-in this browser holds for `pending_id`, with the request and its client.
    pub(crate) async fn partial(
        &self,
        pending_id: &str,
        cookie: Option<&PartialSignInToken>,
        now: UnixTime,
    ) -> Result<Result<(PartialSignIn, PendingAuthorization, ClientRecord), Step>, Error> {
        let (pending, client) = match self.load_pending(pending_id, now).await? {
            Ok(x) => x,
            Err(step) => return Ok(Err(step)),
        };
        // Without this browser's cookie, or for another request, the step starts over from the
        // password: the pending id alone, which travels in pages, never completes a sign-in.
        let again = || Step::Login {
            pending: pending_id.to_owned(),
            client_name: client.name.clone(),
            login_hint: pending.login_hint.clone(),
        };
        let Some(cookie) = cookie else { return Ok(Err(again())) };
        match self.store.partial_sign_in(&cookie.hash(), now).await? {
            Some(p) if p.pending == TokenHash::of(pending_id).as_str() => Ok(Ok((p, pending, client))),
            _ => Ok(Err(again())),
        }
    }

    async fn view(
        &self,
        pending_id: &str,
        partial: &PartialSignIn,
        client: &ClientRecord,
    ) -> Result<TwoStepView, Error> {
        let username = self.store.user(&partial.user_id).await?.map(|u| u.username).unwrap_or_default();
        let page = match partial.need {
            Next::Ask { accepted, .. } => TwoStepPage::Ask { accepted },
            Next::Enrol { level: Acr::PhishingResistant } => TwoStepPage::EnrolPasskey,
            Next::Enrol { .. } | Next::Done => match self.store.totp(&partial.user_id).await? {
                Some(rec) if rec.confirmed_at.is_none() => {
                    let secret = self.open_totp(&rec)?;
                    let issuer = super::totp::issuer_label(self.issuer());
                    TwoStepPage::EnrolTotp {
                        uri: secret.otpauth_uri(&issuer, &username),
                        secret_base32: secret.expose_base32(),
                    }
                }
                // Set up meanwhile (another tab): the code of that app is asked for.
                _ => TwoStepPage::Ask { accepted: Accepted { totp: true, recovery_code: true, passkey: false } },
            },
        };
        Ok(TwoStepView { pending: pending_id.to_owned(), client_name: client.name.clone(), username, page })
    }

    /// `GET /login/two-step?req=…`: the page this browser's partial sign-in needs.
    pub async fn two_step_page(
        &self,
        pending_id: &str,
        cookie: Option<&PartialSignInToken>,
        now: UnixTime,
    ) -> Result<Result<TwoStepView, Step>, Error> {
        let (partial, _, client) = match self.partial(pending_id, cookie, now).await? {
            Ok(x) => x,
            Err(step) => return Ok(Err(step)),
        };
        Ok(Ok(self.view(pending_id, &partial, &client).await?))
    }

    /// Checks one factor for `user_id`, throttled like passwords: reserved before it is checked
    /// (one atomic store operation, `crate::throttle`), settled on success. A TOTP code and a
    /// recovery code are each accepted once, by one atomic store operation.
    pub(crate) async fn check_factor(
        &self,
        user_id: &str,
        factor: &Factor,
        ip: Option<IpAddr>,
        client_id: Option<&str>,
        now: UnixTime,
    ) -> Result<Checked, Error> {
        let rules = throttle::second_factor_keys(user_id, ip);
        if let Reservation::Blocked { until, first } = self.store.throttle_reserve(&rules, now).await? {
            if first {
                let e = audit::Event {
                    user_id: Some(user_id),
                    client_id,
                    ip,
                    detail: Some(json!({ "factor": factor.kind(), "retry_after": until - now })),
                };
                audit::record(self.store.as_ref(), now, "second_factor_throttled", e).await;
            }
            return Ok(Checked::Refused(Refusal::Throttled { retry_after: (until - now).max(1) as u64 }));
        }
        let result = match factor {
            Factor::Totp(code) => self.check_totp(user_id, code, now).await?,
            Factor::RecoveryCode(code) => {
                if self.store.use_recovery_code(user_id, &code.hash(user_id)).await? {
                    let left = self.store.recovery_codes_left(user_id).await?;
                    let e =
                        audit::Event { user_id: Some(user_id), client_id, ip, detail: Some(json!({ "left": left })) };
                    audit::record(self.store.as_ref(), now, "recovery_code_used", e).await;
                    Checked::Ok(Method::RecoveryCode)
                } else {
                    Checked::Refused(Refusal::Wrong)
                }
            }
            Factor::Passkey(v) if v.user_id == user_id => Checked::Ok(v.method()),
            Factor::Passkey(_) => Checked::Refused(Refusal::Wrong),
        };
        match &result {
            Checked::Ok(_) => {
                let (clear, refund): (Vec<String>, Vec<String>) =
                    rules.into_iter().map(|(k, _)| k).partition(|k| throttle::is_account_key(k));
                self.store.throttle_settle(&clear, &refund).await?;
            }
            Checked::Refused(r) => {
                let e = audit::Event {
                    user_id: Some(user_id),
                    client_id,
                    ip,
                    detail: Some(json!({ "factor": factor.kind(), "replayed": *r == Refusal::Replayed })),
                };
                audit::record(self.store.as_ref(), now, "second_factor_failure", e).await;
            }
        }
        Ok(result)
    }

    async fn check_totp(&self, user_id: &str, code: &TotpCode, now: UnixTime) -> Result<Checked, Error> {
        let Some(rec) = self.store.totp(user_id).await?.filter(|r| r.confirmed_at.is_some()) else {
            return Ok(Checked::Refused(Refusal::Wrong));
        };
        let Some(step) = self.open_totp(&rec)?.step_of(code, now) else {
            return Ok(Checked::Refused(Refusal::Wrong));
        };
        // The step is accepted once, in one conditional update: of a burst of submissions of one
        // code, from any number of instances, one goes through.
        if self.store.use_totp_step(user_id, step).await? {
            Ok(Checked::Ok(Method::Totp))
        } else {
            Ok(Checked::Refused(Refusal::Replayed))
        }
    }

    /// `POST /login/two-step`: one factor for this browser's partial sign-in. `session` is the
    /// browser's session cookie (a step-up must come from the session it upgrades); `device` its
    /// known-device cookie.
    #[allow(clippy::too_many_arguments)]
    pub async fn submit_second_factor(
        &self,
        pending_id: &str,
        cookie: Option<&PartialSignInToken>,
        session: Option<&SessionToken>,
        factor: Factor,
        ip: Option<IpAddr>,
        device: Option<&str>,
        user_agent: Option<&str>,
        now: UnixTime,
    ) -> Result<Result<TwoStepOutcome, Step>, Error> {
        let (partial, pending, client) = match self.partial(pending_id, cookie, now).await? {
            Ok(x) => x,
            Err(step) => return Ok(Err(step)),
        };
        let allowed = match (&partial.need, &factor) {
            (Next::Ask { accepted, .. }, Factor::Totp(_)) => accepted.totp,
            (Next::Ask { accepted, .. }, Factor::RecoveryCode(_)) => accepted.recovery_code,
            (Next::Ask { accepted, .. }, Factor::Passkey(_)) => accepted.passkey,
            _ => false,
        };
        let (p, c) = (&partial, &client);
        let refused = |refusal| async move {
            let view = self.view(pending_id, p, c).await?;
            Ok::<_, Error>(Ok(TwoStepOutcome::Refused { view, refusal }))
        };
        if !allowed {
            return refused(Refusal::NotAccepted).await;
        }
        let client_id = Some(client.client_id.as_str());
        let method = match self.check_factor(&partial.user_id, &factor, ip, client_id, now).await? {
            Checked::Ok(m) => m,
            Checked::Refused(r) => return refused(r).await,
        };
        let Some(cookie) = cookie else { return Ok(Err(expired_step())) };
        let meta = crate::sessions::meta(ip, user_agent);
        self.complete(pending_id, cookie, session, &pending, &client, method, device, meta, now, factor.kind()).await
    }

    /// The end of a successful step: the partial sign-in is taken (single use), then the session
    /// is created or upgraded, and the sign-in goes on.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn complete(
        &self,
        pending_id: &str,
        cookie: &PartialSignInToken,
        session_cookie: Option<&SessionToken>,
        pending: &PendingAuthorization,
        client: &ClientRecord,
        method: Method,
        device: Option<&str>,
        meta: crate::store::SessionMeta,
        now: UnixTime,
        factor: &'static str,
    ) -> Result<Result<TwoStepOutcome, Step>, Error> {
        let Some(partial) = self.store.take_partial_sign_in(&cookie.hash(), now).await? else {
            return Ok(Err(expired_step()));
        };
        let Some((token, session)) = self.session_for(&partial, session_cookie, method, meta, now).await? else {
            return Ok(Err(expired_step()));
        };
        let e = audit::Event {
            user_id: Some(&partial.user_id),
            client_id: Some(client.client_id.as_str()),
            ip: None,
            detail: Some(json!({ "factor": factor, "step_up": partial.step_up.is_some() })),
        };
        audit::record(self.store.as_ref(), now, "second_factor_success", e).await;
        let device = self.issue_device(&partial.user_id, device, now);
        let next = match self.finish_sign_in(pending_id, pending, client, &session, now).await? {
            Ok(next) => next,
            Err(step) => return Ok(Err(step)),
        };
        Ok(Ok(TwoStepOutcome::Done { session: token, max_age: self.config.session_ttl, device, next }))
    }

    /// Turns a taken partial sign-in into a session: a new one, or, for a step-up, the browser's
    /// own session upgraded and its token rotated. `None` when the session to upgrade is gone.
    async fn session_for(
        &self,
        partial: &PartialSignIn,
        session_cookie: Option<&SessionToken>,
        method: Method,
        meta: crate::store::SessionMeta,
        now: UnixTime,
    ) -> Result<Option<(SessionToken, SessionRecord)>, Error> {
        let authn = partial.authn.with(&[method]);
        let Some(old) = &partial.step_up else {
            // `None` as well for a user locked since the password step: the lock is checked in the
            // same atomic step as the insert, and the sign-in ends as an expired one.
            return self.create_session(&partial.user_id, authn, meta, now).await;
        };
        // The step-up upgrades the session of the browser that started it, and nothing else: a
        // session cookie that changed meanwhile (signed out, someone else signed in) ends it.
        let old = TokenHash::from_stored(old.clone());
        if session_cookie.map(|c| c.hash()) != Some(old.clone()) {
            return Ok(None);
        }
        // A new token for a stronger session (session fixation: a token planted or seen before
        // the step-up does not gain its strength).
        let token = SessionToken::generate();
        if !self.store.step_up_session(&old, &token.hash(), &authn, now, now).await? {
            return Ok(None);
        }
        Ok(self.store.session(&token.hash(), now).await?.map(|s| (token, s)))
    }

    fn issue_device(&self, user_id: &str, device: Option<&str>, now: UnixTime) -> String {
        let known = device.and_then(|d| crate::device::verify(&self.server_key, d, user_id, now));
        crate::device::issue(&self.server_key, known, user_id, now)
    }

    /// `POST /login/enrol`: the first code of the TOTP app set up at this step. On success the
    /// secret is confirmed, a set of recovery codes made (shown once), and the session exists.
    #[allow(clippy::too_many_arguments)]
    pub async fn enrol_at_sign_in(
        &self,
        pending_id: &str,
        cookie: Option<&PartialSignInToken>,
        session: Option<&SessionToken>,
        code: Option<TotpCode>,
        ip: Option<IpAddr>,
        device: Option<&str>,
        user_agent: Option<&str>,
        now: UnixTime,
    ) -> Result<Result<TwoStepOutcome, Step>, Error> {
        let (partial, _, client) = match self.partial(pending_id, cookie, now).await? {
            Ok(x) => x,
            Err(step) => return Ok(Err(step)),
        };
        let (p, c) = (&partial, &client);
        let refused = |refusal| async move {
            let view = self.view(pending_id, p, c).await?;
            Ok::<_, Error>(Ok(TwoStepOutcome::Refused { view, refusal }))
        };
        if partial.need != (Next::Enrol { level: Acr::TwoFactor }) {
            return refused(Refusal::NotAccepted).await;
        }
        let user_id = partial.user_id.clone();
        let rules = throttle::second_factor_keys(&user_id, ip);
        if let Reservation::Blocked { until, .. } = self.store.throttle_reserve(&rules, now).await? {
            return refused(Refusal::Throttled { retry_after: (until - now).max(1) as u64 }).await;
        }
        let Some(rec) = self.store.totp(&user_id).await?.filter(|r| r.confirmed_at.is_none()) else {
            return refused(Refusal::Wrong).await;
        };
        let step = code.and_then(|c| self.open_totp(&rec).ok()?.step_of(&c, now));
        let Some(step) = step else { return refused(Refusal::Wrong).await };
        let (clear, refund): (Vec<String>, Vec<String>) =
            rules.into_iter().map(|(k, _)| k).partition(|k| throttle::is_account_key(k));
        self.store.throttle_settle(&clear, &refund).await?;
        let Some(cookie) = cookie else { return Ok(Err(expired_step())) };
        // The partial sign-in first (single use), then the secret, then the session: a double
        // submission sets up once and signs in once, and no session claims a factor that was
        // not set up.
        let Some(partial) = self.store.take_partial_sign_in(&cookie.hash(), now).await? else {
            return Ok(Err(expired_step()));
        };
        let (codes, hashes) = recovery::new_set(&user_id);
        if !self.store.confirm_totp(&user_id, &rec.secret, step, &hashes, now).await? {
            // Replaced by a setup in another tab between the check and now: nothing is set up.
            return Ok(Err(expired_step()));
        }
        let Some((token, _)) =
            self.session_for(&partial, session, Method::Totp, crate::sessions::meta(ip, user_agent), now).await?
        else {
            return Ok(Err(expired_step()));
        };
        let e = audit::Event {
            user_id: Some(&user_id),
            client_id: Some(client.client_id.as_str()),
            ip,
            detail: Some(json!({ "at_sign_in": true })),
        };
        audit::record(self.store.as_ref(), now, "totp_enrolled", e).await;
        let device = self.issue_device(&user_id, device, now);
        Ok(Ok(TwoStepOutcome::Enrolled {
            session: token,
            max_age: self.config.session_ttl,
            device,
            codes,
            pending: pending_id.to_owned(),
        }))
    }

    /// `POST /login/continue`: after the recovery codes were shown, on to the application (or the
    /// account page) if the session may serve the request, else the login page.
    pub async fn continue_sign_in(
        &self,
        pending_id: &str,
        cookie: Option<&SessionToken>,
        now: UnixTime,
    ) -> Result<Step, Error> {
        let (pending, client) = match self.load_pending(pending_id, now).await? {
            Ok(x) => x,
            Err(step) => return Ok(step),
        };
        let Some(session) = self.usable_session(cookie, &client, &pending, now).await? else {
            return Ok(Step::Login {
                pending: pending_id.to_owned(),
                client_name: client.name,
                login_hint: pending.login_hint,
            });
        };
        Ok(match self.finish_sign_in(pending_id, &pending, &client, &session, now).await? {
            Ok(step) | Err(step) => step,
        })
    }
}
