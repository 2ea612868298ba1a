//! The account fixtures of the Latchkey-only phases (issue 13): users with TOTP and users with a
//! passkey, as `seed-latchkey` made them, written to a file that `run --account-fixtures` reads.
//!
//! The file holds what a person's phone or authenticator would: the TOTP secrets and the passkeys'
//! private keys. They are benchmark fixtures, like the users' shared password, and sign in to
//! nothing but the benchmark's own database.

use std::path::Path;

use latchkey_core::factors::totp::TotpSecret;
use latchkey_core::passkey::soft::SoftAuthenticator;
use serde::{Deserialize, Serialize};

/// The domain of every seeded user's address: `{username}@bench.example` (RFC 2606 reserves
/// `.example`, so no mail can ever go anywhere).
pub const EMAIL_DOMAIN: &str = "bench.example";

/// The address `seed-latchkey` gives a user.
pub fn email_of(username: &str) -> String {
    format!("{username}@{EMAIL_DOMAIN}")
}

/// The usernames of the account users, after the `{prefix}{i}` users of the other phases.
pub fn totp_username(prefix: &str, i: usize) -> String {
    format!("{prefix}totp-{i}")
}

pub fn passkey_username(prefix: &str, i: usize) -> String {
    format!("{prefix}passkey-{i}")
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AccountFixtures {
    /// Users with a confirmed TOTP secret (and recovery codes), who consented to the client.
    pub totp: Vec<TotpUser>,
    /// Users with one discoverable passkey, who consented to the client.
    pub passkeys: Vec<PasskeyUser>,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct TotpUser {
    pub username: String,
    /// The secret in base32, as an authenticator app is given it.
    pub secret_base32: String,
}

impl std::fmt::Debug for TotpUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TotpUser").field("username", &self.username).finish_non_exhaustive()
    }
}

impl TotpUser {
    pub fn secret(&self) -> anyhow::Result<TotpSecret> {
        TotpSecret::from_stored(&self.secret_base32, None, &self.username)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PasskeyUser {
    pub username: String,
    pub authenticator: SoftAuthenticator,
}

impl AccountFixtures {
    pub fn is_empty(&self) -> bool {
        self.totp.is_empty() && self.passkeys.is_empty()
    }

    pub fn usernames(&self) -> impl Iterator<Item = &str> {
        self.totp.iter().map(|u| u.username.as_str()).chain(self.passkeys.iter().map(|u| u.username.as_str()))
    }

    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading the account fixtures {}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("the account fixtures {}: {e}", path.display()))
    }

    /// Writes the file readable by its owner only: it holds credentials, if only the benchmark's.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string(self)?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
        std::io::Write::write_all(&mut file, text.as_bytes())?;
        Ok(())
    }
}
