//! Latchkey in a real browser: runs `tests/browser` (node's test runner, playwright-core, Debian's
//! headless Chromium) against `latchkey serve --dev`.
//!
//! - `pages.test.mjs`: the login, consent, sign-out and error pages.
//! - `spa.test.mjs`: the SPA example (`examples/spa`) end to end, with the protected-api example as
//!   its API; and in its DPoP mode, with nonces required by Latchkey and by the API.
//! - `oidc_client_ts.test.mjs`: oidc-client-ts with DPoP on a page of its own: sign-in, a call to
//!   an API that takes DPoP-bound tokens only, a refresh.
//! - `two_step.test.mjs`: TOTP set up from the account page and a sign-in with a code, keyboard
//!   only, 360 px wide.
//! - `passkeys.test.mjs`: passkeys with a CDP virtual authenticator: enrolment from the account
//!   page, the username-less sign-in, the passkey as second factor, user verification refused, a
//!   removed passkey, keyboard-only and 360 px runs; `amr`/`acr` checked in the id_tokens.
//! - `device.test.mjs`: the device verification page (RFC 8628 §3.3): sign-in, a typed code
//!   approved and a linked code denied, keyboard only, 360 px wide, with the accessibility harness.
//! - `mcp_host.test.mjs`: a browser MCP host (like the MCP Inspector) on another origin: discovery,
//!   registration, authorization, code exchange and revocation across origins (CORS).
//! - `account.test.mjs` and `flows.test.mjs`: the accessibility harness (`a11y.mjs`) over every
//!   page, the second reaching those only a flow leads to (sign-up, the address check, the
//!   password reset by a link from a real SMTP server, the second-factor pages of a sign-in).
//!
//! Screenshots of each page are kept in `artifacts/screenshots/`. Outside CI the tests are skipped,
//! with a message, when node, Chromium or the npm packages are missing; in CI (`CI` set) they must
//! be there.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_latchkey");
const TIME_LIMIT: Duration = Duration::from_secs(180);
/// One Chromium at a time: two at once on a small CI machine make both slow enough to time out.
static ONE_BROWSER: Mutex<()> = Mutex::new(());

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn package() -> PathBuf {
    repo().join("tests/browser")
}

fn chromium() -> PathBuf {
    PathBuf::from(std::env::var_os("CHROMIUM").unwrap_or_else(|| "/usr/bin/chromium".into()))
}

/// Whether the browser tests can run; outside CI, a message says what is missing.
fn can_run() -> bool {
    let missing = if !Command::new("node").arg("--version").stdout(Stdio::null()).status().is_ok_and(|s| s.success()) {
        Some("node is not installed".to_owned())
    } else if !chromium().exists() {
        Some(format!("{} is missing: apt-get install -y chromium", chromium().display()))
    } else if !package().join("node_modules/playwright-core").exists() {
        Some(format!("playwright-core is not installed: (cd {} && npm ci)", package().display()))
    } else {
        None
    };
    let Some(what) = missing else { return true };
    assert!(std::env::var_os("CI").is_none(), "CI must run the browser tests, but {what}");
    eprintln!("SKIPPED: the browser tests need node, Chromium and playwright-core; {what}");
    false
}

