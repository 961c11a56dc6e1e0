//! What a transition decides, the same in both stores: who may confirm a command, whether a
//! finding may get a run, an undo's parameters, an approval's follow-ups and acceptance.

use chrono::{DateTime, Utc};

use super::{
    Acceptance, ActionRecord, ActionState, CommandRecord, CommitOutcome, MessageRefs, NewMessage,
    Reverse, RunCommit,
};
use crate::approval::{Approval, Transition, Vote};

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
            crate::timestamp::rfc3339(&c.command.expires_at)
        ));
    }
    Ok(if confirm { "confirmed" } else { "cancelled" })
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

/// The type and parameters of the action that reverses `original` (its type's undo,
/// `reverse`), given the other actions of its run; the refusal says why not.
pub(crate) fn undo_params(
    reverse: Reverse,
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
    let (kind, mut params) = reverse(original)?;
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

/// The idempotency key of a run's action at `position`: the same on every attempt.
pub(crate) fn idempotency_key(run_id: i64, position: i32) -> String {
    format!("vigilo-run{run_id}-action{position}")
}

/// The `notify` messages of a commit: for each opened and reopened finding, its refs and messages.
pub(crate) fn finding_messages(
    commit: &RunCommit,
    outcome: &CommitOutcome,
) -> Vec<(MessageRefs, Vec<NewMessage>)> {
    if commit.notify.is_empty() {
        return Vec::new();
    }
    let opened = outcome.opened.iter().map(|id| (*id, super::FINDING_OPENED));
    let reopened = outcome
        .reopened
        .iter()
        .map(|id| (*id, super::FINDING_REOPENED));
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
