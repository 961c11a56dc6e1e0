//! The PostgreSQL state store: a deadpool-postgres pool, shareable by several vigilo processes.
//!
//! Migrations run under a transaction-scoped advisory lock, so processes
//! starting together migrate once. A run's commit locks its `query_state`
//! row (`FOR UPDATE`) and checks the generation it diffed against.

use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Transaction};
use futures::{StreamExt, pin_mut};
use tokio_postgres::NoTls;
use tokio_postgres::types::{ToSql, Type};

use self::audit::FindingAudit;
use self::audit::append_in;
use self::copy::{CopyWriter, ROWS_PER_COPY};
use self::tx::PgTx;
use super::ops;
use super::{
    ActionOutcome, ActionRecord, ActionState, DecidedRun, MessageOutcome, MessageRecord,
    MessageState, NewAction, NewApproval, NewMessage, RequestedRun,
};
use super::{CommandRecord, NewCommand};
use super::{
    CommitOutcome, FindingFilter, RunCommit, RunRecord, SnapshotWrite, Store, StoreError,
    finding_json, key_bytes, key_from_bytes, load_entries, snapshot_write,
};
use crate::approval::{Approval, Refusal, Transition, Vote};
use crate::audit::{Entry, Event, Kind};
use crate::diff::{Changed, Changes, ENTRY_BYTES, KeyHash, Snapshot};
use crate::finding::Finding;

/// Runs one store step in a transaction on a pooled connection and commits it:
/// `in_tx!(self, tx => step(&tx, …))` is `step`'s result.
macro_rules! in_tx {
    ($store:expr, $tx:ident => $step:expr) => {{
        let mut client = $store.client().await?;
        let $tx = client.transaction().await?;
        let result = $step.await?;
        $tx.commit().await?;
        Ok(result)
    }};
}

/// [`in_tx!`], and when `$wakes(&result)` says the result is work for `vigilo run` (a decision,
/// a requested run), announces it: `NOTIFY` inside the transaction (other processes hear it on
/// commit) and this process's work signal after the commit.
macro_rules! in_tx_waking {
    ($store:expr, $wakes:expr, $tx:ident => $step:expr) => {{
        let mut client = $store.client().await?;
        let $tx = client.transaction().await?;
        let result = $step.await?;
        let wakes = $wakes(&result);
        if wakes {
            self::fleet::notify_work(&$tx).await?;
        }
        $tx.commit().await?;
        if wakes {
            super::fleet::work_signal().notify_one();
        }
        Ok(result)
    }};
}

// After the macros, which they use.
mod audit;
mod copy;
mod fleet;
mod runs;
mod tx;

/// Numbered migrations, applied in order at connect.
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
        include_str!("migrations/0010_findings_json_as_text.sql"),
    ),
    (
        11,
        include_str!("migrations/0011_audit_without_finding_index.sql"),
    ),
    (
        12,
        include_str!("migrations/0012_audit_hashes_as_bytea.sql"),
    ),
    (13, include_str!("migrations/0013_risk_acceptance.sql")),
    (14, include_str!("migrations/0014_fleet.sql")),
    (
        15,
        include_str!("migrations/0015_message_attempts_begun.sql"),
    ),
];

/// Advisory lock key that serializes migrations across processes ("vigilo" in ASCII).
const MIGRATION_LOCK: i64 = 0x7669_6769_6c6f;

/// The PostgreSQL state store.
pub struct PgStore {
    /// Connections to the state database.
    pool: Pool,
    /// How to connect, for the connection that listens for other processes' work.
    config: tokio_postgres::Config,
}

impl PgStore {
    /// Connects to `url`, and creates or migrates the schema.
    pub async fn connect(url: &str) -> Result<PgStore, StoreError> {
        let open_err = |message: String| StoreError::Open {
            location: redact(url),
            message,
        };
        let mut config =
            tokio_postgres::Config::from_str(url).map_err(|e| open_err(e.to_string()))?;
        config.connect_timeout(std::time::Duration::from_secs(10));
        config.application_name("vigilo");
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(8)
            .build()
            .map_err(|e| open_err(e.to_string()))?;
        let store = PgStore { pool, config };
        let mut client = store.pool.get().await.map_err(|e| {
            let why = crate::cause::network(&e).unwrap_or_else(|| crate::cause::summary(&e));
            open_err(format!(
                "{why}; is the server running, and is the url of [state] right?"
            ))
        })?;
        migrate(&mut client).await?;
        Ok(store)
    }

