//! The fleet's records: scheduled ticks claimed once in the whole fleet, and one heartbeat
//! row per `vigilo run` process (interface section 10).
//!
//! Both stores keep the same tables (migration 14) and run the same SQL where the dialects
//! agree: `ops::fleet` writes each transition once; `sqlite/fleet.rs` and `postgres/fleet.rs`
//! hold what differs (PostgreSQL's advisory lock on a claim, LISTEN/NOTIFY).

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::StoreError;

/// The fleet's part of the state store: ticks, heartbeats, and wake-ups for work.
#[async_trait]
pub trait Fleet: Send + Sync {
    /// Claims `tick` of `query` for `tick.by` until `lease` passes; false when another process
    /// has (or had) it, or another tick of the query is still running under a live claim.
    async fn claim_tick(
        &self,
        query: &str,
        tick: &Tick,
        lease: Duration,
    ) -> Result<bool, StoreError>;

    /// Takes over up to `limit` running ticks whose claimant is gone (released as dead, or its
    /// lease passed) for `owner`, one process each; ticks tried [`MAX_TICK_ATTEMPTS`] times are
    /// abandoned instead. Returns (query, tick time).
    async fn take_over_ticks(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<(String, DateTime<Utc>)>, StoreError>;

    /// Ends a tick its claimant will not run (its query left the project); false if the claim
    /// was lost.
    async fn drop_tick(&self, query: &str, tick: &Tick) -> Result<bool, StoreError>;

    /// Records `process`'s heartbeat (its row, created or refreshed), renews the leases of the
    /// ticks it runs until `lease` from now, and forgets ticks and processes older than
    /// [`TICK_HISTORY`].
    async fn heartbeat(&self, process: &Process, lease: Duration) -> Result<(), StoreError>;

    /// Removes `id`'s process row (it stops cleanly).
    async fn leave_fleet(&self, id: &str) -> Result<(), StoreError>;

    /// The processes heard from since `since`, by id, with what each holds.
    async fn processes(&self, since: DateTime<Utc>) -> Result<Vec<ProcessStatus>, StoreError>;

    /// Wakes this process's [`work_signal`] whenever another process commits work for the fleet
    /// (a decision, a requested run), until `shutdown`; reconnects when the connection drops.
    /// SQLite, for one process, has no one else to hear from and returns at once.
    async fn listen_for_work(&self, shutdown: CancellationToken);
}

/// The signal work is ready in this process: a decided approval, a requested run, a retried
/// action. The store raises it after committing such work (and, on PostgreSQL, on hearing
/// another process's `NOTIFY`); `vigilo run` moves remediations along when it fires.
pub fn work_signal() -> &'static Notify {
    static SIGNAL: Notify = Notify::const_new();
    &SIGNAL
}

/// Whether a commit opened or reopened findings (their remediations and messages are work).
pub(crate) fn opens_work(o: &super::CommitOutcome) -> bool {
    !o.opened.is_empty() || !o.reopened.is_empty()
}

/// Whether a vote decided its approval (its actions are to be planned and run).
pub(crate) fn decides(r: &Result<crate::approval::Transition, crate::approval::Refusal>) -> bool {
    matches!(r, Ok(crate::approval::Transition::VoteDecides { .. }))
}

/// Whether a request (a ChatOps remediation, a retry, an undo) was accepted as work.
pub(crate) fn accepted<T>(r: &Result<T, String>) -> bool {
    r.is_ok()
}

/// The PostgreSQL channel work is announced on.
pub const WORK_CHANNEL: &str = "vigilo_work";

/// How many times a tick is tried (its first claim and takeovers) before it is abandoned:
/// a query that kills every process running it must not take the fleet down one by one.
pub const MAX_TICK_ATTEMPTS: i32 = 3;

/// How long finished ticks are kept; a tick is never claimed later than this after its time.
pub const TICK_HISTORY: std::time::Duration = std::time::Duration::from_secs(3600);

/// A scheduled tick of a query, as a run records it: when it was due and who claimed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tick {
    /// When the tick was due (the schedule's time, the same in every process).
    pub at: DateTime<Utc>,
    /// The process that claimed it (`HOST:PID`); its run commits only while this claim holds.
    pub by: String,
}

/// A `vigilo run` process as it announces itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Process {
    /// `HOST:PID`, the name its claims go by.
    pub id: String,
    /// Its host name.
    pub host: String,
    /// Its process id on that host.
    pub pid: i64,
    /// The vigilo version it runs.
    pub version: String,
    /// Where it serves HTTP (`[server] listen`), if it does.
    pub listen: Option<String>,
    /// When it started.
    #[serde(serialize_with = "crate::timestamp::ser_time")]
    pub started_at: DateTime<Utc>,
    /// Its last heartbeat.
    #[serde(serialize_with = "crate::timestamp::ser_time")]
    pub heartbeat_at: DateTime<Utc>,
}

/// What one process holds: live claims, by kind of work.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Holdings {
    /// Scheduled ticks it is running.
    pub ticks: i64,
    /// Remediation runs it is moving along (opening an approval, planning actions).
    pub runs: i64,
    /// Actions it claimed or started.
    pub actions: i64,
    /// Messages it is delivering.
    pub messages: i64,
    /// The queries of the ticks it is running.
    pub queries: Vec<String>,
}

