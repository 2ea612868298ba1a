//! Attacks on issued tokens, each performed against a real server: replaying a redeemed code to
//! revoke a victim's grant, harvesting a refresh token's grace-window reply, introspecting other
//! clients' tokens, trusting introspection after the session ended, passing a refresh token off as
//! an access token, and minting client-credentials tokens whose `sub` names a user.
//! (Security review of December 2026, findings 13, 14, 15, 18, 19c and 19m.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use latchkey_core::admin::NewClient;
use latchkey_core::store::{ClientKind, ClientRecord, GrantType};
use latchkey_proto::{ClientId, CodeVerifier, RedirectUri, Scope, TokenHash};
use latchkey_resource::{Refusal, TokenError, Verifier};
use serde_json::{Value, json};

fn desc(b: &Value) -> String {
    b["error_description"].as_str().unwrap_or_default().to_owned()
}

/// The victim's tokens still work: userinfo takes the access token, and the refresh token rotates.
async fn assert_alive(s: &TestServer, client_id: &str, t: &Value) {
    assert_eq!(s.userinfo(t["access_token"].as_str().unwrap()).await.status(), 200, "access token revoked");
    let (st, b) = s.refresh(client_id, t["refresh_token"].as_str().unwrap(), None).await;
    assert_eq!(st, 200, "refresh token revoked: {b}");
}

/// A code replay, as whoever found the code in a history or a log would send it.
async fn replay(
    s: &TestServer,
    code: &str,
    client_id: &str,
    redirect_uri: &str,
    verifier: Option<&str>,
) -> (u16, Value) {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
    ];
    if let Some(v) = verifier {
        form.push(("code_verifier", v));
    }
    let (st, b, _) = s.token(&form).await;
    (st, b)
}

// Finding 13: a redeemed code replayed by anyone revoked the victim's grant.

#[tokio::test]
async fn a_redeemed_code_replayed_by_another_client_revokes_nothing() {
    let s = TestServer::start().await;
    s.add_client("rtest", false, false).await;
    let v = CodeVerifier::generate();
    let (_, code) = s.code_for("spa", &v).await;
    let (st, victim) = s.exchange("spa", &code, &v).await;
    assert_eq!(st, 200, "{victim}");

    // The review's request: another public client, no verifier, any redirect_uri.
    let (st, b) = replay(&s, &code, "rtest", "https://app.example/cb", None).await;
    assert_eq!((st, b["error"].as_str()), (400, Some("invalid_grant")), "{b}");
    assert!(desc(&b).contains("another client"), "{b}");
    // The victim's own public client_id is no secret either: without the PKCE verifier, or with the
    // wrong one, or with another redirect_uri, the replay is refused and revokes nothing.
    let (st, b) = replay(&s, &code, "spa", REDIRECT, None).await;
    assert_eq!((st, b["error"].as_str()), (400, Some("invalid_request")), "{b}");
    let wrong = CodeVerifier::generate();
    let (st, b) = replay(&s, &code, "spa", REDIRECT, Some(wrong.expose_secret())).await;
    assert_eq!((st, b["error"].as_str()), (400, Some("invalid_grant")), "{b}");
    assert!(desc(&b).contains("code_verifier does not match"), "{b}");
    let (st, b) = replay(&s, &code, "spa", "http://127.0.0.1:8765/other", Some(v.expose_secret())).await;
    assert_eq!(st, 400, "{b}");
    let codes = s.store.audit_events(None, None, 100).await.unwrap();
    assert!(!codes.iter().any(|e| e.event == "code_replay"), "no replay was acted on");

    assert_alive(&s, "spa", &victim).await;
}

#[tokio::test]
async fn a_burst_of_simultaneous_code_replays_without_the_verifier_revokes_nothing() {
    let s = Arc::new(TestServer::start().await);
    s.add_client("rtest", false, false).await;
    let v = CodeVerifier::generate();
    let (_, code) = s.code_for("spa", &v).await;
    let (st, victim) = s.exchange("spa", &code, &v).await;
    assert_eq!(st, 200);
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let (s, code) = (s.clone(), code.clone());
            tokio::spawn(async move {
                let client = if i % 2 == 0 { "rtest" } else { "spa" };
                replay(&s, &code, client, REDIRECT, None).await
            })
        })
        .collect();
    for t in tasks {
        let (st, b) = t.await.unwrap();
        assert_eq!(st, 400, "{b}");
    }
    assert_alive(&s, "spa", &victim).await;
}

