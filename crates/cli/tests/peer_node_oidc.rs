//! The client side against a second, independent provider: node-oidc-provider
//! (tests/peers/node-oidc), started on 127.0.0.1 by the test, signed in through its own HTML
//! pages. It proves that `latchkey-client`, `latchkey login/token/logout` and the introspection
//! mode of `latchkey-resource` follow the RFCs rather than Latchkey's habits.
//!
//! Outside CI, skipped with a message when node or the peer's npm packages are missing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod rp;

use std::time::Duration;

use latchkey_client::{Client, Error, LoopbackListener, TokenSet, TokenTypeHint, unix_now};
use latchkey_proto::{ClientId, ClientSecret, Scope};
use latchkey_resource::{Refusal, TokenError, Verifier};
use rp::{Cli, NodePeer, sign_in};

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
    client.revoke(rt2.expose_secret(), TokenTypeHint::RefreshToken).await.unwrap();
    let e = client.refresh(&rt2, None, &tokens.scope, None, unix_now()).await.unwrap_err();
    assert!(matches!(&e, Error::Endpoint { error, .. } if error == "invalid_grant"), "{e}");
    // Revoking the access token is seen at once by introspection.
    client.revoke(fresh.access_token.expose_secret(), TokenTypeHint::AccessToken).await.unwrap();
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
}
