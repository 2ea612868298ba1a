//! The device verification pages (RFC 8628 §3.3): the form to type a user code, the consent page
//! for the device that asked for it, and the page after the answer. They extend
//! `account_layout.html`: the person is signed in to their account to see them.

use askama::Template;
use latchkey_core::UnixTime;
use latchkey_core::authn::Acr;
use latchkey_core::device_grant::verify::DeviceView;

use crate::pages::{access_items, date};

/// The one answer to a code that names nothing live: unknown, expired, already answered and
/// malformed codes are told apart for nobody, so a guesser learns only "no".
pub const NOT_FOUND: &str = "That code is not valid or has expired. Check the code on your device.";

/// `GET /device`: the form to type the code, with a refusal above the field when there is one.
#[derive(Template)]
#[template(path = "device_code.html")]
pub struct CodePage<'a> {
    pub section: &'static str,
    pub username: &'a str,
    pub csrf: &'a str,
    /// What was typed, given back so that a typo can be fixed.
    pub typed: &'a str,
    pub error: Option<String>,
}

/// The consent page for one pending device authorization.
#[derive(Template)]
#[template(path = "device_consent.html")]
pub struct ConsentPage<'a> {
    pub section: &'static str,
    pub username: &'a str,
    pub csrf: &'a str,
    pub user_code: &'a str,
    pub client_name: &'a str,
    pub client_id: &'a str,
    pub items: Vec<String>,
    pub resource: Option<&'a str>,
    /// "2 minutes ago".
    pub requested_ago: String,
    /// "2026-12-04 16:24 UTC".
    pub requested_at: String,
    pub network: String,
    /// The device asked from the network the person is on now.
    pub same_network: bool,
    /// "in 8 minutes".
    pub expires_in: String,
    /// The client requires a stronger sign-in than the person's session has: what it is, in
    /// words, and the level for the step-up form. Approving waits for it; denying does not.
    pub step_up: Option<(&'static str, &'static str)>,
}

/// What a sign-in level asks of the person, as the consent page says it.
fn level_words(level: Acr) -> &'static str {
    match level {
        Acr::Password => "your password",
        Acr::TwoFactor => "two-step sign-in (a code from your authenticator app, or a passkey)",
        Acr::PhishingResistant => "a passkey",
    }
}

impl<'a> ConsentPage<'a> {
    /// `here`: the network of the person's own request, to compare with the device's.
    pub fn new(v: &'a DeviceView, username: &'a str, csrf: &'a str, here: Option<&str>, now: UnixTime) -> Self {
        Self {
            section: "device",
            username,
            csrf,
            user_code: &v.user_code,
            client_name: &v.client_name,
            client_id: &v.client_id,
            items: access_items(&v.scope, &[]),
            resource: v.resource.as_deref(),
            requested_ago: ago(v.requested_at, now),
            requested_at: date(v.requested_at),
            network: v.requested_from.clone().unwrap_or_else(|| "unknown".into()),
            same_network: v.requested_from.is_some() && v.requested_from.as_deref() == here,
            expires_in: format!("in {}", span(v.expires_at.saturating_sub(now))),
            step_up: v.needs.map(|l| (level_words(l), l.as_str())),
        }
    }
}

/// After the answer: the device will get its tokens (or its refusal) at its next poll.
#[derive(Template)]
#[template(path = "device_done.html")]
pub struct DonePage<'a> {
    pub section: &'static str,
    pub approved: bool,
    pub client_name: &'a str,
    pub user_code: &'a str,
}

/// How long ago `then` was, as people say it: "less than a minute ago", "2 minutes ago".
pub fn ago(then: UnixTime, now: UnixTime) -> String {
    let secs = now.saturating_sub(then);
    if secs < 60 { "less than a minute ago".to_owned() } else { format!("{} ago", span(secs)) }
}

