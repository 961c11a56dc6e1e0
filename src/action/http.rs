//! `http`: one HTTP request (url, method, headers, body) with an `Idempotency-Key`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::{ActionType, Kind, Need, Param, Settlement, Targets};
use crate::config::AwsConnectionConfig;
use crate::store::{ActionOutcome, ActionRecord};

/// How long an http action may take.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// How much of a response body is kept in the record.
const BODY_EXCERPT: usize = 500;

/// HTTP methods an `http` action may use.
const HTTP_METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// The `http` action type.
pub struct Http;

const PARAMS: &[Param] = &[
    Param::text("url"),
    Param::new("method", Kind::Text, Need::Default("POST")),
    Param::new("headers", Kind::Table, Need::Optional),
    Param::new("body", Kind::Text, Need::Optional),
];

#[async_trait::async_trait]
impl ActionType for Http {
    fn name(&self) -> &'static str {
        "http"
    }

    fn params(&self) -> &'static [Param] {
        PARAMS
    }

    fn check(&self, name: &str, value: &Value) -> Result<Option<Value>, String> {
        if name != "method" {
            return Ok(None);
        }
        let given = value.as_str().unwrap_or_default();
        let upper = given.to_ascii_uppercase();
        if HTTP_METHODS.contains(&upper.as_str()) {
            return Ok(Some(Value::String(upper)));
        }
        Err(format!(
            "unsupported method {given:?}; expected one of: {}",
            HTTP_METHODS.join(", ")
        ))
    }

    fn describe(&self, params: &Value, _: &BTreeMap<String, AwsConnectionConfig>) -> String {
        let s = |k: &str| params[k].as_str().unwrap_or_default().to_string();
        let mut line = format!("{} {}", s("method"), s("url"));
        if let Some(h) = params["headers"].as_object().filter(|h| !h.is_empty()) {
            line.push_str(&format!(" headers {}", Value::Object(h.clone())));
        }
        if let Some(body) = params["body"].as_str() {
            line.push_str(&format!(" body {}", Value::String(body.to_string())));
        }
        line
    }

    async fn execute(
        &self,
        targets: &Targets,
        action: &ActionRecord,
        _observed: Option<Value>,
    ) -> ActionOutcome {
        http(&targets.http, action).await
    }

    async fn settle(&self, _targets: &Targets, action: &ActionRecord) -> Settlement {
        Settlement::Outcome(ActionOutcome::Unknown(format!(
            "vigilo stopped after starting this {} action (attempt {}); whether the target received it is unknown. \
             Check the target, then run `vigilo retry {}` if it did not happen (the retry sends the same Idempotency-Key {})",
            action.kind, action.attempts, action.id, action.idempotency_key
        )))
    }
}

async fn http(client: &reqwest::Client, action: &ActionRecord) -> ActionOutcome {
    let p = &action.params;
    let method = p["method"].as_str().unwrap_or("POST").to_ascii_uppercase();
    let Ok(method) = reqwest::Method::from_bytes(method.as_bytes()) else {
        return ActionOutcome::Failed(format!("invalid HTTP method {method:?}"));
    };
    let Some(url) = p["url"].as_str() else {
        return ActionOutcome::Failed("http action without a url".into());
    };
    let mut request = client
        .request(method.clone(), url)
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
        Err(e) => ActionOutcome::Failed(format!("http {method} {url}: {}", crate::cause::http(&e))),
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
