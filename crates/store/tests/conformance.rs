//! One conformance suite for the `Store` contract, run against every backend.
//!
//! Each check takes a fresh store. The concurrency checks are the one-time guarantees the
//! protocol depends on: a code is redeemed once, a refresh token is rotated once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use latchkey_core::authn::{Acr, AcrRequest, Authentication, Method};
use latchkey_core::email_link::*;
use latchkey_core::mail::{MailJob, Notice};
use latchkey_core::outbox::{Job, OutboxFilter};
use latchkey_core::resource::ResourceRecord;
use latchkey_core::store::*;
use latchkey_core::{Store, UnixTime, throttle};
use latchkey_proto::{ClientId, CodeVerifier, RedirectUri, ResourceUri, Scope, TokenHash};
use latchkey_store::testing::TestDatabase;
use latchkey_store::{PostgresStore, SqliteStore};

/// The account store's checks (profile, lock, sessions, applications), in a file of their own.
#[path = "conformance/account.rs"]
mod account;
#[path = "conformance/devices.rs"]
mod devices;
#[path = "conformance/ended_sessions.rs"]
mod ended_sessions;
#[path = "conformance/factors.rs"]
mod factors;
#[path = "conformance/passkeys.rs"]
mod passkeys;
#[path = "conformance/protection.rs"]
mod protection;

/// A pending request for the client of `code("x")`, expiring at `exp`.
fn pending(exp: UnixTime) -> PendingAuthorization {
    let c = code("x");
    PendingAuthorization {
        client_id: c.client_id,
        redirect_uri: c.redirect_uri,
        scope: c.scope,
        state: None,
        nonce: None,
        code_challenge: c.code_challenge,
        expires_at: exp,
        login_hint: None,
        force_consent: false,
        auth_after: None,
        resource: None,
        purpose: Default::default(),
        acr: None,
        claims: None,
        dpop_jkt: None,
    }
}

const POLICY: PurgePolicy = PurgePolicy { key_publish_window: 100, audit_retention: 0 };
const LIMITS: PendingLimits = PendingLimits { per_source: 100, per_client: 100 };

fn client(id: &str) -> ClientRecord {
    ClientRecord {
        client_id: ClientId::parse(id).unwrap(),
        name: "App".into(),
        kind: ClientKind::Public,
        redirect_uris: vec![RedirectUri::parse("http://127.0.0.1/cb").unwrap()],
        grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
        allowed_scope: Scope::parse("openid profile").unwrap(),
        first_party: false,
        created_at: 1,
        id_token_signed_response_alg: SigningAlg::ES256,
        post_logout_redirect_uris: vec![RedirectUri::parse("https://app.example/bye").unwrap()],
        audiences: vec!["https://api.example".into()],
        origin: Default::default(),
        backchannel_logout: None,
        protection: Default::default(),
        second_factor: Default::default(),
    }
}

fn user(name: &str) -> UserRecord {
    UserRecord {
        id: format!("id-{name}"),
        username: name.into(),
        email: format!("{name}@example.com"),
        email_verified: false,
        name: None,
        password_hash: "$argon2id$stub".into(),
        created_at: 1,
        phone_number: Some("+1 555 0100".into()),
        address: Some("1 Main St, Springfield".into()),
        profile: latchkey_core::profile::Profile {
            given_name: Some(name.into()),
            locale: Some("en-GB".into()),
            ..Default::default()
        },
        updated_at: 1,
        locked_at: None,
    }
}

fn code(hash: &str) -> CodeRecord {
    CodeRecord {
        hash: TokenHash::of(hash),
        client_id: ClientId::parse("app").unwrap(),
        user_id: "id-alice".into(),
        redirect_uri: RedirectUri::parse("http://127.0.0.1/cb").unwrap(),
        scope: Scope::parse("openid").unwrap(),
        code_challenge: CodeVerifier::parse("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk").unwrap().challenge(),
        nonce: None,
        sid: "sid".into(),
        auth_time: 10,
        expires_at: 70,
        used_at: None,
        grant_id: None,
        resource: None,
        authn: Authentication::of(&[Method::Password, Method::Totp]),
        claims: None,
        dpop_jkt: None,
    }
}

fn issuance(grant_id: &str, refresh: &str) -> Issuance {
    Issuance {
        grant: GrantRecord {
            id: grant_id.into(),
            client_id: ClientId::parse("app").unwrap(),
            user_id: "id-alice".into(),
            scope: Scope::parse("openid").unwrap(),
            sid: "sid".into(),
            offline: false,
            auth_time: 10,
            created_at: 20,
            expires_at: 1000,
            revoked_at: None,
            resource: None,
            authn: Some(Authentication::of(&[Method::Password, Method::RecoveryCode])),
            claims: None,
            dpop_jkt: None,
        },
        refresh: Some(RefreshRecord {
            hash: TokenHash::of(refresh),
            grant_id: grant_id.into(),
            scope: Scope::parse("openid").unwrap(),
            issued_at: 20,
            expires_at: 1000,
            consumed_at: None,
            cached_response: None,
        }),
        access: AccessRecord {
            jti: format!("jti-{grant_id}"),
            grant_id: grant_id.into(),
            expires_at: 600,
            revoked_at: None,
        },
    }
}

fn next_refresh(hash: &str, at: i64) -> RefreshRecord {
    RefreshRecord {
        hash: TokenHash::of(hash),
        grant_id: "g".into(),
        scope: Scope::parse("openid").unwrap(),
        issued_at: at,
        expires_at: 1000,
        consumed_at: None,
        cached_response: None,
    }
}

/// `user_id`'s consent for client `app`.
fn consent(user_id: &str, scope: &str, at: UnixTime) -> ConsentRecord {
    ConsentRecord {
        user_id: user_id.into(),
        client_id: ClientId::parse("app").unwrap(),
        scope: Scope::parse(scope).unwrap(),
        updated_at: at,
        claims: vec![],
    }
}

fn access(jti: &str) -> AccessRecord {
    AccessRecord { jti: jti.into(), grant_id: "g".into(), expires_at: 600, revoked_at: None }
}

async fn clients_and_users(s: Arc<dyn Store>) {
    s.insert_client(&client("app")).await.unwrap();
    assert!(matches!(s.insert_client(&client("app")).await, Err(StoreError::AlreadyExists(_))));
    assert_eq!(s.client(&ClientId::parse("app").unwrap()).await.unwrap(), Some(client("app")));
    assert_eq!(s.clients().await.unwrap().len(), 1);
    s.insert_user(&user("alice")).await.unwrap();
    assert!(matches!(s.insert_user(&user("alice")).await, Err(StoreError::AlreadyExists(_))));
    assert_eq!(s.user_by_username("alice").await.unwrap().unwrap(), user("alice"), "every field round-trips");
    assert!(s.set_password_hash("alice", "$new", false, None, 1).await.unwrap().is_some());
    assert_eq!(s.user("id-alice").await.unwrap().unwrap().password_hash, "$new");
    assert_eq!(s.set_password_hash("nobody", "$new", true, None, 5).await.unwrap(), None);
    assert_eq!(s.remove_user("alice", 1).await.unwrap(), Some(EndedSessions::default()), "removed; no session ended");
    assert_eq!(s.remove_user("alice", 1).await.unwrap(), None);
    assert!(s.remove_client(&ClientId::parse("app").unwrap()).await.unwrap());
    assert!(s.client(&ClientId::parse("app").unwrap()).await.unwrap().is_none());
}

async fn sessions_pending_and_consent_expire(s: Arc<dyn Store>) {
    let sess = SessionRecord {
        hash: TokenHash::of("s"),
        sid: "sid".into(),
        user_id: "u".into(),
        auth_time: 1,
        expires_at: 100,
        authn: Authentication::of(&[Method::Password, Method::Totp]),
        meta: Default::default(),
    };
    assert!(s.insert_session(&sess, 8).await.unwrap().unwrap().is_empty());
    assert_eq!(s.session(&TokenHash::of("s"), 99).await.unwrap(), Some(sess.clone()));
    assert_eq!(s.session(&TokenHash::of("s"), 100).await.unwrap(), None, "expired at expires_at");
    assert!(s.session_by_sid("sid", 50).await.unwrap().is_some());
    s.remove_session(&TokenHash::of("s")).await.unwrap();
    assert!(s.session_by_sid("sid", 50).await.unwrap().is_none());

    let c = code("x");
    let p = PendingAuthorization {
        client_id: c.client_id.clone(),
        redirect_uri: c.redirect_uri.clone(),
        scope: c.scope.clone(),
        state: None,
        nonce: None,
        code_challenge: c.code_challenge.clone(),
        expires_at: 100,
        login_hint: Some("alice".into()),
        force_consent: true,
        auth_after: Some(42),
        resource: Some(ResourceUri::parse("https://a.example/mcp").unwrap()),
        purpose: latchkey_core::account::SignInPurpose::Account { next: "/account/passkeys".into() },
        acr: Some(AcrRequest { values: vec![Acr::PhishingResistant, Acr::TwoFactor], essential: true }),
        claims: Some(
            latchkey_proto::ClaimsRequest::parse(r#"{"id_token":{"acr":{"essential":true,"values":["mfa"]}}}"#)
                .unwrap(),
        ),
        dpop_jkt: None,
    };
    assert!(s.insert_pending(&TokenHash::of("p"), &p, "192.0.2.1", 1, LIMITS).await.unwrap());
    assert_eq!(s.pending(&TokenHash::of("p"), 99).await.unwrap(), Some(p));
    assert_eq!(s.pending(&TokenHash::of("p"), 100).await.unwrap(), None);
    assert!(s.remove_pending(&TokenHash::of("p")).await.unwrap(), "the first removal removes");
    assert!(!s.remove_pending(&TokenHash::of("p")).await.unwrap(), "a second one finds nothing");

    let app = ClientId::parse("app").unwrap();
    assert_eq!(s.consent("u", &app).await.unwrap(), None);
    s.put_consent(&consent("u", "openid", 1)).await.unwrap();
    let mut second = consent("u", "openid email", 2);
    second.claims = vec!["given_name".into(), "picture".into()];
    s.put_consent(&second).await.unwrap();
    assert_eq!(s.consent("u", &app).await.unwrap(), Some(second), "replaced, claims and all");
}

async fn a_code_is_redeemed_exactly_once_under_concurrency(s: Arc<dyn Store>) {
    s.insert_code(&code("c1")).await.unwrap();
    assert_eq!(s.code(&TokenHash::of("c1")).await.unwrap(), Some(code("c1")));
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                s.redeem_code(&TokenHash::of("c1"), 30, &issuance(&format!("g{i}"), &format!("r{i}"))).await.unwrap()
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut seen_grant = None;
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap() {
            Redeemed::Issued => winners.push(i),
            Redeemed::AlreadyUsed { grant_id } => seen_grant = grant_id,
        }
    }
    assert_eq!(winners.len(), 1, "exactly one winner");
    let winner = format!("g{}", winners[0]);
    assert_eq!(seen_grant.as_deref(), Some(winner.as_str()), "losers learn which grant to revoke");
    let stored = s.code(&TokenHash::of("c1")).await.unwrap().unwrap();
    assert_eq!(stored.used_at, Some(30));
    // The winner's tokens exist, the losers' do not.
    let (r, g) = s.refresh_token(&TokenHash::of(&format!("r{}", winners[0]))).await.unwrap().unwrap();
    assert_eq!(g.id, winner);
    assert_eq!(r.consumed_at, None);
    let other = (winners[0] + 1) % 32;
    assert!(s.refresh_token(&TokenHash::of(&format!("r{other}"))).await.unwrap().is_none());
    assert_eq!(s.access_token(&format!("jti-{winner}")).await.unwrap().unwrap().1.id, winner);
}

