//! Slack's Socket Mode: interactions and slash commands over a WebSocket that vigilo opens,
//! for a vigilo that Slack cannot reach (no inbound URL).
//!
//! `apps.connections.open` (app-level token) gives a single-use WebSocket URL; Slack says
//! `hello`, then sends envelopes (`interactive`, `slash_commands`, `events_api`), each
//! acknowledged with its `envelope_id` (and, for a command or a `view_submission`, the answer
//! as `payload`, when ready within 2.5 s; else it goes to the `response_url`) before
//! anything slow happens. What an envelope does is
//! `routes::interaction` / `routes::slash_command`, exactly as for a signed HTTP request.
//! A `disconnect` (`refresh_requested`, `warning`) opens a new connection at once; a dropped
//! or silent connection, or a failed open, opens one after a growing pause. A click that
//! Slack delivers again (`retry_attempt` > 0) is one vote: the store takes one vote per
//! approver, and `routes` does not tell the person of the repeat.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::{Api, routes};
use crate::config::SlackConfig;
use crate::state::AppState;

/// The first pause after a failure; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// The longest pause between two attempts to connect.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How long an envelope's answer may take to ride on its acknowledgement (Slack waits 3 s).
const ANSWER_WITHIN: Duration = Duration::from_millis(2500);

/// How often vigilo pings Slack when nothing else is sent.
const PING_EVERY: Duration = Duration::from_secs(20);

/// A connection with no frame from Slack for this long is taken as dead (half-open).
const SILENT_LIMIT: Duration = Duration::from_secs(60);

/// How a connection ended.
#[derive(Debug)]
enum Ended {
    /// Slack asked for a new connection (`disconnect`).
    Disconnect(String),
    /// The connection was closed, broke or fell silent.
    Dropped(String),
    /// No connection could be opened.
    Failed(String),
}

