//! The seed's flow end to end over HTTP: authorize, login, consent, code, token, userinfo, refresh.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use latchkey_proto::CodeVerifier;

#[tokio::test]
async fn seed_flow_login_consent_code_token_userinfo_refresh() {
    let s = TestServer::start().await;
    let v = CodeVerifier::generate();
    let b = Browser::new();

    // Step 2-3: the authorization request shows a login page that cannot be framed.
    let page = b.get(&s.authorize_url("spa", &v, "&nonce=n-0S6")).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Sign in") && page.body.contains("App spa"));
    assert_eq!(page.header("x-frame-options"), "DENY");
    assert!(page.header("content-security-policy").contains("frame-ancestors 'none'"));
    assert!(!page.header("x-request-id").is_empty(), "every response carries a request id");

    // Step 4: log in, then consent.
    let res = b.submit_login(&s.base, &page.body, "alice", PASSWORD).await;
    assert_eq!(res.status, 303);
    let set_cookie =
        res.headers.get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect::<Vec<_>>();
    let session = set_cookie.iter().find(|c| c.starts_with("latchkey_session=")).expect("session cookie");
    assert!(session.contains("HttpOnly") && session.contains("SameSite=Lax"), "{session}");
    let consent = b.get(&s.url(&res.location())).await;
    assert_eq!(consent.status, 200);
    for what in ["See your name", "See your email", "alice"] {
        assert!(consent.body.contains(what), "consent page lists {what}");
    }
    let res = b.submit_consent(&s.base, &consent.body, "allow").await;
    assert_eq!(res.status, 303);

    // Step 5: the redirect carries code, state byte for byte, and iss (RFC 9207).
    let q = res.redirect_query();
    assert_eq!(q["state"], "st-1 /?&=");
    assert_eq!(q["iss"], s.base);
    let code = &q["code"];

    // Step 6-7: exchange exactly as the seed writes it.
    let (status, body, headers) = s
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("client_id", "spa"),
            ("code_verifier", v.expose_secret()),
        ])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 600);
    assert_eq!(body["scope"], "email openid profile");
    let access = body["access_token"].as_str().unwrap();
    let (h, c) = jwt_parts(access);
    assert_eq!(h["typ"], "at+jwt", "RFC 9068 §2.1");
    assert_eq!(h["alg"], "ES256", "access tokens default to ES256; id_tokens to RS256");
    assert_eq!(c["iss"], s.base);
    assert_eq!(c["client_id"], "spa");
    assert!(c["jti"].is_string() && c["sub"].is_string() && c["aud"].is_string());
    let (idh, id) = jwt_parts(body["id_token"].as_str().unwrap());
    assert_eq!(idh["alg"], "RS256");
    assert_eq!(id["aud"], "spa");
    assert_eq!(id["nonce"], "n-0S6");
    assert_eq!(id["sub"], c["sub"]);
    // The kid of both tokens is published.
    let jwks: serde_json::Value = reqwest::get(s.url("/jwks.json")).await.unwrap().json().await.unwrap();
    let kids: Vec<_> = jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].clone()).collect();
    assert!(kids.contains(&h["kid"]) && kids.contains(&idh["kid"]));

    // Step 8-9: userinfo with the access token.
    let res = s.userinfo(access).await;
    assert_eq!(res.status(), 200);
    let me: serde_json::Value = res.json().await.unwrap();
    assert_eq!(me["sub"], c["sub"]);
    assert_eq!(me["preferred_username"], "alice");
    assert_eq!(me["name"], "alice Example");
    assert_eq!(me["email"], "alice@example.com");
    assert_eq!(me["email_verified"], false);

    // Refresh: new pair, the old refresh token stops working.
    let r1 = body["refresh_token"].as_str().unwrap();
    let (status, body2) = s.refresh("spa", r1, None).await;
    assert_eq!(status, 200, "{body2}");
    let r2 = body2["refresh_token"].as_str().unwrap();
    assert_ne!(r1, r2);
    assert_ne!(body2["access_token"], body["access_token"]);

    // Narrowing is allowed, widening is not.
    let (status, narrow) = s.refresh("spa", r2, Some("openid")).await;
    assert_eq!(status, 200, "{narrow}");
    assert_eq!(narrow["scope"], "openid");
    let r3 = narrow["refresh_token"].as_str().unwrap();
    let (status, err) = s.refresh("spa", r3, Some("openid api:read")).await;
    assert_eq!(status, 400);
    assert_eq!(err["error"], "invalid_scope");
    assert!(err["error_description"].as_str().unwrap().contains("api:read"));
    // The narrowed token can still get the originally granted scope back.
    let (status, back) = s.refresh("spa", r3, Some("openid email")).await;
    assert_eq!(status, 200, "{back}");
}

