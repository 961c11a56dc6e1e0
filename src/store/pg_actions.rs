//! PostgreSQL: planning, claiming, starting and finishing actions. Claims use
//! `FOR UPDATE SKIP LOCKED` with a lease; every step is guarded by the state it expects.

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Transaction};
use tokio_postgres::types::ToSql;

use super::postgres::append_in;
use super::{
    ActionOutcome, ActionRecord, ActionState, MessageRefs, MessageState, NewAction, NewMessage,
    StoreError, idempotency_key, lease_end, outcome_event, parse_json, run_failed_event,
    skipped_event, to_json,
};

/// Claims decided runs with a free lease; returns (run id, finding id, remediation).
pub(super) async fn claim_decided(
    tx: &Transaction<'_>,
    owner: &str,
    now: DateTime<Utc>,
    lease: std::time::Duration,
    limit: usize,
) -> Result<Vec<(i64, i64, String)>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = tx
        .query(
            "UPDATE remediation_runs SET claimed_by = $1, claim_expires = $2
             WHERE id IN (SELECT id FROM remediation_runs
                          WHERE state = 'decided' AND (claim_expires IS NULL OR claim_expires < $3)
                          ORDER BY id LIMIT $4 FOR UPDATE SKIP LOCKED)
             RETURNING id, finding_id, remediation",
            &[&owner, &lease_end(now, lease), &now, &limit],
        )
        .await?;
    let mut out: Vec<(i64, i64, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    out.sort_by_key(|r| r.0);
    Ok(out)
}

/// The approval id of a run, if it has one.
pub(super) async fn approval_of_run<C: GenericClient>(
    c: &C,
    run_id: i64,
) -> Result<Option<i64>, StoreError> {
    Ok(
        c.query_opt("SELECT id FROM approvals WHERE run_id = $1", &[&run_id])
            .await?
            .map(|r| r.get(0)),
    )
}

/// Records a claimed run's actions and moves it to running (or done without actions).
pub(super) async fn plan(
    tx: &Transaction<'_>,
    owner: &str,
    run_id: i64,
    actions: &[NewAction],
    messages: &[NewMessage],
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let runs_any = actions.iter().any(|a| a.skip.is_none());
    let next = if runs_any { "running" } else { "done" };
    let moved = tx
        .execute(
            "UPDATE remediation_runs SET state = $3, claimed_by = NULL, claim_expires = NULL, updated_at = $4
             WHERE id = $1 AND state IN ('requested', 'decided') AND claimed_by = $2",
            &[&run_id, &owner, &next, &now],
        )
        .await?;
    if moved == 0 {
        return Ok(false);
    }
    let row = tx
        .query_one(
            "SELECT r.finding_id, a.id FROM remediation_runs r LEFT JOIN approvals a ON a.run_id = r.id WHERE r.id = $1",
            &[&run_id],
        )
        .await?;
    let (finding_id, approval_id): (i64, Option<i64>) = (row.get(0), row.get(1));
    let insert = tx
        .prepare_cached(
            "INSERT INTO actions (run_id, approval_id, finding_id, position, kind, params, state, idempotency_key,
                                  result, finished_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             RETURNING id",
        )
        .await?;
    let mut events = Vec::new();
    for a in actions {
        let params = a.params.to_string();
        let key = idempotency_key(run_id, a.position);
        let state = if a.skip.is_some() {
            ActionState::Skipped
        } else {
            ActionState::Pending
        };
        let result = a.skip.as_ref().map(to_json).transpose()?;
        let finished = a.skip.as_ref().map(|_| now);
        let values: [&(dyn ToSql + Sync); 10] = [
            &run_id,
            &approval_id,
            &finding_id,
            &a.position,
            &a.kind,
            &params,
            &state.as_str(),
            &key,
            &result,
            &finished,
        ];
        let id: i64 = tx.query_one(&insert, &values).await?.get(0);
        if a.skip.is_some() {
            let a = load(tx, id)
                .await?
                .ok_or_else(|| StoreError::Corrupt(format!("action {id} vanished")))?;
            events.push(skipped_event(&a));
        }
    }
    append_in(tx, &events).await?;
    let refs = MessageRefs {
        finding_id: Some(finding_id),
        approval_id,
        run_id: Some(run_id),
    };
    let state = if runs_any {
        MessageState::Held
    } else {
        MessageState::Pending
    };
    super::pg_messages::insert(tx, messages, refs, state, now).await?;
    Ok(true)
}

