//! The device authorization grant (RFC 8628) at the HTTP level, with the test clock: the device
//! authorization endpoint, and the token endpoint's polling rules (§3.4-3.5). The user's answer
//! is recorded through the store here; the verification page that records it is tested in
//! `device_page.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TestServer, jwt_parts};
use latchkey_core::admin::NewClient;
use latchkey_core::device_grant::{Approval, DeviceStatus, normalize_user_code, user_code_hash};
use serde_json::Value;

const GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

async fn server_with(tweak: impl FnOnce(&mut latchkey_core::ProviderConfig)) -> TestServer {
    let s = TestServer::start_with(tweak).await;
    s.add(NewClient {
        device: true,
        extra_scopes: vec!["api:read".into()],
        ..NewClient::public("tv", "Living-room TV", vec![])
    })
    .await;
    s.add(NewClient { device: true, ..NewClient::public("other-tv", "Other TV", vec![]) }).await;
    s
}

async fn start(s: &TestServer, client_id: &str, scope: &str) -> (u16, Value) {
    s.post_form("/device_authorization", None, &[("client_id", client_id), ("scope", scope)]).await
}

async fn poll(s: &TestServer, client_id: &str, device_code: &str) -> (u16, Value) {
    s.post_form("/token", None, &[("grant_type", GRANT), ("device_code", device_code), ("client_id", client_id)]).await
}

/// Records the user's answer as the verification page does.
async fn answer(s: &TestServer, user_code: &str, status: DeviceStatus) -> bool {
    let hash = user_code_hash(&normalize_user_code(user_code).unwrap());
    s.store.decide_device(&hash, &status, s.now()).await.unwrap()
}

async fn approval(s: &TestServer) -> DeviceStatus {
    let alice = s.store.user_by_username("alice").await.unwrap().unwrap();
    DeviceStatus::Approved(Approval {
        user_id: alice.id,
        sid: "sid-1".into(),
        auth_time: s.now(),
        authn: Default::default(),
    })
}

