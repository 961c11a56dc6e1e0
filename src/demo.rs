//! `vigilo demo`: the whole loop in a temporary project, with nothing else running.
//!
//! It writes a project whose source is a SQLite file shaped like Steampipe's
//! `aws_iam_access_key` table and whose two AWS connections (`aws_prod`, `aws_dev`) point
//! their `endpoint_url` at a local stand-in for the IAM Query API (`iam_standin`). It
//! scans, raises an approval per stale key, takes the decisions (at a prompt on a terminal,
//! or all approved with `--yes`), runs the approved `aws.iam.update_access_key` actions
//! through the AWS SDK exactly as production does (signed with static demo credentials,
//! the key read with ListAccessKeys first), scans again to show the findings resolved, and
//! prints the audit trail and its verification, all within 100 columns.

mod iam_standin;

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use aws_credential_types::Credentials;
use rusqlite::{Connection, params};

use crate::approval::{Transition, Vote};
use crate::config;
use crate::finding::Status;
use crate::output;
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

/// The project's config; `PORT` is the IAM stand-in's port.
const CONFIG: &str = "[state]
url = \"sqlite://vigilo.db\"

[database.inventory]
url = \"sqlite://inventory.db\"

# Each row names its account's connection (conn_name); both reach the local IAM stand-in.
[connection.aws.aws_prod]
endpoint_url = \"http://127.0.0.1:PORT\"
region = \"us-east-1\"

[connection.aws.aws_dev]
endpoint_url = \"http://127.0.0.1:PORT\"
region = \"us-east-1\"

