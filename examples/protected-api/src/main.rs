//! A small API protected by `latchkey-resource`: the seed's steps 8-9, a resource server that
//! accepts the access tokens Latchkey (or any compliant issuer) signs.
//!
//! - `GET  /public`  anyone
//! - `GET  /me`      any valid access token: who the caller is
//! - `GET  /notes`   needs scope `notes:read`
//! - `POST /notes`   needs scope `notes:write` (the body is the note)
//!
//! Run: `cargo run -p latchkey-example-protected-api -- --issuer http://127.0.0.1:8080`
//! (add `--allow-origin http://127.0.0.1:5173` to let the SPA example call it from its page).
//!
//! Bearer tokens and DPoP-bound tokens (RFC 9449) are both accepted; `--require-dpop` takes only
//! the latter, `--dpop-nonces` makes every proof carry a nonce of this API.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::routing::get;
use axum::{Json, Router};
use clap::Parser;
use latchkey_resource::{Claims, ConfigError, DpopMode, Verifier};
use serde_json::{Value, json};
use tower_http::cors::{AllowOrigin, CorsLayer};

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
    /// A browser origin (`scheme://host[:port]`) whose pages may call the API from JavaScript,
    /// e.g. the SPA example's `http://127.0.0.1:5173`. Repeat it, or list several separated by
    /// commas. Without it, no other origin's script can read an answer.
    #[arg(long = "allow-origin", env = "PROTECTED_API_ALLOW_ORIGINS", value_delimiter = ',', value_parser = parse_origin)]
    allow_origins: Vec<HeaderValue>,
    /// The URL clients call this API at (scheme://host[:port][/prefix]): a DPoP proof must name
    /// it (RFC 9449 §4.3). Default: `http://` and the address it listens on, when that is a
    /// loopback address; otherwise, without this flag, DPoP-bound tokens are refused.
    #[arg(long)]
    external_url: Option<String>,
    /// Accept DPoP-bound tokens only (with their proofs), never a bearer token.
    #[arg(long)]
    require_dpop: bool,
    /// Require a nonce of this API in every DPoP proof (RFC 9449 §9): a proof made in advance, by
    /// someone who held the key for a moment, is then useless. The nonces are keyed by a random
    /// secret made at start-up.
    #[arg(long)]
    dpop_nonces: bool,
}

/// How the API takes DPoP-bound tokens (RFC 9449 §7).
#[derive(Debug, Clone, Default)]
struct DpopSettings {
    /// What proofs must name as `htu`; `None`: DPoP is off (bearer tokens only).
    external_url: Option<String>,
    required: bool,
    nonces: bool,
}

impl DpopSettings {
    /// The settings from the flags, for an API listening on `local`. The default URL is only a
    /// loopback address: `http://0.0.0.0:3000` is nobody's URL, and a proof naming the
    /// listening address of a server behind a proxy would name the wrong one.
    fn from_args(args: &Args, local: std::net::SocketAddr) -> Result<Self, String> {
        let external_url = match &args.external_url {
            Some(url) => Some(url.clone()),
            None if local.ip().is_loopback() => Some(format!("http://{local}")),
            None if args.require_dpop || args.dpop_nonces => {
                return Err(format!(
                    "--require-dpop and --dpop-nonces need --external-url: {local} is not a loopback address"
                ));
            }
            None => None,
        };
        Ok(Self { external_url, required: args.require_dpop, nonces: args.dpop_nonces })
    }
}

/// An origin exactly as a browser sends it in `Origin` (RFC 6454 §6.1), so that the comparison
/// with the request's header is a plain equality. `*` is refused: the API answers for whoever
/// the token belongs to, and only the listed apps should be able to read that from a page.
fn parse_origin(s: &str) -> Result<HeaderValue, String> {
    let not_an_origin =
        || format!("{s:?} is not an origin: an origin is scheme://host[:port], e.g. http://127.0.0.1:5173");
    if s == "*" {
        return Err("\"*\" would let any site call the API: list each app's origin instead".into());
    }
    let origin = url::Url::parse(s).map_err(|_| not_an_origin())?.origin();
    if !origin.is_tuple() {
        return Err(not_an_origin());
    }
    let serialized = origin.ascii_serialization();
    if serialized != s {
        return Err(format!("{s:?} is not an origin as browsers send it: did you mean {serialized}?"));
    }
    HeaderValue::from_str(&serialized).map_err(|_| not_an_origin())
}

