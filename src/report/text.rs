//! The Markdown report (renders in a code host).

use std::io::Write;

use super::{Report, ReportError, SEVERITIES, human};
use crate::timestamp::rfc3339;

/// A table cell: no pipes or line breaks.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// `mean / p90` in words, or `–`.
pub(super) fn durations(d: &super::Durations) -> String {
    match (d.mean_seconds, d.p90_seconds) {
        (Some(mean), Some(p90)) => {
            format!("{} / {} (n = {})", human(mean), human(p90 as f64), d.count)
        }
        _ => "–".into(),
    }
}

/// Open findings per query: one row per query, a column per severity.
pub(super) fn open_table(r: &Report<'_>) -> Vec<(String, [u64; 4], u64)> {
    r.queries
        .iter()
        .map(|q| {
            let mut by = [0u64; 4];
            for c in r.summary.open.iter().filter(|c| c.query == q.name) {
                if let Some(i) = SEVERITIES.iter().position(|s| s.as_str() == c.severity) {
                    by[i] = c.open;
                }
            }
            (q.name.clone(), by, by.iter().sum())
        })
        .collect()
}

/// Writes the report as Markdown.
pub(super) async fn markdown(r: &Report<'_>, out: &mut dyn Write) -> Result<(), ReportError> {
    let s = &r.summary;
    writeln!(out, "# vigilo report\n")?;
    write!(
        out,
        "Generated {}, covering {}",
        rfc3339(&r.generated_at),
        r.period()
    )?;
    if let Some(q) = r.query_filter() {
        write!(out, ", query `{q}`")?;
    }
    writeln!(out, ".\n\n## Summary\n")?;
    writeln!(out, "| | |\n| --- | --- |")?;
    writeln!(out, "| Open findings | {} |", s.open_total)?;
    writeln!(out, "| New in the period | {} |", s.new)?;
    writeln!(out, "| Resolved in the period | {} |", s.resolved)?;
    writeln!(
        out,
        "| Time to resolve (mean / p90) | {} |",
        durations(&s.time_to_resolve)
    )?;
    writeln!(
        out,
        "| Time to decision (mean / p90) | {} |",
        durations(&s.time_to_decision)
    )?;
    writeln!(out, "\n### Open findings by query and severity\n")?;
    writeln!(
        out,
        "| Query | critical | high | medium | low | total |\n| --- | ---: | ---: | ---: | ---: | ---: |"
    )?;
    for (q, by, total) in open_table(r) {
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {total} |",
            cell(&q),
            by[0],
            by[1],
            by[2],
            by[3]
        )?;
    }
    writeln!(out, "\n### Remediations and actions\n")?;
    let counts = |m: &std::collections::BTreeMap<&str, u64>| {
        m.iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    writeln!(out, "- Remediations: {}", counts(&s.remediations))?;
    writeln!(out, "- Actions: {}", counts(&s.actions))?;

    writeln!(out, "\n### Accepted risks\n")?;
    if s.accepted.is_empty() {
        writeln!(out, "No finding's risk is accepted.")?;
    } else {
        writeln!(
            out,
            "| Finding | Query | Severity | Key | Accepted until | By | Why |\n|---|---|---|---|---|---|---|"
        )?;
        for a in &s.accepted {
            writeln!(
                out,
                "| {} | `{}` | {} | {} | {} | {} | {} |",
                a.id,
                a.query,
                a.severity,
                cell(&a.key.to_string()),
                a.accepted_until.as_deref().unwrap_or(""),
                cell(a.accepted_by.as_deref().unwrap_or("")),
                cell(a.accepted_reason.as_deref().unwrap_or("")),
            )?;
        }
    }

    writeln!(out, "\n## Queries")?;
    for q in &r.queries {
        writeln!(out, "\n### {} (`{}`)\n", cell(&q.title), q.name)?;
        writeln!(
            out,
            "Severity {}; schedule {}; remediation {}.",
            q.severity,
            q.schedule.as_deref().unwrap_or("none (on `vigilo scan`)"),
            q.remediation.as_deref().unwrap_or("none")
        )?;
        match &q.last_run {
            None => writeln!(out, "Last run: never.\n")?,
            Some(run) => writeln!(
                out,
                "Last run: {} ({}), {} rows in {} ms{}.\n",
                run["started_at"].as_str().unwrap_or_default(),
                run["status"].as_str().unwrap_or_default(),
                run["rows"],
                run["duration_ms"],
                run["error"]
                    .as_str()
                    .map(|e| format!(": {}", cell(e)))
                    .unwrap_or_default()
            )?,
        }
        writeln!(
            out,
            "| # | Key | Severity | Status | First seen | Last seen | Resolved | Remediation | Decided by | Decided at |"
        )?;
        writeln!(
            out,
            "| ---: | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
        )?;
        r.findings_of(&q.name, |f| {
            writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                f.id,
                cell(&key_text(&f.key)),
                f.severity,
                f.status,
                when(&f.first_seen),
                when(&f.last_seen),
                when(f.resolved_at.as_deref().unwrap_or("")),
                f.remediation_state,
                cell(&f.decided_by),
                when(f.decided_at.as_deref().unwrap_or(""))
            )
        })
        .await?;
    }

    writeln!(out, "\n## Approval log")?;
    if r.approvals.is_empty() {
        writeln!(out, "\nNo approvals in the period.")?;
    }
    for a in &r.approvals {
        writeln!(out, "\n### Approval {}: {}\n", a.id, cell(&a.subject))?;
        writeln!(
            out,
            "**{}** ({}); remediation `{}`, finding {} of `{}`; requested {}{}.\n",
            super::outcome(r.project, a),
            a.decision.as_deref().unwrap_or("no decision"),
            a.remediation,
            a.finding_id,
            r.query_of(a.finding_id).unwrap_or("?"),
            rfc3339(&a.requested_at),
            a.decided_at
                .map(|d| format!(", decided {} by {}", rfc3339(&d), a.decided_by.join(", ")))
                .unwrap_or_default()
        )?;
        if !a.votes.is_empty() {
            writeln!(
                out,
                "| Vote by | Option | Reason | Channel | At |\n| --- | --- | --- | --- | --- |"
            )?;
            for v in &a.votes {
                writeln!(
                    out,
                    "| {} | {} | {} | {} | {} |",
                    cell(&v.by),
                    cell(&v.option),
                    cell(v.reason.as_deref().unwrap_or("")),
                    v.channel,
                    rfc3339(&v.at)
                )?;
            }
        }
        for action in r.actions_of(a.id) {
            writeln!(
                out,
                "\n- Action {} `{}`: {}",
                action.id,
                action.kind,
                action_text(action)
            )?;
        }
    }
    out.flush()?;
    Ok(())
}