/// Releases `owner`'s claim on a requested or decided run until `until`.
pub(super) async fn defer(
    tx: &Transaction<'_>,
    owner: &str,
    run_id: i64,
    until: DateTime<Utc>,
) -> Result<bool, StoreError> {
    Ok(tx
        .execute(
            "UPDATE remediation_runs SET claimed_by = NULL, claim_expires = $3
             WHERE id = $1 AND claimed_by = $2 AND state IN ('requested', 'decided')",
            &[&run_id, &owner, &until],
        )
        .await?
        > 0)
}

/// requested | decided → failed, with `remediation.failed`; false if `owner` lost the claim.
pub(super) async fn fail_run(
    tx: &Transaction<'_>,
    owner: &str,
    run_id: i64,
    error: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let Some(row) = tx
        .query_opt(
            "UPDATE remediation_runs SET state = 'failed', claimed_by = NULL, claim_expires = NULL, updated_at = $3
             WHERE id = $1 AND claimed_by = $2 AND state IN ('requested', 'decided')
             RETURNING finding_id, remediation",
            &[&run_id, &owner, &now],
        )
        .await?
    else {
        return Ok(false);
    };
    let (finding_id, remediation): (i64, String) = (row.get(0), row.get(1));
    let approval_id = approval_of_run(tx, run_id).await?;
    let event = run_failed_event((run_id, finding_id, &remediation, approval_id), error);
    append_in(tx, &[event]).await?;
    Ok(true)
}

/// Claims pending actions with a free lease.
pub(super) async fn claim(
    tx: &Transaction<'_>,
    owner: &str,
    now: DateTime<Utc>,
    lease: std::time::Duration,
    limit: usize,
) -> Result<Vec<ActionRecord>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = tx
        .query(
            &format!(
                "WITH claimed AS (
                   UPDATE actions SET claimed_by = $1, claim_expires = $2
                   WHERE id IN (SELECT id FROM actions
                                WHERE state = 'pending' AND (claim_expires IS NULL OR claim_expires < $3)
                                ORDER BY id LIMIT $4 FOR UPDATE SKIP LOCKED)
                   RETURNING *)
                 {} FROM claimed ORDER BY run_id, position",
                ACTION_COLUMNS
            ),
            &[&owner, &lease_end(now, lease), &now, &limit],
        )
        .await?;
    rows.iter().map(read).collect()
}

/// pending → started (attempts + 1) with `action.started`; false if the claim was lost.
pub(super) async fn start(
    tx: &Transaction<'_>,
    owner: &str,
    id: i64,
    now: DateTime<Utc>,
    lease: std::time::Duration,
    observed: Option<&serde_json::Value>,
) -> Result<bool, StoreError> {
    let observed = observed.map(serde_json::Value::to_string);
    let moved = tx
        .execute(
            "UPDATE actions SET state = 'started', attempts = attempts + 1, started_at = $3, claim_expires = $4,
                    finished_at = NULL, result = $5, error = NULL
             WHERE id = $1 AND state = 'pending' AND claimed_by = $2",
            &[&id, &owner, &now, &lease_end(now, lease), &observed],
        )
        .await?;
    if moved == 0 {
        return Ok(false);
    }
    let a = load(tx, id)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("action {id} vanished")))?;
    append_in(tx, &[super::started_event(&a)]).await?;
    Ok(true)
}

