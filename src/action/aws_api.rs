//! `aws.api`: any AWS Query-protocol API call (EC2, IAM, SNS, RDS, AutoScaling, …), signed with
//! the connection's credentials (SigV4), for controls the typed actions do not cover.
//!
//! It cannot read its target first or be settled by reading: like `http`, a call cut off by
//! a crash is `unknown`, for a person to check and `vigilo retry`; it has no undo. A non-2xx
//! answer fails the action with AWS's error code and message. Elements of the answer whose
//! names mark secrets (`SecretAccessKey`, `Password`, …) are masked in what is kept.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::params::{self, Kind, Need, Param, Params};
use super::{ActionType, Targets, checked, connection_words};
use crate::aws::signed::{QueryCall, operation_name};
use crate::aws::xml::Element;
use crate::config::AwsConnectionConfig;
use crate::store::{ActionOutcome, ActionRecord};

/// How much of an answer is kept in the record.
const ANSWER_EXCERPT: usize = 500;

/// `aws.api`.
pub struct AwsApi;

const PARAMS: &[Param] = &[
    params::CONNECTION,
    params::REGION,
    Param::text("service"),
    Param::text("action"),
    Param::text("version"),
    Param::new("params", Kind::Table, Need::Optional),
];

/// Whether `s` is a plain name (letters, digits, `-`, `.`, `_`): services, actions, versions.
fn plain(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
}

/// The answer's elements, `Name=text` for leaves, with secret-named ones masked.
fn answer_excerpt(e: &Element, out: &mut Vec<String>) {
    if e.children.is_empty() {
        let text = if crate::redact::is_secret_name(&e.name)
            || e.name.to_ascii_lowercase().contains("privatekey")
        {
            crate::redact::MASK.to_string()
        } else {
            e.text.clone()
        };
        out.push(format!("{}={text}", e.name));
    }
    for c in &e.children {
        answer_excerpt(c, out);
    }
}

#[async_trait::async_trait]
impl ActionType for AwsApi {
    fn name(&self) -> &'static str {
        "aws.api"
    }

    fn params(&self) -> &'static [Param] {
        PARAMS
    }

    fn check(&self, name: &str, value: &Value) -> Result<Option<Value>, String> {
        let s = value.as_str().unwrap_or_default();
        match name {
            "service" | "action" | "version" if !plain(s) => Err(format!(
                "{s:?} is not a plain name (letters, digits, '-', '.', '_')"
            )),
            "service" => Ok(Some(Value::String(s.to_ascii_lowercase()))),
            _ => Ok(None),
        }
    }

    fn describe(
        &self,
        params: &Value,
        connections: &BTreeMap<String, AwsConnectionConfig>,
    ) -> String {
        let p = Params::new("aws.api", params);
        let mut line = format!(
            "{}:{} Version={}",
            p.opt_text("service").unwrap_or_default(),
            p.opt_text("action").unwrap_or_default(),
            p.opt_text("version").unwrap_or_default()
        );
        for (k, v) in p.table("params").unwrap_or_default() {
            line.push_str(&format!(" {k}={v}"));
        }
        format!("{line} ({})", connection_words(params, connections))
    }

    async fn execute(
        &self,
        targets: &Targets,
        action: &ActionRecord,
        _observed: Option<Value>,
    ) -> ActionOutcome {
        let p = match checked(self, action) {
            Ok(p) => p,
            Err(e) => return ActionOutcome::Failed(e),
        };
        let (service, api, version) = match (p.text("service"), p.text("action"), p.text("version"))
        {
            (Ok(s), Ok(a), Ok(v)) => (s.to_ascii_lowercase(), a, v),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return ActionOutcome::Failed(e),
        };
        let query: Vec<(String, String)> = match p.table("params") {
            Ok(t) => t.into_iter().collect(),
            Err(e) => return ActionOutcome::Failed(e),
        };
        let name = match p.connection() {
            Ok(n) => n,
            Err(e) => return ActionOutcome::Failed(e),
        };
        let connection = match targets.aws.get(name).await {
            Ok(c) => c,
            Err(e) => return ActionOutcome::Failed(e.to_string()),
        };
        let session = crate::aws::session_name(action.approval_id, action.run_id);
        let call = QueryCall {
            service: &service,
            version,
            action: api,
            params: &query,
        };
        let operation = operation_name(&format!("{service}:{api}"));
        match connection
            .query(&session, &call, p.opt_text("region"), operation)
            .await
        {
            Ok(answer) => {
                let mut fields = Vec::new();
                answer_excerpt(&answer.body, &mut fields);
                let excerpt: String = fields.join(" ").chars().take(ANSWER_EXCERPT).collect();
                let mut result = json!({
                    "connection": name,
                    "operation": operation,
                    "status": answer.status,
                    "answer": excerpt,
                });
                if !answer.request_id.is_empty() {
                    result["request_id"] = json!(answer.request_id);
                }
                ActionOutcome::Succeeded(result)
            }
            Err(e) => ActionOutcome::Failed(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_named_elements_of_an_answer_are_masked() {
        let e = Element::parse("<CreateAccessKeyResponse><AccessKey><AccessKeyId>AKIA1</AccessKeyId><SecretAccessKey>s3cr3t</SecretAccessKey></AccessKey></CreateAccessKeyResponse>").unwrap();
        let mut out = Vec::new();
        answer_excerpt(&e, &mut out);
        assert_eq!(out, ["AccessKeyId=AKIA1", "SecretAccessKey=***"]);
    }
}