#[tokio::test]
async fn a_replay_by_the_codes_own_client_revokes_only_within_the_codes_lifetime() {
    let s = TestServer::start().await;
    // Within the lifetime, the code's own client with its verifier: RFC 6749 §4.1.2 revocation.
    let v = CodeVerifier::generate();
    let (_, code) = s.code_for("spa", &v).await;
    let (_, first) = s.exchange("spa", &code, &v).await;
    let (st, b) = s.exchange("spa", &code, &v).await;
    assert_eq!(st, 400);
    assert!(desc(&b).contains("already used") && desc(&b).contains("revoked"), "{b}");
    assert_eq!(s.userinfo(first["access_token"].as_str().unwrap()).await.status(), 401);

    // After it: the same complete request revokes nothing (the code may have sat in a history).
    let v = CodeVerifier::generate();
    let (_, code) = s.code_for("spa", &v).await;
    let (_, victim) = s.exchange("spa", &code, &v).await;
    s.advance(61);
    let (st, b) = s.exchange("spa", &code, &v).await;
    assert_eq!((st, b["error"].as_str()), (400, Some("invalid_grant")), "{b}");
    assert!(desc(&b).contains("expired"), "{b}");
    assert_alive(&s, "spa", &victim).await;
}

// Finding 14: the grace window handed the live successor to any request with the spent token.

#[tokio::test]
async fn a_grace_window_retry_for_another_scope_gets_nothing_and_revokes_nothing() {
    let s = TestServer::start().await;
    let (_, t) = s.tokens_for("spa").await;
    let r0 = t["refresh_token"].as_str().unwrap();
    let (st, first) = s.refresh("spa", r0, None).await;
    assert_eq!(st, 200);
    s.advance(3);
    // The review's replay: the spent token with a narrower scope, 3 s later. It used to get the
    // first use's reply, live successor included, with the broader scope.
    let (st, b) = s.refresh("spa", r0, Some("openid")).await;
    assert_eq!((st, b["error"].as_str()), (400, Some("invalid_grant")), "{b}");
    assert!(desc(&b).contains("another scope"), "{b}");
    assert!(b.get("refresh_token").is_none());
    // A true retry of the first request still gets the same reply (two tabs, a lost response)…
    let (st, retry) = s.refresh("spa", r0, None).await;
    assert_eq!((st, &retry), (200, &first));
    // …and nothing was revoked: the successor rotates as usual.
    let (st, b) = s.refresh("spa", first["refresh_token"].as_str().unwrap(), None).await;
    assert_eq!(st, 200, "{b}");

    // The other way round: a first use that narrowed, and a retry that does not.
    let (_, t) = s.tokens_for("spa").await;
    let r0 = t["refresh_token"].as_str().unwrap();
    let (st, narrowed) = s.refresh("spa", r0, Some("openid")).await;
    assert_eq!((st, narrowed["scope"].as_str()), (200, Some("openid")));
    let (st, b) = s.refresh("spa", r0, None).await;
    assert_eq!((st, b["error"].as_str()), (400, Some("invalid_grant")), "{b}");
    // The same narrowed request is a retry.
    let (st, retry) = s.refresh("spa", r0, Some("openid")).await;
    assert_eq!((st, &retry), (200, &narrowed));
}

#[tokio::test]
async fn the_grace_window_is_5_seconds_by_default() {
    let s = TestServer::start().await;
    assert_eq!(s.provider.config.refresh_grace, 5);
    let (_, t) = s.tokens_for("spa").await;
    let r0 = t["refresh_token"].as_str().unwrap();
    let (_, next) = s.refresh("spa", r0, None).await;
    s.advance(6);
    let (st, b) = s.refresh("spa", r0, None).await;
    assert_eq!(st, 400);
    assert!(desc(&b).contains("reused"), "{b}");
    assert_eq!(s.refresh("spa", next["refresh_token"].as_str().unwrap(), None).await.0, 400, "family revoked");
}

