//! The per-user token cache: one file per (issuer, client), mode 0600 in a 0700 directory under
//! the XDG cache directory (`$XDG_CACHE_HOME/latchkey`, by default `~/.cache/latchkey`).
//!
//! The files hold live credentials, so they are readable by their owner only, written atomically
//! (a crash never leaves half a file), and refreshes are serialized by a lock file: two commands
//! refreshing at once would otherwise both spend the same single-use refresh token.

use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latchkey_proto::RefreshToken;
use latchkey_proto::dpop::DpopKey;
use latchkey_proto::secret::AccessToken;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{ClientKey, Error, TokenSet, TokenType};

/// One login: the tokens a `login` obtained (or the last refresh replaced).
#[derive(Clone, Serialize, Deserialize)]
pub struct CachedLogin {
    pub issuer: String,
    pub client_id: String,
    access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
    /// When the access token expires (Unix seconds); `None` if the provider did not say.
    pub expires_at: Option<i64>,
    pub scope: String,
    /// The user (`sub` of the id_token), when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// When this login or its last refresh happened.
    pub saved_at: i64,
    /// `Bearer`, or `DPoP` when the tokens are bound to the login's DPoP key.
    #[serde(default)]
    pub token_type: TokenType,
    /// The DPoP key the tokens are bound to (RFC 9449): where it is kept.
    #[serde(default, flatten)]
    dpop_key: Option<DpopKeySource>,
    /// The private key a confidential client signs its `private_key_jwt` assertions with: its
    /// file (never copied here) and the `kid` to name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<ClientKeyRef>,
}

/// Where a login's DPoP key is: in this (0600) file, or in the user's own key file.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DpopKeySource {
    /// PKCS#8, base64url: generated for this login, removed with it.
    DpopKey(String),
    /// A key file given with `--dpop-key` (absolute path), read again at each use.
    DpopKeyFile(PathBuf),
}

/// A `private_key_jwt` key file and the `kid` its assertions name.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClientKeyRef {
    pub file: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
}

impl std::fmt::Debug for CachedLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedLogin")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("expires_at", &self.expires_at)
            .field("scope", &self.scope)
            .field("subject", &self.subject)
            .field("token_type", &self.token_type)
            .field("client_key", &self.client_key)
            .finish_non_exhaustive()
    }
}

impl CachedLogin {
    pub fn new(issuer: &str, client_id: &str, tokens: &TokenSet, now: i64) -> Self {
        Self {
            issuer: issuer.to_owned(),
            client_id: client_id.to_owned(),
            access_token: tokens.access_token.expose_secret().to_owned(),
            refresh_token: tokens.refresh_token.as_ref().map(|t| t.expose_secret().to_owned()),
            id_token: tokens.id_token.clone(),
            expires_at: tokens.expires_at,
            scope: tokens.scope.to_string(),
            subject: tokens.id_claims.as_ref().map(|c| c.sub.clone()),
            saved_at: now,
            token_type: tokens.token_type,
            dpop_key: None,
            client_key: None,
        }
    }

    /// Records the DPoP key the tokens are bound to: kept in this file (a key generated for the
    /// login), or the path of the user's key file.
    pub fn with_dpop_key(mut self, key: &DpopKey, file: Option<&Path>) -> Self {
        self.dpop_key = Some(match file {
            Some(f) => DpopKeySource::DpopKeyFile(crate::keys::absolute(f)),
            None => DpopKeySource::DpopKey(URL_SAFE_NO_PAD.encode(key.pkcs8())),
        });
        self
    }

    /// Records the `private_key_jwt` key file, for refreshes and revocation.
    pub fn with_client_key(mut self, file: &Path, kid: Option<String>) -> Self {
        self.client_key = Some(ClientKeyRef { file: crate::keys::absolute(file), kid });
        self
    }

