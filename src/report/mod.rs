//! `vigilo report`: what was found, who decided what, what was done, and how fast.
//!
//! A report is made in two passes over the store's findings, a page at a time: the first
//! computes the summary (counts, durations, the open-findings timeline), the second writes
//! the findings as it reads them, so a report over a large inventory never holds every
//! finding. Approvals and actions are held (one compact record each). Every format goes
//! through the process-wide redactor.
//!
//! Formats: `json` (the summary and the full lists), `csv` (one row per finding, stable
//! header), `md` (renders in a code host), `html` (one self-contained file, inline CSS and
//! SVG charts drawn by plotters, printable).

mod charts;
mod html;
mod text;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use crate::approval::Approval;
use crate::config::{Project, Severity};
use crate::finding::{Finding, Status};
use crate::store::{ActionRecord, ActionState, FindingFilter, RunRecord, Store, StoreError};
use crate::timestamp::rfc3339;

/// How many findings are read per page.
const PAGE: usize = 1000;

/// The severities, most severe first (the order of every severity listing).
pub const SEVERITIES: [Severity; 4] = [
    Severity::Critical,
    Severity::High,
    Severity::Medium,
    Severity::Low,
];

/// A report's output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One self-contained HTML page.
    Html,
    /// Markdown.
    Md,
    /// One row per finding.
    Csv,
    /// The summary and the full lists.
    Json,
}

/// What the report covers.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Only this period: findings new or resolved, approvals requested, since then.
    pub since: Option<DateTime<Utc>>,
    /// Only this query.
    pub query: Option<String>,
}

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing failed.
    #[error("cannot write the report: {0}")]
    Io(#[from] std::io::Error),
    /// A chart could not be drawn.
    #[error("cannot draw a chart: {0}")]
    Chart(String),
}

/// Mean and 90th percentile of a set of durations, in seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Durations {
    /// How many.
    pub count: usize,
    /// Mean, seconds.
    pub mean_seconds: Option<f64>,
    /// 90th percentile (nearest rank), seconds.
    pub p90_seconds: Option<i64>,
}

impl Durations {
    /// Of these durations, in seconds.
    pub fn of(mut seconds: Vec<i64>) -> Durations {
        if seconds.is_empty() {
            return Durations::default();
        }
        seconds.sort_unstable();
        let n = seconds.len();
        let sum: f64 = seconds.iter().map(|s| *s as f64).sum();
        // Nearest rank: the smallest value with at least 90% of the values at or below it.
        let rank = (0.9 * n as f64).ceil() as usize;
        Durations {
            count: n,
            mean_seconds: Some(sum / n as f64),
            p90_seconds: Some(seconds[rank.clamp(1, n) - 1]),
        }
    }
}

/// Open findings of one query and severity.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpenCount {
    /// The query.
    pub query: String,
    /// The severity.
    pub severity: &'static str,
    /// How many are open.
    pub open: u64,
}

/// The report's numbers.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Open findings per query and severity (only non-zero ones).
    pub open: Vec<OpenCount>,
    /// All open findings.
    pub open_total: u64,
    /// Findings first seen in the period.
    pub new: u64,
    /// Findings resolved in the period.
    pub resolved: u64,
    /// Remediations (approvals requested in the period) by outcome: approved, denied, expired, pending.
    pub remediations: BTreeMap<&'static str, u64>,
    /// Actions of those remediations by state.
    pub actions: BTreeMap<&'static str, u64>,
    /// From first seen to resolved, for findings resolved in the period.
    pub time_to_resolve: Durations,
    /// From request to decision, for approvals decided in the period.
    pub time_to_decision: Durations,
    /// Findings whose risk is accepted now: who, why and until when.
    pub accepted: Vec<AcceptedRisk>,
}

/// A finding whose risk is accepted for a while (interface.md section 8.1).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AcceptedRisk {
    /// The finding.
    pub id: i64,
    /// Its query.
    pub query: String,
    /// Its severity.
    pub severity: &'static str,
    /// Its key columns.
    pub key: Value,
    /// Until when.
    pub accepted_until: Option<String>,
    /// Who accepted it.
    pub accepted_by: Option<String>,
    /// Why.
    pub accepted_reason: Option<String>,
}

