//! The audit events of every transition, and the event names of queued messages.

use chrono::{DateTime, Utc};

use super::key_value;
use super::{
    Acceptance, ActionOutcome, ActionRecord, CommandRecord, MessageOutcome, MessageRecord,
    NewApproval, StoreError,
};
use crate::approval::{Approval, Transition, Vote};
use crate::audit::{Chain, Event, Kind, Link};

/// Event of a message about a new finding.
pub const FINDING_OPENED: &str = "finding.opened";
/// Event of a message about a finding that came back.
pub const FINDING_REOPENED: &str = "finding.reopened";
/// Event of a message asking for a decision.
pub const APPROVAL_REQUESTED: &str = "approval.requested";
/// Event of a remediation's `[[message]]`.
pub const REMEDIATION_MESSAGE: &str = "remediation.message";
/// Event of a vote, told where the request went (Slack: a thread reply).
pub const APPROVAL_VOTE: &str = "approval.vote";
/// Event of a decision (Slack: the request is updated).
pub const APPROVAL_DECIDED: &str = "approval.decided";
/// Event of an expiry (Slack: the request is updated).
pub const APPROVAL_EXPIRED: &str = "approval.expired";

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
            data["retry_at"] = retry_at.as_ref().map(crate::timestamp::rfc3339).into();
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
                serde_json::json!({"deadline": a.deadline.as_ref().map(crate::timestamp::rfc3339), "on_timeout": option}),
            ),
            base(
                Kind::ApprovalDecided,
                "vigilo",
                "timeout",
                serde_json::json!({"decision": option, "by": ["vigilo"], "via": "on_timeout", "at": crate::timestamp::rfc3339(&now)}),
            ),
        ],
        Transition::Expire => vec![base(
            Kind::ApprovalExpired,
            "vigilo",
            "timeout",
            serde_json::json!({"deadline": a.deadline.as_ref().map(crate::timestamp::rfc3339)}),
        )],
    }
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
            "until": crate::timestamp::rfc3339(&acc.until),
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
            "until": crate::timestamp::rfc3339(&until),
            "accepted_by": by,
            "accepted_reason": reason,
            "status": "open",
            "remediation_run": run_id,
        }),
    }
}

/// The `approval.requested` entry.
pub(crate) fn requested_event(id: i64, a: &NewApproval) -> Event {
    Event {
        kind: Kind::ApprovalRequested,
        actor: a.requested_by.clone().unwrap_or_else(|| "vigilo".into()),
        channel: "vigilo".into(),
        finding_id: Some(a.finding_id),
        approval_id: Some(id),
        action_id: None,
        data: serde_json::json!({
            "remediation": a.remediation,
            "subject": a.subject,
            "options": a.options.iter().map(|o| &o.value).collect::<Vec<_>>(),
            "approvers": a.approvers,
            "deadline": a.deadline.as_ref().map(crate::timestamp::rfc3339),
        }),
    }
}