async fn a_refresh_token_rotates_exactly_once_and_losers_get_the_winners_reply(s: Arc<dyn Store>) {
    s.insert_code(&code("c2")).await.unwrap();
    assert_eq!(s.redeem_code(&TokenHash::of("c2"), 30, &issuance("g", "r0")).await.unwrap(), Redeemed::Issued);
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                let reply = format!("reply-{i}").into_bytes();
                let out = s
                    .rotate_refresh(
                        &TokenHash::of("r0"),
                        40,
                        &next_refresh(&format!("r1-{i}"), 40),
                        &access(&format!("a-{i}")),
                        &reply,
                    )
                    .await
                    .unwrap();
                (i, out)
            })
        })
        .collect();
    let mut winner = None;
    let mut replies = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            (i, Rotated::Rotated) => {
                assert!(winner.is_none(), "two winners");
                winner = Some(i);
            }
            (_, Rotated::AlreadyConsumed { consumed_at, cached_response }) => {
                assert_eq!(consumed_at, Some(40));
                replies.push(cached_response.unwrap());
            }
        }
    }
    let winner = winner.expect("one winner");
    let expected = format!("reply-{winner}").into_bytes();
    assert_eq!(replies.len(), 31);
    assert!(replies.iter().all(|r| *r == expected), "every loser sees the winner's reply");
    let (old, _) = s.refresh_token(&TokenHash::of("r0")).await.unwrap().unwrap();
    assert_eq!(old.consumed_at, Some(40));
    assert_eq!(old.cached_response, Some(expected));
    // Only the winner's successor and access token exist.
    assert!(s.refresh_token(&TokenHash::of(&format!("r1-{winner}"))).await.unwrap().is_some());
    assert!(s.refresh_token(&TokenHash::of(&format!("r1-{}", (winner + 1) % 32))).await.unwrap().is_none());
    assert!(s.access_token(&format!("a-{winner}")).await.unwrap().is_some());
}

async fn revoking_a_grant_stops_its_family_and_access_tokens(s: Arc<dyn Store>) {
    s.insert_code(&code("c3")).await.unwrap();
    s.redeem_code(&TokenHash::of("c3"), 30, &issuance("g", "r0")).await.unwrap();
    s.revoke_grant("g", 50).await.unwrap();
    let (a, g) = s.access_token("jti-g").await.unwrap().unwrap();
    assert_eq!(g.revoked_at, Some(50));
    assert_eq!(a.revoked_at, None, "the grant carries the revocation");
    let out = s.rotate_refresh(&TokenHash::of("r0"), 60, &next_refresh("r1", 60), &access("a1"), b"x").await.unwrap();
    assert_eq!(
        out,
        Rotated::AlreadyConsumed { consumed_at: None, cached_response: None },
        "a revoked family does not rotate"
    );
    assert!(s.refresh_token(&TokenHash::of("r1")).await.unwrap().is_none());
}

async fn one_access_token_can_be_revoked(s: Arc<dyn Store>) {
    s.insert_grant(&issuance("g", "r0")).await.unwrap();
    assert!(s.refresh_token(&TokenHash::of("r0")).await.unwrap().is_some());
    s.revoke_access_token("jti-g", 70).await.unwrap();
    s.revoke_access_token("jti-g", 80).await.unwrap();
    let (a, g) = s.access_token("jti-g").await.unwrap().unwrap();
    assert_eq!(a.revoked_at, Some(70), "the first revocation time stays");
    assert_eq!(g.revoked_at, None, "only that token");
    assert!(s.access_token("unknown").await.unwrap().is_none());
}

async fn ending_a_session_revokes_its_session_bound_grants(s: Arc<dyn Store>) {
    let sess = SessionRecord {
        hash: TokenHash::of("s"),
        sid: "sid".into(),
        user_id: "id-alice".into(),
        auth_time: 1,
        expires_at: 1000,
        authn: Default::default(),
        meta: Default::default(),
    };
    assert!(s.insert_session(&sess, 8).await.unwrap().unwrap().is_empty());
    s.insert_grant(&issuance("bound", "rb")).await.unwrap();
    let mut offline = issuance("offline", "ro");
    offline.grant.offline = true;
    s.insert_grant(&offline).await.unwrap();
    let app = ClientId::parse("app").unwrap();
    let ended = EndedSession { sid: "sid".into(), user_id: "id-alice".into(), clients: vec![app] };
    assert_eq!(s.end_session("sid", 90).await.unwrap(), EndedSessions(vec![ended]), "with the client of its grants");
    assert!(s.session(&TokenHash::of("s"), 50).await.unwrap().is_none());
    assert_eq!(s.refresh_token(&TokenHash::of("rb")).await.unwrap().unwrap().1.revoked_at, Some(90));
    assert_eq!(
        s.refresh_token(&TokenHash::of("ro")).await.unwrap().unwrap().1.revoked_at,
        None,
        "offline_access outlives the session"
    );
    assert!(s.end_session("sid", 91).await.unwrap().is_empty(), "ended once");
}

async fn signing_keys_rotate_per_algorithm(s: Arc<dyn Store>) {
    assert!(s.signing_keys().await.unwrap().is_empty());
    s.insert_signing_key(&key("k1", "RS256", 5)).await.unwrap();
    s.insert_signing_key(&key("e1", "ES256", 5)).await.unwrap();
    assert_eq!(s.signing_keys().await.unwrap(), vec![key("e1", "ES256", 5), key("k1", "RS256", 5)]);
    s.rotate_signing_key(&key("k2", "RS256", 9), 9).await.unwrap();
    let keys = s.signing_keys().await.unwrap();
    let find = |kid: &str| keys.iter().find(|k| k.kid == kid).unwrap().clone();
    assert_eq!(find("k1"), KeyRecord { active: false, retired_at: Some(9), ..key("k1", "RS256", 5) });
    assert_eq!(find("k2"), key("k2", "RS256", 9));
    assert_eq!(find("e1"), key("e1", "ES256", 5), "other algorithms untouched");
}

async fn only_one_active_key_per_algorithm_even_when_instances_start_at_once(s: Arc<dyn Store>) {
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.insert_signing_key(&key(&format!("k{i}"), "RS256", 5)).await.unwrap() })
        })
        .collect();
    let mut inserted = 0;
    for t in tasks {
        inserted += usize::from(t.await.unwrap());
    }
    assert_eq!(inserted, 1, "exactly one of the concurrent first keys is stored");
    assert_eq!(s.signing_keys().await.unwrap().iter().filter(|k| k.active).count(), 1);
    // A retired key is always stored (an import brings those), another algorithm is independent.
    assert!(
        s.insert_signing_key(&KeyRecord { active: false, retired_at: Some(6), ..key("old", "RS256", 1) })
            .await
            .unwrap()
    );
    assert!(s.insert_signing_key(&key("e1", "ES256", 5)).await.unwrap());
    assert_eq!(s.signing_keys().await.unwrap().len(), 3);
}

fn key(kid: &str, alg: &str, at: i64) -> KeyRecord {
    KeyRecord {
        kid: kid.into(),
        alg: alg.into(),
        private_pkcs8_b64: "AAAA".into(),
        created_at: at,
        active: true,
        retired_at: None,
    }
}

/// A grant with one refresh token and one access token, shaped by `f`.
fn family(id: &str, f: impl FnOnce(&mut Issuance)) -> Issuance {
    let mut i = issuance(id, &format!("r-{id}"));
    f(&mut i);
    i
}

