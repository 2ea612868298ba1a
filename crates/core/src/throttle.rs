//! Login throttling: exponential back-off per account, per client IP, and per account and IP.
//!
//! Three keys are counted for each failed login, each with its own rule:
//! - account and IP: a few free failures, then back-off up to 15 minutes. This stops guessing one
//!   account from one place.
//! - IP: more free failures (NAT puts many users behind one address), the same back-off. This
//!   stops one place from guessing many accounts.
//! - account alone: many free failures and a back-off capped at one minute. This slows a
//!   distributed attack on one account. Because of the cap, an attacker elsewhere can never lock
//!   the real user out for more than a minute at a time: the user's own account-and-IP and IP
//!   keys are clean.
//!
//! Failures are counted for unknown usernames exactly as for known ones, so throttling reveals
//! nothing about which accounts exist. Attempts made while blocked are refused without being
//! counted or checked.

use std::net::IpAddr;

use crate::UnixTime;
use crate::store::ThrottleRecord;

/// A key whose last failure is older than this starts again from zero.
pub const FORGET_AFTER: u64 = 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Failures allowed before any delay.
    pub free: u32,
    /// Delay after the first failure past `free`, doubling with each further failure.
    pub base: u64,
    pub max: u64,
}

pub const ACCOUNT_AND_IP: Rule = Rule { free: 5, base: 1, max: 900 };
pub const IP: Rule = Rule { free: 20, base: 1, max: 900 };
pub const ACCOUNT: Rule = Rule { free: 50, base: 1, max: 60 };

/// Seconds to wait after the last of `failures` failures.
pub fn delay(failures: u32, rule: Rule) -> u64 {
    if failures < rule.free {
        return 0;
    }
    let doublings = (failures - rule.free).min(30);
    (rule.base << doublings).min(rule.max)
}

/// The keys and rules for one login attempt.
pub fn keys(username: &str, ip: Option<IpAddr>) -> Vec<(String, Rule)> {
    let user = username.to_lowercase();
    let mut out = vec![(format!("acct:{user}"), ACCOUNT)];
    if let Some(ip) = ip {
        out.push((format!("ip:{ip}"), IP));
        out.push((format!("acct-ip:{user}|{ip}"), ACCOUNT_AND_IP));
    }
    out
}

/// When the attempt may be made, if later than `now`.
pub fn blocked_until(records: &[ThrottleRecord], rules: &[(String, Rule)], now: UnixTime) -> Option<UnixTime> {
    records
        .iter()
        .filter_map(|r| {
            let rule = rules.iter().find(|(k, _)| *k == r.key)?.1;
            if now - r.last_failure > FORGET_AFTER as UnixTime {
                return None;
            }
            Some(r.last_failure + delay(r.failures, rule) as UnixTime)
        })
        .filter(|until| *until > now)
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(delay(4, ACCOUNT_AND_IP), 0);
        assert_eq!(delay(5, ACCOUNT_AND_IP), 1);
        assert_eq!(delay(6, ACCOUNT_AND_IP), 2);
        assert_eq!(delay(10, ACCOUNT_AND_IP), 32);
        assert_eq!(delay(100, ACCOUNT_AND_IP), 900);
        assert_eq!(delay(1000, ACCOUNT), 60, "never more than a minute on the account alone");
    }

    #[test]
    fn the_slowest_key_decides_and_old_failures_are_forgotten() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let rules = keys("Alice", Some(ip));
        assert_eq!(rules.len(), 3);
        let recs = vec![
            ThrottleRecord { key: "acct-ip:alice|192.0.2.7".into(), failures: 7, last_failure: 100 },
            ThrottleRecord { key: "acct:alice".into(), failures: 7, last_failure: 100 },
        ];
        assert_eq!(blocked_until(&recs, &rules, 101), Some(104));
        assert_eq!(blocked_until(&recs, &rules, 104), None);
        // Another IP is not blocked by this one's failures.
        let elsewhere = keys("alice", Some("198.51.100.1".parse().unwrap()));
        assert_eq!(blocked_until(&recs, &elsewhere, 101), None);
        let stale = vec![ThrottleRecord { key: "acct-ip:alice|192.0.2.7".into(), failures: 40, last_failure: 0 }];
        assert_eq!(blocked_until(&stale, &rules, FORGET_AFTER as i64 + 1), None);
    }
}
