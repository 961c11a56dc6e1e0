//! A vigilo project directory, loaded and checked.
//!
//! Loading happens in two stages (as ripgrep parses its arguments): [`load`]
//! reads `config/*.toml`, `queries/*.sql` and `remediations/*.toml` into raw
//! forms, interpolates `${VAR}`, checks every key and every reference, and only
//! then builds a [`Project`]. Nothing downstream ever sees unvalidated config.

mod env;
mod errors;
mod load;
pub mod params;
mod query_file;
mod raw;
mod refs;
mod remediation;
mod sections;
mod spans;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use errors::{ConfigError, ConfigErrors};
pub use load::load;
pub use remediation::{Action, ApprovalConfig, ApprovalOption, MessageConfig, Remediation};

use crate::schedule::Schedule;

/// Where a definition came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The file, relative to the project directory when it lies inside it.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}", self.file.display(), line),
            None => write!(f, "{}", self.file.display()),
        }
    }
}

/// A loaded, validated project.
#[derive(Debug, Clone)]
pub struct Project {
    /// The project directory; relative paths in config resolve against it.
    pub dir: PathBuf,
    /// `[state]`: where vigilo keeps its own state.
    pub state: StateConfig,
    /// `[server]`, if configured.
    pub server: Option<ServerConfig>,
    /// `[scheduler]`: how `vigilo run` schedules queries.
    pub scheduler: SchedulerConfig,
    /// `[database.NAME]`.
    pub databases: BTreeMap<String, DatabaseConfig>,
    /// `[connection.aws.NAME]`.
    pub aws_connections: BTreeMap<String, AwsConnectionConfig>,
    /// `[integration.KIND.NAME]`, keyed by `KIND.NAME` (e.g. `slack.default`).
    pub integrations: BTreeMap<String, IntegrationConfig>,
    /// `[notifier.NAME]`.
    pub notifiers: BTreeMap<String, NotifierConfig>,
    /// `[approver.NAME]`.
    pub approvers: BTreeMap<String, ApproverConfig>,
    /// `[group.NAME]`.
    pub groups: BTreeMap<String, GroupConfig>,
    /// `queries/NAME.sql`.
    pub queries: BTreeMap<String, Query>,
    /// `remediations/NAME.toml`.
    pub remediations: BTreeMap<String, Remediation>,
    /// Values that came from secret-named environment variables (`*TOKEN*`, `*SECRET*`, `*PASSWORD*`).
    pub env_secrets: Vec<Secret>,
}

impl Project {
    /// Every configured secret value: the secret settings and secret-named env values.
    pub fn secrets(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .env_secrets
            .iter()
            .map(|s| s.expose().to_string())
            .collect();
        if let Some(server) = &self.server {
            out.extend(
                server
                    .secret
                    .iter()
                    .chain(&server.api_token)
                    .map(|s| s.expose().to_string()),
            );
        }
        for integration in self.integrations.values() {
            match integration {
                IntegrationConfig::Slack(s) => {
                    out.extend(
                        std::iter::once(&s.token)
                            .chain(&s.app_token)
                            .chain(&s.signing_secret)
                            .map(|s| s.expose().to_string()),
                    );
                }
                IntegrationConfig::Email(e) => {
                    out.extend(e.password.iter().map(|s| s.expose().to_string()));
                }
                IntegrationConfig::Webhook(_) | IntegrationConfig::Console => {}
            }
        }
        out
    }

    /// The redactor for this project: its secrets and those of the process environment.
    pub fn redactor(&self) -> crate::redact::Redactor {
        crate::redact::Redactor::new(self.secrets())
    }

    /// The queries that are enabled, in name order.
    pub fn enabled_queries(&self) -> impl Iterator<Item = &Query> {
        self.queries.values().filter(|q| q.enabled)
    }