/// One day's open findings per severity (in [`SEVERITIES`] order).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Day {
    /// The day (UTC).
    pub day: NaiveDate,
    /// Open at its end, per severity.
    pub open: [i64; 4],
}

/// A query's part of the report.
#[derive(Debug, Clone, Serialize)]
pub struct QueryPart {
    /// The query's name.
    pub name: String,
    /// Its title.
    pub title: String,
    /// Its severity.
    pub severity: &'static str,
    /// Its schedule, as written; `None`: only on `vigilo scan`.
    pub schedule: Option<String>,
    /// Its remediation.
    pub remediation: Option<String>,
    /// Its last run.
    pub last_run: Option<Value>,
}

/// What the report says of one finding's remediation: its latest approval.
#[derive(Debug, Clone)]
struct Decision {
    state: &'static str,
    decided_by: Vec<String>,
    decided_at: Option<DateTime<Utc>>,
}

/// Everything a report holds besides the findings, which are read as they are written.
pub struct Report<'a> {
    project: &'a Project,
    store: &'a dyn Store,
    options: Options,
    /// When it was made.
    pub generated_at: DateTime<Utc>,
    /// The numbers.
    pub summary: Summary,
    /// The queries covered, by name.
    pub queries: Vec<QueryPart>,
    /// Open findings at the end of each day, from the first finding (or `since`) to today.
    pub timeline: Vec<Day>,
    /// The approvals covered, by id.
    pub approvals: Vec<Approval>,
    /// Their actions, by approval id.
    actions: HashMap<i64, Vec<ActionRecord>>,
    /// The latest approval of each finding.
    decisions: HashMap<i64, Decision>,
    /// The query of each finding the report covers.
    finding_query: HashMap<i64, u32>,
}

/// The outcome word of an approval: approved (its option runs actions), denied, expired, pending.
pub fn outcome(project: &Project, a: &Approval) -> &'static str {
    word(crate::outcome::outcome(project, a))
}

pub use crate::outcome::word;

fn in_period(at: DateTime<Utc>, since: Option<DateTime<Utc>>) -> bool {
    since.is_none_or(|s| at >= s)
}

fn severity_index(s: Severity) -> usize {
    SEVERITIES.iter().position(|x| *x == s).unwrap_or(0)
}

impl<'a> Report<'a> {
    /// Reads what the report needs (the first pass over the findings).
    pub async fn collect(
        project: &'a Project,
        store: &'a dyn Store,
        options: Options,
    ) -> Result<Report<'a>, ReportError> {
        let generated_at = Utc::now();
        let since = options.since;
        let names: Vec<&String> = project
            .queries
            .keys()
            .filter(|q| {
                options
                    .query
                    .as_deref()
                    .is_none_or(|only| only == q.as_str())
            })
            .collect();
        let mut queries = Vec::new();
        for name in &names {
            let q = &project.queries[name.as_str()];
            let last_run = store.runs(Some(name), 1).await?.into_iter().next();
            queries.push(QueryPart {
                name: q.name.clone(),
                title: q.title.clone(),
                severity: q.severity.as_str(),
                schedule: q.schedule.as_ref().map(ToString::to_string),
                remediation: q.remediation.clone(),
                last_run: last_run.as_ref().map(run_json),
            });
        }

