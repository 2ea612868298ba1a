//! The client side against a second, independent provider: node-oidc-provider
//! (tests/peers/node-oidc), started on 127.0.0.1 by the test, signed in through its own HTML
//! pages. It proves that `latchkey-client`, `latchkey login/token/logout` and the introspection
//! mode of `latchkey-resource` follow the RFCs rather than Latchkey's habits.
//!
//! With `PEER_PROFILE=strict` the peer requires PAR and DPoP nonces, binds latchkey-cli's tokens
//! and knows a `private_key_jwt` client: the tests of DPoP, PAR and client assertions run there.
//!
//! The device authorization grant (RFC 8628) runs against the peer's `features.deviceFlow`, its
//! pages answered by HTTP, from the library and from `latchkey login --device`.
//!
//! Outside CI, skipped with a message when node or the peer's npm packages are missing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod rp;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use latchkey_client::dpop::{ApiRequest, resource_asks_for_nonce};
use latchkey_client::keys::to_pem;
use latchkey_client::{
    AuthorizationRequest, Client, ClientKey, Dpop, Error, LoopbackListener, PollClock, TokenSet, TokenType,
    TokenTypeHint, unix_now,
};
use latchkey_proto::dpop::DpopKey;
use latchkey_proto::secret::AccessToken;
use latchkey_proto::{ClientId, ClientSecret, RedirectUri, Scope};
use latchkey_resource::{Refusal, TokenError, Verifier};
use rp::{Cli, NodePeer, free_redirect_uri, sign_in};
use tokio::io::AsyncBufReadExt;

const CLIENT: &str = "latchkey-cli";

async fn login(peer: &NodePeer, user: &str) -> (Client, TokenSet) {
    let client = Client::discover(&peer.issuer, ClientId::parse(CLIENT).unwrap()).await.unwrap();
    // Registered as http://127.0.0.1/callback; any port is accepted for it (RFC 8252 §7.3).
    let listener = LoopbackListener::bind(Some("http://127.0.0.1/callback")).await.unwrap();
    let request =
        client.authorization_request(listener.redirect_uri().clone(), Scope::parse("openid profile").unwrap()).unwrap();
    let (url, prefix, user) = (request.url.to_string(), request.redirect_uri.to_string(), user.to_owned());
    let browser = tokio::spawn(async move {
        let redirect = sign_in(&url, &user, "any password", "allow", &prefix).await;
        reqwest::get(&redirect).await.unwrap().status().as_u16()
    });
    let code = listener.receive(Duration::from_secs(30), |cb| client.check_callback(&request, cb)).await.unwrap();
    assert_eq!(browser.await.unwrap(), 200);
    let tokens = client.exchange_code(&request, code, unix_now()).await.unwrap();
    (client, tokens)
}

