//! The `latchkey` binary as a user runs it: admin commands, `serve --dev`, the seed's Python flow
//! against the running server, and logs that never contain a secret.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_latchkey");

fn latchkey(db: &std::path::Path, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .arg("--database")
        .arg(db)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("LATCHKEY_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd.spawn().unwrap();
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn field<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines().find_map(|l| l.strip_prefix(&format!("{key}: "))).unwrap_or_else(|| panic!("no {key} in {out}"))
}

#[test]
fn admin_commands_register_clients_and_users() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("admin.db");
    let (ok, out, err) = latchkey(
        &db,
        &["client", "add", "--public", "--name", "My SPA", "--redirect-uri", "http://127.0.0.1:8765/callback"],
        None,
    );
    assert!(ok, "{err}");
    let public_id = field(&out, "client_id").to_owned();
    assert!(!out.contains("client_secret"));

    let (ok, out, err) = latchkey(
        &db,
        &[
            "client",
            "add",
            "--confidential",
            "--name",
            "Backend",
            "--client-id",
            "backend",
            "--redirect-uri",
            "https://app.example/cb",
            "--first-party",
        ],
        None,
    );
    assert!(ok, "{err}");
    assert_eq!(field(&out, "client_id"), "backend");
    let secret = field(&out, "client_secret").to_owned();
    assert_eq!(secret.len(), 43);

    let (ok, out, _) = latchkey(&db, &["client", "list", "--json"], None);
    assert!(ok);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert!(!out.contains(&secret), "the secret is shown once, never listed");
    let (ok, out, _) = latchkey(&db, &["client", "show", "backend"], None);
    assert!(ok && out.contains("type: confidential") && out.contains("first_party: true"), "{out}");

    // Duplicates and bad redirect URIs are refused with a reason.
    let (ok, _, err) = latchkey(
        &db,
        &["client", "add", "--public", "--client-id", "backend", "--redirect-uri", "https://a.example/cb"],
        None,
    );
    assert!(!ok && err.contains("already exists"), "{err}");
    let (ok, _, err) = latchkey(&db, &["client", "add", "--public", "--redirect-uri", "http://app.example/cb"], None);
    assert!(!ok && err.contains("loopback"), "{err}");

    let (ok, out, err) = latchkey(
        &db,
        &["user", "add", "alice", "--email", "alice@example.com", "--name", "Alice A", "--password-stdin"],
        Some("s3cret-password\n"),
    );
    assert!(ok, "{err}");
    assert_eq!(field(&out, "username"), "alice");
    let (ok, _, err) =
        latchkey(&db, &["user", "add", "bob", "--email", "bob@example.com", "--password-stdin"], Some("short\n"));
    assert!(!ok && err.contains("at least 8"), "{err}");
    let (ok, out, _) = latchkey(&db, &["user", "list"], None);
    assert!(ok && out.contains("alice\talice@example.com\tAlice A"), "{out}");
    let (ok, out, _) = latchkey(&db, &["user", "set-password", "alice", "--password-stdin"], Some("another-password"));
    assert!(ok && out.contains("password changed"), "{out}");
    let (ok, _, _) = latchkey(&db, &["user", "remove", "alice"], None);
    assert!(ok);
    let (ok, _, err) = latchkey(&db, &["user", "remove", "alice"], None);
    assert!(!ok && err.contains("no user"), "{err}");
    let (ok, _, _) = latchkey(&db, &["client", "remove", &public_id], None);
    assert!(ok);
}

#[test]
fn an_unknown_config_key_is_an_error_that_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("latchkey.toml");
    std::fs::write(&cfg, "issuer = \"http://127.0.0.1:9\"\nrefresh_lifetime = 5\n").unwrap();
    let (ok, _, err) = latchkey(&dir.path().join("x.db"), &["client", "list", "--config", cfg.to_str().unwrap()], None);
    assert!(!ok);
    assert!(err.contains("refresh_lifetime"), "{err}");
}

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start_dev_server(dir: &std::path::Path, run: &str) -> (Server, std::path::PathBuf, std::path::PathBuf) {
    let port = free_port();
    let (out, err) = (dir.join(format!("{run}.stdout.log")), dir.join(format!("{run}.stderr.log")));
    let child = Command::new(BIN)
        .args(["serve", "--dev", "--listen", &format!("127.0.0.1:{port}"), "--database"])
        .arg(dir.join("dev.db"))
        .env("RUST_LOG", "debug")
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "server did not start: {}",
            std::fs::read_to_string(&err).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (Server { child, base }, out, err)
}

