//! Ending login sessions on PostgreSQL (see `session_end_sql` for what is shared and why): each
//! ended session is returned with its clients, and the back-channel logout tokens owed for it are
//! queued in the outbox in the caller's transaction.

use deadpool_postgres::Transaction;
use latchkey_core::UnixTime;
use latchkey_core::store::{ClientRecord, EndedSession, EndedSessions};
use latchkey_proto::ClientId;

use crate::postgres::{client_id_of, json_of};
use crate::session_end_sql as sql;

/// Deletes session `sid` in `tx`; if this statement deleted it (a concurrent one that got there
/// first leaves it nothing), returns it as ended, its logout tokens queued at `now`.
pub(crate) async fn take_session(tx: &Transaction<'_>, sid: &str, now: UnixTime) -> anyhow::Result<EndedSessions> {
    let Some(row) = tx.query_opt(sql::DELETE_SESSION, &[&sid]).await? else {
        return Ok(EndedSessions::default());
    };
    let user_id: String = row.try_get(0)?;
    let clients = session_clients(tx, sid).await?;
    let ended = EndedSessions(vec![EndedSession { sid: sid.to_owned(), user_id, clients }]);
    queue_logout_tokens(tx, &ended, now).await?;
    Ok(ended)
}

/// Deletes every session of user `id` but `keep_sid` in `tx`; returns those this statement
/// deleted, their logout tokens queued at `now`.
pub(crate) async fn end_user_sessions(
    tx: &Transaction<'_>,
    id: &str,
    keep_sid: Option<&str>,
    now: UnixTime,
) -> anyhow::Result<EndedSessions> {
    let rows = tx.query(sql::DELETE_USER_SESSIONS, &[&id, &keep_sid.unwrap_or("")]).await?;
    let sids = rows.iter().map(|r| r.try_get::<_, String>(0)).collect::<Result<Vec<_>, _>>()?;
    ended_sessions(tx, id, sids, now).await
}

/// Sessions `sids` of user `id`, just deleted in `tx` (by the statement that returned them):
/// reports them as ended, with their clients, and queues their logout tokens at `now`. Every
/// operation that deletes sessions passes what its `DELETE … RETURNING` returned here.
pub(crate) async fn ended_sessions(
    tx: &Transaction<'_>,
    id: &str,
    mut sids: Vec<String>,
    now: UnixTime,
) -> anyhow::Result<EndedSessions> {
    sids.sort();
    let mut out = Vec::with_capacity(sids.len());
    for sid in sids {
        let clients = session_clients(tx, &sid).await?;
        out.push(EndedSession { sid, user_id: id.to_owned(), clients });
    }
    let ended = EndedSessions(out);
    queue_logout_tokens(tx, &ended, now).await?;
    Ok(ended)
}

async fn session_clients(tx: &Transaction<'_>, sid: &str) -> anyhow::Result<Vec<ClientId>> {
    let rows = tx.query(sql::SESSION_CLIENTS, &[&sid]).await?;
    rows.iter().map(|r| client_id_of(r.try_get(0)?)).collect()
}

/// Queues in the outbox, in `tx`, the back-channel logout tokens owed for `ended`
/// (`backchannel::logout_jobs` decides), due at `now`.
async fn queue_logout_tokens(tx: &Transaction<'_>, ended: &EndedSessions, now: UnixTime) -> anyhow::Result<()> {
    let mut clients = std::collections::HashMap::new();
    for id in ended.iter().flat_map(|s| s.clients.iter()) {
        if clients.contains_key(id) {
            continue;
        }
        if let Some(row) = tx.query_opt(sql::CLIENT_DATA, &[&id.as_str()]).await? {
            clients.insert(id.clone(), json_of::<ClientRecord>(&row, 0)?);
        }
    }
    for job in latchkey_core::backchannel::logout_jobs(ended, &clients) {
        tx.query_one(crate::outbox_sql::INSERT, &[&job.kind(), &job.to_stored(), &now]).await?;
    }
    Ok(())
}
