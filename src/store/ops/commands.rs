//! ChatOps commands waiting for their requester's confirmation, and remediation runs
//! requested for one finding.

use chrono::{DateTime, Utc};

use super::audit::append;
use crate::audit::Kind;
use crate::store::seam::{Tx, args};
use crate::store::{
    CommandRecord, NewCommand, StoreError, command_decision, command_event, remediation_refusal,
};

/// Records a pending command with `command.requested`.
pub(crate) async fn create<T: Tx>(tx: &mut T, c: &NewCommand) -> Result<i64, StoreError> {
    let id: i64 = tx
        .query_one(
            "INSERT INTO commands (kind, argument, requested_by, user_ref, channel, response_url, state, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8) RETURNING id",
            &args![
                &c.kind,
                &c.argument,
                &c.requested_by,
                &c.user_ref,
                &c.channel,
                &c.response_url,
                c.created_at,
                c.expires_at,
            ],
        )
        .await?
        .get(0)?;
    let record = CommandRecord {
        id,
        state: "pending".into(),
        command: c.clone(),
    };
    append(tx, &[command_event(Kind::CommandRequested, &record)]).await?;
    Ok(id)
}

/// Confirms or cancels a pending command (its row locked), if `user_ref` may.
pub(crate) async fn decide<T: Tx>(
    tx: &mut T,
    id: i64,
    user_ref: &str,
    confirm: bool,
    now: DateTime<Utc>,
) -> Result<Result<CommandRecord, String>, StoreError> {
    let sql = format!(
        "SELECT kind, argument, requested_by, user_ref, channel, response_url, state, created_at, expires_at
         FROM commands WHERE id = $1 {}",
        T::FOR_UPDATE
    );
    let Some(r) = tx.query_opt(&sql, &args![id]).await? else {
        return Ok(Err(format!("command {id} does not exist")));
    };
    let mut record = CommandRecord {
        id,
        state: r.get(6)?,
        command: NewCommand {
            kind: r.get(0)?,
            argument: r.get(1)?,
            requested_by: r.get(2)?,
            user_ref: r.get(3)?,
            channel: r.get(4)?,
            response_url: r.get(5)?,
            created_at: r.get(7)?,
            expires_at: r.get(8)?,
        },
    };
    let next = match command_decision(&record, user_ref, confirm, now) {
        Ok(next) => next,
        Err(why) => return Ok(Err(why)),
    };
    tx.execute(
        "UPDATE commands SET state = $2, decided_at = $3 WHERE id = $1 AND state = 'pending'",
        &args![id, next, now],
    )
    .await?;
    record.state = next.to_string();
    let kind = if confirm {
        Kind::CommandConfirmed
    } else {
        Kind::CommandCancelled
    };
    append(tx, &[command_event(kind, &record)]).await?;
    Ok(Ok(record))
}

/// A requested run for an open finding with no active run (the finding's row locked).
pub(crate) async fn request_remediation<T: Tx>(
    tx: &mut T,
    finding_id: i64,
    remediation: &str,
    requested_by: &str,
    now: DateTime<Utc>,
) -> Result<Result<i64, String>, StoreError> {
    let sql = format!(
        "SELECT status FROM findings WHERE id = $1 {}",
        T::FOR_UPDATE
    );
    let status: Option<String> = match tx.query_opt(&sql, &args![finding_id]).await? {
        Some(r) => Some(r.get(0)?),
        None => None,
    };
    let active: Option<(i64, String)> = match tx
        .query_opt(
            "SELECT id, state FROM remediation_runs
             WHERE finding_id = $1 AND state IN ('requested', 'pending', 'decided', 'running')
             ORDER BY id DESC LIMIT 1",
            &args![finding_id],
        )
        .await?
    {
        Some(r) => Some((r.get(0)?, r.get(1)?)),
        None => None,
    };
    if let Some(why) = remediation_refusal(finding_id, status.as_deref(), active) {
        return Ok(Err(why));
    }
    request_run(tx, remediation, finding_id, now, Some(requested_by))
        .await
        .map(Ok)
}

/// Creates a requested run of `remediation` for one finding; returns its id. (A run's
/// commit requests many at once, in each backend's bulk way.)
pub(crate) async fn request_run<T: Tx>(
    tx: &mut T,
    remediation: &str,
    finding_id: i64,
    now: DateTime<Utc>,
    requested_by: Option<&str>,
) -> Result<i64, StoreError> {
    tx.query_one(
        "INSERT INTO remediation_runs (finding_id, remediation, state, requested_at, requested_by, updated_at)
         VALUES ($1, $2, 'requested', $3, $4, $3) RETURNING id",
        &args![finding_id, remediation, now, requested_by],
    )
    .await?
    .get(0)
}
