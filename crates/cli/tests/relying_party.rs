//! The client side against a real Latchkey server: the `latchkey-client` library, the `login`,
//! `token`, `logout`, `pkce` and `inspect` commands, and the `gate` in front of a real upstream.
//! The browser step is an HTTP client that signs in through the HTML forms.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod rp;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use latchkey_client::{Callback, Client, Error, IdTokenError, LoopbackListener, TokenSet, TokenTypeHint, unix_now};
use latchkey_proto::{ClientId, Scope};
use latchkey_resource::Verifier;
use rp::{Cli, sign_in};
use sha2::{Digest, Sha256};

/// The library's whole login against `base`, the browser answering `decision` at consent.
async fn library_login(base: &str, client_id: &str, scope: &str, decision: &str) -> Result<TokenSet, Error> {
    let client = Client::discover(base, ClientId::parse(client_id).unwrap()).await?;
    let listener = LoopbackListener::bind(None).await?;
    let request = client.authorization_request(listener.redirect_uri().clone(), Scope::parse(scope).unwrap())?;
    let url = request.url.to_string();
    let decision = decision.to_owned();
    let prefix = request.redirect_uri.to_string();
    let browser = tokio::spawn(async move {
        let redirect = sign_in(&url, "alice", PASSWORD, &decision, &prefix).await;
        reqwest::get(&redirect).await.unwrap().status().as_u16()
    });
    let code = listener.receive(Duration::from_secs(30), |cb| client.check_callback(&request, cb)).await;
    browser.await.unwrap();
    client.exchange_code(&request, code?, unix_now()).await
}

/// The API's introspection credential: a resource server for the default audience. (An ordinary
/// confidential client sees only its own tokens at `/introspect`.)
async fn notes_api_credential(s: &TestServer) -> String {
    let new = latchkey_core::admin::NewClient {
        resource_server: true,
        ..latchkey_core::admin::NewClient::public("notes-api", "Notes API", vec![])
    };
    s.add(new).await.unwrap()
}

#[tokio::test]
async fn library_logs_in_refreshes_and_revokes_against_latchkey() {
    let s = TestServer::start().await;
    let tokens = library_login(&s.base, "spa", "openid profile api:read", "allow").await.unwrap();
    let id = tokens.id_claims.clone().expect("a validated id_token");
    assert_eq!(id.iss, s.base);
    assert_eq!(tokens.scope.to_string(), "api:read openid profile");
    let exp = tokens.expires_at.unwrap();
    assert!((exp - unix_now() - 600).abs() < 5, "expires_at from expires_in");

    // The resource library accepts the access token and sees the same user.
    let api = Verifier::builder(&s.base).build().unwrap();
    let claims = api.verify(tokens.access_token.expose_secret()).await.unwrap();
    assert_eq!(claims.sub, id.sub);
    assert_eq!(claims.client_id, "spa");
    assert!(claims.has_scope("api:read"));

    // Refresh: a new access token and a rotated refresh token; the old one is spent.
    let client = Client::discover(&s.base, ClientId::parse("spa").unwrap()).await.unwrap();
    let rt = tokens.refresh_token.clone().unwrap();
    let fresh = client.refresh(&rt, None, &tokens.scope, Some(&id.sub), unix_now()).await.unwrap();
    assert_ne!(fresh.access_token, tokens.access_token);
    assert_ne!(fresh.refresh_token.as_ref().unwrap(), &rt);
    // Latchkey answers a retry within its grace window with the same successor (two tabs, a lost
    // response), and treats a later reuse as theft: invalid_grant.
    let replay = client.refresh(&rt, None, &tokens.scope, Some(&id.sub), unix_now()).await.unwrap();
    assert_eq!(replay.access_token, fresh.access_token);
    // A narrower refresh is allowed.
    let narrow = Scope::parse("openid").unwrap();
    let rt2 = fresh.refresh_token.clone().unwrap();
    let narrowed = client.refresh(&rt2, Some(&narrow), &tokens.scope, Some(&id.sub), unix_now()).await.unwrap();
    assert_eq!(narrowed.scope.to_string(), "openid");

    // Introspection mode (RFC 7662) against Latchkey's endpoint agrees with local validation…
    let secret = notes_api_credential(&s).await;
    let live = Verifier::builder(&s.base)
        .introspection("notes-api", latchkey_proto::ClientSecret::new(secret))
        .introspection_cache(Duration::ZERO)
        .build()
        .unwrap();
    let c = live.verify(narrowed.access_token.expose_secret()).await.unwrap();
    assert_eq!((c.sub.as_str(), c.client_id.as_str(), c.scope.to_string()), (id.sub.as_str(), "spa", "openid".into()));

    // …and revocation (RFC 7009) ends the refresh token and, as introspection shows at once, its
    // access tokens.
    let rt3 = narrowed.refresh_token.clone().unwrap();
    client.revoke(rt3.expose_secret(), TokenTypeHint::RefreshToken, unix_now()).await.unwrap();
    let e = live.verify(narrowed.access_token.expose_secret()).await.unwrap_err();
    assert_eq!(e, latchkey_resource::Refusal::InvalidToken(latchkey_resource::TokenError::Inactive));
    let e = client.refresh(&rt3, None, &tokens.scope, None, unix_now()).await.unwrap_err();
    assert!(matches!(&e, Error::Endpoint { error, .. } if error == "invalid_grant"), "{e}");
    s.advance(11);
    let e = client.refresh(&rt, None, &tokens.scope, None, unix_now()).await.unwrap_err();
    assert!(
        matches!(&e, Error::Endpoint { error, .. } if error == "invalid_grant"),
        "reuse after the grace window: {e}"
    );
}

