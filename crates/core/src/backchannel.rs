//! OpenID Connect Back-Channel Logout 1.0: when a login session ends, every client that took part
//! in it and registered a `backchannel_logout_uri` is sent a signed logout token, server to server.
//!
//! The flow:
//! - every store operation that ends sessions finds, in the same transaction, the clients that
//!   took part in each (through the grants made in it, which carry its `sid`), and queues in the
//!   durable outbox one [`LogoutNotice`] per session and client that asked ([`logout_jobs`]
//!   decides which). Ending and queueing commit together: a crash or a failed write cannot end a
//!   session without its notices. A session ended by several concurrent operations (a logout
//!   racing a password change, on two instances) is ended, and queued for, by exactly one, the
//!   one whose `DELETE` removed it;
//! - the operation returns what it ended ([`EndedSessions`]); the server's paths pass it to
//!   [`crate::Provider::sessions_ended`], which wakes the outbox worker (an admin command's
//!   notices are found by the server's next poll);
//! - the worker performs each notice: [`crate::Provider::logout_delivery`] builds the token, the
//!   server's transport POSTs it, and a refusal or an unreachable client is retried with the
//!   outbox's back-off.
//!
//! The token is built when it is sent, not when it is queued: its `exp` stays short (two minutes)
//! and lies ahead of the client's clock on the tenth attempt as on the first; the queue at rest
//! holds no signed token; a process that ends sessions without the keys at hand (`latchkey user
//! set-password` with sealed keys) can still queue; a key rotated meanwhile signs, and is in the
//! JWKS; a client removed meanwhile, or that dropped its URI, gets nothing. Each attempt has a
//! fresh `jti`, so that a client which refused one attempt does not take the next for a replay
//! (§2.6 step 7 lets it refuse a `jti` it has seen).
//!
//! Sessions end, and clients are told, on: RP-initiated logout, a password change or reset
//! (`admin::set_password`), `latchkey user revoke-tokens`, `latchkey user remove`, the eviction of
//! a user's oldest session beyond `max_sessions_per_user`, and any other caller of those store
//! operations (the account page). A session that merely expires is not announced: no operation
//! observes the moment, the spec does not ask for it (§2.7 is about logouts), and the client's own
//! session has its own lifetime.

use std::collections::HashMap;

use latchkey_proto::ClientId;
use latchkey_proto::secret::random_token;
use serde::{Deserialize, Serialize};

use crate::outbox::{Deliver, DeliveryError, Job};
use crate::store::{ClientRecord, EndedSessions};
use crate::{Error, Provider, UnixTime};

/// The `typ` header of logout tokens (§2.4, recommended; §4.1 explicit typing): no ID token or
/// access token verifier takes one for its own kind, and our `id_token_hint` check refuses it.
pub const TOKEN_TYPE: &str = "logout+jwt";

/// The one member of the `events` claim (§2.4).
pub const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// Lifetime of a logout token, in seconds: it is used at once by a server, so only clock skew
/// needs room; a token captured on the way is worthless soon after.
pub const TOKEN_TTL: u64 = 120;

/// One logout token to deliver: the intent, queued in the outbox; the token itself is built at
/// each attempt ([`crate::Provider::logout_delivery`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LogoutNotice {
    pub client_id: ClientId,
    /// The user whose session ended.
    pub sub: String,
    /// The ended session: the `sid` of the ID tokens the client got in it.
    pub sid: String,
}

/// The claims of a logout token (§2.4).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogoutClaims {
    pub iss: String,
    /// The client's `client_id`: a token for one client cannot be replayed to another.
    pub aud: String,
    pub iat: UnixTime,
    /// §2.4 lists `exp` as recommended: bounded life for a token that travels.
    pub exp: UnixTime,
    pub jti: String,
    /// Always sent with `sid`: a client that keys its sessions by user logs out that user's session,
    /// one that keys them by `sid` finds exactly this one. ID tokens always carry `sid` too.
    pub sub: String,
    pub sid: String,
    /// `{"http://schemas.openid.net/event/backchannel-logout": {}}`. There is never a `nonce`
    /// (§2.4: its absence is what makes a logout token unusable as an ID token).
    pub events: serde_json::Value,
}

impl LogoutClaims {
    /// The claims for `notice` at `now`, with a fresh `jti`. Pure apart from the random `jti`.
    pub fn new(issuer: &str, notice: &LogoutNotice, now: UnixTime) -> Self {
        Self {
            iss: issuer.to_owned(),
            aud: notice.client_id.as_str().to_owned(),
            iat: now,
            exp: now + TOKEN_TTL as UnixTime,
            jti: random_token(),
            sub: notice.sub.clone(),
            sid: notice.sid.clone(),
            events: serde_json::json!({ LOGOUT_EVENT: {} }),
        }
    }
}

