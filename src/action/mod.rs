//! Actions: the action types, rendering a remediation's `[[action]]`s for a decision, and
//! running one.
//!
//! Each action type is a component: one file implementing [`ActionType`] (its parameters,
//! how it checks them, describes its call, reads its target first, calls it, settles it after
//! a crash and undoes it) and one line in [`TYPES`]. `config` parses every `[[action]]` by
//! its type's [`Param`]s and checks; nothing else knows the types.
//!
//! Only this module (through [`crate::aws`] and its HTTP client) calls targets. The executor
//! in `remediate` first lets [`prepare`] read the target (already as wanted, or gone, means
//! nothing is called), marks the action started (committed, with what was read) before
//! calling [`execute`], and records the outcome after, so a crash in between leaves evidence
//! instead of a silent repeat. [`settle_started`] decides what such evidence means after a
//! restart: an AWS target is read again, an http target cannot be asked.
//!
//! # Layout
//! - `params`: parameter specs, values as written, rendered values read by type.
//! - `read_first`: the shape every typed AWS action shares (read, compare, write, settle by
//!   reading, undo with what was read); its types only say how to read and write.
//! - one file per family of types: `http`, `aws_api`, `iam_access_key`, `iam_login_profile`,
//!   `iam_user_policy`, `ec2_security_group`, `ec2_instance`, `s3_versioning`,
//!   `s3_public_access_block`, `s3_tagging`.

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::aws;
use crate::config::{AwsConnectionConfig, Remediation};
use crate::store::{ActionOutcome, ActionRecord, NewAction};
use crate::template;

mod aws_api;
mod ec2_instance;
mod ec2_security_group;
mod http;
mod iam_access_key;
mod iam_login_profile;
mod iam_user_policy;
pub mod params;
mod read_first;
mod s3_public_access_block;
mod s3_tagging;
mod s3_versioning;

pub use http::HTTP_TIMEOUT;
pub use iam_access_key::{CURRENT_STATUS, CURRENT_STATUS_AT, CURRENT_STATUS_FOR};
pub use params::{Kind, Need, Param, ParamValue, Params};
pub use read_first::Found;

use read_first::Typed;

/// Every action type, one line each.
static TYPES: &[&dyn ActionType] = &[
    &http::Http,
    &aws_api::AwsApi,
    &iam_access_key::UPDATE,
    &iam_access_key::DELETE,
    &Typed(iam_login_profile::DeleteLoginProfile),
    &Typed(iam_user_policy::DETACH),
    &Typed(iam_user_policy::ATTACH),
    &Typed(s3_versioning::PutBucketVersioning),
    &Typed(s3_public_access_block::PutPublicAccessBlock),
    &Typed(s3_public_access_block::DeletePublicAccessBlock),
    &Typed(s3_tagging::TagBucket),
    &Typed(ec2_security_group::REVOKE),
    &Typed(ec2_security_group::AUTHORIZE),
    &Typed(ec2_instance::STOP),
    &Typed(ec2_instance::START),
];

/// The type named `name`.
pub fn lookup(name: &str) -> Option<&'static dyn ActionType> {
    TYPES.iter().copied().find(|t| t.name() == name)
}

