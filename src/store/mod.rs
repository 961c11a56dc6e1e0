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

pub mod fleet;
mod pg_actions;
mod pg_approvals;
mod pg_audit;
mod pg_commands;
mod pg_copy;
mod pg_fleet;
mod pg_messages;
pub mod postgres;
pub mod sqlite;
mod sqlite_actions;
mod sqlite_approvals;
mod sqlite_audit;
mod sqlite_commands;
mod sqlite_fleet;
mod sqlite_messages;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::approval::{Approval, OptionSpec, Refusal, Transition, Vote};
use crate::audit::{Chain, Entry, Event, Kind, Link};
use crate::config::{Severity, StoreUrl};
use crate::diff::{Changed, Changes, KeyHash, Snapshot};
use crate::finding::{Finding, Status};
pub use fleet::{Fleet, Tick};

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

/// How a query run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Its changes were committed.
    Succeeded,
    /// Nothing changed; `error` says why.
    Failed,
}

impl RunStatus {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
        }
    }
}

/// One run of one query, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    /// Store id (0 before it is recorded).
    pub id: i64,
    /// The query.
    pub query: String,
    /// When it started (and when its rows were observed).
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// Outcome.
    pub status: RunStatus,
    /// Rows read.
    pub rows: u64,
    /// New keys.
    pub inserted: u64,
    /// Changed keys.
    pub updated: u64,
    /// Gone keys.
    pub deleted: u64,
    /// A first run that only recorded a baseline.
    pub baseline: bool,
    /// Why it failed.
    pub error: Option<String>,
    /// The scheduled tick it ran for (`vigilo run`); `None` for `vigilo scan`.
    pub tick: Option<Tick>,
}

/// A successful run's changes, to commit atomically.
#[derive(Debug)]
pub struct RunCommit {
    /// The run (status `Succeeded`).
    pub run: RunRecord,
    /// Severity given to new and reopened findings.
    pub severity: Severity,
    /// The query's remediation: a run is requested for each opened and reopened finding.
    pub remediation: Option<String>,
    /// What changed.
    pub changes: Changes,
    /// The query's `notify`: queued for each opened and reopened finding (event and ids filled in).
    pub notify: Vec<NewMessage>,
}

/// What a commit did to findings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitOutcome {
    /// The recorded run's id.
    pub run_id: i64,
    /// Findings created (remediations start for these).
    pub opened: Vec<i64>,
    /// Resolved findings that came back (remediations start for these too).
    pub reopened: Vec<i64>,
    /// Inserted keys whose finding was already open (after `state reset`).
    pub refreshed: u64,
    /// Open findings whose row was updated.
    pub updated: u64,
    /// Findings resolved.
    pub resolved: Vec<i64>,
}

/// Which findings to list.
#[derive(Debug, Clone, Default)]
pub struct FindingFilter {
    /// Only this query's.
    pub query: Option<String>,
    /// Only this status; `None`: all.
    pub status: Option<Status>,
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

    /// Counts for `/metrics`, grouped in the database.
    async fn stats(&self) -> Result<Stats, StoreError>;

    /// Records the reversal of executed action `id` as a new pending action of its run (see
    /// [`undo_params`]), with `action.undo` by `by`; returns its id, or the refusal.
    async fn undo_action(
        &self,
        id: i64,
        by: &str,
        reason: &str,
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

/// A claimed run as the claim query returns it: (run id, finding id, remediation, requested_by).
pub(crate) type Claimed = (i64, i64, String, Option<String>);

/// A run whose decision is made, claimed to plan its actions.
#[derive(Debug, Clone)]
pub struct DecidedRun {
    /// The run.
    pub run_id: i64,
    /// The remediation's name.
    pub remediation: String,
    /// The approval, when there is one.
    pub approval: Option<Approval>,
    /// The finding.
    pub finding: Finding,
}

/// A rendered action to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAction {
    /// Its index in the remediation's `[[action]]` list.
    pub position: i32,
    /// `http`, `aws.iam.update_access_key`, …
    pub kind: String,
    /// Rendered parameters.
    pub params: serde_json::Value,
    /// Recorded as skipped, never run: the result to keep (`{"skipped": why, …}`).
    pub skip: Option<serde_json::Value>,
}

/// An action's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionState {
    /// Waiting to run.
    Pending,
    /// Marked started; the call may or may not have happened.
    Started,
    /// Done.
    Succeeded,
    /// Failed with an error; `vigilo retry` runs it again.
    Failed,
    /// Not needed (recorded why).
    Skipped,
    /// Started by a process that died; nobody knows if the call happened. A person decides with `vigilo retry`.
    Unknown,
}

impl ActionState {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionState::Pending => "pending",
            ActionState::Started => "started",
            ActionState::Succeeded => "succeeded",
            ActionState::Failed => "failed",
            ActionState::Skipped => "skipped",
            ActionState::Unknown => "unknown",
        }
    }

    /// Parses a stored state.
    pub fn parse(s: &str) -> Result<ActionState, StoreError> {
        Ok(match s {
            "pending" => ActionState::Pending,
            "started" => ActionState::Started,
            "succeeded" => ActionState::Succeeded,
            "failed" => ActionState::Failed,
            "skipped" => ActionState::Skipped,
            "unknown" => ActionState::Unknown,
            other => return Err(StoreError::Corrupt(format!("action state {other:?}"))),
        })
    }
}

/// An action as stored.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ActionRecord {
    /// Stable id (`vigilo retry ID`).
    pub id: i64,
    /// Its run.
    pub run_id: i64,
    /// The approval that decided it.
    pub approval_id: Option<i64>,
    /// The finding.
    pub finding_id: i64,
    /// Index in the remediation's actions.
    pub position: i32,
    /// The action type.
    pub kind: String,
    /// Rendered parameters.
    pub params: serde_json::Value,
    /// Where it is.
    pub state: ActionState,
    /// Sent to the target so a repeated call can be recognised.
    pub idempotency_key: String,
    /// How many times it was started.
    pub attempts: i32,
    /// The process holding it.
    pub claimed_by: Option<String>,
    /// Until when.
    pub claim_expires: Option<DateTime<Utc>>,
    /// What the target answered.
    pub result: Option<serde_json::Value>,
    /// Why it failed.
    pub error: Option<String>,
}

