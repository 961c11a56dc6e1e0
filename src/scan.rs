//! One run of one query: source → diff → store, committed in one transaction.
//!
//! A run that fails anywhere (connection, SQL, timeout, NULL or duplicate key,
//! store) changes nothing but the run log: the previous snapshot and every
//! finding stay exactly as they were.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::{Map, Value};

use crate::config::{Project, Query};
use crate::diff::{Changes, Diff, DiffError, KeyHash, key_hash_of};
use crate::finding::Status;
use crate::source::{Source, SourceError};
use crate::store::{
    CommitOutcome, FindingFilter, RunCommit, RunRecord, RunStatus, Store, StoreError, Tick,
};

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// Reading the rows failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The rows cannot be diffed (NULL or duplicate key, missing column).
    #[error(transparent)]
    Diff(#[from] DiffError),
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A finished run's numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    /// Rows read.
    pub rows: u64,
    /// New keys.
    pub inserted: u64,
    /// Changed keys.
    pub updated: u64,
    /// Gone keys.
    pub deleted: u64,
    /// The first run only recorded a baseline.
    pub baseline: bool,
    /// What happened to findings.
    pub outcome: CommitOutcome,
}

/// The result of running one query.
#[derive(Debug)]
pub struct QueryRun {
    /// The query.
    pub query: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// How long it took.
    pub duration: Duration,
    /// What it did, or why it failed.
    pub result: Result<RunSummary, ScanError>,
}

/// A finding a dry run would open or reopen.
#[derive(Debug, Clone)]
pub struct DryFinding {
    /// The resolved finding that would reopen; `None` for a new one.
    pub id: Option<i64>,
    /// Its key.
    pub key: Map<String, Value>,
    /// Its row.
    pub row: Map<String, Value>,
}

/// What a run would change, without changing anything (`vigilo scan --dry-run`).
#[derive(Debug)]
pub struct DryRun {
    /// The query.
    pub query: String,
    /// Rows read.
    pub rows: u64,
    /// A first run with `on_first_run = baseline`.
    pub baseline: bool,
    /// Keys that would open a new finding, with their rows.
    pub opened: Vec<DryFinding>,
    /// Keys whose resolved finding would reopen (with the finding's id).
    pub reopened: Vec<DryFinding>,
    /// Keys whose row changed (finding id if one is open, key).
    pub updated: Vec<Map<String, Value>>,
    /// Open findings that would be resolved (finding id, key).
    pub resolved: Vec<(i64, Map<String, Value>)>,
    /// Keys that would be forgotten without a finding (baseline keys gone).
    pub deleted_without_finding: u64,
}

/// Runs queries against their sources and commits the changes to the store.
pub struct Scanner {
    /// The loaded project.
    project: Arc<Project>,
    /// Where snapshots, findings and runs live.
    store: Arc<dyn Store>,
    /// One source per `[database.NAME]`, pools shared by all runs.
    sources: HashMap<String, Arc<Source>>,
}

impl Scanner {
    /// Prepares a source per configured database (connections open on first use).
    pub fn new(project: Arc<Project>, store: Arc<dyn Store>) -> Result<Scanner, SourceError> {
        let sources = project
            .databases
            .values()
            .map(|db| Ok((db.name.clone(), Arc::new(Source::new(db)?))))
            .collect::<Result<_, SourceError>>()?;
        Ok(Scanner {
            project,
            store,
            sources,
        })
    }

    /// The project it runs.
    pub fn project(&self) -> &Arc<Project> {
        &self.project
    }

    /// The store it commits to.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Runs `query` once, commits its changes, and records the run (failed runs too).
    pub async fn run(&self, query: &Query) -> QueryRun {
        self.run_for(query, None).await
    }

    /// [`Scanner::run`] for a scheduled tick this process claimed: the run is recorded with it
    /// and commits (or records its failure) only while the claim holds.
    pub async fn run_tick(&self, query: &Query, tick: Tick) -> QueryRun {
        self.run_for(query, Some(tick)).await
    }

