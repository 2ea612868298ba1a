//! Pushed authorization requests (RFC 9126): the client sends its authorization request straight
//! to the server, authenticated, and gets a `request_uri` that the browser carries to
//! `/authorize` in its place. None of the request travels through the browser, where anyone could
//! read or alter it, and it is validated in full before a user sees anything: a bad redirect URI
//! or PKCE is refused here, to the client, not later on a page.
//!
//! The `request_uri` is `urn:ietf:params:oauth:request_uri:` and 256 random bits; only the hash of
//! the random part is stored. It is used once, within `[par] ttl` seconds, and only with the
//! `client_id` that pushed it (`crate::pushed` keeps the store's side of those promises).

use latchkey_proto::secret::random_token;
use latchkey_proto::{ClientAuth, ErrorCode, OAuthError, Params, ResourceUri, TokenHash};

use crate::grant::client_auth::{self, Endpoint};
use crate::pushed::{PushedRequest, REQUEST_URI_PREFIX};
use crate::{Error, Provider, UnixTime};

/// The answer of the PAR endpoint (RFC 9126 §2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    pub request_uri: String,
    pub expires_in: u64,
}

/// Parameters that authenticate the client at the PAR endpoint: not part of the request kept.
const CLIENT_AUTH_PARAMS: [&str; 3] = ["client_secret", "client_assertion", "client_assertion_type"];

fn invalid_request_uri(why: &'static str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidRequestUri, why)
}

impl Provider {
    /// `POST /par`: authenticates the client as the token endpoint would, validates the request as
    /// `/authorize` would, and stores it.
    pub async fn push_authorization_request(
        &self,
        auth: &ClientAuth,
        params: &Params,
        dpop: &[&str],
        now: UnixTime,
    ) -> Result<Pushed, Error> {
        let client = client_auth::authenticate(self, auth, Endpoint::PushedAuthorization, now).await?;
        // RFC 9449 §10.1: a DPoP proof here binds the code to its key, as dpop_jkt does. Checked
        // after client authentication, so an unknown client's proofs cost no replay mark.
        let endpoint = crate::dpop::Endpoint::PushedAuthorization;
        let proof_request = crate::dpop::ProofRequest { values: dpop, method: "POST", endpoint, access_token: None };
        let proof = self.check_dpop_proof(&proof_request, now).await?;
        let dpop_jkt = crate::dpop::pushed_binding(params.get("dpop_jkt"), proof.as_ref())?;
        if params.contains("request_uri") {
            return Err(OAuthError::invalid_request(
                "request_uri must not be sent to the pushed authorization request endpoint (RFC 9126 §2.1): push the authorization request's parameters themselves",
            )
            .into());
        }
        if params.contains("request") {
            return Err(OAuthError::new(
                ErrorCode::RequestNotSupported,
                "request objects (JAR, RFC 9101) are not supported: push the authorization request's parameters as a form",
            )
            .into());
        }
        // The request kept is what `/authorize` will read: its parameters without the client's
        // credentials, and the authenticated client's id (§2.1: with HTTP Basic the body may
        // lack it; the edge already refused a body client_id naming another client).
        let kept =
            params.iter().filter(|(k, _)| !CLIENT_AUTH_PARAMS.contains(k) && !matches!(*k, "client_id" | "dpop_jkt"));
        // In a block: the serializer is not Send and must be gone before the next await.
        let encoded = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.extend_pairs(kept).append_pair("client_id", client.client_id.as_str());
            if let Some(jkt) = &dpop_jkt {
                form.append_pair("dpop_jkt", jkt);
            }
            form.finish()
        };
        let request = Params::parse(encoded.as_bytes())?;
        let registered = match request.get("resource").map(ResourceUri::parse) {
            Some(Ok(uri)) => self.store.resource(&uri).await?,
            _ => None,
        };
        let cfg = &self.config;
        crate::authorize::validate(
            &request,
            Some(&client),
            self.issuer(),
            now,
            cfg.pending_ttl,
            registered.as_ref(),
            cfg.allow_unregistered_resources,
        )
        .map_err(|refusal| refusal.error)?;
        let par = &cfg.protection.par;
        let random = random_token();
        let record = PushedRequest {
            hash: TokenHash::of(&random),
            client_id: client.client_id.clone(),
            params: encoded,
            created_at: now,
            expires_at: now.saturating_add(i64::try_from(par.ttl).unwrap_or(i64::MAX)),
        };
        if !self.store.insert_pushed(&record, par.max_per_client, now).await? {
            tracing::warn!(client_id = %client.client_id, "pushed authorization requests: the client's limit is reached");
            return Err(OAuthError::new(
                ErrorCode::TemporarilyUnavailable,
                format!(
                    "this client already has {} pushed authorization requests waiting to be used; they expire {} seconds after they were pushed",
                    par.max_per_client, par.ttl
                ),
            )
            .into());
        }
        tracing::info!(client_id = %client.client_id, "authorization request pushed");
        Ok(Pushed { request_uri: format!("{REQUEST_URI_PREFIX}{random}"), expires_in: par.ttl })
    }

    /// The pushed request a `request_uri` at `/authorize` stands for, taken (single use). `front`
    /// is what the browser brought: `client_id` must name the client that pushed it (RFC 9126
    /// §4). `Ok(Err(_))`: the error page to show.
    pub(crate) async fn take_pushed(
        &self,
        front: &Params,
        request_uri: &str,
        now: UnixTime,
    ) -> Result<Result<Params, OAuthError>, Error> {
        let Some(client_id) = front.get("client_id") else {
            return Ok(Err(OAuthError::invalid_request(
                "client_id is required with request_uri (RFC 9126 §4): send the client_id that pushed the request",
            )));
        };
        let Some(random) = request_uri.strip_prefix(REQUEST_URI_PREFIX).filter(|r| r.len() == 43) else {
            return Ok(Err(invalid_request_uri(
                "request_uri is not one this server issued: only request_uri values from its pushed authorization request endpoint (/par) are accepted",
            )));
        };
        // Taken before the client is compared: a request_uri shown to another client is spent.
        let Some(pushed) = self.store.take_pushed(&TokenHash::of(random), now).await? else {
            return Ok(Err(invalid_request_uri(
                "request_uri is unknown, expired or already used: each pushed request is used once and briefly; push the authorization request again",
            )));
        };
        if pushed.client_id.as_str() != client_id {
            tracing::warn!(pushed_by = %pushed.client_id, "a request_uri was brought with another client_id");
            return Ok(Err(invalid_request_uri(
                "request_uri was pushed by another client than the client_id sent with it",
            )));
        }
        let params = Params::parse(pushed.params.as_bytes())
            .map_err(|e| anyhow::anyhow!("a stored pushed request does not parse: {}", e.description))?;
        Ok(Ok(params))
    }
}