/// Notes per user, in memory.
type Notes = Arc<Mutex<HashMap<String, Vec<String>>>>;

/// Bounds on what the example keeps in memory: any holder of a valid token (a new user, a new
/// client-credentials client) adds a subject, so without them memory grows without limit.
const MAX_NOTES_PER_SUBJECT: usize = 100;
const MAX_SUBJECTS: usize = 1_000;
/// The largest note, in bytes (a larger body is refused with 413 before the handler runs).
const MAX_NOTE_BYTES: usize = 4 * 1024;

/// Accepts the issuer's access tokens for `audience` (default: the issuer itself): bearer tokens,
/// and DPoP-bound ones when `dpop` has a URL. A bound token sent as Bearer is refused in every
/// mode (RFC 9449 §7.2): a copy of it without the key is worth nothing.
fn verifier(issuer: &str, audience: Option<&str>, dpop: &DpopSettings) -> Result<Verifier, ConfigError> {
    let mut builder = Verifier::builder(issuer).realm("notes");
    if let Some(aud) = audience {
        builder = builder.audience(aud);
    }
    builder = match &dpop.external_url {
        Some(url) => {
            let mode = if dpop.required { DpopMode::Required } else { DpopMode::Allowed };
            builder.external_url(url).dpop(mode)
        }
        None => builder.dpop(DpopMode::Off),
    };
    if dpop.nonces {
        // Fresh for each start: this API runs as one instance, so nothing else must accept its
        // nonces. Handed out for 60 s, accepted for up to 120 s.
        builder = builder.dpop_nonces(rand::random::<[u8; 32]>().to_vec(), Duration::from_secs(60));
    }
    builder.build()
}

fn app(verifier: &Verifier, allow_origins: Vec<HeaderValue>) -> Router {
    let notes = Notes::default();
    Router::new()
        .route("/public", get(|| async { Json(json!({"message": "hello, anyone"})) }))
        .route("/me", get(me).route_layer(verifier.layer()))
        .route("/notes", get(list).route_layer(verifier.require("notes:read")))
        .route(
            "/notes",
            axum::routing::post(add)
                .route_layer(verifier.require("notes:write"))
                .layer(axum::extract::DefaultBodyLimit::max(MAX_NOTE_BYTES)),
        )
        .with_state(notes)
        // Outermost, so that a preflight is answered before any route asks for a token.
        .layer(cors(allow_origins))
}

/// `DPoP` (RFC 9449 §4.1) and `DPoP-Nonce` (§8.1), as `HeaderName::from_static` wants them.
const DPOP: HeaderName = HeaderName::from_static("dpop");
const DPOP_NONCE: HeaderName = HeaderName::from_static("dpop-nonce");

/// CORS for the listed origins only. A page's `fetch` with `Authorization` is preflighted; an
/// origin not on the list gets no `Access-Control-Allow-Origin`, so its browser keeps both the
/// call and the answer from it. No `Access-Control-Allow-Credentials`: the token travels in a
/// header the page sets itself, never in a cookie the browser would attach on its own.
fn cors(allow_origins: Vec<HeaderValue>) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(allow_origins))
        .allow_methods([Method::GET, Method::POST])
        // A DPoP client sends its proof in the `DPoP` header.
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, DPOP])
        // The page may read why a token was refused (RFC 6750 §3, RFC 9449 §7.1) and the nonce
        // its next proof must carry (RFC 9449 §9).
        .expose_headers([header::WWW_AUTHENTICATE, DPOP_NONCE])
        .max_age(Duration::from_secs(600))
}

