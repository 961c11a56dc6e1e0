//! The Slack app manifest of a project (`vigilo slack manifest`): pasted into "Create New App →
//! From a manifest", it sets up the bot scopes vigilo needs (from `scopes`, nothing more),
//! the `/vigilo` command and interactivity, either over Socket Mode or at the request URLs
//! under `[server] base_url`.

use serde_json::{Value, json};

use super::scopes;
use crate::config::{IntegrationConfig, Project, SlackConfig};

/// How Slack reaches vigilo, as the manifest says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Socket Mode: vigilo connects out; no URL.
    Socket,
    /// Slack POSTs to `BASE/slack/interactions` and `BASE/slack/commands`.
    RequestUrls(String),
}

/// Why no manifest can be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// `--integration` names no Slack integration.
    #[error("--integration {0}: no [integration.slack.{0}] (Slack integrations: {1})")]
    Unknown(String, String),
    /// Several Slack integrations and no `--integration`.
    #[error("several Slack integrations ({0}); choose one with --integration NAME")]
    Ambiguous(String),
}

/// The Slack integration the manifest is for: `name`, or the only one (`None` when there is none).
pub fn integration<'p>(
    project: &'p Project,
    name: Option<&str>,
) -> Result<Option<(String, &'p SlackConfig)>, ManifestError> {
    let slack: Vec<(String, &SlackConfig)> = project
        .integrations
        .iter()
        .filter_map(|(key, i)| match i {
            IntegrationConfig::Slack(cfg) => {
                Some((key.strip_prefix("slack.").unwrap_or(key).to_string(), cfg))
            }
            _ => None,
        })
        .collect();
    let names = || {
        slack
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match name {
        Some(name) => {
            let name = name.strip_prefix("slack.").unwrap_or(name);
            match slack.iter().find(|(n, _)| n == name) {
                Some((n, cfg)) => Ok(Some((n.clone(), cfg))),
                None => Err(ManifestError::Unknown(name.to_string(), names())),
            }
        }
        None if slack.len() > 1 => Err(ManifestError::Ambiguous(names())),
        None => Ok(slack.into_iter().next()),
    }
}

/// Socket Mode when the integration has an `app_token`, or when there is no `base_url` for
/// Slack to reach; otherwise the request URLs under `base_url`.
pub fn delivery(project: &Project, cfg: Option<&SlackConfig>) -> Delivery {
    let base = project.server.as_ref().and_then(|s| s.base_url.clone());
    match (cfg.and_then(|c| c.app_token.as_ref()), base) {
        (None, Some(base)) => Delivery::RequestUrls(base),
        _ => Delivery::Socket,
    }
}

/// The manifest (JSON, which is also YAML: Slack takes either).
pub fn manifest(delivery: &Delivery) -> Value {
    let bot: Vec<&str> = scopes::bot_scopes().into_iter().collect();
    let url = |path: &str| match delivery {
        Delivery::RequestUrls(base) => Some(format!("{base}{path}")),
        Delivery::Socket => None,
    };
    let mut command = json!({
        "command": "/vigilo",
        "description": "Run a compliance query, or start a finding's remediation",
        "usage_hint": "scan QUERY | remediate FINDING_ID",
        "should_escape": false,
    });
    let mut interactivity = json!({"is_enabled": true});
    if let Some(u) = url("/slack/commands") {
        command["url"] = u.into();
    }
    if let Some(u) = url("/slack/interactions") {
        interactivity["request_url"] = u.into();
    }
    json!({
        "_metadata": {"major_version": 1, "minor_version": 1},
        "display_information": {
            "name": "vigilo",
            "description": "Compliance findings, approvals and remediations",
            "background_color": "#1d3b53",
        },
        "features": {
            "bot_user": {"display_name": "vigilo", "always_online": true},
            "slash_commands": [command],
        },
        "oauth_config": {"scopes": {"bot": bot}},
        "settings": {
            "interactivity": interactivity,
            "org_deploy_enabled": false,
            "socket_mode_enabled": *delivery == Delivery::Socket,
            "token_rotation_enabled": false,
        },
    })
}