/// Fills a store with one record of every kind, live and dead; returns the purge time.
async fn a_deployment_with_live_and_dead_records(s: &Arc<dyn Store>) -> i64 {
    let now = 700;
    s.insert_client(&client("app")).await.unwrap();
    s.insert_user(&user("alice")).await.unwrap();
    s.put_consent(&consent("id-alice", "openid", 1)).await.unwrap();
    s.put_consent(&ConsentRecord { claims: vec!["email".into()], ..consent("id-ghost", "openid", 1) }).await.unwrap();
    assert!(s.insert_pending(&TokenHash::of("p-old"), &pending(100), "192.0.2.1", 1, LIMITS).await.unwrap());
    assert!(s.insert_pending(&TokenHash::of("p-new"), &pending(1000), "192.0.2.1", 1, LIMITS).await.unwrap());
    let session = |h: &str, sid: &str, exp| SessionRecord {
        hash: TokenHash::of(h),
        sid: sid.into(),
        user_id: "id-alice".into(),
        auth_time: 1,
        expires_at: exp,
        authn: Default::default(),
        meta: SessionMeta { network: Some("2001:db8:1::/48".into()), device: Some("Safari on iOS".into()) },
    };
    assert!(s.insert_session(&session("s-old", "sid-ended", 100), 32).await.unwrap().unwrap().is_empty());
    assert!(s.insert_session(&session("s-new", "sid", 1000), 32).await.unwrap().unwrap().is_empty());
    // A failure counter (forgotten an hour after its last failure) and an audit event (kept).
    s.throttle_reserve(&[("ip:192.0.2.9".to_owned(), throttle::IP)], 600).await.unwrap();
    let event = AuditRecord {
        at: 5,
        event: "login_failure".into(),
        user_id: None,
        client_id: Some("app".into()),
        ip: Some("192.0.2.9".into()),
        detail: serde_json::json!({ "reason": "unknown user" }),
    };
    s.record_audit(&event).await.unwrap();
    // Live: a session-bound family whose session lives, with a `claims` request.
    let claims = latchkey_proto::ClaimsRequest::parse(r#"{"userinfo":{"email":{"essential":true}}}"#).unwrap();
    s.insert_grant(&family("live", |i| i.grant.claims = Some(claims))).await.unwrap();
    // Live: an offline family rotated once; the rotated token stays for reuse detection.
    s.insert_grant(&family("rotated", |i| i.grant.offline = true)).await.unwrap();
    let next = RefreshRecord { grant_id: "rotated".into(), ..next_refresh("r-rotated-2", 50) };
    let acc = AccessRecord { grant_id: "rotated".into(), ..access("a-rotated-2") };
    assert_eq!(
        s.rotate_refresh(&TokenHash::of("r-rotated"), 50, &next, &acc, b"reply").await.unwrap(),
        Rotated::Rotated
    );
    // Revoked, but one of its access tokens has not expired yet: kept until it has.
    s.insert_grant(&family("revoked-live-at", |i| {
        i.grant.revoked_at = Some(60);
        i.access.expires_at = 800;
    }))
    .await
    .unwrap();
    // Dead: revoked; past its absolute lifetime; idle; its session ended; no refresh at all.
    s.insert_grant(&family("revoked", |i| i.grant.revoked_at = Some(60))).await.unwrap();
    s.insert_grant(&family("expired", |i| i.grant.expires_at = 650)).await.unwrap();
    s.insert_grant(&family("idle", |i| i.refresh.as_mut().unwrap().expires_at = 650)).await.unwrap();
    s.insert_grant(&family("ended", |i| i.grant.sid = "sid-ended".into())).await.unwrap();
    s.insert_grant(&family("service", |i| {
        i.refresh = None;
        i.grant.sid = String::new();
        i.grant.authn = None;
    }))
    .await
    .unwrap();
    // Codes: unused and expired (dead), unused and live, redeemed for a live grant (kept for
    // replay detection), redeemed for a dead grant (dead).
    s.insert_code(&code("c-old")).await.unwrap();
    s.insert_code(&CodeRecord { expires_at: 1000, ..code("c-new") }).await.unwrap();
    s.insert_code(&CodeRecord { used_at: Some(20), grant_id: Some("live".into()), ..code("c-live") }).await.unwrap();
    s.insert_code(&CodeRecord { used_at: Some(20), grant_id: Some("revoked".into()), ..code("c-dead") }).await.unwrap();
    // Keys: active; retired long ago (unpublished at 700 with a window of 100); retired recently.
    s.insert_signing_key(&key("k-active", "RS256", 1)).await.unwrap();
    s.insert_signing_key(&KeyRecord { active: false, retired_at: Some(10), ..key("k-old", "RS256", 1) }).await.unwrap();
    s.insert_signing_key(&KeyRecord { active: false, retired_at: Some(650), ..key("k-recent", "RS256", 1) })
        .await
        .unwrap();
    // Cached metadata documents: expired at 700, and fresh.
    s.cache_metadata_document(&document("https://old.example/c", 100, 700), 100).await.unwrap();
    s.cache_metadata_document(&document("https://new.example/c", 600, 4200), 100).await.unwrap();
    // A queued outbox job (delivered ones are kept a day, so none is purged at these times).
    s.enqueue(&notice("alice@example.com"), 650).await.unwrap();
    now
}

async fn purge_removes_what_is_dead_and_keeps_what_lives(s: Arc<dyn Store>) {
    let now = a_deployment_with_live_and_dead_records(&s).await;
    let before = s.table_counts().await.unwrap();
    assert_eq!(
        before,
        TableCounts {
            clients: 1,
            users: 1,
            signing_keys: 3,
            pending_authorizations: 2,
            sessions: 2,
            consents: 2,
            codes: 4,
            grants: 8,
            refresh_tokens: 8,
            access_tokens: 9,
            login_throttle: 1,
            audit_events: 1,
            client_metadata_documents: 2,
            outbox: 1,
            email_links: 0,
            signup_holds: 0,
            passkeys: 0,
            webauthn_ceremonies: 0,
            replay_marks: 0,
            pushed_requests: 0,
            device_codes: 0,
        }
    );
    let purged = s.purge_expired(now, &POLICY).await.unwrap();
    assert_eq!(
        purged,
        TableCounts {
            clients: 0,
            users: 0,
            signing_keys: 1,
            pending_authorizations: 1,
            sessions: 1,
            consents: 1,
            codes: 2,
            grants: 5,
            refresh_tokens: 4,
            access_tokens: 8,
            login_throttle: 0,
            audit_events: 0,
            client_metadata_documents: 1,
            outbox: 0,
            email_links: 0,
            signup_holds: 0,
            passkeys: 0,
            webauthn_ceremonies: 0,
            replay_marks: 0,
            pushed_requests: 0,
            device_codes: 0,
        }
    );
    let after = s.table_counts().await.unwrap();
    assert_eq!(after.grants, 3, "live, rotated, revoked-live-at");
    assert_eq!(after.access_tokens, 1, "only the unexpired one");
    // What lives still works.
    assert!(s.pending(&TokenHash::of("p-new"), now).await.unwrap().is_some());
    assert!(s.session(&TokenHash::of("s-new"), now).await.unwrap().is_some());
    assert!(s.consent("id-alice", &ClientId::parse("app").unwrap()).await.unwrap().is_some());
    assert!(s.code(&TokenHash::of("c-new")).await.unwrap().is_some());
    assert!(s.code(&TokenHash::of("c-live")).await.unwrap().is_some(), "a replay can still revoke its grant");
    let (spent, _) = s.refresh_token(&TokenHash::of("r-rotated")).await.unwrap().expect("reuse record kept");
    assert_eq!(spent.consumed_at, Some(50));
    let (_, g) = s.access_token("jti-revoked-live-at").await.unwrap().expect("kept while its token lives");
    assert!(g.revoked_at.is_some());
    let kids: Vec<_> = s.signing_keys().await.unwrap().into_iter().map(|k| k.kid).collect();
    assert_eq!(kids.len(), 2);
    assert!(!kids.contains(&"k-old".to_string()));
    let next = RefreshRecord { grant_id: "live".into(), ..next_refresh("r-live-2", now) };
    let acc = AccessRecord { grant_id: "live".into(), ..access("a-live-2") };
    assert_eq!(s.rotate_refresh(&TokenHash::of("r-live"), now, &next, &acc, b"x").await.unwrap(), Rotated::Rotated);
    // Nothing left to purge at the same instant; everything goes once it is all past.
    assert_eq!(s.purge_expired(now, &POLICY).await.unwrap().total(), 1, "only the access token minted just above");
    s.purge_expired(5000, &POLICY).await.unwrap();
    let end = s.table_counts().await.unwrap();
    assert_eq!(
        end,
        TableCounts {
            clients: 1,
            users: 1,
            signing_keys: 1,
            consents: 1,
            audit_events: 1,
            outbox: 1,
            ..TableCounts::default()
        },
        "only clients, users, their consent, the active key, the audit log and the undelivered job remain"
    );
    // With a retention, audit records older than it go too.
    let kept_a_year = PurgePolicy { audit_retention: 4995, ..POLICY };
    assert_eq!(s.purge_expired(5000, &kept_a_year).await.unwrap().audit_events, 0, "the record at 5 is younger");
    let kept_briefly = PurgePolicy { audit_retention: 100, ..POLICY };
    assert_eq!(s.purge_expired(5000, &kept_briefly).await.unwrap().audit_events, 1);
}

async fn export_then_import_copies_everything(source: Arc<dyn Store>, target: Arc<dyn Store>) {
    a_deployment_with_live_and_dead_records(&source).await;
    source.insert_resource(&mcp_resource("https://a.example/mcp")).await.unwrap();
    let reg = registration(PUBLIC, 100);
    assert_eq!(register(&source, &reg, "198.51.100.1", 100).await, Registered::Created);
    // An unverified sign-up, which must still be held after a copy, and its link.
    assert_eq!(source.create_unverified_user(&user("carol"), 10, 100).await.unwrap(), SignupStored::Created);
    source
        .issue_link(&link("l-carol", LinkPurpose::VerifyEmail, Some("id-carol"), "carol@example.com", 5000))
        .await
        .unwrap();
    // Second factors travel too (issue 13): a confirmed TOTP secret and its recovery codes.
    assert!(source.begin_totp(&factors::totp("id-alice", "SEALED", 5)).await.unwrap());
    let hashes = vec!["h1".to_owned(), "h2".to_owned()];
    assert!(source.confirm_totp("id-alice", "SEALED", 7, &hashes, 6).await.unwrap());
    let snapshot = source.export().await.unwrap();
    assert_eq!((snapshot.totp.len(), snapshot.recovery_codes.len()), (1, 2));
    assert_eq!(snapshot.grants.len(), 8);
    assert_eq!(
        snapshot.registrations,
        std::slice::from_ref(&reg.record),
        "a self-registered client keeps its registration"
    );
    assert!(snapshot.refresh_tokens.iter().any(|r| r.cached_response.as_deref() == Some(&b"reply"[..])));
    assert_eq!(snapshot.outbox.len(), 1, "undelivered mail survives a copy");
    assert_eq!((snapshot.email_links.len(), snapshot.signup_holds.len()), (1, 1), "a link and a sign-up hold");
    target.import(&snapshot).await.unwrap();
    assert_eq!(target.export().await.unwrap(), snapshot, "every record, every field");
    let source_counts = source.table_counts().await.unwrap();
    assert_eq!(
        target.table_counts().await.unwrap(),
        TableCounts { login_throttle: 0, client_metadata_documents: 0, ..source_counts },
        "everything but the transient login-throttle counters and the metadata-document cache"
    );
    // An import that conflicts fails whole.
    // Users are written before keys: bob would stay if the import were not one transaction.
    let more =
        Snapshot { users: vec![user("bob")], signing_keys: vec![key("k-active", "RS256", 1)], ..Snapshot::default() };
    assert!(target.import(&more).await.is_err());
    assert!(target.user_by_username("bob").await.unwrap().is_none(), "nothing of a failed import stays");
}

async fn throttle_counts_and_forgets(s: Arc<dyn Store>) {
    let rule = throttle::Rule { free: 3, base: 10, max: 100 };
    let rules = vec![("acct:alice".to_owned(), rule), ("ip:192.0.2.1".to_owned(), rule)];
    let keys: Vec<String> = rules.iter().map(|(k, _)| k.clone()).collect();
    assert!(s.throttle_state(&keys).await.unwrap().is_empty());
    for at in [10, 11, 12] {
        let r = s.throttle_reserve(&rules, at).await.unwrap();
        assert_eq!(r, Reservation::Reserved { refused_while_blocked: 0 }, "free attempts");
    }
    let state = s.throttle_state(&keys).await.unwrap();
    assert_eq!(
        state,
        vec![
            ThrottleRecord { key: "acct:alice".into(), failures: 3, last_failure: 12, refused: 0 },
            ThrottleRecord { key: "ip:192.0.2.1".into(), failures: 3, last_failure: 12, refused: 0 },
        ]
    );
    // Past the free ones: blocked until 12 + 10, refusals counted and not as failures.
    assert_eq!(s.throttle_reserve(&rules, 13).await.unwrap(), Reservation::Blocked { until: 22, first: true });
    assert_eq!(s.throttle_reserve(&rules, 14).await.unwrap(), Reservation::Blocked { until: 22, first: false });
    assert_eq!(s.throttle_state(&keys).await.unwrap()[0].failures, 3);
    assert_eq!(s.throttle_reserve(&rules, 22).await.unwrap(), Reservation::Reserved { refused_while_blocked: 2 });
    assert_eq!(s.throttle_state(&keys).await.unwrap()[0].refused, 0, "a counted attempt ends the run");
    // A success clears one key and refunds the other.
    s.throttle_settle(&keys[..1], &keys[1..]).await.unwrap();
    let state = s.throttle_state(&keys).await.unwrap();
    assert_eq!(state.len(), 1);
    assert_eq!((state[0].key.as_str(), state[0].failures), ("ip:192.0.2.1", 3));
    // A key quiet for longer than FORGET_AFTER starts from one.
    let later = 22 + throttle::FORGET_AFTER as i64 + 1;
    assert!(matches!(s.throttle_reserve(&rules[1..], later).await.unwrap(), Reservation::Reserved { .. }));
    assert_eq!(s.throttle_state(&keys[1..]).await.unwrap()[0].failures, 1);
}

/// Review finding 1: 100 guesses sent at once were all checked. Each reservation must see the
/// ones before it, so exactly the free attempts get through.
async fn concurrent_attempts_are_reserved_one_at_a_time(s: Arc<dyn Store>) {
    concurrent_reservations(&[s.clone(), s]).await;
}

async fn concurrent_reservations(instances: &[Arc<dyn Store>]) {
    let rule = throttle::Rule { free: 5, base: 60, max: 900 };
    let rules = vec![("acct:bob".to_owned(), throttle::ACCOUNT), ("acct-ip:bob|192.0.2.5".to_owned(), rule)];
    let tasks: Vec<_> = (0..60)
        .map(|i| {
            let (s, rules) = (instances[i % instances.len()].clone(), rules.clone());
            tokio::spawn(async move { s.throttle_reserve(&rules, 1000).await })
        })
        .collect();
    let (mut reserved, mut blocked, mut first) = (0, 0, 0);
    for t in tasks {
        match t.await.unwrap().unwrap() {
            Reservation::Reserved { .. } => reserved += 1,
            Reservation::Blocked { first: f, .. } => {
                blocked += 1;
                first += usize::from(f);
            }
        }
    }
    assert_eq!((reserved, blocked, first), (5, 55, 1), "exactly the free attempts, one audited refusal");
}

async fn pending_requests_are_bounded_per_source_and_per_client(s: Arc<dyn Store>) {
    let limits = PendingLimits { per_source: 5, per_client: 8 };
    // A burst from one source: exactly its quota gets in.
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (s, p) = (s.clone(), pending(100 + i));
            tokio::spawn(async move {
                s.insert_pending(&TokenHash::of(&format!("a{i}")), &p, "198.51.100.7", 10, limits).await
            })
        })
        .collect();
    let mut admitted = 0;
    for t in tasks {
        admitted += usize::from(t.await.unwrap().unwrap());
    }
    assert_eq!(admitted, 5);
    // Expired requests do not count against the source.
    assert!(!s.insert_pending(&TokenHash::of("late"), &pending(200), "198.51.100.7", 99, limits).await.unwrap());
    assert!(s.insert_pending(&TokenHash::of("late"), &pending(200), "198.51.100.7", 200, limits).await.unwrap());
    // Other sources fill the client's capacity: the oldest requests are evicted, new ones admitted.
    for i in 0..6 {
        let id = format!("b{i}");
        assert!(
            s.insert_pending(&TokenHash::of(&id), &pending(300 + i), &format!("src{i}"), 10, limits).await.unwrap()
        );
    }
    assert!(s.pending(&TokenHash::of("b5"), 10).await.unwrap().is_some(), "the newest stays");
    assert!(s.pending(&TokenHash::of("late"), 10).await.unwrap().is_some());
    let mut kept = 0;
    for id in (0..20).map(|i| format!("a{i}")).chain((0..6).map(|i| format!("b{i}"))).chain(["late".to_owned()]) {
        kept += usize::from(s.pending(&TokenHash::of(&id), 10).await.unwrap().is_some());
    }
    assert_eq!(kept, 8, "the client keeps its newest 8");
}