/// Who the caller is, and the key its token is bound to (`cnf.jkt`, RFC 9449 §6.1; `null` for a
/// bearer token): the request came with a proof by that key.
async fn me(claims: Claims) -> Json<Value> {
    Json(json!({
        "sub": claims.sub,
        "scope": claims.scope.to_string(),
        "client_id": claims.client_id,
        "dpop_jkt": claims.dpop_jkt,
    }))
}

async fn list(State(notes): State<Notes>, claims: Claims) -> Json<Value> {
    let mine = notes.lock().map(|n| n.get(&claims.sub).cloned().unwrap_or_default()).unwrap_or_default();
    Json(json!({"notes": mine}))
}

async fn add(State(notes): State<Notes>, claims: Claims, body: String) -> (StatusCode, Json<Value>) {
    let Ok(mut n) = notes.lock() else {
        return (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"error": "internal error"})));
    };
    match store_note(&mut n, claims.sub, body) {
        Ok(()) => (StatusCode::OK, Json(json!({"added": true}))),
        Err(full) => (full.status(), Json(json!({"error": full.to_string()}))),
    }
}

/// Why a note was not kept.
#[derive(Debug, PartialEq, Eq)]
enum Full {
    Subject,
    Everyone,
}

impl Full {
    fn status(&self) -> StatusCode {
        match self {
            // The caller can make room (this example has no delete, but a real API would).
            Self::Subject => StatusCode::CONFLICT,
            // Not the caller's doing: the server is out of room.
            Self::Everyone => StatusCode::INSUFFICIENT_STORAGE,
        }
    }
}

impl std::fmt::Display for Full {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Subject => {
                write!(f, "you already have {MAX_NOTES_PER_SUBJECT} notes, the most this example keeps per user")
            }
            Self::Everyone => {
                write!(f, "this example keeps notes for at most {MAX_SUBJECTS} users, and that many have notes")
            }
        }
    }
}

