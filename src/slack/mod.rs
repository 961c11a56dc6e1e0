//! Slack: the Web API client, the delivery of outbox messages to channels (approval
//! requests with buttons, votes in the request's thread, the request updated with the
//! outcome, messages threaded under it), and the pace Slack asks for.
//!
//! `routes` answers Slack's calls (`/slack/interactions`, `/slack/commands`), each checked
//! by `signature`, and `socket` takes the same calls over Socket Mode; `blocks` builds the
//! Block Kit, `inputs` the menus of select and multiselect approvals and what their clicks
//! mean, `modal` the answer form of text approvals; `chatops` runs confirmed slash commands;
//! `scopes` lists the Web API methods vigilo calls and the scopes they need.

pub mod blocks;
pub mod chatops;
pub mod check;
pub mod inputs;
pub mod manifest;
pub mod modal;
pub mod people;
pub mod routes;
pub mod scopes;
pub mod signature;
pub mod socket;

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::config::{Project, SlackConfig};
use crate::message::{Content, Delivery};
use crate::store::events;
use crate::store::{MessageRecord, MessageState, Store};

/// How long one Web API call may take.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How much of an unexpected answer is kept in an error.
const BODY_EXCERPT: usize = 200;

/// Why a Web API call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlackError {
    /// Slack answered `{"ok": false, "error": …}`.
    #[error("slack {method}: {error}{}", fix(error))]
    Api {
        /// The method called.
        method: String,
        /// Slack's error code (`channel_not_found`, `invalid_auth`, …).
        error: String,
    },
    /// HTTP 429: try again after `retry_after`.
    #[error("slack {method}: rate limited; retry after {}s", retry_after.as_secs())]
    RateLimited {
        /// The method called.
        method: String,
        /// From the `Retry-After` header.
        retry_after: Duration,
    },
    /// Another HTTP status (5xx, …).
    #[error("slack {method}: HTTP {status}: {body}")]
    Http {
        /// The method called.
        method: String,
        /// The status.
        status: u16,
        /// The start of the answer.
        body: String,
    },
    /// No answer (connection refused, timeout) or an answer that is not Slack's JSON.
    #[error("slack {method}: {message}")]
    Transport {
        /// The method called.
        method: String,
        /// What went wrong.
        message: String,
    },
}

/// What to do about the Slack error codes of a setup that is not right yet (`; …`), or nothing.
fn fix(code: &str) -> &'static str {
    match code {
        "invalid_auth" | "not_authed" | "account_inactive" | "token_revoked" | "token_expired" => {
            "; Slack refused the token: set the integration's `token` to the app's bot token (xoxb-…, under OAuth & Permissions)"
        }
        "channel_not_found" => {
            "; no such channel, or the bot cannot see it: use the channel's ID (C0…) and invite the bot (/invite @APP)"
        }
        "not_in_channel" => "; invite the bot to the channel (/invite @APP)",
        "missing_scope" => "; give the app the chat:write scope and reinstall it",
        _ => "",
    }
}

/// The Web API of one `[integration.slack.NAME]`.
pub struct Api<'a> {
    http: &'a reqwest::Client,
    cfg: &'a SlackConfig,
}

