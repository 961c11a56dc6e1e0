//! Notifier messages delivered with retries: the messages `outbox` queued in the store in
//! the transaction of their event are sent here, through the transports below this module
//! (console, webhook, Slack, email).
//!
//! [`deliver`] claims due messages (with a lease, so several
//! processes can share one outbox), sends each through its integration and
//! records the attempt with `message.sent` or `message.failed`. A failed attempt
//! is tried again with exponential backoff, up to [`MAX_ATTEMPTS`]; the event a
//! message tells of is committed before, so a dead notifier never blocks or
//! loses it. Delivery is at least once: a crash between sending and recording
//! sends again, and webhook receivers get an `Idempotency-Key` to drop repeats.

use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};

use crate::config::{IntegrationConfig, Project, WebhookConfig};
use crate::finding::Finding;
use crate::store::{MessageOutcome, MessageRecord, Store, StoreError};

use crate::store::events::{
    APPROVAL_DECIDED, APPROVAL_EXPIRED, APPROVAL_REQUESTED, APPROVAL_VOTE, FINDING_OPENED,
    FINDING_REOPENED, REMEDIATION_MESSAGE,
};

/// Delivery attempts before a message is given up (`failed`).
pub const MAX_ATTEMPTS: i32 = 8;

/// Wait after the first failed attempt; doubled after each further one.
const FIRST_RETRY: Duration = Duration::from_secs(2);

/// The longest wait between two attempts.
const MAX_RETRY: Duration = Duration::from_secs(600);

/// How long a claimed message is held before another process may take it.
const CLAIM_LEASE: Duration = Duration::from_secs(60);

/// How many messages one pass claims.
const CLAIM_BATCH: usize = 100;

/// How long one webhook call may take.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// How much of a failed answer's body is kept.
const BODY_EXCERPT: usize = 300;

/// The wait before attempt `failed + 1`, after `failed` attempts failed (1: the first).
pub fn backoff(failed: i32) -> Duration {
    let doublings = u32::try_from(failed.saturating_sub(1)).unwrap_or(0).min(20);
    FIRST_RETRY.saturating_mul(1 << doublings).min(MAX_RETRY)
}

/// Delivers every due message this process can claim; returns (message id, outcome).
pub async fn deliver(
    project: &Project,
    store: &dyn Store,
    owner: &str,
    client: &reqwest::Client,
) -> Result<Vec<(i64, MessageOutcome)>, StoreError> {
    let mut done = Vec::new();
    let claimed = std::time::Instant::now();
    for m in store
        .claim_messages(owner, CLAIM_LEASE, CLAIM_BATCH)
        .await?
    {
        // A batch outlives one lease when sends are slow: once half the lease has passed,
        // renew it right before each send, and leave a message whose claim lapsed to the
        // process that took it. (Within the first half no other process can hold it.)
        if claimed.elapsed() >= CLAIM_LEASE / 2
            && !store.renew_message_claim(owner, m.id, CLAIM_LEASE).await?
        {
            continue;
        }
        let outcome = match compose(project, store, &m).await? {
            Ok(content) => match send(project, store, client, &m, &content).await {
                Delivery::Sent(result) => MessageOutcome::Sent(crate::redact::json(result)),
                Delivery::Failed { error, retry_after } => {
                    failed(&m, crate::redact::text(&error), retry_after)
                }
                Delivery::Deferred(wait) => MessageOutcome::Deferred {
                    until: Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default(),
                },
            },
            Err(error) => failed(&m, error, None),
        };
        if let MessageOutcome::Failed { error, retry_at } = &outcome {
            tracing::warn!(message = m.id, integration = %m.integration, attempt = m.attempts + 1,
                retry_at = ?retry_at, error = %error, "message not delivered");
        }
        if store.finish_message(owner, m.id, outcome.clone()).await? {
            done.push((m.id, outcome));
        }
    }
    Ok(done)
}

