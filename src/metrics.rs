//! `/metrics`: Prometheus text format.
//!
//! What this process did is counted as it happens (query runs, their durations, rows and
//! changes); what the store holds (open findings, approvals, actions, messages) is counted by
//! the database at each scrape, so it is right across restarts and processes sharing a store.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::config::Project;
use crate::store::{Store, StoreError};

/// Run durations' histogram buckets, in seconds.
const DURATION_BUCKETS: [f64; 12] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// The process's metrics.
struct Metrics {
    registry: Registry,
    runs: IntCounterVec,
    duration: HistogramVec,
    rows: IntGaugeVec,
    changes: IntCounterVec,
    open: IntGaugeVec,
    approvals: IntGaugeVec,
    actions: IntGaugeVec,
    messages: IntGaugeVec,
    ticks: IntCounterVec,
    processes: IntGaugeVec,
    claims: IntGaugeVec,
    heartbeat_age: IntGaugeVec,
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c =
        IntCounterVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| panic!("{name}: {e}"));
    r.register(Box::new(c.clone()))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    c
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g =
        IntGaugeVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| panic!("{name}: {e}"));
    r.register(Box::new(g.clone()))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    g
}

// Metric names and labels are constants checked by the unit test below, so registering them
// cannot fail at run time.
static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let r = Registry::new();
    let duration = HistogramVec::new(
        HistogramOpts::new(
            "vigilo_query_run_duration_seconds",
            "How long query runs took, from the query's start to the commit.",
        )
        .buckets(DURATION_BUCKETS.to_vec()),
        &["query"],
    )
    .unwrap_or_else(|e| panic!("vigilo_query_run_duration_seconds: {e}"));
    r.register(Box::new(duration.clone()))
        .unwrap_or_else(|e| panic!("vigilo_query_run_duration_seconds: {e}"));
    Metrics {
        runs: counter(
            &r,
            "vigilo_query_runs_total",
            "Query runs by this process, by outcome.",
            &["query", "status"],
        ),
        duration,
        rows: gauge(
            &r,
            "vigilo_query_rows",
            "Rows the query's last successful run read.",
            &["query"],
        ),
        changes: counter(
            &r,
            "vigilo_query_changes_total",
            "Keys inserted, updated and deleted by this process's runs.",
            &["query", "change"],
        ),
        open: gauge(
            &r,
            "vigilo_findings_open",
            "Open findings, by query and severity.",
            &["query", "severity"],
        ),
        approvals: gauge(
            &r,
            "vigilo_approvals",
            "Approvals by remediation and outcome (pending, approved, denied, expired).",
            &["remediation", "outcome"],
        ),
        actions: gauge(
            &r,
            "vigilo_actions",
            "Actions by type and state.",
            &["type", "state"],
        ),
        messages: gauge(
            &r,
            "vigilo_messages",
            "Notifier messages by integration kind (slack, email, webhook, console) and state.",
            &["integration", "state"],
        ),
        ticks: counter(
            &r,
            "vigilo_ticks_total",
            "Scheduled ticks this process met: claimed (it ran them), elsewhere (another process \
             had them, or the query was still running), taken_over (from a process that is gone).",
            &["outcome"],
        ),
        processes: gauge(
            &r,
            "vigilo_fleet_processes",
            "Live vigilo run processes on this state store (heard from within their lease).",
            &[],
        ),
        claims: gauge(
            &r,
            "vigilo_fleet_claims",
            "Live claims per process and kind of work (ticks, runs, actions, messages).",
            &["process", "kind"],
        ),
        heartbeat_age: gauge(
            &r,
            "vigilo_fleet_heartbeat_age_seconds",
            "Seconds since each live process's last heartbeat.",
            &["process"],
        ),
        registry: r,
    }
});

/// Counts a scheduled tick this process met, by `outcome` (`claimed`, `elsewhere`, `taken_over`).
pub fn observe_tick(outcome: &str) {
    METRICS.ticks.with_label_values(&[outcome]).inc();
}

/// Counts a query run of this process.
pub fn observe_run(query: &str, ok: bool, duration: Duration, rows: u64, changes: [u64; 3]) {
    let m = &*METRICS;
    m.runs
        .with_label_values(&[query, if ok { "succeeded" } else { "failed" }])
        .inc();
    m.duration
        .with_label_values(&[query])
        .observe(duration.as_secs_f64());
    if ok {
        m.rows
            .with_label_values(&[query])
            .set(i64::try_from(rows).unwrap_or(i64::MAX));
        for (change, n) in ["inserted", "updated", "deleted"].iter().zip(changes) {
            m.changes.with_label_values(&[query, change]).inc_by(n);
        }
    }
}

/// The metrics in Prometheus text format, with the store's counts read now.
pub async fn render(project: &Project, store: &dyn Store) -> Result<String, StoreError> {
    let m = &*METRICS;
    let stats = store.stats().await?;
    m.open.reset();
    for (query, severity, n) in &stats.open_findings {
        m.open.with_label_values(&[query, severity]).set(*n);
    }
    m.approvals.reset();
    for (remediation, status, decision, n) in &stats.approvals {
        let outcome = match crate::approval::Status::parse(status) {
            Some(status) => crate::outcome::word(crate::outcome::outcome_of(
                project,
                remediation,
                status,
                decision.as_deref(),
            )),
            None => status.as_str(),
        };
        m.approvals
            .with_label_values(&[remediation, outcome])
            .add(*n);
    }
    m.actions.reset();
    for (kind, state, n) in &stats.actions {
        m.actions.with_label_values(&[kind, state]).set(*n);
    }
    m.messages.reset();
    for (integration, state, n) in &stats.messages {
        m.messages.with_label_values(&[integration, state]).set(*n);
    }
    let now = chrono::Utc::now();
    let fleet = crate::fleet::live(store, project.scheduler.lease, now).await?;
    m.processes
        .with_label_values::<&str>(&[])
        .set(i64::try_from(fleet.len()).unwrap_or(i64::MAX));
    m.claims.reset();
    m.heartbeat_age.reset();
    for p in &fleet {
        let (id, h) = (p.process.id.as_str(), &p.holds);
        for (kind, n) in [
            ("ticks", h.ticks),
            ("runs", h.runs),
            ("actions", h.actions),
            ("messages", h.messages),
        ] {
            m.claims.with_label_values(&[id, kind]).set(n);
        }
        m.heartbeat_age
            .with_label_values(&[id])
            .set((now - p.process.heartbeat_at).num_seconds());
    }
    let mut out = Vec::new();
    // Encoding into a Vec fails only on an invalid family, which the registry never holds.
    TextEncoder::new()
        .encode(&m.registry.gather(), &mut out)
        .map_err(|e| StoreError::Corrupt(format!("encoding metrics: {e}")))?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_registers_and_counts() {
        observe_run("q", true, Duration::from_millis(20), 7, [1, 2, 3]);
        observe_run("q", false, Duration::from_millis(5), 0, [0, 0, 0]);
        let families = METRICS.registry.gather();
        let names: Vec<&str> = families.iter().map(|f| f.name()).collect();
        for name in [
            "vigilo_query_runs_total",
            "vigilo_query_run_duration_seconds",
            "vigilo_query_rows",
            "vigilo_query_changes_total",
        ] {
            assert!(names.contains(&name), "{names:?}");
        }
        assert_eq!(METRICS.runs.with_label_values(&["q", "failed"]).get(), 1);
        assert_eq!(
            METRICS.changes.with_label_values(&["q", "updated"]).get(),
            2
        );
    }
}
