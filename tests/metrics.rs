//! `/metrics` of `vigilo run`: Prometheus text that parses (prometheus-parse), with counters
//! that move as the scheduler runs and gauges that follow the store (open findings,
//! approvals by outcome, actions, messages).

mod common;

use std::time::{Duration, Instant};

use common::{free_port, show, vigilo};
use prometheus_parse::{Scrape, Value};

fn project(port: u16) -> tempfile::TempDir {
    let config = format!(
        "[state]\nurl = \"sqlite://state.db\"\n\n[server]\nlisten = \"127.0.0.1:{port}\"\n\n\
         [database.src]\nurl = \"sqlite://src.db\"\n\n[notifier.security]\nnotify = [{{ integration = \"console\" }}]\n\n\
         [approver.alice]\n"
    );
    let dir = common::project(&[
        ("config/vigilo.toml", &config),
        (
            "queries/keys.sql",
            "-- severity: high\n-- primary_key: id\n-- remediation: review\n-- schedule: 1s\nselect id from keys",
        ),
        (
            "remediations/review.toml",
            "[approval]\nnotifier = \"security\"\nsubject = \"Review {{ row.id }}?\"\nprompt = \"p\"\napprovers = [\"alice\"]\n\n[[action]]\nwhen = \"approve\"\ntype = \"http\"\nurl = \"http://127.0.0.1:1/unreachable\"\n",
        ),
    ]);
    let db = rusqlite::Connection::open(dir.path().join("src.db")).unwrap();
    db.execute_batch("create table keys (id text); insert into keys values ('a'), ('b'), ('c');")
        .unwrap();
    dir
}

async fn scrape(port: u16) -> Scrape {
    let r = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let content_type = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = r.text().await.unwrap();
    Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("{e}:\n{text}"))
}

/// The value of `metric` with these labels (0 when absent).
fn value(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == metric && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            _ => 0.0,
        })
        .sum()
}

/// Scrapes until `ok` holds (10 s at most).
async fn until(port: u16, what: &str, ok: impl Fn(&Scrape) -> bool) -> Scrape {
    let start = Instant::now();
    loop {
        let s = scrape(port).await;
        if ok(&s) {
            return s;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "never: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn metrics_parse_and_follow_runs_and_the_store() {
    let port = free_port();
    let dir = project(port);
    let _run = common::run(dir.path());
    common::wait_healthy(port).await;

    let q = [("query", "keys")];
    let first = until(port, "a run and three open findings", |s| {
        value(
            s,
            "vigilo_query_runs_total",
            &[("query", "keys"), ("status", "succeeded")],
        ) >= 1.0
            && value(
                s,
                "vigilo_findings_open",
                &[("query", "keys"), ("severity", "high")],
            ) == 3.0
    })
    .await;
    assert_eq!(value(&first, "vigilo_query_rows", &q), 3.0);
    assert_eq!(
        value(
            &first,
            "vigilo_query_changes_total",
            &[("query", "keys"), ("change", "inserted")]
        ),
        3.0
    );
    let histogram = first
        .samples
        .iter()
        .find(|x| x.metric == "vigilo_query_run_duration_seconds")
        .expect("the duration histogram");
    assert!(
        matches!(histogram.value, Value::Histogram(_)),
        "{histogram:?}"
    );
    assert!(first.docs["vigilo_query_runs_total"].contains("Query runs"));
    // The counter moves with the next scheduled run.
    let runs = value(&first, "vigilo_query_runs_total", &[("query", "keys")]);
    until(port, "another run", |s| {
        value(s, "vigilo_query_runs_total", &[("query", "keys")]) > runs
    })
    .await;

    // The gauges follow the store: an approval decided, a row gone.
    until(port, "three pending approvals", |s| {
        value(
            s,
            "vigilo_approvals",
            &[("remediation", "review"), ("outcome", "pending")],
        ) == 3.0
    })
    .await;
    let out = vigilo(dir.path(), &["approve", "1", "--as", "alice"]);
    assert!(out.status.success(), "{}", show(&out));
    let db = rusqlite::Connection::open(dir.path().join("src.db")).unwrap();
    db.execute_batch("delete from keys where id = 'c'").unwrap();
    let s = until(port, "one approved, two open findings", |s| {
        value(s, "vigilo_approvals", &[("outcome", "approved")]) == 1.0
            && value(s, "vigilo_findings_open", &q) == 2.0
    })
    .await;
    assert_eq!(
        value(&s, "vigilo_approvals", &[("outcome", "pending")]),
        2.0
    );
    assert_eq!(
        value(
            &s,
            "vigilo_actions",
            &[("type", "http"), ("state", "failed")]
        ),
        1.0
    );
    assert!(
        value(
            &s,
            "vigilo_messages",
            &[("integration", "console"), ("state", "sent")]
        ) >= 3.0
    );
}
