//! An API with a canonical resource URI (RFC 8707, RFC 9728, the MCP authorization spec): it
//! publishes protected resource metadata at both well-known paths, its challenges say where that
//! metadata is and which scope to ask for, and it accepts only tokens issued for itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::body::Body;
use axum::http::{HeaderMap, Request};
use axum::routing::post;
use axum::{Json, Router};
use common::*;
use latchkey_resource::{Claims, ConfigError, Scope, Verifier};
use serde_json::{Value, json};
use tower::ServiceExt;

const RESOURCE: &str = "https://mcp.example.com/mcp";
const PRM_URL: &str = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp";

fn verifier(issuer: &TestIssuer, resource: &str) -> Verifier {
    Verifier::builder(&issuer.base).clock(issuer.clock()).resource(resource).build().unwrap()
}

/// An MCP-like API: `/mcp` needs `mcp:tools`; its `admin` operation also needs `mcp:admin`,
/// checked in the handler as MCP servers do per tool.
fn api(v: &Verifier) -> Router {
    let prm = v.protected_resource_metadata(["mcp:tools", "mcp:admin"]).unwrap().resource_name("Example MCP");
    let v2 = v.clone();
    Router::new()
        .route(
            "/mcp",
            post(move |c: Claims, Json(body): Json<Value>| {
                let v = v2.clone();
                async move {
                    if body["op"] == "admin" {
                        let needed = Scope::parse("mcp:tools mcp:admin").unwrap();
                        if let Err(r) = c.require_scope(&needed) {
                            return v.refuse(&r, &needed);
                        }
                    }
                    axum::response::IntoResponse::into_response(Json(json!({"sub": c.sub})))
                }
            })
            .route_layer(v.require("mcp:tools")),
        )
        .merge(prm.router())
}

async fn call(app: &Router, method: &str, path: &str, auth: Option<&str>, body: Value) -> (u16, HeaderMap, Value) {
    let mut req = Request::builder().method(method).uri(path).header("content-type", "application/json");
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let res = app.clone().oneshot(req.body(Body::from(body.to_string())).unwrap()).await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, headers, body)
}

