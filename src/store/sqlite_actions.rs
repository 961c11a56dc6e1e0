//! SQLite: planning, claiming, starting and finishing actions. Each step is one
//! transaction holding SQLite's write lock, guarded by the state it expects.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::sqlite::{append_in, parse_ts, ts};
use super::{
    ActionOutcome, ActionRecord, ActionState, MessageRefs, MessageState, NewAction, NewMessage,
    StoreError, idempotency_key, lease_end, outcome_event, parse_json, run_failed_event,
    skipped_event, to_json,
};

/// Claims decided runs with a free lease; returns (run id, finding id, remediation).
pub(super) fn claim_decided(
    tx: &Transaction<'_>,
    owner: &str,
    now: DateTime<Utc>,
    lease: std::time::Duration,
    limit: usize,
) -> Result<Vec<(i64, i64, String)>, StoreError> {
    let mut stmt = tx.prepare_cached(
        "UPDATE remediation_runs SET claimed_by = ?1, claim_expires = ?2
         WHERE id IN (SELECT id FROM remediation_runs
                      WHERE state = 'decided' AND (claim_expires IS NULL OR claim_expires < ?3)
                      ORDER BY id LIMIT ?4)
         RETURNING id, finding_id, remediation",
    )?;
    let rows = stmt.query_map(
        params![
            owner,
            ts(&lease_end(now, lease)),
            ts(&now),
            i64::try_from(limit).unwrap_or(i64::MAX)
        ],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let mut out: Vec<(i64, i64, String)> = rows.collect::<Result<_, _>>()?;
    out.sort_by_key(|r| r.0);
    Ok(out)
}

/// The approval id of a run, if it has one.
pub(super) fn approval_of_run(c: &Connection, run_id: i64) -> Result<Option<i64>, StoreError> {
    Ok(c.query_row(
        "SELECT id FROM approvals WHERE run_id = ?1",
        [run_id],
        |r| r.get(0),
    )
    .optional()?)
}

/// Records a claimed run's actions and moves it to running (or done without actions).
pub(super) fn plan(
    tx: &Transaction<'_>,
    owner: &str,
    run_id: i64,
    actions: &[NewAction],
    messages: &[NewMessage],
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let runs_any = actions.iter().any(|a| a.skip.is_none());
    let next = if runs_any { "running" } else { "done" };
    let moved = tx.execute(
        "UPDATE remediation_runs SET state = ?3, claimed_by = NULL, claim_expires = NULL, updated_at = ?4
         WHERE id = ?1 AND state IN ('requested', 'decided') AND claimed_by = ?2",
        params![run_id, owner, next, ts(&now)],
    )?;
    if moved == 0 {
        return Ok(false);
    }
    let (finding_id, approval_id): (i64, Option<i64>) = tx.query_row(
        "SELECT r.finding_id, a.id FROM remediation_runs r LEFT JOIN approvals a ON a.run_id = r.id WHERE r.id = ?1",
        [run_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO actions (run_id, approval_id, finding_id, position, kind, params, state, idempotency_key,
                              result, finished_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    let mut skipped = Vec::new();
    for a in actions {
        let state = if a.skip.is_some() {
            ActionState::Skipped
        } else {
            ActionState::Pending
        };
        insert.execute(params![
            run_id,
            approval_id,
            finding_id,
            a.position,
            a.kind,
            a.params.to_string(),
            state.as_str(),
            idempotency_key(run_id, a.position),
            a.skip.as_ref().map(to_json).transpose()?,
            a.skip.as_ref().map(|_| ts(&now)),
        ])?;
        if a.skip.is_some() {
            skipped.push(tx.last_insert_rowid());
        }
    }
    let mut events = Vec::with_capacity(skipped.len());
    for id in skipped {
        let a =
            load(tx, id)?.ok_or_else(|| StoreError::Corrupt(format!("action {id} vanished")))?;
        events.push(skipped_event(&a));
    }
    append_in(tx, &events)?;
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
    super::sqlite_messages::insert(tx, messages, refs, state, now)?;
    Ok(true)
}

/// Releases `owner`'s claim on a requested or decided run until `until`.
pub(super) fn defer(
    tx: &Transaction<'_>,
    owner: &str,
    run_id: i64,
    until: DateTime<Utc>,
) -> Result<bool, StoreError> {
    Ok(tx.execute(
        "UPDATE remediation_runs SET claimed_by = NULL, claim_expires = ?3
         WHERE id = ?1 AND claimed_by = ?2 AND state IN ('requested', 'decided')",
        params![run_id, owner, ts(&until)],
    )? > 0)
}

/// requested | decided → failed, with `remediation.failed`; false if `owner` lost the claim.
pub(super) fn fail_run(
    tx: &Transaction<'_>,
    owner: &str,
    run_id: i64,
    error: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let run: Option<(i64, String)> = tx
        .query_row(
            "UPDATE remediation_runs SET state = 'failed', claimed_by = NULL, claim_expires = NULL, updated_at = ?3
             WHERE id = ?1 AND claimed_by = ?2 AND state IN ('requested', 'decided')
             RETURNING finding_id, remediation",
            params![run_id, owner, ts(&now)],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((finding_id, remediation)) = run else {
        return Ok(false);
    };
    let approval_id = approval_of_run(tx, run_id)?;
    let event = run_failed_event((run_id, finding_id, &remediation, approval_id), error);
    append_in(tx, &[event])?;
    Ok(true)
}

/// Claims pending actions with a free lease.
pub(super) fn claim(
    tx: &Transaction<'_>,
    owner: &str,
    now: DateTime<Utc>,
    lease: std::time::Duration,
    limit: usize,
) -> Result<Vec<ActionRecord>, StoreError> {
    let ids: Vec<i64> = {
        let mut stmt = tx.prepare_cached(
            "UPDATE actions SET claimed_by = ?1, claim_expires = ?2
             WHERE id IN (SELECT id FROM actions
                          WHERE state = 'pending' AND (claim_expires IS NULL OR claim_expires < ?3)
                          ORDER BY id LIMIT ?4)
             RETURNING id",
        )?;
        stmt.query_map(
            params![
                owner,
                ts(&lease_end(now, lease)),
                ts(&now),
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
            |r| r.get(0),
        )?
        .collect::<Result<_, _>>()?
    };
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.extend(load(tx, id)?);
    }
    out.sort_by_key(|a| (a.run_id, a.position));
    Ok(out)
}

/// pending → started (attempts + 1) with `action.started`; false if the claim was lost.
pub(super) fn start(
    tx: &Transaction<'_>,
    owner: &str,
    id: i64,
    now: DateTime<Utc>,
    lease: std::time::Duration,
    observed: Option<&serde_json::Value>,
) -> Result<bool, StoreError> {
    let moved = tx.execute(
        "UPDATE actions SET state = 'started', attempts = attempts + 1, started_at = ?3, claim_expires = ?4,
                finished_at = NULL, result = ?5, error = NULL
         WHERE id = ?1 AND state = 'pending' AND claimed_by = ?2",
        params![
            id,
            owner,
            ts(&now),
            ts(&lease_end(now, lease)),
            observed.map(to_json).transpose()?
        ],
    )?;
    if moved == 0 {
        return Ok(false);
    }
    let a = load(tx, id)?.ok_or_else(|| StoreError::Corrupt(format!("action {id} vanished")))?;
    append_in(tx, &[super::started_event(&a)])?;
    Ok(true)
}

/// Takes over a started action (id, attempts, previous holder) for `owner`; false if it moved on.
pub(super) fn claim_started(
    tx: &Transaction<'_>,
    owner: &str,
    action: (i64, i32, Option<&str>),
    now: DateTime<Utc>,
    lease: std::time::Duration,
) -> Result<bool, StoreError> {
    let (id, attempts, previous) = action;
    Ok(tx.execute(
        "UPDATE actions SET claimed_by = ?1, claim_expires = ?2
         WHERE id = ?3 AND state = 'started' AND attempts = ?4 AND claimed_by IS ?5",
        params![owner, ts(&lease_end(now, lease)), id, attempts, previous],
    )? > 0)
}

/// started (claimed by `owner`) → pending, with `action.failed` (`outcome: rerun`).
pub(super) fn rerun_started(
    tx: &Transaction<'_>,
    owner: &str,
    id: i64,
    why: &str,
) -> Result<bool, StoreError> {
    let moved = tx.execute(
        "UPDATE actions SET state = 'pending', claimed_by = NULL, claim_expires = NULL, error = ?3
         WHERE id = ?1 AND state = 'started' AND claimed_by = ?2",
        params![id, owner, why],
    )?;
    if moved == 0 {
        return Ok(false);
    }
    let a = load(tx, id)?.ok_or_else(|| StoreError::Corrupt(format!("action {id} vanished")))?;
    append_in(tx, &[super::rerun_event(&a, why)])?;
    Ok(true)
}

/// started → outcome, with its audit entry; the run ends when no action of it is left to run.
pub(super) fn finish(
    tx: &Transaction<'_>,
    id: i64,
    outcome: &ActionOutcome,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let (result, error) = outcome.columns();
    let moved = tx.execute(
        "UPDATE actions SET state = ?2, result = COALESCE(?3, result), error = ?4, finished_at = ?5,
                claimed_by = NULL, claim_expires = NULL
         WHERE id = ?1 AND state = 'started'",
        params![id, outcome.state().as_str(), result, error, ts(&now)],
    )?;
    if moved == 0 {
        return Err(StoreError::Conflict {
            query: format!("action {id}"),
            expected: 0,
        });
    }
    let a = load(tx, id)?.ok_or_else(|| StoreError::Corrupt(format!("action {id} vanished")))?;
    append_in(tx, &[outcome_event(&a, outcome)])?;
    let (open, bad): (i64, i64) = tx.query_row(
        "SELECT count(*) FILTER (WHERE state IN ('pending', 'started')),
                count(*) FILTER (WHERE state IN ('failed', 'unknown'))
         FROM actions WHERE run_id = ?1",
        [a.run_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if open == 0 {
        tx.execute(
            "UPDATE remediation_runs SET state = ?2, updated_at = ?3 WHERE id = ?1 AND state = 'running'",
            params![a.run_id, if bad > 0 { "failed" } else { "done" }, ts(&now)],
        )?;
        if bad == 0 {
            super::sqlite_messages::release(tx, a.run_id, now)?;
        }
    }
    Ok(())
}

/// failed | unknown → pending, and its run back to running.
pub(super) fn retry(
    tx: &Transaction<'_>,
    id: i64,
    now: DateTime<Utc>,
) -> Result<Result<(), String>, StoreError> {
    let Some(a) = load(tx, id)? else {
        return Ok(Err(format!("action {id} does not exist")));
    };
    if !matches!(a.state, ActionState::Failed | ActionState::Unknown) {
        return Ok(Err(format!(
            "action {id} is {}; only failed or unknown actions can be retried",
            a.state.as_str()
        )));
    }
    tx.execute(
        "UPDATE actions SET state = 'pending', claimed_by = NULL, claim_expires = NULL WHERE id = ?1",
        [id],
    )?;
    tx.execute(
        "UPDATE remediation_runs SET state = 'running', updated_at = ?2 WHERE id = ?1",
        params![a.run_id, ts(&now)],
    )?;
    Ok(Ok(()))
}

/// Records the undo of action `id` as a new pending action of its run, with `action.undo`.
pub(super) fn undo(
    tx: &Transaction<'_>,
    id: i64,
    by: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Result<i64, String>, StoreError> {
    let Some(original) = load(tx, id)? else {
        return Ok(Err(format!("action {id} does not exist")));
    };
    let siblings: Vec<ActionRecord> = {
        let mut stmt = tx.prepare_cached(&format!(
            "{ACTION_SELECT} WHERE run_id = ?1 ORDER BY position"
        ))?;
        let rows = stmt.query_map([original.run_id], read)?;
        rows.map(|r| r?).collect::<Result<_, _>>()?
    };
    let (kind, params) = match super::undo_params(&original, &siblings, by, reason) {
        Ok(p) => p,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let position = siblings.iter().map(|a| a.position).max().unwrap_or(0) + 1;
    tx.execute(
        "INSERT INTO actions (run_id, approval_id, finding_id, position, kind, params, state, idempotency_key)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7)",
        params![
            original.run_id,
            original.approval_id,
            original.finding_id,
            position,
            kind,
            params.to_string(),
            idempotency_key(original.run_id, position),
        ],
    )?;
    let undo_id = tx.last_insert_rowid();
    tx.execute(
        "UPDATE remediation_runs SET state = 'running', updated_at = ?2 WHERE id = ?1",
        params![original.run_id, ts(&now)],
    )?;
    // Messages still held for this run tell of what is being reversed: they are never sent.
    let cancelled = tx.execute(
        "UPDATE messages SET state = 'failed', error = ?2 WHERE run_id = ?1 AND state = 'held'",
        params![original.run_id, super::undo_cancel_note(id)],
    )?;
    let undo = load(tx, undo_id)?
        .ok_or_else(|| StoreError::Corrupt(format!("action {undo_id} vanished")))?;
    append_in(
        tx,
        &[super::undo_event(
            &original,
            &undo,
            reason,
            cancelled as u64,
        )],
    )?;
    Ok(Ok(undo_id))
}

const ACTION_SELECT: &str =
    "SELECT id, run_id, approval_id, finding_id, position, kind, params, state,
       idempotency_key, attempts, claimed_by, claim_expires, result, error FROM actions";

/// One action.
pub(super) fn load(c: &Connection, id: i64) -> Result<Option<ActionRecord>, StoreError> {
    let mut stmt = c.prepare_cached(&format!("{ACTION_SELECT} WHERE id = ?1"))?;
    stmt.query_row([id], read).optional()?.transpose()
}

/// Actions in `state` (all when `None`), by id.
pub(super) fn list(
    c: &Connection,
    state: Option<ActionState>,
) -> Result<Vec<ActionRecord>, StoreError> {
    let mut stmt = c.prepare_cached(&format!(
        "{ACTION_SELECT} WHERE (?1 IS NULL OR state = ?1) ORDER BY id"
    ))?;
    let rows = stmt.query_map([state.map(|s| s.as_str())], read)?;
    rows.map(|r| r?).collect()
}

fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<ActionRecord, StoreError>> {
    let params: String = r.get(6)?;
    let state: String = r.get(7)?;
    let claim_expires: Option<String> = r.get(11)?;
    let result: Option<String> = r.get(12)?;
    let (id, run_id, approval_id, finding_id, position, kind) = (
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    );
    let (idempotency_key, attempts, claimed_by, error) =
        (r.get(8)?, r.get(9)?, r.get(10)?, r.get(13)?);
    Ok((|| {
        Ok(ActionRecord {
            id,
            run_id,
            approval_id,
            finding_id,
            position,
            kind,
            params: parse_json("action JSON", &params)?,
            state: ActionState::parse(&state)?,
            idempotency_key,
            attempts,
            claimed_by,
            claim_expires: claim_expires.as_deref().map(parse_ts).transpose()?,
            result: result
                .as_deref()
                .map(|r| parse_json("action result", r))
                .transpose()?,
            error,
        })
    })())
}
