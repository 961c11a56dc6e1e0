//! Approvals: opening one for a claimed requested run, votes (the approval row locked),
//! settling due timeouts, risk acceptances decided and ended, and reading approvals back.
//! The state machine (`crate::approval`) decides; this applies its `Transition`s, guarded
//! by `status = 'pending'`.

use chrono::{DateTime, Utc};

use super::audit::append;
use crate::approval::{Approval, Refusal, Status, Transition, Vote};
use crate::store::lease::{Claim, claim as claim_rows};
use crate::store::seam::{Row, Tx, args};
use crate::store::{
    DueAcceptance, MessageRefs, MessageState, NewApproval, RequestedRun, StoreError,
    acceptance_expired_event, acceptance_of, accepted_event, options_json, parse_json,
    parse_options, requested_event, to_json, transition_events, transition_result,
};

const COLUMNS: &str = "id, remediation, finding_id, status, decision, subject, prompt, options,
       approvers, requested_by, allow_self_approval, requested_at, deadline, on_timeout, decided_at, decided_by";

/// Claims requested runs whose lease is free, by id, each with its finding.
pub(crate) async fn claim<T: Tx>(
    tx: &mut T,
    owner: &str,
    now: DateTime<Utc>,
    lease: std::time::Duration,
    limit: usize,
) -> Result<Vec<RequestedRun>, StoreError> {
    let what = Claim {
        table: "remediation_runs",
        state: "requested",
        due: "",
        columns: "id, finding_id, remediation, requested_by",
    };
    let rows = claim_rows(tx, what, owner, now, lease, limit).await?;
    let mut out = rows
        .iter()
        .map(|r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .collect::<Result<Vec<(i64, i64, String, Option<String>)>, StoreError>>()?;
    out.sort_by_key(|r| r.0);
    let mut runs = Vec::with_capacity(out.len());
    for (run_id, finding_id, remediation, requested_by) in out {
        runs.push(RequestedRun {
            run_id,
            remediation,
            requested_by,
            finding: super::findings::of_run(tx, run_id, finding_id).await?,
        });
    }
    Ok(runs)
}

/// Requested → pending, the approval row, and `approval.requested`; `None` if `owner` lost the claim.
pub(crate) async fn open<T: Tx>(
    tx: &mut T,
    owner: &str,
    a: &NewApproval,
) -> Result<Option<i64>, StoreError> {
    let moved = tx
        .execute(
            "UPDATE remediation_runs SET state = 'pending', claimed_by = NULL, claim_expires = NULL, updated_at = $3
             WHERE id = $1 AND state = 'requested' AND claimed_by = $2",
            &args![a.run_id, owner, a.requested_at],
        )
        .await?;
    if moved == 0 {
        return Ok(None);
    }
    let id: i64 = tx
        .query_one(
            "INSERT INTO approvals (run_id, finding_id, remediation, status, subject, prompt, options, approvers,
                                    requested_by, allow_self_approval, requested_at, deadline, on_timeout)
             VALUES ($1, $2, $3, 'pending', $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
            &args![
                a.run_id,
                a.finding_id,
                &a.remediation,
                &a.subject,
                &a.prompt,
                options_json(&a.input, &a.options)?,
                to_json(&a.approvers)?,
                &a.requested_by,
                a.allow_self_approval,
                a.requested_at,
                a.deadline,
                &a.on_timeout,
            ],
        )
        .await?
        .get(0)?;
    append(tx, &[requested_event(id, a)]).await?;
    let refs = MessageRefs {
        finding_id: Some(a.finding_id),
        approval_id: Some(id),
        run_id: Some(a.run_id),
    };
    super::messages::insert(tx, &a.messages, refs, MessageState::Pending, a.requested_at).await?;
    Ok(Some(id))
}

/// Applies `t` to approval `a` (which must be pending), with its audit entries, its
/// acceptance (if its option has `accept_for`) and its follow-up messages.
async fn apply<T: Tx>(
    tx: &mut T,
    a: &Approval,
    t: &Transition,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if let Transition::Vote(v) | Transition::VoteDecides { vote: v, .. } = t {
        tx.execute(
            "INSERT INTO votes (approval_id, approver, option, reason, channel, at, identity) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &args![a.id, &v.by, &v.option, &v.reason, &v.channel, v.at, &v.identity],
        )
        .await?;
    }
    if let Some((status, decision, by, run_state)) = transition_result(t) {
        let changed = tx
            .execute(
                "UPDATE approvals SET status = $2, decision = $3, decided_at = $4, decided_by = $5
                 WHERE id = $1 AND status = 'pending'",
                &args![a.id, status, decision, now, to_json(&by)?],
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
            &args![a.id, run_state, now],
        )
        .await?;
    }
    let mut events = transition_events(a, t, now);
    if let Some(acc) = acceptance_of(a, t, now) {
        // Accepted only while the finding is still open: one that resolved meanwhile stays resolved.
        let accepted = tx
            .execute(
                "UPDATE findings SET accepted_until = $2, accepted_by = $3, accepted_reason = $4
                 WHERE id = $1 AND status = 'open'",
                &args![a.finding_id, acc.until, &acc.by, &acc.reason],
            )
            .await?;
        if accepted == 1 {
            events.push(accepted_event(a, &acc, channel_of(t)));
        }
    }
    append(tx, &events).await?;
    super::messages::follow_up(tx, a, t, now).await?;
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
pub(crate) async fn due_acceptances<T: Tx>(
    tx: &mut T,
    now: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<DueAcceptance>, StoreError> {
    tx.query(
        "SELECT id, query, accepted_until FROM findings
         WHERE accepted_until IS NOT NULL AND accepted_until <= $1 AND status = 'open'
         ORDER BY accepted_until, id LIMIT $2",
        &args![now, limit],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(DueAcceptance {
            finding_id: r.get(0)?,
            query: r.get(1)?,
            until: r.get(2)?,
        })
    })
    .collect()
}

/// Ends finding `id`'s acceptance if it is still open, accepted and due (its row locked),
/// with `finding.acceptance_expired` and a requested run of `remediation`; `None` when
/// another process got there first (see `Store::end_acceptance`).
pub(crate) async fn end_acceptance<T: Tx>(
    tx: &mut T,
    id: i64,
    remediation: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Option<Option<i64>>, StoreError> {
    let sql = format!(
        "SELECT accepted_until, accepted_by, accepted_reason FROM findings
         WHERE id = $1 AND status = 'open' AND accepted_until IS NOT NULL AND accepted_until <= $2 {}",
        T::FOR_UPDATE
    );
    let Some(old) = tx.query_opt(&sql, &args![id, now]).await? else {
        return Ok(None);
    };
    tx.execute(
        "UPDATE findings SET accepted_until = NULL, accepted_by = NULL, accepted_reason = NULL WHERE id = $1",
        &args![id],
    )
    .await?;
    let run = match remediation {
        Some(r) => Some(super::commands::request_run(tx, r, id, now, None).await?),
        None => None,
    };
    let event = acceptance_expired_event(id, old.get(0)?, old.get(1)?, old.get(2)?, run);
    append(tx, &[event]).await?;
    Ok(Some(run))
}

/// Votes on approval `id` (its row locked): settles a due timeout first, then asks the state machine.
pub(crate) async fn vote<T: Tx>(
    tx: &mut T,
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

/// Settles every due approval, skipping rows another process holds.
pub(crate) async fn settle_due<T: Tx>(
    tx: &mut T,
    now: DateTime<Utc>,
) -> Result<Vec<(i64, Transition)>, StoreError> {
    let sql = format!(
        "SELECT id FROM approvals WHERE status = 'pending' AND deadline IS NOT NULL AND deadline <= $1
         ORDER BY id {}",
        T::SKIP_LOCKED
    );
    let ids = tx
        .query(&sql, &args![now])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect::<Result<Vec<i64>, _>>()?;
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

/// One approval with its votes; `lock` takes its row for the rest of the transaction.
pub(crate) async fn load<T: Tx>(
    tx: &mut T,
    id: i64,
    lock: bool,
) -> Result<Option<Approval>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM approvals WHERE id = $1 {}",
        if lock { T::FOR_UPDATE } else { "" }
    );
    let Some(row) = tx.query_opt(&sql, &args![id]).await? else {
        return Ok(None);
    };
    let mut a = read(&row)?;
    a.votes = votes(tx, id).await?;
    a.fill_values();
    Ok(Some(a))
}

/// Approvals (pending ones only, or all), by id, with their votes.
pub(crate) async fn list<T: Tx>(
    tx: &mut T,
    pending_only: bool,
) -> Result<Vec<Approval>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM approvals WHERE {} ORDER BY id",
        if pending_only {
            "status = 'pending'"
        } else {
            "TRUE"
        }
    );
    let rows = tx.query(&sql, &[]).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let mut a = read(row)?;
        a.votes = votes(tx, a.id).await?;
        a.fill_values();
        out.push(a);
    }
    Ok(out)
}

