//! Dynamic client registration (RFC 7591 / 7592) through the real server: the MCP host's path from
//! no registration to a token, each refusal performed as an attack, the policy settings, the
//! bounds, and CORS for browser hosts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{PASSWORD, TestServer};
use latchkey_core::registration::RegistrationPolicy;
use latchkey_proto::{CodeVerifier, TokenHash};
use serde_json::{Value, json};

/// What Claude Code sends: a public client with a port-less localhost redirect.
fn claude_code() -> Value {
    json!({
        "client_name": "Claude Code",
        "redirect_uris": ["http://localhost/callback"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "scope": "",
        "some_future_field": {"nested": true},
        "tos_uri": null
    })
}

async fn register(s: &TestServer, body: &Value, bearer: Option<&str>) -> (u16, Value) {
    let mut req = s.http.post(s.url("/register")).json(body);
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

fn authorize_url(s: &TestServer, client_id: &str, redirect: &str, v: &CodeVerifier) -> String {
    let mut u = url::Url::parse(&s.url("/authorize")).unwrap();
    u.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect)
        .append_pair("scope", "openid profile")
        .append_pair("code_challenge", v.challenge().as_str())
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", "st");
    u.into()
}

fn query(location: &str) -> std::collections::HashMap<String, String> {
    url::Url::parse(location).unwrap().query_pairs().into_owned().collect()
}

#[tokio::test]
async fn an_mcp_host_registers_authorizes_on_any_loopback_port_sees_an_unverified_consent_and_gets_tokens() {
    let s = TestServer::start().await;
    let (status, reg) = register(&s, &claude_code(), None).await;
    assert_eq!(status, 201, "{reg}");
    let text = reg.to_string();
    assert!(!text.contains("null"), "never null: {text}");
    assert!(!text.contains("some_future_field"), "unknown fields are ignored");
    for field in [
        "client_id",
        "token_endpoint_auth_method",
        "redirect_uris",
        "grant_types",
        "response_types",
        "client_id_issued_at",
    ] {
        assert!(reg.get(field).is_some(), "{field} missing: {reg}");
    }
    assert_eq!(reg["token_endpoint_auth_method"], "none");
    assert_eq!(reg["redirect_uris"], json!(["http://localhost/callback"]));
    assert_eq!(reg["client_name"], "Claude Code");
    assert!(reg.get("scope").is_none(), "an empty scope is no scope");
    assert!(reg.get("client_secret").is_none());
    let client_id = reg["client_id"].as_str().unwrap().to_owned();
    assert_eq!(reg["registration_client_uri"], s.url(&format!("/register/{client_id}")));

    // Any port on the registered loopback host (RFC 8252 §7.3), but not another path.
    let redirect = "http://localhost:54321/callback";
    let b = s.browser();
    let wrong_path =
        b.get(&authorize_url(&s, &client_id, "http://localhost:54321/other", &CodeVerifier::generate())).await;
    assert_eq!(wrong_path.status, 400, "an unregistered redirect gets an error page, never a redirect");
    let v = CodeVerifier::generate();
    let login = b.get(&authorize_url(&s, &client_id, redirect, &v)).await;
    assert_eq!(login.status, 200, "{}", login.body);
    let res = b.submit_login(&s.base, &login.body, "alice", PASSWORD).await;
    assert!(res.location().starts_with("/consent"), "{}", res.location());
    let consent = b.get(&s.url(&res.location())).await;
    assert!(consent.body.contains("Unverified application"), "{}", consent.body);
    assert!(consent.body.contains("Claude Code</strong> (unverified)"), "{}", consent.body);
    assert!(consent.body.contains("<strong>localhost</strong>"), "the redirect host is shown");
    assert!(consent.body.contains("an app on this device"), "the loopback warning is shown");
    let done = b.submit_consent(&s.base, &consent.body, "allow").await;
    let loc = done.location();
    assert!(loc.starts_with(redirect), "{loc}");
    let code = query(&loc)["code"].clone();
    let (status, tokens, _) = s
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect),
            ("client_id", &client_id),
            ("code_verifier", v.expose_secret()),
        ])
        .await;
    assert_eq!(status, 200, "{tokens}");
    assert!(tokens["refresh_token"].is_string());

    // Denying sends the error back to the client with `iss` (RFC 9207).
    let again = b.get(&authorize_url(&s, &client_id, redirect, &CodeVerifier::generate())).await;
    assert_eq!(again.status, 200, "the consent page: {}", again.location());
    let denied = b.submit_consent(&s.base, &again.body, "deny").await;
    let q = query(&denied.location());
    assert_eq!((q["error"].as_str(), q["iss"].as_str()), ("access_denied", s.base.as_str()));
}