/// The names of every action type, comma-separated (for errors).
pub fn type_names() -> String {
    TYPES
        .iter()
        .map(|t| t.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The registry as loading sees it: what `config::load` checks each `[[action]]` against.
pub struct Registry;

/// The one registry of action types (`TYPES`), for `config::load`.
pub static REGISTRY: Registry = Registry;

impl crate::config::params::Catalog for Registry {
    fn params(&self, type_name: &str) -> Option<&'static [Param]> {
        lookup(type_name).map(|t| t.params())
    }

    fn check(&self, type_name: &str, param: &str, value: &Value) -> Result<Option<Value>, String> {
        lookup(type_name).map_or(Ok(None), |t| t.check(param, value))
    }

    fn names(&self) -> String {
        type_names()
    }
}

/// One action type: its parameters and how it runs.
#[async_trait::async_trait]
pub trait ActionType: Send + Sync {
    /// Its `type` in `[[action]]`.
    fn name(&self) -> &'static str;

    /// Its parameters (besides `when` and `type`), in the order they are listed in errors.
    fn params(&self) -> &'static [Param];

    /// Checks one parameter's value beyond its kind (a literal of the file, or rendered);
    /// `Ok(Some(v))` gives its normal form. The error is the message after `KEY: `.
    fn check(&self, _name: &str, _value: &Value) -> Result<Option<Value>, String> {
        Ok(None)
    }

    /// The exact call, in one line (what dry runs print and record).
    fn describe(
        &self,
        params: &Value,
        connections: &BTreeMap<String, AwsConnectionConfig>,
    ) -> String;

    /// Actions of the same group run one after another in a pass (sharing reads); `None`: alone.
    fn group(&self, _params: &Value) -> Option<String> {
        None
    }

    /// Reads the targets of several claimed actions of this type in fewer calls than one each,
    /// before any of them starts; what it finds (by action id) stands in for the action's own
    /// read in [`ActionType::prepare`]. Default: nothing, each action reads its own target.
    async fn read_ahead(
        &self,
        _targets: &Targets,
        _actions: &[&ActionRecord],
    ) -> Vec<(i64, Found)> {
        Vec::new()
    }

    /// Reads the target before the action starts: call it (with what was read, kept for
    /// settling and undo), or the outcome is already known.
    async fn prepare(
        &self,
        _targets: &Targets,
        _action: &ActionRecord,
        _pass: &mut Pass,
    ) -> Prepared {
        Prepared::Call(None)
    }

    /// Calls the target once (after [`ActionType::prepare`] said to, with what it read).
    async fn execute(
        &self,
        targets: &Targets,
        action: &ActionRecord,
        observed: Option<Value>,
    ) -> ActionOutcome;

    /// Notes what a finished action did, for later actions of the pass.
    fn note(&self, _pass: &mut Pass, _action: &ActionRecord, _outcome: &ActionOutcome) {}

    /// Settles an action left started by a process that is gone. Default: the target cannot
    /// be asked, so it is unknown, for a person to check and `vigilo retry`.
    async fn settle(&self, _targets: &Targets, action: &ActionRecord) -> Settlement {
        Settlement::Outcome(ActionOutcome::Unknown(format!(
            "vigilo stopped after starting this {} action (attempt {}); whether the target received it is unknown. \
             Check the target, then run `vigilo retry {}` if it did not happen",
            action.kind, action.attempts, action.id
        )))
    }

    /// The type and parameters of the action that reverses the succeeded `original`, or why
    /// it cannot be reversed.
    fn undo(&self, original: &ActionRecord) -> Result<(&'static str, Value), String> {
        Err(format!(
            "action {} is a {} action, which cannot be undone",
            original.id, original.kind
        ))
    }
}

/// What actions reach: an HTTP client and the AWS connections, each built once and reused.
pub struct Targets {
    /// For http actions, webhooks and chat APIs.
    pub http: reqwest::Client,
    /// `[connection.aws.NAME]`s.
    pub aws: aws::Connections,
    /// Their configs, for describing calls.
    pub aws_configs: BTreeMap<String, AwsConnectionConfig>,
}

impl Targets {
    /// The targets of a project's actions.
    pub fn new(http: reqwest::Client, aws: &BTreeMap<String, AwsConnectionConfig>) -> Targets {
        Targets {
            http,
            aws: aws::Connections::new(aws),
            aws_configs: aws.clone(),
        }
    }
}

/// What reading the target before an action found.
#[derive(Debug, Clone, PartialEq)]
pub enum Prepared {
    /// Call it; what was read is kept with the started action (for settling and undo).
    Call(Option<Value>),
    /// Nothing to call: the outcome is known already (no change needed, gone, or an error).
    Done(ActionOutcome),
}

/// How an action left `started` by a process that is gone is settled.
#[derive(Debug, Clone, PartialEq)]
pub enum Settlement {
    /// It ends so.
    Outcome(ActionOutcome),
    /// Reading the target showed the call did not take effect: it fails with this reason and runs again.
    Rerun(String),
}

/// What the actions of one pass share (reads of targets), each type keeping its own kind.
#[derive(Default)]
pub struct Pass {
    states: HashMap<TypeId, Box<dyn Any + Send>>,
    ahead: Arc<ReadAhead>,
}

/// What [`read_ahead`] read of a batch of claimed actions' targets, by action id.
#[derive(Debug, Default)]
pub struct ReadAhead {
    found: HashMap<i64, Found>,
}

impl ReadAhead {
    /// How many actions' targets were read ahead.
    pub fn len(&self) -> usize {
        self.found.len()
    }

    /// Whether none was.
    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }
}

