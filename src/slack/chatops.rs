//! ChatOps with confirmation: `/vigilo scan QUERY` and `/vigilo remediate FINDING_ID`.
//!
//! A command from a configured approver is recorded as pending and answered (to that
//! user only) with Confirm / Cancel buttons. Only the same user may press them, and only
//! within `confirm_ttl`; the store decides, so a second press or a press by anyone else
//! changes nothing. Then the command runs, and its answer replaces the prompt. A
//! remediation run requested this way names its requester, who may not vote on it unless
//! the remediation allows self-approval.

use chrono::Utc;
use serde_json::{Value, json};

use super::blocks::escape;
use super::people::{self, Person};
use super::routes::ephemeral;
use crate::config::SlackConfig;
use crate::scan::Scanner;
use crate::state::AppState;
use crate::store::{CommandRecord, NewCommand};

/// The `block_id` prefix of a command's Confirm / Cancel buttons: `vigilo:command:ID`.
pub const COMMAND_BLOCK: &str = "vigilo:command:";

/// How to use the command.
const USAGE: &str = "Usage: `/vigilo scan QUERY` runs a query now; `/vigilo remediate FINDING_ID` starts a finding's remediation.";

/// A slash command as Slack sends it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// What follows `/vigilo`.
    pub text: &'a str,
    /// Who typed it.
    pub user: &'a str,
    /// Where.
    pub channel: &'a str,
    /// Where to answer later.
    pub response_url: Option<&'a str>,
}

fn reply(text: &str) -> Value {
    json!({"response_type": "ephemeral", "text": crate::redact::text(text)})
}

/// Answers a slash command: a refusal or usage, or the Confirm / Cancel prompt.
pub async fn request(s: &AppState, cfg: &SlackConfig, r: &Request<'_>) -> Value {
    let Person::Approver(approver) = people::person(&s.project, cfg, r.user).await else {
        return reply(&format!(
            "Only vigilo's approvers may run its commands, and <@{}> is not one.",
            r.user
        ));
    };
    let words: Vec<&str> = r.text.split_whitespace().collect();
    let (kind, argument) = match words[..] {
        ["scan", query] => {
            if !s.project.queries.contains_key(query) {
                let known: Vec<&str> = s.project.queries.keys().map(String::as_str).collect();
                return reply(&format!(
                    "No query `{query}`. Queries: {}",
                    known.join(", ")
                ));
            }
            ("scan", query.to_string())
        }
        ["remediate", finding] => {
            let Ok(id) = finding.parse::<i64>() else {
                return reply(&format!("`{finding}` is not a finding id. {USAGE}"));
            };
            if let Err(why) = remediation_of(s, id).await {
                return reply(&why);
            }
            ("remediate", id.to_string())
        }
        _ => return reply(USAGE),
    };
    let now = Utc::now();
    let ttl = chrono::Duration::from_std(cfg.confirm_ttl).unwrap_or_default();
    let command = NewCommand {
        kind: kind.to_string(),
        argument: argument.clone(),
        requested_by: approver.clone(),
        user_ref: r.user.to_string(),
        channel: Some(r.channel.to_string()),
        response_url: r.response_url.map(str::to_string),
        created_at: now,
        expires_at: now + ttl,
    };
    let id = match s.store.create_command(command).await {
        Ok(id) => id,
        Err(e) => {
            tracing::error!(error = %e, "could not record a ChatOps command");
            return reply("vigilo could not record the command (its store failed); try again.");
        }
    };
    let what = format!("/vigilo {kind} {argument}");
    json!({
        "response_type": "ephemeral",
        "text": format!("Confirm `{what}`?"),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": format!(
                "<@{}> asked for `{}`. Confirm within {} s; only you can.",
                r.user, escape(&what), cfg.confirm_ttl.as_secs()
            )}},
            {"type": "actions", "block_id": format!("{COMMAND_BLOCK}{id}"), "elements": [
                {"type": "button", "text": {"type": "plain_text", "text": "Confirm"}, "style": "primary",
                 "action_id": "confirm", "value": id.to_string()},
                {"type": "button", "text": {"type": "plain_text", "text": "Cancel"},
                 "action_id": "cancel", "value": id.to_string()},
            ]},
        ],
    })
}