    /// How to connect to the state database.
    pub(super) fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    pub(super) async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::Database(format!("cannot get a connection: {e}")))
    }
}

/// A URL fit for messages: the password, if any, replaced.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..scheme + 3], user, &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

async fn migrate(client: &mut deadpool_postgres::Object) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version bigint PRIMARY KEY, applied_at timestamptz NOT NULL)",
    )
    .await?;
    let current: i64 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            &[],
        )
        .await?
        .get(0);
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    if current > known {
        return Err(StoreError::TooNew {
            found: current,
            known,
        });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        tx.batch_execute(sql).await.map_err(|e| {
            StoreError::Database(format!("migration {version}: {}", StoreError::from(e)))
        })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, now())",
            &[version],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

#[async_trait]
impl Store for PgStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.client().await?.execute("SELECT 1", &[]).await?;
        Ok(())
    }

    async fn due_acceptances(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<super::DueAcceptance>, StoreError> {
        let client = self.client().await?;
        ops::approvals::due_acceptances(&mut PgTx(&client), now, limit).await
    }

    async fn end_acceptance(
        &self,
        id: i64,
        remediation: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Option<Option<i64>>, StoreError> {
        in_tx!(self, tx => ops::approvals::end_acceptance(&mut PgTx(&tx), id, remediation, now))
    }

    async fn load_snapshot(&self, query: &str) -> Result<Option<Snapshot>, StoreError> {
        let mut client = self.client().await?;
        // One snapshot of the database: the generation, deltas and chunks all of one commit.
        let client = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let state = client
            .query_opt(
                "SELECT id, generation FROM query_state WHERE name = $1",
                &[&query],
            )
            .await?;
        let Some(state) = state else {
            return Ok(None);
        };
        let (id, generation): (i64, i64) = (state.get(0), state.get(1));
        let (_, _, keys) = snapshot_size(&client, id).await?;
        let mut snapshot = Snapshot::with_capacity(generation, usize::try_from(keys).unwrap_or(0));
        for (delta, sql) in super::SNAPSHOT_ENTRIES {
            let stmt = client.prepare_cached(sql).await?;
            let rows = client.query_raw(&stmt, [&id]).await?;
            pin_mut!(rows);
            while let Some(row) = rows.next().await {
                let row = row?;
                let seq = i64::from(row.get::<_, i32>(0));
                load_entries(&mut snapshot, query, (delta, seq, row.get(1)))?;
            }
        }
        snapshot.finish_load();
        Ok(Some(snapshot))
    }

    async fn commit_run(&self, commit: RunCommit) -> Result<CommitOutcome, StoreError> {
        let outcome: Result<CommitOutcome, StoreError> =
            in_tx_waking!(self, super::fleet::opens_work, tx => commit_in(&tx, &commit));
        super::drop_aside(commit);
        let outcome = outcome?;
        self.analyze_if_grown(&outcome).await;
        Ok(outcome)
    }

    async fn record_failed_run(&self, run: &RunRecord) -> Result<i64, StoreError> {
        // With its tick, which it finishes only while the claim holds.
        in_tx!(self, tx => insert_run(&tx, run))
    }

    async fn findings(&self, filter: &FindingFilter) -> Result<Vec<Finding>, StoreError> {
        ops::findings::list(&mut PgTx(&self.client().await?), filter, 0, None).await
    }

    async fn findings_page(
        &self,
        filter: &FindingFilter,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Finding>, StoreError> {
        ops::findings::list(&mut PgTx(&self.client().await?), filter, after, Some(limit)).await
    }

    async fn finding(&self, id: i64) -> Result<Option<Finding>, StoreError> {
        ops::findings::load(&mut PgTx(&self.client().await?), id).await
    }

    async fn runs(&self, query: Option<&str>, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        ops::findings::runs(&mut PgTx(&self.client().await?), query, limit).await
    }

    async fn reset_query(&self, query: &str) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let id = tx
            .query_opt(
                "SELECT id FROM query_state WHERE name = $1 FOR UPDATE",
                &[&query],
            )
            .await?;
        let Some(id) = id.map(|r| r.get::<_, i64>(0)) else {
            return Ok(0);
        };
        let (_, _, keys) = snapshot_size(&tx, id).await?;
        tx.execute("DELETE FROM snapshot_chunks WHERE query_id = $1", &[&id])
            .await?;
        tx.execute("DELETE FROM snapshot_deltas WHERE query_id = $1", &[&id])
            .await?;
        tx.execute("DELETE FROM query_state WHERE id = $1", &[&id])
            .await?;
        tx.commit().await?;
        Ok(keys)
    }

    async fn append_audit(&self, events: Vec<Event>) -> Result<Vec<i64>, StoreError> {
        in_tx!(self, tx => append_in(&tx, &events))
    }

    async fn claim_requested(
        &self,
        owner: &str,
        lease: std::time::Duration,
        limit: usize,
    ) -> Result<Vec<RequestedRun>, StoreError> {
        in_tx!(self, tx => ops::approvals::claim(&mut PgTx(&tx), owner, Utc::now(), lease, limit))
    }

    async fn open_approval(
        &self,
        owner: &str,
        approval: NewApproval,
    ) -> Result<Option<i64>, StoreError> {
        in_tx!(self, tx => ops::approvals::open(&mut PgTx(&tx), owner, &approval))
    }

    async fn vote(
        &self,
        approval_id: i64,
        vote: Vote,
    ) -> Result<Result<Transition, Refusal>, StoreError> {
        in_tx_waking!(self, super::fleet::decides, tx => ops::approvals::vote(&mut PgTx(&tx), approval_id, vote, Utc::now()))
    }

    async fn settle_due(&self, now: DateTime<Utc>) -> Result<Vec<(i64, Transition)>, StoreError> {
        in_tx!(self, tx => ops::approvals::settle_due(&mut PgTx(&tx), now))
    }

    async fn approvals(&self, pending_only: bool) -> Result<Vec<Approval>, StoreError> {
        ops::approvals::list(&mut PgTx(&self.client().await?), pending_only).await
    }

    async fn approval(&self, id: i64) -> Result<Option<Approval>, StoreError> {
        ops::approvals::load(&mut PgTx(&self.client().await?), id, false).await
    }

    async fn claim_decided(
        &self,
        owner: &str,
        lease: std::time::Duration,
        limit: usize,
    ) -> Result<Vec<DecidedRun>, StoreError> {
        in_tx!(self, tx => ops::actions::claim_decided(&mut PgTx(&tx), owner, Utc::now(), lease, limit))
    }

    async fn plan_actions(
        &self,
        owner: &str,
        run_id: i64,
        actions: Vec<NewAction>,
        messages: Vec<NewMessage>,
    ) -> Result<bool, StoreError> {
        in_tx!(self, tx => ops::actions::plan(&mut PgTx(&tx), owner, run_id, &actions, &messages, Utc::now()))
    }

    async fn defer_run(
        &self,
        owner: &str,
        run_id: i64,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        in_tx!(self, tx => ops::actions::defer(&mut PgTx(&tx), owner, run_id, until))
    }

    async fn fail_run(&self, owner: &str, run_id: i64, error: &str) -> Result<bool, StoreError> {
        in_tx!(self, tx => ops::actions::fail_run(&mut PgTx(&tx), owner, run_id, error, Utc::now()))
    }

    async fn claim_holders(&self) -> Result<Vec<String>, StoreError> {
        super::lease::holders(&mut PgTx(&self.client().await?)).await
    }

    async fn release_claims(&self, owner: &str) -> Result<u64, StoreError> {
        in_tx!(self, tx => super::lease::release(&mut PgTx(&tx), owner))
    }

    async fn claim_actions(
        &self,
        owner: &str,
        lease: std::time::Duration,
        limit: usize,
    ) -> Result<Vec<ActionRecord>, StoreError> {
        in_tx!(self, tx => ops::actions::claim(&mut PgTx(&tx), owner, Utc::now(), lease, limit))
    }

    async fn start_action(
        &self,
        owner: &str,
        id: i64,
        lease: std::time::Duration,
        observed: Option<serde_json::Value>,
    ) -> Result<bool, StoreError> {
        in_tx!(self, tx => ops::actions::start(&mut PgTx(&tx), owner, id, Utc::now(), lease, observed.as_ref()))
    }

    async fn finish_action(&self, id: i64, outcome: ActionOutcome) -> Result<(), StoreError> {
        in_tx!(self, tx => ops::actions::finish(&mut PgTx(&tx), id, &outcome, Utc::now()))
    }

    async fn started_actions(&self) -> Result<Vec<ActionRecord>, StoreError> {
        ops::actions::list(&mut PgTx(&self.client().await?), Some(ActionState::Started)).await
    }

    async fn claim_started(
        &self,
        owner: &str,
        action: &ActionRecord,
        lease: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let client = self.client().await?;
        ops::actions::claim_started(&mut PgTx(&client), owner, action, Utc::now(), lease).await
    }

    async fn rerun_started(&self, owner: &str, id: i64, why: &str) -> Result<bool, StoreError> {
        in_tx!(self, tx => ops::actions::rerun_started(&mut PgTx(&tx), owner, id, why))
    }

    async fn retry_action(&self, id: i64) -> Result<Result<(), String>, StoreError> {
        in_tx_waking!(self, super::fleet::accepted, tx => ops::actions::retry(&mut PgTx(&tx), id, Utc::now()))
    }

    async fn actions(&self) -> Result<Vec<ActionRecord>, StoreError> {
        ops::actions::list(&mut PgTx(&self.client().await?), None).await
    }

    async fn action(&self, id: i64) -> Result<Option<ActionRecord>, StoreError> {
        ops::actions::load(&mut PgTx(&self.client().await?), id).await
    }

    async fn actions_of_approval(&self, approval_id: i64) -> Result<Vec<ActionRecord>, StoreError> {
        ops::actions::of_approval(&mut PgTx(&self.client().await?), approval_id).await
    }

    async fn recent_actions(&self, limit: usize) -> Result<Vec<ActionRecord>, StoreError> {
        ops::actions::recent(&mut PgTx(&self.client().await?), limit).await
    }

    async fn stats(&self) -> Result<super::Stats, StoreError> {
        ops::stats::stats(&mut PgTx(&self.client().await?)).await
    }

    async fn undo_action(
        &self,
        id: i64,
        by: &str,
        reason: &str,
        reverse: super::Reverse,
    ) -> Result<Result<i64, String>, StoreError> {
        in_tx_waking!(self, super::fleet::accepted, tx => ops::actions::undo(&mut PgTx(&tx), id, by, reason, reverse, Utc::now()))
    }

    async fn claim_messages(
        &self,
        owner: &str,
        lease: std::time::Duration,
        limit: usize,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        in_tx!(self, tx => ops::messages::claim(&mut PgTx(&tx), owner, Utc::now(), lease, limit))
    }

    async fn begin_message_attempt(&self, id: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
        in_tx!(self, tx => ops::messages::begin_attempt(&mut PgTx(&tx), id, at))
    }

    async fn renew_message_claim(
        &self,
        owner: &str,
        id: i64,
        lease: std::time::Duration,
    ) -> Result<bool, StoreError> {
        in_tx!(self, tx => ops::messages::renew(&mut PgTx(&tx), owner, id, super::lease_end(Utc::now(), lease)))
    }

    async fn finish_message(
        &self,
        owner: &str,
        id: i64,
        outcome: MessageOutcome,
    ) -> Result<bool, StoreError> {
        in_tx!(self, tx => ops::messages::finish(&mut PgTx(&tx), owner, id, &outcome, Utc::now()))
    }

    async fn messages(&self) -> Result<Vec<MessageRecord>, StoreError> {
        ops::messages::list(&mut PgTx(&self.client().await?), None).await
    }

    async fn next_message_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        ops::messages::next_due(&mut PgTx(&self.client().await?), Utc::now()).await
    }

    async fn approval_messages(&self, approval_id: i64) -> Result<Vec<MessageRecord>, StoreError> {
        ops::messages::list(&mut PgTx(&self.client().await?), Some(approval_id)).await
    }

    async fn create_command(&self, command: NewCommand) -> Result<i64, StoreError> {
        in_tx!(self, tx => ops::commands::create(&mut PgTx(&tx), &command))
    }

    async fn decide_command(
        &self,
        id: i64,
        user_ref: &str,
        confirm: bool,
        now: DateTime<Utc>,
    ) -> Result<Result<CommandRecord, String>, StoreError> {
        in_tx!(self, tx => ops::commands::decide(&mut PgTx(&tx), id, user_ref, confirm, now))
    }

    async fn request_remediation(
        &self,
        finding_id: i64,
        remediation: &str,
        requested_by: &str,
    ) -> Result<Result<i64, String>, StoreError> {
        in_tx_waking!(self, super::fleet::accepted, tx => ops::commands::request_remediation(
            &mut PgTx(&tx),
            finding_id,
            remediation,
            requested_by,
            Utc::now(),
        ))
    }

    async fn audit_page(&self, after: i64, limit: usize) -> Result<Vec<Entry>, StoreError> {
        ops::audit::page(&mut PgTx(&self.client().await?), after, limit).await
    }

    async fn audit_head(&self) -> Result<(i64, String), StoreError> {
        ops::audit::head(&mut PgTx(&self.client().await?)).await
    }
}

