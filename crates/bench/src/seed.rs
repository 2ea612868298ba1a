//! Seeds a Latchkey database for the benchmark: the public client and U users, written with
//! Latchkey's own admin functions (the same rules and Argon2id hashing as `latchkey user add`),
//! hashed in parallel, without starting a process per user.

use std::path::PathBuf;
use std::sync::Arc;

use latchkey_core::Store;
use latchkey_core::admin::{AdminError, NewClient, NewUser, add_client, add_user};
use latchkey_core::password::Hasher;
use latchkey_core::store::StoreError;
use latchkey_proto::Password;
use latchkey_store::SqliteStore;

#[derive(Debug, Clone)]
pub struct Seed {
    pub database: PathBuf,
    pub client_id: String,
    pub redirect_uri: String,
    pub users: usize,
    pub user_prefix: String,
    pub password: String,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Seeded {
    pub client_created: bool,
    pub users_created: usize,
    pub users_existing: usize,
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
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let hasher = Hasher::new(cores)?;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..s.users {
        // The hasher runs `cores` hashes at a time; a few more tasks keep it fed.
        while tasks.len() >= 2 * cores {
            tally(&mut out, tasks.join_next().await)?;
        }
        let (store, hasher) = (store.clone(), hasher.clone());
        let username = format!("{}{i}", s.user_prefix);
        let password = Password::new(s.password.clone());
        tasks.spawn(async move {
            let user = NewUser {
                email: format!("{username}@bench.example"),
                name: Some(format!("Bench {username}")),
                phone_number: None,
                address: None,
                username,
            };
            add_user(store.as_ref(), &hasher, user, password, now()).await
        });
    }
    while !tasks.is_empty() {
        tally(&mut out, tasks.join_next().await)?;
    }
    Ok(out)
}

type Joined = Option<Result<Result<latchkey_core::store::UserRecord, AdminError>, tokio::task::JoinError>>;

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
