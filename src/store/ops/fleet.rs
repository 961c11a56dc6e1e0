//! The fleet's rows: scheduled ticks claimed once in the whole fleet, taken over from gone
//! processes, and one heartbeat row per `vigilo run` process (the SQL is in
//! [`crate::store::fleet`]; announcing work stays with each backend).

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::store::fleet::{
    ABANDON_TICKS_SQL, CLAIM_TICK_SQL, DROP_TICK_SQL, FINISH_TICK_SQL, HOLDINGS_SQL,
    MAX_TICK_ATTEMPTS, PROCESSES_SQL, PRUNE_SQL, Process, ProcessStatus, RENEW_TICKS_SQL,
    TICK_HISTORY, Tick, UPSERT_PROCESS_SQL, add_holding,
};
use crate::store::seam::{Tx, args};
use crate::store::{StoreError, lease_end};

/// Claims `tick` of `query` for its `by` unless it is taken or another tick of the query runs
/// under a live claim; true when claimed.
pub(crate) async fn claim_tick<T: Tx>(
    tx: &mut T,
    query: &str,
    tick: &Tick,
    now: DateTime<Utc>,
    lease: Duration,
) -> Result<bool, StoreError> {
    let n = tx
        .execute(
            CLAIM_TICK_SQL,
            &args![query, tick.at, &tick.by, lease_end(now, lease), now],
        )
        .await?;
    Ok(n == 1)
}

/// Abandons ticks tried too often, then takes over for `owner` the ticks whose claimant is
/// gone (its claim released or passed), oldest first; returns them.
pub(crate) async fn take_over_ticks<T: Tx>(
    tx: &mut T,
    owner: &str,
    now: DateTime<Utc>,
    lease: Duration,
    limit: usize,
) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
    tx.execute(ABANDON_TICKS_SQL, &args![now, MAX_TICK_ATTEMPTS])
        .await?;
    let sql = format!(
        "UPDATE ticks SET claimed_by = $1, claim_expires = $2, claimed_at = $3, attempts = attempts + 1
         WHERE (query, tick) IN (SELECT query, tick FROM ticks
                                 WHERE state = 'running' AND (claim_expires IS NULL OR claim_expires < $3)
                                 ORDER BY tick LIMIT $4 {})
         RETURNING query, tick",
        T::SKIP_LOCKED
    );
    let mut taken = tx
        .query(&sql, &args![owner, lease_end(now, lease), now, limit])
        .await?
        .iter()
        .map(|r| Ok((r.get(0)?, r.get(1)?)))
        .collect::<Result<Vec<(String, DateTime<Utc>)>, StoreError>>()?;
    taken.sort_by_key(|t| t.1);
    Ok(taken)
}

/// Marks `tick` of `query` done by run `run_id`, in the run's transaction;
/// [`StoreError::TickLost`] when its claim was taken over (nothing of the run may commit).
pub(crate) async fn finish_tick<T: Tx>(
    tx: &mut T,
    query: &str,
    tick: &Tick,
    run_id: i64,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let n = tx
        .execute(
            FINISH_TICK_SQL,
            &args![query, tick.at, &tick.by, run_id, now],
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

/// Ends a tick its claimant will not run; true when it held it.
pub(crate) async fn drop_tick<T: Tx>(
    tx: &mut T,
    query: &str,
    tick: &Tick,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let n = tx
        .execute(DROP_TICK_SQL, &args![query, tick.at, &tick.by, now])
        .await?;
    Ok(n == 1)
}

/// Records process `p`'s heartbeat at `now`, renews its ticks' claims for `lease`, and
/// forgets finished ticks and silent processes older than [`TICK_HISTORY`].
pub(crate) async fn heartbeat<T: Tx>(
    tx: &mut T,
    p: &Process,
    now: DateTime<Utc>,
    lease: Duration,
) -> Result<(), StoreError> {
    tx.execute(
        UPSERT_PROCESS_SQL,
        &args![
            &p.id,
            &p.host,
            p.pid,
            &p.version,
            &p.listen,
            p.started_at,
            now
        ],
    )
    .await?;
    tx.execute(RENEW_TICKS_SQL, &args![&p.id, lease_end(now, lease)])
        .await?;
    let horizon = now - chrono::Duration::from_std(TICK_HISTORY).unwrap_or_default();
    for sql in PRUNE_SQL {
        tx.execute(sql, &args![horizon]).await?;
    }
    Ok(())
}

/// Removes process `id`'s row (a clean stop).
pub(crate) async fn leave<T: Tx>(tx: &mut T, id: &str) -> Result<(), StoreError> {
    tx.execute("DELETE FROM processes WHERE id = $1", &args![id])
        .await?;
    Ok(())
}

/// Processes heard from since `since`, by id, with their live claims at `now`.
pub(crate) async fn processes<T: Tx>(
    tx: &mut T,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Vec<ProcessStatus>, StoreError> {
    let mut out = tx
        .query(PROCESSES_SQL, &args![since])
        .await?
        .iter()
        .map(|r| {
            Ok(ProcessStatus {
                process: Process {
                    id: r.get(0)?,
                    host: r.get(1)?,
                    pid: r.get(2)?,
                    version: r.get(3)?,
                    listen: r.get(4)?,
                    started_at: r.get(5)?,
                    heartbeat_at: r.get(6)?,
                },
                holds: Default::default(),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    for r in tx.query(HOLDINGS_SQL, &args![now]).await? {
        let owner: String = r.get(0)?;
        let kind: String = r.get(1)?;
        add_holding(&mut out, &owner, &kind, r.get(2)?, r.get(3)?);
    }
    Ok(out)
}
