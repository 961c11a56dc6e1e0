//! SQLite: remediation runs, approvals and votes. Every write runs inside a
//! transaction that holds SQLite's write lock (`BEGIN IMMEDIATE`), so a guarded
//! update and its audit entries are one step.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::sqlite::{append_in, parse_ts, ts};
use super::{
    Claimed, MessageRefs, MessageState, NewApproval, StoreError, lease_end, parse_json, to_json,
    transition_events, transition_result,
};
use crate::approval::{Approval, Refusal, Status, Transition, Vote};
use crate::audit::{Event, Kind};

/// Creates a requested run for each finding (inside the scan's commit).
pub(super) fn request_runs(
    tx: &Transaction<'_>,
    remediation: &str,
    finding_ids: &[i64],
    at: &str,
    requested_by: Option<&str>,
) -> Result<Vec<i64>, StoreError> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO remediation_runs (finding_id, remediation, state, requested_at, requested_by, updated_at)
         VALUES (?1, ?2, 'requested', ?3, ?4, ?3)",
    )?;
    let mut ids = Vec::with_capacity(finding_ids.len());
    for id in finding_ids {
        insert.execute(params![id, remediation, at, requested_by])?;
        ids.push(tx.last_insert_rowid());
    }
    Ok(ids)
}

/// Claims requested runs whose lease is free; returns (run id, finding id, remediation, requested_by).
pub(super) fn claim(
    tx: &Transaction<'_>,
    owner: &str,
    now: DateTime<Utc>,
    lease: std::time::Duration,
    limit: usize,
) -> Result<Vec<Claimed>, StoreError> {
    let until = lease_end(now, lease);
    let mut stmt = tx.prepare_cached(
        "UPDATE remediation_runs SET claimed_by = ?1, claim_expires = ?2
         WHERE id IN (SELECT id FROM remediation_runs
                      WHERE state = 'requested' AND (claim_expires IS NULL OR claim_expires < ?3)
                      ORDER BY id LIMIT ?4)
         RETURNING id, finding_id, remediation, requested_by",
    )?;
    let rows = stmt.query_map(
        params![
            owner,
            ts(&until),
            ts(&now),
            i64::try_from(limit).unwrap_or(i64::MAX)
        ],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    let mut out: Vec<_> = rows.collect::<Result<_, _>>()?;
    out.sort_by_key(|r: &Claimed| r.0);
    Ok(out)
}

/// Requested → pending, the approval row, and `approval.requested`; `None` if `owner` lost the claim.
pub(super) fn open(
    tx: &Transaction<'_>,
    owner: &str,
    a: &NewApproval,
) -> Result<Option<i64>, StoreError> {
    let now = ts(&a.requested_at);
    let moved = tx.execute(
        "UPDATE remediation_runs SET state = 'pending', claimed_by = NULL, claim_expires = NULL, updated_at = ?3
         WHERE id = ?1 AND state = 'requested' AND claimed_by = ?2",
        params![a.run_id, owner, now],
    )?;
    if moved == 0 {
        return Ok(None);
    }
    let options = super::options_json(&a.input, &a.options)?;
    let approvers = to_json(&a.approvers)?;
    tx.execute(
        "INSERT INTO approvals (run_id, finding_id, remediation, status, subject, prompt, options, approvers,
                                requested_by, allow_self_approval, requested_at, deadline, on_timeout)
         VALUES (?1, ?2, ?3, 'pending', ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            a.run_id,
            a.finding_id,
            a.remediation,
            a.subject,
            a.prompt,
            options,
            approvers,
            a.requested_by,
            a.allow_self_approval,
            now,
            a.deadline.as_ref().map(ts),
            a.on_timeout,
        ],
    )?;
    let id = tx.last_insert_rowid();
    append_in(tx, &[requested_event(id, a)])?;
    let refs = MessageRefs {
        finding_id: Some(a.finding_id),
        approval_id: Some(id),
        run_id: Some(a.run_id),
    };
    super::sqlite_messages::insert(tx, &a.messages, refs, MessageState::Pending, a.requested_at)?;
    Ok(Some(id))
}

/// The `approval.requested` entry.
pub(super) fn requested_event(id: i64, a: &NewApproval) -> Event {
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
            "deadline": a.deadline.as_ref().map(crate::finding::rfc3339),
        }),
    }
}

