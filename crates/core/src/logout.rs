//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0).
//!
//! `post_logout_redirect_uri` is matched exactly against the client's registered ones (otherwise the
//! endpoint is an open redirector). Without an `id_token_hint` that names the current session the
//! user is asked to confirm, so a third-party page cannot log them out by embedding a link (§6).

use latchkey_proto::{ClientId, OAuthError, Params, RedirectUri, SessionToken, State};
use serde::Deserialize;
use url::Url;

use crate::{Error, Provider, UnixTime};

#[derive(Debug, PartialEq, Eq)]
pub enum LogoutStep {
    /// Ask the user to confirm with a CSRF-protected form.
    Confirm { client_name: Option<String> },
    /// Signed out (or nobody was signed in): go to `redirect` if any, else show a signed-out page.
    Done { redirect: Option<String>, ended: bool },
    /// The request is invalid: show an error page and redirect nowhere.
    ErrorPage(OAuthError),
}

#[derive(Deserialize)]
struct HintClaims {
    iss: String,
    aud: String,
    sid: Option<String>,
}

impl Provider {
    pub async fn logout(
        &self,
        params: &Params,
        cookie: Option<&SessionToken>,
        confirmed: bool,
        now: UnixTime,
    ) -> Result<LogoutStep, Error> {
        let page = |d: &'static str| Ok(LogoutStep::ErrorPage(OAuthError::invalid_request(d)));
        // An expired ID token is still a good hint (RP-Initiated Logout §2): only its signature and issuer matter.
        let hint = match params.get("id_token_hint") {
            Some(t) => match self.keys().verify::<HintClaims>(t, "JWT") {
                Ok(c) if c.iss == self.config.issuer => Some(c),
                _ => return page("id_token_hint is not an ID token issued by this server"),
            },
            None => None,
        };
        let client_id = match params.get("client_id").map(ClientId::parse) {
            Some(Ok(id)) => Some(id),
            Some(Err(e)) => return Ok(LogoutStep::ErrorPage(e)),
            None => None,
        };
        if let (Some(h), Some(c)) = (&hint, &client_id)
            && h.aud != c.as_str()
        {
            return page("client_id does not match the audience of id_token_hint");
        }
        let client_id = match (client_id, &hint) {
            (Some(c), _) => Some(c),
            (None, Some(h)) => ClientId::parse(&h.aud).ok(),
            (None, None) => None,
        };
        let client = match &client_id {
            Some(id) => match self.client(id, now).await? {
                Some(c) => Some(c),
                None => return page("unknown client_id"),
            },
            None => None,
        };
        let redirect_uri = match params.get("post_logout_redirect_uri") {
            None => None,
            Some(raw) => {
                let Some(client) = &client else {
                    return page("post_logout_redirect_uri needs id_token_hint or client_id to identify the client");
                };
                let uri = match RedirectUri::parse(raw) {
                    Ok(u) => u,
                    Err(e) => return Ok(LogoutStep::ErrorPage(e)),
                };
                if !client.post_logout_redirect_uris.iter().any(|r| r.as_str() == uri.as_str()) {
                    return page(
                        "post_logout_redirect_uri is not registered for this client: it must equal a registered one exactly",
                    );
                }
                Some(uri)
            }
        };
        let state = match params.get("state").map(State::parse) {
            Some(Ok(s)) => Some(s),
            Some(Err(e)) => return Ok(LogoutStep::ErrorPage(e)),
            None => None,
        };

        let session = self.current_session(cookie, now).await?;
        let mut ended = false;
        if let Some(session) = session {
            let hinted = hint.as_ref().and_then(|h| h.sid.as_deref()) == Some(session.sid.as_str());
            if !hinted && !confirmed {
                return Ok(LogoutStep::Confirm { client_name: client.map(|c| c.name) });
            }
            // Back-Channel Logout: the one entry point queues, in the store operation that ends the
            // session, the tokens owed to the clients that took part in it (once, whoever else
            // ends it at the same time), and wakes the worker to send them now.
            let req = crate::sessions::EndSessions {
                user_id: &session.user_id,
                which: crate::account_store::SessionSelector::One(session.sid.clone()),
                cause: crate::sessions::EndCause::Logout,
                client_id: client.as_ref().map(|c| c.client_id.as_str()),
                ip: None,
            };
            // Already handed to `sessions_ended` by `Provider::end_sessions`.
            let _ended = self.end_sessions(req, now).await?;
            ended = true;
        }
        let redirect = redirect_uri.map(|u| {
            let Ok(mut url) = Url::parse(u.as_str()) else { return u.to_string() };
            if let Some(s) = &state {
                url.query_pairs_mut().append_pair("state", s.as_str());
            }
            url.into()
        });
        Ok(LogoutStep::Done { redirect, ended })
    }
}
