//! The token lifecycle over HTTP: refresh families with a grace window and reuse detection,
//! revocation (RFC 7009), introspection (RFC 7662), client credentials, and key rotation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::*;
use latchkey_core::admin::NewClient;
use latchkey_core::store::SigningAlg;

fn desc(b: &serde_json::Value) -> String {
    b["error_description"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_retry_within_the_grace_window_gets_the_same_successor() {
    let s = TestServer::start().await;
    let (_, t) = s.tokens_for("spa").await;
    let r0 = t["refresh_token"].as_str().unwrap();
    let (st, first) = s.refresh("spa", r0, None).await;
    assert_eq!(st, 200);
    s.advance(s.provider.config.refresh_grace as i64);
    let (st, retry) = s.refresh("spa", r0, None).await;
    assert_eq!(st, 200, "{retry}");
    assert_eq!(retry, first, "idempotent: the very same successor tokens");
    // The successor works, once, as usual.
    let (st, _) = s.refresh("spa", first["refresh_token"].as_str().unwrap(), None).await;
    assert_eq!(st, 200);
}

#[tokio::test]
async fn concurrent_uses_of_one_refresh_token_all_get_the_same_successor() {
    let s = Arc::new(TestServer::start().await);
    let (_, t) = s.tokens_for("spa").await;
    let r0 = t["refresh_token"].as_str().unwrap().to_owned();
    let tasks: Vec<_> = (0..24)
        .map(|_| {
            let (s, r0) = (s.clone(), r0.clone());
            tokio::spawn(async move { s.refresh("spa", &r0, None).await })
        })
        .collect();
    let mut bodies = Vec::new();
    for t in tasks {
        let (st, b) = t.await.unwrap();
        assert_eq!(st, 200, "no request is refused or logged out: {b}");
        bodies.push(b);
    }
    assert!(bodies.iter().all(|b| *b == bodies[0]), "one successor for all");
    let (st, _) = s.refresh("spa", bodies[0]["refresh_token"].as_str().unwrap(), None).await;
    assert_eq!(st, 200);
}

#[tokio::test]
async fn a_reuse_after_the_grace_window_revokes_the_whole_family() {
    let s = TestServer::start().await;
    let (_, t) = s.tokens_for("spa").await;
    let r0 = t["refresh_token"].as_str().unwrap();
    let (_, next) = s.refresh("spa", r0, None).await;
    s.advance(11);
    let (st, b) = s.refresh("spa", r0, None).await;
    assert_eq!(st, 400);
    assert_eq!(b["error"], "invalid_grant");
    assert!(desc(&b).contains("reused"), "{b}");
    // The thief's copy and the legitimate successor are both dead, and so are the access tokens.
    let (st, b) = s.refresh("spa", next["refresh_token"].as_str().unwrap(), None).await;
    assert_eq!(st, 400);
    assert!(desc(&b).contains("revoked"), "{b}");
    for at in [&t["access_token"], &next["access_token"]] {
        assert_eq!(s.userinfo(at.as_str().unwrap()).await.status(), 401);
    }
}

#[tokio::test]
async fn a_zero_grace_window_treats_any_second_use_as_reuse() {
    let s = TestServer::start_with(|c| c.refresh_grace = 0).await;
    let (_, t) = s.tokens_for("spa").await;
    let r0 = t["refresh_token"].as_str().unwrap();
    let (_, next) = s.refresh("spa", r0, None).await;
    let (st, b) = s.refresh("spa", r0, None).await;
    assert_eq!(st, 400);
    assert!(desc(&b).contains("reused"));
    assert_eq!(s.refresh("spa", next["refresh_token"].as_str().unwrap(), None).await.0, 400);
}

#[tokio::test]
async fn idle_and_absolute_lifetimes() {
    let s = TestServer::start_with(|c| {
        c.refresh_token_idle_ttl = 100;
        c.refresh_token_ttl = 250;
    })
    .await;
    let (_, t) = s.tokens_for("spa").await;
    s.advance(90);
    let (st, t2) = s.refresh("spa", t["refresh_token"].as_str().unwrap(), None).await;
    assert_eq!(st, 200, "used within the idle lifetime");
    s.advance(90);
    let (st, t3) = s.refresh("spa", t2["refresh_token"].as_str().unwrap(), None).await;
    assert_eq!(st, 200, "each use restarts the idle clock");
    s.advance(101);
    let (st, b) = s.refresh("spa", t3["refresh_token"].as_str().unwrap(), None).await;
    assert_eq!(st, 400);
    assert!(desc(&b).contains("absolute lifetime") || desc(&b).contains("idle lifetime"), "{b}");

    let (_, t) = s.tokens_for("spa").await;
    s.advance(101);
    let (_, b) = s.refresh("spa", t["refresh_token"].as_str().unwrap(), None).await;
    assert!(desc(&b).contains("idle lifetime"), "{b}");
}

#[tokio::test]
async fn revoking_a_refresh_token_ends_its_family_and_access_tokens() {
    let s = TestServer::start().await;
    let (_, t) = s.tokens_for("spa").await;
    let (st, _) = s
        .post_form(
            "/revoke",
            None,
            &[
                ("token", t["refresh_token"].as_str().unwrap()),
                ("token_type_hint", "refresh_token"),
                ("client_id", "spa"),
            ],
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(s.refresh("spa", t["refresh_token"].as_str().unwrap(), None).await.0, 400);
    assert_eq!(s.userinfo(t["access_token"].as_str().unwrap()).await.status(), 401);
}

#[tokio::test]
async fn revoking_an_access_token_stops_only_that_token() {
    let s = TestServer::start().await;
    let (_, t) = s.tokens_for("spa").await;
    let at = t["access_token"].as_str().unwrap();
    // No hint: the server recognises a JWT.
    let (st, _) = s.post_form("/revoke", None, &[("token", at), ("client_id", "spa")]).await;
    assert_eq!(st, 200);
    let res = s.userinfo(at).await;
    assert_eq!(res.status(), 401);
    assert!(res.headers()["www-authenticate"].to_str().unwrap().contains("revoked"));
    let (st, next) = s.refresh("spa", t["refresh_token"].as_str().unwrap(), None).await;
    assert_eq!(st, 200, "the refresh token lives on");
    assert_eq!(s.userinfo(next["access_token"].as_str().unwrap()).await.status(), 200);
}

#[tokio::test]
async fn revocation_refusals() {
    let s = TestServer::start().await;
    s.add_client("other", false, false).await;
    let (_, t) = s.tokens_for("spa").await;
    // Unknown or malformed tokens: 200 (RFC 7009 §2.2).
    for token in ["nonsense", "a.b.c"] {
        assert_eq!(s.post_form("/revoke", None, &[("token", token), ("client_id", "spa")]).await.0, 200);
    }
    // Another client's token: refused, and still valid.
    for token in [t["refresh_token"].as_str().unwrap(), t["access_token"].as_str().unwrap()] {
        let (st, b) = s.post_form("/revoke", None, &[("token", token), ("client_id", "other")]).await;
        assert_eq!((st, b["error"].as_str().unwrap()), (400, "unauthorized_client"), "{b}");
    }
    assert_eq!(s.userinfo(t["access_token"].as_str().unwrap()).await.status(), 200);
    // Missing token; unauthenticated confidential client.
    let (st, b) = s.post_form("/revoke", None, &[("client_id", "spa")]).await;
    assert_eq!((st, b["error"].as_str().unwrap()), (400, "invalid_request"));
    let secret = s.add_client("backend", true, false).await.unwrap();
    let (st, b) = s.post_form("/revoke", Some(("backend", "wrong")), &[("token", "x")]).await;
    assert_eq!((st, b["error"].as_str().unwrap()), (401, "invalid_client"));
    assert_eq!(s.post_form("/revoke", Some(("backend", &secret)), &[("token", "x")]).await.0, 200);
}

#[tokio::test]
async fn introspection_for_authenticated_resource_servers() {
    let s = TestServer::start().await;
    let rs_secret =
        s.add(NewClient { resource_server: true, ..NewClient::public("api", "API", vec![]) }).await.unwrap();
    let other_secret = s
        .add(NewClient {
            resource_server: true,
            audiences: vec!["https://other.example".into()],
            ..NewClient::public("other-api", "Other", vec![])
        })
        .await
        .unwrap();
    let (_, t) = s.tokens_for("spa").await;
    let at = t["access_token"].as_str().unwrap();
    let rs = Some(("api", rs_secret.as_str()));

    let (st, v) = s.post_form("/introspect", rs, &[("token", at)]).await;
    assert_eq!(st, 200);
    assert_eq!(v["active"], true);
    for field in ["scope", "client_id", "sub", "exp", "iat", "iss", "aud", "jti", "token_type"] {
        assert!(v.get(field).is_some(), "{field} in {v}");
    }
    assert_eq!(v["client_id"], "spa");
    assert_eq!(v["scope"], "email openid profile");

    // Wrong audience for this resource server.
    let (_, v) = s.post_form("/introspect", Some(("other-api", &other_secret)), &[("token", at)]).await;
    assert_eq!(v, serde_json::json!({"active": false}));
    // Unknown, then a refresh token of another client: inactive.
    assert_eq!(s.post_form("/introspect", rs, &[("token", "garbage")]).await.1["active"], false);
    let (_, v) = s
        .post_form(
            "/introspect",
            rs,
            &[("token", t["refresh_token"].as_str().unwrap()), ("token_type_hint", "refresh_token")],
        )
        .await;
    assert_eq!(v["active"], false);
    // Unauthenticated callers get nothing (RFC 7662 §4).
    let (st, b) = s.post_form("/introspect", None, &[("token", at), ("client_id", "spa")]).await;
    assert_eq!((st, b["error"].as_str().unwrap()), (401, "invalid_client"));
    assert!(desc(&b).contains("introspection requires client authentication"));
    // Revoked, then expired.
    s.post_form("/revoke", None, &[("token", at), ("client_id", "spa")]).await;
    assert_eq!(s.post_form("/introspect", rs, &[("token", at)]).await.1["active"], false);
    let (_, t2) = s.tokens_for("spa").await;
    s.advance(601);
    assert_eq!(
        s.post_form("/introspect", rs, &[("token", t2["access_token"].as_str().unwrap())]).await.1["active"],
        false
    );
}

#[tokio::test]
async fn a_confidential_client_introspects_its_own_refresh_token() {
    let s = TestServer::start().await;
    let secret = s.add_client("backend", true, false).await.unwrap();
    let v = latchkey_proto::CodeVerifier::generate();
    let (_, code) = s.code_for("backend", &v).await;
    let (st, t) = s
        .post_form(
            "/token",
            Some(("backend", &secret)),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", v.expose_secret()),
            ],
        )
        .await;
    assert_eq!(st, 200, "{t}");
    let (_, info) = s
        .post_form("/introspect", Some(("backend", &secret)), &[("token", t["refresh_token"].as_str().unwrap())])
        .await;
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["token_type"], "refresh_token");
    assert_eq!(info["client_id"], "backend");
}

#[tokio::test]
async fn client_credentials_with_audience_and_scope_limits() {
    let s = TestServer::start().await;
    let secret = s
        .add(NewClient {
            confidential: true,
            client_credentials: true,
            extra_scopes: vec!["api:read".into(), "api:write".into()],
            audiences: vec!["https://api.example".into()],
            ..NewClient::public("svc", "Service", vec![])
        })
        .await
        .unwrap();
    let rs_secret = s
        .add(NewClient {
            resource_server: true,
            audiences: vec!["https://api.example".into()],
            ..NewClient::public("api", "API", vec![])
        })
        .await
        .unwrap();
    let svc = Some(("svc", secret.as_str()));
    let (st, t) = s.post_form("/token", svc, &[("grant_type", "client_credentials"), ("scope", "api:read")]).await;
    assert_eq!(st, 200, "{t}");
    assert!(t.get("refresh_token").is_none() && t.get("id_token").is_none());
    let (h, c) = jwt_parts(t["access_token"].as_str().unwrap());
    assert_eq!(h["typ"], "at+jwt");
    assert_eq!(c["sub"], "svc");
    assert_eq!(c["client_id"], "svc");
    assert_eq!(c["aud"], "https://api.example");
    assert_eq!(c["scope"], "api:read");
    let (_, info) =
        s.post_form("/introspect", Some(("api", &rs_secret)), &[("token", t["access_token"].as_str().unwrap())]).await;
    assert_eq!(info["active"], true, "{info}");

    let (st, b) = s.post_form("/token", svc, &[("grant_type", "client_credentials"), ("scope", "api:admin")]).await;
    assert_eq!((st, b["error"].as_str().unwrap()), (400, "invalid_scope"));
    let (st, b) =
        s.post_form("/token", svc, &[("grant_type", "client_credentials"), ("audience", "https://evil.example")]).await;
    assert_eq!((st, b["error"].as_str().unwrap()), (400, "invalid_target"));
    let (st, b) = s.post_form("/token", None, &[("grant_type", "client_credentials"), ("client_id", "spa")]).await;
    assert_eq!((st, b["error"].as_str().unwrap()), (400, "unauthorized_client"), "{b}");
    let (st, _) = s.post_form("/token", Some(("svc", "wrong")), &[("grant_type", "client_credentials")]).await;
    assert_eq!(st, 401);
}

#[tokio::test]
async fn id_tokens_are_signed_with_the_clients_algorithm() {
    let s = TestServer::start().await;
    let jwks: serde_json::Value = reqwest::get(s.url("/jwks.json")).await.unwrap().json().await.unwrap();
    for alg in [SigningAlg::RS256, SigningAlg::ES256, SigningAlg::EdDSA] {
        let id = format!("app-{}", alg.as_str().to_lowercase());
        s.add(NewClient { id_token_alg: alg, ..NewClient::public(&id, "App", vec![REDIRECT.into()]) }).await;
        let (_, t) = s.tokens_for(&id).await;
        let (h, c) = jwt_parts(t["id_token"].as_str().unwrap());
        assert_eq!(h["alg"], alg.as_str());
        assert_eq!(c["aud"], id.as_str());
        for claim in ["iss", "sub", "exp", "iat", "auth_time", "at_hash", "azp", "sid"] {
            assert!(c.get(claim).is_some(), "{claim}");
        }
        let key = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == h["kid"]).expect("kid published");
        assert_eq!(key["alg"], alg.as_str());
        // The access token's algorithm does not depend on the client.
        assert_eq!(jwt_parts(t["access_token"].as_str().unwrap()).0["alg"], "ES256");
    }
}

