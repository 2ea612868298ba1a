//! The login, consent and error pages in a real browser: runs `tests/browser` (node's test runner,
//! playwright-core, Debian's headless Chromium) against `latchkey serve --dev`. Screenshots of each
//! page are kept in `artifacts/screenshots/`. Outside CI the test is skipped, with a message, when
//! node, Chromium or the npm packages are missing; in CI (`CI` set) they must be there.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_latchkey");
const TIME_LIMIT: Duration = Duration::from_secs(180);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// What is missing to run the browser tests, if anything.
fn missing(package: &Path, chromium: &Path) -> Option<String> {
    if !Command::new("node").arg("--version").stdout(Stdio::null()).status().is_ok_and(|s| s.success()) {
        return Some("node is not installed".into());
    }
    if !chromium.exists() {
        return Some(format!("{} is missing: apt-get install -y chromium", chromium.display()));
    }
    if !package.join("node_modules/playwright-core").exists() {
        return Some(format!("playwright-core is not installed: (cd {} && npm ci)", package.display()));
    }
    None
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn latchkey(db: &Path, args: &[&str]) {
    let out = Command::new(BIN).args(args).arg("--database").arg(db).env_remove("LATCHKEY_CONFIG").output().unwrap();
    assert!(out.status.success(), "latchkey {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn login_consent_and_error_pages_work_in_headless_chromium() {
    let package = repo().join("tests/browser");
    let chromium = PathBuf::from(std::env::var_os("CHROMIUM").unwrap_or_else(|| "/usr/bin/chromium".into()));
    if let Some(what) = missing(&package, &chromium) {
        assert!(std::env::var_os("CI").is_none(), "CI must run the browser tests, but {what}");
        eprintln!("SKIPPED: the browser tests need node, Chromium and playwright-core; {what}");
        return;
    }

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("browser.db");
    // A client of our own whose loopback redirect URI accepts any port (RFC 8252 §7.3): the node
    // test receives the redirect on an ephemeral port, so parallel runs never collide.
    latchkey(
        &db,
        &[
            "client",
            "add",
            "--public",
            "--client-id",
            "browser-test",
            "--name",
            "Browser Test App",
            "--redirect-uri",
            "http://127.0.0.1/callback",
        ],
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log = dir.path().join("server.log");
    let _server = Server(
        Command::new(BIN)
            .args(["serve", "--dev", "--listen", &format!("127.0.0.1:{port}"), "--database"])
            .arg(&db)
            .env_remove("LATCHKEY_CONFIG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "server did not start: {}", std::fs::read_to_string(&log).unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }

    let artifacts = repo().join("artifacts/screenshots");
    let pages = [
        "login",
        "login-wrong-password",
        "consent",
        "error",
        "not-found",
        "phone-login",
        "phone-consent",
        "phone-error",
    ];
    for page in pages {
        // Only screenshots of this run count.
        let _ = std::fs::remove_file(artifacts.join(format!("{page}.png")));
    }
    let out_path = dir.path().join("node.out");
    let mut node = Command::new("node")
        .args(["--test", "--test-concurrency=1", "--test-reporter=spec", "pages.test.mjs"])
        .current_dir(&package)
        .env("LATCHKEY_BASE", format!("http://127.0.0.1:{port}"))
        .env("LATCHKEY_CLIENT", "browser-test")
        .env("ARTIFACTS_DIR", &artifacts)
        .env("CHROMIUM", &chromium)
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + TIME_LIMIT;
    let status = loop {
        if let Some(s) = node.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = node.kill();
            panic!("the browser tests took longer than {TIME_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = std::fs::read_to_string(&out_path).unwrap();
    eprintln!("{output}");
    assert!(status.success(), "browser tests failed (screenshots in {})", artifacts.display());
    for page in pages {
        assert!(artifacts.join(format!("{page}.png")).exists(), "no screenshot of {page}");
    }
}
