//! Slack: the Web API client, the delivery of outbox messages to channels (approval
//! requests with buttons, votes in the request's thread, the request updated with the
//! outcome, messages threaded under it), and the pace Slack asks for.
//!
//! `routes` answers Slack's calls (`/slack/interactions`, `/slack/commands`), each checked
//! by `signature`; `blocks` builds the Block Kit, `inputs` the menus of select and
//! multiselect approvals and what their clicks mean, `modal` the answer form of text
//! approvals; `chatops` runs confirmed slash commands.

pub mod blocks;
pub mod chatops;
pub mod inputs;
pub mod modal;
pub mod routes;
pub mod signature;

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::config::{Project, SlackConfig};
use crate::notify::{self, Content, Delivery};
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

impl<'a> Api<'a> {
    /// The API with `cfg`'s token and `api_url`.
    pub fn new(http: &'a reqwest::Client, cfg: &'a SlackConfig) -> Api<'a> {
        Api { http, cfg }
    }

    /// Calls `method` with a JSON body; `Ok` is Slack's answer when it says `ok: true`.
    pub async fn call(&self, method: &str, body: &Value) -> Result<Value, SlackError> {
        let transport = |message: String| SlackError::Transport {
            method: method.to_string(),
            message,
        };
        let response = self
            .http
            .post(format!("{}/{method}", self.cfg.api_url))
            .timeout(CALL_TIMEOUT)
            .bearer_auth(self.cfg.token.expose())
            .json(body)
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
            Ok(answer)
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
            r.event == notify::APPROVAL_REQUESTED
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
    if let (notify::APPROVAL_REQUESTED, Some((ch, ts))) = (m.event.as_str(), &request) {
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
        (notify::APPROVAL_REQUESTED, Some(a), _) => (
            "chat.postMessage",
            json!({
                "channel": channel,
                "text": content.subject,
                "blocks": blocks::request(a, content.finding.as_ref(), title.as_deref()),
                "unfurl_links": false,
            }),
        ),
        (notify::APPROVAL_DECIDED | notify::APPROVAL_EXPIRED, Some(a), Some((ch, ts))) => (
            "chat.update",
            json!({
                "channel": ch,
                "ts": ts,
                "text": content.subject,
                "blocks": blocks::outcome(a, content.finding.as_ref(), title.as_deref()),
            }),
        ),
        (notify::APPROVAL_VOTE | notify::APPROVAL_DECIDED | notify::APPROVAL_EXPIRED, _, None) => {
            return Delivery::failed(format!(
                "{}: the approval request is not posted in {channel} yet",
                m.integration
            ));
        }
        (_, _, thread) => {
            let text = match m.event.as_str() {
                notify::APPROVAL_VOTE => m.text.clone().unwrap_or_default(),
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
    let body = crate::redact::json(body);
    let answer = Api::new(http, cfg).call(method, &body).await;
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
