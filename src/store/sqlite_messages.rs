//! SQLite: the message outbox. Messages are queued inside the transaction of the
//! event they tell of, claimed with a lease, and finished one attempt at a time.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::sqlite::{append_in, parse_ts, ts};
use super::{
    MessageOutcome, MessageRecord, MessageRefs, MessageState, NewMessage, StoreError, lease_end,
    message_event, parse_json, to_json,
};

/// Queues `messages` (due now) with the ids they refer to.
pub(super) fn insert(
    tx: &Transaction<'_>,
    messages: &[NewMessage],
    refs: MessageRefs,
    state: MessageState,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if messages.is_empty() {
        return Ok(());
    }
    let mut stmt = tx.prepare_cached(
        "INSERT INTO messages (event, finding_id, approval_id, run_id, notifier, integration, destination,
                               text, state, next_attempt_at, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?10, ?9, ?9)",
    )?;
    for m in messages {
        stmt.execute(params![
            m.event,
            refs.finding_id,
            refs.approval_id,
            refs.run_id,
            m.notifier,
            m.integration,
            to_json(&m.destination)?,
            m.text,
            ts(&now),
            state.as_str()
        ])?;
    }
    Ok(())
}

/// Releases a run's held messages for delivery (its actions have all succeeded).
pub(super) fn release(
    tx: &Transaction<'_>,
    run_id: i64,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE messages SET state = 'pending', next_attempt_at = ?2 WHERE run_id = ?1 AND state = 'held'",
        params![run_id, ts(&now)],
    )?;
    Ok(())
}

/// Records that a delivery call of pending message `id` begins at `at` (the first such time is kept).
pub(super) fn begin_attempt(
    tx: &Transaction<'_>,
    id: i64,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE messages SET attempted_at = COALESCE(attempted_at, ?2) WHERE id = ?1 AND state = 'pending'",
        params![id, ts(&at)],
    )?;
    Ok(())
}

/// Extends `owner`'s claim on a pending message before it is sent; false if the claim is lost.
pub(super) fn renew(
    tx: &Transaction<'_>,
    owner: &str,
    id: i64,
    until: DateTime<Utc>,
) -> Result<bool, StoreError> {
    Ok(tx.execute(
        "UPDATE messages SET claim_expires = ?3 WHERE id = ?1 AND claimed_by = ?2 AND state = 'pending'",
        params![id, owner, ts(&until)],
    )? > 0)
}

/// Claims due pending messages whose lease is free.
pub(super) fn claim(
    tx: &Transaction<'_>,
    owner: &str,
    now: DateTime<Utc>,
    lease: std::time::Duration,
    limit: usize,
) -> Result<Vec<MessageRecord>, StoreError> {
    let mut stmt = tx.prepare_cached(&format!(
        "UPDATE messages SET claimed_by = ?1, claim_expires = ?2
         WHERE id IN (SELECT id FROM messages
                      WHERE state = 'pending' AND next_attempt_at <= ?3
                        AND (claim_expires IS NULL OR claim_expires < ?3)
                      ORDER BY id LIMIT ?4)
         RETURNING {COLUMNS}"
    ))?;
    let rows = stmt.query_map(
        params![
            owner,
            ts(&lease_end(now, lease)),
            ts(&now),
            i64::try_from(limit).unwrap_or(i64::MAX)
        ],
        read,
    )?;
    let mut out: Vec<MessageRecord> = rows.map(|r| r?).collect::<Result<_, _>>()?;
    out.sort_by_key(|m| m.id);
    Ok(out)
}

/// Records one delivery attempt and its audit entry; false if `owner` no longer holds the claim.
pub(super) fn finish(
    tx: &Transaction<'_>,
    owner: &str,
    id: i64,
    outcome: &MessageOutcome,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let (state, sent_at, next, result, error) = outcome.columns(now)?;
    let sent_at = sent_at.as_ref().map(ts);
    let moved = tx.execute(
        "UPDATE messages SET state = ?3, attempts = attempts + ?8, sent_at = ?4, next_attempt_at = ?5,
                result = ?6, error = ?7, claimed_by = NULL, claim_expires = NULL
         WHERE id = ?1 AND state = 'pending' AND claimed_by = ?2",
        params![id, owner, state.as_str(), sent_at, ts(&next), result, error, i32::from(outcome.attempted())],
    )?;
    if moved == 0 {
        return Ok(false);
    }
    if !outcome.attempted() {
        return Ok(true);
    }
    let m = load(tx, id)?.ok_or_else(|| StoreError::Corrupt(format!("message {id} vanished")))?;
    append_in(tx, message_event(&m, outcome).as_slice())?;
    Ok(true)
}

const COLUMNS: &str =
    "id, event, finding_id, approval_id, run_id, notifier, integration, destination, text,
       state, attempts, next_attempt_at, created_at, sent_at, result, error, attempted_at";

/// One message.
pub(super) fn load(c: &Connection, id: i64) -> Result<Option<MessageRecord>, StoreError> {
    let mut stmt = c.prepare_cached(&format!("SELECT {COLUMNS} FROM messages WHERE id = ?1"))?;
    stmt.query_row([id], read).optional()?.transpose()
}

/// Every message (of one approval, when given), by id.
pub(super) fn list(
    c: &Connection,
    approval_id: Option<i64>,
) -> Result<Vec<MessageRecord>, StoreError> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM messages WHERE (?1 IS NULL OR approval_id = ?1) ORDER BY id"
    ))?;
    let rows = stmt.query_map([approval_id], read)?;
    rows.map(|r| r?).collect()
}

/// Queues the follow-ups of a transition of approval `a` (copies of its requests).
pub(super) fn follow_up(
    tx: &Transaction<'_>,
    a: &crate::approval::Approval,
    t: &crate::approval::Transition,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    for (event, text, filter) in super::follow_ups(a, t) {
        // SQLite numbers `$N` by first appearance; `?N` is positional.
        let sql = super::follow_up_sql(filter).replace('$', "?");
        tx.execute(&sql, params![a.id, event, text, ts(&now)])?;
    }
    Ok(())
}

fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<MessageRecord, StoreError>> {
    let destination: String = r.get(7)?;
    let state: String = r.get(9)?;
    let next: String = r.get(11)?;
    let created: String = r.get(12)?;
    let sent: Option<String> = r.get(13)?;
    let result: Option<String> = r.get(14)?;
    let attempted: Option<String> = r.get(16)?;
    let (id, event, finding_id, approval_id, run_id, notifier, integration, text) = (
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(8)?,
    );
    let (attempts, error) = (r.get(10)?, r.get(15)?);
    Ok((|| {
        Ok(MessageRecord {
            id,
            event,
            finding_id,
            approval_id,
            run_id,
            notifier,
            integration,
            destination: parse_json("message destination", &destination)?,
            text,
            state: MessageState::parse(&state)?,
            attempts,
            next_attempt_at: parse_ts(&next)?,
            created_at: parse_ts(&created)?,
            sent_at: sent.as_deref().map(parse_ts).transpose()?,
            result: result
                .as_deref()
                .map(|r| parse_json("message result", r))
                .transpose()?,
            error,
            attempted_at: attempted.as_deref().map(parse_ts).transpose()?,
        })
    })())
}