/// How a started action ended.
#[derive(Debug, Clone, PartialEq)]
pub enum ActionOutcome {
    /// Done; what the target answered.
    Succeeded(serde_json::Value),
    /// Failed, with the error.
    Failed(String),
    /// Not needed; why.
    Skipped(String),
    /// Its process died after marking it started; why we cannot tell what happened.
    Unknown(String),
}

impl ActionOutcome {
    /// The same outcome with secrets masked in its result and error.
    pub fn redacted(self) -> ActionOutcome {
        match self {
            ActionOutcome::Succeeded(v) => ActionOutcome::Succeeded(crate::redact::json(v)),
            ActionOutcome::Failed(e) => ActionOutcome::Failed(crate::redact::text(&e)),
            ActionOutcome::Skipped(why) => ActionOutcome::Skipped(crate::redact::text(&why)),
            ActionOutcome::Unknown(e) => ActionOutcome::Unknown(crate::redact::text(&e)),
        }
    }

    /// The state it leaves the action in.
    pub fn state(&self) -> ActionState {
        match self {
            ActionOutcome::Succeeded(_) => ActionState::Succeeded,
            ActionOutcome::Failed(_) => ActionState::Failed,
            ActionOutcome::Skipped(_) => ActionState::Skipped,
            ActionOutcome::Unknown(_) => ActionState::Unknown,
        }
    }

    /// (result JSON, error text) to store.
    pub(crate) fn columns(&self) -> (Option<String>, Option<String>) {
        match self {
            ActionOutcome::Succeeded(v) => (Some(v.to_string()), None),
            ActionOutcome::Skipped(why) => (
                Some(serde_json::json!({ "skipped": why }).to_string()),
                None,
            ),
            ActionOutcome::Failed(e) | ActionOutcome::Unknown(e) => (None, Some(e.clone())),
        }
    }
}

/// Follow-up messages of an approval (`$1`): a copy of each of its requests, as event `$2`
/// with text `$3` at `$4`, for the integrations `filter` selects (SQLite: `$` → `?`).
pub(crate) fn follow_up_sql(filter: &str) -> String {
    format!(
        "INSERT INTO messages (event, finding_id, approval_id, run_id, notifier, integration, destination,
                               text, state, next_attempt_at, created_at)
         SELECT $2, finding_id, approval_id, run_id, notifier, integration, destination, $3, 'pending', $4, $4
         FROM messages WHERE approval_id = $1 AND event = 'approval.requested' AND {filter}
         ORDER BY id"
    )
}

/// The follow-ups a transition of approval `a` queues: (event, text, integration filter).
/// Votes go to Slack threads; decisions and expiries to every integration but the console.
pub(crate) fn follow_ups(
    a: &Approval,
    t: &Transition,
) -> Vec<(&'static str, String, &'static str)> {
    const SLACK: &str = "integration LIKE 'slack.%'";
    const NOT_CONSOLE: &str = "integration <> 'console'";
    let label = |value: &str| {
        a.options
            .iter()
            .find(|o| o.value == value)
            .map_or_else(|| value.to_string(), |o| o.label.clone())
    };
    let vote_line = |v: &Vote| match &v.reason {
        Some(r) => format!("{} voted {}: {r}", v.by, label(&v.option)),
        None => format!("{} voted {}", v.by, label(&v.option)),
    };
    match t {
        Transition::Vote(v) => vec![("approval.vote", vote_line(v), SLACK)],
        Transition::VoteDecides { vote, option, by } => vec![
            ("approval.vote", vote_line(vote), SLACK),
            (
                "approval.decided",
                format!("Decided: {} (by {})", label(option), by.join(", ")),
                NOT_CONSOLE,
            ),
        ],
        Transition::TimeoutDecides { option } => vec![(
            "approval.decided",
            format!("Decided: {} (time ran out; on_timeout)", label(option)),
            NOT_CONSOLE,
        )],
        Transition::Expire => vec![(
            "approval.expired",
            "Expired: nobody decided in time; nothing was done.".to_string(),
            NOT_CONSOLE,
        )],
    }
}

/// A ChatOps command to record, waiting for its requester's confirmation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCommand {
    /// `scan` or `remediate`.
    pub kind: String,
    /// The query name or the finding id.
    pub argument: String,
    /// The approver who asked.
    pub requested_by: String,
    /// Their user id on the channel (the only one who may confirm).
    pub user_ref: String,
    /// Where it was asked.
    pub channel: Option<String>,
    /// Where to answer (Slack's `response_url`).
    pub response_url: Option<String>,
    /// When it was asked.
    pub created_at: DateTime<Utc>,
    /// When the confirmation expires.
    pub expires_at: DateTime<Utc>,
}

/// A recorded ChatOps command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRecord {
    /// Its id.
    pub id: i64,
    /// `pending`, `confirmed` or `cancelled`.
    pub state: String,
    /// What was asked.
    pub command: NewCommand,
}

/// The state `user_ref` may move command `c` to at `now`, or why not.
pub(crate) fn command_decision(
    c: &CommandRecord,
    user_ref: &str,
    confirm: bool,
    now: DateTime<Utc>,
) -> Result<&'static str, String> {
    let what = format!("/vigilo {} {}", c.command.kind, c.command.argument);
    if c.command.user_ref != user_ref {
        return Err(format!(
            "only <@{}>, who asked for `{what}`, can confirm or cancel it",
            c.command.user_ref
        ));
    }
    if c.state != "pending" {
        return Err(format!("`{what}` was already {}", c.state));
    }
    if confirm && now > c.command.expires_at {
        return Err(format!(
            "the confirmation of `{what}` expired at {}; ask again",
            crate::finding::rfc3339(&c.command.expires_at)
        ));
    }
    Ok(if confirm { "confirmed" } else { "cancelled" })
}

