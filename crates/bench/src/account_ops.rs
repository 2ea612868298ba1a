//! The operations of the account phases (issue 13), Latchkey only: a full login with a TOTP second
//! factor, a username-less passkey sign-in, and a password-reset request. Each checks its answer,
//! like the operations in [`crate::ops`].

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use hyper::StatusCode;
use hyper::header::{self, HeaderName};
use latchkey_core::factors::totp::{STEP, TotpSecret};
use latchkey_core::passkey::soft::SoftAuthenticator;
use latchkey_core::reset::{PER_ADDRESS, PER_SOURCE};
use rand::Rng;
use serde_json::json;

use crate::OpError;
use crate::accounts::EMAIL_DOMAIN;
use crate::adapter::{Adapter, Credentials, browse, callback, send};
use crate::forms::forms;
use crate::http::{Conn, Origin, Req};
use crate::jar::CookieJar;
use crate::ops::{Client, random_b64, string_field};
use crate::phase::Op;

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// A user with TOTP, ready to sign in.
pub struct TotpLogin {
    pub username: String,
    pub password: String,
    pub secret: TotpSecret,
}

/// The TOTP users and the time step each last signed in with. A code is accepted once per user
/// and step (RFC 6238 §5.2; Latchkey refuses a step at or before the last one accepted), so a
/// user signs in at most once per 30-second step; the pool is shared by every run.
pub struct TotpPool {
    users: Vec<TotpLogin>,
    last_step: Vec<AtomicI64>,
    next: AtomicUsize,
}

impl TotpPool {
    pub fn new(users: Vec<TotpLogin>) -> Self {
        let last_step = users.iter().map(|_| AtomicI64::new(0)).collect();
        Self { users, last_step, next: AtomicUsize::new(0) }
    }

    /// The next user (round robin) who has not signed in during `step`, now marked as having.
    fn claim(&self, step: i64) -> Option<&TotpLogin> {
        for _ in 0..self.users.len() {
            let i = self.next.fetch_add(1, Ordering::Relaxed) % self.users.len();
            let last = self.last_step[i].load(Ordering::Relaxed);
            if last < step
                && self.last_step[i].compare_exchange(last, step, Ordering::AcqRel, Ordering::Relaxed).is_ok()
            {
                return Some(&self.users[i]);
            }
        }
        None
    }
}

/// The `login` phase's operation for a user with TOTP: authorization request, login page,
/// password (Argon2id), second-factor page, the current RFC 6238 code, the code at the client.
pub struct LoginTotp {
    pub origin: Arc<Origin>,
    pub client: Client,
    pub adapter: Adapter,
    pub pool: Arc<TotpPool>,
}

#[async_trait]
impl Op for LoginTotp {
    type Out = ();
    async fn call(&self, conn: &mut Conn, _: usize) -> Result<((), usize), OpError> {
        let now = unix_now();
        let user = self.pool.claim(now / STEP as i64).ok_or_else(|| {
            OpError::Refused(
                "every TOTP user has signed in during this 30-second step (a code works once): seed more \
                 (--totp-users) or run fewer account logins"
                    .into(),
            )
        })?;
        let code = user.secret.code_at(now);
        let (path, _, state) = self.client.authorization_request();
        let mut jar = CookieJar::default();
        let creds = Credentials { username: &user.username, password: &user.password, totp: Some(&code) };
        let done = browse(conn, &mut jar, &self.origin, self.adapter, path, creds, &self.client.expect(&state)).await?;
        if !done.second_factor {
            return Err(OpError::Protocol("a user with TOTP signed in without being asked for the second factor"));
        }
        Ok(((), done.requests))
    }
}

/// The username-less passkey sign-in from the login page, as `/assets/passkey.js` does it:
/// authorization request (the login page), `POST /login/passkey/options`, the authenticator's
/// assertion, `POST /login/passkey`, whose answer names the client's redirect URI with the code.
pub struct LoginPasskey {
    pub client: Client,
    /// The issuer's web origin, which the authenticator signs into its client data.
    pub web_origin: String,
    /// The issuer's path, before `/login/passkey…`.
    pub base_path: String,
    pub keys: Arc<Vec<Mutex<SoftAuthenticator>>>,
}