#[tokio::test]
async fn library_refuses_denied_forged_and_replayed_responses() {
    let s = TestServer::start().await;
    // The user says no at consent: the error comes back as such.
    let e = library_login(&s.base, "spa", "openid", "deny").await.unwrap_err();
    assert!(matches!(&e, Error::Authorization { error, .. } if error == "access_denied"), "{e}");

    // A real response, then tampered copies of it.
    let client = Client::discover(&s.base, ClientId::parse("spa").unwrap()).await.unwrap();
    assert!(client.metadata().authorization_response_iss_parameter_supported);
    let listener = LoopbackListener::bind(None).await.unwrap();
    let request =
        client.authorization_request(listener.redirect_uri().clone(), Scope::parse("openid").unwrap()).unwrap();
    let redirect = sign_in(request.url.as_str(), "alice", PASSWORD, "allow", request.redirect_uri.as_str()).await;
    let mut url = url::Url::parse(&redirect).unwrap();
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    let with = |url: &mut url::Url, name: &str, value: Option<&str>| {
        let mut q = url.query_pairs_mut();
        q.clear();
        for (k, v) in &pairs {
            if k != name {
                q.append_pair(k, v);
            }
        }
        if let Some(v) = value {
            q.append_pair(name, v);
        }
        drop(q);
        Callback::from_url(url.as_str()).unwrap()
    };
    let e = client.check_callback(&request, &with(&mut url, "state", Some("forged"))).unwrap_err();
    assert!(matches!(e, Error::StateMismatch), "{e}");
    let e = client.check_callback(&request, &with(&mut url, "iss", Some("https://evil.example"))).unwrap_err();
    assert!(matches!(e, Error::IssMismatch { .. }), "{e}");
    let e = client.check_callback(&request, &with(&mut url, "iss", None)).unwrap_err();
    assert!(matches!(e, Error::IssMissing), "Latchkey promises iss (RFC 9207): {e}");
    let code = client.check_callback(&request, &Callback::from_url(&redirect).unwrap()).unwrap();

    // Another login's verifier (a stolen code) is refused by the server, and keeps the code usable.
    let other = client.authorization_request(listener.redirect_uri().clone(), Scope::parse("openid").unwrap()).unwrap();
    let e = client.exchange_code(&other, code.clone(), unix_now()).await.unwrap_err();
    assert!(matches!(&e, Error::Endpoint { error, .. } if error == "invalid_grant"), "{e}");
    let tokens = client.exchange_code(&request, code.clone(), unix_now()).await.unwrap();
    assert!(tokens.id_claims.is_some());
    // The code is single-use.
    let e = client.exchange_code(&request, code, unix_now()).await.unwrap_err();
    assert!(matches!(&e, Error::Endpoint { status: 400, error, .. } if error == "invalid_grant"), "{e}");

    // The id_token is checked against our clock: an hour later it has expired.
    let id = tokens.id_token.unwrap();
    let e = client.validate_id_token(&id, Some(request.nonce()), None, None, unix_now() + 3600).await.unwrap_err();
    assert!(matches!(e, Error::IdToken(IdTokenError::Expired { .. })), "{e}");
    let e = client.validate_id_token(&id, Some("another-nonce"), None, None, unix_now()).await.unwrap_err();
    assert!(matches!(e, Error::IdToken(IdTokenError::NonceMismatch)), "{e}");
    // An access token is not an id_token.
    let e =
        client.validate_id_token(tokens.access_token.expose_secret(), None, None, None, unix_now()).await.unwrap_err();
    assert!(matches!(e, Error::IdToken(IdTokenError::WrongType(_))), "{e}");
    // Another client's view: the audience is not it.
    let mallory = Client::discover(&s.base, ClientId::parse("mallory").unwrap()).await.unwrap();
    let e = mallory.validate_id_token(&id, None, None, None, unix_now()).await.unwrap_err();
    assert!(matches!(e, Error::IdToken(IdTokenError::Audience { .. })), "{e}");

    // Discovery refuses a metadata document for another issuer (a trailing slash is another issuer).
    let e = Client::discover(&format!("{}/", s.base), ClientId::parse("spa").unwrap()).await.unwrap_err();
    assert!(e.to_string().contains("identical"), "{e}");
}

