//! The device flow against a scripted provider on a local socket, with a fake clock: the whole
//! polling loop runs without waiting.
#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use latchkey_proto::ClientId;
use latchkey_proto::discovery::IssuerMetadata;
use latchkey_proto::dpop::{DEFAULT_ALGORITHMS, DpopKey, DpopProof};

use super::*;
use crate::testkey::TestKey;
use crate::{Dpop, TokenType};

const START: i64 = 1_000_000;

/// Virtual time: `sleep` records the wait and moves `now` on at once.
#[derive(Default)]
struct FakeClock {
    now: AtomicI64,
    sleeps: Mutex<Vec<u64>>,
}

impl FakeClock {
    fn at(now: i64) -> Self {
        Self { now: AtomicI64::new(now), sleeps: Mutex::new(Vec::new()) }
    }
    fn sleeps(&self) -> Vec<u64> {
        self.sleeps.lock().unwrap().clone()
    }
}

impl PollClock for FakeClock {
    fn now(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }
    fn sleep(&self, wait: Duration) -> impl Future<Output = ()> + Send {
        self.sleeps.lock().unwrap().push(wait.as_secs());
        self.now.fetch_add(i64::try_from(wait.as_secs()).unwrap(), Ordering::SeqCst);
        std::future::ready(())
    }
}

/// One request the fake provider received.
#[derive(Clone, Debug)]
struct Seen {
    form: HashMap<String, String>,
    dpop: Option<DpopProof>,
}

/// A provider whose device authorization endpoint gives one fixed answer and whose token
/// endpoint plays a script of answers, one per poll (the last one repeats).
struct Fake {
    device_answer: serde_json::Value,
    token_script: Mutex<VecDeque<(u16, String)>>,
    device_requests: Mutex<Vec<Seen>>,
    polls: Mutex<Vec<Seen>>,
    jwks: serde_json::Value,
}

fn seen(headers: &HeaderMap, body: &str) -> Seen {
    let dpop = headers.get("dpop").map(|h| DpopProof::parse(h.to_str().unwrap(), DEFAULT_ALGORITHMS).unwrap());
    Seen { form: url::form_urlencoded::parse(body.as_bytes()).into_owned().collect(), dpop }
}

async fn device_endpoint(State(f): State<Arc<Fake>>, headers: HeaderMap, body: String) -> Response {
    f.device_requests.lock().unwrap().push(seen(&headers, &body));
    axum::Json(f.device_answer.clone()).into_response()
}

async fn token_endpoint(State(f): State<Arc<Fake>>, headers: HeaderMap, body: String) -> Response {
    f.polls.lock().unwrap().push(seen(&headers, &body));
    let mut script = f.token_script.lock().unwrap();
    let (status, body) = if script.len() > 1 { script.pop_front().unwrap() } else { script[0].clone() };
    (StatusCode::from_u16(status).unwrap(), [("content-type", "application/json")], body).into_response()
}

fn oauth_error(code: &str) -> (u16, String) {
    (400, serde_json::json!({ "error": code, "error_description": format!("{code} from the fake") }).to_string())
}

fn tokens(token_type: &str) -> (u16, String) {
    (
        200,
        serde_json::json!({ "access_token": "at-1", "token_type": token_type, "expires_in": 300,
        "refresh_token": "rt-1" })
        .to_string(),
    )
}

fn device_answer(interval: Option<u64>, expires_in: u64) -> serde_json::Value {
    let mut v = serde_json::json!({
        "device_code": "the-device-code", "user_code": "WDJB-MJHT",
        "verification_uri": "http://127.0.0.1/device",
        "verification_uri_complete": "http://127.0.0.1/device?user_code=WDJB-MJHT",
        "expires_in": expires_in,
    });
    if let Some(i) = interval {
        v["interval"] = i.into();
    }
    v
}

/// Serves `fake` and returns a public client `tv` for it.
async fn serve(fake: Fake) -> (Client, Arc<Fake>) {
    let fake = Arc::new(fake);
    let app = Router::new()
        .route("/device_authorization", post(device_endpoint))
        .route("/token", post(token_endpoint))
        .route("/jwks", get(|State(f): State<Arc<Fake>>| async move { axum::Json(f.jwks.clone()) }))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (client_for(&issuer, &format!("{issuer}/token")), fake)
}

fn client_for(issuer: &str, token_endpoint: &str) -> Client {
    let metadata = IssuerMetadata {
        issuer: issuer.into(),
        token_endpoint: Some(token_endpoint.into()),
        device_authorization_endpoint: Some(format!("{issuer}/device_authorization")),
        jwks_uri: Some(format!("{issuer}/jwks")),
        ..Default::default()
    };
    Client::from_metadata(reqwest::Client::new(), metadata, ClientId::parse("tv").unwrap())
}