#[tokio::test]
async fn library_against_node_oidc_provider() {
    let Some(peer) = NodePeer::start().await else { return };
    let (client, tokens) = login(&peer, "alice").await;
    assert!(client.metadata().authorization_response_iss_parameter_supported);
    let id = tokens.id_claims.clone().expect("a validated id_token (signature, iss, aud, exp, nonce, at_hash)");
    assert_eq!(id.sub, "alice");
    assert_eq!(id.iss, peer.issuer);
    assert!(tokens.scope.contains("openid"));

    // Introspection mode of the resource library, against the peer's RFC 7662 endpoint. The peer's
    // access tokens are opaque, which only introspection can check. Without a resource indicator
    // (RFC 8707) they carry no `aud`, which the library refuses unless told otherwise.
    let strict = Verifier::builder(&peer.issuer)
        .audience("unused")
        .introspection("api", ClientSecret::new("api-secret-api-secret-api-secret"))
        .introspection_cache(Duration::ZERO)
        .build()
        .unwrap();
    let e = strict.verify(tokens.access_token.expose_secret()).await.unwrap_err();
    assert_eq!(e, Refusal::InvalidToken(TokenError::MissingClaim("aud")));
    let api = Verifier::builder(&peer.issuer)
        .audience("unused")
        .introspection("api", ClientSecret::new("api-secret-api-secret-api-secret"))
        .introspection_cache(Duration::ZERO)
        .allow_missing_audience()
        .build()
        .unwrap();
    let claims = api.verify(tokens.access_token.expose_secret()).await.unwrap();
    assert_eq!(claims.sub, "alice");
    assert_eq!(claims.client_id, CLIENT);
    assert!(claims.has_scope("openid"));

    // Refresh, then revocation (RFC 7009) of the new refresh token.
    let rt = tokens.refresh_token.clone().expect("the peer issues refresh tokens to this client");
    // Against this peer too, a refresh token is not an access token (review finding 18), even
    // with allow_missing_audience: the peer says it is active, with neither aud nor token_type.
    let e = api.verify(rt.expose_secret()).await.unwrap_err();
    assert_eq!(e, Refusal::InvalidToken(TokenError::MissingClaim("token_type")));
    let fresh = client.refresh(&rt, None, &tokens.scope, Some(&id.sub), unix_now()).await.unwrap();
    assert_ne!(fresh.access_token, tokens.access_token);
    let rt2 = fresh.refresh_token.clone().unwrap();
    client.revoke(rt2.expose_secret(), TokenTypeHint::RefreshToken, unix_now()).await.unwrap();
    let e = client.refresh(&rt2, None, &tokens.scope, None, unix_now()).await.unwrap_err();
    assert!(matches!(&e, Error::Endpoint { error, .. } if error == "invalid_grant"), "{e}");
    // Revoking the access token is seen at once by introspection.
    client.revoke(fresh.access_token.expose_secret(), TokenTypeHint::AccessToken, unix_now()).await.unwrap();
    let e = api.verify(fresh.access_token.expose_secret()).await.unwrap_err();
    assert_eq!(e, Refusal::InvalidToken(TokenError::Inactive));

    // A response from this provider is refused by a client configured for another issuer: the
    // id_token's iss and the response's iss do not match (mix-up defence).
    let e = Client::discover(&format!("{}/", peer.issuer), ClientId::parse(CLIENT).unwrap()).await.unwrap_err();
    assert!(e.to_string().contains("identical"), "{e}");
}

#[tokio::test]
async fn cli_against_node_oidc_provider() {
    let Some(peer) = NodePeer::start().await else { return };
    let cli = Cli::new();
    let out = cli
        .login(&peer.issuer, CLIENT, &["--redirect-uri", "http://127.0.0.1/callback", "--scope", "openid"], "bob", "x")
        .await;
    assert!(out.ok, "{}", out.stderr);
    assert!(out.stderr.contains("as bob"), "{}", out.stderr);
    let t = cli.run(&["token", "--issuer", &peer.issuer]).await;
    assert!(t.ok, "{}", t.stderr);
    let at = t.stdout.trim().to_owned();
    // The peer's userinfo endpoint accepts it.
    let me: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/me", peer.issuer))
        .bearer_auth(&at)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["sub"], "bob");
    let out = cli.run(&["logout", "--issuer", &peer.issuer, "--client-id", CLIENT]).await;
    assert!(out.ok, "{}", out.stderr);
    assert!(out.stderr.contains("refresh token and access token revoked"), "{}", out.stderr);
    let res = reqwest::Client::new().get(format!("{}/me", peer.issuer)).bearer_auth(&at).send().await.unwrap();
    assert_eq!(res.status(), 401, "the access token was revoked at the peer");
    assert!(!cli.run(&["token"]).await.ok);

    // Asked to, the CLI pushes the request (RFC 9126) although this provider does not require it.
    let redirect = free_redirect_uri();
    let out = cli.login(&peer.issuer, CLIENT, &["--par", "--redirect-uri", &redirect], "bob", "x").await;
    assert!(out.ok, "{}", out.stderr);
    assert!(out.stderr.contains("pushed to the provider"), "{}", out.stderr);
    let t = cli.run(&["token"]).await;
    assert!(t.ok && !t.stderr.contains("DPoP"), "a plain login stays Bearer: {}", t.stderr);
    let res =
        reqwest::Client::new().get(format!("{}/me", peer.issuer)).bearer_auth(t.stdout.trim()).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

// ---- DPoP (RFC 9449), PAR (RFC 9126) and private_key_jwt (RFC 7523 §2.2) against the peer in
// its strict profile: every request pushed, every proof with a server nonce, latchkey-cli's
// tokens DPoP-bound, and a confidential client `latchkey-pkjwt` holding the test's key.

/// Key files of one test, mode 0600: the confidential client's private key (its public half is
/// registered at the peer with kid k1) and a DPoP key of the user's own.
struct KeyFiles {
    dir: tempfile::TempDir,
    client_pem: PathBuf,
    jwks: String,
    dpop_pem: PathBuf,
    dpop_jkt: String,
}