/// The finding a claimed run is about.
async fn insert_run<C: deadpool_postgres::GenericClient>(
    c: &C,
    run: &RunRecord,
) -> Result<i64, StoreError> {
    let counts = [run.rows, run.inserted, run.updated, run.deleted].map(|n| n as i64);
    let row = c
        .query_one(
            "INSERT INTO runs (query, started_at, finished_at, status, rows, inserted, updated, deleted, baseline, error,
                               tick, ran_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
            &[
                &run.query,
                &run.started_at,
                &run.finished_at,
                &run.status.as_str(),
                &counts[0],
                &counts[1],
                &counts[2],
                &counts[3],
                &run.baseline,
                &run.error,
                &run.tick.as_ref().map(|t| t.at),
                &run.tick.as_ref().map(|t| t.by.as_str()),
            ],
        )
        .await?;
    let id = row.get(0);
    if let Some(tick) = &run.tick {
        self::fleet::finish_tick(c, &run.query, tick, id).await?;
    }
    Ok(id)
}

/// Claims the query's state at the generation the diff was based on; `Conflict` if it moved.
async fn claim_generation(
    tx: &Transaction<'_>,
    commit: &RunCommit,
) -> Result<(i64, Option<DateTime<Utc>>), StoreError> {
    let query = &commit.run.query;
    let observed = commit.run.started_at;
    let conflict = || StoreError::Conflict {
        query: query.clone(),
        expected: commit.changes.base_generation.unwrap_or(0),
    };
    match commit.changes.base_generation {
        None => {
            // Two first runs racing: the unique name lets only one insert.
            let row = tx
                .query_opt(
                    "INSERT INTO query_state (name, generation, last_success_at) VALUES ($1, 1, $2)
                     ON CONFLICT (name) DO NOTHING RETURNING id",
                    &[query, &observed],
                )
                .await?;
            row.map(|r| (r.get(0), None)).ok_or_else(conflict)
        }
        Some(base) => {
            let row = tx
                .query_opt(
                    "SELECT id, generation, last_success_at FROM query_state WHERE name = $1 FOR UPDATE",
                    &[query],
                )
                .await?
                .ok_or_else(conflict)?;
            let (id, generation, previous): (i64, i64, DateTime<Utc>) =
                (row.get(0), row.get(1), row.get(2));
            if generation != base {
                return Err(conflict());
            }
            tx.execute(
                "UPDATE query_state SET generation = generation + 1, last_success_at = $2 WHERE id = $1",
                &[&id, &observed],
            )
            .await?;
            Ok((id, Some(previous)))
        }
    }
}

