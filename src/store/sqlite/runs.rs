//! SQLite: the remediation runs a commit requests for its opened and reopened findings, one
//! prepared insert each (a transition requesting one run uses `ops::commands::request_run`).

use rusqlite::{Transaction, params};

use crate::store::StoreError;

/// Creates a requested run for each finding (inside the scan's commit).
pub(super) fn request_runs(
    tx: &Transaction<'_>,
    remediation: &str,
    finding_ids: &[i64],
    at: &str,
    requested_by: Option<&str>,
) -> Result<Vec<i64>, StoreError> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO remediation_runs (finding_id, remediation, state, requested_at, requested_by, updated_at)
         VALUES (?1, ?2, 'requested', ?3, ?4, ?3)",
    )?;
    let mut ids = Vec::with_capacity(finding_ids.len());
    for id in finding_ids {
        insert.execute(params![id, remediation, at, requested_by])?;
        ids.push(tx.last_insert_rowid());
    }
    Ok(ids)
}
