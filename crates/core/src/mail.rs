//! Outgoing mail: what is said to whom. The core decides the recipient and the content (a
//! [`Message`] of facts and links); the server renders it from templates and sends it over SMTP
//! (`Deliver::send_mail`).

use serde::{Deserialize, Serialize};

use crate::outbox::RetryPolicy;

/// Mail settings of the deployment.
#[derive(Clone, Debug)]
pub struct EmailConfig {
    /// A mail transport is configured (`[smtp]`). Without it nothing that needs mail is offered:
    /// no "Forgot your password?" link, no reset page.
    pub enabled: bool,
    /// Who may create an account at `/signup`.
    pub signup: crate::signup::SignupMode,
    /// How long a password-reset link works: short, since it is a credential sent in clear
    /// through mail servers.
    pub reset_ttl: u64,
    /// How long an email-verification link works.
    pub verify_ttl: u64,
    /// How long an invitation works.
    pub invite_ttl: u64,
    /// Jobs that unauthenticated requests may keep queued; past it they are refused (logged).
    pub max_queued: u64,
    /// Self-registered accounts waiting for their address to be verified, at most; past it new
    /// sign-ups are refused until the oldest expire (`UNVERIFIED_SIGNUP_TTL`).
    pub max_unverified_signups: u64,
    pub retry: RetryPolicy,
    /// Reset requests per network and per address (`crate::reset`).
    pub reset_per_source: crate::throttle::Rule,
    pub reset_per_address: crate::throttle::Rule,
    /// Sign-ups per network (`crate::signup`).
    pub signup_per_source: crate::throttle::Rule,
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            signup: crate::signup::SignupMode::Off,
            reset_ttl: 30 * 60,
            verify_ttl: 24 * 3600,
            invite_ttl: 7 * 24 * 3600,
            max_queued: 10_000,
            max_unverified_signups: 1_000,
            retry: RetryPolicy::default(),
            reset_per_source: crate::reset::PER_SOURCE,
            reset_per_address: crate::reset::PER_ADDRESS,
            signup_per_source: crate::signup::PER_SOURCE,
        }
    }
}

/// A link carrying a single-use token. Its `Debug` hides the token: a link in a log line would be
/// a usable credential.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretLink(String);

impl SecretLink {
    pub fn new(url: String) -> Self {
        Self(url)
    }
    /// The URL with its token. Dangerous: only for the body of the mail to its owner.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretLink([redacted])")
    }
}

/// What a mail says. Each variant is one template pair (text and HTML) in the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A link to choose a new password.
    PasswordReset { username: String, link: SecretLink, valid_minutes: u64 },
    /// A link to confirm an address (a new account, or a changed address).
    VerifyEmail { username: String, link: SecretLink, valid_hours: u64, new_account: bool },
    /// A link to create an account.
    Invitation { link: SecretLink, valid_days: u64 },
    /// A notice without any secret (queued as [`MailJob`]).
    Notice(Notice),
}

/// Mails that carry no secret, so they may be queued as they are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "notice", rename_all = "snake_case")]
pub enum Notice {
    /// Someone tried to sign up with this address, which already has an account: tell its owner
    /// (and say nothing on the page, which would reveal that the address is registered).
    AccountExists { username: String, reset_url: Option<String> },
    /// The account's address was changed to another: told at the old address, so that a takeover
    /// through a changed address does not go unnoticed.
    EmailChanged { username: String, new_email: String },
    /// The account's password was changed on the account page or reset through an emailed link.
    PasswordChanged { username: String },
    /// A plain test message (`latchkey mail test`).
    Test,
}

/// A queued [`Notice`] and its recipient.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailJob {
    pub to: String,
    #[serde(flatten)]
    pub notice: Notice,
}

impl MailJob {
    pub fn compose(&self) -> Mail {
        Mail { to: self.to.clone(), message: Message::Notice(self.notice.clone()) }
    }
}

/// One mail to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mail {
    pub to: String,
    pub message: Message,
}

/// An email address as a person typed it: trimmed, at most 254 characters (RFC 5321 §4.5.3.1.3),
/// one `@` with something on both sides, no spaces or control characters. Deliverability is the
/// mail server's to judge; this only refuses what cannot be an address (or could smuggle a header).
pub fn parse_address(s: &str) -> Option<String> {
    let s = s.trim();
    let (local, domain) = s.rsplit_once('@')?;
    let ok = !local.is_empty()
        && !domain.is_empty()
        && s.len() <= 254
        && local.len() <= 64
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';' | '"'));
    ok.then(|| s.to_owned())
}

/// The form addresses are compared in: lower case. (The local part may in theory be
/// case-sensitive; no real mail system treats it so, and people do not type it consistently.)
pub fn normalize(address: &str) -> String {
    address.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked_only_for_what_cannot_be_one() {
        assert_eq!(parse_address("  Alice@Example.com "), Some("Alice@Example.com".into()));
        assert_eq!(normalize(" Alice@Example.COM"), "alice@example.com");
        for bad in ["", "alice", "@example.com", "alice@", "a b@example.com", "a@b.c\r\nBcc: x@y", "<a@b.c>", "a@.b"] {
            assert_eq!(parse_address(bad), None, "{bad:?}");
        }
        assert_eq!(parse_address(&format!("{}@example.com", "a".repeat(65))), None);
    }

    #[test]
    fn links_never_show_in_debug() {
        let m = Message::PasswordReset {
            username: "alice".into(),
            link: SecretLink::new("https://id.example/reset?token=s3cret".into()),
            valid_minutes: 30,
        };
        assert!(!format!("{m:?}").contains("s3cret"));
    }

    #[test]
    fn notices_round_trip_as_jobs() {
        let j = crate::outbox::Job::Mail(MailJob {
            to: "a@example.com".into(),
            notice: Notice::AccountExists { username: "alice".into(), reset_url: None },
        });
        assert_eq!(crate::outbox::Job::from_stored(&j.to_stored()), j);
    }
}
