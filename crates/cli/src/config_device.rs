//! `[device]` in `latchkey.toml`: the device authorization grant (RFC 8628). Every value is
//! checked at start-up, and a bad one stops it with a message that names the key.

use anyhow::bail;
use latchkey_core::device_grant::DeviceConfig;
use serde::Deserialize;

/// `[device]` as written in the file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceFile {
    /// Seconds a user code stays usable (default 600, between 60 and 1800).
    pub ttl: Option<u64>,
    /// The polling interval handed to devices, in seconds (default 5, between 1 and 60).
    pub interval: Option<u64>,
    /// Device codes waiting for their user, kept per client (default 1000); past it, the
    /// endpoint answers 503 until some are used or expire.
    pub max_per_client: Option<u64>,
}

/// The settings, with the defaults of [`DeviceConfig`] where the file says nothing.
pub fn resolve(file: Option<&DeviceFile>) -> anyhow::Result<DeviceConfig> {
    let mut c = DeviceConfig::default();
    let Some(f) = file else { return Ok(c) };
    let within = |key: &str, v: Option<u64>, lo: u64, hi: u64, default: u64| -> anyhow::Result<u64> {
        match v {
            None => Ok(default),
            Some(n) if (lo..=hi).contains(&n) => Ok(n),
            Some(n) => bail!("[device] {key} must be between {lo} and {hi}, not {n}"),
        }
    };
    // A user code has about 34.6 bits: its lifetime bounds how long a guesser may try for it,
    // and half an hour is more than anyone needs to type eight letters.
    c.ttl = within("ttl", f.ttl, 60, 1800, c.ttl)?;
    c.interval = within("interval", f.interval, 1, 60, c.interval)?;
    c.max_per_client = within("max_per_client", f.max_per_client, 1, 1_000_000, c.max_per_client)?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_settings_are_read_and_checked() {
        assert_eq!(resolve(None).unwrap(), DeviceConfig::default());
        let f = DeviceFile { ttl: Some(300), interval: Some(1), max_per_client: Some(10) };
        assert_eq!(resolve(Some(&f)).unwrap(), DeviceConfig { ttl: 300, interval: 1, max_per_client: 10 });
        for (f, why) in [
            (DeviceFile { ttl: Some(7200), ..Default::default() }, "[device] ttl"),
            (DeviceFile { interval: Some(0), ..Default::default() }, "[device] interval"),
            (DeviceFile { max_per_client: Some(0), ..Default::default() }, "[device] max_per_client"),
        ] {
            let e = resolve(Some(&f)).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
    }
}
