//! OpenID Connect behaviours: RP-initiated logout, max_age, login_hint, userinfo claims by scope.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use latchkey_proto::CodeVerifier;

const BYE: &str = "http://127.0.0.1:8765/bye";

fn logout_url(s: &TestServer, params: &[(&str, &str)]) -> String {
    let mut u = url::Url::parse(&s.url("/logout")).unwrap();
    u.query_pairs_mut().extend_pairs(params);
    u.into()
}

#[tokio::test]
async fn logout_with_id_token_hint_ends_the_session_and_its_refresh_tokens() {
    let s = TestServer::start().await;
    let (b, t) = s.tokens_for("spa").await;
    let id_token = t["id_token"].as_str().unwrap();
    let res = b
        .get(&logout_url(&s, &[("id_token_hint", id_token), ("post_logout_redirect_uri", BYE), ("state", "bye-1")]))
        .await;
    assert_eq!(res.status, 303, "{}", res.body);
    assert_eq!(res.location(), format!("{BYE}?state=bye-1"));
    // The session is gone: the next authorization asks for a login again.
    let page = b.get(&s.authorize_url("spa", &CodeVerifier::generate(), "")).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("name=\"password\""));
    // Its session-bound refresh token ended with it.
    let (st, body) = s.refresh("spa", t["refresh_token"].as_str().unwrap(), None).await;
    assert_eq!(st, 400);
    assert!(body["error_description"].as_str().unwrap().contains("revoked"), "{body}");
}

#[tokio::test]
async fn logout_without_a_hint_asks_the_user_to_confirm() {
    let s = TestServer::start().await;
    let (b, t) = s.tokens_for("spa").await;
    let page = b.get(&logout_url(&s, &[("client_id", "spa"), ("post_logout_redirect_uri", BYE)])).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Sign out?") && page.body.contains("App spa"));
    assert_eq!(page.header("x-frame-options"), "DENY");
    // A forged confirmation (no CSRF token) is refused; the session lives on.
    let forged = b.post(&s.url("/logout"), &[("confirm", "yes"), ("client_id", "spa")]).await;
    assert_eq!(forged.status, 403);
    assert_eq!(s.refresh("spa", t["refresh_token"].as_str().unwrap(), None).await.0, 200);
    // The real confirmation signs out and returns to the registered URI.
    let form: Vec<(String, String)> = ["csrf", "confirm", "client_id", "post_logout_redirect_uri"]
        .iter()
        .map(|n| (n.to_string(), hidden(&page.body, n)))
        .collect();
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let res = b.post(&s.url("/logout"), &form).await;
    assert_eq!(res.status, 303, "{}", res.body);
    assert_eq!(res.location(), BYE);
    let cookie =
        res.headers.get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect::<Vec<_>>().join("\n");
    assert!(cookie.contains("latchkey_session=;") || cookie.contains("Max-Age=0"), "session cookie cleared: {cookie}");
}

#[tokio::test]
async fn logout_refuses_unregistered_redirects_and_foreign_hints() {
    let s = TestServer::start().await;
    s.add_client("other", false, false).await;
    let (b, t) = s.tokens_for("spa").await;
    let id_token = t["id_token"].as_str().unwrap();
    for (params, says) in [
        (vec![("id_token_hint", id_token), ("post_logout_redirect_uri", "https://evil.example/")], "not registered"),
        (vec![("post_logout_redirect_uri", BYE)], "needs id_token_hint or client_id"),
        (vec![("id_token_hint", id_token), ("client_id", "other")], "does not match"),
        (vec![("id_token_hint", "not-a-token")], "not an ID token issued by this server"),
    ] {
        let res = b.get(&logout_url(&s, &params)).await;
        assert_eq!(res.status, 400, "{params:?}");
        assert!(res.location().is_empty());
        assert!(res.body.contains(says), "{says}: {}", res.body);
    }
    // Nothing happened to the session.
    assert_eq!(s.refresh("spa", t["refresh_token"].as_str().unwrap(), None).await.0, 200);
}

#[tokio::test]
async fn logout_without_a_session_just_returns() {
    let s = TestServer::start().await;
    let res = Browser::new()
        .get(&logout_url(&s, &[("client_id", "spa"), ("post_logout_redirect_uri", BYE), ("state", "x")]))
        .await;
    assert_eq!(res.status, 303);
    assert_eq!(res.location(), format!("{BYE}?state=x"));
    let res = Browser::new().get(&s.url("/logout")).await;
    assert_eq!(res.status, 200);
    assert!(res.body.contains("You are signed out"));
}

