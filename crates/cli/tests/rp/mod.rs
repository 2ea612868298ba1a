//! Helpers for the relying-party tests: a browser that signs in through any provider's HTML
//! forms, the `latchkey` binary with its own token cache, and the node-oidc-provider peer.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use reqwest::redirect::Policy;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

pub const BIN: &str = env!("CARGO_BIN_EXE_latchkey");

/// A form: where it posts and the fields a browser would send.
#[derive(Debug)]
pub struct Form {
    pub action: String,
    pub fields: Vec<(String, String)>,
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let start = tag.find(&key)? + key.len();
    let end = tag[start..].find('"')? + start;
    Some(html_escape::decode_html_entities(&tag[start..end]).into_owned())
}

/// The first form of a page, filled in as a person would: hidden fields kept, the user name in
/// `username` or `login`, the password in `password`, and the `allow` button when there is one.
pub fn fill_form(html: &str, user: &str, password: &str, decision: &str) -> Option<Form> {
    let start = html.find("<form")?;
    let end = html[start..].find("</form>")? + start;
    let form = &html[start..end];
    let head = &form[..form.find('>')?];
    let action = attr(head, "action").unwrap_or_default();
    let mut fields = Vec::new();
    for piece in form.split('<').skip(1) {
        let tag = &piece[..piece.find('>').unwrap_or(piece.len())];
        if tag.starts_with("input") {
            let Some(name) = attr(tag, "name") else { continue };
            let value = match name.as_str() {
                "username" | "login" => user.to_owned(),
                "password" => password.to_owned(),
                _ => attr(tag, "value").unwrap_or_default(),
            };
            fields.push((name, value));
        } else if tag.starts_with("button")
            && let (Some(name), Some(value)) = (attr(tag, "name"), attr(tag, "value"))
            && value == decision
        {
            fields.push((name, value));
        }
    }
    Some(Form { action, fields })
}

/// Opens `start` and follows the provider's redirects and forms until it redirects to a URL that
/// starts with `redirect_prefix`, which it returns without requesting it.
pub async fn sign_in(start: &str, user: &str, password: &str, decision: &str, redirect_prefix: &str) -> String {
    let http = reqwest::Client::builder().cookie_store(true).redirect(Policy::none()).build().unwrap();
    let mut url = url::Url::parse(start).unwrap();
    let mut res = http.get(url.clone()).send().await.unwrap();
    for _ in 0..20 {
        let status = res.status();
        if status.is_redirection() {
            let loc = res.headers()["location"].to_str().unwrap().to_owned();
            let next = url.join(&loc).unwrap();
            if next.as_str().starts_with(redirect_prefix) {
                return next.to_string();
            }
            url = next;
            res = http.get(url.clone()).send().await.unwrap();
            continue;
        }
        let body = res.text().await.unwrap();
        assert!(status.is_success(), "{status} at {url}: {body}");
        let form = fill_form(&body, user, password, decision).unwrap_or_else(|| panic!("no form at {url}: {body}"));
        url = url.join(&form.action).unwrap();
        res = http.post(url.clone()).form(&form.fields).send().await.unwrap();
    }
    panic!("no redirect to {redirect_prefix} after 20 steps");
}

/// Answers a device's request (RFC 8628 §3.3) on Latchkey's verification page as a person
/// would: opens `start` (`/device`, or `verification_uri_complete`), signs in, types `user_code`
/// when the page asks for it, and presses `decision` (`approve` or `deny`) on the consent page.
/// Returns the page the answer led to.
pub async fn answer_device(start: &str, user_code: &str, user: &str, password: &str, decision: &str) -> String {
    let http = reqwest::Client::builder().cookie_store(true).redirect(Policy::none()).build().unwrap();
    let mut url = url::Url::parse(start).unwrap();
    let mut res = http.get(url.clone()).send().await.unwrap();
    let mut answered = false;
    for _ in 0..10 {
        if res.status().is_redirection() {
            url = url.join(res.headers()["location"].to_str().unwrap()).unwrap();
            res = http.get(url.clone()).send().await.unwrap();
            continue;
        }
        let status = res.status();
        let body = res.text().await.unwrap();
        assert!(status.is_success(), "{status} at {url}: {body}");
        if answered {
            return body;
        }
        let mut form = fill_form(&body, user, password, decision).unwrap_or_else(|| panic!("no form at {url}: {body}"));
        for (name, value) in &mut form.fields {
            if name == "user_code" && value.is_empty() {
                *value = user_code.to_owned();
            }
        }
        answered = form.fields.iter().any(|(name, _)| name == "decision");
        url = url.join(&form.action).unwrap();
        res = http.post(url.clone()).form(&form.fields).send().await.unwrap();
    }
    panic!("the device page did not take the answer within 10 steps");
}

