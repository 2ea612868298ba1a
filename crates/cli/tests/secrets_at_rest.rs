//! Finding 2 of the December 2026 review: the database holds the private signing keys, so it and
//! its `-wal`/`-shm` are created 0600 whatever the umask, an existing one that others can read is
//! refused, and the private keys can be sealed under a key-encryption key kept outside it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use latchkey_core::Store;
use latchkey_store::SqliteStore;

const BIN: &str = env!("CARGO_BIN_EXE_latchkey");
/// 32 bytes of base64, as `openssl rand -base64 32` prints them.
const KEK: &str = "q83vASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4k=";
const OTHER_KEK: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

/// The binary under `umask 022` (the common default, which made the files 0644 before the fix),
/// with no LATCHKEY_* variable but `env`.
fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg("umask 022 && exec \"$0\" \"$@\"").arg(BIN).args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("LATCHKEY_") {
            cmd.env_remove(k);
        }
    }
    cmd.env_remove("RUST_LOG").envs(env.iter().copied()).stdin(Stdio::null());
    cmd
}

/// Runs the binary to its end. A command still running after 20 s (a `serve` that should have
/// refused to start, but started) is killed and counts as a success, so that the test fails on
/// its assertion instead of hanging.
fn run(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = tempfile::NamedTempFile::new().unwrap();
    let err = tempfile::NamedTempFile::new().unwrap();
    let mut child = command(args, env).stdout(out.reopen().unwrap()).stderr(err.reopen().unwrap()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let ok = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.success();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break true;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |f: &tempfile::NamedTempFile| std::fs::read_to_string(f.path()).unwrap_or_default();
    (ok, read(&out), read(&err))
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o777
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}{suffix}", p.display()))
}

/// `latchkey serve` on a free port; killed (by its own handle) when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(db: &Path, extra: &[&str], env: &[(&str, &str)], log: &Path) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let args = [&["serve", "--listen", &listen, "--database", db.to_str().unwrap()][..], extra].concat();
    let child = command(&args, env).stdout(Stdio::null()).stderr(std::fs::File::create(log).unwrap()).spawn().unwrap();
    let mut server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = server.0.try_wait().unwrap() {
            panic!("serve exited ({status}): {}", std::fs::read_to_string(log).unwrap_or_default());
        }
        assert!(Instant::now() < deadline, "serve did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

#[test]
fn a_new_database_and_its_wal_and_shm_are_private_under_umask_022() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("latchkey.db");
    let _server = serve(&db, &[], &[], &dir.path().join("serve.log"));
    // While the server runs, SQLite keeps all three files; each holds key material.
    for file in [db.clone(), with_suffix(&db, "-wal"), with_suffix(&db, "-shm")] {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
}

#[test]
fn an_existing_database_readable_by_others_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("latchkey.db");
    let db_arg = db.to_str().unwrap();
    let (ok, _, err) = run(&["keys", "rotate", "--database", db_arg], &[]);
    assert!(ok, "{err}");
    assert_eq!(mode(&db), 0o600);

    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, _, err) = run(&["keys", "list", "--database", db_arg], &[]);
    assert!(!ok, "a 0644 database must not be opened");
    assert!(err.contains("mode 644") && err.contains(&format!("chmod 600 {db_arg}")), "{err}");
    assert!(err.contains("--allow-insecure-db-permissions"), "{err}");
    let (ok, _, err) = run(&["serve", "--listen", "127.0.0.1:0", "--database", db_arg], &[]);
    assert!(!ok && err.contains("chmod 600"), "serve refuses too: {err}");

    // Knowingly allowed: it opens, and says so loudly.
    let (ok, out, err) = run(&["keys", "list", "--database", db_arg, "--allow-insecure-db-permissions"], &[]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(err.contains("allow_insecure_db_permissions") && err.contains("WARN"), "{err}");

    // A write-ahead log others can read is refused as well.
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600)).unwrap();
    let wal = with_suffix(&db, "-wal");
    std::fs::write(&wal, b"").unwrap();
    std::fs::set_permissions(&wal, std::fs::Permissions::from_mode(0o640)).unwrap();
    let (ok, _, err) = run(&["keys", "list", "--database", db_arg], &[]);
    assert!(!ok && err.contains("latchkey.db-wal (mode 640)"), "{err}");
}

