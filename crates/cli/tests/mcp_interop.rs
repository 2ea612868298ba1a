//! Interop with the official MCP SDKs, unmodified and pinned (tests/mcp: the TypeScript
//! `@modelcontextprotocol/sdk` in package-lock.json, the Python `mcp` in requirements.lock): each
//! SDK's own OAuth client (discovery from the MCP server's 401, registration, PKCE, `resource`,
//! token requests, refresh, step-up) against the real `latchkey serve`, the person's login and
//! consent driven over HTTP on Latchkey's real pages (tests/mcp/ts_client.mjs, py_client.py).
//!
//! One environment serves every test, started by the first that needs it: `latchkey serve` with a
//! short access-token lifetime and the test-only CIMD trust settings, two registered resources, an
//! https server of client metadata documents under a CA made here, `latchkey gate` in front of an
//! MCP server built with the TS SDK (tests/mcp/upstream_server.mjs), and the `latchkey-resource`
//! example MCP server. Matrix: {TypeScript, Python} x {dcr, cimd, preregistered} behind the gate,
//! and each SDK once against the latchkey-resource server with the refresh after expiry, the
//! refusal of a token minted for another resource, and the step-up on 403 insufficient_scope.
//!
//! Outside CI, skipped with a message when node, the npm packages or the Python venv are missing;
//! in CI (`CI` set) they must be there (.ci/run installs them).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_latchkey");
const USER: &str = "mcp-user";
const PASSWORD: &str = "mcp-interop-password";
/// Short, so that the refresh tests wait for a real expiry (plus the resource server's leeway).
const ACCESS_TOKEN_LIFETIME: &str = "5";
const SCRIPT_TIME_LIMIT: Duration = Duration::from_secs(150);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn package() -> PathBuf {
    repo().join("tests/mcp")
}

fn python() -> PathBuf {
    package().join(".venv/bin/python")
}

/// Whether the SDKs are installed; outside CI, a message says what is missing.
fn can_run() -> bool {
    let node = Command::new("node").arg("--version").stdout(Stdio::null()).status().is_ok_and(|s| s.success());
    let missing = if !node {
        Some("node is not installed".to_owned())
    } else if !package().join("node_modules/@modelcontextprotocol/sdk").exists() {
        Some(format!("the TypeScript MCP SDK is not installed: (cd {} && npm ci)", package().display()))
    } else if !Command::new(python()).args(["-c", "import mcp"]).status().is_ok_and(|s| s.success()) {
        Some(format!(
            "the Python MCP SDK is not installed: python3 -m venv {0}/.venv && {0}/.venv/bin/pip install -r {0}/requirements.lock",
            package().display()
        ))
    } else {
        None
    };
    let Some(what) = missing else { return true };
    assert!(std::env::var_os("CI").is_none(), "CI must run the MCP interop tests, but {what}");
    eprintln!("SKIPPED: the MCP interop tests need node and both MCP SDKs; {what}");
    false
}

/// A port that was free a moment ago, for a server whose address goes into a registration (a
/// resource's URI) before it starts.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A background process that dies with this test binary, however it ends: `sh` runs it (with the
/// same standard input) and waits on its standard input, a pipe whose writing end only this process
/// holds; when the test binary exits, the pipe closes and `sh` kills the child. (A static environment is never dropped,
/// so `Drop` cannot do it.)
struct Watched {
    _sh: Child,
    log: PathBuf,
}