/// Applies `t` to approval `a` (which must be pending), with its audit entries.
pub(super) fn apply(
    tx: &Transaction<'_>,
    a: &Approval,
    t: &Transition,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let vote = match t {
        Transition::Vote(v) | Transition::VoteDecides { vote: v, .. } => Some(v),
        _ => None,
    };
    if let Some(v) = vote {
        tx.execute(
            "INSERT INTO votes (approval_id, approver, option, reason, channel, at, identity) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![a.id, v.by, v.option, v.reason, v.channel, ts(&v.at), v.identity],
        )?;
    }
    if let Some((status, decision, by, run_state)) = transition_result(t) {
        let by = to_json(&by)?;
        let changed = tx.execute(
            "UPDATE approvals SET status = ?2, decision = ?3, decided_at = ?4, decided_by = ?5
             WHERE id = ?1 AND status = 'pending'",
            params![a.id, status, decision, ts(&now), by],
        )?;
        if changed == 0 {
            return Err(StoreError::Conflict {
                query: format!("approval {}", a.id),
                expected: 0,
            });
        }
        tx.execute(
            "UPDATE remediation_runs SET state = ?2, updated_at = ?3
             WHERE id = (SELECT run_id FROM approvals WHERE id = ?1) AND state = 'pending'",
            params![a.id, run_state, ts(&now)],
        )?;
    }
    let mut events = transition_events(a, t, now);
    if let Some(acc) = super::acceptance_of(a, t, now) {
        // Accepted only while the finding is still open: one that resolved meanwhile stays resolved.
        let accepted = tx.execute(
            "UPDATE findings SET accepted_until = ?2, accepted_by = ?3, accepted_reason = ?4
             WHERE id = ?1 AND status = 'open'",
            params![a.finding_id, ts(&acc.until), acc.by, acc.reason],
        )?;
        if accepted == 1 {
            events.push(super::accepted_event(a, &acc, channel_of(t)));
        }
    }
    append_in(tx, &events)?;
    super::sqlite_messages::follow_up(tx, a, t, now)?;
    Ok(())
}

/// The channel a transition came through: the deciding vote's, or `timeout`.
fn channel_of(t: &Transition) -> &str {
    match t {
        Transition::Vote(v) | Transition::VoteDecides { vote: v, .. } => &v.channel,
        Transition::TimeoutDecides { .. } | Transition::Expire => "timeout",
    }
}

/// Accepted findings due at `now`, oldest first.
pub(super) fn due_acceptances(
    c: &Connection,
    now: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<super::DueAcceptance>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT id, query, accepted_until FROM findings
         WHERE accepted_until IS NOT NULL AND accepted_until <= ?1 AND status = 'open'
         ORDER BY accepted_until, id LIMIT ?2",
    )?;
    let rows = stmt.query_map(
        params![ts(&now), i64::try_from(limit).unwrap_or(i64::MAX)],
        |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, String>(2)?)),
    )?;
    rows.map(|r| {
        let (finding_id, query, until) = r?;
        Ok(super::DueAcceptance {
            finding_id,
            query,
            until: parse_ts(&until)?,
        })
    })
    .collect()
}

