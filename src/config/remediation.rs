//! `remediations/NAME.toml`: approvals, actions and messages (interface.md section 4).

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use toml::de::DeValue;

use super::ConfigError;
use super::params::{Catalog, Kind, Need, ParamValue, coerce};
use super::raw::{self, SpStr};
use super::refs::{RefKind, Reference};
use super::sections::parse_duration;
use super::spans::FileCtx;
use crate::approval::{Input, InputKind, VALUE_SEPARATOR};

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
    /// Options; default approve (primary) and deny (danger). For `text`, suggestions.
    pub options: Vec<ApprovalOption>,
    /// `type`, `placeholder`, `pattern` and the approval-wide `required`.
    pub input: Input,
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
    /// `accept_for`: choosing it accepts the risk for this long, as written (`30d`).
    pub accept_for: Option<String>,
}

impl Remediation {
    /// Whether an action or message with `when` runs for a decision answering `values`
    /// (`None`: no approval, auto-remediation). A `when` runs when it is the chosen value or
    /// one of the chosen values; without `when`, an item runs without approval, and, for a
    /// `text` approval, on any answer.
    pub fn runs_for(&self, when: Option<&str>, values: Option<&[String]>) -> bool {
        match (when, values) {
            (None, None) => true,
            (Some(_), None) => false,
            (Some(w), Some(values)) => values.iter().any(|v| v == w),
            (None, Some(_)) => self
                .approval
                .as_ref()
                .is_some_and(|a| a.input.kind == InputKind::Text),
        }
    }
}

/// `[[action]]`.
#[derive(Debug, Clone)]
pub struct Action {
    /// The option that triggers it; `None`: runs without approval.
    pub when: Option<String>,
    /// Its type (`aws.iam.update_access_key`, `http`, …), a type of the [`super::params::Catalog`] it was loaded with.
    pub kind: String,
    /// Its parameters as written, checked against the type's (strings are templates).
    pub params: BTreeMap<String, ParamValue>,
}

impl Action {
    /// A string parameter as written (a template), if given.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.params.get(name).and_then(ParamValue::as_text)
    }
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

// ---------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------

/// The keys a remediation file may have at its top level.
const TOP_KEYS: &str = "title, recheck, dry_run, approval, action, message";
/// `[approval]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApproval {
    notifier: SpStr,
    subject: Option<String>,
    prompt: Option<String>,
    approvers: Spanned<Vec<SpStr>>,
    allow_self_approval: Option<bool>,
    timeout: Option<SpStr>,
    on_timeout: Option<SpStr>,
    options: Option<Spanned<Vec<Spanned<RawOption>>>>,
    #[serde(rename = "type")]
    kind: Option<SpStr>,
    placeholder: Option<SpStr>,
    pattern: Option<SpStr>,
    required: Option<Spanned<u32>>,
}

/// One entry of `options = [...]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOption {
    value: SpStr,
    label: Option<String>,
    style: Option<SpStr>,
    required: Option<Spanned<u32>>,
    accept_for: Option<SpStr>,
}

/// `[[message]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMessage {
    when: Option<SpStr>,
    notifier: SpStr,
    text: String,
}

/// An action's type and its parameters as written.
type TypedParams = (String, BTreeMap<String, ParamValue>);

/// A remediation whose sections parsed, before `when` is checked.
struct Parts {
    title: Option<String>,
    recheck: Option<bool>,
    dry_run: Option<bool>,
    /// `None` inside: `[approval]` was there but broken.
    approval: Option<Option<ApprovalConfig>>,
    /// The approval's options and input type, when `[approval]` could be read (even if broken).
    options: Option<(Vec<ApprovalOption>, InputKind)>,
    actions: Vec<(Range<usize>, Option<SpStr>, TypedParams)>,
    messages: Vec<(Range<usize>, RawMessage)>,
}

/// Parses one remediation file's (interpolated) top-level entries.
///
/// Returns the remediation and the names it references; every problem is
/// pushed to `errors`, and `None` returned when there was any.
/// Keys of an `[[action]]` that are settings, not templates.
const ACTION_SETTINGS: [&str; 3] = ["when", "type", "method"];