#[tokio::test]
async fn a_logged_in_user_goes_straight_through_and_consent_is_remembered() {
    let s = TestServer::start().await;
    // A confidential client (the code is useless without its secret) goes straight through.
    let secret = s.add_client("web", true, false).await.unwrap();
    let (web, _) = s.code_for("web", &CodeVerifier::generate()).await;
    let v = CodeVerifier::generate();
    let res = web.get(&s.authorize_url("web", &v, "")).await;
    assert_eq!(res.status, 302, "session + remembered consent redirect at once: {}", res.body);
    let code = res.redirect_query()["code"].clone();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", v.expose_secret()),
    ];
    assert_eq!(s.post_form("/token", Some(("web", &secret)), &form).await.0, 200);

    // A public client with a loopback redirect (a native app) is asked again, without a login:
    // another local program could have started the request (RFC 8252 §8.6).
    let (b, _) = s.code_for("spa", &CodeVerifier::generate()).await;
    let res = b.get(&s.authorize_url("spa", &v, "")).await;
    assert_eq!(res.status, 200);
    assert!(res.body.contains("Allow access") && !res.body.contains("name=\"password\""), "{}", res.body);

    // prompt=login forces the login page even with a session.
    let res = b.get(&s.authorize_url("spa", &v, "&prompt=login")).await;
    assert_eq!(res.status, 200);
    assert!(res.body.contains("name=\"password\""));
    // prompt=consent shows the consent page again.
    let res = b.get(&s.authorize_url("spa", &v, "&prompt=consent")).await;
    assert_eq!(res.status, 200);
    assert!(res.body.contains("Allow access"));
    // Asking for more than was consented to asks again.
    let more = s.authorize_url("spa", &v, "").replace("scope=openid+profile+email", "scope=openid+api%3Aread");
    let res = b.get(&more).await;
    assert_eq!(res.status, 200);
    assert!(res.body.contains("api:read"));
}

#[tokio::test]
async fn prompt_none_without_a_session_returns_login_required() {
    let s = TestServer::start().await;
    let res = Browser::new().get(&s.authorize_url("spa", &CodeVerifier::generate(), "&prompt=none")).await;
    assert_eq!(res.status, 302);
    let q = res.redirect_query();
    assert_eq!(q["error"], "login_required");
    assert_eq!(q["state"], "st-1 /?&=");
    assert_eq!(q["iss"], s.base);
}

#[tokio::test]
async fn prompt_none_with_a_session_but_no_consent_returns_consent_required() {
    let s = TestServer::start().await;
    s.add_client("other", false, false).await;
    let (b, _) = s.code_for("spa", &CodeVerifier::generate()).await;
    let res = b.get(&s.authorize_url("other", &CodeVerifier::generate(), "&prompt=none")).await;
    assert_eq!(res.redirect_query()["error"], "consent_required");
}

#[tokio::test]
async fn first_party_clients_skip_consent() {
    let s = TestServer::start().await;
    s.add_client("first", false, true).await;
    let b = Browser::new();
    let page = b.get(&s.authorize_url("first", &CodeVerifier::generate(), "")).await;
    let res = b.submit_login(&s.base, &page.body, "alice", PASSWORD).await;
    assert_eq!(res.status, 303);
    assert!(res.redirect_query().contains_key("code"), "no consent page for a first-party client");
}

#[tokio::test]
async fn denying_consent_returns_access_denied() {
    let s = TestServer::start().await;
    let b = Browser::new();
    let page = b.get(&s.authorize_url("spa", &CodeVerifier::generate(), "")).await;
    let res = b.submit_login(&s.base, &page.body, "alice", PASSWORD).await;
    let consent = b.get(&s.url(&res.location())).await;
    let res = b.submit_consent(&s.base, &consent.body, "deny").await;
    let q = res.redirect_query();
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["state"], "st-1 /?&=");
    assert!(!q.contains_key("code"));
}

