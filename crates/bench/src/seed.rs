//! Seeds a Latchkey database for the benchmark: the public client and U users, written with
//! Latchkey's own admin functions (the same rules and Argon2id hashing as `latchkey user add`),
//! hashed in parallel, without starting a process per user.
//!
//! For the account phases (issue 13) it also makes users with TOTP and users with a passkey,
//! through the store's and the provider's own calls (the ones the two-step and passkey pages
//! end in), and returns what their authenticators hold as [`AccountFixtures`].

use std::path::PathBuf;
use std::sync::Arc;

use latchkey_core::Store;
use latchkey_core::account::AccountSession;
use latchkey_core::admin::{AdminError, NewClient, NewUser, add_client, add_user};
use latchkey_core::authn::{Authentication, Method};
use latchkey_core::factors::TotpRecord;
use latchkey_core::factors::totp::{STEP, TotpSecret};
use latchkey_core::passkey::soft::SoftAuthenticator;
use latchkey_core::password::Hasher;
use latchkey_core::store::{ConsentRecord, SessionMeta, SessionRecord, StoreError, UserRecord};
use latchkey_core::{Provider, ProviderConfig};
use latchkey_proto::{ClientId, Password, Scope, TokenHash};
use latchkey_store::SqliteStore;

use crate::accounts::{AccountFixtures, PasskeyUser, TotpUser, email_of, passkey_username, totp_username};

#[derive(Debug, Clone)]
pub struct Seed {
    pub database: PathBuf,
    pub client_id: String,
    pub redirect_uri: String,
    pub users: usize,
    pub user_prefix: String,
    pub password: String,
    /// The scope the account users have consented to (the workload's).
    pub scope: String,
    /// The issuer the server will run with: passkeys are registered for its relying party, whose
    /// id is its host and must be a domain name (`http://localhost:PORT` will do).
    pub issuer: String,
    /// Users `{prefix}totp-{i}` with TOTP, and `{prefix}passkey-{i}` with a passkey.
    pub totp_users: usize,
    pub passkey_users: usize,
}

#[derive(Debug, Default)]
pub struct Seeded {
    pub client_created: bool,
    pub users_created: usize,
    pub users_existing: usize,
    pub accounts: AccountFixtures,
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Creates what is missing; what exists already is kept (so a seeded database can be reused).
/// The protected resource `seed-latchkey` registers, for `run --resource`.
pub const BENCH_RESOURCE: &str = "https://api.bench.example/mcp";

pub async fn seed(s: &Seed) -> anyhow::Result<Seeded> {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&s.database)?);
    seed_store(store, s).await
}

pub async fn seed_store(store: Arc<dyn Store>, s: &Seed) -> anyhow::Result<Seeded> {
    let mut out = Seeded::default();
    // Not first-party: the consent page is part of each user's first login.
    let client = NewClient::public(&s.client_id, "latchkey-bench", vec![s.redirect_uri.clone()]);
    match add_client(store.as_ref(), client, now()).await {
        Ok(_) => out.client_created = true,
        Err(AdminError::Store(StoreError::AlreadyExists(_))) => {}
        Err(e) => return Err(e.into()),
    }
    // The resource of the "with resource" phases (`run --resource`).
    let resource = latchkey_core::admin::add_resource(store.as_ref(), BENCH_RESOURCE, None, &[], now()).await;
    match resource {
        Ok(_) | Err(AdminError::Store(StoreError::AlreadyExists(_))) => {}
        Err(e) => return Err(e.into()),
    }
    // A passkey needs a relying party, and that a domain name: fail before hashing anything.
    let provider = if s.passkey_users > 0 {
        let provider = Provider::open(store.clone(), ProviderConfig::new(&s.issuer), now()).await?;
        if provider.passkeys().is_none() {
            anyhow::bail!(
                "passkeys need an issuer on a domain name (WebAuthn has no relying party on an IP address): \
                 --issuer {} will not do; use http://localhost:PORT",
                s.issuer
            );
        }
        Some(provider)
    } else {
        None
    };
    let totp_names: Vec<String> = (0..s.totp_users).map(|i| totp_username(&s.user_prefix, i)).collect();
    let passkey_names: Vec<String> = (0..s.passkey_users).map(|i| passkey_username(&s.user_prefix, i)).collect();
    let names =
        (0..s.users).map(|i| format!("{}{i}", s.user_prefix)).chain(totp_names.clone()).chain(passkey_names.clone());
    add_users(&store, names, &s.password, &mut out).await?;

    let t = now();
    let client_id = ClientId::parse(&s.client_id).map_err(|e| anyhow::anyhow!("--client-id: {e}"))?;
    let scope = Scope::parse(&s.scope).map_err(|e| anyhow::anyhow!("the scope {}: {e}", s.scope))?;
    let consent = |user: &UserRecord| ConsentRecord {
        user_id: user.id.clone(),
        client_id: client_id.clone(),
        scope: scope.clone(),
        updated_at: t,
        claims: Vec::new(),
    };
    for name in &totp_names {
        let user = existing(store.as_ref(), name).await?;
        store.put_consent(&consent(&user)).await?;
        out.accounts.totp.push(enrol_totp(store.as_ref(), &user, t).await?);
    }
    if let Some(provider) = &provider {
        let origin = url::Url::parse(&s.issuer)?.origin().ascii_serialization();
        for name in &passkey_names {
            let user = existing(store.as_ref(), name).await?;
            store.put_consent(&consent(&user)).await?;
            out.accounts.passkeys.push(enrol_passkey(provider, store.as_ref(), user, &origin, t).await?);
        }
    }
    Ok(out)
}