/// A child process that is killed when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn latchkey(db: &Path, args: &[&str]) {
    let out = Command::new(BIN).args(args).arg("--database").arg(db).env_remove("LATCHKEY_CONFIG").output().unwrap();
    assert!(out.status.success(), "latchkey {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn add_user(db: &Path, name: &str, password: &str) {
    let mut child = Command::new(BIN)
        .args(["user", "add", name, "--email", &format!("{name}@example.com"), "--password-stdin", "--database"])
        .arg(db)
        .env_remove("LATCHKEY_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(password.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "latchkey user add {name}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A port that was free a moment ago, for a server whose address must be known before it starts
/// (it goes into a registration).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `latchkey serve --dev` on 127.0.0.1 with `db`; returns its base URL.
fn serve(db: &Path, log: &Path) -> (Running, String) {
    serve_as(db, log, "127.0.0.1")
}

/// [`serve`] with the issuer `http://HOST:PORT`: `localhost` for WebAuthn, which needs a domain
/// name (the server still listens on 127.0.0.1, where browsers send `localhost`).
fn serve_as(db: &Path, log: &Path, host: &str) -> (Running, String) {
    serve_with(db, log, host, None)
}

/// [`serve_as`], with the configuration file `config` when one is given.
fn serve_with(db: &Path, log: &Path, host: &str, config: Option<&Path>) -> (Running, String) {
    let port = free_port();
    let issuer = format!("http://{host}:{port}");
    let mut command = Command::new(BIN);
    if let Some(c) = config {
        command.arg("--config").arg(c);
    }
    let server = Running(
        command
            .args(["serve", "--dev", "--listen", &format!("127.0.0.1:{port}"), "--issuer", &issuer, "--database"])
            .arg(db)
            .env_remove("LATCHKEY_CONFIG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "server did not start: {}", std::fs::read_to_string(log).unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
    (server, issuer)
}

/// The protected-api example's binary, built now. `CARGO_BIN_EXE_*` only names this package's
/// binaries, and a binary left over from an earlier build could be stale; `cargo build` is quick
/// when it is fresh. It uses the target directory of the build running this test when that comes
/// from `CARGO_TARGET_DIR` or the cargo configuration (not from a `--target-dir` flag).
fn protected_api_binary() -> PathBuf {
    let started = Instant::now();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args(["build", "--locked", "-p", "latchkey-example-protected-api", "--message-format=json-render-diagnostics"])
        .current_dir(repo());
    // What cargo set for this test, not for the build: some build scripts (ring's) rerun when
    // CARGO_MANIFEST_DIR changes, and would then be rebuilt by every other cargo command too.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let per_package = ["CARGO_MANIFEST_DIR", "CARGO_MANIFEST_PATH", "CARGO_CRATE_NAME", "CARGO_PRIMARY_PACKAGE"];
        if key.starts_with("CARGO_PKG_") || per_package.contains(&&*key) {
            build.env_remove(&*key);
        }
    }
    let out = build.output().unwrap();
    assert!(out.status.success(), "building the protected-api example: {}", String::from_utf8_lossy(&out.stderr));
    eprintln!("cargo build -p latchkey-example-protected-api: {:.1} s", started.elapsed().as_secs_f64());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|m| m["executable"].as_str().map(PathBuf::from))
        .next_back()
        .expect("cargo named no executable for the protected-api example")
}

/// Starts the protected-api example on an ephemeral port of 127.0.0.1, with `flags` besides the
/// address, issuer and origin; returns its base URL, read from the line it prints. Its log (on
/// stdout) goes to `log`. It takes DPoP-bound tokens too: it listens on a loopback address, and
/// so knows the URL proofs name.
fn protected_api(issuer: &str, allow_origin: &str, flags: &[&str], log: &Path) -> (Running, String) {
    let mut child = Running(
        Command::new(protected_api_binary())
            .args(["--listen", "127.0.0.1:0", "--issuer", issuer, "--allow-origin", allow_origin])
            .args(flags)
            .env_remove("PROTECTED_API_ALLOW_ORIGINS")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.0.stdout.take().unwrap();
    let mut log = std::fs::File::create(log).unwrap();
    // Keeps reading, so the API never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("notes API on ").and_then(|l| l.split_whitespace().next()) {
                let _ = tx.send(addr.to_owned());
            }
            let _ = writeln!(log, "{line}");
        }
    });
    let base = rx.recv_timeout(Duration::from_secs(30)).expect("the protected API did not start");
    (child, base)
}