/// Answers a device's request (RFC 8628 §3.3) on node-oidc-provider's own pages
/// (`features.deviceFlow`): the code page (a form its script submits, submitted here), the
/// confirmation page, then, to approve, its development sign-in and consent; to deny, the
/// confirmation's Abort button, which sits outside the form and is added to it here as a
/// browser would. Returns the last page.
pub async fn answer_node_device(complete: &str, user: &str, decision: &str) -> String {
    let http = reqwest::Client::builder().cookie_store(true).redirect(Policy::none()).build().unwrap();
    let mut url = url::Url::parse(complete).unwrap();
    let mut res = http.get(url.clone()).send().await.unwrap();
    for _ in 0..20 {
        if res.status().is_redirection() {
            url = url.join(res.headers()["location"].to_str().unwrap()).unwrap();
            res = http.get(url.clone()).send().await.unwrap();
            continue;
        }
        let status = res.status();
        let body = res.text().await.unwrap();
        assert!(status.is_success(), "{status} at {url}: {body}");
        if body.contains("Sign-in Success") || body.contains("The Sign-in request was interrupted") {
            return body;
        }
        let mut form =
            fill_form(&body, user, "any password", "allow").unwrap_or_else(|| panic!("no form at {url}: {body}"));
        if decision == "deny" && form.fields.iter().any(|(name, _)| name == "confirm") {
            form.fields.retain(|(name, _)| name != "confirm");
            form.fields.push(("abort".into(), "yes".into()));
        }
        url = url.join(&form.action).unwrap();
        res = http.post(url.clone()).form(&form.fields).send().await.unwrap();
    }
    panic!("node-oidc-provider's device pages did not finish within 20 steps");
}

/// The `latchkey` binary with a private XDG cache directory.
pub struct Cli {
    pub cache_home: tempfile::TempDir,
}

pub struct Out {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Cli {
    pub fn new() -> Self {
        Self { cache_home: tempfile::tempdir().unwrap() }
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.cache_home.path().join("latchkey")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env("XDG_CACHE_HOME", self.cache_home.path())
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, _) in std::env::vars() {
            if k.starts_with("LATCHKEY_") {
                cmd.env_remove(k);
            }
        }
        cmd
    }

    pub async fn run(&self, args: &[&str]) -> Out {
        self.run_with_stdin(args, "").await
    }

    pub async fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Out {
        let mut child = self.command(args).spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.as_bytes()).await.unwrap();
        drop(input);
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await.unwrap().unwrap();
        Out {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Starts a long-running command and returns it with the first line it printed on stdout.
    pub async fn spawn(&self, args: &[&str]) -> (Child, String) {
        let mut child = self.command(args).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("no output within 30 s")
            .unwrap()
            .unwrap_or_default();
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        (child, first)
    }

    /// `latchkey login --no-browser …`, with the browser step done by [`sign_in`].
    pub async fn login(&self, issuer: &str, client_id: &str, extra: &[&str], user: &str, password: &str) -> Out {
        let mut args = vec!["login", "--no-browser", "--issuer", issuer, "--client-id", client_id, "--timeout", "30"];
        args.extend_from_slice(extra);
        let (child, url) = self.spawn(&args).await;
        assert!(url.starts_with(issuer), "the authorization URL comes first on stdout: {url:?}");
        // A pushed request (RFC 9126) has no redirect_uri in the URL: then the caller named it,
        // port included, with --redirect-uri.
        let given = extra.iter().position(|a| *a == "--redirect-uri").map(|i| extra[i + 1].to_owned());
        let redirect_uri = url::Url::parse(&url)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "redirect_uri")
            .map(|(_, v)| v.into_owned())
            .or(given)
            .expect("the URL names the redirect URI, or --redirect-uri does");
        let redirect = sign_in(&url, user, password, "allow", &redirect_uri).await;
        // The browser follows the redirect to the CLI's loopback listener.
        let page = reqwest::get(&redirect).await.unwrap();
        let status = page.status().as_u16();
        let body = page.text().await.unwrap();
        let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output()).await.unwrap().unwrap();
        let out = Out {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        if out.ok {
            assert_eq!(status, 200, "{body}");
            assert!(body.contains("You can close this tab"), "{body}");
        }
        out
    }
}

/// The node-oidc-provider peer (tests/peers/node-oidc), or `None` with a printed reason when it
/// cannot run here. In CI (`CI` set) a missing peer fails the test instead.
pub struct NodePeer {
    pub issuer: String,
    _child: Child,
}

pub fn peer_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers/node-oidc")
}

/// A loopback redirect URI with a port that was free a moment ago: for pushed requests, whose
/// URL does not show the redirect URI the test must wait for.
pub fn free_redirect_uri() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    format!("http://127.0.0.1:{port}/callback")
}

impl NodePeer {
    pub async fn start() -> Option<Self> {
        Self::start_with(&[]).await
    }

    /// The peer with environment settings (server.js: `PEER_PROFILE`, `PEER_CLIENT_JWKS`).
    pub async fn start_with(env: &[(&str, &str)]) -> Option<Self> {
        let dir = peer_dir();
        let node_ok = std::process::Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
        let why = if !node_ok {
            Some("node is not installed".to_owned())
        } else if !dir.join("node_modules/oidc-provider").exists() {
            Some(format!("its dependencies are not installed: run `npm ci` in {}", dir.display()))
        } else {
            None
        };
        if let Some(why) = why {
            if std::env::var_os("CI").is_some() {
                panic!("the node-oidc-provider peer must run in CI, but {why}");
            }
            eprintln!(
                "SKIPPED: the test against node-oidc-provider needs node 20+ and `npm ci` in tests/peers/node-oidc: {why}"
            );
            return None;
        }
        let mut child = Command::new("node")
            .arg("server.js")
            .envs(env.iter().copied())
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("node-oidc-provider did not start within 30 s")
            .unwrap()
            .unwrap_or_default();
        let issuer =
            line.strip_prefix("ISSUER ").unwrap_or_else(|| panic!("unexpected peer output {line:?}")).to_owned();
        // Keep reading: the peer logs notices on stdout and would die of EPIPE otherwise.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Some(Self { issuer, _child: child })
    }
}
