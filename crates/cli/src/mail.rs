//! `latchkey user invite`, `latchkey user set-email` and `latchkey outbox`: what an administrator
//! does with outgoing mail. Commands only queue: the serving processes' workers deliver (they
//! poll the queue), so these work while the server runs, on the same database.

use anyhow::bail;
use clap::Subcommand;
use latchkey_core::Clock;
use latchkey_core::outbox::{Job, OutboxFilter, OutboxRecord};
use latchkey_core::verification::ChangeRequested;
use serde_json::json;

use crate::config::Settings;
use crate::serve::open_store;

#[derive(Subcommand, Debug)]
pub enum OutboxCommand {
    /// List queued jobs (or, with --dead, the ones given up; with --done, the ones delivered in the
    /// last day).
    List {
        #[arg(long, conflicts_with = "done")]
        dead: bool,
        #[arg(long)]
        done: bool,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Try a dead job again, from now on (with a new day before it is given up).
    Retry { id: i64 },
    /// Queue a test message to ADDRESS, to check the [smtp] settings through the running server.
    Test { address: String },
}

/// Who a job is for, as the admin listing shows it.
fn recipient(j: &Job) -> String {
    match j {
        Job::Mail(m) => m.to.clone(),
        Job::PasswordReset { email } | Job::Invitation { email } | Job::VerifyEmail { email, .. } => email.clone(),
        Job::BackchannelLogout(n) => format!("client {}", n.client_id),
        Job::Unreadable { .. } => "-".into(),
    }
}

fn job_json(r: &OutboxRecord) -> serde_json::Value {
    json!({
        "id": r.id,
        "kind": r.job.kind(),
        "to": recipient(&r.job),
        "attempts": r.attempts,
        "next_attempt_at": r.next_attempt_at,
        "created_at": r.created_at,
        "last_error": r.last_error,
        "dead": r.dead,
        "completed_at": r.completed_at,
    })
}

pub async fn outbox(settings: &Settings, cmd: OutboxCommand) -> anyhow::Result<()> {
    let store = open_store(&settings.database, settings.store_options()).await?;
    let now = Clock::system().now();
    match cmd {
        OutboxCommand::List { dead, done, limit, json } => {
            let filter = if dead {
                OutboxFilter::Dead
            } else if done {
                OutboxFilter::Completed
            } else {
                OutboxFilter::Queued
            };
            let jobs = store.outbox_jobs(filter, limit).await?;
            if json {
                println!("{}", serde_json::Value::Array(jobs.iter().map(job_json).collect()));
            } else if jobs.is_empty() {
                eprintln!("no jobs");
            } else {
                for j in jobs {
                    println!(
                        "{}\t{}\t{}\tattempts {}\t{}",
                        j.id,
                        j.job.kind(),
                        recipient(&j.job),
                        j.attempts,
                        j.last_error.unwrap_or_default()
                    );
                }
            }
        }
        OutboxCommand::Retry { id } => {
            if !store.revive(id, now).await? {
                bail!("no dead job {id} (see `latchkey outbox list --dead`)");
            }
            println!("job {id} queued again");
        }
        OutboxCommand::Test { address } => {
            if settings.smtp.is_none() {
                bail!("no [smtp] section in the configuration: nothing would deliver the message");
            }
            let Some(to) = latchkey_core::mail::parse_address(&address) else { bail!("{address:?} is not an address") };
            let job = Job::Mail(latchkey_core::mail::MailJob { to, notice: latchkey_core::mail::Notice::Test });
            let id = store.enqueue(&job, now).await?;
            println!(
                "test message queued as job {id}; a running `latchkey serve` sends it (see `latchkey outbox list`)"
            );
        }
    }
    Ok(())
}

/// `latchkey user invite EMAIL`.
pub async fn invite(settings: &Settings, email: &str) -> anyhow::Result<()> {
    let store = open_store(&settings.database, settings.store_options()).await?;
    let config = settings.provider_config().email;
    latchkey_core::signup::invite(store.as_ref(), &config, email, Clock::system().now()).await?;
    println!("invitation to {email} queued; a running `latchkey serve` mails it");
    Ok(())
}

/// `latchkey user set-email NAME EMAIL [--verified]`.
pub async fn set_email(settings: &Settings, username: &str, email: &str, verified: bool) -> anyhow::Result<()> {
    let store = open_store(&settings.database, settings.store_options()).await?;
    let now = Clock::system().now();
    let Some(user) = store.user_by_username(username).await? else { bail!("no user named {username:?}") };
    if verified {
        let Some(email) = latchkey_core::mail::parse_address(email) else { bail!("{email:?} is not an address") };
        store.set_email(&user.id, &email, true).await?;
        let e = latchkey_core::audit::Event {
            user_id: Some(&user.id),
            detail: Some(json!({ "username": username, "by": "admin", "verified": true })),
            ..Default::default()
        };
        latchkey_core::audit::record(store.as_ref(), now, "email_set", e).await;
        println!("email of {username} set to {email} (verified)");
        return Ok(());
    }
    let config = settings.provider_config().email;
    if !config.enabled {
        bail!("without [smtp] no verification link can be mailed: configure it, or pass --verified");
    }
    match latchkey_core::verification::request_email_change(store.as_ref(), &config, &user.id, email, now).await? {
        ChangeRequested::Sent => {
            println!("a verification link is queued for {email}; the address of {username} changes when it is followed")
        }
        ChangeRequested::Unchanged => println!("{username} already has the verified address {email}"),
        ChangeRequested::InvalidAddress => bail!("{email:?} is not an address"),
        ChangeRequested::Throttled { retry_after } => {
            bail!("too many verification mails; try again in {retry_after} s")
        }
        ChangeRequested::Unavailable => bail!("the outbox is full; see `latchkey outbox list`"),
        ChangeRequested::NoSuchUser => bail!("no user named {username:?}"),
    }
    Ok(())
}
