//! DPoP at the authorization server (RFC 9449): the proof a request carries, and what a proof
//! binds (a code, a refresh-token family, an access token).
//!
//! One entry point checks a request's proof ([`Provider::check_dpop_proof`]): the proof's form
//! and signature, `htm`, `htu` against the URL built from the configured issuer (never from the
//! `Host` header, which the client chooses), the `iat` window, `ath`, the server nonce when the
//! deployment requires one, and last the single use of its `jti` in the shared replay store, so
//! that two instances on one database never both accept a proof. The rest of this module is the
//! pure decisions about bindings, called by the grants and by userinfo.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
pub use jsonwebtoken::Algorithm;
use latchkey_proto::dpop::{DpopError, DpopProof, Expected, NonceKeeper};
use latchkey_proto::{ErrorCode, OAuthError};

use crate::protection::DpopConfig;
use crate::replay::ReplayKind;
use crate::store::{ClientRecord, GrantRecord};
use crate::{Error, Provider, UnixTime};

/// The endpoints of this server that take proofs: each one's `htu` is the issuer and its path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Token,
    Userinfo,
    /// The pushed authorization request endpoint, where a proof binds the code (§10.1).
    PushedAuthorization,
}

impl Endpoint {
    pub fn path(self) -> &'static str {
        match self {
            Self::Token => "/token",
            Self::Userinfo => "/userinfo",
            Self::PushedAuthorization => "/par",
        }
    }
}

/// What a request's `DPoP` header values must match: everything of [`Expected`] but the clock.
#[derive(Clone, Copy, Debug)]
pub struct ProofRequest<'a> {
    /// The raw values of every `DPoP` header of the request (§4.3 point 1: exactly one is
    /// accepted); empty when there is none.
    pub values: &'a [&'a str],
    /// The request's method (`POST` at the token endpoint; `GET` or `POST` at userinfo).
    pub method: &'a str,
    pub endpoint: Endpoint,
    /// The access token the request presents (userinfo), whose hash `ath` must be.
    pub access_token: Option<&'a str>,
}

/// The names of `algorithms`, as `dpop_signing_alg_values_supported` and the `algs` of a
/// `WWW-Authenticate: DPoP` challenge list them.
pub fn alg_names(algorithms: &[Algorithm]) -> Vec<String> {
    // `Algorithm`'s Debug form is its JOSE name (`ES256`, `EdDSA`).
    algorithms.iter().map(|a| format!("{a:?}")).collect()
}

/// An algorithm a deployment may accept in proofs, by its JOSE name: asymmetric only (§4.3
/// point 5: a proof is verified with the public key it carries, so a shared-secret MAC proves
/// nothing).
pub fn parse_algorithm(name: &str) -> Result<Algorithm, String> {
    let alg: Algorithm = name
        .parse()
        .map_err(|_| format!("{name:?} is not a JOSE algorithm name (ES256, ES384, EdDSA, RS256, PS256, …)"))?;
    if alg.family() == jsonwebtoken::AlgorithmFamily::Hmac {
        return Err(format!("{name} is symmetric; DPoP proofs are signed with asymmetric keys only (RFC 9449 §4.3)"));
    }
    Ok(alg)
}

/// The checks of §4.3 that need no store: which proof (if any), its form, signature, claims and
/// nonce. Pure; [`Provider::check_dpop_proof`] adds the replay check.
pub fn decide(
    req: &ProofRequest<'_>,
    issuer: &str,
    cfg: &DpopConfig,
    nonces: &NonceKeeper,
    now: UnixTime,
) -> Result<Option<DpopProof>, DpopError> {
    let Some(raw) = DpopProof::single(req.values.iter().copied())? else {
        return Ok(None);
    };
    let proof = DpopProof::parse(raw, &cfg.algorithms)?;
    // §4.3 point 9: the URL this server is reachable at is its issuer's, whatever the Host header
    // of this request said; a proof made for another server (or path) is refused.
    let url = format!("{issuer}{}", req.endpoint.path());
    let expected = Expected {
        method: req.method,
        url: &url,
        access_token: req.access_token,
        max_age: cfg.max_age,
        max_skew: cfg.max_skew,
    };
    proof.check(&expected, now)?;
    // §8: a proof made in advance (by a thief who briefly held the key) has no current nonce. A
    // nonce the server did not ask for is ignored, as §8 leaves it to the server.
    if cfg.require_nonce && !proof.nonce.as_deref().is_some_and(|n| nonces.accepts(n, now)) {
        return Err(DpopError::Nonce);
    }
    Ok(Some(proof))
}

