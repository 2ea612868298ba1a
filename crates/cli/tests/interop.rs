//! Interoperability: the client libraries people use, unmodified, against the real server.
//! - Rust `openidconnect`: discovery, code flow with PKCE, id_token validation (signature, nonce,
//!   at_hash), userinfo, refresh; for RS256, ES256 and EdDSA clients.
//! - Rust `oauth2`: PKCE flow, refresh, introspection, revocation (over https, which it requires).
//! - Python `authlib`: OAuth2Session with S256, the flow and a refresh (tests/interop/authlib_flow.py).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::*;
use latchkey_core::admin::NewClient;
use latchkey_core::store::SigningAlg;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreJwsSigningAlgorithm, CoreProviderMetadata, CoreUserInfoClaims,
};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    RedirectUrl, Scope, TokenResponse,
};

/// The browser's part: open the URL, log in, allow; return the redirect's query.
async fn user_agrees(s: &TestServer, url: &str) -> std::collections::HashMap<String, String> {
    let b = s.browser();
    let page = b.get(url).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let mut res = b.submit_login(&s.base, &page.body, "alice", PASSWORD).await;
    if res.location().starts_with("/consent") {
        let consent = b.get(&s.url(&res.location())).await;
        res = b.submit_consent(&s.base, &consent.body, "allow").await;
    }
    res.redirect_query()
}

#[tokio::test]
async fn the_openidconnect_crate_runs_the_code_flow_for_every_signing_algorithm() {
    let s = TestServer::start().await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let metadata = CoreProviderMetadata::discover_async(IssuerUrl::new(s.base.clone()).unwrap(), &http).await.unwrap();
    for (alg, jws) in [
        (SigningAlg::RS256, CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256),
        (SigningAlg::ES256, CoreJwsSigningAlgorithm::EcdsaP256Sha256),
        (SigningAlg::EdDSA, CoreJwsSigningAlgorithm::EdDsa),
    ] {
        let id = format!("oidc-{}", alg.as_str().to_lowercase());
        s.add(NewClient { id_token_alg: alg, ..NewClient::public(&id, "OIDC app", vec![REDIRECT.into()]) }).await;
        let client = CoreClient::from_provider_metadata(metadata.clone(), ClientId::new(id.clone()), None)
            .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).unwrap());
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = client
            .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
            .add_scope(Scope::new("profile".into()))
            .add_scope(Scope::new("email".into()))
            .set_pkce_challenge(challenge)
            .url();
        let q = user_agrees(&s, url.as_str()).await;
        assert_eq!(&q["state"], state.secret());
        let tokens = client
            .exchange_code(AuthorizationCode::new(q["code"].clone()))
            .unwrap()
            .set_pkce_verifier(verifier)
            .request_async(&http)
            .await
            .unwrap();

        // The id_token: signature (against the discovered JWKS), iss, aud, exp, nonce, at_hash.
        let id_token = tokens.id_token().expect("id_token");
        let id_verifier = client.id_token_verifier().set_allowed_algs(vec![jws.clone()]);
        let claims = id_token.claims(&id_verifier, &nonce).unwrap();
        assert_eq!(id_token.signing_alg().unwrap(), &jws);
        let expected = claims.access_token_hash().expect("at_hash");
        let actual = AccessTokenHash::from_token(
            tokens.access_token(),
            id_token.signing_alg().unwrap(),
            id_token.signing_key(&id_verifier).unwrap(),
        )
        .unwrap();
        assert_eq!(&actual, expected);
        // A wrong nonce is caught by the library.
        assert!(id_token.claims(&id_verifier, &Nonce::new("other".into())).is_err());

        let info: CoreUserInfoClaims =
            client.user_info(tokens.access_token().clone(), None).unwrap().request_async(&http).await.unwrap();
        assert_eq!(info.subject(), claims.subject());
        assert_eq!(info.email().unwrap().as_str(), "alice@example.com");
        assert_eq!(info.preferred_username().unwrap().as_str(), "alice");

        let refreshed =
            client.exchange_refresh_token(tokens.refresh_token().unwrap()).unwrap().request_async(&http).await.unwrap();
        assert_ne!(refreshed.refresh_token().unwrap().secret(), tokens.refresh_token().unwrap().secret());
        let refreshed_id = refreshed.id_token().expect("id_token on refresh");
        // OpenID Connect Core §12.2: same sub, no nonce check needed on refresh.
        let c2 = refreshed_id.claims(&id_verifier, |_: Option<&Nonce>| Ok(())).unwrap();
        assert_eq!(c2.subject(), claims.subject());
    }
}

