//! What an AWS failure means, in one or two lines a person can act on.
//!
//! Every failed AWS call and credential lookup becomes an [`AwsError`] here, the one place that
//! reads the SDK's errors: no credentials, AWS refusing a permission (which one, and to whom
//! when AWS says), an endpoint that cannot be reached, throttling that outlasted the SDK's
//! retries, other AWS error codes, and a one-line fallback. Each names the operation and the
//! connection and says what to do. The SDK's full error chain goes to the debug log only.

use std::error::Error;

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_iam::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::cause;
use crate::config::AwsConnectionConfig;

/// AWS error codes that mean "not allowed".
const DENIED: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "UnauthorizedAccess",
];

/// AWS error codes that mean "too many requests".
const THROTTLED: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "RequestThrottled",
    "SlowDown",
];

/// An AWS failure, with the service's error code where AWS answered.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AwsError {
    /// The row or action names a connection that is not configured.
    #[error(
        "no [connection.aws.{name}] is configured (configured: {configured}): add it to config/aws.toml or correct the action's connection; vigilo never falls back to another account, so nothing was called"
    )]
    UnknownConnection {
        /// The name asked for.
        name: String,
        /// The names there are.
        configured: String,
    },
    /// No credentials could be found for the connection.
    #[error("no AWS credentials for connection {connection}{why}: {fix}; nothing was called")]
    NoCredentials {
        /// The connection.
        connection: String,
        /// What the provider said, when it helps (` from profile prod (…)`), or empty.
        why: String,
        /// How to provide them.
        fix: String,
    },
    /// AWS refused the call: the caller lacks a permission.
    #[error("AWS {operation} (connection {connection}): {code}: {explanation}")]
    Denied {
        /// The connection.
        connection: String,
        /// The API operation, e.g. `UpdateAccessKey`.
        operation: &'static str,
        /// AWS's error code (`AccessDenied`, `UnauthorizedOperation`, …).
        code: String,
        /// Who may not do what, and the fix.
        explanation: String,
    },
    /// AWS answered with an error.
    #[error("AWS {operation} (connection {connection}): {code}: {message}{advice}")]
    Service {
        /// The connection.
        connection: String,
        /// The API operation, e.g. `UpdateAccessKey`.
        operation: &'static str,
        /// AWS's error code, e.g. `NoSuchEntity`.
        code: String,
        /// AWS's message, on one line.
        message: String,
        /// What to do, for throttling and server errors (`; …`), or empty.
        advice: String,
    },
    /// No answer: network, timeout, or another failure before AWS answered.
    #[error("AWS {operation} (connection {connection}): {detail}")]
    Call {
        /// The connection.
        connection: String,
        /// The API operation.
        operation: &'static str,
        /// What went wrong, on one line, with what to check.
        detail: String,
    },
}

