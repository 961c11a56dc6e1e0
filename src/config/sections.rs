//! `config/*.toml`: each file's sections, checked and merged into one
//! [`ConfigSet`] (interface.md 1.2).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;
use toml::de::DeValue;

use super::raw::{self, SpStr};
use super::refs::{RefKind, Reference, TargetCheck};
use super::spans::FileCtx;
use super::{
    ApproverConfig, AwsConnectionConfig, ConfigError, DatabaseConfig, DatabaseUrl, EmailConfig,
    GroupConfig, IntegrationConfig, NotifierConfig, NotifyTarget, Origin, SchedulerConfig, Secret,
    ServerConfig, SlackConfig, StateConfig, StoreUrl, TlsMode, WebhookConfig,
};

/// The top-level sections a config file may have.
const SECTIONS: &str =
    "state, server, scheduler, database, connection, integration, notifier, approver, group";
/// The integration kinds that can be configured.
const INTEGRATION_KINDS: &str = "slack, email, webhook";

/// Everything in `config/*.toml`, merged; the first definition of a name wins.
#[derive(Debug, Default)]
pub(crate) struct ConfigSet {
    /// `[state]`.
    pub state: Option<StateConfig>,
    /// `[server]`.
    pub server: Option<ServerConfig>,
    /// `[scheduler]`.
    pub scheduler: Option<SchedulerConfig>,
    /// `[database.NAME]`.
    pub databases: BTreeMap<String, DatabaseConfig>,
    /// `[connection.aws.NAME]`.
    pub aws_connections: BTreeMap<String, AwsConnectionConfig>,
    /// `[integration.KIND.NAME]`, keyed `KIND.NAME`.
    pub integrations: BTreeMap<String, IntegrationConfig>,
    /// `[notifier.NAME]`.
    pub notifiers: BTreeMap<String, NotifierConfig>,
    /// `[approver.NAME]`.
    pub approvers: BTreeMap<String, ApproverConfig>,
    /// `[group.NAME]`.
    pub groups: BTreeMap<String, GroupConfig>,
    /// References to check once everything is loaded.
    pub refs: Vec<Reference>,
    /// Notifier targets to check against their integration's kind.
    pub targets: Vec<TargetCheck>,
    /// Where each definition (`database "x"`, `[state]`) was first made, valid or not.
    pub defined: BTreeMap<String, Origin>,
}

/// One config file being merged into a [`ConfigSet`].
struct Merge<'a> {
    ctx: &'a FileCtx,
    dir: &'a Path,
    set: &'a mut ConfigSet,
    errors: &'a mut Vec<ConfigError>,
}