async fn server_secrets_are_chosen_once(s: Arc<dyn Store>) {
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.server_secret("k", &format!("candidate-{i}"), 1).await })
        })
        .collect();
    let mut seen = Vec::new();
    for t in tasks {
        seen.push(t.await.unwrap().unwrap());
    }
    assert!(seen.iter().all(|v| *v == seen[0]), "every caller sees the one stored value: {seen:?}");
    assert_eq!(s.server_secret("k", "another", 2).await.unwrap(), seen[0]);
    assert_eq!(s.server_secret("other", "v", 2).await.unwrap(), "v");
}

async fn the_audit_log_filters_by_time_and_user(s: Arc<dyn Store>) {
    let ev = |at: i64, name: &str, user: Option<&str>| AuditRecord {
        at,
        event: name.into(),
        user_id: user.map(str::to_owned),
        client_id: Some("app".into()),
        ip: Some("192.0.2.1".into()),
        detail: serde_json::json!({ "n": at }),
    };
    for e in [ev(1, "a", Some("u1")), ev(2, "b", None), ev(3, "c", Some("u1")), ev(3, "d", Some("u2"))] {
        s.record_audit(&e).await.unwrap();
    }
    let all = s.audit_events(None, None, 10).await.unwrap();
    assert_eq!(all.iter().map(|e| e.event.as_str()).collect::<Vec<_>>(), vec!["d", "c", "b", "a"], "newest first");
    assert_eq!(all[3], ev(1, "a", Some("u1")), "every field round-trips");
    let recent = s.audit_events(Some(2), Some("u1"), 10).await.unwrap();
    assert_eq!(recent, vec![ev(3, "c", Some("u1"))]);
    assert_eq!(s.audit_events(None, None, 2).await.unwrap().len(), 2);
}

async fn a_user_keeps_at_most_keep_sessions(s: Arc<dyn Store>) {
    let sess = |n: i64| SessionRecord {
        hash: TokenHash::of(&format!("s{n}")),
        sid: format!("sid{n}"),
        user_id: "u".into(),
        auth_time: n,
        expires_at: 1000,
        authn: Default::default(),
        meta: SessionMeta { network: Some("192.0.2.0/24".into()), device: Some("Firefox on Linux".into()) },
    };
    let mut bound = issuance("g0", "r0");
    bound.grant.sid = "sid0".into();
    s.insert_grant(&bound).await.unwrap();
    for n in 0..3 {
        assert!(s.insert_session(&sess(n), 3).await.unwrap().unwrap().is_empty());
    }
    let evicted = s.insert_session(&sess(3), 3).await.unwrap().unwrap();
    let app = ClientId::parse("app").unwrap();
    assert_eq!(
        evicted,
        EndedSessions(vec![EndedSession { sid: "sid0".into(), user_id: "u".into(), clients: vec![app] }]),
        "the evicted session is reported, with its clients"
    );
    assert!(s.session_by_sid("sid0", 10).await.unwrap().is_none(), "the oldest was ended");
    for n in 1..4 {
        assert!(s.session_by_sid(&format!("sid{n}"), 10).await.unwrap().is_some());
    }
    assert_eq!(s.refresh_token(&TokenHash::of("r0")).await.unwrap().unwrap().1.revoked_at, Some(3), "its grants too");
}

/// Concurrent writes may share a commit (SQLite's group commit): a failing write must undo only
/// itself, and every caller must get its own answer.
async fn concurrent_writes_succeed_or_fail_on_their_own(s: Arc<dyn Store>) {
    let tasks: Vec<_> = (0..60)
        .map(|i| {
            let s = s.clone();
            // Every third one reuses a username already taken by another task.
            let name = if i % 3 == 0 { "dup".to_owned() } else { format!("user{i}") };
            tokio::spawn(async move {
                let mut u = user(&name);
                u.id = format!("id{i}");
                s.insert_user(&u).await
            })
        })
        .collect();
    let (mut ok, mut dup) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => ok += 1,
            Err(StoreError::AlreadyExists(_)) => dup += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((ok, dup), (41, 19), "40 distinct users and one dup succeed; 19 dups fail");
    assert_eq!(s.users().await.unwrap().len(), 41);
}

/// Alice with two sessions, a session-bound grant, an offline grant, a grant already revoked at 5
/// and an unredeemed code; bob with a grant of his own.
async fn alice_with_sessions_grants_and_a_code(s: &Arc<dyn Store>) {
    s.insert_user(&user("alice")).await.unwrap();
    s.insert_user(&user("bob")).await.unwrap();
    for (h, sid) in [("s1", "sid"), ("s2", "sid2")] {
        let sess = SessionRecord {
            hash: TokenHash::of(h),
            sid: sid.into(),
            user_id: "id-alice".into(),
            auth_time: 1,
            expires_at: 1000,
            authn: Default::default(),
            meta: Default::default(),
        };
        assert!(s.insert_session(&sess, 8).await.unwrap().unwrap().is_empty());
    }
    s.insert_grant(&issuance("bound", "rb")).await.unwrap();
    s.insert_grant(&family("offline", |i| i.grant.offline = true)).await.unwrap();
    s.insert_grant(&family("old", |i| i.grant.revoked_at = Some(5))).await.unwrap();
    s.insert_grant(&family("bobs", |i| i.grant.user_id = "id-bob".into())).await.unwrap();
    s.insert_code(&code("pending-code")).await.unwrap();
}

/// Alice's two sessions as ended: `sid`, in which the grants of client `app` were made, and
/// `sid2`, in which none was.
fn alice_ended() -> EndedSessions {
    let app = ClientId::parse("app").unwrap();
    EndedSessions(vec![
        EndedSession { sid: "sid".into(), user_id: "id-alice".into(), clients: vec![app] },
        EndedSession { sid: "sid2".into(), user_id: "id-alice".into(), clients: vec![] },
    ])
}

fn grant_revoked_at(g: Option<(AccessRecord, GrantRecord)>) -> Option<i64> {
    g.unwrap().1.revoked_at
}

async fn a_password_change_revokes_every_grant_of_the_user_in_one_step(s: Arc<dyn Store>) {
    alice_with_sessions_grants_and_a_code(&s).await;
    let done = s.set_password_hash("alice", "$new", true, None, 70).await.unwrap();
    assert_eq!(
        done,
        Some(UserRevocation { user_id: "id-alice".into(), sessions_ended: 2, grants_revoked: 2, ended: alice_ended() }),
        "the bound and the offline grant; the one revoked before is not counted"
    );
    assert_eq!(s.user("id-alice").await.unwrap().unwrap().password_hash, "$new");
    assert!(s.session(&TokenHash::of("s1"), 50).await.unwrap().is_none());
    assert_eq!(grant_revoked_at(s.access_token("jti-offline").await.unwrap()), Some(70), "offline_access too");
    assert_eq!(grant_revoked_at(s.access_token("jti-bound").await.unwrap()), Some(70));
    assert_eq!(grant_revoked_at(s.access_token("jti-old").await.unwrap()), Some(5), "the first revocation stays");
    assert_eq!(grant_revoked_at(s.access_token("jti-bobs").await.unwrap()), None, "other users untouched");
    // The offline family no longer rotates.
    let out = s
        .rotate_refresh(&TokenHash::of("r-offline"), 80, &next_refresh("r-next", 80), &access("a-next"), b"x")
        .await
        .unwrap();
    assert!(matches!(out, Rotated::AlreadyConsumed { .. }), "{out:?}");
    assert!(s.code(&TokenHash::of("pending-code")).await.unwrap().is_none(), "an unredeemed code cannot mint a grant");

    // --keep-grants: the password changes and sessions end, grants stay.
    s.insert_grant(&family("later", |i| i.grant.offline = true)).await.unwrap();
    let done = s.set_password_hash("alice", "$newer", false, None, 1).await.unwrap().unwrap();
    assert_eq!((done.sessions_ended, done.grants_revoked), (0, 0));
    assert_eq!(grant_revoked_at(s.access_token("jti-later").await.unwrap()), None);
    assert_eq!(s.user("id-alice").await.unwrap().unwrap().password_hash, "$newer");
}