/// Keeps `[integration.slack.NAME]`'s Socket Mode connection open until `shutdown`.
pub async fn run(state: AppState, name: String, cfg: SlackConfig, shutdown: CancellationToken) {
    let http = reqwest::Client::new();
    let mut backoff = FIRST_BACKOFF;
    loop {
        let started = Instant::now();
        let ended = tokio::select! {
            ended = connection(&state, &name, &cfg, &http) => ended,
            _ = shutdown.cancelled() => return,
        };
        // A connection that stayed up a while earns a fresh start of the backoff.
        if started.elapsed() > MAX_BACKOFF {
            backoff = FIRST_BACKOFF;
        }
        let pause = match ended {
            Ended::Disconnect(reason) => {
                tracing::info!(integration = %name, reason, "Slack asked for a new Socket Mode connection");
                if reason == "link_disabled" {
                    tracing::error!(integration = %name, "Socket Mode is turned off in the Slack app's settings; turn it on (see vigilo slack manifest)");
                    MAX_BACKOFF
                } else {
                    Duration::ZERO
                }
            }
            Ended::Dropped(why) => {
                tracing::warn!(integration = %name, reason = %why, retry_in = ?backoff, "Socket Mode connection lost; reconnecting");
                grow(&mut backoff)
            }
            Ended::Failed(why) => {
                tracing::error!(integration = %name, error = %why, retry_in = ?backoff, "could not open a Socket Mode connection");
                grow(&mut backoff)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// The pause to take now; the next one is twice as long, up to [`MAX_BACKOFF`].
fn grow(backoff: &mut Duration) -> Duration {
    let now = *backoff;
    *backoff = (now * 2).min(MAX_BACKOFF);
    now
}

/// One connection, from `apps.connections.open` until it ends.
async fn connection(
    state: &AppState,
    name: &str,
    cfg: &SlackConfig,
    http: &reqwest::Client,
) -> Ended {
    let url = match Api::new(http, cfg).open_connection().await {
        Ok(url) => url,
        Err(e) => return Ended::Failed(e.to_string()),
    };
    let mut ws = match tokio_tungstenite::connect_async(url.as_str()).await {
        Ok((ws, _)) => ws,
        // The URL holds a single-use ticket: keep it out of the message.
        Err(e) => return Ended::Failed(format!("WebSocket: {}", without_url(&e))),
    };
    let mut heard = Instant::now();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        let frame = tokio::select! {
            frame = ws.next() => frame,
            _ = ping.tick() => {
                if heard.elapsed() > SILENT_LIMIT {
                    return Ended::Dropped(format!("nothing from Slack for {} s", SILENT_LIMIT.as_secs()));
                }
                if let Err(e) = ws.send(Message::Ping(Vec::new().into())).await {
                    return Ended::Dropped(without_url(&e));
                }
                continue;
            }
        };
        heard = Instant::now();
        let text = match frame {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => {
                return Ended::Dropped(format!(
                    "closed by Slack{}",
                    frame.map(|f| format!(": {}", f.reason)).unwrap_or_default()
                ));
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Ended::Dropped(without_url(&e)),
            None => return Ended::Dropped("the connection ended".into()),
        };
        let envelope: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(integration = name, error = %e, "a Socket Mode message that is not JSON; ignored");
                continue;
            }
        };
        match envelope["type"].as_str() {
            Some("hello") => {
                tracing::info!(
                    integration = name,
                    connections = envelope["num_connections"].as_u64(),
                    "Slack Socket Mode connected"
                );
                continue;
            }
            Some("disconnect") => {
                let reason = envelope["reason"].as_str().unwrap_or("unknown");
                return Ended::Disconnect(reason.to_string());
            }
            _ => {}
        }
        let Some(id) = envelope["envelope_id"].as_str() else {
            tracing::debug!(integration = name, kind = ?envelope["type"], "a Socket Mode message without envelope; ignored");
            continue;
        };
        let retry = envelope["retry_attempt"].as_u64().unwrap_or(0);
        if retry > 0 {
            tracing::info!(integration = name, envelope = id, retry, reason = ?envelope["retry_reason"], "Slack delivered an envelope again");
        }
        let mut ack = json!({"envelope_id": id});
        if let Some(payload) = answer_in_time(state, cfg, envelope).await {
            ack["payload"] = payload;
        }
        if let Err(e) = ws.send(Message::Text(ack.to_string().into())).await {
            return Ended::Dropped(without_url(&e));
        }
    }
}

/// What an envelope does, and the answer to acknowledge it with, if it is ready within
/// [`ANSWER_WITHIN`]; a later answer goes to the payload's `response_url` instead, so the
/// acknowledgement always makes Slack's three seconds.
async fn answer_in_time(state: &AppState, cfg: &SlackConfig, envelope: Value) -> Option<Value> {
    let response_url = envelope["payload"]["response_url"]
        .as_str()
        .map(str::to_string);
    let (state, cfg) = (state.clone(), cfg.clone());
    let mut work = tokio::spawn(async move { answer(&state, &cfg, &envelope).await });
    match tokio::time::timeout(ANSWER_WITHIN, &mut work).await {
        Ok(Ok(payload)) => payload,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "handling a Socket Mode envelope failed");
            None
        }
        Err(_) => {
            tokio::spawn(async move {
                if let (Ok(Some(payload)), Some(url)) = (work.await, response_url) {
                    answer_later(&url, &payload).await;
                }
            });
            None
        }
    }
}

/// Sends an answer that missed the acknowledgement to the envelope's `response_url`.
async fn answer_later(url: &str, payload: &Value) {
    let post = reqwest::Client::new()
        .post(url)
        .timeout(super::CALL_TIMEOUT)
        .json(payload);
    match post.send().await {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => tracing::warn!(
            status = r.status().as_u16(),
            "Slack's response_url refused a late answer"
        ),
        Err(e) => {
            tracing::warn!(error = %e.without_url(), "could not send a late answer to Slack's response_url")
        }
    }
}

/// What an envelope does, and the answer to acknowledge it with.
async fn answer(state: &AppState, cfg: &SlackConfig, envelope: &Value) -> Option<Value> {
    match envelope["type"].as_str() {
        Some("interactive") => routes::interaction(state, cfg, envelope["payload"].clone()).await,
        Some("slash_commands") => {
            Some(routes::slash_command(state, cfg, &envelope["payload"]).await)
        }
        // vigilo subscribes to no events; acknowledged so that Slack does not send them again.
        _ => None,
    }
}

/// A WebSocket error without the URL (its ticket is a credential for one connection).
fn without_url(e: &tokio_tungstenite::tungstenite::Error) -> String {
    use tokio_tungstenite::tungstenite::Error;
    match e {
        Error::Url(_) => "the URL Slack gave is not a WebSocket URL".into(),
        Error::Http(response) => format!("HTTP {}", response.status()),
        other => other.to_string(),
    }
}
