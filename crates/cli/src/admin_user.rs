//! `latchkey user set|show|lock|unlock|sessions|end-sessions`: a user's profile, lock and
//! sessions, for an administrator. The rules live in `latchkey_core` (`profile`, `admin`,
//! `sessions`); this file parses and prints.

use anyhow::{anyhow, bail};
use clap::Args;
use latchkey_core::admin::ExistingGrants;
use latchkey_core::profile::{EditOutcome, Editor, Field, ProfileEdit};
use latchkey_core::store::{SessionRecord, UserRecord};
use latchkey_core::{Clock, Store, claims};
use serde_json::{Value, json};

use crate::admin::{admin_err, print_revocation};

/// `latchkey user set NAME --given-name … …`: only the options given change; "" clears a claim.
#[derive(Args, Debug)]
pub struct UserSet {
    pub username: String,
    /// Full name (`name`).
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    given_name: Option<String>,
    #[arg(long)]
    middle_name: Option<String>,
    #[arg(long)]
    family_name: Option<String>,
    #[arg(long)]
    nickname: Option<String>,
    /// Released as `preferred_username` (the username when unset).
    #[arg(long)]
    preferred_username: Option<String>,
    /// A new address is unverified unless --email-verified true is given too.
    #[arg(long)]
    email: Option<String>,
    /// State whether the email address is verified.
    #[arg(long, value_name = "true|false")]
    email_verified: Option<bool>,
    /// Phone number, international format (`phone_number`).
    #[arg(long)]
    phone: Option<String>,
    /// Postal address, formatted (`address`).
    #[arg(long)]
    address: Option<String>,
    /// The URL of the user's profile page (`profile`, https).
    #[arg(long)]
    profile: Option<String>,
    /// The URL of the user's picture (https).
    #[arg(long)]
    picture: Option<String>,
    /// https URL.
    #[arg(long)]
    website: Option<String>,
    #[arg(long)]
    gender: Option<String>,
    /// YYYY-MM-DD or YYYY.
    #[arg(long)]
    birthdate: Option<String>,
    /// An IANA time zone, such as Europe/Paris.
    #[arg(long)]
    zoneinfo: Option<String>,
    /// A BCP 47 language tag, such as en-US.
    #[arg(long)]
    locale: Option<String>,
}

impl UserSet {
    fn edit(&self) -> ProfileEdit {
        let given = [
            (Field::Name, &self.name),
            (Field::GivenName, &self.given_name),
            (Field::MiddleName, &self.middle_name),
            (Field::FamilyName, &self.family_name),
            (Field::Nickname, &self.nickname),
            (Field::PreferredUsername, &self.preferred_username),
            (Field::Email, &self.email),
            (Field::PhoneNumber, &self.phone),
            (Field::Address, &self.address),
            (Field::Profile, &self.profile),
            (Field::Picture, &self.picture),
            (Field::Website, &self.website),
            (Field::Gender, &self.gender),
            (Field::Birthdate, &self.birthdate),
            (Field::Zoneinfo, &self.zoneinfo),
            (Field::Locale, &self.locale),
        ];
        ProfileEdit {
            values: given.into_iter().filter_map(|(f, v)| v.clone().map(|v| (f, v))).collect(),
            email_verified: self.email_verified,
        }
    }
}

async fn user_named(store: &dyn Store, username: &str) -> anyhow::Result<UserRecord> {
    store.user_by_username(username).await?.ok_or_else(|| anyhow!("no user named {username:?}"))
}

pub async fn set(store: &dyn Store, a: UserSet) -> anyhow::Result<()> {
    let user = user_named(store, &a.username).await?;
    let edit = a.edit();
    if edit.values.is_empty() && edit.email_verified.is_none() {
        bail!("nothing to change: give at least one option (see `latchkey user set --help`)");
    }
    let now = Clock::system().now();
    match latchkey_core::profile::edit_profile(store, &user.id, &edit, Editor::Admin, None, now).await {
        Ok(EditOutcome::Saved { changed, email }) => {
            if changed.is_empty() && edit.email_verified.is_none() {
                println!("nothing changed for {}", a.username);
            } else {
                let names: Vec<&str> = changed.iter().map(|f| f.claim()).collect();
                println!(
                    "updated {}: {}",
                    a.username,
                    if names.is_empty() { "email_verified".into() } else { names.join(" ") }
                );
            }
            if email == latchkey_core::profile::EmailChange::StoredUnverified {
                eprintln!("The new email address is unverified (add --email-verified true if you checked it).");
            }
            Ok(())
        }
        Ok(EditOutcome::Invalid(errors)) => bail!("{errors}"),
        Err(e) => Err(anyhow!("{e}")),
    }
}

