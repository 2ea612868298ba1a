//! Issue 13, "Profile and sessions" and the account pages, through a real server: the profile
//! form and its validation, the standard claims and the `claims` request parameter in userinfo
//! and in id_tokens (checked with the independent `openidconnect` crate), `claims_supported`, the
//! password, sessions and apps pages, the activity page, locking, CSRF on every account form, and
//! that nobody can end another user's session.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;

use common::*;
use latchkey_core::profile::{EditOutcome, Editor, Field, ProfileEdit};
use latchkey_proto::CodeVerifier;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata, CoreUserInfoClaims};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    RedirectUrl, TokenResponse,
};
/// Signs `user` in to the account pages in `b`.
async fn sign_in(t: &TestServer, b: &Browser, user: &str) {
    let login = b.get(&t.url("/account")).await;
    assert!(login.body.contains("your account"), "{}", login.body);
    let done = b.submit_login(&t.base, &login.body, user, PASSWORD).await;
    assert_eq!(done.status, 303, "{}", done.body);
}

async fn account_browser(t: &TestServer, user: &str) -> Browser {
    let b = browser_as(FIREFOX);
    sign_in(t, &b, user).await;
    b
}

/// Posts `fields` to the account form at `path`, with the CSRF token of the page there.
async fn post_form(t: &TestServer, b: &Browser, path: &str, fields: &[(&str, &str)]) -> Page {
    let page = b.get(&t.url(path)).await;
    assert_eq!(page.status, 200, "{path}: {}", page.body);
    let csrf = hidden(&page.body, "csrf");
    let mut form = vec![("csrf", csrf.as_str())];
    form.extend_from_slice(fields);
    b.post(&t.url(path), &form).await
}

