//! Reading findings and run records back: lists, pages, one finding, the latest runs.

use crate::finding::Finding;
use crate::store::seam::{Row, Tx, Value, args};
use crate::store::{
    FindingFilter, RunRecord, StoreError, Tick, parse_json, parse_run_status, parse_severity,
    parse_status,
};

/// Open findings report the latest successful run as `last_seen`: the run saw them without
/// rewriting them. An open finding with `accepted_until` set is `accepted` ([`STATUS`]).
const SELECT: &str = "SELECT f.id, f.query, f.key_json,
       CASE WHEN f.status = 'open' AND f.accepted_until IS NOT NULL THEN 'accepted' ELSE f.status END,
       f.severity, f.first_seen,
       CASE WHEN f.status = 'open' AND qs.last_success_at > f.last_seen THEN qs.last_success_at ELSE f.last_seen END,
       f.resolved_at, f.reopened, f.row_json, f.accepted_until, f.accepted_by, f.accepted_reason
  FROM findings f LEFT JOIN query_state qs ON qs.name = f.query";

/// A finding's status as listed: `accepted` is an open finding with `accepted_until` set.
const STATUS: &str = "CASE WHEN f.status = 'open' AND f.accepted_until IS NOT NULL THEN 'accepted' ELSE f.status END";

/// Findings matching `filter` with ids above `after`, by id, at most `limit` (all: `None`).
pub(crate) async fn list<T: Tx>(
    tx: &mut T,
    filter: &FindingFilter,
    after: i64,
    limit: Option<usize>,
) -> Result<Vec<Finding>, StoreError> {
    let mut sql = format!("{SELECT} WHERE f.id > $1");
    let mut params = vec![Value::Int(after)];
    if let Some(query) = &filter.query {
        params.push(query.into());
        sql += &format!(" AND f.query = ${}", params.len());
    }
    if let Some(status) = filter.status {
        params.push(status.as_str().into());
        sql += &format!(" AND {STATUS} = ${}", params.len());
    }
    sql += " ORDER BY f.id";
    if let Some(limit) = limit {
        params.push(Value::from(limit));
        sql += &format!(" LIMIT ${}", params.len());
    }
    tx.query(&sql, &params).await?.iter().map(read).collect()
}

/// One finding.
pub(crate) async fn load<T: Tx>(tx: &mut T, id: i64) -> Result<Option<Finding>, StoreError> {
    let sql = format!("{SELECT} WHERE f.id = $1");
    tx.query_opt(&sql, &args![id])
        .await?
        .as_ref()
        .map(read)
        .transpose()
}

/// The finding a claimed run is about.
pub(crate) async fn of_run<T: Tx>(
    tx: &mut T,
    run_id: i64,
    finding_id: i64,
) -> Result<Finding, StoreError> {
    load(tx, finding_id)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("run {run_id}: finding {finding_id} missing")))
}

/// The latest runs, newest first (of one query, or all).
pub(crate) async fn runs<T: Tx>(
    tx: &mut T,
    query: Option<&str>,
    limit: usize,
) -> Result<Vec<RunRecord>, StoreError> {
    const COLUMNS: &str =
        "SELECT id, query, started_at, finished_at, status, rows, inserted, updated, deleted,
                                  baseline, error, tick, ran_by FROM runs";
    let rows = match query {
        Some(q) => {
            let sql = format!("{COLUMNS} WHERE query = $1 ORDER BY id DESC LIMIT $2");
            tx.query(&sql, &args![q, limit]).await?
        }
        None => {
            let sql = format!("{COLUMNS} ORDER BY id DESC LIMIT $1");
            tx.query(&sql, &args![limit]).await?
        }
    };
    rows.iter().map(read_run).collect()
}

fn read(r: &Row) -> Result<Finding, StoreError> {
    let status: String = r.get(3)?;
    let accepted = status == "accepted";
    let key: String = r.get(2)?;
    let severity: String = r.get(4)?;
    let row: String = r.get(9)?;
    Ok(Finding {
        accepted_until: r.get::<Option<_>>(10)?.filter(|_| accepted),
        accepted_by: r.get::<Option<String>>(11)?.filter(|_| accepted),
        accepted_reason: r.get::<Option<String>>(12)?.filter(|_| accepted),
        id: r.get(0)?,
        query: r.get(1)?,
        key: parse_json("finding JSON", &key)?,
        status: parse_status(&status)?,
        severity: parse_severity(&severity)?,
        first_seen: r.get(5)?,
        last_seen: r.get(6)?,
        resolved_at: r.get(7)?,
        reopened: r.get(8)?,
        row: parse_json("finding JSON", &row)?,
    })
}

fn read_run(r: &Row) -> Result<RunRecord, StoreError> {
    let status: String = r.get(4)?;
    let count = |i| r.get::<i64>(i).map(|n| u64::try_from(n).unwrap_or(0));
    Ok(RunRecord {
        id: r.get(0)?,
        query: r.get(1)?,
        started_at: r.get(2)?,
        finished_at: r.get(3)?,
        status: parse_run_status(&status)?,
        rows: count(5)?,
        inserted: count(6)?,
        updated: count(7)?,
        deleted: count(8)?,
        baseline: r.get(9)?,
        error: r.get(10)?,
        tick: r
            .get::<Option<_>>(11)?
            .zip(r.get::<Option<String>>(12)?)
            .map(|(at, by)| Tick { at, by }),
    })
}