fn provider(answer: serde_json::Value, script: Vec<(u16, String)>) -> Fake {
    Fake {
        device_answer: answer,
        token_script: Mutex::new(script.into()),
        device_requests: Mutex::default(),
        polls: Mutex::default(),
        jwks: serde_json::json!({ "keys": [] }),
    }
}

fn scope() -> Scope {
    Scope::parse("openid profile").unwrap()
}

#[tokio::test]
async fn the_request_names_the_client_scope_and_resource_and_the_answer_is_read() {
    let (client, fake) = serve(provider(device_answer(None, 600), vec![tokens("Bearer")])).await;
    let resource = ResourceUri::parse("https://api.example/").unwrap();
    let d = client.start_device_authorization(scope(), Some(&resource), START).await.unwrap();
    let sent = fake.device_requests.lock().unwrap()[0].form.clone();
    assert_eq!(sent["client_id"], "tv");
    assert_eq!(sent["scope"], "openid profile");
    assert_eq!(sent["resource"], "https://api.example/");
    assert!(fake.device_requests.lock().unwrap()[0].dpop.is_none());
    assert_eq!(d.device_code().expose_secret(), "the-device-code");
    assert_eq!(d.user_code, "WDJB-MJHT");
    assert_eq!(d.verification_uri.as_str(), "http://127.0.0.1/device");
    assert_eq!(d.verification_uri_complete.as_ref().unwrap().query(), Some("user_code=WDJB-MJHT"));
    assert_eq!(d.interval, DEFAULT_INTERVAL, "§3.2: 5 seconds when the provider gives no interval");
    assert_eq!(d.expires_at, START + 600);
    assert!(!format!("{d:?}").contains("the-device-code"), "the device code is redacted in Debug");
}

#[tokio::test]
async fn unusable_answers_are_refused() {
    let cases = [
        // An escape sequence in the user code would rewrite the terminal the user reads.
        ("user_code", serde_json::json!("WDJB\u{1b}[2J-MJHT"), "control characters"),
        ("user_code", serde_json::json!(""), "control characters"),
        ("verification_uri", serde_json::json!("javascript:alert(1)"), "not an http(s) URL"),
        ("verification_uri", serde_json::json!("/device"), "not an absolute URL"),
        ("verification_uri_complete", serde_json::json!("ftp://127.0.0.1/device"), "not an http(s) URL"),
        ("expires_in", serde_json::json!(0), "expires_in 0"),
        ("interval", serde_json::json!(86_400), "interval 86400"),
    ];
    for (field, value, why) in cases {
        let mut answer = device_answer(Some(5), 600);
        answer[field] = value;
        let (client, _) = serve(provider(answer, vec![tokens("Bearer")])).await;
        let e = client.start_device_authorization(scope(), None, START).await.unwrap_err();
        assert!(matches!(e, Error::BadDeviceResponse(_)), "{field}: {e}");
        assert!(e.to_string().contains(why), "{field}: {e}");
    }
}

#[test]
fn an_https_provider_cannot_send_the_user_to_an_http_page() {
    let raw = |uri: &str| RawDeviceAuthorization {
        device_code: "d".into(),
        user_code: "WDJB-MJHT".into(),
        verification_uri: uri.into(),
        verification_uri_complete: None,
        expires_in: 600,
        interval: None,
    };
    let ok = raw("https://id.example/device").check("https://id.example", scope(), START);
    assert!(ok.is_ok());
    // The user would type a password where the network can read it.
    let e = raw("http://id.example/device").check("https://id.example", scope(), START).unwrap_err();
    assert!(e.to_string().contains("plain http"), "{e}");
    let e = raw("http://127.0.0.1/device").check("https://id.example", scope(), START).unwrap_err();
    assert!(e.to_string().contains("plain http"), "{e}");
    // A loopback development provider may use http pages on loopback.
    assert!(raw("http://localhost:8080/device").check("http://127.0.0.1:8080", scope(), START).is_ok());
    assert!(raw("http://id.example/device").check("http://127.0.0.1:8080", scope(), START).is_err());
    // `verification_url` (the pre-RFC name) is read too; an interval of 0 becomes 1.
    let v: RawDeviceAuthorization = serde_json::from_str(
        r#"{"device_code":"d","user_code":"U","verification_url":"https://id.example/d","expires_in":60,"interval":0}"#,
    )
    .unwrap();
    assert_eq!(v.check("https://id.example", scope(), START).unwrap().interval, 1);
}