        let mut summary = Summary::default();
        let mut open: BTreeMap<(String, usize), u64> = BTreeMap::new();
        let mut resolve_times = Vec::new();
        let mut changes: BTreeMap<NaiveDate, [i64; 4]> = BTreeMap::new();
        let mut finding_query = HashMap::new();
        for (qi, part) in queries.iter().enumerate() {
            let filter = FindingFilter {
                query: Some(part.name.clone()),
                status: None,
            };
            let qi = u32::try_from(qi).unwrap_or(u32::MAX);
            for_each(store, &filter, |f| {
                finding_query.insert(f.id, qi);
                let sev = severity_index(f.severity);
                if f.status == Status::Open {
                    *open.entry((f.query.clone(), sev)).or_default() += 1;
                    summary.open_total += 1;
                }
                if f.status == Status::Accepted {
                    summary.accepted.push(AcceptedRisk {
                        id: f.id,
                        query: f.query.clone(),
                        severity: f.severity.as_str(),
                        key: Value::Object(f.key.clone()),
                        accepted_until: f.accepted_until.as_ref().map(rfc3339),
                        accepted_by: f.accepted_by.clone(),
                        accepted_reason: f.accepted_reason.clone(),
                    });
                }
                if in_period(f.first_seen, since) {
                    summary.new += 1;
                }
                changes.entry(f.first_seen.date_naive()).or_default()[sev] += 1;
                if let Some(at) = f.resolved_at {
                    changes.entry(at.date_naive()).or_default()[sev] -= 1;
                    if in_period(at, since) {
                        summary.resolved += 1;
                        resolve_times.push((at - f.first_seen).num_seconds());
                    }
                }
            })
            .await?;
        }
        summary.open = open
            .into_iter()
            .map(|((query, sev), n)| OpenCount {
                query,
                severity: SEVERITIES[sev].as_str(),
                open: n,
            })
            .collect();
        summary.time_to_resolve = Durations::of(resolve_times);

        let mut approvals: Vec<Approval> = store
            .approvals(false)
            .await?
            .into_iter()
            .filter(|a| finding_query.contains_key(&a.finding_id))
            .collect();
        approvals.sort_by_key(|a| a.id);
        let mut decisions = HashMap::new();
        for a in &approvals {
            decisions.insert(
                a.finding_id,
                Decision {
                    state: outcome(project, a),
                    decided_by: a.decided_by.clone(),
                    decided_at: a.decided_at,
                },
            );
        }
        approvals.retain(|a| in_period(a.requested_at, since));
        for word in ["approved", "denied", "expired", "pending"] {
            summary.remediations.insert(word, 0);
        }
        let mut decision_times = Vec::new();
        for a in &approvals {
            *summary.remediations.entry(outcome(project, a)).or_default() += 1;
            if let Some(at) = a.decided_at {
                decision_times.push((at - a.requested_at).num_seconds());
            }
        }
        summary.time_to_decision = Durations::of(decision_times);

        let covered: HashMap<i64, ()> = approvals.iter().map(|a| (a.id, ())).collect();
        let mut actions: HashMap<i64, Vec<ActionRecord>> = HashMap::new();
        for word in ["succeeded", "failed", "skipped", "unknown", "pending"] {
            summary.actions.insert(word, 0);
        }
        for a in store.actions().await? {
            let Some(approval) = a.approval_id.filter(|id| covered.contains_key(id)) else {
                continue;
            };
            let word = match a.state {
                ActionState::Succeeded => "succeeded",
                ActionState::Failed => "failed",
                ActionState::Skipped => "skipped",
                ActionState::Unknown => "unknown",
                ActionState::Pending | ActionState::Started => "pending",
            };
            *summary.actions.entry(word).or_default() += 1;
            actions.entry(approval).or_default().push(a);
        }

