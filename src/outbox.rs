//! What each event tells whom: the messages queued in the store's outbox in the transaction
//! of the event, for `notify` to deliver afterwards.
//!
//! [`for_notifier`] expands a notifier into one [`NewMessage`] per target (one per recipient
//! for email, so each gets its own links and retries), and [`for_decision`] renders a
//! remediation's `[[message]]`s for a decision.

use serde_json::{Value, json};

use crate::config::{IntegrationConfig, NotifyTarget, Project, Remediation};
use crate::store::NewMessage;
use crate::store::events::REMEDIATION_MESSAGE;
use crate::template;

/// One message per target of `notifier` (none if the project has no such notifier).
pub fn for_notifier(
    project: &Project,
    notifier: &str,
    event: &str,
    text: Option<String>,
) -> Vec<NewMessage> {
    let Some(n) = project.notifiers.get(notifier) else {
        return Vec::new();
    };
    let message = |target: &NotifyTarget| NewMessage {
        event: event.to_string(),
        notifier: notifier.to_string(),
        integration: target.integration.clone(),
        destination: destination(target),
        text: text.clone(),
    };
    let mut out = Vec::new();
    for target in &n.notify {
        let is_email = matches!(
            project.integrations.get(&target.integration),
            Some(IntegrationConfig::Email(_))
        );
        if is_email && target.to.len() > 1 {
            // One message per recipient: each gets its own links, and is retried on its own.
            for to in &target.to {
                out.push(message(&NotifyTarget {
                    to: vec![to.clone()],
                    ..target.clone()
                }));
            }
        } else {
            out.push(message(target));
        }
    }
    out
}

/// The `[[message]]`s that `decision` triggers (`None`: auto-remediation), rendered over `ctx`.
pub fn for_decision(
    project: &Project,
    remediation: &Remediation,
    decision: Option<&[String]>,
    ctx: &Value,
) -> Result<Vec<NewMessage>, String> {
    let mut out = Vec::new();
    for (i, m) in remediation.messages.iter().enumerate() {
        if !remediation.runs_for(m.when.as_deref(), decision) {
            continue;
        }
        let text = template::render(&m.text, ctx)
            .map(|t| crate::redact::text(&t))
            .map_err(|e| format!("message[{i}].text: {e}"))?;
        out.extend(for_notifier(
            project,
            &m.notifier,
            REMEDIATION_MESSAGE,
            Some(text),
        ));
    }
    Ok(out)
}

fn destination(target: &NotifyTarget) -> Value {
    let mut d = serde_json::Map::new();
    if let Some(channel) = &target.channel {
        d.insert("channel".into(), channel.clone().into());
    }
    if !target.to.is_empty() {
        d.insert("to".into(), json!(target.to));
    }
    Value::Object(d)
}
