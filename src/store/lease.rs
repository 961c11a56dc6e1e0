//! Claims with a lease: when one runs out, who holds claims, and freeing a gone owner's.
//! Each claim itself (runs, actions, messages, ticks) is one guarded `UPDATE … WHERE id IN
//! (SELECT … ORDER BY id LIMIT n [FOR UPDATE SKIP LOCKED]) RETURNING …` in its concept's file.

use chrono::{DateTime, Utc};

use super::StoreError;
use super::seam::{Row, Tx, args};

/// Owners holding claims on runs, pending actions and messages, and running ticks.
const HOLDERS: &str =
    "SELECT claimed_by FROM remediation_runs WHERE claimed_by IS NOT NULL AND state IN ('requested', 'decided')
     UNION SELECT claimed_by FROM actions WHERE claimed_by IS NOT NULL AND state = 'pending'
     UNION SELECT claimed_by FROM messages WHERE claimed_by IS NOT NULL AND state = 'pending'
     UNION SELECT claimed_by FROM ticks WHERE claimed_by IS NOT NULL AND state = 'running'";

/// Frees one owner's claims (`$1`), table by table.
const RELEASE: [&str; 4] = [
    "UPDATE remediation_runs SET claimed_by = NULL, claim_expires = NULL
     WHERE claimed_by = $1 AND state IN ('requested', 'decided')",
    "UPDATE actions SET claimed_by = NULL, claim_expires = NULL WHERE claimed_by = $1 AND state = 'pending'",
    "UPDATE messages SET claimed_by = NULL, claim_expires = NULL WHERE claimed_by = $1 AND state = 'pending'",
    "UPDATE ticks SET claimed_by = NULL, claim_expires = NULL WHERE claimed_by = $1 AND state = 'running'",
];

/// When a claim taken at `now` for `lease` runs out.
pub(crate) fn lease_end(now: DateTime<Utc>, lease: std::time::Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(lease).unwrap_or_else(|_| chrono::Duration::seconds(60))
}

/// What to claim: rows of `table` in `state` (and `due`, an extra condition on `$3`, now),
/// returning `columns`.
pub(crate) struct Claim<'a> {
    /// The table.
    pub table: &'a str,
    /// The state a claimable row is in.
    pub state: &'a str,
    /// A further condition, or empty.
    pub due: &'a str,
    /// The columns the claimed rows are returned with.
    pub columns: &'a str,
}

/// Claims up to `limit` rows `what` describes whose lease is free (none, or passed at `now`)
/// for `owner` until `lease` passes, lowest ids first; PostgreSQL skips rows another
/// transaction holds. Returns the claimed rows (in no order).
pub(crate) async fn claim<T: Tx>(
    tx: &mut T,
    what: Claim<'_>,
    owner: &str,
    now: DateTime<Utc>,
    lease: std::time::Duration,
    limit: usize,
) -> Result<Vec<Row>, StoreError> {
    let Claim {
        table,
        state,
        due,
        columns,
    } = what;
    let sql = format!(
        "UPDATE {table} SET claimed_by = $1, claim_expires = $2
         WHERE id IN (SELECT id FROM {table}
                      WHERE state = '{state}' {due} AND (claim_expires IS NULL OR claim_expires < $3)
                      ORDER BY id LIMIT $4 {})
         RETURNING {columns}",
        T::SKIP_LOCKED
    );
    tx.query(&sql, &args![owner, lease_end(now, lease), now, limit])
        .await
}

/// Owners holding a claim on a run, a pending action, a message or a running tick.
pub(crate) async fn holders<T: Tx>(tx: &mut T) -> Result<Vec<String>, StoreError> {
    tx.query(HOLDERS, &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Frees every claim `owner` holds on runs, pending actions, messages and running ticks;
/// returns how many. Started actions keep theirs: they are settled, never re-run.
pub(crate) async fn release<T: Tx>(tx: &mut T, owner: &str) -> Result<u64, StoreError> {
    let mut n = 0;
    for sql in RELEASE {
        n += tx.execute(sql, &args![owner]).await?;
    }
    Ok(n)
}