fn challenge(h: &HeaderMap) -> String {
    h.get("www-authenticate").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

/// What the MCP SDKs do with a challenge (TypeScript `extractFieldFromWwwAuth`, Python
/// `extract_field_from_www_auth`): the first `name="value"` match anywhere in the header.
fn sdk_field(challenge: &str, name: &str) -> Option<String> {
    let at = challenge.find(&format!("{name}=\""))? + name.len() + 2;
    let rest = &challenge[at..];
    Some(rest[..rest.find('"')?].to_owned())
}

#[tokio::test]
async fn metadata_is_served_at_the_path_inserted_and_the_root_well_known_urls() {
    let key = TestKey::new("k1");
    let iss = TestIssuer::start(&[&key]).await;
    let app = api(&verifier(&iss, RESOURCE));
    let want = json!({
        "resource": RESOURCE,
        "authorization_servers": [iss.base],
        "scopes_supported": ["mcp:tools", "mcp:admin"],
        "bearer_methods_supported": ["header"],
        "resource_name": "Example MCP",
        // DPoP is on by default once the API knows its URL (here, the resource's origin).
        "dpop_signing_alg_values_supported": ["ES256", "ES384", "EdDSA", "RS256", "PS256"],
    });
    for path in ["/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"] {
        let (status, h, body) = call(&app, "GET", path, None, Value::Null).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(body, want, "{path}");
        assert_eq!(h["access-control-allow-origin"], "*", "browser MCP hosts read it cross-origin");
    }
    // A resource without a path has one well-known URL; no duplicate route panics.
    let root = verifier(&iss, "https://mcp.example.com");
    assert_eq!(root.resource_metadata_url(), Some("https://mcp.example.com/.well-known/oauth-protected-resource"));
    let app = Router::new().merge(root.protected_resource_metadata(Vec::<String>::new()).unwrap().router());
    let (status, _, body) = call(&app, "GET", "/.well-known/oauth-protected-resource", None, Value::Null).await;
    assert_eq!(status, 200);
    assert!(body.get("scopes_supported").is_none(), "no empty list: {body}");
}

#[tokio::test]
async fn the_401_challenge_says_where_the_metadata_is_and_which_scope_to_ask_for() {
    let key = TestKey::new("k1");
    let iss = TestIssuer::start(&[&key]).await;
    let app = api(&verifier(&iss, RESOURCE));
    // No token: no error code (RFC 6750 §3.1), the metadata URL (RFC 9728 §5.1), the scope.
    let (status, h, _) = call(&app, "POST", "/mcp", None, json!({})).await;
    assert_eq!(status, 401);
    assert_eq!(challenge(&h), format!("Bearer resource_metadata=\"{PRM_URL}\", scope=\"mcp:tools\""));
    // A bad token: the same plus invalid_token, and the SDKs' parsers still find both fields.
    let (status, h, body) = call(&app, "POST", "/mcp", Some("Bearer not.a.jwt"), json!({})).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_token")));
    let c = challenge(&h);
    assert!(c.starts_with("Bearer error=\"invalid_token\", error_description=\""), "{c}");
    assert!(c.ends_with(&format!(", resource_metadata=\"{PRM_URL}\", scope=\"mcp:tools\"")), "{c}");
    assert_eq!(sdk_field(&c, "resource_metadata").as_deref(), Some(PRM_URL));
    assert_eq!(sdk_field(&c, "scope").as_deref(), Some("mcp:tools"));
}

#[tokio::test]
async fn a_token_for_another_resource_is_refused_with_a_precise_description() {
    let key = TestKey::new("k1");
    let iss = TestIssuer::start(&[&key]).await;
    let app = api(&verifier(&iss, RESOURCE));
    let scope = json!({"scope": "mcp:tools"});
    // Minted for server A, presented to server B (RESOURCE): refused.
    let for_a =
        key.access_token(&iss.base, iss.now(), json!({"aud": "https://a.example.com/mcp", "scope": "mcp:tools"}));
    let (status, h, body) = call(&app, "POST", "/mcp", Some(&format!("Bearer {for_a}")), json!({})).await;
    assert_eq!(status, 401, "{body}");
    let d = body["error_description"].as_str().unwrap();
    assert!(d.contains("https://a.example.com/mcp") && d.contains(RESOURCE), "{d}");
    assert!(challenge(&h).contains("error=\"invalid_token\""));
    // The issuer's own audience (Latchkey's default) is no longer accepted once a resource is set.
    let for_issuer = key.access_token(&iss.base, iss.now(), scope.clone());
    let (status, _, _) = call(&app, "POST", "/mcp", Some(&format!("Bearer {for_issuer}")), json!({})).await;
    assert_eq!(status, 401);
    // A prefix of the resource is another resource.
    let prefix =
        key.access_token(&iss.base, iss.now(), json!({"aud": "https://mcp.example.com/mcpx", "scope": "mcp:tools"}));
    let (status, _, _) = call(&app, "POST", "/mcp", Some(&format!("Bearer {prefix}")), json!({})).await;
    assert_eq!(status, 401);
    // The token for this resource passes, alone or among other audiences.
    for aud in [json!(RESOURCE), json!(["https://a.example.com/mcp", RESOURCE])] {
        let t = key.access_token(&iss.base, iss.now(), json!({"aud": aud, "scope": "mcp:tools"}));
        let (status, _, body) = call(&app, "POST", "/mcp", Some(&format!("Bearer {t}")), json!({})).await;
        assert_eq!((status, body), (200, json!({"sub": "user-1"})));
    }
}

#[tokio::test]
async fn a_host_only_resource_matches_with_or_without_the_trailing_slash() {
    let key = TestKey::new("k1");
    let iss = TestIssuer::start(&[&key]).await;
    for (configured, aud, ok) in [
        ("https://mcp.example.com", "https://mcp.example.com/", true),
        ("https://mcp.example.com/", "https://mcp.example.com", true),
        ("https://mcp.example.com", "https://mcp.example.com", true),
        ("https://mcp.example.com/mcp", "https://mcp.example.com/mcp/", false),
        ("https://mcp.example.com", "https://mcp.example.com.evil", false),
    ] {
        let v = verifier(&iss, configured);
        let t = key.access_token(&iss.base, iss.now(), json!({"aud": aud}));
        assert_eq!(v.verify(&t).await.is_ok(), ok, "resource {configured}, aud {aud}");
    }
}

#[tokio::test]
async fn insufficient_scope_names_every_scope_the_request_needs() {
    let key = TestKey::new("k1");
    let iss = TestIssuer::start(&[&key]).await;
    let app = api(&verifier(&iss, RESOURCE));
    let t = key.access_token(&iss.base, iss.now(), json!({"aud": RESOURCE, "scope": "mcp:tools"}));
    let (status, h, body) = call(&app, "POST", "/mcp", Some(&format!("Bearer {t}")), json!({"op": "admin"})).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("insufficient_scope")));
    let c = challenge(&h);
    // Granted and missing scopes alike, in one challenge: the client re-authorizes with this set.
    assert_eq!(sdk_field(&c, "scope").as_deref(), Some("mcp:admin mcp:tools"), "{c}");
    assert_eq!(sdk_field(&c, "error").as_deref(), Some("insufficient_scope"));
    assert_eq!(sdk_field(&c, "resource_metadata").as_deref(), Some(PRM_URL));
    // A token without even the route's scope: 403 naming the route's scope.
    let t = key.access_token(&iss.base, iss.now(), json!({"aud": RESOURCE, "scope": "openid"}));
    let (status, h, _) = call(&app, "POST", "/mcp", Some(&format!("Bearer {t}")), json!({})).await;
    assert_eq!(status, 403);
    assert_eq!(sdk_field(&challenge(&h), "scope").as_deref(), Some("mcp:tools"));
}

#[tokio::test]
async fn a_resource_must_be_absolute_https_without_query_or_fragment() {
    for bad in
        ["mcp.example.com/mcp", "http://mcp.example.com/mcp", "https://h/mcp#x", "https://h/mcp?x=1", "https://u@h/mcp"]
    {
        let e = Verifier::builder("https://id.example").resource(bad).build().unwrap_err();
        assert!(matches!(e, ConfigError::Resource(_)), "{bad}: {e}");
    }
    assert!(Verifier::builder("https://id.example").resource("http://127.0.0.1:3000/mcp").build().is_ok());
}