/// A duration in whole minutes (rounded down) or hours: "1 minute", "14 minutes", "2 hours".
/// Under a minute it is "less than a minute".
fn span(secs: i64) -> String {
    let plural = |n: i64, unit: &str| if n == 1 { format!("1 {unit}") } else { format!("{n} {unit}s") };
    match secs {
        ..60 => "less than a minute".to_owned(),
        60..3600 => plural(secs / 60, "minute"),
        _ => plural(secs / 3600, "hour"),
    }
}

/// "Try again in N minutes/seconds": rounded up, so that the wait it names is never too short.
pub fn retry_message(wait: u64) -> String {
    let plural = |n: u64, unit: &str| if n == 1 { format!("1 {unit}") } else { format!("{n} {unit}s") };
    let when = if wait < 60 { plural(wait.max(1), "second") } else { plural(wait.div_ceil(60), "minute") };
    format!("Too many attempts. Try again in {when}.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_people_say_them() {
        assert_eq!(ago(1000, 1000), "less than a minute ago");
        assert_eq!(ago(1000, 1059), "less than a minute ago");
        assert_eq!(ago(1000, 1060), "1 minute ago");
        assert_eq!(ago(1000, 1000 + 130), "2 minutes ago");
        assert_eq!(ago(1000, 1000 + 7300), "2 hours ago");
        assert_eq!(span(599), "9 minutes");
        assert_eq!(retry_message(0), "Too many attempts. Try again in 1 second.");
        assert_eq!(retry_message(1), "Too many attempts. Try again in 1 second.");
        assert_eq!(retry_message(32), "Too many attempts. Try again in 32 seconds.");
        assert_eq!(retry_message(60), "Too many attempts. Try again in 1 minute.");
        assert_eq!(retry_message(61), "Too many attempts. Try again in 2 minutes.");
        assert_eq!(retry_message(900), "Too many attempts. Try again in 15 minutes.");
    }

    #[test]
    fn the_consent_page_shows_what_asked_when_and_from_where_escaped() {
        let v = DeviceView {
            user_code: "WDJB-MJHT".into(),
            client_id: "tv".into(),
            client_name: "<b>TV</b>".into(),
            scope: latchkey_proto::Scope::parse("openid email").unwrap(),
            resource: Some("https://api.example/".into()),
            requested_at: 1_796_401_440,
            requested_from: Some("192.0.2.1".into()),
            expires_at: 1_796_401_440 + 600,
            needs: None,
        };
        let page = crate::pages::render(&ConsentPage::new(&v, "alice", "tok", Some("192.0.2.1"), 1_796_401_440 + 130));
        assert!(!page.contains("<b>TV"), "escaped");
        for part in [
            "WDJB-MJHT",
            "<code>tv</code>",
            "See your email address",
            "https://api.example/",
            "2 minutes ago",
            "2026-12-04 16:24 UTC",
            "192.0.2.1",
            "the network you are on now",
            "in 7 minutes",
            "If someone sent you this code, deny.",
            r#"name="decision" value="approve""#,
            r#"name="decision" value="deny""#,
            r#"name="csrf" value="tok""#,
        ] {
            assert!(page.contains(part), "{part}: {page}");
        }
        let elsewhere =
            crate::pages::render(&ConsentPage::new(&v, "alice", "tok", Some("198.51.100.7"), v.requested_at));
        assert!(!elsewhere.contains("the network you are on now"));
        // A client that needs more than the session has: no Approve, the step-up instead.
        let strict = DeviceView { needs: Some(Acr::PhishingResistant), ..v };
        let page = crate::pages::render(&ConsentPage::new(&strict, "alice", "tok", None, strict.requested_at));
        assert!(!page.contains(r#"value="approve""#), "{page}");
        assert!(page.contains(r#"action="/device/step-up""#) && page.contains(r#"value="phr""#), "{page}");
        assert!(page.contains(r#"value="deny""#), "denying needs nothing more");
    }
}
