//! The audit log: security events as structured records, in the log (target `latchkey::security`)
//! and in the store for `latchkey audit`.
//!
//! Recording never fails the request it describes: a store error is logged loudly instead, and the
//! event still reaches the log stream.

use std::net::IpAddr;

use serde_json::Value;

use crate::UnixTime;
use crate::store::{AuditRecord, Store};

/// What happened, to whom, through which client, from where.
#[derive(Debug, Clone, Default)]
pub struct Event<'a> {
    pub user_id: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub ip: Option<IpAddr>,
    pub detail: Option<Value>,
}

pub async fn record(store: &dyn Store, now: UnixTime, name: &'static str, e: Event<'_>) {
    let detail = e.detail.unwrap_or(Value::Object(Default::default()));
    tracing::info!(
        target: "latchkey::security",
        event = name,
        user_id = e.user_id.unwrap_or("-"),
        client_id = e.client_id.unwrap_or("-"),
        ip = %e.ip.map(|i| i.to_string()).unwrap_or_else(|| "-".into()),
        detail = %detail,
        "security event"
    );
    let rec = AuditRecord {
        at: now,
        event: name.to_owned(),
        user_id: e.user_id.map(str::to_owned),
        client_id: e.client_id.map(str::to_owned),
        ip: e.ip.map(|i| i.to_string()),
        detail,
    };
    if let Err(err) = store.record_audit(&rec).await {
        tracing::error!(target: "latchkey::security", event = name, error = %err, "could not store an audit record");
    }
}
