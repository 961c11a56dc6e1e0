//! `vigilo demo`: the whole loop in a temporary project, with nothing else running.
//!
//! It writes a project whose source is a SQLite file shaped like Steampipe's
//! `aws_iam_access_key` table, starts a small local HTTP server standing in for
//! the remediation target (it records each request and marks the key Inactive
//! in the inventory, as the AWS call would), scans, raises an approval per
//! stale key, takes the decisions (at a prompt on a terminal, or all approved
//! with `--yes`), runs the approved `http` actions, scans again to show the
//! findings resolved, and prints the audit trail and its verification.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use rusqlite::{Connection, params};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::approval::{Transition, Vote};
use crate::config;
use crate::finding::Status;
use crate::output::{self, Format};
use crate::remediate;
use crate::scan::{self, Scanner};
use crate::store::{self, FindingFilter, Store};

/// The demo project's query, in SQLite's dialect.
const QUERY: &str = "-- title: IAM access keys active for more than 90 days
-- database: inventory
-- primary_key: access_key_id
-- ignore_columns: age_days
-- remediation: deactivate_iam_access_key
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

[notifier.security]
notify = [{ integration = \"console\" }]

[approver.alice]
[approver.bob]

[group.security]
members = [\"alice\", \"bob\"]
";

/// The remediation; `PORT` is the demo target's port.
const REMEDIATION: &str = r#"title = "Deactivate an expired IAM access key"

[approval]
notifier = "security"
subject = "Deactivate IAM access key {{ row.access_key_id }}?"
prompt = "Key {{ row.access_key_id }} of {{ row.user_name }} [{{ row.account_id }}] is {{ row.age_days }} days old."
approvers = ["security"]
timeout = "24h"
options = [
  { value = "deactivate", label = "Deactivate", style = "danger", required = 2 },
  { value = "keep", label = "Keep key active" },
]

[[action]]
when = "deactivate"
type = "http"
method = "POST"
url = "http://127.0.0.1:PORT/iam/update_access_key"
headers = { "Content-Type" = "application/json" }
body = '{"user_name": "{{ row.user_name }}", "access_key_id": "{{ row.access_key_id }}", "status": "Inactive", "approved_by": "{{ approval.decided_by }}"}'
"#;

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

/// Runs the demo (approving everything when `yes`) and leaves its project behind.
pub async fn run(yes: bool) -> Result<ExitCode> {
    let started = std::time::Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("vigilo-demo-")
        .tempdir()
        .context("cannot create a temporary directory")?
        .keep();
    let target = Target::start(dir.join("inventory.db")).await?;
    write_project(&dir, target.port)?;
    let mut out = std::io::stdout();
    writeln!(out, "vigilo demo: a project in {}", dir.display())?;
    writeln!(
        out,
        "  source: inventory.db, a SQLite stand-in for Steampipe's aws_iam_access_key (12 keys)"
    )?;
    writeln!(
        out,
        "  target: http://127.0.0.1:{} stands in for the AWS IAM API\n",
        target.port
    )?;

    let project = Arc::new(config::load(&dir)?);
    crate::redact::install(project.redactor());
    let store = store::open(&project.state.url).await?;
    let scanner = Scanner::new(Arc::clone(&project), Arc::clone(&store))?;
    let queries = scan::select_queries(&project, &[]).map_err(anyhow::Error::msg)?;
    let targets = crate::action::Targets::new(reqwest::Client::new(), &project.aws_connections);
    let owner = remediate::owner();

    writeln!(
        out,
        "1. Scan: every active key older than 90 days becomes a finding, and each asks for approval."
    )?;
    let runs = scan::scan_all(&scanner, &queries).await;
    output::write_scan(&mut out, &runs)?;
    remediate::step(&scanner, &owner, &targets).await?;

    writeln!(
        out,
        "\n2. Decide: Deactivate needs two of the security group (alice and bob)."
    )?;
    let interactive = !yes && std::io::stdin().is_terminal();
    if !yes && !interactive {
        writeln!(out, "   (not a terminal: approving all, as with --yes)")?;
    }
    for a in store.approvals(true).await? {
        let option = if interactive {
            ask(&a.subject, &a.prompt)?
        } else {
            "deactivate".to_string()
        };
        for by in ["alice", "bob"] {
            let vote = Vote {
                by: by.into(),
                option: option.clone(),
                reason: Some("vigilo demo".into()),
                channel: "cli".into(),
                at: chrono::Utc::now(),
                identity: None,
                values: Vec::new(),
            };
            match store.vote(a.id, vote).await? {
                Ok(Transition::VoteDecides { option, by, .. }) => {
                    writeln!(
                        out,
                        "   approval {}: {} decided by {}",
                        a.id,
                        option,
                        by.join(", ")
                    )?;
                    break;
                }
                Ok(_) => writeln!(out, "   approval {}: {by} votes {option}", a.id)?,
                Err(refusal) => writeln!(out, "   approval {}: refused: {refusal}", a.id)?,
            }
        }
    }

    writeln!(
        out,
        "\n3. Act: each approved deactivation is sent to the target once."
    )?;
    let (_, ran) = remediate::step(&scanner, &owner, &targets).await?;
    output::write_action_outcomes(&mut out, &ran)?;
    for request in target.requests() {
        writeln!(out, "   target received: {request}")?;
    }

    writeln!(
        out,
        "\n4. Scan again: the deactivated keys are no longer stale, so their findings resolve."
    )?;
    let runs = scan::scan_all(&scanner, &queries).await;
    output::write_scan(&mut out, &runs)?;
    let all = FindingFilter {
        query: None,
        status: None,
    };
    output::write_findings(&mut out, &store.findings(&all).await?, Format::Table)?;

    writeln!(out, "\n5. The audit trail, hash-chained:")?;
    let entries = store::audit_entries(store.as_ref()).await?;
    output::write_audit(&mut out, &entries)?;
    let verified = verify(store.as_ref()).await?;
    writeln!(out, "{verified}")?;

    let open = store
        .findings(&FindingFilter {
            query: None,
            status: Some(Status::Open),
        })
        .await?;
    writeln!(
        out,
        "\nDone in {:.1}s. Explore it yourself:",
        started.elapsed().as_secs_f64()
    )?;
    writeln!(
        out,
        "  vigilo --dir {} approvals --status all",
        dir.display()
    )?;
    writeln!(out, "  vigilo --dir {} audit verify", dir.display())?;
    let failed = runs.iter().any(|r| r.result.is_err()) || !verified.contains("intact");
    Ok(if failed || !open.is_empty() && !interactive {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Asks on the terminal which option to take.
fn ask(subject: &str, prompt: &str) -> Result<String> {
    let stdin = std::io::stdin();
    loop {
        print!("   {subject}\n   {prompt}\n   [d]eactivate or [k]eep? ");
        std::io::stdout().flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            return Ok("keep".into());
        }
        match line.trim() {
            "d" | "deactivate" => return Ok("deactivate".into()),
            "k" | "keep" => return Ok("keep".into()),
            _ => println!("   please answer d or k"),
        }
    }
}

/// Verifies the chain as `vigilo audit verify` does, as one line.
async fn verify(store: &dyn Store) -> Result<String> {
    Ok(match store::verify_audit(store).await? {
        Ok(n) => format!("audit trail intact: {n} entries"),
        Err(broken) => format!("audit trail BROKEN: {broken}"),
    })
}

/// The demo's stand-in for the IAM API: records each request and marks the key Inactive.
struct Target {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Target {
    async fn start(inventory: PathBuf) -> Result<Target> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let record = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (record, inventory) = (Arc::clone(&record), inventory.clone());
                tokio::spawn(async move {
                    if let Err(e) = serve(stream, &record, &inventory).await {
                        tracing::warn!(error = %e, "demo target: bad request");
                    }
                });
            }
        });
        Ok(Target { port, seen })
    }

    fn requests(&self) -> Vec<String> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

async fn serve(
    stream: tokio::net::TcpStream,
    seen: &Mutex<Vec<String>>,
    inventory: &Path,
) -> Result<()> {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).await?;
    let (mut length, mut key) = (0usize, String::new());
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).await?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse()?,
                "idempotency-key" => key = value.trim().to_string(),
                _ => {}
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await?;
    let body: serde_json::Value = serde_json::from_slice(&body)?;
    let id = body["access_key_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let status = body["status"].as_str().unwrap_or("Inactive").to_string();
    Connection::open(inventory)?.execute(
        "update aws_iam_access_key set status = ?2 where access_key_id = ?1",
        params![id, status],
    )?;
    if let Ok(mut s) = seen.lock() {
        s.push(format!(
            "{} {} (Idempotency-Key {key})",
            request_line.trim(),
            body
        ));
    }
    reader
        .get_mut()
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        .await?;
    Ok(())
}

fn write_project(dir: &Path, port: u16) -> Result<()> {
    std::fs::create_dir_all(dir.join("config"))?;
    std::fs::create_dir_all(dir.join("queries"))?;
    std::fs::create_dir_all(dir.join("remediations"))?;
    std::fs::write(dir.join("config/vigilo.toml"), CONFIG)?;
    std::fs::write(dir.join("queries/iam_access_key_stale.sql"), QUERY)?;
    std::fs::write(
        dir.join("remediations/deactivate_iam_access_key.toml"),
        REMEDIATION.replace("PORT", &port.to_string()),
    )?;
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