fn write_private(dir: &Path, name: &str, text: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn key_files() -> KeyFiles {
    let dir = tempfile::tempdir().unwrap();
    // An ES256 key pair; DpopKey is simply a convenient generator of one.
    let client = DpopKey::generate().unwrap();
    let mut public = client.public_jwk().clone();
    public["kid"] = "k1".into();
    public["alg"] = "ES256".into();
    let jwks = serde_json::json!({ "keys": [public] }).to_string();
    let client_pem = write_private(dir.path(), "client.pem", &to_pem("PRIVATE KEY", client.pkcs8()));
    let dpop = DpopKey::generate().unwrap();
    let dpop_pem = write_private(dir.path(), "dpop.pem", &to_pem("PRIVATE KEY", dpop.pkcs8()));
    KeyFiles { dir, client_pem, jwks, dpop_pem, dpop_jkt: dpop.jkt().to_owned() }
}

async fn strict_peer(keys: &KeyFiles) -> Option<NodePeer> {
    NodePeer::start_with(&[("PEER_PROFILE", "strict"), ("PEER_CLIENT_JWKS", &keys.jwks)]).await
}

/// Signs `user` in through the browser steps for a started request and returns the tokens.
async fn finish_login(
    client: &Client,
    request: AuthorizationRequest,
    listener: LoopbackListener,
    user: &str,
) -> TokenSet {
    let (url, prefix, user) = (request.url.to_string(), request.redirect_uri.to_string(), user.to_owned());
    let browser = tokio::spawn(async move {
        let redirect = sign_in(&url, &user, "any password", "allow", &prefix).await;
        reqwest::get(&redirect).await.unwrap().status().as_u16()
    });
    let code = listener.receive(Duration::from_secs(30), |cb| client.check_callback(&request, cb)).await.unwrap();
    assert_eq!(browser.await.unwrap(), 200);
    client.exchange_code(&request, code, unix_now()).await.unwrap()
}

/// The peer's introspection answer for a token, asked by the `api` client.
async fn introspect(peer: &NodePeer, token: &str) -> serde_json::Value {
    reqwest::Client::new()
        .post(format!("{}/token/introspection", peer.issuer))
        .basic_auth("api", Some("api-secret-api-secret-api-secret"))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn get<'a>(url: &'a url::Url, token: &'a AccessToken) -> ApiRequest<'a> {
    ApiRequest { method: reqwest::Method::GET, url, token, headers: Default::default(), body: None }
}

#[tokio::test]
async fn library_with_dpop_par_and_private_key_jwt_against_a_strict_node_oidc_provider() {
    let keys = key_files();
    let Some(peer) = strict_peer(&keys).await else { return };
    let dpop = Arc::new(Dpop::new(DpopKey::generate().unwrap()));
    let client = Client::discover(&peer.issuer, ClientId::parse(CLIENT).unwrap())
        .await
        .unwrap()
        .with_dpop(dpop.clone())
        .unwrap();
    assert!(client.metadata().require_pushed_authorization_requests);
    let listener = LoopbackListener::bind(Some("http://127.0.0.1/callback")).await.unwrap();
    let scope = Scope::parse("openid").unwrap();
    // The provider requires pushed requests: a front-channel one is refused before the browser opens.
    let e = client.authorization_request(listener.redirect_uri().clone(), scope.clone()).unwrap_err();
    assert!(matches!(e, Error::PushRequired), "{e}");
    let request =
        client.start_authorization(listener.redirect_uri().clone(), scope.clone(), false, unix_now()).await.unwrap();
    assert!(request.request_uri().unwrap().starts_with("urn:ietf:params:oauth:request_uri:"));
    let names: Vec<String> = request.url.query_pairs().map(|(k, _)| k.into_owned()).collect();
    assert_eq!(names, ["client_id", "request_uri"], "PKCE, state and dpop_jkt went to the provider directly");
    let tokens = finish_login(&client, request, listener, "alice").await;
    assert_eq!(tokens.token_type, TokenType::Dpop);
    let token_endpoint = client.metadata().endpoint("token_endpoint").unwrap();
    assert!(dpop.nonce_for(&token_endpoint).is_some(), "the token endpoint's nonce was asked for and kept");

    // The peer binds the token to our key (cnf.jkt, RFC 9449 §6.2).
    let info = introspect(&peer, tokens.access_token.expose_secret()).await;
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["token_type"], "DPoP", "{info}");
    assert_eq!(info["cnf"]["jkt"], dpop.jkt(), "{info}");

    let me = client.metadata().endpoint("userinfo_endpoint").unwrap();
    let http = reqwest::Client::new();
    // Presented as a bearer token, it is refused.
    let res = http.get(me.clone()).bearer_auth(tokens.access_token.expose_secret()).send().await.unwrap();
    assert_eq!(res.status(), 401);
    // With a proof but no nonce, the peer asks for one (§9)…
    let no_nonce = Dpop::new(DpopKey::from_pkcs8(dpop.key().pkcs8()).unwrap());
    let h = no_nonce.api_headers("GET", &me, &tokens.access_token, unix_now()).unwrap();
    let res =
        http.get(me.clone()).header("authorization", h.authorization).header("dpop", h.dpop).send().await.unwrap();
    assert!(resource_asks_for_nonce(res.status().as_u16(), res.headers()), "{:?}", res.headers());
    // …and `send` answers it: one retry with the nonce, then the user's claims.
    let res = no_nonce.send(&http, &get(&me, &tokens.access_token), unix_now()).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<serde_json::Value>().await.unwrap()["sub"], "alice");
    // A thief with the token and a key of its own, nonce included, is refused.
    let thief = Dpop::new(DpopKey::generate().unwrap());
    let res = thief.send(&http, &get(&me, &tokens.access_token), unix_now()).await.unwrap();
    assert_eq!(res.status(), 401);
    assert!(!resource_asks_for_nonce(401, res.headers()), "refused for the key, not the nonce: {:?}", res.headers());

    // The refresh token is bound too: refreshed with our key, refused with another.
    let rt = tokens.refresh_token.clone().unwrap();
    let fresh = client.refresh(&rt, None, &tokens.scope, Some("alice"), unix_now()).await.unwrap();
    assert_eq!(fresh.token_type, TokenType::Dpop);
    assert_eq!(introspect(&peer, fresh.access_token.expose_secret()).await["cnf"]["jkt"], dpop.jkt());
    let other = Client::discover(&peer.issuer, ClientId::parse(CLIENT).unwrap())
        .await
        .unwrap()
        .with_dpop(Arc::new(Dpop::new(DpopKey::generate().unwrap())))
        .unwrap();
    let e = other.refresh(&rt, None, &tokens.scope, None, unix_now()).await.unwrap_err();
    assert!(matches!(&e, Error::Endpoint { error, .. } if error == "invalid_grant"), "{e}");

    // A confidential client authenticating with private_key_jwt, at PAR and at the token endpoint.
    let pk_id = ClientId::parse("latchkey-pkjwt").unwrap();
    let pk = Client::discover(&peer.issuer, pk_id.clone())
        .await
        .unwrap()
        .with_private_key_jwt(ClientKey::from_file(&keys.client_pem).unwrap())
        .unwrap()
        .with_dpop(Arc::new(Dpop::new(DpopKey::generate().unwrap())))
        .unwrap();
    let listener = LoopbackListener::bind(Some("http://127.0.0.1/callback")).await.unwrap();
    let request =
        pk.start_authorization(listener.redirect_uri().clone(), scope.clone(), false, unix_now()).await.unwrap();
    let tokens = finish_login(&pk, request, listener, "bob").await;
    assert_eq!(tokens.token_type, TokenType::Dpop);
    assert_eq!(introspect(&peer, tokens.access_token.expose_secret()).await["client_id"], "latchkey-pkjwt");
    let rt = tokens.refresh_token.clone().unwrap();
    pk.refresh(&rt, None, &tokens.scope, Some("bob"), unix_now()).await.unwrap();
    pk.revoke(rt.expose_secret(), TokenTypeHint::RefreshToken, unix_now()).await.unwrap();
    // Without the key (no authentication) and with another key, the push is refused.
    let redirect = RedirectUri::parse("http://127.0.0.1:5000/callback").unwrap();
    let public = Client::discover(&peer.issuer, pk_id.clone()).await.unwrap();
    let e = public.start_authorization(redirect.clone(), scope.clone(), false, unix_now()).await.unwrap_err();
    assert!(matches!(&e, Error::Endpoint { error, .. } if error == "invalid_client"), "{e}");
    let stranger_pem =
        write_private(keys.dir.path(), "stranger.pem", &to_pem("PRIVATE KEY", DpopKey::generate().unwrap().pkcs8()));
    let stranger = Client::discover(&peer.issuer, pk_id)
        .await
        .unwrap()
        .with_private_key_jwt(ClientKey::from_file(&stranger_pem).unwrap())
        .unwrap();
    let e = stranger.start_authorization(redirect, scope, false, unix_now()).await.unwrap_err();
    assert!(matches!(&e, Error::Endpoint { error, .. } if error == "invalid_client"), "{e}");
}