        let timeline = timeline(&changes, since, generated_at);
        Ok(Report {
            project,
            store,
            options,
            generated_at,
            summary,
            queries,
            timeline,
            approvals,
            actions,
            decisions,
            finding_query,
        })
    }

    /// Writes the report in `format` (the second pass over the findings).
    pub async fn write(&self, format: Format, out: &mut dyn Write) -> Result<(), ReportError> {
        match format {
            Format::Json => self.json(out).await,
            Format::Csv => self.csv(out).await,
            Format::Md => text::markdown(self, out).await,
            Format::Html => html::page(self, out).await,
        }
    }

    /// The period, in words.
    pub fn period(&self) -> String {
        match self.options.since {
            Some(s) => format!("since {}", rfc3339(&s)),
            None => "all time".into(),
        }
    }

    /// The query filter, if any.
    pub fn query_filter(&self) -> Option<&str> {
        self.options.query.as_deref()
    }

    /// The actions of approval `id`.
    pub fn actions_of(&self, id: i64) -> &[ActionRecord] {
        self.actions.get(&id).map_or(&[], Vec::as_slice)
    }

    /// The query of finding `id`, if the report covers it.
    pub fn query_of(&self, finding: i64) -> Option<&str> {
        let i = *self.finding_query.get(&finding)?;
        self.queries.get(i as usize).map(|q| q.name.as_str())
    }

    /// Calls `each` with every finding of `query`, a page at a time, with its row for the report.
    pub async fn findings_of(
        &self,
        query: &str,
        mut each: impl FnMut(&FindingRow) -> std::io::Result<()>,
    ) -> Result<(), ReportError> {
        let filter = FindingFilter {
            query: Some(query.to_string()),
            status: None,
        };
        let mut failed = None;
        for_each(self.store, &filter, |f| {
            if failed.is_none()
                && let Err(e) = each(&self.row(f))
            {
                failed = Some(e);
            }
        })
        .await?;
        failed.map_or(Ok(()), |e| Err(e.into()))
    }

    /// A finding as the report shows it.
    fn row(&self, f: &Finding) -> FindingRow {
        let q = self.project.queries.get(&f.query);
        let d = self.decisions.get(&f.id);
        FindingRow {
            id: f.id,
            query: f.query.clone(),
            severity: f.severity.as_str(),
            status: f.status.as_str(),
            key: Value::Object(f.key.clone()),
            first_seen: rfc3339(&f.first_seen),
            last_seen: rfc3339(&f.last_seen),
            resolved_at: f.resolved_at.as_ref().map(rfc3339),
            remediation: q.and_then(|q| q.remediation.clone()),
            remediation_state: d.map_or(
                if q.is_some_and(|q| q.remediation.is_some()) {
                    "requested"
                } else {
                    "none"
                },
                |d| d.state,
            ),
            decided_by: d.map(|d| d.decided_by.join(", ")).unwrap_or_default(),
            decided_at: d.and_then(|d| d.decided_at.as_ref().map(rfc3339)),
            accepted_until: f.accepted_until.as_ref().map(rfc3339),
            accepted_by: f.accepted_by.clone(),
            accepted_reason: f.accepted_reason.clone(),
        }
    }

    async fn json(&self, out: &mut dyn Write) -> Result<(), ReportError> {
        let head = json!({
            "generated_at": rfc3339(&self.generated_at),
            "since": self.options.since.as_ref().map(rfc3339),
            "query": self.options.query,
            "summary": self.summary,
            "timeline": self.timeline,
        });
        let Value::Object(head) = head else {
            unreachable!("a json! object is an object")
        };
        writeln!(out, "{{")?;
        for (k, v) in head {
            writeln!(out, "{}: {},", Value::String(k), v)?;
        }
        writeln!(out, "\"queries\": [")?;
        for (i, q) in self.queries.iter().enumerate() {
            // The part's fields, then its findings as they are read, then the close.
            let text = serde_json::to_string(q).map_err(std::io::Error::other)?;
            let fields = text.strip_suffix('}').unwrap_or(&text);
            writeln!(
                out,
                "{}{fields},\"findings\": [",
                if i > 0 { "," } else { "" }
            )?;
            let mut first = true;
            self.findings_of(&q.name, |f| {
                let line = serde_json::to_string(f).map_err(std::io::Error::other)?;
                writeln!(out, "{}{line}", if first { "" } else { "," })?;
                first = false;
                Ok(())
            })
            .await?;
            writeln!(out, "]}}")?;
        }
        writeln!(out, "],\n\"approvals\": [")?;
        for (i, a) in self.approvals.iter().enumerate() {
            let line = self.approval_json(a).to_string();
            writeln!(out, "{}{line}", if i > 0 { "," } else { "" })?;
        }
        writeln!(out, "]\n}}")?;
        Ok(())
    }

    /// An approval's entry in the approval log.
    pub fn approval_json(&self, a: &Approval) -> Value {
        json!({
            "id": a.id,
            "remediation": a.remediation,
            "finding_id": a.finding_id,
            "query": self.query_of(a.finding_id),
            "subject": a.subject,
            "status": a.status.as_str(),
            "decision": a.decision,
            "outcome": outcome(self.project, a),
            "requested_at": rfc3339(&a.requested_at),
            "decided_at": a.decided_at.as_ref().map(rfc3339),
            "decided_by": a.decided_by,
            "votes": a.votes.iter().map(|v| json!({
                "by": v.by, "option": v.option, "reason": v.reason, "channel": v.channel, "at": rfc3339(&v.at),
            })).collect::<Vec<_>>(),
            "actions": self.actions_of(a.id).iter().map(action_json).collect::<Vec<_>>(),
        })
    }

    async fn csv(&self, out: &mut dyn Write) -> Result<(), ReportError> {
        let mut w = csv::Writer::from_writer(out);
        w.write_record(CSV_HEADER)?;
        for q in &self.queries {
            let title = q.title.clone();
            self.findings_of(&q.name, |f| {
                w.write_record([
                    f.id.to_string(),
                    f.query.clone(),
                    title.clone(),
                    f.severity.to_string(),
                    f.status.to_string(),
                    f.key.to_string(),
                    f.first_seen.clone(),
                    f.last_seen.clone(),
                    f.resolved_at.clone().unwrap_or_default(),
                    f.remediation.clone().unwrap_or_default(),
                    f.remediation_state.to_string(),
                    f.decided_by.clone(),
                    f.decided_at.clone().unwrap_or_default(),
                    f.accepted_until.clone().unwrap_or_default(),
                    f.accepted_by.clone().unwrap_or_default(),
                    f.accepted_reason.clone().unwrap_or_default(),
                ])
                .map_err(std::io::Error::other)
            })
            .await?;
        }
        w.flush()?;
        Ok(())
    }
}

