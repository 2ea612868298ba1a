//! Passkeys over HTTP with a software authenticator (`latchkey_core::passkey::soft`): enrolment
//! from the account page, the username-less sign-in for an application and for the account
//! pages, and each refusal the server owes (a replayed or stolen ceremony, a removed passkey,
//! no user verification, a cloned authenticator, cross-site requests, an old sign-in, floods).
//! The same flows run in Chromium with a CDP virtual authenticator in tests/browser.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{Browser, PASSWORD, TestServer, hidden, jwt_parts};
use latchkey_core::passkey::soft::SoftAuthenticator;
use latchkey_proto::CodeVerifier;
use serde_json::{Value, json};

/// A server whose issuer is `http://localhost:PORT`: WebAuthn needs a domain name.
async fn server() -> (TestServer, String) {
    let t = TestServer::start_with(|c| c.issuer = c.issuer.replace("127.0.0.1", "localhost")).await;
    let origin = t.provider.issuer().to_owned();
    (t, origin)
}

async fn post_json(b: &Browser, url: &str, csrf: &str, body: &Value) -> (u16, Value) {
    let res = b.http.post(url).header("x-csrf-token", csrf).json(body).send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Alice signs in to her passkeys page with her password; returns the page.
async fn account(t: &TestServer) -> (Browser, String) {
    let b = t.browser();
    let login = b.get(&t.url("/account/passkeys")).await;
    let done = b.submit_login(&t.base, &login.body, "alice", PASSWORD).await;
    assert_eq!((done.status, done.location()), (303, "/account/passkeys".to_owned()), "{}", done.body);
    let page = b.get(&t.url("/account/passkeys")).await;
    assert_eq!(page.status, 200);
    (b, page.body)
}

/// Registers `a` under `name` from the passkeys page; returns the finishing answer.
async fn register(
    t: &TestServer,
    b: &Browser,
    page: &str,
    a: &mut SoftAuthenticator,
    name: &str,
    origin: &str,
) -> (u16, Value) {
    let csrf = hidden(page, "csrf");
    let (status, start) = post_json(b, &t.url("/account/passkeys/options"), &csrf, &json!({ "name": name })).await;
    if status != 200 {
        return (status, start);
    }
    assert_eq!(start["options"]["publicKey"]["authenticatorSelection"]["residentKey"], "required");
    assert_eq!(start["options"]["publicKey"]["authenticatorSelection"]["userVerification"], "required");
    let credential = a.create(&start["options"], origin);
    post_json(
        b,
        &t.url("/account/passkeys"),
        &csrf,
        &json!({ "ceremony": start["ceremony"], "credential": credential }),
    )
    .await
}

/// A login page's request id and CSRF token, from `url` in browser `b`.
async fn login_page(t: &TestServer, b: &Browser, url: &str) -> (String, String) {
    let page = b.get(url).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Sign in with a passkey"), "the login page offers passkeys: {}", page.body);
    assert!(page.header("content-security-policy").contains("script-src 'self'"));
    assert!(!page.body.contains("<script>"), "no inline script");
    let _ = t;
    (hidden(&page.body, "req"), hidden(&page.body, "csrf"))
}

/// The ceremony's start for the login page's request.
async fn start_sign_in(t: &TestServer, b: &Browser, req: &str, csrf: &str) -> (u16, Value) {
    post_json(b, &t.url("/login/passkey/options"), csrf, &json!({ "req": req })).await
}

/// A whole username-less sign-in on the login page at `url`.
async fn sign_in(t: &TestServer, b: &Browser, url: &str, a: &mut SoftAuthenticator, origin: &str) -> (u16, Value) {
    let (req, csrf) = login_page(t, b, url).await;
    let (status, start) = start_sign_in(t, b, &req, &csrf).await;
    assert_eq!(status, 200, "{start}");
    assert!(start["options"]["publicKey"]["allowCredentials"].as_array().is_none_or(Vec::is_empty), "username-less");
    let credential = a.get(&start["options"], origin);
    let body = json!({ "req": req, "ceremony": start["ceremony"], "credential": credential });
    post_json(b, &t.url("/login/passkey"), &csrf, &body).await
}

async fn events(t: &TestServer, name: &str) -> Vec<Value> {
    let all = t.store.audit_events(None, None, 500).await.unwrap();
    all.into_iter().filter(|e| e.event == name).map(|e| e.detail).collect()
}

#[tokio::test]
async fn a_passkey_added_on_the_account_page_signs_in_without_a_username() {
    let (t, origin) = server().await;
    let (b, page) = account(&t).await;
    assert!(page.contains("You have no passkeys yet."));
    assert!(page.contains(r#"<form id="passkey-add" hidden>"#), "shown by the script only: {page}");
    let mut key = SoftAuthenticator::new("localhost");
    let (status, done) = register(&t, &b, &page, &mut key, "  Work laptop ", &origin).await;
    assert_eq!((status, done["location"].as_str()), (200, Some("/account/passkeys?done=added")), "{done}");
    let page = b.get(&t.url("/account/passkeys?done=added")).await.body;
    assert!(page.contains("<h2>Work laptop</h2>"), "{page}");
    assert!(page.contains("Your passkey was added"));
    assert!(page.contains("never"), "not used yet");
    assert_eq!(events(&t, "passkey_registered").await.len(), 1);

    // Another browser, no username: the account pages. The session records the browser it
    // was made in, as a password's does.
    let other = common::browser_as(common::FIREFOX);
    let (status, done) = sign_in(&t, &other, &t.url("/account"), &mut key, &origin).await;
    assert_eq!((status, done["location"].as_str()), (200, Some("/account")), "{done}");
    let overview = other.get(&t.url("/account")).await;
    assert!(overview.body.contains("Signed in as <strong>alice</strong>"), "{}", overview.body);
    let success = events(&t, "login_success").await;
    let last = success.first().unwrap();
    assert_eq!((last["method"].as_str(), last["amr"].as_str()), (Some("passkey"), Some("hwk")), "{last}");
    let page = other.get(&t.url("/account/passkeys")).await.body;
    assert!(!page.contains("never"), "the use is recorded: {page}");
    let sessions = other.get(&t.url("/account/sessions")).await.body;
    assert!(sessions.contains("Firefox on Linux"), "{sessions}");

    // An application's sign-in: the same passkey, then consent, then a code that redeems.
    let app = Browser::new();
    let verifier = CodeVerifier::generate();
    let (status, done) = sign_in(&t, &app, &t.authorize_url("spa", &verifier, ""), &mut key, &origin).await;
    assert_eq!(status, 200, "{done}");
    let consent_url = done["location"].as_str().unwrap();
    assert!(consent_url.starts_with("/consent?req="), "{consent_url}");
    let consent = app.get(&t.url(consent_url)).await;
    let back = app.submit_consent(&t.base, &consent.body, "allow").await;
    let code = back.redirect_query()["code"].clone();
    let (status, tokens) = t.exchange("spa", &code, &verifier).await;
    assert_eq!(status, 200, "{tokens}");
    // RFC 8176: a device-bound key (hwk) with user verification: two factors in one step.
    let (_, claims) = jwt_parts(tokens["id_token"].as_str().unwrap());
    assert_eq!(claims["amr"], json!(["hwk", "mfa"]), "{claims}");
    assert_eq!(claims["acr"], "phr");
}

/// The value of a `data-NAME` attribute in a page.
fn data(body: &str, name: &str) -> String {
    let marker = format!(r#"data-{name}=""#);
    let start = body.find(&marker).unwrap_or_else(|| panic!("no data-{name} in page: {body}")) + marker.len();
    let end = body[start..].find('"').unwrap() + start;
    body[start..end].to_owned()
}

/// Password first, for `spa`; returns the second-factor page's body and the verifier.
async fn password_then_step(t: &TestServer, b: &Browser, user: &str) -> (String, CodeVerifier) {
    let verifier = CodeVerifier::generate();
    let login = b.get(&t.authorize_url("spa", &verifier, "")).await;
    let step = b.submit_login(&t.base, &login.body, user, PASSWORD).await;
    assert_eq!(step.status, 303, "{}", step.body);
    assert!(step.location().starts_with("/login/two-step?req="), "{}", step.location());
    let page = b.get(&t.url(&step.location())).await;
    assert_eq!(page.status, 200, "{}", page.body);
    (page.body, verifier)
}

/// The code at the end of a step that answered `location`, through the consent page if shown.
async fn code_after(t: &TestServer, b: &Browser, location: &str) -> String {
    let mut location = location.to_owned();
    if location.starts_with("/consent") {
        let consent = b.get(&t.url(&location)).await;
        location = b.submit_consent(&t.base, &consent.body, "allow").await.location();
    }
    url::Url::parse(&location).unwrap().query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned()
}

#[tokio::test]
async fn a_passkey_is_the_second_factor_after_the_password() {
    let (t, origin) = server().await;
    let (b, page) = account(&t).await;
    let mut key = SoftAuthenticator::new("localhost");
    assert_eq!(register(&t, &b, &page, &mut key, "Key", &origin).await.0, 200);
    t.add_user("bob").await;
    let bob = t.browser();
    let login = bob.get(&t.url("/account/passkeys")).await;
    assert_eq!(bob.submit_login(&t.base, &login.body, "bob", PASSWORD).await.status, 303);
    let bob_page = bob.get(&t.url("/account/passkeys")).await.body;
    let mut bobs_key = SoftAuthenticator::new("localhost");
    assert_eq!(register(&t, &bob, &bob_page, &mut bobs_key, "Bob's", &origin).await.0, 200);

    // With a passkey set up, the password alone no longer signs Alice in.
    let other = Browser::new();
    let (step, verifier) = password_then_step(&t, &other, "alice").await;
    assert!(step.contains("Use a passkey"), "{step}");
    let (req, csrf) = (data(&step, "req"), data(&step, "csrf"));
    let start_url = t.url("/login/two-step/passkey/options");
    let (status, start) = post_json(&other, &start_url, &csrf, &json!({ "req": req })).await;
    assert_eq!(status, 200, "{start}");
    assert_eq!(start["options"]["publicKey"]["allowCredentials"].as_array().unwrap().len(), 1, "Alice's passkeys only");
    // Bob's passkey is no second factor for Alice.
    let wrong =
        json!({ "req": req, "ceremony": start["ceremony"], "credential": bobs_key.get(&start["options"], &origin) });
    let (status, answer) = post_json(&other, &t.url("/login/two-step/passkey"), &csrf, &wrong).await;
    assert_eq!(status, 400, "{answer}");
    // Alice's.
    let (_, start) = post_json(&other, &start_url, &csrf, &json!({ "req": req })).await;
    let right = json!({ "req": req, "ceremony": start["ceremony"], "credential": key.get(&start["options"], &origin) });
    let (status, done) = post_json(&other, &t.url("/login/two-step/passkey"), &csrf, &right).await;
    assert_eq!(status, 200, "{done}");
    let code = code_after(&t, &other, done["location"].as_str().unwrap()).await;
    let (status, tokens) = t.exchange("spa", &code, &verifier).await;
    assert_eq!(status, 200, "{tokens}");
    let (_, claims) = jwt_parts(tokens["id_token"].as_str().unwrap());
    assert_eq!(claims["amr"], json!(["pwd", "hwk", "mfa"]), "{claims}");
    assert_eq!(claims["acr"], "phr");
    // The same step from a browser that did not give the password: nothing to finish.
    let (status, _) = post_json(&Browser::new(), &start_url, &csrf, &json!({ "req": req })).await;
    assert_eq!(status, 403, "another browser has neither the CSRF cookie nor the partial sign-in");
}

#[tokio::test]
async fn under_the_passkey_policy_a_user_without_one_adds_one_while_signing_in() {
    let t = TestServer::start_with(|c| {
        c.issuer = c.issuer.replace("127.0.0.1", "localhost");
        c.second_factor = latchkey_core::authn::SecondFactorPolicy::Passkey;
    })
    .await;
    let origin = t.provider.issuer().to_owned();
    let b = t.browser();
    let (page, verifier) = password_then_step(&t, &b, "alice").await;
    assert!(page.contains("Add a passkey and continue"), "{page}");
    let (req, csrf) = (data(&page, "req"), hidden(&page, "csrf"));
    // No user verification: refused, as the policy demands it.
    let mut no_pin = SoftAuthenticator::new("localhost");
    no_pin.user_verified = false;
    let options_url = t.url("/login/enrol/passkey/options");
    let (_, start) = post_json(&b, &options_url, &csrf, &json!({ "req": req, "name": "Laptop" })).await;
    let lazy =
        json!({ "req": req, "ceremony": start["ceremony"], "credential": no_pin.create(&start["options"], &origin) });
    let (status, answer) = post_json(&b, &t.url("/login/enrol/passkey"), &csrf, &lazy).await;
    assert_eq!(status, 400, "{answer}");

    let mut key = SoftAuthenticator::new("localhost");
    let (status, start) = post_json(&b, &options_url, &csrf, &json!({ "req": req, "name": "Laptop" })).await;
    assert_eq!(status, 200, "{start}");
    let body =
        json!({ "req": req, "ceremony": start["ceremony"], "credential": key.create(&start["options"], &origin) });
    let (status, done) = post_json(&b, &t.url("/login/enrol/passkey"), &csrf, &body).await;
    assert_eq!(status, 200, "{done}");
    let code = code_after(&t, &b, done["location"].as_str().unwrap()).await;
    let (_, tokens) = t.exchange("spa", &code, &verifier).await;
    let (_, claims) = jwt_parts(tokens["id_token"].as_str().unwrap());
    assert_eq!((claims["amr"].clone(), claims["acr"].clone()), (json!(["pwd", "hwk", "mfa"]), json!("phr")));

    // The next sign-in asks for that passkey, and only a passkey, and refuses it without user
    // verification.
    let other = Browser::new();
    let (step, _) = password_then_step(&t, &other, "alice").await;
    assert!(step.contains("Use a passkey") && !step.contains("authenticator app"), "{step}");
    let (req, csrf) = (data(&step, "req"), data(&step, "csrf"));
    let (_, start) = post_json(&other, &t.url("/login/two-step/passkey/options"), &csrf, &json!({ "req": req })).await;
    key.user_verified = false;
    let lazy = json!({ "req": req, "ceremony": start["ceremony"], "credential": key.get(&start["options"], &origin) });
    let (status, answer) = post_json(&other, &t.url("/login/two-step/passkey"), &csrf, &lazy).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("did not verify you"), "{answer}");
}

#[tokio::test]
async fn a_ceremony_answers_once_even_under_a_burst() {
    let (t, origin) = server().await;
    let (b, page) = account(&t).await;
    let mut key = SoftAuthenticator::new("localhost");
    assert_eq!(register(&t, &b, &page, &mut key, "Phone", &origin).await.0, 200);

    let other = Browser::new();
    let (req, csrf) = login_page(&t, &other, &t.url("/account")).await;
    let (_, start) = start_sign_in(&t, &other, &req, &csrf).await;
    let body = json!({ "req": req, "ceremony": start["ceremony"], "credential": key.get(&start["options"], &origin) });
    let other = std::sync::Arc::new(other);
    let burst: Vec<_> = (0..8)
        .map(|_| {
            let (other, url, csrf, body) = (other.clone(), t.url("/login/passkey"), csrf.clone(), body.clone());
            tokio::spawn(async move { post_json(&other, &url, &csrf, &body).await })
        })
        .collect();
    let mut ok = 0;
    for r in burst {
        let (status, answer) = r.await.unwrap();
        if status == 200 {
            ok += 1;
        } else {
            assert_eq!(status, 400);
            assert!(answer["error"].as_str().unwrap().contains("expired or was already used"), "{answer}");
        }
    }
    assert_eq!(ok, 1, "one assertion, one session");
    // A replay later is refused the same way.
    assert_eq!(post_json(&other, &t.url("/login/passkey"), &csrf, &body).await.0, 400);
}

#[tokio::test]
async fn a_removed_passkey_no_longer_signs_in() {
    let (t, origin) = server().await;
    let (b, page) = account(&t).await;
    let mut key = SoftAuthenticator::new("localhost");
    assert_eq!(register(&t, &b, &page, &mut key, "Old key", &origin).await.0, 200);
    let page = b.get(&t.url("/account/passkeys")).await.body;
    let (id, csrf) = (hidden(&page, "id"), hidden(&page, "csrf"));

    // Renamed, then removed, each with the page's CSRF token.
    let forged = b.post(&t.url("/account/passkeys/remove"), &[("id", &id)]).await;
    assert_eq!(forged.status, 403, "no CSRF token, no removal");
    let renamed =
        b.post(&t.url("/account/passkeys/rename"), &[("csrf", &csrf), ("id", &id), ("name", "Retired")]).await;
    assert_eq!((renamed.status, renamed.location()), (303, "/account/passkeys?done=renamed".to_owned()));
    assert!(b.get(&t.url("/account/passkeys")).await.body.contains("<h2>Retired</h2>"));
    let removed = b.post(&t.url("/account/passkeys/remove"), &[("csrf", &csrf), ("id", &id)]).await;
    assert_eq!((removed.status, removed.location()), (303, "/account/passkeys?done=removed".to_owned()));
    assert!(b.get(&t.url("/account/passkeys")).await.body.contains("You have no passkeys yet."));

    let (status, answer) = sign_in(&t, &Browser::new(), &t.url("/account"), &mut key, &origin).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("not registered"), "{answer}");
    let failures = events(&t, "login_failure").await;
    assert_eq!(failures[0]["unknown_credential"], true, "{failures:?}");

    // An administrator's `user reset-factors` removes passkeys too (a lost device).
    let page = b.get(&t.url("/account/passkeys")).await.body;
    let mut lost = SoftAuthenticator::new("localhost");
    assert_eq!(register(&t, &b, &page, &mut lost, "Lost phone", &origin).await.0, 200);
    let reset = latchkey_core::factors::manage::reset_factors(t.store.as_ref(), "alice", t.now()).await.unwrap();
    assert_eq!(reset, Some((false, 0, 1)));
    assert_eq!(sign_in(&t, &Browser::new(), &t.url("/account"), &mut lost, &origin).await.0, 400);
}

#[tokio::test]
async fn user_verification_is_required() {
    let (t, origin) = server().await;
    let (b, page) = account(&t).await;
    let mut no_pin = SoftAuthenticator::new("localhost");
    no_pin.user_verified = false;
    let (status, answer) = register(&t, &b, &page, &mut no_pin, "No PIN", &origin).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("did not verify you"), "{answer}");
    let alice = t.store.user_by_username("alice").await.unwrap().unwrap();
    assert!(t.store.user_passkeys(&alice.id).await.unwrap().is_empty(), "nothing was stored");

    let mut key = SoftAuthenticator::new("localhost");
    assert_eq!(register(&t, &b, &page, &mut key, "Key", &origin).await.0, 200);
    key.user_verified = false;
    let (status, answer) = sign_in(&t, &Browser::new(), &t.url("/account"), &mut key, &origin).await;
    assert_eq!(status, 400, "presence alone is no sign-in: {answer}");
    assert!(answer["error"].as_str().unwrap().contains("did not verify you"), "{answer}");
}

#[tokio::test]
async fn a_cloned_passkey_is_refused_and_audited() {
    let (t, origin) = server().await;
    let (b, page) = account(&t).await;
    let mut key = SoftAuthenticator::new("localhost");
    assert_eq!(register(&t, &b, &page, &mut key, "Key", &origin).await.0, 200);
    let mut clone = key.clone();
    for _ in 0..2 {
        assert_eq!(sign_in(&t, &Browser::new(), &t.url("/account"), &mut key, &origin).await.0, 200);
    }
    let (status, answer) = sign_in(&t, &Browser::new(), &t.url("/account"), &mut clone, &origin).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("went backwards"), "{answer}");
    let audited = events(&t, "passkey_counter_regression").await;
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert_eq!(audited[0]["stored_count"], 2);
    // The original goes on working.
    assert_eq!(sign_in(&t, &Browser::new(), &t.url("/account"), &mut key, &origin).await.0, 200);
}