fn cached_login_json(cli: &Cli) -> serde_json::Value {
    let files: Vec<_> = std::fs::read_dir(cli.cache_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .collect();
    assert_eq!(files.len(), 1);
    serde_json::from_slice(&std::fs::read(files[0].path()).unwrap()).unwrap()
}

#[tokio::test]
async fn cli_with_dpop_par_and_private_key_jwt_against_a_strict_node_oidc_provider() {
    let keys = key_files();
    let Some(peer) = strict_peer(&keys).await else { return };
    let me = format!("{}/me", peer.issuer);
    let cli = Cli::new();
    let redirect = free_redirect_uri();
    let out = cli.login(&peer.issuer, CLIENT, &["--dpop", "--redirect-uri", &redirect], "carol", "x").await;
    assert!(out.ok, "{}", out.stderr);
    assert!(out.stderr.contains("pushed to the provider"), "PAR, as the provider requires: {}", out.stderr);
    assert!(out.stderr.contains("DPoP-bound to key"), "{}", out.stderr);
    let cached = cached_login_json(&cli);
    assert_eq!(cached["token_type"], "DPoP");
    assert!(cached["dpop_key"].as_str().is_some_and(|k| k.len() > 40), "the key is kept in the 0600 cache file");

    // `token` still prints the token, with a note; as a bearer token the peer refuses it.
    let t = cli.run(&["token"]).await;
    assert!(t.ok && t.stderr.contains("DPoP-bound"), "{}", t.stderr);
    let at = t.stdout.trim().to_owned();
    let http = reqwest::Client::new();
    assert_eq!(http.get(&me).bearer_auth(&at).send().await.unwrap().status(), 401);
    // `token --dpop`: the token and the thumbprint of the key it is bound to, which the peer confirms.
    let j = cli.run(&["token", "--dpop"]).await;
    assert!(j.ok, "{}", j.stderr);
    let j: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    assert_eq!(j["access_token"], at.as_str());
    assert_eq!(introspect(&peer, &at).await["cnf"]["jkt"], j["dpop_jkt"]);
    // `token --dpop --url`: the headers of one request. Without the peer's nonce it is asked for;
    // with `--nonce` it succeeds.
    let headers = |out: &str| -> Vec<(String, String)> {
        out.lines().map(|l| l.split_once(": ").map(|(k, v)| (k.to_owned(), v.to_owned())).unwrap()).collect()
    };
    let h = cli.run(&["token", "--dpop", "--url", &me]).await;
    assert!(h.ok, "{}", h.stderr);
    let h = headers(&h.stdout);
    assert_eq!(h[0], ("Authorization".to_owned(), format!("DPoP {at}")));
    let res = http.get(&me).header(&h[0].0, &h[0].1).header(&h[1].0, &h[1].1).send().await.unwrap();
    assert!(resource_asks_for_nonce(res.status().as_u16(), res.headers()));
    let nonce = res.headers()["dpop-nonce"].to_str().unwrap().to_owned();
    let h = headers(&cli.run(&["token", "--dpop", "--url", &me, "--nonce", &nonce]).await.stdout);
    let res = http.get(&me).header(&h[0].0, &h[0].1).header(&h[1].0, &h[1].1).send().await.unwrap();
    assert_eq!(res.status(), 200);
    // A proof is for one request: replayed, the peer refuses it (its jti was seen).
    let res = http.get(&me).header(&h[0].0, &h[0].1).header(&h[1].0, &h[1].1).send().await.unwrap();
    assert_eq!(res.status(), 401);

    // `call` makes the proof and answers the nonce challenge itself.
    let c = cli.run(&["call", &me]).await;
    assert!(c.ok, "{}", c.stderr);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&c.stdout).unwrap()["sub"], "carol");
    let c = cli.run(&["call", "-i", "-X", "DELETE", &me]).await;
    assert!(!c.ok && c.stdout.starts_with("HTTP/1.1 "), "{}", c.stdout);
    assert!(c.stderr.contains("answered"), "{}", c.stderr);

    // A burst of calls that each want a fresh token: refreshes with the DPoP key, one at a time
    // under the cache's lock, and every call succeeds.
    let burst = ["call", me.as_str(), "--min-valid", "100000"];
    let call = || cli.run(&burst);
    let (a, b, c, d) = tokio::join!(call(), call(), call(), call());
    for o in [a, b, c, d] {
        assert!(o.ok, "{}", o.stderr);
        assert_eq!(serde_json::from_str::<serde_json::Value>(&o.stdout).unwrap()["sub"], "carol");
    }
    let after = cli.run(&["token"]).await.stdout.trim().to_owned();
    assert_ne!(after, at, "the token was refreshed");
    assert_eq!(introspect(&peer, &after).await["cnf"]["jkt"], j["dpop_jkt"], "still bound to the same key");
    let out = cli.run(&["logout"]).await;
    assert!(out.ok, "{}", out.stderr);

    // The confidential client with private_key_jwt, and a DPoP key file of the user's.
    let cli = Cli::new();
    let (client_pem, dpop_pem) = (keys.client_pem.to_str().unwrap(), keys.dpop_pem.to_str().unwrap());
    let args =
        ["--client-key", client_pem, "--client-key-id", "k1", "--dpop-key", dpop_pem, "--redirect-uri", &redirect];
    let out = cli.login(&peer.issuer, "latchkey-pkjwt", &args, "dave", "x").await;
    assert!(out.ok, "{}", out.stderr);
    let cached = cached_login_json(&cli);
    assert_eq!(cached["dpop_key_file"], dpop_pem, "only the path of the user's key is kept");
    assert!(cached.get("dpop_key").is_none());
    assert_eq!(cached["client_key"]["file"], client_pem);
    let j: serde_json::Value = serde_json::from_str(&cli.run(&["token", "--dpop"]).await.stdout).unwrap();
    assert_eq!(j["dpop_jkt"], keys.dpop_jkt.as_str());
    // A refresh authenticates with a new assertion and a proof by the user's key.
    let c = cli.run(&["call", &me, "--min-valid", "100000"]).await;
    assert!(c.ok, "{}", c.stderr);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&c.stdout).unwrap()["sub"], "dave");
    let out = cli.run(&["logout"]).await;
    assert!(out.ok && out.stderr.contains("refresh token"), "{}", out.stderr);

    // A key file other accounts can read is refused before anything is sent.
    let loose = keys.dir.path().join("loose.pem");
    std::fs::copy(&keys.dpop_pem, &loose).unwrap();
    std::fs::set_permissions(&loose, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let out = cli
        .run(&[
            "login",
            "--no-browser",
            "--issuer",
            &peer.issuer,
            "--client-id",
            CLIENT,
            "--dpop-key",
            loose.to_str().unwrap(),
        ])
        .await;
    assert!(!out.ok && out.stderr.contains("chmod 600"), "{}", out.stderr);
}