/// Every field of the profile form as the page shows it, with `changes` applied.
fn profile_form(page: &str, changes: &[(&str, &str)]) -> Vec<(String, String)> {
    Field::ALL
        .iter()
        .map(|f| {
            let name = f.claim();
            let value = match changes.iter().find(|(k, _)| *k == name) {
                Some((_, v)) => (*v).to_owned(),
                None if name == "address" => {
                    let start = page.find(r#"name="address""#).unwrap();
                    let open = page[start..].find('>').unwrap() + start + 1;
                    let close = page[open..].find("</textarea>").unwrap() + open;
                    html_escape::decode_html_entities(&page[open..close]).into_owned()
                }
                None => html_escape::decode_html_entities(&hidden(page, name)).into_owned(),
            };
            (name.to_owned(), value)
        })
        .collect()
}

async fn save_profile(t: &TestServer, b: &Browser, changes: &[(&str, &str)]) -> Page {
    let page = b.get(&t.url("/account")).await;
    let csrf = hidden(&page.body, "csrf");
    let fields = profile_form(&page.body, changes);
    let mut form: Vec<(&str, &str)> = vec![("csrf", &csrf)];
    form.extend(fields.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    b.post(&t.url("/account"), &form).await
}

/// Fills every standard claim of `user` (as an administrator would).
async fn fill_profile(t: &TestServer, username: &str) {
    let u = t.store.user_by_username(username).await.unwrap().unwrap();
    let values = [
        (Field::GivenName, "Alice"),
        (Field::MiddleName, "Pleasance"),
        (Field::FamilyName, "Liddell"),
        (Field::Nickname, "Al"),
        (Field::PreferredUsername, "alice.l"),
        (Field::Profile, "https://alice.example/about"),
        (Field::Picture, "https://alice.example/me.png"),
        (Field::Website, "https://alice.example/"),
        (Field::Gender, "female"),
        (Field::Birthdate, "1852-05-04"),
        (Field::Zoneinfo, "Europe/London"),
        (Field::Locale, "en-GB"),
        (Field::Address, "Christ Church\nOxford"),
    ];
    let edit =
        ProfileEdit { values: values.iter().map(|(f, v)| (*f, (*v).to_owned())).collect(), email_verified: Some(true) };
    let out = latchkey_core::profile::edit_profile(t.store.as_ref(), &u.id, &edit, Editor::Admin, None, t.now()).await;
    assert!(matches!(out, Ok(EditOutcome::Saved { .. })), "{out:?}");
}

#[tokio::test]
async fn the_profile_form_refuses_bad_values_next_to_their_field_and_keeps_what_was_typed() {
    let t = TestServer::start().await;
    let b = account_browser(&t, "alice").await;
    let page = b.get(&t.url("/account")).await;
    assert!(page.body.contains("Signed in as <strong>alice</strong>"));
    assert!(page.body.contains(r#"<label for="f-given_name">Given name</label>"#), "every field is labelled");

    let refused = save_profile(
        &t,
        &b,
        &[("given_name", "Alice"), ("picture", "http://alice.example/me.png"), ("birthdate", "1852-02-30")],
    )
    .await;
    assert_eq!(refused.status, 200);
    assert!(
        refused.body.contains(r#"<p class="error" id="e-picture">Enter an https:// address.</p>"#),
        "{}",
        refused.body
    );
    assert!(refused.body.contains(r#"id="f-picture" name="picture" value="http://alice.example/me.png""#));
    assert!(refused.body.contains(r#"aria-describedby="h-picture e-picture""#));
    assert!(refused.body.contains(r##"<a href="#f-birthdate">Birthdate: That day does not exist in that month.</a>"##));
    assert!(refused.body.contains(r#"name="given_name" value="Alice""#), "what was typed stays");
    let alice = t.store.user_by_username("alice").await.unwrap().unwrap();
    assert_eq!(alice.profile.given_name, None, "nothing is stored from a refused form");

    t.advance(30);
    let saved = save_profile(
        &t,
        &b,
        &[("given_name", "Alice"), ("picture", "https://alice.example/me.png"), ("zoneinfo", "Europe/London")],
    )
    .await;
    assert_eq!((saved.status, saved.location().as_str()), (303, "/account?done=saved"), "{}", saved.body);
    let alice = t.store.user_by_username("alice").await.unwrap().unwrap();
    assert_eq!(alice.profile.given_name.as_deref(), Some("Alice"));
    assert_eq!(alice.profile.picture.as_deref(), Some("https://alice.example/me.png"));
    assert_eq!(alice.updated_at, t.now(), "updated_at is set on every change");
    assert_eq!(alice.phone_number.as_deref(), Some("+1 555 0100"), "untouched fields keep their values");
    assert!(b.get(&t.url("/account?done=saved")).await.body.contains("Your profile was saved."));

    // A new email address is unverified.
    t.store.update_profile(&alice.id, &profile_update(&alice, true), t.now()).await.unwrap();
    let changed = save_profile(&t, &b, &[("email", "alice@new.example")]).await;
    assert_eq!(changed.location(), "/account?done=email");
    let alice = t.store.user_by_username("alice").await.unwrap().unwrap();
    assert_eq!((alice.email.as_str(), alice.email_verified), ("alice@new.example", false));
    // Clearing a field clears the claim.
    assert_eq!(save_profile(&t, &b, &[("given_name", "")]).await.status, 303);
    assert_eq!(t.store.user_by_username("alice").await.unwrap().unwrap().profile.given_name, None);
}

fn profile_update(u: &latchkey_core::store::UserRecord, verified: bool) -> latchkey_core::account_store::ProfileUpdate {
    latchkey_core::account_store::ProfileUpdate {
        name: u.name.clone(),
        email: u.email.clone(),
        email_verified: Some(verified),
        phone_number: u.phone_number.clone(),
        address: u.address.clone(),
        profile: u.profile.clone(),
    }
}

/// The browser's part of an authorization: `url` in `b` (signed in or not), log in if asked,
/// allow if asked. Returns the consent page's text (if one was shown) and the redirect's query.
async fn authorize_in(t: &TestServer, b: &Browser, url: &str) -> (Option<String>, HashMap<String, String>) {
    let mut res = b.get(url).await;
    if res.status == 200 && res.body.contains(r#"action="/login""#) {
        res = b.submit_login(&t.base, &res.body, "alice", PASSWORD).await;
    }
    let mut consent = None;
    if res.location().starts_with("/consent") {
        res = b.get(&t.url(&res.location())).await;
    }
    // With a session, the consent page comes straight from /authorize.
    if res.status == 200 && res.body.contains(r#"action="/consent""#) {
        let page = res.body;
        res = b.submit_consent(&t.base, &page, "allow").await;
        consent = Some(page);
    }
    (consent, res.redirect_query())
}

#[tokio::test]
async fn profile_claims_reach_userinfo_and_the_id_token_and_the_claims_parameter_asks_for_more() {
    let t = TestServer::start().await;
    fill_profile(&t, "alice").await;
    // A confidential client: a public one on a loopback redirect sees the consent page every time
    // (RFC 8252 §8.6), and this test shows that consent to claims is remembered.
    let secret = t.add_client("web", true, false).await.unwrap();
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let metadata = CoreProviderMetadata::discover_async(IssuerUrl::new(t.base.clone()).unwrap(), &http).await.unwrap();
    let client =
        CoreClient::from_provider_metadata(metadata, ClientId::new("web".into()), Some(ClientSecret::new(secret)))
            .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).unwrap());
    let b = t.browser();

    // 1. The `profile` scope: the profile claims, in the id_token and at userinfo.
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _, nonce) = client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_scope(openidconnect::Scope::new("profile".into()))
        .set_pkce_challenge(challenge)
        .url();
    let (_, q) = authorize_in(&t, &b, url.as_str()).await;
    let tokens = client
        .exchange_code(AuthorizationCode::new(q["code"].clone()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .unwrap();
    let id = tokens.id_token().unwrap().claims(&client.id_token_verifier(), &nonce).unwrap();
    let given = |c: Option<&openidconnect::LocalizedClaim<openidconnect::EndUserGivenName>>| {
        c.and_then(|n| n.get(None)).map(|n| n.as_str().to_owned())
    };
    assert_eq!(given(id.given_name()).as_deref(), Some("Alice"), "the id_token carries the profile claims");
    assert_eq!(id.preferred_username().unwrap().as_str(), "alice.l", "as set, not the username");
    assert_eq!(id.locale().unwrap().as_str(), "en-GB");
    assert!(id.updated_at().is_some(), "updated_at, a number the library reads as a time");
    assert!(id.email().is_none(), "email is not in the profile scope");
    let info: CoreUserInfoClaims =
        client.user_info(tokens.access_token().clone(), None).unwrap().request_async(&http).await.unwrap();
    assert_eq!(given(info.given_name()).as_deref(), Some("Alice"));
    assert_eq!(info.zoneinfo().unwrap().as_str(), "Europe/London");
    assert_eq!(info.birthdate().unwrap().as_str(), "1852-05-04");
    assert_eq!(info.picture().unwrap().get(None).unwrap().as_str(), "https://alice.example/me.png");
    assert!(info.email().is_none() && info.phone_number().is_none());

    // 2. The `claims` parameter: claims beyond the scopes, each where it is asked for, after the
    // user allowed them on the consent page.
    let claims = r#"{"userinfo":{"email":{"essential":true},"phone_number":null},
        "id_token":{"family_name":{"essential":true},"acr":{"essential":true,"values":["https://refeds.org/profile/sfa"]}}}"#;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _, nonce) = client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_extra_param("claims", claims)
        .set_pkce_challenge(challenge)
        .url();
    let (consent, q) = authorize_in(&t, &b, url.as_str()).await;
    let consent = consent.expect("claims beyond the consented scopes need the user's consent");
    for item in ["See your email address", "See your phone number", "See your family name"] {
        assert!(consent.contains(item), "{item}: {consent}");
    }
    let tokens = client
        .exchange_code(AuthorizationCode::new(q["code"].clone()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .unwrap();
    let id = tokens.id_token().unwrap().claims(&client.id_token_verifier(), &nonce).unwrap();
    let family = id.family_name().and_then(|n| n.get(None)).map(|n| n.as_str().to_owned());
    assert_eq!(family.as_deref(), Some("Liddell"), "asked for the id_token: there");
    assert!(id.email().is_none(), "asked for userinfo only");
    assert!(id.given_name().is_none(), "neither the scopes nor the request ask for it");
    let info: CoreUserInfoClaims =
        client.user_info(tokens.access_token().clone(), None).unwrap().request_async(&http).await.unwrap();
    assert_eq!(info.email().unwrap().as_str(), "alice@example.com");
    assert_eq!(info.phone_number().unwrap().as_str(), "+1 555 0100");
    assert!(info.family_name().is_none(), "asked for the id_token only");
    // The refreshed id_token carries the same requested claims.
    let refreshed =
        client.exchange_refresh_token(tokens.refresh_token().unwrap()).unwrap().request_async(&http).await.unwrap();
    let again = refreshed.id_token().unwrap().claims(&client.id_token_verifier(), |_: Option<&Nonce>| Ok(())).unwrap();
    assert!(again.family_name().is_some());

    // The consent to those claims is remembered: the same request goes straight through.
    let (challenge, _) = PkceCodeChallenge::new_random_sha256();
    let (url, _, _) = client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_extra_param("claims", claims)
        .set_pkce_challenge(challenge)
        .url();
    let (consent, q) = authorize_in(&t, &b, url.as_str()).await;
    assert!(consent.is_none() && q.contains_key("code"), "remembered: {q:?}");
    // A claim not allowed before asks again.
    let (challenge, _) = PkceCodeChallenge::new_random_sha256();
    let (url, _, _) = client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_extra_param("claims", r#"{"userinfo":{"birthdate":null}}"#)
        .set_pkce_challenge(challenge)
        .url();
    let (consent, _) = authorize_in(&t, &b, url.as_str()).await;
    assert!(consent.unwrap().contains("See your birthdate"));
}

#[tokio::test]
async fn a_claims_request_for_another_subject_or_malformed_is_refused_to_the_client() {
    let t = TestServer::start().await;
    let v = CodeVerifier::generate();
    let (b, _) = t.code_for("spa", &v).await;
    let claims =
        url::form_urlencoded::byte_serialize(br#"{"id_token":{"sub":{"value":"someone-else"}}}"#).collect::<String>();
    let (_, q) = authorize_in(&t, &b, &t.authorize_url("spa", &v, &format!("&claims={claims}"))).await;
    assert_eq!(q["error"], "login_required", "OpenID Connect Core §5.5.1: never another user's tokens");
    assert!(!q.contains_key("code"));

    let res = b.get(&t.authorize_url("spa", &v, "&claims=%7B")).await;
    let q = res.redirect_query();
    assert_eq!(q["error"], "invalid_request");
    assert!(q["error_description"].starts_with("the claims parameter is not valid JSON"), "{q:?}");
    let res = b.get(&t.authorize_url("spa", &v, "&claims=%7B%22id_token%22%3A%5B%5D%7D")).await;
    assert!(res.redirect_query()["error_description"].contains("member id_token must be a JSON object"));
    // An essential acr this server cannot meet (Core §5.5.1.1): refused to the client.
    let acr =
        url::form_urlencoded::byte_serialize(br#"{"id_token":{"acr":{"essential":true,"values":["urn:nobody"]}}}"#)
            .collect::<String>();
    let res = b.get(&t.authorize_url("spa", &v, &format!("&claims={acr}"))).await;
    assert_eq!(res.redirect_query()["error"], "unmet_authentication_requirements");
}

/// With mail configured, a new address on the account page takes effect only through the link
/// mailed to it (`latchkey_core::verification`): the form queues the link and keeps the address.
#[tokio::test]
async fn with_mail_a_new_address_waits_for_its_link() {
    let t = TestServer::start_with(|c| c.email.enabled = true).await;
    let b = account_browser(&t, "alice").await;
    let saved = save_profile(&t, &b, &[("email", "alice@new.example"), ("nickname", "Al")]).await;
    assert_eq!(saved.location(), "/account?done=link", "{}", saved.body);
    assert!(b.get(&t.url("/account?done=link")).await.body.contains("We sent a link to your new email address"));
    let alice = t.store.user_by_username("alice").await.unwrap().unwrap();
    assert_eq!(alice.email, "alice@example.com", "the address changes only when its link is followed");
    assert_eq!(alice.profile.nickname.as_deref(), Some("Al"), "the rest of the form is saved");
    let jobs = t.store.outbox_jobs(latchkey_core::outbox::OutboxFilter::Queued, 10).await.unwrap();
    assert!(
        jobs.iter().any(
            |j| matches!(&j.job, latchkey_core::outbox::Job::VerifyEmail { email, .. } if email == "alice@new.example")
        ),
        "a verification link is queued for the new address"
    );
}

#[tokio::test]
async fn claims_supported_lists_every_claim_userinfo_and_the_id_token_return() {
    let t = TestServer::start().await;
    fill_profile(&t, "alice").await;
    let meta: serde_json::Value =
        t.http.get(t.url("/.well-known/openid-configuration")).send().await.unwrap().json().await.unwrap();
    assert_eq!(meta["claims_parameter_supported"], true);
    let supported: Vec<&str> =
        meta["claims_supported"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();

    let v = CodeVerifier::generate();
    let b = t.browser();
    let url = t
        .authorize_url("spa", &v, "")
        .replace("scope=openid+profile+email", "scope=openid+profile+email+address+phone");
    let (_, q) = authorize_in(&t, &b, &url).await;
    let (status, tokens) = t.exchange("spa", &q["code"], &v).await;
    assert_eq!(status, 200, "{tokens}");
    let info: serde_json::Value = t.userinfo(tokens["access_token"].as_str().unwrap()).await.json().await.unwrap();
    let info = info.as_object().unwrap();
    // Computed from what the server returns for a user with every claim, not a list kept by hand.
    assert_eq!(info.len(), 20, "sub and the 19 claims of the four scopes: {info:?}");
    for k in info.keys() {
        assert!(supported.contains(&k.as_str()), "userinfo returns {k}, which claims_supported leaves out");
    }
    let (_, id) = jwt_parts(tokens["id_token"].as_str().unwrap());
    for k in id.as_object().unwrap().keys() {
        assert!(supported.contains(&k.as_str()), "the id_token carries {k}, which claims_supported leaves out");
    }
    assert_eq!(info["address"], serde_json::json!({ "formatted": "Christ Church\nOxford" }));
    assert_eq!(info["phone_number_verified"], false);
}

#[tokio::test]
async fn a_password_change_asks_the_current_one_and_ends_the_other_sessions_and_refresh_tokens() {
    let t = TestServer::start().await;
    let (other, tokens) = t.tokens_for("spa").await;
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let b = account_browser(&t, "alice").await;

    let wrong = post_form(
        &t,
        &b,
        "/account/password",
        &[("current", "nope"), ("new", "a new passphrase"), ("confirm", "a new passphrase")],
    )
    .await;
    assert!(wrong.body.contains("The current password is wrong."), "{}", wrong.body);
    let short =
        post_form(&t, &b, "/account/password", &[("current", PASSWORD), ("new", "short"), ("confirm", "short")]).await;
    assert!(short.body.contains("A password needs at least 8 characters."), "{}", short.body);
    let differ = post_form(
        &t,
        &b,
        "/account/password",
        &[("current", PASSWORD), ("new", "a new passphrase"), ("confirm", "another one")],
    )
    .await;
    assert!(differ.body.contains("differ"));
    assert_eq!(t.refresh("spa", &refresh, None).await.0, 200, "nothing changed yet");
    let refresh = t.refresh("spa", &refresh, None).await.1["refresh_token"].as_str().unwrap().to_owned();

    let done = post_form(
        &t,
        &b,
        "/account/password",
        &[("current", PASSWORD), ("new", "a new passphrase"), ("confirm", "a new passphrase")],
    )
    .await;
    assert_eq!((done.status, done.location().as_str()), (303, "/account/password?done=changed"), "{}", done.body);
    assert!(b.get(&t.url("/account/password?done=changed")).await.body.contains("Your password was changed."));
    assert_eq!(b.get(&t.url("/account")).await.status, 200, "the session in use stays");
    let gone = other.get(&t.url("/account")).await;
    assert!(gone.body.contains(r#"action="/login""#), "the other session ended");
    let (status, body) = t.refresh("spa", &refresh, None).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "refresh tokens are revoked");
    // The new password works, the old one not.
    let fresh = t.browser();
    let login = fresh.get(&t.url("/account")).await;
    assert!(
        fresh
            .submit_login(&t.base, &login.body, "alice", PASSWORD)
            .await
            .body
            .contains("Invalid username or password.")
    );
    assert_eq!(fresh.submit_login(&t.base, &login.body, "alice", "a new passphrase").await.status, 303);
    let events = t.store.audit_events(None, None, 50).await.unwrap();
    let changed = events.iter().find(|e| e.event == "password_changed").unwrap();
    assert_eq!(changed.detail["by"], "user");
    assert_eq!(changed.detail["sessions_ended"], 1);
}

/// A stolen session cookie must not let anyone guess the password through this form: the check
/// is reserved before Argon2 like a login, so a burst of guesses is cut off after a few.
#[tokio::test]
async fn a_burst_of_wrong_current_passwords_is_throttled_like_a_login() {
    let t = TestServer::start().await;
    let b = account_browser(&t, "alice").await;
    let page = b.get(&t.url("/account/password")).await;
    let csrf = hidden(&page.body, "csrf");
    let guesses: Vec<_> = (0..30)
        .map(|i| {
            let (http, url, csrf) = (b.http.clone(), t.url("/account/password"), csrf.clone());
            tokio::spawn(async move {
                let guess = format!("guess number {i}");
                let form = [
                    ("csrf", csrf.as_str()),
                    ("current", &guess),
                    ("new", "a new passphrase"),
                    ("confirm", "a new passphrase"),
                ];
                let res = http.post(url).form(&form).send().await.unwrap();
                (res.status().as_u16(), res.text().await.unwrap())
            })
        })
        .collect();
    let (mut checked, mut throttled) = (0, 0);
    for g in guesses {
        let (status, body) = g.await.unwrap();
        if body.contains("The current password is wrong.") {
            checked += 1;
        } else if status == 429 && body.contains("Too many attempts") {
            throttled += 1;
        }
    }
    assert!(checked <= 5, "only the free attempts were checked, not {checked}");
    assert_eq!(checked + throttled, 30);
    // Even the right password waits now (the clock is frozen).
    let right = post_form(
        &t,
        &b,
        "/account/password",
        &[("current", PASSWORD), ("new", "a new passphrase"), ("confirm", "a new passphrase")],
    )
    .await;
    assert_eq!(right.status, 429);
}

/// The `sid`s listed on the sessions page, in order.
fn listed_sids(page: &str) -> Vec<String> {
    page.match_indices(r#"name="sid" value=""#)
        .map(|(i, m)| {
            let start = i + m.len();
            page[start..start + page[start..].find('"').unwrap()].to_owned()
        })
        .collect()
}

#[tokio::test]
async fn sessions_show_where_and_what_and_ending_one_kills_it() {
    let t = TestServer::start().await;
    let b = account_browser(&t, "alice").await;
    let (other, tokens) = t.tokens_for("spa").await;
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let page = b.get(&t.url("/account/sessions")).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Firefox on Linux <span class=\"badge\">this session</span>"), "{}", page.body);
    assert!(page.body.contains("<dd>127.0.0.0/24</dd>"), "the network, not the address");
    assert!(page.body.contains("Unknown browser"), "the other one sent no User-Agent");
    let sids = listed_sids(&page.body);
    assert_eq!(sids.len(), 2);
    let theirs = sids[1].clone();

    let ended = post_form(&t, &b, "/account/sessions", &[("sid", &theirs)]).await;
    assert_eq!((ended.status, ended.location().as_str()), (303, "/account/sessions?done=1"));
    assert!(b.get(&t.url("/account/sessions?done=1")).await.body.contains("1 session was signed out."));
    assert!(other.get(&t.url("/account")).await.body.contains(r#"action="/login""#), "that browser is signed out");
    assert_eq!(t.refresh("spa", &refresh, None).await.0, 400, "its session-bound refresh token died with it");
    assert_eq!(t.store.session_by_sid(&theirs, t.now()).await.unwrap(), None);

    // Every other one at once, then this one.
    let (third, _) = t.tokens_for("spa").await;
    let fourth = account_browser(&t, "alice").await;
    let all = post_form(&t, &b, "/account/sessions", &[("others", "end")]).await;
    assert_eq!(all.location(), "/account/sessions?done=2");
    for gone in [&third, &fourth] {
        assert!(gone.get(&t.url("/account")).await.body.contains(r#"action="/login""#));
    }
    assert_eq!(listed_sids(&b.get(&t.url("/account/sessions")).await.body).len(), 1);
    let mine = listed_sids(&b.get(&t.url("/account/sessions")).await.body).remove(0);
    let out = post_form(&t, &b, "/account/sessions", &[("sid", &mine)]).await;
    assert_eq!(out.status, 200);
    assert!(out.body.contains("You are signed out"));
    assert!(out.header("set-cookie").contains("latchkey_session=;"), "the cookie goes too");
    assert!(b.get(&t.url("/account")).await.body.contains(r#"action="/login""#));
}

/// IDOR: a session id is not a capability. Alice naming Bob's session ends nothing.
#[tokio::test]
async fn nobody_can_end_another_users_session() {
    let t = TestServer::start().await;
    t.add_user("bob").await;
    let bob = account_browser(&t, "bob").await;
    let bobs = listed_sids(&bob.get(&t.url("/account/sessions")).await.body).remove(0);
    let alice = account_browser(&t, "alice").await;
    let tried = post_form(&t, &alice, "/account/sessions", &[("sid", &bobs)]).await;
    assert_eq!(tried.location(), "/account/sessions?done=0");
    assert!(alice.get(&t.url("/account/sessions?done=0")).await.body.contains("No session was signed out"));
    assert_eq!(bob.get(&t.url("/account/sessions")).await.status, 200, "Bob is still signed in");
    assert!(t.store.session_by_sid(&bobs, t.now()).await.unwrap().is_some());
    // Nor through "all others": that is Alice's others.
    assert_eq!(
        post_form(&t, &alice, "/account/sessions", &[("others", "end")]).await.location(),
        "/account/sessions?done=0"
    );
    assert!(t.store.session_by_sid(&bobs, t.now()).await.unwrap().is_some());
}

#[tokio::test]
async fn removing_an_app_revokes_its_refresh_and_access_tokens_and_asks_again() {
    let t = TestServer::start().await;
    let (b, tokens) = t.tokens_for("spa").await;
    let (refresh, access) =
        (tokens["refresh_token"].as_str().unwrap().to_owned(), tokens["access_token"].as_str().unwrap().to_owned());
    assert_eq!(t.userinfo(&access).await.status(), 200);
    let apps = b.get(&t.url("/account/apps")).await;
    assert!(apps.body.contains("<h2>App spa</h2>"), "{}", apps.body);
    assert!(apps.body.contains("See your email address"));
    assert!(apps.body.contains(r#"name="client_id" value="spa""#));

    // A double click (or two tabs): every post answers, the access is removed once.
    let csrf = hidden(&apps.body, "csrf");
    let posts: Vec<_> = (0..8)
        .map(|_| {
            let (http, url, csrf) = (b.http.clone(), t.url("/account/apps"), csrf.clone());
            tokio::spawn(async move {
                let res = http.post(url).form(&[("csrf", csrf.as_str()), ("client_id", "spa")]).send().await.unwrap();
                res.headers().get("location").map(|l| l.to_str().unwrap().to_owned()).unwrap_or_default()
            })
        })
        .collect();
    let mut removed = 0;
    for p in posts {
        let loc = p.await.unwrap();
        assert!(loc.starts_with("/account/apps?done="), "{loc}");
        removed += usize::from(loc.ends_with("removed"));
    }
    assert_eq!(removed, 1, "one post removed it; the others found nothing left");
    let events = t.store.audit_events(None, None, 100).await.unwrap();
    assert_eq!(events.iter().filter(|e| e.event == "app_revoked").count(), 1);

    let (status, body) = t.refresh("spa", &refresh, None).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
    assert_eq!(t.userinfo(&access).await.status(), 401, "the access token is stopped at userinfo");
    assert!(!b.get(&t.url("/account/apps")).await.body.contains("App spa"));
    assert_eq!(b.get(&t.url("/account")).await.status, 200, "removing an app does not sign the user out");
    // The remembered consent is gone: the next authorization asks again.
    let alice = t.store.user_by_username("alice").await.unwrap().unwrap();
    let spa = latchkey_proto::ClientId::parse("spa").unwrap();
    assert_eq!(t.store.consent(&alice.id, &spa).await.unwrap(), None);
}

#[tokio::test]
async fn the_activity_page_tells_the_security_events_in_words() {
    let t = TestServer::start().await;
    let b = browser_as(FIREFOX);
    let login = b.get(&t.url("/account")).await;
    b.submit_login(&t.base, &login.body, "alice", "a wrong password").await;
    let login = b.get(&t.url("/account")).await;
    assert_eq!(b.submit_login(&t.base, &login.body, "alice", PASSWORD).await.status, 303);
    let (_, _) = t.tokens_for("spa").await;
    post_form(&t, &b, "/account/apps", &[("client_id", "spa")]).await;
    save_profile(&t, &b, &[("nickname", "Al")]).await;
    post_form(
        &t,
        &b,
        "/account/password",
        &[("current", PASSWORD), ("new", "a new passphrase"), ("confirm", "a new passphrase")],
    )
    .await;
    let page = b.get(&t.url("/account/activity")).await;
    assert_eq!(page.status, 200);
    for what in [
        "Failed sign-in attempt to your account (wrong password)",
        "Signed in to your account",
        "Signed in to App spa",
        "Allowed App spa access",
        "Removed the access of App spa",
        "Profile updated",
        "Password changed; other sessions were signed out",
    ] {
        assert!(page.body.contains(what), "{what}: {}", page.body);
    }
    assert!(page.body.contains("from 127.0.0.0/24"));
    assert!(page.body.contains(" UTC"));
    assert!(page.body.contains(r#"<li class="warning">"#), "failures stand out");
    // Only alice's own events.
    t.add_user("bob").await;
    let bob = account_browser(&t, "bob").await;
    assert!(!bob.get(&t.url("/account/activity")).await.body.contains("App spa"));
}

#[tokio::test]
async fn a_locked_user_cannot_sign_in_and_loses_every_session_and_token() {
    let t = TestServer::start().await;
    let (b, tokens) = t.tokens_for("spa").await;
    let (refresh, access) =
        (tokens["refresh_token"].as_str().unwrap().to_owned(), tokens["access_token"].as_str().unwrap().to_owned());
    let done = latchkey_core::admin::lock_user(t.store.as_ref(), "alice", t.now()).await.unwrap().unwrap();
    assert_eq!((done.sessions_ended, done.grants_revoked), (1, 1));
    assert!(b.get(&t.url("/account")).await.body.contains(r#"action="/login""#), "signed out");
    assert_eq!(t.refresh("spa", &refresh, None).await.0, 400);
    assert_eq!(t.userinfo(&access).await.status(), 401);

    let fresh = t.browser();
    let login = fresh.get(&t.url("/account")).await;
    let wrong = fresh.submit_login(&t.base, &login.body, "alice", "not the password").await;
    assert!(wrong.body.contains("Invalid username or password."), "a guesser learns nothing of the lock");
    let right = fresh.submit_login(&t.base, &login.body, "alice", PASSWORD).await;
    assert_eq!(right.status, 403);
    assert!(right.body.contains("This account is locked."), "{}", right.body);
    assert!(right.header("set-cookie").is_empty() || !right.header("set-cookie").contains("latchkey_session="));
    assert_eq!(fresh.get(&t.url("/account")).await.status, 200);
    assert!(fresh.get(&t.url("/account")).await.body.contains(r#"action="/login""#), "no session was made");

    assert!(latchkey_core::admin::unlock_user(t.store.as_ref(), "alice", t.now()).await.unwrap());
    let login = fresh.get(&t.url("/account")).await;
    assert_eq!(fresh.submit_login(&t.base, &login.body, "alice", PASSWORD).await.status, 303);
    let events = t.store.audit_events(None, None, 50).await.unwrap();
    for e in ["user_locked", "login_refused_locked", "user_unlocked"] {
        assert!(events.iter().any(|x| x.event == e), "{e}");
    }
}

/// Every account form refuses a post without the page's CSRF token, or with another one, and
/// changes nothing.
#[tokio::test]
async fn every_account_form_refuses_a_post_without_its_csrf_token() {
    let t = TestServer::start().await;
    let (_, tokens) = t.tokens_for("spa").await;
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let b = account_browser(&t, "alice").await;
    let sid = listed_sids(&b.get(&t.url("/account/sessions")).await.body).remove(1);
    let forms: [(&str, Vec<(&str, &str)>); 5] = [
        ("/account", vec![("email", "mallory@evil.example"), ("given_name", "Mallory")]),
        (
            "/account/password",
            vec![("current", PASSWORD), ("new", "mallory's password"), ("confirm", "mallory's password")],
        ),
        ("/account/sessions", vec![("sid", &sid)]),
        ("/account/sessions", vec![("others", "end")]),
        ("/account/apps", vec![("client_id", "spa")]),
    ];
    // A token of this server, but not the one of this browser's cookie.
    let other = t.browser();
    let foreign = hidden(&other.get(&t.url("/account")).await.body, "csrf");
    for (path, fields) in &forms {
        for csrf in [None, Some(foreign.as_str())] {
            let mut form = fields.clone();
            if let Some(c) = csrf {
                form.push(("csrf", c));
            }
            let res = b.post(&t.url(path), &form).await;
            assert_eq!(res.status, 403, "{path} with {csrf:?}: {}", res.body);
        }
    }
    let alice = t.store.user_by_username("alice").await.unwrap().unwrap();
    assert_eq!(alice.email, "alice@example.com");
    assert_eq!(alice.profile.given_name, None);
    assert!(t.store.session_by_sid(&sid, t.now()).await.unwrap().is_some());
    assert_eq!(t.refresh("spa", &refresh, None).await.0, 200, "the app keeps its access");
    let fresh = t.browser();
    let login = fresh.get(&t.url("/account")).await;
    assert_eq!(fresh.submit_login(&t.base, &login.body, "alice", PASSWORD).await.status, 303, "the password stays");
}

/// The admin commands on the binary: set, show, sessions, end-sessions, lock and unlock.
#[tokio::test]
async fn the_user_admin_commands_work_on_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("admin.db");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"))
            .args(args)
            .arg("--database")
            .arg(&db)
            .env_remove("LATCHKEY_CONFIG")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let store: std::sync::Arc<dyn latchkey_core::Store> =
        std::sync::Arc::new(latchkey_store::SqliteStore::open(&db).unwrap());
    let hasher = latchkey_core::password::Hasher::new(1).unwrap();
    let new = latchkey_core::admin::NewUser {
        username: "carol".into(),
        email: "carol@example.com".into(),
        name: None,
        phone_number: None,
        address: None,
    };
    latchkey_core::admin::add_user(store.as_ref(), &hasher, new, latchkey_proto::Password::new(PASSWORD), 1)
        .await
        .unwrap();

    let (ok, out, err) = run(&[
        "user",
        "set",
        "carol",
        "--given-name",
        "Carol",
        "--locale",
        "fr_CA",
        "--picture",
        "http://x.example/p.png",
    ]);
    assert!(!ok && err.contains("picture: Enter an https:// address."), "{out}{err}");
    let (ok, out, err) =
        run(&["user", "set", "carol", "--given-name", "Carol", "--locale", "fr_CA", "--email", "carol@new.example"]);
    assert!(ok, "{err}");
    assert!(out.contains("updated carol: given_name email locale"), "{out}");
    assert!(err.contains("unverified"));
    let (ok, out, _) = run(&["user", "show", "carol", "--json"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["claims"]["given_name"], "Carol");
    assert_eq!(v["claims"]["locale"], "fr-CA");
    assert_eq!(v["claims"]["email_verified"], false);
    assert_eq!(v["factors"][0]["kind"], "password");
    assert_eq!(v["locked_at"], serde_json::Value::Null);

    let carol = store.user_by_username("carol").await.unwrap().unwrap();
    for n in 0..2 {
        let s = latchkey_core::store::SessionRecord {
            hash: latchkey_proto::TokenHash::of(&format!("s{n}")),
            sid: format!("sid-{n}"),
            user_id: carol.id.clone(),
            auth_time: latchkey_core::Clock::system().now(),
            expires_at: latchkey_core::Clock::system().now() + 3600,
            authn: Default::default(),
            meta: latchkey_core::sessions::meta(Some("192.0.2.7".parse().unwrap()), Some(FIREFOX)),
        };
        assert!(store.insert_session(&s, 8).await.unwrap().is_some());
    }
    let (ok, out, _) = run(&["user", "sessions", "carol"]);
    assert!(ok && out.contains("sid-0") && out.contains("192.0.2.0/24\tFirefox on Linux"), "{out}");
    let (ok, out, _) = run(&["user", "end-sessions", "carol", "--sid", "sid-0"]);
    assert!(ok && out.contains("sessions ended: 1"), "{out}");
    let (ok, _, err) = run(&["user", "end-sessions", "carol", "--sid", "sid-0"]);
    assert!(!ok && err.contains("no session"), "{err}");
    let (ok, out, _) = run(&["user", "lock", "carol"]);
    assert!(ok && out.contains("sessions ended: 1"), "{out}");
    let (_, out, _) = run(&["user", "show", "carol"]);
    assert!(out.contains("locked: yes"), "{out}");
    let (ok, _, _) = run(&["user", "unlock", "carol"]);
    assert!(ok);
    assert_eq!(store.user_by_username("carol").await.unwrap().unwrap().locked_at, None);
    let (ok, _, err) = run(&["user", "lock", "nobody"]);
    assert!(!ok && err.contains("no user named"));
}

/// The logout tokens queued for clients (Back-Channel Logout), as (client, sid).
async fn logout_notices(t: &TestServer) -> Vec<(String, String)> {
    let jobs = t.store.outbox_jobs(latchkey_core::outbox::OutboxFilter::Queued, 50).await.unwrap();
    jobs.into_iter()
        .filter_map(|j| match j.job {
            latchkey_core::outbox::Job::BackchannelLogout(n) => Some((n.client_id.to_string(), n.sid)),
            _ => None,
        })
        .collect()
}

/// Sessions ended from the account page, by a lock, or by the admin command go through the one
/// path that owes their clients a back-channel logout token (queued in the same transaction).
#[tokio::test]
async fn sessions_ended_here_owe_their_clients_back_channel_logout_tokens() {
    let t = TestServer::start().await;
    let rp = latchkey_core::admin::NewClient {
        backchannel_logout_uri: Some("http://127.0.0.1:9/backchannel".into()),
        ..latchkey_core::admin::NewClient::public("rp", "Relying party", vec![REDIRECT.into()])
    };
    t.add(rp).await;
    let (_, first) = t.tokens_for("rp").await;
    let (_, id) = jwt_parts(first["id_token"].as_str().unwrap());
    let sid = id["sid"].as_str().unwrap().to_owned();
    let b = account_browser(&t, "alice").await;
    assert!(logout_notices(&t).await.is_empty());
    assert_eq!(post_form(&t, &b, "/account/sessions", &[("sid", &sid)]).await.location(), "/account/sessions?done=1");
    assert_eq!(logout_notices(&t).await, vec![("rp".to_owned(), sid.clone())], "one token for the client in it");

    let (_, second) = t.tokens_for("rp").await;
    let (_, id) = jwt_parts(second["id_token"].as_str().unwrap());
    let locked_sid = id["sid"].as_str().unwrap().to_owned();
    latchkey_core::admin::lock_user(t.store.as_ref(), "alice", t.now()).await.unwrap().unwrap();
    let notices = logout_notices(&t).await;
    assert!(notices.contains(&("rp".to_owned(), locked_sid)), "{notices:?}");
    assert_eq!(notices.len(), 2, "the account page's own session had no client: nothing owed for it");
}