    /// The DPoP key of this login, if its tokens are bound to one.
    pub fn dpop_key(&self) -> Result<Option<DpopKey>, Error> {
        match &self.dpop_key {
            None => Ok(None),
            Some(DpopKeySource::DpopKey(b64)) => URL_SAFE_NO_PAD
                .decode(b64)
                .ok()
                .and_then(|der| DpopKey::from_pkcs8(&der).ok())
                .map(Some)
                .ok_or_else(|| Error::Cache("the DPoP key in the cached login is damaged; log in again".into())),
            Some(DpopKeySource::DpopKeyFile(path)) => crate::keys::dpop_key_from_file(path).map(Some),
        }
    }

    /// The `private_key_jwt` key of this login's client, if it is a confidential one.
    pub fn client_key(&self) -> Result<Option<ClientKey>, Error> {
        self.client_key.as_ref().map(|r| ClientKey::from_file(&r.file).map(|k| k.with_kid(r.kid.clone()))).transpose()
    }

    /// Replaces the tokens after a refresh; keeps what the response did not renew.
    pub fn update(&mut self, tokens: &TokenSet, now: i64) {
        self.access_token = tokens.access_token.expose_secret().to_owned();
        if let Some(r) = &tokens.refresh_token {
            self.refresh_token = Some(r.expose_secret().to_owned());
        }
        if let Some(id) = &tokens.id_token {
            self.id_token = Some(id.clone());
        }
        self.expires_at = tokens.expires_at;
        self.scope = tokens.scope.to_string();
        self.token_type = tokens.token_type;
        self.saved_at = now;
    }

    pub fn access_token(&self) -> AccessToken {
        AccessToken::new(self.access_token.clone())
    }
    pub fn refresh_token(&self) -> Option<RefreshToken> {
        self.refresh_token.clone().map(RefreshToken::new)
    }
    pub fn id_token(&self) -> Option<&str> {
        self.id_token.as_deref()
    }

    /// Whether the access token is expired or will be within `margin` seconds.
    pub fn expires_within(&self, now: i64, margin: i64) -> bool {
        self.expires_at.is_some_and(|exp| exp <= now + margin)
    }
}

/// The cache directory and its files.
#[derive(Debug, Clone)]
pub struct TokenCache {
    dir: PathBuf,
}