fn error(body: &Value) -> &str {
    body["error"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn the_endpoint_is_advertised_and_hands_out_codes_of_the_rfc_shape() {
    let s = server_with(|_| {}).await;
    let meta: Value =
        s.http.get(s.url("/.well-known/openid-configuration")).send().await.unwrap().json().await.unwrap();
    assert_eq!(meta["device_authorization_endpoint"], s.url("/device_authorization"));
    assert!(meta["grant_types_supported"].as_array().unwrap().iter().any(|g| g == GRANT));

    let (st, d) = start(&s, "tv", "openid api:read").await;
    assert_eq!(st, 200, "{d}");
    assert_eq!(d["device_code"].as_str().unwrap().len(), 43, "256 bits");
    let user_code = d["user_code"].as_str().unwrap();
    // §6.1: eight consonants in two groups, easy to type.
    assert!(regex_like_user_code(user_code), "{user_code}");
    assert_eq!(d["verification_uri"], s.url("/device"));
    assert_eq!(d["verification_uri_complete"], format!("{}?user_code={user_code}", s.url("/device")));
    assert_eq!((d["expires_in"].as_u64(), d["interval"].as_u64()), (Some(600), Some(5)));
    // Fresh codes every time.
    let (_, e) = start(&s, "tv", "openid").await;
    assert_ne!(d["device_code"], e["device_code"]);
    assert_ne!(d["user_code"], e["user_code"]);
}

fn regex_like_user_code(c: &str) -> bool {
    let b = c.as_bytes();
    b.len() == 9
        && b[4] == b'-'
        && b.iter().enumerate().all(|(i, x)| i == 4 || latchkey_core::device_grant::USER_CODE_ALPHABET.contains(x))
}

#[tokio::test]
async fn refusals_name_the_rule() {
    let s = server_with(|_| {}).await;
    // `spa` is registered for the code flow only.
    let (st, b) = start(&s, "spa", "openid").await;
    assert_eq!((st, error(&b)), (400, "unauthorized_client"), "{b}");
    assert!(b["error_description"].as_str().unwrap().contains("--device"));
    let (st, b) = start(&s, "tv", "openid admin:everything").await;
    assert_eq!((st, error(&b)), (400, "invalid_scope"), "{b}");
    assert!(b["error_description"].as_str().unwrap().contains("admin:everything"));
    let (st, b) = start(&s, "nobody", "openid").await;
    assert_eq!((st, error(&b)), (401, "invalid_client"), "{b}");
    // A device code is no good at the token endpoint for a client not registered for the grant.
    let (_, d) = start(&s, "tv", "openid").await;
    let (st, b) = poll(&s, "spa", d["device_code"].as_str().unwrap()).await;
    assert_eq!((st, error(&b)), (400, "unauthorized_client"), "{b}");
    let (st, b) = poll(&s, "tv", "not-a-device-code").await;
    assert_eq!((st, error(&b)), (400, "invalid_grant"), "{b}");
}

#[tokio::test]
async fn polling_follows_section_3_5_and_the_approval_is_redeemed_once() {
    let s = server_with(|_| {}).await;
    let (_, d) = start(&s, "tv", "openid profile api:read").await;
    let (code, user_code) = (d["device_code"].as_str().unwrap(), d["user_code"].as_str().unwrap());

    let (st, b) = poll(&s, "tv", code).await;
    assert_eq!((st, error(&b)), (400, "authorization_pending"), "{b}");
    // Too soon: slow_down, and the server enforces the 5 s more it asks for.
    s.advance(2);
    let (_, b) = poll(&s, "tv", code).await;
    assert_eq!(error(&b), "slow_down", "{b}");
    assert!(b["error_description"].as_str().unwrap().contains("10 seconds"), "{b}");
    s.advance(9);
    assert_eq!(error(&poll(&s, "tv", code).await.1), "slow_down", "9 s < the new 10 s interval");
    s.advance(15);
    assert_eq!(error(&poll(&s, "tv", code).await.1), "authorization_pending", "15 s: the interval is now 15 s");

    // Another client with the code gets nothing, and learns nothing.
    s.advance(15);
    let (_, b) = poll(&s, "other-tv", code).await;
    assert_eq!(error(&b), "invalid_grant", "{b}");

    assert!(answer(&s, user_code, approval(&s).await).await);
    assert!(!answer(&s, user_code, DeviceStatus::Denied).await, "answered once");
    s.advance(15);
    let (st, t) = poll(&s, "tv", code).await;
    assert_eq!(st, 200, "{t}");
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["scope"], "api:read openid profile");
    let (_, claims) = jwt_parts(t["access_token"].as_str().unwrap());
    let alice = s.store.user_by_username("alice").await.unwrap().unwrap();
    assert_eq!((claims["sub"].as_str(), claims["client_id"].as_str()), (Some(alice.id.as_str()), Some("tv")));
    let (_, id) = jwt_parts(t["id_token"].as_str().unwrap());
    assert_eq!((id["aud"].as_str(), id["sid"].as_str()), (Some("tv"), Some("sid-1")));
    assert!(t["refresh_token"].is_string(), "the client is registered for refresh tokens");
    let (st, r) = s.refresh("tv", t["refresh_token"].as_str().unwrap(), None).await;
    assert_eq!(st, 200, "the device's refresh works: {r}");

    // Used once.
    s.advance(15);
    let (_, b) = poll(&s, "tv", code).await;
    assert_eq!(error(&b), "invalid_grant", "{b}");
}

#[tokio::test]
async fn a_denial_and_an_expiry_end_the_polling() {
    let s = server_with(|_| {}).await;
    let (_, d) = start(&s, "tv", "openid").await;
    assert!(answer(&s, d["user_code"].as_str().unwrap(), DeviceStatus::Denied).await);
    let (st, b) = poll(&s, "tv", d["device_code"].as_str().unwrap()).await;
    assert_eq!((st, error(&b)), (400, "access_denied"), "{b}");
    s.advance(5);
    assert_eq!(error(&poll(&s, "tv", d["device_code"].as_str().unwrap()).await.1), "invalid_grant", "gone");

    let (_, d) = start(&s, "tv", "openid").await;
    s.advance(600);
    // The user is too late as well: nothing to approve any more.
    assert!(!answer(&s, d["user_code"].as_str().unwrap(), approval(&s).await).await);
    let (st, b) = poll(&s, "tv", d["device_code"].as_str().unwrap()).await;
    assert_eq!((st, error(&b)), (400, "expired_token"), "{b}");
}

/// Twenty polls of one approved code at once (the same second): one gets tokens, and one grant
/// is stored. Without the atomic poll-and-redeem several would.
#[tokio::test]
async fn a_burst_of_polls_on_an_approved_code_gets_tokens_once() {
    let s = server_with(|_| {}).await;
    let (_, d) = start(&s, "tv", "openid").await;
    assert!(answer(&s, d["user_code"].as_str().unwrap(), approval(&s).await).await);
    let grants_before = s.store.table_counts().await.unwrap().grants;
    let code = d["device_code"].as_str().unwrap().to_owned();
    let s = std::sync::Arc::new(s);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (s, code) = (s.clone(), code.clone());
            tokio::spawn(async move { poll(&s, "tv", &code).await })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        let (st, b) = t.await.unwrap();
        match st {
            200 => ok += 1,
            400 => assert!(["slow_down", "invalid_grant"].contains(&error(&b)), "{b}"),
            _ => panic!("{st} {b}"),
        }
    }
    assert_eq!(ok, 1, "tokens once");
    assert_eq!(s.store.table_counts().await.unwrap().grants, grants_before + 1);
}

/// The endpoint is open to anyone who knows a public client's id: pending codes are capped per
/// client, also under a burst.
#[tokio::test]
async fn pending_codes_are_capped_per_client_under_a_burst() {
    let s = std::sync::Arc::new(server_with(|c| c.device.max_per_client = 5).await);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { start(&s, "tv", "openid").await })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        let (st, b) = t.await.unwrap();
        if st == 503 {
            assert_eq!(error(&b), "temporarily_unavailable");
            assert!(b["error_description"].as_str().unwrap().contains("5 device codes"), "{b}");
        }
        statuses.push(st);
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 5, "{statuses:?}");
    // Another client is not affected, and expiry frees the slots.
    assert_eq!(start(&s, "other-tv", "openid").await.0, 200);
    s.advance(600);
    assert_eq!(start(&s, "tv", "openid").await.0, 200);
}