/// Findings one commit must change before [`PgStore::analyze_if_grown`] looks further.
const ANALYZE_AFTER: u64 = 1_000;

impl PgStore {
    /// Renews the planner's statistics of `findings` when this commit changed more of it than
    /// PostgreSQL's own autovacuum threshold (50 rows plus 10%). Autovacuum would do the same,
    /// but only on its next round, up to a minute later; until then the next run is planned
    /// as if the table were as small as before, and its batched lookups scan every finding
    /// instead of probing the key index (a first run of 900,000 findings followed by a run
    /// with 27,000 changes: 8 s instead of 2.6 s). Costs ~0.15 s, after large commits only;
    /// a failure is logged, the commit stands.
    async fn analyze_if_grown(&self, outcome: &CommitOutcome) {
        let changed = (outcome.opened.len() + outcome.reopened.len() + outcome.resolved.len())
            as u64
            + outcome.updated;
        if changed < ANALYZE_AFTER {
            return;
        }
        let analyze = async {
            let client = self.client().await?;
            let known: f64 = client
                .query_one(
                    "SELECT greatest(reltuples, 0)::float8 FROM pg_class WHERE oid = 'findings'::regclass",
                    &[],
                )
                .await?
                .get(0);
            if changed as f64 > 50.0 + 0.1 * known {
                client
                    .batch_execute("ANALYZE findings (query, key_hash, status)")
                    .await?;
            }
            Ok::<_, StoreError>(())
        };
        if let Err(e) = analyze.await {
            tracing::warn!(error = %e, "could not renew the statistics of the findings table");
        }
    }
}