async fn add_users(
    store: &Arc<dyn Store>,
    names: impl Iterator<Item = String>,
    password: &str,
    out: &mut Seeded,
) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let hasher = Hasher::new(cores)?;
    let mut tasks = tokio::task::JoinSet::new();
    for username in names {
        // The hasher runs `cores` hashes at a time; a few more tasks keep it fed.
        while tasks.len() >= 2 * cores {
            tally(out, tasks.join_next().await)?;
        }
        let (store, hasher) = (store.clone(), hasher.clone());
        let password = Password::new(password.to_owned());
        tasks.spawn(async move {
            let user = NewUser {
                email: email_of(&username),
                name: Some(format!("Bench {username}")),
                phone_number: None,
                address: None,
                username,
            };
            add_user(store.as_ref(), &hasher, user, password, now()).await
        });
    }
    while !tasks.is_empty() {
        tally(out, tasks.join_next().await)?;
    }
    Ok(())
}

async fn existing(store: &dyn Store, username: &str) -> anyhow::Result<UserRecord> {
    store.user_by_username(username).await?.ok_or_else(|| anyhow::anyhow!("user {username} was not created"))
}

/// A confirmed TOTP secret, as the setup on the two-step page leaves it (`begin_totp`, then
/// `confirm_totp` with a fresh set of recovery codes), or the user's secret from an earlier seed.
/// It is confirmed with the code of the step before this one, so that this step's code still
/// signs in (a code is accepted once per user, RFC 6238 §5.2).
async fn enrol_totp(store: &dyn Store, user: &UserRecord, now: i64) -> anyhow::Result<TotpUser> {
    let secret = match store.totp(&user.id).await? {
        Some(rec) if rec.confirmed_at.is_some() => TotpSecret::from_stored(&rec.secret, None, &user.id)?,
        _ => {
            let secret = TotpSecret::generate();
            let stored = secret.to_stored(None, &user.id)?;
            let rec = TotpRecord {
                user_id: user.id.clone(),
                secret: stored.clone(),
                created_at: now,
                confirmed_at: None,
                last_step: 0,
            };
            if !store.begin_totp(&rec).await? {
                anyhow::bail!("{}: TOTP could not be set up", user.username);
            }
            let (_, hashes) = latchkey_core::factors::recovery::new_set(&user.id);
            let step = now / STEP as i64 - 1;
            if !store.confirm_totp(&user.id, &stored, step, &hashes, now).await? {
                anyhow::bail!("{}: TOTP could not be confirmed", user.username);
            }
            secret
        }
    };
    Ok(TotpUser { username: user.username.clone(), secret_base32: secret.expose_base32() })
}

/// A passkey registered through the account page's two calls, for a session the user opened a
/// moment ago. Its private key exists only in the fixtures, so a passkey from an earlier seed is
/// replaced. The authenticator is a synced passkey's (backup-eligible, no signature counter, as
/// platform keychains report): concurrent sign-ins with one credential are then all valid, where
/// a counting key's would race its own counter.
async fn enrol_passkey(
    provider: &Provider,
    store: &dyn Store,
    user: UserRecord,
    origin: &str,
    now: i64,
) -> anyhow::Result<PasskeyUser> {
    let rp_id = provider.passkeys().map(|rp| rp.rp_id.clone()).unwrap_or_default();
    store.remove_user_passkeys(&user.id).await?;
    let session = SessionRecord {
        hash: TokenHash::of(&latchkey_proto::secret::random_token()),
        sid: latchkey_proto::secret::random_token(),
        user_id: user.id.clone(),
        auth_time: now,
        expires_at: now + 60,
        authn: Authentication::of(&[Method::Password]),
        meta: SessionMeta::default(),
    };
    let username = user.username.clone();
    let a = AccountSession { session, user };
    let start = provider.start_passkey_registration(&a, "latchkey-bench", None, now).await?;
    let mut key = SoftAuthenticator::new(&rp_id);
    key.counting = false;
    key.backup_eligible = true;
    key.backup_state = true;
    let credential = key.create(&start.options, origin);
    provider.finish_passkey_registration(&a, &start.ceremony, &credential.to_string(), None, now).await?;
    Ok(PasskeyUser { username, authenticator: key })
}

type Joined = Option<Result<Result<UserRecord, AdminError>, tokio::task::JoinError>>;

fn tally(out: &mut Seeded, joined: Joined) -> anyhow::Result<()> {
    match joined {
        None => Ok(()),
        Some(Err(e)) => Err(anyhow::anyhow!("a seeding task failed: {e}")),
        Some(Ok(Ok(_))) => {
            out.users_created += 1;
            Ok(())
        }
        Some(Ok(Err(AdminError::Store(StoreError::AlreadyExists(_))))) => {
            out.users_existing += 1;
            Ok(())
        }
        Some(Ok(Err(e))) => Err(e.into()),
    }
}
