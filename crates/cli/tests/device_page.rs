//! The device verification page (RFC 8628 §3.3) through a real server, with the test clock: the
//! sign-in and the way back to the code, the typed code (case, spaces, dashes), approving and
//! denying as the polling device sees it, one neutral answer for every dead code, the throttle on
//! guessing, CSRF, and one answer per code under a burst.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Browser, PASSWORD, Page, TestServer, hidden, jwt_parts};
use latchkey_core::admin::NewClient;
use serde_json::Value;

const GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
const NOT_FOUND: &str = "That code is not valid or has expired. Check the code on your device.";
const DONE: &str = "Done. You can return to your device.";
const DENIED: &str = "Denied. Your device will be told.";

async fn server() -> TestServer {
    let s = TestServer::start().await;
    s.add(NewClient {
        device: true,
        extra_scopes: vec!["api:read".into()],
        ..NewClient::public("tv", "Living-room TV", vec![])
    })
    .await;
    s
}

/// A device's request: (device_code, user_code as shown, verification_uri_complete).
async fn device(s: &TestServer, scope: &str) -> (String, String, String) {
    let (st, d) = s.post_form("/device_authorization", None, &[("client_id", "tv"), ("scope", scope)]).await;
    assert_eq!(st, 200, "{d}");
    let field = |k: &str| d[k].as_str().unwrap().to_owned();
    (field("device_code"), field("user_code"), field("verification_uri_complete"))
}

async fn poll(s: &TestServer, device_code: &str) -> (u16, Value) {
    poll_as(s, "tv", device_code).await
}

async fn poll_as(s: &TestServer, client_id: &str, device_code: &str) -> (u16, Value) {
    s.post_form("/token", None, &[("grant_type", GRANT), ("device_code", device_code), ("client_id", client_id)]).await
}

fn error(body: &Value) -> &str {
    body["error"].as_str().unwrap_or_default()
}

/// A browser signed in as alice through the device page's own sign-in.
async fn signed_in(s: &TestServer) -> Browser {
    let b = s.browser();
    let login = b.get(&s.url("/device")).await;
    assert!(login.body.contains("your account"), "{}", login.body);
    let done = b.submit_login(&s.base, &login.body, "alice", PASSWORD).await;
    assert_eq!((done.status, done.location().as_str()), (303, "/device"), "{}", done.body);
    b
}

/// Types `typed` into the code form.
async fn type_code(s: &TestServer, b: &Browser, typed: &str) -> Page {
    let form = b.get(&s.url("/device")).await;
    assert_eq!(form.status, 200, "{}", form.body);
    let csrf = hidden(&form.body, "csrf");
    b.post(&s.url("/device"), &[("csrf", &csrf), ("user_code", typed)]).await
}