/// An RFC 3339 time as people read it: `2026-11-21 10:25:50` (UTC); other text unchanged.
pub(super) fn when(s: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| {
            t.with_timezone(&chrono::Utc)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|_| s.to_string())
}

/// A key as `col=value, …`.
pub(super) fn key_text(key: &serde_json::Value) -> String {
    key.as_object()
        .map_or_else(|| key.to_string(), crate::output::key_text)
}

/// An AWS key action's result in words: what changed, where, as whom.
fn aws_text(r: &serde_json::Value) -> String {
    let s = |k: &str| r[k].as_str().unwrap_or_default();
    let mut text = format!(
        "{} {} of {}",
        s("operation"),
        s("access_key_id"),
        s("user_name")
    );
    if r.get("status").is_some() {
        text.push_str(&format!(": {} → {}", s("previous_status"), s("status")));
    }
    text.push_str(&format!(" (connection {}", s("connection")));
    if !s("account").is_empty() {
        text.push_str(&format!(", account {} as {}", s("account"), s("caller")));
    }
    if !s("request_id").is_empty() {
        text.push_str(&format!(", request {}", s("request_id")));
    }
    text.push(')');
    text
}

/// An action's outcome in words.
pub(super) fn action_text(a: &crate::store::ActionRecord) -> String {
    let state = a.state.as_str();
    let detail = match (&a.error, &a.result) {
        (Some(e), _) => e.clone(),
        (None, Some(r)) => match r
            .get("no_change")
            .or_else(|| r.get("skipped"))
            .or_else(|| r.get("settled"))
            .and_then(|v| v.as_str())
        {
            Some(why) => why.to_string(),
            None if r.get("access_key_id").is_some() => aws_text(r),
            None => r.to_string(),
        },
        (None, None) => String::new(),
    };
    if detail.is_empty() {
        format!("{state} (attempt {})", a.attempts)
    } else {
        format!("{state} (attempt {}): {}", a.attempts, cell(&detail))
    }
}