/// The CSV report's columns, in order (stable: add at the end only).
pub const CSV_HEADER: [&str; 16] = [
    "id",
    "query",
    "title",
    "severity",
    "status",
    "key",
    "first_seen",
    "last_seen",
    "resolved_at",
    "remediation",
    "remediation_state",
    "decided_by",
    "decided_at",
    "accepted_until",
    "accepted_by",
    "accepted_reason",
];

impl From<csv::Error> for ReportError {
    fn from(e: csv::Error) -> ReportError {
        ReportError::Io(std::io::Error::other(e))
    }
}

/// A finding as the report lists it.
#[derive(Debug, Clone, Serialize)]
pub struct FindingRow {
    /// Its id.
    pub id: i64,
    /// Its query.
    pub query: String,
    /// Its severity.
    pub severity: &'static str,
    /// open | resolved | accepted.
    pub status: &'static str,
    /// Its key columns.
    pub key: Value,
    /// First seen.
    pub first_seen: String,
    /// Last seen.
    pub last_seen: String,
    /// Resolved at.
    pub resolved_at: Option<String>,
    /// The query's remediation.
    pub remediation: Option<String>,
    /// none | requested | pending | approved | denied | expired (its latest approval).
    pub remediation_state: &'static str,
    /// Who decided it.
    pub decided_by: String,
    /// When.
    pub decided_at: Option<String>,
    /// Until when its risk is accepted (accepted findings).
    pub accepted_until: Option<String>,
    /// Who accepted it.
    pub accepted_by: Option<String>,
    /// Why.
    pub accepted_reason: Option<String>,
}

/// An action as the report shows it.
pub fn action_json(a: &ActionRecord) -> Value {
    json!({
        "id": a.id,
        "type": a.kind,
        "state": a.state.as_str(),
        "attempts": a.attempts,
        "result": a.result,
        "error": a.error,
    })
}