/// Merges one parsed (and interpolated) config file into `set`.
pub(crate) fn merge_file(
    ctx: &FileCtx,
    dir: &Path,
    root: Vec<(SpStr, Spanned<DeValue<'_>>)>,
    set: &mut ConfigSet,
    errors: &mut Vec<ConfigError>,
) {
    let mut merge = Merge {
        ctx,
        dir,
        set,
        errors,
    };
    for (key, value) in root {
        merge.section(key, value);
    }
}

impl Merge<'_> {
    /// One top-level key.
    fn section(&mut self, key: SpStr, value: Spanned<DeValue<'_>>) {
        match key.get_ref().as_str() {
            "state" => self.state(&key, value),
            "server" => self.server(&key, value),
            "scheduler" => self.scheduler(&key, value),
            "database" | "notifier" | "approver" | "group" => self.named(&key, value),
            "connection" => self.kinds(&key, value, "aws"),
            "integration" => self.kinds(&key, value, INTEGRATION_KINDS),
            other => self.errors.push(self.ctx.error(
                &key.span(),
                format!("unknown section [{other}]; expected one of: {SECTIONS}"),
            )),
        }
    }

    /// Records a definition; false (and an error) when it already exists.
    fn define(&mut self, label: String, span: &std::ops::Range<usize>) -> bool {
        if let Some(first) = self.set.defined.get(&label) {
            let message = format!("{label} is already defined in {first}");
            self.errors.push(self.ctx.error(span, message));
            return false;
        }
        self.set.defined.insert(label, self.ctx.origin(span));
        true
    }

    /// Deserializes a section's raw form.
    fn raw<T: serde::de::DeserializeOwned>(
        &mut self,
        value: Spanned<DeValue<'_>>,
        path: &str,
    ) -> Option<T> {
        raw::deserialize(self.ctx, value, path, self.errors)
    }

    /// Records an error at `span`.
    fn error(&mut self, span: &std::ops::Range<usize>, message: String) {
        self.errors.push(self.ctx.error(span, message));
    }

    /// `[state]`.
    fn state(&mut self, key: &SpStr, value: Spanned<DeValue<'_>>) {
        if !self.define("[state]".into(), &key.span()) {
            return;
        }
        let Some(raw) = self.raw::<raw::RawState>(value, "state") else {
            return;
        };
        let url = match raw.url {
            None => Ok(StoreUrl::Sqlite(self.dir.join("vigilo.db"))),
            Some(url) => parse_store_url(self.dir, url.get_ref())
                .map_err(|e| self.error(&url.span(), format!("state.url: {e}"))),
        };
        if let Ok(url) = url {
            self.set.state = Some(StateConfig { url });
        }
    }

    /// `[server]`.
    fn server(&mut self, key: &SpStr, value: Spanned<DeValue<'_>>) {
        if !self.define("[server]".into(), &key.span()) {
            return;
        }
        let Some(raw) = self.raw::<raw::RawServer>(value, "server") else {
            return;
        };
        let listen = match raw.listen {
            None => "127.0.0.1:7878".to_string(),
            Some(listen) if is_listen_address(listen.get_ref()) => listen.into_inner(),
            Some(listen) => {
                let message = format!(
                    "server.listen: invalid address {:?}; expected HOST:PORT such as 127.0.0.1:7878",
                    listen.get_ref()
                );
                return self.error(&listen.span(), message);
            }
        };
        self.set.server = Some(ServerConfig {
            listen,
            base_url: raw.base_url.map(|u| u.trim_end_matches('/').to_string()),
            secret: secret(raw.secret),
            api_token: secret(raw.api_token),
        });
    }

    /// `[scheduler]`.
    fn scheduler(&mut self, key: &SpStr, value: Spanned<DeValue<'_>>) {
        if !self.define("[scheduler]".into(), &key.span()) {
            return;
        }
        let Some(raw) = self.raw::<raw::RawScheduler>(value, "scheduler") else {
            return;
        };
        let max_concurrent = match raw.max_concurrent {
            None => SchedulerConfig::default().max_concurrent,
            Some(n) if *n.get_ref() >= 1 => n.into_inner(),
            Some(n) => {
                let message = "scheduler.max_concurrent: must be at least 1".to_string();
                return self.error(&n.span(), message);
            }
        };
        let Ok(lease) = self.duration_or(
            raw.lease,
            "scheduler",
            "lease",
            SchedulerConfig::default().lease,
        ) else {
            return;
        };
        if lease < std::time::Duration::from_secs(1) {
            let message =
                "scheduler.lease: must be at least 1s (heartbeats renew it every third of it)";
            return self.error(&key.span(), message.to_string());
        }
        self.set.scheduler = Some(SchedulerConfig {
            max_concurrent,
            lease,
        });
    }

    /// `[database|notifier|approver|group.NAME]`.
    fn named(&mut self, key: &SpStr, value: Spanned<DeValue<'_>>) {
        let section = key.get_ref().as_str();
        for (name, item) in raw::named_entries(self.ctx, value, section, self.errors) {
            if !self.define(format!("{section} {:?}", name.get_ref()), &name.span()) {
                continue;
            }
            let path = format!("{section}.{}", name.get_ref());
            match section {
                "database" => self.database(&name, item, &path),
                "notifier" => self.notifier(&name, item, &path),
                "approver" => self.approver(&name, item, &path),
                _ => self.group(&name, item, &path),
            }
        }
    }

    /// `[connection.KIND.NAME]` or `[integration.KIND.NAME]`.
    fn kinds(&mut self, key: &SpStr, value: Spanned<DeValue<'_>>, known: &str) {
        let section = key.get_ref().as_str();
        for (kind, entries) in raw::named_entries(self.ctx, value, section, self.errors) {
            if !known.split(", ").any(|k| k == kind.get_ref()) {
                let message = format!(
                    "unknown {section} kind {:?} in [{section}.{}]; expected one of: {known}",
                    kind.get_ref(),
                    kind.get_ref()
                );
                self.error(&kind.span(), message);
                continue;
            }
            let kind_path = format!("{section}.{}", kind.get_ref());
            for (name, item) in raw::named_entries(self.ctx, entries, &kind_path, self.errors) {
                let full = format!("{}.{}", kind.get_ref(), name.get_ref());
                if !self.define(format!("{section} {full:?}"), &name.span()) {
                    continue;
                }
                let path = format!("{section}.{full}");
                self.kind_item(kind.get_ref(), &name, item, &path, full);
            }
        }
    }

    /// One `[connection.aws.NAME]` or `[integration.KIND.NAME]`.
    fn kind_item(
        &mut self,
        kind: &str,
        name: &SpStr,
        item: Spanned<DeValue<'_>>,
        path: &str,
        full: String,
    ) {
        let integration = match kind {
            "aws" => return self.aws(name, item, path),
            "slack" => self.slack(item, path).map(IntegrationConfig::Slack),
            "email" => self.email(item, path).map(IntegrationConfig::Email),
            _ => self.raw::<raw::RawWebhook>(item, path).map(|w| {
                IntegrationConfig::Webhook(WebhookConfig {
                    url: w.url.into_inner(),
                })
            }),
        };
        if let Some(integration) = integration {
            self.set.integrations.insert(full, integration);
        }
    }

    /// `[database.NAME]`.
    fn database(&mut self, name: &SpStr, item: Spanned<DeValue<'_>>, path: &str) {
        let Some(raw) = self.raw::<raw::RawDatabase>(item, path) else {
            return;
        };
        let url = parse_database_url(self.dir, raw.url.get_ref())
            .map_err(|e| self.error(&raw.url.span(), format!("{path}.url: {e}")));
        let max_connections = match raw.max_connections {
            None => Ok(4),
            Some(n) if *n.get_ref() >= 1 => Ok(n.into_inner()),
            Some(n) => {
                self.error(
                    &n.span(),
                    format!("{path}.max_connections: must be at least 1"),
                );
                Err(())
            }
        };
        let timeout = self.duration_opt(raw.statement_timeout, path, "statement_timeout");
        if let (Ok(url), Ok(max_connections), Ok(statement_timeout)) =
            (url, max_connections, timeout)
        {
            let config = DatabaseConfig {
                name: name.get_ref().clone(),
                url,
                max_connections,
                statement_timeout,
                origin: self.ctx.origin(&name.span()),
            };
            self.set.databases.insert(name.get_ref().clone(), config);
        }
    }

    /// An optional duration key.
    fn duration_opt(
        &mut self,
        value: Option<SpStr>,
        path: &str,
        key: &str,
    ) -> Result<Option<Duration>, ()> {
        let Some(value) = value else { return Ok(None) };
        parse_duration(value.get_ref())
            .map(Some)
            .map_err(|e| self.error(&value.span(), format!("{path}.{key}: {e}")))
    }

    /// A duration key with a default.
    fn duration_or(
        &mut self,
        value: Option<SpStr>,
        path: &str,
        key: &str,
        default: Duration,
    ) -> Result<Duration, ()> {
        self.duration_opt(value, path, key)
            .map(|d| d.unwrap_or(default))
    }

    /// `[connection.aws.NAME]`.
    fn aws(&mut self, name: &SpStr, item: Spanned<DeValue<'_>>, path: &str) {
        let Some(raw) = self.raw::<raw::RawAws>(item, path) else {
            return;
        };
        let Ok(ttl) = self.duration_or(raw.ttl, path, "ttl", Duration::from_secs(300)) else {
            return;
        };
        // An empty value (`"${AWS_PROFILE:-}"` unset) means the key is not set.
        let given = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
        let config = AwsConnectionConfig {
            name: name.get_ref().clone(),
            profile: given(raw.profile),
            region: given(raw.region),
            role_arn: given(raw.role_arn),
            endpoint_url: given(raw.endpoint_url),
            ttl,
        };
        self.set
            .aws_connections
            .insert(name.get_ref().clone(), config);
    }

    /// `[integration.slack.NAME]`.
    fn slack(&mut self, item: Spanned<DeValue<'_>>, path: &str) -> Option<SlackConfig> {
        let raw = self.raw::<raw::RawSlack>(item, path)?;
        if raw.token.get_ref().is_empty() {
            self.error(
                &raw.token.span(),
                format!("{path}.token: must not be empty"),
            );
            return None;
        }
        if raw.token.get_ref().starts_with(super::APP_TOKEN_PREFIX) {
            let message = format!(
                "{path}.token: this is an app-level token ({}…); it goes in app_token, and token takes the bot token ({}…)",
                super::APP_TOKEN_PREFIX,
                super::BOT_TOKEN_PREFIX
            );
            self.error(&raw.token.span(), message);
            return None;
        }
        let app_token = match raw.app_token {
            Some(t) if t.get_ref().is_empty() => None,
            Some(t) if !t.get_ref().starts_with(super::APP_TOKEN_PREFIX) => {
                let message = format!(
                    "{path}.app_token: expected an app-level token ({}…, with the connections:write scope, from the app's Basic Information page)",
                    super::APP_TOKEN_PREFIX
                );
                self.error(&t.span(), message);
                return None;
            }
            Some(t) => Some(Secret::new(t.into_inner())),
            None => None,
        };
        let confirm_ttl = self
            .duration_or(
                raw.confirm_ttl,
                path,
                "confirm_ttl",
                Duration::from_secs(60),
            )
            .ok()?;
        let pace = self
            .duration_or(raw.pace, path, "pace", Duration::from_secs(1))
            .ok()?;
        Some(SlackConfig {
            token: Secret::new(raw.token.into_inner()),
            app_token,
            signing_secret: secret(raw.signing_secret),
            api_url: raw
                .api_url
                .map(|u| u.trim_end_matches('/').to_string())
                .unwrap_or_else(|| "https://slack.com/api".into()),
            confirm_ttl,
            pace,
        })
    }

    /// `[integration.email.NAME]`.
    fn email(&mut self, item: Spanned<DeValue<'_>>, path: &str) -> Option<EmailConfig> {
        let raw = self.raw::<raw::RawEmail>(item, path)?;
        let tls = match &raw.tls {
            None => TlsMode::Required,
            Some(tls) => match tls.get_ref().as_str() {
                "required" => TlsMode::Required,
                "opportunistic" => TlsMode::Opportunistic,
                "none" => TlsMode::None,
                other => {
                    let message = format!(
                        "{path}.tls: unknown TLS mode {other:?}; expected required, opportunistic or none"
                    );
                    self.error(&tls.span(), message);
                    return None;
                }
            },
        };
        Some(EmailConfig {
            host: raw.host.into_inner(),
            port: raw.port.unwrap_or(587),
            tls,
            username: raw.username.filter(|u| !u.is_empty()),
            password: secret(raw.password),
            from: raw.from.into_inner(),
        })
    }

    /// `[notifier.NAME]`.
    fn notifier(&mut self, name: &SpStr, item: Spanned<DeValue<'_>>, path: &str) {
        let Some(raw) = self.raw::<raw::RawNotifier>(item, path) else {
            return;
        };
        if raw.notify.get_ref().is_empty() {
            let message = format!("{path}.notify: must name at least one integration");
            return self.error(&raw.notify.span(), message);
        }
        let mut notify = Vec::new();
        for (index, target) in raw.notify.into_inner().into_iter().enumerate() {
            let target = target.into_inner();
            self.set.targets.push(TargetCheck {
                origin: self.ctx.origin(&target.integration.span()),
                path: format!("{path}.notify[{index}]"),
                integration: target.integration.get_ref().clone(),
                has_channel: target.channel.is_some(),
                to: target.to.as_ref().map(Vec::len),
            });
            notify.push(NotifyTarget {
                integration: target.integration.into_inner(),
                channel: target.channel,
                to: target.to.unwrap_or_default(),
            });
        }
        let config = NotifierConfig {
            name: name.get_ref().clone(),
            notify,
        };
        self.set.notifiers.insert(name.get_ref().clone(), config);
    }

    /// `[approver.NAME]`.
    fn approver(&mut self, name: &SpStr, item: Spanned<DeValue<'_>>, path: &str) {
        let Some(raw) = self.raw::<raw::RawApprover>(item, path) else {
            return;
        };
        let config = ApproverConfig {
            name: name.get_ref().clone(),
            slack: raw.slack.filter(|s| !s.is_empty()),
            email: raw.email.filter(|s| !s.is_empty()),
        };
        self.set.approvers.insert(name.get_ref().clone(), config);
    }

    /// `[group.NAME]`.
    fn group(&mut self, name: &SpStr, item: Spanned<DeValue<'_>>, path: &str) {
        let Some(raw) = self.raw::<raw::RawGroup>(item, path) else {
            return;
        };
        if raw.members.get_ref().is_empty() {
            let message = format!("{path}.members: must name at least one approver");
            return self.error(&raw.members.span(), message);
        }
        let mut members = Vec::new();
        for member in raw.members.into_inner() {
            self.set.refs.push(Reference {
                origin: self.ctx.origin(&member.span()),
                kind: RefKind::Approver,
                name: member.get_ref().clone(),
            });
            members.push(member.into_inner());
        }
        let config = GroupConfig {
            name: name.get_ref().clone(),
            members,
        };
        self.set.groups.insert(name.get_ref().clone(), config);
    }
}

