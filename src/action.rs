//! Actions: rendering a remediation's `[[action]]`s for a decision, and running one.
//!
//! Only this module calls targets. The executor in `remediate` marks an action
//! started (committed) before calling [`execute`], and records the outcome after,
//! so a crash in between leaves evidence instead of a silent repeat.

use std::time::Duration;

use serde_json::{Value, json};

use crate::config::{ActionKind, Remediation};
use crate::store::{ActionOutcome, ActionRecord, NewAction};
use crate::template;

/// How long an http action may take.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// How much of a response body is kept in the record.
const BODY_EXCERPT: usize = 500;

/// Renders the actions that `decision` triggers (`None`: the actions without `when`, for auto-remediation).
pub fn render(
    remediation: &Remediation,
    decision: Option<&str>,
    ctx: &Value,
) -> Result<Vec<NewAction>, String> {
    let mut out = Vec::new();
    for (i, action) in remediation.actions.iter().enumerate() {
        if action.when.as_deref() != decision {
            continue;
        }
        let position = i32::try_from(i).map_err(|_| "too many actions".to_string())?;
        let r = |field: &str, source: &str| {
            template::render(source, ctx).map_err(|e| format!("action[{i}].{field}: {e}"))
        };
        let (kind, params) = match &action.kind {
            ActionKind::Http {
                url,
                method,
                headers,
                body,
            } => {
                let mut rendered_headers = serde_json::Map::new();
                for (name, value) in headers {
                    rendered_headers.insert(
                        name.clone(),
                        Value::String(r(&format!("headers.{name}"), value)?),
                    );
                }
                (
                    "http",
                    json!({
                        "method": method,
                        "url": r("url", url)?,
                        "headers": rendered_headers,
                        "body": body.as_deref().map(|b| r("body", b)).transpose()?,
                    }),
                )
            }
            ActionKind::AwsUpdateAccessKey {
                connection,
                user_name,
                access_key_id,
                status,
            } => (
                "aws.iam.update_access_key",
                json!({
                    "connection": r("connection", connection)?,
                    "user_name": r("user_name", user_name)?,
                    "access_key_id": r("access_key_id", access_key_id)?,
                    "status": r("status", status)?,
                }),
            ),
            ActionKind::AwsDeleteAccessKey {
                connection,
                user_name,
                access_key_id,
            } => (
                "aws.iam.delete_access_key",
                json!({
                    "connection": r("connection", connection)?,
                    "user_name": r("user_name", user_name)?,
                    "access_key_id": r("access_key_id", access_key_id)?,
                }),
            ),
        };
        out.push(NewAction {
            position,
            kind: kind.to_string(),
            params,
            skip: None,
        });
    }
    Ok(out)
}

/// The exact call an action makes, in one line (what `dry_run` prints and records).
pub fn describe(kind: &str, params: &Value) -> String {
    let s = |k: &str| params[k].as_str().unwrap_or_default().to_string();
    match kind {
        "http" => {
            let mut line = format!("{} {}", s("method"), s("url"));
            if let Some(h) = params["headers"].as_object().filter(|h| !h.is_empty()) {
                line.push_str(&format!(" headers {}", Value::Object(h.clone())));
            }
            if let Some(body) = params["body"].as_str() {
                line.push_str(&format!(" body {}", Value::String(body.to_string())));
            }
            line
        }
        "aws.iam.update_access_key" => format!(
            "iam:UpdateAccessKey UserName={} AccessKeyId={} Status={} (connection {})",
            s("user_name"),
            s("access_key_id"),
            s("status"),
            s("connection")
        ),
        "aws.iam.delete_access_key" => format!(
            "iam:DeleteAccessKey UserName={} AccessKeyId={} (connection {})",
            s("user_name"),
            s("access_key_id"),
            s("connection")
        ),
        other => format!("{other} {params}"),
    }
}

/// Runs one action against its target.
pub async fn execute(client: &reqwest::Client, action: &ActionRecord) -> ActionOutcome {
    match action.kind.as_str() {
        "http" => http(client, action).await,
        other => ActionOutcome::Failed(format!(
            "action type {other} cannot run in this vigilo yet (the AWS actions arrive with their own module); \
             nothing was called"
        )),
    }
}

/// What a restart records for an action that was started by a process that is gone.
pub fn settle_started(action: &ActionRecord) -> ActionOutcome {
    ActionOutcome::Unknown(format!(
        "vigilo stopped after starting this {} action (attempt {}); whether the target received it is unknown. \
         Check the target, then run `vigilo retry {}` if it did not happen (the retry sends the same Idempotency-Key {})",
        action.kind, action.attempts, action.id, action.idempotency_key
    ))
}

async fn http(client: &reqwest::Client, action: &ActionRecord) -> ActionOutcome {
    let p = &action.params;
    let method = p["method"].as_str().unwrap_or("POST");
    let Ok(method) = reqwest::Method::from_bytes(method.as_bytes()) else {
        return ActionOutcome::Failed(format!("invalid HTTP method {method:?}"));
    };
    let Some(url) = p["url"].as_str() else {
        return ActionOutcome::Failed("http action without a url".into());
    };
    let mut request = client
        .request(method, url)
        .timeout(HTTP_TIMEOUT)
        .header("Idempotency-Key", &action.idempotency_key)
        .header("User-Agent", concat!("vigilo/", env!("CARGO_PKG_VERSION")));
    if let Some(headers) = p["headers"].as_object() {
        for (name, value) in headers {
            request = request.header(name, value.as_str().unwrap_or_default());
        }
    }
    if let Some(body) = p["body"].as_str() {
        request = request.body(body.to_string());
    }
    match request.send().await {
        Err(e) => ActionOutcome::Failed(format!("http {url}: {e}")),
        Ok(response) => {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            let excerpt: String = body.chars().take(BODY_EXCERPT).collect();
            if status.is_success() {
                ActionOutcome::Succeeded(json!({"status": status.as_u16(), "body": excerpt}))
            } else {
                ActionOutcome::Failed(format!("http {url}: HTTP {}: {excerpt}", status.as_u16()))
            }
        }
    }
}

/// Whether the process named by `owner` (`host:pid`) is certainly gone: same host, and no such process.
pub fn owner_is_gone(owner: &str) -> bool {
    let Some((host, pid)) = owner.rsplit_once(':') else {
        return false;
    };
    host == crate::remediate::hostname()
        && pid.parse::<u32>().is_ok_and(|pid| {
            pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        })
}
