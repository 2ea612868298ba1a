//! Outgoing mail: the core's [`Message`]s rendered from askama templates (a text and an HTML body
//! each, `templates/mail/`) and sent over SMTP with lettre: STARTTLS or implicit TLS (rustls,
//! the Web PKI roots), AUTH when credentials are configured.
//!
//! Values in a body come from templates, escaped in the HTML part by the engine; headers are built
//! by lettre from parsed mailboxes and our own fixed subjects, so nothing a user typed can add a
//! header.

use std::time::Duration;

use askama::Template;
use async_trait::async_trait;
use latchkey_core::mail::{Mail, Message, Notice};
use latchkey_core::outbox::{Deliver, DeliveryError};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

/// How the connection to the SMTP server is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which is required (RFC 3207): a server that does
    /// not offer it is refused, so a network attacker cannot strip it. Port 587 by default.
    StartTls,
    /// TLS from the first byte (RFC 8314). Port 465 by default.
    Implicit,
    /// No TLS: allowed only to a loopback host (a local relay), checked when the settings are
    /// resolved. Port 25 by default.
    None,
}

impl SmtpTls {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "starttls" => Some(Self::StartTls),
            "implicit" => Some(Self::Implicit),
            "none" => Some(Self::None),
            _ => None,
        }
    }
    pub fn default_port(self) -> u16 {
        match self {
            Self::StartTls => 587,
            Self::Implicit => 465,
            Self::None => 25,
        }
    }
}

/// The SMTP password: redacted in `Debug`, read from a file only its owner can read.
#[derive(Clone)]
pub struct SmtpPassword(String);

impl SmtpPassword {
    pub fn new(s: String) -> Self {
        Self(s)
    }
}

impl std::fmt::Debug for SmtpPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SmtpPassword([redacted])")
    }
}

/// The `[smtp]` section, resolved.
#[derive(Clone, Debug)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    /// AUTH with these, if set.
    pub credentials: Option<(String, SmtpPassword)>,
    /// `From:`, e.g. `Latchkey <no-reply@id.example>`.
    pub from: String,
    /// Tests only: a PEM root trusted for the SMTP server's certificate besides the public ones.
    pub insecure_extra_root_pem: Option<Vec<u8>>,
    /// Connection and command timeout: far below the outbox's lease.
    pub timeout: Duration,
}

/// Delivers mail jobs over SMTP.
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// The issuer's host, named in every mail so that people know where it comes from.
    site: String,
}

impl std::fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpMailer").field("from", &self.from.to_string()).finish_non_exhaustive()
    }
}

impl SmtpMailer {
    pub fn new(settings: &SmtpSettings, issuer: &str) -> anyhow::Result<Self> {
        let from: Mailbox = settings
            .from
            .parse()
            .map_err(|e| anyhow::anyhow!("smtp.from {:?} is not a mailbox: {e}", settings.from))?;
        let tls = match settings.tls {
            SmtpTls::None => Tls::None,
            mode => {
                let mut params = TlsParameters::builder(settings.host.clone());
                if let Some(pem) = &settings.insecure_extra_root_pem {
                    params = params.add_root_certificate(Certificate::from_pem(pem)?);
                }
                let params = params.build_rustls()?;
                if mode == SmtpTls::StartTls { Tls::Required(params) } else { Tls::Wrapper(params) }
            }
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(settings.host.clone())
            .port(settings.port)
            .tls(tls)
            .timeout(Some(settings.timeout));
        if let Some((user, password)) = &settings.credentials {
            builder = builder.credentials(Credentials::new(user.clone(), password.0.clone()));
        }
        let site = url::Url::parse(issuer).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default();
        Ok(Self { transport: builder.build(), from, site })
    }

    /// Builds the message for `mail` (public for tests and `latchkey mail test`).
    pub fn message(&self, mail: &Mail) -> Result<lettre::Message, DeliveryError> {
        let to: Mailbox = mail
            .to
            .parse()
            .map_err(|e| DeliveryError::permanent(format!("the recipient is not a valid address: {e}")))?;
        let (subject, text, html) = render(&mail.message, &self.site)
            .map_err(|e| DeliveryError::permanent(format!("a mail template failed: {e}")))?;
        lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .multipart(MultiPart::alternative_plain_html(text, html))
            .map_err(|e| DeliveryError::permanent(format!("the message cannot be built: {e}")))
    }
}

#[async_trait]
impl Deliver for SmtpMailer {
    async fn send_mail(&self, mail: &Mail) -> Result<(), DeliveryError> {
        let message = self.message(mail)?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            // A 5xx reply (no such mailbox, relaying denied): trying again cannot help.
            Err(e) if e.is_permanent() => Err(DeliveryError::permanent(format!("SMTP: {e}"))),
            // Connection refused, a timeout, 4xx: the server may be back later.
            Err(e) => Err(DeliveryError::transient(format!("SMTP: {e}"))),
        }
    }
}

#[derive(Template)]
#[template(path = "mail/password_reset.txt")]
struct ResetText<'a> {
    site: &'a str,
    username: &'a str,
    link: &'a str,
    valid_minutes: u64,
}

