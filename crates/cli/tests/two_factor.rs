//! Second factors through the real pages (issue 13): TOTP set up on the account page and at
//! sign-in, sign-in with a code, replay and bursts, recovery codes, throttling, the deployment's
//! and a client's policy, `acr_values` and the `claims` parameter's `acr` (essential or not) step-up, `max_age` with a second factor, and `amr`, `acr`
//! and `auth_time` in id_tokens as an independent OpenID Connect library reads them, at the code
//! exchange and after a refresh.
//!
//! Codes are computed here by an independent RFC 6238 implementation (HMAC-SHA-1 from aws-lc-rs,
//! checked against the RFC's Appendix B vectors), not by the server's TOTP crate.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Stdio};

use aws_lc_rs::hmac;
use common::*;
use latchkey_core::admin::NewClient;
use latchkey_core::authn::SecondFactorPolicy;
use latchkey_proto::CodeVerifier;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthenticationContextClass, AuthorizationCode, ClientId, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, RedirectUrl, Scope, TokenResponse,
};

const MFA: &str = "https://refeds.org/profile/mfa";
const SFA: &str = "https://refeds.org/profile/sfa";

// --- An independent TOTP (RFC 4226 §5.3, RFC 6238 §4) -------------------------------------

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

fn hotp(key: &[u8], counter: u64, digits: u32) -> String {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key), &counter.to_be_bytes());
    let h = tag.as_ref();
    let o = (h[19] & 0x0f) as usize;
    let bin =
        (u32::from(h[o]) & 0x7f) << 24 | u32::from(h[o + 1]) << 16 | u32::from(h[o + 2]) << 8 | u32::from(h[o + 3]);
    format!("{:0width$}", bin % 10u32.pow(digits), width = digits as usize)
}

fn totp(key: &[u8], unix: i64) -> String {
    hotp(key, (unix / 30) as u64, 6)
}

#[test]
fn the_test_totp_passes_rfc_6238_appendix_b() {
    let key = b"12345678901234567890";
    for (t, expected) in
        [(59, "94287082"), (1111111109, "07081804"), (1111111111, "14050471"), (2000000000, "69279037")]
    {
        assert_eq!(hotp(key, t / 30, 8), expected, "T = {t}");
    }
    assert_eq!(base32_decode("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"), key);
}

// --- Pages ---------------------------------------------------------------------------------

