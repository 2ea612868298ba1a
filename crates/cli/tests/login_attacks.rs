//! The attacks of the December 2026 security review on the browser side of the flow, each played
//! against a real server: concurrent guessing (finding 1), locking a user out from afar (3),
//! skipping re-authentication through the consent step (4), flooding pending requests (6),
//! deciding one consent twice (19d), and silent codes for native apps (17).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::IpAddr;

use common::*;
use latchkey_proto::CodeVerifier;

/// A user agent whose connections come from `ip` (any 127.0.0.0/8 address reaches the server).
fn browser_from(ip: &str) -> Browser {
    let ip: IpAddr = ip.parse().unwrap();
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .local_address(ip)
        .build()
        .unwrap();
    Browser { http }
}

async fn login_page(s: &TestServer, b: &Browser, extra: &str) -> String {
    let page = b.get(&s.authorize_url("spa", &CodeVerifier::generate(), extra)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(r#"name="password""#), "a login page: {}", page.body);
    page.body
}

/// Finding 1: 100 guesses sent at once were all checked. Now each is reserved before its check,
/// so exactly the five free ones are checked and the other 95 are refused unchecked.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_concurrent_guesses_gets_only_the_free_attempts() {
    let s = TestServer::start().await;
    let b = Browser::new();
    let page = login_page(&s, &b, "").await;
    let (req, csrf) = (hidden(&page, "req"), hidden(&page, "csrf"));
    let guesses: Vec<_> = (0..100)
        .map(|i| {
            let (http, url, req, csrf) = (b.http.clone(), s.url("/login"), req.clone(), csrf.clone());
            tokio::spawn(async move {
                let password = format!("guess-{i}");
                let form =
                    [("req", req.as_str()), ("csrf", csrf.as_str()), ("username", "alice"), ("password", &password)];
                http.post(url).form(&form).send().await.unwrap().status().as_u16()
            })
        })
        .collect();
    let mut statuses = std::collections::BTreeMap::new();
    for g in guesses {
        *statuses.entry(g.await.unwrap()).or_insert(0) += 1;
    }
    assert_eq!(statuses, [(200, 5), (429, 95)].into_iter().collect(), "checked (200) and refused (429)");
    let events = s.store.audit_events(None, None, 1000).await.unwrap();
    let checked = events.iter().filter(|e| e.event == "login_failure").count();
    assert_eq!(checked, 5, "five passwords were verified");
    // Finding 9: 95 refusals make one audit record, not 95.
    assert_eq!(events.iter().filter(|e| e.event == "login_throttled").count(), 1);
}

/// Finding 3: failures spread over many addresses trip the account-wide key, and one guess a
/// minute keeps it tripped. A browser that has signed in to the account before is not held by
/// it; a browser that never has is held for at most a minute (the README's trade-off).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_distant_attacker_cannot_lock_out_a_known_browser() {
    let s = TestServer::start().await;
    let user = browser_from("127.0.0.200");
    let page = login_page(&s, &user, "").await;
    assert_eq!(user.submit_login(&s.base, &page, "alice", PASSWORD).await.status, 303);

    // 50 counted failures from 10 addresses: the account-wide key's free budget.
    for a in 10..20 {
        let attacker = browser_from(&format!("127.0.0.{a}"));
        let page = login_page(&s, &attacker, "").await;
        for _ in 0..5 {
            assert_eq!(attacker.submit_login(&s.base, &page, "alice", "guess").await.status, 200);
        }
    }
    for minute in 0..3 {
        // The attacker renews the block from a fresh address.
        let attacker = browser_from(&format!("127.0.0.{}", 30 + minute));
        let page = login_page(&s, &attacker, "").await;
        attacker.submit_login(&s.base, &page, "alice", "guess").await;
        let refused = attacker.submit_login(&s.base, &page, "alice", "guess").await;
        assert_eq!(refused.status, 429, "the attacker is throttled");

        // The real user, from the browser that signed in before: let through.
        let page = login_page(&s, &user, "&prompt=login").await;
        let res = user.submit_login(&s.base, &page, "alice", PASSWORD).await;
        assert_eq!(res.status, 303, "minute {minute}: the known browser signs in: {}", res.body);

        // A browser that never signed in, or one with a forged device cookie, is held (briefly).
        let stranger = browser_from("127.0.0.201");
        let page = login_page(&s, &stranger, "").await;
        assert_eq!(stranger.submit_login(&s.base, &page, "alice", PASSWORD).await.status, 429);
        let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
        let forged = format!("latchkey_device=abc.{}.{}; Path=/", s.now(), "A".repeat(43));
        jar.add_cookie_str(&forged, &s.base.parse().unwrap());
        let forger = Browser {
            http: reqwest::Client::builder()
                .cookie_provider(jar)
                .redirect(reqwest::redirect::Policy::none())
                .local_address("127.0.0.202".parse::<IpAddr>().unwrap())
                .build()
                .unwrap(),
        };
        let page = login_page(&s, &forger, "").await;
        let res = forger.submit_login(&s.base, &page, "alice", PASSWORD).await;
        assert_eq!(res.status, 429, "a forged device cookie is no pass");
        s.advance(61);
    }
}