#[derive(Template)]
#[template(path = "mail/password_reset.html")]
struct ResetHtml<'a> {
    site: &'a str,
    username: &'a str,
    link: &'a str,
    valid_minutes: u64,
}

#[derive(Template)]
#[template(path = "mail/verify_email.txt")]
struct VerifyText<'a> {
    site: &'a str,
    username: &'a str,
    link: &'a str,
    valid_hours: u64,
    new_account: bool,
}

#[derive(Template)]
#[template(path = "mail/verify_email.html")]
struct VerifyHtml<'a> {
    site: &'a str,
    username: &'a str,
    link: &'a str,
    valid_hours: u64,
    new_account: bool,
}

#[derive(Template)]
#[template(path = "mail/invitation.txt")]
struct InvitationText<'a> {
    site: &'a str,
    link: &'a str,
    valid_days: u64,
}

#[derive(Template)]
#[template(path = "mail/invitation.html")]
struct InvitationHtml<'a> {
    site: &'a str,
    link: &'a str,
    valid_days: u64,
}

#[derive(Template)]
#[template(path = "mail/notice.txt")]
struct NoticeText<'a> {
    site: &'a str,
    notice: &'a Notice,
}

#[derive(Template)]
#[template(path = "mail/notice.html")]
struct NoticeHtml<'a> {
    site: &'a str,
    subject: &'a str,
    notice: &'a Notice,
}

/// The subject, the text body and the HTML body of `message`.
pub fn render(message: &Message, site: &str) -> askama::Result<(String, String, String)> {
    Ok(match message {
        Message::PasswordReset { username, link, valid_minutes } => {
            let (link, valid_minutes) = (link.expose_secret(), *valid_minutes);
            (
                format!("Reset your password at {site}"),
                ResetText { site, username, link, valid_minutes }.render()?,
                ResetHtml { site, username, link, valid_minutes }.render()?,
            )
        }
        Message::VerifyEmail { username, link, valid_hours, new_account } => {
            let (link, valid_hours, new_account) = (link.expose_secret(), *valid_hours, *new_account);
            (
                format!("Confirm your email address at {site}"),
                VerifyText { site, username, link, valid_hours, new_account }.render()?,
                VerifyHtml { site, username, link, valid_hours, new_account }.render()?,
            )
        }
        Message::Invitation { link, valid_days } => {
            let (link, valid_days) = (link.expose_secret(), *valid_days);
            (
                format!("You are invited to create an account at {site}"),
                InvitationText { site, link, valid_days }.render()?,
                InvitationHtml { site, link, valid_days }.render()?,
            )
        }
        Message::Notice(notice) => {
            let subject = match notice {
                Notice::AccountExists { .. } => format!("Someone tried to sign up at {site} with your address"),
                Notice::EmailChanged { .. } => format!("Your email address at {site} was changed"),
                Notice::PasswordChanged { .. } => format!("Your password at {site} was changed"),
                Notice::Test => format!("Test message from {site}"),
            };
            let text = NoticeText { site, notice }.render()?;
            let html = NoticeHtml { site, subject: &subject, notice }.render()?;
            (subject, text, html)
        }
    })
}

#[cfg(test)]
mod tests {
    use latchkey_core::mail::SecretLink;

    use super::*;

    #[test]
    fn user_data_is_escaped_in_html_and_the_link_is_in_both_bodies() {
        let m = Message::PasswordReset {
            username: "<b>eve</b>".into(),
            link: SecretLink::new("https://id.example/reset/confirm?token=abc&x=1".into()),
            valid_minutes: 30,
        };
        let (subject, text, html) = render(&m, "id.example").unwrap();
        assert_eq!(subject, "Reset your password at id.example");
        assert!(text.contains("https://id.example/reset/confirm?token=abc&x=1"), "{text}");
        assert!(text.contains("<b>eve</b>"), "the text body is text");
        assert!(html.contains("&#60;b&#62;eve&#60;/b&#62;") && !html.contains("<b>eve"), "{html}");
        assert!(html.contains("token=abc&#38;x=1"), "{html}");
        let n = Message::Notice(Notice::AccountExists { username: "al".into(), reset_url: None });
        let (_, text, _) = render(&n, "id.example").unwrap();
        assert!(text.contains("\"al\"") && !text.contains("choose a new one"), "{text}");
    }

    #[test]
    fn a_header_cannot_be_smuggled_through_the_recipient() {
        let s = SmtpSettings {
            host: "127.0.0.1".into(),
            port: 25,
            tls: SmtpTls::None,
            credentials: None,
            from: "Latchkey <no-reply@id.example>".into(),
            insecure_extra_root_pem: None,
            timeout: Duration::from_secs(5),
        };
        let mailer = SmtpMailer::new(&s, "https://id.example").unwrap();
        let mail = Mail { to: "a@b.example\r\nBcc: evil@x.example".into(), message: Message::Notice(Notice::Test) };
        let e = mailer.message(&mail).unwrap_err();
        assert!(e.permanent, "{e}");
        let ok = mailer.message(&Mail { to: "a@b.example".into(), message: Message::Notice(Notice::Test) }).unwrap();
        let raw = String::from_utf8(ok.formatted()).unwrap();
        assert!(raw.contains("To: a@b.example") && raw.contains("Subject: Test message from id.example"), "{raw}");
    }
}
