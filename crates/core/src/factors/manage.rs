//! Second factors managed by their owner (`/account/two-step`) and by an administrator
//! (`latchkey user reset-factors`).
//!
//! Changes that weaken or could hijack the account ask for proof first, like a sign-in: setting
//! up TOTP asks for the password (a stolen session alone must not lock the owner out behind a
//! factor only the thief holds), removing TOTP and making new recovery codes ask for a current
//! code or the password. Every proof is throttled as at the sign-in.

use std::net::IpAddr;

use latchkey_proto::Password;
use serde_json::json;

use super::Factor;
use super::recovery::{self, RecoveryCode};
use super::sign_in::{Checked, Refusal};
use super::totp::{TotpCode, issuer_label};
use crate::account::AccountSession;
use crate::store::{Reservation, Store, UserRecord};
use crate::{Error, Provider, UnixTime, audit, throttle};

/// The state of a user's TOTP.
#[derive(Debug, PartialEq, Eq)]
pub enum TotpStatus {
    Off,
    /// Set up but not confirmed: the QR code's URI and the secret to type by hand.
    Pending {
        uri: String,
        secret_base32: String,
    },
    On {
        since: UnixTime,
    },
}

/// What the two-step page shows.
#[derive(Debug, PartialEq, Eq)]
pub struct TwoStepStatus {
    pub totp: TotpStatus,
    pub recovery_codes: u32,
    pub passkeys: u32,
}

/// What proves the person before a change.
#[derive(Debug)]
pub enum Proof {
    Password(Password),
    Factor(Factor),
}

/// Why a change was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManageRefusal {
    WrongPassword,
    /// The code (the new app's first code, or a current one) was not accepted.
    Factor(Refusal),
    /// Too many wrong passwords: try again after this many seconds.
    PasswordThrottled {
        retry_after: u64,
    },
    /// Nothing to confirm, remove or renew in this state.
    NotApplicable,
    /// Neither a code nor the password was given.
    ProofNeeded,
}

impl ManageRefusal {
    pub fn message(self) -> String {
        match self {
            Self::WrongPassword => "That password is not right.".into(),
            Self::Factor(r) => r.message(),
            Self::PasswordThrottled { retry_after } => {
                format!("Too many wrong passwords. Try again in {retry_after} seconds.")
            }
            Self::NotApplicable => "This page was out of date; here is how things stand now.".into(),
            Self::ProofNeeded => "Enter a current code from your app, or your password.".into(),
        }
    }
}

impl Provider {
    /// The user's second factors as the two-step page shows them.
    pub async fn two_step_status(&self, user: &UserRecord) -> Result<TwoStepStatus, Error> {
        let totp = match self.store.totp(&user.id).await? {
            None => TotpStatus::Off,
            Some(rec) => match rec.confirmed_at {
                Some(since) => TotpStatus::On { since },
                None => {
                    let secret = self.open_totp(&rec)?;
                    TotpStatus::Pending {
                        uri: secret.otpauth_uri(&issuer_label(self.issuer()), &user.username),
                        secret_base32: secret.expose_base32(),
                    }
                }
            },
        };
        let enrolled = self.enrolled(&user.id).await?;
        Ok(TwoStepStatus { totp, recovery_codes: enrolled.recovery_codes, passkeys: enrolled.passkeys })
    }

    /// Starts setting up TOTP: a fresh secret, shown until its first code confirms it. `false`
    /// when TOTP is already on.
    pub async fn start_totp_setup(&self, a: &AccountSession, now: UnixTime) -> Result<bool, Error> {
        self.new_totp_secret(&a.user.id, now).await
    }

    /// Confirms the setup with the app's first code and the password; returns the recovery codes
    /// to show once.
    pub async fn confirm_totp_setup(
        &self,
        a: &AccountSession,
        code: Option<TotpCode>,
        password: Password,
        ip: Option<IpAddr>,
        now: UnixTime,
    ) -> Result<Result<Vec<RecoveryCode>, ManageRefusal>, Error> {
        let user = &a.user;
        let Some(rec) = self.store.totp(&user.id).await?.filter(|r| r.confirmed_at.is_none()) else {
            return Ok(Err(ManageRefusal::NotApplicable));
        };
        if let Err(r) = self.check_password(user, password, ip, now).await? {
            return Ok(Err(r));
        }
        let rules = throttle::second_factor_keys(&user.id, ip);
        if let Reservation::Blocked { until, .. } = self.store.throttle_reserve(&rules, now).await? {
            let retry_after = (until - now).max(1) as u64;
            return Ok(Err(ManageRefusal::Factor(Refusal::Throttled { retry_after })));
        }
        let Some(step) = code.and_then(|c| self.open_totp(&rec).ok()?.step_of(&c, now)) else {
            return Ok(Err(ManageRefusal::Factor(Refusal::Wrong)));
        };
        let (clear, refund): (Vec<String>, Vec<String>) =
            rules.into_iter().map(|(k, _)| k).partition(|k| throttle::is_account_key(k));
        self.store.throttle_settle(&clear, &refund).await?;
        let (codes, hashes) = recovery::new_set(&user.id);
        if !self.store.confirm_totp(&user.id, &rec.secret, step, &hashes, now).await? {
            return Ok(Err(ManageRefusal::NotApplicable));
        }
        let e = audit::Event {
            user_id: Some(&user.id),
            ip,
            detail: Some(json!({ "at_sign_in": false })),
            ..Default::default()
        };
        audit::record(self.store.as_ref(), now, "totp_enrolled", e).await;
        Ok(Ok(codes))
    }

