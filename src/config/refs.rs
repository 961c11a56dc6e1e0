//! Cross references between definitions, checked once everything is loaded.

use super::{ConfigError, IntegrationConfig, Origin, Project};
use std::collections::BTreeSet;

/// How many names an error lists before it stops.
const MAX_LISTED: usize = 10;

/// What a reference points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefKind {
    /// `[database.NAME]`.
    Database,
    /// `remediations/NAME.toml`.
    Remediation,
    /// `[notifier.NAME]`.
    Notifier,
    /// `[approver.NAME]`.
    Approver,
    /// `[approver.NAME]` or `[group.NAME]`.
    ApproverOrGroup,
    /// `[connection.aws.NAME]`.
    AwsConnection,
}

/// A name used somewhere that must be defined somewhere.
#[derive(Debug, Clone)]
pub(crate) struct Reference {
    /// Where the name is used.
    pub origin: Origin,
    /// What it must name.
    pub kind: RefKind,
    /// The name.
    pub name: String,
}

/// One entry of a notifier's `notify` list, checked against its integration.
#[derive(Debug, Clone)]
pub(crate) struct TargetCheck {
    /// The line of its `integration`.
    pub origin: Origin,
    /// `notifier.NAME.notify[I]`.
    pub path: String,
    /// `KIND.NAME` or `console`.
    pub integration: String,
    /// Whether `channel` is given.
    pub has_channel: bool,
    /// How many `to` addresses, when `to` is given.
    pub to: Option<usize>,
}

/// Every broken reference in `project`.
pub(crate) fn check(
    project: &Project,
    refs: &[Reference],
    targets: &[TargetCheck],
    defined: &BTreeSet<String>,
) -> Vec<ConfigError> {
    let mut errors: Vec<ConfigError> = refs
        .iter()
        .filter(|r| !is_defined(defined, r))
        .filter_map(|r| check_ref(project, r))
        .collect();
    for target in targets {
        errors.extend(check_target(project, target));
    }
    errors
}

/// The label a definition is recorded under (`database "x"`), as `sections` records it.
pub(crate) fn label(kind: RefKind, name: &str) -> String {
    let section = match kind {
        RefKind::Database => "database",
        RefKind::Remediation => "remediation",
        RefKind::Notifier => "notifier",
        RefKind::Approver | RefKind::ApproverOrGroup => "approver",
        RefKind::AwsConnection => return format!("connection {:?}", format!("aws.{name}")),
    };
    format!("{section} {name:?}")
}

/// Whether the referenced name is defined, even if its definition has errors of its own.
fn is_defined(defined: &BTreeSet<String>, r: &Reference) -> bool {
    defined.contains(&label(r.kind, &r.name))
        || (r.kind == RefKind::ApproverOrGroup && defined.contains(&format!("group {:?}", r.name)))
}

/// The error for one reference, if it is broken.
fn check_ref(project: &Project, r: &Reference) -> Option<ConfigError> {
    let exists = match r.kind {
        RefKind::Database => project.databases.contains_key(&r.name),
        RefKind::Remediation => project.remediations.contains_key(&r.name),
        RefKind::Notifier => project.notifiers.contains_key(&r.name),
        RefKind::Approver => project.approvers.contains_key(&r.name),
        RefKind::ApproverOrGroup => {
            project.approvers.contains_key(&r.name) || project.groups.contains_key(&r.name)
        }
        RefKind::AwsConnection => project.aws_connections.contains_key(&r.name),
    };
    if exists {
        return None;
    }
    let message = match r.kind {
        RefKind::Database => unknown("database", &r.name, project.databases.keys(), "databases"),
        RefKind::Remediation => unknown(
            "remediation",
            &r.name,
            project.remediations.keys(),
            "remediations",
        ),
        RefKind::Notifier => unknown("notifier", &r.name, project.notifiers.keys(), "notifiers"),
        RefKind::Approver => unknown("approver", &r.name, project.approvers.keys(), "approvers"),
        RefKind::AwsConnection => format!(
            "{}; add [connection.aws.{}] to config/ (vigilo never falls back to another account)",
            unknown(
                "AWS connection",
                &r.name,
                project.aws_connections.keys(),
                "AWS connections"
            ),
            r.name
        ),
        RefKind::ApproverOrGroup => format!(
            "unknown approver or group {:?} (approvers: {}; groups: {})",
            r.name,
            listing(project.approvers.keys()).unwrap_or_else(|| "none".into()),
            listing(project.groups.keys()).unwrap_or_else(|| "none".into()),
        ),
    };
    Some(ConfigError {
        origin: r.origin.clone(),
        message,
    })
}

