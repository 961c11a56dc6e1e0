//! Reads a project directory into a validated [`Project`], reporting every
//! problem at once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::env::{self, Lookup};
use super::params::Catalog;
use super::query_file::{self, QueryFile};
use super::raw::SpStr;
use super::refs::{self, RefKind, Reference};
use super::sections::{self, ConfigSet};
use super::spans::{self, FileCtx};
use super::{
    ConfigError, ConfigErrors, DatabaseConfig, IntegrationConfig, Origin, Project, Query, Secret,
    StateConfig, StoreUrl, remediation,
};

/// Loads and validates the project in `dir`, reading `${VAR}`s from the
/// process environment and checking each `[[action]]` against `catalog`
/// (`&vigilo::action::REGISTRY`).
pub fn load(dir: &Path, catalog: &dyn Catalog) -> Result<Project, ConfigErrors> {
    load_with_env(dir, &env::process_env, catalog)
}

/// [`load`] with the environment given as a lookup function.
pub(crate) fn load_with_env(
    dir: &Path,
    lookup: Lookup<'_>,
    catalog: &dyn Catalog,
) -> Result<Project, ConfigErrors> {
    // Values of secret-named variables are remembered, to be redacted wherever text leaves.
    let env_secrets = std::cell::RefCell::new(Vec::new());
    let recording = |name: &str| {
        let value = lookup(name);
        if let Some(v) = value
            .as_ref()
            .filter(|_| crate::redact::is_secret_name(name))
        {
            env_secrets.borrow_mut().push(Secret::new(v.clone()));
        }
        value
    };
    let lookup: Lookup<'_> = &recording;
    if !dir.is_dir() {
        let error = spans::file_error(dir, "project directory not found");
        return Err(ConfigErrors(vec![error]));
    }
    let mut errs = Errors::default();
    let mut set = ConfigSet::default();
    for file in project_files(dir, "config", "toml", &mut errs.other) {
        let ctx = FileCtx::new(&file.rel, &file.text);
        let root = parse_toml(&ctx, &file.text, lookup, &mut errs);
        sections::merge_file(&ctx, dir, root, &mut set, &mut errs.other);
    }
    let mut refs = std::mem::take(&mut set.refs);
    let targets = std::mem::take(&mut set.targets);
    // Names defined, even where the definition itself is broken: a reference to
    // them is not a second error.
    let mut defined: BTreeSet<String> = std::mem::take(&mut set.defined).into_keys().collect();
    let mut project = empty_project(dir, set);
    load_remediations(
        (dir, catalog),
        lookup,
        &mut project,
        &mut refs,
        &mut defined,
        &mut errs,
    );
    load_queries(dir, lookup, &mut project, &mut refs, &defined, &mut errs);
    errs.other
        .extend(refs::check(&project, &refs, &targets, &defined));
    project.env_secrets = env_secrets.take();
    match errs.finish() {
        errors if errors.is_empty() => Ok(project),
        errors => Err(ConfigErrors(errors)),
    }
}

/// Errors gathered so far. TOML syntax and `${VAR}` errors are kept apart so
/// that the follow-on errors they cause can be dropped: other errors on a line
/// whose `${VAR}` failed, and other errors from the first syntax error of a
/// file on (the parser's recovery guesses there). A line gets at most one
/// syntax error.
#[derive(Debug, Default)]
struct Errors {
    syntax: Vec<ConfigError>,
    env: Vec<ConfigError>,
    other: Vec<ConfigError>,
}

