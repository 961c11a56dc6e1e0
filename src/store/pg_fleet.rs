//! PostgreSQL's side of the fleet: tick claims (`ON CONFLICT DO NOTHING`, takeovers with
//! `FOR UPDATE SKIP LOCKED`), heartbeat rows, and work announced with `NOTIFY` in the
//! deciding transaction (so it is heard on commit) and heard with `LISTEN` on a connection
//! of its own.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use futures::StreamExt;
use tokio_postgres::types::Type;
use tokio_postgres::{AsyncMessage, NoTls};
use tokio_util::sync::CancellationToken;

use super::fleet::{
    ABANDON_TICKS_SQL, CLAIM_TICK_SQL, DROP_TICK_SQL, FINISH_TICK_SQL, Fleet, HOLDINGS_SQL,
    MAX_TICK_ATTEMPTS, PROCESSES_SQL, PRUNE_SQL, Process, ProcessStatus, RENEW_TICKS_SQL,
    TICK_HISTORY, Tick, UPSERT_PROCESS_SQL, WORK_CHANNEL, add_holding, work_signal,
};
use super::postgres::PgStore;
use super::{StoreError, lease_end};

/// The longest wait between attempts to listen again after the connection dropped.
const LISTEN_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Marks `tick` of `query` done by run `run_id`, in the run's transaction; [`StoreError::TickLost`]
/// when its claim was taken over (nothing of the run may commit).
pub(super) async fn finish_tick<C: deadpool_postgres::GenericClient>(
    c: &C,
    query: &str,
    tick: &Tick,
    run_id: i64,
) -> Result<(), StoreError> {
    let n = c
        .execute(
            FINISH_TICK_SQL,
            &[&query, &tick.at, &tick.by, &run_id, &Utc::now()],
        )
        .await?;
    if n == 0 {
        return Err(StoreError::TickLost {
            query: query.to_string(),
            tick: tick.at,
        });
    }
    Ok(())
}

/// The advisory lock key of `query`'s tick claims: FNV-1a 64 of the name, under a prefix of
/// its own so it meets no other advisory lock of vigilo's.
fn tick_lock_key(query: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in "vigilo tick claim ".bytes().chain(query.bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(h.to_ne_bytes())
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
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // Claims of one query wait for each other: without it two processes claiming two ticks
        // of one query at once both pass the NOT EXISTS (neither sees the other's insert) and
        // run the query side by side, and one run ends in a generation conflict. The INSERT
        // below, a new statement, sees a claim committed while this waited.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&tick_lock_key(query)])
            .await?;
        // Typed: in `INSERT … SELECT $2` nothing else tells PostgreSQL what `$2` is.
        let stmt = tx
            .prepare_typed_cached(
                CLAIM_TICK_SQL,
                &[
                    Type::TEXT,
                    Type::TIMESTAMPTZ,
                    Type::TEXT,
                    Type::TIMESTAMPTZ,
                    Type::TIMESTAMPTZ,
                ],
            )
            .await?;
        let now = Utc::now();
        let n = tx
            .execute(
                &stmt,
                &[&query, &tick.at, &tick.by, &lease_end(now, lease), &now],
            )
            .await?;
        tx.commit().await?;
        Ok(n == 1)
    }

    async fn take_over_ticks(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let now = Utc::now();
        tx.execute(ABANDON_TICKS_SQL, &[&now, &MAX_TICK_ATTEMPTS])
            .await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = tx
            .query(
                "WITH gone AS (SELECT query, tick FROM ticks
                               WHERE state = 'running' AND (claim_expires IS NULL OR claim_expires < $3)
                               ORDER BY tick LIMIT $4 FOR UPDATE SKIP LOCKED)
                 UPDATE ticks t SET claimed_by = $1, claim_expires = $2, claimed_at = $3, attempts = t.attempts + 1
                 FROM gone WHERE t.query = gone.query AND t.tick = gone.tick
                 RETURNING t.query, t.tick",
                &[&owner, &lease_end(now, lease), &now, &limit],
            )
            .await?;
        tx.commit().await?;
        let mut taken: Vec<(String, DateTime<Utc>)> =
            rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        taken.sort_by_key(|t| t.1);
        Ok(taken)
    }

    async fn drop_tick(&self, query: &str, tick: &Tick) -> Result<bool, StoreError> {
        let n = self
            .client()
            .await?
            .execute(DROP_TICK_SQL, &[&query, &tick.at, &tick.by, &Utc::now()])
            .await?;
        Ok(n == 1)
    }

    async fn heartbeat(&self, p: &Process, lease: Duration) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let now = Utc::now();
        tx.execute(
            UPSERT_PROCESS_SQL,
            &[
                &p.id,
                &p.host,
                &p.pid,
                &p.version,
                &p.listen,
                &p.started_at,
                &now,
            ],
        )
        .await?;
        tx.execute(RENEW_TICKS_SQL, &[&p.id, &lease_end(now, lease)])
            .await?;
        let horizon = now - chrono::Duration::from_std(TICK_HISTORY).unwrap_or_default();
        for sql in PRUNE_SQL {
            tx.execute(sql, &[&horizon]).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn leave_fleet(&self, id: &str) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute("DELETE FROM processes WHERE id = $1", &[&id])
            .await?;
        Ok(())
    }

    async fn processes(&self, since: DateTime<Utc>) -> Result<Vec<ProcessStatus>, StoreError> {
        let client = self.client().await?;
        let mut out: Vec<ProcessStatus> = client
            .query(PROCESSES_SQL, &[&since])
            .await?
            .iter()
            .map(|r| ProcessStatus {
                process: Process {
                    id: r.get(0),
                    host: r.get(1),
                    pid: r.get(2),
                    version: r.get(3),
                    listen: r.get(4),
                    started_at: r.get(5),
                    heartbeat_at: r.get(6),
                },
                holds: Default::default(),
            })
            .collect();
        for r in client.query(HOLDINGS_SQL, &[&Utc::now()]).await? {
            let owner: String = r.get(0);
            let kind: String = r.get(1);
            add_holding(&mut out, &owner, &kind, r.get(2), r.get(3));
        }
        Ok(out)
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
