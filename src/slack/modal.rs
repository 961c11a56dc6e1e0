//! The answer form of a text approval: a modal opened with `views.open` from the Answer
//! click's `trigger_id` (valid for three seconds, once), and its `view_submission`, which
//! votes with the text at once so that a refusal (a text not matching `pattern`, a second
//! vote, …) is shown in the form itself with Slack's `response_action: errors`.

use serde_json::{Value, json};

use super::Api;
use super::blocks::{escape, plain};
use super::inputs::{ballot, cut};
use super::people::{self, Person};
use super::routes::ephemeral;
use crate::approval::Approval;
use crate::config::SlackConfig;
use crate::state::AppState;

/// The `callback_id` of vigilo's answer form.
pub const CALLBACK_ID: &str = "vigilo:answer";

/// The `block_id` of the form's text input (the key of its errors).
pub const ANSWER_BLOCK: &str = "vigilo:answer:text";

/// The `action_id` of the form's text input.
pub const ANSWER_ACTION: &str = "text";

/// Slack's limit for a section's text.
const SECTION_MAX: usize = 3000;

/// Slack's limit for a plain text input's placeholder.
const PLACEHOLDER_MAX: usize = 150;

/// Slack's limit for a hint.
const HINT_MAX: usize = 2000;

/// The form for approval `a`: its subject and prompt, the suggestions (its options), and a
/// text input with the placeholder and, as a hint, the pattern an answer must match.
pub fn view(a: &Approval) -> Value {
    let mut blocks = vec![json!({
        "type": "section",
        "text": {
            "type": "mrkdwn",
            "text": cut(&format!("*{}*\n{}", escape(&a.subject), escape(&a.prompt)), SECTION_MAX),
        },
    })];
    if !a.options.is_empty() {
        let suggestions: Vec<String> = a
            .options
            .iter()
            .map(|o| format!("`{}` ({})", escape(&o.value), escape(&o.label)))
            .collect();
        let text = format!("Suggestions: {}", suggestions.join(", "));
        blocks.push(json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": cut(&text, SECTION_MAX)}],
        }));
    }
    let mut element = json!({"type": "plain_text_input", "action_id": ANSWER_ACTION});
    if let Some(p) = &a.input.placeholder {
        element["placeholder"] = plain(&cut(p, PLACEHOLDER_MAX));
    }
    let mut input = json!({
        "type": "input",
        "block_id": ANSWER_BLOCK,
        "label": plain("Your answer"),
        "element": element,
    });
    if let Some(pattern) = &a.input.pattern {
        input["hint"] = plain(&cut(&format!("Must match the pattern {pattern}"), HINT_MAX));
    }
    blocks.push(input);
    json!({
        "type": "modal",
        "callback_id": CALLBACK_ID,
        "private_metadata": json!({"approval": a.id}).to_string(),
        "title": plain("Answer approval"),
        "submit": plain("Submit"),
        "close": plain("Cancel"),
        "blocks": blocks,
    })
}

/// Opens approval `id`'s answer form for Slack user `user`, who clicked Answer in
/// `channel`; tells them (only them) why not when they may not answer or Slack refuses.
pub async fn open(
    s: &AppState,
    cfg: &SlackConfig,
    id: i64,
    user: &str,
    channel: &str,
    trigger: &str,
) {
    // By configured Slack id, or an email-only approver found through users.lookupByEmail.
    let approver = match people::person(&s.project, cfg, user).await {
        Person::Approver(name) => name,
        Person::Stranger(_) => {
            let text = format!("<@{user}> is not an approver in vigilo; nothing was recorded.");
            return ephemeral(cfg, channel, user, &text).await;
        }
    };
    let approver = approver.as_str();
    let a = match s.store.approval(id).await {
        Ok(Some(a)) => a,
        Ok(None) => {
            let text = format!("Not recorded: approval {id} does not exist.");
            return ephemeral(cfg, channel, user, &text).await;
        }
        Err(e) => {
            tracing::error!(approval = id, error = %e, "could not read an approval for Slack");
            let text = "vigilo could not open the answer form (its store failed); try again.";
            return ephemeral(cfg, channel, user, text).await;
        }
    };
    if let Err(refusal) = a.may_vote(approver) {
        return ephemeral(cfg, channel, user, &format!("Not recorded: {refusal}.")).await;
    }
    let body = crate::redact::json(json!({"trigger_id": trigger, "view": view(&a)}));
    let http = reqwest::Client::new();
    if let Err(e) = Api::new(&http, cfg).call("views.open", &body).await {
        tracing::warn!(approval = id, slack_user = user, error = %e, "Slack did not open the answer form");
        let text = format!("Slack did not open the answer form ({e}); click Answer again.");
        ephemeral(cfg, channel, user, &text).await;
    }
}

/// The answer to a `view_submission` that changes nothing: `why` shown under the text input.
fn refused(why: &str) -> Value {
    json!({"response_action": "errors", "errors": {ANSWER_BLOCK: crate::redact::text(why)}})
}

/// Handles a `view_submission` of `cfg`'s Slack app: votes with the form's text. Returns
/// the answer to give Slack at once: `None` (an empty 200) closes the form; `errors` keeps
/// it open with the reason nothing was recorded.
pub async fn submit(s: &AppState, cfg: &SlackConfig, payload: &Value) -> Option<Value> {
    let view = &payload["view"];
    if view["callback_id"] != CALLBACK_ID {
        return None;
    }
    let metadata: Value = view["private_metadata"]
        .as_str()
        .and_then(|m| serde_json::from_str(m).ok())
        .unwrap_or_default();
    let Some(id) = metadata["approval"].as_i64() else {
        return Some(refused(
            "This form names no approval; open it again from the request.",
        ));
    };
    let user = payload["user"]["id"].as_str().unwrap_or_default();
    let approver = match people::person(&s.project, cfg, user).await {
        Person::Approver(name) => name,
        Person::Stranger(_) => {
            return Some(refused(
                "You are not an approver in vigilo; nothing was recorded.",
            ));
        }
    };
    let approver = approver.as_str();
    let text = view["state"]["values"][ANSWER_BLOCK][ANSWER_ACTION]["value"]
        .as_str()
        .unwrap_or_default();
    match s
        .store
        .vote(id, ballot(approver, vec![text.to_string()], user))
        .await
    {
        Ok(Ok(t)) => {
            tracing::info!(approval = id, approver, slack_user = user, transition = ?t, "answer from Slack");
            None
        }
        Ok(Err(refusal)) => Some(refused(&format!("Not recorded: {refusal}."))),
        Err(e) => {
            tracing::error!(approval = id, error = %e, "could not record an answer from Slack");
            Some(refused(
                "vigilo could not record your answer (its store failed); submit again.",
            ))
        }
    }
}