fn spawn_watched(program: &Path, args: &[&str], envs: &[(&str, &str)], log: &Path) -> Watched {
    let file = std::fs::File::create(log).unwrap();
    let sh = Command::new("sh")
        .arg("-c")
        .arg(r#"exec 3<&0; "$@" <&3 3<&- & child=$!; cat >/dev/null; kill "$child" 2>/dev/null; wait "$child""#)
        .arg("sh")
        .arg(program)
        .args(args)
        .envs(envs.iter().copied())
        .env_remove("LATCHKEY_CONFIG")
        .stdin(Stdio::piped())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    Watched { _sh: sh, log: log.to_owned() }
}

fn wait_for_port(port: u16, what: &Watched) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{} did not start: {}", what.log.display(), tail(&what.log));
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// `latchkey <args> --database <db>`, which must succeed.
fn latchkey(db: &Path, args: &[&str]) {
    let out = Command::new(BIN).args(args).arg("--database").arg(db).env_remove("LATCHKEY_CONFIG").output().unwrap();
    assert!(out.status.success(), "latchkey {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn add_user(db: &Path) {
    let mut child = Command::new(BIN)
        .args(["user", "add", USER, "--email", "mcp-user@example.com", "--password-stdin", "--database"])
        .arg(db)
        .env_remove("LATCHKEY_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(PASSWORD.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "latchkey user add: {}", String::from_utf8_lossy(&out.stderr));
}

/// The `latchkey-resource` example MCP server, built now (a stale binary from an earlier build
/// must not be tested). The per-package variables cargo set for this test are removed, as in
/// tests/browser.rs, so that no build script reruns.
fn mcp_server_example() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args([
            "build",
            "--locked",
            "-p",
            "latchkey-resource",
            "--example",
            "mcp_server",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(repo());
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let per_package = ["CARGO_MANIFEST_DIR", "CARGO_MANIFEST_PATH", "CARGO_CRATE_NAME", "CARGO_PRIMARY_PACKAGE"];
        if key.starts_with("CARGO_PKG_") || per_package.contains(&&*key) {
            build.env_remove(&*key);
        }
    }
    let out = build.output().unwrap();
    assert!(out.status.success(), "building the mcp_server example: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|m| m["executable"].as_str().map(PathBuf::from))
        .next_back()
        .expect("cargo named no executable for the mcp_server example")
}

/// A test CA, and a certificate it signed for `localhost` and 127.0.0.1 (the CIMD host).
struct TestPki {
    ca_pem: String,
    leaf_der: Vec<u8>,
    leaf_key_der: Vec<u8>,
}

fn test_pki() -> TestPki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name.push(DnType::CommonName, "Latchkey MCP interop test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    TestPki { ca_pem: ca_cert.pem(), leaf_der: leaf_cert.der().to_vec(), leaf_key_der: leaf_key.serialize_der() }
}

/// Serves `documents` (path -> JSON) over https on `port`, HTTP/1.1, one request per connection;
/// counts the requests for each path.
fn serve_documents(
    rt: &tokio::runtime::Runtime,
    port: u16,
    pki: &TestPki,
    documents: Vec<(String, Value)>,
) -> Arc<Mutex<Vec<String>>> {
    use tokio_rustls::rustls;
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(pki.leaf_key_der.clone().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![pki.leaf_der.clone().into()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let fetched = Arc::new(Mutex::new(Vec::new()));
    let seen = fetched.clone();
    // `localhost` may resolve to either loopback address: listen on both (::1 where there is IPv6).
    let mut listeners = vec![rt.block_on(tokio::net::TcpListener::bind(("127.0.0.1", port))).unwrap()];
    listeners.extend(rt.block_on(tokio::net::TcpListener::bind(("::1", port))).ok());
    for listener in listeners {
        let (acceptor, documents, seen) = (acceptor.clone(), documents.clone(), seen.clone());
        rt.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, documents, seen) = (acceptor.clone(), documents.clone(), seen.clone());
                tokio::spawn(answer(acceptor, tcp, documents, seen));
            }
        });
    }
    fetched
}

/// One request of the document server: the document at the request's path, or 404.
async fn answer(
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: tokio::net::TcpStream,
    documents: Vec<(String, Value)>,
    seen: Arc<Mutex<Vec<String>>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match tls.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
    seen.lock().unwrap().push(path.clone());
    let response = match documents.iter().find(|(p, _)| *p == path) {
        Some((_, doc)) => {
            let body = doc.to_string();
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\ncache-control: max-age=300\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
        }
        None => "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned(),
    };
    let _ = tls.write_all(response.as_bytes()).await;
    let _ = tls.shutdown().await;
}

/// Everything the tests talk to, started once.
struct Env {
    issuer: String,
    /// The MCP endpoint behind `latchkey gate`: resource A.
    gate: String,
    /// The latchkey-resource example's MCP endpoint: resource B.
    rust: String,
    /// Base of the https server of client metadata documents.
    cimd: String,
    logs: Vec<PathBuf>,
    _children: Vec<Watched>,
    _cimd_fetches: Arc<Mutex<Vec<String>>>,
    _rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

/// Each script run's client: its name, loopback redirect URI and (for CIMD) document path.
const RUNS: &[(&str, &str)] = &[
    ("ts-dcr", "http://127.0.0.1:41001/callback"),
    ("ts-cimd", "http://127.0.0.1:41002/callback"),
    ("ts-preregistered", "http://127.0.0.1:41003/callback"),
    ("py-dcr", "http://localhost:41004/callback"),
    ("py-cimd", "http://127.0.0.1:41005/callback"),
    ("py-preregistered", "http://127.0.0.1:41006/callback"),
    ("ts-resource", "http://127.0.0.1:41007/callback"),
    ("py-resource", "http://localhost:41008/callback"),
];

fn redirect_of(run: &str) -> &'static str {
    RUNS.iter().find(|(r, _)| *r == run).map(|(_, u)| *u).unwrap()
}

fn start_env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("latchkey.db");
    let (port, upstream_port, gate_port, rust_port, cimd_port) =
        (free_port(), free_port(), free_port(), free_port(), free_port());
    let issuer = format!("http://127.0.0.1:{port}");
    let gate = format!("http://127.0.0.1:{gate_port}/mcp");
    let rust = format!("http://127.0.0.1:{rust_port}/mcp");
    let cimd = format!("https://localhost:{cimd_port}");

    // The two protected resources, and a pre-registered (administrator-vetted) client per SDK.
    for resource in [&gate, &rust] {
        latchkey(&db, &["resource", "add", resource, "--scope", "mcp:tools", "--scope", "mcp:admin"]);
    }
    for (id, name) in [("ts-preregistered", "TS SDK interop"), ("py-preregistered", "Python SDK interop")] {
        // Registered without a port: any port of the loopback address is accepted (RFC 8252 §7.3).
        let client = ["client", "add", "--public", "--client-id", id, "--name", name];
        let rest = ["--redirect-uri", "http://127.0.0.1/callback", "--scope", "mcp:tools", "--scope", "mcp:admin"];
        latchkey(&db, &[&client[..], &rest[..]].concat());
    }
    add_user(&db);

    let pki = test_pki();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    // The documents list the loopback redirect URI without a port, as Claude Code's does; the
    // SDKs then send it with one.
    let documents = ["ts-cimd", "py-cimd"]
        .iter()
        .map(|run| {
            let path = format!("/clients/{run}.json");
            let doc = json!({
                "client_id": format!("{cimd}{path}"),
                "client_name": format!("{run} interop client"),
                "redirect_uris": ["http://127.0.0.1/callback"],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "none",
            });
            (path, doc)
        })
        .collect();
    let cimd_fetches = serve_documents(&rt, cimd_port, &pki, documents);

    let log = |name: &str| dir.path().join(format!("{name}.log"));
    let listen = format!("127.0.0.1:{port}");
    let server = spawn_watched(
        Path::new(BIN),
        &[
            "serve",
            "--listen",
            &listen,
            "--database",
            db.to_str().unwrap(),
            "--insecure-cimd-loopback",
            "--insecure-cimd-ca",
            ca.to_str().unwrap(),
        ],
        &[("LATCHKEY_ACCESS_TOKEN_LIFETIME", ACCESS_TOKEN_LIFETIME)],
        &log("latchkey"),
    );
    wait_for_port(port, &server);

    let upstream = spawn_watched(
        Path::new("node"),
        &[package().join("upstream_server.mjs").to_str().unwrap(), "--listen", &format!("127.0.0.1:{upstream_port}")],
        &[],
        &log("upstream"),
    );
    let gate_proc = spawn_watched(
        Path::new(BIN),
        &[
            "gate",
            "--listen",
            &format!("127.0.0.1:{gate_port}"),
            "--upstream",
            &format!("http://127.0.0.1:{upstream_port}"),
            "--issuer",
            &issuer,
            "--resource",
            &gate,
            "--require-scope",
            "mcp:tools",
        ],
        &[],
        &log("gate"),
    );
    let example = mcp_server_example();
    let rust_proc = spawn_watched(
        &example,
        &["--listen", &format!("127.0.0.1:{rust_port}"), "--issuer", &issuer, "--resource", &rust],
        &[],
        &log("mcp_server"),
    );
    for (p, w) in [(upstream_port, &upstream), (gate_port, &gate_proc), (rust_port, &rust_proc)] {
        wait_for_port(p, w);
    }
    let logs = vec![server.log.clone(), gate_proc.log.clone(), rust_proc.log.clone(), upstream.log.clone()];
    Env {
        issuer,
        gate,
        rust,
        cimd,
        logs,
        _children: vec![server, upstream, gate_proc, rust_proc],
        _cimd_fetches: cimd_fetches,
        _rt: rt,
        _dir: dir,
    }
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(start_env)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Sdk {
    TypeScript,
    Python,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Dcr,
    Cimd,
    Preregistered,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Dcr => "dcr",
            Mode::Cimd => "cimd",
            Mode::Preregistered => "preregistered",
        }
    }
}