/// For one-shot commands: delivers again as long as some message is due within `soon`
/// (held back only by an integration's pace), for at most `limit` in all.
pub async fn drain(
    project: &Project,
    store: &dyn Store,
    owner: &str,
    client: &reqwest::Client,
    soon: Duration,
    limit: Duration,
) -> Result<(), StoreError> {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        let Some(due) = store.next_message_due().await? else {
            return Ok(());
        };
        let wait = (due - Utc::now()).to_std().unwrap_or_default();
        if wait > soon {
            return Ok(());
        }
        tokio::time::sleep(wait).await;
        if deliver(project, store, owner, client).await?.is_empty() && wait.is_zero() {
            // Due but not ours to send (claimed meanwhile): nothing to wait for here.
            return Ok(());
        }
    }
    Ok(())
}

/// A failed attempt: tried again after the wait the target asked for (HTTP 429's
/// `Retry-After`, which is when the target will take it) or else after the backoff, or given
/// up after the last attempt.
fn failed(m: &MessageRecord, error: String, asked: Option<Duration>) -> MessageOutcome {
    let attempt = m.attempts + 1;
    let wait = asked.unwrap_or_else(|| backoff(attempt));
    let retry_at = (attempt < MAX_ATTEMPTS)
        .then(|| chrono::Duration::from_std(wait).ok())
        .flatten()
        .map(|wait| Utc::now() + wait);
    MessageOutcome::Failed { error, retry_at }
}

pub use crate::message::{Content, Delivery};

/// Puts a message's words together from the finding and approval as they are now.
/// The outer error is the store's; the inner one fails the attempt.
pub async fn compose(
    project: &Project,
    store: &dyn Store,
    m: &MessageRecord,
) -> Result<Result<Content, String>, StoreError> {
    let finding = match m.finding_id {
        Some(id) => store.finding(id).await?,
        None => None,
    };
    let approval = match m.approval_id {
        Some(id) => store.approval(id).await?,
        None => None,
    };
    let title = |f: &Finding| {
        project
            .queries
            .get(&f.query)
            .map_or_else(|| f.query.clone(), |q| q.title.clone())
    };
    let content = match (m.event.as_str(), &finding, &approval) {
        (FINDING_OPENED | FINDING_REOPENED, Some(f), _) => {
            let verb = if m.event == FINDING_OPENED {
                "New finding"
            } else {
                "Finding is back"
            };
            Content {
                subject: format!("{verb}: {}", title(f)),
                text: format!(
                    "{verb} {} of query {} ({}): {}\n  key: {}",
                    f.id,
                    f.query,
                    f.severity.as_str(),
                    title(f),
                    key_text(f)
                ),
                finding,
                approval,
                links: Vec::new(),
            }
        }
        (APPROVAL_REQUESTED, _, Some(a)) => {
            let options: Vec<String> = a
                .options
                .iter()
                .map(|o| match o.required {
                    1 => format!("{} ({})", o.label, o.value),
                    n => format!("{} ({}, needs {n} approvers)", o.label, o.value),
                })
                .collect();
            let links = crate::token::links(project, a.id, &a.approvers, a.deadline);
            let mut text = format!(
                "approval {} requested ({}): {}\n  {}\n  finding {} of query {}; options: {}\n  decide with: vigilo respond {} OPTION --as NAME",
                a.id,
                a.remediation,
                a.subject,
                a.prompt,
                a.finding_id,
                finding.as_ref().map_or("?", |f| f.query.as_str()),
                options.join(", "),
                a.id
            );
            if let Some(deadline) = &a.deadline {
                text.push_str(&format!(
                    "\n  deadline: {}",
                    crate::timestamp::rfc3339(deadline)
                ));
            }
            for (approver, link) in &links {
                text.push_str(&format!("\n  {approver}: {link}"));
            }
            Content {
                subject: a.subject.clone(),
                text,
                finding,
                approval,
                links,
            }
        }
        (APPROVAL_VOTE | APPROVAL_DECIDED | APPROVAL_EXPIRED, _, Some(a)) => {
            let line = m.text.clone().unwrap_or_default();
            Content {
                subject: format!("{} — {line}", a.subject),
                text: format!("approval {} ({}): {line}", a.id, a.subject),
                finding,
                approval,
                links: Vec::new(),
            }
        }
        (REMEDIATION_MESSAGE, _, _) => {
            let text = m.text.clone().unwrap_or_default();
            Content {
                subject: text.lines().next().unwrap_or_default().to_string(),
                text,
                finding,
                approval,
                links: Vec::new(),
            }
        }
        (event, _, _) => {
            return Ok(Err(format!(
                "message {} ({event}): its finding or approval is no longer in the store",
                m.id
            )));
        }
    };
    Ok(Ok(content))
}

