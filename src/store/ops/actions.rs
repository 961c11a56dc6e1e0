//! Actions: planning a decided run's actions, claiming, starting and finishing them, taking
//! over one a gone process started, retrying and undoing. Every step is guarded by the state
//! it expects; claims take a lease (PostgreSQL skipping rows another process holds).

use chrono::{DateTime, Utc};

use super::audit::append;
use crate::store::lease::{Claim, claim as claim_rows};
use crate::store::seam::{Row, Tx, Value, args};
use crate::store::{
    ActionOutcome, ActionRecord, ActionState, DecidedRun, MessageRefs, MessageState, NewAction,
    NewMessage, Reverse, StoreError, idempotency_key, lease_end, outcome_event, parse_json,
    rerun_event, run_failed_event, skipped_event, started_event, to_json, undo_cancel_note,
    undo_event, undo_params,
};

const COLUMNS: &str = "id, run_id, approval_id, finding_id, position, kind, params, state,
       idempotency_key, attempts, claimed_by, claim_expires, result, error";

/// Claims decided runs with a free lease (their actions are planned next), by id, each with
/// its approval and finding.
pub(crate) async fn claim_decided<T: Tx>(
    tx: &mut T,
    owner: &str,
    now: DateTime<Utc>,
    lease: std::time::Duration,
    limit: usize,
) -> Result<Vec<DecidedRun>, StoreError> {
    let what = Claim {
        table: "remediation_runs",
        state: "decided",
        due: "",
        columns: "id, finding_id, remediation",
    };
    let rows = claim_rows(tx, what, owner, now, lease, limit).await?;
    let mut out = rows
        .iter()
        .map(|r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .collect::<Result<Vec<(i64, i64, String)>, StoreError>>()?;
    out.sort_by_key(|r| r.0);
    let mut runs = Vec::with_capacity(out.len());
    for (run_id, finding_id, remediation) in out {
        let finding = super::findings::of_run(tx, run_id, finding_id).await?;
        let approval = match approval_of_run(tx, run_id).await? {
            Some(id) => super::approvals::load(tx, id, false).await?,
            None => None,
        };
        runs.push(DecidedRun {
            run_id,
            remediation,
            approval,
            finding,
        });
    }
    Ok(runs)
}

/// The approval id of a run, if it has one.
async fn approval_of_run<T: Tx>(tx: &mut T, run_id: i64) -> Result<Option<i64>, StoreError> {
    match tx
        .query_opt("SELECT id FROM approvals WHERE run_id = $1", &args![run_id])
        .await?
    {
        Some(r) => Ok(Some(r.get(0)?)),
        None => Ok(None),
    }
}

/// Records a claimed run's actions and moves it to running (or done without actions), and
/// queues its messages (held until its actions have all succeeded); false if the claim was lost.
pub(crate) async fn plan<T: Tx>(
    tx: &mut T,
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
            &args![run_id, owner, next, now],
        )
        .await?;
    if moved == 0 {
        return Ok(false);
    }
    let row = tx
        .query_one(
            "SELECT r.finding_id, a.id FROM remediation_runs r LEFT JOIN approvals a ON a.run_id = r.id WHERE r.id = $1",
            &args![run_id],
        )
        .await?;
    let (finding_id, approval_id): (i64, Option<i64>) = (row.get(0)?, row.get(1)?);
    let mut events = Vec::new();
    for a in actions {
        let state = if a.skip.is_some() {
            ActionState::Skipped
        } else {
            ActionState::Pending
        };
        let id: i64 = tx
            .query_one(
                "INSERT INTO actions (run_id, approval_id, finding_id, position, kind, params, state,
                                      idempotency_key, result, finished_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 RETURNING id",
                &args![
                    run_id,
                    approval_id,
                    finding_id,
                    a.position,
                    &a.kind,
                    a.params.to_string(),
                    state.as_str(),
                    idempotency_key(run_id, a.position),
                    a.skip.as_ref().map(to_json).transpose()?,
                    a.skip.as_ref().map(|_| now),
                ],
            )
            .await?
            .get(0)?;
        if a.skip.is_some() {
            events.push(skipped_event(&loaded(tx, id).await?));
        }
    }
    append(tx, &events).await?;
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
    super::messages::insert(tx, messages, refs, state, now).await?;
    Ok(true)
}