/// A token request without a proof from a client that must send one: it registered
/// `dpop_bound_access_tokens` (§5.2), or its profile requires sender-constrained tokens.
pub fn required(requires: bool, proof: Option<&DpopProof>) -> Result<(), OAuthError> {
    if requires && proof.is_none() {
        return Err(OAuthError::new(
            ErrorCode::InvalidDpopProof,
            "this client must send a DPoP proof with every token request (dpop_bound_access_tokens, RFC 9449 §5.2): add a DPoP header",
        ));
    }
    Ok(())
}

/// §10: a code whose authorization request carried `dpop_jkt` is redeemed only with a proof by
/// that key. Pure; checked before a code's replay is acted on, so a thief without the key revokes
/// nothing.
pub fn code_binding(dpop_jkt: Option<&str>, proof: Option<&DpopProof>) -> Result<(), OAuthError> {
    match (dpop_jkt, proof) {
        (None, _) => Ok(()),
        (Some(_), None) => Err(OAuthError::new(
            ErrorCode::InvalidDpopProof,
            "this authorization code is bound to a DPoP key (dpop_jkt of the authorization request, RFC 9449 §10): send a DPoP proof signed by that key",
        )),
        (Some(jkt), Some(p)) => p.check_key(jkt).map_err(|_| {
            OAuthError::new(
                ErrorCode::InvalidDpopProof,
                "the DPoP proof is signed by another key than the dpop_jkt of the authorization request (RFC 9449 §10)",
            )
        }),
    }
}

/// §10.1: a proof sent to the PAR endpoint binds the code to its key, as `dpop_jkt` would; a
/// request that carries both must name the proof's key. Returns the `dpop_jkt` the pushed request
/// is to carry (`None`: neither was sent). Pure.
pub fn pushed_binding(dpop_jkt: Option<&str>, proof: Option<&DpopProof>) -> Result<Option<String>, OAuthError> {
    match (dpop_jkt, proof) {
        (None, None) => Ok(None),
        (Some(jkt), None) => parse_dpop_jkt(jkt).map(Some),
        (None, Some(p)) => Ok(Some(p.jkt.clone())),
        (Some(jkt), Some(p)) => p.check_key(jkt).map(|()| Some(p.jkt.clone())).map_err(|_| {
            OAuthError::new(
                ErrorCode::InvalidDpopProof,
                "the DPoP proof sent to the PAR endpoint is signed by another key than the request's dpop_jkt names (RFC 9449 §10.1): send one key",
            )
        }),
    }
}

/// §5.2: a public client's refresh tokens are bound to the key of the token request that created
/// the family; every refresh must prove it. A confidential client's are bound by its
/// authentication instead (`dpop_jkt` is never recorded for one). Pure; checked before a spent
/// token's reuse is acted on, so a thief without the key revokes nothing.
pub fn refresh_binding(grant: &GrantRecord, proof: Option<&DpopProof>) -> Result<(), OAuthError> {
    match (grant.dpop_jkt.as_deref(), proof) {
        (None, _) => Ok(()),
        (Some(_), None) => Err(OAuthError::new(
            ErrorCode::InvalidDpopProof,
            "this refresh token is bound to a DPoP key (RFC 9449 §5.2): send a DPoP proof signed by the key the tokens were first issued for",
        )),
        (Some(jkt), Some(p)) => p.check_key(jkt).map_err(|_| {
            OAuthError::new(
                ErrorCode::InvalidDpopProof,
                "the DPoP proof is signed by another key than the one this refresh token is bound to (RFC 9449 §5.2)",
            )
        }),
    }
}