/// The audit entry of a command event.
pub(crate) fn command_event(kind: crate::audit::Kind, c: &CommandRecord) -> Event {
    Event {
        kind,
        actor: c.command.requested_by.clone(),
        channel: "slack".into(),
        finding_id: (c.command.kind == "remediate")
            .then(|| c.command.argument.parse().ok())
            .flatten(),
        approval_id: None,
        action_id: None,
        data: serde_json::json!({
            "command_id": c.id,
            "command": c.command.kind,
            "argument": c.command.argument,
            "user": c.command.user_ref,
            "channel": c.command.channel,
        }),
    }
}

/// Why a finding cannot get a remediation run on request, if it cannot: (status, active run).
pub(crate) fn remediation_refusal(
    finding_id: i64,
    status: Option<&str>,
    active: Option<(i64, String)>,
) -> Option<String> {
    match (status, active) {
        (None, _) => Some(format!("finding {finding_id} does not exist")),
        (Some(s), _) if s != "open" => Some(format!(
            "finding {finding_id} is {s}; only open findings are remediated"
        )),
        (_, Some((run, state))) => Some(format!(
            "finding {finding_id} already has remediation run {run} ({state})"
        )),
        _ => None,
    }
}

/// Owners holding claims (the same SQL for both stores).
pub(crate) const CLAIM_HOLDERS_SQL: &str =
    "SELECT claimed_by FROM remediation_runs WHERE claimed_by IS NOT NULL AND state IN ('requested', 'decided')
     UNION SELECT claimed_by FROM actions WHERE claimed_by IS NOT NULL AND state = 'pending'
     UNION SELECT claimed_by FROM messages WHERE claimed_by IS NOT NULL AND state = 'pending'
     UNION SELECT claimed_by FROM ticks WHERE claimed_by IS NOT NULL AND state = 'running'";

/// Frees one owner's claims (`$1`, the only parameter, so SQLite binds it too), table by table
/// (the same SQL for both stores).
pub(crate) const RELEASE_CLAIMS_SQL: [&str; 4] = [
    "UPDATE remediation_runs SET claimed_by = NULL, claim_expires = NULL
     WHERE claimed_by = $1 AND state IN ('requested', 'decided')",
    "UPDATE actions SET claimed_by = NULL, claim_expires = NULL WHERE claimed_by = $1 AND state = 'pending'",
    "UPDATE messages SET claimed_by = NULL, claim_expires = NULL WHERE claimed_by = $1 AND state = 'pending'",
    "UPDATE ticks SET claimed_by = NULL, claim_expires = NULL WHERE claimed_by = $1 AND state = 'running'",
];

/// The audit entry of an action event.
pub(crate) fn action_event(
    kind: crate::audit::Kind,
    a: &ActionRecord,
    data: serde_json::Value,
) -> Event {
    Event {
        kind,
        actor: "vigilo".into(),
        channel: "action".into(),
        finding_id: Some(a.finding_id),
        approval_id: a.approval_id,
        action_id: Some(a.id),
        data,
    }
}

/// The `remediation.failed` entry of a run (id, finding, remediation, approval) that failed with `error`.
pub(crate) fn run_failed_event(run: (i64, i64, &str, Option<i64>), error: &str) -> Event {
    let (run_id, finding_id, remediation, approval_id) = run;
    Event {
        kind: crate::audit::Kind::RemediationFailed,
        actor: "vigilo".into(),
        channel: "remediation".into(),
        finding_id: Some(finding_id),
        approval_id,
        action_id: None,
        data: serde_json::json!({"run_id": run_id, "remediation": remediation, "error": error}),
    }
}

/// The type and parameters of the action that reverses `original` (its type's undo, see
/// [`crate::action::undo`]), given the other actions of its run; the refusal says why not.
pub(crate) fn undo_params(
    original: &ActionRecord,
    run_actions: &[ActionRecord],
    by: &str,
    reason: &str,
) -> Result<(String, serde_json::Value), String> {
    let id = original.id;
    if original.state != ActionState::Succeeded {
        return Err(format!(
            "action {id} is {}; only a succeeded action can be undone",
            original.state.as_str()
        ));
    }
    let (kind, mut params) = crate::action::undo(original)?;
    if let Some(earlier) = run_actions
        .iter()
        .find(|a| a.params["undo_of"].as_i64() == Some(id))
    {
        return Err(format!(
            "action {id} already has an undo: action {} ({}); `vigilo retry {}` runs a failed one again",
            earlier.id,
            earlier.state.as_str(),
            earlier.id
        ));
    }
    params["undo_of"] = serde_json::json!(id);
    params["undo_by"] = serde_json::json!(by);
    params["undo_reason"] = serde_json::json!(reason);
    Ok((kind.to_string(), params))
}

/// What a message held for a run is marked with when action `id` of the run is undone.
pub(crate) fn undo_cancel_note(id: i64) -> String {
    format!("not sent: action {id} of this run was undone")
}

