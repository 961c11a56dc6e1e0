//! `vigilo report` through the binary, on a store seeded with findings and remediations in every
//! state: the summary's numbers match counts computed here straight from the state store's
//! tables; the CSV parses with its header; the JSON has its documented shape; the HTML page
//! loads in headless Chromium with its SVG charts, and its screenshot is not blank.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::recorder::{Answer, Recorder};
use common::{show, vigilo};
use serde_json::Value;

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = vigilo(dir, args);
    assert!(out.status.success(), "{args:?}: {}", show(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A project with two remediated queries (keys: high, 24 h timeout, an http action; tokens:
/// critical, expiring after 1 s) and a notify-only one (buckets: low).
fn project(target: &Recorder) -> tempfile::TempDir {
    let config = "[state]\nurl = \"sqlite://state.db\"\n\n[database.src]\nurl = \"sqlite://src.db\"\n\n\
                  [notifier.security]\nnotify = [{ integration = \"console\" }]\n\n\
                  [approver.alice]\n[approver.bob]\n\n[group.security]\nmembers = [\"alice\", \"bob\"]\n";
    let deactivate = format!(
        "title = \"Deactivate\"\nrecheck = false\n\n[approval]\nnotifier = \"security\"\n\
         subject = \"Deactivate {{{{ row.id }}}}?\"\nprompt = \"Key {{{{ row.id }}}} | of {{{{ row.owner }}}}\"\n\
         approvers = [\"security\"]\ntimeout = \"24h\"\n\
         options = [{{ value = \"deactivate\", label = \"Deactivate\" }}, {{ value = \"keep\", label = \"Keep\" }}]\n\n\
         [[action]]\nwhen = \"deactivate\"\ntype = \"http\"\nurl = \"http://127.0.0.1:{}/k/{{{{ row.id }}}}\"\n",
        target.port
    );
    let rotate = "title = \"Rotate\"\n\n[approval]\nnotifier = \"security\"\nsubject = \"Rotate {{ row.id }}?\"\n\
                  prompt = \"p\"\napprovers = [\"alice\"]\ntimeout = \"1s\"\n\n\
                  [[action]]\nwhen = \"approve\"\ntype = \"http\"\nurl = \"http://127.0.0.1:1/never\"\n";
    let dir = common::project(&[
        ("config/vigilo.toml", config),
        (
            "queries/keys.sql",
            "-- title: Stale keys\n-- severity: high\n-- primary_key: id\n-- remediation: deactivate\n-- schedule: 1h\nselect id, owner from keys",
        ),
        (
            "queries/tokens.sql",
            "-- title: Old tokens\n-- severity: critical\n-- primary_key: id\n-- remediation: rotate\nselect id from tokens",
        ),
        (
            "queries/buckets.sql",
            "-- title: Open buckets\n-- severity: low\n-- primary_key: name\n-- notify: security\nselect name from buckets",
        ),
        ("remediations/deactivate.toml", &deactivate),
        ("remediations/rotate.toml", rotate),
    ]);
    let db = rusqlite::Connection::open(dir.path().join("src.db")).unwrap();
    db.execute_batch(
        "create table keys (id text, owner text);
         insert into keys values ('k1','ann'),('k2','ben'),('k3','cat'),('k4','dan'),('k5','eve'),('k6','fay');
         create table tokens (id text); insert into tokens values ('t1'),('t2');
         create table buckets (name text); insert into buckets values ('b1'),('b2'),('b3');",
    )
    .unwrap();
    dir
}

/// The approval id whose subject ends with `id?`.
fn approval(dir: &Path, id: &str) -> String {
    let list: Vec<Value> = serde_json::from_str(&ok(
        dir,
        &["approvals", "--status", "all", "--format", "json"],
    ))
    .unwrap();
    list.iter()
        .find(|a| a["subject"].as_str().unwrap().ends_with(&format!(" {id}?")))
        .unwrap()["id"]
        .to_string()
}

/// Seeds every state: approved (action succeeded), approved (action failed), denied, expired,
/// pending; findings open and resolved.
fn seeded() -> (tempfile::TempDir, Recorder) {
    let target = Recorder::start();
    let dir = project(&target);
    let d = dir.path();
    ok(d, &["scan"]);
    ok(
        d,
        &[
            "approve",
            &approval(d, "k1"),
            "--as",
            "alice",
            "--reason",
            "rotated | done",
        ],
    );
    target.answer(Answer::Fail);
    let _ = vigilo(d, &["approve", &approval(d, "k2"), "--as", "bob"]);
    target.answer(Answer::Ok);
    ok(
        d,
        &[
            "respond",
            &approval(d, "k3"),
            "keep",
            "--as",
            "alice",
            "--reason",
            "in use",
        ],
    );
    std::thread::sleep(Duration::from_millis(1500));
    let src = rusqlite::Connection::open(d.join("src.db")).unwrap();
    src.execute_batch("delete from keys where id = 'k1'; delete from buckets where name = 'b1';")
        .unwrap();
    ok(d, &["scan"]);
    (dir, target)
}

/// What the state store says, computed here with SQL and arithmetic of our own.
struct Expected {
    open: BTreeMap<(String, String), u64>,
    open_total: u64,
    new: u64,
    resolved: u64,
    remediations: BTreeMap<String, u64>,
    actions: BTreeMap<String, u64>,
    resolve_mean: f64,
    decision_count: u64,
}

fn ts(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn expected(dir: &Path) -> Expected {
    let db = rusqlite::Connection::open(dir.join("state.db")).unwrap();
    let mut open = BTreeMap::new();
    let mut stmt = db
        .prepare(
            "select query, severity, count(*) from findings where status = 'open' group by 1, 2",
        )
        .unwrap();
    for r in stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .unwrap()
    {
        let (q, s, n) = r.unwrap();
        open.insert((q, s), n as u64);
    }
    let count = |sql: &str| db.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap() as u64;
    let mut remediations = BTreeMap::new();
    let mut stmt = db
        .prepare("select status, decision from approvals")
        .unwrap();
    for r in stmt
        .query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
        })
        .unwrap()
    {
        let word = match r.unwrap() {
            (s, _) if s == "pending" => "pending",
            (s, _) if s == "expired" => "expired",
            (_, Some(d)) if d == "deactivate" || d == "approve" => "approved",
            _ => "denied",
        };
        *remediations.entry(word.to_string()).or_insert(0) += 1;
    }
    let mut actions = BTreeMap::new();
    let mut stmt = db
        .prepare("select state, count(*) from actions where approval_id is not null group by 1")
        .unwrap();
    for r in stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .unwrap()
    {
        let (s, n) = r.unwrap();
        actions.insert(s, n as u64);
    }
    let mut stmt = db
        .prepare("select first_seen, resolved_at from findings where resolved_at is not null")
        .unwrap();
    let spans: Vec<f64> = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .unwrap()
        .map(|r| {
            let (a, b) = r.unwrap();
            (ts(&b) - ts(&a)).num_seconds() as f64
        })
        .collect();
    Expected {
        open_total: open.values().sum(),
        open,
        new: count("select count(*) from findings"),
        resolved: count("select count(*) from findings where resolved_at is not null"),
        remediations,
        actions,
        resolve_mean: spans.iter().sum::<f64>() / spans.len() as f64,
        decision_count: count("select count(*) from approvals where decided_at is not null"),
    }
}

#[test]
fn the_json_report_matches_the_store_and_has_its_shape() {
    let (dir, _target) = seeded();
    let d = dir.path();
    let want = expected(d);
    let report: Value = serde_json::from_str(&ok(d, &["report", "--format", "json"])).unwrap();
    let s = &report["summary"];
    let mut open = BTreeMap::new();
    for c in s["open"].as_array().unwrap() {
        open.insert(
            (
                c["query"].as_str().unwrap().to_string(),
                c["severity"].as_str().unwrap().to_string(),
            ),
            c["open"].as_u64().unwrap(),
        );
    }
    assert_eq!(open, want.open);
    assert_eq!(s["open_total"], want.open_total);
    assert_eq!(
        (s["new"].as_u64(), s["resolved"].as_u64()),
        (Some(want.new), Some(want.resolved))
    );
    assert_eq!(want.resolved, 2, "k1 and b1");
    for (word, n) in &want.remediations {
        assert_eq!(s["remediations"][word], *n, "{word}: {s}");
    }
    assert_eq!(
        (
            want.remediations["approved"],
            want.remediations["denied"],
            want.remediations["expired"],
            want.remediations["pending"]
        ),
        (2, 1, 2, 3),
        "the seed covers every outcome"
    );
    for (state, n) in &want.actions {
        assert_eq!(s["actions"][state.as_str()], *n, "{state}: {s}");
    }
    assert_eq!(s["actions"]["succeeded"], 1);
    assert_eq!(s["actions"]["failed"], 1);
    let mean = s["time_to_resolve"]["mean_seconds"].as_f64().unwrap();
    assert!(
        (mean - want.resolve_mean).abs() < 1.0,
        "{mean} vs {}",
        want.resolve_mean
    );
    assert_eq!(s["time_to_resolve"]["count"], 2);
    assert!(s["time_to_resolve"]["p90_seconds"].is_i64());
    assert_eq!(s["time_to_decision"]["count"], want.decision_count);

    // The documented shape.
    for k in [
        "generated_at",
        "since",
        "query",
        "summary",
        "timeline",
        "queries",
        "approvals",
    ] {
        assert!(report.get(k).is_some(), "missing {k}");
    }
    let day = &report["timeline"][0];
    assert!(
        day["day"].is_string() && day["open"].as_array().unwrap().len() == 4,
        "{day}"
    );
    let queries = report["queries"].as_array().unwrap();
    assert_eq!(
        queries
            .iter()
            .map(|q| q["name"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["buckets", "keys", "tokens"]
    );
    let keys = &queries[1];
    assert_eq!(
        (keys["title"].as_str(), keys["severity"].as_str()),
        (Some("Stale keys"), Some("high"))
    );
    assert_eq!(keys["schedule"], "every 1h");
    assert_eq!(keys["remediation"], "deactivate");
    assert_eq!(keys["last_run"]["status"], "succeeded");
    for k in [
        "started_at",
        "duration_ms",
        "rows",
        "inserted",
        "updated",
        "deleted",
        "error",
    ] {
        assert!(keys["last_run"].get(k).is_some(), "last_run.{k}");
    }
    let findings = keys["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 6);
    let k1 = findings.iter().find(|f| f["key"]["id"] == "k1").unwrap();
    assert_eq!(k1["status"], "resolved");
    assert_eq!(k1["remediation_state"], "approved");
    assert_eq!(k1["decided_by"], "alice");
    assert!(k1["decided_at"].is_string() && k1["resolved_at"].is_string());
    for k in [
        "id",
        "query",
        "severity",
        "first_seen",
        "last_seen",
        "remediation",
    ] {
        assert!(k1.get(k).is_some(), "finding.{k}");
    }
    let approvals = report["approvals"].as_array().unwrap();
    assert_eq!(approvals.len(), 8);
    let a1 = approvals
        .iter()
        .find(|a| a["subject"] == "Deactivate k1?")
        .unwrap();
    assert_eq!(a1["outcome"], "approved");
    assert_eq!(a1["query"], "keys");
    assert_eq!(a1["votes"][0]["by"], "alice");
    assert_eq!(a1["votes"][0]["reason"], "rotated | done");
    assert_eq!(a1["votes"][0]["channel"], "cli");
    assert_eq!(a1["actions"][0]["state"], "succeeded");
    assert_eq!(a1["actions"][0]["type"], "http");

    // The period and query filters.
    let later: Value = serde_json::from_str(&ok(
        d,
        &["report", "--format", "json", "--since", "2999-01-01"],
    ))
    .unwrap();
    assert_eq!(
        (
            later["summary"]["new"].as_u64(),
            later["summary"]["resolved"].as_u64()
        ),
        (Some(0), Some(0))
    );
    assert_eq!(
        later["summary"]["open_total"], want.open_total,
        "open is now, whatever the period"
    );
    assert!(later["approvals"].as_array().unwrap().is_empty());
    let only: Value =
        serde_json::from_str(&ok(d, &["report", "--format", "json", "--query", "tokens"])).unwrap();
    assert_eq!(only["queries"].as_array().unwrap().len(), 1);
    assert_eq!(only["summary"]["remediations"]["expired"], 2);
    assert_eq!(only["summary"]["new"], 2);
    let bad = vigilo(d, &["report", "--since", "yesterday"]);
    assert_eq!(bad.status.code(), Some(2), "{}", show(&bad));
    let bad = vigilo(d, &["report", "--query", "nope"]);
    assert_eq!(bad.status.code(), Some(2), "{}", show(&bad));
}

#[test]
fn the_csv_report_has_one_row_per_finding_under_a_stable_header() {
    let (dir, _target) = seeded();
    let d = dir.path();
    let out = d.join("findings.csv");
    let _ = ok(d, &["report", "-o", &out.display().to_string()]);
    let mut reader = csv::Reader::from_path(&out).unwrap();
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_string)
        .collect();
    assert_eq!(header, vigilo::report::CSV_HEADER);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len() as u64, expected(d).new, "one row per finding");
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let k3 = rows
        .iter()
        .find(|r| r[col("key")].contains("\"k3\""))
        .unwrap();
    assert_eq!(&k3[col("remediation_state")], "denied");
    assert_eq!(&k3[col("decided_by")], "alice");
    assert_eq!(&k3[col("status")], "open");
    assert_eq!(&k3[col("title")], "Stale keys");
    let b1 = rows
        .iter()
        .find(|r| r[col("key")].contains("\"b1\""))
        .unwrap();
    assert_eq!(&b1[col("remediation_state")], "none");
    assert!(!b1[col("resolved_at")].is_empty());
}

#[test]
fn the_markdown_report_has_every_section() {
    let (dir, _target) = seeded();
    let md = ok(dir.path(), &["report", "--format", "md"]);
    for part in [
        "# vigilo report",
        "## Summary",
        "| Open findings | 9 |",
        "| Query | critical | high | medium | low | total |",
        "| keys | 0 | 5 | 0 | 0 | 5 |",
        "### Stale keys (`keys`)",
        "## Approval log",
        "| alice | deactivate | rotated \\| done | cli |",
        "- Action ",
    ] {
        assert!(md.contains(part), "missing {part:?} in:\n{md}");
    }
}

#[test]
fn the_html_report_is_one_page_with_svg_charts_that_loads_in_chromium() {
    let (dir, _target) = seeded();
    let d = dir.path();
    let page = d.join("report.html");
    ok(
        d,
        &[
            "report",
            "--format",
            "html",
            "--output",
            &page.display().to_string(),
        ],
    );
    let html = std::fs::read_to_string(&page).unwrap();
    assert_eq!(html.matches("<svg").count(), 2, "two charts");
    for external in ["<script", "<link", "src=", "@import", "url("] {
        assert!(
            !html.contains(external),
            "self-contained, yet has {external}"
        );
    }
    assert!(html.contains("Open findings by severity") && html.contains("Remediations by outcome"));
    assert!(html.contains("@media print"));
    assert!(html.contains("rotated | done"), "votes with their reasons");

    let dom =
        common::assert_renders_in_chromium(&format!("file://{}", page.display()), "Approval log");
    assert_eq!(dom.matches("<svg").count(), 2, "the charts render");
}