/// The key a new grant's refresh tokens are bound to: the proof's, for a public client (§5.2).
pub fn family_key(client: &ClientRecord, proof: Option<&DpopProof>) -> Option<String> {
    proof.filter(|_| client.is_public()).map(|p| p.jkt.clone())
}

/// How a request to a protected resource presented its access token (RFC 6750 §2.1, RFC 9449 §7.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessScheme {
    Bearer,
    Dpop,
}

/// Whether a token bound to `cnf_jkt` (or to nothing) may be used as presented. Pure; the proof,
/// if the scheme is DPoP, was checked by [`Provider::check_dpop_proof`] with the token's `ath`.
pub fn resource_access(
    scheme: AccessScheme,
    cnf_jkt: Option<&str>,
    proof: Option<&DpopProof>,
) -> Result<(), OAuthError> {
    match (scheme, cnf_jkt) {
        (AccessScheme::Bearer, None) => Ok(()),
        // §7.2: a bound token presented as a bearer token is what a thief without the key does.
        (AccessScheme::Bearer, Some(_)) => Err(OAuthError::invalid_token(
            "this access token is bound to a DPoP key: present it with Authorization: DPoP and a DPoP proof (RFC 9449 §7.2)",
        )),
        (AccessScheme::Dpop, None) => {
            Err(OAuthError::invalid_token("this access token is not DPoP-bound: present it with the Bearer scheme"))
        }
        (AccessScheme::Dpop, Some(jkt)) => match proof {
            None => Err(OAuthError::new(
                ErrorCode::InvalidDpopProof,
                "the DPoP scheme needs a DPoP proof: add a DPoP header (RFC 9449 §7.1)",
            )),
            Some(p) => p.check_key(jkt).map_err(|e| OAuthError::dpop(&e)),
        },
    }
}

/// `dpop_jkt` of an authorization request (§10): the base64url (unpadded) SHA-256 JWK thumbprint
/// (RFC 7638) of the key the client will prove at the token endpoint.
pub fn parse_dpop_jkt(value: &str) -> Result<String, OAuthError> {
    let ok = value.len() == 43 && URL_SAFE_NO_PAD.decode(value).is_ok_and(|b| b.len() == 32);
    if ok {
        Ok(value.to_owned())
    } else {
        Err(OAuthError::invalid_request(
            "dpop_jkt must be the base64url SHA-256 JWK thumbprint of the client's DPoP key: 43 characters, no padding (RFC 9449 §10, RFC 7638)",
        ))
    }
}

/// The nonce keeper of a deployment: its key is derived from the server secret every instance
/// shares (`server_key`), so a nonce handed out by one instance is accepted by the others.
pub(crate) fn nonce_keeper(server_key: &crate::server_key::ServerKey, lifetime: i64) -> NonceKeeper {
    NonceKeeper::new(server_key.mac("dpop-nonce", b"").as_ref(), lifetime)
}

impl Provider {
    /// The nonce to hand out in `DPoP-Nonce` (§8.1, §8.2: also on successful responses), when
    /// the deployment requires nonces.
    pub fn dpop_nonce(&self, now: UnixTime) -> Option<String> {
        self.config.protection.dpop.require_nonce.then(|| self.dpop_nonces.current(now))
    }

    /// `algs` of a `WWW-Authenticate: DPoP` challenge (§7.1), space-separated.
    pub fn dpop_algs(&self) -> String {
        alg_names(&self.config.protection.dpop.algorithms).join(" ")
    }