    /// Turns TOTP off (an unconfirmed setup is simply dropped). Recovery codes go with it when no
    /// other factor is left: they are a fallback for a factor, not one.
    pub async fn remove_totp(
        &self,
        a: &AccountSession,
        proof: Option<Proof>,
        ip: Option<IpAddr>,
        now: UnixTime,
    ) -> Result<Result<(), ManageRefusal>, Error> {
        let user = &a.user;
        let Some(rec) = self.store.totp(&user.id).await? else { return Ok(Err(ManageRefusal::NotApplicable)) };
        if rec.confirmed_at.is_some()
            && let Err(r) = self.prove(user, proof, ip, now).await?
        {
            return Ok(Err(r));
        }
        let passkeys = self.enrolled(&user.id).await?.passkeys;
        if self.store.remove_totp(&user.id, passkeys == 0).await? && rec.confirmed_at.is_some() {
            let e = audit::Event { user_id: Some(&user.id), ip, ..Default::default() };
            audit::record(self.store.as_ref(), now, "totp_removed", e).await;
        }
        Ok(Ok(()))
    }

    /// A new set of recovery codes (the old ones stop working), for a user with a factor.
    pub async fn regenerate_recovery_codes(
        &self,
        a: &AccountSession,
        proof: Option<Proof>,
        ip: Option<IpAddr>,
        now: UnixTime,
    ) -> Result<Result<Vec<RecoveryCode>, ManageRefusal>, Error> {
        let user = &a.user;
        if !self.enrolled(&user.id).await?.any() {
            return Ok(Err(ManageRefusal::NotApplicable));
        }
        if let Err(r) = self.prove(user, proof, ip, now).await? {
            return Ok(Err(r));
        }
        let (codes, hashes) = recovery::new_set(&user.id);
        self.store.replace_recovery_codes(&user.id, &hashes, now).await?;
        let e = audit::Event { user_id: Some(&user.id), ip, ..Default::default() };
        audit::record(self.store.as_ref(), now, "recovery_codes_regenerated", e).await;
        Ok(Ok(codes))
    }

    async fn prove(
        &self,
        user: &UserRecord,
        proof: Option<Proof>,
        ip: Option<IpAddr>,
        now: UnixTime,
    ) -> Result<Result<(), ManageRefusal>, Error> {
        match proof {
            None => Ok(Err(ManageRefusal::ProofNeeded)),
            Some(Proof::Password(p)) => self.check_password(user, p, ip, now).await,
            Some(Proof::Factor(f)) => Ok(match self.check_factor(&user.id, &f, ip, None, now).await? {
                Checked::Ok(_) => Ok(()),
                Checked::Refused(r) => Err(ManageRefusal::Factor(r)),
            }),
        }
    }

    /// The password of a signed-in user, checked and throttled as at the login (reserved before
    /// the slow check, `crate::throttle`).
    async fn check_password(
        &self,
        user: &UserRecord,
        password: Password,
        ip: Option<IpAddr>,
        now: UnixTime,
    ) -> Result<Result<(), ManageRefusal>, Error> {
        let rules = throttle::keys(&user.username, ip, None);
        if let Reservation::Blocked { until, .. } = self.store.throttle_reserve(&rules, now).await? {
            return Ok(Err(ManageRefusal::PasswordThrottled { retry_after: (until - now).max(1) as u64 }));
        }
        let ok = self.hasher.verify(password.expose_secret().to_owned(), Some(user.password_hash.clone())).await?;
        if !ok {
            let e = audit::Event {
                user_id: Some(&user.id),
                ip,
                detail: Some(json!({ "purpose": "two-step settings" })),
                ..Default::default()
            };
            audit::record(self.store.as_ref(), now, "password_check_failure", e).await;
            return Ok(Err(ManageRefusal::WrongPassword));
        }
        let (clear, refund): (Vec<String>, Vec<String>) =
            rules.into_iter().map(|(k, _)| k).partition(|k| throttle::is_account_key(k));
        self.store.throttle_settle(&clear, &refund).await?;
        Ok(Ok(()))
    }
}

/// `latchkey user reset-factors`: removes the user's TOTP secret, recovery codes, pending
/// second-factor steps and passkeys, for a person who lost them. Returns (TOTP removed, recovery
/// codes removed, passkeys removed), or `None` when there is no such user. Audited.
pub async fn reset_factors(
    store: &dyn Store,
    username: &str,
    now: UnixTime,
) -> Result<Option<(bool, u64, u64)>, Error> {
    let Some(user) = store.user_by_username(username).await? else { return Ok(None) };
    let (totp, codes) = store.reset_factors(&user.id).await?;
    let passkeys = store.remove_user_passkeys(&user.id).await?;
    let detail = json!({
        "totp_removed": totp,
        "recovery_codes_removed": codes,
        "passkeys_removed": passkeys,
        "by": "administrator",
    });
    let e = audit::Event { user_id: Some(&user.id), detail: Some(detail), ..Default::default() };
    audit::record(store, now, "factors_reset", e).await;
    Ok(Some((totp, codes, passkeys)))
}