const CSRF_HEADER: HeaderName = HeaderName::from_static("x-csrf-token");

#[async_trait]
impl Op for LoginPasskey {
    type Out = ();
    async fn call(&self, conn: &mut Conn, i: usize) -> Result<((), usize), OpError> {
        let (path, _, state) = self.client.authorization_request();
        let mut jar = CookieJar::default();
        let page = send(conn, &mut jar, Req::get(path)).await?.expect(StatusCode::OK)?;
        let html = std::str::from_utf8(&page.body).map_err(|_| OpError::Protocol("a page that is not UTF-8"))?;
        if !html.contains(r#"id="passkey-sign-in""#) {
            return Err(OpError::Refused(
                "the login page offers no passkey (the issuer must be on a domain name, e.g. http://localhost:PORT)"
                    .into(),
            ));
        }
        let form = forms(html).into_iter().find(|f| f.has_password()).ok_or(OpError::Missing("login form"))?;
        let field = |name: &str| form.hidden().find(|(n, _)| *n == name).map(|(_, v)| v.to_owned());
        let (req, csrf) =
            (field("req").ok_or(OpError::Missing("req"))?, field("csrf").ok_or(OpError::Missing("csrf"))?);

        let start = Req::json(format!("{}/login/passkey/options", self.base_path), &json!({ "req": req }));
        let start = send(conn, &mut jar, start.header(CSRF_HEADER, &csrf)?).await?.expect(StatusCode::OK)?.json()?;
        let ceremony = string_field(&start, "ceremony")?;
        let options = start.get("options").ok_or(OpError::Missing("options"))?;
        if options.pointer("/publicKey/challenge").and_then(|c| c.as_str()).is_none() {
            return Err(OpError::Missing("options.publicKey.challenge"));
        }
        let credential = {
            let key = &self.keys[i % self.keys.len()];
            let mut key = key.lock().map_err(|_| OpError::Protocol("an authenticator's lock was poisoned"))?;
            key.get(options, &self.web_origin)
        };
        let finish = json!({ "req": req, "ceremony": ceremony, "credential": credential });
        let finish = Req::json(format!("{}/login/passkey", self.base_path), &finish).header(CSRF_HEADER, &csrf)?;
        let done = send(conn, &mut jar, finish).await?.expect(StatusCode::OK)?.json()?;
        let location = string_field(&done, "location")?;
        if !location.starts_with(&self.client.redirect_uri) {
            return Err(OpError::Protocol("the passkey sign-in did not end at the client (consent or more was asked)"));
        }
        callback(&location, &self.client.expect(&state))?;
        Ok(((), 3))
    }
}

/// Local addresses for the reset requests: 127.1.0.1 to 127.254.255.254 (never 127.0.0.1, the
/// other phases' address), from a random start, so that a second benchmark against the same
/// server within the hour starts on fresh networks.
pub struct SourcePool {
    next: AtomicU32,
}

impl Default for SourcePool {
    fn default() -> Self {
        Self { next: AtomicU32::new(rand::rng().random_range(0..254 << 16)) }
    }
}

impl SourcePool {
    pub fn next(&self) -> IpAddr {
        loop {
            let n = self.next.fetch_add(1, Ordering::Relaxed) % (254 << 16);
            let [_, a, b, c] = n.to_be_bytes();
            if c != 0 && c != 255 {
                return IpAddr::V4(Ipv4Addr::new(127, a + 1, b, c));
            }
        }
    }
}

/// What one reset request was for, and how long it took (to compare known and unknown
/// addresses within one phase).
#[derive(Debug, Clone, Copy)]
pub struct ResetOutcome {
    pub known: bool,
    pub latency_us: u32,
}

