//! Self-registration (`/signup`) and invitations (`latchkey user invite EMAIL`).
//!
//! - `open`: anyone may create an account (username, address, password; the password rules of
//!   `latchkey user add`). The account cannot sign in until its address is verified through the
//!   link mailed to it; unverified accounts are removed after a week
//!   ([`crate::email_link::UNVERIFIED_SIGNUP_TTL`]) and at most
//!   [`crate::mail::EmailConfig::max_unverified_signups`] wait at once. Sign-ups are throttled per
//!   network.
//! - `invite`: only the holder of an invitation can sign up, and only for the invited address
//!   (verified by the invitation itself).
//!
//! Enumeration: a taken *username* is said as such (a unique name cannot be chosen otherwise). An
//! address that already has an account is not: the page answers as for a new account ("check your
//! mail"), nothing is created, and the address's owner gets a notice saying someone tried, with a
//! way to reset the password. The password is hashed in both cases, so the answer takes as long.

use std::net::IpAddr;

use latchkey_proto::{Password, TokenHash};
use serde_json::json;

use crate::admin::AdminError;
use crate::email_link::{InvitedStored, LinkPurpose, SignupStored};
use crate::mail::{Mail, MailJob, Message, Notice};
use crate::outbox::{Deliver, DeliveryError, Job};
use crate::store::{Reservation, UserRecord};
use crate::throttle::Rule;
use crate::{Provider, UnixTime, audit};

/// `signup = "off" | "open" | "invite"` (not to be confused with RFC 7591 client registration).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SignupMode {
    /// Only administrators create accounts (the default).
    #[default]
    Off,
    /// Anyone may create an account; it can sign in once its address is verified.
    Open,
    /// Only holders of an invitation (`latchkey user invite EMAIL`), for the invited address.
    Invite,
}

impl SignupMode {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "off" => Some(Self::Off),
            "open" => Some(Self::Open),
            "invite" => Some(Self::Invite),
            _ => None,
        }
    }
}

/// Sign-ups from one network: a few, then slower and slower (a household or an office may sign up
/// several people; a script may not sign up thousands).
pub const PER_SOURCE: Rule = Rule { free: 5, base: 60, max: 3600 };

/// What the sign-up form sends.
#[derive(Debug)]
pub struct SignupForm<'a> {
    pub username: &'a str,
    /// Ignored with an invitation: the invited address is used.
    pub email: &'a str,
    pub password: Password,
    /// The invitation's token (`/signup?invite=…`).
    pub invitation: Option<&'a str>,
}

/// The field of the sign-up form a refusal is about: the page marks that field invalid and puts
/// the message next to it, where a screen reader reads it with the field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignupField {
    Username,
    Email,
    Password,
}

/// The answer to a sign-up.
#[derive(Debug, PartialEq, Eq)]
pub enum SignupOutcome {
    /// "Check your mail": the account waits for verification, or (unsaid) the address already had
    /// an account and its owner was told.
    CheckMail,
    /// An invited account: its address is verified, it can sign in now.
    Created {
        username: String,
    },
    /// The form is wrong (the message says what; a taken username included), in `field`.
    Rejected {
        field: SignupField,
        why: String,
    },
    InvalidInvitation,
    Throttled {
        retry_after: u64,
    },
    /// Too many unverified accounts wait, or the queue is full (logged).
    Unavailable,
    /// Self-registration is off.
    Disabled,
}

/// `latchkey user invite EMAIL`: queues an invitation (the serving processes' workers mint its
/// link and mail it).
pub async fn invite(
    store: &dyn crate::Store,
    config: &crate::mail::EmailConfig,
    email: &str,
    now: UnixTime,
) -> anyhow::Result<()> {
    if !config.enabled {
        anyhow::bail!("invitations are mailed: configure outgoing mail ([smtp]) first");
    }
    if config.signup == SignupMode::Off {
        anyhow::bail!("self-registration is off: set signup = \"invite\" (or \"open\") to invite people");
    }
    let Some(email) = crate::mail::parse_address(email) else {
        anyhow::bail!("{email:?} is not an email address");
    };
    store.enqueue(&Job::Invitation { email: email.clone() }, now).await?;
    let e = audit::Event { detail: Some(json!({ "invited": email })), ..Default::default() };
    audit::record(store, now, "invitation_queued", e).await;
    Ok(())
}

impl Provider {
    pub fn signup_mode(&self) -> SignupMode {
        if self.config.email.enabled { self.config.email.signup } else { SignupMode::Off }
    }

    /// `GET /signup?invite=…`: the invited address, if the invitation works.
    pub async fn invitation(&self, token: &str, now: UnixTime) -> anyhow::Result<Option<String>> {
        let link = self.store.email_link(&TokenHash::of(token), LinkPurpose::Invitation, now).await?;
        Ok(link.map(|l| l.email))
    }