impl Errors {
    /// All errors, sorted by file and line, without repeats and without other
    /// errors on a line whose `${VAR}` failed.
    fn finish(self) -> Vec<ConfigError> {
        let key = |o: &Origin| (o.file.clone(), o.line);
        let env_lines: BTreeSet<_> = self.env.iter().map(|e| key(&e.origin)).collect();
        let mut broken_from: BTreeMap<PathBuf, usize> = BTreeMap::new();
        for e in &self.syntax {
            let line = e.origin.line.unwrap_or(1);
            let first = broken_from.entry(e.origin.file.clone()).or_insert(line);
            *first = (*first).min(line);
        }
        let after_syntax_error = |o: &Origin| {
            broken_from
                .get(&o.file)
                .is_some_and(|first| o.line.unwrap_or(1) >= *first)
        };
        // The parser's recovery can report a line twice; its first guess is best.
        let mut syntax_lines = BTreeSet::new();
        let mut all: Vec<ConfigError> = self
            .syntax
            .into_iter()
            .filter(|e| syntax_lines.insert(key(&e.origin)))
            .collect();
        all.extend(
            self.env
                .into_iter()
                .filter(|e| !after_syntax_error(&e.origin)),
        );
        all.extend(
            self.other
                .into_iter()
                .filter(|e| !env_lines.contains(&key(&e.origin)) && !after_syntax_error(&e.origin)),
        );
        all.sort_by_key(|e| key(&e.origin));
        let mut seen = BTreeSet::new();
        all.retain(|e| seen.insert((key(&e.origin), e.message.clone())));
        all
    }
}

/// One file of a project subdirectory.
struct ProjectFile {
    /// Relative to the project directory.
    rel: PathBuf,
    /// The file stem: a query's or remediation's name.
    stem: String,
    /// Its contents.
    text: String,
}

/// `dir/sub/*.ext`, sorted by file name; a missing `sub` is empty.
fn project_files(
    dir: &Path,
    sub: &str,
    ext: &str,
    errors: &mut Vec<ConfigError>,
) -> Vec<ProjectFile> {
    let entries = match std::fs::read_dir(dir.join(sub)) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            errors.push(spans::file_error(
                Path::new(sub),
                format!("cannot read directory: {e}"),
            ));
            return Vec::new();
        }
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| !t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.') && Path::new(n).extension().is_some_and(|x| x == ext))
        .collect();
    names.sort();
    names
        .into_iter()
        .filter_map(|name| read_project_file(dir, sub, &name, errors))
        .collect()
}

/// Reads one project file; an unreadable file is an error.
fn read_project_file(
    dir: &Path,
    sub: &str,
    name: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<ProjectFile> {
    let rel = Path::new(sub).join(name);
    let stem = Path::new(name).file_stem()?.to_string_lossy().into_owned();
    match std::fs::read_to_string(dir.join(&rel)) {
        Ok(text) => Some(ProjectFile { rel, stem, text }),
        Err(e) => {
            errors.push(spans::file_error(&rel, format!("cannot read file: {e}")));
            None
        }
    }
}

/// Parses a TOML file with every syntax error, and interpolates `${VAR}`s.
fn parse_toml<'i>(
    ctx: &FileCtx,
    text: &'i str,
    lookup: Lookup<'_>,
    errs: &mut Errors,
) -> Vec<(SpStr, Spanned<DeValue<'i>>)> {
    let (doc, syntax) = DeTable::parse_recoverable(text);
    for e in syntax {
        let span = e.span().unwrap_or(0..0);
        errs.syntax
            .push(ctx.error(&span, format!("invalid TOML: {}", e.message())));
    }
    let mut root = Spanned::new(doc.span(), DeValue::Table(doc.into_inner()));
    let mut env_errors = Vec::new();
    env::interpolate_tree(&mut root, "", lookup, &mut env_errors);
    errs.env.extend(
        env_errors
            .iter()
            .map(|(span, message)| ctx.error(span, message.clone())),
    );
    match root.into_inner() {
        DeValue::Table(table) => table
            .into_iter()
            .map(|(k, v)| (Spanned::new(k.span(), k.into_inner().into_owned()), v))
            .collect(),
        _ => Vec::new(),
    }
}

/// A project with the merged config and no queries or remediations yet.
fn empty_project(dir: &Path, set: ConfigSet) -> Project {
    let mut integrations = set.integrations;
    integrations.insert("console".into(), IntegrationConfig::Console);
    Project {
        dir: dir.to_path_buf(),
        state: set.state.unwrap_or_else(|| StateConfig {
            url: StoreUrl::Sqlite(dir.join("vigilo.db")),
        }),
        server: set.server,
        scheduler: set.scheduler.unwrap_or_default(),
        databases: set.databases,
        aws_connections: set.aws_connections,
        integrations,
        notifiers: set.notifiers,
        approvers: set.approvers,
        groups: set.groups,
        queries: Default::default(),
        remediations: Default::default(),
        env_secrets: Vec::new(),
    }
}