/// The `action.undo` entry: `by` asked to reverse `original` with the new action `undo`
/// (`cancelled`: how many held messages of the run will not be sent).
pub(crate) fn undo_event(
    original: &ActionRecord,
    undo: &ActionRecord,
    reason: &str,
    cancelled: u64,
) -> Event {
    Event {
        kind: crate::audit::Kind::ActionUndo,
        actor: undo.params["undo_by"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        channel: "cli".into(),
        finding_id: Some(original.finding_id),
        approval_id: original.approval_id,
        action_id: Some(undo.id),
        data: serde_json::json!({
            "undo_of": original.id,
            "type": undo.kind,
            "reason": reason,
            "from": original.params["status"],
            "to": undo.params["status"],
            "params": undo.params,
            "messages_cancelled": cancelled,
        }),
    }
}

/// The audit entry of an action recorded as skipped when it was planned.
pub(crate) fn skipped_event(a: &ActionRecord) -> Event {
    let mut data = serde_json::json!({"type": a.kind, "attempt": 0, "idempotency_key": a.idempotency_key, "params": a.params});
    if let Some(serde_json::Value::Object(result)) = &a.result {
        for (k, v) in result {
            data[k] = v.clone();
        }
    }
    action_event(crate::audit::Kind::ActionSucceeded, a, data)
}

/// The `action.started` entry of `a`, as just marked started (with what was read before it).
pub(crate) fn started_event(a: &ActionRecord) -> Event {
    let mut data = serde_json::json!({"type": a.kind, "attempt": a.attempts, "idempotency_key": a.idempotency_key, "params": a.params});
    if let Some(observed) = &a.result {
        data["observed"] = observed.clone();
    }
    action_event(crate::audit::Kind::ActionStarted, a, data)
}

/// The audit entry for how an action ended.
pub(crate) fn outcome_event(a: &ActionRecord, outcome: &ActionOutcome) -> Event {
    use crate::audit::Kind;
    let base = serde_json::json!({"type": a.kind, "attempt": a.attempts, "idempotency_key": a.idempotency_key});
    let with = |k: &str, v: serde_json::Value| {
        let mut d = base.clone();
        d[k] = v;
        d
    };
    match outcome {
        ActionOutcome::Succeeded(r) => {
            action_event(Kind::ActionSucceeded, a, with("result", r.clone()))
        }
        ActionOutcome::Skipped(why) => action_event(
            Kind::ActionSucceeded,
            a,
            with("skipped", why.clone().into()),
        ),
        ActionOutcome::Failed(e) => {
            action_event(Kind::ActionFailed, a, with("error", e.clone().into()))
        }
        ActionOutcome::Unknown(e) => {
            let mut d = with("error", e.clone().into());
            d["outcome"] = "unknown".into();
            action_event(Kind::ActionFailed, a, d)
        }
    }
}

/// The `action.failed` entry of a started action sent back to pending because its call did not take effect.
pub(crate) fn rerun_event(a: &ActionRecord, why: &str) -> Event {
    let data = serde_json::json!({
        "type": a.kind,
        "attempt": a.attempts,
        "idempotency_key": a.idempotency_key,
        "error": why,
        "outcome": "rerun",
    });
    action_event(crate::audit::Kind::ActionFailed, a, data)
}

/// Counts of what the store holds, for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Open findings per (query, severity).
    pub open_findings: Vec<(String, String, i64)>,
    /// Approvals per (remediation, status, decision).
    pub approvals: Vec<(String, String, Option<String>, i64)>,
    /// Actions per (type, state).
    pub actions: Vec<(String, String, i64)>,
    /// Messages per (integration kind, state).
    pub messages: Vec<(String, String, i64)>,
}

/// The grouping queries of [`Stats`], in both dialects (no parameters). Open findings are
/// grouped by severity first: grouped by query first, SQLite would walk the `(query,
/// key_hash)` index for the grouping and read every row at random (3 s instead of 0.5 s for
/// 900,000 findings); this way it reads the table once.
pub(crate) const STATS_SQL: [&str; 4] = [
    "SELECT query, severity, count(*) FROM findings WHERE status = 'open' GROUP BY severity, query ORDER BY 1, 2",
    "SELECT remediation, status, decision, count(*) FROM approvals GROUP BY remediation, status, decision ORDER BY 1, 2, 3",
    "SELECT kind, state, count(*) FROM actions GROUP BY kind, state ORDER BY 1, 2",
    "SELECT CASE WHEN instr(integration, '.') > 0 THEN substr(integration, 1, instr(integration, '.') - 1) ELSE integration END,
            state, count(*) FROM messages GROUP BY 1, 2 ORDER BY 1, 2",
];

/// The idempotency key of a run's action at `position`: the same on every attempt.
pub(crate) fn idempotency_key(run_id: i64, position: i32) -> String {
    format!("vigilo-run{run_id}-action{position}")
}

/// A remediation run claimed to be turned into an approval.
#[derive(Debug, Clone)]
pub struct RequestedRun {
    /// The run.
    pub run_id: i64,
    /// The remediation's name.
    pub remediation: String,
    /// Who asked for it (ChatOps), if anyone.
    pub requested_by: Option<String>,
    /// The finding, as it is now.
    pub finding: Finding,
}

/// An approval to open, rendered and resolved by the caller.
#[derive(Debug, Clone)]
pub struct NewApproval {
    /// The claimed run.
    pub run_id: i64,
    /// The finding.
    pub finding_id: i64,
    /// The remediation's name.
    pub remediation: String,
    /// Rendered subject.
    pub subject: String,
    /// Rendered prompt.
    pub prompt: String,
    /// Options with thresholds.
    pub options: Vec<OptionSpec>,
    /// The kind of answer and its settings.
    pub input: crate::approval::Input,
    /// Approver names, groups expanded.
    pub approvers: Vec<String>,
    /// The ChatOps requester.
    pub requested_by: Option<String>,
    /// May the requester vote.
    pub allow_self_approval: bool,
    /// When it opens.
    pub requested_at: DateTime<Utc>,
    /// When time runs out.
    pub deadline: Option<DateTime<Utc>>,
    /// Option taken at the deadline.
    pub on_timeout: Option<String>,
    /// Told of the new approval (approval id filled in).
    pub messages: Vec<NewMessage>,
}