    async fn run_for(&self, query: &Query, tick: Option<Tick>) -> QueryRun {
        let started_at = Utc::now();
        let clock = Instant::now();
        let result = self.run_and_commit(query, started_at, tick.clone()).await;
        let duration = clock.elapsed();
        match &result {
            Ok(s) => {
                crate::metrics::observe_run(
                    &query.name,
                    true,
                    duration,
                    s.rows,
                    [s.inserted, s.updated, s.deleted],
                );
                tracing::info!(
                query = %query.name,
                rows = s.rows,
                inserted = s.inserted,
                updated = s.updated,
                deleted = s.deleted,
                baseline = s.baseline,
                opened = s.outcome.opened.len(),
                reopened = s.outcome.reopened.len(),
                resolved = s.outcome.resolved.len(),
                duration_ms = duration.as_millis() as u64,
                "query run succeeded"
                );
            }
            Err(ScanError::Store(e @ StoreError::TickLost { .. })) => {
                // The process that took the tick over records its run; this one records nothing.
                tracing::warn!(query = %query.name, error = %e, "query run discarded");
            }
            Err(e) => {
                crate::metrics::observe_run(&query.name, false, duration, 0, [0; 3]);
                tracing::error!(query = %query.name, duration_ms = duration.as_millis() as u64, error = %e, "query run failed");
                let record = RunRecord {
                    id: 0,
                    query: query.name.clone(),
                    started_at,
                    finished_at: Utc::now(),
                    status: RunStatus::Failed,
                    rows: 0,
                    inserted: 0,
                    updated: 0,
                    deleted: 0,
                    baseline: false,
                    error: Some(e.to_string()),
                    tick,
                };
                if let Err(store_err) = self.store.record_failed_run(&record).await {
                    tracing::error!(query = %query.name, error = %store_err, "could not record the failed run");
                }
            }
        }
        QueryRun {
            query: query.name.clone(),
            started_at,
            duration,
            result,
        }
    }

    /// Reads the rows and diffs them against the stored snapshot; changes nothing.
    async fn diff(&self, query: &Query) -> Result<Changes, ScanError> {
        let source = self.source(query)?;
        // The snapshot loads while the database works on the query.
        let (snapshot, rows) = tokio::join!(
            self.store.load_snapshot(&query.name),
            source.query(&query.sql)
        );
        let (snapshot, mut rows) = (snapshot?, rows?);
        let mut diff = Diff::new(query, &rows.columns, snapshot)?;
        while let Some(row) = rows.stream.next().await {
            match row {
                Ok(row) => diff.push(row)?,
                Err(e) => {
                    diff.flush()?;
                    return Err(e.into());
                }
            }
        }
        Ok(diff.finish()?)
    }

    async fn run_and_commit(
        &self,
        query: &Query,
        started_at: DateTime<Utc>,
        tick: Option<Tick>,
    ) -> Result<RunSummary, ScanError> {
        let started = Instant::now();
        let changes = self.diff(query).await?;
        let (rows, inserted, updated, deleted, baseline) = (
            changes.rows,
            changes.inserted.len() as u64,
            changes.updated.len() as u64,
            changes.deleted.len() as u64,
            changes.baseline,
        );
        let run = RunRecord {
            id: 0,
            query: query.name.clone(),
            started_at,
            finished_at: Utc::now(),
            status: RunStatus::Succeeded,
            rows,
            inserted,
            updated,
            deleted,
            baseline,
            error: None,
            tick,
        };
        let read = Instant::now();
        tracing::debug!(query = %query.name, rows, read_ms = (read - started).as_millis() as u64, "query read and diffed");
        let outcome = self
            .store
            .commit_run(RunCommit {
                run,
                severity: query.severity,
                remediation: query.remediation.clone(),
                changes,
                notify: query.notify.as_deref().map_or_else(Vec::new, |n| {
                    crate::outbox::for_notifier(
                        &self.project,
                        n,
                        crate::store::events::FINDING_OPENED,
                        None,
                    )
                }),
            })
            .await;
        tracing::debug!(query = %query.name, commit_ms = read.elapsed().as_millis() as u64, ok = outcome.is_ok(), "run committed");
        let outcome = outcome?;
        Ok(RunSummary {
            rows,
            inserted,
            updated,
            deleted,
            baseline,
            outcome,
        })
    }

    /// Shows what running `query` now would change; writes nothing.
    pub async fn dry_run(&self, query: &Query) -> Result<DryRun, ScanError> {
        let changes = self.diff(query).await?;
        // Existing findings of this query, by key hash, to tell new from reopened and name the resolved.
        let existing: HashMap<KeyHash, (i64, Status, Map<String, Value>)> = self
            .store
            .findings(&FindingFilter {
                query: Some(query.name.clone()),
                status: None,
            })
            .await?
            .into_iter()
            .map(|f| {
                let values: Vec<Value> = query
                    .primary_key
                    .iter()
                    .map(|c| f.key.get(c).cloned().unwrap_or(Value::Null))
                    .collect();
                (key_hash_of(&values), (f.id, f.status, f.key))
            })
            .collect();
        let mut dry = DryRun {
            query: query.name.clone(),
            rows: changes.rows,
            baseline: changes.baseline,
            opened: Vec::new(),
            reopened: Vec::new(),
            updated: Vec::new(),
            resolved: Vec::new(),
            deleted_without_finding: 0,
        };
        for ch in changes.inserted {
            let Some(f) = ch.finding else { continue };
            match existing.get(&ch.key_hash) {
                Some((id, Status::Resolved, _)) => dry.reopened.push(DryFinding {
                    id: Some(*id),
                    key: f.key_map(),
                    row: f.row_map(),
                }),
                Some((_, Status::Open | Status::Accepted, _)) => {}
                None => dry.opened.push(DryFinding {
                    id: None,
                    key: f.key_map(),
                    row: f.row_map(),
                }),
            }
        }
        dry.updated = changes
            .updated
            .into_iter()
            .filter_map(|c| c.finding.map(|f| f.key_map()))
            .collect();
        let deleted: HashSet<KeyHash> = changes.deleted.into_iter().collect();
        for key in &deleted {
            match existing.get(key) {
                Some((id, Status::Open | Status::Accepted, k)) => {
                    dry.resolved.push((*id, k.clone()))
                }
                _ => dry.deleted_without_finding += 1,
            }
        }
        dry.resolved.sort_by_key(|(id, _)| *id);
        Ok(dry)
    }