    /// `POST /signup` (see the module's doc).
    pub async fn sign_up(
        &self,
        form: SignupForm<'_>,
        ip: Option<IpAddr>,
        now: UnixTime,
    ) -> anyhow::Result<SignupOutcome> {
        let mode = self.signup_mode();
        if mode == SignupMode::Off {
            return Ok(SignupOutcome::Disabled);
        }
        let invited = match (mode, form.invitation) {
            (SignupMode::Invite, None) => return Ok(SignupOutcome::InvalidInvitation),
            (_, Some(token)) => match self.invitation(token, now).await? {
                Some(email) => Some((token, email)),
                None => return Ok(SignupOutcome::InvalidInvitation),
            },
            (_, None) => None,
        };
        let username = match crate::admin::check_username(form.username) {
            Ok(u) => u.to_owned(),
            Err(e) => return Ok(SignupOutcome::Rejected { field: SignupField::Username, why: e.to_string() }),
        };
        let email = match &invited {
            Some((_, email)) => email.clone(),
            None => match crate::mail::parse_address(form.email) {
                Some(e) => e,
                None => {
                    let why = "enter your email address".into();
                    return Ok(SignupOutcome::Rejected { field: SignupField::Email, why });
                }
            },
        };
        if let Err(AdminError::Invalid(why)) = crate::admin::check_password(&form.password) {
            return Ok(SignupOutcome::Rejected { field: SignupField::Password, why });
        }
        if let Some(ip) = ip {
            let rules = [(format!("signup-ip:{}", crate::throttle::source(ip)), self.config.email.signup_per_source)];
            if let Reservation::Blocked { until, .. } = self.store.throttle_reserve(&rules, now).await? {
                return Ok(SignupOutcome::Throttled { retry_after: u64::try_from(until - now).unwrap_or(1).max(1) });
            }
        }
        let user = UserRecord {
            id: latchkey_proto::secret::random_token()[..22].to_owned(),
            username: username.clone(),
            email: email.clone(),
            email_verified: false,
            name: None,
            password_hash: self.hasher.hash(form.password.expose_secret().to_owned()).await?,
            created_at: now,
            phone_number: None,
            address: None,
            profile: Default::default(),
            updated_at: now,
            locked_at: None,
        };
        let taken = || SignupOutcome::Rejected {
            field: SignupField::Username,
            why: format!("the username {username} is taken; choose another"),
        };
        if let Some((token, _)) = invited {
            return Ok(match self.store.create_invited_user(&TokenHash::of(token), &user, now).await? {
                InvitedStored::Created => {
                    self.record_signup(&user, ip, true, now).await;
                    SignupOutcome::Created { username }
                }
                InvitedStored::UsernameTaken => taken(),
                InvitedStored::InvalidInvitation => SignupOutcome::InvalidInvitation,
                // The holder of the invitation controls the address: saying so reveals nothing new.
                InvitedStored::EmailTaken { username } => SignupOutcome::Rejected {
                    field: SignupField::Email,
                    why: format!("this address already has an account ({username}); sign in, or reset its password"),
                },
            });
        }
        Ok(match self.store.create_unverified_user(&user, self.config.email.max_unverified_signups, now).await? {
            SignupStored::Created => {
                self.record_signup(&user, ip, false, now).await;
                let job = Job::VerifyEmail { user_id: user.id.clone(), email: user.email.clone() };
                if self.enqueue_untrusted(&job, now).await? {
                    SignupOutcome::CheckMail
                } else {
                    SignupOutcome::Unavailable
                }
            }
            SignupStored::UsernameTaken => taken(),
            SignupStored::EmailTaken { username } => {
                let reset_url = self.password_reset_enabled().then(|| format!("{}/reset", self.issuer()));
                let notice = Notice::AccountExists { username, reset_url };
                let job = Job::Mail(MailJob { to: email, notice });
                if self.enqueue_untrusted(&job, now).await? {
                    SignupOutcome::CheckMail
                } else {
                    SignupOutcome::Unavailable
                }
            }
            SignupStored::Full => {
                tracing::error!(
                    cap = self.config.email.max_unverified_signups,
                    "sign-up refused: too many self-registered accounts wait for verification; is someone flooding /signup?"
                );
                SignupOutcome::Unavailable
            }
        })
    }

    async fn record_signup(&self, user: &UserRecord, ip: Option<IpAddr>, invited: bool, now: UnixTime) {
        let e = audit::Event {
            user_id: Some(&user.id),
            ip,
            detail: Some(json!({ "username": user.username, "self_registered": true, "invited": invited })),
            ..Default::default()
        };
        audit::record(self.store.as_ref(), now, "user_added", e).await;
    }

    /// The worker's half of an invitation.
    pub(crate) async fn send_invitation(
        &self,
        email: &str,
        deliver: &dyn Deliver,
        now: UnixTime,
    ) -> Result<(), DeliveryError> {
        let ttl = self.config.email.invite_ttl;
        let link = self.mint_link(LinkPurpose::Invitation, None, email, ttl, ("/signup", "invite"), now).await?;
        let message = Message::Invitation { link, valid_days: ttl / (24 * 3600) };
        deliver.send_mail(&Mail { to: email.to_owned(), message }).await
    }

    /// Whether `user_id` may not sign in yet because its address is unverified; if so, a fresh
    /// verification link is mailed (within the account's throttle): the person just proved the
    /// password, and the first mail may be lost.
    pub async fn awaiting_verification(&self, user: &UserRecord, now: UnixTime) -> anyhow::Result<bool> {
        if self.store.signup_hold(&user.id).await?.is_none() {
            return Ok(false);
        }
        let sent = self.queue_verification(&user.id, &user.email, now).await?;
        tracing::info!(user_id = %user.id, outcome = ?sent, "sign-in refused until the address is verified");
        Ok(true)
    }
}