/// Rows per batched statement: arrays bound as parameters and expanded with `unnest` (a
/// `COPY` carries `copy::ROWS_PER_COPY`).
pub(super) const BATCH: usize = 5_000;

/// The stored snapshot of query `id`: (entries in its chunks, entries in its deltas, keys).
async fn snapshot_size(tx: &Transaction<'_>, id: i64) -> Result<(u64, u64, u64), StoreError> {
    let row = tx
        .query_one(
            "SELECT (SELECT coalesce(sum(length(entries)), 0)::bigint FROM snapshot_chunks WHERE query_id = $1),
                    coalesce(sum(length(entries)), 0)::bigint, coalesce(sum(added), 0)::bigint
               FROM snapshot_deltas WHERE query_id = $1",
            &[&id],
        )
        .await?;
    let entries = |bytes: i64| u64::try_from(bytes).unwrap_or(0) / ENTRY_BYTES as u64;
    let (chunks, deltas) = (entries(row.get(0)), entries(row.get(1)));
    Ok((chunks, deltas, chunks.saturating_add_signed(row.get(2))))
}

/// Stores the run's snapshot of query `id`: all of it a chunk at a time, or what changed as deltas.
async fn store_snapshot(
    tx: &Transaction<'_>,
    id: i64,
    changes: &Changes,
) -> Result<(), StoreError> {
    if changes.is_unchanged() {
        return Ok(());
    }
    let (chunks, deltas, _) = snapshot_size(tx, id).await?;
    match snapshot_write(changes, chunks, deltas) {
        SnapshotWrite::Keep => {}
        SnapshotWrite::Whole => {
            tx.execute("DELETE FROM snapshot_chunks WHERE query_id = $1", &[&id])
                .await?;
            tx.execute("DELETE FROM snapshot_deltas WHERE query_id = $1", &[&id])
                .await?;
            let put = tx
                .prepare_cached(
                    "INSERT INTO snapshot_chunks (query_id, seq, entries) VALUES ($1, $2, $3)",
                )
                .await?;
            for (seq, chunk) in changes.snapshot.chunks().enumerate() {
                let seq = i32::try_from(seq).unwrap_or(i32::MAX);
                tx.execute(&put, &[&id, &seq, &chunk]).await?;
            }
        }
        SnapshotWrite::Delta => {
            let next: i32 = tx
                .query_one(
                    "SELECT coalesce(max(seq) + 1, 0) FROM snapshot_deltas WHERE query_id = $1",
                    &[&id],
                )
                .await?
                .get(0);
            let put = tx
                .prepare_cached(
                    "INSERT INTO snapshot_deltas (query_id, seq, added, entries) VALUES ($1, $2, $3, $4)",
                )
                .await?;
            for (seq, (chunk, added)) in (next..).zip(changes.delta_chunks()) {
                tx.execute(&put, &[&id, &seq, &added, &chunk]).await?;
            }
        }
    }
    Ok(())
}

