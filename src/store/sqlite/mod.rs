//! The SQLite state store (the default): one connection, used on blocking threads.
//!
//! WAL mode with `synchronous = FULL`: a committed run survives a crash or a
//! power cut; readers (`vigilo findings`) never block a run's commit.

mod audit;
mod fleet;
mod runs;
mod tx;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use self::audit::FindingAudit;
use self::tx::LiteTx;
use super::ops;
use super::{ActionOutcome, ActionRecord, ActionState, DecidedRun, NewAction};
use super::{CommandRecord, NewCommand};
use super::{
    CommitOutcome, FindingFilter, RunCommit, RunRecord, SnapshotWrite, Store, StoreError,
    finding_json, key_bytes, key_from_bytes, load_entries, snapshot_write,
};
use super::{MessageOutcome, MessageRecord, MessageState, NewApproval, NewMessage, RequestedRun};
use crate::approval::{Approval, Refusal, Transition, Vote};
use crate::audit::{Entry, Event, Kind};
use crate::diff::{Changes, ENTRY_BYTES, KeyHash, Snapshot};
use crate::finding::Finding;

/// Numbered migrations, applied in order at open.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("migrations/0001_core.sql")),
    (2, include_str!("migrations/0002_audit.sql")),
    (3, include_str!("migrations/0003_approvals.sql")),
    (4, include_str!("migrations/0004_actions.sql")),
    (5, include_str!("migrations/0005_messages.sql")),
    (6, include_str!("migrations/0006_chatops.sql")),
    (7, include_str!("migrations/0007_snapshot_chunks.sql")),
    (8, include_str!("migrations/0008_snapshot_deltas.sql")),
    (
        9,
        include_str!("migrations/0009_findings_without_status_index.sql"),
    ),
    (
        10,
        include_str!("migrations/0010_findings_severity_check.sql"),
    ),
    (
        11,
        include_str!("migrations/0011_audit_without_finding_index.sql"),
    ),
    (
        12,
        include_str!("migrations/0012_audit_hashes_as_blobs.sql"),
    ),
    (13, include_str!("migrations/0013_risk_acceptance.sql")),
    (14, include_str!("migrations/0014_fleet.sql")),
    (
        15,
        include_str!("migrations/0015_message_attempts_begun.sql"),
    ),
];

/// The SQLite state store.
pub struct SqliteStore {
    /// The one connection; every call takes it on a blocking thread.
    conn: Arc<Mutex<Connection>>,
    /// For error messages.
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the store at `path`.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let path = path.to_path_buf();
        let p = path.clone();
        let conn = tokio::task::spawn_blocking(move || open_blocking(&p))
            .await
            .map_err(|e| StoreError::Database(format!("store task: {e}")))??;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            path,
        })
    }

    /// Runs `f` with the connection on a blocking thread.
    pub(super) async fn with<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock cannot leave a transaction open: rusqlite rolls back on drop.
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Database(format!("store task: {e}")))?
    }

    /// Runs `f` in one immediate (write-locked) transaction on a blocking thread, and commits.
    pub(super) async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let result = f(&tx)?;
            tx.commit()?;
            Ok(result)
        })
        .await
    }

    /// Runs transition `op` (written once, in `store::ops`) in one immediate transaction.
    pub(super) async fn write_op<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: AsyncFnOnce(&mut LiteTx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.write(move |tx| tx::done(op(&mut LiteTx::new(tx))))
            .await
    }

    /// Runs read `op` (written once, in `store::ops`) on the connection.
    pub(super) async fn read_op<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: AsyncFnOnce(&mut LiteTx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.with(move |c| tx::done(op(&mut LiteTx::new(c)))).await
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn open_blocking(path: &Path) -> Result<Connection, StoreError> {
    let open_err = |e: &dyn std::fmt::Display| StoreError::Open {
        location: path.display().to_string(),
        message: e.to_string(),
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| open_err(&e))?;
    }
    let mut conn = Connection::open(path).map_err(|e| open_err(&e))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(|e| open_err(&e))?;
    conn.execute_batch(
        // A 32 MiB page cache (the default is 2 MiB): a large run's commit touches findings
        // and audit pages all over the file, and spilling them mid-transaction costs twice.
        // Foreign keys are enforced once migrations have run: a migration that rebuilds a
        // table others refer to drops the old one first (SQLite's documented procedure),
        // and `migrate` checks every reference before it commits.
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = OFF;
         PRAGMA cache_size = -32768;",
    )
    .map_err(|e| open_err(&e))?;
    migrate(&mut conn)?;
    conn.execute_batch("PRAGMA foreign_keys = ON;")
        .map_err(|e| open_err(&e))?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
    )?;
    let current: i64 = tx.query_row(
        "SELECT coalesce(max(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    if current > known {
        return Err(StoreError::TooNew {
            found: current,
            known,
        });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        tx.execute_batch(sql)
            .map_err(|e| StoreError::Database(format!("migration {version}: {e}")))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            params![version, ts(&Utc::now())],
        )?;
    }
    // Foreign keys are off while migrations run (see `open_blocking`): none may dangle after.
    if current < known {
        let dangling: Option<(String, Option<i64>, String)> = tx
            .query_row("PRAGMA foreign_key_check", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?;
        if let Some((table, rowid, parent)) = dangling {
            return Err(StoreError::Database(format!(
                "after migrations: a row of table {table} (rowid {rowid:?}) refers to a missing row of {parent}; \
                 the store is left as it was: remove or repair that row (sqlite3 with PRAGMA foreign_key_check lists them all) and open it again"
            )));
        }
    }
    tx.commit()?;
    Ok(())
}

