//! The key-encryption key that seals the private signing keys at rest: from
//! `LATCHKEY_KEY_ENCRYPTION_KEY` (the key itself, base64) or `--key-encryption-key-file`.

use std::path::Path;

use anyhow::{Context, anyhow, bail};
use latchkey_core::keys::KeyEncryptionKey;

/// The configured key-encryption key, if any. Giving both sources is an error: which one wins
/// would be a guess, and a wrong guess makes every sealed key unreadable.
pub fn resolve(env_value: Option<&str>, file: Option<&Path>) -> anyhow::Result<Option<KeyEncryptionKey>> {
    match (env_value, file) {
        (Some(_), Some(_)) => {
            bail!(
                "give the key-encryption key once: LATCHKEY_KEY_ENCRYPTION_KEY or --key-encryption-key-file, not both"
            )
        }
        (Some(v), None) => {
            Ok(Some(KeyEncryptionKey::from_base64(v).map_err(|e| anyhow!("LATCHKEY_KEY_ENCRYPTION_KEY: {e}"))?))
        }
        (None, Some(p)) => from_file(p).map(Some),
        (None, None) => Ok(None),
    }
}

/// Reads the key from `path`, which only its owner may read: a key-encryption key readable by
/// other accounts protects nothing.
fn from_file(path: &Path) -> anyhow::Result<KeyEncryptionKey> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .with_context(|| format!("reading the key-encryption key file {}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            bail!(
                "the key-encryption key file {} has mode {:03o}, so other accounts on this host can read it; fix it with: chmod 600 {}",
                path.display(),
                mode & 0o777,
                path.display()
            );
        }
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the key-encryption key file {}", path.display()))?;
    KeyEncryptionKey::from_base64(&text).map_err(|e| anyhow!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const KEY: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";

    #[test]
    fn the_key_file_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("kek");
        std::fs::write(&p, format!("{KEY}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = resolve(None, Some(&p)).unwrap_err().to_string();
        assert!(err.contains("mode 644") && err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(resolve(None, Some(&p)).unwrap().is_some());
        assert!(resolve(Some(KEY), Some(&p)).is_err(), "one source only");
        assert!(resolve(Some(KEY), None).unwrap().is_some());
        let err = resolve(Some("c2hvcnQ="), None).unwrap_err().to_string();
        assert!(err.contains("32 bytes"), "{err}");
        assert!(resolve(None, None).unwrap().is_none());
    }
}
