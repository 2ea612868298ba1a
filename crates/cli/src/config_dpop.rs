//! `[dpop]` in `latchkey.toml`: how the server checks DPoP proofs (RFC 9449). Every value is
//! checked at start-up, and a bad one stops it with a message that names the key.

use anyhow::{anyhow, bail};
use latchkey_core::protection::DpopConfig;
use serde::Deserialize;

/// `[dpop]` as written in the file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpopFile {
    /// Require a server nonce in every proof (§8).
    pub require_nonce: Option<bool>,
    /// Seconds a nonce is handed out for; it is accepted for up to twice this.
    pub nonce_lifetime: Option<i64>,
    /// Seconds a proof's `iat` may lie in the past.
    pub max_age: Option<i64>,
    /// Seconds a proof's `iat` may lie in the future (clients' clocks).
    pub max_skew: Option<i64>,
    /// `dpop_signing_alg_values_supported`: asymmetric JOSE algorithms only.
    pub algorithms: Option<Vec<String>>,
}

/// Longest `max_age`: a proof is made for one request, now; a longer window lets a stolen proof
/// live longer and makes the replay store hold more.
const MAX_AGE_LIMIT: i64 = 300;
/// Longest `nonce_lifetime`: a nonce is what makes proofs made in advance useless.
const NONCE_LIFETIME_LIMIT: i64 = 3600;

/// The settings, with the defaults of [`DpopConfig`] where the file says nothing.
pub fn resolve(file: Option<&DpopFile>) -> anyhow::Result<DpopConfig> {
    let mut c = latchkey_core::protection::ProtectionConfig::default().dpop;
    let Some(f) = file else { return Ok(c) };
    let within = |key: &str, v: Option<i64>, lo: i64, hi: i64, default: i64| -> anyhow::Result<i64> {
        match v {
            None => Ok(default),
            Some(n) if (lo..=hi).contains(&n) => Ok(n),
            Some(n) => bail!("[dpop] {key} must be between {lo} and {hi} seconds, not {n}"),
        }
    };
    c.require_nonce = f.require_nonce.unwrap_or(c.require_nonce);
    c.nonce_lifetime = within("nonce_lifetime", f.nonce_lifetime, 1, NONCE_LIFETIME_LIMIT, c.nonce_lifetime)?;
    c.max_age = within("max_age", f.max_age, 1, MAX_AGE_LIMIT, c.max_age)?;
    c.max_skew = within("max_skew", f.max_skew, 0, 60, c.max_skew)?;
    if let Some(names) = &f.algorithms {
        if names.is_empty() {
            bail!(
                "[dpop] algorithms must not be empty: list the algorithms proofs may be signed with, e.g. [\"ES256\"]"
            );
        }
        c.algorithms = names.iter().map(|n| algorithm(n)).collect::<anyhow::Result<_>>()?;
    }
    Ok(c)
}

/// One algorithm name, checked by the core (a JOSE name, asymmetric).
fn algorithm(name: &str) -> anyhow::Result<latchkey_core::dpop::Algorithm> {
    latchkey_core::dpop::parse_algorithm(name).map_err(|why| anyhow!("[dpop] algorithms: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<DpopConfig> {
        #[derive(Deserialize)]
        struct Wrapper {
            dpop: DpopFile,
        }
        let w: Wrapper = toml::from_str(text).map_err(|e| anyhow!("{}", e.message()))?;
        resolve(Some(&w.dpop))
    }

    #[test]
    fn defaults_and_values() {
        let d = resolve(None).unwrap();
        assert_eq!((d.require_nonce, d.nonce_lifetime, d.max_age, d.max_skew), (false, 60, 60, 10));
        assert_eq!(d.algorithms, latchkey_proto::dpop::DEFAULT_ALGORITHMS);
        let names = |c: &DpopConfig| latchkey_core::dpop::alg_names(&c.algorithms);
        let c = parse(
            "[dpop]\nrequire_nonce = true\nnonce_lifetime = 120\nmax_age = 30\nalgorithms = [\"ES256\", \"EdDSA\"]\n",
        )
        .unwrap();
        assert!(c.require_nonce);
        assert_eq!((c.nonce_lifetime, c.max_age, c.max_skew), (120, 30, 10));
        assert_eq!(names(&c), ["ES256", "EdDSA"]);
    }

    #[test]
    fn the_section_reaches_the_provider_and_its_errors_stop_the_start() {
        use crate::config::{Overrides, Settings};
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("latchkey.toml");
        let env = Default::default();
        std::fs::write(&p, "[dpop]\nrequire_nonce = true\nmax_age = 20\n").unwrap();
        let c = Settings::resolve(Some(&p), &env, &Overrides::default()).unwrap().provider_config();
        assert!(c.protection.dpop.require_nonce);
        assert_eq!(c.protection.dpop.max_age, 20);
        std::fs::write(&p, "[dpop]\nalgorithms = [\"HS512\"]\n").unwrap();
        let e = Settings::resolve(Some(&p), &env, &Overrides::default()).unwrap_err().to_string();
        assert!(e.contains("[dpop] algorithms: HS512 is symmetric"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        for (text, needle) in [
            ("[dpop]\nmax_age = 0\n", "max_age must be between 1 and 300"),
            ("[dpop]\nmax_age = 3600\n", "max_age must be between 1 and 300"),
            ("[dpop]\nnonce_lifetime = 0\n", "nonce_lifetime must be between 1 and 3600"),
            ("[dpop]\nmax_skew = -1\n", "max_skew must be between 0 and 60"),
            ("[dpop]\nalgorithms = []\n", "must not be empty"),
            ("[dpop]\nalgorithms = [\"HS256\"]\n", "HS256 is symmetric"),
            ("[dpop]\nalgorithms = [\"none\"]\n", "not a JOSE algorithm name"),
            ("[dpop]\nrequire_nonces = true\n", "require_nonces"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
