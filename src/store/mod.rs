//! The state store: per-query snapshots, findings and query runs.
//!
//! One trait, [`Store`], with two implementations that pass the same test
//! suite: [`sqlite::SqliteStore`] (the default, `sqlite://vigilo.db`) and
//! [`postgres::PgStore`] (`postgres://…`, which several vigilo processes may
//! share). Each applies its numbered, embedded migrations at open.
//!
//! Only this module speaks SQL to the state store. Every run's changes commit
//! in one transaction guarded by the snapshot's generation: a crash mid-run
//! leaves the previous snapshot intact, and of two runs of the same query
//! racing from the same snapshot only the first commits.

mod columns;
pub mod events;
pub mod fleet;
mod lease;
mod ops;
pub mod postgres;
mod records;
mod rules;
mod seam;
mod snapshot;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::approval::{Approval, Refusal, Transition, Vote};
use crate::audit::{Entry, Event};
use crate::config::StoreUrl;
use crate::diff::Snapshot;
use crate::finding::Finding;
pub(crate) use columns::*;
pub(crate) use events::*;
pub use fleet::{Fleet, Tick};
pub(crate) use lease::lease_end;
pub use records::*;
pub(crate) use rules::*;
pub(crate) use snapshot::*;

/// Why the state store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Could not open or connect.
    #[error("state store {location}: cannot open: {message}")]
    Open {
        /// Where (a path or a URL without password).
        location: String,
        /// Why.
        message: String,
    },
    /// A statement failed.
    #[error("state store: {0}")]
    Database(String),
    /// Another run of the same query committed since this run read the snapshot.
    #[error(
        "query {query}: another run committed first (this run started from snapshot generation {expected}); its changes were discarded"
    )]
    Conflict {
        /// The query.
        query: String,
        /// The generation this run was based on (0: none, a first run).
        expected: i64,
    },
    /// The schema is newer than this vigilo.
    #[error(
        "state store schema is at version {found}, newer than this vigilo knows ({known}); upgrade vigilo"
    )]
    TooNew {
        /// Version found.
        found: i64,
        /// Newest version this build has.
        known: i64,
    },
    /// A stored value could not be read back.
    #[error("state store: corrupt value: {0}")]
    Corrupt(String),
    /// The claim on a scheduled tick passed to another process (this one was taken for gone).
    #[error(
        "query {query}: the claim on its tick at {tick} was taken over by another process; this run's changes were discarded"
    )]
    TickLost {
        /// The query.
        query: String,
        /// The tick.
        tick: DateTime<Utc>,
    },
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        StoreError::Database(e.to_string())
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> StoreError {
        // The DbError (code, message, detail) is in the source chain; Display alone says only "db error".
        match e.as_db_error() {
            Some(db) => StoreError::Database(format!("{} ({})", db.message(), db.code().code())),
            None => StoreError::Database(e.to_string()),
        }
    }
}