// ---- The device authorization grant (RFC 8628) against the peer's `features.deviceFlow`, whose
// own pages (code entry, confirmation, sign-in, consent) the test answers through.

const TV: &str = "latchkey-tv";

/// Real time, a tenth of the waits: the peer gives no `interval` (so 5 s, §3.2) and enforces
/// none, and the library's waiting is proven by its unit tests; here the wire format is.
struct Quick;

impl PollClock for Quick {
    fn now(&self) -> i64 {
        unix_now()
    }
    fn sleep(&self, wait: Duration) -> impl std::future::Future<Output = ()> + Send {
        tokio::time::sleep(wait / 10)
    }
}

/// One device authorization answered with `decision` on the peer's pages while `client` polls.
async fn device_login(client: &Client, scope: &str, user: &str, decision: &str) -> Result<TokenSet, Error> {
    let device = client.start_device_authorization(Scope::parse(scope).unwrap(), None, unix_now()).await.unwrap();
    assert_eq!(device.interval, 5, "no interval in the answer: 5 s (RFC 8628 §3.2)");
    assert_eq!(device.verification_uri.as_str(), format!("{}/device", client.issuer()));
    let complete = device.verification_uri_complete.clone().expect("the peer sends verification_uri_complete");
    let (user, decision) = (user.to_owned(), decision.to_owned());
    let page = tokio::spawn(async move { rp::answer_node_device(complete.as_str(), &user, &decision).await });
    let polled = client.poll_device_authorization(&device, &Quick).await;
    let page = page.await.unwrap();
    assert!(page.contains("Sign-in Success") || page.contains("interrupted"), "{page}");
    polled
}

