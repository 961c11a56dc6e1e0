//! The message outbox. Messages are queued inside the transaction of the event they tell
//! of, claimed with a lease (PostgreSQL skipping rows another process holds), and finished
//! one attempt at a time.

use chrono::{DateTime, Utc};

use super::audit::append;
use crate::approval::{Approval, Transition};
use crate::store::lease::{Claim, claim as claim_rows};
use crate::store::seam::{Row, Tx, args};
use crate::store::{
    MessageOutcome, MessageRecord, MessageRefs, MessageState, NewMessage, StoreError, follow_ups,
    message_event, parse_json, to_json,
};

const COLUMNS: &str =
    "id, event, finding_id, approval_id, run_id, notifier, integration, destination, text,
       state, attempts, next_attempt_at, created_at, sent_at, result, error, attempted_at";

/// Queues `messages` (due now) with the ids they refer to.
pub(crate) async fn insert<T: Tx>(
    tx: &mut T,
    messages: &[NewMessage],
    refs: MessageRefs,
    state: MessageState,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    for m in messages {
        tx.execute(
            "INSERT INTO messages (event, finding_id, approval_id, run_id, notifier, integration, destination,
                                   text, state, next_attempt_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $10, $9, $9)",
            &args![
                &m.event,
                refs.finding_id,
                refs.approval_id,
                refs.run_id,
                &m.notifier,
                &m.integration,
                to_json(&m.destination)?,
                &m.text,
                now,
                state.as_str(),
            ],
        )
        .await?;
    }
    Ok(())
}

/// Releases a run's held messages for delivery (its actions have all succeeded).
pub(crate) async fn release<T: Tx>(
    tx: &mut T,
    run_id: i64,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE messages SET state = 'pending', next_attempt_at = $2 WHERE run_id = $1 AND state = 'held'",
        &args![run_id, now],
    )
    .await?;
    Ok(())
}

/// Records that a delivery call of pending message `id` begins at `at` (the first such time is kept).
pub(crate) async fn begin_attempt<T: Tx>(
    tx: &mut T,
    id: i64,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE messages SET attempted_at = COALESCE(attempted_at, $2) WHERE id = $1 AND state = 'pending'",
        &args![id, at],
    )
    .await?;
    Ok(())
}

/// Extends `owner`'s claim on a pending message before it is sent; false if the claim is lost.
pub(crate) async fn renew<T: Tx>(
    tx: &mut T,
    owner: &str,
    id: i64,
    until: DateTime<Utc>,
) -> Result<bool, StoreError> {
    Ok(tx
        .execute(
            "UPDATE messages SET claim_expires = $3 WHERE id = $1 AND claimed_by = $2 AND state = 'pending'",
            &args![id, owner, until],
        )
        .await?
        > 0)
}

/// Claims due pending messages whose lease is free, by id.
pub(crate) async fn claim<T: Tx>(
    tx: &mut T,
    owner: &str,
    now: DateTime<Utc>,
    lease: std::time::Duration,
    limit: usize,
) -> Result<Vec<MessageRecord>, StoreError> {
    let what = Claim {
        table: "messages",
        state: "pending",
        due: "AND next_attempt_at <= $3",
        columns: COLUMNS,
    };
    let rows = claim_rows(tx, what, owner, now, lease, limit).await?;
    let mut out: Vec<MessageRecord> = rows.iter().map(read).collect::<Result<_, _>>()?;
    out.sort_by_key(|m| m.id);
    Ok(out)
}

/// Records one delivery attempt and its audit entry; false if `owner` no longer holds the claim.
pub(crate) async fn finish<T: Tx>(
    tx: &mut T,
    owner: &str,
    id: i64,
    outcome: &MessageOutcome,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let (state, sent_at, next, result, error) = outcome.columns(now)?;
    let row = tx
        .query_opt(
            &format!(
                "UPDATE messages SET state = $3, attempts = attempts + $8, sent_at = $4, next_attempt_at = $5,
                        result = $6, error = $7, claimed_by = NULL, claim_expires = NULL
                 WHERE id = $1 AND state = 'pending' AND claimed_by = $2
                 RETURNING {COLUMNS}"
            ),
            &args![
                id,
                owner,
                state.as_str(),
                sent_at,
                next,
                result,
                error,
                i32::from(outcome.attempted()),
            ],
        )
        .await?;
    let Some(row) = row else {
        return Ok(false);
    };
    if !outcome.attempted() {
        return Ok(true);
    }
    let m = read(&row)?;
    append(tx, message_event(&m, outcome).as_slice()).await?;
    Ok(true)
}

/// Every message (of one approval, when given), by id.
pub(crate) async fn list<T: Tx>(
    tx: &mut T,
    approval_id: Option<i64>,
) -> Result<Vec<MessageRecord>, StoreError> {
    let rows = match approval_id {
        Some(id) => {
            let sql = format!("SELECT {COLUMNS} FROM messages WHERE approval_id = $1 ORDER BY id");
            tx.query(&sql, &args![id]).await?
        }
        None => {
            let sql = format!("SELECT {COLUMNS} FROM messages ORDER BY id");
            tx.query(&sql, &[]).await?
        }
    };
    rows.iter().map(read).collect()
}

/// When the next pending message nobody holds a claim on is due, if any.
pub(crate) async fn next_due<T: Tx>(
    tx: &mut T,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    tx.query_one(
        "SELECT min(next_attempt_at) FROM messages
         WHERE state = 'pending' AND (claim_expires IS NULL OR claim_expires < $1)",
        &args![now],
    )
    .await?
    .get(0)
}

/// Queues the follow-ups of a transition of approval `a`: copies of its requests, as the
/// transition's event with its text, for the integrations each selects.
pub(crate) async fn follow_up<T: Tx>(
    tx: &mut T,
    a: &Approval,
    t: &Transition,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    for (event, text, filter) in follow_ups(a, t) {
        let sql = format!(
            "INSERT INTO messages (event, finding_id, approval_id, run_id, notifier, integration, destination,
                                   text, state, next_attempt_at, created_at)
             SELECT $2, finding_id, approval_id, run_id, notifier, integration, destination, $3, 'pending', $4, $4
             FROM messages WHERE approval_id = $1 AND event = 'approval.requested' AND {filter}
             ORDER BY id"
        );
        tx.execute(&sql, &args![a.id, event, text, now]).await?;
    }
    Ok(())
}

fn read(r: &Row) -> Result<MessageRecord, StoreError> {
    let destination: String = r.get(7)?;
    let state: String = r.get(9)?;
    let result: Option<String> = r.get(14)?;
    Ok(MessageRecord {
        id: r.get(0)?,
        event: r.get(1)?,
        finding_id: r.get(2)?,
        approval_id: r.get(3)?,
        run_id: r.get(4)?,
        notifier: r.get(5)?,
        integration: r.get(6)?,
        destination: parse_json("message destination", &destination)?,
        text: r.get(8)?,
        state: MessageState::parse(&state)?,
        attempts: r.get(10)?,
        next_attempt_at: r.get(11)?,
        created_at: r.get(12)?,
        sent_at: r.get(13)?,
        result: result
            .as_deref()
            .map(|r| parse_json("message result", r))
            .transpose()?,
        error: r.get(15)?,
        attempted_at: r.get(16)?,
    })
}