    /// Checks a request's DPoP proof (§4.3): `Ok(None)` when it carries none. A proof that
    /// passes is marked used until it could no longer be accepted anyway (its `iat` window), in
    /// one atomic store step (§11.1): a second use, on this instance or another, is refused.
    pub async fn check_dpop_proof(&self, req: &ProofRequest<'_>, now: UnixTime) -> Result<Option<DpopProof>, Error> {
        let cfg = &self.config.protection.dpop;
        let proof = decide(req, &self.config.issuer, cfg, &self.dpop_nonces, now).map_err(|e| OAuthError::dpop(&e))?;
        let Some(proof) = proof else { return Ok(None) };
        let expires_at = proof.iat.saturating_add(cfg.max_age).saturating_add(cfg.max_skew);
        if !self.store.first_use(ReplayKind::DpopProof, &proof.replay_key(), expires_at, now).await? {
            return Err(OAuthError::dpop(&DpopError::Replayed).into());
        }
        Ok(Some(proof))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_proto::dpop::{DEFAULT_ALGORITHMS, DpopKey};

    const ISSUER: &str = "https://id.example";

    fn cfg(require_nonce: bool) -> DpopConfig {
        DpopConfig {
            algorithms: DEFAULT_ALGORITHMS.to_vec(),
            max_age: 60,
            max_skew: 10,
            require_nonce,
            nonce_lifetime: 60,
        }
    }

    fn token_request<'a>(values: &'a [&'a str]) -> ProofRequest<'a> {
        ProofRequest { values, method: "POST", endpoint: Endpoint::Token, access_token: None }
    }

    #[test]
    fn a_proof_for_the_issuers_url_passes_and_one_for_another_host_or_path_does_not() {
        let key = DpopKey::generate().unwrap();
        let nonces = NonceKeeper::new(&[1; 32], 60);
        let good = key.proof("POST", "https://id.example/token", 1000, None, None).unwrap();
        let p = decide(&token_request(&[&good]), ISSUER, &cfg(false), &nonces, 1000).unwrap().unwrap();
        assert_eq!(p.jkt, key.jkt());
        assert_eq!(decide(&token_request(&[]), ISSUER, &cfg(false), &nonces, 1000), Ok(None), "no proof");
        for url in ["https://evil.example/token", "https://id.example/userinfo", "http://id.example/token"] {
            let other = key.proof("POST", url, 1000, None, None).unwrap();
            let e = decide(&token_request(&[&other]), ISSUER, &cfg(false), &nonces, 1000).unwrap_err();
            assert!(matches!(e, DpopError::Url { .. }), "{url}: {e}");
        }
        let get = key.proof("GET", "https://id.example/token", 1000, None, None).unwrap();
        assert!(matches!(
            decide(&token_request(&[&get]), ISSUER, &cfg(false), &nonces, 1000),
            Err(DpopError::Method { .. })
        ));
        assert_eq!(
            decide(&token_request(&[&good, &good]), ISSUER, &cfg(false), &nonces, 1000),
            Err(DpopError::Multiple)
        );
        assert!(matches!(
            decide(&token_request(&[&good]), ISSUER, &cfg(false), &nonces, 1061),
            Err(DpopError::Stale { .. })
        ));
    }

    #[test]
    fn a_required_nonce_must_be_a_current_one_of_this_deployment() {
        let key = DpopKey::generate().unwrap();
        let nonces = NonceKeeper::new(&[1; 32], 60);
        let url = "https://id.example/token";
        let none = key.proof("POST", url, 1000, None, None).unwrap();
        assert_eq!(decide(&token_request(&[&none]), ISSUER, &cfg(true), &nonces, 1000), Err(DpopError::Nonce));
        assert!(decide(&token_request(&[&none]), ISSUER, &cfg(false), &nonces, 1000).is_ok(), "not required");
        let current = nonces.current(1000);
        let with = key.proof("POST", url, 1000, Some(&current), None).unwrap();
        assert!(decide(&token_request(&[&with]), ISSUER, &cfg(true), &nonces, 1000).is_ok());
        let foreign = NonceKeeper::new(&[2; 32], 60).current(1000);
        let forged = key.proof("POST", url, 1000, Some(&foreign), None).unwrap();
        assert_eq!(decide(&token_request(&[&forged]), ISSUER, &cfg(true), &nonces, 1000), Err(DpopError::Nonce));
        let old = key.proof("POST", url, 1150, Some(&current), None).unwrap();
        assert_eq!(decide(&token_request(&[&old]), ISSUER, &cfg(true), &nonces, 1150), Err(DpopError::Nonce));
    }

    #[test]
    fn bindings_of_codes_refresh_families_and_access_tokens() {
        let key = DpopKey::generate().unwrap();
        let other = DpopKey::generate().unwrap();
        let nonces = NonceKeeper::new(&[1; 32], 60);
        let parse = |k: &DpopKey| {
            let raw = k.proof("POST", "https://id.example/token", 1000, None, None).unwrap();
            decide(&token_request(&[&raw]), ISSUER, &cfg(false), &nonces, 1000).unwrap().unwrap()
        };
        let (mine, theirs) = (parse(&key), parse(&other));

        assert!(code_binding(None, None).is_ok());
        assert!(code_binding(None, Some(&theirs)).is_ok());
        assert!(code_binding(Some(key.jkt()), Some(&mine)).is_ok());
        assert_eq!(code_binding(Some(key.jkt()), Some(&theirs)).unwrap_err().code, ErrorCode::InvalidDpopProof);
        assert_eq!(code_binding(Some(key.jkt()), None).unwrap_err().code, ErrorCode::InvalidDpopProof);

        assert!(required(false, None).is_ok());
        assert!(required(true, Some(&mine)).is_ok());
        assert!(required(true, None).unwrap_err().description.contains("dpop_bound_access_tokens"));

        assert!(resource_access(AccessScheme::Bearer, None, None).is_ok());
        let e = resource_access(AccessScheme::Bearer, Some(key.jkt()), None).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidToken, "a bound token as Bearer");
        assert_eq!(resource_access(AccessScheme::Dpop, None, Some(&mine)).unwrap_err().code, ErrorCode::InvalidToken);
        assert!(resource_access(AccessScheme::Dpop, Some(key.jkt()), Some(&mine)).is_ok());
        let e = resource_access(AccessScheme::Dpop, Some(key.jkt()), Some(&theirs)).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidDpopProof);
        assert_eq!(
            resource_access(AccessScheme::Dpop, Some(key.jkt()), None).unwrap_err().code,
            ErrorCode::InvalidDpopProof
        );
    }

