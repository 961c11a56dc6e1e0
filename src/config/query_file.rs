//! `queries/NAME.sql`: a plain SQL file with `-- key: value` settings at the
//! top (interface.md section 2).
//!
//! The front matter is the leading run of blank lines and `--` comment lines;
//! the first other line starts the SQL. A comment `-- key: value`, where `key`
//! is `[A-Za-z_][A-Za-z0-9_]*` followed directly by `:` and then a space or
//! the end of the line, is a setting; other comments are free text (so
//! `-- see https://…` is not mistaken for a setting).

use std::collections::BTreeMap;

use super::env::{self, Lookup};
use super::spans::FileCtx;
use super::{ConfigError, FirstRun, Severity};
use crate::schedule::Schedule;

/// The settings a query file may have.
const KEYS: [&str; 10] = [
    "title",
    "database",
    "schedule",
    "primary_key",
    "ignore_columns",
    "remediation",
    "notify",
    "on_first_run",
    "severity",
    "enabled",
];

/// A `-- key: value` line as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawSetting {
    /// The key.
    pub key: String,
    /// The value, trimmed.
    pub value: String,
    /// 1-based line.
    pub line: usize,
}

/// The front matter of a query file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FrontMatter {
    /// The settings, in file order.
    pub settings: Vec<RawSetting>,
    /// The 1-based line where the SQL starts, `None` when there is none.
    pub body_line: Option<usize>,
    /// The line after the front matter.
    pub end_line: usize,
}

/// A name with the line that set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Setting {
    /// The value.
    pub value: String,
    /// 1-based line.
    pub line: usize,
}

/// A query file's settings, checked one by one (references are checked later).
#[derive(Debug, Clone)]
pub(crate) struct QueryFile {
    /// `title`.
    pub title: Option<String>,
    /// `database`.
    pub database: Option<Setting>,
    /// `schedule`.
    pub schedule: Option<Schedule>,
    /// `primary_key`.
    pub primary_key: Vec<String>,
    /// `ignore_columns`.
    pub ignore_columns: Vec<String>,
    /// `remediation`.
    pub remediation: Option<Setting>,
    /// `notify`.
    pub notify: Option<Setting>,
    /// `on_first_run`.
    pub on_first_run: FirstRun,
    /// `severity`.
    pub severity: Severity,
    /// `enabled`.
    pub enabled: bool,
}

/// Splits off the front matter of `text`.
pub(crate) fn front_matter(text: &str) -> FrontMatter {
    let mut settings = Vec::new();
    let mut end_line = 1;
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        let comment = match trimmed.strip_prefix("--") {
            Some(comment) => comment,
            None if trimmed.is_empty() => {
                end_line = index + 2;
                continue;
            }
            None => {
                return FrontMatter {
                    settings,
                    body_line: Some(index + 1),
                    end_line: index + 1,
                };
            }
        };
        end_line = index + 2;
        if let Some((key, value)) = setting(comment) {
            settings.push(RawSetting {
                key: key.to_string(),
                value: value.trim().to_string(),
                line: index + 1,
            });
        }
    }
    FrontMatter {
        settings,
        body_line: None,
        end_line,
    }
}

/// `key: value` in a comment's text, when it is a setting.
fn setting(comment: &str) -> Option<(&str, &str)> {
    let (key, value) = comment.trim_start().split_once(':')?;
    let value_ok = value.is_empty() || value.starts_with(char::is_whitespace);
    (env::is_identifier(key) && value_ok).then_some((key, value))
}

/// Parses the settings of a query file; every problem is reported.
pub(crate) fn parse(
    ctx: &FileCtx,
    text: &str,
    lookup: Lookup<'_>,
) -> (QueryFile, Vec<ConfigError>) {
    let matter = front_matter(text);
    let mut errors = Vec::new();
    if matter.body_line.is_none() {
        errors.push(ctx.error_at_line(matter.end_line, "no SQL after the settings"));
    }
    let settings = collect(ctx, matter.settings, lookup, &mut errors);
    let file = build(ctx, &settings, &mut errors);
    (file, errors)
}

