//! The authorization endpoint (RFC 6749 §4.1.1-4.1.2, OpenID Connect Core §3.1.2), the login and
//! the consent steps that may come between the request and the redirect.

use latchkey_proto::secret::random_token;
use latchkey_proto::{
    AuthorizationCode, ClientId, CodeChallenge, ErrorCode, Nonce, OAuthError, Params, PartialSignInToken, Password,
    RedirectUri, ResourceUri, Scope, SessionToken, State, TokenHash,
};
use url::Url;

use std::net::IpAddr;

use serde_json::json;

use crate::account::SignInPurpose;
use crate::authn::{AcrRequest, Authentication, Next, SecondFactorPolicy};
use crate::resource::{self, ResourceRecord};
use crate::store::{ClientRecord, CodeRecord, PendingAuthorization, PendingLimits, Reservation, SessionRecord};
use crate::{Error, Provider, UnixTime, audit, throttle};

/// What the browser is shown next.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// The request cannot be trusted to redirect (unknown client, unregistered redirect URI):
    /// the user sees an error page and the client learns nothing (RFC 6749 §4.1.2.1).
    ErrorPage(OAuthError),
    /// Send the browser back to the client, with a code or an error.
    Redirect(String),
    /// Ask for the user's credentials; `pending` is the id of the stored request.
    Login { pending: String, client_name: String, login_hint: Option<String> },
    /// Ask the logged-in user to approve the scopes for this client.
    Consent {
        pending: String,
        client_name: String,
        scope: Scope,
        username: String,
        /// Set for a client nobody vetted (self-registered, metadata document): what the page
        /// must show so that a borrowed name does not pass for the real application.
        unverified: Option<Box<crate::registration::Unverified>>,
        /// RFC 8707: the API the access will be for, as registered (its name, its URI).
        resource: Option<Box<(String, String)>>,
        /// Claims the request asks for individually beyond its scopes (OpenID Connect Core
        /// §5.5), which the user allows here too ([`crate::claims`]).
        claims: Box<crate::claims::ClaimNames>,
    },
    /// The sign-in needs a second factor (or its enrolment) before it goes on: send the browser
    /// to the second-factor page of `pending` (`crate::factors`), first giving it `cookie`, the
    /// partial sign-in's token, when the step starts here.
    SecondFactor { pending: String, cookie: Option<PartialSignInToken> },
}

/// The `prompt` parameter (OpenID Connect Core §3.1.2.1).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Prompt {
    pub none: bool,
    pub login: bool,
    pub consent: bool,
}

/// A request that passed every check: safe to act on and to redirect to.
#[derive(Debug, Clone)]
pub struct ValidRequest {
    pub pending: PendingAuthorization,
    pub prompt: Prompt,
    /// OpenID Connect `max_age`: a session older than this many seconds must log in again.
    pub max_age: Option<u64>,
}

/// Why [`validate`] refused a request, and whether the refusal may go back to the client: only
/// once the client and the redirect URI are known good. `/authorize` shows it as a [`Step`]; the
/// PAR endpoint answers the error itself as JSON.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub error: OAuthError,
    /// The error redirect to the client's redirect URI, when it may be sent there.
    pub redirect: Option<String>,
}

impl From<Refusal> for Step {
    fn from(r: Refusal) -> Step {
        match r.redirect {
            Some(url) => Step::Redirect(url),
            None => Step::ErrorPage(r.error),
        }
    }
}

/// An error sent back to the client's redirect URI, with `state` and `iss` (RFC 9207).
pub fn error_redirect(issuer: &str, redirect_uri: &RedirectUri, state: Option<&State>, e: &OAuthError) -> String {
    with_params(
        redirect_uri,
        &[
            ("error", Some(e.code.as_str())),
            ("error_description", Some(&e.description)),
            ("state", state.map(State::as_str)),
            ("iss", Some(issuer)),
        ],
    )
}

fn with_params(redirect_uri: &RedirectUri, params: &[(&str, Option<&str>)]) -> String {
    // The redirect URI was validated as absolute when it was registered; keep its own query.
    let Ok(mut url) = Url::parse(redirect_uri.as_str()) else {
        return redirect_uri.to_string();
    };
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in params {
            if let Some(v) = v {
                q.append_pair(k, v);
            }
        }
    }
    url.into()
}