/// The key hashes of `batch`, as bound to a `bytea[]` parameter.
fn key_array(batch: &[&Changed]) -> Vec<Vec<u8>> {
    batch
        .iter()
        .map(|c| key_bytes(c.key_hash).to_vec())
        .collect()
}

/// The rows of `batch`, as bound to `text[]` and `bigint[]` parameters: (row JSON, row hashes).
fn row_arrays<'a>(batch: &[&'a Changed]) -> Result<(Vec<&'a str>, Vec<i64>), StoreError> {
    let mut arrays = (
        Vec::with_capacity(batch.len()),
        Vec::with_capacity(batch.len()),
    );
    for ch in batch {
        arrays.0.push(finding_json(ch)?.1);
        arrays.1.push(ch.row_hash as i64);
    }
    Ok(arrays)
}

/// Ids by key hash from `rows` whose column `id` is the id and `key` the key hash.
fn ids_by_key(
    rows: &[tokio_postgres::Row],
    id: usize,
    key: usize,
) -> Result<std::collections::HashMap<KeyHash, i64>, StoreError> {
    rows.iter()
        .map(|r| Ok((key_from_bytes(r.get::<_, &[u8]>(key))?, r.get::<_, i64>(id))))
        .collect()
}

/// Opens a finding for each of `new` (keys with none) with one binary `COPY`; returns
/// their ids by key hash.
///
/// The ids are taken from the identity's sequence first, which `COPY` then writes as given.
/// With audit entries copied too, a 900,000-finding first run's commit took about four
/// fifths of its time through `INSERT … SELECT FROM unnest(…) RETURNING` (BENCHMARKS.md).
async fn open_new(
    tx: &Transaction<'_>,
    query: &str,
    severity: &str,
    observed: DateTime<Utc>,
    new: &[&Changed],
) -> Result<std::collections::HashMap<KeyHash, i64>, StoreError> {
    if new.is_empty() {
        return Ok(Default::default());
    }
    let reserve = tx
        .prepare_cached("SELECT nextval('findings_id_seq') FROM generate_series(1, $1::bigint)")
        .await?;
    let ids: Vec<i64> = tx
        .query(&reserve, &[&(new.len() as i64)])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut writer = CopyWriter::start(
        tx,
        "COPY findings (id, query, key_hash, key_json, status, severity, row_json, row_hash, first_seen, last_seen)
         FROM STDIN (FORMAT binary)",
        &[
            Type::INT8,
            Type::TEXT,
            Type::BYTEA,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::INT8,
            Type::TIMESTAMPTZ,
            Type::TIMESTAMPTZ,
        ],
    )
    .await?;
    let mut opened = std::collections::HashMap::with_capacity(new.len());
    for (ch, id) in new.iter().zip(ids) {
        let (key_json, row_json) = finding_json(ch)?;
        let key = key_bytes(ch.key_hash);
        let row: [&(dyn ToSql + Sync); 10] = [
            &id,
            &query,
            &&key[..],
            &key_json,
            &"open",
            &severity,
            &row_json,
            &(ch.row_hash as i64),
            &observed,
            &observed,
        ];
        writer.write(&row).await?;
        opened.insert(ch.key_hash, id);
    }
    writer.finish().await?;
    Ok(opened)
}