#[tokio::test]
async fn library_device_flow_against_node_oidc_provider() {
    let Some(peer) = NodePeer::start().await else { return };
    let client = Client::discover(&peer.issuer, ClientId::parse(TV).unwrap()).await.unwrap();
    let tokens = device_login(&client, "openid profile", "carol", "approve").await.unwrap();
    let id = tokens.id_claims.clone().expect("a validated id_token (signature, iss, aud, exp, at_hash)");
    assert_eq!(id.sub, "carol");
    assert_eq!(tokens.token_type, TokenType::Bearer);
    assert!(tokens.scope.contains("openid"));
    let claims = introspect(&peer, tokens.access_token.expose_secret()).await;
    assert_eq!((&claims["active"], &claims["client_id"], &claims["sub"]), (&true.into(), &TV.into(), &"carol".into()));
    // The device's refresh token works like any other.
    let rt = tokens.refresh_token.clone().expect("a refresh token for a client with the grant");
    let refreshed = client.refresh(&rt, None, &tokens.scope, Some("carol"), unix_now()).await.unwrap();
    assert_ne!(refreshed.access_token, tokens.access_token);

    // Abort on the confirmation page: the peer answers access_denied, the library stops.
    let e = device_login(&client, "openid", "carol", "deny").await.unwrap_err();
    assert!(matches!(e, Error::DeviceDenied), "{e}");
    // A client without the grant is refused by the peer, and the library says so.
    let web = Client::discover(&peer.issuer, ClientId::parse(CLIENT).unwrap()).await.unwrap();
    let e = web.start_device_authorization(Scope::parse("openid").unwrap(), None, unix_now()).await.unwrap_err();
    assert!(e.to_string().contains("device authorization endpoint answered 400"), "{e}");
}