/// Finding 4: a request demanding fresh authentication (prompt=login, max_age) could be completed
/// with the old session by going straight to the consent step.
#[tokio::test]
async fn the_consent_step_enforces_prompt_login_and_max_age() {
    let s = TestServer::start().await;
    let v = CodeVerifier::generate();
    let (b, _) = s.code_for("spa", &v).await;
    for extra in ["&prompt=login", "&max_age=0", "&prompt=select_account"] {
        s.advance(5);
        let page = b.get(&s.authorize_url("spa", &CodeVerifier::generate(), extra)).await;
        assert!(page.body.contains(r#"name="password""#), "{extra}: login demanded: {}", page.body);
        let (req, csrf) = (hidden(&page.body, "req"), hidden(&page.body, "csrf"));
        let shown = b.get(&s.url(&format!("/consent?req={req}"))).await;
        assert!(shown.body.contains(r#"name="password""#), "{extra}: GET /consent shows the login form");
        let posted = b.post(&s.url("/consent"), &[("req", &req), ("csrf", &csrf), ("decision", "allow")]).await;
        assert_ne!(posted.status, 303, "{extra}: no code without logging in again: {}", posted.location());
        assert!(posted.body.contains(r#"name="password""#), "{extra}: POST /consent shows the login form");
        // Logging in again completes it, with a new auth_time.
        let res = b.submit_login(&s.base, &page.body, "alice", PASSWORD).await;
        assert_eq!(res.status, 303, "{}", res.body);
    }
    // max_age that the session satisfies needs no new login.
    let page = b.get(&s.authorize_url("spa", &CodeVerifier::generate(), "&max_age=3600")).await;
    assert!(!page.body.contains(r#"name="password""#), "{}", page.body);
}

/// Finding 6: 10,000 unauthenticated requests from one place used up a client's pending
/// capacity. Now one source network has a quota of its own, and past the client's bound the
/// oldest requests make room instead of every new user being refused.
#[tokio::test]
async fn one_source_cannot_use_up_a_clients_sign_in_capacity() {
    let s = TestServer::start_with(|c| {
        c.max_pending_per_source = 5;
        c.max_pending_per_client = 8;
    })
    .await;
    let flooder = browser_from("127.0.0.66");
    for _ in 0..5 {
        assert_eq!(flooder.get(&s.authorize_url("spa", &CodeVerifier::generate(), "")).await.status, 200);
    }
    let refused = flooder.get(&s.authorize_url("spa", &CodeVerifier::generate(), "")).await;
    assert_eq!(refused.status, 503);
    assert!(refused.body.contains("from your network"), "{}", refused.body);
    // Many sources together exceed the client's bound: the oldest are evicted, new users get in.
    for a in 70..75 {
        let b = browser_from(&format!("127.0.0.{a}"));
        assert_eq!(b.get(&s.authorize_url("spa", &CodeVerifier::generate(), "")).await.status, 200);
    }
    let user = browser_from("127.0.0.99");
    let page = login_page(&s, &user, "").await;
    let res = user.submit_login(&s.base, &page, "alice", PASSWORD).await;
    assert_eq!(res.status, 303, "a real user still signs in: {}", res.body);
    // The quota frees itself as requests expire.
    s.advance(601);
    assert_eq!(flooder.get(&s.authorize_url("spa", &CodeVerifier::generate(), "")).await.status, 200);
}

/// 19d: two concurrent posts of one consent form issued two codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_consent_decision_issues_one_code() {
    let s = TestServer::start().await;
    let b = Browser::new();
    let page = login_page(&s, &b, "").await;
    let res = b.submit_login(&s.base, &page, "alice", PASSWORD).await;
    assert!(res.location().starts_with("/consent"), "{}", res.location());
    let consent = b.get(&s.url(&res.location())).await;
    let (req, csrf) = (hidden(&consent.body, "req"), hidden(&consent.body, "csrf"));
    let posts: Vec<_> = (0..10)
        .map(|_| {
            let (http, url, req, csrf) = (b.http.clone(), s.url("/consent"), req.clone(), csrf.clone());
            tokio::spawn(async move {
                let form = [("req", req.as_str()), ("csrf", csrf.as_str()), ("decision", "allow")];
                let res = http.post(url).form(&form).send().await.unwrap();
                res.headers().get("location").map(|l| l.to_str().unwrap().to_owned())
            })
        })
        .collect();
    let mut codes = 0;
    for p in posts {
        codes += usize::from(p.await.unwrap().is_some_and(|l| l.contains("code=")));
    }
    assert_eq!(codes, 1);
}

/// Finding 17 (RFC 8252 §8.6): with remembered consent, a public client with a loopback redirect
/// got a code without any interaction; another local program listening on that port could start
/// the request and catch the code. Now the user is asked each time.
#[tokio::test]
async fn native_apps_never_get_a_silent_code() {
    let s = TestServer::start().await;
    let v = CodeVerifier::generate();
    let (b, _) = s.code_for("spa", &v).await;
    let again = b.get(&s.authorize_url("spa", &CodeVerifier::generate(), "")).await;
    assert_eq!(again.status, 200, "a page, not a redirect: {}", again.location());
    assert!(again.body.contains(r#"value="allow""#), "the consent page asks: {}", again.body);
    // prompt=none cannot ask, so it is refused rather than answered silently.
    let none = b.get(&s.authorize_url("spa", &CodeVerifier::generate(), "&prompt=none")).await;
    assert_eq!(none.redirect_query()["error"], "consent_required");
}