/// Validates an authorization request against the registered client. Pure.
///
/// Order matters (RFC 6749 §4.1.2.1): until the client and the redirect URI are known good, errors
/// go to an error page, never to the redirect URI, or the server becomes an open redirector.
/// `registered` is the registry's record of the `resource` parameter's URI, if any;
/// `allow_unregistered` is the deployment's `allow_unregistered_resources`. The PAR endpoint
/// (`crate::par`) validates pushed requests with this same function.
pub fn validate(
    params: &Params,
    client: Option<&ClientRecord>,
    issuer: &str,
    now: UnixTime,
    pending_ttl: u64,
    registered: Option<&ResourceRecord>,
    allow_unregistered: bool,
) -> Result<ValidRequest, Refusal> {
    let page = |error: OAuthError| Refusal { error, redirect: None };
    let client_id = params
        .get("client_id")
        .ok_or_else(|| page(OAuthError::invalid_request("the client_id parameter is missing")))?;
    ClientId::parse(client_id).map_err(page)?;
    let client = client
        .ok_or_else(|| page(OAuthError::invalid_request("unknown client_id: no client is registered with this id")))?;
    let redirect_uri = params.get("redirect_uri").ok_or_else(|| {
        page(OAuthError::invalid_request(
            "the redirect_uri parameter is missing: send one of the client's registered redirect URIs",
        ))
    })?;
    let redirect_uri = RedirectUri::parse(redirect_uri).map_err(page)?;
    if !client.redirect_uris.iter().any(|r| redirect_uri.matches_registered(r)) {
        return Err(page(OAuthError::invalid_request(
            "redirect_uri is not registered for this client: it must equal a registered redirect URI exactly",
        )));
    }

    // From here on errors are returned to the client. A malformed state cannot be echoed.
    let state = params.get("state").map(State::parse).transpose();
    let state_for_errors = state.as_ref().ok().cloned().flatten();
    let fail = |error: OAuthError| Refusal {
        redirect: Some(error_redirect(issuer, &redirect_uri, state_for_errors.as_ref(), &error)),
        error,
    };
    let state = state.map_err(fail)?;

    if params.contains("request") {
        return Err(fail(OAuthError::new(ErrorCode::RequestNotSupported, "request objects are not supported")));
    }
    if params.contains("request_uri") {
        return Err(fail(OAuthError::new(ErrorCode::RequestUriNotSupported, "request_uri is not supported")));
    }
    match params.get("response_type") {
        Some("code") => {}
        None => {
            return Err(fail(OAuthError::invalid_request(
                "the response_type parameter is missing; use response_type=code",
            )));
        }
        Some(_) => {
            return Err(fail(OAuthError::new(
                ErrorCode::UnsupportedResponseType,
                "only response_type=code (the authorization code flow) is supported",
            )));
        }
    }
    if params.get("response_mode").is_some_and(|m| m != "query") {
        return Err(fail(OAuthError::invalid_request("only response_mode=query is supported")));
    }
    let code_challenge =
        CodeChallenge::parse_s256(params.get("code_challenge"), params.get("code_challenge_method")).map_err(fail)?;
    // RFC 8707: the API the token will be for. Decided before the scope, whose allowance may
    // depend on it (`resource::allowed_scope`).
    let requested = params.get("resource").map(ResourceUri::parse).transpose().map_err(fail)?;
    let target = resource::decide_target(client, requested.as_ref(), registered, allow_unregistered).map_err(fail)?;
    let allowed = resource::allowed_scope(client, &target);
    let scope = Scope::parse(params.get("scope").unwrap_or("")).map_err(fail)?;
    if !scope.is_subset(&allowed) {
        return Err(fail(OAuthError::invalid_scope(format!(
            "scope not allowed for this client: {}",
            scope.missing_from(&allowed)
        ))));
    }
    let nonce = params.get("nonce").map(Nonce::parse).transpose().map_err(fail)?;
    let prompt = parse_prompt(params.get("prompt")).map_err(fail)?;
    let max_age = match params.get("max_age").map(str::parse::<u64>) {
        None => None,
        Some(Ok(n)) if n <= 10 * 365 * 24 * 3600 => Some(n),
        Some(_) => return Err(fail(OAuthError::invalid_request("max_age must be a whole number of seconds"))),
    };
    // A hint only; anything odd is ignored rather than refused (OpenID Connect Core §3.1.2.1).
    let login_hint =
        params.get("login_hint").filter(|h| h.len() <= 256 && !h.chars().any(char::is_control)).map(str::to_owned);
    // OpenID Connect Core §5.5. Only an OpenID request has claims to ask for: without `openid`
    // the parameter is an unknown one, ignored (RFC 6749 §3.1).
    let claims = match params.get("claims") {
        Some(raw) if scope.contains("openid") => {
            Some(latchkey_proto::ClaimsRequest::parse(raw).map_err(fail)?).filter(|c| !c.is_empty())
        }
        _ => None,
    };
    // OpenID Connect Core §3.1.2.1 `acr_values`: voluntary, unknown values ignored (`authn`).
    // The `claims` parameter's `acr` (§5.5.1.1) feeds the same `AcrRequest`; an essential one
    // wins, and one naming no value we know is refused (`unmet_authentication_requirements`).
    let claimed_acr = match claims.as_ref().and_then(latchkey_proto::ClaimsRequest::acr) {
        Some(c) => {
            let values: Vec<&str> = c.values.iter().map(String::as_str).collect();
            AcrRequest::from_claim(&values, c.essential).map_err(fail)?
        }
        None => None,
    };
    let acr = AcrRequest::merge(params.get("acr_values").and_then(AcrRequest::from_acr_values), claimed_acr);
    // RFC 9449 §10: the key the code will be redeemed with.
    let dpop_jkt = params.get("dpop_jkt").map(crate::dpop::parse_dpop_jkt).transpose().map_err(fail)?;
    // ui_locales, claims_locales, display and id_token_hint are accepted and ignored.

    // The authentication this request demands travels with it, so that every later step (the
    // login form, the consent page, the consent decision) can enforce it: `prompt=login` needs a
    // login from now on, `max_age` one no older than that (OpenID Connect Core §3.1.2.1).
    let auth_after = [prompt.login.then_some(now), max_age.map(|m| now - m as UnixTime)].into_iter().flatten().max();

    Ok(ValidRequest {
        pending: PendingAuthorization {
            client_id: client.client_id.clone(),
            redirect_uri,
            scope,
            state,
            nonce,
            code_challenge,
            expires_at: now + pending_ttl as UnixTime,
            login_hint,
            force_consent: prompt.consent,
            auth_after,
            resource: target.resource,
            purpose: Default::default(),
            acr,
            claims,
            dpop_jkt,
        },
        prompt,
        max_age,
    })
}