impl AwsError {
    /// AWS's error code, when AWS answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            AwsError::Service { code, .. } | AwsError::Denied { code, .. } => Some(code),
            _ => None,
        }
    }

    /// A failed SDK call of `operation` on `connection`, classified.
    pub fn from_sdk<E, R>(
        connection: &AwsConnectionConfig,
        operation: &'static str,
        e: SdkError<E, R>,
    ) -> AwsError
    where
        E: ProvideErrorMetadata + Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        tracing::debug!(connection = %connection.name, operation, error = %DisplayErrorContext(&e), "AWS call failed");
        let name = connection.name.clone();
        if let Some(code) = e.code() {
            let message = cause::one_line(e.message().unwrap_or_default());
            let retried_5xx = matches!(&e, SdkError::ServiceError(_)) && server_error(code);
            return AwsError::answered(&name, operation, code, &message, retried_5xx);
        }
        if let Some(c) = credentials_error(&e) {
            return no_credentials(connection, c);
        }
        let detail = match &e {
            SdkError::TimeoutError(_) => format!(
                "no answer within {} s{}",
                super::OPERATION_TIMEOUT.as_secs(),
                reach_fix(connection)
            ),
            SdkError::DispatchFailure(d) if d.is_timeout() => {
                format!("no answer in time{}", reach_fix(connection))
            }
            SdkError::DispatchFailure(_) => match cause::network(&e) {
                Some(why) => format!(
                    "cannot reach {} ({why}){}",
                    endpoint(connection).unwrap_or_else(|| "AWS".into()),
                    reach_fix(connection)
                ),
                None => cause::summary(&e),
            },
            _ => cause::summary(&e),
        };
        AwsError::Call {
            connection: name,
            operation,
            detail,
        }
    }

    /// AWS answered `operation` on `connection` with error `code`: a denial names who lacks
    /// which permission; throttling, and a server error (`server_error`) that outlived the
    /// retries, say to try again later.
    pub fn answered(
        connection: &str,
        operation: &'static str,
        code: &str,
        message: &str,
        server_error: bool,
    ) -> AwsError {
        if DENIED.contains(&code) {
            return AwsError::Denied {
                connection: connection.to_string(),
                operation,
                code: code.to_string(),
                explanation: denied(operation, message, connection),
            };
        }
        let advice = if THROTTLED.contains(&code) {
            "; AWS still throttled it after the SDK's retries: try again later".to_string()
        } else if server_error {
            "; AWS failed it on every retry: try again later".to_string()
        } else {
            String::new()
        };
        AwsError::Service {
            connection: connection.to_string(),
            operation,
            code: code.to_string(),
            message: message.to_string(),
            advice,
        }
    }

    /// The base credential chain (or profile) of `connection` gave no credentials.
    pub fn from_credentials(connection: &AwsConnectionConfig, e: &CredentialsError) -> AwsError {
        tracing::debug!(connection = %connection.name, error = %DisplayErrorContext(e), "no AWS credentials");
        no_credentials(connection, e)
    }
}