#[tokio::test]
async fn rotated_keys_sign_new_tokens_while_old_ones_stay_valid_until_they_expire() {
    let s = TestServer::start().await;
    let (_, before) = s.tokens_for("spa").await;
    let old_kid = jwt_parts(before["access_token"].as_str().unwrap()).0["kid"].clone();
    let now = s.now();
    // ES256 signs access tokens by default.
    latchkey_core::admin::rotate_keys(s.store.as_ref(), &[SigningAlg::ES256], now).await.unwrap();
    assert!(s.provider.reload_keys().await.unwrap());

    let (_, after) = s.tokens_for("spa").await;
    let new_kid = jwt_parts(after["access_token"].as_str().unwrap()).0["kid"].clone();
    assert_ne!(old_kid, new_kid);
    let kids =
        |j: serde_json::Value| j["keys"].as_array().unwrap().iter().map(|k| k["kid"].clone()).collect::<Vec<_>>();
    let jwks = kids(reqwest::get(s.url("/jwks.json")).await.unwrap().json().await.unwrap());
    assert!(jwks.contains(&old_kid) && jwks.contains(&new_kid));
    assert_eq!(s.userinfo(before["access_token"].as_str().unwrap()).await.status(), 200, "old tokens still verify");

    // Once every token the old key signed has expired, it leaves the JWKS.
    s.advance(600 + 61);
    let jwks = kids(reqwest::get(s.url("/jwks.json")).await.unwrap().json().await.unwrap());
    assert!(!jwks.contains(&old_kid));
    assert!(jwks.contains(&new_kid));
}

#[tokio::test]
async fn metadata_advertises_the_lifecycle_endpoints() {
    let s = TestServer::start().await;
    let m: serde_json::Value =
        reqwest::get(s.url("/.well-known/openid-configuration")).await.unwrap().json().await.unwrap();
    assert_eq!(m["revocation_endpoint"], s.url("/revoke"));
    assert_eq!(m["introspection_endpoint"], s.url("/introspect"));
    assert_eq!(m["end_session_endpoint"], s.url("/logout"));
    assert_eq!(m["id_token_signing_alg_values_supported"], serde_json::json!(["RS256", "ES256", "EdDSA"]));
    assert!(m["grant_types_supported"].as_array().unwrap().contains(&"client_credentials".into()));
    let m2: serde_json::Value =
        reqwest::get(s.url("/.well-known/oauth-authorization-server")).await.unwrap().json().await.unwrap();
    assert_eq!(m, m2);
}