    /// SHA-256 (hex) of every project file, by path relative to the project: what `config.loaded` records.
    pub fn file_digests(&self) -> BTreeMap<String, String> {
        use sha2::{Digest, Sha256};
        let mut out = BTreeMap::new();
        for (sub, ext) in [
            ("config", "toml"),
            ("queries", "sql"),
            ("remediations", "toml"),
        ] {
            let Ok(entries) = std::fs::read_dir(self.dir.join(sub)) else {
                continue;
            };
            for path in entries.flatten().map(|e| e.path()) {
                if path.extension().and_then(|e| e.to_str()) != Some(ext) {
                    continue;
                }
                if let (Ok(bytes), Some(name)) = (std::fs::read(&path), path.file_name()) {
                    let rel = format!("{sub}/{}", name.to_string_lossy());
                    out.insert(rel, hex::encode(Sha256::digest(&bytes)));
                }
            }
        }
        out
    }

    /// Resolves a path from config against the project directory.
    pub fn resolve_path(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.dir.join(path)
        }
    }
}

/// `[state]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateConfig {
    /// The state store's location.
    pub url: StoreUrl,
}

/// Where the state store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// A SQLite file, already resolved against the project directory.
    Sqlite(PathBuf),
    /// A PostgreSQL connection string (`postgres://…`).
    Postgres(String),
}

/// `[server]`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address the HTTP server binds.
    pub listen: String,
    /// Public base URL used in links sent to people.
    pub base_url: Option<String>,
    /// Signs approval links; never logged.
    pub secret: Option<Secret>,
    /// Bearer token for `/api/*`; never logged.
    pub api_token: Option<Secret>,
}

/// `[scheduler]` (an addition to the interface): limits for `vigilo run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// How many queries may run at the same time.
    pub max_concurrent: usize,
    /// How long a process's claims on scheduled ticks outlive its last heartbeat: a process
    /// silent this long is taken for gone and its ticks are run by another (PostgreSQL fleets).
    pub lease: std::time::Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            max_concurrent: 4,
            lease: std::time::Duration::from_secs(30),
        }
    }
}

/// `[database.NAME]`.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// The section name.
    pub name: String,
    /// Where it is.
    pub url: DatabaseUrl,
    /// Pool size (PostgreSQL); default 4.
    pub max_connections: usize,
    /// Per-query time limit; `None` for no limit.
    pub statement_timeout: Option<Duration>,
    /// Where it was defined.
    pub origin: Origin,
}

/// A source database's location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// PostgreSQL or Steampipe (`postgres://` or `postgresql://`).
    Postgres(String),
    /// A SQLite file, resolved against the project directory.
    Sqlite(PathBuf),
}

/// `[connection.aws.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsConnectionConfig {
    /// The section name.
    pub name: String,
    /// Shared-config profile.
    pub profile: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// Role assumed through STS.
    pub role_arn: Option<String>,
    /// Endpoint override (moto, LocalStack, VPC endpoints).
    pub endpoint_url: Option<String>,
    /// Credential cache lifetime; default 5 minutes.
    pub ttl: Duration,
}

/// `[integration.KIND.NAME]`.
#[derive(Debug, Clone)]
pub enum IntegrationConfig {
    /// `[integration.slack.NAME]`.
    Slack(SlackConfig),
    /// `[integration.email.NAME]`.
    Email(EmailConfig),
    /// `[integration.webhook.NAME]`.
    Webhook(WebhookConfig),
    /// The built-in `console` integration.
    Console,
}

impl IntegrationConfig {
    /// The kind, as written in config (`slack`, `email`, `webhook`, `console`).
    pub fn kind(&self) -> &'static str {
        match self {
            IntegrationConfig::Slack(_) => "slack",
            IntegrationConfig::Email(_) => "email",
            IntegrationConfig::Webhook(_) => "webhook",
            IntegrationConfig::Console => "console",
        }
    }
}

/// How a Slack bot token starts.
pub const BOT_TOKEN_PREFIX: &str = "xoxb-";

/// How a Slack app-level token starts.
pub const APP_TOKEN_PREFIX: &str = "xapp-";

