//! RFC 8707 resource indicators against a real server: a token is bound to the one resource its
//! authorization named, refused by every other API; the code and the refresh token can never be
//! turned into a token for another resource; unknown and malformed resources are `invalid_target`;
//! clients nobody vetted may ask for the scopes of the resource they target, and nothing more.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;

use common::*;
use latchkey_core::admin::NewClient;
use latchkey_core::store::{ClientKind, ClientOrigin, ClientRecord, GrantType};
use latchkey_proto::{ClientId, CodeVerifier, RedirectUri, Scope};
use latchkey_resource::{Refusal, TokenError, Verifier};
use serde_json::Value;

const A: &str = "https://a.example/mcp";
const B: &str = "https://b.example/mcp";

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A server with two registered MCP servers, A (mcp:tools, mcp:admin) and B (b:read), and the
/// `spa` client allowed mcp:tools.
async fn server() -> TestServer {
    let s = TestServer::start().await;
    latchkey_core::admin::add_resource(s.store.as_ref(), A, Some("Server A".into()), &scopes("mcp:tools mcp:admin"), 0)
        .await
        .unwrap();
    latchkey_core::admin::add_resource(s.store.as_ref(), B, None, &scopes("b:read"), 0).await.unwrap();
    s.add(NewClient {
        extra_scopes: scopes("mcp:tools"),
        ..NewClient::public("mcp-host", "MCP host", vec![REDIRECT.into()])
    })
    .await;
    s
}

fn scopes(s: &str) -> Vec<String> {
    s.split(' ').map(str::to_owned).collect()
}

/// Authorize (log in, consent) with `extra` query parameters; the redirect's query.
async fn authorize(s: &TestServer, client_id: &str, v: &CodeVerifier, extra: &str) -> HashMap<String, String> {
    let b = s.browser();
    let mut page = b.get(&s.authorize_url(client_id, v, extra)).await;
    if page.status == 200 && page.body.contains("name=\"password\"") {
        page = b.submit_login(&s.base, &page.body, "alice", PASSWORD).await;
    }
    if page.status == 303 && page.location().starts_with("/consent") {
        let consent = b.get(&s.url(&page.location())).await;
        assert_eq!(consent.status, 200, "{}", consent.body);
        page = b.submit_consent(&s.base, &consent.body, "allow").await;
    }
    assert_eq!(page.status, 303, "a redirect to the client expected: {}", page.body);
    page.redirect_query()
}

async fn exchange(
    s: &TestServer,
    client_id: &str,
    code: &str,
    v: &CodeVerifier,
    resource: Option<&str>,
) -> (u16, Value) {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("client_id", client_id),
        ("code_verifier", v.expose_secret()),
    ];
    if let Some(r) = resource {
        form.push(("resource", r));
    }
    let (st, b, _) = s.token(&form).await;
    (st, b)
}

async fn tokens_for(s: &TestServer, resource_param: &str, token_resource: Option<&str>) -> Value {
    let v = CodeVerifier::generate();
    let q = authorize(s, "mcp-host", &v, &format!("&resource={}", enc(resource_param))).await;
    let (st, t) = exchange(s, "mcp-host", &q["code"], &v, token_resource).await;
    assert_eq!(st, 200, "{t}");
    t
}

fn aud(t: &Value) -> Value {
    jwt_parts(t["access_token"].as_str().unwrap()).1["aud"].clone()
}

fn error(b: &Value) -> (&str, &str) {
    (b["error"].as_str().unwrap_or_default(), b["error_description"].as_str().unwrap_or_default())
}

fn verifier(s: &TestServer, audience: &str) -> Verifier {
    Verifier::builder(&s.base).audience(audience).build().unwrap()
}

#[tokio::test]
async fn a_token_for_resource_a_is_refused_by_resource_b() {
    let s = server().await;
    let t = tokens_for(&s, A, Some(A)).await;
    assert_eq!(aud(&t), A, "aud is exactly the requested resource");
    assert!(verifier(&s, A).verify(t["access_token"].as_str().unwrap()).await.is_ok());
    let e = verifier(&s, B).verify(t["access_token"].as_str().unwrap()).await.unwrap_err();
    assert!(matches!(e, Refusal::InvalidToken(TokenError::Audience { .. })), "{e:?}");
    // Nor does it pass for the deployment's default audience (the issuer), which a token without
    // a resource would carry.
    let e = verifier(&s, &s.base).verify(t["access_token"].as_str().unwrap()).await.unwrap_err();
    assert!(matches!(e, Refusal::InvalidToken(TokenError::Audience { .. })), "{e:?}");
}

