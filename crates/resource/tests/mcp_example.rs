//! The example MCP server (`examples/mcp_server.rs`) speaks the Streamable HTTP methods MCP
//! clients use and refuses as the MCP authorization spec asks, driven here without sockets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/mcp_server.rs"]
mod example;

use axum::body::Body;
use axum::http::{HeaderMap, Request};
use common::*;
use latchkey_resource::Verifier;
use serde_json::{Value, json};
use tower::ServiceExt;

const RESOURCE: &str = "http://127.0.0.1:3001/mcp";

async fn rpc(app: &axum::Router, method: &str, token: Option<&str>, body: Value) -> (u16, HeaderMap, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri("/mcp")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let res = app.clone().oneshot(req.body(Body::from(body.to_string())).unwrap()).await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
    (status, headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_example_serves_tools_and_steps_up_to_the_admin_scope() {
    let key = TestKey::new("k1");
    let iss = TestIssuer::start(&[&key]).await;
    let v = Verifier::builder(&iss.base).clock(iss.clock()).resource(RESOURCE).build().unwrap();
    let app = example::app(v).unwrap();
    let tools = key.access_token(&iss.base, iss.now(), json!({"aud": RESOURCE, "scope": "mcp:tools"}));

    let (status, h, _) = rpc(&app, "POST", None, json!({"jsonrpc": "2.0", "id": 1, "method": "initialize"})).await;
    assert_eq!(status, 401);
    assert_eq!(
        h["www-authenticate"],
        "Bearer resource_metadata=\"http://127.0.0.1:3001/.well-known/oauth-protected-resource/mcp\", scope=\"mcp:tools\""
    );

    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let (status, _, body) = rpc(&app, "POST", Some(&tools), init).await;
    assert_eq!(status, 200);
    assert_eq!(body["result"]["protocolVersion"], "2025-06-18");
    assert!(body["result"]["capabilities"]["tools"].is_object());

    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert_eq!(rpc(&app, "POST", Some(&tools), note).await.0, 202);

    let (_, _, body) =
        rpc(&app, "POST", Some(&tools), json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})).await;
    let names: Vec<&str> =
        body["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["whoami", "admin_reset"]);

    let call = |name: &str| json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": name, "arguments": {}}});
    let (status, _, body) = rpc(&app, "POST", Some(&tools), call("whoami")).await;
    assert_eq!(status, 200);
    let who: Value = serde_json::from_str(body["result"]["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!((who["sub"].as_str(), who["scope"].as_str()), (Some("user-1"), Some("mcp:tools")));

    // Without mcp:admin: 403 naming every scope the call needs, so the client's step-up keeps
    // mcp:tools.
    let (status, h, _) = rpc(&app, "POST", Some(&tools), call("admin_reset")).await;
    assert_eq!(status, 403);
    let c = h["www-authenticate"].to_str().unwrap();
    assert!(
        c.starts_with("Bearer error=\"insufficient_scope\"") && c.ends_with("scope=\"mcp:admin mcp:tools\""),
        "{c}"
    );
    let admin = key.access_token(&iss.base, iss.now(), json!({"aud": RESOURCE, "scope": "mcp:tools mcp:admin"}));
    let (status, _, body) = rpc(&app, "POST", Some(&admin), call("admin_reset")).await;
    assert_eq!((status, body["result"]["content"][0]["text"].as_str()), (200, Some("reset done")));

    // No server-initiated stream: GET is 405, token or not.
    assert_eq!(rpc(&app, "GET", Some(&tools), Value::Null).await.0, 405);
    let (status, _, body) = rpc(&app, "POST", Some(&tools), json!({"jsonrpc": "2.0", "id": 4, "method": "nope"})).await;
    assert_eq!((status, body["error"]["code"].as_i64()), (200, Some(-32601)));
}