/// A notifier message to queue: one target of one notifier.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    /// What it tells of (`finding.opened`, `approval.requested`, `remediation.message`, …).
    pub event: String,
    /// The notifier.
    pub notifier: String,
    /// The integration (`KIND.NAME` or `console`).
    pub integration: String,
    /// Where, for that integration: `{channel}` or `{to: […]}`.
    pub destination: serde_json::Value,
    /// The rendered text of a `[[message]]`.
    pub text: Option<String>,
}

/// Where a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageState {
    /// Waits for its run's actions to succeed (a decision's `[[message]]`s).
    Held,
    /// Waiting for delivery (or for its next attempt).
    Pending,
    /// Delivered.
    Sent,
    /// Every attempt failed; the last error is kept.
    Failed,
}

impl MessageState {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageState::Held => "held",
            MessageState::Pending => "pending",
            MessageState::Sent => "sent",
            MessageState::Failed => "failed",
        }
    }

    /// Parses a stored state.
    pub fn parse(s: &str) -> Result<MessageState, StoreError> {
        Ok(match s {
            "held" => MessageState::Held,
            "pending" => MessageState::Pending,
            "sent" => MessageState::Sent,
            "failed" => MessageState::Failed,
            other => return Err(StoreError::Corrupt(format!("message state {other:?}"))),
        })
    }
}

/// A queued message, as stored.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MessageRecord {
    /// Stable id (sent as `Idempotency-Key: vigilo-message-ID` where the integration allows).
    pub id: i64,
    /// What it tells of.
    pub event: String,
    /// The finding.
    pub finding_id: Option<i64>,
    /// The approval.
    pub approval_id: Option<i64>,
    /// The remediation run.
    pub run_id: Option<i64>,
    /// The notifier.
    pub notifier: String,
    /// The integration.
    pub integration: String,
    /// Where.
    pub destination: serde_json::Value,
    /// Rendered `[[message]]` text.
    pub text: Option<String>,
    /// Where it is.
    pub state: MessageState,
    /// Delivery attempts so far.
    pub attempts: i32,
    /// When it is due next.
    pub next_attempt_at: DateTime<Utc>,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// When it was delivered.
    pub sent_at: Option<DateTime<Utc>>,
    /// What the integration answered.
    pub result: Option<serde_json::Value>,
    /// The last failure.
    pub error: Option<String>,
    /// When the first delivery call began that may have reached the target (`None`: none has).
    pub attempted_at: Option<DateTime<Utc>>,
}

/// How a delivery attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum MessageOutcome {
    /// Delivered; what the integration answered.
    Sent(serde_json::Value),
    /// Not attempted (the integration's pace): due again at `until`; no attempt counted, no audit.
    Deferred {
        /// When it is due again.
        until: DateTime<Utc>,
    },
    /// Failed; tried again at `retry_at`, or never again when `None`.
    Failed {
        /// Why.
        error: String,
        /// The next attempt.
        retry_at: Option<DateTime<Utc>>,
    },
}

/// The `notify` messages of a commit: for each opened and reopened finding, its refs and messages.
pub(crate) fn finding_messages(
    commit: &RunCommit,
    outcome: &CommitOutcome,
) -> Vec<(MessageRefs, Vec<NewMessage>)> {
    if commit.notify.is_empty() {
        return Vec::new();
    }
    let opened = outcome
        .opened
        .iter()
        .map(|id| (*id, crate::notify::FINDING_OPENED));
    let reopened = outcome
        .reopened
        .iter()
        .map(|id| (*id, crate::notify::FINDING_REOPENED));
    opened
        .chain(reopened)
        .map(|(id, event)| {
            let refs = MessageRefs {
                finding_id: Some(id),
                ..MessageRefs::default()
            };
            let messages = commit
                .notify
                .iter()
                .map(|m| NewMessage {
                    event: event.into(),
                    ..m.clone()
                })
                .collect();
            (refs, messages)
        })
        .collect()
}

/// What finishing an attempt writes: (state, sent_at, next_attempt_at, result JSON, error).
pub(crate) type MessageColumns = (
    MessageState,
    Option<DateTime<Utc>>,
    DateTime<Utc>,
    Option<String>,
    Option<String>,
);

impl MessageOutcome {
    /// The columns an attempt that ended so at `now` writes.
    pub(crate) fn columns(&self, now: DateTime<Utc>) -> Result<MessageColumns, StoreError> {
        Ok(match self {
            MessageOutcome::Sent(result) => (
                MessageState::Sent,
                Some(now),
                now,
                Some(to_json(result)?),
                None,
            ),
            MessageOutcome::Failed {
                error,
                retry_at: Some(at),
            } => (MessageState::Pending, None, *at, None, Some(error.clone())),
            MessageOutcome::Failed {
                error,
                retry_at: None,
            } => (MessageState::Failed, None, now, None, Some(error.clone())),
            MessageOutcome::Deferred { until } => (MessageState::Pending, None, *until, None, None),
        })
    }

    /// Whether it was an attempt (counted and audited); a deferral is not.
    pub(crate) fn attempted(&self) -> bool {
        !matches!(self, MessageOutcome::Deferred { .. })
    }
}

/// One finding event of a commit: (kind, finding id, key JSON).
pub(crate) type FindingEvent<K> = (Kind, i64, K);

/// Chains `batch`, finding events of `query`, onto `chain` (on a second thread, in both
/// stores' `FindingAudit`); returns the chain and the entries.
pub(crate) fn chain_findings<K: AsRef<str>>(
    mut chain: Chain,
    query: &str,
    batch: Vec<FindingEvent<K>>,
) -> (Chain, Vec<Link<'static>>) {
    let links = batch
        .into_iter()
        .map(|(kind, id, key)| {
            let event = Event::finding(kind, "scan", query, id, key_value(key.as_ref()));
            chain.next(&event).into_owned()
        })
        .collect();
    (chain, links)
}

