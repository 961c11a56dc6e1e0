//! PostgreSQL: remediation runs, approvals and votes. Claims use
//! `FOR UPDATE SKIP LOCKED` with a lease, votes lock the approval row
//! (`FOR UPDATE`), so several vigilo processes can share the store.

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Transaction};
use tokio_postgres::types::ToSql;

use super::postgres::append_in;
use super::sqlite_approvals::requested_event;
use super::{
    Claimed, MessageRefs, MessageState, NewApproval, StoreError, lease_end, parse_json, to_json,
    transition_events, transition_result,
};
use crate::approval::{Approval, Refusal, Status, Transition, Vote};

/// Creates a requested run for each finding (inside the scan's commit).
pub(super) async fn request_runs(
    tx: &Transaction<'_>,
    remediation: &str,
    finding_ids: &[i64],
    at: DateTime<Utc>,
    requested_by: Option<&str>,
) -> Result<Vec<i64>, StoreError> {
    if finding_ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = tx
        .query(
            "INSERT INTO remediation_runs (finding_id, remediation, state, requested_at, requested_by, updated_at)
             SELECT f, $2, 'requested', $3, $4, $3 FROM unnest($1::bigint[]) WITH ORDINALITY AS u(f, n)
             ORDER BY n RETURNING id",
            &[&finding_ids, &remediation, &at, &requested_by],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Claims requested runs whose lease is free; returns (run id, finding id, remediation, requested_by).
pub(super) async fn claim(
    tx: &Transaction<'_>,
    owner: &str,
    now: DateTime<Utc>,
    lease: std::time::Duration,
    limit: usize,
) -> Result<Vec<Claimed>, StoreError> {
    let until = lease_end(now, lease);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = tx
        .query(
            "UPDATE remediation_runs SET claimed_by = $1, claim_expires = $2
             WHERE id IN (SELECT id FROM remediation_runs
                          WHERE state = 'requested' AND (claim_expires IS NULL OR claim_expires < $3)
                          ORDER BY id LIMIT $4 FOR UPDATE SKIP LOCKED)
             RETURNING id, finding_id, remediation, requested_by",
            &[&owner, &until, &now, &limit],
        )
        .await?;
    let mut out: Vec<_> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    out.sort_by_key(|r: &Claimed| r.0);
    Ok(out)
}

/// Requested → pending, the approval row, and `approval.requested`; `None` if `owner` lost the claim.
pub(super) async fn open(
    tx: &Transaction<'_>,
    owner: &str,
    a: &NewApproval,
) -> Result<Option<i64>, StoreError> {
    let moved = tx
        .execute(
            "UPDATE remediation_runs SET state = 'pending', claimed_by = NULL, claim_expires = NULL, updated_at = $3
             WHERE id = $1 AND state = 'requested' AND claimed_by = $2",
            &[&a.run_id, &owner, &a.requested_at],
        )
        .await?;
    if moved == 0 {
        return Ok(None);
    }
    let options = super::options_json(&a.input, &a.options)?;
    let approvers = to_json(&a.approvers)?;
    let params: [&(dyn ToSql + Sync); 12] = [
        &a.run_id,
        &a.finding_id,
        &a.remediation,
        &a.subject,
        &a.prompt,
        &options,
        &approvers,
        &a.requested_by,
        &a.allow_self_approval,
        &a.requested_at,
        &a.deadline,
        &a.on_timeout,
    ];
    let id: i64 = tx
        .query_one(
            "INSERT INTO approvals (run_id, finding_id, remediation, status, subject, prompt, options, approvers,
                                    requested_by, allow_self_approval, requested_at, deadline, on_timeout)
             VALUES ($1, $2, $3, 'pending', $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
            &params,
        )
        .await?
        .get(0);
    append_in(tx, &[requested_event(id, a)]).await?;
    let refs = MessageRefs {
        finding_id: Some(a.finding_id),
        approval_id: Some(id),
        run_id: Some(a.run_id),
    };
    super::pg_messages::insert(tx, &a.messages, refs, MessageState::Pending, a.requested_at)
        .await?;
    Ok(Some(id))
}

/// Applies `t` to approval `a` (which must be pending), with its audit entries.
pub(super) async fn apply(
    tx: &Transaction<'_>,
    a: &Approval,
    t: &Transition,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if let Transition::Vote(v) | Transition::VoteDecides { vote: v, .. } = t {
        tx.execute(
            "INSERT INTO votes (approval_id, approver, option, reason, channel, at, identity) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[&a.id, &v.by, &v.option, &v.reason, &v.channel, &v.at, &v.identity],
        )
        .await?;
    }
    if let Some((status, decision, by, run_state)) = transition_result(t) {
        let by = to_json(&by)?;
        let changed = tx
            .execute(
                "UPDATE approvals SET status = $2, decision = $3, decided_at = $4, decided_by = $5
                 WHERE id = $1 AND status = 'pending'",
                &[&a.id, &status, &decision, &now, &by],
            )
            .await?;
        if changed == 0 {
            return Err(StoreError::Conflict {
                query: format!("approval {}", a.id),
                expected: 0,
            });
        }
        tx.execute(
            "UPDATE remediation_runs SET state = $2, updated_at = $3
             WHERE id = (SELECT run_id FROM approvals WHERE id = $1) AND state = 'pending'",
            &[&a.id, &run_state, &now],
        )
        .await?;
    }
    let mut events = transition_events(a, t, now);
    if let Some(acc) = super::acceptance_of(a, t, now) {
        // Accepted only while the finding is still open: one that resolved meanwhile stays resolved.
        let accepted = tx
            .execute(
                "UPDATE findings SET accepted_until = $2, accepted_by = $3, accepted_reason = $4
                 WHERE id = $1 AND status = 'open'",
                &[&a.finding_id, &acc.until, &acc.by, &acc.reason],
            )
            .await?;
        if accepted == 1 {
            events.push(super::accepted_event(a, &acc, channel_of(t)));
        }
    }
    append_in(tx, &events).await?;
    super::pg_messages::follow_up(tx, a, t, now).await?;
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
pub(super) async fn due_acceptances<C: GenericClient>(
    c: &C,
    now: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<super::DueAcceptance>, StoreError> {
    let rows = c
        .query(
            "SELECT id, query, accepted_until FROM findings
             WHERE accepted_until IS NOT NULL AND accepted_until <= $1 AND status = 'open'
             ORDER BY accepted_until, id LIMIT $2",
            &[&now, &i64::try_from(limit).unwrap_or(i64::MAX)],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| super::DueAcceptance {
            finding_id: r.get(0),
            query: r.get(1),
            until: r.get(2),
        })
        .collect())
}

/// Ends finding `id`'s acceptance if still due (see `Store::end_acceptance`).
pub(super) async fn end_acceptance(
    tx: &Transaction<'_>,
    id: i64,
    remediation: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Option<Option<i64>>, StoreError> {
    let old = tx
        .query_opt(
            "UPDATE findings f SET accepted_until = NULL, accepted_by = NULL, accepted_reason = NULL
               FROM (SELECT id, accepted_until, accepted_by, accepted_reason FROM findings
                      WHERE id = $1 AND status = 'open' AND accepted_until IS NOT NULL
                        AND accepted_until <= $2
                      FOR UPDATE) old
              WHERE f.id = old.id
          RETURNING old.accepted_until, old.accepted_by, old.accepted_reason",
            &[&id, &now],
        )
        .await?;
    let Some(old) = old else {
        return Ok(None);
    };
    let run = match remediation {
        Some(r) => request_runs(tx, r, &[id], now, None)
            .await?
            .first()
            .copied(),
        None => None,
    };
    let event = super::acceptance_expired_event(id, old.get(0), old.get(1), old.get(2), run);
    append_in(tx, &[event]).await?;
    Ok(Some(run))
}

/// Votes on approval `id` inside `tx` (row locked): settles a due timeout first, then asks the state machine.
pub(super) async fn vote(
    tx: &Transaction<'_>,
    id: i64,
    vote: Vote,
    now: DateTime<Utc>,
) -> Result<Result<Transition, Refusal>, StoreError> {
    let Some(mut a) = load(tx, id, true).await? else {
        return Ok(Err(Refusal::NotFound(id)));
    };
    if a.is_due(now) {
        let t = a.timeout();
        apply(tx, &a, &t, now).await?;
        a = load(tx, id, false)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("approval {id} vanished")))?;
    }
    match a.vote(vote) {
        Ok(t) => {
            apply(tx, &a, &t, now).await?;
            Ok(Ok(t))
        }
        Err(refusal) => Ok(Err(refusal)),
    }
}

/// Settles every due approval inside `tx`, skipping rows another process holds.
pub(super) async fn settle_due(
    tx: &Transaction<'_>,
    now: DateTime<Utc>,
) -> Result<Vec<(i64, Transition)>, StoreError> {
    let ids: Vec<i64> = tx
        .query(
            "SELECT id FROM approvals WHERE status = 'pending' AND deadline IS NOT NULL AND deadline <= $1
             ORDER BY id FOR UPDATE SKIP LOCKED",
            &[&now],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut out = Vec::new();
    for id in ids {
        if let Some(a) = load(tx, id, false).await?.filter(|a| a.is_due(now)) {
            let t = a.timeout();
            apply(tx, &a, &t, now).await?;
            out.push((id, t));
        }
    }
    Ok(out)
}

const APPROVAL_SELECT: &str = "SELECT id, remediation, finding_id, status, decision, subject, prompt, options,
       approvers, requested_by, allow_self_approval, requested_at, deadline, on_timeout, decided_at, decided_by
  FROM approvals";

/// One approval with its votes; `lock` takes the row for the rest of the transaction.
pub(super) async fn load<C: GenericClient>(
    c: &C,
    id: i64,
    lock: bool,
) -> Result<Option<Approval>, StoreError> {
    let sql = format!(
        "{APPROVAL_SELECT} WHERE id = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let Some(row) = c.query_opt(&sql, &[&id]).await? else {
        return Ok(None);
    };
    let mut a = read(&row)?;
    a.votes = votes(c, id).await?;
    a.fill_values();
    Ok(Some(a))
}

/// Approvals, by id, with their votes.
pub(super) async fn list<C: GenericClient>(
    c: &C,
    pending_only: bool,
) -> Result<Vec<Approval>, StoreError> {
    let rows = c
        .query(
            &format!("{APPROVAL_SELECT} WHERE (NOT $1 OR status = 'pending') ORDER BY id"),
            &[&pending_only],
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let mut a = read(row)?;
        a.votes = votes(c, a.id).await?;
        a.fill_values();
        out.push(a);
    }
    Ok(out)
}

async fn votes<C: GenericClient>(c: &C, id: i64) -> Result<Vec<Vote>, StoreError> {
    let rows = c
        .query(
            "SELECT approver, option, reason, channel, at, identity FROM votes WHERE approval_id = $1 ORDER BY at, approver",
            &[&id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Vote {
            by: r.get(0),
            option: r.get(1),
            reason: r.get(2),
            channel: r.get(3),
            at: r.get(4),
            identity: r.get(5),
            values: Vec::new(),
        })
        .collect())
}

fn read(r: &tokio_postgres::Row) -> Result<Approval, StoreError> {
    let status: &str = r.get(3);
    Ok(Approval {
        id: r.get(0),
        remediation: r.get(1),
        finding_id: r.get(2),
        status: Status::parse(status)
            .ok_or_else(|| StoreError::Corrupt(format!("approval status {status:?}")))?,
        decision: r.get(4),
        subject: r.get(5),
        prompt: r.get(6),
        options: Vec::new(),
        input: Default::default(),
        approvers: parse_json("approval JSON", r.get(8))?,
        requested_by: r.get(9),
        allow_self_approval: r.get(10),
        requested_at: r.get(11),
        deadline: r.get(12),
        on_timeout: r.get(13),
        decided_at: r.get(14),
        decided_by: parse_json("approval JSON", r.get(15))?,
        values: Vec::new(),
        votes: Vec::new(),
    })
    .and_then(|mut a: Approval| {
        (a.input, a.options) = super::parse_options(r.get(7))?;
        Ok(a)
    })
}