/// A web client (https redirect) nobody vetted: remembered consent does not skip the page, which
/// a vetted client's would (RFC 8252 §8.6 alone only covers loopback and custom schemes).
#[tokio::test]
async fn an_unverified_client_gets_the_consent_page_every_time() {
    let s = TestServer::start().await;
    let redirect = "https://app.example/cb";
    let body =
        json!({"redirect_uris": [redirect], "token_endpoint_auth_method": "none", "client_name": "Google Drive"});
    let (_, reg) = register(&s, &body, None).await;
    let id = reg["client_id"].as_str().unwrap();
    let b = s.browser();
    let login = b.get(&authorize_url(&s, id, redirect, &CodeVerifier::generate())).await;
    let res = b.submit_login(&s.base, &login.body, "alice", PASSWORD).await;
    let consent = b.get(&s.url(&res.location())).await;
    assert!(consent.body.contains("Google Drive</strong> (unverified)"), "{}", consent.body);
    assert!(consent.body.contains("<strong>app.example</strong>"));
    assert!(!consent.body.contains("an app on this device"), "no loopback warning for https");
    let done = b.submit_consent(&s.base, &consent.body, "allow").await;
    assert!(done.location().starts_with(redirect), "{}", done.location());
    let again = b.get(&authorize_url(&s, id, redirect, &CodeVerifier::generate())).await;
    assert_eq!(again.status, 200, "asked again, not redirected: {}", again.location());
    assert!(again.body.contains("Unverified application"), "{}", again.body);
}

#[tokio::test]
async fn every_bad_registration_is_refused_with_a_precise_error() {
    let s = TestServer::start().await;
    let base = |patch: Value| {
        let mut v = json!({"redirect_uris": ["https://app.example/cb"], "token_endpoint_auth_method": "none"});
        for (k, x) in patch.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    };
    let cases = [
        (base(json!({"redirect_uris": ["http://app.example/cb"]})), "invalid_redirect_uri", "loopback"),
        (base(json!({"redirect_uris": ["myapp:/cb"]})), "invalid_redirect_uri", "reverse domain"),
        (base(json!({"redirect_uris": ["https://app.example/cb#x"]})), "invalid_redirect_uri", "fragment"),
        (base(json!({"redirect_uris": []})), "invalid_redirect_uri", "required"),
        (base(json!({"grant_types": ["implicit"]})), "invalid_client_metadata", "implicit"),
        (base(json!({"grant_types": ["password"]})), "invalid_client_metadata", "password"),
        (base(json!({"grant_types": ["client_credentials"]})), "invalid_client_metadata", "confidential client"),
        (base(json!({"response_types": ["token"]})), "invalid_client_metadata", "token"),
        (
            base(json!({"token_endpoint_auth_method": "private_key_jwt"})),
            "invalid_client_metadata",
            "token_endpoint_auth_method",
        ),
        (base(json!({"client_name": "x".repeat(201)})), "invalid_client_metadata", "client_name"),
        (base(json!({"redirect_uris": "https://app.example/cb"})), "invalid_client_metadata", "JSON object"),
    ];
    for (body, error, needle) in cases {
        let (status, res) = register(&s, &body, None).await;
        assert_eq!((status, res["error"].as_str().unwrap()), (400, error), "{body}: {res}");
        assert!(res["error_description"].as_str().unwrap().contains(needle), "{body}: {res}");
    }
    // More than 16 KiB: 413 with a JSON error, before any parsing.
    let big = json!({"redirect_uris": ["https://app.example/cb"], "client_uri": format!("https://a.example/{}", "a".repeat(17 * 1024))});
    let (status, res) = register(&s, &big, None).await;
    assert_eq!((status, res["error"].as_str()), (413, Some("invalid_request")), "{res}");
    assert_eq!(s.store.clients().await.unwrap().len(), 1, "only the test's own client: nothing was registered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_identical_registrations_at_once_make_one_client_and_one_token_holder() {
    let s = std::sync::Arc::new(TestServer::start().await);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { register(&s, &claude_code(), None).await })
        })
        .collect();
    let mut ids = std::collections::BTreeSet::new();
    let mut holders = 0;
    for t in tasks {
        let (status, reg) = t.await.unwrap();
        assert_eq!(status, 201, "{reg}");
        ids.insert(reg["client_id"].as_str().unwrap().to_owned());
        holders += usize::from(reg.get("registration_access_token").is_some());
    }
    assert_eq!((ids.len(), holders), (1, 1), "one client; only its first registrant may manage it");
    assert_eq!(s.store.clients().await.unwrap().len(), 2, "the test's client and the one registration");
}

