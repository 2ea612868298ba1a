//! Device authorization requests (`latchkey_core::device_grant`, RFC 8628) as SQL, and their row
//! mapping, shared by both backends. SQLite reads `$n` as named parameters numbered in order of
//! first appearance, so every statement names its parameters in increasing order.
//!
//! `status` holds the JSON of `DeviceStatus`; `state` holds its tag alone ('pending', 'approved',
//! 'denied'), written from the same value by [`DeviceColumns::of`], so that "answer only a
//! pending request" and "redeem only an approved one" are conditions of one UPDATE or DELETE.

use anyhow::{Context, anyhow};
use latchkey_core::UnixTime;
use latchkey_core::device_grant::{DeviceRecord, DeviceStatus};
use latchkey_proto::{ClientId, ResourceUri, Scope, TokenHash};

/// The columns [`DeviceRow`] is read from, in its field order.
pub const COLS: &str = "device_hash, user_code_hash, client_id, scope, resource, created_at, expires_at, interval_s, \
                        last_poll_at, requested_from, status";

pub const INSERT: &str =
    "INSERT INTO device_codes (device_hash, user_code_hash, client_id, scope, resource, created_at, \
                          expires_at, interval_s, last_poll_at, requested_from, state, status)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

/// An expired row holding the user code about to be reused: it goes first, or the unique
/// constraint would refuse the new one for the lifetime of a dead record.
pub const DELETE_EXPIRED_USER_CODE: &str = "DELETE FROM device_codes WHERE user_code_hash = $1 AND expires_at <= $2";

/// Live rows of a client, whatever their state: the per-client bound (the endpoint is open to
/// anyone who knows a public client's id).
pub const COUNT_LIVE_FOR_CLIENT: &str = "SELECT count(*) FROM device_codes WHERE client_id = $1 AND expires_at > $2";

/// Rows holding a user code; after [`DELETE_EXPIRED_USER_CODE`] in the same step, live ones only.
pub const COUNT_USER_CODE: &str = "SELECT count(*) FROM device_codes WHERE user_code_hash = $1";

/// What the verification page may show: live and still waiting for an answer.
pub fn pending() -> String {
    format!("SELECT {COLS} FROM device_codes WHERE user_code_hash = $1 AND expires_at > $2 AND state = 'pending'")
}

/// The answer is the condition: of concurrent answers, the first to update the row wins, the
/// others find it no longer pending and change nothing.
pub const DECIDE: &str = "UPDATE device_codes SET state = $1, status = $2
     WHERE user_code_hash = $3 AND expires_at > $4 AND state = 'pending'";

/// The row a poll reads; PostgreSQL appends `FOR UPDATE`, SQLite's single writer needs nothing.
pub fn by_device() -> String {
    format!("SELECT {COLS} FROM device_codes WHERE device_hash = $1")
}

/// `PollUpdate::Keep`.
pub const KEEP: &str = "UPDATE device_codes SET interval_s = $1, last_poll_at = $2 WHERE device_hash = $3";

/// `PollUpdate::Remove`.
pub const REMOVE: &str = "DELETE FROM device_codes WHERE device_hash = $1";

/// The single-use decision of the approval: of concurrent redeemers, one deletes the row and
/// stores the grant. Only an approved row of the client the grant is for.
pub const REDEEM: &str = "DELETE FROM device_codes WHERE device_hash = $1 AND client_id = $2 AND state = 'approved'";

/// A removed client's requests go with it: a client registered again under the same id must not
/// find (or be approved through) the old one's codes.
pub const DELETE_FOR_CLIENT: &str = "DELETE FROM device_codes WHERE client_id = $1";

/// The purge: expired requests, answered or not.
pub const DELETE_EXPIRED: &str = "DELETE FROM device_codes WHERE expires_at <= $1";

/// The `state` column of a status.
pub fn state_of(status: &DeviceStatus) -> &'static str {
    match status {
        DeviceStatus::Pending => "pending",
        DeviceStatus::Approved(_) => "approved",
        DeviceStatus::Denied => "denied",
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The values of [`INSERT`], in its parameter order.
pub struct DeviceColumns {
    pub device_hash: String,
    pub user_code_hash: String,
    pub client_id: String,
    pub scope: String,
    pub resource: Option<String>,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
    pub interval_s: i64,
    pub last_poll_at: Option<UnixTime>,
    pub requested_from: Option<String>,
    pub state: &'static str,
    pub status: String,
}

impl DeviceColumns {
    pub fn of(r: &DeviceRecord) -> anyhow::Result<Self> {
        Ok(Self {
            device_hash: r.device_hash.as_str().to_owned(),
            user_code_hash: r.user_code_hash.as_str().to_owned(),
            client_id: r.client_id.as_str().to_owned(),
            scope: r.scope.to_string(),
            resource: r.resource.as_ref().map(|u| u.as_str().to_owned()),
            created_at: r.created_at,
            expires_at: r.expires_at,
            interval_s: to_i64(r.interval),
            last_poll_at: r.last_poll_at,
            requested_from: r.requested_from.clone(),
            state: state_of(&r.status),
            status: status_json(&r.status)?,
        })
    }
}

/// The `status` column of a status.
pub fn status_json(status: &DeviceStatus) -> anyhow::Result<String> {
    serde_json::to_string(status).context("encoding a device status")
}

/// The new `interval_s` of `PollUpdate::Keep`.
pub fn interval_column(interval: u64) -> i64 {
    to_i64(interval)
}

/// A row of [`COLS`] as read, before it is checked.
pub struct DeviceRow {
    pub device_hash: String,
    pub user_code_hash: String,
    pub client_id: String,
    pub scope: String,
    pub resource: Option<String>,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
    pub interval_s: i64,
    pub last_poll_at: Option<UnixTime>,
    pub requested_from: Option<String>,
    pub status: String,
}

impl DeviceRow {
    /// The record; a stored value that no longer parses is an error of the store, never a
    /// silently different record.
    pub fn into_record(self) -> anyhow::Result<DeviceRecord> {
        let bad = |what: &str, e: latchkey_proto::OAuthError| anyhow!("stored {what} is invalid: {}", e.description);
        Ok(DeviceRecord {
            device_hash: TokenHash::from_stored(self.device_hash),
            user_code_hash: TokenHash::from_stored(self.user_code_hash),
            client_id: ClientId::parse(&self.client_id).map_err(|e| bad("client_id", e))?,
            scope: Scope::parse(&self.scope).map_err(|e| bad("scope", e))?,
            resource: self.resource.map(|s| ResourceUri::parse(&s)).transpose().map_err(|e| bad("resource", e))?,
            created_at: self.created_at,
            expires_at: self.expires_at,
            interval: u64::try_from(self.interval_s).context("stored device polling interval is negative")?,
            last_poll_at: self.last_poll_at,
            requested_from: self.requested_from,
            status: serde_json::from_str(&self.status).context("stored device status is invalid")?,
        })
    }
}