/// `remediations/*.toml`.
fn load_remediations(
    (dir, catalog): (&Path, &dyn Catalog),
    lookup: Lookup<'_>,
    project: &mut Project,
    refs: &mut Vec<Reference>,
    defined: &mut BTreeSet<String>,
    errs: &mut Errors,
) {
    for file in project_files(dir, "remediations", "toml", &mut errs.other) {
        defined.insert(refs::label(RefKind::Remediation, &file.stem));
        let ctx = FileCtx::new(&file.rel, &file.text);
        let root = parse_toml(&ctx, &file.text, lookup, errs);
        if let Some((remediation, more)) =
            remediation::parse((&ctx, catalog), &file.stem, root, &mut errs.other)
        {
            refs.extend(more);
            project.remediations.insert(file.stem, remediation);
        }
    }
}

/// `queries/*.sql`.
fn load_queries(
    dir: &Path,
    lookup: Lookup<'_>,
    project: &mut Project,
    refs: &mut Vec<Reference>,
    defined: &BTreeSet<String>,
    errs: &mut Errors,
) {
    let database_count = defined
        .iter()
        .filter(|l| l.starts_with("database "))
        .count();
    for file in project_files(dir, "queries", "sql", &mut errs.other) {
        let ctx = FileCtx::new(&file.rel, &file.text);
        // A file with a bad setting still has its references checked, so every error shows at once.
        let (parsed, errors) = query_file::parse(&ctx, &file.text, lookup);
        let clean = errors.is_empty();
        errs.other.extend(errors);
        let database = query_database(
            &ctx,
            &parsed,
            &project.databases,
            database_count,
            refs,
            &mut errs.other,
        );
        for (setting, kind) in [
            (&parsed.remediation, RefKind::Remediation),
            (&parsed.notify, RefKind::Notifier),
        ] {
            if let Some(setting) = setting {
                refs.push(Reference {
                    origin: ctx.origin_line(setting.line),
                    kind,
                    name: setting.value.clone(),
                });
            }
        }
        let Some(database) = database.filter(|_| clean) else {
            continue;
        };
        let query = build_query(file.stem.clone(), file.rel, file.text, database, parsed);
        project.queries.insert(file.stem, query);
    }
}

/// The database a query runs against: its `database` setting, or the only
/// configured database.
fn query_database(
    ctx: &FileCtx,
    parsed: &QueryFile,
    databases: &BTreeMap<String, DatabaseConfig>,
    defined_databases: usize,
    refs: &mut Vec<Reference>,
    errors: &mut Vec<ConfigError>,
) -> Option<String> {
    if let Some(setting) = &parsed.database {
        refs.push(Reference {
            origin: ctx.origin_line(setting.line),
            kind: RefKind::Database,
            name: setting.value.clone(),
        });
        return Some(setting.value.clone());
    }
    let mut names = databases.keys();
    match (names.next(), defined_databases) {
        (Some(only), 1) => Some(only.clone()),
        // The one database is defined but broken: its own error says so.
        (None, 1) => None,
        (None, _) => {
            let message =
                "no database to run against: add a [database.NAME] section to config/*.toml";
            errors.push(ctx.error_at_line(1, message));
            None
        }
        _ => {
            let list = refs::listing(databases.keys()).unwrap_or_default();
            let message = format!(
                "missing setting `-- database: NAME`, required when several databases are configured ({list})"
            );
            errors.push(ctx.error_at_line(1, message));
            None
        }
    }
}

/// The validated query.
fn build_query(
    name: String,
    path: PathBuf,
    sql: String,
    database: String,
    parsed: QueryFile,
) -> Query {
    Query {
        title: parsed.title.unwrap_or_else(|| name.clone()),
        name,
        database,
        schedule: parsed.schedule,
        primary_key: parsed.primary_key,
        ignore_columns: parsed.ignore_columns,
        remediation: parsed.remediation.map(|s| s.value),
        notify: parsed.notify.map(|s| s.value),
        on_first_run: parsed.on_first_run,
        severity: parsed.severity,
        enabled: parsed.enabled,
        sql,
        path,
    }
}