/// What one delivery attempt sends: the form `logout_token=…` POSTed to `uri` (§2.5).
#[derive(Clone, PartialEq, Eq)]
pub struct LogoutDelivery {
    pub uri: String,
    pub logout_token: String,
    /// The client was registered by an administrator: its URI may point into the deployment's
    /// own network. Otherwise (self-registered) the transport reaches only public addresses,
    /// or a stranger could make the server POST into its private network.
    pub vetted: bool,
}

impl std::fmt::Debug for LogoutDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token logs the user out of the client while it lives: not for the log.
        f.debug_struct("LogoutDelivery").field("uri", &self.uri).field("vetted", &self.vetted).finish_non_exhaustive()
    }
}

/// The notices owed for `ended`: one per session and client, for the clients `wants` says
/// registered a back-channel logout URI. Pure.
pub fn notices(ended: &EndedSessions, wants: impl Fn(&ClientId) -> bool) -> Vec<LogoutNotice> {
    ended
        .iter()
        .flat_map(|s| {
            s.clients.iter().filter(|c| wants(c)).map(|c| LogoutNotice {
                client_id: c.clone(),
                sub: s.user_id.clone(),
                sid: s.sid.clone(),
            })
        })
        .collect()
}

/// The outbox jobs owed for `ended`: one [`Job::BackchannelLogout`] per session and client, for
/// the clients in `clients` that registered a back-channel logout URI (one missing from it was
/// removed: nothing is owed). Pure: the store calls it in the transaction that ended the sessions.
///
/// Only clients in the store get logout tokens: a client known by its metadata document is never
/// sent one (it is public and unvetted, its document could name any address, and there is no
/// record of it to read when the token is sent).
pub fn logout_jobs(ended: &EndedSessions, clients: &HashMap<ClientId, ClientRecord>) -> Vec<Job> {
    notices(ended, |c| clients.get(c).is_some_and(|c| c.backchannel_logout.is_some()))
        .into_iter()
        .map(Job::BackchannelLogout)
        .collect()
}

impl Provider {
    /// The one call every session-ending path makes with what its store operation returned. The
    /// store has queued the logout tokens owed, in the transaction that ended the sessions; this
    /// wakes this process's outbox worker so that they leave now.
    pub fn sessions_ended(&self, ended: &EndedSessions) {
        if !ended.is_empty() {
            tracing::debug!(
                sessions = ended.len(),
                "sessions ended; back-channel logout tokens queued for their clients"
            );
            self.outbox_wake.notify_one();
        }
    }

    /// The outbox job [`Job::BackchannelLogout`]: one attempt at delivering `notice`.
    pub(crate) async fn send_logout_token(
        &self,
        notice: &LogoutNotice,
        deliver: &dyn Deliver,
        now: UnixTime,
    ) -> Result<(), DeliveryError> {
        let delivery = self.logout_delivery(notice, now).await.map_err(|e| {
            tracing::error!(error = %e, client_id = %notice.client_id, "back-channel logout: cannot build the logout token");
            DeliveryError::transient("cannot build the logout token (see the server log)")
        })?;
        let Some(d) = delivery else {
            tracing::info!(client_id = %notice.client_id, "back-channel logout: the client is gone or no longer wants logout tokens");
            return Ok(());
        };
        deliver.post_logout_token(&d).await?;
        tracing::info!(client_id = %notice.client_id, sid = %notice.sid, "back-channel logout token delivered");
        Ok(())
    }