async fn revoking_a_users_tokens_keeps_their_password(s: Arc<dyn Store>) {
    alice_with_sessions_grants_and_a_code(&s).await;
    let done = s.revoke_user_tokens("alice", 90).await.unwrap();
    let want =
        UserRevocation { user_id: "id-alice".into(), sessions_ended: 2, grants_revoked: 2, ended: alice_ended() };
    assert_eq!(done, Some(want));
    assert_eq!(s.user("id-alice").await.unwrap().unwrap().password_hash, "$argon2id$stub");
    assert_eq!(grant_revoked_at(s.access_token("jti-offline").await.unwrap()), Some(90));
    assert_eq!(grant_revoked_at(s.access_token("jti-bobs").await.unwrap()), None);
    assert!(s.code(&TokenHash::of("pending-code")).await.unwrap().is_none());
    assert_eq!(s.revoke_user_tokens("alice", 91).await.unwrap().unwrap().grants_revoked, 0, "nothing left");
    assert_eq!(s.revoke_user_tokens("nobody", 91).await.unwrap(), None);
}

async fn a_private_key_is_replaced_only_if_unchanged(s: Arc<dyn Store>) {
    s.insert_signing_key(&key("k1", "ES256", 5)).await.unwrap();
    let old = key("k1", "ES256", 5).private_pkcs8_b64;
    assert!(s.replace_private_key("k1", &old, "enc:v1:sealed").await.unwrap());
    assert_eq!(s.signing_keys().await.unwrap()[0].private_pkcs8_b64, "enc:v1:sealed");
    assert!(!s.replace_private_key("k1", &old, "enc:v1:other").await.unwrap(), "no longer the old value");
    assert!(!s.replace_private_key("nope", &old, "x").await.unwrap());
    assert_eq!(s.signing_keys().await.unwrap()[0].private_pkcs8_b64, "enc:v1:sealed");
}

fn mcp_resource(uri: &str) -> ResourceRecord {
    ResourceRecord {
        uri: ResourceUri::parse(uri).unwrap(),
        name: "MCP".into(),
        scopes: Scope::parse("mcp:tools mcp:admin").unwrap(),
        created_at: 5,
    }
}

/// RFC 8707: the registry, and the resource a code and a grant are bound to, read back as stored.
async fn resources_are_registered_once_and_bind_codes_and_grants(s: Arc<dyn Store>) {
    let a = mcp_resource("https://a.example/mcp");
    s.insert_resource(&a).await.unwrap();
    assert!(matches!(s.insert_resource(&a).await, Err(StoreError::AlreadyExists(_))));
    s.insert_resource(&mcp_resource("https://b.example/")).await.unwrap();
    assert_eq!(s.resource(&a.uri).await.unwrap(), Some(a.clone()));
    let all: Vec<_> = s.resources().await.unwrap().into_iter().map(|r| r.uri.to_string()).collect();
    assert_eq!(all, ["https://a.example/mcp", "https://b.example/"]);

    let bound = CodeRecord { resource: Some(a.uri.clone()), ..code("bound") };
    s.insert_code(&bound).await.unwrap();
    assert_eq!(s.code(&TokenHash::of("bound")).await.unwrap().unwrap().resource, Some(a.uri.clone()));
    let mut issue = issuance("g-bound", "r-bound");
    issue.grant.resource = Some(a.uri.clone());
    assert_eq!(s.redeem_code(&TokenHash::of("bound"), 30, &issue).await.unwrap(), Redeemed::Issued);
    let (_, grant) = s.refresh_token(&TokenHash::of("r-bound")).await.unwrap().unwrap();
    assert_eq!(grant.resource, Some(a.uri.clone()));
    let (_, grant) = s.access_token("jti-g-bound").await.unwrap().unwrap();
    assert_eq!(grant.resource, Some(a.uri.clone()));

    assert!(s.remove_resource(&a.uri).await.unwrap());
    assert!(!s.remove_resource(&a.uri).await.unwrap());
    assert_eq!(s.resource(&a.uri).await.unwrap(), None);
}

fn document(url: &str, fetched_at: i64, expires_at: i64) -> CachedDocument {
    CachedDocument { url: url.into(), body: format!(r#"{{"client_id":"{url}"}}"#), fetched_at, expires_at }
}

/// The client ID metadata document cache: served until it expires, replaced on a re-fetch,
/// bounded by evicting the documents expiring soonest, purged once expired.
async fn metadata_documents_are_cached_until_they_expire_and_bounded(s: Arc<dyn Store>) {
    let a = "https://a.example/client.json";
    assert_eq!(s.cached_metadata_document(a, 0).await.unwrap(), None);
    s.cache_metadata_document(&document(a, 10, 100), 3).await.unwrap();
    assert_eq!(s.cached_metadata_document(a, 99).await.unwrap(), Some(document(a, 10, 100)));
    assert_eq!(s.cached_metadata_document(a, 100).await.unwrap(), None, "expired at expires_at");
    // A re-fetch replaces the entry.
    s.cache_metadata_document(&document(a, 100, 500), 3).await.unwrap();
    assert_eq!(s.cached_metadata_document(a, 200).await.unwrap().unwrap().fetched_at, 100);
    // Past the cap, those expiring soonest go.
    for (i, exp) in [(1, 400), (2, 600), (3, 700)] {
        s.cache_metadata_document(&document(&format!("https://{i}.example/c"), 100, exp), 3).await.unwrap();
    }
    assert_eq!(s.table_counts().await.unwrap().client_metadata_documents, 3);
    assert!(s.cached_metadata_document("https://1.example/c", 200).await.unwrap().is_none(), "soonest evicted");
    assert!(s.cached_metadata_document(a, 200).await.unwrap().is_some());
    let purged = s.purge_expired(650, &POLICY).await.unwrap();
    assert_eq!(purged.client_metadata_documents, 2);
    assert!(s.cached_metadata_document("https://3.example/c", 650).await.unwrap().is_some());
}

/// Runs every check, each on a fresh store from `make`.
async fn suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn Store>>,
{
    clients_and_users(make().await).await;
    concurrent_writes_succeed_or_fail_on_their_own(make().await).await;
    sessions_pending_and_consent_expire(make().await).await;
    a_code_is_redeemed_exactly_once_under_concurrency(make().await).await;
    a_refresh_token_rotates_exactly_once_and_losers_get_the_winners_reply(make().await).await;
    revoking_a_grant_stops_its_family_and_access_tokens(make().await).await;
    one_access_token_can_be_revoked(make().await).await;
    ending_a_session_revokes_its_session_bound_grants(make().await).await;
    signing_keys_rotate_per_algorithm(make().await).await;
    only_one_active_key_per_algorithm_even_when_instances_start_at_once(make().await).await;
    purge_removes_what_is_dead_and_keeps_what_lives(make().await).await;
    export_then_import_copies_everything(make().await, make().await).await;
    throttle_counts_and_forgets(make().await).await;
    concurrent_attempts_are_reserved_one_at_a_time(make().await).await;
    pending_requests_are_bounded_per_source_and_per_client(make().await).await;
    server_secrets_are_chosen_once(make().await).await;
    a_user_keeps_at_most_keep_sessions(make().await).await;
    the_audit_log_filters_by_time_and_user(make().await).await;
    a_password_change_revokes_every_grant_of_the_user_in_one_step(make().await).await;
    revoking_a_users_tokens_keeps_their_password(make().await).await;
    a_private_key_is_replaced_only_if_unchanged(make().await).await;
    resources_are_registered_once_and_bind_codes_and_grants(make().await).await;
    registrations_are_deduplicated_managed_throttled_and_purged(make().await).await;
    identical_registrations_at_once_create_one_client(make().await).await;
    metadata_documents_are_cached_until_they_expire_and_bounded(make().await).await;
    account::checks(&make).await;
    outbox_jobs_are_claimed_retried_buried_and_completed(make().await).await;
    the_outbox_cap_holds_under_a_burst(make().await).await;
    outbox_claims_are_exclusive(&[make().await]).await;
    email_links_are_single_use_replaced_and_expire(make().await).await;
    verification_sets_the_address_and_lifts_the_hold(make().await).await;
    open_sign_ups_are_unique_by_address_and_capped(make().await).await;
    invitations_are_for_their_address_only(make().await).await;
    ended_sessions::removing_a_user_reports_their_sessions_with_clients(make().await).await;
    ended_sessions::concurrent_enders_report_each_session_once(make().await).await;
    ended_sessions::ending_sessions_queues_logout_tokens_for_clients_that_asked(make().await).await;
    ended_sessions::a_new_session_outlives_an_older_one_of_the_same_second(make().await).await;
    factors::totp_is_confirmed_once_and_a_confirmed_secret_never_replaced(make().await).await;
    factors::a_totp_step_is_accepted_once(&[make().await]).await;
    factors::a_recovery_code_is_used_once(&[make().await]).await;
    factors::a_partial_sign_in_is_taken_once_and_bounded(&[make().await]).await;
    factors::a_step_up_upgrades_one_live_session_once(&[make().await]).await;
    factors::resetting_and_removing_a_user_remove_their_factors(make().await).await;
    passkeys::suite(&make).await;
    protection::a_mark_is_first_used_once(&[make().await]).await;
    protection::a_pushed_request_is_taken_once_and_bounded(&[make().await]).await;
    devices::suite(&make).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    suite(|| {
        let path = dir.path().join(format!("db{}.sqlite", counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst)));
        async move { Arc::new(SqliteStore::open(&path).unwrap()) as Arc<dyn Store> }
    })
    .await;
}

#[tokio::test]
async fn sqlite_reopens_with_its_data_and_passes_integrity_check() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reopen.sqlite");
    {
        let s = SqliteStore::open(&path).unwrap();
        s.insert_client(&client("app")).await.unwrap();
    }
    let s = SqliteStore::open(&path).unwrap();
    assert!(s.client(&ClientId::parse("app").unwrap()).await.unwrap().is_some(), "migrations are not re-run over data");
    assert_eq!(s.integrity_check().await.unwrap(), "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_conforms() {
    let Some(db) = TestDatabase::create("conformance").await else { return };
    // Each check on a fresh store: a schema of its own in the test's database.
    suite(|| async { Arc::new(PostgresStore::connect(&db.fresh_schema().await).await.unwrap()) as Arc<dyn Store> })
        .await;
}

#[tokio::test]
async fn postgres_migrations_run_once_even_when_instances_start_at_once() {
    let Some(db) = TestDatabase::create("migrate").await else { return };
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let url = db.url.clone();
            tokio::spawn(async move { PostgresStore::connect(&url).await.map(|_| ()) })
        })
        .collect();
    for o in opens {
        o.await.unwrap().expect("every instance starts");
    }
    let s = PostgresStore::connect(&db.url).await.unwrap();
    assert_eq!(s.migrate().await.unwrap(), 11);
    s.insert_client(&client("app")).await.unwrap();
    let again = PostgresStore::connect(&db.url).await.unwrap();
    assert!(
        again.client(&ClientId::parse("app").unwrap()).await.unwrap().is_some(),
        "migrations are not re-run over data"
    );
}

