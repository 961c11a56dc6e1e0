//! `vigilo validate`'s Slack checks: each token's kind (offline), and with `--online` what
//! Slack says: `auth.test` for the bot token and its scopes against `scopes`, a Socket Mode
//! connection for the app token, and the Slack user of every approver known only by email.

use std::collections::BTreeSet;

use super::{Api, people, scopes};
use crate::config::{BOT_TOKEN_PREFIX, IntegrationConfig, Project, SlackConfig};

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// As it should be.
    Ok(String),
    /// Works, but probably not as meant.
    Warning(String),
    /// Will not work.
    Error(String),
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Note::Ok(text) => write!(f, "ok: {text}"),
            Note::Warning(text) => write!(f, "warning: {text}"),
            Note::Error(text) => write!(f, "error: {text}"),
        }
    }
}

fn slack(project: &Project) -> impl Iterator<Item = (&str, &SlackConfig)> {
    project.integrations.iter().filter_map(|(name, i)| match i {
        IntegrationConfig::Slack(cfg) => Some((name.as_str(), cfg)),
        _ => None,
    })
}

/// Token kinds, without asking Slack (an `xapp-` token in `token` or a wrong `app_token` are
/// already configuration errors).
pub fn offline(project: &Project) -> Vec<Note> {
    slack(project)
        .filter(|(_, cfg)| !cfg.token.expose().starts_with(BOT_TOKEN_PREFIX))
        .map(|(name, _)| {
            Note::Warning(format!(
                "integration.{name}.token: not a bot token ({BOT_TOKEN_PREFIX}…); use the Bot User OAuth Token of the app"
            ))
        })
        .collect()
}

/// What Slack says of each Slack integration's tokens and of the email-only approvers.
pub async fn online(project: &Project) -> Vec<Note> {
    let http = reqwest::Client::new();
    let mut notes = Vec::new();
    for (name, cfg) in slack(project) {
        let api = Api::new(&http, cfg);
        match api.auth_test().await {
            Ok((answer, granted)) => {
                notes.push(Note::Ok(format!(
                    "{name}: bot token of {} in {}",
                    answer["user"].as_str().unwrap_or("?"),
                    answer["team"].as_str().unwrap_or("?")
                )));
                notes.push(scope_note(name, granted.as_deref()));
            }
            Err(e) => notes.push(Note::Error(format!("{name}: token: {e}"))),
        }
        if cfg.app_token.is_some() {
            notes.push(match api.open_connection().await {
                Ok(_) => Note::Ok(format!("{name}: app_token opens Socket Mode connections")),
                Err(e) => Note::Error(format!("{name}: app_token: {e}")),
            });
        }
        for u in people::unresolved(project, &http, cfg).await {
            notes.push(Note::Error(format!("{name}: {u}")));
        }
    }
    notes
}

/// Whether `granted` (the token's scopes, when Slack said them) covers what vigilo calls.
fn scope_note(name: &str, granted: Option<&[String]>) -> Note {
    let Some(granted) = granted else {
        return Note::Warning(format!("{name}: Slack did not list the token's scopes"));
    };
    let granted: BTreeSet<&str> = granted.iter().map(String::as_str).collect();
    let missing: Vec<&str> = scopes::bot_scopes()
        .into_iter()
        .filter(|s| !granted.contains(s))
        .collect();
    if missing.is_empty() {
        Note::Ok(format!(
            "{name}: the bot token has every scope vigilo needs"
        ))
    } else {
        Note::Error(format!(
            "{name}: the bot token lacks {}; add them (vigilo slack manifest lists them) and reinstall the app",
            missing.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_scopes_are_named() {
        let all: Vec<String> = scopes::bot_scopes().iter().map(|s| s.to_string()).collect();
        assert!(matches!(scope_note("slack.x", Some(&all)), Note::Ok(_)));
        let some = vec!["chat:write".to_string(), "commands".to_string()];
        let Note::Error(text) = scope_note("slack.x", Some(&some)) else {
            panic!("not an error");
        };
        assert!(
            text.contains("lacks channels:history, groups:history, users:read, users:read.email"),
            "{text}"
        );
    }
}
