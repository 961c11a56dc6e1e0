//! The answer elements of a Slack approval request beyond buttons, and what a click on
//! them means: a `static_select` votes with its choice; a `multi_static_select` only holds
//! a choice until its Submit button is pressed, whose `block_actions` payload carries the
//! menu's selection in `state.values`; a text approval's Answer button opens the `modal`.
//!
//! Every element sits in the request's actions block, whose `block_id` names the approval
//! (`vigilo:approval:ID`); the `action_id` says which element was used.

use serde_json::{Value, json};

use super::blocks::plain;
use crate::approval::{Approval, InputKind, Vote};

/// The `action_id` of a single-choice menu (`select`, or buttons beyond five): its choice votes.
pub const SELECT: &str = "vote";

/// The `action_id` of a multiselect's menu: a change of it alone does not vote.
pub const CHOOSE: &str = "choose";

/// The `action_id` of a multiselect's Submit button: votes with the menu's selection.
pub const SUBMIT: &str = "submit";

/// The `action_id` of a text approval's Answer button: opens the answer form.
pub const ANSWER: &str = "answer";

/// Slack's limit for an option's text in a menu.
const OPTION_TEXT_MAX: usize = 75;

/// Slack's limit for a menu's placeholder.
const PLACEHOLDER_MAX: usize = 150;

/// `text` cut to `max` characters (Slack refuses longer texts in these fields).
pub(crate) fn cut(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// The approval's options as a menu's options.
fn menu_options(a: &Approval) -> Vec<Value> {
    a.options
        .iter()
        .map(|o| json!({"text": plain(&cut(&o.label, OPTION_TEXT_MAX)), "value": o.value}))
        .collect()
}

/// The menu's placeholder: `[approval] placeholder`, else `default`.
fn placeholder(a: &Approval, default: &str) -> Value {
    let text = a.input.placeholder.as_deref().unwrap_or(default);
    plain(&cut(text, PLACEHOLDER_MAX))
}

/// A single-choice menu of the approval's options.
pub fn select(a: &Approval) -> Value {
    json!({
        "type": "static_select",
        "action_id": SELECT,
        "placeholder": placeholder(a, "Choose…"),
        "options": menu_options(a),
    })
}

/// The elements of a `select`, `multiselect` or `text` approval's actions block (`None`
/// for buttons, which `blocks` builds).
pub fn elements(a: &Approval) -> Option<Vec<Value>> {
    match a.input.kind {
        InputKind::Button => None,
        InputKind::Select => Some(vec![select(a)]),
        InputKind::Multiselect => Some(vec![
            json!({
                "type": "multi_static_select",
                "action_id": CHOOSE,
                "placeholder": placeholder(a, "Choose one or more…"),
                "options": menu_options(a),
            }),
            json!({
                "type": "button",
                "action_id": SUBMIT,
                "text": plain("Submit"),
                "value": SUBMIT,
                "style": "primary",
            }),
        ]),
        InputKind::Text => Some(vec![json!({
            "type": "button",
            "action_id": ANSWER,
            "text": plain("Answer"),
            "value": ANSWER,
            "style": "primary",
        })]),
    }
}

/// The vote of `approver`, Slack user `user`, answering `values`.
pub fn ballot(approver: &str, values: Vec<String>, user: &str) -> Vote {
    let mut vote = Vote::new(approver, values, "slack");
    vote.identity = Some(format!("slack:{user}"));
    vote
}

/// What a click in an approval's actions block asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Click {
    /// Vote with these values (an option, or a multiselect's selection).
    Vote(Vec<String>),
    /// Open the text answer form.
    OpenForm,
    /// Nothing: a multiselect's selection changed, and waits for Submit.
    Nothing,
}

/// What `action`, one of a `block_actions` payload's actions in block `block_id`, asks for;
/// `state` is the payload's `state` (the message's inputs as they were at the click).
pub fn click(action: &Value, state: &Value, block_id: &str) -> Click {
    let id = action["action_id"].as_str().unwrap_or_default();
    match (action["type"].as_str().unwrap_or_default(), id) {
        ("multi_static_select", _) => Click::Nothing,
        ("button", SUBMIT) => Click::Vote(selection(state, block_id)),
        ("button", ANSWER) => Click::OpenForm,
        _ => {
            let value = action["value"]
                .as_str()
                .or_else(|| action["selected_option"]["value"].as_str())
                .unwrap_or_default();
            Click::Vote(vec![value.to_string()])
        }
    }
}

/// The values selected in block `block_id`'s multiselect, from a payload's `state`.
fn selection(state: &Value, block_id: &str) -> Vec<String> {
    state["values"][block_id][CHOOSE]["selected_options"]
        .as_array()
        .map(|options| {
            options
                .iter()
                .filter_map(|o| o["value"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multiselect_votes_only_on_submit_with_the_state_it_carries() {
        let block = "vigilo:approval:4";
        let state = json!({"values": {block: {CHOOSE: {
            "type": "multi_static_select",
            "selected_options": [
                {"text": {"type": "plain_text", "text": "SSH"}, "value": "ssh"},
                {"text": {"type": "plain_text", "text": "RDP"}, "value": "rdp"},
            ],
        }}}});
        let change = json!({"type": "multi_static_select", "action_id": CHOOSE, "block_id": block,
            "selected_options": [{"value": "ssh"}]});
        assert_eq!(click(&change, &state, block), Click::Nothing);
        let submit =
            json!({"type": "button", "action_id": SUBMIT, "block_id": block, "value": SUBMIT});
        assert_eq!(
            click(&submit, &state, block),
            Click::Vote(vec!["ssh".into(), "rdp".into()])
        );
        assert_eq!(
            click(&submit, &json!({"values": {}}), block),
            Click::Vote(vec![]),
            "nothing selected: the state machine says why"
        );
    }

    #[test]
    fn a_select_votes_with_its_choice_and_a_button_with_its_value() {
        let select = json!({"type": "static_select", "action_id": SELECT,
            "selected_option": {"text": {"type": "plain_text", "text": "Data"}, "value": "team-data"}});
        assert_eq!(
            click(&select, &Value::Null, "b"),
            Click::Vote(vec!["team-data".into()])
        );
        let button = json!({"type": "button", "action_id": "vote:keep", "value": "keep"});
        assert_eq!(
            click(&button, &Value::Null, "b"),
            Click::Vote(vec!["keep".into()])
        );
        let answer = json!({"type": "button", "action_id": ANSWER, "value": ANSWER});
        assert_eq!(click(&answer, &Value::Null, "b"), Click::OpenForm);
    }
}
