//! PostgreSQL: the message outbox. Messages are queued inside the transaction of
//! the event they tell of, claimed with `FOR UPDATE SKIP LOCKED` and a lease, and
//! finished one attempt at a time.

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Transaction};
use tokio_postgres::types::ToSql;

use super::postgres::append_in;
use super::{
    MessageOutcome, MessageRecord, MessageRefs, MessageState, NewMessage, StoreError, lease_end,
    message_event, parse_json, to_json,
};

/// Queues `messages` (due now) with the ids they refer to.
pub(super) async fn insert(
    tx: &Transaction<'_>,
    messages: &[NewMessage],
    refs: MessageRefs,
    state: MessageState,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if messages.is_empty() {
        return Ok(());
    }
    let stmt = tx
        .prepare_cached(
            "INSERT INTO messages (event, finding_id, approval_id, run_id, notifier, integration, destination,
                                   text, state, next_attempt_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $10, $9, $9)",
        )
        .await?;
    for m in messages {
        let destination = to_json(&m.destination)?;
        let values: [&(dyn ToSql + Sync); 10] = [
            &m.event,
            &refs.finding_id,
            &refs.approval_id,
            &refs.run_id,
            &m.notifier,
            &m.integration,
            &destination,
            &m.text,
            &now,
            &state.as_str(),
        ];
        tx.execute(&stmt, &values).await?;
    }
    Ok(())
}

/// Releases a run's held messages for delivery (its actions have all succeeded).
pub(super) async fn release(
    tx: &Transaction<'_>,
    run_id: i64,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE messages SET state = 'pending', next_attempt_at = $2 WHERE run_id = $1 AND state = 'held'",
        &[&run_id, &now],
    )
    .await?;
    Ok(())
}

/// Records that a delivery call of pending message `id` begins at `at` (the first such time is kept).
pub(super) async fn begin_attempt(
    tx: &Transaction<'_>,
    id: i64,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE messages SET attempted_at = COALESCE(attempted_at, $2) WHERE id = $1 AND state = 'pending'",
        &[&id, &at],
    )
    .await?;
    Ok(())
}

/// Extends `owner`'s claim on a pending message before it is sent; false if the claim is lost.
pub(super) async fn renew(
    tx: &Transaction<'_>,
    owner: &str,
    id: i64,
    until: DateTime<Utc>,
) -> Result<bool, StoreError> {
    Ok(tx
        .execute(
            "UPDATE messages SET claim_expires = $3 WHERE id = $1 AND claimed_by = $2 AND state = 'pending'",
            &[&id, &owner, &until],
        )
        .await?
        > 0)
}

/// Claims due pending messages whose lease is free.
pub(super) async fn claim(
    tx: &Transaction<'_>,
    owner: &str,
    now: DateTime<Utc>,
    lease: std::time::Duration,
    limit: usize,
) -> Result<Vec<MessageRecord>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = tx
        .query(
            &format!(
                "UPDATE messages SET claimed_by = $1, claim_expires = $2
                 WHERE id IN (SELECT id FROM messages
                              WHERE state = 'pending' AND next_attempt_at <= $3
                                AND (claim_expires IS NULL OR claim_expires < $3)
                              ORDER BY id LIMIT $4 FOR UPDATE SKIP LOCKED)
                 RETURNING {COLUMNS}"
            ),
            &[&owner, &lease_end(now, lease), &now, &limit],
        )
        .await?;
    let mut out: Vec<MessageRecord> = rows.iter().map(read).collect::<Result<_, _>>()?;
    out.sort_by_key(|m| m.id);
    Ok(out)
}

/// Records one delivery attempt and its audit entry; false if `owner` no longer holds the claim.
pub(super) async fn finish(
    tx: &Transaction<'_>,
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
            &[&id, &owner, &state.as_str(), &sent_at, &next, &result, &error, &i32::from(outcome.attempted())],
        )
        .await?;
    let Some(row) = row else {
        return Ok(false);
    };
    if !outcome.attempted() {
        return Ok(true);
    }
    let m = read(&row)?;
    append_in(tx, message_event(&m, outcome).as_slice()).await?;
    Ok(true)
}

const COLUMNS: &str =
    "id, event, finding_id, approval_id, run_id, notifier, integration, destination, text,
       state, attempts, next_attempt_at, created_at, sent_at, result, error, attempted_at";

/// Every message (of one approval, when given), by id.
pub(super) async fn list<C: GenericClient>(
    c: &C,
    approval_id: Option<i64>,
) -> Result<Vec<MessageRecord>, StoreError> {
    let rows = c
        .query(
            &format!(
                "SELECT {COLUMNS} FROM messages WHERE ($1::bigint IS NULL OR approval_id = $1) ORDER BY id"
            ),
            &[&approval_id],
        )
        .await?;
    rows.iter().map(read).collect()
}

/// Queues the follow-ups of a transition of approval `a` (copies of its requests).
pub(super) async fn follow_up(
    tx: &Transaction<'_>,
    a: &crate::approval::Approval,
    t: &crate::approval::Transition,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    for (event, text, filter) in super::follow_ups(a, t) {
        tx.execute(&super::follow_up_sql(filter), &[&a.id, &event, &text, &now])
            .await?;
    }
    Ok(())
}

fn read(r: &tokio_postgres::Row) -> Result<MessageRecord, StoreError> {
    let result: Option<&str> = r.get(14);
    Ok(MessageRecord {
        id: r.get(0),
        event: r.get(1),
        finding_id: r.get(2),
        approval_id: r.get(3),
        run_id: r.get(4),
        notifier: r.get(5),
        integration: r.get(6),
        destination: parse_json("message destination", r.get(7))?,
        text: r.get(8),
        state: MessageState::parse(r.get(9))?,
        attempts: r.get(10),
        next_attempt_at: r.get(11),
        created_at: r.get(12),
        sent_at: r.get(13),
        result: result
            .map(|r| parse_json("message result", r))
            .transpose()?,
        error: r.get(15),
        attempted_at: r.get(16),
    })
}
