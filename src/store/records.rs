//! The records the store reads and writes: runs, actions, messages, commands, approvals to
//! open, and the counts of `/metrics`.

use chrono::{DateTime, Utc};

use super::{StoreError, Tick, to_json};
use crate::approval::{Approval, OptionSpec};
use crate::config::Severity;
use crate::diff::Changes;
use crate::finding::{Finding, Status};

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

/// The type and parameters of the action that reverses an action (`action::undo`), handed to
/// [`super::Store::undo_action`] so the store need not know the action types.
pub type Reverse = fn(&ActionRecord) -> Result<(&'static str, serde_json::Value), String>;

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

/// The ids a queued message refers to.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct MessageRefs {
    pub finding_id: Option<i64>,
    pub approval_id: Option<i64>,
    pub run_id: Option<i64>,
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
