//! Email flows end to end against a real SMTP server started by the test on 127.0.0.1: Node's
//! `smtp-server` (tests/mail, pinned by its package-lock.json) with STARTTLS on a certificate only
//! this test trusts and AUTH required; every message it receives is parsed (`mailparser`) and
//! written as a JSON file that the test reads, follows the link of, and checks.
//!
//! - password reset: request, mail, link, new password; old sessions and refresh tokens dead; the
//!   link works once, also under a burst of concurrent posts;
//! - a reset request for an unknown address is indistinguishable from a known one: the same body
//!   and status, and the same timing measured over many requests;
//! - the queue survives a stopped mail server (retries with back-off on the test's clock) and a
//!   restart of `latchkey serve`;
//! - verification and self-registration, open and by invitation; an unverified account cannot
//!   sign in.
//!
//! Outside CI the tests are skipped, with a message, when node or the npm packages are missing; in
//! CI (`CI` set) they must be there.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{PASSWORD, TestServer, hidden};
use latchkey_core::Clock;
use latchkey_core::outbox::OutboxFilter;
use latchkey_core::signup::SignupMode;
use latchkey_core::throttle::Rule;
use latchkey_server::smtp::{SmtpMailer, SmtpPassword, SmtpSettings, SmtpTls};
use tokio::io::AsyncBufReadExt;

const SMTP_USER: &str = "latchkey";
const SMTP_PASS: &str = "smtp-test-password";

fn package() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/mail")
}

/// Whether the SMTP server can run; outside CI, a message says what is missing.
fn can_run() -> bool {
    let node = std::process::Command::new("node").arg("--version").stdout(Stdio::null()).status();
    let missing = if !node.is_ok_and(|s| s.success()) {
        Some("node is not installed".to_owned())
    } else if !package().join("node_modules/smtp-server").exists()
        || !package().join("node_modules/mailparser").exists()
    {
        Some(format!("smtp-server and mailparser are not installed: (cd {} && npm ci)", package().display()))
    } else {
        None
    };
    let Some(what) = missing else { return true };
    assert!(std::env::var_os("CI").is_none(), "CI must run the mail tests, but {what}");
    // Straight to the stream: a skip must show in a plain `cargo test` run.
    let _ =
        std::io::Write::write_all(&mut std::io::stderr(), format!("SKIPPED: the mail tests need {what}\n").as_bytes());
    false
}

/// The SMTP server: a child process, killed when dropped.
struct MailServer {
    dir: tempfile::TempDir,
    port: u16,
    implicit: bool,
    child: Option<tokio::process::Child>,
    /// The PEM of the certificate the server presents (its own root).
    ca_pem: Vec<u8>,
}

impl MailServer {
    async fn start(implicit: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
        std::fs::create_dir(dir.path().join("out")).unwrap();
        let ca_pem = cert.cert.pem().into_bytes();
        let mut s = Self { dir, port: 0, implicit, child: None, ca_pem };
        s.run().await;
        s
    }

    /// Starts the process, on the port it had before if it had one.
    async fn run(&mut self) {
        let d = self.dir.path();
        let mut cmd = tokio::process::Command::new("node");
        cmd.arg(package().join("smtp_server.mjs"))
            .args(["--port", &self.port.to_string(), "--user", SMTP_USER, "--pass", SMTP_PASS])
            .arg("--cert")
            .arg(d.join("cert.pem"))
            .arg("--key")
            .arg(d.join("key.pem"))
            .arg("--out")
            .arg(d.join("out"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if self.implicit {
            cmd.arg("--implicit");
        }
        let mut child = cmd.spawn().unwrap();
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await.unwrap().unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_str(&first).unwrap();
        self.port = u16::try_from(v["port"].as_u64().unwrap()).unwrap();
        self.child = Some(child);
    }

    async fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().await.unwrap();
        }
    }

    fn settings(&self) -> SmtpSettings {
        SmtpSettings {
            host: "127.0.0.1".into(),
            port: self.port,
            tls: if self.implicit { SmtpTls::Implicit } else { SmtpTls::StartTls },
            credentials: Some((SMTP_USER.into(), SmtpPassword::new(SMTP_PASS.into()))),
            from: "Latchkey <no-reply@id.example>".into(),
            insecure_extra_root_pem: Some(self.ca_pem.clone()),
            timeout: Duration::from_secs(10),
        }
    }