#[tokio::test]
async fn the_ceremony_endpoints_refuse_cross_site_requests() {
    let (t, _) = server().await;
    let b = Browser::new();
    let (req, csrf) = login_page(&t, &b, &t.url("/account")).await;
    let url = t.url("/login/passkey/options");
    let no_token = b.http.post(&url).json(&json!({ "req": req })).send().await.unwrap();
    assert_eq!(no_token.status(), 403);
    let wrong = b.http.post(&url).header("x-csrf-token", "a.b").json(&json!({ "req": req })).send().await.unwrap();
    assert_eq!(wrong.status(), 403);
    let cross = b
        .http
        .post(&url)
        .header("x-csrf-token", &csrf)
        .header("sec-fetch-site", "cross-site")
        .json(&json!({ "req": req }))
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), 403);
    let form = b.http.post(&url).header("x-csrf-token", &csrf).form(&[("req", &req)]).send().await.unwrap();
    assert_eq!(form.status(), 415, "a form post (what another site can send) is not JSON");
    // Another browser's token is not this browser's.
    let (_, other_csrf) = login_page(&t, &Browser::new(), &t.url("/account")).await;
    assert_eq!(post_json(&b, &url, &other_csrf, &json!({ "req": req })).await.0, 403);
    assert_eq!(post_json(&b, &url, &csrf, &json!({ "req": req })).await.0, 200);
}