/// `unknown WHAT "NAME" (configured WHATS: a, b)`.
pub(crate) fn unknown<'a>(
    what: &str,
    name: &str,
    existing: impl Iterator<Item = &'a String>,
    plural: &str,
) -> String {
    match listing(existing) {
        Some(list) => format!("unknown {what} {name:?} (configured {plural}: {list})"),
        None => format!("unknown {what} {name:?} (no {plural} are configured)"),
    }
}

/// `a, b, c` (cut short after [`MAX_LISTED`]), or `None` when empty.
pub(crate) fn listing<'a>(names: impl Iterator<Item = &'a String>) -> Option<String> {
    let names: Vec<&String> = names.collect();
    if names.is_empty() {
        return None;
    }
    let shown: Vec<&str> = names.iter().take(MAX_LISTED).map(|s| s.as_str()).collect();
    let mut text = shown.join(", ");
    if names.len() > MAX_LISTED {
        text.push_str(&format!(" and {} more", names.len() - MAX_LISTED));
    }
    Some(text)
}

/// The errors of one notifier target.
fn check_target(project: &Project, t: &TargetCheck) -> Vec<ConfigError> {
    let error = |message: String| ConfigError {
        origin: t.origin.clone(),
        message: format!("{}: {message}", t.path),
    };
    let Some(integration) = project.integrations.get(&t.integration) else {
        let message = unknown(
            "integration",
            &t.integration,
            project.integrations.keys(),
            "integrations",
        );
        return vec![error(message)];
    };
    let kind = integration.kind();
    let mut errors = Vec::new();
    let is_slack = matches!(integration, IntegrationConfig::Slack(_));
    let is_email = matches!(integration, IntegrationConfig::Email(_));
    if is_slack && !t.has_channel {
        errors.push(error(format!(
            "{} is a slack integration; give it a channel",
            t.integration
        )));
    }
    if !is_slack && t.has_channel {
        errors.push(error(format!(
            "channel only applies to slack integrations, not {kind}"
        )));
    }
    if is_email && t.to.unwrap_or(0) == 0 {
        errors.push(error(format!(
            "{} is an email integration; give it a non-empty `to` list",
            t.integration
        )));
    }
    if !is_email && t.to.is_some() {
        errors.push(error(format!(
            "to only applies to email integrations, not {kind}"
        )));
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_are_cut_short() {
        let few: Vec<String> = vec!["a".into(), "b".into()];
        assert_eq!(listing(few.iter()).as_deref(), Some("a, b"));
        let many: Vec<String> = (0..12).map(|i| format!("n{i:02}")).collect();
        let text = listing(many.iter()).unwrap();
        assert!(text.ends_with("n09 and 2 more"), "{text}");
        assert_eq!(listing(Vec::<String>::new().iter()), None);
    }

    #[test]
    fn unknown_names_list_what_exists() {
        let dbs: Vec<String> = vec!["inventory".into(), "steampipe".into()];
        assert_eq!(
            unknown("database", "nope", dbs.iter(), "databases"),
            "unknown database \"nope\" (configured databases: inventory, steampipe)"
        );
        assert_eq!(
            unknown("database", "nope", [].iter(), "databases"),
            "unknown database \"nope\" (no databases are configured)"
        );
    }
}