impl Pass {
    /// A pass whose actions take what was read ahead of them.
    pub fn with(ahead: Arc<ReadAhead>) -> Pass {
        Pass {
            states: HashMap::new(),
            ahead,
        }
    }

    /// What was read ahead of action `id`, if anything.
    pub fn read_ahead(&self, id: i64) -> Option<&Found> {
        self.ahead.found.get(&id)
    }

    /// This pass's state of kind `T`, made on first use.
    pub fn get<T: Default + Send + 'static>(&mut self) -> &mut T {
        let entry = self
            .states
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Box::new(T::default()));
        // The entry under T's TypeId always holds a T.
        match entry.downcast_mut::<T>() {
            Some(t) => t,
            None => unreachable!("a Pass entry holds the type it is keyed by"),
        }
    }
}

/// Renders the actions that `decision` triggers (`None`: the actions without `when`, for auto-remediation).
pub fn render(
    remediation: &Remediation,
    decision: Option<&[String]>,
    ctx: &Value,
) -> Result<Vec<NewAction>, String> {
    let mut out = Vec::new();
    for (i, action) in remediation.actions.iter().enumerate() {
        if !remediation.runs_for(action.when.as_deref(), decision) {
            continue;
        }
        let position = i32::try_from(i).map_err(|_| "too many actions".to_string())?;
        let r = |field: &str, source: &str| {
            template::render(source, ctx).map_err(|e| format!("action[{i}].{field}: {e}"))
        };
        let ty = lookup(&action.kind)
            .ok_or_else(|| format!("action[{i}]: unknown action type {}", action.kind))?;
        let mut params = serde_json::Map::new();
        for spec in ty.params() {
            let value = match (action.params.get(spec.name), spec.need) {
                (Some(ParamValue::Text(t)), _) => params::coerce(spec.kind, &r(spec.name, t)?),
                (Some(ParamValue::Bool(b)), _) => Value::Bool(*b),
                (Some(ParamValue::Int(n)), _) => Value::from(*n),
                (Some(ParamValue::Table(t)), _) => {
                    let mut rendered = serde_json::Map::new();
                    for (k, v) in t {
                        rendered.insert(
                            k.clone(),
                            Value::String(r(&format!("{}.{k}", spec.name), v)?),
                        );
                    }
                    Value::Object(rendered)
                }
                (None, Need::Default(d)) => params::coerce(spec.kind, d),
                (None, _) => continue,
            };
            // A template that rendered as no value leaves the parameter out.
            if !value.is_null() {
                params.insert(spec.name.to_string(), value);
            }
        }
        out.push(NewAction {
            position,
            kind: action.kind.clone(),
            params: Value::Object(params),
            skip: None,
        });
    }
    Ok(out)
}

/// The exact call an action makes, in one line (what `dry_run` prints and records), with where
/// an AWS call would go.
pub fn describe(
    kind: &str,
    params: &Value,
    connections: &BTreeMap<String, AwsConnectionConfig>,
) -> String {
    match lookup(kind) {
        Some(ty) => ty.describe(params, connections),
        None => format!("{kind} {params}"),
    }
}

/// Which group an action runs in (actions of one group run in order, sharing reads).
pub fn group_of(action: &ActionRecord) -> Option<String> {
    let ty = lookup(&action.kind)?;
    ty.group(&action.params).map(|g| {
        format!(
            "{}:{g}",
            action.kind.split('.').take(2).collect::<Vec<_>>().join(".")
        )
    })
}

/// Reads the targets of claimed actions ahead of them, type by type, several targets a call
/// where a type can (see [`ActionType::read_ahead`]).
pub async fn read_ahead(targets: &Targets, actions: &[ActionRecord]) -> ReadAhead {
    let mut by_type: BTreeMap<&str, Vec<&ActionRecord>> = BTreeMap::new();
    for a in actions {
        by_type.entry(a.kind.as_str()).or_default().push(a);
    }
    let mut found = HashMap::new();
    for (kind, actions) in by_type.into_iter().filter(|(_, a)| a.len() > 1) {
        if let Some(ty) = lookup(kind) {
            found.extend(ty.read_ahead(targets, &actions).await);
        }
    }
    ReadAhead { found }
}