/// Releases `owner`'s claim on a requested or decided run until `until`.
pub(crate) async fn defer<T: Tx>(
    tx: &mut T,
    owner: &str,
    run_id: i64,
    until: DateTime<Utc>,
) -> Result<bool, StoreError> {
    Ok(tx
        .execute(
            "UPDATE remediation_runs SET claimed_by = NULL, claim_expires = $3
             WHERE id = $1 AND claimed_by = $2 AND state IN ('requested', 'decided')",
            &args![run_id, owner, until],
        )
        .await?
        > 0)
}

/// requested | decided → failed, with `remediation.failed`; false if `owner` lost the claim.
pub(crate) async fn fail_run<T: Tx>(
    tx: &mut T,
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
            &args![run_id, owner, now],
        )
        .await?
    else {
        return Ok(false);
    };
    let (finding_id, remediation): (i64, String) = (row.get(0)?, row.get(1)?);
    let approval_id = approval_of_run(tx, run_id).await?;
    let event = run_failed_event((run_id, finding_id, &remediation, approval_id), error);
    append(tx, &[event]).await?;
    Ok(true)
}

/// Claims pending actions with a free lease, in run and position order.
pub(crate) async fn claim<T: Tx>(
    tx: &mut T,
    owner: &str,
    now: DateTime<Utc>,
    lease: std::time::Duration,
    limit: usize,
) -> Result<Vec<ActionRecord>, StoreError> {
    let what = Claim {
        table: "actions",
        state: "pending",
        due: "",
        columns: COLUMNS,
    };
    let rows = claim_rows(tx, what, owner, now, lease, limit).await?;
    let mut out = rows.iter().map(read).collect::<Result<Vec<_>, _>>()?;
    out.sort_by_key(|a| (a.run_id, a.position));
    Ok(out)
}

/// pending → started (attempts + 1) with `action.started`; false if the claim was lost.
pub(crate) async fn start<T: Tx>(
    tx: &mut T,
    owner: &str,
    id: i64,
    now: DateTime<Utc>,
    lease: std::time::Duration,
    observed: Option<&serde_json::Value>,
) -> Result<bool, StoreError> {
    let moved = tx
        .execute(
            "UPDATE actions SET state = 'started', attempts = attempts + 1, started_at = $3, claim_expires = $4,
                    finished_at = NULL, result = $5, error = NULL
             WHERE id = $1 AND state = 'pending' AND claimed_by = $2",
            &args![
                id,
                owner,
                now,
                lease_end(now, lease),
                observed.map(serde_json::Value::to_string),
            ],
        )
        .await?;
    if moved == 0 {
        return Ok(false);
    }
    let a = loaded(tx, id).await?;
    append(tx, &[started_event(&a)]).await?;
    Ok(true)
}

/// Takes over `action`, left started by a gone process, for `owner`; false if it moved on
/// (another process took it, or it was settled).
pub(crate) async fn claim_started<T: Tx>(
    tx: &mut T,
    owner: &str,
    action: &ActionRecord,
    now: DateTime<Utc>,
    lease: std::time::Duration,
) -> Result<bool, StoreError> {
    Ok(tx
        .execute(
            "UPDATE actions SET claimed_by = $1, claim_expires = $2
             WHERE id = $3 AND state = 'started' AND attempts = $4
               AND claimed_by IS NOT DISTINCT FROM $5",
            &args![
                owner,
                lease_end(now, lease),
                action.id,
                action.attempts,
                &action.claimed_by,
            ],
        )
        .await?
        > 0)
}

