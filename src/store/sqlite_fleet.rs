//! SQLite's side of the fleet: the same tick claims and heartbeat row as PostgreSQL, for the
//! one process SQLite allows, so `vigilo run` has one code path on both stores.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};
use tokio_util::sync::CancellationToken;

use super::fleet::{
    ABANDON_TICKS_SQL, CLAIM_TICK_SQL, DROP_TICK_SQL, FINISH_TICK_SQL, Fleet, HOLDINGS_SQL,
    MAX_TICK_ATTEMPTS, PROCESSES_SQL, PRUNE_SQL, Process, ProcessStatus, RENEW_TICKS_SQL,
    TICK_HISTORY, Tick, UPSERT_PROCESS_SQL, add_holding, work_signal,
};
use super::sqlite::{SqliteStore, parse_ts, ts};
use super::{StoreError, lease_end};

/// The shared SQL with SQLite's numbered parameters (`$1` → `?1`).
fn numbered(sql: &str) -> String {
    sql.replace('$', "?")
}

/// Marks `tick` of `query` done by run `run_id`, in the run's transaction; `Conflict`-like
/// [`StoreError::TickLost`] when its claim was taken over (nothing of the run may commit).
pub(super) fn finish_tick(
    c: &Connection,
    query: &str,
    tick: &Tick,
    run_id: i64,
) -> Result<(), StoreError> {
    let n = c.execute(
        &numbered(FINISH_TICK_SQL),
        params![query, ts(&tick.at), tick.by, run_id, ts(&Utc::now())],
    )?;
    if n == 0 {
        return Err(StoreError::TickLost {
            query: query.to_string(),
            tick: tick.at,
        });
    }
    Ok(())
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
        self.write(move |tx| {
            let now = Utc::now();
            let n = tx.execute(
                &numbered(CLAIM_TICK_SQL),
                params![
                    query,
                    ts(&tick.at),
                    tick.by,
                    ts(&lease_end(now, lease)),
                    ts(&now)
                ],
            )?;
            Ok(n == 1)
        })
        .await
    }

    async fn take_over_ticks(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        let owner = owner.to_string();
        self.write(move |tx| {
            let now = Utc::now();
            tx.execute(
                &numbered(ABANDON_TICKS_SQL),
                params![ts(&now), MAX_TICK_ATTEMPTS],
            )?;
            let mut stmt = tx.prepare(
                "UPDATE ticks SET claimed_by = ?1, claim_expires = ?2, claimed_at = ?3, attempts = attempts + 1
                 WHERE (query, tick) IN (SELECT query, tick FROM ticks
                                         WHERE state = 'running' AND (claim_expires IS NULL OR claim_expires < ?3)
                                         ORDER BY tick LIMIT ?4)
                 RETURNING query, tick",
            )?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = stmt.query_map(
                params![owner, ts(&lease_end(now, lease)), ts(&now), limit],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
            )?;
            let mut taken = Vec::new();
            for row in rows {
                let (query, tick) = row?;
                taken.push((query, parse_ts(&tick)?));
            }
            taken.sort_by_key(|t| t.1);
            Ok(taken)
        })
        .await
    }

    async fn drop_tick(&self, query: &str, tick: &Tick) -> Result<bool, StoreError> {
        let (query, tick) = (query.to_string(), tick.clone());
        self.write(move |tx| {
            let n = tx.execute(
                &numbered(DROP_TICK_SQL),
                params![query, ts(&tick.at), tick.by, ts(&Utc::now())],
            )?;
            Ok(n == 1)
        })
        .await
    }

    async fn heartbeat(&self, process: &Process, lease: Duration) -> Result<(), StoreError> {
        let p = process.clone();
        self.write(move |tx| {
            let now = Utc::now();
            tx.execute(
                &numbered(UPSERT_PROCESS_SQL),
                params![
                    p.id,
                    p.host,
                    p.pid,
                    p.version,
                    p.listen,
                    ts(&p.started_at),
                    ts(&now)
                ],
            )?;
            tx.execute(
                &numbered(RENEW_TICKS_SQL),
                params![p.id, ts(&lease_end(now, lease))],
            )?;
            let horizon = now - chrono::Duration::from_std(TICK_HISTORY).unwrap_or_default();
            for sql in PRUNE_SQL {
                tx.execute(&numbered(sql), [ts(&horizon)])?;
            }
            Ok(())
        })
        .await
    }

    async fn leave_fleet(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_string();
        self.write(move |tx| {
            tx.execute("DELETE FROM processes WHERE id = ?1", [id])?;
            Ok(())
        })
        .await
    }

    async fn processes(&self, since: DateTime<Utc>) -> Result<Vec<ProcessStatus>, StoreError> {
        self.with(move |c| {
            let mut stmt = c.prepare(&numbered(PROCESSES_SQL))?;
            let rows = stmt.query_map([ts(&since)], |r| {
                Ok((
                    (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?),
                    (r.get::<_, String>(5)?, r.get::<_, String>(6)?),
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let ((id, host, pid, version, listen), (started, beat)) = row?;
                out.push(ProcessStatus {
                    process: Process {
                        id,
                        host,
                        pid,
                        version,
                        listen,
                        started_at: parse_ts(&started)?,
                        heartbeat_at: parse_ts(&beat)?,
                    },
                    holds: Default::default(),
                });
            }
            let mut stmt = c.prepare(&numbered(HOLDINGS_SQL))?;
            let rows = stmt.query_map([ts(&Utc::now())], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get(2)?,
                    r.get(3)?,
                ))
            })?;
            for row in rows {
                let (owner, kind, count, query) = row?;
                add_holding(&mut out, &owner, &kind, count, query);
            }
            Ok(out)
        })
        .await
    }

    async fn listen_for_work(&self, _shutdown: CancellationToken) {}
}