/// Checks every template string: `approval.subject` and `.prompt`, every
/// `[[action]]` string but its settings (headers included), `[[message]] text`.
fn check_templates(
    ctx: &FileCtx,
    root: &[(SpStr, Spanned<DeValue<'_>>)],
    errors: &mut Vec<ConfigError>,
) {
    let mut check = |path: String, value: &Spanned<DeValue<'_>>| {
        let Some(source) = value.get_ref().as_str() else {
            return;
        };
        if let Err(e) = crate::template::check(source) {
            let line = ctx.line(value.span().start) + e.line.unwrap_or(1) - 1;
            errors.push(ConfigError {
                origin: ctx.origin_line(line),
                message: format!("{path}: {e}"),
            });
        }
    };
    for (key, value) in root {
        let items = value.get_ref().as_array().into_iter().flatten();
        match key.get_ref().as_str() {
            "approval" => {
                for field in ["subject", "prompt"] {
                    if let Some(v) = value.get_ref().get(field) {
                        check(format!("approval.{field}"), v);
                    }
                }
            }
            "action" => {
                for (i, action) in items.enumerate() {
                    let Some(table) = action.get_ref().as_table() else {
                        continue;
                    };
                    for (k, v) in table {
                        let k = k.get_ref().as_ref();
                        if let Some(entries) = v.get_ref().as_table() {
                            for (h, hv) in entries {
                                check(format!("action[{i}].{k}.{}", h.get_ref()), hv);
                            }
                        } else if !ACTION_SETTINGS.contains(&k) {
                            check(format!("action[{i}].{k}"), v);
                        }
                    }
                }
            }
            "message" => {
                for (i, message) in items.enumerate() {
                    if let Some(v) = message.get_ref().get("text") {
                        check(format!("message[{i}].text"), v);
                    }
                }
            }
            _ => {}
        }
    }
}

pub(crate) fn parse(
    (ctx, catalog): (&FileCtx, &dyn Catalog),
    name: &str,
    root: Vec<(SpStr, Spanned<DeValue<'_>>)>,
    errors: &mut Vec<ConfigError>,
) -> Option<(Remediation, Vec<Reference>)> {
    let before = errors.len();
    check_templates(ctx, &root, errors);
    let mut refs = Vec::new();
    let parts = parse_parts((ctx, catalog), root, &mut refs, errors);
    let (options, input_kind) = match (&parts.approval, &parts.options) {
        (Some(_), Some((options, kind))) => (Some(options.as_slice()), *kind),
        (Some(_), None) => return None,
        (None, _) => (None, InputKind::Button),
    };
    let actions = parts
        .actions
        .into_iter()
        .enumerate()
        .filter_map(|(i, (span, when, (kind, params)))| {
            let path = format!("action[{i}]");
            let when = check_when(ctx, (&path, &span), when, (options, input_kind), errors)?;
            Some(Action { when, kind, params })
        })
        .collect();
    let messages = parts
        .messages
        .into_iter()
        .enumerate()
        .filter_map(|(i, (span, m))| {
            refs.push(reference(ctx, &m.notifier, RefKind::Notifier));
            let path = format!("message[{i}]");
            let when = check_when(ctx, (&path, &span), m.when, (options, input_kind), errors)?;
            Some(MessageConfig {
                when,
                notifier: m.notifier.into_inner(),
                text: m.text,
            })
        })
        .collect();
    if errors.len() > before {
        return None;
    }
    let title = parts.title.unwrap_or_else(|| name.to_string());
    let approval = parts.approval.flatten().map(|mut a| {
        if a.subject.is_empty() {
            a.subject = title.clone();
        }
        a
    });
    let remediation = Remediation {
        name: name.to_string(),
        title,
        recheck: parts.recheck.unwrap_or(true),
        dry_run: parts.dry_run.unwrap_or(false),
        approval,
        actions,
        messages,
        path: ctx.rel.clone(),
    };
    Some((remediation, refs))
}

/// Each top-level key, parsed on its own so every problem is reported.
fn parse_parts(
    (ctx, catalog): (&FileCtx, &dyn Catalog),
    root: Vec<(SpStr, Spanned<DeValue<'_>>)>,
    refs: &mut Vec<Reference>,
    errors: &mut Vec<ConfigError>,
) -> Parts {
    let mut parts = Parts {
        title: None,
        recheck: None,
        dry_run: None,
        approval: None,
        options: None,
        actions: Vec::new(),
        messages: Vec::new(),
    };
    for (key, value) in root {
        match key.get_ref().as_str() {
            "title" => parts.title = raw::deserialize(ctx, value, "title", errors),
            "recheck" => parts.recheck = raw::deserialize(ctx, value, "recheck", errors),
            "dry_run" => parts.dry_run = raw::deserialize(ctx, value, "dry_run", errors),
            "approval" => {
                let (approval, options) = approval(ctx, value, refs, errors);
                parts.approval = Some(approval);
                parts.options = options;
            }
            "action" => {
                for (i, item) in array_of_tables(ctx, value, "action", errors)
                    .into_iter()
                    .enumerate()
                {
                    let span = item.span();
                    let parsed =
                        action((ctx, catalog), item, &format!("action[{i}]"), refs, errors);
                    parts
                        .actions
                        .extend(parsed.map(|(when, kind)| (span, when, kind)));
                }
            }
            "message" => {
                for (i, item) in array_of_tables(ctx, value, "message", errors)
                    .into_iter()
                    .enumerate()
                {
                    let path = format!("message[{i}]");
                    let span = item.span();
                    let parsed = raw::deserialize::<RawMessage>(ctx, item, &path, errors);
                    parts.messages.extend(parsed.map(|m| (span, m)));
                }
            }
            other => errors.push(ctx.error(
                &key.span(),
                format!("unknown key {other:?}; expected one of: {TOP_KEYS}"),
            )),
        }
    }
    parts
}

/// A reference from this file.
fn reference(ctx: &FileCtx, name: &SpStr, kind: RefKind) -> Reference {
    Reference {
        origin: ctx.origin(&name.span()),
        kind,
        name: name.get_ref().clone(),
    }
}

/// The items of `[[KEY]]`.
fn array_of_tables<'i>(
    ctx: &FileCtx,
    value: Spanned<DeValue<'i>>,
    key: &str,
    errors: &mut Vec<ConfigError>,
) -> Vec<Spanned<DeValue<'i>>> {
    let span = value.span();
    match value.into_inner() {
        DeValue::Array(items) => items.iter().cloned().collect(),
        other => {
            let message = format!(
                "{key}: expected [[{key}]] tables, found {}",
                other.type_str()
            );
            errors.push(ctx.error(&span, message));
            Vec::new()
        }
    }
}

/// `[approval]`, and its options (given whenever they could be read).
fn approval(
    ctx: &FileCtx,
    value: Spanned<DeValue<'_>>,
    refs: &mut Vec<Reference>,
    errors: &mut Vec<ConfigError>,
) -> (
    Option<ApprovalConfig>,
    Option<(Vec<ApprovalOption>, InputKind)>,
) {
    let Some(raw) = raw::deserialize::<RawApproval>(ctx, value, "approval", errors) else {
        return (None, None);
    };
    let before = errors.len();
    refs.push(reference(ctx, &raw.notifier, RefKind::Notifier));
    if raw.approvers.get_ref().is_empty() {
        let message = "approval.approvers: name at least one approver or group";
        errors.push(ctx.error(&raw.approvers.span(), message));
    }
    for approver in raw.approvers.get_ref() {
        refs.push(reference(ctx, approver, RefKind::ApproverOrGroup));
    }
    let timeout = raw.timeout.as_ref().and_then(|t| {
        parse_duration(t.get_ref())
            .map_err(|e| errors.push(ctx.error(&t.span(), format!("approval.timeout: {e}"))))
            .ok()
    });
    let input = approval_input(ctx, &raw, errors);
    let options = match raw.options {
        None if input.kind == InputKind::Text => Vec::new(),
        None => default_options(),
        Some(options) => approval_options(ctx, options, input.kind, errors),
    };
    if let Some(on_timeout) = &raw.on_timeout {
        let path = "approval.on_timeout";
        check_option(ctx, path, on_timeout, &options, errors);
    }
    if errors.len() > before {
        return (None, Some((options, input.kind)));
    }
    let config = ApprovalConfig {
        notifier: raw.notifier.into_inner(),
        subject: raw.subject.unwrap_or_default(),
        prompt: raw.prompt.unwrap_or_default(),
        approvers: raw
            .approvers
            .into_inner()
            .into_iter()
            .map(Spanned::into_inner)
            .collect(),
        allow_self_approval: raw.allow_self_approval.unwrap_or(false),
        timeout,
        on_timeout: raw.on_timeout.map(Spanned::into_inner),
        options: options.clone(),
        input,
    };
    let kind = config.input.kind;
    (Some(config), Some((options, kind)))
}

/// `approve` (primary) and `deny` (danger), one vote each.
pub(crate) fn default_options() -> Vec<ApprovalOption> {
    let option = |value: &str, label: &str, style: &str| ApprovalOption {
        value: value.into(),
        label: label.into(),
        style: Some(style.into()),
        required: 1,
        accept_for: None,
    };
    vec![
        option("approve", "Approve", "primary"),
        option("deny", "Deny", "danger"),
    ]
}

/// `options = [...]`, checked.
fn approval_options(
    ctx: &FileCtx,
    options: Spanned<Vec<Spanned<RawOption>>>,
    kind: InputKind,
    errors: &mut Vec<ConfigError>,
) -> Vec<ApprovalOption> {
    if options.get_ref().is_empty() {
        errors.push(ctx.error(
            &options.span(),
            "approval.options: give at least one option",
        ));
    }
    let mut out: Vec<ApprovalOption> = Vec::new();
    for (i, option) in options.into_inner().into_iter().enumerate() {
        let path = format!("approval.options[{i}]");
        let raw = option.into_inner();
        let value = raw.value.get_ref().trim().to_string();
        if value.is_empty() {
            errors.push(ctx.error(
                &raw.value.span(),
                format!("{path}.value: must not be empty"),
            ));
        } else if out.iter().any(|o| o.value == value) {
            let message = format!("{path}.value: duplicate option {value:?}");
            errors.push(ctx.error(&raw.value.span(), message));
        }
        if let Some(style) = raw
            .style
            .as_ref()
            .filter(|s| !matches!(s.get_ref().as_str(), "primary" | "danger"))
        {
            let message = format!(
                "{path}.style: unknown style {:?}; expected primary or danger",
                style.get_ref()
            );
            errors.push(ctx.error(&style.span(), message));
        }
        if let Some(required) = raw.required.as_ref().filter(|r| *r.get_ref() < 1) {
            errors.push(ctx.error(
                &required.span(),
                format!("{path}.required: must be at least 1"),
            ));
        }
        check_option_for_kind(ctx, &path, &raw, &value, kind, errors);
        out.push(ApprovalOption {
            label: raw.label.unwrap_or_else(|| value.clone()),
            value,
            style: raw.style.map(Spanned::into_inner),
            required: raw.required.map_or(1, Spanned::into_inner),
            accept_for: raw.accept_for.map(Spanned::into_inner),
        });
    }
    out
}

/// `type`, `placeholder`, `pattern` and `required` of `[approval]`, checked together.
fn approval_input(ctx: &FileCtx, raw: &RawApproval, errors: &mut Vec<ConfigError>) -> Input {
    let kind = match &raw.kind {
        None => InputKind::Button,
        Some(k) => InputKind::parse(k.get_ref()).unwrap_or_else(|| {
            let message = format!(
                "approval.type: unknown type {:?}; expected button, select, multiselect or text",
                k.get_ref()
            );
            errors.push(ctx.error(&k.span(), message));
            InputKind::Button
        }),
    };
    if let Some(pattern) = &raw.pattern {
        if kind != InputKind::Text {
            let message = format!(
                "approval.pattern: only a text input has a pattern (this approval's type is {})",
                kind.as_str()
            );
            errors.push(ctx.error(&pattern.span(), message));
        } else if let Err(e) = regex::Regex::new(pattern.get_ref()) {
            // regex's message spans several lines with a caret; its last line says what is wrong.
            let why = e.to_string();
            let why = why.lines().last().unwrap_or("invalid").trim().to_string();
            let message = format!(
                "approval.pattern: {:?} is not a valid regular expression: {why}",
                pattern.get_ref()
            );
            errors.push(ctx.error(&pattern.span(), message));
        }
    }
    if let Some(placeholder) = raw
        .placeholder
        .as_ref()
        .filter(|_| kind == InputKind::Button)
    {
        let message = "approval.placeholder: buttons have no placeholder; it applies to select, multiselect and text";
        errors.push(ctx.error(&placeholder.span(), message));
    }
    if let Some(required) = &raw.required {
        if !matches!(kind, InputKind::Text | InputKind::Multiselect) {
            let message = format!(
                "approval.required: applies to text and multiselect inputs; for {} set `required` on each option",
                kind.as_str()
            );
            errors.push(ctx.error(&required.span(), message));
        } else if *required.get_ref() < 1 {
            errors.push(ctx.error(&required.span(), "approval.required: must be at least 1"));
        }
    }
    Input {
        kind,
        placeholder: raw.placeholder.as_ref().map(|p| p.get_ref().clone()),
        pattern: raw.pattern.as_ref().map(|p| p.get_ref().clone()),
        required: raw.required.as_ref().map(|r| *r.get_ref()),
    }
}

/// What an option may carry for the approval's input type: a text input's options are only
/// suggestions; `accept_for` is a duration on a single choice; a multiselect's values may not
/// contain the separator of `approval.value`.
fn check_option_for_kind(
    ctx: &FileCtx,
    path: &str,
    raw: &RawOption,
    value: &str,
    kind: InputKind,
    errors: &mut Vec<ConfigError>,
) {
    if kind == InputKind::Text {
        let not_suggestion = [
            raw.style.as_ref().map(|s| ("style", s.span())),
            raw.required.as_ref().map(|r| ("required", r.span())),
            raw.accept_for.as_ref().map(|a| ("accept_for", a.span())),
        ];
        for (key, span) in not_suggestion.into_iter().flatten() {
            let message = format!(
                "{path}.{key}: the options of a text input are suggestions (value and label only); set `required` on [approval]"
            );
            errors.push(ctx.error(&span, message));
        }
        return;
    }
    if let Some(accept_for) = &raw.accept_for {
        if kind == InputKind::Multiselect {
            let message = format!(
                "{path}.accept_for: a multiselect answer is a set; accept_for applies to button and select options"
            );
            errors.push(ctx.error(&accept_for.span(), message));
        } else if let Err(e) = parse_duration(accept_for.get_ref()) {
            errors.push(ctx.error(&accept_for.span(), format!("{path}.accept_for: {e}")));
        }
    }
    if kind == InputKind::Multiselect && value.contains(VALUE_SEPARATOR.trim_end()) {
        let message = format!(
            "{path}.value: {value:?} contains a comma, which separates a multiselect's values in approval.value"
        );
        errors.push(ctx.error(&raw.value.span(), message));
    }
}

/// An error unless `name` is one of `options`.
fn check_option(
    ctx: &FileCtx,
    path: &str,
    name: &SpStr,
    options: &[ApprovalOption],
    errors: &mut Vec<ConfigError>,
) -> bool {
    if options.iter().any(|o| &o.value == name.get_ref()) {
        return true;
    }
    let valid = option_list(options);
    let message = format!(
        "{path}: unknown option {:?}; the options are: {valid}",
        name.get_ref()
    );
    errors.push(ctx.error(&name.span(), message));
    false
}

/// `a, b`: the distinct option values, in order.
fn option_list(options: &[ApprovalOption]) -> String {
    let mut values: Vec<&str> = Vec::new();
    for o in options {
        if !values.contains(&o.value.as_str()) {
            values.push(&o.value);
        }
    }
    values.join(", ")
}

/// Checks an action's or message's `when` against the approval's options.
fn check_when(
    ctx: &FileCtx,
    (path, item_span): (&str, &Range<usize>),
    when: Option<SpStr>,
    (options, kind): (Option<&[ApprovalOption]>, InputKind),
    errors: &mut Vec<ConfigError>,
) -> Option<Option<String>> {
    if options.is_some() && kind == InputKind::Text {
        // A text answer is free: `when` names one answer, and no `when` runs on any.
        return Some(when.map(Spanned::into_inner));
    }
    match (when, options) {
        (None, None) => Some(None),
        (Some(when), None) => {
            let message = format!(
                "{path}.when: {:?} names an approval option, but this remediation has no [approval]",
                when.get_ref()
            );
            errors.push(ctx.error(&when.span(), message));
            None
        }
        (Some(when), Some(options)) => {
            check_option(ctx, &format!("{path}.when"), &when, options, errors)
                .then(|| Some(when.into_inner()))
        }
        (None, Some(options)) => {
            let message = format!(
                "{path}: missing key `when`; this remediation has an [approval], so name the option that triggers it (one of: {})",
                option_list(options)
            );
            errors.push(ctx.error(item_span, message));
            None
        }
    }
}

/// One `[[action]]`: its `when`, its type and its parameters, checked by the type's
/// component: unknown and missing keys, kinds, and each literal value.
fn action(
    (ctx, catalog): (&FileCtx, &dyn Catalog),
    item: Spanned<DeValue<'_>>,
    path: &str,
    refs: &mut Vec<Reference>,
    errors: &mut Vec<ConfigError>,
) -> Option<(Option<SpStr>, TypedParams)> {
    let span = item.span();
    let Some(table) = item.get_ref().as_table() else {
        let found = item.get_ref().type_str();
        errors.push(ctx.error(&span, format!("{path}: expected a table, found {found}")));
        return None;
    };
    let type_value = table.get("type");
    let Some(kind) = type_value.and_then(|t| t.get_ref().as_str()) else {
        let types = catalog.names();
        errors.push(ctx.error(
            &span,
            format!("{path}: missing key `type` (one of: {types})"),
        ));
        return None;
    };
    let Some(ty_params) = catalog.params(kind) else {
        let span = type_value.map_or(span, |t| t.span());
        let message = format!(
            "{path}.type: unknown action type {kind:?}; expected one of: {}",
            catalog.names()
        );
        errors.push(ctx.error(&span, message));
        return None;
    };
    let before = errors.len();
    let expected: Vec<String> = ["when", "type"]
        .into_iter()
        .chain(ty_params.iter().map(|p| p.name))
        .map(|k| format!("`{k}`"))
        .collect();
    for (key, _) in table {
        let key_name: &str = key.get_ref();
        if key_name != "when" && key_name != "type" && !ty_params.iter().any(|p| p.name == key_name)
        {
            let message = format!(
                "{path}: unknown key `{key_name}` for action type {kind:?}, expected one of {}",
                expected.join(", ")
            );
            errors.push(ctx.error(&key.span(), message));
        }
    }
    if errors.len() > before {
        return None;
    }
    let when = match table.get("when") {
        None => None,
        Some(w) => Some(SpStr::new(
            w.span(),
            raw::deserialize(ctx, w.clone(), &format!("{path}.when"), errors)?,
        )),
    };
    let mut params = BTreeMap::new();
    for spec in ty_params {
        let key = format!("{path}.{}", spec.name);
        let Some(value) = table.get(spec.name) else {
            match spec.need {
                Need::Required => {
                    errors.push(ctx.error(&span, format!("{path}: missing key `{}`", spec.name)));
                }
                Need::Default(d) => {
                    if spec.name == "connection" {
                        refs.push(reference(
                            ctx,
                            &SpStr::new(span.clone(), d.into()),
                            RefKind::AwsConnection,
                        ));
                    }
                    params.insert(spec.name.to_string(), ParamValue::Text(d.into()));
                }
                Need::Optional => {}
            }
            continue;
        };
        if let Some(given) = param_value(
            (ctx, catalog, kind),
            spec.kind,
            (&key, spec.name),
            value,
            errors,
        ) {
            let literal = given.as_text().filter(|n| !n.contains("{{"));
            if let Some(name) = literal.filter(|_| spec.name == "connection") {
                refs.push(reference(
                    ctx,
                    &SpStr::new(value.span(), name.into()),
                    RefKind::AwsConnection,
                ));
            }
            params.insert(spec.name.to_string(), given);
        }
    }
    (errors.len() == before).then(|| (when, (kind.to_string(), params)))
}

/// One parameter's value, of its kind, with a literal checked (and normalized) by its type.
fn param_value(
    (ctx, catalog, type_name): (&FileCtx, &dyn Catalog, &str),
    kind: Kind,
    (key, name): (&str, &str),
    value: &Spanned<DeValue<'_>>,
    errors: &mut Vec<ConfigError>,
) -> Option<ParamValue> {
    let given = match (kind, value.get_ref()) {
        (Kind::Table, _) => ParamValue::Table(raw::deserialize(ctx, value.clone(), key, errors)?),
        (_, DeValue::String(s)) => ParamValue::Text(s.to_string()),
        (Kind::Bool, _) => ParamValue::Bool(raw::deserialize(ctx, value.clone(), key, errors)?),
        (Kind::Int, _) => ParamValue::Int(raw::deserialize(ctx, value.clone(), key, errors)?),
        (Kind::Text, _) => ParamValue::Text(raw::deserialize(ctx, value.clone(), key, errors)?),
    };
    let literal = match &given {
        ParamValue::Text(t) if t.contains("{{") => return Some(given),
        ParamValue::Text(t) => coerce(kind, t),
        ParamValue::Bool(b) => serde_json::Value::Bool(*b),
        ParamValue::Int(n) => serde_json::Value::from(*n),
        ParamValue::Table(_) => return Some(given),
    };
    let wrong_kind = match (kind, &literal) {
        (Kind::Bool, serde_json::Value::String(s)) => {
            Some(format!("must be true or false (or a template), not {s:?}"))
        }
        (Kind::Int, serde_json::Value::String(s)) => {
            Some(format!("must be an integer (or a template), not {s:?}"))
        }
        _ => None,
    };
    let checked = match wrong_kind {
        Some(e) => Err(e),
        None => catalog.check(type_name, name, &literal),
    };
    match checked {
        Err(e) => {
            errors.push(ctx.error(&value.span(), format!("{key}: {e}")));
            None
        }
        Ok(Some(serde_json::Value::String(normal))) if matches!(given, ParamValue::Text(_)) => {
            Some(ParamValue::Text(normal))
        }
        Ok(_) => Some(given),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use toml::de::DeTable;

    fn errors_of(text: &str) -> Vec<String> {
        let ctx = FileCtx::new(Path::new("remediations/r.toml"), text);
        let root = DeTable::parse(text).unwrap().into_inner();
        let root = root
            .into_iter()
            .map(|(k, v)| (Spanned::new(k.span(), k.into_inner().into_owned()), v))
            .collect();
        let mut errors = Vec::new();
        let parsed = parse((&ctx, &crate::action::REGISTRY), "r", root, &mut errors);
        assert_eq!(parsed.is_none(), !errors.is_empty());
        errors.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn literal_statuses_must_be_active_or_inactive() {
        let action = "[[action]]\ntype = \"aws.iam.update_access_key\"\nuser_name = \"u\"\naccess_key_id = \"k\"\n";
        assert_eq!(
            errors_of(&format!("{action}status = \"off\"\n")),
            [
                "remediations/r.toml:5: action[0].status: must be Active or Inactive (or a template), not \"off\""
            ]
        );
        assert!(errors_of(&format!("{action}status = \"{{{{ row.s }}}}\"\n")).is_empty());
        assert!(errors_of(&format!("{action}status = \"Active\"\n")).is_empty());
    }

    #[test]
    fn action_types_and_required_keys_are_checked() {
        assert_eq!(
            errors_of(
                "[[action]]\ntype = \"aws.s3.delete\"\n\n[[action]]\nurl = \"x\"\n\n[[action]]\ntype = \"http\"\n"
            ),
            [
                format!(
                    "remediations/r.toml:2: action[0].type: unknown action type \"aws.s3.delete\"; expected one of: {}",
                    crate::action::type_names()
                ),
                format!(
                    "remediations/r.toml:4: action[1]: missing key `type` (one of: {})",
                    crate::action::type_names()
                ),
                "remediations/r.toml:7: action[2]: missing key `url`".to_string(),
            ]
        );
    }

    #[test]
    fn unknown_top_level_keys_and_bad_methods_are_errors() {
        // In key order here; `load` sorts by line.
        assert_eq!(
            errors_of(
                "titel = \"x\"\n[[action]]\ntype = \"http\"\nurl = \"u\"\nmethod = \"fetch\"\n"
            ),
            [
                "remediations/r.toml:5: action[0].method: unsupported method \"fetch\"; expected one of: GET, POST, PUT, PATCH, DELETE",
                "remediations/r.toml:1: unknown key \"titel\"; expected one of: title, recheck, dry_run, approval, action, message",
            ]
        );
    }
}