#[tokio::test]
async fn the_oauth2_crate_runs_pkce_refresh_introspection_and_revocation_over_https() {
    use oauth2::basic::BasicClient;
    use oauth2::{
        AuthUrl, ClientSecret, IntrospectionUrl, RevocationUrl, StandardRevocableToken, TokenIntrospectionResponse,
        TokenResponse as _, TokenUrl,
    };
    let s = TestServer::start_tls().await;
    assert!(s.base.starts_with("https://"));
    let secret = s.add_client("backend", true, false).await.unwrap();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .add_root_certificate(s.root.clone().unwrap())
        .build()
        .unwrap();
    let client = BasicClient::new(oauth2::ClientId::new("backend".into()))
        .set_client_secret(ClientSecret::new(secret))
        .set_auth_uri(AuthUrl::new(s.url("/authorize")).unwrap())
        .set_token_uri(TokenUrl::new(s.url("/token")).unwrap())
        .set_redirect_uri(oauth2::RedirectUrl::new(REDIRECT.into()).unwrap())
        .set_introspection_url(IntrospectionUrl::new(s.url("/introspect")).unwrap())
        .set_revocation_url(RevocationUrl::new(s.url("/revoke")).unwrap());
    let (challenge, verifier) = oauth2::PkceCodeChallenge::new_random_sha256();
    let (url, state) = client
        .authorize_url(oauth2::CsrfToken::new_random)
        .add_scope(oauth2::Scope::new("openid".into()))
        .set_pkce_challenge(challenge)
        .url();
    let q = user_agrees(&s, url.as_str()).await;
    assert_eq!(&q["state"], state.secret());
    assert_eq!(q["iss"], s.base);
    let tokens = client
        .exchange_code(oauth2::AuthorizationCode::new(q["code"].clone()))
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .unwrap();
    let refreshed = client.exchange_refresh_token(tokens.refresh_token().unwrap()).request_async(&http).await.unwrap();
    let info = client.introspect(refreshed.access_token()).request_async(&http).await.unwrap();
    assert!(info.active());
    assert_eq!(info.client_id().unwrap().as_str(), "backend");
    assert!(info.scopes().unwrap().iter().any(|sc| sc.as_str() == "openid"));

    let rt = refreshed.refresh_token().unwrap().clone();
    client.revoke_token(StandardRevocableToken::RefreshToken(rt.clone())).unwrap().request_async(&http).await.unwrap();
    assert!(client.exchange_refresh_token(&rt).request_async(&http).await.is_err(), "revoked");
    let info = client.introspect(refreshed.access_token()).request_async(&http).await.unwrap();
    assert!(!info.active(), "revoking the refresh token ended the grant's access tokens");
}

#[tokio::test]
async fn an_https_issuer_gets_host_prefixed_secure_cookies() {
    let s = TestServer::start_tls().await;
    let b = s.browser();
    let page = b.get(&s.authorize_url("spa", &latchkey_proto::CodeVerifier::generate(), "")).await;
    let res = b.submit_login(&s.base, &page.body, "alice", PASSWORD).await;
    let cookies: Vec<String> = page
        .headers
        .get_all("set-cookie")
        .iter()
        .chain(res.headers.get_all("set-cookie").iter())
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert!(cookies.iter().any(|c| c.starts_with("__Host-latchkey_session=")), "{cookies:?}");
    for c in &cookies {
        assert!(
            c.starts_with("__Host-") && c.contains("Secure") && c.contains("Path=/") && c.contains("HttpOnly"),
            "{c}"
        );
    }
}

#[tokio::test]
async fn python_authlib_runs_the_flow_and_a_refresh() {
    let ok = Command::new("python3").args(["-c", "import authlib, requests"]).status().is_ok_and(|s| s.success());
    if !ok {
        assert!(std::env::var_os("CI").is_none(), "CI must have authlib (pip install authlib requests)");
        eprintln!("SKIPPED: python3 with authlib is not installed; `pip install authlib requests` to run this test");
        return;
    }
    let s = TestServer::start().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/interop/authlib_flow.py");
    let out = tokio::process::Command::new("python3")
        .args([script, &s.base, "spa", REDIRECT, "alice", PASSWORD])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("authlib: flow ok") && stdout.contains("authlib: refresh ok"), "{stdout}");
}
