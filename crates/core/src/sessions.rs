//! Browser sessions as their owner sees them: where and on what each was signed in, and the one
//! way to end some of them.
//!
//! [`end_sessions`] is the single entry point that ends sessions by request: RP-initiated logout,
//! the account page ("sign out this session", "sign out everywhere else") and the administrator
//! (`latchkey user end-sessions`). It takes the store, not the provider, so that the admin
//! commands reach it too; [`Provider::end_sessions`] also wakes the outbox worker. The operations
//! that end sessions as a side effect of another change (password change or reset, lock, token
//! revocation, user removal, eviction beyond `max_sessions_per_user` at sign-in) do it inside
//! their own transaction and return what they ended.
//!
//! Whichever the path, the store operation that deletes the sessions queues, in the same
//! transaction, the back-channel logout tokens owed to their clients (`crate::backchannel`), and
//! returns them as [`EndedSessions`]; a server path hands those to [`Provider::sessions_ended`],
//! which wakes the outbox worker (an admin command's are found by the server's next poll).

use std::net::{IpAddr, Ipv6Addr};

use serde_json::json;

use crate::account_store::SessionSelector;
use crate::store::{EndedSessions, SessionMeta, Store};
use crate::{Error, Provider, UnixTime, audit};

/// What a session records about where it was signed in: the network of `ip` ([`network`]) and a
/// summary of `user_agent` ([`device`]). Bounded whatever the client sends.
pub fn meta(ip: Option<IpAddr>, user_agent: Option<&str>) -> SessionMeta {
    SessionMeta { network: ip.map(network), device: user_agent.map(device) }
}

/// The network an address belongs to, which is what a person recognises ("my home", "the office")
/// and all the account page needs: an IPv4 /24, an IPv6 /48 (a site). Keeping less than the
/// address is kinder to the user's privacy in a table every administrator can read.
pub fn network(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => network(IpAddr::V4(v4)),
            None => {
                let s = v6.segments();
                format!("{}/48", Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0))
            }
        },
    }
}

/// A short summary of a `User-Agent` header, such as "Firefox on Linux": the browser family and
/// the operating system, from a fixed vocabulary; anything else is summarised by its first product
/// token, cut to 32 safe characters. The header itself is never stored (it is long, and
/// fingerprints the browser).
pub fn device(ua: &str) -> String {
    let has = |s: &str| ua.contains(s);
    let browser = if has("Edg/") {
        Some("Edge")
    } else if has("OPR/") || has("Opera") {
        Some("Opera")
    } else if has("Firefox/") || has("FxiOS/") {
        Some("Firefox")
    } else if has("Chrome/") || has("CriOS/") || has("Chromium/") {
        Some(if has("HeadlessChrome") { "Headless Chrome" } else { "Chrome" })
    } else if has("Safari/") && has("Version/") {
        Some("Safari")
    } else {
        None
    };
    let os = if has("Windows") {
        Some("Windows")
    } else if has("iPhone") || has("iPad") || has("iPod") {
        Some("iOS")
    } else if has("Mac OS X") || has("Macintosh") {
        Some("macOS")
    } else if has("Android") {
        Some("Android")
    } else if has("CrOS") {
        Some("ChromeOS")
    } else if has("Linux") || has("X11") {
        Some("Linux")
    } else {
        None
    };
    match (browser, os) {
        (Some(b), Some(o)) => format!("{b} on {o}"),
        (Some(b), None) => b.to_owned(),
        (None, _) => {
            let product: String = ua
                .split(['/', ' '])
                .next()
                .unwrap_or("")
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
                .take(32)
                .collect();
            if product.is_empty() { "Unknown browser".to_owned() } else { product }
        }
    }
}

/// Why sessions end, for the audit log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndCause {
    /// RP-initiated logout (`/logout`), by the session's own browser.
    Logout,
    /// The user, on the account page.
    User,
    /// An administrator (`latchkey user end-sessions`).
    Admin,
}

/// A request to end sessions of one user.
#[derive(Clone, Debug)]
pub struct EndSessions<'a> {
    pub user_id: &'a str,
    pub which: SessionSelector,
    pub cause: EndCause,
    /// The client whose logout request this is, if any.
    pub client_id: Option<&'a str>,
    pub ip: Option<IpAddr>,
}

/// Ends the selected sessions of one user, in one atomic store operation that also revokes the
/// grants bound to them (those without `offline_access`) and queues the back-channel logout tokens
/// owed to their clients; a session of another user is never touched, whatever `sid` is named
/// (the account page passes the signed-in user's id). Audited. Returns the sessions this call
/// ended (of concurrent calls ending one session, exactly one reports and queues it).
pub async fn end_sessions(store: &dyn Store, req: EndSessions<'_>, now: UnixTime) -> Result<EndedSessions, Error> {
    let ended = store.end_user_sessions(req.user_id, &req.which, now).await?;
    if !ended.is_empty() {
        let (name, by) = match req.cause {
            EndCause::Logout => ("logout", "session"),
            EndCause::User => ("sessions_ended", "user"),
            EndCause::Admin => ("sessions_ended", "admin"),
        };
        let detail = (req.cause != EndCause::Logout).then(|| json!({ "by": by, "sessions_ended": ended.len() }));
        let e = audit::Event { user_id: Some(req.user_id), client_id: req.client_id, ip: req.ip, detail };
        audit::record(store, now, name, e).await;
    }
    Ok(ended)
}

impl Provider {
    /// [`end_sessions`] on this provider's store; the logout tokens queued leave now.
    pub async fn end_sessions(&self, req: EndSessions<'_>, now: UnixTime) -> Result<EndedSessions, Error> {
        let ended = end_sessions(self.store.as_ref(), req, now).await?;
        self.sessions_ended(&ended);
        Ok(ended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_not_addresses() {
        assert_eq!(network("203.0.113.77".parse().unwrap()), "203.0.113.0/24");
        assert_eq!(network("2001:db8:1:2:3::9".parse().unwrap()), "2001:db8:1::/48");
        assert_eq!(network("::ffff:198.51.100.7".parse().unwrap()), "198.51.100.0/24");
    }

    #[test]
    fn user_agents_are_summarised() {
        for (ua, want) in [
            ("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", "Firefox on Linux"),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0",
                "Edge on Windows",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
                "Safari on iOS",
            ),
            (
                "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36",
                "Chrome on Android",
            ),
            ("curl/8.5.0", "curl"),
            ("<script>alert(1)</script>/1", "scriptalert1"),
            ("", "Unknown browser"),
        ] {
            assert_eq!(device(ua), want, "{ua}");
        }
        assert!(device(&"x".repeat(10_000)).len() <= 32);
    }
}