/// The seed's Python code (requests, its own steps) run against `latchkey serve --dev`.
#[test]
fn the_seed_python_flow_runs_against_serve_dev_and_no_secret_is_logged() {
    let python_ok = Command::new("python3").args(["-c", "import requests"]).status().is_ok_and(|s| s.success());
    if !python_ok {
        assert!(std::env::var_os("CI").is_none(), "CI must have python3 with requests (pip install requests)");
        eprintln!(
            "SKIPPED: python3 with the requests package is not installed; `pip install requests` to run this test"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (server, out, err) = start_dev_server(dir.path(), "first");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/seed/seed_flow.py");
    let run = Command::new("python3").arg(script).arg(&server.base).output().unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "seed flow failed:\n{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    assert!(stdout.contains("Access Token:") && stdout.contains("Simple, secure, works."), "{stdout}");

    // `--dev` printed its client, user and a ready-to-open URL.
    let printed = std::fs::read_to_string(&out).unwrap();
    for want in ["client_id: latchkey-demo", "username: demo", "code_verifier: ", "/authorize?response_type=code"] {
        assert!(printed.contains(want), "{want} in {printed}");
    }
    // A second start is idempotent.
    drop(server);
    let (server, out2, _) = start_dev_server(dir.path(), "second");
    drop(server);
    assert!(std::fs::read_to_string(&out2).unwrap().contains("client_id: latchkey-demo"));

    // Logs (at debug level) never contain the password, a code, a token or a verifier.
    let logs = std::fs::read_to_string(&err).unwrap();
    assert!(logs.contains("token issued") && logs.contains("token refused"), "one line per token issued or refused");
    assert!(logs.contains("request_id"), "request ids in the log");
    assert!(!logs.contains("demo-password"), "password in logs");
    let verifier = printed.lines().find_map(|l| l.strip_prefix("code_verifier: ")).unwrap();
    assert!(!logs.contains(verifier));
    for secret_word in ["code=", "refresh_token=", "eyJ", "code_verifier="] {
        assert!(!logs.contains(secret_word), "{secret_word} appears in the logs");
    }
}

#[test]
fn keys_rotate_and_list() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("keys.db");
    let (ok, out, err) = latchkey(&db, &["keys", "rotate"], None);
    assert!(ok, "{err}");
    assert_eq!(out.lines().filter(|l| l.starts_with("kid: ")).count(), 3, "one key per algorithm: {out}");
    let (ok, out, err) = latchkey(&db, &["keys", "rotate", "--alg", "ES256"], None);
    assert!(ok, "{err}");
    assert!(out.contains("(ES256)"));
    let (ok, out, _) = latchkey(&db, &["keys", "list", "--json"], None);
    assert!(ok);
    let keys: serde_json::Value = serde_json::from_str(&out).unwrap();
    let keys = keys.as_array().unwrap();
    assert_eq!(keys.len(), 4);
    let states: Vec<(&str, &str)> =
        keys.iter().map(|k| (k["alg"].as_str().unwrap(), k["state"].as_str().unwrap())).collect();
    assert_eq!(states.iter().filter(|(_, s)| *s == "active").count(), 3);
    assert!(states.contains(&("ES256", "retired (published)")), "{states:?}");
    assert!(!out.contains("private"), "no private key material is listed");
    let (ok, _, err) = latchkey(&db, &["keys", "rotate", "--alg", "HS256"], None);
    assert!(!ok && err.contains("RS256, ES256 or EdDSA"), "{err}");
}

#[test]
fn the_audit_command_lists_security_events() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let (ok, _, err) = latchkey(
        &db,
        &["user", "add", "carol", "--email", "carol@example.com", "--password-stdin"],
        Some("long-enough-pw\n"),
    );
    assert!(ok, "{err}");
    latchkey(&db, &["user", "set-password", "carol", "--password-stdin"], Some("another-long-pw\n"));
    latchkey(&db, &["client", "add", "--public", "--client-id", "app", "--redirect-uri", "http://127.0.0.1/cb"], None);
    let (ok, out, err) = latchkey(&db, &["audit", "--since", "1h", "--json"], None);
    assert!(ok, "{err}");
    let events: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let names: Vec<&str> = events.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["client_added", "password_changed", "user_added"], "newest first");
    let (ok, out, _) = latchkey(&db, &["audit", "--user", "carol"], None);
    assert!(ok && out.contains("user_added") && !out.contains("client_added"), "{out}");
    let (ok, _, err) = latchkey(&db, &["audit", "--since", "soon"], None);
    assert!(!ok && err.contains("--since"), "{err}");
}