#[tokio::test]
async fn rfc7592_read_update_and_delete_need_the_registration_access_token() {
    let s = TestServer::start().await;
    let body = json!({
        "redirect_uris": ["https://app.example/cb"],
        "token_endpoint_auth_method": "client_secret_post",
        "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
        "client_name": "Web app",
        "contacts": ["ops@app.example"],
        "logo_uri": "https://app.example/logo.png",
    });
    let (status, reg) = register(&s, &body, None).await;
    assert_eq!(status, 201, "{reg}");
    assert!(reg["client_secret"].as_str().unwrap().len() >= 32);
    assert_eq!(reg["client_secret_expires_at"], 0);
    assert_eq!(reg["contacts"], json!(["ops@app.example"]));
    let uri = reg["registration_client_uri"].as_str().unwrap().to_owned();
    let token = reg["registration_access_token"].as_str().unwrap().to_owned();
    let id = reg["client_id"].as_str().unwrap().to_owned();
    // The secret is stored only as its hash.
    let stored = s.store.client(&latchkey_proto::ClientId::parse(&id).unwrap()).await.unwrap().unwrap();
    let hash = TokenHash::of(reg["client_secret"].as_str().unwrap());
    assert_eq!(stored.kind, latchkey_core::store::ClientKind::Confidential { secret_hash: hash.as_str().to_owned() });

    let http = &s.http;
    for (name, t) in [("no token", None), ("another's token", Some("not-the-token"))] {
        let mut r = http.get(&uri);
        if let Some(t) = t {
            r = r.bearer_auth(t);
        }
        let res = r.send().await.unwrap();
        assert_eq!(res.status(), 401, "{name}");
        assert!(res.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
        let res = http.delete(&uri).bearer_auth("not-the-token").send().await.unwrap();
        assert_eq!(res.status(), 401, "{name}: delete");
        let res = http.put(&uri).bearer_auth("not-the-token").json(&body).send().await.unwrap();
        assert_eq!(res.status(), 401, "{name}: update");
    }
    let read: Value = http.get(&uri).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!(read["client_id"], id.as_str());
    assert!(read.get("client_secret").is_none(), "the secret is shown once");

    let mut changed = body.clone();
    changed["redirect_uris"] = json!(["https://app.example/new"]);
    let res = http.put(&uri).bearer_auth(&token).json(&changed).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let updated: Value = res.json().await.unwrap();
    assert_eq!(updated["redirect_uris"], json!(["https://app.example/new"]));
    let mut public = body.clone();
    public["token_endpoint_auth_method"] = json!("none");
    public["grant_types"] = json!(["authorization_code"]);
    let res = http.put(&uri).bearer_auth(&token).json(&public).send().await.unwrap();
    assert_eq!(res.status(), 400, "a confidential client cannot become public");

    let res = http.delete(&uri).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(http.get(&uri).bearer_auth(&token).send().await.unwrap().status(), 401);
    let events: Vec<String> =
        s.store.audit_events(None, None, 100).await.unwrap().into_iter().map(|e| e.event).collect();
    for e in ["client_registered", "client_registration_updated", "client_registration_deleted"] {
        assert!(events.iter().any(|x| x == e), "{e} not audited: {events:?}");
    }
}

#[tokio::test]
async fn a_shared_registration_cannot_be_taken_over_by_its_first_registrant() {
    let s = TestServer::start().await;
    let (_, first) = register(&s, &claude_code(), None).await;
    let (_, second) = register(&s, &claude_code(), None).await;
    assert_eq!(first["client_id"], second["client_id"]);
    let (uri, token) =
        (first["registration_client_uri"].as_str().unwrap(), first["registration_access_token"].as_str().unwrap());
    let mut evil = claude_code();
    evil["redirect_uris"] = json!(["https://attacker.example/cb"]);
    let res = s.http.put(uri).bearer_auth(token).json(&evil).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(s.http.delete(uri).bearer_auth(token).send().await.unwrap().status(), 400);
    let read: Value = s.http.get(uri).bearer_auth(token).send().await.unwrap().json().await.unwrap();
    assert_eq!(read["redirect_uris"], json!(["http://localhost/callback"]));
}

#[tokio::test]
async fn with_the_token_policy_registration_needs_the_initial_access_token() {
    let initial = "initial-access-token-for-tests-0123456789";
    let s = TestServer::start_with(|c| c.registration = RegistrationPolicy::Token(TokenHash::of(initial))).await;
    let (status, res) = register(&s, &claude_code(), None).await;
    assert_eq!((status, res["error"].as_str()), (401, Some("invalid_token")), "{res}");
    let (status, _) = register(&s, &claude_code(), Some("initial-access-token-for-tests-0123456788")).await;
    assert_eq!(status, 401, "a wrong token");
    let mut bad = claude_code();
    bad["redirect_uris"] = json!(["http://evil.example/cb"]);
    let (status, _) = register(&s, &bad, None).await;
    assert_eq!(status, 401, "without the token nothing about the metadata is said");
    let (status, reg) = register(&s, &claude_code(), Some(initial)).await;
    assert_eq!(status, 201, "{reg}");
    let meta: Value =
        s.http.get(s.url("/.well-known/oauth-authorization-server")).send().await.unwrap().json().await.unwrap();
    assert_eq!(meta["registration_endpoint"], s.url("/register"));
}

#[tokio::test]
async fn with_registration_off_there_is_no_endpoint() {
    let s = TestServer::start_with(|c| c.registration = RegistrationPolicy::Off).await;
    let (status, res) = register(&s, &claude_code(), None).await;
    assert_eq!((status, res["error"].as_str()), (404, Some("invalid_request")), "{res}");
    let meta: Value =
        s.http.get(s.url("/.well-known/openid-configuration")).send().await.unwrap().json().await.unwrap();
    assert!(meta.get("registration_endpoint").is_none(), "{meta}");
    assert_eq!(s.http.get(s.url("/register/x")).send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn registrations_from_one_network_hit_a_ceiling_per_minute() {
    let s = TestServer::start_with(|c| c.registrations_per_minute = 3).await;
    let distinct = |i: usize| json!({"redirect_uris": [format!("https://app{i}.example/cb")], "token_endpoint_auth_method": "none"});
    for i in 0..3 {
        assert_eq!(register(&s, &distinct(i), None).await.0, 201);
    }
    let (status, res) = register(&s, &distinct(3), None).await;
    assert_eq!((status, res["error"].as_str()), (503, Some("temporarily_unavailable")), "{res}");
    // An identical registration allocates nothing and still gets its client.
    assert_eq!(register(&s, &distinct(0), None).await.0, 201);
    s.advance(61);
    assert_eq!(register(&s, &distinct(3), None).await.0, 201, "a new minute");
}

#[tokio::test]
async fn idle_self_registered_clients_are_purged_and_busy_ones_kept() {
    let s = TestServer::start_with(|c| c.registration_idle_ttl = 100).await;
    let (_, idle) = register(
        &s,
        &json!({"redirect_uris": ["https://idle.example/cb"], "token_endpoint_auth_method": "none"}),
        None,
    )
    .await;
    s.advance(101);
    let counts = s.provider.purge_expired(s.now()).await.unwrap();
    assert_eq!(counts.clients, 1);
    let id = latchkey_proto::ClientId::parse(idle["client_id"].as_str().unwrap()).unwrap();
    assert!(s.store.client(&id).await.unwrap().is_none());
    assert!(s.store.client(&latchkey_proto::ClientId::parse("spa").unwrap()).await.unwrap().is_some());
}

#[tokio::test]
async fn browser_hosts_get_cors_from_any_origin_without_credentials() {
    let s = TestServer::start().await;
    let origin = "http://localhost:6274";
    for path in [
        "/register",
        "/token",
        "/revoke",
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let res = s
            .http
            .request(reqwest::Method::OPTIONS, s.url(path))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type, mcp-protocol-version")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 204, "{path}");
        let h = res.headers();
        assert_eq!(h["access-control-allow-origin"], "*", "{path}");
        assert!(h["access-control-allow-headers"].to_str().unwrap().contains("mcp-protocol-version"), "{path}");
        assert!(h.get("access-control-allow-credentials").is_none(), "{path}: never credentials");
    }
    let res = s.http.post(s.url("/register")).header("origin", origin).json(&claude_code()).send().await.unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["access-control-allow-origin"], "*");
    assert!(res.headers().get("access-control-allow-credentials").is_none());
    // /userinfo keeps its rule: only origins of registered redirect URIs.
    let res = s
        .http
        .request(reqwest::Method::OPTIONS, s.url("/userinfo"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn the_metadata_lists_what_mcp_clients_look_for() {
    let s = TestServer::start().await;
    let meta: Value =
        s.http.get(s.url("/.well-known/oauth-authorization-server")).send().await.unwrap().json().await.unwrap();
    assert_eq!(meta["registration_endpoint"], s.url("/register"));
    assert_eq!(meta["code_challenge_methods_supported"], json!(["S256"]));
    assert!(meta["scopes_supported"].as_array().unwrap().contains(&json!("openid")));
    assert!(meta["grant_types_supported"].as_array().unwrap().contains(&json!("refresh_token")));
    assert!(meta["token_endpoint_auth_methods_supported"].as_array().unwrap().contains(&json!("none")));
    assert_eq!(meta["authorization_response_iss_parameter_supported"], true);
}