// Finding 15: every confidential client could introspect every default-audience access token.

#[tokio::test]
async fn an_ordinary_confidential_client_cannot_introspect_other_clients_tokens() {
    let s = TestServer::start().await;
    let backend = s.add_client("backend", true, false).await.unwrap();
    let api = s.add(NewClient { resource_server: true, ..NewClient::public("api", "API", vec![]) }).await.unwrap();
    let other_api = s
        .add(NewClient {
            resource_server: true,
            audiences: vec!["https://other.example".into()],
            ..NewClient::public("other-api", "Other API", vec![])
        })
        .await
        .unwrap();
    let (_, t) = s.tokens_for("spa").await;
    let at = t["access_token"].as_str().unwrap();

    // The review's request: a web-app client with no audience introspects the SPA's token.
    let (st, v) = s.post_form("/introspect", Some(("backend", &backend)), &[("token", at)]).await;
    assert_eq!((st, &v), (200, &json!({"active": false})), "no claims of another client's token");
    // A resource server for the token's audience sees it; one for another audience does not.
    let (_, v) = s.post_form("/introspect", Some(("api", &api)), &[("token", at)]).await;
    assert_eq!((v["active"].as_bool(), v["client_id"].as_str()), (Some(true), Some("spa")), "{v}");
    let (_, v) = s.post_form("/introspect", Some(("other-api", &other_api)), &[("token", at)]).await;
    assert_eq!(v, json!({"active": false}));

    // The token's own client may introspect it.
    let verifier = CodeVerifier::generate();
    let (_, code) = s.code_for("backend", &verifier).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier.expose_secret()),
    ];
    let (st, own) = s.post_form("/token", Some(("backend", &backend)), &form).await;
    assert_eq!(st, 200, "{own}");
    let own_at = own["access_token"].as_str().unwrap();
    let (_, v) = s.post_form("/introspect", Some(("backend", &backend)), &[("token", own_at)]).await;
    assert_eq!((v["active"].as_bool(), v["client_id"].as_str()), (Some(true), Some("backend")), "{v}");
}

#[tokio::test]
async fn a_client_credentials_client_cannot_introspect_tokens_for_its_audience() {
    let s = TestServer::start().await;
    let aud = "https://api.example";
    let new_service = |id: &str| NewClient {
        confidential: true,
        client_credentials: true,
        extra_scopes: vec!["api:read".into()],
        audiences: vec![aud.into()],
        ..NewClient::public(id, id, vec![])
    };
    let svc = s.add(new_service("svc")).await.unwrap();
    let svc2 = s.add(new_service("svc2")).await.unwrap();
    let (_, t) = s.post_form("/token", Some(("svc", &svc)), &[("grant_type", "client_credentials")]).await;
    let at = t["access_token"].as_str().unwrap();
    // Registered for the same audience, but not a resource server and not the token's client.
    let (_, v) = s.post_form("/introspect", Some(("svc2", &svc2)), &[("token", at)]).await;
    assert_eq!(v, json!({"active": false}));
    let (_, v) = s.post_form("/introspect", Some(("svc", &svc)), &[("token", at)]).await;
    assert_eq!(v["active"], true, "its own token: {v}");
}

// Finding 19c: introspection said active for a refresh token that /token refuses.