#[cfg(unix)]
fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn cli_login_token_refresh_logout() {
    let s = TestServer::start().await;
    let cli = Cli::new();
    let out = cli
        .login(
            &s.base,
            "spa",
            &["--scope", "openid api:read", "--redirect-uri", "http://127.0.0.1/loopback"],
            "alice",
            PASSWORD,
        )
        .await;
    assert!(out.ok, "{}", out.stderr);
    assert!(out.stderr.contains("Logged in to"), "{}", out.stderr);
    let files: Vec<_> = std::fs::read_dir(cli.cache_dir()).unwrap().map(|e| e.unwrap().path()).collect();
    let cache_file = files.iter().find(|p| p.extension().is_some_and(|e| e == "json")).unwrap().clone();
    #[cfg(unix)]
    {
        assert_eq!(mode(&cache_file), 0o600, "the token cache is private");
        assert_eq!(mode(&cli.cache_dir()), 0o700);
    }
    assert!(!out.stderr.contains(&std::fs::read_to_string(&cache_file).unwrap()[..20]));

    // `latchkey token` prints a token the API accepts, without flags (the most recent login).
    let api = Verifier::builder(&s.base).build().unwrap();
    let t1 = cli.run(&["token"]).await;
    assert!(t1.ok, "{}", t1.stderr);
    let at1 = t1.stdout.trim().to_owned();
    assert!(api.verify(&at1).await.unwrap().has_scope("api:read"));
    assert_eq!(
        cli.run(&["token", "--issuer", &s.base, "--client-id", "spa"]).await.stdout.trim(),
        at1,
        "fresh: no refresh"
    );

    // Near expiry (here: the cached expiry moved into the past) it refreshes first.
    let mut cached: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cache_file).unwrap()).unwrap();
    let old_rt = cached["refresh_token"].as_str().unwrap().to_owned();
    cached["expires_at"] = (unix_now() - 10).into();
    std::fs::write(&cache_file, cached.to_string()).unwrap();
    let t2 = cli.run(&["token"]).await;
    assert!(t2.ok, "{}", t2.stderr);
    let at2 = t2.stdout.trim().to_owned();
    assert_ne!(at2, at1);
    api.verify(&at2).await.unwrap();
    let after: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cache_file).unwrap()).unwrap();
    assert_ne!(after["refresh_token"], old_rt.as_str(), "the rotated refresh token was stored");
    #[cfg(unix)]
    assert_eq!(mode(&cache_file), 0o600);

    let out = cli.run(&["logout"]).await;
    assert!(out.ok, "{}", out.stderr);
    assert!(out.stderr.contains("cached tokens removed"), "{}", out.stderr);
    assert!(!cache_file.exists());
    assert!(out.stderr.contains("refresh token and access token revoked"), "{}", out.stderr);
    let client = Client::discover(&s.base, ClientId::parse("spa").unwrap()).await.unwrap();
    let rt = latchkey_proto::RefreshToken::new(after["refresh_token"].as_str().unwrap());
    let e = client.refresh(&rt, None, &Scope::default(), None, unix_now()).await.unwrap_err();
    assert!(matches!(&e, Error::Endpoint { error, .. } if error == "invalid_grant"), "revoked: {e}");
    // The revoked access token is refused by an API in introspection mode.
    let secret = notes_api_credential(&s).await;
    let live = Verifier::builder(&s.base)
        .introspection("notes-api", latchkey_proto::ClientSecret::new(secret))
        .build()
        .unwrap();
    let e = live.verify(&at2).await.unwrap_err();
    assert_eq!(e, latchkey_resource::Refusal::InvalidToken(latchkey_resource::TokenError::Inactive));
    let gone = cli.run(&["token"]).await;
    assert!(!gone.ok);
    assert!(gone.stderr.contains("not logged in"), "{}", gone.stderr);

    // A refresh token the provider refuses: the message says what to do.
    let out = cli.login(&s.base, "spa", &[], "alice", PASSWORD).await;
    assert!(out.ok, "{}", out.stderr);
    let mut cached: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cache_file).unwrap()).unwrap();
    cached["refresh_token"] = "not-a-refresh-token-of-this-server".into();
    cached["expires_at"] = (unix_now() - 10).into();
    std::fs::write(&cache_file, cached.to_string()).unwrap();
    let t3 = cli.run(&["token"]).await;
    assert!(!t3.ok);
    assert!(t3.stderr.contains("run `latchkey login --issuer"), "{}", t3.stderr);
}