/// `[integration.slack.NAME]`.
#[derive(Debug, Clone)]
pub struct SlackConfig {
    /// Bot token (`xoxb-`).
    pub token: Secret,
    /// App-level token (`xapp-`, scope `connections:write`): with it, `vigilo run` takes
    /// interactions and commands over Socket Mode instead of waiting for Slack's requests.
    pub app_token: Option<Secret>,
    /// Verifies requests from Slack.
    pub signing_secret: Option<Secret>,
    /// Web API base URL; default `https://slack.com/api`.
    pub api_url: String,
    /// How long a ChatOps Confirm button stays valid; default 60 s.
    pub confirm_ttl: Duration,
    /// The least time between two messages to one channel; default 1 s, Slack's pace (an addition).
    pub pace: Duration,
}

/// TLS mode for SMTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// STARTTLS or TLS required.
    Required,
    /// STARTTLS when offered.
    Opportunistic,
    /// Plain text.
    None,
}

/// `[integration.email.NAME]`.
#[derive(Debug, Clone)]
pub struct EmailConfig {
    /// SMTP host.
    pub host: String,
    /// SMTP port; default 587.
    pub port: u16,
    /// TLS mode; default required.
    pub tls: TlsMode,
    /// SMTP user.
    pub username: Option<String>,
    /// SMTP password; never logged.
    pub password: Option<Secret>,
    /// Sender address.
    pub from: String,
}

/// `[integration.webhook.NAME]`.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Where messages are POSTed.
    pub url: String,
}

/// One destination of a notifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyTarget {
    /// `KIND.NAME` of an integration (or `console`).
    pub integration: String,
    /// Slack channel.
    pub channel: Option<String>,
    /// Email recipients.
    pub to: Vec<String>,
}

/// `[notifier.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifierConfig {
    /// The section name.
    pub name: String,
    /// Where it sends.
    pub notify: Vec<NotifyTarget>,
}

/// `[approver.NAME]`: one person, known on each channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApproverConfig {
    /// The section name.
    pub name: String,
    /// Slack user ID (`U…`).
    pub slack: Option<String>,
    /// Email address.
    pub email: Option<String>,
}

/// `[group.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// The section name.
    pub name: String,
    /// Approver names.
    pub members: Vec<String>,
}

/// `on_first_run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FirstRun {
    /// Every row of the first run is a new finding.
    #[default]
    Insert,
    /// The first run only records what exists.
    Baseline,
}

/// A finding's severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Severity {
    /// `low`.
    Low,
    /// `medium` (the default).
    #[default]
    Medium,
    /// `high`.
    High,
    /// `critical`.
    Critical,
}

impl Severity {
    /// The name as written in query files and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Parses `low`, `medium`, `high` or `critical`.
    pub fn parse(s: &str) -> Option<Severity> {
        match s {
            "low" => Some(Severity::Low),
            "medium" => Some(Severity::Medium),
            "high" => Some(Severity::High),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `queries/NAME.sql`.
#[derive(Debug, Clone)]
pub struct Query {
    /// The file stem.
    pub name: String,
    /// Human title; default the name.
    pub title: String,
    /// The `[database.NAME]` it runs against.
    pub database: String,
    /// When it runs under `vigilo run`; `None`: only on `vigilo scan`.
    pub schedule: Option<Schedule>,
    /// Primary-key columns, in order.
    pub primary_key: Vec<String>,
    /// Columns left out of change detection.
    pub ignore_columns: Vec<String>,
    /// Remediation started for each new finding.
    pub remediation: Option<String>,
    /// Notifier told of each new finding.
    pub notify: Option<String>,
    /// What the first run does.
    pub on_first_run: FirstRun,
    /// Severity of its findings.
    pub severity: Severity,
    /// Whether `vigilo run` and a bare `vigilo scan` run it.
    pub enabled: bool,
    /// The SQL text, front matter included (it is only comments).
    pub sql: String,
    /// The file.
    pub path: PathBuf,
}

/// A secret string: shown as `***` by `Debug` so it never reaches a log.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}
