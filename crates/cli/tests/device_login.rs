//! `latchkey login --device` (RFC 8628) against a real `latchkey serve` process with
//! `[device] interval = 1`: the CLI prints the page and the code, the person answers on the
//! verification page (an HTTP client with a cookie jar that signs in and approves or denies),
//! and the CLI caches the tokens as `latchkey login` does, so `latchkey token` works after it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod rp;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use latchkey_resource::Verifier;
use rp::{BIN, Cli, answer_device};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

const PASSWORD: &str = "correct horse battery";

/// A `latchkey serve` process on a free port, with a device client `tv` and the user alice.
struct Serve {
    base: String,
    child: std::process::Child,
    stderr_log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn admin(dir: &Path, args: &[&str], stdin: Option<&str>) {
    let mut cmd = std::process::Command::new(BIN);
    cmd.arg("--config").arg(dir.join("latchkey.toml")).arg("--database").arg(dir.join("l.db")).args(args);
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(text) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "latchkey {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Serve {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        // One second between polls keeps the test fast; the server enforces it (slow_down).
        std::fs::write(dir.path().join("latchkey.toml"), "[device]\ninterval = 1\n").unwrap();
        admin(
            dir.path(),
            &["client", "add", "--public", "--device", "--client-id", "tv", "--name", "Living-room TV"],
            None,
        );
        let web = [
            "client",
            "add",
            "--public",
            "--client-id",
            "web",
            "--name",
            "Web",
            "--redirect-uri",
            "http://127.0.0.1/cb",
        ];
        admin(dir.path(), &web, None);
        admin(
            dir.path(),
            &["user", "add", "alice", "--email", "alice@example.com", "--password-stdin"],
            Some(PASSWORD),
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let stderr_log = dir.path().join("serve.log");
        let child = std::process::Command::new(BIN)
            .arg("--config")
            .arg(dir.path().join("latchkey.toml"))
            .arg("--database")
            .arg(dir.path().join("l.db"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_log).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "serve did not start: {}",
                std::fs::read_to_string(&stderr_log).unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { base: format!("http://127.0.0.1:{port}"), child, stderr_log, _dir: dir }
    }
}

/// What `login --device` printed before it started waiting.
struct Shown {
    uri: String,
    user_code: String,
    complete: String,
    /// Everything it printed on stdout.
    stdout: String,
}

/// Starts `latchkey login --device` and reads its instructions from stdout.
async fn start_login(cli: &Cli, base: &str, extra: &[&str]) -> (Child, Shown) {
    let mut args = vec!["login", "--device", "--issuer", base, "--client-id", "tv", "--scope", "openid profile"];
    args.extend_from_slice(extra);
    let mut child = cli.command(&args).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stdout = String::new();
    let mut complete = None;
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            stdout.push_str(&line);
            stdout.push('\n');
            if line.starts_with("http") && stdout.contains("Or open this link") {
                complete = Some(line.clone());
            }
            // The QR code, when there is one, ends with the quiet zone's last row.
            let qr = extra.contains(&"--qr");
            if complete.is_some() && (!qr || line.starts_with('▀')) {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read).await.expect("the instructions within 30 s");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let field = |prefix: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("{prefix:?} in {stdout}"))
            .to_owned()
    };
    let shown = Shown {
        uri: field("To sign in, open "),
        user_code: field("and enter the code: "),
        complete: complete.unwrap_or_else(|| panic!("no link in {stdout}")),
        stdout: stdout.clone(),
    };
    (child, shown)
}

