//! The HTML report: one self-contained page (inline CSS, inline SVG charts, no scripts, no
//! network), laid out to read well on screen and printed.

use std::io::Write;

use minijinja::HtmlEscape;

use super::text::{action_text, durations, key_text, open_table, when};
use super::{Report, ReportError, charts};
use crate::timestamp::rfc3339;

const STYLE: &str = "
body { font: 14px/1.45 system-ui, -apple-system, 'Segoe UI', sans-serif; color: #111827; margin: 2rem auto; max-width: 1100px; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { border-bottom: 2px solid #e5e7eb; padding-bottom: .2rem; margin-top: 2rem; }
h3 { margin-bottom: .3rem; } .muted { color: #6b7280; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0 1rem; font-size: 13px; }
th, td { border: 1px solid #e5e7eb; padding: 4px 6px; text-align: left; vertical-align: top; }
th { background: #f9fafb; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.cards { display: flex; flex-wrap: wrap; gap: .75rem; margin: 1rem 0; }
.card { border: 1px solid #e5e7eb; border-radius: 6px; padding: .6rem .9rem; min-width: 9rem; }
.card b { display: block; font-size: 1.5rem; }
.charts { display: flex; flex-wrap: wrap; gap: 1rem; } .charts svg { max-width: 100%; height: auto; border: 1px solid #e5e7eb; }
.s-critical { color: #7f1d1d; font-weight: 600; } .s-high { color: #dc2626; font-weight: 600; } .s-medium { color: #b45309; } .s-low { color: #2563eb; }
.o-approved { color: #15803d; font-weight: 600; } .o-denied { color: #475569; font-weight: 600; } .o-expired { color: #a16207; font-weight: 600; } .o-pending { color: #2563eb; }
.approval { border: 1px solid #e5e7eb; border-radius: 6px; padding: .3rem .9rem .6rem; margin: .8rem 0; break-inside: avoid; }
@media print { body { margin: 0; max-width: none; font-size: 11px; } h2 { break-after: avoid; } tr { break-inside: avoid; } .charts svg { border: none; } }
";

fn e(s: &str) -> HtmlEscape<'_> {
    HtmlEscape(s)
}

/// Writes the report as one HTML page.
pub(super) async fn page(r: &Report<'_>, out: &mut dyn Write) -> Result<(), ReportError> {
    let s = &r.summary;
    writeln!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">"
    )?;
    writeln!(
        out,
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
    )?;
    writeln!(
        out,
        "<title>vigilo report {}</title>",
        e(&rfc3339(&r.generated_at))
    )?;
    writeln!(out, "<style>{STYLE}</style>\n</head>\n<body>")?;
    writeln!(out, "<h1>vigilo report</h1>")?;
    write!(
        out,
        "<p class=\"muted\">Generated {}, covering {}",
        e(&rfc3339(&r.generated_at)),
        e(&r.period())
    )?;
    if let Some(q) = r.query_filter() {
        write!(out, ", query <code>{}</code>", e(q))?;
    }
    writeln!(out, ".</p>")?;

    writeln!(out, "<h2>Summary</h2>\n<div class=\"cards\">")?;
    for (label, value) in [
        ("open findings", s.open_total.to_string()),
        ("new in the period", s.new.to_string()),
        ("resolved in the period", s.resolved.to_string()),
        (
            "time to resolve (mean / p90)",
            durations(&s.time_to_resolve),
        ),
        (
            "time to decision (mean / p90)",
            durations(&s.time_to_decision),
        ),
    ] {
        writeln!(
            out,
            "<div class=\"card\"><b>{}</b>{}</div>",
            e(&value),
            e(label)
        )?;
    }
    writeln!(out, "</div>")?;
    writeln!(out, "<div class=\"charts\">")?;
    writeln!(out, "{}", charts::open_over_time(&r.timeline)?)?;
    writeln!(out, "{}", charts::decisions(&s.remediations)?)?;
    writeln!(out, "</div>")?;
    writeln!(out, "<h3>Open findings by query and severity</h3>")?;
    writeln!(
        out,
        "<table><tr><th>Query</th><th>critical</th><th>high</th><th>medium</th><th>low</th><th>total</th></tr>"
    )?;
    for (q, by, total) in open_table(r) {
        writeln!(
            out,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{total}</td></tr>",
            e(&q),
            by[0],
            by[1],
            by[2],
            by[3]
        )?;
    }
    writeln!(out, "</table>")?;
    writeln!(out, "<h3>Remediations and actions</h3>\n<table>")?;
    for (what, counts) in [("Remediations", &s.remediations), ("Actions", &s.actions)] {
        write!(out, "<tr><th>{what}</th>")?;
        for (k, v) in counts {
            write!(out, "<td class=\"o-{k}\">{k}: {v}</td>")?;
        }
        writeln!(out, "</tr>")?;
    }
    writeln!(out, "</table>")?;
    writeln!(out, "<h3 id=\"accepted\">Accepted risks</h3>")?;
    if s.accepted.is_empty() {
        writeln!(out, "<p>No finding's risk is accepted.</p>")?;
    } else {
        writeln!(
            out,
            "<table class=\"accepted\">\n<tr><th>Finding</th><th>Query</th><th>Severity</th><th>Key</th><th>Accepted until</th><th>By</th><th>Why</th></tr>"
        )?;
        for a in &s.accepted {
            writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                a.id,
                e(&a.query),
                a.severity,
                e(&a.key.to_string()),
                e(a.accepted_until.as_deref().unwrap_or("")),
                e(a.accepted_by.as_deref().unwrap_or("")),
                e(a.accepted_reason.as_deref().unwrap_or("")),
            )?;
        }
        writeln!(out, "</table>")?;
    }

    writeln!(out, "<h2>Queries</h2>")?;
    for q in &r.queries {
        writeln!(
            out,
            "<h3>{} <span class=\"muted\"><code>{}</code></span></h3>",
            e(&q.title),
            e(&q.name)
        )?;
        let run = match &q.last_run {
            None => "never".to_string(),
            Some(run) => format!(
                "{} ({}), {} rows in {} ms{}",
                run["started_at"].as_str().unwrap_or_default(),
                run["status"].as_str().unwrap_or_default(),
                run["rows"],
                run["duration_ms"],
                run["error"]
                    .as_str()
                    .map(|x| format!(": {x}"))
                    .unwrap_or_default()
            ),
        };
        writeln!(
            out,
            "<p>Severity <span class=\"s-{sev}\">{sev}</span>; schedule {}; remediation {}. Last run: {}.</p>",
            e(q.schedule.as_deref().unwrap_or("none (on vigilo scan)")),
            e(q.remediation.as_deref().unwrap_or("none")),
            e(&run),
            sev = q.severity,
        )?;
        writeln!(
            out,
            "<table><tr><th>#</th><th>Key</th><th>Severity</th><th>Status</th><th>First seen</th><th>Last seen</th><th>Resolved</th><th>Remediation</th><th>Decided by</th><th>Decided at</th></tr>"
        )?;
        r.findings_of(&q.name, |f| {
            writeln!(
                out,
                "<tr><td class=\"n\">{}</td><td>{}</td><td class=\"s-{sev}\">{sev}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"o-{st}\">{st}</td><td>{}</td><td>{}</td></tr>",
                f.id,
                e(&key_text(&f.key)),
                f.status,
                e(&when(&f.first_seen)),
                e(&when(&f.last_seen)),
                e(&when(f.resolved_at.as_deref().unwrap_or(""))),
                e(&f.decided_by),
                e(&when(f.decided_at.as_deref().unwrap_or(""))),
                sev = f.severity,
                st = f.remediation_state,
            )
        })
        .await?;
        writeln!(out, "</table>")?;
    }

    writeln!(out, "<h2>Approval log</h2>")?;
    if r.approvals.is_empty() {
        writeln!(out, "<p>No approvals in the period.</p>")?;
    }
    for a in &r.approvals {
        let word = super::outcome(r.project, a);
        writeln!(
            out,
            "<div class=\"approval\"><h3>Approval {}: {}</h3>",
            a.id,
            e(&a.subject)
        )?;
        writeln!(
            out,
            "<p><span class=\"o-{word}\">{word}</span> ({}); remediation <code>{}</code>, finding {} of <code>{}</code>; requested {}{}.</p>",
            e(a.decision.as_deref().unwrap_or("no decision")),
            e(&a.remediation),
            a.finding_id,
            e(r.query_of(a.finding_id).unwrap_or("?")),
            e(&rfc3339(&a.requested_at)),
            e(&a.decided_at
                .map(|d| format!(", decided {} by {}", rfc3339(&d), a.decided_by.join(", ")))
                .unwrap_or_default()),
        )?;
        if !a.votes.is_empty() {
            writeln!(
                out,
                "<table><tr><th>Vote by</th><th>Option</th><th>Reason</th><th>Channel</th><th>At</th></tr>"
            )?;
            for v in &a.votes {
                writeln!(
                    out,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    e(&v.by),
                    e(&v.option),
                    e(v.reason.as_deref().unwrap_or("")),
                    e(&v.channel),
                    e(&rfc3339(&v.at))
                )?;
            }
            writeln!(out, "</table>")?;
        }
        let actions = r.actions_of(a.id);
        if !actions.is_empty() {
            writeln!(out, "<ul>")?;
            for action in actions {
                writeln!(
                    out,
                    "<li>Action {} <code>{}</code>: {}</li>",
                    action.id,
                    e(&action.kind),
                    e(&action_text(action))
                )?;
            }
            writeln!(out, "</ul>")?;
        }
        writeln!(out, "</div>")?;
    }
    writeln!(out, "</body>\n</html>")?;
    out.flush()?;
    Ok(())
}