fn parse_prompt(v: Option<&str>) -> Result<Prompt, OAuthError> {
    let mut p = Prompt::default();
    for value in v.unwrap_or("").split(' ').filter(|s| !s.is_empty()) {
        match value {
            "none" => p.none = true,
            "login" => p.login = true,
            "consent" => p.consent = true,
            // One account per session: choosing an account is logging in again.
            "select_account" => p.login = true,
            _ => {
                return Err(OAuthError::invalid_request("unsupported prompt value; supported: none, login, consent"));
            }
        }
    }
    // OpenID Connect Core §3.1.2.1: none with any other value is an error.
    if p.none && (p.login || p.consent) {
        return Err(OAuthError::invalid_request("prompt=none cannot be combined with other prompt values"));
    }
    Ok(p)
}

pub(crate) fn expired_step() -> Step {
    Step::ErrorPage(OAuthError::invalid_request(
        "this sign-in request has expired or was already completed; go back to the application and start again",
    ))
}

/// What the login step returns.
#[derive(Debug)]
pub enum LoginOutcome {
    /// Wrong username or password: show the form again with one message for both cases.
    Failed { client_name: String },
    /// Too many failures: try again after this many seconds (the password was not checked).
    Throttled { client_name: String, retry_after: u64 },
    /// The password is right but an administrator locked the account (`latchkey user lock`).
    /// Said only after the right password, so that it reveals nothing to a guesser (a wrong
    /// password gets `Failed` whether the account is locked or not), while the person who owns
    /// the account learns why they cannot sign in instead of retrying into the throttle. The
    /// attempt counts as a failure for throttling.
    Locked { client_name: String },
    /// The password was right, but the account signed itself up and has not verified its
    /// address yet (`crate::signup`): no session; a fresh verification link was mailed.
    Unverified { client_name: String },
    /// Logged in: set the session cookie and the known-device cookie (`device`, see
    /// [`crate::device`]), and go on.
    Done { session: SessionToken, max_age: u64, device: String, next: Step },
    /// The password was right and a second factor is needed: no session yet. `next` is a
    /// [`Step::SecondFactor`] carrying the partial sign-in's cookie.
    SecondFactor { next: Step },
}

/// Whether a session's authentication satisfies what the pending request demands (`prompt=login`,
/// `max_age`).
fn authenticated_enough(pending: &PendingAuthorization, session: &SessionRecord) -> bool {
    pending.auth_after.is_none_or(|t| session.auth_time >= t)
}