/// started (claimed by `owner`) → pending, with `action.failed` (`outcome: rerun`).
pub(super) async fn rerun_started(
    tx: &Transaction<'_>,
    owner: &str,
    id: i64,
    why: &str,
) -> Result<bool, StoreError> {
    let moved = tx
        .execute(
            "UPDATE actions SET state = 'pending', claimed_by = NULL, claim_expires = NULL, error = $3
             WHERE id = $1 AND state = 'started' AND claimed_by = $2",
            &[&id, &owner, &why],
        )
        .await?;
    if moved == 0 {
        return Ok(false);
    }
    let a = load(tx, id)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("action {id} vanished")))?;
    append_in(tx, &[super::rerun_event(&a, why)]).await?;
    Ok(true)
}

/// started → outcome, with its audit entry; the run ends when no action of it is left to run.
pub(super) async fn finish(
    tx: &Transaction<'_>,
    id: i64,
    outcome: &ActionOutcome,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let (result, error) = outcome.columns();
    let moved = tx
        .execute(
            "UPDATE actions SET state = $2, result = COALESCE($3, result), error = $4, finished_at = $5,
                    claimed_by = NULL, claim_expires = NULL
             WHERE id = $1 AND state = 'started'",
            &[&id, &outcome.state().as_str(), &result, &error, &now],
        )
        .await?;
    if moved == 0 {
        return Err(StoreError::Conflict {
            query: format!("action {id}"),
            expected: 0,
        });
    }
    let a = load(tx, id)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("action {id} vanished")))?;
    append_in(tx, &[outcome_event(&a, outcome)]).await?;
    // The run row is locked first, so two last actions finishing at once count each other.
    tx.execute(
        "SELECT id FROM remediation_runs WHERE id = $1 FOR UPDATE",
        &[&a.run_id],
    )
    .await?;
    let counts = tx
        .query_one(
            "SELECT count(*) FILTER (WHERE state IN ('pending', 'started')),
                    count(*) FILTER (WHERE state IN ('failed', 'unknown'))
             FROM actions WHERE run_id = $1",
            &[&a.run_id],
        )
        .await?;
    let (open, bad): (i64, i64) = (counts.get(0), counts.get(1));
    if open == 0 {
        let state = if bad > 0 { "failed" } else { "done" };
        tx.execute(
            "UPDATE remediation_runs SET state = $2, updated_at = $3 WHERE id = $1 AND state = 'running'",
            &[&a.run_id, &state, &now],
        )
        .await?;
        if bad == 0 {
            super::pg_messages::release(tx, a.run_id, now).await?;
        }
    }
    Ok(())
}

/// failed | unknown → pending, and its run back to running.
pub(super) async fn retry(
    tx: &Transaction<'_>,
    id: i64,
    now: DateTime<Utc>,
) -> Result<Result<(), String>, StoreError> {
    let Some(a) = load(tx, id).await? else {
        return Ok(Err(format!("action {id} does not exist")));
    };
    if !matches!(a.state, ActionState::Failed | ActionState::Unknown) {
        return Ok(Err(format!(
            "action {id} is {}; only failed or unknown actions can be retried",
            a.state.as_str()
        )));
    }
    tx.execute(
        "UPDATE actions SET state = 'pending', claimed_by = NULL, claim_expires = NULL WHERE id = $1",
        &[&id],
    )
    .await?;
    tx.execute(
        "UPDATE remediation_runs SET state = 'running', updated_at = $2 WHERE id = $1",
        &[&a.run_id, &now],
    )
    .await?;
    Ok(Ok(()))
}

