//! `aws.iam.detach_user_policy` and its reversal `aws.iam.attach_user_policy`: a managed
//! policy attached to an IAM user.
//!
//! Both read `ListAttachedUserPolicies` (every page) first: a user that is gone is skipped,
//! a policy already (de)attached needs no change.

use aws_sdk_iam::error::ProvideErrorMetadata;
use aws_sdk_iam::operation::RequestId;
use serde_json::{Value, json};

use super::iam_login_profile::user_gone;
use super::params::{self, Param, Params};
use super::read_first::{Aws, Found, ReadFirst, Written};
use crate::aws::AwsError;

/// `aws.iam.detach_user_policy` or `aws.iam.attach_user_policy` (what undoes a detach).
pub struct PolicyAction {
    /// Attach (true) or detach.
    attach: bool,
}

/// `aws.iam.detach_user_policy`.
pub const DETACH: PolicyAction = PolicyAction { attach: false };

/// `aws.iam.attach_user_policy`.
pub const ATTACH: PolicyAction = PolicyAction { attach: true };

const PARAMS: &[Param] = &[
    params::CONNECTION,
    params::REGION,
    Param::text("user_name"),
    Param::text("policy_arn"),
];

/// Whether `policy_arn` is attached to the user, or `Gone` when the user is.
async fn read(aws: &Aws<'_>, p: &Params<'_>) -> Result<Found, String> {
    let (user, arn) = (p.text("user_name")?, p.text("policy_arn")?);
    let mut marker: Option<String> = None;
    loop {
        let (iam, with) = aws
            .connection
            .iam(aws.scope())
            .await
            .map_err(|e| e.to_string())?;
        let answer = iam
            .list_attached_user_policies()
            .user_name(user)
            .set_marker(marker.take())
            .customize()
            .config_override(with)
            .send()
            .await;
        let out = match answer {
            Ok(out) => out,
            Err(e) if e.code() == Some("NoSuchEntity") => {
                return Ok(Found::Gone(user_gone(aws, user)));
            }
            Err(e) => {
                return Err(AwsError::from_sdk(
                    aws.connection.config(),
                    "ListAttachedUserPolicies",
                    e,
                )
                .to_string());
            }
        };
        if out
            .attached_policies()
            .iter()
            .any(|a| a.policy_arn() == Some(arn))
        {
            return Ok(Found::State(json!({"attached": true})));
        }
        match (out.is_truncated(), out.marker()) {
            (true, Some(m)) => marker = Some(m.to_string()),
            _ => return Ok(Found::State(json!({"attached": false}))),
        }
    }
}

/// The call's line: `iam:OPERATION UserName=… PolicyArn=…`.
fn line(operation: &str, p: &Params<'_>) -> String {
    format!(
        "iam:{operation} UserName={} PolicyArn={}",
        p.opt_text("user_name").unwrap_or_default(),
        p.opt_text("policy_arn").unwrap_or_default()
    )
}

/// In words: whether the policy is attached.
fn words(p: &Params<'_>, attached: bool) -> String {
    format!(
        "policy {} is {} user {}",
        p.opt_text("policy_arn").unwrap_or_default(),
        if attached {
            "attached to"
        } else {
            "not attached to"
        },
        p.opt_text("user_name").unwrap_or_default()
    )
}

/// The same user and policy, for the reversal.
fn same(p: &Params<'_>) -> Value {
    json!({"user_name": p.values["user_name"], "policy_arn": p.values["policy_arn"]})
}

/// The answer of a detach or attach.
fn written<
    O: RequestId,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + 'static,
>(
    aws: &Aws<'_>,
    p: &Params<'_>,
    operation: &'static str,
    answer: Result<O, aws_sdk_iam::error::SdkError<E, R>>,
) -> Result<Written, String> {
    match answer {
        Ok(out) => Ok(Written::Done(
            out.request_id().unwrap_or_default().to_string(),
        )),
        Err(e) if e.code() == Some("NoSuchEntity") => Ok(Written::Gone(format!(
            "{} in connection {} (NoSuchEntity: {})",
            words(p, operation == "AttachUserPolicy"),
            aws.connection.name(),
            e.message().unwrap_or_default()
        ))),
        Err(e) => Err(AwsError::from_sdk(aws.connection.config(), operation, e).to_string()),
    }
}

#[async_trait::async_trait]
impl ReadFirst for PolicyAction {
    fn name(&self) -> &'static str {
        if self.attach {
            "aws.iam.attach_user_policy"
        } else {
            "aws.iam.detach_user_policy"
        }
    }

    fn params(&self) -> &'static [Param] {
        PARAMS
    }

    fn call(&self, p: &Params<'_>) -> String {
        line(self.operation(), p)
    }

    fn operation(&self) -> &'static str {
        if self.attach {
            "AttachUserPolicy"
        } else {
            "DetachUserPolicy"
        }
    }

    async fn read(&self, aws: &Aws<'_>, p: &Params<'_>) -> Result<Found, String> {
        read(aws, p).await
    }

    fn as_wanted(&self, p: &Params<'_>, state: &Value) -> Result<Option<String>, String> {
        Ok((state["attached"] == json!(self.attach)).then(|| words(p, self.attach)))
    }

    async fn write(
        &self,
        aws: &Aws<'_>,
        p: &Params<'_>,
        _before: &Value,
    ) -> Result<Written, String> {
        let (iam, with) = aws
            .connection
            .iam(aws.scope())
            .await
            .map_err(|e| e.to_string())?;
        let (user, arn) = (p.text("user_name")?, p.text("policy_arn")?);
        if self.attach {
            let answer = iam
                .attach_user_policy()
                .user_name(user)
                .policy_arn(arn)
                .customize()
                .config_override(with)
                .send()
                .await;
            written(aws, p, "AttachUserPolicy", answer)
        } else {
            let answer = iam
                .detach_user_policy()
                .user_name(user)
                .policy_arn(arn)
                .customize()
                .config_override(with)
                .send()
                .await;
            written(aws, p, "DetachUserPolicy", answer)
        }
    }

    fn undo(&self, p: &Params<'_>, _before: &Value) -> Result<(&'static str, Value), String> {
        let reverse = if self.attach { DETACH } else { ATTACH };
        Ok((reverse.name(), same(p)))
    }
}
