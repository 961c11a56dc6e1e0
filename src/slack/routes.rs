//! Slack's calls to vigilo: button clicks and menu choices (`inputs`) and answer forms
//! (`modal`) at `POST /slack/interactions`, and slash commands
//! (`POST /slack/commands`). Every request is checked against each configured signing
//! secret before anything is read; a bad or stale signature gets 401 and changes nothing.
//! Clicks are acknowledged at once and handled after, as Slack asks (three seconds).
//!
//! What an interaction or a command does does not depend on how it came: [`interaction`]
//! and [`slash_command`] take the parsed payload and return the answer, for the signed
//! HTTP routes here and for Socket Mode envelopes (`socket`) alike.

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::Utc;
use serde_json::{Value, json};

use super::blocks::APPROVAL_BLOCK;
use super::chatops::{self, COMMAND_BLOCK};
use super::inputs::{self, Click, ballot};
use super::people::{self, Person, Unresolved};
use super::{Api, modal, signature};
use crate::audit::{Event, Kind};
use crate::config::{IntegrationConfig, Project, SlackConfig};
use crate::state::AppState;

/// The Slack routes, to merge into the server's router.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/slack/interactions", post(interactions))
        .route("/slack/commands", post(commands))
}

/// The Slack integration whose signing secret signed this request, or the 401 answer.
fn verified(
    project: &Project,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<SlackConfig, Box<Response>> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (ts, sig) = (
        header("x-slack-request-timestamp"),
        header("x-slack-signature"),
    );
    let now = Utc::now().timestamp();
    let mut why = "no [integration.slack] has a signing_secret".to_string();
    for integration in project.integrations.values() {
        if let IntegrationConfig::Slack(cfg) = integration
            && let Some(secret) = &cfg.signing_secret
        {
            match signature::verify(secret.expose(), ts, sig, body, now) {
                Ok(()) => return Ok(cfg.clone()),
                Err(e) => why = e.to_string(),
            }
        }
    }
    tracing::warn!(reason = %why, "refused a request that is not signed by Slack");
    let refusal = (
        StatusCode::UNAUTHORIZED,
        format!("not signed by Slack: {why}"),
    );
    Err(Box::new(refusal.into_response()))
}

fn form(body: &[u8]) -> Result<HashMap<String, String>, Box<Response>> {
    serde_urlencoded::from_bytes(body).map_err(|e| {
        Box::new((StatusCode::BAD_REQUEST, format!("not a form: {e}")).into_response())
    })
}

async fn interactions(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let cfg = match verified(&s.project, &headers, &body) {
        Ok(cfg) => cfg,
        Err(r) => return *r,
    };
    let payload: Value = match form(&body).map(|f| f.get("payload").cloned()) {
        Ok(Some(p)) => match serde_json::from_str(&p) {
            Ok(v) => v,
            Err(e) => return (StatusCode::BAD_REQUEST, format!("payload: {e}")).into_response(),
        },
        Ok(None) => return (StatusCode::BAD_REQUEST, "no payload").into_response(),
        Err(r) => return *r,
    };
    match interaction(&s, &cfg, payload).await {
        Some(answer) => axum::Json(answer).into_response(),
        None => StatusCode::OK.into_response(),
    }
}

/// Handles one interaction payload (`block_actions`, `view_submission`, …) of `cfg`'s Slack
/// app, however it arrived; returns the answer to give Slack at once (`None`: an empty
/// acknowledgement; a `view_submission` may answer with `response_action` errors). Work that
/// may outlast Slack's three seconds (votes, refusals, commands) runs after.
pub async fn interaction(s: &AppState, cfg: &SlackConfig, payload: Value) -> Option<Value> {
    match payload["type"].as_str() {
        Some("view_submission") => modal::submit(s, cfg, &payload).await,
        Some("block_actions") => {
            let (s, cfg) = (s.clone(), cfg.clone());
            tokio::spawn(async move { handle_click(s, cfg, payload).await });
            None
        }
        _ => None,
    }
}

/// Tells `user` (only them) why nothing changed.
pub(crate) async fn ephemeral(cfg: &SlackConfig, channel: &str, user: &str, text: &str) {
    let http = reqwest::Client::new();
    let body = json!({"channel": channel, "user": user, "text": crate::redact::text(text)});
    if let Err(e) = Api::new(&http, cfg).call("chat.postEphemeral", &body).await {
        tracing::warn!(user, error = %e, "could not tell a Slack user why nothing changed");
    }
}