/// Runs one test file of `tests/browser` with `env`, within [`TIME_LIMIT`], and checks that every
/// screenshot in `shots` was taken by this run.
fn run_node(file: &str, env: &[(&str, &str)], shots: &[&str], dir: &Path) {
    let artifacts = repo().join("artifacts/screenshots");
    for shot in shots {
        // Only screenshots of this run count.
        let _ = std::fs::remove_file(artifacts.join(format!("{shot}.png")));
    }
    let out_path = dir.join("node.out");
    let mut node = Command::new("node")
        .args(["--test", "--test-concurrency=1", "--test-reporter=spec", file])
        .current_dir(package())
        .envs(env.iter().copied())
        .env("ARTIFACTS_DIR", &artifacts)
        .env("CHROMIUM", chromium())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(s) = node.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > TIME_LIMIT {
            let _ = node.kill();
            let _ = node.wait();
            panic!("{file} took longer than {TIME_LIMIT:?}: {}", std::fs::read_to_string(&out_path).unwrap());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!("{}\n{file}: {:.1} s", std::fs::read_to_string(&out_path).unwrap(), started.elapsed().as_secs_f64());
    assert!(status.success(), "{file} failed (screenshots in {})", artifacts.display());
    for shot in shots {
        assert!(artifacts.join(format!("{shot}.png")).exists(), "no screenshot of {shot}");
    }
}

#[test]
fn login_consent_logout_and_error_pages_work_in_headless_chromium() {
    if !can_run() {
        return;
    }
    let _one = ONE_BROWSER.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
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
    let (_server, base) = serve(&db, &dir.path().join("server.log"));
    run_node(
        "pages.test.mjs",
        &[("LATCHKEY_BASE", &base), ("LATCHKEY_CLIENT", "browser-test")],
        &[
            "login",
            "login-wrong-password",
            "consent",
            "logout-confirm",
            "signed-out",
            "error",
            "not-found",
            "phone-login",
            "phone-login-wrong-password",
            "phone-consent",
            "phone-logout",
            "phone-error",
        ],
        dir.path(),
    );
}

#[test]
fn spa_example_signs_in_calls_the_api_refreshes_and_signs_out_in_headless_chromium() {
    if !can_run() {
        return;
    }
    let _one = ONE_BROWSER.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("spa.db");
    // The SPA is served at http://127.0.0.1:PORT/, its own redirect and post-logout redirect URI
    // (examples/spa/config.js). That origin is what Latchkey's CORS allows, and the API's.
    let spa_port = free_port().to_string();
    let spa = format!("http://127.0.0.1:{spa_port}");
    let redirect = format!("{spa}/");
    let client = ["client", "add", "--public", "--client-id", "latchkey-spa", "--name", "SPA example"];
    latchkey(&db, &[&client[..], &["--redirect-uri", &redirect, "--post-logout-redirect-uri", &redirect]].concat());
    // The SPA in DPoP mode, at /dpop/ of the same origin: a client that gets DPoP-bound tokens only.
    let dpop_redirect = format!("{spa}/dpop/");
    let client = ["client", "add", "--public", "--dpop", "--client-id", "latchkey-spa-dpop", "--name", "SPA example"];
    latchkey(
        &db,
        &[&client[..], &["--redirect-uri", &dpop_redirect, "--post-logout-redirect-uri", &dpop_redirect]].concat(),
    );
    // A second user besides `demo`, so that each test sees the consent page on its own.
    add_user(&db, "alice", "alice-password");
    // DPoP nonces at Latchkey (RFC 9449 §8) and at the API (§9), so that the SPA's retry with the
    // server's nonce runs at both; bearer tokens take no notice of them.
    let config = dir.path().join("latchkey.toml");
    std::fs::write(&config, "[dpop]\nrequire_nonce = true\n").unwrap();
    let (_server, base) = serve_with(&db, &dir.path().join("server.log"), "127.0.0.1", Some(&config));
    let (_api, api) = protected_api(&base, &spa, &["--dpop-nonces"], &dir.path().join("api.log"));
    run_node(
        "spa.test.mjs",
        &[
            ("LATCHKEY_BASE", &base),
            ("SPA_PORT", &spa_port),
            ("SPA_CLIENT", "latchkey-spa"),
            ("SPA_DPOP_CLIENT", "latchkey-spa-dpop"),
            ("API_BASE", &api),
        ],
        &[
            "spa-start",
            "spa-login",
            "spa-consent",
            "spa-signed-in",
            "spa-api",
            "spa-refreshed",
            "spa-api-after-refresh",
            "spa-signed-out",
            "spa-logout-confirm",
            "spa-signed-out-after-confirm",
            "spa-state-refused",
            "spa-dpop-signed-in",
            "spa-dpop-api",
        ],
        dir.path(),
    );
}

#[test]
fn oidc_client_ts_signs_in_with_dpop_calls_a_dpop_only_api_and_refreshes_in_headless_chromium() {
    if !can_run() {
        return;
    }
    if !package().join("node_modules/oidc-client-ts").exists() {
        assert!(std::env::var_os("CI").is_none(), "CI must run the oidc-client-ts test: (cd tests/browser && npm ci)");
        eprintln!("SKIPPED: oidc-client-ts is not installed: (cd {} && npm ci)", package().display());
        return;
    }
    let _one = ONE_BROWSER.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("oidc-client-ts.db");
    // The test page is served at http://127.0.0.1:PORT/, and signinCallback runs at /callback.
    let port = free_port().to_string();
    let origin = format!("http://127.0.0.1:{port}");
    let client = ["client", "add", "--public", "--dpop", "--client-id", "oidc-client-ts", "--name", "oidc-client-ts"];
    latchkey(&db, &[&client[..], &["--redirect-uri", &format!("{origin}/callback")]].concat());
    let config = dir.path().join("latchkey.toml");
    std::fs::write(&config, "[dpop]\nrequire_nonce = true\n").unwrap();
    let (_server, base) = serve_with(&db, &dir.path().join("server.log"), "127.0.0.1", Some(&config));
    let flags = ["--require-dpop", "--dpop-nonces"];
    let (_api, api) = protected_api(&base, &origin, &flags, &dir.path().join("api.log"));
    run_node(
        "oidc_client_ts.test.mjs",
        &[("LATCHKEY_BASE", &base), ("OIDC_PORT", &port), ("OIDC_CLIENT", "oidc-client-ts"), ("API_BASE", &api)],
        &["oidc-client-ts-signed-in"],
        dir.path(),
    );
}

#[test]
fn a_browser_mcp_host_registers_and_authorizes_across_origins_in_headless_chromium() {
    if !can_run() {
        return;
    }
    let _one = ONE_BROWSER.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = tempfile::tempdir().unwrap();
    let (_server, base) = serve(&dir.path().join("mcp-host.db"), &dir.path().join("server.log"));
    run_node("mcp_host.test.mjs", &[("LATCHKEY_BASE", &base)], &["mcp-host-consent"], dir.path());
}

#[test]
fn two_step_sign_in_is_set_up_and_used_with_the_keyboard_at_phone_size_in_headless_chromium() {
    if !can_run() {
        return;
    }
    let _one = ONE_BROWSER.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("two-step.db");
    let client = ["client", "add", "--public", "--client-id", "browser-test", "--name", "Browser Test App"];
    latchkey(&db, &[&client[..], &["--redirect-uri", "http://127.0.0.1/callback"]].concat());
    add_user(&db, "alice", "alice-password");
    let (_server, base) = serve(&db, &dir.path().join("server.log"));
    run_node(
        "two_step.test.mjs",
        &[("LATCHKEY_BASE", &base), ("LATCHKEY_CLIENT", "browser-test"), ("LATCHKEY_PASSWORD", "alice-password")],
        &[
            "two-step-account-off",
            "two-step-setup",
            "two-step-recovery-codes",
            "two-step-account-on",
            "two-step-sign-in",
            "two-step-sign-in-wrong-code",
        ],
        dir.path(),
    );
}

#[test]
fn passkeys_enrol_sign_in_and_are_refused_where_they_must_be_in_headless_chromium() {
    if !can_run() {
        return;
    }
    let _one = ONE_BROWSER.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("passkeys.db");
    let client = ["client", "add", "--public", "--client-id", "browser-test", "--name", "Browser Test App"];
    latchkey(&db, &[&client[..], &["--redirect-uri", "http://127.0.0.1/callback"]].concat());
    let (_server, base) = serve_as(&db, &dir.path().join("server.log"), "localhost");
    run_node(
        "passkeys.test.mjs",
        &[("LATCHKEY_BASE", &base), ("LATCHKEY_CLIENT", "browser-test")],
        &[
            "passkeys-empty",
            "passkeys-added",
            "login-passkey",
            "two-step-passkey",
            "login-passkey-refused",
            "phone-login-passkey",
            "phone-passkeys",
            "phone-passkeys-removed",
        ],
        dir.path(),
    );
}

#[test]
fn a_device_code_is_typed_and_approved_with_the_keyboard_at_phone_size_in_headless_chromium() {
    if !can_run() {
        return;
    }
    if !package().join("node_modules/axe-core").exists() {
        assert!(std::env::var_os("CI").is_none(), "CI must run the accessibility checks: (cd tests/browser && npm ci)");
        eprintln!("SKIPPED: axe-core is not installed: (cd {} && npm ci)", package().display());
        return;
    }
    let a11y = a11y_artifacts();
    let _one = ONE_BROWSER.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("device.db");
    latchkey(&db, &["client", "add", "--public", "--device", "--client-id", "tv", "--name", "TV"]);
    add_user(&db, "alice", "alice-password");
    // The shortest polling interval, so that the device's polls do not make the test slow.
    let config = dir.path().join("latchkey.toml");
    std::fs::write(&config, "[device]\ninterval = 1\n").unwrap();
    let pages = ["device-code", "device-code-error", "device-consent", "device-done", "device-denied"];
    for p in pages {
        // Only this run's reports count.
        let _ = std::fs::remove_file(a11y.join(format!("{p}.png")));
        let _ = std::fs::remove_file(a11y.join(format!("{p}.axe.json")));
    }
    let (_server, base) = serve_with(&db, &dir.path().join("server.log"), "127.0.0.1", Some(&config));
    run_node(
        "device.test.mjs",
        &[
            ("LATCHKEY_BASE", &base),
            ("DEVICE_CLIENT", "tv"),
            ("LATCHKEY_PASSWORD", "alice-password"),
            ("A11Y_ARTIFACTS_DIR", a11y.to_str().unwrap()),
        ],
        &["device-code", "device-consent", "device-done"],
        dir.path(),
    );
    for p in pages {
        assert!(a11y.join(format!("{p}.png")).exists(), "no 360 px screenshot of {p}");
        assert!(a11y.join(format!("{p}.axe.json")).exists(), "no axe report of {p}");
    }
}

/// Where the accessibility harness (tests/browser/a11y.mjs) keeps its phone-sized screenshots and
/// axe reports: `target/browser-artifacts/` of the repository, as the README says.
fn a11y_artifacts() -> PathBuf {
    repo().join("target/browser-artifacts")
}

#[test]
fn account_pages_and_every_page_pass_axe_keyboard_and_phone_checks_in_headless_chromium() {
    if !can_run() {
        return;
    }
    let a11y = a11y_artifacts();
    if !package().join("node_modules/axe-core").exists() {
        assert!(std::env::var_os("CI").is_none(), "CI must run the accessibility checks: (cd tests/browser && npm ci)");
        eprintln!("SKIPPED: axe-core is not installed: (cd {} && npm ci)", package().display());
        return;
    }
    let _one = ONE_BROWSER.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("account.db");
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
    add_user(&db, "alice", "alice-password");
    let pages = [
        "login",
        "login-error",
        "consent",
        "account-profile",
        "account-password",
        "account-sessions",
        "account-apps",
        "account-activity",
        "account-profile-errors",
        "logout-confirm",
        "signed-out",
        "error",
        "not-found",
    ];
    for p in pages {
        let _ = std::fs::remove_file(a11y.join(format!("{p}.png")));
    }
    let (_server, base) = serve(&db, &dir.path().join("server.log"));
    run_node(
        "account.test.mjs",
        &[
            ("LATCHKEY_BASE", &base),
            ("LATCHKEY_CLIENT", "browser-test"),
            ("ACCOUNT_USER", "alice"),
            ("ACCOUNT_PASSWORD", "alice-password"),
            ("A11Y_ARTIFACTS_DIR", a11y.to_str().unwrap()),
        ],
        &["account-profile-errors", "account-profile", "account-sessions", "account-apps", "account-activity"],
        dir.path(),
    );
    for p in pages {
        assert!(a11y.join(format!("{p}.png")).exists(), "no 360 px screenshot of {p}");
        assert!(a11y.join(format!("{p}.axe.json")).exists(), "no axe report of {p}");
    }
}

/// The mail tests' SMTP server (`tests/mail/smtp_server.mjs`: Node's `smtp-server`, STARTTLS on a
/// certificate only this test trusts, AUTH required) on 127.0.0.1, writing every message it
/// receives as a JSON file into `out`. Returns the process and its port; the certificate is
/// `smtp-cert.pem` in `dir`.
fn smtp_server(dir: &Path, out: &Path) -> (Running, u16) {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    std::fs::write(dir.join("smtp-cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.join("smtp-key.pem"), cert.signing_key.serialize_pem()).unwrap();
    std::fs::create_dir_all(out).unwrap();
    let mut child = Running(
        Command::new("node")
            .arg(repo().join("tests/mail/smtp_server.mjs"))
            .args(["--port", "0", "--user", "latchkey", "--pass", "smtp-test-password", "--cert"])
            .arg(dir.join("smtp-cert.pem"))
            .arg("--key")
            .arg(dir.join("smtp-key.pem"))
            .arg("--out")
            .arg(out)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut first = String::new();
    BufReader::new(child.0.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let port: serde_json::Value = serde_json::from_str(&first).expect("the SMTP server did not start");
    (child, u16::try_from(port["port"].as_u64().unwrap()).unwrap())
}

/// A configuration with self-registration open and mail through the test's SMTP server.
fn mail_config(dir: &Path, smtp_port: u16) -> PathBuf {
    let password = dir.join("smtp-password");
    std::fs::write(&password, "smtp-test-password").unwrap();
    std::fs::set_permissions(&password, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let config = dir.join("latchkey.toml");
    let toml = format!(
        "signup = \"open\"\n\n[smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\ntls = \"starttls\"\nusername = \"latchkey\"\n\
         password_file = {:?}\nfrom = \"Latchkey <no-reply@id.example>\"\ninsecure_ca_file = {:?}\ntimeout = 10\n",
        password.to_str().unwrap(),
        dir.join("smtp-cert.pem").to_str().unwrap(),
    );
    std::fs::write(&config, toml).unwrap();
    config
}

/// The pages only a flow reaches (issue 13): sign-up, the address check, the password reset from
/// a link mailed by a real SMTP server, and the second-factor pages of the sign-in (TOTP set up
/// where a client requires it, the code and recovery-code entry, the passkey a client requires).
#[test]
fn reset_verify_sign_up_and_second_factor_pages_pass_axe_keyboard_and_phone_checks_in_headless_chromium() {
    if !can_run() {
        return;
    }
    let mail_ready = repo().join("tests/mail/node_modules/smtp-server").exists();
    if !package().join("node_modules/axe-core").exists() || !mail_ready {
        let what = "axe-core (cd tests/browser && npm ci) and smtp-server (cd tests/mail && npm ci)";
        assert!(std::env::var_os("CI").is_none(), "CI must run the accessibility checks: {what}");
        eprintln!("SKIPPED: these checks need {what}");
        return;
    }
    let a11y = a11y_artifacts();
    let _one = ONE_BROWSER.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = tempfile::tempdir().unwrap();
    let mail = dir.path().join("mail");
    let (_smtp, smtp_port) = smtp_server(dir.path(), &mail);
    let db = dir.path().join("flows.db");
    let client = |id: &str, name: &str, policy: &str| {
        let args = ["client", "add", "--public", "--client-id", id, "--name", name, "--second-factor", policy];
        latchkey(&db, &[&args[..], &["--redirect-uri", "http://127.0.0.1/callback"]].concat());
    };
    client("browser-test", "Browser Test App", "optional");
    client("strict-app", "Strict App", "required");
    client("passkey-app", "Passkey App", "passkey");
    // One user per flow, so that no flow depends on another's having run.
    add_user(&db, "alice", "alice-password");
    add_user(&db, "carol", "carol-password");
    add_user(&db, "dana", "dana-password");
    let pages = [
        "signup",
        "signup-error",
        "signup-sent",
        "verify",
        "verify-done",
        "reset-request",
        "reset-request-error",
        "reset-sent",
        "reset-form",
        "reset-form-error",
        "reset-done",
        "two-step-enrol",
        "two-step-enrol-error",
        "recovery-codes",
        "two-step-code",
        "two-step-code-error",
        "two-step-recovery-code",
        "two-step-recovery-code-error",
        "two-step-passkey-enrol",
        "two-step-passkey",
        "account-two-step",
        "account-two-step-turn-off",
        "account-two-step-off",
        "account-passkeys",
        "account-passkeys-renamed",
    ];
    for p in pages {
        let _ = std::fs::remove_file(a11y.join(format!("{p}.png")));
        let _ = std::fs::remove_file(a11y.join(format!("{p}.axe.json")));
    }
    // WebAuthn needs a domain name: the issuer is http://localhost:PORT.
    let config = mail_config(dir.path(), smtp_port);
    let (_server, base) = serve_with(&db, &dir.path().join("server.log"), "localhost", Some(&config));
    run_node(
        "flows.test.mjs",
        &[
            ("LATCHKEY_BASE", &base),
            ("LATCHKEY_CLIENT", "browser-test"),
            ("MAIL_DIR", mail.to_str().unwrap()),
            ("A11Y_ARTIFACTS_DIR", a11y.to_str().unwrap()),
        ],
        &[],
        dir.path(),
    );
    for p in pages {
        assert!(a11y.join(format!("{p}.png")).exists(), "no 360 px screenshot of {p}");
        assert!(a11y.join(format!("{p}.axe.json")).exists(), "no axe report of {p}");
    }
}
