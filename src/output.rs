//! Tables, JSON and CSV for the terminal.

use std::io::Write;

use comfy_table::presets::NOTHING;
use comfy_table::{ContentArrangement, Table};
use serde_json::{Map, Value};

use crate::approval::Approval;
use crate::audit::Entry;
use crate::finding::Finding;
use crate::scan::{DryFinding, DryRun, QueryRun};
use crate::timestamp::rfc3339;

/// An output format for listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// JSON (interface.md section 5 shapes).
    Json,
    /// CSV with a header row.
    Csv,
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.iter().copied());
    t
}

/// `k=v, k=v` for a key object.
pub fn key_text(key: &Map<String, Value>) -> String {
    key.iter()
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Writes findings in `format`.
pub fn write_findings(
    out: &mut dyn Write,
    findings: &[Finding],
    format: Format,
) -> anyhow::Result<()> {
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, findings)?;
            writeln!(out)?;
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record([
                "id",
                "query",
                "status",
                "severity",
                "key",
                "first_seen",
                "last_seen",
                "resolved_at",
                "reopened",
                "row",
            ])?;
            for f in findings {
                w.write_record([
                    f.id.to_string(),
                    f.query.clone(),
                    f.status.as_str().to_string(),
                    f.severity.as_str().to_string(),
                    serde_json::to_string(&f.key)?,
                    rfc3339(&f.first_seen),
                    rfc3339(&f.last_seen),
                    f.resolved_at.as_ref().map(rfc3339).unwrap_or_default(),
                    f.reopened.to_string(),
                    serde_json::to_string(&f.row)?,
                ])?;
            }
            w.flush()?;
        }
        Format::Table => {
            if findings.is_empty() {
                writeln!(out, "no findings")?;
                return Ok(());
            }
            let mut t = table(&[
                "ID",
                "QUERY",
                "STATUS",
                "SEVERITY",
                "KEY",
                "FIRST SEEN",
                "LAST SEEN",
                "RESOLVED",
            ]);
            for f in findings {
                t.add_row(vec![
                    f.id.to_string(),
                    f.query.clone(),
                    f.status.as_str().to_string(),
                    f.severity.as_str().to_string(),
                    key_text(&f.key),
                    rfc3339(&f.first_seen),
                    rfc3339(&f.last_seen),
                    f.resolved_at.as_ref().map(rfc3339).unwrap_or_default(),
                ]);
            }
            writeln!(out, "{t}")?;
        }
    }
    Ok(())
}

/// Writes `vigilo scan`'s table: one row per query.
pub fn write_scan(out: &mut dyn Write, runs: &[QueryRun]) -> std::io::Result<()> {
    let mut t = table(&[
        "QUERY", "RESULT", "ROWS", "INSERTED", "UPDATED", "DELETED", "TIME", "NOTE",
    ]);
    for r in runs {
        let time = format!("{:.2}s", r.duration.as_secs_f64());
        match &r.result {
            Ok(s) => {
                let mut notes = Vec::new();
                if s.baseline {
                    notes.push(format!(
                        "first run: baseline of {} keys recorded",
                        s.inserted
                    ));
                }
                if !s.outcome.reopened.is_empty() {
                    notes.push(format!("{} reopened", s.outcome.reopened.len()));
                }
                if !s.outcome.resolved.is_empty() {
                    notes.push(format!("{} resolved", s.outcome.resolved.len()));
                }
                let inserted = if s.baseline { 0 } else { s.inserted };
                t.add_row(vec![
                    r.query.clone(),
                    "ok".into(),
                    s.rows.to_string(),
                    inserted.to_string(),
                    s.updated.to_string(),
                    s.deleted.to_string(),
                    time,
                    notes.join("; "),
                ]);
            }
            Err(e) => {
                t.add_row(vec![
                    r.query.clone(),
                    "FAILED".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    time,
                    e.to_string(),
                ]);
            }
        }
    }
    writeln!(out, "{t}")
}

/// Writes what a dry run would change, query by query.
///
/// `preview` tells, for a new or reopened finding (id, key, row), what its remediation would
/// ask and call; each line is printed under the finding.
pub fn write_dry_run(
    out: &mut dyn Write,
    dry: &DryRun,
    start: &str,
    preview: &dyn Fn(&DryFinding) -> Vec<String>,
) -> std::io::Result<()> {
    writeln!(out, "query {} ({} rows): would change", dry.query, dry.rows)?;
    if dry.baseline {
        writeln!(
            out,
            "  first run with on_first_run = baseline: record {} keys, open no finding",
            dry.opened.len()
        )?;
        return Ok(());
    }
    let none = dry.opened.is_empty()
        && dry.reopened.is_empty()
        && dry.updated.is_empty()
        && dry.resolved.is_empty();
    if none && dry.deleted_without_finding == 0 {
        writeln!(out, "  nothing")?;
    }
    for f in &dry.opened {
        writeln!(out, "  open     {}  → {start}", key_text(&f.key))?;
        for line in preview(f) {
            writeln!(out, "             {line}")?;
        }
    }
    for f in &dry.reopened {
        let id = f.id.unwrap_or_default();
        writeln!(out, "  reopen   #{id} {}  → {start}", key_text(&f.key))?;
        for line in preview(f) {
            writeln!(out, "             {line}")?;
        }
    }
    for key in &dry.updated {
        writeln!(out, "  update   {}", key_text(key))?;
    }
    for (id, key) in &dry.resolved {
        writeln!(out, "  resolve  #{id} {}", key_text(key))?;
    }
    if dry.deleted_without_finding > 0 {
        writeln!(
            out,
            "  forget   {} baseline keys no longer returned",
            dry.deleted_without_finding
        )?;
    }
    Ok(())
}