/// Two pools on one database stand for two instances: the one-time guarantees hold between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_one_time_guarantees_hold_across_instances() {
    let Some(db) = TestDatabase::create("across").await else { return };
    let a: Arc<dyn Store> = Arc::new(PostgresStore::connect(&db.url).await.unwrap());
    let b: Arc<dyn Store> = Arc::new(PostgresStore::connect(&db.url).await.unwrap());
    for round in 0..5 {
        let c = format!("code-{round}");
        a.insert_code(&code(&c)).await.unwrap();
        let redemptions: Vec<_> = (0..24)
            .map(|i| {
                let s = if i % 2 == 0 { a.clone() } else { b.clone() };
                let (c, g) = (c.clone(), format!("g{round}-{i}"));
                tokio::spawn(
                    async move { s.redeem_code(&TokenHash::of(&c), 30, &issuance(&g, &format!("r-{g}"))).await },
                )
            })
            .collect();
        let mut winners = Vec::new();
        for (i, t) in redemptions.into_iter().enumerate() {
            if t.await.unwrap().unwrap() == Redeemed::Issued {
                winners.push(format!("g{round}-{i}"));
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: exactly one redemption across both");
        let first = format!("r-{}", winners[0]);
        let rotations: Vec<_> = (0..24)
            .map(|i| {
                let s = if i % 2 == 0 { a.clone() } else { b.clone() };
                let (first, grant) = (first.clone(), winners[0].clone());
                tokio::spawn(async move {
                    let next = RefreshRecord { grant_id: grant.clone(), ..next_refresh(&format!("{first}-{i}"), 40) };
                    let acc = AccessRecord { grant_id: grant, ..access(&format!("{first}-a{i}")) };
                    s.rotate_refresh(&TokenHash::of(&first), 40, &next, &acc, format!("reply-{i}").as_bytes()).await
                })
            })
            .collect();
        let mut replies = Vec::new();
        for (i, t) in rotations.into_iter().enumerate() {
            match t.await.unwrap().unwrap() {
                Rotated::Rotated => replies.push(format!("reply-{i}").into_bytes()),
                Rotated::AlreadyConsumed { cached_response, .. } => replies.push(cached_response.unwrap()),
            }
        }
        assert!(replies.iter().all(|r| *r == replies[0]), "round {round}: one successor, seen by every caller");
    }
}

/// Review finding 1, across instances: two pools on one database reserve login attempts as one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_login_attempts_are_reserved_as_one_across_instances() {
    let Some(db) = TestDatabase::create("throttle").await else { return };
    let a: Arc<dyn Store> = Arc::new(PostgresStore::connect(&db.url).await.unwrap());
    let b: Arc<dyn Store> = Arc::new(PostgresStore::connect(&db.url).await.unwrap());
    concurrent_reservations(&[a, b]).await;
}

/// A registration decided from `json` metadata (RFC 7591) at `now`.
fn registration(json: &str, now: UnixTime) -> latchkey_core::registration::NewRegistration {
    let meta = latchkey_proto::registration::ClientMetadata::parse(json.as_bytes()).unwrap();
    latchkey_core::registration::decide(meta, now).unwrap()
}

const PUBLIC: &str =
    r#"{"redirect_uris":["http://localhost/callback"],"token_endpoint_auth_method":"none","client_name":"Claude"}"#;

fn confidential(i: usize) -> String {
    format!(r#"{{"redirect_uris":["https://app{i}.example/cb"],"token_endpoint_auth_method":"client_secret_post"}}"#)
}

async fn register(
    s: &Arc<dyn Store>,
    n: &latchkey_core::registration::NewRegistration,
    source: &str,
    now: UnixTime,
) -> Registered {
    s.register_client(&n.client, &n.record, source, 3, now).await.unwrap()
}

async fn registrations_are_deduplicated_managed_throttled_and_purged(s: Arc<dyn Store>) {
    // Identical public metadata: the second registration gets the first client, marked shared,
    // and nothing new is stored or counted.
    let first = registration(PUBLIC, 100);
    assert_eq!(register(&s, &first, "198.51.100.1", 100).await, Registered::Created);
    let stored = s.registration(&first.client.client_id).await.unwrap().unwrap();
    assert_eq!(stored, first.record);
    assert_eq!(s.client(&first.client.client_id).await.unwrap().unwrap(), first.client);
    let again = registration(PUBLIC, 101);
    let Registered::Existing(existing) = register(&s, &again, "198.51.100.1", 101).await else { panic!("not merged") };
    assert_eq!(existing.0, first.client);
    assert_eq!(existing.1, RegistrationRecord { shared: true, ..first.record.clone() });
    assert_eq!(s.clients().await.unwrap().len(), 1);
    // A shared registration can no longer be changed or deleted by its token's holder.
    assert!(!s.update_registered_client(&first.client, &first.record.metadata).await.unwrap());
    assert!(!s.delete_registered_client(&first.client.client_id).await.unwrap());
    assert!(s.client(&first.client.client_id).await.unwrap().is_some());

    // An unshared one can: the update replaces client and metadata and ends its fingerprint.
    let own = registration(&confidential(0), 100);
    assert_eq!(register(&s, &own, "198.51.100.1", 100).await, Registered::Created);
    let mut changed = own.client.clone();
    changed.name = "Renamed".into();
    let meta = latchkey_proto::registration::ClientMetadata::parse(confidential(9).as_bytes()).unwrap();
    assert!(s.update_registered_client(&changed, &meta).await.unwrap());
    assert_eq!(s.client(&own.client.client_id).await.unwrap().unwrap().name, "Renamed");
    let reg = s.registration(&own.client.client_id).await.unwrap().unwrap();
    assert_eq!((reg.metadata, reg.fingerprint), (meta, None));
    assert!(s.delete_registered_client(&own.client.client_id).await.unwrap());
    assert_eq!(s.client(&own.client.client_id).await.unwrap(), None);
    assert_eq!(s.registration(&own.client.client_id).await.unwrap(), None, "deleted with its client");

    // The ceiling: 3 per source per minute (2 used above), other sources apart, a new minute anew.
    let fresh = |i| registration(&confidential(i), 110);
    assert_eq!(register(&s, &fresh(1), "198.51.100.1", 110).await, Registered::Created);
    let refused = fresh(2);
    assert_eq!(register(&s, &refused, "198.51.100.1", 120).await, Registered::Throttled);
    assert_eq!(register(&s, &fresh(3), "203.0.113.7", 120).await, Registered::Created);
    assert_eq!(register(&s, &fresh(4), "198.51.100.1", 160).await, Registered::Created, "the minute is over");
    assert!(s.client(&refused.client.client_id).await.unwrap().is_none(), "a refused one stores nothing");

    // The idle purge: registered before the cut-off and no live grant. A live grant keeps a
    // client, an administrator's client is never touched, and ended minutes' counters go.
    s.insert_client(&client("app")).await.unwrap();
    let busy = registration(&confidential(5), 100);
    assert_eq!(register(&s, &busy, "192.0.2.9", 100).await, Registered::Created);
    let mut grant = issuance("g-busy", "r-busy");
    grant.grant.client_id = busy.client.client_id.clone();
    s.insert_grant(&grant).await.unwrap();
    let before = s.clients().await.unwrap().len();
    let (removed, counters) = s.purge_idle_registrations(500, 200).await.unwrap();
    assert_eq!(counters, 3, "every source's minute has passed");
    let left: Vec<ClientId> = s.clients().await.unwrap().into_iter().map(|c| c.client_id).collect();
    assert_eq!(removed as usize, before - left.len());
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.contains(&ClientId::parse("app").unwrap()) && left.contains(&busy.client.client_id));
    assert_eq!(s.purge_idle_registrations(500, 200).await.unwrap(), (0, 0));
    // Once its grant is revoked, the busy client is idle too.
    s.revoke_grant("g-busy", 501).await.unwrap();
    assert_eq!(s.purge_idle_registrations(502, 200).await.unwrap().0, 1);
    assert!(s.client(&busy.client.client_id).await.unwrap().is_none());
}

/// Claude.ai registers on every connect: 50 identical registrations at once store one client.
async fn identical_registrations_at_once_create_one_client(s: Arc<dyn Store>) {
    identical_registrations_across(&[s.clone(), s]).await;
}

async fn identical_registrations_across(instances: &[Arc<dyn Store>]) {
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let s = instances[i % instances.len()].clone();
            tokio::spawn(async move {
                let n = registration(PUBLIC, 100);
                let source = format!("198.51.100.{i}");
                match s.register_client(&n.client, &n.record, &source, 60, 100).await.unwrap() {
                    Registered::Created => (true, n.client.client_id),
                    Registered::Existing(e) => (false, e.0.client_id),
                    Registered::Throttled => panic!("not throttled"),
                }
            })
        })
        .collect();
    let mut created = 0;
    let mut ids = std::collections::BTreeSet::new();
    for t in tasks {
        let (c, id) = t.await.unwrap();
        created += usize::from(c);
        ids.insert(id.as_str().to_owned());
    }
    assert_eq!((created, ids.len()), (1, 1), "exactly one client, handed to all");
    assert_eq!(instances[0].clients().await.unwrap().len(), 1);
}

/// Two pools on one database: a session ended by both at once is reported by one (back-channel
/// logout tokens go out once per client).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_sessions_end_once_across_instances() {
    let Some(db) = TestDatabase::create("ended_sessions").await else { return };
    let a: Arc<dyn Store> = Arc::new(PostgresStore::connect(&db.url).await.unwrap());
    let b: Arc<dyn Store> = Arc::new(PostgresStore::connect(&db.url).await.unwrap());
    ended_sessions::concurrent_enders(&[a, b]).await;
}

