//! A small API protected by `latchkey-resource`: the seed's steps 8-9, a resource server that
//! accepts the access tokens Latchkey (or any compliant issuer) signs.
//!
//! - `GET  /public`  anyone
//! - `GET  /me`      any valid access token: who the caller is
//! - `GET  /notes`   needs scope `notes:read`
//! - `POST /notes`   needs scope `notes:write` (the body is the note)
//!
//! Run: `cargo run -p latchkey-example-protected-api -- --issuer http://127.0.0.1:8080`

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use clap::Parser;
use latchkey_resource::{Claims, Verifier};
use serde_json::{Value, json};

#[derive(Parser, Debug)]
#[command(about = "A notes API that accepts Latchkey access tokens")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: String,
    /// The issuer whose tokens are accepted.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    issuer: String,
    /// The audience tokens must carry (default: the issuer, Latchkey's default audience).
    #[arg(long)]
    audience: Option<String>,
}

/// Notes per user, in memory.
type Notes = Arc<Mutex<HashMap<String, Vec<String>>>>;

/// Accepts the issuer's access tokens for `audience` (default: the issuer itself).
fn verifier(issuer: &str, audience: Option<&str>) -> Result<Verifier, latchkey_resource::ConfigError> {
    let mut builder = Verifier::builder(issuer).realm("notes");
    if let Some(aud) = audience {
        builder = builder.audience(aud);
    }
    builder.build()
}

fn app(verifier: &Verifier) -> Router {
    let notes = Notes::default();
    Router::new()
        .route("/public", get(|| async { Json(json!({"message": "hello, anyone"})) }))
        .route("/me", get(me).route_layer(verifier.layer()))
        .route("/notes", get(list).route_layer(verifier.require("notes:read")))
        .route("/notes", axum::routing::post(add).route_layer(verifier.require("notes:write")))
        .with_state(notes)
}

async fn me(claims: Claims) -> Json<Value> {
    Json(json!({"sub": claims.sub, "scope": claims.scope.to_string(), "client_id": claims.client_id}))
}

async fn list(State(notes): State<Notes>, claims: Claims) -> Json<Value> {
    let mine = notes.lock().map(|n| n.get(&claims.sub).cloned().unwrap_or_default()).unwrap_or_default();
    Json(json!({"notes": mine}))
}

async fn add(State(notes): State<Notes>, claims: Claims, body: String) -> Json<Value> {
    if let Ok(mut n) = notes.lock() {
        n.entry(claims.sub).or_default().push(body);
    }
    Json(json!({"added": true}))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let args = Args::parse();
    let verifier = verifier(&args.issuer, args.audience.as_deref())?;
    if let Err(e) = verifier.refresh_keys().await {
        tracing::warn!(error = %e, "the issuer's keys are not reachable yet; retrying on the first request");
    }
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    println!("notes API on http://{} (tokens from {})", listener.local_addr()?, args.issuer);
    axum::serve(listener, app(&verifier)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    #[tokio::test]
    async fn public_route_is_open_and_the_others_want_a_token() {
        let app = app(&verifier("http://127.0.0.1:9", None).unwrap());
        let get = |p: &str| Request::get(p).body(Body::empty()).unwrap();
        assert_eq!(app.clone().oneshot(get("/public")).await.unwrap().status(), 200);
        for path in ["/me", "/notes"] {
            let res = app.clone().oneshot(get(path)).await.unwrap();
            assert_eq!(res.status(), 401, "{path}");
            assert_eq!(res.headers()["www-authenticate"], "Bearer realm=\"notes\"");
        }
    }
}