#[tokio::test]
async fn pending_and_slow_down_are_followed_as_section_3_5_says() {
    let script = vec![
        oauth_error("authorization_pending"),
        oauth_error("slow_down"),
        oauth_error("authorization_pending"),
        oauth_error("slow_down"),
        tokens("Bearer"),
    ];
    let (client, fake) = serve(provider(device_answer(Some(5), 600), script)).await;
    let clock = FakeClock::at(START);
    let d = client.start_device_authorization(scope(), None, clock.now()).await.unwrap();
    let set = client.poll_device_authorization(&d, &clock).await.unwrap();
    // The interval before every poll; +5 s after each slow_down, for all later polls.
    assert_eq!(clock.sleeps(), [5, 5, 10, 10, 15]);
    assert_eq!(set.access_token.expose_secret(), "at-1");
    assert_eq!(set.refresh_token.as_ref().unwrap().expose_secret(), "rt-1");
    assert_eq!(set.token_type, TokenType::Bearer);
    assert_eq!(set.scope, scope(), "no scope in the answer: the one requested");
    assert_eq!(set.expires_at, Some(START + 45 + 300), "counted from the successful poll");
    let polls = fake.polls.lock().unwrap();
    assert_eq!(polls.len(), 5);
    for p in polls.iter() {
        assert_eq!(p.form["grant_type"], DEVICE_CODE_GRANT);
        assert_eq!(p.form["device_code"], "the-device-code");
        assert_eq!(p.form["client_id"], "tv");
        assert!(p.dpop.is_none());
    }
}

#[tokio::test]
async fn a_denial_and_an_expiry_stop_polling_with_their_own_errors() {
    for (code, check) in [
        ("access_denied", (|e: &Error| matches!(e, Error::DeviceDenied)) as fn(&Error) -> bool),
        ("expired_token", |e| matches!(e, Error::DeviceExpired { expires_in: 600 })),
        ("invalid_grant", |e| matches!(e, Error::Endpoint { error, .. } if error == "invalid_grant")),
        ("unauthorized_client", |e| matches!(e, Error::Endpoint { status: 400, .. })),
    ] {
        let script = vec![oauth_error("authorization_pending"), oauth_error(code), tokens("Bearer")];
        let (client, fake) = serve(provider(device_answer(Some(5), 600), script)).await;
        let clock = FakeClock::at(START);
        let d = client.start_device_authorization(scope(), None, clock.now()).await.unwrap();
        let e = client.poll_device_authorization(&d, &clock).await.unwrap_err();
        assert!(check(&e), "{code}: {e}");
        assert_eq!(fake.polls.lock().unwrap().len(), 2, "{code}: no poll after a final answer");
    }
}