/// Records the undo of action `id` as a new pending action of its run, with `action.undo`.
pub(super) async fn undo(
    tx: &Transaction<'_>,
    id: i64,
    by: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Result<i64, String>, StoreError> {
    // Undos in one run take turns on the run's row (as `finish` does); the second sees the first's.
    let locked = tx
        .query_opt(
            "SELECT r.id FROM remediation_runs r JOIN actions a ON a.run_id = r.id
             WHERE a.id = $1 FOR UPDATE OF r",
            &[&id],
        )
        .await?;
    let Some(original) = (match locked {
        Some(_) => load(tx, id).await?,
        None => None,
    }) else {
        return Ok(Err(format!("action {id} does not exist")));
    };
    let siblings = tx
        .query(
            &format!("{ACTION_COLUMNS} FROM actions WHERE run_id = $1 ORDER BY position"),
            &[&original.run_id],
        )
        .await?
        .iter()
        .map(read)
        .collect::<Result<Vec<_>, _>>()?;
    let (kind, params) = match super::undo_params(&original, &siblings, by, reason) {
        Ok(p) => p,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let position = siblings.iter().map(|a| a.position).max().unwrap_or(0) + 1;
    let row = tx
        .query_one(
            "INSERT INTO actions (run_id, approval_id, finding_id, position, kind, params, state, idempotency_key)
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7) RETURNING id",
            &[
                &original.run_id,
                &original.approval_id,
                &original.finding_id,
                &position,
                &kind,
                &params.to_string(),
                &idempotency_key(original.run_id, position),
            ],
        )
        .await?;
    let undo_id: i64 = row.get(0);
    tx.execute(
        "UPDATE remediation_runs SET state = 'running', updated_at = $2 WHERE id = $1",
        &[&original.run_id, &now],
    )
    .await?;
    // Messages still held for this run tell of what is being reversed: they are never sent.
    let cancelled = tx
        .execute(
            "UPDATE messages SET state = 'failed', error = $2 WHERE run_id = $1 AND state = 'held'",
            &[&original.run_id, &super::undo_cancel_note(id)],
        )
        .await?;
    let undo = load(tx, undo_id)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("action {undo_id} vanished")))?;
    append_in(
        tx,
        &[super::undo_event(&original, &undo, reason, cancelled)],
    )
    .await?;
    Ok(Ok(undo_id))
}

const ACTION_COLUMNS: &str =
    "SELECT id, run_id, approval_id, finding_id, position, kind, params, state,
       idempotency_key, attempts, claimed_by, claim_expires, result, error";

/// One action.
pub(super) async fn load<C: GenericClient>(
    c: &C,
    id: i64,
) -> Result<Option<ActionRecord>, StoreError> {
    let row = c
        .query_opt(
            &format!("{ACTION_COLUMNS} FROM actions WHERE id = $1"),
            &[&id],
        )
        .await?;
    row.as_ref().map(read).transpose()
}

/// Actions in `state` (all when `None`), by id.
pub(super) async fn list<C: GenericClient>(
    c: &C,
    state: Option<ActionState>,
) -> Result<Vec<ActionRecord>, StoreError> {
    let state = state.map(|s| s.as_str());
    let rows = c
        .query(
            &format!(
                "{ACTION_COLUMNS} FROM actions WHERE ($1::text IS NULL OR state = $1) ORDER BY id"
            ),
            &[&state],
        )
        .await?;
    rows.iter().map(read).collect()
}

fn read(r: &tokio_postgres::Row) -> Result<ActionRecord, StoreError> {
    let result: Option<&str> = r.get(12);
    Ok(ActionRecord {
        id: r.get(0),
        run_id: r.get(1),
        approval_id: r.get(2),
        finding_id: r.get(3),
        position: r.get(4),
        kind: r.get(5),
        params: parse_json("action JSON", r.get(6))?,
        state: ActionState::parse(r.get(7))?,
        idempotency_key: r.get(8),
        attempts: r.get(9),
        claimed_by: r.get(10),
        claim_expires: r.get(11),
        result: result.map(|r| parse_json("action result", r)).transpose()?,
        error: r.get(13),
    })
}