/// The consent page for `user_code`, as `verification_uri_complete` opens it.
async fn consent(s: &TestServer, b: &Browser, user_code: &str) -> Page {
    let page = b.get(&s.url(&format!("/device?user_code={user_code}"))).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(r#"value="approve""#), "the consent page: {}", page.body);
    page
}

/// Submits the consent page's form with `decision`.
async fn answer(s: &TestServer, b: &Browser, consent: &Page, decision: &str) -> Page {
    let (csrf, code) = (hidden(&consent.body, "csrf"), hidden(&consent.body, "user_code"));
    b.post(&s.url("/device"), &[("csrf", &csrf), ("user_code", &code), ("decision", decision)]).await
}

fn is_code_form(p: &Page) -> bool {
    p.body.contains(r#"id="user_code" name="user_code""#)
}

#[tokio::test]
async fn the_sign_in_leads_back_to_the_code_and_a_get_only_shows_the_consent_page() {
    let s = server().await;
    let (device_code, user_code, complete) = device(&s, "openid profile api:read").await;
    assert_eq!(complete, s.url(&format!("/device?user_code={user_code}")));

    // verification_uri_complete without a session: the login page, then back to the code, in
    // its normal form even when the link had it in lower case.
    let b = s.browser();
    let lower = format!("{}?user_code={}", s.url("/device"), user_code.to_lowercase());
    assert_ne!(lower, complete);
    let login = b.get(&lower).await;
    assert_eq!(login.status, 200);
    assert!(login.body.contains("to continue to <strong>your account</strong>"), "{}", login.body);
    let back = b.submit_login(&s.base, &login.body, "alice", PASSWORD).await;
    assert_eq!((back.status, back.location()), (303, format!("/device?user_code={user_code}")), "{}", back.body);

    // A GET, even one that names a decision, only shows the consent page.
    let page = b.get(&s.url(&format!("/device?user_code={user_code}&decision=approve"))).await;
    assert_eq!(page.status, 200, "{}", page.body);
    for part in [
        "Living-room TV",
        "<code>tv</code>",
        user_code.as_str(),
        "See your name, username and profile details",
        "Use the permission “api:read”",
        "less than a minute ago",
        "127.0.0.1 (the network you are on now)",
        "If someone sent you this code, deny.",
        "Signed in as <strong>alice</strong>",
    ] {
        assert!(page.body.contains(part), "{part}: {}", page.body);
    }
    assert_eq!(
        page.header("content-security-policy"),
        "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; frame-ancestors 'none'",
        "the strict policy: no script at all"
    );
    assert!(!page.body.contains("<script"));
    assert_eq!(page.header("cache-control"), "no-store");
    let (st, b2) = poll(&s, &device_code).await;
    assert_eq!((st, error(&b2)), (400, "authorization_pending"), "a GET approves nothing: {b2}");

    // A code that could never be one is dropped from the way back: the form, to type it again.
    let other = s.browser();
    let login = other.get(&s.url("/device?user_code=https://evil.example/")).await;
    let back = other.submit_login(&s.base, &login.body, "alice", PASSWORD).await;
    assert_eq!((back.status, back.location().as_str()), (303, "/device"));

    // A POST without a session approves nothing either: it is the login page.
    let stranger = s.browser();
    let form = stranger.get(&s.url("/device")).await;
    let csrf = hidden(&form.body, "csrf");
    let post =
        stranger.post(&s.url("/device"), &[("csrf", &csrf), ("user_code", &user_code), ("decision", "approve")]).await;
    assert!(post.body.contains("to continue to <strong>your account</strong>"), "{}", post.body);
    assert_eq!(error(&poll(&s, &device_code).await.1), "slow_down", "polled too soon, and still pending");
}

#[tokio::test]
async fn a_typed_code_is_found_whatever_its_case_spaces_and_dashes() {
    let s = server().await;
    let (_, user_code, _) = device(&s, "openid").await;
    let b = signed_in(&s).await;
    let form = b.get(&s.url("/device")).await;
    for part in [
        r#"autocomplete="off""#,
        r#"autocapitalize="characters""#,
        r#"inputmode="text""#,
        r#"<label for="user_code">Code</label>"#,
        "The code your device shows, like WDJB-MJHT",
    ] {
        assert!(form.body.contains(part), "{part}: {}", form.body);
    }
    let bare = user_code.replace('-', "");
    let spaced = format!(" {} {} ", &bare[..4], &bare[4..]);
    // More than the five free misses of a session: each find is refunded.
    for typed in
        [user_code.to_lowercase(), bare.clone(), bare.to_lowercase(), spaced, user_code.clone(), user_code.clone()]
    {
        let page = type_code(&s, &b, &typed).await;
        assert_eq!(page.status, 200, "{typed:?}: {}", page.body);
        assert!(page.body.contains(&format!("<strong>{user_code}</strong>")), "{typed:?}: {}", page.body);
        assert!(page.body.contains(r#"value="approve""#), "{typed:?}");
    }
}

#[tokio::test]
async fn approving_hands_the_polling_device_alices_tokens() {
    let s = server().await;
    let (device_code, user_code, _) = device(&s, "openid api:read").await;
    let (st, b) = poll(&s, &device_code).await;
    assert_eq!((st, error(&b)), (400, "authorization_pending"));
    let br = signed_in(&s).await;
    let page = consent(&s, &br, &user_code).await;
    let done = answer(&s, &br, &page, "approve").await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains(DONE), "{}", done.body);
    assert!(done.body.contains(&user_code));
    assert!(!done.body.contains(&device_code), "the device code is the device's credential");

    s.advance(5);
    let (st, t) = poll(&s, &device_code).await;
    assert_eq!(st, 200, "{t}");
    let (_, claims) = jwt_parts(t["access_token"].as_str().unwrap());
    let alice = s.store.user_by_username("alice").await.unwrap().unwrap();
    assert_eq!(claims["sub"].as_str(), Some(alice.id.as_str()));
    let mut scope: Vec<&str> = t["scope"].as_str().unwrap().split(' ').collect();
    scope.sort_unstable();
    assert_eq!(scope, ["api:read", "openid"]);
    assert!(!done.body.contains(t["access_token"].as_str().unwrap()));

    // Used: the code names nothing any more, and a second answer changes nothing.
    let again = answer(&s, &br, &page, "deny").await;
    assert!(again.body.contains(NOT_FOUND) && is_code_form(&again), "{}", again.body);
}

#[tokio::test]
async fn denying_ends_the_polling_with_access_denied_and_a_later_approval_changes_nothing() {
    let s = server().await;
    let (device_code, user_code, _) = device(&s, "openid").await;
    let b = signed_in(&s).await;
    let page = consent(&s, &b, &user_code).await;
    let denied = answer(&s, &b, &page, "deny").await;
    assert_eq!(denied.status, 200);
    assert!(denied.body.contains(DENIED), "{}", denied.body);
    // The same form again, as a second tab would send it.
    let late = answer(&s, &b, &page, "approve").await;
    assert_eq!(late.status, 200);
    assert!(late.body.contains(NOT_FOUND), "{}", late.body);
    let (st, body) = poll(&s, &device_code).await;
    assert_eq!((st, error(&body)), (400, "access_denied"), "{body}");
}

/// Unknown, malformed, expired and used codes get the same page: status, message, everything but
/// the typed text given back.
#[tokio::test]
async fn every_dead_code_gets_the_same_neutral_answer() {
    let s = server().await;
    let (_, expired, _) = device(&s, "openid").await;
    let (_, used, _) = device(&s, "openid").await;
    let b = signed_in(&s).await;
    let page = consent(&s, &b, &used).await;
    assert!(answer(&s, &b, &page, "approve").await.body.contains(DONE));
    s.advance(600);

    let mut pages = Vec::new();
    for typed in ["BCDF-GHJK", "hello", expired.as_str(), used.as_str()] {
        let p = type_code(&s, &b, typed).await;
        assert_eq!(p.status, 200, "{typed}");
        assert!(p.body.contains(NOT_FOUND), "{typed}: {}", p.body);
        assert!(is_code_form(&p), "{typed}");
        assert!(p.body.contains(&format!(r#"value="{typed}""#)), "what was typed comes back: {typed}");
        pages.push(p.body.replace(&format!(r#"value="{typed}""#), r#"value="""#));
    }
    assert!(pages.windows(2).all(|w| w[0] == w[1]), "one page for all: {pages:#?}");
    // The same through verification_uri_complete.
    let p = b.get(&s.url(&format!("/device?user_code={used}"))).await;
    assert!(p.body.contains(NOT_FOUND), "{}", p.body);
}

/// A user code has about 34.6 bits: guesses are throttled per session (five free misses, then
/// doubling waits), whatever form they take, and a throttled session cannot check even a right
/// code. Another session is not affected.
#[tokio::test]
async fn guessing_is_throttled_per_session() {
    let s = server().await;
    let (device_code, user_code, _) = device(&s, "openid").await;
    let b = signed_in(&s).await;
    let form = b.get(&s.url("/device")).await;
    let csrf = hidden(&form.body, "csrf");
    // Misses by the form, by the link and by the answer all count.
    let misses = [
        b.post(&s.url("/device"), &[("csrf", &csrf), ("user_code", "BCDF-GHJK")]).await,
        b.post(&s.url("/device"), &[("csrf", &csrf), ("user_code", "BCDF-GHJL")]).await,
        b.get(&s.url("/device?user_code=BCDF-GHJM")).await,
        b.get(&s.url("/device?user_code=nonsense")).await,
        b.post(&s.url("/device"), &[("csrf", &csrf), ("user_code", "BCDF-GHJN"), ("decision", "approve")]).await,
    ];
    for m in &misses {
        assert_eq!(m.status, 200);
        assert!(m.body.contains(NOT_FOUND), "{}", m.body);
    }
    for attempt in [
        b.post(&s.url("/device"), &[("csrf", &csrf), ("user_code", "BCDF-GHJP")]).await,
        // Blocked before the lookup: a right code is no way to tell the throttle from a miss.
        b.get(&s.url(&format!("/device?user_code={user_code}"))).await,
        b.post(&s.url("/device"), &[("csrf", &csrf), ("user_code", &user_code), ("decision", "approve")]).await,
    ] {
        assert_eq!(attempt.status, 429, "{}", attempt.body);
        assert!(attempt.body.contains("Too many attempts. Try again in 1 second."), "{}", attempt.body);
        assert_eq!(attempt.header("retry-after"), "1");
        assert!(is_code_form(&attempt));
    }
    assert_eq!(error(&poll(&s, &device_code).await.1), "authorization_pending", "the blocked approval did nothing");

    // Another session of the same network goes on.
    let other = signed_in(&s).await;
    consent(&s, &other, &user_code).await;

    // The waits double: one more miss after the wait blocks for 2 seconds.
    s.advance(1);
    let miss = b.post(&s.url("/device"), &[("csrf", &csrf), ("user_code", "BCDF-GHJQ")]).await;
    assert!(miss.body.contains(NOT_FOUND), "{}", miss.body);
    let blocked = b.post(&s.url("/device"), &[("csrf", &csrf), ("user_code", &user_code)]).await;
    assert_eq!((blocked.status, blocked.header("retry-after").as_str()), (429, "2"));
    s.advance(2);
    consent(&s, &b, &user_code).await;
}

#[tokio::test]
async fn an_answer_without_the_forms_csrf_token_approves_nothing() {
    let s = server().await;
    let (device_code, user_code, _) = device(&s, "openid").await;
    let b = signed_in(&s).await;
    let page = consent(&s, &b, &user_code).await;
    let csrf = hidden(&page.body, "csrf");
    // No token, and another page's token from another browser (cross-site forms carry neither).
    let foreign = {
        let f = Browser::new();
        hidden(&f.get(&s.url("/device")).await.body, "csrf")
    };
    for form in [
        vec![("user_code", user_code.as_str()), ("decision", "approve")],
        vec![("csrf", ""), ("user_code", &user_code), ("decision", "approve")],
        vec![("csrf", &foreign), ("user_code", &user_code), ("decision", "approve")],
        vec![("csrf", &csrf[..csrf.len() - 1]), ("user_code", &user_code), ("decision", "approve")],
    ] {
        let res = b.post(&s.url("/device"), &form).await;
        assert_eq!(res.status, 403, "{}", res.body);
        assert!(!res.body.contains(DONE));
    }
    assert_eq!(error(&poll(&s, &device_code).await.1), "authorization_pending");
    // The code is still there for the real form.
    assert!(answer(&s, &b, &page, "approve").await.body.contains(DONE));
}

/// Ten approvals of one code at once (ten tabs signed in as alice): one is recorded and
/// shown as done, the others get the neutral answer, and the device gets tokens once.
#[tokio::test]
async fn a_burst_of_approvals_of_one_code_is_answered_once() {
    let s = server().await;
    let (device_code, user_code, _) = device(&s, "openid").await;
    let mut forms = Vec::new();
    for _ in 0..10 {
        let b = signed_in(&s).await;
        let page = consent(&s, &b, &user_code).await;
        forms.push((b, hidden(&page.body, "csrf")));
    }
    let s = std::sync::Arc::new(s);
    let tasks: Vec<_> = forms
        .into_iter()
        .map(|(b, csrf)| {
            let (s, code) = (s.clone(), user_code.clone());
            tokio::spawn(async move {
                b.post(&s.url("/device"), &[("csrf", &csrf), ("user_code", &code), ("decision", "approve")]).await
            })
        })
        .collect();
    let (mut done, mut neutral) = (0, 0);
    for t in tasks {
        let p = t.await.unwrap();
        assert_eq!(p.status, 200, "{}", p.body);
        if p.body.contains(DONE) {
            done += 1;
        } else {
            assert!(p.body.contains(NOT_FOUND), "{}", p.body);
            neutral += 1;
        }
    }
    assert_eq!((done, neutral), (1, 9));
    let grants = s.store.table_counts().await.unwrap().grants;
    assert_eq!(poll(&s, &device_code).await.0, 200);
    assert_eq!(s.store.table_counts().await.unwrap().grants, grants + 1, "one grant");
    let events = s.store.audit_events(None, None, 100).await.unwrap();
    assert_eq!(events.iter().filter(|e| e.event == "device_approved").count(), 1, "{events:?}");
}

/// An independent RFC 6238 code (HMAC-SHA-1 from aws-lc-rs), as `two_factor.rs` computes them.
fn totp(key: &[u8], unix: i64) -> String {
    use aws_lc_rs::hmac;
    let counter = (unix / 30) as u64;
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key), &counter.to_be_bytes());
    let h = tag.as_ref();
    let o = (h[19] & 0x0f) as usize;
    let bin =
        (u32::from(h[o]) & 0x7f) << 24 | u32::from(h[o + 1]) << 16 | u32::from(h[o + 2]) << 8 | u32::from(h[o + 3]);
    format!("{:06}", bin % 1_000_000)
}

fn base32_decode(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut bits, mut n, mut out) = (0u64, 0u32, Vec::new());
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=') {
        let v = ALPHABET.iter().position(|a| *a == c.to_ascii_uppercase()).expect("base32") as u64;
        bits = (bits << 5) | v;
        n += 5;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    out
}

/// A client whose policy requires a second factor is approved only from a session that has one:
/// a password-only session sees no Approve button, a forged approval records nothing, and the
/// step-up (here: setting up TOTP, as alice has no factor) leads back to the consent page, whose
/// approval then gives the device tokens with `acr` mfa.
#[tokio::test]
async fn a_client_that_requires_two_step_sign_in_is_approved_only_after_a_step_up() {
    let s = server().await;
    s.add(NewClient {
        device: true,
        second_factor: latchkey_core::authn::SecondFactorPolicy::Required,
        ..NewClient::public("strict-tv", "Strict TV", vec![])
    })
    .await;
    let (st, d) = s.post_form("/device_authorization", None, &[("client_id", "strict-tv"), ("scope", "openid")]).await;
    assert_eq!(st, 200, "{d}");
    let (device_code, user_code) = (d["device_code"].as_str().unwrap(), d["user_code"].as_str().unwrap());

    let b = signed_in(&s).await;
    let page = b.get(&s.url(&format!("/device?user_code={user_code}"))).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("requires a stronger sign-in: two-step sign-in"), "{}", page.body);
    assert!(!page.body.contains(r#"value="approve""#), "no Approve for a password-only session");
    assert!(page.body.contains(r#"value="deny""#));
    let csrf = hidden(&page.body, "csrf");
    let forged = b.post(&s.url("/device"), &[("csrf", &csrf), ("user_code", user_code), ("decision", "approve")]).await;
    assert_eq!((forged.status, forged.location()), (303, format!("/device?user_code={user_code}")));
    assert_eq!(
        error(&poll_as(&s, "strict-tv", device_code).await.1),
        "authorization_pending",
        "the forged approval recorded nothing"
    );

    // The step-up: alice has no factor, so she sets up TOTP on this session.
    let acr = hidden(&page.body, "acr");
    let res = b.post(&s.url("/device/step-up"), &[("csrf", &csrf), ("user_code", user_code), ("acr", &acr)]).await;
    assert_eq!(res.status, 303, "{}", res.body);
    assert!(res.location().starts_with("/login/two-step?req="), "{}", res.location());
    let setup = b.get(&s.url(&res.location())).await;
    assert!(setup.body.contains("Set up two-step sign-in"), "{}", setup.body);
    let start = setup.body.find(r#"<code class="secret">"#).unwrap() + 21;
    let key = base32_decode(&setup.body[start..setup.body[start..].find("</code>").unwrap() + start]);
    let (req, csrf2) = (hidden(&setup.body, "req"), hidden(&setup.body, "csrf"));
    let done = b.post(&s.url("/login/enrol"), &[("req", &req), ("csrf", &csrf2), ("code", &totp(&key, s.now()))]).await;
    assert_eq!(done.status, 200, "the recovery codes: {}", done.body);
    let back = b.post(&s.url("/login/continue"), &[("req", &req), ("csrf", &hidden(&done.body, "csrf"))]).await;
    assert_eq!((back.status, back.location()), (303, format!("/device?user_code={user_code}")), "{}", back.body);

    let page = consent(&s, &b, user_code).await;
    assert!(!page.body.contains("requires a stronger sign-in"), "{}", page.body);
    assert!(answer(&s, &b, &page, "approve").await.body.contains(DONE));
    s.advance(5);
    let (st, t) = poll_as(&s, "strict-tv", device_code).await;
    assert_eq!(st, 200, "{t}");
    let (_, id) = jwt_parts(t["id_token"].as_str().unwrap());
    assert_eq!(id["acr"], "https://refeds.org/profile/mfa", "{id}");
}