#[test]
fn db_copy_writes_a_private_file() {
    let dir = tempfile::tempdir().unwrap();
    let (from, to) = (dir.path().join("from.db"), dir.path().join("to.db"));
    let (ok, _, err) = run(&["keys", "rotate", "--database", from.to_str().unwrap()], &[]);
    assert!(ok, "{err}");
    let (ok, out, err) = run(&["db", "copy", "--from", from.to_str().unwrap(), "--to", to.to_str().unwrap()], &[]);
    assert!(ok, "{err}");
    assert!(out.contains("signing_keys: 3"), "{out}");
    assert_eq!(mode(&to), 0o600);
}

async fn stored_keys(db: &Path) -> Vec<String> {
    let store = SqliteStore::open(db).unwrap();
    store.signing_keys().await.unwrap().into_iter().map(|k| k.private_pkcs8_b64).collect()
}

#[tokio::test]
async fn signing_keys_are_sealed_under_the_key_encryption_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sealed.db");
    let db_arg = db.to_str().unwrap();
    let kek_env = [("LATCHKEY_KEY_ENCRYPTION_KEY", KEK)];
    let (ok, _, err) = run(&["keys", "rotate", "--database", db_arg], &kek_env);
    assert!(ok, "{err}");
    let keys = stored_keys(&db).await;
    assert_eq!(keys.len(), 3);
    let plain = keys.iter().filter(|k| !k.starts_with("enc:v1:")).count();
    assert_eq!(plain, 0, "private keys stored in clear");

    // Without the key, or with another one, the server refuses to start and says why.
    let (ok, _, err) = run(&["serve", "--listen", "127.0.0.1:0", "--database", db_arg], &[]);
    assert!(!ok && err.contains("no key-encryption key is configured"), "{err}");
    assert!(err.contains("LATCHKEY_KEY_ENCRYPTION_KEY"), "{err}");
    let (ok, _, err) =
        run(&["serve", "--listen", "127.0.0.1:0", "--database", db_arg], &[("LATCHKEY_KEY_ENCRYPTION_KEY", OTHER_KEK)]);
    assert!(!ok && err.contains("does not open with the configured key-encryption key"), "{err}");
    // A rotation without the key would add a key in clear: refused.
    let (ok, _, err) = run(&["keys", "rotate", "--database", db_arg], &[]);
    assert!(!ok && err.contains("sealed"), "{err}");

    // The key from a file: only a 0600 one.
    let kek_file = dir.path().join("kek");
    std::fs::write(&kek_file, format!("{KEK}\n")).unwrap();
    std::fs::set_permissions(&kek_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let file_args = ["--key-encryption-key-file", kek_file.to_str().unwrap()];
    let (ok, _, err) = run(&[&["keys", "list", "--database", db_arg][..], &file_args[..]].concat(), &[]);
    assert!(!ok && err.contains("chmod 600"), "{err}");
    std::fs::set_permissions(&kek_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    drop(serve(&db, &file_args, &[], &dir.path().join("serve.log")));
}

#[tokio::test]
async fn keys_stored_in_clear_load_with_a_warning_and_keys_seal_seals_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("plain.db");
    let db_arg = db.to_str().unwrap();
    let (ok, _, err) = run(&["keys", "rotate", "--database", db_arg], &[]);
    assert!(ok, "{err}");
    assert!(stored_keys(&db).await.iter().all(|k| !k.starts_with("enc:")), "an existing deployment: in clear");

    let kek_env = [("LATCHKEY_KEY_ENCRYPTION_KEY", KEK)];
    let log = dir.path().join("serve.log");
    drop(serve(&db, &[], &kek_env, &log));
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("stored unsealed; run `latchkey keys seal`"), "{logged}");

    let (ok, out, err) = run(&["keys", "seal", "--database", db_arg], &kek_env);
    assert!(ok, "{err}");
    assert!(out.contains("3 signing key(s) sealed"), "{out}");
    assert!(stored_keys(&db).await.iter().all(|k| k.starts_with("enc:v1:")));
    assert!(err.contains("latchkey keys rotate"), "the advice for copies made before: {err}");
    let (ok, out, _) = run(&["keys", "list", "--json", "--database", db_arg], &[]);
    assert!(ok && out.matches("\"sealed\":true").count() == 3, "{out}");
    let (ok, out, _) = run(&["keys", "seal", "--database", db_arg], &kek_env);
    assert!(ok && out.contains("0 signing key(s) sealed"), "idempotent: {out}");
    let (ok, _, err) = run(&["keys", "seal", "--database", db_arg], &[]);
    assert!(!ok && err.contains("no key-encryption key"), "{err}");
    let (ok, _, err) = run(&["serve", "--listen", "127.0.0.1:0", "--database", db_arg], &[]);
    assert!(!ok && err.contains("no key-encryption key is configured"), "{err}");
}
