//! Ending login sessions on SQLite (see `session_end_sql` for what is shared and why): each
//! ended session is returned with its clients, and the back-channel logout tokens owed for it are
//! queued in the outbox in the caller's transaction.

use latchkey_core::UnixTime;
use latchkey_core::store::{ClientRecord, EndedSession, EndedSessions};
use latchkey_proto::ClientId;
use rusqlite::{Connection, OptionalExtension, params};

use crate::session_end_sql as sql;
use crate::sqlite::{client_id_at, conv};

/// Deletes every session of user `id` but `keep_sid`; returns them as ended, their logout tokens
/// queued.
pub(crate) fn end_user_sessions(
    c: &Connection,
    id: &str,
    keep_sid: Option<&str>,
    now: UnixTime,
) -> rusqlite::Result<EndedSessions> {
    let sids: Vec<String> = c
        .prepare_cached(sql::DELETE_USER_SESSIONS)?
        .query_map(params![id, keep_sid.unwrap_or("")], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    ended_sessions(c, id, sids, now)
}

/// Sessions `sids` of user `id`, just deleted in the caller's transaction (by the statement that
/// returned them): reports them as ended, with their clients, and queues their logout tokens.
/// Every operation that deletes sessions passes what its `DELETE … RETURNING` returned here.
pub(crate) fn ended_sessions(
    c: &Connection,
    id: &str,
    mut sids: Vec<String>,
    now: UnixTime,
) -> rusqlite::Result<EndedSessions> {
    sids.sort();
    let mut out = Vec::with_capacity(sids.len());
    for sid in sids {
        let clients = session_clients(c, &sid)?;
        out.push(EndedSession { sid, user_id: id.to_owned(), clients });
    }
    let ended = EndedSessions(out);
    queue_logout_tokens(c, &ended, now)?;
    Ok(ended)
}

/// Deletes session `sid`; if this call deleted it, returns it as ended, its logout tokens queued.
pub(crate) fn take_session(c: &Connection, sid: &str, now: UnixTime) -> rusqlite::Result<EndedSessions> {
    let user: Option<String> = c.prepare_cached(sql::DELETE_SESSION)?.query_row([sid], |r| r.get(0)).optional()?;
    let Some(user_id) = user else { return Ok(EndedSessions::default()) };
    let clients = session_clients(c, sid)?;
    let ended = EndedSessions(vec![EndedSession { sid: sid.to_owned(), user_id, clients }]);
    queue_logout_tokens(c, &ended, now)?;
    Ok(ended)
}

fn session_clients(c: &Connection, sid: &str) -> rusqlite::Result<Vec<ClientId>> {
    c.prepare_cached(sql::SESSION_CLIENTS)?.query_map([sid], |r| client_id_at(r, 0))?.collect()
}

/// Queues in the outbox, in the caller's transaction, the back-channel logout tokens owed for
/// `ended` (`backchannel::logout_jobs` decides), due at `now`.
fn queue_logout_tokens(c: &Connection, ended: &EndedSessions, now: UnixTime) -> rusqlite::Result<()> {
    let mut clients = std::collections::HashMap::new();
    for id in ended.iter().flat_map(|s| s.clients.iter()) {
        if clients.contains_key(id) {
            continue;
        }
        let data: Option<String> =
            c.prepare_cached(sql::CLIENT_DATA)?.query_row([id.as_str()], |r| r.get(0)).optional()?;
        if let Some(data) = data {
            let record: ClientRecord = serde_json::from_str(&data).map_err(|e| conv(0)(e))?;
            clients.insert(id.clone(), record);
        }
    }
    for job in latchkey_core::backchannel::logout_jobs(ended, &clients) {
        c.prepare_cached(crate::outbox_sql::INSERT)?
            .query_row(params![job.kind(), job.to_stored(), now], |r| r.get::<_, i64>(0))?;
    }
    Ok(())
}
