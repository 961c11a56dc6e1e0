//! SQLite's side of the fleet: the same tick claims and heartbeat row as PostgreSQL
//! (`store::ops::fleet`), for the one process SQLite allows, so `vigilo run` has one code
//! path on both stores; work is announced in this process only.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::Connection;
use tokio_util::sync::CancellationToken;

use super::SqliteStore;
use super::tx::{LiteTx, done};
use crate::store::StoreError;
use crate::store::fleet::{Fleet, Process, ProcessStatus, Tick, work_signal};
use crate::store::ops::fleet as ops;

/// Marks `tick` of `query` done by run `run_id`, in the run's transaction (see
/// [`ops::finish_tick`]).
pub(super) fn finish_tick(
    c: &Connection,
    query: &str,
    tick: &Tick,
    run_id: i64,
) -> Result<(), StoreError> {
    done(ops::finish_tick(
        &mut LiteTx::new(c),
        query,
        tick,
        run_id,
        Utc::now(),
    ))
}

impl SqliteStore {
    /// [`SqliteStore::write`], then raises the [`work_signal`] when `wakes` says the committed
    /// result is work for `vigilo run` (a decision, a requested run).
    pub(super) async fn write_waking<T, F>(
        &self,
        wakes: fn(&T) -> bool,
        f: F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let result = self.write(f).await?;
        if wakes(&result) {
            work_signal().notify_one();
        }
        Ok(result)
    }
}

#[async_trait]
impl Fleet for SqliteStore {
    async fn claim_tick(
        &self,
        query: &str,
        tick: &Tick,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let (query, tick) = (query.to_string(), tick.clone());
        self.write_op(async move |tx| ops::claim_tick(tx, &query, &tick, Utc::now(), lease).await)
            .await
    }

    async fn take_over_ticks(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        let owner = owner.to_string();
        self.write_op(async move |tx| {
            ops::take_over_ticks(tx, &owner, Utc::now(), lease, limit).await
        })
        .await
    }

    async fn drop_tick(&self, query: &str, tick: &Tick) -> Result<bool, StoreError> {
        let (query, tick) = (query.to_string(), tick.clone());
        self.write_op(async move |tx| ops::drop_tick(tx, &query, &tick, Utc::now()).await)
            .await
    }

    async fn heartbeat(&self, process: &Process, lease: Duration) -> Result<(), StoreError> {
        let p = process.clone();
        self.write_op(async move |tx| ops::heartbeat(tx, &p, Utc::now(), lease).await)
            .await
    }

    async fn leave_fleet(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_string();
        self.write_op(async move |tx| ops::leave(tx, &id).await)
            .await
    }

    async fn processes(&self, since: DateTime<Utc>) -> Result<Vec<ProcessStatus>, StoreError> {
        self.read_op(async move |tx| ops::processes(tx, since, Utc::now()).await)
            .await
    }

    async fn listen_for_work(&self, _shutdown: CancellationToken) {}
}