[notifier.security]
notify = [{ integration = \"console\" }]

[approver.alice]
[approver.bob]

[group.security]
members = [\"alice\", \"bob\"]
";

/// The remediation: the production action, in the account the row came from.
const REMEDIATION: &str = r#"title = "Deactivate an expired IAM access key"

[approval]
notifier = "security"
subject = "Deactivate IAM access key {{ row.access_key_id }}?"
prompt = "Key {{ row.access_key_id }} of {{ row.user_name }} [{{ row.account_id }}] is {{ row.age_days }} days old."
approvers = ["security"]
timeout = "24h"
options = [
  { value = "deactivate", label = "Deactivate", style = "danger", required = 2 },
  { value = "keep", label = "Keep" },
]

[[action]]
when = "deactivate"
type = "aws.iam.update_access_key"
connection = "{{ row.conn_name }}"
user_name = "{{ row.user_name }}"
access_key_id = "{{ row.access_key_id }}"
status = "Inactive"
"#;

/// Each connection's static demo credentials (access key id, secret), the account's digits in
/// the key id: the stand-in tells the accounts apart by who signed.
const CREDENTIALS: &[(&str, &str, &str)] = &[
    (
        "aws_prod",
        "AKIADEMO111111111111",
        "vigilo-demo-secret-prod",
    ),
    ("aws_dev", "AKIADEMO222222222222", "vigilo-demo-secret-dev"),
];

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
    let iam = iam_standin::IamStandin::start(dir.join("inventory.db")).await?;
    write_project(&dir, iam.port)?;
    let mut out = std::io::stdout();
    writeln!(out, "vigilo demo: a project in {}", dir.display())?;
    writeln!(
        out,
        "  source: inventory.db, a SQLite stand-in for Steampipe's aws_iam_access_key (12 keys)"
    )?;
    writeln!(
        out,
        "  AWS: connections aws_prod and aws_dev call the IAM Query API at http://127.0.0.1:{}",
        iam.port
    )?;
    writeln!(
        out,
        "       (a local stand-in; the calls go through the AWS SDK, signed, as in production)\n"
    )?;

    let project = Arc::new(config::load(&dir, &crate::action::REGISTRY)?);
    crate::redact::install(project.redactor());
    let store = store::open(&project.state.url).await?;
    let scanner = Scanner::new(Arc::clone(&project), Arc::clone(&store))?;
    let queries = scan::select_queries(&project, &[]).map_err(anyhow::Error::msg)?;
    let credentials: HashMap<String, Credentials> = CREDENTIALS
        .iter()
        .map(|(name, id, secret)| {
            let c = Credentials::new(*id, *secret, None, None, "vigilo-demo");
            (name.to_string(), c)
        })
        .collect();
    let targets = crate::action::Targets {
        http: reqwest::Client::new(),
        aws: crate::aws::Connections::with_credentials(&project.aws_connections, credentials),
        aws_configs: project.aws_connections.clone(),
    };
    let owner = crate::fleet::owner();

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
        "\n3. Act: each approved key is read (ListAccessKeys), then deactivated once."
    )?;
    let (_, ran) = remediate::step(&scanner, &owner, &targets).await?;
    write_outcomes(&mut out, &ran)?;
    for call in iam.calls() {
        writeln!(out, "   IAM received: {call}")?;
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
    write_findings(&mut out, &store.findings(&all).await?)?;

    writeln!(
        out,
        "\n5. The audit trail, hash-chained (vigilo audit shows each entry's data):"
    )?;
    let entries = store::audit_entries(store.as_ref()).await?;
    write_audit(&mut out, &entries)?;
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

/// One line per action: what it did to which key.
fn write_outcomes(out: &mut dyn Write, ran: &[(i64, store::ActionOutcome)]) -> Result<()> {
    use store::ActionOutcome;
    for (id, outcome) in ran {
        match outcome {
            ActionOutcome::Succeeded(r) => {
                let s = |k: &str| r[k].as_str().unwrap_or("?").to_string();
                writeln!(
                    out,
                    "   action {id} succeeded: {} of {} in {} ({}): {} -> {}",
                    s("access_key_id"),
                    s("user_name"),
                    s("account"),
                    s("connection"),
                    s("previous_status"),
                    s("status"),
                )?;
            }
            other => {
                let mut line = Vec::new();
                output::write_action_outcomes(&mut line, &[(*id, other.clone())])?;
                write!(out, "   {}", String::from_utf8_lossy(&line))?;
            }
        }
    }
    Ok(())
}

/// The findings, one short line each.
fn write_findings(out: &mut dyn Write, findings: &[crate::finding::Finding]) -> Result<()> {
    for f in findings {
        let row = |k: &str| {
            f.row
                .get(k)
                .and_then(|v| v.as_str())
                .unwrap_or("?")
                .to_string()
        };
        writeln!(
            out,
            "   finding {:>2}  {:<8}  {}  {:<8} {}",
            f.id,
            f.status.as_str(),
            row("access_key_id"),
            row("user_name"),
            row("conn_name"),
        )?;
    }
    Ok(())
}

/// The audit trail in columns that fit 100: sequence, kind, actor, what it is about, and the
/// start of each entry's hash.
fn write_audit(out: &mut dyn Write, entries: &[crate::audit::Entry]) -> Result<()> {
    writeln!(
        out,
        "   {:>4}  {:<20} {:<14} {:<32} HASH",
        "SEQ", "KIND", "ACTOR", "ABOUT"
    )?;
    for e in entries {
        let about = [
            ("finding", e.finding_id),
            ("approval", e.approval_id),
            ("action", e.action_id),
        ]
        .iter()
        .filter_map(|(what, id)| id.map(|id| format!("{what} {id}")))
        .collect::<Vec<_>>()
        .join(", ");
        let actor: String = e.actor.chars().take(14).collect();
        writeln!(
            out,
            "   {:>4}  {:<20} {:<14} {:<32} {}…",
            e.seq,
            e.kind,
            actor,
            about,
            &e.hash[..e.hash.len().min(12)]
        )?;
    }
    Ok(())
}

fn write_project(dir: &Path, port: u16) -> Result<()> {
    std::fs::create_dir_all(dir.join("config"))?;
    std::fs::create_dir_all(dir.join("queries"))?;
    std::fs::create_dir_all(dir.join("remediations"))?;
    std::fs::write(
        dir.join("config/vigilo.toml"),
        CONFIG.replace("PORT", &port.to_string()),
    )?;
    std::fs::write(dir.join("queries/stale_keys.sql"), QUERY)?;
    std::fs::write(
        dir.join("remediations/deactivate_iam_access_key.toml"),
        REMEDIATION,
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