/// Known, unique, interpolated settings by key.
fn collect(
    ctx: &FileCtx,
    settings: Vec<RawSetting>,
    lookup: Lookup<'_>,
    errors: &mut Vec<ConfigError>,
) -> BTreeMap<String, Setting> {
    let mut out: BTreeMap<String, Setting> = BTreeMap::new();
    for s in settings {
        if !KEYS.contains(&s.key.as_str()) {
            let message = format!(
                "unknown setting {:?}; expected one of: {}",
                s.key,
                KEYS.join(", ")
            );
            errors.push(ctx.error_at_line(s.line, message));
        } else if let Some(first) = out.get(&s.key) {
            let message = format!(
                "duplicate setting {:?} (first set on line {})",
                s.key, first.line
            );
            errors.push(ctx.error_at_line(s.line, message));
        } else if s.value.is_empty() {
            errors.push(ctx.error_at_line(s.line, format!("{}: empty value", s.key)));
        } else {
            match env::interpolate(&s.value, lookup) {
                Ok(value) => {
                    out.insert(
                        s.key,
                        Setting {
                            value,
                            line: s.line,
                        },
                    );
                }
                Err(e) => errors.push(ctx.error_at_line(s.line, format!("{}: {e}", s.key))),
            }
        }
    }
    out
}

/// Typed settings, with defaults.
fn build(ctx: &FileCtx, s: &BTreeMap<String, Setting>, errors: &mut Vec<ConfigError>) -> QueryFile {
    let mut check = |result: Result<(), (usize, String)>| {
        if let Err((line, message)) = result {
            errors.push(ctx.error_at_line(line, message));
        }
    };
    let mut file = QueryFile {
        title: s.get("title").map(|t| t.value.clone()),
        database: s.get("database").cloned(),
        schedule: None,
        primary_key: Vec::new(),
        ignore_columns: Vec::new(),
        remediation: s.get("remediation").cloned(),
        notify: s.get("notify").cloned(),
        on_first_run: FirstRun::Insert,
        severity: Severity::Medium,
        enabled: true,
    };
    if let Some(v) = s.get("schedule") {
        check(
            v.value
                .parse()
                .map(|x| file.schedule = Some(x))
                .map_err(|e| (v.line, format!("{e}"))),
        );
    }
    match s.get("primary_key") {
        Some(v) => check(columns("primary_key", v).map(|c| file.primary_key = c)),
        None => check(Err((
            1,
            "missing required setting `-- primary_key: COLUMN[, COLUMN…]`".into(),
        ))),
    }
    if let Some(v) = s.get("ignore_columns") {
        check(columns("ignore_columns", v).map(|c| file.ignore_columns = c));
        if let Some(col) = file
            .ignore_columns
            .iter()
            .find(|c| file.primary_key.contains(c))
        {
            let message =
                format!("ignore_columns: {col:?} is part of the primary key and cannot be ignored");
            check(Err((v.line, message)));
        }
    }
    if let Some(v) = s.get("on_first_run") {
        check(first_run(v).map(|x| file.on_first_run = x));
    }
    if let Some(v) = s.get("severity") {
        check(severity(v).map(|x| file.severity = x));
    }
    if let Some(v) = s.get("enabled") {
        check(enabled(v).map(|x| file.enabled = x));
    }
    file
}

/// A comma-separated, non-empty list of column names.
fn columns(key: &str, v: &Setting) -> Result<Vec<String>, (usize, String)> {
    let cols: Vec<String> = v.value.split(',').map(|c| c.trim().to_string()).collect();
    if cols.iter().any(String::is_empty) {
        return Err((v.line, format!("{key}: empty column name in {:?}", v.value)));
    }
    Ok(cols)
}

/// `insert` or `baseline`.
fn first_run(v: &Setting) -> Result<FirstRun, (usize, String)> {
    match v.value.as_str() {
        "insert" => Ok(FirstRun::Insert),
        "baseline" => Ok(FirstRun::Baseline),
        other => Err((
            v.line,
            format!("on_first_run: unknown value {other:?}; expected insert or baseline"),
        )),
    }
}

/// `low`, `medium`, `high` or `critical`.
fn severity(v: &Setting) -> Result<Severity, (usize, String)> {
    Severity::parse(&v.value).ok_or_else(|| {
        let message = format!(
            "severity: unknown value {:?}; expected low, medium, high or critical",
            v.value
        );
        (v.line, message)
    })
}

