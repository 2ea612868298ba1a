//! Bounded storage: many complete flows with short lifetimes, then the purge, on both backends.
//! The row counts grow with the traffic and return to the same small bound after each purge.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::*;
use latchkey_core::store::{SigningAlg, TableCounts};
use latchkey_core::{ProviderConfig, Store};
use latchkey_proto::CodeVerifier;
use latchkey_store::testing::TestDatabase;
use latchkey_store::{PostgresStore, SqliteStore};

const ROUNDS: usize = 3;
const FLOWS: usize = 10;

fn short_lifetimes(c: &mut ProviderConfig) {
    c.code_ttl = 5;
    c.pending_ttl = 30;
    c.access_token_ttl = 30;
    c.refresh_token_idle_ttl = 60;
    c.refresh_token_ttl = 120;
    c.session_ttl = 90;
}

/// What must remain once everything issued has expired: the registered client and user, the
/// remembered consent, and one active key per algorithm.
fn bound() -> TableCounts {
    TableCounts { clients: 1, users: 1, consents: 1, signing_keys: 3, ..TableCounts::default() }
}

async fn one_round(s: &TestServer) {
    for i in 0..FLOWS {
        let (_, t) = s.tokens_for("spa").await;
        let (st, next) = s.refresh("spa", t["refresh_token"].as_str().unwrap(), None).await;
        assert_eq!(st, 200, "{next}");
        let (st, last) = s.refresh("spa", next["refresh_token"].as_str().unwrap(), None).await;
        assert_eq!(st, 200, "{last}");
        if i % 3 == 0 {
            // A revoked family.
            let rt = last["refresh_token"].as_str().unwrap();
            let (st, _) = s.post_form("/revoke", None, &[("token", rt), ("client_id", "spa")]).await;
            assert_eq!(st, 200);
        }
        // An abandoned login page.
        let page = Browser::new().get(&s.authorize_url("spa", &CodeVerifier::generate(), "")).await;
        assert_eq!(page.status, 200);
    }
    // Keys are rotated too; the retired ones must go once they are no longer published.
    latchkey_core::admin::rotate_keys(s.store.as_ref(), &[SigningAlg::ES256], s.now()).await.unwrap();
    s.provider.reload_keys().await.unwrap();
}

async fn flows_return_to_a_bound(store: Arc<dyn Store>, backend: &str) {
    let s = TestServer::start_on(store, short_lifetimes).await;
    let started = std::time::Instant::now();
    for round in 0..ROUNDS {
        one_round(&s).await;
        let grown = s.store.table_counts().await.unwrap();
        assert!(grown.grants >= FLOWS as u64 && grown.refresh_tokens >= 3 * FLOWS as u64, "{grown:?}");
        // A purge now removes nothing a client can still use: the newest tokens keep working.
        s.provider.purge_expired(s.now()).await.unwrap();
        let (_, t) = s.tokens_for("spa").await;
        let (st, _) = s.refresh("spa", t["refresh_token"].as_str().unwrap(), None).await;
        assert_eq!(st, 200, "a purge must not touch live families");
        // Past every lifetime (and the key publish window), everything issued goes.
        s.advance(600);
        let purged = s.provider.purge_expired(s.now()).await.unwrap();
        let after = s.store.table_counts().await.unwrap();
        eprintln!(
            "{backend} round {round}: {} rows before the purge, {} purged, {} after ({after:?})",
            grown.total(),
            purged.total(),
            after.total()
        );
        // The audit log grows with the traffic by design; every other table is back to the bound.
        assert_eq!(TableCounts { audit_events: 0, ..after }, bound(), "{backend} round {round}: back to the bound");
    }
    eprintln!("{backend}: {ROUNDS} rounds of {FLOWS} flows in {:?}", started.elapsed());
}

#[tokio::test]
async fn sqlite_row_counts_return_to_a_bound() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("bounded.db")).unwrap());
    flows_return_to_a_bound(store, "sqlite").await;
}

#[tokio::test]
async fn postgres_row_counts_return_to_a_bound() {
    let Some(db) = TestDatabase::create("bounded").await else { return };
    let store = Arc::new(PostgresStore::connect(&db.url).await.unwrap());
    flows_return_to_a_bound(store, "postgres").await;
}