/// Writes audit entries as a table.
pub fn write_audit(out: &mut dyn Write, entries: &[Entry]) -> std::io::Result<()> {
    if entries.is_empty() {
        return writeln!(out, "no audit entries");
    }
    let mut t = table(&[
        "SEQ", "AT", "KIND", "ACTOR", "CHANNEL", "FINDING", "APPROVAL", "ACTION", "DATA",
    ]);
    let id = |v: Option<i64>| v.map(|n| n.to_string()).unwrap_or_default();
    for e in entries {
        t.add_row(vec![
            e.seq.to_string(),
            e.at.clone(),
            e.kind.clone(),
            e.actor.clone(),
            e.channel.clone(),
            id(e.finding_id),
            id(e.approval_id),
            id(e.action_id),
            e.data.to_string(),
        ]);
    }
    writeln!(out, "{t}")
}

/// Writes approvals as a table: one row each, votes summarised.
pub fn write_approvals(out: &mut dyn Write, approvals: &[Approval]) -> std::io::Result<()> {
    if approvals.is_empty() {
        return writeln!(out, "no approvals");
    }
    let mut t = table(&[
        "ID",
        "STATUS",
        "DECISION",
        "REMEDIATION",
        "FINDING",
        "SUBJECT",
        "VOTES",
        "DEADLINE",
    ]);
    for a in approvals {
        let votes: Vec<String> = a
            .votes
            .iter()
            .map(|v| format!("{}={}", v.by, v.option))
            .collect();
        t.add_row(vec![
            a.id.to_string(),
            a.status.as_str().to_string(),
            a.decision.clone().unwrap_or_default(),
            a.remediation.clone(),
            a.finding_id.to_string(),
            a.subject.clone(),
            votes.join(", "),
            a.deadline.as_ref().map(rfc3339).unwrap_or_default(),
        ]);
    }
    writeln!(out, "{t}")
}

/// One line per action that ran.
pub fn write_action_outcomes(
    out: &mut dyn Write,
    ran: &[(i64, crate::store::ActionOutcome)],
) -> std::io::Result<()> {
    use crate::store::ActionOutcome;
    for (id, outcome) in ran {
        match outcome {
            ActionOutcome::Succeeded(r) => writeln!(out, "action {id} succeeded: {r}")?,
            ActionOutcome::Skipped(why) => writeln!(out, "action {id} skipped: {why}")?,
            ActionOutcome::Failed(e) => writeln!(
                out,
                "action {id} FAILED: {e} (vigilo retry {id} runs it again)"
            )?,
            ActionOutcome::Unknown(e) => writeln!(out, "action {id} UNKNOWN: {e}")?,
        }
    }
    Ok(())
}

/// One line per remediation run that could not go on, with why.
pub fn write_progress_failures(
    out: &mut impl Write,
    progress: &crate::remediate::Progress,
) -> std::io::Result<()> {
    for (run, why) in &progress.failed {
        writeln!(out, "remediation run {run} could not go on: {why}")?;
    }
    Ok(())
}

/// Writes the live processes of `vigilo status` as a table: who they are and what each holds.
pub fn write_processes(
    out: &mut dyn Write,
    processes: &[crate::store::fleet::ProcessStatus],
) -> anyhow::Result<()> {
    let mut t = table(&[
        "ID",
        "HOST",
        "PID",
        "VERSION",
        "STARTED",
        "HEARTBEAT",
        "TICKS",
        "RUNS",
        "ACTIONS",
        "MESSAGES",
        "RUNNING",
    ]);
    for p in processes {
        let (process, holds) = (&p.process, &p.holds);
        t.add_row([
            process.id.clone(),
            process.host.clone(),
            process.pid.to_string(),
            process.version.clone(),
            rfc3339(&process.started_at),
            rfc3339(&process.heartbeat_at),
            holds.ticks.to_string(),
            holds.runs.to_string(),
            holds.actions.to_string(),
            holds.messages.to_string(),
            holds.queries.join(", "),
        ]);
    }
    writeln!(out, "{t}")?;
    writeln!(out, "{} live process(es)", processes.len())?;
    Ok(())
}
