//! A Model Context Protocol server protected by `latchkey-resource`: what an MCP host (Claude,
//! VS Code, the official TypeScript and Python SDK clients) needs to find the authorization
//! server and use its tokens.
//!
//! - MCP Streamable HTTP at `/mcp`: JSON-RPC 2.0 over POST (`initialize`, `ping`, `tools/list`,
//!   `tools/call`), answered with `application/json`; notifications get 202; GET (no server-sent
//!   stream offered) and DELETE (no sessions) get 405.
//! - RFC 9728 protected resource metadata at `/.well-known/oauth-protected-resource/mcp` and
//!   `/.well-known/oauth-protected-resource`.
//! - Every POST needs a token with `aud` = `--resource` and scope `mcp:tools`, as a Bearer token
//!   or DPoP-bound with its proof (the resource's origin is the URL proofs must name); a 401 says where
//!   the metadata is and which scope to ask for. The tool `admin_reset` also needs `mcp:admin`:
//!   without it the answer is 403 `insufficient_scope` naming both scopes, and the SDK clients
//!   re-authorize with that scope (their "step-up").
//!
//! The few JSON-RPC methods are written by hand rather than with the `rmcp` crate: a tools-only
//! server needs four methods, and the example shows where the token checks sit with no framework
//! in between.
//!
//! ```text
//! cargo run -p latchkey-resource --example mcp_server -- \
//!     --listen 127.0.0.1:3001 --issuer http://127.0.0.1:8080 --resource http://127.0.0.1:3001/mcp
//! ```
//! Without `--resource` the resource is `http://<bound address>/mcp` (handy with port 0). It
//! prints `MCP server listening on http://<addr>/mcp …` once bound.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use latchkey_resource::{Claims, Scope, Verifier};
use serde_json::{Value, json};

const TOOLS: &str = "mcp:tools";
const ADMIN: &str = "mcp:admin";
/// The protocol revisions whose tool methods this server speaks (they did not change).
const VERSIONS: &[&str] = &["2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26"];

struct Args {
    listen: String,
    issuer: String,
    resource: Option<String>,
}

fn args() -> Result<Args, String> {
    let mut a = Args { listen: "127.0.0.1:3001".into(), issuer: "http://127.0.0.1:8080".into(), resource: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => a.listen = value()?,
            "--issuer" => a.issuer = value()?,
            "--resource" => a.resource = Some(value()?),
            "-h" | "--help" => {
                return Err("usage: mcp_server [--listen ADDR] [--issuer URL] [--resource URI]".into());
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(a)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = args()?;
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    let addr = listener.local_addr()?;
    let resource = args.resource.unwrap_or_else(|| format!("http://{addr}/mcp"));
    let verifier = Verifier::builder(&args.issuer).resource(&resource).build()?;
    if let Err(e) = verifier.refresh_keys().await {
        eprintln!("warning: cannot fetch the issuer's keys yet ({e}); will retry on the first request");
    }
    let app = app(verifier).ok_or("a verifier with a resource has metadata")?;
    println!("MCP server listening on http://{addr}/mcp (resource {resource}, tokens from {})", args.issuer);
    axum::serve(listener, app).await?;
    Ok(())
}

/// The MCP endpoint and the metadata; `None` if the verifier has no resource.
pub fn app(verifier: Verifier) -> Option<Router> {
    let metadata = verifier.protected_resource_metadata([TOOLS, ADMIN])?.resource_name("Latchkey example MCP server");
    Some(
        Router::new()
            .route(
                "/mcp",
                // The token check guards POST only (route_layer covers the methods added before
                // it): GET and DELETE answer 405 whoever asks.
                post(mcp).route_layer(verifier.require(TOOLS)).get(not_allowed).delete(not_allowed),
            )
            .merge(metadata.router())
            .with_state(Arc::new(verifier)),
    )
}

/// Streamable HTTP: a server that offers no SSE stream answers GET with 405; one without
/// sessions answers DELETE with 405.
async fn not_allowed() -> Response {
    let mut res = StatusCode::METHOD_NOT_ALLOWED.into_response();
    res.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
    res
}

/// One JSON-RPC message per POST (batches were removed in 2025-06-18).
async fn mcp(State(verifier): State<Arc<Verifier>>, headers: HeaderMap, claims: Claims, body: Bytes) -> Response {
    let Ok(msg) = serde_json::from_slice::<Value>(&body) else {
        return rpc_error(Value::Null, -32700, "parse error: the body is not JSON");
    };
    let Some(method) = msg.get("method").and_then(Value::as_str) else {
        // A response to a server request, which this server never sends: accept and ignore.
        return StatusCode::ACCEPTED.into_response();
    };
    let Some(id) = msg.get("id").cloned() else {
        // A notification (`notifications/initialized`, `notifications/cancelled`…): 202, no body.
        return StatusCode::ACCEPTED.into_response();
    };
    let params = msg.get("params").cloned().unwrap_or(Value::Null);
    match method {
        "initialize" => {
            let asked = params["protocolVersion"].as_str().unwrap_or_default();
            // Answer the client's revision when it is one we speak, else our latest (it may then
            // disconnect, as the spec says).
            let version = VERSIONS.iter().find(|v| **v == asked).unwrap_or(&VERSIONS[1]);
            rpc_result(
                id,
                json!({
                    "protocolVersion": version,
                    "capabilities": {"tools": {"listChanged": false}},
                    "serverInfo": {"name": "latchkey-example-mcp", "version": env!("CARGO_PKG_VERSION")},
                }),
            )
        }
        "ping" => rpc_result(id, json!({})),
        "tools/list" => rpc_result(
            id,
            json!({"tools": [
                {"name": "whoami", "description": "Who the access token says you are, and its scope",
                 "inputSchema": {"type": "object", "properties": {}}},
                {"name": "admin_reset", "description": "An administrative action; needs scope mcp:admin",
                 "inputSchema": {"type": "object", "properties": {}}},
            ]}),
        ),
        "tools/call" => match params["name"].as_str() {
            Some("whoami") => {
                let who = json!({"sub": claims.sub, "scope": claims.scope.to_string(), "client_id": claims.client_id});
                rpc_result(id, json!({"content": [{"type": "text", "text": who.to_string()}], "isError": false}))
            }
            Some("admin_reset") => {
                // Every scope this call needs, so the 403 challenge names them all: a client that
                // re-authorizes with only `mcp:admin` would lose `mcp:tools`.
                let needed = match Scope::parse(&format!("{TOOLS} {ADMIN}")) {
                    Ok(s) => s,
                    Err(_) => return rpc_error(id, -32603, "internal error"),
                };
                if let Err(refusal) = claims.require_scope(&needed) {
                    // With the request's headers, so a DPoP request's 403 comes on the DPoP challenge.
                    return verifier.refuse_request(&refusal, &needed, &headers);
                }
                rpc_result(id, json!({"content": [{"type": "text", "text": "reset done"}], "isError": false}))
            }
            _ => rpc_error(id, -32602, "unknown tool"),
        },
        _ => rpc_error(id, -32601, "method not found"),
    }
}

fn rpc_result(id: Value, result: Value) -> Response {
    Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response()
}

fn rpc_error(id: Value, code: i64, message: &str) -> Response {
    Json(json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})).into_response()
}