/// The error of a commit whose audit chaining thread stopped (`why`: a panic's message, say).
pub(crate) fn chaining_stopped(why: &str) -> StoreError {
    StoreError::Database(format!(
        "the audit chaining thread stopped ({why}); nothing of this run was committed"
    ))
}

/// The ids a queued message refers to.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct MessageRefs {
    pub finding_id: Option<i64>,
    pub approval_id: Option<i64>,
    pub run_id: Option<i64>,
}

/// The audit entry of a delivery attempt of `m` (its `attempts` already counting this one);
/// none for a deferral, which is not an attempt.
pub(crate) fn message_event(m: &MessageRecord, outcome: &MessageOutcome) -> Option<Event> {
    use crate::audit::Kind;
    let mut data = serde_json::json!({
        "message_id": m.id,
        "event": m.event,
        "notifier": m.notifier,
        "integration": m.integration,
        "destination": m.destination,
        "attempt": m.attempts,
    });
    let kind = match outcome {
        MessageOutcome::Sent(result) => {
            data["result"] = result.clone();
            Kind::MessageSent
        }
        MessageOutcome::Deferred { .. } => return None,
        MessageOutcome::Failed { error, retry_at } => {
            data["error"] = error.clone().into();
            data["retry_at"] = retry_at.as_ref().map(crate::finding::rfc3339).into();
            Kind::MessageFailed
        }
    };
    Some(Event {
        kind,
        actor: "vigilo".into(),
        channel: m.integration.clone(),
        finding_id: m.finding_id,
        approval_id: m.approval_id,
        action_id: None,
        data,
    })
}

/// The audit events of applying `t` to approval `a` at `now`.
pub(crate) fn transition_events(a: &Approval, t: &Transition, now: DateTime<Utc>) -> Vec<Event> {
    use crate::audit::Kind;
    let base = |kind: Kind, actor: &str, channel: &str, data: serde_json::Value| Event {
        kind,
        actor: actor.to_string(),
        channel: channel.to_string(),
        finding_id: Some(a.finding_id),
        approval_id: Some(a.id),
        action_id: None,
        data,
    };
    let vote_event = |v: &Vote| {
        base(
            Kind::ApprovalVote,
            &v.by,
            &v.channel,
            serde_json::json!({"option": v.option, "values": v.values, "reason": v.reason, "identity": v.identity}),
        )
    };
    match t {
        Transition::Vote(v) => vec![vote_event(v)],
        Transition::VoteDecides { vote, option, by } => vec![
            vote_event(vote),
            base(
                Kind::ApprovalDecided,
                &by.join(","),
                &vote.channel,
                serde_json::json!({"decision": option, "values": crate::approval::answer_values(a.input.kind, option), "by": by, "via": "votes"}),
            ),
        ],
        Transition::TimeoutDecides { option } => vec![
            base(
                Kind::ApprovalExpired,
                "vigilo",
                "timeout",
                serde_json::json!({"deadline": a.deadline.as_ref().map(crate::finding::rfc3339), "on_timeout": option}),
            ),
            base(
                Kind::ApprovalDecided,
                "vigilo",
                "timeout",
                serde_json::json!({"decision": option, "by": ["vigilo"], "via": "on_timeout", "at": crate::finding::rfc3339(&now)}),
            ),
        ],
        Transition::Expire => vec![base(
            Kind::ApprovalExpired,
            "vigilo",
            "timeout",
            serde_json::json!({"deadline": a.deadline.as_ref().map(crate::finding::rfc3339)}),
        )],
    }
}

/// What a decision accepts: the finding's risk until `until` (an option with `accept_for`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Acceptance {
    /// When the acceptance ends.
    pub until: DateTime<Utc>,
    /// Who decided it (`alice, bob`; `vigilo` for `on_timeout`).
    pub by: String,
    /// The deciding voters' reasons, else the option's label.
    pub reason: String,
    /// The option chosen.
    pub option: String,
    /// Its `accept_for`, as written.
    pub accept_for: String,
}

/// The acceptance that transition `t` of approval `a` decides, if its option has `accept_for`.
pub(crate) fn acceptance_of(
    a: &Approval,
    t: &Transition,
    now: DateTime<Utc>,
) -> Option<Acceptance> {
    let (option, by, reasons): (&str, Vec<String>, Vec<String>) = match t {
        Transition::VoteDecides { vote, option, by } => {
            let reasons = a
                .votes
                .iter()
                .chain(std::iter::once(vote))
                .filter(|v| &v.option == option && by.contains(&v.by))
                .filter_map(|v| v.reason.clone())
                .filter(|r| !r.trim().is_empty())
                .collect();
            (option, by.clone(), reasons)
        }
        Transition::TimeoutDecides { option } => (option, vec!["vigilo".into()], Vec::new()),
        Transition::Vote(_) | Transition::Expire => return None,
    };
    if !matches!(
        a.input.kind,
        crate::approval::InputKind::Button | crate::approval::InputKind::Select
    ) {
        return None;
    }
    let spec = a.options.iter().find(|o| o.value == option)?;
    let accept_for = spec.accept_for.clone()?;
    let period = humantime::parse_duration(accept_for.trim()).ok()?;
    let until = now + chrono::Duration::from_std(period).ok()?;
    let reason = if reasons.is_empty() {
        match t {
            Transition::TimeoutDecides { .. } => format!("{} (on_timeout)", spec.label),
            _ => spec.label.clone(),
        }
    } else {
        reasons.join("; ")
    };
    Some(Acceptance {
        until,
        by: by.join(", "),
        reason,
        option: option.to_string(),
        accept_for,
    })
}

/// The `finding.accepted` entry of `acc`, decided on approval `a`.
pub(crate) fn accepted_event(a: &Approval, acc: &Acceptance, channel: &str) -> Event {
    Event {
        kind: crate::audit::Kind::FindingAccepted,
        actor: acc.by.clone(),
        channel: channel.to_string(),
        finding_id: Some(a.finding_id),
        approval_id: Some(a.id),
        action_id: None,
        data: serde_json::json!({
            "option": acc.option,
            "accept_for": acc.accept_for,
            "until": crate::finding::rfc3339(&acc.until),
            "by": acc.by,
            "reason": acc.reason,
        }),
    }
}