/// started (claimed by `owner`) → pending, with `action.failed` (`outcome: rerun`).
pub(crate) async fn rerun_started<T: Tx>(
    tx: &mut T,
    owner: &str,
    id: i64,
    why: &str,
) -> Result<bool, StoreError> {
    let moved = tx
        .execute(
            "UPDATE actions SET state = 'pending', claimed_by = NULL, claim_expires = NULL, error = $3
             WHERE id = $1 AND state = 'started' AND claimed_by = $2",
            &args![id, owner, why],
        )
        .await?;
    if moved == 0 {
        return Ok(false);
    }
    let a = loaded(tx, id).await?;
    append(tx, &[rerun_event(&a, why)]).await?;
    Ok(true)
}

/// started → outcome, with its audit entry; the run ends when no action of it is left to run.
pub(crate) async fn finish<T: Tx>(
    tx: &mut T,
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
            &args![id, outcome.state().as_str(), result, error, now],
        )
        .await?;
    if moved == 0 {
        return Err(StoreError::Conflict {
            query: format!("action {id}"),
            expected: 0,
        });
    }
    let a = loaded(tx, id).await?;
    append(tx, &[outcome_event(&a, outcome)]).await?;
    // The run row is locked first, so two last actions finishing at once count each other.
    let lock = format!(
        "SELECT id FROM remediation_runs WHERE id = $1 {}",
        T::FOR_UPDATE
    );
    tx.query(&lock, &args![a.run_id]).await?;
    let counts = tx
        .query_one(
            "SELECT count(*) FILTER (WHERE state IN ('pending', 'started')),
                    count(*) FILTER (WHERE state IN ('failed', 'unknown'))
             FROM actions WHERE run_id = $1",
            &args![a.run_id],
        )
        .await?;
    let (open, bad): (i64, i64) = (counts.get(0)?, counts.get(1)?);
    if open == 0 {
        let state = if bad > 0 { "failed" } else { "done" };
        tx.execute(
            "UPDATE remediation_runs SET state = $2, updated_at = $3 WHERE id = $1 AND state = 'running'",
            &args![a.run_id, state, now],
        )
        .await?;
        if bad == 0 {
            super::messages::release(tx, a.run_id, now).await?;
        }
    }
    Ok(())
}

/// failed | unknown → pending, and its run back to running.
pub(crate) async fn retry<T: Tx>(
    tx: &mut T,
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
        &args![id],
    )
    .await?;
    tx.execute(
        "UPDATE remediation_runs SET state = 'running', updated_at = $2 WHERE id = $1",
        &args![a.run_id, now],
    )
    .await?;
    Ok(Ok(()))
}

/// Records the undo of action `id` as a new pending action of its run, with `action.undo`.
pub(crate) async fn undo<T: Tx>(
    tx: &mut T,
    id: i64,
    by: &str,
    reason: &str,
    reverse: Reverse,
    now: DateTime<Utc>,
) -> Result<Result<i64, String>, StoreError> {
    // Undos in one run take turns on the run's row (as `finish` does); the second sees the first's.
    let lock = format!(
        "SELECT r.id FROM remediation_runs r JOIN actions a ON a.run_id = r.id
         WHERE a.id = $1 {}",
        if T::FOR_UPDATE.is_empty() {
            ""
        } else {
            "FOR UPDATE OF r"
        }
    );
    let Some(original) = (match tx.query_opt(&lock, &args![id]).await? {
        Some(_) => load(tx, id).await?,
        None => None,
    }) else {
        return Ok(Err(format!("action {id} does not exist")));
    };
    let siblings = tx
        .query(
            &format!("SELECT {COLUMNS} FROM actions WHERE run_id = $1 ORDER BY position"),
            &args![original.run_id],
        )
        .await?
        .iter()
        .map(read)
        .collect::<Result<Vec<_>, _>>()?;
    let (kind, params) = match undo_params(reverse, &original, &siblings, by, reason) {
        Ok(p) => p,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let position = siblings.iter().map(|a| a.position).max().unwrap_or(0) + 1;
    let undo_id: i64 = tx
        .query_one(
            "INSERT INTO actions (run_id, approval_id, finding_id, position, kind, params, state, idempotency_key)
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7) RETURNING id",
            &args![
                original.run_id,
                original.approval_id,
                original.finding_id,
                position,
                kind,
                params.to_string(),
                idempotency_key(original.run_id, position),
            ],
        )
        .await?
        .get(0)?;
    tx.execute(
        "UPDATE remediation_runs SET state = 'running', updated_at = $2 WHERE id = $1",
        &args![original.run_id, now],
    )
    .await?;
    // Messages still held for this run tell of what is being reversed: they are never sent.
    let cancelled = tx
        .execute(
            "UPDATE messages SET state = 'failed', error = $2 WHERE run_id = $1 AND state = 'held'",
            &args![original.run_id, undo_cancel_note(id)],
        )
        .await?;
    let undo = loaded(tx, undo_id).await?;
    append(tx, &[undo_event(&original, &undo, reason, cancelled)]).await?;
    Ok(Ok(undo_id))
}

