//! `vigilo demo`: the whole loop in a temporary project, with nothing else running.
//!
//! It writes a project whose source is a SQLite file shaped like Steampipe's
//! `aws_iam_access_key` table, scans it, shows the findings, deactivates one
//! key as a person would, and scans again to show that finding resolved.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use rusqlite::{Connection, params};

use crate::config;
use crate::finding::Status;
use crate::output::{self, Format};
use crate::scan::{self, Scanner};
use crate::store::{self, FindingFilter};

/// The demo project's query, in SQLite's dialect.
const QUERY: &str = "-- title: IAM access keys active for more than 90 days
-- database: inventory
-- schedule: 0 * * * *
-- primary_key: access_key_id
-- ignore_columns: age_days
-- severity: high
select access_key_id, user_name, account_id, conn_name,
       cast(julianday('now') - julianday(create_date) as integer) as age_days
from aws_iam_access_key
where julianday('now') - julianday(create_date) > 90 and status = 'Active'
";

const CONFIG: &str = "[state]
url = \"sqlite://vigilo.db\"

[database.inventory]
url = \"sqlite://inventory.db\"
";

/// (access key id, user, status, age in days, account, connection) — the fixture's twelve keys.
const KEYS: &[(&str, &str, &str, i64, &str, &str)] = &[
    (
        "AKIAEXAMPLE000000001",
        "alice",
        "Active",
        400,
        "111111111111",
        "aws_prod",
    ),
    (
        "AKIAEXAMPLE000000002",
        "bob",
        "Active",
        120,
        "111111111111",
        "aws_prod",
    ),
    (
        "AKIAEXAMPLE000000003",
        "carol",
        "Active",
        91,
        "111111111111",
        "aws_prod",
    ),
    (
        "AKIAEXAMPLE000000004",
        "dave",
        "Active",
        10,
        "111111111111",
        "aws_prod",
    ),
    (
        "AKIAEXAMPLE000000005",
        "erin",
        "Inactive",
        300,
        "111111111111",
        "aws_prod",
    ),
    (
        "AKIAEXAMPLE000000006",
        "ci-bot",
        "Active",
        800,
        "222222222222",
        "aws_dev",
    ),
    (
        "AKIAEXAMPLE000000007",
        "frank",
        "Active",
        200,
        "222222222222",
        "aws_dev",
    ),
    (
        "AKIAEXAMPLE000000008",
        "grace",
        "Active",
        5,
        "222222222222",
        "aws_dev",
    ),
    (
        "AKIAEXAMPLE000000009",
        "heidi",
        "Inactive",
        150,
        "222222222222",
        "aws_dev",
    ),
    (
        "AKIAEXAMPLE000000010",
        "ivan",
        "Active",
        89,
        "222222222222",
        "aws_dev",
    ),
    (
        "AKIAEXAMPLE000000011",
        "judy",
        "Active",
        30,
        "222222222222",
        "aws_dev",
    ),
    (
        "AKIAEXAMPLE000000012",
        "mallory",
        "Active",
        60,
        "111111111111",
        "aws_prod",
    ),
];

/// Runs the demo and leaves its project behind for the user to explore.
pub async fn run() -> Result<ExitCode> {
    let dir = tempfile::Builder::new()
        .prefix("vigilo-demo-")
        .tempdir()
        .context("cannot create a temporary directory")?
        .keep();
    write_project(&dir)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "vigilo demo: a project in {}", dir.display())?;
    writeln!(
        out,
        "  its source is inventory.db, a SQLite stand-in for Steampipe's aws_iam_access_key (12 keys)\n"
    )?;

    let project = Arc::new(config::load(&dir)?);
    let store = store::open(&project.state.url).await?;
    let scanner = Scanner::new(Arc::clone(&project), Arc::clone(&store))?;
    let queries = scan::select_queries(&project, &[]).map_err(anyhow::Error::msg)?;
    let open = FindingFilter {
        query: None,
        status: Some(Status::Open),
    };

    writeln!(
        out,
        "1. First scan: every active key older than 90 days becomes a finding."
    )?;
    let runs = scan::scan_all(&scanner, &queries).await;
    output::write_scan(&mut out, &runs)?;
    output::write_findings(&mut out, &store.findings(&open).await?, Format::Table)?;

    writeln!(
        out,
        "\n2. Scan again, nothing changed: no new finding (change detection by primary key)."
    )?;
    let runs = scan::scan_all(&scanner, &queries).await;
    output::write_scan(&mut out, &runs)?;

    writeln!(
        out,
        "\n3. Someone deactivates bob's key AKIAEXAMPLE000000002; the next scan resolves its finding."
    )?;
    Connection::open(dir.join("inventory.db"))?.execute(
        "update aws_iam_access_key set status = 'Inactive' where access_key_id = ?1",
        ["AKIAEXAMPLE000000002"],
    )?;
    let runs = scan::scan_all(&scanner, &queries).await;
    output::write_scan(&mut out, &runs)?;
    let all = FindingFilter {
        query: None,
        status: None,
    };
    output::write_findings(&mut out, &store.findings(&all).await?, Format::Table)?;

    if runs.iter().any(|r| r.result.is_err()) {
        return Ok(ExitCode::from(1));
    }
    writeln!(out, "\nExplore it yourself:")?;
    writeln!(
        out,
        "  vigilo --dir {} findings --status all --format json",
        dir.display()
    )?;
    writeln!(out, "  vigilo --dir {} scan --dry-run", dir.display())?;
    Ok(ExitCode::SUCCESS)
}

fn write_project(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir.join("config"))?;
    std::fs::create_dir_all(dir.join("queries"))?;
    std::fs::create_dir_all(dir.join("remediations"))?;
    std::fs::write(dir.join("config/vigilo.toml"), CONFIG)?;
    std::fs::write(dir.join("queries/iam_access_key_stale.sql"), QUERY)?;
    let conn = Connection::open(dir.join("inventory.db"))?;
    conn.execute_batch(
        "create table aws_iam_access_key (
           access_key_id text primary key, user_name text not null, status text not null,
           create_date text not null, account_id text not null, conn_name text not null)",
    )?;
    let now = chrono::Utc::now();
    for (id, user, status, age, account, conn_name) in KEYS {
        let created = (now - chrono::Duration::days(*age)).to_rfc3339();
        conn.execute(
            "insert into aws_iam_access_key values (?1, ?2, ?3, ?4, ?5, ?6)",
            params![id, user, status, created, account, conn_name],
        )?;
    }
    Ok(())
}