impl TokenCache {
    /// `$XDG_CACHE_HOME/latchkey`, or `$HOME/.cache/latchkey` (the XDG Base Directory default).
    /// A relative `XDG_CACHE_HOME` is ignored, as the specification says.
    pub fn default_dir() -> Result<PathBuf, Error> {
        if let Some(x) = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from)
            && x.is_absolute()
        {
            return Ok(x.join("latchkey"));
        }
        match std::env::var_os("HOME").map(PathBuf::from) {
            Some(home) if home.is_absolute() => Ok(home.join(".cache").join("latchkey")),
            _ => Err(Error::Cache("neither XDG_CACHE_HOME nor HOME is set to an absolute path".into())),
        }
    }

    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn stem(issuer: &str, client_id: &str) -> String {
        let mut h = Sha256::new();
        h.update(issuer.as_bytes());
        h.update([0]);
        h.update(client_id.as_bytes());
        format!("login-{}", &URL_SAFE_NO_PAD.encode(h.finalize())[..22])
    }

    /// The file that holds the login for this issuer and client.
    pub fn path_for(&self, issuer: &str, client_id: &str) -> PathBuf {
        self.dir.join(format!("{}.json", Self::stem(issuer, client_id)))
    }

    pub fn load(&self, issuer: &str, client_id: &str) -> Result<Option<CachedLogin>, Error> {
        read(&self.path_for(issuer, client_id))
    }

    /// Every cached login, most recent first.
    pub fn list(&self) -> Result<Vec<CachedLogin>, Error> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(Error::Cache(format!("reading {}: {e}", self.dir.display()))),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("login-")
                && name.ends_with(".json")
                && let Some(login) = read(&entry.path())?
            {
                out.push(login);
            }
        }
        out.sort_by_key(|l| std::cmp::Reverse(l.saved_at));
        Ok(out)
    }

    /// Writes the login: to a new 0600 file, then renamed over the old one.
    pub fn store(&self, login: &CachedLogin) -> Result<PathBuf, Error> {
        self.ensure_dir()?;
        let path = self.path_for(&login.issuer, &login.client_id);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let json = serde_json::to_vec_pretty(login).map_err(|e| Error::Cache(e.to_string()))?;
        let fail = |e: std::io::Error| Error::Cache(format!("writing {}: {e}", path.display()));
        let _ = std::fs::remove_file(&tmp);
        let mut f = private_file(&tmp).map_err(fail)?;
        f.write_all(&json).and_then(|()| f.sync_all()).map_err(fail)?;
        drop(f);
        std::fs::rename(&tmp, &path).map_err(fail)?;
        Ok(path)
    }

    /// Forgets the login. Returns whether there was one.
    pub fn remove(&self, issuer: &str, client_id: &str) -> Result<bool, Error> {
        let path = self.path_for(issuer, client_id);
        let _ = std::fs::remove_file(path.with_extension("lock"));
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::Cache(format!("removing {}: {e}", path.display()))),
        }
    }

    /// Runs `work` while holding an exclusive lock for this issuer and client, so that concurrent
    /// processes refresh one at a time (each then sees the token the other stored).
    pub async fn locked<T>(&self, issuer: &str, client_id: &str, work: impl Future<Output = T>) -> Result<T, Error> {
        self.ensure_dir()?;
        let path = self.path_for(issuer, client_id).with_extension("lock");
        let file = private_file_keep(&path).map_err(|e| Error::Cache(format!("opening {}: {e}", path.display())))?;
        let mut lock = fd_lock::RwLock::new(file);
        let _guard = lock.write().map_err(|e| Error::Cache(format!("locking {}: {e}", path.display())))?;
        Ok(work.await)
    }

    fn ensure_dir(&self) -> Result<(), Error> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| Error::Cache(format!("creating {}: {e}", self.dir.display())))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| Error::Cache(format!("securing {}: {e}", self.dir.display())))?;
        }
        Ok(())
    }
}

fn read(path: &Path) -> Result<Option<CachedLogin>, Error> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Cache(format!("{} is damaged ({e}); remove it and log in again", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Cache(format!("reading {}: {e}", path.display()))),
    }
}

/// A new file readable and writable by its owner only.
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)
}

