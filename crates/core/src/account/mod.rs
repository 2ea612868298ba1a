//! The account pages' own sign-in: a person signs in to manage their account (`/account`) with
//! the same login page, the same throttling and the same factors as for an application, and the
//! same session afterwards.
//!
//! Such a sign-in is a [`PendingAuthorization`] whose [`SignInPurpose`] is `Account`: it goes
//! through every step of the login (and of the second factor, where one is needed), and ends in a
//! redirect to a page of our own instead of a code. It never reaches the consent step nor
//! [`Provider::issue_code`](crate::Provider): the request fields an application would fill in are
//! set to values that name the account pages, and nothing reads them.
//!
//! The sections of the account pages each have a module: the profile is [`crate::profile`],
//! [`password`], the sessions [`crate::sessions`], [`apps`] and [`activity`].

pub mod activity;
pub mod apps;
pub mod password;

use std::net::IpAddr;

use latchkey_proto::{ClientId, CodeChallenge, RedirectUri, Scope};
use serde::{Deserialize, Serialize};

use crate::authn::{Acr, AcrRequest, Next, SecondFactorPolicy, decide};
use crate::authorize::Step;
use crate::store::{ClientKind, ClientRecord, PendingAuthorization, SessionRecord, UserRecord};
use crate::{Error, Provider, UnixTime};

/// What a pending sign-in leads to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SignInPurpose {
    /// An application's authorization request (the default: records stored before this existed).
    #[default]
    Authorize,
    /// The account pages: after the login, go to `next` (a path [`safe_next`] allows).
    Account { next: String },
}

/// The name the login page shows for an account sign-in ("to continue to …").
pub const ACCOUNT_CLIENT_NAME: &str = "your account";

/// The client id the pending record is counted under (`max_pending_per_client`). Not a client:
/// [`Provider::client`] never returns it, so `/authorize` cannot use it.
pub(crate) const ACCOUNT_PENDING_ID: &str = "latchkey-account";

/// Where an account sign-in may send the browser after the login: our own account pages and the
/// device verification page only, as a path, so that the sign-in cannot become an open
/// redirector (RFC 9700 §4.11).
pub fn safe_next(next: &str) -> String {
    if device_next(next) {
        return next.to_owned();
    }
    let ok = (next == "/account" || next.starts_with("/account/"))
        && next.len() <= 256
        && !next.contains("//")
        && !next.contains("..")
        && !next.contains('\\')
        && next.bytes().all(|b| b.is_ascii_graphic());
    if ok { next.to_owned() } else { "/account".to_owned() }
}

/// `/device`, or `/device?user_code=CODE` (RFC 8628 §3.3.1, `verification_uri_complete`) where
/// CODE has only the characters of a user code (its letters in either case, and dashes): nothing
/// else can ride along in the query.
fn device_next(next: &str) -> bool {
    use crate::device_grant::{USER_CODE_ALPHABET, USER_CODE_LEN, request::VERIFICATION_PATH};
    let Some(rest) = next.strip_prefix(VERIFICATION_PATH) else { return false };
    let Some(code) = rest.strip_prefix("?user_code=") else { return rest.is_empty() };
    (1..=2 * USER_CODE_LEN).contains(&code.len())
        && code.bytes().all(|b| b == b'-' || USER_CODE_ALPHABET.contains(&b.to_ascii_uppercase()))
}

/// The stand-in client record for an account sign-in: first-party, public, and never stored.
pub(crate) fn account_client(now: UnixTime) -> Result<ClientRecord, Error> {
    Ok(ClientRecord {
        client_id: ClientId::parse(ACCOUNT_PENDING_ID)?,
        name: ACCOUNT_CLIENT_NAME.to_owned(),
        kind: ClientKind::Public,
        redirect_uris: Vec::new(),
        grant_types: Vec::new(),
        allowed_scope: Scope::default(),
        first_party: true,
        created_at: now,
        id_token_signed_response_alg: Default::default(),
        post_logout_redirect_uris: Vec::new(),
        audiences: Vec::new(),
        origin: Default::default(),
        backchannel_logout: None,
        protection: Default::default(),
        second_factor: Default::default(),
    })
}

/// Who is signed in to the account pages.
#[derive(Clone, Debug)]
pub struct AccountSession {
    pub session: SessionRecord,
    pub user: UserRecord,
}

impl Provider {
    /// The account pages' session, if the cookie names a live one whose user still exists and is
    /// not locked (locking ends the sessions; this also covers one that raced with the lock).
    pub async fn account_session(
        &self,
        cookie: Option<&latchkey_proto::SessionToken>,
        now: UnixTime,
    ) -> Result<Option<AccountSession>, Error> {
        let Some(session) = self.current_session(cookie, now).await? else { return Ok(None) };
        let user = self.store.user(&session.user_id).await?.filter(|u| u.locked_at.is_none());
        Ok(user.map(|user| AccountSession { session, user }))
    }