    /// Runs `query` now and gives, for each of `keys`, the row with that key in its result, if
    /// there is one (`recheck = true`); reads the rows once, keeps only the rows asked for.
    pub async fn present(
        &self,
        query: &Query,
        keys: &[&Map<String, Value>],
    ) -> Result<Vec<Option<Map<String, Value>>>, ScanError> {
        let mut rows = self.source(query)?.query(&query.sql).await?;
        let key_columns: Vec<(usize, &String)> = query
            .primary_key
            .iter()
            .map(|name| {
                rows.columns
                    .iter()
                    .position(|c| c == name)
                    .map(|i| (i, name))
                    .ok_or_else(|| DiffError::MissingColumn {
                        query: query.name.clone(),
                        setting: "primary_key",
                        column: name.clone(),
                        columns: rows.columns.join(", "),
                    })
            })
            .collect::<Result<_, _>>()?;
        let canonical = |key: &Map<String, Value>| Value::Object(key.clone()).to_string();
        let wanted: HashMap<String, usize> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (canonical(k), i))
            .collect();
        let mut found = vec![None; keys.len()];
        while let Some(row) = rows.stream.next().await {
            let row = row?;
            let key: Map<String, Value> = key_columns
                .iter()
                .map(|(i, name)| ((*name).clone(), row.get(*i).cloned().unwrap_or(Value::Null)))
                .collect();
            if let Some(&i) = wanted.get(&canonical(&key)) {
                found[i] = Some(rows.columns.iter().cloned().zip(row).collect());
            }
        }
        Ok(found)
    }

    fn source(&self, query: &Query) -> Result<&Arc<Source>, SourceError> {
        // Config validation guarantees the database exists; say so clearly if it somehow does not.
        self.sources
            .get(&query.database)
            .ok_or_else(|| SourceError::Connect {
                database: query.database.clone(),
                message: "no such [database] section".into(),
            })
    }
}

/// Runs `queries` one after another (as `vigilo scan` does) and returns each result.
pub async fn scan_all(scanner: &Scanner, queries: &[&Query]) -> Vec<QueryRun> {
    scan_all_with(scanner, queries, None).await
}

/// [`scan_all`], ticking `progress` (one step per query) when given.
pub async fn scan_all_with(
    scanner: &Scanner,
    queries: &[&Query],
    progress: Option<&indicatif::ProgressBar>,
) -> Vec<QueryRun> {
    let mut results = Vec::with_capacity(queries.len());
    for q in queries {
        if let Some(p) = progress {
            p.set_message(format!("running {}", q.name));
        }
        let run = scanner.run(q).await;
        if let Some(p) = progress {
            let line = match &run.result {
                Ok(s) => format!(
                    "✓ {}: {} rows, +{} ~{} -{} ({:.1}s)",
                    q.name,
                    s.rows,
                    s.inserted,
                    s.updated,
                    s.deleted,
                    run.duration.as_secs_f64()
                ),
                Err(e) => format!("✗ {}: {e}", q.name),
            };
            p.println(crate::redact::text(&line));
            p.inc(1);
        }
        results.push(run);
    }
    if let Some(p) = progress {
        p.finish_and_clear();
    }
    results
}

/// Picks queries by name (all enabled ones when `names` is empty); unknown names are listed in the error.
pub fn select_queries<'p>(
    project: &'p Project,
    names: &[String],
) -> Result<Vec<&'p Query>, String> {
    if names.is_empty() {
        return Ok(project.enabled_queries().collect());
    }
    let unknown: Vec<&str> = names
        .iter()
        .filter(|n| !project.queries.contains_key(n.as_str()))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        let known: Vec<&str> = project.queries.keys().map(String::as_str).collect();
        return Err(format!(
            "unknown quer{} {}; the project has: {}",
            if unknown.len() == 1 { "y" } else { "ies" },
            unknown.join(", "),
            known.join(", ")
        ));
    }
    // Deduplicate, keep the order given.
    let mut seen = BTreeMap::new();
    Ok(names
        .iter()
        .filter(|n| seen.insert(n.as_str(), ()).is_none())
        .filter_map(|n| project.queries.get(n.as_str()))
        .collect())
}