/// The lock file: created 0600 if missing, kept otherwise.
fn private_file_keep(path: &Path) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use latchkey_proto::Scope;

    fn tokens(at: &str, rt: Option<&str>, exp: i64) -> TokenSet {
        TokenSet {
            access_token: AccessToken::new(at),
            refresh_token: rt.map(RefreshToken::new),
            id_token: None,
            id_claims: None,
            expires_at: Some(exp),
            scope: Scope::parse("openid api").unwrap(),
            token_type: TokenType::Bearer,
        }
    }

    #[test]
    fn store_load_list_remove_with_private_modes() {
        let dir = tempfile::tempdir().unwrap();
        let cache = TokenCache::new(dir.path().join("latchkey"));
        assert!(cache.load("https://a.example", "c1").unwrap().is_none());
        let login = CachedLogin::new("https://a.example", "c1", &tokens("at-1", Some("rt-1"), 500), 100);
        let path = cache.store(&login).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
            assert_eq!(std::fs::metadata(cache.dir()).unwrap().permissions().mode() & 0o777, 0o700);
        }
        assert!(!format!("{login:?}").contains("at-1"), "Debug shows no token");
        // Keyed by issuer and client: another client of the same issuer is another file.
        assert_ne!(cache.path_for("https://a.example", "c1"), cache.path_for("https://a.example", "c2"));
        let mut other = CachedLogin::new("https://a.example", "c2", &tokens("at-2", None, 900), 200);
        cache.store(&other).unwrap();
        let all = cache.list().unwrap();
        assert_eq!(all.iter().map(|l| l.client_id.as_str()).collect::<Vec<_>>(), ["c2", "c1"], "newest first");

        let mut back = cache.load("https://a.example", "c1").unwrap().unwrap();
        assert_eq!(back.access_token().expose_secret(), "at-1");
        assert!(back.expires_within(450, 60) && !back.expires_within(400, 60));
        // A refresh without a new refresh token keeps the old one.
        back.update(&tokens("at-3", None, 800), 300);
        assert_eq!(back.refresh_token().unwrap().expose_secret(), "rt-1");
        assert_eq!(back.access_token().expose_secret(), "at-3");
        other.update(&tokens("at-4", Some("rt-4"), 1), 1);
        assert_eq!(other.refresh_token().unwrap().expose_secret(), "rt-4");

        assert!(cache.remove("https://a.example", "c1").unwrap());
        assert!(!cache.remove("https://a.example", "c1").unwrap());
        assert_eq!(cache.list().unwrap().len(), 1);
    }

    #[test]
    fn a_dpop_login_keeps_its_key_in_the_private_file_or_names_the_users_file() {
        let dir = tempfile::tempdir().unwrap();
        let cache = TokenCache::new(dir.path().join("latchkey"));
        let key = DpopKey::generate().unwrap();
        let mut t = tokens("at-1", Some("rt-1"), 500);
        t.token_type = TokenType::Dpop;
        let login = CachedLogin::new("https://a.example", "c1", &t, 100).with_dpop_key(&key, None);
        let path = cache.store(&login).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(json["token_type"], "DPoP");
        assert!(json["dpop_key"].is_string());
        assert!(!format!("{login:?}").contains(json["dpop_key"].as_str().unwrap()), "Debug shows no key");
        let back = cache.load("https://a.example", "c1").unwrap().unwrap();
        assert_eq!(back.token_type, TokenType::Dpop);
        assert_eq!(back.dpop_key().unwrap().unwrap().jkt(), key.jkt(), "the same key comes back");

        // A key file of the user's: only its path is kept.
        let file = dir.path().join("dpop.pem");
        std::fs::write(&file, crate::keys::to_pem("PRIVATE KEY", key.pkcs8())).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let login = CachedLogin::new("https://a.example", "c2", &t, 100).with_dpop_key(&key, Some(&file));
        let path = cache.store(&login).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert!(json.get("dpop_key").is_none());
        assert_eq!(json["dpop_key_file"], file.to_str().unwrap());
        assert_eq!(
            cache.load("https://a.example", "c2").unwrap().unwrap().dpop_key().unwrap().unwrap().jkt(),
            key.jkt()
        );

        // A login from before DPoP (no token_type) reads as Bearer without a key.
        std::fs::write(
            cache.path_for("i", "c"),
            br#"{"issuer":"i","client_id":"c","access_token":"a","expires_at":null,"scope":"","saved_at":1}"#,
        )
        .unwrap();
        let old = cache.load("i", "c").unwrap().unwrap();
        assert_eq!(old.token_type, TokenType::Bearer);
        assert!(old.dpop_key().unwrap().is_none() && old.client_key().unwrap().is_none());
    }

    #[test]
    fn a_damaged_file_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let cache = TokenCache::new(dir.path());
        std::fs::write(cache.path_for("i", "c"), b"{not json").unwrap();
        let e = cache.load("i", "c").unwrap_err().to_string();
        assert!(e.contains("remove it and log in again"), "{e}");
    }

    #[tokio::test]
    async fn locked_runs_the_work() {
        let dir = tempfile::tempdir().unwrap();
        let cache = TokenCache::new(dir.path());
        assert_eq!(cache.locked("i", "c", async { 7 }).await.unwrap(), 7);
    }
}