/// The credential error in `e`'s chain, if credentials are why the call could not be made.
fn credentials_error<'a>(e: &'a (dyn Error + 'static)) -> Option<&'a CredentialsError> {
    cause::chain(e).find_map(|l| l.downcast_ref())
}

/// What to do without credentials, which depends on where the connection looks for them.
fn no_credentials(connection: &AwsConnectionConfig, e: &CredentialsError) -> AwsError {
    let name = &connection.name;
    let named = connection
        .profile
        .clone()
        .map(|p| (format!("profile {p}"), p));
    let from_env = || env_value("AWS_PROFILE").map(|p| (format!("AWS_PROFILE={p}"), p));
    let (why, fix) = match named.or_else(from_env) {
        Some((source, profile)) => (
            format!(" from {source} ({})", cause::root(e)),
            format!(
                "check [profile {profile}] in ~/.aws/config and ~/.aws/credentials (for SSO: aws sso login --profile {profile})"
            ),
        ),
        None => {
            let why = match e {
                CredentialsError::InvalidConfiguration(_) => format!(" ({})", cause::root(e)),
                _ => String::new(),
            };
            (
                why,
                format!(
                    "set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or `profile` in [connection.aws.{name}]"
                ),
            )
        }
    };
    AwsError::NoCredentials {
        connection: name.clone(),
        why,
        fix,
    }
}

/// Where a connection's calls go when not to AWS itself: its `endpoint_url`, or `AWS_ENDPOINT_URL`.
fn endpoint(connection: &AwsConnectionConfig) -> Option<String> {
    connection
        .endpoint_url
        .clone()
        .or_else(|| env_value("AWS_ENDPOINT_URL"))
}

/// An environment variable's value, when set and not empty.
fn env_value(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// `; check …`: where a connection's calls go, for failures to reach it.
fn reach_fix(connection: &AwsConnectionConfig) -> String {
    match (&connection.endpoint_url, env_value("AWS_ENDPOINT_URL")) {
        (Some(_), _) => format!(
            "; is the endpoint up? check endpoint_url of [connection.aws.{}]",
            connection.name
        ),
        (None, Some(_)) => "; is the endpoint up? check AWS_ENDPOINT_URL".to_string(),
        (None, None) => "; check the network and any proxy (HTTPS_PROXY)".to_string(),
    }
}

/// Codes of AWS's own failures (the SDK retries them).
fn server_error(code: &str) -> bool {
    matches!(
        code,
        "ServiceUnavailable" | "InternalFailure" | "InternalError" | "ServiceFailure"
    )
}

/// The permission an operation needs, e.g. `iam:UpdateAccessKey`.
fn permission(operation: &str) -> String {
    let service = match operation {
        "AssumeRole" | "GetCallerIdentity" => "sts",
        "ListAccessKeys" | "UpdateAccessKey" | "DeleteAccessKey" => "iam",
        _ => return format!("the permission for {operation}"),
    };
    format!("{service}:{operation}")
}

/// Who may not do what, and how to allow it. AWS's message usually says
/// `User: ARN is not authorized to perform: iam:X on resource: R because …`; when it does not,
/// its message is kept as it is.
fn denied(operation: &str, message: &str, connection: &str) -> String {
    let Some(d) = parse_denial(message) else {
        return format!(
            "{message}; allow {} for the identity of connection {connection}",
            permission(operation)
        );
    };
    let mut text = format!("{} may not perform {}", d.principal, d.action);
    if let Some(resource) = d.resource {
        text.push_str(&format!(" on {resource}"));
    }
    if let Some(reason) = d.reason {
        text.push_str(&format!(" ({reason})"));
    }
    if d.reason.is_some_and(|r| r.contains("explicit deny")) {
        text.push_str(&format!(
            "; an explicit deny wins over any allow: change the policy that denies {}",
            d.action
        ));
    } else {
        text.push_str(&format!("; allow {} to {} in IAM", d.action, d.principal));
    }
    text
}

/// The parts of AWS's usual AccessDenied message.
struct Denial<'a> {
    principal: &'a str,
    action: &'a str,
    resource: Option<&'a str>,
    reason: Option<&'a str>,
}

fn parse_denial(message: &str) -> Option<Denial<'_>> {
    let after_user = &message[message.find("User: ")? + "User: ".len()..];
    let (principal, rest) = after_user.split_once(" is not authorized to perform: ")?;
    let end_of_sentence = |s: &'_ str| {
        s.find(". ")
            .or_else(|| s.strip_suffix('.').map(str::len))
            .unwrap_or(s.len())
    };
    let rest = &rest[..end_of_sentence(rest)];
    let (head, reason) = match rest.split_once(" because ") {
        Some((head, reason)) => (head, Some(reason)),
        None => match rest.split_once(" with an explicit deny") {
            Some((head, _)) => (head, Some(&rest[head.len() + 1..])),
            None => (rest, None),
        },
    };
    let (action, resource) = match head.split_once(" on resource: ") {
        Some((action, resource)) => (action, Some(resource)),
        None => (head, None),
    };
    Some(Denial {
        principal,
        action: action.trim(),
        resource,
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denials_name_the_principal_the_permission_and_the_fix() {
        let m = "User: arn:aws:iam::123456789012:user/vigilo is not authorized to perform: iam:UpdateAccessKey on resource: user ann because no identity-based policy allows the iam:UpdateAccessKey action";
        assert_eq!(
            denied("UpdateAccessKey", m, "prod"),
            "arn:aws:iam::123456789012:user/vigilo may not perform iam:UpdateAccessKey on user ann (no identity-based policy allows the iam:UpdateAccessKey action); allow iam:UpdateAccessKey to arn:aws:iam::123456789012:user/vigilo in IAM"
        );
        let explicit = "User: arn:aws:sts::1:assumed-role/r/s is not authorized to perform: ec2:StopInstances on resource: arn:aws:ec2:us-east-1:1:instance/i-1 with an explicit deny in a service control policy. Encoded authorization failure message: AbC";
        assert_eq!(
            denied("StopInstances", explicit, "prod"),
            "arn:aws:sts::1:assumed-role/r/s may not perform ec2:StopInstances on arn:aws:ec2:us-east-1:1:instance/i-1 (with an explicit deny in a service control policy); an explicit deny wins over any allow: change the policy that denies ec2:StopInstances"
        );
        assert_eq!(
            denied("AssumeRole", "Access denied", "prod"),
            "Access denied; allow sts:AssumeRole for the identity of connection prod"
        );
    }
}