#[tokio::test]
async fn adding_a_passkey_needs_a_recent_sign_in_by_the_same_session() {
    let (t, origin) = server().await;
    let (b, page) = account(&t).await;
    // Bob's session cannot finish Alice's ceremony.
    t.add_user("bob").await;
    let bob = t.browser();
    let login = bob.get(&t.url("/account/passkeys")).await;
    assert_eq!(bob.submit_login(&t.base, &login.body, "bob", PASSWORD).await.status, 303);
    let bob_page = bob.get(&t.url("/account/passkeys")).await.body;
    let csrf = hidden(&page, "csrf");
    let (_, start) = post_json(&b, &t.url("/account/passkeys/options"), &csrf, &json!({ "name": "Mine" })).await;
    let mut key = SoftAuthenticator::new("localhost");
    let credential = key.create(&start["options"], &origin);
    let stolen = json!({ "ceremony": start["ceremony"], "credential": credential });
    let (status, _) = post_json(&bob, &t.url("/account/passkeys"), &hidden(&bob_page, "csrf"), &stolen).await;
    assert_eq!(status, 400, "a ceremony is finished by the session that started it");
    let bob_id = t.store.user_by_username("bob").await.unwrap().unwrap().id;
    assert!(t.store.user_passkeys(&bob_id).await.unwrap().is_empty());

    // Eleven minutes later, the sign-in is too old to add one.
    t.advance(11 * 60);
    let (status, answer) = post_json(&b, &t.url("/account/passkeys/options"), &csrf, &json!({ "name": "Late" })).await;
    assert_eq!(status, 403, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("sign in again"), "{answer}");
    let page = b.get(&t.url("/account/passkeys")).await.body;
    assert!(page.contains(r#"action="/account/passkeys/reauth""#), "{page}");
    let login = b.post(&t.url("/account/passkeys/reauth"), &[("csrf", &hidden(&page, "csrf"))]).await;
    assert_eq!(login.status, 200, "the login page: {}", login.body);
    let done = b.submit_login(&t.base, &login.body, "alice", PASSWORD).await;
    assert_eq!(done.location(), "/account/passkeys");
    let page = b.get(&t.url("/account/passkeys")).await.body;
    assert_eq!(register(&t, &b, &page, &mut SoftAuthenticator::new("localhost"), "Fresh", &origin).await.0, 200);
}

#[tokio::test]
async fn username_less_starts_are_bounded_per_network() {
    let t = TestServer::start_with(|c| {
        c.issuer = c.issuer.replace("127.0.0.1", "localhost");
        c.passkeys.ceremonies_per_source = 3;
    })
    .await;
    let b = Browser::new();
    let (req, csrf) = login_page(&t, &b, &t.url("/account")).await;
    let starts: Vec<_> = (0..6).map(|_| start_sign_in(&t, &b, &req, &csrf)).collect();
    let mut codes = Vec::new();
    for s in starts {
        codes.push(s.await.0);
    }
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 3, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 503).count(), 3, "{codes:?}");
    // They expire: room again after five minutes.
    t.advance(301);
    let (req, csrf) = login_page(&t, &b, &t.url("/account")).await;
    assert_eq!(start_sign_in(&t, &b, &req, &csrf).await.0, 200);
}

