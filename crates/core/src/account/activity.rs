//! `/account/activity`: the recent security events of the signed-in user, from the audit log,
//! told in words a person reads: sign-ins and failed attempts, password and profile changes,
//! factor changes, consents and revocations, each with its time and network.
//!
//! Events another part of the server adds are shown by their name until they get a sentence here
//! ([`describe`]); nothing is hidden for want of one.

use latchkey_proto::ClientId;
use serde_json::Value;

use super::AccountSession;
use crate::store::AuditRecord;
use crate::{Error, Provider, UnixTime};

/// How many events the page shows.
pub const SHOWN: u32 = 50;

/// One event, ready to show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActivityItem {
    pub at: UnixTime,
    pub what: String,
    /// The network the request came from ([`crate::sessions::network`]), when known.
    pub network: Option<String>,
    /// A failure or a refusal: shown as needing attention.
    pub warning: bool,
}

impl Provider {
    /// The newest [`SHOWN`] security events of the signed-in user.
    pub async fn account_activity(&self, a: &AccountSession) -> Result<Vec<ActivityItem>, Error> {
        let events = self.store.audit_events(None, Some(&a.user.id), SHOWN).await?;
        let mut names: Vec<(String, String)> = Vec::new();
        let mut out = Vec::with_capacity(events.len());
        for e in &events {
            let app = match &e.client_id {
                Some(id) => Some(self.app_name(id, &mut names).await?),
                None => None,
            };
            let (what, warning) = describe(e, app.as_deref());
            let network = e.ip.as_deref().and_then(|ip| ip.parse().ok()).map(crate::sessions::network);
            out.push(ActivityItem { at: e.at, what, network, warning });
        }
        Ok(out)
    }

    /// A client's name for the activity page, looked up once per page.
    async fn app_name(&self, id: &str, seen: &mut Vec<(String, String)>) -> Result<String, Error> {
        if let Some((_, n)) = seen.iter().find(|(k, _)| k == id) {
            return Ok(n.clone());
        }
        let name = if id == super::ACCOUNT_PENDING_ID {
            super::ACCOUNT_CLIENT_NAME.to_owned()
        } else {
            match ClientId::parse(id) {
                Ok(cid) => self.store.client(&cid).await?.map_or_else(|| id.to_owned(), |c| c.name),
                Err(_) => id.to_owned(),
            }
        };
        seen.push((id.to_owned(), name.clone()));
        Ok(name)
    }
}

/// The sentence for one event, and whether it is a warning. Pure.
pub fn describe(e: &AuditRecord, app: Option<&str>) -> (String, bool) {
    let to = app.map(|a| format!(" to {a}")).unwrap_or_default();
    let app = app.unwrap_or("an application");
    let by_admin = e.detail.get("by").and_then(Value::as_str) == Some("admin");
    let count = |k: &str| e.detail.get(k).and_then(Value::as_u64).unwrap_or(0);
    match e.event.as_str() {
        "login_success" => (format!("Signed in{to}"), false),
        "login_failure" if e.detail.get("step").and_then(Value::as_str) == Some("password_change") => {
            ("Wrong current password when changing the password".into(), true)
        }
        "login_failure" => (format!("Failed sign-in attempt{to} (wrong password)"), true),
        "login_refused_locked" => ("Sign-in refused: the account is locked".into(), true),
        "logout" => ("Signed out".into(), false),
        "sessions_ended" if by_admin => (format!("An administrator ended {}", sessions(count("sessions_ended"))), true),
        "sessions_ended" => (format!("Ended {}", sessions(count("sessions_ended"))), false),
        "password_changed" if by_admin => ("An administrator set a new password".into(), true),
        "password_changed" => ("Password changed; other sessions were signed out".into(), false),
        "tokens_revoked" => ("An administrator signed out every session and revoked app access".into(), true),
        "consent_granted" => (format!("Allowed {app} access"), false),
        "consent_denied" => (format!("Denied {app} access"), false),
        "app_revoked" => (format!("Removed the access of {app}"), false),
        "profile_updated" if by_admin => ("An administrator updated your profile".into(), false),
        "profile_updated" => ("Profile updated".into(), false),
        "user_added" => ("Account created".into(), false),
        "user_locked" => ("An administrator locked the account".into(), true),
        "user_unlocked" => ("An administrator unlocked the account".into(), false),
        other => {
            let mut s = other.replace('_', " ");
            if let Some(f) = s.get(..1) {
                s = f.to_uppercase() + &s[1..];
            }
            (s, other.contains("fail") || other.contains("refused"))
        }
    }
}

fn sessions(n: u64) -> String {
    if n == 1 { "1 session".into() } else { format!("{n} sessions") }
}

/// A time as the pages show it: `2026-03-01 14:05 UTC`. Pure (Howard Hinnant's days-to-civil
/// algorithm), so no date library is needed for one format.
pub fn utc(at: UnixTime) -> String {
    let days = at.div_euclid(86_400);
    let secs = at.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", secs / 3600, secs % 3600 / 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn times_are_civil() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13 UTC");
        assert_eq!(utc(4_102_444_799), "2099-12-31 23:59 UTC");
    }

    #[test]
    fn events_read_as_sentences() {
        let e = |event: &str, detail: Value| AuditRecord {
            at: 0,
            event: event.into(),
            user_id: Some("u".into()),
            client_id: None,
            ip: None,
            detail,
        };
        assert_eq!(describe(&e("login_success", json!({})), Some("Notes")), ("Signed in to Notes".into(), false));
        assert!(describe(&e("login_failure", json!({})), None).1);
        assert_eq!(
            describe(&e("sessions_ended", json!({"by": "user", "sessions_ended": 2})), None).0,
            "Ended 2 sessions"
        );
        assert_eq!(describe(&e("totp_enrolled", json!({})), None), ("Totp enrolled".into(), false));
        assert!(describe(&e("passkey_login_failed", json!({})), None).1);
    }
}