/// What a Web API call sends: JSON, or a form (Slack's read methods take no JSON).
enum Body<'b> {
    Json(&'b Value),
    Form(&'b [(&'b str, &'b str)]),
}

impl<'a> Api<'a> {
    /// The API with `cfg`'s tokens and `api_url`.
    pub fn new(http: &'a reqwest::Client, cfg: &'a SlackConfig) -> Api<'a> {
        Api { http, cfg }
    }

    /// Calls `method` with a JSON body; `Ok` is Slack's answer when it says `ok: true`.
    pub async fn call(&self, method: &str, body: &Value) -> Result<Value, SlackError> {
        Ok(self.request(method, Body::Json(body)).await?.0)
    }

    /// Calls `method` with form fields (`conversations.history`, `users.lookupByEmail`, …).
    pub async fn call_form(
        &self,
        method: &str,
        fields: &[(&str, &str)],
    ) -> Result<Value, SlackError> {
        Ok(self.request(method, Body::Form(fields)).await?.0)
    }

    /// `auth.test`: Slack's answer and the bot token's scopes (its `x-oauth-scopes` header).
    pub async fn auth_test(&self) -> Result<(Value, Option<Vec<String>>), SlackError> {
        let (answer, headers) = self.request("auth.test", Body::Form(&[])).await?;
        let scopes = headers
            .get("x-oauth-scopes")
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            });
        Ok((answer, scopes))
    }

    /// `apps.connections.open`: a Socket Mode WebSocket URL (good for one connection).
    pub async fn open_connection(&self) -> Result<String, SlackError> {
        let method = "apps.connections.open";
        let (answer, _) = self.request(method, Body::Form(&[])).await?;
        answer["url"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| SlackError::Transport {
                method: method.to_string(),
                message: "Slack's answer has no url".into(),
            })
    }

    async fn request(
        &self,
        method: &str,
        body: Body<'_>,
    ) -> Result<(Value, reqwest::header::HeaderMap), SlackError> {
        let transport = |message: String| SlackError::Transport {
            method: method.to_string(),
            message,
        };
        let Some(known) = scopes::method(method) else {
            return Err(transport(
                "not in slack::scopes::METHODS; add it there with the scopes it needs".into(),
            ));
        };
        let token = match known.token {
            scopes::Token::Bot => &self.cfg.token,
            scopes::Token::App => self.cfg.app_token.as_ref().ok_or_else(|| {
                transport("needs an app-level token: set app_token (xapp-…)".into())
            })?,
        };
        let request = self
            .http
            .post(format!("{}/{method}", self.cfg.api_url))
            .timeout(CALL_TIMEOUT)
            .bearer_auth(token.expose());
        let request = match body {
            Body::Json(body) => request.json(body),
            Body::Form(fields) => request.form(fields),
        };
        let response = request
            .send()
            .await
            .map_err(|e| transport(crate::cause::http(&e)))?;
        let status = response.status();
        if status.as_u16() == 429 {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(1)
                .max(1);
            return Err(SlackError::RateLimited {
                method: method.to_string(),
                retry_after: Duration::from_secs(retry_after),
            });
        }
        let headers = response.headers().clone();
        let text = response
            .text()
            .await
            .map_err(|e| transport(crate::cause::http(&e)))?;
        if !status.is_success() {
            return Err(SlackError::Http {
                method: method.to_string(),
                status: status.as_u16(),
                body: text.chars().take(BODY_EXCERPT).collect(),
            });
        }
        let answer: Value = serde_json::from_str(&text).map_err(|_| {
            transport(format!(
                "not a Slack answer: {}",
                text.chars().take(BODY_EXCERPT).collect::<String>()
            ))
        })?;
        if answer["ok"] == true {
            Ok((answer, headers))
        } else {
            Err(SlackError::Api {
                method: method.to_string(),
                error: answer["error"]
                    .as_str()
                    .unwrap_or("unknown_error")
                    .to_string(),
            })
        }
    }
}

/// One channel's pace: its next free slot, and the later slots already promised to messages.
#[derive(Default)]
struct Slots {
    /// When the channel may next be posted to (unpromised).
    next: Option<Instant>,
    /// Message id → the slot it was promised when it had to wait.
    booked: HashMap<i64, Instant>,
    /// When the last post to the channel was answered (or, while it is in flight, sent).
    last: Option<Instant>,
}

/// Each (integration, channel)'s pace.
static PACE: LazyLock<Mutex<HashMap<(String, String), Slots>>> = LazyLock::new(Mutex::default);