/// A process and what it holds, for `vigilo status` and `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessStatus {
    /// The process.
    #[serde(flatten)]
    pub process: Process,
    /// Its live claims.
    pub holds: Holdings,
}

/// A tick claimed by `$3` for `$1` at `$2` unless the tick is taken, or another tick of the
/// query is still running under a live claim (the fleet's form of "one query never runs
/// twice at once"): `$4` claim end, `$5` now. Both dialects.
pub(crate) const CLAIM_TICK_SQL: &str =
    "INSERT INTO ticks (query, tick, state, claimed_by, claim_expires, claimed_at)
     SELECT $1, $2, 'running', $3, $4, $5
     WHERE NOT EXISTS (SELECT 1 FROM ticks WHERE query = $1 AND state = 'running'
                       AND claimed_by IS NOT NULL AND claim_expires >= $5)
     ON CONFLICT (query, tick) DO NOTHING";

/// Ticks whose claimant is gone (released, or its lease passed) and that were tried
/// `$2` ([`MAX_TICK_ATTEMPTS`]) times are abandoned: `$1` now.
pub(crate) const ABANDON_TICKS_SQL: &str =
    "UPDATE ticks SET state = 'abandoned', finished_at = $1, claimed_by = NULL, claim_expires = NULL
     WHERE state = 'running' AND (claim_expires IS NULL OR claim_expires < $1) AND attempts >= $2";

/// Marks a run's tick done in the run's own transaction, only while its claimant holds it:
/// `$1` query, `$2` tick, `$3` claimant, `$4` run id, `$5` now.
pub(crate) const FINISH_TICK_SQL: &str =
    "UPDATE ticks SET state = 'done', finished_at = $5, run_id = $4, claim_expires = NULL
     WHERE query = $1 AND tick = $2 AND claimed_by = $3 AND state = 'running'";

/// Ends a tick its claimant (`$3`) will not run: `$1` query, `$2` tick, `$4` now.
pub(crate) const DROP_TICK_SQL: &str =
    "UPDATE ticks SET state = 'abandoned', finished_at = $4, claim_expires = NULL
     WHERE query = $1 AND tick = $2 AND claimed_by = $3 AND state = 'running'";

/// A heartbeat renews the leases of the ticks its process (`$1`) runs until `$2`.
pub(crate) const RENEW_TICKS_SQL: &str =
    "UPDATE ticks SET claim_expires = $2 WHERE claimed_by = $1 AND state = 'running'";

/// Records (or refreshes) a process's row: `$1` id … `$7` heartbeat.
pub(crate) const UPSERT_PROCESS_SQL: &str =
    "INSERT INTO processes (id, host, pid, version, listen, started_at, heartbeat_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7)
     ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid, version = excluded.version,
       listen = excluded.listen, started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at";

/// Forgets finished ticks and silent processes older than `$1`.
pub(crate) const PRUNE_SQL: [&str; 2] = [
    "DELETE FROM ticks WHERE state <> 'running' AND finished_at < $1",
    "DELETE FROM processes WHERE heartbeat_at < $1",
];

/// Processes heard from since `$1`, by id.
pub(crate) const PROCESSES_SQL: &str =
    "SELECT id, host, pid, version, listen, started_at, heartbeat_at FROM processes
     WHERE heartbeat_at >= $1 ORDER BY id";

/// Live claims per (owner, kind) at `$1`, and the queries of running ticks (kind `query`,
/// count 1, the query in the third column). Both dialects.
pub(crate) const HOLDINGS_SQL: &str =
    "SELECT claimed_by, 'ticks', count(*), NULL FROM ticks
       WHERE state = 'running' AND claimed_by IS NOT NULL GROUP BY claimed_by
     UNION ALL SELECT claimed_by, 'runs', count(*), NULL FROM remediation_runs
       WHERE claimed_by IS NOT NULL AND state IN ('requested', 'decided') AND claim_expires >= $1 GROUP BY claimed_by
     UNION ALL SELECT claimed_by, 'actions', count(*), NULL FROM actions
       WHERE claimed_by IS NOT NULL AND (state = 'started' OR (state = 'pending' AND claim_expires >= $1)) GROUP BY claimed_by
     UNION ALL SELECT claimed_by, 'messages', count(*), NULL FROM messages
       WHERE claimed_by IS NOT NULL AND state = 'pending' AND claim_expires >= $1 GROUP BY claimed_by
     UNION ALL SELECT claimed_by, 'query', 1, query FROM ticks
       WHERE state = 'running' AND claimed_by IS NOT NULL";

/// Adds one row of [`HOLDINGS_SQL`] to the process it names (rows of unknown owners, such as
/// a gone process's claims, are left out).
pub(crate) fn add_holding(
    processes: &mut [ProcessStatus],
    owner: &str,
    kind: &str,
    count: i64,
    query: Option<String>,
) {
    let Some(p) = processes.iter_mut().find(|p| p.process.id == owner) else {
        return;
    };
    let h = &mut p.holds;
    match kind {
        "ticks" => h.ticks += count,
        "runs" => h.runs += count,
        "actions" => h.actions += count,
        "messages" => h.messages += count,
        _ => h.queries.extend(query),
    }
}