#[tokio::test]
async fn the_token_request_may_repeat_or_omit_the_resource_never_change_it() {
    let s = server().await;
    // Omitted at the token endpoint (some hosts do): the code's resource.
    assert_eq!(aud(&tokens_for(&s, A, None).await), A);
    // Another spelling of the same resource is the same resource.
    s.add(NewClient {
        extra_scopes: scopes("mcp:tools"),
        ..NewClient::public("host2", "Host 2", vec![REDIRECT.into()])
    })
    .await;
    latchkey_core::admin::add_resource(s.store.as_ref(), "https://c.example", None, &[], 0).await.unwrap();
    let t = tokens_for(&s, "https://c.example", Some("https://c.example/")).await;
    assert_eq!(aud(&t), "https://c.example/");

    // Naming B for a code issued for A: refused, and the code stays usable for A.
    let v = CodeVerifier::generate();
    let q = authorize(&s, "mcp-host", &v, &format!("&resource={}", enc(A))).await;
    let (st, b) = exchange(&s, "mcp-host", &q["code"], &v, Some(B)).await;
    assert_eq!((st, error(&b).0), (400, "invalid_target"), "{b}");
    assert!(error(&b).1.contains(A) && error(&b).1.contains(B), "{b}");
    let (st, t) = exchange(&s, "mcp-host", &q["code"], &v, Some(A)).await;
    assert_eq!(st, 200, "{t}");
    assert_eq!(aud(&t), A);
}

#[tokio::test]
async fn a_refresh_may_narrow_to_the_granted_resource_never_widen() {
    let s = server().await;
    let t = tokens_for(&s, A, Some(A)).await;
    let rt = t["refresh_token"].as_str().unwrap();
    let form = |r: &'static str| {
        vec![("grant_type", "refresh_token"), ("refresh_token", rt), ("client_id", "mcp-host"), ("resource", r)]
    };
    let (st, b, _) = s.token(&form(B)).await;
    assert_eq!((st, error(&b).0), (400, "invalid_target"), "{b}");
    // The refusal has no side effect: the token still rotates, for A.
    let (st, t2, _) = s.token(&form(A)).await;
    assert_eq!(st, 200, "{t2}");
    assert_eq!(aud(&t2), A);
    let (st, t3) = s.refresh("mcp-host", t2["refresh_token"].as_str().unwrap(), None).await;
    assert_eq!(st, 200, "{t3}");
    assert_eq!(aud(&t3), A, "without resource, the grant's");

    // A grant that named no resource cannot be widened to one at refresh.
    let v = CodeVerifier::generate();
    let q = authorize(&s, "mcp-host", &v, "").await;
    let (_, t) = exchange(&s, "mcp-host", &q["code"], &v, None).await;
    assert_eq!(aud(&t), s.base.as_str(), "no resource: the default audience");
    let rt = t["refresh_token"].as_str().unwrap();
    let (st, b, _) = s
        .token(&[("grant_type", "refresh_token"), ("refresh_token", rt), ("client_id", "mcp-host"), ("resource", A)])
        .await;
    assert_eq!((st, error(&b).0), (400, "invalid_target"), "{b}");
}