#[tokio::test]
async fn cli_login_gives_up_after_the_timeout_and_refuses_a_forged_redirect() {
    let s = TestServer::start().await;
    let cli = Cli::new();
    let out = cli.run(&["login", "--no-browser", "--issuer", &s.base, "--client-id", "spa", "--timeout", "1"]).await;
    assert!(!out.ok);
    assert!(
        out.stderr.contains("no authorization response arrived") && out.stderr.contains("within 1 seconds"),
        "{}",
        out.stderr
    );

    // Something other than the provider calls the loopback listener first, with another state: it
    // is refused, and (review finding 19f) it does not abort the login, which the real response
    // then completes.
    let (child, url) =
        cli.spawn(&["login", "--no-browser", "--issuer", &s.base, "--client-id", "spa", "--timeout", "30"]).await;
    let redirect_uri =
        url::Url::parse(&url).unwrap().query_pairs().find(|(k, _)| k == "redirect_uri").unwrap().1.into_owned();
    let page = reqwest::get(format!("{redirect_uri}?code=stolen&state=forged&iss={}", s.base)).await.unwrap();
    assert_eq!(page.status(), 400);
    assert!(page.text().await.unwrap().contains("state mismatch"));
    assert_eq!(std::fs::read_dir(cli.cache_dir()).map(|d| d.count()).unwrap_or(0), 0, "nothing cached from it");
    let redirect = sign_in(&url, "alice", PASSWORD, "allow", &redirect_uri).await;
    assert_eq!(reqwest::get(&redirect).await.unwrap().status(), 200);
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output()).await.unwrap().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Not a loopback redirect URI: refused before anything is sent.
    let out = cli
        .run(&["login", "--issuer", &s.base, "--client-id", "spa", "--redirect-uri", "https://app.example/cb"])
        .await;
    assert!(!out.ok && out.stderr.contains("not a loopback"), "{}", out.stderr);
    // An unreachable issuer names the URL it tried.
    let out = cli.run(&["login", "--issuer", "http://127.0.0.1:9", "--client-id", "spa"]).await;
    assert!(
        !out.ok && out.stderr.contains("cannot reach http://127.0.0.1:9/.well-known/openid-configuration"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn cli_pkce_and_inspect() {
    let cli = Cli::new();
    let out = cli.run(&["pkce"]).await;
    assert!(out.ok);
    let field = |k: &str| out.stdout.lines().find_map(|l| l.strip_prefix(&format!("{k}: "))).unwrap().to_owned();
    let v = field("code_verifier");
    assert_eq!(v.len(), 43);
    assert_eq!(field("code_challenge"), URL_SAFE_NO_PAD.encode(Sha256::digest(v.as_bytes())));
    assert_eq!(field("code_challenge_method"), "S256");

    let s = TestServer::start().await;
    let tokens = library_login(&s.base, "spa", "openid", "allow").await.unwrap();
    let at = tokens.access_token.expose_secret().to_owned();
    let out = cli.run(&["inspect", &at]).await;
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stdout.contains("\"typ\": \"at+jwt\"") && out.stdout.contains("\"client_id\": \"spa\""),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("expires: ") && out.stdout.contains("(in 9m") || out.stdout.contains("(in 10m"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("signature: not verified"));
    // From stdin, verified against the issuer's JWKS.
    let out = cli.run_with_stdin(&["inspect", "-", "--issuer", &s.base], &at).await;
    assert!(out.ok, "{}", out.stderr);
    assert!(out.stdout.contains("signature: valid (ES256"), "{}", out.stdout);
    // A forged payload under the real signature.
    let parts: Vec<&str> = at.split('.').collect();
    let forged = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(br#"{"sub":"admin"}"#), parts[2]);
    let out = cli.run(&["inspect", &forged, "--issuer", &s.base]).await;
    assert!(!out.ok);
    assert!(out.stderr.contains("signature: INVALID"), "{}", out.stderr);
    let out = cli.run(&["inspect", "not-a-jwt"]).await;
    assert!(!out.ok && out.stderr.contains("three dot-separated parts"), "{}", out.stderr);
}

/// An upstream API that echoes what it received, and counts requests.
async fn echo_upstream() -> (String, Arc<AtomicUsize>) {
    use axum::extract::Request;
    let hits = Arc::new(AtomicUsize::new(0));
    let h2 = hits.clone();
    let app = axum::Router::new().fallback(move |req: Request| {
        let hits = h2.clone();
        async move {
            hits.fetch_add(1, Ordering::SeqCst);
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
            let headers: serde_json::Map<String, serde_json::Value> =
                parts.headers.iter().map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").into())).collect();
            axum::Json(serde_json::json!({"method": parts.method.as_str(), "uri": parts.uri.to_string(),
                "headers": headers, "body": String::from_utf8_lossy(&body)}))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, hits)
}

#[tokio::test]
async fn gate_forwards_only_valid_tokens_with_verified_identity_headers() {
    let s = TestServer::start().await;
    let (upstream, hits) = echo_upstream().await;
    let cli = Cli::new();
    let (_gate, line) = cli
        .spawn(&[
            "gate",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &format!("{upstream}/base"),
            "--issuer",
            &s.base,
            "--require-scope",
            "api:read",
        ])
        .await;
    let gate = line.split_whitespace().find(|w| w.starts_with("http://")).unwrap().trim_end_matches(',').to_owned();
    let http = reqwest::Client::new();

    let res = http.get(format!("{gate}/v1/items")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
    let res = http.get(format!("{gate}/v1/items")).header("authorization", "Bearer two words").send().await.unwrap();
    assert_eq!(res.status(), 400);
    let res = http.get(format!("{gate}/v1/items")).bearer_auth("eyJhbGciOiJub25lIn0.e30.").send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers()["www-authenticate"].to_str().unwrap().contains("alg none"));

    let reader = library_login(&s.base, "spa", "openid", "allow").await.unwrap();
    let res =
        http.get(format!("{gate}/v1/items")).bearer_auth(reader.access_token.expose_secret()).send().await.unwrap();
    assert_eq!(res.status(), 403);
    assert!(res.headers()["www-authenticate"].to_str().unwrap().contains("scope=\"api:read\""));

    // An expired token: minted an hour ago by the server's clock.
    s.advance(-3600);
    // (no openid: its id_token would be refused as expired by the library itself)
    let old = library_login(&s.base, "spa", "api:read", "allow").await.unwrap();
    s.advance(3600);
    let res = http.get(format!("{gate}/v1/items")).bearer_auth(old.access_token.expose_secret()).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers()["www-authenticate"].to_str().unwrap().contains("expired"));
    assert_eq!(hits.load(Ordering::SeqCst), 0, "no refused request reached the upstream");

    let tokens = library_login(&s.base, "spa", "openid api:read", "allow").await.unwrap();
    let sub = tokens.id_claims.as_ref().unwrap().sub.clone();
    let res = http
        .post(format!("{gate}/v1/items?x=1&y=two"))
        .bearer_auth(tokens.access_token.expose_secret())
        .header("x-latchkey-subject", "admin")
        .header("X-Latchkey-Role", "root")
        .header("content-type", "text/plain")
        .body("hello upstream")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let echo: serde_json::Value = res.json().await.unwrap();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["uri"], "/base/v1/items?x=1&y=two");
    assert_eq!(echo["body"], "hello upstream");
    let h = &echo["headers"];
    assert_eq!(h["x-latchkey-subject"], sub.as_str(), "the verified subject, not the forged one");
    assert_eq!(h["x-latchkey-scope"], "api:read openid");
    assert_eq!(h["x-latchkey-client-id"], "spa");
    assert!(h.get("x-latchkey-role").is_none(), "every incoming x-latchkey-* header is stripped");
    assert!(h.get("authorization").is_none(), "the token is not passed upstream by default");
    assert_eq!(h["content-type"], "text/plain");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn cli_login_accepts_the_redirect_url_pasted_from_a_browser_elsewhere() {
    use tokio::io::AsyncWriteExt;
    let s = TestServer::start().await;
    let cli = Cli::new();
    let (mut child, url) =
        cli.spawn(&["login", "--no-browser", "--issuer", &s.base, "--client-id", "spa", "--timeout", "30"]).await;
    let redirect_uri =
        url::Url::parse(&url).unwrap().query_pairs().find(|(k, _)| k == "redirect_uri").unwrap().1.into_owned();
    // The browser on the other machine cannot reach our 127.0.0.1; the user copies its address bar.
    let redirect = sign_in(&url, "alice", PASSWORD, "allow", &redirect_uri).await;
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("{redirect}\n").as_bytes()).await.unwrap();
    stdin.flush().await.unwrap();
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output()).await.unwrap().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let t = cli.run(&["token"]).await;
    assert!(t.ok, "{}", t.stderr);
    Verifier::builder(&s.base).build().unwrap().verify(t.stdout.trim()).await.unwrap();
}