async fn handle_click(s: AppState, cfg: SlackConfig, payload: Value) {
    let action = &payload["actions"][0];
    let user = payload["user"]["id"].as_str().unwrap_or_default();
    let channel = payload["channel"]["id"]
        .as_str()
        .or_else(|| payload["container"]["channel_id"].as_str())
        .unwrap_or_default();
    let block = action["block_id"].as_str().unwrap_or_default();
    if let Some(id) = block
        .strip_prefix(APPROVAL_BLOCK)
        .and_then(|i| i.parse::<i64>().ok())
    {
        match inputs::click(action, &payload["state"], block) {
            Click::Vote(values) => vote(&s, &cfg, id, values, user, channel).await,
            Click::OpenForm => {
                let trigger = payload["trigger_id"].as_str().unwrap_or_default();
                modal::open(&s, &cfg, id, user, channel, trigger).await;
            }
            Click::Nothing => {}
        }
    } else if let Some(id) = block
        .strip_prefix(COMMAND_BLOCK)
        .and_then(|i| i.parse::<i64>().ok())
    {
        let confirm = action["action_id"] == "confirm";
        let response_url = payload["response_url"].as_str();
        chatops::decide(&s, &cfg, id, user, channel, confirm, response_url).await;
    }
}

async fn vote(
    s: &AppState,
    cfg: &SlackConfig,
    id: i64,
    values: Vec<String>,
    user: &str,
    channel: &str,
) {
    let approver = match people::person(&s.project, cfg, user).await {
        Person::Approver(name) => name,
        Person::Stranger(unresolved) => {
            refused(s, id, user, &unresolved).await;
            let text = format!("<@{user}> is not an approver in vigilo; nothing was recorded.");
            return ephemeral(cfg, channel, user, &text).await;
        }
    };
    let approver = approver.as_str();
    let ballot = ballot(approver, values, user);
    let option = ballot.option.clone();
    let option = option.as_str();
    match s.store.vote(id, ballot).await {
        Ok(Ok(t)) => {
            tracing::info!(approval = id, approver, slack_user = user, transition = ?t, "vote from Slack")
        }
        Ok(Err(_)) if counted(s, id, approver, option).await => {
            // The same click delivered again (Socket Mode retries, a double click): its vote
            // stands as asked, so there is nothing to tell.
            tracing::info!(
                approval = id,
                approver,
                slack_user = user,
                "a repeated vote from Slack; counted once"
            );
        }
        Ok(Err(refusal)) => {
            ephemeral(cfg, channel, user, &format!("Not recorded: {refusal}.")).await
        }
        Err(e) => {
            tracing::error!(approval = id, error = %e, "could not record a vote from Slack");
            ephemeral(
                cfg,
                channel,
                user,
                "vigilo could not record your vote (its store failed); try again.",
            )
            .await;
        }
    }
}

/// Records a click on approval `id` from Slack user `user`, who is no approver, with the
/// approvers' addresses that named no Slack user (the likely reason when it was meant to count).
async fn refused(s: &AppState, id: i64, user: &str, unresolved: &[Unresolved]) {
    for u in unresolved {
        tracing::warn!(approval = id, slack_user = user, "{u}");
    }
    let event = Event {
        kind: Kind::ApprovalRefused,
        actor: format!("slack:{user}"),
        channel: "slack".into(),
        finding_id: None,
        approval_id: Some(id),
        action_id: None,
        data: json!({
            "slack_user": user,
            "reason": "not an approver",
            "unresolved": unresolved.iter().map(Unresolved::to_json).collect::<Vec<_>>(),
        }),
    };
    if let Err(e) = s.store.append_audit(vec![event]).await {
        tracing::error!(approval = id, error = %e, "could not record a refused Slack click");
    }
}

/// Whether approval `id` already holds `approver`'s vote for `option`.
async fn counted(s: &AppState, id: i64, approver: &str, option: &str) -> bool {
    match s.store.approval(id).await {
        Ok(Some(a)) => a
            .votes
            .iter()
            .any(|v| v.by == approver && v.option == option),
        _ => false,
    }
}

async fn commands(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let cfg = match verified(&s.project, &headers, &body) {
        Ok(cfg) => cfg,
        Err(r) => return *r,
    };
    let fields = match form(&body) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let fields: serde_json::Map<String, Value> = fields
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    axum::Json(slash_command(&s, &cfg, &Value::Object(fields)).await).into_response()
}

/// Answers one slash command of `cfg`'s Slack app, however it arrived: `fields` holds
/// Slack's fields (`text`, `user_id`, `channel_id`, `response_url`, …) as strings.
pub async fn slash_command(s: &AppState, cfg: &SlackConfig, fields: &Value) -> Value {
    let field = |k: &str| fields[k].as_str().unwrap_or_default();
    let request = chatops::Request {
        text: field("text"),
        user: field("user_id"),
        channel: field("channel_id"),
        response_url: fields["response_url"].as_str(),
    };
    chatops::request(s, cfg, &request).await
}
