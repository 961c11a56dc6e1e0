//! PostgreSQL: ChatOps commands waiting for confirmation, and remediation runs on request.

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;

use super::postgres::append_in;
use super::{CommandRecord, NewCommand, StoreError, command_decision, command_event};
use crate::audit::Kind;

/// Records a pending command with `command.requested`.
pub(super) async fn create(tx: &Transaction<'_>, c: &NewCommand) -> Result<i64, StoreError> {
    let row = tx
        .query_one(
            "INSERT INTO commands (kind, argument, requested_by, user_ref, channel, response_url, state, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8) RETURNING id",
            &[
                &c.kind,
                &c.argument,
                &c.requested_by,
                &c.user_ref,
                &c.channel,
                &c.response_url,
                &c.created_at,
                &c.expires_at,
            ],
        )
        .await?;
    let id: i64 = row.get(0);
    let record = CommandRecord {
        id,
        state: "pending".into(),
        command: c.clone(),
    };
    append_in(tx, &[command_event(Kind::CommandRequested, &record)]).await?;
    Ok(id)
}

/// Confirms or cancels a pending command (row locked), if `user_ref` may.
pub(super) async fn decide(
    tx: &Transaction<'_>,
    id: i64,
    user_ref: &str,
    confirm: bool,
    now: DateTime<Utc>,
) -> Result<Result<CommandRecord, String>, StoreError> {
    let Some(r) = tx
        .query_opt(
            "SELECT kind, argument, requested_by, user_ref, channel, response_url, state, created_at, expires_at
             FROM commands WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await?
    else {
        return Ok(Err(format!("command {id} does not exist")));
    };
    let mut record = CommandRecord {
        id,
        state: r.get(6),
        command: NewCommand {
            kind: r.get(0),
            argument: r.get(1),
            requested_by: r.get(2),
            user_ref: r.get(3),
            channel: r.get(4),
            response_url: r.get(5),
            created_at: r.get(7),
            expires_at: r.get(8),
        },
    };
    let next = match command_decision(&record, user_ref, confirm, now) {
        Ok(next) => next,
        Err(why) => return Ok(Err(why)),
    };
    tx.execute(
        "UPDATE commands SET state = $2, decided_at = $3 WHERE id = $1 AND state = 'pending'",
        &[&id, &next, &now],
    )
    .await?;
    record.state = next.to_string();
    let kind = if confirm {
        Kind::CommandConfirmed
    } else {
        Kind::CommandCancelled
    };
    append_in(tx, &[command_event(kind, &record)]).await?;
    Ok(Ok(record))
}

/// A requested run for an open finding with no active run (the finding row locked).
pub(super) async fn request_remediation(
    tx: &Transaction<'_>,
    finding_id: i64,
    remediation: &str,
    requested_by: &str,
    now: DateTime<Utc>,
) -> Result<Result<i64, String>, StoreError> {
    let status: Option<String> = tx
        .query_opt(
            "SELECT status FROM findings WHERE id = $1 FOR UPDATE",
            &[&finding_id],
        )
        .await?
        .map(|r| r.get(0));
    let active: Option<(i64, String)> = tx
        .query_opt(
            "SELECT id, state FROM remediation_runs
             WHERE finding_id = $1 AND state IN ('requested', 'pending', 'decided', 'running')
             ORDER BY id DESC LIMIT 1",
            &[&finding_id],
        )
        .await?
        .map(|r| (r.get(0), r.get(1)));
    if let Some(why) = super::remediation_refusal(finding_id, status.as_deref(), active) {
        return Ok(Err(why));
    }
    let ids =
        super::pg_approvals::request_runs(tx, remediation, &[finding_id], now, Some(requested_by))
            .await?;
    ids.first()
        .map(|id| Ok(*id))
        .ok_or_else(|| StoreError::Corrupt("the run was not inserted".into()))
}