/// `true` or `false`.
fn enabled(v: &Setting) -> Result<bool, (usize, String)> {
    match v.value.as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err((
            v.line,
            format!("enabled: unknown value {other:?}; expected true or false"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn errors_of(text: &str) -> Vec<String> {
        let ctx = FileCtx::new(Path::new("queries/q.sql"), text);
        parse(&ctx, text, &no_env)
            .1
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn front_matter_ends_at_the_first_sql_line() {
        let text = "\n-- title: T\n-- free text, no setting\n-- see https://x.y\n--primary_key: a, b\n\nselect 1\n-- later: ignored\n";
        let m = front_matter(text);
        let keys: Vec<(&str, &str, usize)> = m
            .settings
            .iter()
            .map(|s| (s.key.as_str(), s.value.as_str(), s.line))
            .collect();
        assert_eq!(keys, [("title", "T", 2), ("primary_key", "a, b", 5)]);
        assert_eq!(m.body_line, Some(7));
    }

    #[test]
    fn values_keep_inner_colons() {
        let m = front_matter("-- title: a: b\nselect 1");
        assert_eq!(m.settings[0].value, "a: b");
    }

    #[test]
    fn settings_are_typed_with_defaults() {
        let text =
            "-- primary_key: id , region\n-- ignore_columns: age\n-- schedule: 15m\nselect 1";
        let ctx = FileCtx::new(Path::new("queries/q.sql"), text);
        let (q, errors) = parse(&ctx, text, &no_env);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(q.primary_key, ["id", "region"]);
        assert_eq!(q.ignore_columns, ["age"]);
        assert_eq!(q.severity, Severity::Medium);
        assert_eq!(q.on_first_run, FirstRun::Insert);
        assert!(q.enabled);
        assert!(q.schedule.is_some());
        assert_eq!(q.database, None);
    }

    #[test]
    fn bad_settings_report_their_lines() {
        let text = "-- primary_key: id\n-- severity: urgent\n-- tilte: x\n-- primary_key: id\n-- enabled: yes\nselect 1";
        assert_eq!(
            errors_of(text),
            [
                "queries/q.sql:3: unknown setting \"tilte\"; expected one of: title, database, schedule, primary_key, ignore_columns, remediation, notify, on_first_run, severity, enabled",
                "queries/q.sql:4: duplicate setting \"primary_key\" (first set on line 1)",
                "queries/q.sql:2: severity: unknown value \"urgent\"; expected low, medium, high or critical",
                "queries/q.sql:5: enabled: unknown value \"yes\"; expected true or false",
            ]
        );
    }

    #[test]
    fn primary_key_is_required_and_not_ignorable() {
        assert_eq!(
            errors_of("select 1"),
            ["queries/q.sql:1: missing required setting `-- primary_key: COLUMN[, COLUMN…]`"]
        );
        assert_eq!(
            errors_of("-- primary_key: a,,b\nselect 1"),
            ["queries/q.sql:1: primary_key: empty column name in \"a,,b\""]
        );
        assert_eq!(
            errors_of("-- primary_key: a, b\n-- ignore_columns: b\nselect 1"),
            [
                "queries/q.sql:2: ignore_columns: \"b\" is part of the primary key and cannot be ignored"
            ]
        );
    }

    #[test]
    fn empty_body_is_an_error() {
        assert_eq!(
            errors_of("-- primary_key: a\n\n"),
            ["queries/q.sql:3: no SQL after the settings"]
        );
    }

    #[test]
    fn values_are_interpolated_and_unset_names_the_key() {
        let env = |name: &str| (name == "DB").then(|| "steampipe".to_string());
        let text = "-- primary_key: a\n-- database: ${DB}\n-- remediation: ${NOPE}\nselect '${NOT_IN_SQL}'";
        let ctx = FileCtx::new(Path::new("queries/q.sql"), text);
        let (_, errors) = parse(&ctx, text, &env);
        let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            shown,
            ["queries/q.sql:3: remediation: environment variable NOPE is not set"]
        );
        let text = "-- primary_key: a\n-- database: ${DB}\nselect '${NOT_IN_SQL}'";
        let (q, errors) = parse(&ctx, text, &env);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            q.database,
            Some(Setting {
                value: "steampipe".into(),
                line: 2
            })
        );
    }

    #[test]
    fn bad_schedules_report_their_line() {
        let errors = errors_of("-- primary_key: a\n-- schedule: 61 * * * *\nselect 1");
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("queries/q.sql:2: invalid schedule \"61 * * * *\""),
            "{errors:?}"
        );
    }
}