/// One action.
pub(crate) async fn load<T: Tx>(tx: &mut T, id: i64) -> Result<Option<ActionRecord>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM actions WHERE id = $1");
    tx.query_opt(&sql, &args![id])
        .await?
        .as_ref()
        .map(read)
        .transpose()
}

/// One action that must be there (this transaction just wrote it).
async fn loaded<T: Tx>(tx: &mut T, id: i64) -> Result<ActionRecord, StoreError> {
    load(tx, id)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("action {id} vanished")))
}

/// The actions `tail` (what follows `SELECT … FROM actions`) selects, in its order.
async fn select<T: Tx>(
    tx: &mut T,
    tail: &str,
    args: &[Value],
) -> Result<Vec<ActionRecord>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM actions {tail}");
    tx.query(&sql, args).await?.iter().map(read).collect()
}

/// The actions of approval `approval_id`'s run, by position (through the run's index).
pub(crate) async fn of_approval<T: Tx>(
    tx: &mut T,
    approval_id: i64,
) -> Result<Vec<ActionRecord>, StoreError> {
    let tail = "WHERE run_id = (SELECT run_id FROM approvals WHERE id = $1) ORDER BY position";
    select(tx, tail, &args![approval_id]).await
}

/// The newest `limit` actions, newest first.
pub(crate) async fn recent<T: Tx>(
    tx: &mut T,
    limit: usize,
) -> Result<Vec<ActionRecord>, StoreError> {
    select(tx, "ORDER BY id DESC LIMIT $1", &args![limit]).await
}

/// Actions in `state` (all when `None`), by id.
pub(crate) async fn list<T: Tx>(
    tx: &mut T,
    state: Option<ActionState>,
) -> Result<Vec<ActionRecord>, StoreError> {
    match state {
        Some(s) => select(tx, "WHERE state = $1 ORDER BY id", &args![s.as_str()]).await,
        None => select(tx, "ORDER BY id", &[]).await,
    }
}

fn read(r: &Row) -> Result<ActionRecord, StoreError> {
    let params: String = r.get(6)?;
    let state: String = r.get(7)?;
    let result: Option<String> = r.get(12)?;
    Ok(ActionRecord {
        id: r.get(0)?,
        run_id: r.get(1)?,
        approval_id: r.get(2)?,
        finding_id: r.get(3)?,
        position: r.get(4)?,
        kind: r.get(5)?,
        params: parse_json("action JSON", &params)?,
        state: ActionState::parse(&state)?,
        idempotency_key: r.get(8)?,
        attempts: r.get(9)?,
        claimed_by: r.get(10)?,
        claim_expires: r.get(11)?,
        result: result
            .as_deref()
            .map(|r| parse_json("action result", r))
            .transpose()?,
        error: r.get(13)?,
    })
}