#[tokio::test]
async fn library_device_flow_with_dpop_nonces_against_a_strict_node_oidc_provider() {
    let keys = key_files();
    let Some(peer) = strict_peer(&keys).await else { return };
    let dpop = Arc::new(Dpop::new(DpopKey::generate().unwrap()));
    let client =
        Client::discover(&peer.issuer, ClientId::parse(TV).unwrap()).await.unwrap().with_dpop(dpop.clone()).unwrap();
    // Every poll carries a proof; the peer asks for its nonce (use_dpop_nonce) and the library
    // answers with it; the tokens are bound to the key.
    let tokens = device_login(&client, "openid", "dave", "approve").await.unwrap();
    assert_eq!(tokens.token_type, TokenType::Dpop);
    assert_eq!(tokens.id_claims.as_ref().unwrap().sub, "dave");
    let claims = introspect(&peer, tokens.access_token.expose_secret()).await;
    assert_eq!(claims["cnf"]["jkt"], dpop.jkt(), "{claims}");
}

#[tokio::test]
async fn cli_login_device_against_node_oidc_provider() {
    let Some(peer) = NodePeer::start().await else { return };
    let cli = Cli::new();
    let args = ["login", "--device", "--issuer", &peer.issuer, "--client-id", TV, "--scope", "openid"];
    let mut child = cli.command(&args).spawn().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut link = None;
    while let Some(line) = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await.unwrap().unwrap() {
        if line.starts_with(&format!("{}/device?user_code=", peer.issuer)) {
            link = Some(line);
            break;
        }
    }
    let link = link.expect("the link that carries the code");
    let page = rp::answer_node_device(&link, "erin", "approve").await;
    assert!(page.contains("Sign-in Success"), "{page}");
    // The CLI polls at the real interval (5 s: the peer gives none).
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await.unwrap().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("as erin"), "{stderr}");
    let t = cli.run(&["token", "--issuer", &peer.issuer, "--client-id", TV]).await;
    assert!(t.ok, "{}", t.stderr);
    assert_eq!(introspect(&peer, t.stdout.trim()).await["sub"], "erin");
}