#[tokio::test]
async fn unknown_and_malformed_resources_are_invalid_target() {
    let s = server().await;
    let v = CodeVerifier::generate();
    let b = s.browser();
    for (resource, why) in [
        ("https://unregistered.example/mcp", "not a resource registered"),
        ("/mcp", "absolute"),
        ("https://a.example/mcp#frag", "fragment"),
        ("https://a.example/mcp?x=1", "query"),
        ("http://a.example/mcp", "https"),
    ] {
        // The client and redirect URI are good, so the error goes back to the client, with iss.
        let page = b.get(&s.authorize_url("mcp-host", &v, &format!("&resource={}", enc(resource)))).await;
        assert_eq!(page.status, 302, "{resource}: {}", page.body);
        let q = page.redirect_query();
        assert_eq!(q["error"], "invalid_target", "{resource}");
        assert!(q["error_description"].contains(why), "{resource}: {q:?}");
        assert_eq!(q["iss"], s.base, "RFC 9207 on errors too");
        assert_eq!(q["state"], "st-1 /?&=");
    }
    // Several resources: one grant, one resource.
    let page = b.get(&s.authorize_url("mcp-host", &v, &format!("&resource={}&resource={}", enc(A), enc(B)))).await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.contains("one resource"), "{}", page.body);
    // At the token endpoint, a malformed resource is refused before anything is looked up.
    let (st, b, _) = s
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", "whatever"),
            ("redirect_uri", REDIRECT),
            ("client_id", "mcp-host"),
            ("code_verifier", v.expose_secret()),
            ("resource", "mcp"),
        ])
        .await;
    assert_eq!((st, error(&b).0), (400, "invalid_target"), "{b}");
}

#[tokio::test]
async fn allow_unregistered_resources_accepts_any_https_resource() {
    let s = TestServer::start_with(|c| c.allow_unregistered_resources = true).await;
    let v = CodeVerifier::generate();
    let q = authorize(&s, "spa", &v, &format!("&resource={}", enc("https://anything.example/api"))).await;
    let (st, t) = s.exchange("spa", &q["code"], &v).await;
    assert_eq!(st, 200, "{t}");
    assert_eq!(aud(&t), "https://anything.example/api");
    // Still only https: an http URI on a public host is no more acceptable than before.
    let page = s.browser().get(&s.authorize_url("spa", &v, &format!("&resource={}", enc("http://x.example/")))).await;
    assert_eq!(page.redirect_query()["error"], "invalid_target");
}

/// A client nobody vetted (self-registered): it may ask for the scopes of the resource it targets,
/// not for another resource's, and not for API scopes with no resource named.
#[tokio::test]
async fn an_unvetted_client_gets_the_scopes_of_its_target_only() {
    let s = server().await;
    s.store
        .insert_client(&ClientRecord {
            client_id: ClientId::parse("dcr-1").unwrap(),
            name: "Totally Official".into(),
            kind: ClientKind::Public,
            redirect_uris: vec![RedirectUri::parse_registration(REDIRECT).unwrap()],
            grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
            allowed_scope: Scope::parse("openid profile email offline_access").unwrap(),
            first_party: false,
            created_at: 0,
            id_token_signed_response_alg: Default::default(),
            post_logout_redirect_uris: vec![],
            audiences: vec![],
            origin: ClientOrigin::Registered,
            backchannel_logout: None,
            protection: Default::default(),
            second_factor: Default::default(),
        })
        .await
        .unwrap();
    let v = CodeVerifier::generate();
    let with = |scope: &str, resource: Option<&str>| {
        let mut extra = format!("&scope={}", enc(scope));
        if let Some(r) = resource {
            extra.push_str(&format!("&resource={}", enc(r)));
        }
        extra
    };
    let b = s.browser();
    // `authorize_url` sets scope first; a second scope parameter is a duplicate, so build by hand.
    let url = |extra: &str| s.authorize_url("dcr-1", &v, "").replace("&scope=openid+profile+email", "") + extra;
    let page = b.get(&url(&with("openid mcp:tools", Some(B)))).await;
    assert_eq!(page.redirect_query()["error"], "invalid_scope", "B does not offer mcp:tools");
    let page = b.get(&url(&with("openid mcp:tools", None))).await;
    assert_eq!(page.redirect_query()["error"], "invalid_scope", "no resource, no API scopes");
    let page = b.get(&url(&with("openid b:read", Some(A)))).await;
    assert_eq!(page.redirect_query()["error"], "invalid_scope", "A does not offer b:read");
    // A's scopes, for A: the login page (then, always, the consent page).
    let page = b.get(&url(&with("openid mcp:tools", Some(A)))).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let page = b.submit_login(&s.base, &page.body, "alice", PASSWORD).await;
    assert!(page.location().starts_with("/consent"), "an unvetted client always gets the consent page");
    let consent = b.get(&s.url(&page.location())).await;
    // The user sees which API the access is for.
    assert!(
        consent.body.contains("<strong>Server A</strong> (<code>https://a.example/mcp</code>)"),
        "{}",
        consent.body
    );
    let q = b.submit_consent(&s.base, &consent.body, "allow").await.redirect_query();
    let (st, t) = exchange(&s, "dcr-1", &q["code"], &v, Some(A)).await;
    assert_eq!(st, 200, "{t}");
    assert_eq!(aud(&t), A);
    assert_eq!(t["scope"], "mcp:tools openid");
}