fn session_json(s: &SessionRecord) -> Value {
    json!({
        "sid": s.sid,
        "signed_in_at": s.auth_time,
        "expires_at": s.expires_at,
        "network": s.meta.network,
        "device": s.meta.device,
    })
}

pub async fn show(store: &dyn Store, username: &str, as_json: bool) -> anyhow::Result<()> {
    let u = user_named(store, username).await?;
    let now = Clock::system().now();
    let factors = latchkey_core::admin::factors(store, &u).await.map_err(admin_err)?;
    let sessions = store.user_sessions(&u.id, now).await?;
    let apps = store.user_apps(&u.id, now).await?;
    // The claims as the `profile email address phone` scopes release them.
    let all = latchkey_proto::Scope::parse("openid profile email address phone").map_err(|e| anyhow!("{e}"))?;
    let profile = claims::release(&u, &all, None, claims::Target::Userinfo);
    if as_json {
        let v = json!({
            "id": u.id,
            "username": u.username,
            "created_at": u.created_at,
            "locked_at": u.locked_at,
            "claims": profile,
            "factors": factors,
            "sessions": sessions.iter().map(session_json).collect::<Vec<_>>(),
            "apps": apps.iter().map(|a| json!({
                "client_id": a.client_id,
                "consented_scope": a.consent.as_ref().map(|c| c.scope.to_string()),
                "consented_claims": a.consent.as_ref().map(|c| c.claims.clone()),
                "live_grants": a.live_grants,
                "granted_scope": a.granted_scope.to_string(),
                "last_used": a.last_used,
            })).collect::<Vec<_>>(),
        });
        println!("{v}");
        return Ok(());
    }
    println!("username: {}", u.username);
    println!("id: {}", u.id);
    println!("created_at: {}", u.created_at);
    match u.locked_at {
        Some(t) => println!("locked: yes (since {t})"),
        None => println!("locked: no"),
    }
    for (k, v) in &profile {
        if k != "sub" {
            let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            println!("{k}: {}", v.replace('\n', ", "));
        }
    }
    for f in &factors {
        println!("factor: {}\t{}", f.kind, f.detail);
    }
    println!("sessions: {}", sessions.len());
    for s in &sessions {
        print_session(s);
    }
    for a in &apps {
        let scope = a.consent.as_ref().map(|c| c.scope.to_string()).unwrap_or_default();
        println!("app: {}\tconsented: {scope}\tlive grants: {}", a.client_id, a.live_grants);
    }
    Ok(())
}

fn print_session(s: &SessionRecord) {
    println!(
        "session: {}\tsigned in {}\texpires {}\t{}\t{}",
        s.sid,
        s.auth_time,
        s.expires_at,
        s.meta.network.as_deref().unwrap_or("-"),
        s.meta.device.as_deref().unwrap_or("-")
    );
}

pub async fn lock(store: &dyn Store, username: &str, locked: bool) -> anyhow::Result<()> {
    let now = Clock::system().now();
    if locked {
        let Some(done) = latchkey_core::admin::lock_user(store, username, now).await.map_err(admin_err)? else {
            bail!("no user named {username:?}");
        };
        println!("locked {username}: they cannot sign in");
        print_revocation(&done, ExistingGrants::Revoke);
    } else {
        if !latchkey_core::admin::unlock_user(store, username, now).await.map_err(admin_err)? {
            bail!("no user named {username:?}");
        }
        println!("unlocked {username}: they may sign in again");
    }
    Ok(())
}

pub async fn sessions(store: &dyn Store, username: &str, as_json: bool) -> anyhow::Result<()> {
    let u = user_named(store, username).await?;
    let sessions = store.user_sessions(&u.id, Clock::system().now()).await?;
    if as_json {
        println!("{}", Value::Array(sessions.iter().map(session_json).collect()));
    } else if sessions.is_empty() {
        eprintln!("no sessions");
    } else {
        for s in &sessions {
            print_session(s);
        }
    }
    Ok(())
}

pub async fn end_sessions(store: &dyn Store, username: &str, sid: Option<&str>) -> anyhow::Result<()> {
    let now = Clock::system().now();
    let Some(ended) = latchkey_core::admin::end_user_sessions(store, username, sid, now).await.map_err(admin_err)?
    else {
        bail!("no user named {username:?}");
    };
    if let (Some(sid), true) = (sid, ended.is_empty()) {
        bail!("{username} has no session {sid:?}");
    }
    println!("sessions ended: {}", ended.len());
    println!("the grants bound to them are revoked (those with offline_access stay: `user revoke-tokens` ends those)");
    Ok(())
}