/// The remediation a finding would get on request, or why it cannot.
async fn remediation_of(s: &AppState, finding_id: i64) -> Result<String, String> {
    let finding = match s.store.finding(finding_id).await {
        Ok(Some(f)) => f,
        Ok(None) => return Err(format!("Finding {finding_id} does not exist.")),
        Err(e) => return Err(format!("vigilo could not read finding {finding_id}: {e}")),
    };
    s.project
        .queries
        .get(&finding.query)
        .and_then(|q| q.remediation.clone())
        .ok_or_else(|| {
            format!(
                "Finding {finding_id} belongs to query `{}`, which has no remediation.",
                finding.query
            )
        })
}

/// A press of Confirm or Cancel on command `id` by `user`.
pub async fn decide(
    s: &AppState,
    cfg: &SlackConfig,
    id: i64,
    user: &str,
    channel: &str,
    confirm: bool,
    response_url: Option<&str>,
) {
    let record = match s.store.decide_command(id, user, confirm, Utc::now()).await {
        Ok(Ok(record)) => record,
        Ok(Err(why)) => return ephemeral(cfg, channel, user, &format!("Refused: {why}.")).await,
        Err(e) => {
            tracing::error!(command = id, error = %e, "could not decide a ChatOps command");
            return ephemeral(
                cfg,
                channel,
                user,
                "vigilo could not record that (its store failed).",
            )
            .await;
        }
    };
    let what = format!(
        "/vigilo {} {}",
        record.command.kind, record.command.argument
    );
    let text = if confirm {
        run(s, &record).await
    } else {
        format!("Cancelled `{what}`; nothing was done.")
    };
    let url = response_url.or(record.command.response_url.as_deref());
    answer(cfg, url, channel, user, &text).await;
}

/// Runs a confirmed command; returns what to tell the requester.
async fn run(s: &AppState, c: &CommandRecord) -> String {
    let by = &c.command.requested_by;
    match c.command.kind.as_str() {
        "scan" => {
            let Some(query) = s.project.queries.get(&c.command.argument) else {
                return format!(
                    "Query `{}` is no longer in the project.",
                    c.command.argument
                );
            };
            let scanner = match Scanner::new(s.project.clone(), s.store.clone()) {
                Ok(scanner) => scanner,
                Err(e) => return format!("`{}` could not start: {e}", query.name),
            };
            let run = scanner.run(query).await;
            match run.result {
                Ok(r) => format!(
                    "`{}` scanned for {by}: {} rows, {} inserted, {} updated, {} deleted; {} new finding(s) start their remediation.",
                    query.name,
                    r.rows,
                    r.inserted,
                    r.updated,
                    r.deleted,
                    r.outcome.opened.len() + r.outcome.reopened.len()
                ),
                Err(e) => format!("`{}` failed: {e}", query.name),
            }
        }
        "remediate" => {
            let Ok(finding) = c.command.argument.parse::<i64>() else {
                return format!("`{}` is not a finding id.", c.command.argument);
            };
            let remediation = match remediation_of(s, finding).await {
                Ok(r) => r,
                Err(why) => return why,
            };
            match s.store.request_remediation(finding, &remediation, by).await {
                Ok(Ok(run)) => format!(
                    "Remediation run {run} ({remediation}) of finding {finding} requested by {by}; the approval request follows."
                ),
                Ok(Err(why)) => format!("Not started: {why}."),
                Err(e) => format!("vigilo could not start it (its store failed): {e}"),
            }
        }
        other => format!("Unknown command {other}."),
    }
}

/// Replaces the prompt with `text` through `response_url`, or tells the user directly.
async fn answer(cfg: &SlackConfig, url: Option<&str>, channel: &str, user: &str, text: &str) {
    let text = crate::redact::text(text);
    if let Some(url) = url {
        let body = json!({"replace_original": true, "response_type": "ephemeral", "text": text});
        let post = reqwest::Client::new()
            .post(url)
            .timeout(super::CALL_TIMEOUT);
        match post.json(&body).send().await {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => tracing::warn!(
                status = r.status().as_u16(),
                "Slack's response_url refused the answer"
            ),
            Err(e) => {
                tracing::warn!(error = %e.without_url(), "could not answer through Slack's response_url")
            }
        }
    }
    ephemeral(cfg, channel, user, &text).await;
}