    /// What to send for `notice` at `now`: the logout token, signed now with the client's ID
    /// token algorithm, and where to send it. `None` when there is nothing to send any more (the
    /// client was removed, or no longer has a back-channel logout URI).
    pub async fn logout_delivery(&self, notice: &LogoutNotice, now: UnixTime) -> Result<Option<LogoutDelivery>, Error> {
        let Some(client) = self.store.client(&notice.client_id).await? else { return Ok(None) };
        let Some(bcl) = &client.backchannel_logout else { return Ok(None) };
        let claims = LogoutClaims::new(&self.config.issuer, notice, now);
        let keys = self.keys();
        let token = keys.signer(client.id_token_signed_response_alg)?.sign(TOKEN_TYPE, &claims)?;
        Ok(Some(LogoutDelivery { uri: bcl.uri.clone(), logout_token: token, vetted: client.vetted() }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KeySet, SigningKey};
    use crate::store::{EndedSession, SigningAlg};

    fn id(s: &str) -> ClientId {
        ClientId::parse(s).unwrap()
    }

    #[test]
    fn one_notice_per_session_and_client_that_asked() {
        let ended = EndedSessions(vec![
            EndedSession { sid: "s1".into(), user_id: "u".into(), clients: vec![id("a"), id("b"), id("c")] },
            EndedSession { sid: "s2".into(), user_id: "u".into(), clients: vec![id("a")] },
            EndedSession { sid: "s3".into(), user_id: "u".into(), clients: vec![] },
        ]);
        let got = notices(&ended, |c| c.as_str() != "b");
        let want = [("a", "s1"), ("c", "s1"), ("a", "s2")].map(|(c, s)| LogoutNotice {
            client_id: id(c),
            sub: "u".into(),
            sid: s.into(),
        });
        assert_eq!(got, want);
        assert!(notices(&ended, |_| false).is_empty(), "no client asked: nothing is queued");
    }

    #[test]
    fn jobs_go_to_clients_with_a_logout_uri_that_still_exist() {
        let ended = EndedSessions(vec![EndedSession {
            sid: "s1".into(),
            user_id: "u".into(),
            clients: vec![id("wants"), id("plain"), id("removed")],
        }]);
        let record = |cid: &str, uri: bool| crate::store::ClientRecord {
            client_id: id(cid),
            name: cid.into(),
            kind: crate::store::ClientKind::Public,
            redirect_uris: vec![],
            grant_types: vec![],
            allowed_scope: latchkey_proto::Scope::parse("openid").unwrap(),
            first_party: false,
            created_at: 0,
            id_token_signed_response_alg: SigningAlg::RS256,
            post_logout_redirect_uris: vec![],
            audiences: vec![],
            origin: Default::default(),
            second_factor: Default::default(),
            backchannel_logout: uri.then(|| crate::store::BackchannelLogout {
                uri: "https://rp.example/bcl".into(),
                session_required: false,
            }),
            protection: Default::default(),
        };
        let clients: HashMap<_, _> =
            [record("wants", true), record("plain", false)].into_iter().map(|c| (c.client_id.clone(), c)).collect();
        let want = LogoutNotice { client_id: id("wants"), sub: "u".into(), sid: "s1".into() };
        assert_eq!(logout_jobs(&ended, &clients), vec![Job::BackchannelLogout(want.clone())]);
        // Stored as a tagged outbox job, and read back.
        let stored = Job::BackchannelLogout(want.clone()).to_stored();
        assert!(stored.contains(r#""kind":"backchannel_logout""#), "{stored}");
        assert_eq!(Job::from_stored(&stored), Job::BackchannelLogout(want));
    }

    #[test]
    fn a_logout_token_has_the_claims_of_section_2_4_and_no_nonce() {
        let n = LogoutNotice { client_id: id("app"), sub: "user-1".into(), sid: "sid-1".into() };
        let c = LogoutClaims::new("https://id.example", &n, 1000);
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["iss"], "https://id.example");
        assert_eq!(v["aud"], "app");
        assert_eq!((v["iat"].as_i64(), v["exp"].as_i64()), (Some(1000), Some(1120)));
        assert_eq!((v["sub"].as_str(), v["sid"].as_str()), (Some("user-1"), Some("sid-1")));
        assert_eq!(v["events"], serde_json::json!({ "http://schemas.openid.net/event/backchannel-logout": {} }));
        assert!(v.get("nonce").is_none(), "§2.4: a nonce is prohibited");
        assert!(c.jti.len() >= 22);
        assert_ne!(c.jti, LogoutClaims::new("https://id.example", &n, 1000).jti, "each attempt has its own jti");
    }

    #[test]
    fn a_signed_logout_token_is_typed_and_is_not_an_id_token() {
        let recs: Vec<_> = SigningAlg::ALL.iter().map(|a| SigningKey::generate(*a, 1).unwrap()).collect();
        let keys = KeySet::from_records(&recs).unwrap();
        let n = LogoutNotice { client_id: id("app"), sub: "u".into(), sid: "s".into() };
        for alg in SigningAlg::ALL {
            let token =
                keys.signer(alg).unwrap().sign(TOKEN_TYPE, &LogoutClaims::new("https://id.example", &n, 5)).unwrap();
            let header = jsonwebtoken::decode_header(&token).unwrap();
            assert_eq!(header.typ.as_deref(), Some("logout+jwt"));
            assert_eq!(format!("{:?}", header.alg), alg.as_str());
            let claims: LogoutClaims = keys.verify(&token, TOKEN_TYPE).unwrap();
            assert_eq!(claims.sid, "s");
            // The RP-initiated logout check (`id_token_hint`) wants an ID token's type: a logout
            // token handed back as a hint is refused.
            assert!(keys.verify::<serde_json::Value>(&token, "JWT").is_err());
        }
    }

    #[test]
    fn the_delivery_debug_output_leaves_the_token_out() {
        let d = LogoutDelivery {
            uri: "https://rp.example/bcl".into(),
            logout_token: "eyJ.secret.sig".into(),
            vetted: true,
        };
        let s = format!("{d:?}");
        assert!(s.contains("rp.example") && !s.contains("secret"), "{s}");
    }
}
