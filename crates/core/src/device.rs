//! Known-device cookies: evidence that a browser has signed in to an account before.
//!
//! After a successful login the browser gets a cookie naming a random device id, the account and
//! the time, under an HMAC-SHA256 with a key only the server holds (kept in the store, so every
//! instance agrees). At the next login for the same account, a valid cookie exempts the attempt
//! from the account-wide throttling key that a distant attacker can keep tripped with one guess a
//! minute (security review 2026-12, finding 3; OWASP "device cookies"). It is no free pass: the
//! attempt is still counted under its own account-and-device key and the IP keys.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latchkey_proto::secret::random_token;

use crate::UnixTime;
use crate::server_key::ServerKey;

/// A device cookie is honoured for this long after it was issued (renewed at every login).
pub const DEVICE_TTL: u64 = 180 * 24 * 3600;

const PURPOSE: &str = "latchkey device-cookie v1";

/// Length-prefixed fields: no two different triples sign the same bytes.
fn message(device: &str, user_id: &str, issued: UnixTime) -> String {
    format!("{}|{device}|{}|{user_id}|{issued}", device.len(), user_id.len())
}

/// A cookie value for `user_id`, keeping the browser's device id if it had one.
pub fn issue(key: &ServerKey, device: Option<&str>, user_id: &str, now: UnixTime) -> String {
    let device = device.map(str::to_owned).unwrap_or_else(random_token);
    let mac = URL_SAFE_NO_PAD.encode(key.mac(PURPOSE, message(&device, user_id, now).as_bytes()));
    format!("{device}.{now}.{mac}")
}

/// The device id of a cookie that is valid for `user_id` at `now`.
pub fn verify<'a>(key: &ServerKey, cookie: &'a str, user_id: &str, now: UnixTime) -> Option<&'a str> {
    if cookie.len() > 256 {
        return None;
    }
    let mut parts = cookie.split('.');
    let (device, issued, mac) = (parts.next()?, parts.next()?, parts.next()?);
    let id_ok = !device.is_empty() && device.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if parts.next().is_some() || !id_ok {
        return None;
    }
    let issued: UnixTime = issued.parse().ok()?;
    if issued > now || now - issued > DEVICE_TTL as UnixTime {
        return None;
    }
    let given = URL_SAFE_NO_PAD.decode(mac).ok()?;
    key.verify(PURPOSE, message(device, user_id, issued).as_bytes(), &given).then_some(device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_is_valid_for_its_account_and_time_only() {
        let k = ServerKey::new(b"0123456789abcdef0123456789abcdef");
        let c = issue(&k, None, "user-1", 1000);
        let device = verify(&k, &c, "user-1", 1000).expect("valid");
        assert!(!device.is_empty());
        assert_eq!(verify(&k, &c, "user-2", 1000), None, "another account");
        assert_eq!(verify(&k, &c, "user-1", 1000 + DEVICE_TTL as i64 + 1), None, "expired");
        assert_eq!(verify(&k, &c, "user-1", 999), None, "issued in the future");
        let other = ServerKey::new(b"another key, another deployment!");
        assert_eq!(verify(&other, &c, "user-1", 1000), None, "another key");
        // A forged cookie: the attacker picks the device and the time but cannot sign them.
        let forged = format!("{device}.1000.{}", URL_SAFE_NO_PAD.encode([0u8; 32]));
        assert_eq!(verify(&k, &forged, "user-1", 1000), None);
        let renewed = issue(&k, Some(device), "user-1", 2000);
        assert_eq!(verify(&k, &renewed, "user-1", 2000), Some(device), "renewal keeps the device id");
    }
}