/// The text of the first `<code class="secret">` in a page: the key shown for setup.
fn shown_key(body: &str) -> Vec<u8> {
    let start = body.find(r#"<code class="secret">"#).unwrap_or_else(|| panic!("no key in {body}")) + 21;
    let end = body[start..].find("</code>").unwrap() + start;
    base32_decode(&body[start..end])
}

/// The recovery codes of a page that shows a new set.
fn shown_codes(body: &str) -> Vec<String> {
    body.split("<li><code>").skip(1).map(|s| s[..s.find("</code>").unwrap()].to_owned()).collect()
}

fn sets_session_cookie(p: &Page) -> bool {
    p.headers.get_all("set-cookie").iter().any(|v| v.to_str().unwrap().starts_with("latchkey_session="))
}

/// Signs `b` in to the account pages with the password (alice has no factor yet).
async fn account_sign_in(t: &TestServer, b: &Browser) {
    let login = b.get(&t.url("/account")).await;
    let done = b.submit_login(&t.base, &login.body, "alice", PASSWORD).await;
    assert_eq!((done.status, done.location()), (303, "/account".to_owned()), "{}", done.body);
}

/// Sets up TOTP for alice on the account page of a signed-in `b`; returns the key and the
/// recovery codes.
async fn enrol_on_account_page(t: &TestServer, b: &Browser) -> (Vec<u8>, Vec<String>) {
    let page = b.get(&t.url("/account/two-step")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Set up an authenticator app"), "{}", page.body);
    let csrf = hidden(&page.body, "csrf");
    let r = b.post(&t.url("/account/two-step"), &[("csrf", &csrf), ("action", "setup")]).await;
    assert_eq!((r.status, r.location()), (303, "/account/two-step".to_owned()));
    let page = b.get(&t.url("/account/two-step")).await;
    let key = shown_key(&page.body);
    assert!(page.body.contains(r#"<img src="/account/two-step/qr.svg""#), "{}", page.body);
    let qr = b.get(&t.url("/account/two-step/qr.svg")).await;
    assert_eq!((qr.status, qr.header("content-type").as_str()), (200, "image/svg+xml"));
    assert_eq!(qr.header("cache-control"), "no-store");
    // The password is asked: a stolen session alone must not put a thief's app on the account.
    let code = totp(&key, t.now());
    let wrong = b
        .post(
            &t.url("/account/two-step"),
            &[("csrf", &csrf), ("action", "confirm"), ("code", &code), ("password", "nope")],
        )
        .await;
    assert!(wrong.body.contains("That password is not right."), "{}", wrong.body);
    let done = b
        .post(
            &t.url("/account/two-step"),
            &[("csrf", &csrf), ("action", "confirm"), ("code", &code), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    let codes = shown_codes(&done.body);
    assert_eq!(codes.len(), 10, "{}", done.body);
    let page = b.get(&t.url("/account/two-step")).await;
    assert!(page.body.contains("On since") && page.body.contains("10 of 10 unused"), "{}", page.body);
    (key, codes)
}

/// A fresh browser, its authorization request for `client` (with `extra` query), and the
/// response to the correct password.
async fn password_step(t: &TestServer, client: &str, extra: &str) -> (Browser, CodeVerifier, Page) {
    let b = t.browser();
    let v = CodeVerifier::generate();
    let login = b.get(&t.authorize_url(client, &v, extra)).await;
    assert_eq!(login.status, 200, "{}", login.body);
    let res = b.submit_login(&t.base, &login.body, "alice", PASSWORD).await;
    (b, v, res)
}

/// Follows a redirect to the second-factor page.
async fn second_factor_page(t: &TestServer, b: &Browser, res: &Page) -> Page {
    assert_eq!(res.status, 303, "{}", res.body);
    assert!(res.location().starts_with("/login/two-step?req="), "{}", res.location());
    let page = b.get(&t.url(&res.location())).await;
    assert_eq!(page.status, 200, "{}", page.body);
    page
}

async fn submit(t: &TestServer, b: &Browser, page: &Page, field: &str, value: &str) -> Page {
    let (req, csrf) = (hidden(&page.body, "req"), hidden(&page.body, "csrf"));
    b.post(&t.url("/login/two-step"), &[("req", &req), ("csrf", &csrf), (field, value)]).await
}

/// From the response that completed the sign-in to the code (through consent if asked).
async fn code_from(t: &TestServer, b: &Browser, mut res: Page) -> String {
    if res.status == 303 && res.location().starts_with("/consent") {
        res = b.get(&t.url(&res.location())).await;
    }
    // The consent page, after a redirect or straight from `/authorize` with a session.
    if res.status == 200 && res.body.contains(r#"action="/consent""#) {
        res = b.submit_consent(&t.base, &res.body, "allow").await;
    }
    res.redirect_query().get("code").unwrap_or_else(|| panic!("no code: {}", res.location())).clone()
}

async fn id_claims(t: &TestServer, client: &str, code: &str, v: &CodeVerifier) -> (serde_json::Value, String) {
    let (status, body) = t.exchange(client, code, v).await;
    assert_eq!(status, 200, "{body}");
    let (_, claims) = jwt_parts(body["id_token"].as_str().unwrap());
    (claims, body["refresh_token"].as_str().unwrap_or_default().to_owned())
}

fn amr(claims: &serde_json::Value) -> Vec<String> {
    claims["amr"].as_array().map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect()).unwrap_or_default()
}

// --- Tests ---------------------------------------------------------------------------------

#[tokio::test]
async fn totp_set_up_on_the_account_page_then_password_and_code_sign_in_and_a_code_works_once() {
    let t = TestServer::start().await;
    let b = t.browser();
    account_sign_in(&t, &b).await;
    let (key, _) = enrol_on_account_page(&t, &b).await;

    // The password alone makes no session: a partial sign-in waits for the code.
    t.advance(30);
    let (b, v, res) = password_step(&t, "spa", "").await;
    assert!(!sets_session_cookie(&res), "no session before the second factor");
    let page = second_factor_page(&t, &b, &res).await;
    assert!(page.body.contains("Code from your authenticator app"), "{}", page.body);
    assert!(page.header("content-security-policy").contains("default-src 'none'"));
    assert!(b.get(&t.url("/account")).await.body.contains("Sign in"), "not signed in yet");

    let wrong = submit(&t, &b, &page, "code", &hotp(&key, (t.now() / 30 + 5) as u64, 6)).await;
    assert_eq!(wrong.status, 200);
    assert!(wrong.body.contains("That code is not right."), "{}", wrong.body);

    // The pending id alone, from another browser (no partial sign-in cookie), signs nobody in.
    let code = totp(&key, t.now());
    let thief = t.browser();
    let thief_page = thief.get(&t.url("/account")).await;
    let stolen = thief
        .post(
            &t.url("/login/two-step"),
            &[("req", &hidden(&page.body, "req")), ("csrf", &hidden(&thief_page.body, "csrf")), ("code", &code)],
        )
        .await;
    assert!(!sets_session_cookie(&stolen), "{}", stolen.body);
    assert!(stolen.body.contains("Sign in"), "back to the password: {}", stolen.body);

    let ok = submit(&t, &b, &page, "code", &code).await;
    assert!(sets_session_cookie(&ok), "{}", ok.body);
    let code_value = code_from(&t, &b, ok).await;
    let (claims, _) = id_claims(&t, "spa", &code_value, &v).await;
    assert_eq!(amr(&claims), ["pwd", "otp", "mfa"]);
    assert_eq!(claims["acr"], MFA);
    assert_eq!(claims["auth_time"], t.now());

    // The same code in another sign-in within its window: refused (RFC 6238 §5.2).
    let (b2, _, res) = password_step(&t, "spa", "").await;
    let page = second_factor_page(&t, &b2, &res).await;
    let replay = submit(&t, &b2, &page, "code", &code).await;
    assert!(replay.body.contains("That code was already used."), "{}", replay.body);
    assert!(!sets_session_cookie(&replay));
    // The account pages' own sign-in takes the same step, and ends on the account page.
    t.advance(30);
    let b3 = browser_as(FIREFOX);
    let login = b3.get(&t.url("/account/two-step")).await;
    let res = b3.submit_login(&t.base, &login.body, "alice", PASSWORD).await;
    let page = second_factor_page(&t, &b3, &res).await;
    assert!(page.body.contains("your account"), "{}", page.body);
    let done = submit(&t, &b3, &page, "code", &totp(&key, t.now())).await;
    assert_eq!((done.status, done.location()), (303, "/account/two-step".to_owned()), "{}", done.body);
    assert!(b3.get(&t.url("/account/two-step")).await.body.contains("On since"));
    // The session made after the second factor records the browser, as a password-only one does.
    let sessions = b3.get(&t.url("/account/sessions")).await.body;
    assert!(sessions.contains("Firefox on Linux"), "{sessions}");
    let events: Vec<String> =
        t.store.audit_events(None, None, 50).await.unwrap().into_iter().map(|e| e.event).collect();
    for e in ["totp_enrolled", "second_factor_success", "second_factor_failure"] {
        assert!(events.iter().any(|x| x == e), "{e} in {events:?}");
    }
}

#[tokio::test]
async fn a_burst_of_one_code_signs_in_exactly_once() {
    let t = TestServer::start().await;
    let b = t.browser();
    account_sign_in(&t, &b).await;
    let (key, _) = enrol_on_account_page(&t, &b).await;
    t.advance(30);
    // Six browsers past the password, then the same code from all of them, twice each, at once.
    let mut pages = Vec::new();
    for _ in 0..6 {
        let (b, _, res) = password_step(&t, "spa", "").await;
        let page = second_factor_page(&t, &b, &res).await;
        pages.push((b, page));
    }
    let code = totp(&key, t.now());
    let tasks: Vec<_> = pages
        .iter()
        .flat_map(|(b, page)| [(b, page), (b, page)])
        .map(|(b, page)| {
            let (http, url) = (b.http.clone(), t.url("/login/two-step"));
            let form =
                [("req", hidden(&page.body, "req")), ("csrf", hidden(&page.body, "csrf")), ("code", code.clone())];
            tokio::spawn(async move { http.post(url).form(&form).send().await.unwrap().status().as_u16() })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 303).count(), 1, "one sign-in from one code: {statuses:?}");
}

#[tokio::test]
async fn a_recovery_code_signs_in_once() {
    let t = TestServer::start().await;
    let b = t.browser();
    account_sign_in(&t, &b).await;
    let (_, codes) = enrol_on_account_page(&t, &b).await;

    let (b, v, res) = password_step(&t, "spa", "").await;
    let page = second_factor_page(&t, &b, &res).await;
    assert!(page.body.contains("Use a recovery code instead"), "{}", page.body);
    // Typed forgivingly: upper case, spaces for dashes.
    let typed = codes[3].to_uppercase().replace('-', " ");
    let ok = submit(&t, &b, &page, "recovery_code", &typed).await;
    let code = code_from(&t, &b, ok).await;
    let (claims, _) = id_claims(&t, "spa", &code, &v).await;
    assert_eq!((amr(&claims), claims["acr"].as_str().unwrap()), (vec!["pwd".into(), "otp".into(), "mfa".into()], MFA));

    let (b2, _, res) = password_step(&t, "spa", "").await;
    let page = second_factor_page(&t, &b2, &res).await;
    let again = submit(&t, &b2, &page, "recovery_code", &codes[3]).await;
    assert!(
        again.body.contains("That recovery code is not right, or it was used already."),
        "used once: {}",
        again.body
    );
    let account = b.get(&t.url("/account/two-step")).await;
    assert!(account.body.contains("9 of 10 unused"), "{}", account.body);
    let used = t.store.audit_events(None, None, 50).await.unwrap();
    assert!(used.iter().any(|e| e.event == "recovery_code_used" && e.detail["left"] == 9));
}

#[tokio::test]
async fn wrong_codes_are_throttled_per_account() {
    let t = TestServer::start().await;
    let b = t.browser();
    account_sign_in(&t, &b).await;
    let (key, _) = enrol_on_account_page(&t, &b).await;
    t.advance(30);
    let (b, v, res) = password_step(&t, "spa", "").await;
    let page = second_factor_page(&t, &b, &res).await;
    for i in 0..5 {
        let r = submit(&t, &b, &page, "code", &format!("00000{i}")).await;
        assert_eq!(r.status, 200, "free attempt {i}");
    }
    // Another browser on the same account shares the account's budget.
    let (b2, _, res2) = password_step(&t, "spa", "").await;
    let page2 = second_factor_page(&t, &b2, &res2).await;
    let blocked = submit(&t, &b2, &page2, "code", "000009").await;
    assert_eq!(blocked.status, 429, "{}", blocked.body);
    assert_eq!(blocked.header("retry-after"), "1");
    // While blocked even the right code is not checked.
    let right = submit(&t, &b, &page, "code", &totp(&key, t.now())).await;
    assert_eq!(right.status, 429);
    assert!(right.body.contains("Too many wrong codes."), "{}", right.body);
    assert!(!sets_session_cookie(&right));
    t.advance(2);
    let ok = submit(&t, &b, &page, "code", &totp(&key, t.now())).await;
    assert!(sets_session_cookie(&ok), "{}", ok.body);
    let code = code_from(&t, &b, ok).await;
    assert_eq!(id_claims(&t, "spa", &code, &v).await.0["acr"], MFA);
}

#[tokio::test]
async fn a_required_second_factor_is_set_up_at_sign_in_and_never_skipped() {
    let t = TestServer::start_with(|c| c.second_factor = SecondFactorPolicy::Required).await;
    let (b, v, res) = password_step(&t, "spa", "").await;
    assert!(!sets_session_cookie(&res));
    let page = second_factor_page(&t, &b, &res).await;
    assert!(page.body.contains("Set up two-step sign-in"), "{}", page.body);
    let req = hidden(&page.body, "req");
    let qr = b.get(&t.url(&format!("/login/two-step/qr.svg?req={req}"))).await;
    assert_eq!((qr.status, qr.header("content-type").as_str()), (200, "image/svg+xml"));
    assert!(qr.body.contains("<svg"));
    let other = t.browser().get(&t.url(&format!("/login/two-step/qr.svg?req={req}"))).await;
    assert!(!other.body.contains("<svg"), "only the browser that gave the password sees the key");
    // Skipping the setup gets nowhere: no session, so continuing asks for the password again.
    let csrf = hidden(&page.body, "csrf");
    let skip = b.post(&t.url("/login/continue"), &[("req", &req), ("csrf", &csrf)]).await;
    assert!(skip.body.contains("Sign in") && !sets_session_cookie(&skip), "{}", skip.body);

    let key = shown_key(&page.body);
    let wrong = b.post(&t.url("/login/enrol"), &[("req", &req), ("csrf", &csrf), ("code", "123456")]).await;
    assert!(wrong.body.contains("That code is not right.") && !sets_session_cookie(&wrong), "{}", wrong.body);
    let done = b.post(&t.url("/login/enrol"), &[("req", &req), ("csrf", &csrf), ("code", &totp(&key, t.now()))]).await;
    assert!(sets_session_cookie(&done), "{}", done.body);
    assert_eq!(shown_codes(&done.body).len(), 10, "{}", done.body);
    let res = b.post(&t.url("/login/continue"), &[("req", &req), ("csrf", &hidden(&done.body, "csrf"))]).await;
    let code = code_from(&t, &b, res).await;
    let (claims, _) = id_claims(&t, "spa", &code, &v).await;
    assert_eq!((claims["acr"].as_str().unwrap(), amr(&claims)), (MFA, vec!["pwd".into(), "otp".into(), "mfa".into()]));

    // From now on alice is asked for her code.
    t.advance(30);
    let (b, _, res) = password_step(&t, "spa", "").await;
    let page = second_factor_page(&t, &b, &res).await;
    assert!(page.body.contains("Code from your authenticator app"), "{}", page.body);
}

#[tokio::test]
async fn a_clients_policy_applies_to_that_client_only_and_steps_up_an_existing_session() {
    let t = TestServer::start().await;
    t.add(NewClient {
        second_factor: SecondFactorPolicy::Required,
        ..NewClient::public("strict", "Strict app", vec![REDIRECT.into()])
    })
    .await;
    // The ordinary client: password only, no second step.
    let (b, v, res) = password_step(&t, "spa", "").await;
    assert!(sets_session_cookie(&res) && res.location().starts_with("/consent"), "{}", res.location());
    let code = code_from(&t, &b, res).await;
    assert_eq!(id_claims(&t, "spa", &code, &v).await.0["acr"], SFA);
    // The strict client with the same session: the password session is not enough, alice sets
    // up a factor on the spot, and her session is upgraded (a new token for it).
    let v2 = CodeVerifier::generate();
    let step = b.get(&t.authorize_url("strict", &v2, "")).await;
    assert_eq!(step.status, 302, "{}", step.body);
    assert!(step.location().starts_with("/login/two-step"), "{}", step.location());
    let page = b.get(&t.url(&step.location())).await;
    assert!(page.body.contains("Set up two-step sign-in"), "{}", page.body);
    let (req, csrf) = (hidden(&page.body, "req"), hidden(&page.body, "csrf"));
    let key = shown_key(&page.body);
    let done = b.post(&t.url("/login/enrol"), &[("req", &req), ("csrf", &csrf), ("code", &totp(&key, t.now()))]).await;
    assert!(sets_session_cookie(&done), "the stepped-up session gets a new token");
    let res = b.post(&t.url("/login/continue"), &[("req", &req), ("csrf", &hidden(&done.body, "csrf"))]).await;
    let code = code_from(&t, &b, res).await;
    assert_eq!(id_claims(&t, "strict", &code, &v2).await.0["acr"], MFA);
}

#[tokio::test]
async fn acr_values_step_up_an_existing_session_and_prompt_none_refuses() {
    let t = TestServer::start().await;
    let b = t.browser();
    // A password session from before TOTP was set up.
    account_sign_in(&t, &b).await;
    let (key, _) = enrol_on_account_page(&t, &b).await;
    let started = t.now();
    let old_cookie = b.get(&t.url("/account")).await;
    assert_eq!(old_cookie.status, 200);

    // Without acr_values the session serves as it is.
    let v = CodeVerifier::generate();
    let res = b.get(&t.authorize_url("spa", &v, "")).await;
    let code = code_from(&t, &b, res).await;
    let (claims, _) = id_claims(&t, "spa", &code, &v).await;
    assert_eq!((claims["acr"].as_str().unwrap(), amr(&claims)), (SFA, vec!["pwd".to_owned()]));

    let extra = format!("&acr_values={}", urlencode(MFA));
    let none = b.get(&t.authorize_url("spa", &v, &format!("{extra}&prompt=none"))).await;
    assert_eq!(none.redirect_query()["error"], "interaction_required");

    t.advance(40);
    let v = CodeVerifier::generate();
    let step = b.get(&t.authorize_url("spa", &v, &extra)).await;
    assert!(step.location().starts_with("/login/two-step"), "{} {}", step.status, step.location());
    let page = b.get(&t.url(&step.location())).await;
    let ok = submit(&t, &b, &page, "code", &totp(&key, t.now())).await;
    assert!(sets_session_cookie(&ok), "a stronger session gets a new token (session fixation)");
    let code = code_from(&t, &b, ok).await;
    let (claims, _) = id_claims(&t, "spa", &code, &v).await;
    assert_eq!(claims["acr"], MFA);
    assert_eq!(amr(&claims), ["pwd", "otp", "mfa"]);
    assert_eq!(claims["auth_time"], t.now(), "the step-up is the last authentication");
    assert!(t.now() > started);
    // Now the session meets the request without a second step (a loopback client is always
    // shown the consent page, RFC 8252 §8.6).
    let v = CodeVerifier::generate();
    let again = b.get(&t.authorize_url("spa", &v, &extra)).await;
    assert_eq!(again.status, 200, "{}", again.location());
    assert!(again.body.contains("Allow access?"), "{}", again.body);
}

/// The `claims` parameter's `acr` (Core §5.5.1.1) feeds the same demand as `acr_values`: asked
/// voluntarily it is met as far as the user's factors allow, asked as essential it binds like a
/// policy: a user with no second factor must set one up, and a password session steps up.
#[tokio::test]
async fn an_essential_acr_claim_forces_the_second_factor() {
    let t = TestServer::start().await;
    let claims = |essential: bool, value: &str| {
        let c = format!(r#"{{"id_token":{{"acr":{{"essential":{essential},"values":["{value}"]}}}}}}"#);
        format!("&claims={}", urlencode(&c))
    };
    // Voluntary: alice has no factor, so the password is all there is, and the client gets `sfa`.
    let (b, v, res) = password_step(&t, "spa", &claims(false, MFA)).await;
    assert!(sets_session_cookie(&res), "a voluntary acr does not block a password sign-in: {}", res.location());
    let code = code_from(&t, &b, res).await;
    assert_eq!(id_claims(&t, "spa", &code, &v).await.0["acr"], SFA);

    // Essential, the same user: no session before a second factor is set up and used.
    t.advance(30);
    let (b2, v2, res) = password_step(&t, "spa", &claims(true, MFA)).await;
    assert!(!sets_session_cookie(&res), "an essential acr gives no password-only session");
    let page = second_factor_page(&t, &b2, &res).await;
    assert!(page.body.contains("Set up two-step sign-in"), "{}", page.body);
    let (req, csrf) = (hidden(&page.body, "req"), hidden(&page.body, "csrf"));
    let key = shown_key(&page.body);
    let done = b2.post(&t.url("/login/enrol"), &[("req", &req), ("csrf", &csrf), ("code", &totp(&key, t.now()))]).await;
    assert!(sets_session_cookie(&done), "{}", done.body);
    let res = b2.post(&t.url("/login/continue"), &[("req", &req), ("csrf", &hidden(&done.body, "csrf"))]).await;
    let code = code_from(&t, &b2, res).await;
    let (id, _) = id_claims(&t, "spa", &code, &v2).await;
    assert_eq!((id["acr"].as_str().unwrap(), amr(&id)), (MFA, vec!["pwd".into(), "otp".into(), "mfa".into()]));

    // The first browser's password session does not meet an essential claim: prompt=none is
    // refused, and otherwise the session steps up with the code.
    t.advance(30);
    let v3 = CodeVerifier::generate();
    let none = b.get(&t.authorize_url("spa", &v3, &format!("{}&prompt=none", claims(true, MFA)))).await;
    assert_eq!(none.redirect_query()["error"], "interaction_required");
    let step = b.get(&t.authorize_url("spa", &v3, &claims(true, MFA))).await;
    assert!(step.location().starts_with("/login/two-step"), "{} {}", step.status, step.location());
    let page = b.get(&t.url(&step.location())).await;
    let ok = submit(&t, &b, &page, "code", &totp(&key, t.now())).await;
    let code = code_from(&t, &b, ok).await;
    assert_eq!(id_claims(&t, "spa", &code, &v3).await.0["acr"], MFA);

    // An essential claim naming no level this server knows cannot be met: the client is told.
    let v4 = CodeVerifier::generate();
    let unmet = t.browser().get(&t.authorize_url("spa", &v4, &claims(true, "urn:example:gold"))).await;
    assert_eq!(unmet.redirect_query()["error"], "unmet_authentication_requirements");
}

#[tokio::test]
async fn max_age_zero_is_a_fresh_sign_in_with_both_factors() {
    let t = TestServer::start().await;
    let b = t.browser();
    account_sign_in(&t, &b).await;
    let (key, _) = enrol_on_account_page(&t, &b).await;
    t.advance(30);
    let (b, _, res) = password_step(&t, "spa", "").await;
    let page = second_factor_page(&t, &b, &res).await;
    let first = code_from(&t, &b, submit(&t, &b, &page, "code", &totp(&key, t.now())).await).await;
    assert!(!first.is_empty());

    t.advance(45);
    let v = CodeVerifier::generate();
    let login = b.get(&t.authorize_url("spa", &v, "&max_age=0")).await;
    assert_eq!(login.status, 200);
    assert!(login.body.contains("Sign in"), "max_age=0 asks for the password again");
    let res = b.submit_login(&t.base, &login.body, "alice", PASSWORD).await;
    let page = second_factor_page(&t, &b, &res).await;
    let code = code_from(&t, &b, submit(&t, &b, &page, "code", &totp(&key, t.now())).await).await;
    let (claims, _) = id_claims(&t, "spa", &code, &v).await;
    assert_eq!((claims["auth_time"].as_i64().unwrap(), claims["acr"].as_str().unwrap()), (t.now(), MFA));
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The `openidconnect` crate builds the request (with `acr_values`), validates the id_token's
/// signature against our JWKS, and reads `acr`, `amr` and `auth_time`; after a refresh it finds
/// the same values, from the same authentication.
#[tokio::test]
async fn an_independent_library_reads_amr_acr_and_auth_time_also_after_refresh() {
    let t = TestServer::start().await;
    let b = t.browser();
    account_sign_in(&t, &b).await;
    let (key, _) = enrol_on_account_page(&t, &b).await;
    t.advance(30);

    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let metadata = CoreProviderMetadata::discover_async(IssuerUrl::new(t.base.clone()).unwrap(), &http).await.unwrap();
    let supported: Vec<String> =
        metadata.acr_values_supported().unwrap().iter().map(|a| a.as_str().to_owned()).collect();
    assert_eq!(supported, [SFA, MFA, "phr"]);
    let client = CoreClient::from_provider_metadata(metadata, ClientId::new("spa".into()), None)
        .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _, nonce) = client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_scope(Scope::new("offline_access".into()))
        .add_auth_context_value(AuthenticationContextClass::new(MFA.into()))
        .set_pkce_challenge(challenge)
        .url();
    // A fresh browser: password, then the code.
    let b = t.browser();
    let login = b.get(url.as_str()).await;
    let res = b.submit_login(&t.base, &login.body, "alice", PASSWORD).await;
    let page = second_factor_page(&t, &b, &res).await;
    let code = code_from(&t, &b, submit(&t, &b, &page, "code", &totp(&key, t.now())).await).await;
    let signed_in_at = t.now();

    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .unwrap();
    let id_verifier = client.id_token_verifier();
    let claims = tokens.id_token().unwrap().claims(&id_verifier, &nonce).unwrap();
    assert_eq!(claims.auth_context_ref().unwrap().as_str(), MFA);
    let methods: Vec<&str> = claims.auth_method_refs().unwrap().iter().map(|m| m.as_str()).collect();
    assert_eq!(methods, ["pwd", "otp", "mfa"]);
    assert_eq!(claims.auth_time().unwrap().timestamp(), signed_in_at);

    t.advance(60);
    let refreshed =
        client.exchange_refresh_token(tokens.refresh_token().unwrap()).unwrap().request_async(&http).await.unwrap();
    let again = refreshed.id_token().unwrap().claims(&id_verifier, |_: Option<&Nonce>| Ok(())).unwrap();
    assert_eq!(again.auth_context_ref().unwrap().as_str(), MFA);
    let methods: Vec<&str> = again.auth_method_refs().unwrap().iter().map(|m| m.as_str()).collect();
    assert_eq!(methods, ["pwd", "otp", "mfa"]);
    assert_eq!(again.auth_time().unwrap().timestamp(), signed_in_at, "the authentication it comes from");
    // The access token carries them too (RFC 9068 §2.2.1), for resource servers that step up.
    let (_, at) = jwt_parts(refreshed.access_token().secret());
    assert_eq!((at["acr"].as_str().unwrap(), at["auth_time"].as_i64().unwrap()), (MFA, signed_in_at));
}

#[tokio::test]
async fn turning_totp_off_asks_for_a_code_or_the_password_and_reset_factors_clears_them() {
    let t = TestServer::start().await;
    let b = t.browser();
    account_sign_in(&t, &b).await;
    let (key, _) = enrol_on_account_page(&t, &b).await;
    let page = b.get(&t.url("/account/two-step")).await;
    let csrf = hidden(&page.body, "csrf");
    let bare = b.post(&t.url("/account/two-step"), &[("csrf", &csrf), ("action", "remove")]).await;
    assert!(bare.body.contains("Enter a current code from your app, or your password."), "{}", bare.body);
    // New recovery codes with a current code: the old ones stop working.
    t.advance(30);
    let regen = b
        .post(&t.url("/account/two-step"), &[("csrf", &csrf), ("action", "regenerate"), ("code", &totp(&key, t.now()))])
        .await;
    assert_eq!(shown_codes(&regen.body).len(), 10, "{}", regen.body);
    let off =
        b.post(&t.url("/account/two-step"), &[("csrf", &csrf), ("action", "remove"), ("password", PASSWORD)]).await;
    assert_eq!((off.status, off.location()), (303, "/account/two-step?done=removed".to_owned()));
    let page = b.get(&t.url(&off.location())).await;
    assert!(page.body.contains("The authenticator app is off.") && page.body.contains("Set up"), "{}", page.body);
    let (_, _, res) = password_step(&t, "spa", "").await;
    assert!(res.location().starts_with("/consent"), "password only again: {}", res.location());

    // The administrator's reset, through the binary, on the same database file.
    let b = t.browser();
    account_sign_in(&t, &b).await;
    enrol_on_account_page(&t, &b).await;
    let db = t.db_path().expect("a SQLite test server");
    let out = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(["user", "reset-factors", "alice", "--database"])
        .arg(&db)
        .env_remove("LATCHKEY_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("totp removed: yes") && stdout.contains("recovery codes removed: 10"), "{stdout}");
    let (_, _, res) = password_step(&t, "spa", "").await;
    assert!(res.location().starts_with("/consent"), "{}", res.location());
    let reset = t.store.audit_events(None, None, 50).await.unwrap();
    assert!(reset.iter().any(|e| e.event == "factors_reset"));
}