/// Reads the target before an action starts (see [`ActionType::prepare`]).
pub async fn prepare(targets: &Targets, action: &ActionRecord, pass: &mut Pass) -> Prepared {
    match lookup(&action.kind) {
        Some(ty) => ty.prepare(targets, action, pass).await,
        None => Prepared::Done(unknown_type(action)),
    }
}

/// Runs one action against its target (after [`prepare`] said to call it, with what it read).
pub async fn execute(
    targets: &Targets,
    action: &ActionRecord,
    observed: Option<Value>,
) -> ActionOutcome {
    match lookup(&action.kind) {
        Some(ty) => ty.execute(targets, action, observed).await,
        None => unknown_type(action),
    }
}

/// Notes a finished action's outcome for the rest of the pass.
pub fn note(pass: &mut Pass, action: &ActionRecord, outcome: &ActionOutcome) {
    if let Some(ty) = lookup(&action.kind) {
        ty.note(pass, action, outcome);
    }
}

/// Settles an action left started by a process that is gone (see [`ActionType::settle`]).
pub async fn settle_started(targets: &Targets, action: &ActionRecord) -> Settlement {
    match lookup(&action.kind) {
        Some(ty) => ty.settle(targets, action).await,
        None => Settlement::Outcome(unknown_type(action)),
    }
}

/// The type and parameters of the action that reverses `original` (see [`ActionType::undo`]).
pub fn undo(original: &ActionRecord) -> Result<(&'static str, Value), String> {
    match lookup(&original.kind) {
        Some(ty) => ty.undo(original),
        None => Err(format!(
            "action {} is of type {}, which this vigilo does not know",
            original.id, original.kind
        )),
    }
}

fn unknown_type(action: &ActionRecord) -> ActionOutcome {
    ActionOutcome::Failed(format!(
        "unknown action type {}; nothing was called",
        action.kind
    ))
}

/// Checks an action's rendered parameters against its type: each present one has its kind and
/// passes the type's check. The error ends "nothing was called".
pub fn checked<'a>(ty: &dyn ActionType, action: &'a ActionRecord) -> Result<Params<'a>, String> {
    for spec in ty.params() {
        let value = &action.params[spec.name];
        if value.is_null() {
            if spec.need == Need::Required {
                return Err(format!(
                    "{}: parameter {} is missing; nothing was called",
                    action.kind, spec.name
                ));
            }
            continue;
        }
        let p = Params::new(&action.kind, &action.params);
        match spec.kind {
            Kind::Bool => {
                p.bool(spec.name)?;
            }
            Kind::Int => {
                p.opt_int(spec.name)?;
            }
            Kind::Table => {
                p.table(spec.name)?;
            }
            Kind::Text => {}
        }
        if let Err(e) = ty.check(spec.name, value) {
            return Err(format!(
                "{}: {}: {e}; nothing was called",
                action.kind, spec.name
            ));
        }
    }
    Ok(Params::new(&action.kind, &action.params))
}

/// The connection an AWS action names, described for a dry run.
pub fn connection_words(
    params: &Value,
    connections: &BTreeMap<String, AwsConnectionConfig>,
) -> String {
    let name = params["connection"].as_str().unwrap_or_default();
    let mut words = aws::describe_connection(connections.get(name), name);
    if let Some(region) = params["region"].as_str().filter(|r| !r.is_empty()) {
        words.push_str(&format!(", in region {region}"));
    }
    words
}

/// How long an AWS action may take, retries included.
pub const AWS_TIMEOUT: Duration = aws::OPERATION_TIMEOUT;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_is_registered_once_with_distinct_parameters() {
        let mut names: Vec<&str> = TYPES.iter().map(|t| t.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), TYPES.len());
        for t in TYPES {
            let mut params: Vec<&str> = t.params().iter().map(|p| p.name).collect();
            params.sort_unstable();
            params.dedup();
            assert_eq!(params.len(), t.params().len(), "{}", t.name());
            assert!(!params.contains(&"when") && !params.contains(&"type"));
        }
    }
}