async fn commit_in(tx: &Transaction<'_>, commit: &RunCommit) -> Result<CommitOutcome, StoreError> {
    let (query_id, previous_success) = claim_generation(tx, commit).await?;
    let query = &commit.run.query;
    let observed = commit.run.started_at;
    let severity = commit.severity.as_str();
    let mut outcome = CommitOutcome::default();
    let mut audit = FindingAudit::new(query);
    store_snapshot(tx, query_id, &commit.changes).await?;
    // A query that never had a finding (a new one) needs no lookups.
    let has_findings: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM findings WHERE query = $1)",
            &[query],
        )
        .await?
        .get(0);

    // New keys: a new finding each, or the existing one (resolved: reopened) refreshed.
    let find = tx
        .prepare_cached(
            "SELECT id, status, key_hash FROM findings WHERE query = $1 AND key_hash = ANY($2) FOR UPDATE",
        )
        .await?;
    let reopen = tx
        .prepare_cached(
            "UPDATE findings f SET status = 'open', resolved_at = NULL,
                    reopened = f.reopened + CASE WHEN f.status = 'resolved' THEN 1 ELSE 0 END,
                    accepted_until = CASE WHEN f.status = 'resolved' THEN NULL ELSE f.accepted_until END,
                    severity = $1, row_json = u.rj, row_hash = u.rh, last_seen = $2
               FROM unnest($3::bigint[], $4::text[], $5::bigint[]) AS u(id, rj, rh)
              WHERE f.id = u.id",
        )
        .await?;
    let inserted = super::new_in_insert_order(&commit.changes);
    for batch in inserted.chunks(ROWS_PER_COPY) {
        audit.flush(tx).await?;
        let existing: std::collections::HashMap<KeyHash, (i64, String)> = if has_findings {
            tx.query(&find, &[query, &key_array(batch)])
                .await?
                .iter()
                .map(|r| Ok((key_from_bytes(r.get::<_, &[u8]>(2))?, (r.get(0), r.get(1)))))
                .collect::<Result<_, StoreError>>()?
        } else {
            Default::default()
        };
        let (new, old): (Vec<&Changed>, Vec<&Changed>) = batch
            .iter()
            .partition(|c| !existing.contains_key(&c.key_hash));
        let opened = open_new(tx, query, severity, observed, &new).await?;
        if !old.is_empty() {
            let (rj, rh) = row_arrays(&old)?;
            let ids: Vec<i64> = old.iter().map(|c| existing[&c.key_hash].0).collect();
            tx.execute(&reopen, &[&severity, &observed, &ids, &rj, &rh])
                .await?;
        }
        for ch in batch {
            let (key_json, _) = finding_json(ch)?;
            match (opened.get(&ch.key_hash), existing.get(&ch.key_hash)) {
                (Some(&id), _) => {
                    outcome.opened.push(id);
                    audit.push(Kind::FindingOpened, id, key_json);
                }
                (None, Some((id, status))) if status == "resolved" => {
                    outcome.reopened.push(*id);
                    audit.push(Kind::FindingReopened, *id, key_json);
                }
                (None, Some(_)) => outcome.refreshed += 1,
                (None, None) => {
                    return Err(StoreError::Corrupt(format!(
                        "query {query}: finding {key_json} was neither found nor inserted"
                    )));
                }
            }
        }
    }

    // Changed rows: the open finding's row is updated.
    let update_rows = tx
        .prepare_cached(
            "UPDATE findings f SET row_json = u.rj, row_hash = u.rh, last_seen = $2
               FROM unnest($3::bytea[], $4::text[], $5::bigint[]) AS u(k, rj, rh)
              WHERE f.query = $1 AND f.key_hash = u.k AND f.status = 'open'
             RETURNING f.id, f.key_hash",
        )
        .await?;
    let updated: Vec<&Changed> = commit
        .changes
        .updated
        .iter()
        .filter(|c| c.finding.is_some())
        .collect();
    for batch in updated.chunks(BATCH) {
        audit.flush(tx).await?;
        let (k, (rj, rh)) = (key_array(batch), row_arrays(batch)?);
        let ids = ids_by_key(
            &tx.query(&update_rows, &[query, &observed, &k, &rj, &rh])
                .await?,
            0,
            1,
        )?;
        for ch in batch {
            if let Some(&id) = ids.get(&ch.key_hash) {
                outcome.updated += 1;
                audit.push(Kind::FindingUpdated, id, finding_json(ch)?.0);
            }
        }
    }

    // Gone keys: the open finding is resolved.
    let resolve = tx
        .prepare_cached(
            "UPDATE findings SET status = 'resolved', resolved_at = $2, last_seen = coalesce($3, last_seen)
             WHERE query = $1 AND key_hash = ANY($4) AND status = 'open' RETURNING id, key_json",
        )
        .await?;
    // Findings an UPDATE resolved (RETURNING id, key_json), recorded in id order.
    let record_resolved = |mut rows: Vec<tokio_postgres::Row>,
                           outcome: &mut CommitOutcome,
                           audit: &mut FindingAudit| {
        rows.sort_by_key(|r| r.get::<_, i64>(0));
        for row in &rows {
            let id: i64 = row.get(0);
            outcome.resolved.push(id);
            audit.push(Kind::FindingResolved, id, row.get::<_, String>(1));
        }
    };
    for batch in commit.changes.deleted.chunks(BATCH) {
        audit.flush(tx).await?;
        let keys: Vec<Vec<u8>> = batch.iter().map(|k| key_bytes(*k).to_vec()).collect();
        let rows = tx
            .query(&resolve, &[query, &observed, &previous_success, &keys])
            .await?;
        record_resolved(rows, &mut outcome, &mut audit);
    }
    if commit.changes.base_generation.is_none() && has_findings {
        // A first run (new query, or after `state reset`): open findings whose key it did not see are resolved.
        let open = tx
            .query(
                "SELECT id, key_hash FROM findings WHERE query = $1 AND status = 'open' ORDER BY id",
                &[query],
            )
            .await?;
        let mut unseen = Vec::new();
        for row in &open {
            if !commit
                .changes
                .snapshot
                .contains(key_from_bytes(row.get::<_, &[u8]>(1))?)
            {
                unseen.push(row.get::<_, i64>(0));
            }
        }
        for ids in unseen.chunks(BATCH) {
            audit.flush(tx).await?;
            let rows = tx
                .query(
                    "UPDATE findings SET status = 'resolved', resolved_at = $2 WHERE id = ANY($1)
                     RETURNING id, key_json",
                    &[&ids, &observed],
                )
                .await?;
            record_resolved(rows, &mut outcome, &mut audit);
        }
    }
    audit.finish(tx).await?;
    if let Some(remediation) = &commit.remediation {
        let ids: Vec<i64> = outcome
            .opened
            .iter()
            .chain(&outcome.reopened)
            .copied()
            .collect();
        runs::request_runs(tx, remediation, &ids, observed, None).await?;
    }
    for (refs, messages) in super::finding_messages(commit, &outcome) {
        super::ops::messages::insert(
            &mut tx::PgTx(tx),
            &messages,
            refs,
            MessageState::Pending,
            commit.run.finished_at,
        )
        .await?;
    }
    outcome.run_id = insert_run(tx, &commit.run).await?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redact_hides_only_the_password() {
        assert_eq!(redact("postgres://u:pw@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
    }
}