    #[test]
    fn dpop_is_required_by_the_clients_registration_or_the_fapi2_profile() {
        use crate::protection::ProtectionConfig;
        use crate::store::{ClientKind, ClientProtection, SecurityProfile};
        let client = ClientRecord {
            client_id: latchkey_proto::ClientId::parse("spa").unwrap(),
            name: "SPA".into(),
            kind: ClientKind::Public,
            redirect_uris: vec![],
            grant_types: vec![],
            allowed_scope: latchkey_proto::Scope::parse("openid").unwrap(),
            first_party: false,
            created_at: 0,
            id_token_signed_response_alg: Default::default(),
            post_logout_redirect_uris: vec![],
            audiences: vec![],
            origin: Default::default(),
            backchannel_logout: None,
            protection: Default::default(),
            second_factor: Default::default(),
        };
        let standard = ProtectionConfig::default();
        let fapi2 = ProtectionConfig { profile: SecurityProfile::Fapi2, ..Default::default() };
        let bound = ClientRecord {
            protection: ClientProtection { dpop_bound_access_tokens: true, ..Default::default() },
            ..client.clone()
        };
        let own_fapi2 = ClientRecord {
            protection: ClientProtection { profile: Some(SecurityProfile::Fapi2), ..Default::default() },
            ..client.clone()
        };
        assert!(required(standard.requires_dpop(&client), None).is_ok());
        for (cfg, c) in [(&standard, &bound), (&fapi2, &client), (&standard, &own_fapi2)] {
            assert_eq!(required(cfg.requires_dpop(c), None).unwrap_err().code, ErrorCode::InvalidDpopProof);
        }
        assert_eq!(family_key(&client, None), None);
        let key = DpopKey::generate().unwrap();
        let nonces = NonceKeeper::new(&[1; 32], 60);
        let raw = key.proof("POST", "https://id.example/token", 1000, None, None).unwrap();
        let p = decide(&token_request(&[&raw]), ISSUER, &cfg(false), &nonces, 1000).unwrap();
        assert_eq!(family_key(&client, p.as_ref()).as_deref(), Some(key.jkt()), "a public client's family");
        let confidential = ClientRecord { kind: ClientKind::Confidential { secret_hash: "h".into() }, ..client };
        assert_eq!(family_key(&confidential, p.as_ref()), None, "bound by its authentication instead");
    }