/// Two pools on one database: one registration seen by both, and the idempotent insert holds
/// across them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_registrations_are_one_across_instances() {
    let Some(db) = TestDatabase::create("registrations").await else { return };
    let a: Arc<dyn Store> = Arc::new(PostgresStore::connect(&db.url).await.unwrap());
    let b: Arc<dyn Store> = Arc::new(PostgresStore::connect(&db.url).await.unwrap());
    identical_registrations_across(&[a.clone(), b.clone()]).await;
    let id = a.clients().await.unwrap()[0].client_id.clone();
    assert!(b.registration(&id).await.unwrap().unwrap().shared);
}

/// Two pools on one database stand for two instances: a document one of them fetched and cached is
/// served to the other, so a fleet fetches each document once per lifetime.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_instances_share_cached_metadata_documents() {
    let Some(db) = TestDatabase::create("cimd").await else { return };
    let a: Arc<dyn Store> = Arc::new(PostgresStore::connect(&db.url).await.unwrap());
    let b: Arc<dyn Store> = Arc::new(PostgresStore::connect(&db.url).await.unwrap());
    let url = "https://mcp.example/client.json";
    assert!(b.cached_metadata_document(url, 10).await.unwrap().is_none());
    a.cache_metadata_document(&document(url, 10, 3610), 100).await.unwrap();
    assert_eq!(b.cached_metadata_document(url, 20).await.unwrap(), Some(document(url, 10, 3610)));
    // Both instances storing one document at once (each fetched it) is not an error.
    let writes: Vec<_> = (0..16)
        .map(|i| {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { s.cache_metadata_document(&document(url, 20 + i, 4000 + i), 100).await })
        })
        .collect();
    for w in writes {
        w.await.unwrap().unwrap();
    }
    assert!(a.cached_metadata_document(url, 30).await.unwrap().is_some());
    assert_eq!(b.table_counts().await.unwrap().client_metadata_documents, 1);
}

fn notice(to: &str) -> Job {
    Job::Mail(MailJob { to: to.into(), notice: Notice::Test })
}

async fn outbox_jobs_are_claimed_retried_buried_and_completed(s: Arc<dyn Store>) {
    let (a, b, c) = (notice("a@example.com"), notice("b@example.com"), notice("c@example.com"));
    let ids = [s.enqueue(&a, 100).await.unwrap(), s.enqueue(&b, 100).await.unwrap(), s.enqueue(&c, 101).await.unwrap()];
    assert!(s.claim_due(99, 400, 10).await.unwrap().is_empty(), "nothing is due before it was queued");
    let first = s.claim_due(101, 401, 2).await.unwrap();
    assert_eq!(first.iter().map(|r| r.id).collect::<Vec<_>>(), ids[..2], "oldest due first, at most the limit");
    assert_eq!(first[0].job, a);
    assert_eq!((first[0].attempts, first[0].next_attempt_at, first[0].created_at), (1, 401, 100));
    let second = s.claim_due(101, 401, 10).await.unwrap();
    assert_eq!(second.iter().map(|r| r.id).collect::<Vec<_>>(), [ids[2]], "claimed jobs are leased to their claimer");
    assert!(s.claim_due(400, 700, 10).await.unwrap().is_empty(), "every lease still holds");
    // a is delivered, b failed and waits, c is given up.
    s.complete(ids[0], 150).await.unwrap();
    s.retry(ids[1], 200, "421 try later").await.unwrap();
    s.bury(ids[2], 150, "550 no such user").await.unwrap();
    assert!(s.claim_due(199, 500, 10).await.unwrap().is_empty());
    let again = s.claim_due(200, 500, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id, again[0].attempts), (ids[1], 2));
    assert_eq!(again[0].last_error.as_deref(), Some("421 try later"));
    // Its claimer dies: once the lease ends, the job is due again for anyone.
    assert!(s.claim_due(499, 800, 10).await.unwrap().is_empty());
    let taken_over = s.claim_due(500, 800, 10).await.unwrap();
    assert_eq!((taken_over[0].id, taken_over[0].attempts), (ids[1], 3));
    let dead = s.outbox_jobs(OutboxFilter::Dead, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert!(dead[0].dead && dead[0].last_error.as_deref() == Some("550 no such user"));
    let done = s.outbox_jobs(OutboxFilter::Completed, 10).await.unwrap();
    assert_eq!((done[0].id, done[0].completed_at), (ids[0], Some(150)));
    assert_eq!(s.outbox_jobs(OutboxFilter::Queued, 10).await.unwrap().len(), 1);
    // A late retry of a delivered job changes nothing.
    s.retry(ids[0], 900, "late").await.unwrap();
    assert!(s.claim_due(1000, 1300, 10).await.unwrap().iter().all(|r| r.id != ids[0]));
    // The administrator revives the dead job.
    assert!(s.revive(ids[2], 1000).await.unwrap());
    assert!(!s.revive(ids[2], 1000).await.unwrap(), "only a dead job");
    let revived = s.claim_due(1000, 1300, 10).await.unwrap();
    assert_eq!((revived.len(), revived[0].id, revived[0].attempts), (1, ids[2], 1));
    s.bury(ids[2], 1000, "still refused").await.unwrap();
    // A job of a kind this version does not know is kept as it was.
    let future = Job::Unreadable { payload: r#"{"kind":"pigeon"}"#.into() };
    s.enqueue(&future, 1000).await.unwrap();
    let got = s.claim_due(1300, 1600, 10).await.unwrap();
    assert!(got.iter().any(|r| r.job == future), "{got:?}");
    // Delivered jobs go a day after delivery, dead ones a week after they were given up.
    assert_eq!(s.table_counts().await.unwrap().outbox, 4);
    assert_eq!(s.purge_expired(150 + 86399, &POLICY).await.unwrap().outbox, 0);
    assert_eq!(s.purge_expired(150 + 86400, &POLICY).await.unwrap().outbox, 1, "the delivered one");
    assert_eq!(s.purge_expired(1000 + 604800, &POLICY).await.unwrap().outbox, 1, "the dead one");
    assert_eq!(s.table_counts().await.unwrap().outbox, 2, "queued jobs are never purged");
}

/// Unauthenticated requests may not fill the queue: of a burst of capped inserts, exactly as many
/// as the cap allows get in, however they interleave.
async fn the_outbox_cap_holds_under_a_burst(s: Arc<dyn Store>) {
    s.enqueue(&notice("admin@example.com"), 1).await.unwrap();
    let tries: Vec<_> = (0..40)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.enqueue_capped(&notice(&format!("u{i}@example.com")), 10, 10).await })
        })
        .collect();
    let mut accepted = 0;
    for t in tries {
        accepted += usize::from(t.await.unwrap().unwrap().is_some());
    }
    assert_eq!(accepted, 9, "the cap counts every queued job, the admin's too");
    // Delivered jobs make room.
    for r in s.claim_due(10, 100, 100).await.unwrap().iter().take(3) {
        s.complete(r.id, 11).await.unwrap();
    }
    assert!(s.enqueue_capped(&notice("late@example.com"), 12, 10).await.unwrap().is_some());
}

/// Workers claiming at once (on one store or on several instances of one database) share the
/// queue without ever holding the same job.
async fn outbox_claims_are_exclusive(instances: &[Arc<dyn Store>]) {
    let s = &instances[0];
    for i in 0..120 {
        s.enqueue(&notice(&format!("u{i}@example.com")), 5).await.unwrap();
    }
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let s = instances[w % instances.len()].clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let got = s.claim_due(10, 1000, 7).await.unwrap();
                    if got.is_empty() {
                        break mine;
                    }
                    mine.extend(got.into_iter().map(|r| r.id));
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(n, all.len(), "a job was claimed twice");
    assert_eq!(n, 120, "every job was claimed");
}

/// Two pools on one database stand for two instances: their workers never claim the same job, and
/// their capped inserts share one cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_outbox_claims_are_exclusive_across_instances() {
    let Some(db) = TestDatabase::create("outbox").await else { return };
    let a: Arc<dyn Store> = Arc::new(PostgresStore::connect(&db.url).await.unwrap());
    let b: Arc<dyn Store> = Arc::new(PostgresStore::connect(&db.url).await.unwrap());
    outbox_claims_are_exclusive(&[a.clone(), b.clone()]).await;
    let tries: Vec<_> = (0..30)
        .map(|i| {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { s.enqueue_capped(&notice("x@example.com"), 2000, 130).await })
        })
        .collect();
    let mut accepted = 0;
    for t in tries {
        accepted += usize::from(t.await.unwrap().unwrap().is_some());
    }
    assert_eq!(accepted, 10, "one cap across instances (the 120 claimed jobs are not delivered: they count)");
}

/// Two processes on one SQLite file: the claim is exclusive there too (the file's write lock).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_outbox_claims_are_exclusive_across_connections() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.sqlite");
    let a: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    let b: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    outbox_claims_are_exclusive(&[a, b]).await;
}

fn link(token: &str, purpose: LinkPurpose, user_id: Option<&str>, email: &str, expires_at: i64) -> EmailLinkRecord {
    EmailLinkRecord {
        hash: TokenHash::of(token),
        purpose,
        user_id: user_id.map(str::to_owned),
        email: email.into(),
        created_at: 10,
        expires_at,
    }
}