/// Ends finding `id`'s acceptance if still due (see `Store::end_acceptance`).
pub(super) fn end_acceptance(
    tx: &Transaction<'_>,
    id: i64,
    remediation: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Option<Option<i64>>, StoreError> {
    let at = ts(&now);
    let old: Option<(String, Option<String>, Option<String>)> = tx
        .query_row(
            "SELECT accepted_until, accepted_by, accepted_reason FROM findings
             WHERE id = ?1 AND status = 'open' AND accepted_until IS NOT NULL AND accepted_until <= ?2",
            params![id, at],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((until, by, reason)) = old else {
        return Ok(None);
    };
    tx.execute(
        "UPDATE findings SET accepted_until = NULL, accepted_by = NULL, accepted_reason = NULL WHERE id = ?1",
        [id],
    )?;
    let run = match remediation {
        Some(r) => request_runs(tx, r, &[id], &at, None)?.first().copied(),
        None => None,
    };
    let event = super::acceptance_expired_event(id, parse_ts(&until)?, by, reason, run);
    append_in(tx, &[event])?;
    Ok(Some(run))
}

/// Votes on approval `id` inside `tx`: settles a due timeout first, then asks the state machine.
pub(super) fn vote(
    tx: &Transaction<'_>,
    id: i64,
    vote: Vote,
    now: DateTime<Utc>,
) -> Result<Result<Transition, Refusal>, StoreError> {
    let Some(mut a) = load(tx, id)? else {
        return Ok(Err(Refusal::NotFound(id)));
    };
    if a.is_due(now) {
        let t = a.timeout();
        apply(tx, &a, &t, now)?;
        a = load(tx, id)?.ok_or_else(|| StoreError::Corrupt(format!("approval {id} vanished")))?;
    }
    match a.vote(vote) {
        Ok(t) => {
            apply(tx, &a, &t, now)?;
            Ok(Ok(t))
        }
        Err(refusal) => Ok(Err(refusal)),
    }
}

/// Settles every due approval inside `tx`.
pub(super) fn settle_due(
    tx: &Transaction<'_>,
    now: DateTime<Utc>,
) -> Result<Vec<(i64, Transition)>, StoreError> {
    let ids: Vec<i64> = {
        let mut stmt = tx.prepare_cached(
            "SELECT id FROM approvals WHERE status = 'pending' AND deadline IS NOT NULL AND deadline <= ?1 ORDER BY id",
        )?;
        stmt.query_map([ts(&now)], |r| r.get(0))?
            .collect::<Result<_, _>>()?
    };
    let mut out = Vec::new();
    for id in ids {
        if let Some(a) = load(tx, id)?.filter(|a| a.is_due(now)) {
            let t = a.timeout();
            apply(tx, &a, &t, now)?;
            out.push((id, t));
        }
    }
    Ok(out)
}

const APPROVAL_SELECT: &str = "SELECT id, remediation, finding_id, status, decision, subject, prompt, options,
       approvers, requested_by, allow_self_approval, requested_at, deadline, on_timeout, decided_at, decided_by
  FROM approvals";

/// One approval with its votes.
pub(super) fn load(c: &Connection, id: i64) -> Result<Option<Approval>, StoreError> {
    let mut stmt = c.prepare_cached(&format!("{APPROVAL_SELECT} WHERE id = ?1"))?;
    let Some(mut a) = stmt.query_row([id], read).optional()?.transpose()? else {
        return Ok(None);
    };
    a.votes = votes(c, id)?;
    a.fill_values();
    Ok(Some(a))
}

/// Approvals, by id, with their votes.
pub(super) fn list(c: &Connection, pending_only: bool) -> Result<Vec<Approval>, StoreError> {
    let mut stmt = c.prepare_cached(&format!(
        "{APPROVAL_SELECT} WHERE (?1 = 0 OR status = 'pending') ORDER BY id"
    ))?;
    let mut out: Vec<Approval> = stmt
        .query_map([pending_only], read)?
        .map(|r| r?)
        .collect::<Result<_, _>>()?;
    for a in &mut out {
        a.votes = votes(c, a.id)?;
        a.fill_values();
    }
    Ok(out)
}

fn votes(c: &Connection, id: i64) -> Result<Vec<Vote>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT approver, option, reason, channel, at, identity FROM votes WHERE approval_id = ?1 ORDER BY at, approver",
    )?;
    let rows = stmt.query_map([id], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get::<_, String>(4)?,
            r.get(5)?,
        ))
    })?;
    rows.map(|r| {
        let (by, option, reason, channel, at, identity) = r?;
        Ok(Vote {
            by,
            option,
            reason,
            channel,
            at: parse_ts(&at)?,
            identity,
            values: Vec::new(),
        })
    })
    .collect()
}

fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Approval, StoreError>> {
    let status: String = r.get(3)?;
    let options: String = r.get(7)?;
    let approvers: String = r.get(8)?;
    let requested_at: String = r.get(11)?;
    let deadline: Option<String> = r.get(12)?;
    let decided_at: Option<String> = r.get(14)?;
    let decided_by: String = r.get(15)?;
    let (id, remediation, finding_id, decision, subject, prompt) = (
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    );
    let (requested_by, allow_self_approval, on_timeout) = (r.get(9)?, r.get(10)?, r.get(13)?);
    Ok((|| {
        Ok(Approval {
            id,
            remediation,
            finding_id,
            status: Status::parse(&status)
                .ok_or_else(|| StoreError::Corrupt(format!("approval status {status:?}")))?,
            decision,
            subject,
            prompt,
            options: Vec::new(),
            input: Default::default(),
            approvers: parse_json("approval JSON", &approvers)?,
            requested_by,
            allow_self_approval,
            requested_at: parse_ts(&requested_at)?,
            deadline: deadline.as_deref().map(parse_ts).transpose()?,
            on_timeout,
            decided_at: decided_at.as_deref().map(parse_ts).transpose()?,
            decided_by: parse_json("approval JSON", &decided_by)?,
            values: Vec::new(),
            votes: Vec::new(),
        })
        .and_then(|mut a: Approval| {
            (a.input, a.options) = super::parse_options(&options)?;
            Ok(a)
        })
    })())
}