/// The state store.
#[async_trait]
pub trait Store: Fleet + Send + Sync {
    /// Answers when the store is reachable.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Accepted findings whose `accepted_until` is at or before `now`, oldest first.
    async fn due_acceptances(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<DueAcceptance>, StoreError>;

    /// Ends finding `id`'s acceptance if it is still accepted and due at `now`: the finding is
    /// open again, `finding.acceptance_expired` is appended, and a run of `remediation` (if
    /// any) is requested, all in one transaction. Returns the new run's id (`Some(None)` when
    /// there is no remediation), or `None` when another process got there first.
    async fn end_acceptance(
        &self,
        id: i64,
        remediation: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Option<Option<i64>>, StoreError>;

    /// The query's snapshot; `None` when it has no successful run (its next run is a first run).
    async fn load_snapshot(&self, query: &str) -> Result<Option<Snapshot>, StoreError>;

    /// Commits a successful run in one transaction; fails with `Conflict` if the snapshot moved.
    async fn commit_run(&self, commit: RunCommit) -> Result<CommitOutcome, StoreError>;

    /// Records a failed run; changes nothing else.
    async fn record_failed_run(&self, run: &RunRecord) -> Result<i64, StoreError>;

    /// Findings matching `filter`, by id.
    async fn findings(&self, filter: &FindingFilter) -> Result<Vec<Finding>, StoreError>;

    /// One finding.
    async fn finding(&self, id: i64) -> Result<Option<Finding>, StoreError>;

    /// Up to `limit` findings matching `filter` with ids above `after`, by id: a page, so large
    /// inventories are read a page at a time.
    async fn findings_page(
        &self,
        filter: &FindingFilter,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Finding>, StoreError>;

    /// The latest runs, newest first (of one query, or all).
    async fn runs(&self, query: Option<&str>, limit: usize) -> Result<Vec<RunRecord>, StoreError>;

    /// Forgets a query's snapshot (findings stay); returns how many keys it held.
    async fn reset_query(&self, query: &str) -> Result<u64, StoreError>;

    /// Appends events to the audit trail in one transaction; returns their `seq`s.
    async fn append_audit(&self, events: Vec<Event>) -> Result<Vec<i64>, StoreError>;

    /// Claims up to `limit` requested remediation runs for `owner` until `lease` passes.
    async fn claim_requested(
        &self,
        owner: &str,
        lease: std::time::Duration,
        limit: usize,
    ) -> Result<Vec<RequestedRun>, StoreError>;

    /// Opens the approval of a run `owner` claimed (requested → pending), with `approval.requested`;
    /// `None` if the claim was lost.
    async fn open_approval(
        &self,
        owner: &str,
        approval: NewApproval,
    ) -> Result<Option<i64>, StoreError>;

    /// Records `vote` as the state machine decides (settling a due timeout first); a refusal changes nothing.
    async fn vote(
        &self,
        approval_id: i64,
        vote: Vote,
    ) -> Result<Result<Transition, Refusal>, StoreError>;

    /// Settles every pending approval whose deadline is at or before `now`.
    async fn settle_due(&self, now: DateTime<Utc>) -> Result<Vec<(i64, Transition)>, StoreError>;

    /// Approvals with their votes, by id (pending ones only, or all).
    async fn approvals(&self, pending_only: bool) -> Result<Vec<Approval>, StoreError>;

    /// One approval with its votes.
    async fn approval(&self, id: i64) -> Result<Option<Approval>, StoreError>;

    /// Claims up to `limit` decided runs (their actions are planned next) for `owner`.
    async fn claim_decided(
        &self,
        owner: &str,
        lease: std::time::Duration,
        limit: usize,
    ) -> Result<Vec<DecidedRun>, StoreError>;

    /// Records the rendered actions of a run `owner` claimed (requested or decided → running,
    /// or → done when none is left to run) and queues its messages, held until its actions
    /// have all succeeded; false if the claim was lost.
    async fn plan_actions(
        &self,
        owner: &str,
        run_id: i64,
        actions: Vec<NewAction>,
        messages: Vec<NewMessage>,
    ) -> Result<bool, StoreError>;

    /// Gives up `owner`'s claim on a requested or decided run until `until` (another attempt then).
    async fn defer_run(
        &self,
        owner: &str,
        run_id: i64,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Ends a requested or decided run `owner` claimed as `failed`, with `remediation.failed`;
    /// false if the claim was lost.
    async fn fail_run(&self, owner: &str, run_id: i64, error: &str) -> Result<bool, StoreError>;

    /// Owners holding a live claim on a run, a pending action, a message or a running tick.
    async fn claim_holders(&self) -> Result<Vec<String>, StoreError>;

    /// Frees every claim `owner` holds on runs, pending actions, messages and running ticks (it
    /// is gone; its ticks are taken over); returns how many. Started actions keep theirs: they
    /// are settled, never re-run.
    async fn release_claims(&self, owner: &str) -> Result<u64, StoreError>;

    /// Claims up to `limit` pending actions for `owner`.
    async fn claim_actions(
        &self,
        owner: &str,
        lease: std::time::Duration,
        limit: usize,
    ) -> Result<Vec<ActionRecord>, StoreError>;

    /// Marks a claimed action started (attempts + 1, `action.started`) and commits, before anything is
    /// called; `observed` (what was read of the target just before, e.g. a key's status) is kept in
    /// its result until it finishes, for settling it after a crash.
    async fn start_action(
        &self,
        owner: &str,
        id: i64,
        lease: std::time::Duration,
        observed: Option<serde_json::Value>,
    ) -> Result<bool, StoreError>;

    /// Records how a started action ended, with its audit entry, and ends its run when it was the last.
    async fn finish_action(&self, id: i64, outcome: ActionOutcome) -> Result<(), StoreError>;

    /// Actions marked started, for settling after a crash.
    async fn started_actions(&self) -> Result<Vec<ActionRecord>, StoreError>;

    /// Takes over `action`, left started by a process that is gone, for `owner` to settle: false
    /// when another process took it first or it moved on (so only one process settles it).
    async fn claim_started(
        &self,
        owner: &str,
        action: &ActionRecord,
        lease: std::time::Duration,
    ) -> Result<bool, StoreError>;

    /// A started action `owner` claimed whose call did not take effect goes back to pending in
    /// one step, with an `action.failed` entry (`outcome: rerun`) saying `why`; false if the
    /// claim was lost.
    async fn rerun_started(&self, owner: &str, id: i64, why: &str) -> Result<bool, StoreError>;

    /// Puts a failed or unknown action back to pending; the refusal says why not.
    async fn retry_action(&self, id: i64) -> Result<Result<(), String>, StoreError>;

    /// Every action, by id.
    async fn actions(&self) -> Result<Vec<ActionRecord>, StoreError>;

    /// One action, if it exists.
    async fn action(&self, id: i64) -> Result<Option<ActionRecord>, StoreError>;

    /// The actions planned for approval `approval_id`'s run, in order (none before it is
    /// decided and planned).
    async fn actions_of_approval(&self, approval_id: i64) -> Result<Vec<ActionRecord>, StoreError>;

    /// The newest `limit` actions, newest first.
    async fn recent_actions(&self, limit: usize) -> Result<Vec<ActionRecord>, StoreError>;

    /// Counts for `/metrics`, grouped in the database.
    async fn stats(&self) -> Result<Stats, StoreError>;

    /// Records the reversal of executed action `id` as a new pending action of its run (see
    /// [`undo_params`]; `reverse` is the action type's undo), with `action.undo` by `by`;
    /// returns its id, or the refusal.
    async fn undo_action(
        &self,
        id: i64,
        by: &str,
        reason: &str,
        reverse: Reverse,
    ) -> Result<Result<i64, String>, StoreError>;

    /// Claims up to `limit` pending messages that are due for `owner`.
    async fn claim_messages(
        &self,
        owner: &str,
        lease: std::time::Duration,
        limit: usize,
    ) -> Result<Vec<MessageRecord>, StoreError>;

    /// Renews `owner`'s claim on a message for `lease` just before sending it; false if the
    /// claim was lost (another process may have it: do not send).
    async fn renew_message_claim(
        &self,
        owner: &str,
        id: i64,
        lease: std::time::Duration,
    ) -> Result<bool, StoreError>;

    /// Records, before the call, that a delivery call of pending message `id` begins at `at`
    /// (the first such time is kept): a later attempt knows the message may be there already.
    async fn begin_message_attempt(&self, id: i64, at: DateTime<Utc>) -> Result<(), StoreError>;

    /// Records a delivery attempt of a message `owner` claimed, with `message.sent` or
    /// `message.failed`; false if the claim was lost.
    async fn finish_message(
        &self,
        owner: &str,
        id: i64,
        outcome: MessageOutcome,
    ) -> Result<bool, StoreError>;

    /// Every queued message, by id.
    async fn messages(&self) -> Result<Vec<MessageRecord>, StoreError>;

    /// When the next pending message nobody holds a claim on is due, if any.
    async fn next_message_due(&self) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// The messages of one approval (its request and follow-ups), by id.
    async fn approval_messages(&self, approval_id: i64) -> Result<Vec<MessageRecord>, StoreError>;

    /// Records a ChatOps command waiting for confirmation, with `command.requested`.
    async fn create_command(&self, command: NewCommand) -> Result<i64, StoreError>;

    /// Confirms (or cancels) command `id` for `user_ref` at `now`, with its audit entry;
    /// the refusal says why nothing changed.
    async fn decide_command(
        &self,
        id: i64,
        user_ref: &str,
        confirm: bool,
        now: DateTime<Utc>,
    ) -> Result<Result<CommandRecord, String>, StoreError>;

    /// Starts a remediation run of an open finding on request (ChatOps), unless one is active.
    async fn request_remediation(
        &self,
        finding_id: i64,
        remediation: &str,
        requested_by: &str,
    ) -> Result<Result<i64, String>, StoreError>;

    /// Audit entries with `seq > after`, in order, at most `limit`.
    async fn audit_page(&self, after: i64, limit: usize) -> Result<Vec<Entry>, StoreError>;

    /// The chain's recorded head: last `seq` and its `hash` (0 and 64 zeros when empty).
    async fn audit_head(&self) -> Result<(i64, String), StoreError>;
}

/// Audit entries are read in pages of this many.
const AUDIT_PAGE: usize = 10_000;

/// Every audit entry, in `seq` order, read page by page.
pub async fn audit_entries(store: &dyn Store) -> Result<Vec<Entry>, StoreError> {
    let mut all = Vec::new();
    loop {
        let after = all.last().map_or(0, |e: &Entry| e.seq);
        let page = store.audit_page(after, AUDIT_PAGE).await?;
        let full = page.len() == AUDIT_PAGE;
        all.extend(page);
        if !full {
            return Ok(all);
        }
    }
}

/// Verifies the hash chain page by page and compares its end with the recorded head
/// (re-reading when entries were appended meanwhile); `Ok(Ok(n))` when `n` entries are intact.
pub async fn verify_audit(
    store: &dyn Store,
) -> Result<Result<i64, crate::audit::Broken>, StoreError> {
    let mut verifier = crate::audit::Verifier::default();
    loop {
        let page = store.audit_page(verifier.last_seq(), AUDIT_PAGE).await?;
        if let Err(broken) = page.iter().try_for_each(|e| verifier.check(e)) {
            return Ok(Err(broken));
        }
        if page.len() == AUDIT_PAGE {
            continue;
        }
        let (head_seq, head_hash) = store.audit_head().await?;
        let appended = head_seq > verifier.last_seq()
            && !store.audit_page(verifier.last_seq(), 1).await?.is_empty();
        if !appended {
            return Ok(verifier.finish(head_seq, &head_hash));
        }
    }
}

/// Opens (creating and migrating as needed) the store at `url`.
pub async fn open(url: &StoreUrl) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match url {
        StoreUrl::Sqlite(path) => Arc::new(sqlite::SqliteStore::open(path).await?),
        StoreUrl::Postgres(url) => Arc::new(postgres::PgStore::connect(url).await?),
    })
}
