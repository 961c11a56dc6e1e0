//! Raw serde forms of the `config/*.toml` sections, and typed deserialization
//! of spanned TOML values with errors that name the key and its line.

use std::ops::Range;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeValue, ValueDeserializer};

use super::ConfigError;
use super::spans::{self, FileCtx};

/// A spanned string.
pub(crate) type SpStr = Spanned<String>;

/// `[state]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawState {
    pub url: Option<SpStr>,
}

/// `[server]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub listen: Option<SpStr>,
    pub base_url: Option<String>,
    pub secret: Option<String>,
    pub api_token: Option<String>,
}

/// `[scheduler]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawScheduler {
    pub max_concurrent: Option<Spanned<usize>>,
    pub lease: Option<SpStr>,
}

/// `[database.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDatabase {
    pub url: SpStr,
    pub max_connections: Option<Spanned<usize>>,
    pub statement_timeout: Option<SpStr>,
}

/// `[connection.aws.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAws {
    pub profile: Option<String>,
    pub region: Option<String>,
    pub role_arn: Option<String>,
    pub endpoint_url: Option<String>,
    pub ttl: Option<SpStr>,
}

/// `[integration.slack.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSlack {
    pub token: SpStr,
    pub app_token: Option<SpStr>,
    pub signing_secret: Option<String>,
    pub api_url: Option<String>,
    pub confirm_ttl: Option<SpStr>,
    pub pace: Option<SpStr>,
}

/// `[integration.email.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEmail {
    pub host: SpStr,
    pub port: Option<u16>,
    pub tls: Option<SpStr>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub from: SpStr,
}

/// `[integration.webhook.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWebhook {
    pub url: SpStr,
}

/// `[notifier.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNotifier {
    pub notify: Spanned<Vec<Spanned<RawTarget>>>,
}

/// One entry of `notify = [...]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTarget {
    pub integration: SpStr,
    pub channel: Option<String>,
    pub to: Option<Vec<String>>,
}

/// `[approver.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawApprover {
    pub slack: Option<String>,
    pub email: Option<String>,
}

/// `[group.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGroup {
    pub members: Spanned<Vec<SpStr>>,
}

/// How many unknown keys of one table are reported before giving up.
const MAX_UNKNOWN_KEYS: usize = 32;

/// Deserializes `value` (at dotted key `path`) into `T`.
///
/// Every unknown key is reported (each at its own line), then the first other
/// problem, if any. Returns `None` when anything was wrong.
pub(crate) fn deserialize<T: DeserializeOwned>(
    ctx: &FileCtx,
    mut value: Spanned<DeValue<'_>>,
    path: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    let mut ok = true;
    for _ in 0..MAX_UNKNOWN_KEYS {
        let err = match T::deserialize(ValueDeserializer::from(value.clone())) {
            Ok(v) if ok => return Some(v),
            Ok(_) => return None,
            Err(err) => err,
        };
        ok = false;
        let span = err.span().unwrap_or_else(|| value.span());
        errors.push(ctx.error(&span, describe(&value, path, &err, &span)));
        let removed = match (unknown_key(err.message()), value.get_mut()) {
            (Some(key), DeValue::Table(table)) => table.remove(key).is_some(),
            _ => false,
        };
        if !removed {
            return None;
        }
    }
    None
}

/// The key named by serde's "unknown field `KEY`" message.
fn unknown_key(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split_once('`').map(|(key, _)| key)
}

/// `PATH.KEY: message`, with serde's "field" said as "key".
fn describe(
    value: &Spanned<DeValue<'_>>,
    path: &str,
    err: &toml::de::Error,
    span: &Range<usize>,
) -> String {
    let message = err
        .message()
        .replacen("unknown field", "unknown key", 1)
        .replacen("missing field", "missing key", 1);
    let mut full = path.to_string();
    if unknown_key(err.message()).is_none() {
        let _ = spans::key_path_at(value, span, &mut full);
    }
    if full.is_empty() {
        message
    } else {
        format!("{full}: {message}")
    }
}

/// A named-table section (`[database]`, `[integration.slack]`): its entries,
/// or an error when it is not a table.
pub(crate) fn named_entries<'i>(
    ctx: &FileCtx,
    value: Spanned<DeValue<'i>>,
    path: &str,
    errors: &mut Vec<ConfigError>,
) -> Vec<(SpStr, Spanned<DeValue<'i>>)> {
    let span = value.span();
    match value.into_inner() {
        DeValue::Table(table) => table
            .into_iter()
            .map(|(k, v)| (Spanned::new(k.span(), k.into_inner().into_owned()), v))
            .collect(),
        other => {
            errors.push(ctx.error(
                &span,
                format!("{path}: expected a table, found {}", other.type_str()),
            ));
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use toml::de::DeTable;

    fn section(text: &str, key: &str) -> (FileCtx, Spanned<DeValue<'static>>) {
        let text: &'static str = Box::leak(text.to_string().into_boxed_str());
        let mut doc = DeTable::parse(text).unwrap().into_inner();
        let value = doc.remove(key).unwrap();
        (FileCtx::new(Path::new("config/a.toml"), text), value)
    }

    #[test]
    fn every_unknown_key_is_reported_at_its_line() {
        let (ctx, value) = section("[state]\nurl = 'x'\nfoo = 1\nbar = 2\n", "state");
        let mut errors = Vec::new();
        let got: Option<RawState> = deserialize(&ctx, value, "state", &mut errors);
        assert!(got.is_none());
        let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            shown,
            [
                "config/a.toml:4: state: unknown key `bar`, expected `url`",
                "config/a.toml:3: state: unknown key `foo`, expected `url`",
            ]
        );
    }

    #[test]
    fn type_errors_name_the_key() {
        let (ctx, value) = section(
            "[database]\nurl = 'x'\nmax_connections = 'many'\n",
            "database",
        );
        let mut errors = Vec::new();
        let got: Option<RawDatabase> = deserialize(&ctx, value, "database.x", &mut errors);
        assert!(got.is_none());
        assert_eq!(
            errors[0].to_string(),
            "config/a.toml:3: database.x.max_connections: invalid type: string \"many\", expected usize"
        );
    }

    #[test]
    fn missing_keys_point_at_the_header() {
        let (ctx, value) = section("\n[database]\nmax_connections = 2\n", "database");
        let mut errors = Vec::new();
        let got: Option<RawDatabase> = deserialize(&ctx, value, "database.x", &mut errors);
        assert!(got.is_none());
        assert_eq!(
            errors[0].to_string(),
            "config/a.toml:2: database.x: missing key `url`"
        );
    }
}