/// Added to the pace between two posts, against clock drift between here and Slack (the
/// pace is counted from Slack's answer, so the wire's jitter cannot make a post early).
const PACE_MARGIN: Duration = Duration::from_millis(5);

/// Takes message `id`'s slot in the channel, or says how long until its slot.
///
/// A message that has to wait is promised the next free slot, and later messages the slots
/// after it: each waiting message comes back once, when its own slot is due, instead of all
/// of them competing for every slot (which starves channels and costs a store round trip per
/// message per slot).
///
/// Whatever was promised, a post goes out no sooner than `pace` after the previous post to
/// the channel was answered: Slack saw that one arrive before it answered, so this one
/// arrives at least `pace` later however late the previous one went out or however long
/// either took on the wire.
fn reserve(integration: &str, channel: &str, id: i64, pace: Duration) -> Option<Duration> {
    let mut all = PACE.lock().unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    let slots = all
        .entry((integration.to_string(), channel.to_string()))
        .or_default();
    let after_last = slots.last.map(|last| last + pace + PACE_MARGIN);
    let slot = match slots.booked.get(&id) {
        Some(slot) => *slot,
        None => {
            // Promises long past were for messages sent elsewhere or given up: forget them.
            slots
                .booked
                .retain(|_, slot| now.saturating_duration_since(*slot) < Duration::from_secs(600));
            let slot = [slots.next, after_last]
                .into_iter()
                .flatten()
                .fold(now, Instant::max);
            slots.next = Some(slot + pace + PACE_MARGIN);
            slot
        }
    };
    let due = after_last.map_or(slot, |after| after.max(slot));
    if due > now {
        slots.booked.insert(id, due);
        return Some(due - now);
    }
    slots.booked.remove(&id);
    slots.last = Some(now);
    None
}

/// Records that the post just sent to the channel was answered (the next may follow `pace`
/// from now).
fn answered(integration: &str, channel: &str) {
    let mut all = PACE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(slots) = all.get_mut(&(integration.to_string(), channel.to_string())) {
        slots.last = Some(Instant::now());
    }
}

/// Holds the channel back for `wait` (Slack said 429); promised slots are void, so their
/// messages take new ones after the wait.
fn hold(integration: &str, channel: &str, wait: Duration) {
    let mut all = PACE.lock().unwrap_or_else(|e| e.into_inner());
    all.insert(
        (integration.to_string(), channel.to_string()),
        Slots {
            next: Some(Instant::now() + wait),
            ..Slots::default()
        },
    );
}

/// The `event_type` of the metadata every post carries.
pub const METADATA_EVENT: &str = "vigilo_message";

/// How far around an earlier attempt's time a post of it is looked for (clocks differ).
const LOOKUP_MARGIN: chrono::Duration = chrono::Duration::minutes(5);

/// At most this many pages (of 200 messages) are read looking for an earlier post.
const LOOKUP_PAGES: usize = 10;

/// The message metadata of outbox message `id`.
fn metadata(id: i64) -> Value {
    json!({"event_type": METADATA_EVENT, "event_payload": {"message_id": id}})
}

/// A Slack `ts` for `t`.
fn slack_ts(t: chrono::DateTime<chrono::Utc>) -> String {
    format!("{}.{:06}", t.timestamp(), t.timestamp_subsec_micros())
}