fn key_text(f: &Finding) -> String {
    f.key
        .iter()
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Sends one message through its integration; `Ok` carries what the integration answered.
async fn send(
    project: &Project,
    store: &dyn Store,
    client: &reqwest::Client,
    m: &MessageRecord,
    content: &Content,
) -> Delivery {
    match project.integrations.get(&m.integration) {
        Some(IntegrationConfig::Console) => {
            println!("{}", crate::redact::text(&content.text));
            Delivery::Sent(json!({"printed": true}))
        }
        Some(IntegrationConfig::Webhook(w)) => webhook(client, w, m, content).await.into(),
        Some(IntegrationConfig::Email(e)) => {
            crate::email::send(project, e, m, content).await.into()
        }
        Some(IntegrationConfig::Slack(s)) => {
            crate::slack::send(project, store, client, s, m, content).await
        }
        None => Delivery::failed(format!(
            "integration {} is no longer configured; nothing was sent",
            m.integration
        )),
    }
}

/// The JSON a webhook receives.
pub fn webhook_payload(m: &MessageRecord, content: &Content) -> Value {
    json!({
        "event": m.event,
        "message_id": m.id,
        "notifier": m.notifier,
        "subject": content.subject,
        "text": content.text,
        "finding": content.finding,
        "approval": content.approval,
        "links": content.links.iter().map(|(approver, url)| json!({"approver": approver, "url": url})).collect::<Vec<_>>(),
    })
}

async fn webhook(
    client: &reqwest::Client,
    w: &WebhookConfig,
    m: &MessageRecord,
    content: &Content,
) -> Result<Value, String> {
    let response = client
        .post(&w.url)
        .timeout(WEBHOOK_TIMEOUT)
        .header("Idempotency-Key", format!("vigilo-message-{}", m.id))
        .header("User-Agent", concat!("vigilo/", env!("CARGO_PKG_VERSION")))
        .json(&crate::redact::json(webhook_payload(m, content)))
        .send()
        .await
        // Without the URL: a webhook URL often carries a secret.
        .map_err(|e| format!("webhook {}: {}", m.integration, crate::cause::http(&e)))?;
    let status = response.status();
    if status.is_success() {
        return Ok(json!({"status": status.as_u16()}));
    }
    let body = response.text().await.unwrap_or_default();
    let excerpt: String = body.chars().take(BODY_EXCERPT).collect();
    Err(format!(
        "webhook {}: HTTP {}: {excerpt}",
        m.integration,
        status.as_u16()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_limited_message_is_tried_again_exactly_when_asked() {
        let now = Utc::now();
        let m = MessageRecord {
            id: 1,
            event: FINDING_OPENED.into(),
            finding_id: Some(1),
            approval_id: None,
            run_id: None,
            notifier: "n".into(),
            integration: "slack".into(),
            destination: json!({"channel": "C1"}),
            text: None,
            state: crate::store::MessageState::Pending,
            attempts: 0,
            next_attempt_at: now,
            created_at: now,
            sent_at: None,
            result: None,
            error: None,
            attempted_at: None,
        };
        let retry_in = |asked| match failed(&m, "e".into(), asked) {
            MessageOutcome::Failed {
                retry_at: Some(at), ..
            } => (at - now).num_milliseconds(),
            other => panic!("{other:?}"),
        };
        // Retry-After 1 s: one second, not the 2 s backoff of a first failure.
        assert!((1000..1500).contains(&retry_in(Some(Duration::from_secs(1)))));
        assert!((2000..2500).contains(&retry_in(None)));
    }

    #[test]
    fn backoff_doubles_from_two_seconds_and_stops_at_ten_minutes() {
        let waits: Vec<u64> = (1..=10).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [2, 4, 8, 16, 32, 64, 128, 256, 512, 600]);
        assert_eq!(backoff(0).as_secs(), 2);
        assert_eq!(backoff(i32::MAX).as_secs(), 600);
    }
}