/// RFC 8252 §8.6: a public client whose redirect goes to a loopback address or a private-use
/// scheme cannot be told apart from another app claiming the same port or scheme, so the server
/// must not answer it without the user's interaction, even with remembered consent.
fn needs_interaction(client: &ClientRecord, redirect_uri: &RedirectUri) -> bool {
    if !client.is_public() {
        return false;
    }
    match Url::parse(redirect_uri.as_str()) {
        Ok(u) => match u.scheme() {
            "https" => false,
            "http" => {
                matches!(u.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
                    || matches!(u.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback())
                    || u.host_str() == Some("localhost")
            }
            _ => true,
        },
        Err(_) => true,
    }
}

impl Provider {
    /// `GET|POST /authorize`.
    pub async fn authorize(
        &self,
        params: &Params,
        cookie: Option<&SessionToken>,
        ip: Option<IpAddr>,
        now: UnixTime,
    ) -> Result<Step, Error> {
        // RFC 9126 §4: a `request_uri` from the PAR endpoint stands for the request pushed there,
        // whose parameters alone count from here on.
        let pushed = match params.get("request_uri") {
            Some(uri) => match self.take_pushed(params, uri, now).await? {
                Ok(p) => Some(p),
                Err(e) => return Ok(Step::ErrorPage(e)),
            },
            None => None,
        };
        let params = pushed.as_ref().unwrap_or(params);
        let client = match params.get("client_id").map(ClientId::parse) {
            Some(Ok(id)) => self.client(&id, now).await.map_err(crate::cimd::for_page)?,
            _ => None,
        };
        // RFC 9126 §5-6, FAPI 2.0 Security Profile §5.3: a client that must push its requests is never taken
        // at its word on the front channel, where anyone can alter or forge a request.
        if let Some(c) = client.as_ref().filter(|c| pushed.is_none() && self.config.protection.requires_par(c)) {
            tracing::info!(client_id = %c.client_id, "plain authorization request from a client that must use PAR");
            return Ok(Step::ErrorPage(OAuthError::invalid_request(
                "this client must push its authorization requests to the pushed authorization request endpoint (/par, RFC 9126) and send only client_id and the request_uri it got there",
            )));
        }
        let registered = match (&client, params.get("resource").map(ResourceUri::parse)) {
            (Some(_), Some(Ok(uri))) => self.store.resource(&uri).await?,
            _ => None,
        };
        let cfg = &self.config;
        let req = match validate(
            params,
            client.as_ref(),
            self.issuer(),
            now,
            cfg.pending_ttl,
            registered.as_ref(),
            cfg.allow_unregistered_resources,
        ) {
            Ok(r) => r,
            Err(refusal) => return Ok(refusal.into()),
        };
        let Some(client) = client else {
            return Ok(Step::ErrorPage(OAuthError::invalid_request("unknown client_id")));
        };
        let session = match cookie {
            Some(c) => self.store.session(&c.hash(), now).await?,
            None => None,
        };
        let fail = |e: OAuthError| {
            Ok(Step::Redirect(error_redirect(self.issuer(), &req.pending.redirect_uri, req.pending.state.as_ref(), &e)))
        };
        let session = match session {
            Some(s) if !req.prompt.login && authenticated_enough(&req.pending, &s) => s,
            _ => {
                if req.prompt.none {
                    return fail(OAuthError::new(
                        ErrorCode::LoginRequired,
                        "the user is not logged in and prompt=none forbids showing a login page",
                    ));
                }
                let pending = self.save_pending(&req.pending, ip, now).await?;
                return Ok(Step::Login { pending, client_name: client.name, login_hint: req.pending.login_hint });
            }
        };
        // `acr_values`, an essential `acr` or the policy may need more than this session has: a
        // step-up (the second-factor step on this session), never a silent pass.
        let need = self.session_next(&client, &req.pending, &session).await?;
        if need != Next::Done {
            if req.prompt.none {
                return fail(OAuthError::new(
                    ErrorCode::InteractionRequired,
                    "the session does not meet the requested authentication level (acr) and prompt=none forbids asking for a second factor",
                ));
            }
            let pending = self.save_pending(&req.pending, ip, now).await?;
            return self.begin_step_up(pending, &session, need, now).await;
        }
        if !req.prompt.consent
            && !needs_interaction(&client, &req.pending.redirect_uri)
            && self.has_consent(&client, &session.user_id, &req.pending).await?
        {
            return Ok(Step::Redirect(self.issue_code(&req.pending, &session, now).await?));
        }
        if req.prompt.none {
            return fail(OAuthError::new(
                ErrorCode::ConsentRequired,
                "the user has not consented to these scopes and prompt=none forbids asking",
            ));
        }
        let pending = self.save_pending(&req.pending, ip, now).await?;
        self.consent_step(pending, &client, &req.pending, &session).await
    }

    /// `POST /login`: checks the credentials for a pending request. `device` is the browser's
    /// known-device cookie, if it sent one; `user_agent` its `User-Agent` header, summarised for
    /// the account page's list of sessions ([`crate::sessions::meta`]).
    #[allow(clippy::too_many_arguments)]
    pub async fn login(
        &self,
        pending_id: &str,
        username: &str,
        password: Password,
        ip: Option<IpAddr>,
        device: Option<&str>,
        user_agent: Option<&str>,
        now: UnixTime,
    ) -> Result<Result<LoginOutcome, Step>, Error> {
        let (pending, client) = match self.load_pending(pending_id, now).await? {
            Ok(x) => x,
            Err(step) => return Ok(Err(step)),
        };
        let user = self.store.user_by_username(username).await?;
        let known_device = match (device, &user) {
            (Some(cookie), Some(u)) => crate::device::verify(&self.server_key, cookie, &u.id, now),
            _ => None,
        };
        let rules = throttle::keys(username, ip, known_device);
        // Reserved before the password is checked: see `throttle` (review finding 1).
        let refused_before = match self.store.throttle_reserve(&rules, now).await? {
            Reservation::Blocked { until, first } => {
                // One record per blocked period, not one per refused attempt (finding 9): the
                // count of the others is carried by the next counted attempt's record.
                if first {
                    let e = audit::Event {
                        client_id: Some(client.client_id.as_str()),
                        ip,
                        detail: Some(json!({ "retry_after": until - now })),
                        ..Default::default()
                    };
                    audit::record(self.store.as_ref(), now, "login_throttled", e).await;
                }
                return Ok(Ok(LoginOutcome::Throttled { client_name: client.name, retry_after: (until - now) as u64 }));
            }
            Reservation::Reserved { refused_while_blocked } => refused_while_blocked,
        };
        let ok = self
            .hasher
            .verify(password.expose_secret().to_owned(), user.as_ref().map(|u| u.password_hash.clone()))
            .await?;
        let user = match user {
            Some(u) if ok => u,
            _ => {
                // A name that matches no account is not recorded: people type their password into
                // the username field, and the audit log is kept (review 19k).
                let mut detail = match &user {
                    Some(u) => json!({ "username": u.username }),
                    None => json!({ "unknown_username": true }),
                };
                if refused_before > 0 {
                    detail["refused_while_throttled"] = json!(refused_before);
                }
                let e = audit::Event {
                    user_id: user.as_ref().map(|u| u.id.as_str()),
                    client_id: Some(client.client_id.as_str()),
                    ip,
                    detail: Some(detail),
                };
                audit::record(self.store.as_ref(), now, "login_failure", e).await;
                return Ok(Ok(LoginOutcome::Failed { client_name: client.name }));
            }
        };
        // A locked account is said to be locked only to whoever knows its password (see
        // `LoginOutcome::Locked`); the attempt stays counted as a failure.
        if user.locked_at.is_some() {
            return Ok(Ok(self.refuse_locked(&user, &client, ip, now).await));
        }
        // A success clears this account's counters and takes the reserved failure back from the
        // IP's, without resetting it: logging in to one's own account must not reset the budget
        // for guessing others.
        let (clear, refund): (Vec<String>, Vec<String>) =
            rules.into_iter().map(|(k, _)| k).partition(|k| throttle::is_account_key(k));
        self.store.throttle_settle(&clear, &refund).await?;
        // A self-registered account signs in only once its address is verified (`crate::signup`).
        if self.awaiting_verification(&user, now).await? {
            let e =
                audit::Event { user_id: Some(&user.id), client_id: Some(client.client_id.as_str()), ip, detail: None };
            audit::record(self.store.as_ref(), now, "login_refused_unverified", e).await;
            return Ok(Ok(LoginOutcome::Unverified { client_name: client.name }));
        }
        let detail = (refused_before > 0).then(|| json!({ "refused_while_throttled": refused_before }));
        let e = audit::Event { user_id: Some(&user.id), client_id: Some(client.client_id.as_str()), ip, detail };
        audit::record(self.store.as_ref(), now, "login_success", e).await;
        // The first factor is done; the policy, the request or the user's own factors may ask for
        // a second before any session exists (`crate::factors`).
        let enrolled = self.enrolled(&user.id).await?;
        let need = crate::authn::decide(self.policy_for(&client), pending.acr.as_ref(), &enrolled, None);
        if need != Next::Done {
            let next =
                self.begin_second_factor(pending_id, &user.id, Authentication::default(), None, need, now).await?;
            return Ok(Ok(LoginOutcome::SecondFactor { next }));
        }
        let meta = crate::sessions::meta(ip, user_agent);
        // Refused when a lock landed since the user was read: the store checks it atomically.
        let Some((token, session)) = self.create_session(&user.id, Authentication::default(), meta, now).await? else {
            return Ok(Ok(self.refuse_locked(&user, &client, ip, now).await));
        };
        let device = crate::device::issue(&self.server_key, known_device, &user.id, now);
        let next = match self.finish_sign_in(pending_id, &pending, &client, &session, now).await? {
            Ok(next) => next,
            Err(step) => return Ok(Err(step)),
        };
        Ok(Ok(LoginOutcome::Done { session: token, max_age: self.config.session_ttl, device, next }))
    }

    /// A new browser session for `user_id`, authenticated now as `authn` says, signed in where
    /// and on what `meta` says. `None`, creating nothing, when the user is locked: the store
    /// checks the lock in the same step as the insert ([`Self::start_session`]).
    pub(crate) async fn create_session(
        &self,
        user_id: &str,
        authn: Authentication,
        meta: crate::store::SessionMeta,
        now: UnixTime,
    ) -> Result<Option<(SessionToken, SessionRecord)>, Error> {
        let token = SessionToken::generate();
        let session = SessionRecord {
            hash: token.hash(),
            sid: random_token(),
            user_id: user_id.to_owned(),
            auth_time: now,
            expires_at: now + self.config.session_ttl as UnixTime,
            authn,
            meta,
        };
        // Evicted sessions beyond the limit end here, and their clients are told.
        if !self.start_session(&session).await? {
            return Ok(None);
        }
        Ok(Some((token, session)))
    }

    /// What follows a complete sign-in: the account page for an account sign-in, else the code
    /// when consent is remembered, else the consent page. `Err`: the request was completed
    /// meanwhile (single use).
    pub(crate) async fn finish_sign_in(
        &self,
        pending_id: &str,
        pending: &PendingAuthorization,
        client: &ClientRecord,
        session: &SessionRecord,
        now: UnixTime,
    ) -> Result<Result<Step, Step>, Error> {
        Ok(Ok(if let SignInPurpose::Account { next } = &pending.purpose {
            // One use per sign-in, like an application's request.
            if !self.store.remove_pending(&TokenHash::of(pending_id)).await? {
                return Ok(Err(expired_step()));
            }
            Step::Redirect(next.clone())
        } else if !pending.force_consent && self.has_consent(client, &session.user_id, pending).await? {
            if !self.store.remove_pending(&TokenHash::of(pending_id)).await? {
                return Ok(Err(expired_step()));
            }
            Step::Redirect(self.issue_code(pending, session, now).await?)
        } else {
            self.consent_step(pending_id.to_owned(), client, pending, session).await?
        }))
    }

    /// The stricter of the deployment's and the client's second-factor policy.
    pub fn policy_for(&self, client: &ClientRecord) -> SecondFactorPolicy {
        self.config.second_factor.max(client.second_factor)
    }

    /// What an existing session still needs before it may serve `pending` ([`Next::Done`] when
    /// nothing). The user's factors are read only when the demand exceeds the session's level.
    pub(crate) async fn session_next(
        &self,
        client: &ClientRecord,
        pending: &PendingAuthorization,
        session: &SessionRecord,
    ) -> Result<Next, Error> {
        let policy = self.policy_for(client);
        let have = session.authn.acr();
        if policy.level() <= have && pending.acr.as_ref().and_then(AcrRequest::level).is_none_or(|l| l <= have) {
            return Ok(Next::Done);
        }
        let enrolled = self.enrolled(&session.user_id).await?;
        Ok(crate::authn::decide(policy, pending.acr.as_ref(), &enrolled, Some(&session.authn)))
    }

    async fn refuse_locked(
        &self,
        user: &crate::store::UserRecord,
        client: &ClientRecord,
        ip: Option<IpAddr>,
        now: UnixTime,
    ) -> LoginOutcome {
        let e = audit::Event {
            user_id: Some(&user.id),
            client_id: Some(client.client_id.as_str()),
            ip,
            detail: Some(json!({ "username": user.username })),
        };
        audit::record(self.store.as_ref(), now, "login_refused_locked", e).await;
        LoginOutcome::Locked { client_name: client.name.clone() }
    }

    /// `GET /consent`: the consent page for a pending request, or the login page if the session is gone.
    pub async fn consent_page(
        &self,
        pending_id: &str,
        cookie: Option<&SessionToken>,
        now: UnixTime,
    ) -> Result<Step, Error> {
        let (pending, client) = match self.load_pending(pending_id, now).await? {
            Ok((p, _)) if p.purpose != SignInPurpose::Authorize => return Ok(expired_step()),
            Ok(x) => x,
            Err(step) => return Ok(step),
        };
        // A session that predates a `prompt=login`, exceeds `max_age` or lacks the second factor
        // the request needs must sign in again here too, or the consent page would skip the
        // re-authentication (review finding 4).
        match self.usable_session(cookie, &client, &pending, now).await? {
            Some(session) => self.consent_step(pending_id.to_owned(), &client, &pending, &session).await,
            None => Ok(Step::Login {
                pending: pending_id.to_owned(),
                client_name: client.name,
                login_hint: pending.login_hint,
            }),
        }
    }

    /// `POST /consent`: the user's decision.
    pub async fn decide_consent(
        &self,
        pending_id: &str,
        cookie: Option<&SessionToken>,
        approve: bool,
        now: UnixTime,
    ) -> Result<Step, Error> {
        let (pending, client) = match self.load_pending(pending_id, now).await? {
            Ok((p, _)) if p.purpose != SignInPurpose::Authorize => return Ok(expired_step()),
            Ok(x) => x,
            Err(step) => return Ok(step),
        };
        let session = match self.usable_session(cookie, &client, &pending, now).await? {
            Some(s) => s,
            None => {
                return Ok(Step::Login {
                    pending: pending_id.to_owned(),
                    client_name: client.name,
                    login_hint: pending.login_hint,
                });
            }
        };
        // One decision per request: of two concurrent posts, only the one that removed the
        // request goes on (review 19d).
        if !self.store.remove_pending(&TokenHash::of(pending_id)).await? {
            return Ok(expired_step());
        }
        if !approve {
            let e = audit::Event {
                user_id: Some(&session.user_id),
                client_id: Some(client.client_id.as_str()),
                ..Default::default()
            };
            audit::record(self.store.as_ref(), now, "consent_denied", e).await;
            let e = OAuthError::new(ErrorCode::AccessDenied, "the user denied the request");
            return Ok(Step::Redirect(error_redirect(
                self.issuer(),
                &pending.redirect_uri,
                pending.state.as_ref(),
                &e,
            )));
        }
        // Remember the union, so that a client asking for fewer scopes later is not asked again.
        let previous = self.store.consent(&session.user_id, &client.client_id).await?;
        let (prev_scope, mut claims) = previous.map(|c| (c.scope, c.claims)).unwrap_or_default();
        let remembered =
            Scope::parse(&format!("{prev_scope} {}", pending.scope)).map_err(|e| anyhow::anyhow!("{e}"))?;
        for c in crate::claims::beyond_scope(&pending.scope, pending.claims.as_ref()) {
            if !claims.iter().any(|k| k == c) {
                claims.push(c.to_owned());
            }
        }
        self.store
            .put_consent(&crate::store::ConsentRecord {
                user_id: session.user_id.clone(),
                client_id: client.client_id.clone(),
                scope: remembered,
                updated_at: now,
                claims,
            })
            .await?;
        let e = audit::Event {
            user_id: Some(&session.user_id),
            client_id: Some(client.client_id.as_str()),
            detail: Some(json!({ "scope": pending.scope.to_string() })),
            ..Default::default()
        };
        audit::record(self.store.as_ref(), now, "consent_granted", e).await;
        Ok(Step::Redirect(self.issue_code(&pending, &session, now).await?))
    }

    /// Stores a new login session. The user's oldest sessions beyond `max_sessions_per_user` end
    /// in the same step, and their clients are told (Back-Channel Logout). Every way of signing
    /// in goes through here. `false`, storing and ending nothing, when the user is locked: the
    /// store checks the lock in the same atomic step, so a sign-in racing `latchkey user lock`
    /// cannot leave a session behind.
    pub async fn start_session(&self, session: &SessionRecord) -> Result<bool, Error> {
        let Some(evicted) = self.store.insert_session(session, self.config.max_sessions_per_user).await? else {
            return Ok(false);
        };
        self.sessions_ended(&evicted);
        Ok(true)
    }

    /// The browser's session if it may serve `pending` as it is: authenticated recently enough
    /// (`prompt=login`, `max_age`) and strongly enough (`acr`, the policy).
    pub(crate) async fn usable_session(
        &self,
        cookie: Option<&SessionToken>,
        client: &ClientRecord,
        pending: &PendingAuthorization,
        now: UnixTime,
    ) -> Result<Option<SessionRecord>, Error> {
        match self.current_session(cookie, now).await? {
            Some(s) if authenticated_enough(pending, &s) => {
                Ok((self.session_next(client, pending, &s).await? == Next::Done).then_some(s))
            }
            _ => Ok(None),
        }
    }

    pub async fn current_session(
        &self,
        cookie: Option<&SessionToken>,
        now: UnixTime,
    ) -> Result<Option<SessionRecord>, Error> {
        Ok(match cookie {
            Some(c) => self.store.session(&c.hash(), now).await?,
            None => None,
        })
    }

    /// Whether the user's consent covers the request: its scopes, and the claims it asks for
    /// beyond them ([`crate::claims`]).
    async fn has_consent(
        &self,
        client: &ClientRecord,
        user_id: &str,
        req: &PendingAuthorization,
    ) -> Result<bool, Error> {
        // Issue 12: a client nobody vetted always gets the consent page, remembered consent or not:
        // anyone can register a client under a trusted name, and only the page shows who it is.
        if !client.vetted() {
            return Ok(false);
        }
        if client.first_party {
            return Ok(true);
        }
        let extra = crate::claims::beyond_scope(&req.scope, req.claims.as_ref());
        Ok(self
            .store
            .consent(user_id, &client.client_id)
            .await?
            .is_some_and(|c| req.scope.is_subset(&c.scope) && extra.iter().all(|x| c.claims.iter().any(|k| k == x))))
    }

    pub(crate) async fn consent_step(
        &self,
        pending: String,
        client: &ClientRecord,
        req: &PendingAuthorization,
        session: &SessionRecord,
    ) -> Result<Step, Error> {
        let username = self.store.user(&session.user_id).await?.map(|u| u.username).unwrap_or_default();
        let unverified = crate::registration::unverified(client, &req.redirect_uri).map(Box::new);
        let resource = match &req.resource {
            Some(uri) => {
                let name = self.store.resource(uri).await?.map(|r| r.name).unwrap_or_else(|| uri.to_string());
                Some(Box::new((name, uri.to_string())))
            }
            None => None,
        };
        let scope = req.scope.clone();
        let claims = Box::new(crate::claims::ClaimNames(crate::claims::beyond_scope(&req.scope, req.claims.as_ref())));
        Ok(Step::Consent { pending, client_name: client.name.clone(), scope, username, unverified, resource, claims })
    }

    pub(crate) async fn save_pending(
        &self,
        p: &PendingAuthorization,
        ip: Option<IpAddr>,
        now: UnixTime,
    ) -> Result<String, Error> {
        let source = ip.map(throttle::source).unwrap_or_else(|| "unknown".to_owned());
        let limits = PendingLimits {
            per_source: self.config.max_pending_per_source,
            per_client: self.config.max_pending_per_client,
        };
        let id = random_token();
        if !self.store.insert_pending(&TokenHash::of(&id), p, &source, now, limits).await? {
            return Err(OAuthError::new(
                ErrorCode::TemporarilyUnavailable,
                "too many sign-in requests are in progress from your network; finish or close one, or try again in a few minutes",
            )
            .into());
        }
        Ok(id)
    }

    pub(crate) async fn load_pending(
        &self,
        id: &str,
        now: UnixTime,
    ) -> Result<Result<(PendingAuthorization, ClientRecord), Step>, Error> {
        let expired = expired_step;
        if id.len() > 128 {
            return Ok(Err(expired()));
        }
        let Some(p) = self.store.pending(&TokenHash::of(id), now).await? else {
            return Ok(Err(expired()));
        };
        if let SignInPurpose::Account { .. } = p.purpose {
            return Ok(Ok((p, crate::account::account_client(now)?)));
        }
        let Some(client) = self.client(&p.client_id, now).await.map_err(crate::cimd::for_page)? else {
            return Ok(Err(expired()));
        };
        Ok(Ok((p, client)))
    }

    /// How long `client_id`'s codes live: `code_lifetime`, at most a minute under the fapi2
    /// profile (FAPI 2.0 Security Profile §5.3). The client is read only when the setting exceeds that.
    async fn code_ttl_for(&self, client_id: &ClientId) -> Result<u64, Error> {
        let ttl = self.config.code_ttl;
        if ttl <= crate::protection::FAPI2_MAX_CODE_TTL {
            return Ok(ttl);
        }
        // Metadata-document clients are not in the store; they have no profile of their own.
        let fapi = match self.store.client(client_id).await? {
            Some(c) => self.config.protection.profile_of(&c) == crate::store::SecurityProfile::Fapi2,
            None => self.config.protection.profile == crate::store::SecurityProfile::Fapi2,
        };
        Ok(if fapi { ttl.min(crate::protection::FAPI2_MAX_CODE_TTL) } else { ttl })
    }

    /// Issues a code for a request the user has authorised and returns the redirect (RFC 6749
    /// §4.1.2, with `iss` per RFC 9207 so the client can detect mix-up attacks).
    pub(crate) async fn issue_code(
        &self,
        req: &PendingAuthorization,
        session: &SessionRecord,
        now: UnixTime,
    ) -> Result<String, Error> {
        // OpenID Connect Core §5.5.1: asked for one subject, never answer for another, even one
        // with a live session here.
        if let Some(sub) = req.claims.as_ref().and_then(|c| c.subject())
            && sub != session.user_id
        {
            let e = OAuthError::new(
                ErrorCode::LoginRequired,
                "the claims parameter asks for another subject (sub) than the signed-in user",
            );
            return Ok(error_redirect(self.issuer(), &req.redirect_uri, req.state.as_ref(), &e));
        }
        let code = AuthorizationCode::generate();
        let code_ttl = self.code_ttl_for(&req.client_id).await?;
        self.store
            .insert_code(&CodeRecord {
                hash: code.hash(),
                client_id: req.client_id.clone(),
                user_id: session.user_id.clone(),
                redirect_uri: req.redirect_uri.clone(),
                scope: req.scope.clone(),
                code_challenge: req.code_challenge.clone(),
                nonce: req.nonce.clone(),
                sid: session.sid.clone(),
                auth_time: session.auth_time,
                expires_at: now + code_ttl as UnixTime,
                used_at: None,
                grant_id: None,
                resource: req.resource.clone(),
                authn: session.authn.clone(),
                claims: req.claims.clone(),
                dpop_jkt: req.dpop_jkt.clone(),
            })
            .await?;
        Ok(with_params(
            &req.redirect_uri,
            &[
                ("code", Some(code.expose_secret())),
                ("state", req.state.as_ref().map(State::as_str)),
                ("iss", Some(self.issuer())),
            ],
        ))
    }
}

#[cfg(test)]
mod tests;