/// Stored time format: RFC 3339 UTC with microseconds, so text order is time order.
pub(super) fn ts(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.with(|c| Ok(c.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
    }

    async fn due_acceptances(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<super::DueAcceptance>, StoreError> {
        self.read_op(async move |tx| ops::approvals::due_acceptances(tx, now, limit).await)
            .await
    }

    async fn end_acceptance(
        &self,
        id: i64,
        remediation: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Option<Option<i64>>, StoreError> {
        let remediation = remediation.map(str::to_string);
        self.write_op(async move |tx| {
            ops::approvals::end_acceptance(tx, id, remediation.as_deref(), now).await
        })
        .await
    }

    async fn load_snapshot(&self, query: &str) -> Result<Option<Snapshot>, StoreError> {
        let query = query.to_string();
        self.with(move |c| {
            // One read transaction: the generation, deltas and chunks all of one commit.
            let c = c.transaction()?;
            let state: Option<(i64, i64)> = c
                .query_row(
                    "SELECT id, generation FROM query_state WHERE name = ?1",
                    [&query],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((id, generation)) = state else {
                return Ok(None);
            };
            let (_, _, keys) = snapshot_size(&c, id)?;
            let mut snapshot =
                Snapshot::with_capacity(generation, usize::try_from(keys).unwrap_or(0));
            for (delta, sql) in super::SNAPSHOT_ENTRIES {
                let mut stmt = c.prepare_cached(sql)?;
                let mut rows = stmt.query([id])?;
                while let Some(row) = rows.next()? {
                    let entries = row.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?;
                    load_entries(&mut snapshot, &query, (delta, row.get(0)?, entries))?;
                }
            }
            snapshot.finish_load();
            Ok(Some(snapshot))
        })
        .await
    }

    async fn commit_run(&self, commit: RunCommit) -> Result<CommitOutcome, StoreError> {
        self.write_waking(super::fleet::opens_work, move |tx| {
            let outcome = commit_in(tx, &commit);
            super::drop_aside(commit);
            outcome
        })
        .await
    }

    async fn record_failed_run(&self, run: &RunRecord) -> Result<i64, StoreError> {
        let run = run.clone();
        // With its tick, which it finishes only while the claim holds.
        self.write(move |tx| insert_run(tx, &run)).await
    }

    async fn findings(&self, filter: &FindingFilter) -> Result<Vec<Finding>, StoreError> {
        let filter = filter.clone();
        self.read_op(async move |tx| ops::findings::list(tx, &filter, 0, None).await)
            .await
    }

    async fn finding(&self, id: i64) -> Result<Option<Finding>, StoreError> {
        self.read_op(async move |tx| ops::findings::load(tx, id).await)
            .await
    }

    async fn findings_page(
        &self,
        filter: &FindingFilter,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Finding>, StoreError> {
        let filter = filter.clone();
        self.read_op(async move |tx| ops::findings::list(tx, &filter, after, Some(limit)).await)
            .await
    }

    async fn runs(&self, query: Option<&str>, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        let query = query.map(str::to_string);
        self.read_op(async move |tx| ops::findings::runs(tx, query.as_deref(), limit).await)
            .await
    }

    async fn reset_query(&self, query: &str) -> Result<u64, StoreError> {
        let query = query.to_string();
        self.write(move |tx| {
            let id: Option<i64> = tx
                .query_row(
                    "SELECT id FROM query_state WHERE name = ?1",
                    [&query],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(id) = id else {
                return Ok(0);
            };
            let (_, _, keys) = snapshot_size(tx, id)?;
            tx.execute("DELETE FROM snapshot_chunks WHERE query_id = ?1", [id])?;
            tx.execute("DELETE FROM snapshot_deltas WHERE query_id = ?1", [id])?;
            tx.execute("DELETE FROM query_state WHERE id = ?1", [id])?;
            Ok(keys)
        })
        .await
    }

    async fn append_audit(&self, events: Vec<Event>) -> Result<Vec<i64>, StoreError> {
        self.write(move |tx| append_in(tx, &events)).await
    }

    async fn claim_requested(
        &self,
        owner: &str,
        lease: std::time::Duration,
        limit: usize,
    ) -> Result<Vec<RequestedRun>, StoreError> {
        let owner = owner.to_string();
        self.write_op(async move |tx| {
            ops::approvals::claim(tx, &owner, Utc::now(), lease, limit).await
        })
        .await
    }

    async fn open_approval(
        &self,
        owner: &str,
        approval: NewApproval,
    ) -> Result<Option<i64>, StoreError> {
        let owner = owner.to_string();
        self.write_op(async move |tx| ops::approvals::open(tx, &owner, &approval).await)
            .await
    }

    async fn vote(
        &self,
        approval_id: i64,
        vote: Vote,
    ) -> Result<Result<Transition, Refusal>, StoreError> {
        self.write_waking(super::fleet::decides, move |tx| {
            tx::done(ops::approvals::vote(
                &mut LiteTx::new(tx),
                approval_id,
                vote,
                Utc::now(),
            ))
        })
        .await
    }

    async fn settle_due(&self, now: DateTime<Utc>) -> Result<Vec<(i64, Transition)>, StoreError> {
        self.write_op(async move |tx| ops::approvals::settle_due(tx, now).await)
            .await
    }

    async fn approvals(&self, pending_only: bool) -> Result<Vec<Approval>, StoreError> {
        self.read_op(async move |tx| ops::approvals::list(tx, pending_only).await)
            .await
    }

    async fn approval(&self, id: i64) -> Result<Option<Approval>, StoreError> {
        self.read_op(async move |tx| ops::approvals::load(tx, id, false).await)
            .await
    }

    async fn claim_decided(
        &self,
        owner: &str,
        lease: std::time::Duration,
        limit: usize,
    ) -> Result<Vec<DecidedRun>, StoreError> {
        let owner = owner.to_string();
        self.write_op(async move |tx| {
            ops::actions::claim_decided(tx, &owner, Utc::now(), lease, limit).await
        })
        .await
    }

    async fn plan_actions(
        &self,
        owner: &str,
        run_id: i64,
        actions: Vec<NewAction>,
        messages: Vec<NewMessage>,
    ) -> Result<bool, StoreError> {
        let owner = owner.to_string();
        self.write_op(async move |tx| {
            ops::actions::plan(tx, &owner, run_id, &actions, &messages, Utc::now()).await
        })
        .await
    }

    async fn defer_run(
        &self,
        owner: &str,
        run_id: i64,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let owner = owner.to_string();
        self.write_op(async move |tx| ops::actions::defer(tx, &owner, run_id, until).await)
            .await
    }

    async fn fail_run(&self, owner: &str, run_id: i64, error: &str) -> Result<bool, StoreError> {
        let (owner, error) = (owner.to_string(), error.to_string());
        self.write_op(async move |tx| {
            ops::actions::fail_run(tx, &owner, run_id, &error, Utc::now()).await
        })
        .await
    }

    async fn claim_holders(&self) -> Result<Vec<String>, StoreError> {
        self.read_op(async |tx| super::lease::holders(tx).await)
            .await
    }

    async fn release_claims(&self, owner: &str) -> Result<u64, StoreError> {
        let owner = owner.to_string();
        self.write_op(async move |tx| super::lease::release(tx, &owner).await)
            .await
    }

    async fn claim_actions(
        &self,
        owner: &str,
        lease: std::time::Duration,
        limit: usize,
    ) -> Result<Vec<ActionRecord>, StoreError> {
        let owner = owner.to_string();
        self.write_op(async move |tx| {
            ops::actions::claim(tx, &owner, Utc::now(), lease, limit).await
        })
        .await
    }

    async fn start_action(
        &self,
        owner: &str,
        id: i64,
        lease: std::time::Duration,
        observed: Option<serde_json::Value>,
    ) -> Result<bool, StoreError> {
        let owner = owner.to_string();
        self.write_op(async move |tx| {
            ops::actions::start(tx, &owner, id, Utc::now(), lease, observed.as_ref()).await
        })
        .await
    }

    async fn finish_action(&self, id: i64, outcome: ActionOutcome) -> Result<(), StoreError> {
        self.write_op(async move |tx| ops::actions::finish(tx, id, &outcome, Utc::now()).await)
            .await
    }

    async fn started_actions(&self) -> Result<Vec<ActionRecord>, StoreError> {
        self.read_op(async |tx| ops::actions::list(tx, Some(ActionState::Started)).await)
            .await
    }

    async fn claim_started(
        &self,
        owner: &str,
        action: &ActionRecord,
        lease: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let (owner, action) = (owner.to_string(), action.clone());
        self.write_op(async move |tx| {
            ops::actions::claim_started(tx, &owner, &action, Utc::now(), lease).await
        })
        .await
    }

    async fn rerun_started(&self, owner: &str, id: i64, why: &str) -> Result<bool, StoreError> {
        let (owner, why) = (owner.to_string(), why.to_string());
        self.write_op(async move |tx| ops::actions::rerun_started(tx, &owner, id, &why).await)
            .await
    }

    async fn retry_action(&self, id: i64) -> Result<Result<(), String>, StoreError> {
        self.write_waking(super::fleet::accepted, move |tx| {
            tx::done(ops::actions::retry(&mut LiteTx::new(tx), id, Utc::now()))
        })
        .await
    }

    async fn actions(&self) -> Result<Vec<ActionRecord>, StoreError> {
        self.read_op(async |tx| ops::actions::list(tx, None).await)
            .await
    }

    async fn action(&self, id: i64) -> Result<Option<ActionRecord>, StoreError> {
        self.read_op(async move |tx| ops::actions::load(tx, id).await)
            .await
    }

    async fn actions_of_approval(&self, approval_id: i64) -> Result<Vec<ActionRecord>, StoreError> {
        self.read_op(async move |tx| ops::actions::of_approval(tx, approval_id).await)
            .await
    }

    async fn recent_actions(&self, limit: usize) -> Result<Vec<ActionRecord>, StoreError> {
        self.read_op(async move |tx| ops::actions::recent(tx, limit).await)
            .await
    }

    async fn stats(&self) -> Result<super::Stats, StoreError> {
        self.read_op(async |tx| ops::stats::stats(tx).await).await
    }

    async fn undo_action(
        &self,
        id: i64,
        by: &str,
        reason: &str,
        reverse: super::Reverse,
    ) -> Result<Result<i64, String>, StoreError> {
        let (by, reason) = (by.to_string(), reason.to_string());
        self.write_waking(super::fleet::accepted, move |tx| {
            tx::done(ops::actions::undo(
                &mut LiteTx::new(tx),
                id,
                &by,
                &reason,
                reverse,
                Utc::now(),
            ))
        })
        .await
    }

    async fn claim_messages(
        &self,
        owner: &str,
        lease: std::time::Duration,
        limit: usize,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        let owner = owner.to_string();
        self.write_op(async move |tx| {
            ops::messages::claim(tx, &owner, Utc::now(), lease, limit).await
        })
        .await
    }

    async fn begin_message_attempt(&self, id: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.write_op(async move |tx| ops::messages::begin_attempt(tx, id, at).await)
            .await
    }

    async fn renew_message_claim(
        &self,
        owner: &str,
        id: i64,
        lease: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let owner = owner.to_string();
        self.write_op(async move |tx| {
            ops::messages::renew(tx, &owner, id, super::lease_end(Utc::now(), lease)).await
        })
        .await
    }

    async fn finish_message(
        &self,
        owner: &str,
        id: i64,
        outcome: MessageOutcome,
    ) -> Result<bool, StoreError> {
        let owner = owner.to_string();
        self.write_op(async move |tx| {
            ops::messages::finish(tx, &owner, id, &outcome, Utc::now()).await
        })
        .await
    }

    async fn messages(&self) -> Result<Vec<MessageRecord>, StoreError> {
        self.read_op(async |tx| ops::messages::list(tx, None).await)
            .await
    }

    async fn next_message_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.read_op(async |tx| ops::messages::next_due(tx, Utc::now()).await)
            .await
    }

    async fn approval_messages(&self, approval_id: i64) -> Result<Vec<MessageRecord>, StoreError> {
        self.read_op(async move |tx| ops::messages::list(tx, Some(approval_id)).await)
            .await
    }

    async fn create_command(&self, command: NewCommand) -> Result<i64, StoreError> {
        self.write_op(async move |tx| ops::commands::create(tx, &command).await)
            .await
    }

    async fn decide_command(
        &self,
        id: i64,
        user_ref: &str,
        confirm: bool,
        now: DateTime<Utc>,
    ) -> Result<Result<CommandRecord, String>, StoreError> {
        let user_ref = user_ref.to_string();
        self.write_op(async move |tx| ops::commands::decide(tx, id, &user_ref, confirm, now).await)
            .await
    }

    async fn request_remediation(
        &self,
        finding_id: i64,
        remediation: &str,
        requested_by: &str,
    ) -> Result<Result<i64, String>, StoreError> {
        let (remediation, requested_by) = (remediation.to_string(), requested_by.to_string());
        self.write_waking(super::fleet::accepted, move |tx| {
            tx::done(ops::commands::request_remediation(
                &mut tx::LiteTx::new(tx),
                finding_id,
                &remediation,
                &requested_by,
                Utc::now(),
            ))
        })
        .await
    }

    async fn audit_page(&self, after: i64, limit: usize) -> Result<Vec<Entry>, StoreError> {
        self.read_op(async move |tx| ops::audit::page(tx, after, limit).await)
            .await
    }

    async fn audit_head(&self) -> Result<(i64, String), StoreError> {
        self.read_op(async |tx| ops::audit::head(tx).await).await
    }
}

/// One finding by id.
use self::audit::append_in;

fn insert_run(c: &Connection, run: &RunRecord) -> Result<i64, StoreError> {
    c.execute(
        "INSERT INTO runs (query, started_at, finished_at, status, rows, inserted, updated, deleted, baseline, error,
                           tick, ran_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            run.query,
            ts(&run.started_at),
            ts(&run.finished_at),
            run.status.as_str(),
            run.rows as i64,
            run.inserted as i64,
            run.updated as i64,
            run.deleted as i64,
            run.baseline,
            run.error,
            run.tick.as_ref().map(|t| ts(&t.at)),
            run.tick.as_ref().map(|t| t.by.as_str()),
        ],
    )?;
    let id = c.last_insert_rowid();
    if let Some(tick) = &run.tick {
        self::fleet::finish_tick(c, &run.query, tick, id)?;
    }
    Ok(id)
}

/// Claims the query's state at the generation the diff was based on; `Conflict` if it moved.
fn claim_generation(
    tx: &Transaction<'_>,
    commit: &RunCommit,
) -> Result<(i64, Option<String>), StoreError> {
    let query = &commit.run.query;
    let observed = ts(&commit.run.started_at);
    let current: Option<(i64, i64, String)> = tx
        .query_row(
            "SELECT id, generation, last_success_at FROM query_state WHERE name = ?1",
            [query],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let conflict = || StoreError::Conflict {
        query: query.clone(),
        expected: commit.changes.base_generation.unwrap_or(0),
    };
    match (current, commit.changes.base_generation) {
        (None, None) => {
            tx.execute(
                "INSERT INTO query_state (name, generation, last_success_at) VALUES (?1, 1, ?2)",
                params![query, observed],
            )?;
            Ok((tx.last_insert_rowid(), None))
        }
        (Some((id, generation, previous)), Some(base)) if generation == base => {
            tx.execute(
                "UPDATE query_state SET generation = generation + 1, last_success_at = ?2 WHERE id = ?1",
                params![id, observed],
            )?;
            Ok((id, Some(previous)))
        }
        _ => Err(conflict()),
    }
}

/// The stored snapshot of query `id`: (entries in its chunks, entries in its deltas, keys).
fn snapshot_size(c: &Connection, id: i64) -> Result<(u64, u64, u64), StoreError> {
    let (chunk_bytes, delta_bytes, added): (i64, i64, i64) = c.query_row(
        "SELECT (SELECT coalesce(sum(length(entries)), 0) FROM snapshot_chunks WHERE query_id = ?1),
                coalesce(sum(length(entries)), 0), coalesce(sum(added), 0)
           FROM snapshot_deltas WHERE query_id = ?1",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let entries = |bytes: i64| u64::try_from(bytes).unwrap_or(0) / ENTRY_BYTES as u64;
    let (chunks, deltas) = (entries(chunk_bytes), entries(delta_bytes));
    Ok((chunks, deltas, chunks.saturating_add_signed(added)))
}

/// Stores the run's snapshot of query `id`: all of it a chunk at a time, or what changed as deltas.
fn store_snapshot(tx: &Transaction<'_>, id: i64, changes: &Changes) -> Result<(), StoreError> {
    if changes.is_unchanged() {
        return Ok(());
    }
    let (chunks, deltas, _) = snapshot_size(tx, id)?;
    match snapshot_write(changes, chunks, deltas) {
        SnapshotWrite::Keep => {}
        SnapshotWrite::Whole => {
            tx.execute("DELETE FROM snapshot_chunks WHERE query_id = ?1", [id])?;
            tx.execute("DELETE FROM snapshot_deltas WHERE query_id = ?1", [id])?;
            let mut put = tx.prepare_cached(
                "INSERT INTO snapshot_chunks (query_id, seq, entries) VALUES (?1, ?2, ?3)",
            )?;
            for (seq, chunk) in changes.snapshot.chunks().enumerate() {
                put.execute(params![id, seq as i64, chunk])?;
            }
        }
        SnapshotWrite::Delta => {
            let next: i64 = tx.query_row(
                "SELECT coalesce(max(seq) + 1, 0) FROM snapshot_deltas WHERE query_id = ?1",
                [id],
                |r| r.get(0),
            )?;
            let mut put = tx.prepare_cached(
                "INSERT INTO snapshot_deltas (query_id, seq, added, entries) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for (seq, (chunk, added)) in (next..).zip(changes.delta_chunks()) {
                put.execute(params![id, seq, added, chunk])?;
            }
        }
    }
    Ok(())
}

/// Looks `keys` (key hash, index) up with `find` (query, key hash → at most one row) in
/// key-hash order, so the key index is read front to back, and drops them; returns (index,
/// what `read` made of the row) for the keys found.
fn lookup_in_key_order<T>(
    find: &mut rusqlite::CachedStatement<'_>,
    query: &str,
    mut keys: Vec<(KeyHash, usize)>,
    read: impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<(usize, T)>, StoreError> {
    keys.sort_unstable_by_key(|&(k, _)| k);
    let mut found = Vec::new();
    for (k, i) in keys {
        if let Some(t) = find
            .query_row(params![query, key_bytes(k)], &read)
            .optional()?
        {
            found.push((i, t));
        }
    }
    Ok(found)
}

fn commit_in(tx: &Transaction<'_>, commit: &RunCommit) -> Result<CommitOutcome, StoreError> {
    std::thread::scope(|scope| {
        let mut audit = FindingAudit::new(scope, &commit.run.query);
        let mut outcome = commit_findings(tx, commit, &mut audit)?;
        audit.finish(tx)?;
        commit_after_findings(tx, commit, &mut outcome)?;
        Ok(outcome)
    })
}

/// The run's snapshot and findings; their audit entries go to `audit`.
fn commit_findings<'scope, 'a: 'scope>(
    tx: &Transaction<'_>,
    commit: &'a RunCommit,
    audit: &mut FindingAudit<'scope, '_, 'a>,
) -> Result<CommitOutcome, StoreError> {
    let (query_id, previous_success) = claim_generation(tx, commit)?;
    let query = &commit.run.query;
    let observed = ts(&commit.run.started_at);
    let severity = commit.severity.as_str();
    let mut outcome = CommitOutcome::default();
    store_snapshot(tx, query_id, &commit.changes)?;
    // A query that never had a finding (a new one) needs no lookups.
    let has_findings: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM findings WHERE query = ?1)",
        [query],
        |r| r.get(0),
    )?;
    {
        let mut find = tx
            .prepare_cached("SELECT id, status FROM findings WHERE query = ?1 AND key_hash = ?2")?;
        let mut open_new = tx.prepare_cached(
            "INSERT INTO findings (query, key_hash, key_json, status, severity, row_json, row_hash, first_seen, last_seen)
             VALUES (?1, ?2, ?3, 'open', ?4, ?5, ?6, ?7, ?7)",
        )?;
        // The run's query, severity and time stay bound for every new finding (SQLite
        // copies each text bound to it).
        open_new.raw_bind_parameter(1, query)?;
        open_new.raw_bind_parameter(4, severity)?;
        open_new.raw_bind_parameter(7, &observed)?;
        let mut reopen = tx.prepare_cached(
            "UPDATE findings SET status = 'open', resolved_at = NULL, reopened = reopened + (status = 'resolved'),
                    accepted_until = CASE WHEN status = 'resolved' THEN NULL ELSE accepted_until END,
                    severity = ?2, row_json = ?3, row_hash = ?4, last_seen = ?5
             WHERE id = ?1",
        )?;
        // New keys (in `new_in_insert_order`); those a finding already has (a resolved one
        // comes back, or the first run after a reset) are looked up in key order: (index in
        // `new`, (id, resolved)), in index order.
        let new = super::new_in_insert_order(&commit.changes);
        let mut known = if has_findings {
            let keys = new
                .iter()
                .enumerate()
                .map(|(i, ch)| (ch.key_hash, i))
                .collect();
            lookup_in_key_order(&mut find, query, keys, |r| {
                Ok((r.get(0)?, r.get_ref(1)?.as_str()? == "resolved"))
            })?
        } else {
            Vec::new()
        };
        known.sort_unstable_by_key(|&(i, _)| i);
        let mut known = known.into_iter().peekable();
        for (i, &ch) in new.iter().enumerate() {
            super::prefetch(&new, i);
            audit.flush(tx)?;
            let key = key_bytes(ch.key_hash);
            let (key_json, row_json) = finding_json(ch)?;
            let existing = known.next_if(|(at, _)| *at == i).map(|(_, found)| found);
            match existing {
                None => {
                    open_new.raw_bind_parameter(2, key)?;
                    open_new.raw_bind_parameter(3, key_json)?;
                    open_new.raw_bind_parameter(5, row_json)?;
                    open_new.raw_bind_parameter(6, ch.row_hash as i64)?;
                    open_new.raw_execute()?;
                    let id = tx.last_insert_rowid();
                    outcome.opened.push(id);
                    audit.push(Kind::FindingOpened, id, key_json);
                }
                Some((id, resolved)) => {
                    reopen.execute(params![
                        id,
                        severity,
                        row_json,
                        ch.row_hash as i64,
                        observed
                    ])?;
                    if resolved {
                        outcome.reopened.push(id);
                        audit.push(Kind::FindingReopened, id, key_json);
                    } else {
                        outcome.refreshed += 1;
                    }
                }
            }
        }
        // Changed and gone keys: their findings are looked up in key order (the key index is
        // read front to back) and written in id order (each table page once, in file order).
        let mut id_of =
            tx.prepare_cached("SELECT id FROM findings WHERE query = ?1 AND key_hash = ?2")?;
        // (id, index) in id order; a query without findings has none to look up.
        let mut finding_ids =
            |keys: Vec<(KeyHash, usize)>| -> Result<Vec<(i64, usize)>, StoreError> {
                if !has_findings {
                    return Ok(Vec::new());
                }
                let mut ids: Vec<(i64, usize)> =
                    lookup_in_key_order(&mut id_of, query, keys, |r| r.get(0))?
                        .into_iter()
                        .map(|(i, id)| (id, i))
                        .collect();
                ids.sort_unstable();
                Ok(ids)
            };
        let updated = finding_ids(
            (commit.changes.updated.iter().enumerate())
                .filter(|(_, ch)| ch.finding.is_some())
                .map(|(i, ch)| (ch.key_hash, i))
                .collect(),
        )?;
        let mut update_row = tx.prepare_cached(
            "UPDATE findings SET row_json = ?2, row_hash = ?3, last_seen = ?4
             WHERE id = ?1 AND status = 'open'",
        )?;
        for (id, i) in updated {
            audit.flush(tx)?;
            let ch = &commit.changes.updated[i];
            let (key_json, row_json) = finding_json(ch)?;
            if update_row.execute(params![id, row_json, ch.row_hash as i64, observed])? > 0 {
                outcome.updated += 1;
                audit.push(Kind::FindingUpdated, id, key_json);
            }
        }
        let gone = finding_ids(
            (commit.changes.deleted.iter().enumerate())
                .map(|(i, &k)| (k, i))
                .collect(),
        )?;
        let mut resolve = tx.prepare_cached(
            "UPDATE findings SET status = 'resolved', resolved_at = ?2, last_seen = coalesce(?3, last_seen)
             WHERE id = ?1 AND status = 'open' RETURNING key_json",
        )?;
        for (id, _) in gone {
            audit.flush(tx)?;
            let resolved: Option<String> = resolve
                .query_row(params![id, observed, previous_success], |r| r.get(0))
                .optional()?;
            if let Some(key_json) = resolved {
                outcome.resolved.push(id);
                audit.push(Kind::FindingResolved, id, key_json);
            }
        }
    }
    if commit.changes.base_generation.is_none() && has_findings {
        // A first run (new query, or after `state reset`): open findings whose key it did not see are resolved.
        let mut open = tx.prepare_cached(
            "SELECT id, key_hash, key_json FROM findings WHERE query = ?1 AND status = 'open' ORDER BY id",
        )?;
        let mut unseen = Vec::new();
        let mut rows = open.query([query])?;
        while let Some(r) = rows.next()? {
            let key = key_from_bytes(r.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?)?;
            if !commit.changes.snapshot.contains(key) {
                unseen.push((r.get::<_, i64>(0)?, r.get::<_, String>(2)?));
            }
        }
        let mut resolve = tx.prepare_cached(
            "UPDATE findings SET status = 'resolved', resolved_at = ?2 WHERE id = ?1",
        )?;
        for (id, key_json) in unseen {
            audit.flush(tx)?;
            resolve.execute(params![id, observed])?;
            outcome.resolved.push(id);
            audit.push(Kind::FindingResolved, id, key_json);
        }
    }
    Ok(outcome)
}

/// What follows a run's findings: remediation runs and messages for them, and the run record.
fn commit_after_findings(
    tx: &Transaction<'_>,
    commit: &RunCommit,
    outcome: &mut CommitOutcome,
) -> Result<(), StoreError> {
    let observed = ts(&commit.run.started_at);
    if let Some(remediation) = &commit.remediation {
        let ids: Vec<i64> = outcome
            .opened
            .iter()
            .chain(&outcome.reopened)
            .copied()
            .collect();
        runs::request_runs(tx, remediation, &ids, &observed, None)?;
    }
    for (refs, messages) in super::finding_messages(commit, outcome) {
        tx::done(super::ops::messages::insert(
            &mut tx::LiteTx::new(tx),
            &messages,
            refs,
            MessageState::Pending,
            commit.run.finished_at,
        ))?;
    }
    outcome.run_id = insert_run(tx, &commit.run)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::open_blocking;

    #[test]
    fn foreign_keys_are_enforced_once_migrations_have_run() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_blocking(&dir.path().join("vigilo.db")).unwrap();
        let on: i64 = conn
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(on, 1);
        let err = conn
            .execute(
                "INSERT INTO remediation_runs (finding_id, remediation, state, requested_at, updated_at)
                 VALUES (404, 'r', 'requested', 't', 't')",
                [],
            )
            .unwrap_err();
        assert!(err.to_string().contains("FOREIGN KEY"), "{err}");
    }
}