fn store_note(notes: &mut HashMap<String, Vec<String>>, sub: String, note: String) -> Result<(), Full> {
    let subjects = notes.len();
    match notes.get_mut(&sub) {
        Some(mine) if mine.len() >= MAX_NOTES_PER_SUBJECT => Err(Full::Subject),
        Some(mine) => {
            mine.push(note);
            Ok(())
        }
        None if subjects >= MAX_SUBJECTS => Err(Full::Everyone),
        None => {
            notes.insert(sub, vec![note]);
            Ok(())
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let args = Args::parse();
    // Bound first: with `--listen 127.0.0.1:0` the port, and so the URL DPoP proofs name, is
    // known only now.
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    let local = listener.local_addr()?;
    let dpop = DpopSettings::from_args(&args, local)?;
    let verifier = verifier(&args.issuer, args.audience.as_deref(), &dpop)?;
    match (&dpop.external_url, verifier.dpop_mode()) {
        (Some(url), mode) => tracing::info!(?mode, url = %url, nonces = dpop.nonces, "DPoP-bound tokens accepted"),
        (None, _) => tracing::info!("no --external-url: DPoP-bound tokens are refused, bearer tokens accepted"),
    }
    if let Err(e) = verifier.refresh_keys().await {
        tracing::warn!(error = %e, "the issuer's keys are not reachable yet; retrying on the first request");
    }
    if args.allow_origins.is_empty() {
        tracing::info!("no --allow-origin: pages of other origins cannot call this API from JavaScript");
    } else {
        let origins: Vec<&str> = args.allow_origins.iter().filter_map(|o| o.to_str().ok()).collect();
        tracing::info!(origins = %origins.join(", "), "CORS: pages of these origins may call this API");
    }
    println!("notes API on http://{local} (tokens from {})", args.issuer);
    axum::serve(listener, app(&verifier, args.allow_origins)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    const ISSUER: &str = "http://127.0.0.1:9";

    /// A verifier as `main` makes it from these command-line arguments, listening on `local`.
    fn verifier_for(args: &[&str], local: &str) -> Result<Verifier, String> {
        let args = Args::try_parse_from([&["api"][..], args].concat()).map_err(|e| e.to_string())?;
        let dpop = DpopSettings::from_args(&args, local.parse().unwrap())?;
        verifier(&args.issuer, None, &dpop).map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn public_route_is_open_and_the_others_want_a_token() {
        let app = app(&verifier(ISSUER, None, &DpopSettings::default()).unwrap(), Vec::new());
        let get = |p: &str| Request::get(p).body(Body::empty()).unwrap();
        assert_eq!(app.clone().oneshot(get("/public")).await.unwrap().status(), 200);
        for path in ["/me", "/notes"] {
            let res = app.clone().oneshot(get(path)).await.unwrap();
            assert_eq!(res.status(), 401, "{path}");
            assert_eq!(res.headers()["www-authenticate"], "Bearer realm=\"notes\"");
        }
    }

    fn preflight(origin: &str) -> Request<Body> {
        Request::options("/me")
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization,dpop")
            .body(Body::empty())
            .unwrap()
    }

    #[tokio::test]
    async fn cors_answers_only_the_allowed_origins() {
        let allowed =
            vec![parse_origin("http://127.0.0.1:5173").unwrap(), parse_origin("https://app.example").unwrap()];
        let app = app(&verifier_for(&["--issuer", ISSUER], "127.0.0.1:3000").unwrap(), allowed);

        for origin in ["http://127.0.0.1:5173", "https://app.example"] {
            let res = app.clone().oneshot(preflight(origin)).await.unwrap();
            assert!(res.status().is_success(), "{origin}: {}", res.status());
            let h = res.headers();
            assert_eq!(h["access-control-allow-origin"], origin);
            assert!(h["access-control-allow-methods"].to_str().unwrap().contains("GET"));
            let allowed = h["access-control-allow-headers"].to_str().unwrap();
            assert!(allowed.contains("authorization") && allowed.contains("dpop"), "{allowed}");
            assert!(h.get("access-control-allow-credentials").is_none(), "bearer tokens, no cookies");
        }
        // Another origin, even one differing only by port or scheme, gets nothing a browser accepts.
        for origin in ["http://127.0.0.1:5174", "http://app.example", "https://evil.example", "null"] {
            let res = app.clone().oneshot(preflight(origin)).await.unwrap();
            assert!(res.headers().get("access-control-allow-origin").is_none(), "{origin}");
        }

        // The actual call: a refusal is readable by the allowed page, with its reason.
        let req = Request::get("/me").header("origin", "http://127.0.0.1:5173").body(Body::empty()).unwrap();
        let res = app.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), 401);
        assert_eq!(res.headers()["access-control-allow-origin"], "http://127.0.0.1:5173");
        // The reason, and the nonce a DPoP client's next proof must carry (RFC 9449 §9).
        assert_eq!(res.headers()["access-control-expose-headers"], "www-authenticate,dpop-nonce");
        let req = Request::get("/public").header("origin", "https://evil.example").body(Body::empty()).unwrap();
        let res = app.oneshot(req).await.unwrap();
        assert_eq!(res.status(), 200);
        assert!(res.headers().get("access-control-allow-origin").is_none());
    }

    /// The challenges of a request without a token, one per accepted scheme (RFC 9449 §7.1),
    /// and the `DPoP-Nonce` header when nonces are on.
    async fn refusal(v: Verifier) -> (Vec<String>, Option<String>) {
        let res = app(&v, Vec::new()).oneshot(Request::get("/me").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(res.status(), 401);
        let challenges = res.headers().get_all("www-authenticate").iter().map(|v| v.to_str().unwrap().to_owned());
        (challenges.collect(), res.headers().get("dpop-nonce").map(|v| v.to_str().unwrap().to_owned()))
    }

    #[tokio::test]
    async fn dpop_bound_tokens_are_accepted_at_a_loopback_address_and_required_on_request() {
        // By default, on a loopback address: Bearer and DPoP, proofs naming http://127.0.0.1:3000.
        let v = verifier_for(&["--issuer", ISSUER], "127.0.0.1:3000").unwrap();
        assert_eq!(v.dpop_mode(), DpopMode::Allowed);
        let (challenges, nonce) = refusal(v).await;
        assert_eq!(challenges[0], "Bearer realm=\"notes\"");
        assert!(challenges[1].starts_with("DPoP realm=\"notes\", algs=\"ES256"), "{challenges:?}");
        assert_eq!((challenges.len(), nonce), (2, None));

        // --require-dpop: no Bearer challenge; --dpop-nonces: a nonce comes with the refusal.
        let v = verifier_for(&["--require-dpop", "--dpop-nonces"], "127.0.0.1:3000").unwrap();
        assert_eq!(v.dpop_mode(), DpopMode::Required);
        let (challenges, nonce) = refusal(v).await;
        assert_eq!(challenges.len(), 1, "{challenges:?}");
        assert!(challenges[0].starts_with("DPoP realm=\"notes\""), "{challenges:?}");
        assert!(nonce.is_some_and(|n| n.len() >= 16));

        // Listening on every address, the API cannot tell its URL: DPoP is off unless given one.
        let v = verifier_for(&[], "0.0.0.0:3000").unwrap();
        assert_eq!(v.dpop_mode(), DpopMode::Off);
        let e = verifier_for(&["--require-dpop"], "0.0.0.0:3000").unwrap_err();
        assert!(e.contains("need --external-url"), "{e}");
        let v = verifier_for(&["--external-url", "https://notes.example", "--require-dpop"], "0.0.0.0:3000");
        assert_eq!(v.unwrap().dpop_mode(), DpopMode::Required);
        // The URL must be one a proof can name: https (or loopback), without a query.
        assert!(verifier_for(&["--external-url", "http://notes.example"], "0.0.0.0:3000").is_err());
    }

    /// Review finding 19m: memory is bounded per subject and in subjects, with a clear error.
    #[test]
    fn notes_are_bounded_per_subject_and_in_subjects() {
        let mut notes = HashMap::new();
        for i in 0..MAX_NOTES_PER_SUBJECT {
            store_note(&mut notes, "alice".into(), format!("note {i}")).unwrap();
        }
        let e = store_note(&mut notes, "alice".into(), "one more".into()).unwrap_err();
        assert_eq!((e.status(), e.to_string().contains("100 notes")), (StatusCode::CONFLICT, true), "{e}");
        assert_eq!(notes["alice"].len(), MAX_NOTES_PER_SUBJECT);
        for i in 1..MAX_SUBJECTS {
            store_note(&mut notes, format!("user-{i}"), "n".into()).unwrap();
        }
        let e = store_note(&mut notes, "newcomer".into(), "n".into()).unwrap_err();
        assert_eq!(e, Full::Everyone);
        assert_eq!(e.status(), StatusCode::INSUFFICIENT_STORAGE);
        assert_eq!(notes.len(), MAX_SUBJECTS);
        // A known subject below its own cap may still add.
        store_note(&mut notes, "user-1".into(), "second".into()).unwrap();
    }

    #[test]
    fn allowed_origins_are_exact_origins_never_a_wildcard() {
        assert_eq!(parse_origin("http://127.0.0.1:5173").unwrap(), "http://127.0.0.1:5173");
        assert!(parse_origin("*").unwrap_err().contains("any site"));
        assert!(parse_origin("http://127.0.0.1:5173/").unwrap_err().contains("did you mean http://127.0.0.1:5173?"));
        assert!(parse_origin("https://app.example:443").unwrap_err().contains("did you mean https://app.example?"));
        for bad in ["null", "127.0.0.1:5173", "file:///tmp/x", "data:text/plain,x", ""] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
        // The flag repeats, and one value (of the flag or of PROTECTED_API_ALLOW_ORIGINS) may list several.
        let args =
            Args::try_parse_from(["api", "--allow-origin", "https://a.example", "--allow-origin", "https://b.example"]);
        assert_eq!(args.unwrap().allow_origins.len(), 2);
        let args = Args::try_parse_from(["api", "--allow-origin", "https://a.example,https://b.example:8443"]);
        assert_eq!(args.unwrap().allow_origins[1], "https://b.example:8443");
        assert!(Args::try_parse_from(["api", "--allow-origin", "*"]).is_err());
    }
}
