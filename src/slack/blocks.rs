//! Block Kit for approvals: the request (subject, prompt, the finding's key, one button per
//! option, or a menu beyond five; `inputs` builds the other input types' elements) and the
//! same message after the outcome (with the chosen value(s) or text), without buttons.

use serde_json::{Value, json};

use super::inputs;
use crate::approval::{Approval, InputKind, Status, VALUE_SEPARATOR, answer_values};
use crate::finding::Finding;
use crate::timestamp::rfc3339;

/// The `block_id` prefix of an approval's actions: `vigilo:approval:ID`.
pub const APPROVAL_BLOCK: &str = "vigilo:approval:";

/// More options than this become a `static_select`.
const MAX_BUTTONS: usize = 5;

/// Slack's limit for a header's text.
const HEADER_MAX: usize = 150;

/// Slack's limit of fields in a section.
const MAX_FIELDS: usize = 10;

/// Escapes `&`, `<` and `>` as Slack's text formats require.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A `plain_text` text object.
pub(crate) fn plain(text: &str) -> Value {
    json!({"type": "plain_text", "text": text, "emoji": true})
}

fn header(a: &Approval) -> Value {
    let text: String = a.subject.chars().take(HEADER_MAX).collect();
    json!({"type": "header", "text": plain(&text)})
}

/// The finding's key (and severity) as section fields.
fn finding_fields(f: &Finding) -> Value {
    let mut fields: Vec<Value> = f
        .key
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            json!({"type": "mrkdwn", "text": format!("*{}*\n{}", escape(k), escape(&v))})
        })
        .collect();
    fields.push(json!({"type": "mrkdwn", "text": format!("*severity*\n{}", f.severity.as_str())}));
    fields.truncate(MAX_FIELDS);
    json!({"type": "section", "fields": fields})
}

fn context(a: &Approval, f: Option<&Finding>, title: Option<&str>) -> Value {
    let mut parts = Vec::new();
    if let Some(f) = f {
        parts.push(format!(
            "{} · finding {} of `{}`",
            escape(title.unwrap_or(&f.query)),
            f.id,
            escape(&f.query)
        ));
    }
    parts.push(format!("approval {} · {}", a.id, escape(&a.remediation)));
    if let (Status::Pending, Some(d)) = (a.status, &a.deadline) {
        parts.push(format!("decide by {}", rfc3339(d)));
    }
    json!({"type": "context", "elements": [{"type": "mrkdwn", "text": parts.join(" · ")}]})
}

/// The request: subject, prompt, the finding's key, and the options to vote with.
pub fn request(a: &Approval, f: Option<&Finding>, title: Option<&str>) -> Value {
    let mut blocks = vec![
        header(a),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": escape(&a.prompt)}}),
    ];
    if let Some(f) = f {
        blocks.push(finding_fields(f));
    }
    blocks.push(context(a, f, title));
    let block_id = format!("{APPROVAL_BLOCK}{}", a.id);
    let elements: Vec<Value> = if let Some(elements) = inputs::elements(a) {
        elements
    } else if a.options.len() <= MAX_BUTTONS {
        a.options
            .iter()
            .map(|o| {
                let mut button = json!({
                    "type": "button",
                    "text": plain(&o.label),
                    "value": o.value,
                    "action_id": format!("vote:{}", o.value),
                });
                if let Some(style @ ("primary" | "danger")) = o.style.as_deref() {
                    button["style"] = style.into();
                }
                button
            })
            .collect()
    } else {
        vec![inputs::select(a)]
    };
    blocks.push(json!({"type": "actions", "block_id": block_id, "elements": elements}));
    Value::Array(blocks)
}

/// The request after its outcome: what was decided, by whom and when; no buttons.
pub fn outcome(a: &Approval, f: Option<&Finding>, title: Option<&str>) -> Value {
    let label = |value: &str| {
        a.options
            .iter()
            .find(|o| o.value == value)
            .map_or_else(|| value.to_string(), |o| o.label.clone())
    };
    // What was chosen: the option's label, each chosen option's, or the text as written.
    let chosen = |decision: &str| match a.input.kind {
        InputKind::Text => decision.to_string(),
        kind => answer_values(kind, decision)
            .iter()
            .map(|v| label(v))
            .collect::<Vec<_>>()
            .join(VALUE_SEPARATOR),
    };
    let when = a.decided_at.as_ref().map(rfc3339).unwrap_or_default();
    let line = match (a.status, &a.decision) {
        (Status::Decided, Some(d)) => format!(
            ":white_check_mark: *Decided: {}* by {} at {when}",
            escape(&chosen(d)),
            escape(&a.decided_by.join(", "))
        ),
        (Status::Expired, _) => {
            format!(":hourglass: *Expired* at {when}: nobody decided in time; nothing was done.")
        }
        _ => "*Pending*".to_string(),
    };
    let mut blocks = vec![
        header(a),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": escape(&a.prompt)}}),
    ];
    if let Some(f) = f {
        blocks.push(finding_fields(f));
    }
    blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": line}}));
    blocks.push(context(a, f, title));
    Value::Array(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approval::OptionSpec;
    use chrono::Utc;

    fn approval(options: usize) -> Approval {
        Approval {
            id: 7,
            remediation: "r".into(),
            finding_id: 3,
            status: Status::Pending,
            decision: None,
            subject: "Deactivate <AKIA1> & more?".into(),
            prompt: "p".into(),
            options: (0..options)
                .map(|i| OptionSpec {
                    value: format!("o{i}"),
                    label: format!("Option {i}"),
                    style: (i == 0).then(|| "danger".to_string()),
                    required: 1,
                    accept_for: None,
                })
                .collect(),
            input: Default::default(),
            values: vec![],
            approvers: vec!["alice".into()],
            requested_by: None,
            allow_self_approval: false,
            requested_at: Utc::now(),
            deadline: None,
            on_timeout: None,
            decided_at: None,
            decided_by: vec![],
            votes: vec![],
        }
    }

    #[test]
    fn up_to_five_options_are_buttons_more_are_a_menu() {
        let five = request(&approval(5), None, None);
        let actions = five.as_array().unwrap().last().unwrap().clone();
        assert_eq!(actions["block_id"], "vigilo:approval:7");
        assert_eq!(actions["elements"].as_array().unwrap().len(), 5);
        assert_eq!(actions["elements"][0]["style"], "danger");
        assert_eq!(actions["elements"][0]["action_id"], "vote:o0");
        let six = request(&approval(6), None, None);
        let menu = &six.as_array().unwrap().last().unwrap()["elements"][0];
        assert_eq!(menu["type"], "static_select");
        assert_eq!(menu["options"].as_array().unwrap().len(), 6);
        assert_eq!(menu["options"][5]["value"], "o5");
    }

    #[test]
    fn text_is_escaped_for_slack() {
        assert_eq!(escape("<a> & b"), "&lt;a&gt; &amp; b");
        let blocks = request(&approval(2), None, None);
        assert_eq!(
            blocks[0]["text"]["text"], "Deactivate <AKIA1> & more?",
            "headers are plain text"
        );
    }
}
