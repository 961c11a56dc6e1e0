//! SQLite: ChatOps commands waiting for confirmation, and remediation runs on request.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Transaction, params};

use super::sqlite::{append_in, parse_ts, ts};
use super::{CommandRecord, NewCommand, StoreError, command_decision, command_event};
use crate::audit::Kind;

/// Records a pending command with `command.requested`.
pub(super) fn create(tx: &Transaction<'_>, c: &NewCommand) -> Result<i64, StoreError> {
    tx.execute(
        "INSERT INTO commands (kind, argument, requested_by, user_ref, channel, response_url, state, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?8)",
        params![
            c.kind,
            c.argument,
            c.requested_by,
            c.user_ref,
            c.channel,
            c.response_url,
            ts(&c.created_at),
            ts(&c.expires_at)
        ],
    )?;
    let id = tx.last_insert_rowid();
    let record = CommandRecord {
        id,
        state: "pending".into(),
        command: c.clone(),
    };
    append_in(tx, &[command_event(Kind::CommandRequested, &record)])?;
    Ok(id)
}

/// Confirms or cancels a pending command, if `user_ref` may.
pub(super) fn decide(
    tx: &Transaction<'_>,
    id: i64,
    user_ref: &str,
    confirm: bool,
    now: DateTime<Utc>,
) -> Result<Result<CommandRecord, String>, StoreError> {
    let row = tx
        .query_row(
            "SELECT kind, argument, requested_by, user_ref, channel, response_url, state, created_at, expires_at
             FROM commands WHERE id = ?1",
            [id],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, String>(7)?,
                    r.get::<_, String>(8)?,
                ))
            },
        )
        .optional()?;
    let Some((kind, argument, requested_by, user, channel, response_url, state, created, expires)) =
        row
    else {
        return Ok(Err(format!("command {id} does not exist")));
    };
    let mut record = CommandRecord {
        id,
        state,
        command: NewCommand {
            kind,
            argument,
            requested_by,
            user_ref: user,
            channel,
            response_url,
            created_at: parse_ts(&created)?,
            expires_at: parse_ts(&expires)?,
        },
    };
    let next = match command_decision(&record, user_ref, confirm, now) {
        Ok(next) => next,
        Err(why) => return Ok(Err(why)),
    };
    tx.execute(
        "UPDATE commands SET state = ?2, decided_at = ?3 WHERE id = ?1 AND state = 'pending'",
        params![id, next, ts(&now)],
    )?;
    record.state = next.to_string();
    let kind = if confirm {
        Kind::CommandConfirmed
    } else {
        Kind::CommandCancelled
    };
    append_in(tx, &[command_event(kind, &record)])?;
    Ok(Ok(record))
}

/// A requested run for an open finding with no active run.
pub(super) fn request_remediation(
    tx: &Transaction<'_>,
    finding_id: i64,
    remediation: &str,
    requested_by: &str,
    now: DateTime<Utc>,
) -> Result<Result<i64, String>, StoreError> {
    let status: Option<String> = tx
        .query_row(
            "SELECT status FROM findings WHERE id = ?1",
            [finding_id],
            |r| r.get(0),
        )
        .optional()?;
    let active: Option<(i64, String)> = tx
        .query_row(
            "SELECT id, state FROM remediation_runs
             WHERE finding_id = ?1 AND state IN ('requested', 'pending', 'decided', 'running')
             ORDER BY id DESC LIMIT 1",
            [finding_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    if let Some(why) = super::remediation_refusal(finding_id, status.as_deref(), active) {
        return Ok(Err(why));
    }
    let ids = super::sqlite_approvals::request_runs(
        tx,
        remediation,
        &[finding_id],
        &ts(&now),
        Some(requested_by),
    )?;
    ids.first()
        .map(|id| Ok(*id))
        .ok_or_else(|| StoreError::Corrupt("the run was not inserted".into()))
}