/// `POST /reset` with the CSRF token of one earlier `GET /reset`, alternately for the address of
/// an existing account and for an address no account uses. Latchkey answers both with the same
/// page (the request only queues a job), and counts each request against the address and the
/// client's network (`latchkey_core::reset`): every address is asked for at most
/// `PER_ADDRESS.free` times, and every connection moves to a fresh loopback source address after
/// `PER_SOURCE.free` requests, so that no request is throttled and each takes the path a
/// production request takes.
pub struct ResetRequest {
    pub path: String,
    /// The `Cookie` header (the CSRF cookie) and the form's token.
    pub cookie: String,
    pub csrf: String,
    /// Addresses of seeded accounts, and how many of them were asked for so far (all runs).
    pub known: Arc<Vec<String>>,
    pub known_next: Arc<AtomicUsize>,
    pub sources: Arc<SourcePool>,
}

/// What Latchkey's page says for every well-formed address.
const SENT_PAGE: &str = "Check your email";

#[async_trait]
impl Op for ResetRequest {
    type Out = ResetOutcome;
    async fn call(&self, conn: &mut Conn, i: usize) -> Result<(ResetOutcome, usize), OpError> {
        match conn.source() {
            Some((_, sent)) if sent < PER_SOURCE.free as usize => {}
            _ => conn.bind_source(self.sources.next()),
        }
        let known = i.is_multiple_of(2);
        let email = if known {
            let k = self.known_next.fetch_add(1, Ordering::Relaxed);
            if k / self.known.len() >= PER_ADDRESS.free as usize {
                return Err(OpError::Refused(format!(
                    "every known address was asked for {} times, all the throttle allows in an hour: seed more \
                     users or run fewer resets",
                    PER_ADDRESS.free
                )));
            }
            self.known[k % self.known.len()].clone()
        } else {
            format!("nobody-{}@{EMAIL_DOMAIN}", random_b64(9))
        };
        let req = Req::form(self.path.clone(), &[("csrf", self.csrf.as_str()), ("email", email.as_str())]);
        let req = req.header(header::COOKIE, &self.cookie)?;
        let t0 = Instant::now();
        let res = conn.send(req).await?;
        let latency_us = u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX);
        let res = res.expect(StatusCode::OK)?;
        if !std::str::from_utf8(&res.body).is_ok_and(|b| b.contains(SENT_PAGE)) {
            return Err(OpError::Protocol("the reset request was not answered with the page every address gets"));
        }
        Ok((ResetOutcome { known, latency_us }, 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_stay_in_loopback_and_avoid_the_default_address() {
        let pool = SourcePool { next: AtomicU32::new((254 << 16) - 3) };
        let got: Vec<IpAddr> = (0..4).map(|_| pool.next()).collect();
        // 127.254.255.253, .254, then .255 is skipped, the count wraps, .0 is skipped: 127.1.0.1.
        let want = ["127.254.255.253", "127.254.255.254", "127.1.0.1", "127.1.0.2"];
        assert_eq!(got, want.iter().map(|a| a.parse::<IpAddr>().unwrap()).collect::<Vec<_>>());
        assert!(got.iter().all(|a| a.is_loopback() && *a != IpAddr::V4(Ipv4Addr::LOCALHOST)));
    }

    #[test]
    fn a_totp_user_signs_in_once_per_step() {
        let users = (0..2)
            .map(|i| TotpLogin {
                username: format!("u{i}"),
                password: "p".into(),
                secret: TotpSecret::from_stored("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", None, "u").unwrap(),
            })
            .collect();
        let pool = TotpPool::new(users);
        let a = pool.claim(100).unwrap().username.clone();
        let b = pool.claim(100).unwrap().username.clone();
        assert_ne!(a, b);
        assert!(pool.claim(100).is_none(), "both signed in during step 100");
        assert!(pool.claim(101).is_some(), "the next step has fresh codes");
    }
}
