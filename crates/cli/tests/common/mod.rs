//! Test harness: a real server on an ephemeral 127.0.0.1 port, a clock the tests can move, and a
//! cookie-keeping HTTP client that plays the browser.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(dead_code)]

pub mod client_key;
pub mod doc_server;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latchkey_core::admin::{NewClient, NewUser};
use latchkey_core::{Clock, Provider, ProviderConfig, Store};
use latchkey_proto::{CodeVerifier, Password};
use latchkey_server::AppState;
use latchkey_store::SqliteStore;
use reqwest::redirect::Policy;

pub const REDIRECT: &str = "http://127.0.0.1:8765/callback";
pub const PASSWORD: &str = "correct horse battery";

pub struct TestServer {
    pub base: String,
    pub store: Arc<dyn Store>,
    pub provider: Arc<Provider>,
    /// Seconds added to the (frozen) start time: lets a test make codes and tokens expire.
    pub skew: Arc<AtomicI64>,
    start: i64,
    /// The test CA's certificate when the server is behind TLS.
    pub root: Option<reqwest::Certificate>,
    /// An HTTP client that trusts `root`.
    pub http: reqwest::Client,
    _dir: Option<tempfile::TempDir>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A server whose configuration `tweak` adjusts first.
    pub async fn start_with(tweak: impl FnOnce(&mut ProviderConfig)) -> Self {
        Self::start_inner(tweak, false).await
    }

    /// A server with an https issuer: a TLS-terminating proxy on 127.0.0.1 with a certificate for
    /// 127.0.0.1 that only this test trusts, in front of the plain server.
    pub async fn start_tls() -> Self {
        Self::start_inner(|_| {}, true).await
    }