#[tokio::test]
async fn offline_access_survives_logout() {
    let s = TestServer::start().await;
    let v = CodeVerifier::generate();
    let b = Browser::new();
    let url = s.authorize_url("spa", &v, "").replace("scope=openid+profile+email", "scope=openid+offline_access");
    let page = b.get(&url).await;
    let res = b.submit_login(&s.base, &page.body, "alice", PASSWORD).await;
    let consent = b.get(&s.url(&res.location())).await;
    let res = b.submit_consent(&s.base, &consent.body, "allow").await;
    let (_, t) = s.exchange("spa", &res.redirect_query()["code"], &v).await;
    let res = b.get(&logout_url(&s, &[("id_token_hint", t["id_token"].as_str().unwrap())])).await;
    assert_eq!(res.status, 200);
    assert_eq!(s.refresh("spa", t["refresh_token"].as_str().unwrap(), None).await.0, 200);
}

#[tokio::test]
async fn max_age_forces_a_fresh_login_and_auth_time_tells_when() {
    let s = TestServer::start().await;
    let (b, t) = s.tokens_for("spa").await;
    let auth_time = jwt_parts(t["id_token"].as_str().unwrap()).1["auth_time"].as_i64().unwrap();
    s.advance(120);
    let v = CodeVerifier::generate();
    // Recent enough: no login (the consent page, which a loopback app gets every time).
    let res = b.get(&s.authorize_url("spa", &v, "&max_age=300")).await;
    assert_eq!(res.status, 200);
    assert!(!res.body.contains(r#"name="password""#) && res.body.contains(r#"value="allow""#), "{}", res.body);
    // Too old: the login page; with prompt=none, login_required.
    let login = b.get(&s.authorize_url("spa", &v, "&max_age=60")).await;
    assert_eq!(login.status, 200);
    assert!(login.body.contains("name=\"password\""));
    let res = b.get(&s.authorize_url("spa", &v, "&max_age=60&prompt=none")).await;
    assert_eq!(res.redirect_query()["error"], "login_required");
    // After the new login, auth_time moves.
    let res = b.submit_login(&s.base, &login.body, "alice", PASSWORD).await;
    let code = res.redirect_query()["code"].clone();
    let (_, t2) = s.exchange("spa", &code, &v).await;
    let auth_time2 = jwt_parts(t2["id_token"].as_str().unwrap()).1["auth_time"].as_i64().unwrap();
    assert!(auth_time2 >= auth_time + 120, "{auth_time} -> {auth_time2}");
    let res = b.get(&s.authorize_url("spa", &v, "&max_age=abc")).await;
    assert_eq!(res.redirect_query()["error"], "invalid_request");
}

#[tokio::test]
async fn login_hint_prefills_and_unknown_parameters_are_ignored() {
    let s = TestServer::start().await;
    let page = Browser::new()
        .get(&s.authorize_url(
            "spa",
            &CodeVerifier::generate(),
            "&login_hint=alice&ui_locales=fr-CA%20en&display=page&acr_values=x",
        ))
        .await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains(r#"name="username" value="alice""#), "{}", page.body);
}

#[tokio::test]
async fn userinfo_claims_follow_the_granted_scopes() {
    let s = TestServer::start().await;
    let v = CodeVerifier::generate();
    let b = Browser::new();
    let url = s.authorize_url("spa", &v, "").replace("scope=openid+profile+email", "scope=openid+phone+address");
    let page = b.get(&url).await;
    let res = b.submit_login(&s.base, &page.body, "alice", PASSWORD).await;
    let consent = b.get(&s.url(&res.location())).await;
    let res = b.submit_consent(&s.base, &consent.body, "allow").await;
    let (_, t) = s.exchange("spa", &res.redirect_query()["code"], &v).await;
    let me: serde_json::Value = s.userinfo(t["access_token"].as_str().unwrap()).await.json().await.unwrap();
    assert_eq!(me["phone_number"], "+1 555 0100");
    assert!(me.get("email").is_none() && me.get("name").is_none(), "no claims of scopes not granted: {me}");
    assert!(me.get("address").is_none(), "alice has no address, so none is sent");
}