    #[test]
    fn dpop_jkt_is_a_sha256_thumbprint() {
        let key = DpopKey::generate().unwrap();
        assert_eq!(parse_dpop_jkt(key.jkt()).unwrap(), key.jkt());
        // RFC 7638 §3.1's example thumbprint.
        assert!(parse_dpop_jkt("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs").is_ok());
        for bad in
            ["", "abc", "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs=", "NzbLsXh8uDCcd+6MNwXF4W/7noWXFZAfHkxZsRGC9Xs"]
        {
            assert_eq!(parse_dpop_jkt(bad).unwrap_err().code, ErrorCode::InvalidRequest, "{bad:?}");
        }
    }

    #[test]
    fn algorithm_names_are_their_jose_names_and_only_asymmetric_ones_are_accepted() {
        assert_eq!(alg_names(DEFAULT_ALGORITHMS), ["ES256", "ES384", "EdDSA", "RS256", "PS256"]);
        assert_eq!(parse_algorithm("ES256"), Ok(Algorithm::ES256));
        assert!(parse_algorithm("HS256").unwrap_err().contains("symmetric"));
        assert!(parse_algorithm("none").unwrap_err().contains("not a JOSE algorithm"));
    }

    #[test]
    fn a_pushed_requests_proof_binds_the_code_unless_dpop_jkt_names_another_key() {
        let key = DpopKey::generate().unwrap();
        let other = DpopKey::generate().unwrap();
        let nonces = NonceKeeper::new(&[1; 32], 60);
        let raw = key.proof("POST", "https://id.example/par", 1000, None, None).unwrap();
        let values = [raw.as_str()];
        let req = ProofRequest {
            values: &values,
            method: "POST",
            endpoint: Endpoint::PushedAuthorization,
            access_token: None,
        };
        let proof = decide(&req, ISSUER, &cfg(false), &nonces, 1000).unwrap().unwrap();
        // A proof made for the token endpoint is not one for the PAR endpoint (§4.3 point 9).
        let at_token = key.proof("POST", "https://id.example/token", 1000, None, None).unwrap();
        let wrong = [at_token.as_str()];
        let req = ProofRequest { values: &wrong, ..req };
        assert!(matches!(decide(&req, ISSUER, &cfg(false), &nonces, 1000), Err(DpopError::Url { .. })));

        assert_eq!(pushed_binding(None, None), Ok(None));
        assert_eq!(pushed_binding(None, Some(&proof)), Ok(Some(key.jkt().to_owned())));
        assert_eq!(pushed_binding(Some(key.jkt()), Some(&proof)), Ok(Some(key.jkt().to_owned())));
        assert_eq!(pushed_binding(Some(other.jkt()), None), Ok(Some(other.jkt().to_owned())));
        let e = pushed_binding(Some(other.jkt()), Some(&proof)).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidDpopProof);
        assert!(e.description.contains("dpop_jkt"), "{}", e.description);
        assert_eq!(pushed_binding(Some("short"), None).unwrap_err().code, ErrorCode::InvalidRequest);
    }
}