/// Runs one client script; returns its JSON result (which must say `ok`).
fn run(sdk: Sdk, mode: Mode, run: &str, server: &str, extra: &[&str]) -> Value {
    let e = env();
    let client_id = match mode {
        Mode::Dcr => None,
        Mode::Cimd => Some(format!("{}/clients/{run}.json", e.cimd)),
        Mode::Preregistered => Some(run.to_owned()),
    };
    let mut args: Vec<String> = vec![
        "--server".into(),
        server.into(),
        "--mode".into(),
        mode.as_str().into(),
        "--redirect".into(),
        redirect_of(run).into(),
        "--user".into(),
        USER.into(),
        "--password".into(),
        PASSWORD.into(),
    ];
    if let Some(id) = client_id {
        args.extend(["--client-id".into(), id]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let (program, script) = match sdk {
        Sdk::TypeScript => (PathBuf::from("node"), "ts_client.mjs"),
        Sdk::Python => (python(), "py_client.py"),
    };
    let started = Instant::now();
    let mut child = Command::new(program)
        .arg(script)
        .args(&args)
        .current_dir(package())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut stdout, mut stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out = std::thread::spawn(move || std::io::read_to_string(&mut stdout).unwrap_or_default());
    let err = std::thread::spawn(move || std::io::read_to_string(&mut stderr).unwrap_or_default());
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > SCRIPT_TIME_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{script} ({run}) took longer than {SCRIPT_TIME_LIMIT:?}: {}", err.join().unwrap());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    eprintln!("{script} {run}: {:.1} s", started.elapsed().as_secs_f64());
    let line = out.lines().rev().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("{script}: no result: {err}"));
    let result: Value = serde_json::from_str(line).unwrap();
    if result["ok"] != true {
        let logs: String = e.logs.iter().map(|l| format!("\n--- {}\n{}", l.display(), tail(l))).collect();
        panic!("{script} {run} failed: {}\n{}\nstderr: {err}{logs}", result["error"], pretty(&result));
    }
    result
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap()
}

fn scopes(s: &Value) -> Vec<String> {
    s.as_str().unwrap_or_default().split_whitespace().map(str::to_owned).collect()
}

/// What every run proves: the SDK found the authorization server from the MCP server's 401
/// (RFC 9728), authorized with PKCE S256 and `resource` = this MCP server (RFC 8707) on both the
/// authorization and the token request, the redirect carried `iss` (RFC 9207), the consent page
/// said what it must, the tool call went through, and the token was refused by the other resource.
fn assert_common(r: &Value, mode: Mode, resource: &str, other: &str) {
    let e = env();
    let ctx = pretty(r);
    let challenge = r["resource_metadata_challenge"]["www_authenticate"].as_str().unwrap_or_default();
    assert!(challenge.contains("resource_metadata=\""), "401 challenge without resource_metadata: {ctx}");
    let first = &r["authorizations"][0];
    assert_eq!(first["code_challenge_method"], "S256", "{ctx}");
    assert_eq!(first["resource"], resource, "the SDK sends the MCP server as `resource`: {ctx}");
    assert!(scopes(&first["scope"]).contains(&"mcp:tools".to_owned()), "{ctx}");
    assert_eq!(first["iss"], e.issuer.as_str(), "RFC 9207 iss on the authorization response: {ctx}");
    assert_eq!(first["login_page"], true, "the real login page was shown: {ctx}");
    let consent = &first["consent"];
    match mode {
        Mode::Dcr | Mode::Cimd => {
            assert_eq!(consent["unverified"], true, "a self-registered / CIMD client is marked unverified: {ctx}");
            assert_eq!(consent["shows_redirect_host"], true, "the consent page shows the redirect host: {ctx}");
        }
        Mode::Preregistered => {
            assert_eq!(consent["unverified"], false, "an administrator's client is not marked unverified: {ctx}");
        }
    }
    let client_id = r["client_id"].as_str().expect("a client_id");
    assert_eq!(first["client_id"], client_id, "{ctx}");
    match mode {
        Mode::Dcr => {
            let status = r["registered"]["status"].as_u64();
            assert!(matches!(status, Some(200 | 201)), "registered through /register: {ctx}");
        }
        Mode::Cimd => {
            assert!(client_id.starts_with(&format!("{}/clients/", e.cimd)), "the document URL is the client_id: {ctx}");
            assert!(r["registered"].is_null(), "no registration with a metadata document: {ctx}");
        }
        Mode::Preregistered => assert!(r["registered"].is_null(), "no registration when pre-registered: {ctx}"),
    }
    let code = r["token_requests"].as_array().unwrap().iter().find(|t| t["grant_type"] == "authorization_code");
    let code = code.unwrap_or_else(|| panic!("no code exchange: {ctx}"));
    assert_eq!(code["status"], 200, "{ctx}");
    assert_eq!(code["resource"], resource, "`resource` on the token request: {ctx}");
    assert_eq!(r["tool"]["is_error"], false, "{ctx}");
    // Resource A's token at resource B: refused (audience binding, no token passthrough).
    assert_eq!(r["other_server"]["status"], 401, "a token for {resource} must be refused by {other}: {ctx}");
    let refusal = r["other_server"]["www_authenticate"].as_str().unwrap_or_default();
    assert!(refusal.contains("invalid_token"), "{ctx}");
}

/// Behind the gate, the upstream learns who called (and never sees the token).
fn assert_gate_identity(r: &Value) {
    let ctx = pretty(r);
    let who = &r["tool"]["value"];
    assert_eq!(who["client_id"], r["client_id"], "the gate names the client to the upstream: {ctx}");
    assert!(who["sub"].as_str().is_some_and(|s| !s.is_empty()), "{ctx}");
    assert!(scopes(&who["scope"]).contains(&"mcp:tools".to_owned()), "{ctx}");
    assert_eq!(who["saw_authorization"], false, "the gate does not pass the token on: {ctx}");
}

fn behind_the_gate(sdk: Sdk, mode: Mode, run_name: &str) {
    if !can_run() {
        return;
    }
    let e = env();
    let r = run(sdk, mode, run_name, &e.gate, &["--other-server", &e.rust]);
    assert_common(&r, mode, &e.gate, &e.rust);
    assert_gate_identity(&r);
}

/// Against the latchkey-resource example: also the refresh after the access token expired (the
/// server refused it first), with a rotated refresh token (public client), and the step-up: the
/// admin tool's 403 insufficient_scope names every scope it needs, a new authorization asks for
/// them, and the call then succeeds.
fn on_latchkey_resource(sdk: Sdk, run_name: &str) {
    if !can_run() {
        return;
    }
    let e = env();
    let r = run(
        sdk,
        Mode::Dcr,
        run_name,
        &e.rust,
        &["--other-server", &e.gate, "--refresh", "--step-up-tool", "admin_reset"],
    );
    let ctx = pretty(&r);
    assert_common(&r, Mode::Dcr, &e.rust, &e.gate);

    let refresh = &r["refresh"];
    assert_eq!(refresh["expired"]["status"], 401, "{ctx}");
    let grants = refresh["grants"].as_array().unwrap();
    assert!(
        grants
            .iter()
            .any(|g| g["grant_type"] == "refresh_token" && g["status"] == 200 && g["resource"] == e.rust.as_str()),
        "the SDK refreshed, with `resource`: {ctx}"
    );
    assert!(
        grants.iter().all(|g| g["grant_type"] != "authorization_code"),
        "no new authorization for a refresh: {ctx}"
    );
    assert_eq!(refresh["is_error"], false, "{ctx}");
    assert_eq!(refresh["new_access_token"], true, "{ctx}");
    assert_eq!(refresh["rotated_refresh_token"], true, "public clients' refresh tokens rotate: {ctx}");

    let up = &r["step_up"];
    let challenge = up["first_try"]["challenge"]["www_authenticate"].as_str().unwrap_or_default();
    assert_eq!(up["first_try"]["challenge"]["status"], 403, "{ctx}");
    assert!(challenge.contains("insufficient_scope"), "{ctx}");
    let needed = challenge.split("scope=\"").nth(1).and_then(|s| s.split('"').next()).unwrap_or_default();
    assert!(needed.contains("mcp:admin") && needed.contains("mcp:tools"), "every scope the tool needs: {ctx}");
    let again = &up["authorization"];
    assert!(scopes(&again["scope"]).contains(&"mcp:admin".to_owned()), "re-authorized with the larger scope: {ctx}");
    assert_eq!(again["resource"], e.rust.as_str(), "{ctx}");
    assert!(scopes(&up["granted_scope"]).contains(&"mcp:admin".to_owned()), "{ctx}");
    match sdk {
        // The Python SDK re-authorizes by itself.
        Sdk::Python => {
            assert_eq!(up["sdk_reauthorized"], true, "{ctx}");
            assert_eq!(up["first_try"]["is_error"], false, "{ctx}");
        }
        // TS SDK 1.32 refreshes instead, which cannot widen the scope (typescript-sdk#2255); the
        // host then authorizes with the challenged scope through the SDK's auth().
        Sdk::TypeScript => {
            let done = if up["second_try"].is_null() { &up["first_try"] } else { &up["second_try"] };
            assert_eq!(done["is_error"], false, "{ctx}");
        }
    }
}

#[test]
fn typescript_sdk_registers_itself_and_calls_a_tool_behind_the_gate() {
    behind_the_gate(Sdk::TypeScript, Mode::Dcr, "ts-dcr");
}

#[test]
fn typescript_sdk_with_a_client_id_metadata_document_calls_a_tool_behind_the_gate() {
    behind_the_gate(Sdk::TypeScript, Mode::Cimd, "ts-cimd");
}

#[test]
fn typescript_sdk_preregistered_calls_a_tool_behind_the_gate() {
    behind_the_gate(Sdk::TypeScript, Mode::Preregistered, "ts-preregistered");
}

#[test]
fn python_sdk_registers_itself_and_calls_a_tool_behind_the_gate() {
    behind_the_gate(Sdk::Python, Mode::Dcr, "py-dcr");
}

#[test]
fn python_sdk_with_a_client_id_metadata_document_calls_a_tool_behind_the_gate() {
    behind_the_gate(Sdk::Python, Mode::Cimd, "py-cimd");
}

#[test]
fn python_sdk_preregistered_calls_a_tool_behind_the_gate() {
    behind_the_gate(Sdk::Python, Mode::Preregistered, "py-preregistered");
}

#[test]
fn typescript_sdk_on_latchkey_resource_refreshes_after_expiry_is_refused_elsewhere_and_steps_up_its_scope() {
    on_latchkey_resource(Sdk::TypeScript, "ts-resource");
}

#[test]
fn python_sdk_on_latchkey_resource_refreshes_after_expiry_is_refused_elsewhere_and_steps_up_its_scope() {
    on_latchkey_resource(Sdk::Python, "py-resource");
}