#[tokio::test]
async fn authorization_request_by_post_form() {
    let s = TestServer::start().await;
    let v = CodeVerifier::generate();
    let url = s.authorize_url("spa", &v, "");
    let query = url.split_once('?').unwrap().1.to_owned();
    let res = Browser::new()
        .http
        .post(s.url("/authorize"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(query)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("name=\"password\""));
}

#[tokio::test]
async fn confidential_clients_authenticate_with_basic_or_post() {
    let s = TestServer::start().await;
    let secret = s.add_client("backend", true, false).await.unwrap();
    // client_secret_basic
    let v = CodeVerifier::generate();
    let (_, code) = s.code_for("backend", &v).await;
    let res = reqwest::Client::new()
        .post(s.url("/token"))
        .basic_auth("backend", Some(&secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", v.expose_secret()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // client_secret_post
    let v = CodeVerifier::generate();
    let (_, code) = s.code_for("backend", &v).await;
    let (status, body, _) = s
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("client_id", "backend"),
            ("client_secret", &secret),
            ("code_verifier", v.expose_secret()),
        ])
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn discovery_documents_publish_what_the_server_does() {
    let s = TestServer::start().await;
    for path in ["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"] {
        let m: serde_json::Value = reqwest::get(s.url(path)).await.unwrap().json().await.unwrap();
        assert_eq!(m["issuer"], s.base);
        assert_eq!(m["code_challenge_methods_supported"], serde_json::json!(["S256"]));
        assert_eq!(m["authorization_response_iss_parameter_supported"], true);
        assert_eq!(m["response_types_supported"], serde_json::json!(["code"]));
        assert_eq!(m["token_endpoint"], s.url("/token"));
        assert_eq!(m["jwks_uri"], s.url("/jwks.json"));
        assert!(m["id_token_signing_alg_values_supported"].as_array().unwrap().contains(&"RS256".into()));
    }
    let jwks: serde_json::Value = reqwest::get(s.url("/jwks.json")).await.unwrap().json().await.unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    let kty: Vec<_> = keys.iter().map(|k| k["kty"].as_str().unwrap()).collect();
    assert!(kty.contains(&"RSA") && kty.contains(&"EC") && kty.contains(&"OKP"), "{kty:?}");
    for k in keys {
        assert!(k.get("d").is_none() && k.get("p").is_none(), "no private key material");
        assert_eq!(k["use"], "sig");
    }
}

#[tokio::test]
async fn cors_is_allowed_only_for_origins_of_registered_redirect_uris() {
    let s = TestServer::start().await;
    let http = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        http.request(reqwest::Method::OPTIONS, s.url("/userinfo"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let ok = preflight("http://127.0.0.1:8765").await.unwrap();
    assert_eq!(ok.status(), 204);
    assert_eq!(ok.headers()["access-control-allow-origin"], "http://127.0.0.1:8765");
    assert!(ok.headers()["access-control-allow-methods"].to_str().unwrap().contains("POST"));
    assert!(ok.headers().get("access-control-allow-credentials").is_none(), "no cookies cross origins");
    let denied = preflight("https://evil.example").await.unwrap();
    assert_eq!(denied.status(), 403);
    assert!(denied.headers().get("access-control-allow-origin").is_none());

    // The actual request: userinfo from the SPA's origin carries the header; from another, not.
    // (`/token`, `/revoke` and `/register` answer any origin: tests/registration.rs.)
    let (_, tokens) = s.tokens_for("spa").await;
    let access = tokens["access_token"].as_str().unwrap();
    let res = http
        .get(s.url("/userinfo"))
        .header("origin", "http://127.0.0.1:8765")
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["access-control-allow-origin"], "http://127.0.0.1:8765");
    let res =
        http.get(s.url("/userinfo")).header("origin", "https://evil.example").bearer_auth(access).send().await.unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());
    // A client registered later is allowed without a restart.
    latchkey_core::admin::add_client(
        s.store.as_ref(),
        latchkey_core::admin::NewClient::public("late", "Late", vec!["https://late.example/cb".into()]),
        0,
    )
    .await
    .unwrap();
    s.advance(2);
    assert_eq!(preflight("https://late.example").await.unwrap().status(), 204);
}

#[tokio::test]
async fn prompt_consent_asks_again_even_after_a_fresh_login() {
    let s = TestServer::start().await;
    // Consent is remembered from a first flow in another browser.
    s.code_for("spa", &CodeVerifier::generate()).await;
    let b = Browser::new();
    let page = b.get(&s.authorize_url("spa", &CodeVerifier::generate(), "&prompt=consent")).await;
    let res = b.submit_login(&s.base, &page.body, "alice", PASSWORD).await;
    assert_eq!(res.status, 303);
    assert!(res.location().starts_with("/consent"), "consent is asked, not skipped: {}", res.location());
    // Without prompt=consent, the remembered consent applies after login.
    let b = Browser::new();
    let page = b.get(&s.authorize_url("spa", &CodeVerifier::generate(), "")).await;
    let res = b.submit_login(&s.base, &page.body, "alice", PASSWORD).await;
    assert!(res.redirect_query().contains_key("code"));
}