#[tokio::test]
async fn polling_stops_at_the_deadline_without_a_useless_poll() {
    let (client, fake) = serve(provider(device_answer(Some(5), 12), vec![oauth_error("authorization_pending")])).await;
    let clock = FakeClock::at(START);
    let d = client.start_device_authorization(scope(), None, clock.now()).await.unwrap();
    let e = client.poll_device_authorization(&d, &clock).await.unwrap_err();
    assert!(matches!(e, Error::DeviceExpired { expires_in: 12 }), "{e}");
    // Polls at +5 and +10; one at +15 would be past the codes' life.
    assert_eq!(clock.sleeps(), [5, 5]);
    assert_eq!(fake.polls.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn server_faults_make_the_client_poll_less_often() {
    let script = vec![(503, "{}".to_owned()), (500, "oops".to_owned()), (429, "{}".to_owned()), tokens("Bearer")];
    let (client, fake) = serve(provider(device_answer(Some(5), 600), script)).await;
    let clock = FakeClock::at(START);
    let d = client.start_device_authorization(scope(), None, clock.now()).await.unwrap();
    client.poll_device_authorization(&d, &clock).await.unwrap();
    assert_eq!(clock.sleeps(), [5, 10, 20, 40], "doubled after each failure (§3.5)");
    assert_eq!(fake.polls.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn an_unreachable_token_endpoint_is_retried_with_back_off_until_the_deadline() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}/token", closed.local_addr().unwrap());
    drop(closed);
    let (client, _fake) = serve(provider(device_answer(Some(5), 300), vec![tokens("Bearer")])).await;
    let client = client_for(client.issuer(), &dead);
    let clock = FakeClock::at(START);
    let d = client.start_device_authorization(scope(), None, clock.now()).await.unwrap();
    let e = client.poll_device_authorization(&d, &clock).await.unwrap_err();
    assert!(matches!(e, Error::DeviceExpired { .. }), "{e}");
    // 5, then doubled to the 60-second ceiling: 5+10+20+40+60+60+60 = 255; +60 would pass 300.
    assert_eq!(clock.sleeps(), [5, 10, 20, 40, 60, 60, 60]);
}

#[tokio::test]
async fn with_dpop_every_poll_carries_a_proof_and_a_bearer_answer_is_refused() {
    let script = vec![oauth_error("authorization_pending"), tokens("DPoP")];
    let (client, fake) = serve(provider(device_answer(Some(5), 600), script)).await;
    let dpop = Arc::new(Dpop::new(DpopKey::generate().unwrap()));
    let client = client.with_dpop(dpop.clone()).unwrap();
    let clock = FakeClock::at(START);
    let d = client.start_device_authorization(scope(), None, clock.now()).await.unwrap();
    let set = client.poll_device_authorization(&d, &clock).await.unwrap();
    assert_eq!(set.token_type, TokenType::Dpop);
    assert!(fake.device_requests.lock().unwrap()[0].dpop.is_none(), "no proof at /device_authorization");
    let polls = fake.polls.lock().unwrap().clone();
    let token_url = format!("{}/token", client.issuer());
    for p in &polls {
        let proof = p.dpop.as_ref().expect("a proof with every poll");
        assert_eq!(
            (proof.htm.as_str(), proof.htu.as_str(), proof.jkt.as_str()),
            ("POST", token_url.as_str(), dpop.jkt())
        );
    }
    assert_ne!(polls[0].dpop.as_ref().unwrap().jti, polls[1].dpop.as_ref().unwrap().jti, "a fresh proof each time");

    // A provider that ignores the proof and hands out a bearer token: refused, not silently kept.
    let (client, _) = serve(provider(device_answer(Some(5), 600), vec![tokens("Bearer")])).await;
    let client = client.with_dpop(Arc::new(Dpop::new(DpopKey::generate().unwrap()))).unwrap();
    let d = client.start_device_authorization(scope(), None, START).await.unwrap();
    let e = client.poll_device_authorization(&d, &FakeClock::at(START)).await.unwrap_err();
    assert!(e.to_string().contains("does not bind tokens"), "{e}");
}

#[tokio::test]
async fn the_id_token_is_validated() {
    let key = TestKey::new("k1");
    for (aud, ok) in [("tv", true), ("someone-else", false)] {
        let mut f = provider(device_answer(Some(5), 600), vec![]);
        f.jwks = serde_json::json!({ "keys": [key.jwk] });
        let (client, fake) = serve(f).await;
        // The issuer is known only once the server listens: sign now.
        let signed = key.sign(
            serde_json::json!({"alg": "RS256", "kid": "k1", "typ": "JWT"}),
            serde_json::json!({"iss": client.issuer(), "aud": aud, "sub": "alice", "iat": START, "exp": START + 600}),
        );
        let body = serde_json::json!({"access_token": "at-1", "token_type": "Bearer", "id_token": signed});
        fake.token_script.lock().unwrap().push_back((200, body.to_string()));
        let clock = FakeClock::at(START);
        let d = client.start_device_authorization(scope(), None, clock.now()).await.unwrap();
        let got = client.poll_device_authorization(&d, &clock).await;
        match (ok, got) {
            (true, Ok(set)) => assert_eq!(set.id_claims.unwrap().sub, "alice"),
            (false, Err(Error::IdToken(crate::IdTokenError::Audience { .. }))) => {}
            (_, other) => panic!("aud {aud}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_private_key_jwt_client_authenticates_at_both_endpoints() {
    let script = vec![oauth_error("authorization_pending"), tokens("Bearer")];
    let (client, fake) = serve(provider(device_answer(Some(5), 600), script)).await;
    let key = DpopKey::generate().unwrap();
    let pem = crate::keys::to_pem("PRIVATE KEY", key.pkcs8());
    let client = client.with_private_key_jwt(crate::ClientKey::parse(pem.as_bytes()).unwrap()).unwrap();
    let clock = FakeClock::at(START);
    let d = client.start_device_authorization(scope(), None, clock.now()).await.unwrap();
    client.poll_device_authorization(&d, &clock).await.unwrap();
    let requests: Vec<Seen> =
        fake.device_requests.lock().unwrap().iter().chain(fake.polls.lock().unwrap().iter()).cloned().collect();
    assert_eq!(requests.len(), 3);
    let mut assertions = std::collections::HashSet::new();
    for r in &requests {
        assert_eq!(r.form["client_assertion_type"], latchkey_proto::client_assertion::ASSERTION_TYPE);
        assert!(assertions.insert(r.form["client_assertion"].clone()), "a fresh assertion (jti) per request");
    }
}