async fn finish(child: Child) -> (bool, i32, String) {
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await.unwrap().unwrap();
    (out.status.success(), out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test]
async fn login_device_then_token_against_latchkey_serve() {
    let s = Serve::start();
    let cli = Cli::new();
    let (child, shown) = start_login(&cli, &s.base, &["--qr"]).await;
    assert_eq!(shown.uri, format!("{}/device", s.base));
    assert_eq!(shown.complete, format!("{}/device?user_code={}", s.base, shown.user_code));
    assert!(
        shown.stdout.contains('█') && shown.stdout.contains('▄'),
        "--qr: a QR code in half blocks: {}",
        shown.stdout
    );
    // The person follows the link (as a phone's camera would from the QR code) and approves.
    let page = answer_device(&shown.complete, &shown.user_code, "alice", PASSWORD, "approve").await;
    assert!(page.contains("You can return to your device"), "{page}");
    let (ok, _, stderr) = finish(child).await;
    assert!(ok, "{stderr}\n{}", std::fs::read_to_string(&s.stderr_log).unwrap());
    assert!(stderr.contains("Waiting for the code to be approved (it expires in 10 minutes"), "{stderr}");
    assert!(stderr.contains(&format!("Logged in to {}", s.base)), "{stderr}");

    // The same cache as `latchkey login`: `latchkey token` prints alice's access token for tv.
    let token = cli.run(&["token"]).await;
    assert!(token.ok, "{}", token.stderr);
    let claims = Verifier::builder(&s.base).build().unwrap().verify(token.stdout.trim()).await.unwrap();
    assert_eq!(claims.client_id, "tv");
    assert!(claims.has_scope("profile"));
    let cached = std::fs::read_dir(cli.cache_dir()).unwrap().filter_map(Result::ok).count();
    assert!(cached >= 1);
    // The server saw polls at the interval: no slow_down, so nothing was refused for speed.
    let log = std::fs::read_to_string(&s.stderr_log).unwrap();
    assert!(!log.contains("slow_down"), "{log}");

    // With --dpop the tokens are bound to the login's key, and `latchkey token` still works.
    let (child, shown) = start_login(&cli, &s.base, &["--dpop"]).await;
    assert!(!shown.stdout.contains('█'), "no QR code when stdout is not a terminal and --qr is not given");
    answer_device(&format!("{}/device", s.base), &shown.user_code, "alice", PASSWORD, "approve").await;
    let (ok, _, stderr) = finish(child).await;
    assert!(ok, "{stderr}");
    assert!(stderr.contains("DPoP-bound"), "{stderr}");
    let token = cli.run(&["token"]).await;
    assert!(token.ok, "{}", token.stderr);
    let payload = token.stdout.trim().split('.').nth(1).unwrap().to_owned();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).unwrap(),
    )
    .unwrap();
    assert!(claims["cnf"]["jkt"].is_string(), "{claims}");
}

#[tokio::test]
async fn a_denied_request_fails_with_the_denial_and_caches_nothing() {
    let s = Serve::start();
    let cli = Cli::new();
    let (child, shown) = start_login(&cli, &s.base, &[]).await;
    // Typed at /device this time, as someone without the link would.
    let page = answer_device(&shown.uri, &shown.user_code, "alice", PASSWORD, "deny").await;
    assert!(page.contains("Denied"), "{page}");
    let (ok, _, stderr) = finish(child).await;
    assert!(!ok);
    assert!(stderr.contains("The request was denied on the verification page"), "{stderr}");
    let cached = std::fs::read_dir(cli.cache_dir()).map(|d| d.filter_map(Result::ok).count()).unwrap_or(0);
    assert_eq!(cached, 0, "nothing cached");
    let token = cli.run(&["token"]).await;
    assert!(!token.ok && token.stderr.contains("not logged in"), "{}", token.stderr);
}

#[tokio::test]
async fn ctrl_c_stops_the_wait_cleanly() {
    let s = Serve::start();
    let cli = Cli::new();
    let (child, _shown) = start_login(&cli, &s.base, &[]).await;
    let pid = child.id().unwrap();
    let status = std::process::Command::new("kill").args(["-INT", &pid.to_string()]).status().unwrap();
    assert!(status.success());
    let (ok, code, stderr) = finish(child).await;
    assert!(!ok);
    assert_eq!(code, 130, "{stderr}");
    assert!(stderr.contains("stopped (Ctrl-C) before the code was approved; nothing was cached"), "{stderr}");
}

#[tokio::test]
async fn a_client_without_the_grant_is_told_how_to_get_it() {
    let s = Serve::start();
    let cli = Cli::new();
    let out = cli.run(&["login", "--device", "--issuer", &s.base, "--client-id", "web"]).await;
    assert!(!out.ok);
    assert!(out.stderr.contains("asking for a device code"), "{}", out.stderr);
    assert!(out.stderr.contains("unauthorized_client"), "{}", out.stderr);
    assert!(out.stderr.contains("latchkey client add --device"), "{}", out.stderr);
}