    /// A server whose configuration `tweak` adjusts first, and whose provider `hook` finishes
    /// (to install a fetcher, say).
    pub async fn start_hooked(
        tweak: impl FnOnce(&mut ProviderConfig),
        hook: impl FnOnce(Provider) -> Provider,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("test.db")).unwrap());
        let mut server = Self::start_on_inner(store, tweak, hook, false).await;
        server._dir = Some(dir);
        server
    }

    async fn start_inner(tweak: impl FnOnce(&mut ProviderConfig), tls: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("test.db")).unwrap());
        let mut server = Self::start_on_inner(store, tweak, |p| p, tls).await;
        server._dir = Some(dir);
        server
    }

    /// A server on `store` (any backend) whose configuration `tweak` adjusts first.
    pub async fn start_on(store: Arc<dyn Store>, tweak: impl FnOnce(&mut ProviderConfig)) -> Self {
        Self::start_on_inner(store, tweak, |p| p, false).await
    }

    async fn start_on_inner(
        store: Arc<dyn Store>,
        tweak: impl FnOnce(&mut ProviderConfig),
        hook: impl FnOnce(Provider) -> Provider,
        tls: bool,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (base, root) = if tls {
            let (addr, root) = tls_proxy(listener.local_addr().unwrap()).await;
            (format!("https://{addr}"), Some(root))
        } else {
            (format!("http://{}", listener.local_addr().unwrap()), None)
        };
        let mut http = reqwest::Client::builder();
        if let Some(r) = &root {
            http = http.add_root_certificate(r.clone());
        }
        let http = http.build().unwrap();
        let skew = Arc::new(AtomicI64::new(0));
        // Frozen at the start: time moves only when a test advances it, so timing is deterministic.
        let start = Clock::system().now();
        let s2 = skew.clone();
        let clock = Clock::from_fn(move || start + s2.load(Ordering::SeqCst));
        let mut config = ProviderConfig::new(&base);
        tweak(&mut config);
        let provider = Arc::new(hook(Provider::open(store.clone(), config, clock.now()).await.unwrap()));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let state = AppState::new(provider.clone(), clock);
        tokio::spawn(async move {
            latchkey_server::serve(listener, state, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        let server = Self { base, store, provider, skew, start, root, http, _dir: None, _shutdown: tx };
        server.add_client("spa", false, false).await;
        server.add_user("alice").await;
        server
    }

    /// The SQLite file of a server started with its own database.
    pub fn db_path(&self) -> Option<std::path::PathBuf> {
        self._dir.as_ref().map(|d| d.path().join("test.db"))
    }

    /// The server's "now".
    pub fn now(&self) -> i64 {
        self.start + self.skew.load(Ordering::SeqCst)
    }

    pub fn advance(&self, secs: i64) {
        self.skew.fetch_add(secs, Ordering::SeqCst);
    }

    /// Registers a client; returns its secret if confidential.
    pub async fn add_client(&self, id: &str, confidential: bool, first_party: bool) -> Option<String> {
        let (_, secret) = latchkey_core::admin::add_client(
            self.store.as_ref(),
            NewClient {
                confidential,
                first_party,
                extra_scopes: vec!["api:read".into()],
                post_logout_redirect_uris: vec!["http://127.0.0.1:8765/bye".into()],
                ..NewClient::public(id, &format!("App {id}"), vec![REDIRECT.into(), "http://127.0.0.1/loopback".into()])
            },
            0,
        )
        .await
        .unwrap();
        secret.map(|s| s.expose_secret().to_owned())
    }

    pub async fn add_user(&self, name: &str) {
        latchkey_core::admin::add_user(
            self.store.as_ref(),
            &self.provider.hasher,
            NewUser {
                username: name.into(),
                email: format!("{name}@example.com"),
                name: Some(format!("{name} Example")),
                phone_number: Some("+1 555 0100".into()),
                address: None,
            },
            Password::new(PASSWORD),
            0,
        )
        .await
        .unwrap();
    }

    /// Registers a client from a full `NewClient`; returns its secret if confidential.
    pub async fn add(&self, new: NewClient) -> Option<String> {
        let (_, secret) = latchkey_core::admin::add_client(self.store.as_ref(), new, 0).await.unwrap();
        secret.map(|s| s.expose_secret().to_owned())
    }

    /// POST a form to `path`, optionally with HTTP Basic client credentials.
    pub async fn post_form(
        &self,
        path: &str,
        basic: Option<(&str, &str)>,
        form: &[(&str, &str)],
    ) -> (u16, serde_json::Value) {
        let mut req = self.http.clone().post(self.url(path)).form(form);
        if let Some((id, secret)) = basic {
            req = req.basic_auth(id, Some(secret));
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
    }

    /// Tokens for alice and `client_id` through the whole browser flow.
    pub async fn tokens_for(&self, client_id: &str) -> (Browser, serde_json::Value) {
        let v = CodeVerifier::generate();
        let (b, code) = self.code_for(client_id, &v).await;
        let (status, body) = self.exchange(client_id, &code, &v).await;
        assert_eq!(status, 200, "{body}");
        (b, body)
    }

    /// A fresh user agent that trusts this server.
    pub fn browser(&self) -> Browser {
        Browser::with_root(self.root.clone())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn authorize_url(&self, client_id: &str, verifier: &CodeVerifier, extra: &str) -> String {
        let mut u = url::Url::parse(&self.url("/authorize")).unwrap();
        u.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", REDIRECT)
            .append_pair("scope", "openid profile email")
            .append_pair("code_challenge", verifier.challenge().as_str())
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", "st-1 /?&=");
        let mut s: String = u.into();
        s.push_str(extra);
        s
    }

    /// POST /token with a form body.
    pub async fn token(&self, form: &[(&str, &str)]) -> (u16, serde_json::Value, reqwest::header::HeaderMap) {
        let res = self.http.clone().post(self.url("/token")).form(form).send().await.unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = res.json().await.unwrap_or(serde_json::Value::Null);
        (status, body, headers)
    }

    pub async fn exchange(&self, client_id: &str, code: &str, verifier: &CodeVerifier) -> (u16, serde_json::Value) {
        let (s, b, _) = self
            .token(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", REDIRECT),
                ("client_id", client_id),
                ("code_verifier", verifier.expose_secret()),
            ])
            .await;
        (s, b)
    }

    pub async fn refresh(&self, client_id: &str, refresh_token: &str, scope: Option<&str>) -> (u16, serde_json::Value) {
        let mut form =
            vec![("grant_type", "refresh_token"), ("refresh_token", refresh_token), ("client_id", client_id)];
        if let Some(s) = scope {
            form.push(("scope", s));
        }
        let (s, b, _) = self.token(&form).await;
        (s, b)
    }

    pub async fn userinfo(&self, access_token: &str) -> reqwest::Response {
        self.http.clone().get(self.url("/userinfo")).bearer_auth(access_token).send().await.unwrap()
    }

    /// The whole browser part for a fresh user agent: authorize, log in, consent. Returns the
    /// browser (with its session cookie) and the code.
    pub async fn code_for(&self, client_id: &str, verifier: &CodeVerifier) -> (Browser, String) {
        let b = self.browser();
        let res = self.sign_in_at(&b, &self.authorize_url(client_id, verifier, "")).await;
        let q = res.redirect_query();
        let code = q.get("code").unwrap_or_else(|| panic!("no code in {:?}", res.location())).clone();
        (b, code)
    }

    /// The browser part from the authorization request `url`: the login page, alice's login,
    /// the consent if asked. Returns the redirect to the client.
    pub async fn sign_in_at(&self, b: &Browser, url: &str) -> Page {
        let page = b.get(url).await;
        assert_eq!(page.status, 200, "login page expected: {}", page.body);
        let mut res = b.submit_login(&self.base, &page.body, "alice", PASSWORD).await;
        if res.status == 303 && res.location().starts_with("/consent") {
            let consent = b.get(&self.url(&res.location())).await;
            assert_eq!(consent.status, 200, "{}", consent.body);
            res = b.submit_consent(&self.base, &consent.body, "allow").await;
        }
        res
    }
}

pub struct Page {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> String {
        self.headers.get("location").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
    }
    pub fn redirect_query(&self) -> HashMap<String, String> {
        let loc = self.location();
        assert!(
            loc.starts_with(REDIRECT) || loc.starts_with("http://127.0.0.1"),
            "not a client redirect: {loc:?} ({})",
            self.status
        );
        url::Url::parse(&loc).unwrap().query_pairs().into_owned().collect()
    }
    pub fn header(&self, name: &str) -> String {
        self.headers.get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
    }
}

/// A user agent with a cookie jar that does not follow redirects, so tests see each step.
pub struct Browser {
    pub http: reqwest::Client,
}

/// A desktop Firefox's `User-Agent`, which the session list summarises as "Firefox on Linux".
pub const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

/// A [`Browser`] that sends `ua` as its `User-Agent`.
pub fn browser_as(ua: &str) -> Browser {
    Browser {
        http: reqwest::Client::builder().cookie_store(true).redirect(Policy::none()).user_agent(ua).build().unwrap(),
    }
}

/// The value of a hidden input in a page.
pub fn hidden(body: &str, name: &str) -> String {
    let marker = format!(r#"name="{name}" value=""#);
    let start = body.find(&marker).unwrap_or_else(|| panic!("no {name} field in page: {body}")) + marker.len();
    let end = body[start..].find('"').unwrap() + start;
    body[start..end].to_owned()
}

impl Browser {
    pub fn new() -> Self {
        Self::with_root(None)
    }

    pub fn with_root(root: Option<reqwest::Certificate>) -> Self {
        let mut b = reqwest::Client::builder().cookie_store(true).redirect(Policy::none());
        if let Some(r) = root {
            b = b.add_root_certificate(r);
        }
        Self { http: b.build().unwrap() }
    }

    async fn page(res: reqwest::Response) -> Page {
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        Page { status, headers, body: res.text().await.unwrap() }
    }

    pub async fn get(&self, url: &str) -> Page {
        Self::page(self.http.get(url).send().await.unwrap()).await
    }

    pub async fn post(&self, url: &str, form: &[(&str, &str)]) -> Page {
        Self::page(self.http.post(url).form(form).send().await.unwrap()).await
    }

    pub async fn submit_login(&self, base: &str, login_page: &str, user: &str, password: &str) -> Page {
        let (req, csrf) = (hidden(login_page, "req"), hidden(login_page, "csrf"));
        self.post(
            &format!("{base}/login"),
            &[("req", &req), ("csrf", &csrf), ("username", user), ("password", password)],
        )
        .await
    }

    pub async fn submit_consent(&self, base: &str, consent_page: &str, decision: &str) -> Page {
        let (req, csrf) = (hidden(consent_page, "req"), hidden(consent_page, "csrf"));
        self.post(&format!("{base}/consent"), &[("req", &req), ("csrf", &csrf), ("decision", decision)]).await
    }
}

/// The decoded header and claims of a JWT (no verification: the tests check values).
pub fn jwt_parts(token: &str) -> (serde_json::Value, serde_json::Value) {
    let mut it = token.split('.');
    let h = URL_SAFE_NO_PAD.decode(it.next().unwrap()).unwrap();
    let c = URL_SAFE_NO_PAD.decode(it.next().unwrap()).unwrap();
    (serde_json::from_slice(&h).unwrap(), serde_json::from_slice(&c).unwrap())
}

/// Accepts TLS on a new 127.0.0.1 port and forwards the plain bytes to `backend`. Returns the
/// proxy's address and the certificate to trust.
async fn tls_proxy(backend: std::net::SocketAddr) -> (std::net::SocketAddr, reqwest::Certificate) {
    use tokio_rustls::rustls;
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let root = reqwest::Certificate::from_der(cert.cert.der()).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let (Ok(mut tls), Ok(mut plain)) =
                    (acceptor.accept(tcp).await, tokio::net::TcpStream::connect(backend).await)
                else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (addr, root)
}
