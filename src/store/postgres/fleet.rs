//! PostgreSQL's side of the fleet: the tick claims and heartbeat rows of `store::ops::fleet`
//! (takeovers skip rows another process holds), and work announced with `NOTIFY` in the
//! deciding transaction (so it is heard on commit) and heard with `LISTEN` on a connection
//! of its own.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Transaction};
use futures::StreamExt;
use tokio_postgres::{AsyncMessage, NoTls};
use tokio_util::sync::CancellationToken;

use super::PgStore;
use super::tx::PgTx;
use crate::store::StoreError;
use crate::store::fleet::{Fleet, Process, ProcessStatus, Tick, WORK_CHANNEL, work_signal};
use crate::store::ops::fleet as ops;

/// The longest wait between attempts to listen again after the connection dropped.
const LISTEN_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Marks `tick` of `query` done by run `run_id`, in the run's transaction (see
/// [`ops::finish_tick`]).
pub(super) async fn finish_tick<C: GenericClient + Sync>(
    c: &C,
    query: &str,
    tick: &Tick,
    run_id: i64,
) -> Result<(), StoreError> {
    ops::finish_tick(&mut PgTx(c), query, tick, run_id, Utc::now()).await
}

/// The advisory lock key of `query`'s tick claims: the xxh3 hash the diff uses, of the name
/// under a prefix of its own so it meets no other advisory lock of vigilo's.
fn tick_lock_key(query: &str) -> i64 {
    let h = xxhash_rust::xxh3::xxh3_64(format!("vigilo tick claim {query}").as_bytes());
    i64::from_ne_bytes(h.to_ne_bytes())
}

/// Claims `tick` of `query` in `tx` after taking the query's claim lock: without it two
/// processes claiming two ticks of one query at once both pass the NOT EXISTS (neither sees
/// the other's insert) and run the query side by side, and one run ends in a generation
/// conflict. The INSERT of `ops::claim_tick`, a new statement, sees a claim committed while
/// this waited. (SQLite needs no lock: it is one process, and its writes are serialized.)
async fn claim_tick_locked(
    tx: &Transaction<'_>,
    query: &str,
    tick: &Tick,
    lease: Duration,
) -> Result<bool, StoreError> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&tick_lock_key(query)])
        .await?;
    ops::claim_tick(&mut PgTx(tx), query, tick, Utc::now(), lease).await
}

/// Announces work to every listening process; heard when `tx` commits, not before.
pub(super) async fn notify_work(tx: &Transaction<'_>) -> Result<(), StoreError> {
    tx.execute("SELECT pg_notify($1, '')", &[&WORK_CHANNEL])
        .await?;
    Ok(())
}

#[async_trait]
impl Fleet for PgStore {
    async fn claim_tick(
        &self,
        query: &str,
        tick: &Tick,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        in_tx!(self, tx => claim_tick_locked(&tx, query, tick, lease))
    }

    async fn take_over_ticks(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        in_tx!(self, tx => ops::take_over_ticks(&mut PgTx(&tx), owner, Utc::now(), lease, limit))
    }

    async fn drop_tick(&self, query: &str, tick: &Tick) -> Result<bool, StoreError> {
        let client = self.client().await?;
        ops::drop_tick(&mut PgTx(&client), query, tick, Utc::now()).await
    }

    async fn heartbeat(&self, p: &Process, lease: Duration) -> Result<(), StoreError> {
        in_tx!(self, tx => ops::heartbeat(&mut PgTx(&tx), p, Utc::now(), lease))
    }

    async fn leave_fleet(&self, id: &str) -> Result<(), StoreError> {
        let client = self.client().await?;
        ops::leave(&mut PgTx(&client), id).await
    }

    async fn processes(&self, since: DateTime<Utc>) -> Result<Vec<ProcessStatus>, StoreError> {
        let client = self.client().await?;
        ops::processes(&mut PgTx(&client), since, Utc::now()).await
    }

    async fn listen_for_work(&self, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match listen_once(self.config(), &shutdown).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, retry_ms = backoff.as_millis() as u64, "listening for work from other processes stopped; listening again (the one-second poll goes on meanwhile)")
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(LISTEN_BACKOFF_MAX);
        }
    }
}

/// One connection listening on [`WORK_CHANNEL`] until `shutdown` (`Ok`) or until it fails.
async fn listen_once(
    config: &tokio_postgres::Config,
    shutdown: &CancellationToken,
) -> Result<(), StoreError> {
    let (client, mut connection) = config.connect(NoTls).await?;
    // The connection's messages: notifications wake this process; its end is an error.
    let driver = async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            if let AsyncMessage::Notification(_) = message? {
                work_signal().notify_one();
            }
        }
        Err::<(), StoreError>(StoreError::Database(
            "the listening connection was closed".into(),
        ))
    };
    let listen = async {
        client
            .batch_execute(&format!("LISTEN {WORK_CHANNEL}"))
            .await?;
        tracing::debug!(channel = WORK_CHANNEL, "listening for work");
        // Whatever was announced while no one listened is looked at now.
        work_signal().notify_one();
        shutdown.cancelled().await;
        Ok::<(), StoreError>(())
    };
    tokio::select! {
        r = driver => r,
        r = listen => r,
    }
}