/// A run as the report shows it.
fn run_json(r: &RunRecord) -> Value {
    json!({
        "started_at": rfc3339(&r.started_at),
        "finished_at": rfc3339(&r.finished_at),
        "duration_ms": (r.finished_at - r.started_at).num_milliseconds(),
        "status": r.status.as_str(),
        "rows": r.rows,
        "inserted": r.inserted,
        "updated": r.updated,
        "deleted": r.deleted,
        "error": r.error,
    })
}

/// Calls `each` with every finding matching `filter`, a page at a time.
pub(crate) async fn for_each(
    store: &dyn Store,
    filter: &FindingFilter,
    mut each: impl FnMut(&Finding),
) -> Result<(), StoreError> {
    let mut after = 0;
    loop {
        let page = store.findings_page(filter, after, PAGE).await?;
        for f in &page {
            each(f);
        }
        match page.last() {
            Some(last) if page.len() == PAGE => after = last.id,
            _ => return Ok(()),
        }
    }
}

/// Open findings at the end of each day from the first change (or `since`) to `now`.
fn timeline(
    changes: &BTreeMap<NaiveDate, [i64; 4]>,
    since: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Vec<Day> {
    let Some(first) = changes.keys().next().copied() else {
        return Vec::new();
    };
    let start = since.map_or(first, |s| s.date_naive().max(first));
    let end = now.date_naive();
    let mut open = [0i64; 4];
    let mut days = Vec::new();
    let mut day = first;
    while day <= end {
        if let Some(delta) = changes.get(&day) {
            for (o, d) in open.iter_mut().zip(delta) {
                *o += d;
            }
        }
        if day >= start {
            days.push(Day { day, open });
        }
        match day.succ_opt() {
            Some(next) => day = next,
            None => break,
        }
    }
    days
}

/// A date (`2026-11-01`) or RFC 3339 time, for `--since`.
pub fn parse_since(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| {
            format!("--since {s:?}: expected a date (2026-11-01) or an RFC 3339 time (2026-11-01T09:00:00Z)")
        })
}

/// Seconds in words: `42s`, `5m 3s`, `2h 5m`, `3d 4h`.
pub fn human(seconds: f64) -> String {
    let s = seconds.round() as i64;
    match s {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m {}s", s / 60, s % 60),
        s if s < 86400 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d {}h", s / 86400, (s % 86400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let d = Durations::of((1..=10).collect());
        assert_eq!(d.count, 10);
        assert_eq!(d.mean_seconds, Some(5.5));
        assert_eq!(d.p90_seconds, Some(9));
        assert_eq!(Durations::of(vec![7]).p90_seconds, Some(7));
        assert_eq!(Durations::of(vec![]), Durations::default());
        let d = Durations::of((1..=100).rev().collect());
        assert_eq!(d.p90_seconds, Some(90));
    }

    #[test]
    fn the_timeline_counts_open_findings_per_day() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let mut changes = BTreeMap::new();
        changes.insert(d("2026-11-01"), [0, 2, 0, 0]);
        changes.insert(d("2026-11-03"), [1, -1, 0, 0]);
        let now = d("2026-11-04").and_hms_opt(12, 0, 0).unwrap().and_utc();
        let days = timeline(&changes, None, now);
        let open: Vec<[i64; 4]> = days.iter().map(|d| d.open).collect();
        assert_eq!(
            open,
            [[0, 2, 0, 0], [0, 2, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0]]
        );
        let since = d("2026-11-03").and_hms_opt(0, 0, 0).unwrap().and_utc();
        assert_eq!(timeline(&changes, Some(since), now).len(), 2);
    }

    #[test]
    fn since_takes_a_date_or_a_time() {
        assert_eq!(
            parse_since("2026-11-01").unwrap().to_rfc3339(),
            "2026-11-01T00:00:00+00:00"
        );
        assert!(parse_since("2026-11-01T09:00:00+02:00").is_ok());
        assert!(parse_since("yesterday").unwrap_err().contains("--since"));
    }

    #[test]
    fn durations_read_as_words() {
        assert_eq!(human(42.0), "42s");
        assert_eq!(human(303.0), "5m 3s");
        assert_eq!(human(7500.0), "2h 5m");
        assert_eq!(human(273600.0), "3d 4h");
    }
}