    /// Every message received so far, oldest first.
    fn messages(&self) -> Vec<serde_json::Value> {
        let mut files: Vec<_> = std::fs::read_dir(self.dir.path().join("out"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        files.iter().map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()).collect()
    }

    /// Waits for the `n`-th message (1-based) to `to`.
    async fn nth_to(&self, to: &str, n: usize) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mine: Vec<_> = self.messages().into_iter().filter(|m| is_to(m, to)).collect();
            if mine.len() >= n {
                return mine[n - 1].clone();
            }
            assert!(Instant::now() < deadline, "no message {n} to {to}; received: {:#?}", self.messages());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn count_to(&self, to: &str) -> usize {
        self.messages().iter().filter(|m| is_to(m, to)).count()
    }
}

/// Whether `m` was sent to `to` (addresses compare without case).
fn is_to(m: &serde_json::Value, to: &str) -> bool {
    m["to"].as_str().is_some_and(|t| t.eq_ignore_ascii_case(to))
}

/// The link in a mail's text body that starts with `prefix`.
fn link_in(mail: &serde_json::Value, prefix: &str) -> String {
    let text = mail["text"].as_str().unwrap();
    let start = text.find(prefix).unwrap_or_else(|| panic!("no {prefix} link in {text}"));
    text[start..].split_whitespace().next().unwrap().to_owned()
}

/// A server with mail (and `mode` sign-up) whose outbox worker sends through `mail`, on the
/// server's test clock, polling every 100 ms so that retries made due by `advance` go out at once.
async fn server_with_mail(
    mail: &MailServer,
    mode: SignupMode,
    tweak: impl FnOnce(&mut latchkey_core::ProviderConfig),
) -> (TestServer, tokio::task::JoinHandle<()>) {
    let server = TestServer::start_with(|c| {
        c.email.enabled = true;
        c.email.signup = mode;
        tweak(c);
    })
    .await;
    let worker = start_worker(&server, mail);
    (server, worker)
}

fn start_worker(server: &TestServer, mail: &MailServer) -> tokio::task::JoinHandle<()> {
    let mailer = Arc::new(SmtpMailer::new(&mail.settings(), &server.base).unwrap());
    let (skew, t0) = (server.skew.clone(), server.now() - server.skew.load(Ordering::SeqCst));
    let clock = Clock::from_fn(move || t0 + skew.load(Ordering::SeqCst));
    let settings = latchkey_server::outbox_worker::WorkerSettings {
        poll: Duration::from_millis(100),
        after_error: Duration::from_millis(100),
    };
    latchkey_server::outbox_worker::spawn(server.provider.clone(), mailer, clock, settings)
}

/// Posts the reset request form for `email` from a fresh browser; returns (status, body).
async fn request_reset(server: &TestServer, email: &str) -> (u16, String) {
    let b = server.browser();
    let form = b.get(&server.url("/reset")).await;
    assert_eq!(form.status, 200, "{}", form.body);
    let csrf = hidden(&form.body, "csrf");
    let res = b.post(&server.url("/reset"), &[("csrf", &csrf), ("email", email)]).await;
    (res.status, res.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_reset_end_to_end_ends_sessions_and_the_link_works_once() {
    if !can_run() {
        return;
    }
    let mail = MailServer::start(false).await;
    let (server, _worker) = server_with_mail(&mail, SignupMode::Off, |_| {}).await;
    // Alice is signed in somewhere, with a refresh token.
    let (old_browser, tokens) = server.tokens_for("spa").await;
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    // The login page offers the reset, now that mail is configured.
    let login = server.browser().get(&server.authorize_url("spa", &latchkey_proto::CodeVerifier::generate(), "")).await;
    assert!(login.body.contains(r#"href="/reset""#), "{}", login.body);

    let (status, body) = request_reset(&server, "Alice@Example.com").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("If an account uses this address"), "{body}");
    let m = mail.nth_to("alice@example.com", 1).await;
    assert_eq!(m["secure"], true, "sent over TLS (STARTTLS)");
    assert_eq!(m["user"], SMTP_USER, "after AUTH");
    assert_eq!(m["subject"], "Reset your password at 127.0.0.1");
    assert!(m["html"].as_str().unwrap().contains("/reset/confirm?token="), "an HTML part too");
    let link = link_in(&m, &format!("{}/reset/confirm?token=", server.base));

    // Opening the link changes nothing; the form carries the token.
    let b = server.browser();
    let form = b.get(&link).await;
    assert_eq!(form.status, 200, "{}", form.body);
    assert!(form.body.contains("<strong>alice</strong>"), "{}", form.body);
    let (csrf, token) = (hidden(&form.body, "csrf"), hidden(&form.body, "token"));
    let short =
        b.post(&server.url("/reset/confirm"), &[("csrf", &csrf), ("token", &token), ("password", "short")]).await;
    assert_eq!(short.status, 400, "the password rules of the admin path apply");
    assert!(short.body.contains("at least 8 characters"), "{}", short.body);
    let done = b
        .post(
            &server.url("/reset/confirm"),
            &[("csrf", &csrf), ("token", &token), ("password", "a brand new password")],
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("Your password was changed"), "{}", done.body);

    // The old session is gone: the old browser is asked to sign in again.
    let again = old_browser.get(&server.authorize_url("spa", &latchkey_proto::CodeVerifier::generate(), "")).await;
    assert!(again.body.contains(r#"action="/login""#), "the old session must be dead: {}", again.body);
    // The refresh token is dead.
    let (status, body) = server.refresh("spa", &refresh, None).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
    // The link works once.
    let reused = b
        .post(
            &server.url("/reset/confirm"),
            &[("csrf", &csrf), ("token", &token), ("password", "another new password")],
        )
        .await;
    assert_eq!(reused.status, 400);
    assert!(reused.body.contains("This link does not work"), "{}", reused.body);
    // The old password no longer works, the new one does.
    let lb = server.browser();
    let page = lb.get(&server.authorize_url("spa", &latchkey_proto::CodeVerifier::generate(), "")).await;
    assert_eq!(lb.submit_login(&server.base, &page.body, "alice", PASSWORD).await.status, 200, "old password refused");
    let page = lb.get(&server.authorize_url("spa", &latchkey_proto::CodeVerifier::generate(), "")).await;
    assert_eq!(lb.submit_login(&server.base, &page.body, "alice", "a brand new password").await.status, 303);
    let audit = server.store.audit_events(None, None, 50).await.unwrap();
    let reset = audit.iter().find(|e| e.event == "password_reset").expect("audited");
    assert_eq!(reset.detail["sessions_ended"], 1);
    assert_eq!(reset.detail["grants_revoked"], 1);
    assert_eq!(reset.detail["email_verified"], true, "following the link proved the address");
    // The owner is told at the address the link just proved.
    let told = mail.nth_to("alice@example.com", 2).await;
    assert_eq!(told["subject"], "Your password at 127.0.0.1 was changed");

    // A burst of posts with one link: exactly one sets the password.
    request_reset(&server, "alice@example.com").await;
    let link = link_in(&mail.nth_to("alice@example.com", 3).await, &format!("{}/reset/confirm?token=", server.base));
    let b = Arc::new(server.browser());
    let form = b.get(&link).await;
    let (csrf, token) = (hidden(&form.body, "csrf"), hidden(&form.body, "token"));
    let url = server.url("/reset/confirm");
    let posts: Vec<_> = (0..16)
        .map(|i| {
            let (b, url, csrf, token) = (b.clone(), url.clone(), csrf.clone(), token.clone());
            tokio::spawn(async move {
                let pw = format!("burst password {i}");
                b.post(&url, &[("csrf", &csrf), ("token", &token), ("password", &pw)]).await.status
            })
        })
        .collect();
    let mut ok = 0;
    for p in posts {
        ok += usize::from(p.await.unwrap() == 200);
    }
    assert_eq!(ok, 1, "one link, one new password");
}

/// Median of `v` (sorted in place).
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_request_for_an_unknown_address_looks_like_one_for_a_known_address() {
    if !can_run() {
        return;
    }
    let mail = MailServer::start(false).await;
    // Throttles wide open: this test measures the request path itself, many times from one place.
    let open = Rule { free: 10_000, base: 1, max: 1 };
    let (server, _worker) = server_with_mail(&mail, SignupMode::Off, |c| {
        c.email.reset_per_source = open;
        c.email.reset_per_address = open;
    })
    .await;
    // One browser, its CSRF token fetched once: every request below is one POST and nothing else.
    let b = server.browser();
    let form = b.get(&server.url("/reset")).await;
    let csrf = hidden(&form.body, "csrf");
    let url = server.url("/reset");
    let post = |email: String| {
        let (b, url, csrf) = (&b, url.clone(), csrf.clone());
        async move {
            let t = Instant::now();
            let res =
                b.http.post(&url).form(&[("csrf", csrf.as_str()), ("email", email.as_str())]).send().await.unwrap();
            let status = res.status().as_u16();
            let headers = res.headers().clone();
            let body = res.text().await.unwrap();
            (t.elapsed().as_secs_f64() * 1000.0, status, headers, body)
        }
    };
    // Same status, same body, same headers that matter.
    let (_, s1, h1, known) = post("alice@example.com".into()).await;
    let (_, s2, h2, unknown) = post("nobody@example.com".into()).await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(known, unknown, "the page must not depend on the address");
    assert_eq!(h1.get("content-length"), h2.get("content-length"));
    assert!(h1.get("set-cookie").is_none() && h2.get("set-cookie").is_none());
    // Timing: known and unknown requests interleaved (so load changes hit both alike), each many
    // times; the worker sends alice's mails meanwhile, in the background, as it would in
    // production. The statistic: the difference of the two medians, against the spread of the
    // pooled sample (its median absolute deviation, MAD). With n requests per group the median's
    // standard error is about 1.25·σ/√n; with n = 150 that is ~0.1σ, and MAD·1.48 estimates σ.
    // So a bound of 0.5·MAD·1.48 (~5 standard errors) is not crossed by noise on a loaded 2-core
    // machine, while a request path that did per-account work (a password hash, an SMTP round
    // trip: milliseconds to tens of milliseconds) would cross it; an absolute floor of 1.5 ms
    // keeps a very quiet machine (tiny MAD) from failing on scheduler jitter.
    let n = 150;
    let (mut k, mut u) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        let (tk, sk, _, _) = post("alice@example.com".into()).await;
        let (tu, su, _, _) = post(format!("nobody{i}@example.com")).await;
        assert_eq!((sk, su), (200, 200));
        k.push(tk);
        u.push(tu);
    }
    let mut pooled: Vec<f64> = k.iter().chain(u.iter()).copied().collect();
    let m = median(&mut pooled);
    let mut dev: Vec<f64> = pooled.iter().map(|x| (x - m).abs()).collect();
    let mad = median(&mut dev);
    let (mk, mu) = (median(&mut k), median(&mut u));
    let bound = (0.5 * 1.4826 * mad).max(1.5);
    eprintln!("reset timing: median known {mk:.3} ms, unknown {mu:.3} ms, MAD {mad:.3} ms, bound {bound:.3} ms");
    assert!((mk - mu).abs() <= bound, "known {mk:.3} ms vs unknown {mu:.3} ms differ by more than {bound:.3} ms");
    // And the mails: only the known address got any (one per request).
    assert!(mail.messages().iter().all(|m| m["to"] == "alice@example.com"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_waits_for_a_stopped_mail_server_with_back_off() {
    if !can_run() {
        return;
    }
    let mut mail = MailServer::start(false).await;
    let (server, _worker) = server_with_mail(&mail, SignupMode::Off, |_| {}).await;
    mail.stop().await;
    let (status, _) = request_reset(&server, "alice@example.com").await;
    assert_eq!(status, 200, "the request does not wait for the mail server");
    // The worker tried and failed: the job waits, ~30 s on the test clock.
    let job = wait_for_attempts(&server, 1).await;
    let delay = job.next_attempt_at - server.now();
    assert!((22..=30).contains(&delay), "first retry in 30 s less jitter: {delay}");
    assert!(job.last_error.as_deref().unwrap_or("").contains("SMTP"), "{job:?}");
    // Its time comes: a second failure, then the delay doubles.
    server.advance(delay);
    let job = wait_for_attempts(&server, 2).await;
    let delay = job.next_attempt_at - server.now();
    assert!((45..=60).contains(&delay), "second retry in 60 s less jitter: {delay}");
    // The mail server comes back (same port); once the retry is due, the mail goes out.
    mail.run().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(mail.count_to("alice@example.com"), 0, "not before the retry is due");
    server.advance(delay);
    let m = mail.nth_to("alice@example.com", 1).await;
    assert_eq!(m["subject"], "Reset your password at 127.0.0.1");
    // The worker marks the job done just after the mail server accepted it: wait for that.
    let deadline = Instant::now() + Duration::from_secs(30);
    let done = loop {
        let done = server.store.outbox_jobs(OutboxFilter::Completed, 10).await.unwrap();
        if !done.is_empty() || Instant::now() > deadline {
            break done;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].attempts, 3);
}

/// Waits until the one queued job has been attempted `n` times and is waiting again.
async fn wait_for_attempts(server: &TestServer, n: u32) -> latchkey_core::outbox::OutboxRecord {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let q = server.store.outbox_jobs(OutboxFilter::Queued, 10).await.unwrap();
        if let Some(j) =
            // A job being tried holds a 5-minute lease (its `next_attempt_at`, with the previous
            // error still set): wait for the retry the failed attempt schedules, shorter than that.
            q.iter().find(|j| {
                j.attempts == n
                    && j.last_error.is_some()
                    && j.next_attempt_at > server.now()
                    && j.next_attempt_at - server.now() < 300
            })
        {
            return j.clone();
        }
        assert!(Instant::now() < deadline, "no attempt {n}: {q:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Signs in through the authorization flow; returns the response to the login form.
async fn sign_in(server: &TestServer, user: &str, password: &str) -> common::Page {
    let b = server.browser();
    let page = b.get(&server.authorize_url("spa", &latchkey_proto::CodeVerifier::generate(), "")).await;
    b.submit_login(&server.base, &page.body, user, password).await
}

async fn sign_up(server: &TestServer, query: &str, username: &str, email: &str, password: &str) -> common::Page {
    let b = server.browser();
    let form = b.get(&server.url(&format!("/signup{query}"))).await;
    assert_eq!(form.status, 200, "{}", form.body);
    let csrf = hidden(&form.body, "csrf");
    let mut fields = vec![("csrf", csrf.clone()), ("username", username.into()), ("email", email.into())];
    fields.push(("password", password.into()));
    if form.body.contains(r#"name="invite""#) {
        fields.push(("invite", hidden(&form.body, "invite")));
    }
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    b.post(&server.url("/signup"), &fields).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_sign_up_needs_a_verified_address_before_sign_in() {
    if !can_run() {
        return;
    }
    let mail = MailServer::start(false).await;
    let (server, _worker) = server_with_mail(&mail, SignupMode::Open, |_| {}).await;
    let login = server.browser().get(&server.authorize_url("spa", &latchkey_proto::CodeVerifier::generate(), "")).await;
    assert!(login.body.contains(r#"href="/signup""#), "{}", login.body);

    let res = sign_up(&server, "", "bob", "bob@example.com", "bobs password 1").await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert!(res.body.contains("Check your email"), "{}", res.body);
    let first = mail.nth_to("bob@example.com", 1).await;
    assert_eq!(first["subject"], "Confirm your email address at 127.0.0.1");
    // Not before the address is verified, even with the right password (a wrong one says nothing).
    let wrong = sign_in(&server, "bob", "not bobs password").await;
    assert!(wrong.body.contains("Invalid username or password"), "{}", wrong.body);
    let refused = sign_in(&server, "bob", "bobs password 1").await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.body.contains("Confirm your email address first"), "{}", refused.body);
    assert!(refused.headers.get("set-cookie").is_none_or(|c| !c.to_str().unwrap().contains("session")));
    // Signing in sent a fresh link, which replaced the first.
    let second = mail.nth_to("bob@example.com", 2).await;
    let old = link_in(&first, &format!("{}/verify?token=", server.base));
    let new = link_in(&second, &format!("{}/verify?token=", server.base));
    assert_eq!(server.browser().get(&old).await.status, 400, "a newer link replaces the older");
    // Opening the link only shows the button; pressing it confirms.
    let b = server.browser();
    let page = b.get(&new).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("bob@example.com"));
    assert!(
        server
            .store
            .signup_hold(&server.store.user_by_username("bob").await.unwrap().unwrap().id)
            .await
            .unwrap()
            .is_some()
    );
    let confirmed = b
        .post(&server.url("/verify"), &[("csrf", &hidden(&page.body, "csrf")), ("token", &hidden(&page.body, "token"))])
        .await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.body);
    assert!(confirmed.body.contains("Address confirmed"));
    assert!(server.store.user_by_username("bob").await.unwrap().unwrap().email_verified);
    assert_eq!(sign_in(&server, "bob", "bobs password 1").await.status, 303, "now bob can sign in");

    // A taken username is said; a taken address is not: same page, and its owner is told.
    let taken = sign_up(&server, "", "bob", "other@example.com", "a fine password").await;
    assert_eq!(taken.status, 400);
    assert!(taken.body.contains("taken"), "{}", taken.body);
    let dup = sign_up(&server, "", "alice2", "ALICE@example.com", "a fine password").await;
    assert_eq!((dup.status, dup.body.as_str()), (res.status, res.body.as_str()), "as for a new address");
    assert!(server.store.user_by_username("alice2").await.unwrap().is_none());
    let notice = mail.nth_to("alice@example.com", 1).await;
    assert_eq!(notice["subject"], "Someone tried to sign up at 127.0.0.1 with your address");
    assert!(notice["text"].as_str().unwrap().contains("\"alice\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_signs_up_its_own_address_once() {
    if !can_run() {
        return;
    }
    let mail = MailServer::start(true).await;
    let (server, _worker) = server_with_mail(&mail, SignupMode::Invite, |_| {}).await;
    let nothing = server.browser().get(&server.url("/signup")).await;
    assert_eq!(nothing.status, 400, "invite-only: no form without an invitation");
    let login = server.browser().get(&server.authorize_url("spa", &latchkey_proto::CodeVerifier::generate(), "")).await;
    assert!(!login.body.contains(r#"href="/signup""#), "no sign-up link in invite mode");
    latchkey_core::signup::invite(
        server.store.as_ref(),
        &server.provider.config.email,
        "carol@example.com",
        server.now(),
    )
    .await
    .unwrap();
    let m = mail.nth_to("carol@example.com", 1).await;
    assert_eq!(m["secure"], true, "implicit TLS");
    let link = link_in(&m, &format!("{}/signup?invite=", server.base));
    let query = &link[server.base.len() + "/signup".len()..];
    // The address field is the invited one; changing it in the form changes nothing.
    let res = sign_up(&server, query, "carol", "mallory@example.com", "carols password").await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert!(res.body.contains("Account created"), "{}", res.body);
    let carol = server.store.user_by_username("carol").await.unwrap().unwrap();
    assert_eq!((carol.email.as_str(), carol.email_verified), ("carol@example.com", true));
    assert_eq!(sign_in(&server, "carol", "carols password").await.status, 303, "verified by the invitation");
    let again = server.browser().get(&link).await;
    assert_eq!(again.status, 400, "an invitation works once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_address_takes_effect_when_verified_and_the_old_one_is_told() {
    if !can_run() {
        return;
    }
    let mail = MailServer::start(false).await;
    let (server, _worker) = server_with_mail(&mail, SignupMode::Off, |_| {}).await;
    let alice = server.store.user_by_username("alice").await.unwrap().unwrap();
    let r = server.provider.request_email_change(&alice.id, "alice@new.example", server.now()).await.unwrap();
    assert_eq!(r, latchkey_core::verification::ChangeRequested::Sent);
    let m = mail.nth_to("alice@new.example", 1).await;
    assert_eq!(server.store.user(&alice.id).await.unwrap().unwrap().email, "alice@example.com", "not yet");
    let b = server.browser();
    let page = b.get(&link_in(&m, &format!("{}/verify?token=", server.base))).await;
    let res = b
        .post(&server.url("/verify"), &[("csrf", &hidden(&page.body, "csrf")), ("token", &hidden(&page.body, "token"))])
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    let now = server.store.user(&alice.id).await.unwrap().unwrap();
    assert_eq!((now.email.as_str(), now.email_verified), ("alice@new.example", true));
    let told = mail.nth_to("alice@example.com", 1).await;
    assert_eq!(told["subject"], "Your email address at 127.0.0.1 was changed");
}

/// Alice changes her password on the account page from signed-in browser `b`.
async fn change_password_on_account_page(server: &TestServer, b: &common::Browser, from: &str, to: &str) {
    let page = b.get(&server.url("/account/password")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = hidden(&page.body, "csrf");
    let form = [("csrf", csrf.as_str()), ("current", from), ("new", to), ("confirm", to)];
    let res = b.post(&server.url("/account/password"), &form).await;
    assert!(res.status == 303 || res.status == 200, "{}", res.body);
    assert!(!res.body.contains("not right"), "{}", res.body);
}

fn queued_notices(jobs: &[latchkey_core::outbox::OutboxRecord]) -> usize {
    use latchkey_core::{mail::Notice, outbox::Job};
    jobs.iter().filter(|j| matches!(&j.job, Job::Mail(m) if matches!(m.notice, Notice::PasswordChanged { .. }))).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_on_the_account_page_is_told_to_the_verified_address_only() {
    if !can_run() {
        return;
    }
    let mail = MailServer::start(false).await;
    let (server, worker) = server_with_mail(&mail, SignupMode::Off, |_| {}).await;
    let b = server.browser();
    let login = b.get(&server.url("/account")).await;
    assert_eq!(b.submit_login(&server.base, &login.body, "alice", PASSWORD).await.status, 303);

    // An address nobody proved may be a stranger's typo: it is told nothing.
    worker.abort();
    change_password_on_account_page(&server, &b, PASSWORD, "a second password").await;
    let all = |f| server.store.outbox_jobs(f, 50);
    let queued = [all(OutboxFilter::Queued).await.unwrap(), all(OutboxFilter::Completed).await.unwrap()].concat();
    assert_eq!(queued_notices(&queued), 0, "{queued:?}");

    // Once proved, every change is told there.
    let worker = start_worker(&server, &mail);
    assert!(server.provider.set_verified_email("alice", "alice@example.com", server.now()).await.unwrap());
    change_password_on_account_page(&server, &b, "a second password", "a third password").await;
    let told = mail.nth_to("alice@example.com", 1).await;
    assert_eq!(told["subject"], "Your password at 127.0.0.1 was changed");
    assert!(told["text"].as_str().unwrap().contains("alice"), "{told}");
    assert_eq!(mail.count_to("alice@example.com"), 1);
    worker.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_smtp_credentials_or_an_untrusted_certificate_deliver_nothing() {
    if !can_run() {
        return;
    }
    let mail = MailServer::start(false).await;
    let server = TestServer::start_with(|c| c.email.enabled = true).await;
    let to = |to: &str| latchkey_core::mail::Mail {
        to: to.into(),
        message: latchkey_core::mail::Message::Notice(latchkey_core::mail::Notice::Test),
    };
    use latchkey_core::outbox::Deliver;
    let wrong =
        SmtpSettings { credentials: Some((SMTP_USER.into(), SmtpPassword::new("wrong".into()))), ..mail.settings() };
    let e = SmtpMailer::new(&wrong, &server.base).unwrap().send_mail(&to("x@example.com")).await.unwrap_err();
    assert!(e.permanent, "535 is permanent: {e}");
    let untrusted = SmtpSettings { insecure_extra_root_pem: None, ..mail.settings() };
    let e = SmtpMailer::new(&untrusted, &server.base).unwrap().send_mail(&to("y@example.com")).await.unwrap_err();
    assert!(e.message.contains("SMTP"), "{e}");
    SmtpMailer::new(&mail.settings(), &server.base).unwrap().send_mail(&to("z@example.com")).await.unwrap();
    assert_eq!(mail.messages().len(), 1, "only the trusted, authenticated one");
}

const BIN: &str = env!("CARGO_BIN_EXE_latchkey");

/// `latchkey serve` with a config file, killed when dropped.
struct Serve(std::process::Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(cfg: &Path, db: &Path, port: u16, log: &Path) -> Serve {
    let child = std::process::Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--config"])
        .arg(cfg)
        .arg("--database")
        .arg(db)
        .env("RUST_LOG", "info")
        .env_remove("LATCHKEY_CONFIG")
        .stdout(Stdio::null())
        .stderr(std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "server did not start: {}", std::fs::read_to_string(log).unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
    Serve(child)
}

fn latchkey(cfg: &Path, db: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(cfg)
        .arg("--database")
        .arg(db)
        .env_remove("LATCHKEY_CONFIG")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_mail_survives_a_serve_restart_and_admin_commands_queue_it() {
    if !can_run() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let mail = MailServer::start(false).await;
    let dir = tempfile::tempdir().unwrap();
    let (cfg, db, log) = (dir.path().join("latchkey.toml"), dir.path().join("lk.db"), dir.path().join("serve.log"));
    std::fs::write(dir.path().join("ca.pem"), &mail.ca_pem).unwrap();
    let pw = dir.path().join("smtp-password");
    std::fs::write(&pw, SMTP_PASS).unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    // Without [smtp], self-registration is refused at start-up, with the reason.
    std::fs::write(&cfg, "signup = \"invite\"\n").unwrap();
    let out = latchkey(&cfg, &db, &["serve"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("[smtp]"), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(
        &cfg,
        format!(
            "signup = \"invite\"\n[smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"starttls\"\nusername = \"{SMTP_USER}\"\npassword_file = \"{}\"\nfrom = \"Latchkey <no-reply@id.example>\"\ninsecure_ca_file = \"{}\"\n",
            mail.port,
            pw.display(),
            dir.path().join("ca.pem").display()
        ),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let first = serve(&cfg, &db, port, &log);
    // The login page offers the reset now that [smtp] is configured.
    let b = common::Browser::new();
    assert_eq!(b.get(&format!("{base}/reset")).await.status, 200);
    drop(first);
    // While no server runs, the administrator invites: the job waits in the database.
    let out = latchkey(&cfg, &db, &["user", "invite", "dave@example.com"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = latchkey(&cfg, &db, &["outbox", "list", "--json"]);
    let jobs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(jobs[0]["kind"], "invitation", "{jobs}");
    assert_eq!(jobs[0]["to"], "dave@example.com");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(mail.count_to("dave@example.com"), 0);
    // The server starts again: its worker finds the job and sends it.
    let _second = serve(&cfg, &db, port, &log);
    let m = mail.nth_to("dave@example.com", 1).await;
    let link = link_in(&m, &format!("{base}/signup?invite="));
    let page = b.get(&link).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("dave@example.com"));
    let out = latchkey(&cfg, &db, &["outbox", "list", "--done", "--json"]);
    let done: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(done.as_array().unwrap().len(), 1, "{done}");
}

/// The bounds of the unauthenticated mail paths, with no mail server (jobs only queue): per
/// address and per network on reset requests, per network on sign-ups, and the global caps on
/// queued jobs and unverified accounts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_and_sign_up_requests_are_throttled_and_capped() {
    let server = TestServer::start_with(|c| {
        c.email.enabled = true;
        c.email.signup = SignupMode::Open;
    })
    .await;
    // Per address: three requests an hour, then back-off, the same for a known and an unknown
    // address (so the throttle reveals nothing either).
    for email in ["alice@example.com", "nobody@example.com"] {
        for i in 0..3 {
            assert_eq!(request_reset(&server, email).await.0, 200, "{email} request {i}");
        }
        let (status, body) = request_reset(&server, email).await;
        assert_eq!(status, 429, "{email}: {body}");
        assert!(body.contains("Too many requests. Try again in 300 seconds."), "{body}");
    }
    // Per network: ten requests, then back-off, whatever the addresses.
    for i in 0..4 {
        assert_eq!(request_reset(&server, &format!("other{i}@example.com")).await.0, 200);
    }
    assert_eq!(request_reset(&server, "one.more@example.com").await.0, 429, "the network's 11th request");
    // Sign-ups per network: five, then back-off.
    for i in 0..5 {
        let res = sign_up(&server, "", &format!("user{i}"), &format!("user{i}@example.com"), "a long password").await;
        assert_eq!(res.status, 200, "{}", res.body);
    }
    let res = sign_up(&server, "", "user5", "user5@example.com", "a long password").await;
    assert_eq!(res.status, 429, "{}", res.body);

    // The global caps: a full queue refuses new mail with 503; so does the cap on accounts that
    // wait for verification.
    let open = Rule { free: 10_000, base: 1, max: 1 };
    let capped = TestServer::start_with(|c| {
        c.email.enabled = true;
        c.email.signup = SignupMode::Open;
        c.email.reset_per_source = open;
        c.email.signup_per_source = open;
        c.email.max_queued = 3;
        c.email.max_unverified_signups = 2;
    })
    .await;
    for i in 0..2 {
        let res = sign_up(&capped, "", &format!("u{i}"), &format!("u{i}@example.com"), "a long password").await;
        assert_eq!(res.status, 200, "{}", res.body);
    }
    let res = sign_up(&capped, "", "u2", "u2@example.com", "a long password").await;
    assert_eq!(res.status, 503, "too many unverified accounts: {}", res.body);
    assert!(capped.store.user_by_username("u2").await.unwrap().is_none());
    assert_eq!(request_reset(&capped, "a@example.com").await.0, 200, "the third queued job");
    let (status, body) = request_reset(&capped, "b@example.com").await;
    assert_eq!(status, 503, "the queue is full: {body}");
    assert_eq!(capped.store.outbox_jobs(OutboxFilter::Queued, 10).await.unwrap().len(), 3);
}

/// Without mail, nothing that needs it is offered.
#[tokio::test]
async fn without_mail_there_is_no_reset_and_no_sign_up() {
    let server = TestServer::start().await;
    let login = server.browser().get(&server.authorize_url("spa", &latchkey_proto::CodeVerifier::generate(), "")).await;
    assert!(!login.body.contains("/reset") && !login.body.contains("/signup"), "{}", login.body);
    for path in ["/reset", "/reset/confirm?token=x", "/signup"] {
        assert_eq!(server.browser().get(&server.url(path)).await.status, 404, "{path}");
    }
    let r = server.provider.request_password_reset("alice@example.com", None, server.now()).await.unwrap();
    assert_eq!(r, latchkey_core::reset::ResetRequested::Disabled);
}
