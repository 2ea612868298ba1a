//! The account pages' own sign-in (issue 13): `/account` without a session shows the login page,
//! the login leads back to the account page and nowhere else, and such a sign-in cannot be turned
//! into an application's consent or code.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Browser, PASSWORD, TestServer, hidden};

#[tokio::test]
async fn account_page_signs_in_and_comes_back() {
    let t = TestServer::start().await;
    let b = t.browser();
    let login = b.get(&t.url("/account")).await;
    assert_eq!(login.status, 200);
    assert!(login.body.contains("to continue to <strong>your account</strong>"), "{}", login.body);

    let wrong = b.submit_login(&t.base, &login.body, "alice", "not the password").await;
    assert_eq!(wrong.status, 200);
    assert!(wrong.body.contains("Invalid username or password."));

    let done = b.submit_login(&t.base, &login.body, "alice", PASSWORD).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.location(), "/account");
    let page = b.get(&t.url("/account")).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Signed in as <strong>alice</strong>"), "{}", page.body);
    assert!(page.body.contains(r#"aria-current="page">Profile"#));
    assert!(page.header("content-security-policy").contains("default-src 'none'"));

    // The sign-in was single-use: posting the same form again finds no request.
    let again = b.submit_login(&t.base, &login.body, "alice", PASSWORD).await;
    assert_ne!(again.status, 303, "a spent account sign-in must not log in twice");
}

/// An account sign-in is not an authorization request: its id at `/consent` (GET or POST, with a
/// live session) must not produce a consent page, a redirect or a code.
#[tokio::test]
async fn an_account_sign_in_cannot_be_consented() {
    let t = TestServer::start().await;
    let b = t.browser();
    // A live session, then a fresh (unused) account sign-in id.
    let login = b.get(&t.url("/account")).await;
    assert_eq!(b.submit_login(&t.base, &login.body, "alice", PASSWORD).await.status, 303);
    let other = Browser::new();
    let page = other.get(&t.url("/account")).await;
    let req = hidden(&page.body, "req");

    let get = b.get(&t.url(&format!("/consent?req={req}"))).await;
    assert_eq!(get.status, 400, "{}", get.body);
    assert!(get.body.contains("expired"), "{}", get.body);
    let csrf = hidden(&login.body, "csrf");
    let post = b.post(&t.url("/consent"), &[("req", &req), ("csrf", &csrf), ("decision", "allow")]).await;
    assert!(post.location().is_empty(), "no redirect may come of it: {:?}", post.location());
    assert_ne!(post.status, 303);
}
