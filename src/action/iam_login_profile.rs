//! `aws.iam.delete_login_profile`: removes an IAM user's console password (its login profile).
//!
//! Reads `GetLoginProfile` (and `GetUser` when there is none, to tell a user without a
//! password from a user that is gone). Not reversible: the password cannot be restored.

use aws_sdk_iam::error::ProvideErrorMetadata;
use aws_sdk_iam::operation::RequestId;
use serde_json::{Value, json};

use super::params::{self, Param, Params};
use super::read_first::{Aws, Found, ReadFirst, Written};
use crate::aws::AwsError;

/// `aws.iam.delete_login_profile`.
pub struct DeleteLoginProfile;

const PARAMS: &[Param] = &[params::CONNECTION, params::REGION, Param::text("user_name")];

/// Whether `user` exists (`GetUser`).
pub(super) async fn user_exists(aws: &Aws<'_>, user: &str) -> Result<bool, String> {
    let (iam, with) = aws
        .connection
        .iam(aws.scope())
        .await
        .map_err(|e| e.to_string())?;
    match iam
        .get_user()
        .user_name(user)
        .customize()
        .config_override(with)
        .send()
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if e.code() == Some("NoSuchEntity") => Ok(false),
        Err(e) => Err(AwsError::from_sdk(aws.connection.config(), "GetUser", e).to_string()),
    }
}

/// Why an IAM user's action has nothing to do.
pub(super) fn user_gone(aws: &Aws<'_>, user: &str) -> String {
    format!(
        "user {user} no longer exists in connection {} (NoSuchEntity)",
        aws.connection.name()
    )
}

#[async_trait::async_trait]
impl ReadFirst for DeleteLoginProfile {
    fn name(&self) -> &'static str {
        "aws.iam.delete_login_profile"
    }

    fn params(&self) -> &'static [Param] {
        PARAMS
    }

    fn call(&self, p: &Params<'_>) -> String {
        format!(
            "iam:DeleteLoginProfile UserName={}",
            p.opt_text("user_name").unwrap_or_default()
        )
    }

    fn operation(&self) -> &'static str {
        "DeleteLoginProfile"
    }

    async fn read(&self, aws: &Aws<'_>, p: &Params<'_>) -> Result<Found, String> {
        let user = p.text("user_name")?;
        let (iam, with) = aws
            .connection
            .iam(aws.scope())
            .await
            .map_err(|e| e.to_string())?;
        let answer = iam
            .get_login_profile()
            .user_name(user)
            .customize()
            .config_override(with)
            .send()
            .await;
        match answer {
            Ok(out) => {
                let created = out
                    .login_profile()
                    .map(|l| l.create_date().to_string())
                    .unwrap_or_default();
                Ok(Found::State(
                    json!({"login_profile": true, "created": created}),
                ))
            }
            Err(e) if e.code() == Some("NoSuchEntity") => {
                if user_exists(aws, user).await? {
                    Ok(Found::State(json!({"login_profile": false})))
                } else {
                    Ok(Found::Gone(user_gone(aws, user)))
                }
            }
            Err(e) => {
                Err(AwsError::from_sdk(aws.connection.config(), "GetLoginProfile", e).to_string())
            }
        }
    }

    fn as_wanted(&self, p: &Params<'_>, state: &Value) -> Result<Option<String>, String> {
        Ok((state["login_profile"] == json!(false)).then(|| {
            format!(
                "user {} has no console password (login profile)",
                p.opt_text("user_name").unwrap_or_default()
            )
        }))
    }

    async fn write(
        &self,
        aws: &Aws<'_>,
        p: &Params<'_>,
        _before: &Value,
    ) -> Result<Written, String> {
        let user = p.text("user_name")?;
        let (iam, with) = aws
            .connection
            .iam(aws.scope())
            .await
            .map_err(|e| e.to_string())?;
        match iam
            .delete_login_profile()
            .user_name(user)
            .customize()
            .config_override(with)
            .send()
            .await
        {
            Ok(out) => Ok(Written::Done(
                out.request_id().unwrap_or_default().to_string(),
            )),
            Err(e) if e.code() == Some("NoSuchEntity") => Ok(Written::Gone(format!(
                "the login profile of user {user} no longer exists in connection {} (NoSuchEntity)",
                aws.connection.name()
            ))),
            Err(e) => Err(
                AwsError::from_sdk(aws.connection.config(), "DeleteLoginProfile", e).to_string(),
            ),
        }
    }

    fn undo(&self, _p: &Params<'_>, _before: &Value) -> Result<(&'static str, Value), String> {
        Err("aws.iam.delete_login_profile is not reversible: the console password it removed cannot be restored (set a new one with iam:CreateLoginProfile)".into())
    }
}