/// An optional secret; an empty value (say `${X:-}`) counts as not set.
fn secret(value: Option<String>) -> Option<Secret> {
    value.filter(|v| !v.is_empty()).map(Secret::new)
}

/// `HOST:PORT` (IPv6 hosts in brackets).
fn is_listen_address(text: &str) -> bool {
    match text.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok(),
        None => false,
    }
}

/// A humantime duration (`60s`, `5m`, `1h 30m`).
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        format!("invalid duration {text:?} ({e}); write e.g. \"60s\", \"5m\", \"24h\"")
    })
}

/// The path of a `sqlite://PATH` URL, resolved against `dir`.
fn sqlite_path(dir: &Path, url: &str) -> Option<Result<std::path::PathBuf, String>> {
    let rest = url.strip_prefix("sqlite://")?;
    if rest.is_empty() {
        return Some(Err(format!("{url:?} names no file; write sqlite://FILE")));
    }
    Some(Ok(dir.join(rest)))
}

/// Whether `url` is a PostgreSQL connection URL.
fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// `[state] url`: `sqlite://REL` (project-relative), `sqlite:///ABS`, or PostgreSQL.
pub(crate) fn parse_store_url(dir: &Path, url: &str) -> Result<StoreUrl, String> {
    if is_postgres(url) {
        return Ok(StoreUrl::Postgres(url.to_string()));
    }
    match sqlite_path(dir, url) {
        Some(path) => path.map(StoreUrl::Sqlite),
        None => Err(unsupported_url(url)),
    }
}