async fn email_links_are_single_use_replaced_and_expire(s: Arc<dyn Store>) {
    s.insert_user(&user("alice")).await.unwrap();
    s.insert_user(&UserRecord { email: "ALICE@Example.com".into(), ..user("alice2") }).await.unwrap();
    let by_email = s.users_by_email("alice@EXAMPLE.com").await.unwrap();
    assert_eq!(by_email.iter().map(|u| u.username.as_str()).collect::<Vec<_>>(), ["alice", "alice2"], "any case");
    let reset = LinkPurpose::PasswordReset;
    s.issue_link(&link("old", reset, Some("id-alice"), "alice@example.com", 1000)).await.unwrap();
    s.issue_link(&link("other-purpose", LinkPurpose::VerifyEmail, Some("id-alice"), "a@x.example", 1000))
        .await
        .unwrap();
    s.issue_link(&link("new", reset, Some("id-alice"), "alice@example.com", 1000)).await.unwrap();
    assert!(s.email_link(&TokenHash::of("old"), reset, 20).await.unwrap().is_none(), "a newer link replaces the older");
    assert!(s.email_link(&TokenHash::of("other-purpose"), LinkPurpose::VerifyEmail, 20).await.unwrap().is_some());
    assert!(s.email_link(&TokenHash::of("new"), LinkPurpose::VerifyEmail, 20).await.unwrap().is_none(), "purpose");
    let got = s.email_link(&TokenHash::of("new"), reset, 20).await.unwrap().unwrap();
    assert_eq!(got, link("new", reset, Some("id-alice"), "alice@example.com", 1000));
    assert!(s.email_link(&TokenHash::of("new"), reset, 1000).await.unwrap().is_none(), "expired at its time");
    assert!(s.consume_link(&TokenHash::of("new"), reset, 1000).await.unwrap().is_none());
    // A burst of uses of one link: exactly one gets it.
    let uses: Vec<_> = (0..24)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.consume_link(&TokenHash::of("new"), LinkPurpose::PasswordReset, 30).await })
        })
        .collect();
    let mut winners = 0;
    for u in uses {
        winners += usize::from(u.await.unwrap().unwrap().is_some());
    }
    assert_eq!(winners, 1, "a link is used once");
    // Invitations are replaced per address.
    let inv = LinkPurpose::Invitation;
    s.issue_link(&link("i1", inv, None, "Zed@example.com", 1000)).await.unwrap();
    s.issue_link(&link("i2", inv, None, "zed@example.com", 1000)).await.unwrap();
    s.issue_link(&link("i3", inv, None, "yan@example.com", 1000)).await.unwrap();
    assert!(s.email_link(&TokenHash::of("i1"), inv, 20).await.unwrap().is_none());
    assert!(s.email_link(&TokenHash::of("i2"), inv, 20).await.unwrap().is_some());
    assert!(s.email_link(&TokenHash::of("i3"), inv, 20).await.unwrap().is_some());
    // Confirming an address only works while it is the account's.
    assert!(!s.confirm_address("id-alice", "someone@else.example").await.unwrap());
    assert!(s.confirm_address("id-alice", "ALICE@example.com").await.unwrap());
    assert!(s.user("id-alice").await.unwrap().unwrap().email_verified);
    // Expired links go in the purge; a removed account takes its links along.
    assert_eq!(s.table_counts().await.unwrap().email_links, 3);
    assert_eq!(s.purge_expired(999, &POLICY).await.unwrap().email_links, 0);
    assert_eq!(s.purge_expired(1000, &POLICY).await.unwrap().email_links, 3);
    s.issue_link(&link("again", reset, Some("id-alice"), "alice@example.com", 5000)).await.unwrap();
    assert!(s.remove_user("alice", 30).await.unwrap().is_some());
    assert_eq!(s.table_counts().await.unwrap().email_links, 0);
}

async fn verification_sets_the_address_and_lifts_the_hold(s: Arc<dyn Store>) {
    assert_eq!(s.create_unverified_user(&user("bob"), 10, 50).await.unwrap(), SignupStored::Created);
    assert_eq!(s.signup_hold("id-bob").await.unwrap(), Some(SignupHold { user_id: "id-bob".into(), created_at: 50 }));
    s.issue_link(&link("v", LinkPurpose::VerifyEmail, Some("id-bob"), "bob@new.example", 1000)).await.unwrap();
    assert!(s.verify_email(&TokenHash::of("nope"), 60).await.unwrap().is_none());
    let v = s.verify_email(&TokenHash::of("v"), 60).await.unwrap().unwrap();
    assert_eq!(
        v,
        VerifiedEmail {
            user_id: "id-bob".into(),
            username: "bob".into(),
            previous: "bob@example.com".into(),
            email: "bob@new.example".into()
        }
    );
    let bob = s.user("id-bob").await.unwrap().unwrap();
    assert_eq!((bob.email.as_str(), bob.email_verified), ("bob@new.example", true));
    assert!(s.signup_hold("id-bob").await.unwrap().is_none(), "a verified account may sign in");
    assert!(s.verify_email(&TokenHash::of("v"), 61).await.unwrap().is_none(), "once");
    assert!(s.set_email("id-bob", "b@other.example", false).await.unwrap());
    assert!(!s.set_email("id-nobody", "x@example.com", true).await.unwrap());
    assert!(!s.user("id-bob").await.unwrap().unwrap().email_verified);
}

async fn open_sign_ups_are_unique_by_address_and_capped(s: Arc<dyn Store>) {
    s.insert_user(&user("alice")).await.unwrap();
    let dana = UserRecord { email: "dana@example.com".into(), ..user("dana") };
    assert_eq!(
        s.create_unverified_user(&UserRecord { username: "alice".into(), ..dana.clone() }, 10, 1).await.unwrap(),
        SignupStored::UsernameTaken
    );
    let thief = UserRecord { id: "id-x".into(), email: "ALICE@example.com".into(), ..user("x") };
    assert_eq!(
        s.create_unverified_user(&thief, 10, 1).await.unwrap(),
        SignupStored::EmailTaken { username: "alice".into() },
        "an address with an account gets no second one"
    );
    assert!(s.user("id-x").await.unwrap().is_none(), "nothing was created");
    // A burst of sign-ups for one address under different names: exactly one account.
    let tries: Vec<_> = (0..16)
        .map(|i| {
            let s = s.clone();
            let u = UserRecord {
                id: format!("id-e{i}"),
                username: format!("e{i}"),
                email: "eve@example.com".into(),
                ..user("e")
            };
            tokio::spawn(async move { s.create_unverified_user(&u, 100, 2).await })
        })
        .collect();
    let mut created = 0;
    for t in tries {
        created += usize::from(t.await.unwrap().unwrap() == SignupStored::Created);
    }
    assert_eq!(created, 1);
    // The cap counts accounts waiting for verification.
    assert_eq!(s.create_unverified_user(&dana, 2, 3).await.unwrap(), SignupStored::Created);
    let fay = UserRecord { email: "fay@example.com".into(), ..user("fay") };
    assert_eq!(s.create_unverified_user(&fay, 2, 3).await.unwrap(), SignupStored::Full);
    assert_eq!(s.table_counts().await.unwrap().signup_holds, 2);
    // Sign-ups never verified are removed a week on, with their hold; verified accounts stay.
    assert!(s.confirm_address("id-dana", "dana@example.com").await.unwrap());
    let week = UNVERIFIED_SIGNUP_TTL;
    assert_eq!(s.purge_expired(2 + week - 1, &POLICY).await.unwrap().users, 0);
    assert_eq!(s.purge_expired(2 + week, &POLICY).await.unwrap().users, 1, "eve's unverified account");
    let c = s.table_counts().await.unwrap();
    assert_eq!((c.users, c.signup_holds), (2, 0), "alice and dana");
}

async fn invitations_are_for_their_address_only(s: Arc<dyn Store>) {
    s.insert_user(&user("alice")).await.unwrap();
    let inv = LinkPurpose::Invitation;
    s.issue_link(&link("inv", inv, None, "Gil@example.com", 1000)).await.unwrap();
    let gil = UserRecord { email: "gil@example.com".into(), ..user("gil") };
    let other = UserRecord { email: "mallory@example.com".into(), ..gil.clone() };
    assert_eq!(
        s.create_invited_user(&TokenHash::of("inv"), &other, 20).await.unwrap(),
        InvitedStored::InvalidInvitation
    );
    assert_eq!(
        s.create_invited_user(&TokenHash::of("inv"), &gil, 1000).await.unwrap(),
        InvitedStored::InvalidInvitation,
        "expired"
    );
    let taken = UserRecord { username: "alice".into(), ..gil.clone() };
    assert_eq!(s.create_invited_user(&TokenHash::of("inv"), &taken, 20).await.unwrap(), InvitedStored::UsernameTaken);
    assert!(
        s.email_link(&TokenHash::of("inv"), inv, 20).await.unwrap().is_some(),
        "a taken name leaves the invitation"
    );
    assert_eq!(s.create_invited_user(&TokenHash::of("inv"), &gil, 20).await.unwrap(), InvitedStored::Created);
    let got = s.user("id-gil").await.unwrap().unwrap();
    assert!(got.email_verified, "the invitation was mailed to the address");
    assert!(s.signup_hold("id-gil").await.unwrap().is_none());
    let again = UserRecord { id: "id-gil2".into(), username: "gil2".into(), ..gil.clone() };
    assert_eq!(
        s.create_invited_user(&TokenHash::of("inv"), &again, 21).await.unwrap(),
        InvitedStored::InvalidInvitation,
        "once"
    );
    // An invitation to an address that has an account meanwhile is used up and creates nothing.
    s.issue_link(&link("inv2", inv, None, "alice@example.com", 1000)).await.unwrap();
    let dup = UserRecord { id: "id-al2".into(), username: "al2".into(), ..user("alice") };
    assert_eq!(
        s.create_invited_user(&TokenHash::of("inv2"), &dup, 22).await.unwrap(),
        InvitedStored::EmailTaken { username: "alice".into() }
    );
    assert!(s.user("id-al2").await.unwrap().is_none());
}

/// Issue 13, across instances: the second factors' single-use rules hold between two pools on
/// one database as within one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_second_factors_are_single_use_across_instances() {
    let Some(db) = TestDatabase::create("factors").await else { return };
    let fresh = || async {
        let url = db.fresh_schema().await;
        let a: Arc<dyn Store> = Arc::new(PostgresStore::connect(&url).await.unwrap());
        let b: Arc<dyn Store> = Arc::new(PostgresStore::connect(&url).await.unwrap());
        [a, b]
    };
    factors::a_totp_step_is_accepted_once(&fresh().await).await;
    factors::a_recovery_code_is_used_once(&fresh().await).await;
    factors::a_partial_sign_in_is_taken_once_and_bounded(&fresh().await).await;
    factors::a_step_up_upgrades_one_live_session_once(&fresh().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_replay_marks_and_pushed_requests_hold_across_instances() {
    let Some(db) = TestDatabase::create("protection").await else { return };
    let a: Arc<dyn Store> = Arc::new(PostgresStore::connect(&db.url).await.unwrap());
    let b: Arc<dyn Store> = Arc::new(PostgresStore::connect(&db.url).await.unwrap());
    protection::a_mark_is_first_used_once(&[a.clone(), b.clone()]).await;
    protection::a_pushed_request_is_taken_once_and_bounded(&[a, b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_passkey_rules_hold_across_instances() {
    let Some(db) = TestDatabase::create("passkeys").await else { return };
    let a: Arc<dyn Store> = Arc::new(PostgresStore::connect(&db.url).await.unwrap());
    let b: Arc<dyn Store> = Arc::new(PostgresStore::connect(&db.url).await.unwrap());
    passkeys::across_instances(a, b).await;
}

/// Issue 15, across instances: two pools on one database bound, answer, poll and redeem device
/// authorization requests as one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_device_codes_hold_across_instances() {
    let Some(db) = TestDatabase::create("devices").await else { return };
    devices::across_instances(&|| async {
        let url = db.fresh_schema().await;
        let a: Arc<dyn Store> = Arc::new(PostgresStore::connect(&url).await.unwrap());
        let b: Arc<dyn Store> = Arc::new(PostgresStore::connect(&url).await.unwrap());
        vec![a, b]
    })
    .await;
}

/// Two processes on one SQLite file: the device rules hold there too (the file's write lock).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_device_codes_hold_across_connections() {
    let dir = tempfile::tempdir().unwrap();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    devices::across_instances(&|| {
        let path =
            dir.path().join(format!("shared{}.sqlite", counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst)));
        async move {
            let a: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
            let b: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
            vec![a, b]
        }
    })
    .await;
}
