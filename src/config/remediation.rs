//! `remediations/NAME.toml`: approvals, actions and messages (interface.md section 4).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// A loaded remediation.
#[derive(Debug, Clone)]
pub struct Remediation {
    /// The file stem.
    pub name: String,
    /// Human title; default the name.
    pub title: String,
    /// Re-run the query just before acting.
    pub recheck: bool,
    /// Record and print the calls, make none.
    pub dry_run: bool,
    /// `[approval]`; `None` means auto-remediation.
    pub approval: Option<ApprovalConfig>,
    /// `[[action]]`, in file order.
    pub actions: Vec<Action>,
    /// `[[message]]`, in file order.
    pub messages: Vec<MessageConfig>,
    /// The file.
    pub path: PathBuf,
}

/// `[approval]`.
#[derive(Debug, Clone)]
pub struct ApprovalConfig {
    /// Notifier that carries the request.
    pub notifier: String,
    /// Subject template.
    pub subject: String,
    /// Prompt template.
    pub prompt: String,
    /// Approver and group names.
    pub approvers: Vec<String>,
    /// May a ChatOps requester vote on their own request.
    pub allow_self_approval: bool,
    /// Time until the approval expires or takes `on_timeout`.
    pub timeout: Option<Duration>,
    /// Option taken when time runs out.
    pub on_timeout: Option<String>,
    /// Options; default approve (primary) and deny (danger).
    pub options: Vec<ApprovalOption>,
}

/// One choice of an approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalOption {
    /// The value votes carry.
    pub value: String,
    /// What people see.
    pub label: String,
    /// `primary`, `danger` or none.
    pub style: Option<String>,
    /// Distinct approvers needed.
    pub required: u32,
}

/// `[[action]]`.
#[derive(Debug, Clone)]
pub struct Action {
    /// The option that triggers it; `None`: runs without approval.
    pub when: Option<String>,
    /// What it does.
    pub kind: ActionKind,
}

/// The action types; every string field is a template.
#[derive(Debug, Clone)]
pub enum ActionKind {
    /// `aws.iam.update_access_key`.
    AwsUpdateAccessKey {
        /// `[connection.aws.NAME]` template; default `default`.
        connection: String,
        /// IAM user name template.
        user_name: String,
        /// Access key ID template.
        access_key_id: String,
        /// `Active` or `Inactive` (template).
        status: String,
    },
    /// `aws.iam.delete_access_key`.
    AwsDeleteAccessKey {
        /// `[connection.aws.NAME]` template; default `default`.
        connection: String,
        /// IAM user name template.
        user_name: String,
        /// Access key ID template.
        access_key_id: String,
    },
    /// `http`.
    Http {
        /// URL template.
        url: String,
        /// HTTP method; default POST.
        method: String,
        /// Header templates.
        headers: BTreeMap<String, String>,
        /// Body template.
        body: Option<String>,
    },
}

/// `[[message]]`.
#[derive(Debug, Clone)]
pub struct MessageConfig {
    /// The option that triggers it; `None`: sent when actions run without approval.
    pub when: Option<String>,
    /// Notifier to send through.
    pub notifier: String,
    /// Text template.
    pub text: String,
}