/// `[database.NAME] url`: PostgreSQL/Steampipe or a SQLite file.
pub(crate) fn parse_database_url(dir: &Path, url: &str) -> Result<DatabaseUrl, String> {
    if is_postgres(url) {
        return Ok(DatabaseUrl::Postgres(url.to_string()));
    }
    match sqlite_path(dir, url) {
        Some(path) => path.map(DatabaseUrl::Sqlite),
        None => Err(unsupported_url(url)),
    }
}

/// The error for a URL of another scheme.
fn unsupported_url(url: &str) -> String {
    format!("unsupported URL {url:?}; expected postgres://…, postgresql://… or sqlite://FILE")
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn sqlite_urls_resolve_against_the_project() {
        let dir = Path::new("/proj");
        assert_eq!(
            parse_store_url(dir, "sqlite://vigilo.db"),
            Ok(StoreUrl::Sqlite(PathBuf::from("/proj/vigilo.db")))
        );
        assert_eq!(
            parse_store_url(dir, "sqlite://data/x.db"),
            Ok(StoreUrl::Sqlite(PathBuf::from("/proj/data/x.db")))
        );
        assert_eq!(
            parse_store_url(dir, "sqlite:///var/lib/x.db"),
            Ok(StoreUrl::Sqlite(PathBuf::from("/var/lib/x.db")))
        );
        assert_eq!(
            parse_database_url(dir, "sqlite://inv.db"),
            Ok(DatabaseUrl::Sqlite(PathBuf::from("/proj/inv.db")))
        );
    }

    #[test]
    fn postgres_urls_are_kept() {
        let dir = Path::new("/proj");
        for url in ["postgres://u@h/db", "postgresql://h:9193/steampipe"] {
            assert_eq!(
                parse_store_url(dir, url),
                Ok(StoreUrl::Postgres(url.into()))
            );
            assert_eq!(
                parse_database_url(dir, url),
                Ok(DatabaseUrl::Postgres(url.into()))
            );
        }
    }

    #[test]
    fn other_urls_are_errors_naming_the_value() {
        let dir = Path::new("/proj");
        let err = parse_database_url(dir, "mysql://h/db").unwrap_err();
        assert!(err.contains("\"mysql://h/db\""), "{err}");
        assert!(parse_store_url(dir, "sqlite://").is_err());
        assert!(parse_store_url(dir, "vigilo.db").is_err());
    }

    #[test]
    fn durations_parse_or_name_the_value() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        let err = parse_duration("soon").unwrap_err();
        assert!(err.starts_with("invalid duration \"soon\""), "{err}");
    }

    #[test]
    fn listen_addresses_need_a_port() {
        assert!(is_listen_address("127.0.0.1:7878"));
        assert!(is_listen_address("[::1]:80"));
        assert!(is_listen_address("localhost:8080"));
        assert!(!is_listen_address("localhost"));
        assert!(!is_listen_address(":80"));
        assert!(!is_listen_address("h:99999"));
    }
}