    /// The signed-in user's sessions, newest first (at most `max_sessions_per_user`).
    pub async fn account_sessions(&self, a: &AccountSession, now: UnixTime) -> Result<Vec<SessionRecord>, Error> {
        Ok(self.store.user_sessions(&a.user.id, now).await?)
    }

    /// Starts a sign-in for the account pages: the login page, then `next`.
    pub async fn account_sign_in(&self, next: &str, ip: Option<IpAddr>, now: UnixTime) -> Result<Step, Error> {
        let pending = self.account_pending(next, None, now)?;
        let id = self.save_pending(&pending, ip, now).await?;
        Ok(Step::Login { pending: id, client_name: ACCOUNT_CLIENT_NAME.to_owned(), login_hint: None })
    }

    /// Raises the signed-in session to `level` (a second factor, a passkey), then goes to `next`:
    /// the second-factor step on this session, or setting a factor up where the person has none
    /// that reaches it, as a step-up at `/authorize` does. A page that needs more than the session
    /// has (the device page, for a client whose policy asks for it) starts here; the session is
    /// upgraded in place, so the page finds it strong enough afterwards. A session that already
    /// reaches `level` goes to `next` at once.
    pub async fn account_step_up(
        &self,
        a: &AccountSession,
        level: Acr,
        next: &str,
        ip: Option<IpAddr>,
        now: UnixTime,
    ) -> Result<Step, Error> {
        let request = AcrRequest { values: vec![level], essential: true };
        let pending = self.account_pending(next, Some(request), now)?;
        let enrolled = self.enrolled(&a.user.id).await?;
        let need = decide(SecondFactorPolicy::Optional, pending.acr.as_ref(), &enrolled, Some(&a.session.authn));
        if need == Next::Done {
            return Ok(Step::Redirect(safe_next(next)));
        }
        let id = self.save_pending(&pending, ip, now).await?;
        self.begin_step_up(id, &a.session, need, now).await
    }

    fn account_pending(
        &self,
        next: &str,
        acr: Option<AcrRequest>,
        now: UnixTime,
    ) -> Result<PendingAuthorization, Error> {
        let next = safe_next(next);
        Ok(PendingAuthorization {
            client_id: ClientId::parse(ACCOUNT_PENDING_ID)?,
            redirect_uri: RedirectUri::parse(&format!("{}{next}", self.issuer()))?,
            scope: Scope::default(),
            state: None,
            nonce: None,
            // Never compared: an account sign-in issues no code. A well-formed value keeps the
            // record valid for every reader.
            code_challenge: CodeChallenge::parse_s256(Some(NO_CHALLENGE), Some("S256"))?,
            expires_at: now + self.config.pending_ttl as UnixTime,
            login_hint: None,
            force_consent: false,
            auth_after: None,
            resource: None,
            purpose: SignInPurpose::Account { next },
            acr,
            claims: None,
            dpop_jkt: None,
        })
    }
}

/// 43 base64url characters: the shape of an S256 challenge, matching no verifier anyone holds.
const NO_CHALLENGE: &str = "account-sign-in-issues-no-code-AAAAAAAAAAAA";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_the_account_pages() {
        assert_eq!(safe_next("/account/passkeys"), "/account/passkeys");
        assert_eq!(safe_next("/account"), "/account");
        for evil in [
            "https://evil.example/",
            "//evil.example/account",
            "/accountx",
            "/account/..\\x",
            "/account/../authorize",
            "/authorize?x",
            "",
        ] {
            assert_eq!(safe_next(evil), "/account", "{evil}");
        }
    }

    #[test]
    fn next_may_be_the_device_page_with_a_user_code_and_nothing_else() {
        for ok in ["/device", "/device?user_code=WDJB-MJHT", "/device?user_code=wdjbmjht", "/device?user_code=B"] {
            assert_eq!(safe_next(ok), ok);
        }
        for evil in [
            "/devicex",
            "/device/",
            "/device/../authorize",
            "//device",
            "https://evil.example/device",
            "/device?",
            "/device?user_code=",
            "/device?x=1",
            "/device?user_code=WDJB-MJHT&next=https://evil.example/",
            "/device?user_code=WDJB-MJHT#x",
            "/device?user_code=WDJB%2FMJHT",
            "/device?user_code=WDJB MJHT",
            "/device?user_code=AEIO-UAEI",
            "/device?user_code=WDJB-MJHT/../../authorize",
            "/device?user_code=WDJB\\evil",
            "/device?USER_CODE=WDJB-MJHT",
            "/device?user_code=WDJB-MJHT-WDJB-MJHT",
        ] {
            assert_eq!(safe_next(evil), "/account", "{evil}");
        }
    }

    #[test]
    fn the_placeholder_challenge_is_well_formed() {
        assert_eq!(NO_CHALLENGE.len(), 43);
        assert!(CodeChallenge::parse_s256(Some(NO_CHALLENGE), Some("S256")).is_ok());
    }
}