/// A resource server's introspection credential sees the tokens for its own resources only.
#[tokio::test]
async fn introspection_reports_aud_and_shows_each_api_only_its_tokens() {
    let s = server().await;
    let secret_a = s
        .add(NewClient {
            resource_server: true,
            // Spelled without the canonical form's details: still the same resource.
            audiences: vec!["HTTPS://a.example/mcp".into()],
            ..NewClient::public("api-a", "API A", vec![])
        })
        .await
        .unwrap();
    let for_a = tokens_for(&s, A, Some(A)).await;
    let for_b = tokens_for(&s, B, Some(B)).await;
    let introspect = |t: &Value| {
        let t = t["access_token"].as_str().unwrap().to_owned();
        let secret = secret_a.clone();
        let s = &s;
        async move {
            let (st, v) = s.post_form("/introspect", Some(("api-a", &secret)), &[("token", &t)]).await;
            assert_eq!(st, 200);
            v
        }
    };
    let v = introspect(&for_a).await;
    assert_eq!((v["active"].as_bool(), v["aud"].as_str()), (Some(true), Some(A)), "{v}");
    let v = introspect(&for_b).await;
    assert_eq!(v["active"], false, "API A must not learn about B's tokens: {v}");
}

/// Client credentials with `resource`: one of the client's listed audiences, in any spelling.
#[tokio::test]
async fn client_credentials_take_resource_as_the_audience() {
    let s = server().await;
    let secret = s
        .add(NewClient {
            client_credentials: true,
            extra_scopes: scopes("mcp:tools"),
            audiences: vec!["https://a.example/mcp".into()],
            ..NewClient::public("svc", "svc", vec![])
        })
        .await
        .unwrap();
    let cc = |resource: &'static str| {
        let secret = secret.clone();
        let s = &s;
        async move {
            let (st, b, _) = s
                .token(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", "svc"),
                    ("client_secret", &secret),
                    ("resource", resource),
                ])
                .await;
            (st, b)
        }
    };
    let (st, t) = cc("HTTPS://A.example:443/mcp").await;
    assert_eq!(st, 200, "{t}");
    assert_eq!(aud(&t), A);
    let (st, b) = cc(B).await;
    assert_eq!((st, error(&b).0), (400, "invalid_target"), "{b}");
}

/// A burst of concurrent exchanges of one code naming different resources: at most one token is
/// issued, and only for the code's resource.
#[tokio::test]
async fn a_burst_of_exchanges_naming_other_resources_mints_nothing_for_them() {
    let s = server().await;
    let v = CodeVerifier::generate();
    let q = authorize(&s, "mcp-host", &v, &format!("&resource={}", enc(A))).await;
    let code = q["code"].clone();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (base, code, verifier) = (s.base.clone(), code.clone(), v.expose_secret().to_owned());
            tokio::spawn(async move {
                let resource = if i % 2 == 0 { A } else { B };
                let res = reqwest::Client::new()
                    .post(format!("{base}/token"))
                    .form(&[
                        ("grant_type", "authorization_code"),
                        ("code", code.as_str()),
                        ("redirect_uri", REDIRECT),
                        ("client_id", "mcp-host"),
                        ("code_verifier", verifier.as_str()),
                        ("resource", resource),
                    ])
                    .send()
                    .await
                    .unwrap();
                (res.status().as_u16(), res.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut issued = Vec::new();
    for t in tasks {
        let (st, b) = t.await.unwrap();
        if st == 200 {
            issued.push(aud(&b));
        } else {
            assert!(matches!(error(&b).0, "invalid_target" | "invalid_grant"), "{b}");
        }
    }
    assert!(issued.len() <= 1, "one code, one token: {issued:?}");
    assert!(issued.iter().all(|a| a == A), "{issued:?}");
}