/// The `ts` of outbox message `id` if it was posted to `channel` (in thread `thread`) around
/// or after `since`: `conversations.history` (or `.replies` for a thread) over that window,
/// with metadata.
async fn find_posted(
    api: &Api<'_>,
    channel: &str,
    thread: Option<&str>,
    id: i64,
    since: chrono::DateTime<chrono::Utc>,
) -> Result<Option<String>, SlackError> {
    let oldest = slack_ts(since - LOOKUP_MARGIN);
    let latest = slack_ts(chrono::Utc::now() + LOOKUP_MARGIN);
    let mut cursor = String::new();
    for _ in 0..LOOKUP_PAGES {
        let mut fields = vec![
            ("channel", channel),
            ("oldest", oldest.as_str()),
            ("latest", latest.as_str()),
            ("inclusive", "true"),
            ("include_all_metadata", "true"),
            ("limit", "200"),
        ];
        if !cursor.is_empty() {
            fields.push(("cursor", cursor.as_str()));
        }
        let answer = match thread {
            Some(ts) => {
                fields.push(("ts", ts));
                api.call_form("conversations.replies", &fields).await?
            }
            None => api.call_form("conversations.history", &fields).await?,
        };
        let found = answer["messages"].as_array().and_then(|messages| {
            messages.iter().find_map(|message| {
                let meta = &message["metadata"];
                let ours = meta["event_type"] == METADATA_EVENT
                    && meta["event_payload"]["message_id"].as_i64() == Some(id);
                ours.then(|| message["ts"].as_str().map(str::to_string))
                    .flatten()
            })
        });
        if found.is_some() {
            return Ok(found);
        }
        cursor = answer["response_metadata"]["next_cursor"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if cursor.is_empty() {
            break;
        }
    }
    Ok(None)
}

/// Where the approval request of `m`'s approval was posted on `m`'s integration and channel.
async fn request_post(
    store: &dyn Store,
    m: &MessageRecord,
    channel: &str,
) -> Result<Option<(String, String)>, crate::store::StoreError> {
    let Some(approval_id) = m.approval_id else {
        return Ok(None);
    };
    Ok(store
        .approval_messages(approval_id)
        .await?
        .into_iter()
        .filter(|r| {
            r.event == events::APPROVAL_REQUESTED
                && r.integration == m.integration
                && r.destination["channel"] == channel
                && r.state == MessageState::Sent
        })
        .find_map(|r| {
            let result = r.result?;
            Some((
                result["channel"].as_str()?.to_string(),
                result["ts"].as_str()?.to_string(),
            ))
        }))
}

/// Delivers one outbox message to its Slack channel.
pub async fn send(
    project: &Project,
    store: &dyn Store,
    http: &reqwest::Client,
    cfg: &SlackConfig,
    m: &MessageRecord,
    content: &Content,
) -> Delivery {
    let Some(channel) = m.destination["channel"].as_str() else {
        return Delivery::failed(format!(
            "{}: the notifier's target names no channel",
            m.integration
        ));
    };
    let request = match request_post(store, m, channel).await {
        Ok(r) => r,
        Err(e) => return Delivery::failed(e.to_string()),
    };
    if let (events::APPROVAL_REQUESTED, Some((ch, ts))) = (m.event.as_str(), &request) {
        // Checked before posting: a request already in this channel is never posted again.
        return Delivery::Sent(
            json!({"method": "none", "channel": ch, "ts": ts, "already_posted": true}),
        );
    }
    if let Some(wait) = reserve(&m.integration, channel, m.id, cfg.pace) {
        return Delivery::Deferred(wait);
    }
    let title = content
        .finding
        .as_ref()
        .and_then(|f| project.queries.get(&f.query))
        .map(|q| q.title.clone());
    let (method, body) = match (m.event.as_str(), &content.approval, &request) {
        (events::APPROVAL_REQUESTED, Some(a), _) => (
            "chat.postMessage",
            json!({
                "channel": channel,
                "text": content.subject,
                "blocks": blocks::request(a, content.finding.as_ref(), title.as_deref()),
                "unfurl_links": false,
            }),
        ),
        (events::APPROVAL_DECIDED | events::APPROVAL_EXPIRED, Some(a), Some((ch, ts))) => (
            "chat.update",
            json!({
                "channel": ch,
                "ts": ts,
                "text": content.subject,
                "blocks": blocks::outcome(a, content.finding.as_ref(), title.as_deref()),
            }),
        ),
        (events::APPROVAL_VOTE | events::APPROVAL_DECIDED | events::APPROVAL_EXPIRED, _, None) => {
            return Delivery::failed(format!(
                "{}: the approval request is not posted in {channel} yet",
                m.integration
            ));
        }
        (_, _, thread) => {
            let text = match m.event.as_str() {
                events::APPROVAL_VOTE => m.text.clone().unwrap_or_default(),
                _ => content.text.clone(),
            };
            let mut body = json!({
                "channel": channel,
                "text": blocks::escape(&text),
                "unfurl_links": false,
            });
            if let Some((ch, ts)) = thread {
                body["channel"] = ch.clone().into();
                body["thread_ts"] = ts.clone().into();
            }
            ("chat.postMessage", body)
        }
    };
    let mut body = crate::redact::json(body);
    let api = Api::new(http, cfg);
    if method == "chat.postMessage" {
        body["metadata"] = metadata(m.id);
        let post_channel = body["channel"].as_str().unwrap_or(channel).to_string();
        let thread = body["thread_ts"].as_str().map(str::to_string);
        if let Some(since) = m.attempted_at {
            // An earlier call may have reached Slack: adopt its post instead of posting again.
            match find_posted(&api, &post_channel, thread.as_deref(), m.id, since).await {
                Ok(Some(ts)) => {
                    answered(&m.integration, channel);
                    return Delivery::Sent(json!({
                        "method": method,
                        "channel": post_channel,
                        "ts": ts,
                        "adopted": true,
                    }));
                }
                Ok(None) => {}
                Err(e @ SlackError::Api { .. }) => tracing::warn!(message = m.id, error = %e,
                    "cannot look for an earlier post of this message; posting it (it may show twice)"),
                Err(e) => {
                    answered(&m.integration, channel);
                    return Delivery::failed(e.to_string());
                }
            }
        }
        if let Err(e) = store.begin_message_attempt(m.id, chrono::Utc::now()).await {
            answered(&m.integration, channel);
            return Delivery::failed(e.to_string());
        }
    }
    let answer = api.call(method, &body).await;
    answered(&m.integration, channel);
    match answer {
        Ok(answer) => Delivery::Sent(json!({
            "method": method,
            "channel": answer["channel"],
            "ts": answer["ts"],
        })),
        Err(SlackError::RateLimited {
            method,
            retry_after,
        }) => {
            hold(&m.integration, channel, retry_after);
            Delivery::Failed {
                error: format!(
                    "slack {method}: rate limited (HTTP 429, Retry-After {}s)",
                    retry_after.as_secs()
                ),
                retry_after: Some(retry_after),
            }
        }
        Err(e) => Delivery::failed(format!("{}: {e}", m.integration)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pace_counts_from_the_answer_to_the_last_post() {
        let (integration, channel) = ("pace-test", "C1");
        let pace = Duration::from_millis(200);
        assert_eq!(
            reserve(integration, channel, 1, pace),
            None,
            "the first goes at once"
        );
        // Slack takes 300 ms to answer: the next post waits a whole pace from the answer.
        std::thread::sleep(Duration::from_millis(300));
        answered(integration, channel);
        let wait = reserve(integration, channel, 2, pace).expect("message 2 waits");
        assert!(wait >= Duration::from_millis(190), "{wait:?}");
        // A message promised a slot still waits for the pace after the last answer.
        let later = reserve(integration, channel, 3, pace).expect("message 3 waits");
        assert!(later >= wait + pace, "{later:?} after {wait:?}");
        std::thread::sleep(wait);
        assert_eq!(
            reserve(integration, channel, 2, pace),
            None,
            "message 2's slot"
        );
        std::thread::sleep(Duration::from_millis(300));
        answered(integration, channel);
        let again = reserve(integration, channel, 3, pace).expect("message 3 waits again");
        assert!(again >= Duration::from_millis(190), "{again:?}");
    }
}