/// The `finding.acceptance_expired` entry of finding `id`, accepted until `until` by `by`.
pub(crate) fn acceptance_expired_event(
    id: i64,
    until: DateTime<Utc>,
    by: Option<String>,
    reason: Option<String>,
    run_id: Option<i64>,
) -> Event {
    Event {
        kind: crate::audit::Kind::FindingAcceptanceExpired,
        actor: "vigilo".into(),
        channel: "scheduler".into(),
        finding_id: Some(id),
        approval_id: None,
        action_id: None,
        data: serde_json::json!({
            "until": crate::finding::rfc3339(&until),
            "accepted_by": by,
            "accepted_reason": reason,
            "status": "open",
            "remediation_run": run_id,
        }),
    }
}

/// A finding whose acceptance has run out (`Store::due_acceptances`).
#[derive(Debug, Clone, PartialEq)]
pub struct DueAcceptance {
    /// The finding.
    pub finding_id: i64,
    /// Its query.
    pub query: String,
    /// When the acceptance ended.
    pub until: DateTime<Utc>,
}

/// Where a transition leaves the approval: (status, decision, decided_by, run state).
pub(crate) fn transition_result(
    t: &Transition,
) -> Option<(&'static str, Option<String>, Vec<String>, &'static str)> {
    match t {
        Transition::Vote(_) => None,
        Transition::VoteDecides { option, by, .. } => {
            Some(("decided", Some(option.clone()), by.clone(), "decided"))
        }
        Transition::TimeoutDecides { option } => Some((
            "decided",
            Some(option.clone()),
            vec!["vigilo".into()],
            "decided",
        )),
        Transition::Expire => Some(("expired", None, vec![], "expired")),
    }
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

/// A key hash as stored: 16 bytes, big-endian.
pub(crate) fn key_bytes(k: KeyHash) -> [u8; 16] {
    k.to_be_bytes()
}

/// Reads a stored key hash.
pub(crate) fn key_from_bytes(b: &[u8]) -> Result<KeyHash, StoreError> {
    let arr: [u8; 16] = b
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("key hash of {} bytes", b.len())))?;
    Ok(KeyHash::from_be_bytes(arr))
}

/// Parses a stored status.
pub(crate) fn parse_status(s: &str) -> Result<Status, StoreError> {
    Status::parse(s).ok_or_else(|| StoreError::Corrupt(format!("finding status {s:?}")))
}

/// Parses a stored severity.
pub(crate) fn parse_severity(s: &str) -> Result<Severity, StoreError> {
    Severity::parse(s).ok_or_else(|| StoreError::Corrupt(format!("severity {s:?}")))
}

/// Parses stored JSON text; `what` names the column in the error.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    what: &str,
    s: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// Serializes a value to store as JSON text.
/// An approval's `options` column: a plain list for buttons (as stored before input types),
/// or the list with the input settings of the other types.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
enum StoredOptions {
    /// Buttons.
    Plain(Vec<OptionSpec>),
    /// Select, multiselect, text.
    WithInput {
        /// Type, placeholder, pattern, required.
        input: crate::approval::Input,
        /// The options (for text, suggestions).
        options: Vec<OptionSpec>,
    },
}

/// The `options` column of an approval with `input` and `options`.
pub(crate) fn options_json(
    input: &crate::approval::Input,
    options: &[OptionSpec],
) -> Result<String, StoreError> {
    if *input == crate::approval::Input::default() {
        return to_json(options);
    }
    to_json(&StoredOptions::WithInput {
        input: input.clone(),
        options: options.to_vec(),
    })
}

/// An approval's input settings and options from its `options` column.
pub(crate) fn parse_options(
    json: &str,
) -> Result<(crate::approval::Input, Vec<OptionSpec>), StoreError> {
    Ok(
        match parse_json::<StoredOptions>("approval options", json)? {
            StoredOptions::Plain(options) => (Default::default(), options),
            StoredOptions::WithInput { input, options } => (input, options),
        },
    )
}

pub(crate) fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(format!("JSON: {e}")))
}

/// When a claim taken at `now` for `lease` runs out.
pub(crate) fn lease_end(now: DateTime<Utc>, lease: std::time::Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(lease).unwrap_or_else(|_| chrono::Duration::seconds(60))
}

/// Parses a stored run status.
pub(crate) fn parse_run_status(s: &str) -> Result<RunStatus, StoreError> {
    match s {
        "succeeded" => Ok(RunStatus::Succeeded),
        "failed" => Ok(RunStatus::Failed),
        _ => Err(StoreError::Corrupt(format!("run status {s:?}"))),
    }
}

/// Parses a stored key object for an audit event (`null` if it is not JSON, which the schema prevents).
pub(crate) fn key_value(key_json: &str) -> serde_json::Value {
    serde_json::from_str(key_json).unwrap_or(serde_json::Value::Null)
}

/// Reads a stored snapshot: its deltas (`true`), then its chunks, each in order, as (seq,
/// entries); see [`Snapshot::add_delta_chunk`]. Two queries, not one `UNION ALL … ORDER BY`,
/// which SQLite would sort in memory first.
pub(crate) const SNAPSHOT_ENTRIES: [(bool, &str); 2] = [
    (
        true,
        "SELECT seq, entries FROM snapshot_deltas WHERE query_id = $1 ORDER BY seq",
    ),
    (
        false,
        "SELECT seq, entries FROM snapshot_chunks WHERE query_id = $1 ORDER BY seq",
    ),
];