#[tokio::test]
async fn failed_passkey_sign_ins_are_throttled_like_passwords() {
    let (t, origin) = server().await;
    let (b, page) = account(&t).await;
    let mut key = SoftAuthenticator::new("localhost");
    assert_eq!(register(&t, &b, &page, &mut key, "Key", &origin).await.0, 200);
    let other = Browser::new();
    let mut statuses = Vec::new();
    for _ in 0..7 {
        let (req, csrf) = login_page(&t, &other, &t.url("/account")).await;
        let (_, start) = start_sign_in(&t, &other, &req, &csrf).await;
        let mut credential = key.get(&start["options"], &origin);
        // A forged signature: right credential and data, one bit of the signature changed.
        let sig = credential["response"]["signature"].as_str().unwrap();
        let mut raw = URL_SAFE_NO_PAD.decode(sig).unwrap();
        let last = raw.len() - 3;
        raw[last] ^= 1;
        credential["response"]["signature"] = json!(URL_SAFE_NO_PAD.encode(raw));
        let body = json!({ "req": req, "ceremony": start["ceremony"], "credential": credential });
        let (status, answer) = post_json(&other, &t.url("/login/passkey"), &csrf, &body).await;
        if status == 400 {
            assert!(answer["error"].as_str().unwrap().contains("could not be verified"), "{answer}");
        }
        statuses.push(status);
    }
    assert_eq!(&statuses[..5], &[400; 5], "{statuses:?}");
    assert_eq!(statuses[5], 429, "the sixth failure from one place waits, as with passwords: {statuses:?}");
    assert_eq!(events(&t, "login_failure").await.len(), 5);
}

#[tokio::test]
async fn an_ip_address_issuer_offers_no_passkeys() {
    let t = TestServer::start().await;
    let b = t.browser();
    let page = b.get(&t.url("/account")).await;
    assert!(!page.body.contains("passkey"), "{}", page.body);
    assert!(!page.header("content-security-policy").contains("script-src"), "no script where none is needed");
    let (req, csrf) = (hidden(&page.body, "req"), hidden(&page.body, "csrf"));
    let (status, answer) = post_json(&b, &t.url("/login/passkey/options"), &csrf, &json!({ "req": req })).await;
    assert_eq!(status, 404, "{answer}");
}