#[tokio::test]
async fn introspection_agrees_with_the_token_endpoint_once_the_session_has_ended() {
    let s = TestServer::start().await;
    let backend = s.add_client("backend", true, false).await.unwrap();
    let verifier = CodeVerifier::generate();
    let (_, code) = s.code_for("backend", &verifier).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier.expose_secret()),
    ];
    let (_, t) = s.post_form("/token", Some(("backend", &backend)), &form).await;
    let rt = t["refresh_token"].as_str().unwrap();
    let form = [("token", rt)];
    let introspect = || s.post_form("/introspect", Some(("backend", &backend)), &form);
    let (_, v) = introspect().await;
    assert_eq!((v["active"].as_bool(), v["token_type"].as_str()), (Some(true), Some("refresh_token")), "{v}");

    // The login session ends (its 24 h lifetime); the grant has no offline_access.
    s.advance(24 * 3600 + 1);
    let (_, v) = introspect().await;
    assert_eq!(v, json!({"active": false}), "introspection must agree with /token");
    let form = [("grant_type", "refresh_token"), ("refresh_token", rt)];
    let (st, b) = s.post_form("/token", Some(("backend", &backend)), &form).await;
    assert_eq!(st, 400);
    assert!(desc(&b).contains("login session"), "{b}");
}

// Finding 18: an API in introspection mode accepted a refresh token as a bearer access token.

#[tokio::test]
async fn an_api_in_introspection_mode_refuses_a_refresh_token_as_its_bearer_token() {
    let s = TestServer::start().await;
    // A backend-for-frontend: a confidential web client whose credentials the API also uses to
    // introspect. It receives refresh tokens, and may introspect them.
    let bff = s.add_client("bff", true, false).await.unwrap();
    let verifier = CodeVerifier::generate();
    let (_, code) = s.code_for("bff", &verifier).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier.expose_secret()),
    ];
    let (_, t) = s.post_form("/token", Some(("bff", &bff)), &form).await;
    let api = Verifier::builder(&s.base)
        .introspection("bff", latchkey_proto::ClientSecret::new(bff.clone()))
        .introspection_cache(Duration::ZERO)
        .build()
        .unwrap();
    // The access token is accepted…
    let c = api.verify(t["access_token"].as_str().unwrap()).await.unwrap();
    assert_eq!(c.client_id, "bff");
    // …the refresh token is not, although the issuer says it is active.
    let rt = t["refresh_token"].as_str().unwrap();
    let (_, v) = s.post_form("/introspect", Some(("bff", &bff)), &[("token", rt)]).await;
    assert_eq!(v["active"], true);
    let e = api.verify(rt).await.unwrap_err();
    assert_eq!(e, Refusal::InvalidToken(TokenError::NotAnAccessToken("refresh_token".into())));
    assert!(e.to_string().contains("not a Bearer or DPoP access token"), "{e}");
}

// Finding 19m: a client-credentials token's `sub` (the client id) could name a user.

#[tokio::test]
async fn a_client_id_cannot_be_a_users_subject_identifier() {
    let s = TestServer::start().await;
    let alice = s.store.user_by_username("alice").await.unwrap().unwrap();
    let err = latchkey_core::admin::add_client(
        s.store.as_ref(),
        NewClient { confidential: true, client_credentials: true, ..NewClient::public(&alice.id, "impostor", vec![]) },
        0,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("user's subject identifier"), "{err}");
    assert!(s.store.client(&ClientId::parse(&alice.id).unwrap()).await.unwrap().is_none());

    // A client registered before the check (or imported with `db copy`) gets no token either.
    let secret = "a-secret-of-the-impostor-client-0123456789";
    s.store
        .insert_client(&ClientRecord {
            client_id: ClientId::parse(&alice.id).unwrap(),
            name: "impostor".into(),
            kind: ClientKind::Confidential { secret_hash: TokenHash::of(secret).as_str().to_owned() },
            redirect_uris: Vec::<RedirectUri>::new(),
            grant_types: vec![GrantType::ClientCredentials],
            allowed_scope: Scope::parse("api:read").unwrap(),
            first_party: false,
            created_at: 0,
            id_token_signed_response_alg: Default::default(),
            post_logout_redirect_uris: vec![],
            audiences: vec![],
            origin: Default::default(),
            backchannel_logout: None,
            protection: Default::default(),
            second_factor: Default::default(),
        })
        .await
        .unwrap();
    let (st, b) = s.post_form("/token", Some((&alice.id, secret)), &[("grant_type", "client_credentials")]).await;
    assert_eq!((st, b["error"].as_str()), (400, Some("unauthorized_client")), "{b}");
    assert!(desc(&b).contains("RFC 9068 §5"), "{b}");
}
