//! PostgreSQL: the remediation runs a commit requests for its opened and reopened findings,
//! in one statement over an array (a transition requesting one run uses
//! `ops::commands::request_run`).

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;

use crate::store::StoreError;

/// Creates a requested run for each finding (inside the scan's commit).
pub(super) async fn request_runs(
    tx: &Transaction<'_>,
    remediation: &str,
    finding_ids: &[i64],
    at: DateTime<Utc>,
    requested_by: Option<&str>,
) -> Result<Vec<i64>, StoreError> {
    if finding_ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = tx
        .query(
            "INSERT INTO remediation_runs (finding_id, remediation, state, requested_at, requested_by, updated_at)
             SELECT f, $2, 'requested', $3, $4, $3 FROM unnest($1::bigint[]) WITH ORDINALITY AS u(f, n)
             ORDER BY n RETURNING id",
            &[&finding_ids, &remediation, &at, &requested_by],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
