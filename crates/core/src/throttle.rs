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
//!
//! Every attempt is *reserved* before its password is checked: one atomic store operation reads
//! the counters, refuses the attempt if a key is blocked, and otherwise counts it as a failure
//! under every key (`Store::throttle_reserve`). A burst of simultaneous guesses therefore sees
//! its own earlier members; reading first and counting after the (slow) Argon2 check let 100
//! concurrent guesses all through (security review 2026-12, finding 1). A success then takes the
//! reservation back.
//!
//! The account-wide key never blocks a browser that has signed in to that account before (a
//! known-device cookie, [`crate::device`]): one guess a minute from anywhere must not keep the
//! real user out (finding 3). A browser without that cookie is blocked for at most a minute.
//!
//! IPv6 clients are keyed by their /64: one subscriber usually holds a whole /64, so a per-address
//! key would give an attacker 2^64 fresh budgets (finding 10).

use std::net::{IpAddr, Ipv6Addr};

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
/// Second-factor codes, per account: a TOTP code is one of a million (three valid at a time), so
/// a few free tries and then a back-off up to 15 minutes. Only someone who knows the password
/// gets here, so the lock-out this allows against the owner needs the password too.
pub const SECOND_FACTOR: Rule = Rule { free: 5, base: 1, max: 900 };

/// Seconds to wait after the last of `failures` failures.
pub fn delay(failures: u32, rule: Rule) -> u64 {
    if failures < rule.free {
        return 0;
    }
    let doublings = (failures - rule.free).min(30);
    (rule.base << doublings).min(rule.max)
}

/// The network a client address stands for: an IPv4 address itself (an IPv4-mapped IPv6 address
/// is its IPv4 address), an IPv6 address its /64.
pub fn source(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{}/64", Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// The keys and rules for one login attempt. `known_device`: the browser carries a valid
/// known-device cookie for this account, so the account-wide key does not apply to it; its own
/// account-and-device key does, so a stolen cookie is no free pass for guessing.
pub fn keys(username: &str, ip: Option<IpAddr>, known_device: Option<&str>) -> Vec<(String, Rule)> {
    let user = username.to_lowercase();
    let mut out = Vec::with_capacity(3);
    match known_device {
        Some(device) => out.push((format!("acct-dev:{user}|{device}"), ACCOUNT_AND_IP)),
        None => out.push((format!("acct:{user}"), ACCOUNT)),
    }
    if let Some(ip) = ip {
        let src = source(ip);
        out.push((format!("ip:{src}"), IP));
        out.push((format!("acct-ip:{user}|{src}"), ACCOUNT_AND_IP));
    }
    out
}

/// The keys and rules for one second-factor attempt: the account, and the network (one place
/// guessing codes for many stolen passwords).
pub fn second_factor_keys(user_id: &str, ip: Option<IpAddr>) -> Vec<(String, Rule)> {
    let mut out = vec![(format!("2fa:{user_id}"), SECOND_FACTOR)];
    if let Some(ip) = ip {
        out.push((format!("2fa-ip:{}", source(ip)), IP));
    }
    out
}

/// Keys a successful login clears: every key of the account. The IP keys are only refunded (the
/// reserved failure is taken back): logging in to one's own account must not reset the budget for
/// guessing others.
pub fn is_account_key(key: &str) -> bool {
    !key.starts_with("ip:") && !key.starts_with("2fa-ip:")
}

/// When the attempt may be made, if later than `now`.
pub fn blocked_until(records: &[ThrottleRecord], rules: &[(String, Rule)], now: UnixTime) -> Option<UnixTime> {
    records
        .iter()
        .filter_map(|r| {
            let rule = rules.iter().find(|(k, _)| *k == r.key)?.1;
            let wait = delay(r.failures, rule);
            // Free attempts wait for nothing, whatever the clocks say: a counter touched by
            // another instance whose clock runs ahead must not block.
            if wait == 0 || now - r.last_failure > FORGET_AFTER as UnixTime {
                return None;
            }
            Some(r.last_failure + wait as UnixTime)
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
        let rules = keys("Alice", Some(ip), None);
        assert_eq!(rules.len(), 3);
        let recs = vec![
            ThrottleRecord { key: "acct-ip:alice|192.0.2.7".into(), failures: 7, last_failure: 100, refused: 0 },
            ThrottleRecord { key: "acct:alice".into(), failures: 7, last_failure: 100, refused: 0 },
        ];
        assert_eq!(blocked_until(&recs, &rules, 101), Some(104));
        assert_eq!(blocked_until(&recs, &rules, 104), None);
        // Another IP is not blocked by this one's failures.
        let elsewhere = keys("alice", Some("198.51.100.1".parse().unwrap()), None);
        assert_eq!(blocked_until(&recs, &elsewhere, 101), None);
        let stale =
            vec![ThrottleRecord { key: "acct-ip:alice|192.0.2.7".into(), failures: 40, last_failure: 0, refused: 0 }];
        assert_eq!(blocked_until(&stale, &rules, FORGET_AFTER as i64 + 1), None);
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64_and_mapped_ipv4_by_the_ipv4() {
        let a = keys("bob", Some("2001:db8:1:2:aaaa::1".parse().unwrap()), None);
        let b = keys("bob", Some("2001:db8:1:2:ffff:1:2:3".parse().unwrap()), None);
        assert_eq!(a, b, "two addresses of one /64 share every key");
        assert_eq!(a[1].0, "ip:2001:db8:1:2::/64");
        let other = keys("bob", Some("2001:db8:1:3::1".parse().unwrap()), None);
        assert_ne!(a[1], other[1]);
        let mapped = keys("bob", Some("::ffff:192.0.2.7".parse().unwrap()), None);
        assert_eq!(mapped, keys("bob", Some("192.0.2.7".parse().unwrap()), None));
    }

    #[test]
    fn a_known_device_replaces_the_account_wide_key() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let fresh = keys("alice", Some(ip), None);
        assert!(fresh.iter().any(|(k, r)| k == "acct:alice" && *r == ACCOUNT));
        let known = keys("alice", Some(ip), Some("d1"));
        assert!(!known.iter().any(|(k, _)| k == "acct:alice"));
        assert!(known.iter().any(|(k, r)| k == "acct-dev:alice|d1" && *r == ACCOUNT_AND_IP));
        // An attacker's failures on the account-wide key block a fresh browser, not a known one.
        let recs = vec![ThrottleRecord { key: "acct:alice".into(), failures: 60, last_failure: 100, refused: 0 }];
        assert!(blocked_until(&recs, &fresh, 101).is_some());
        assert_eq!(blocked_until(&recs, &known, 101), None);
    }
}