async fn votes<T: Tx>(tx: &mut T, id: i64) -> Result<Vec<Vote>, StoreError> {
    tx.query(
        "SELECT approver, option, reason, channel, at, identity FROM votes WHERE approval_id = $1 ORDER BY at, approver",
        &args![id],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(Vote {
            by: r.get(0)?,
            option: r.get(1)?,
            reason: r.get(2)?,
            channel: r.get(3)?,
            at: r.get(4)?,
            identity: r.get(5)?,
            values: Vec::new(),
        })
    })
    .collect()
}

fn read(r: &Row) -> Result<Approval, StoreError> {
    let status: String = r.get(3)?;
    let options: String = r.get(7)?;
    let approvers: String = r.get(8)?;
    let decided_by: String = r.get(15)?;
    let (input, options) = parse_options(&options)?;
    Ok(Approval {
        id: r.get(0)?,
        remediation: r.get(1)?,
        finding_id: r.get(2)?,
        status: Status::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("approval status {status:?}")))?,
        decision: r.get(4)?,
        subject: r.get(5)?,
        prompt: r.get(6)?,
        options,
        input,
        approvers: parse_json("approval JSON", &approvers)?,
        requested_by: r.get(9)?,
        allow_self_approval: r.get(10)?,
        requested_at: r.get(11)?,
        deadline: r.get(12)?,
        on_timeout: r.get(13)?,
        decided_at: r.get(14)?,
        decided_by: parse_json("approval JSON", &decided_by)?,
        values: Vec::new(),
        votes: Vec::new(),
    })
}