/// Adds one row of a [`SNAPSHOT_ENTRIES`] query to `snapshot`: a delta, or a chunk merged with them.
pub(crate) fn load_entries(
    snapshot: &mut Snapshot,
    query: &str,
    (delta, seq, entries): (bool, i64, &[u8]),
) -> Result<(), StoreError> {
    let loaded = if delta {
        snapshot.add_delta_chunk(entries)
    } else {
        snapshot.extend_from_chunk(entries)
    };
    loaded.map_err(|len| {
        StoreError::Corrupt(format!(
            "query {query}: snapshot {} {seq} has {len} bytes, not a multiple of {}",
            if delta { "delta" } else { "chunk" },
            crate::diff::ENTRY_BYTES
        ))
    })
}

/// How a run's snapshot is stored.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SnapshotWrite {
    /// Nothing changed: the stored snapshot stands.
    Keep,
    /// Every chunk rewritten and the deltas dropped: a first run, or deltas grown too large.
    Whole,
    /// The run's changes appended as deltas ([`Changes::delta_chunks`]).
    Delta,
}

/// Stored deltas may hold up to 1/`DELTA_SHARE` of the snapshot's chunk entries: loading
/// costs at most that much more, and a rewrite is paid for by the runs it was put off for.
const DELTA_SHARE: u64 = 4;

/// How to store `changes`, given the entries in the stored chunks and deltas.
pub(crate) fn snapshot_write(
    changes: &Changes,
    chunk_entries: u64,
    delta_entries: u64,
) -> SnapshotWrite {
    if changes.is_unchanged() {
        SnapshotWrite::Keep
    } else if changes.base_generation.is_none()
        || (delta_entries + changes.changed_keys() as u64) * DELTA_SHARE > chunk_entries
    {
        SnapshotWrite::Whole
    } else {
        SnapshotWrite::Delta
    }
}

/// From how many new keys on, a run's new findings are inserted in key-hash order.
pub(crate) const KEY_ORDER_FROM: usize = 10_000;

/// A run's new keys that carry their row (all but a baseline run's), in the order their
/// findings are inserted and numbered: the query's row order, or key-hash order for a run
/// with at least [`KEY_ORDER_FROM`] of them.
///
/// In key-hash order the `UNIQUE (query, key_hash)` index grows at one end instead of at a
/// random leaf per insert, while each table page is still written once: a first run of
/// 900,000 findings spends seconds less in PostgreSQL (BENCHMARKS.md). A run that small
/// keeps its order, which is what people read: notifications and approvals follow the query.
pub(crate) fn new_in_insert_order(changes: &Changes) -> Vec<&Changed> {
    // Each key beside its pointer: sorting through the pointers would read 900,000
    // scattered rows about twenty times each.
    let mut keyed: Vec<(KeyHash, &Changed)> = (changes.inserted.iter())
        .filter(|ch| ch.finding.is_some())
        .map(|ch| (ch.key_hash, ch))
        .collect();
    if keyed.len() >= KEY_ORDER_FROM {
        keyed.sort_unstable_by_key(|&(key, _)| key);
    }
    keyed.into_iter().map(|(_, ch)| ch).collect()
}

/// How many rows ahead of a commit's loop [`prefetch`] asks for a finding's text.
const PREFETCH_AHEAD: usize = 8;

/// Asks the CPU for what a commit's loop over `new` (in key-hash order, so scattered in
/// memory) reads `PREFETCH_AHEAD` rows from `i`: that finding's text, and the `Changed`
/// twice as far ahead, whose pointer to its text the next calls read. Without it, each
/// new finding of a first run waits for two cache misses on the one thread that writes.
pub(crate) fn prefetch(new: &[&Changed], i: usize) {
    if let Some(ch) = new.get(i + 2 * PREFETCH_AHEAD) {
        crate::diff::prefetch(*ch);
    }
    if let Some(f) = new
        .get(i + PREFETCH_AHEAD)
        .and_then(|ch| ch.finding.as_ref())
    {
        f.prefetch();
    }
}

/// From how many new and changed keys on, a committed run is dropped by [`drop_aside`].
const DROP_ASIDE_FROM: usize = 10_000;

/// Drops a committed run where its caller need not wait: freeing a large run's rows (two
/// strings for each of 900,000 new keys on a first run) takes a quarter of a second.
pub(crate) fn drop_aside(commit: RunCommit) {
    let c = &commit.changes;
    if c.inserted.len() + c.updated.len() < DROP_ASIDE_FROM {
        return;
    }
    // Should no thread start, the closure, and the run with it, is dropped here.
    let _ = std::thread::Builder::new()
        .name("vigilo-drop".into())
        .spawn(move || drop(commit));
}

/// The key and row of a changed key, as JSON text.
pub(crate) fn finding_json(ch: &Changed) -> Result<(&str, &str), StoreError> {
    let f = ch
        .finding
        .as_ref()
        .ok_or_else(|| StoreError::Corrupt("changed row without its data".into()))?;
    Ok((f.key(), f.row()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_are_written_until_they_would_outgrow_a_quarter_of_the_snapshot() {
        let mut c = Changes {
            base_generation: Some(3),
            ..Changes::default()
        };
        assert_eq!(snapshot_write(&c, 100, 0), SnapshotWrite::Keep);
        c.deleted = vec![1, 2, 3, 4, 5];
        assert_eq!(snapshot_write(&c, 100, 20), SnapshotWrite::Delta);
        assert_eq!(snapshot_write(&c, 100, 21), SnapshotWrite::Whole);
        assert_eq!(snapshot_write(&c, 0, 0), SnapshotWrite::Whole);
        c.base_generation = None;
        assert_eq!(snapshot_write(&c, 1_000_000, 0), SnapshotWrite::Whole);
        assert_eq!(
            snapshot_write(&Changes::default(), 0, 0),
            SnapshotWrite::Whole,
            "a first run stores its snapshot even with no rows"
        );
    }
}
