//! The shape every typed AWS action shares: read the target, compare it with what is wanted,
//! write only when needed, settle a crash by reading again, undo with what was read.
//!
//! A type says how to read its target ([`ReadFirst::read`]), when what was read is already
//! as wanted, how to write, and what reverses it; [`Typed`] makes it an [`ActionType`]:
//! - target gone → `skipped`, nothing called;
//! - already as wanted → `succeeded` with `no_change`, nothing called;
//! - otherwise the read state is kept with the started action as `before`, then the write;
//! - started by a process that is gone → read again: as wanted means the call took effect
//!   (`succeeded`, not called again), not as wanted means it did not (it runs again),
//!   unreadable means `unknown`;
//! - undo → the type's reversal, built from `before`; an action that changed nothing is not
//!   undone.
//!
//! A type that can read several targets in one call ([`ReadFirst::read_many`]) has the
//! targets of a batch of claimed actions read together before any of them starts
//! ([`ActionType::read_ahead`]); each action then takes that read as its own. Only targets
//! that one action of the batch names are read ahead (a second action on the same target must
//! see what the first left), and only where every call is made with the same credentials (a
//! role's calls are made in each approval's own session, so those read one by one).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::{Value, json};

use super::{ActionType, Param, Params, Pass, Prepared, Settlement, Targets, checked};
use crate::aws;
use crate::config::AwsConnectionConfig;
use crate::store::{ActionOutcome, ActionRecord};

/// What reading a typed action's target found.
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    /// The target (user, bucket, group, instance) is gone, with why: nothing to do.
    Gone(String),
    /// Its state, as kept in the record (`before`).
    State(Value),
}

/// What a write did.
#[derive(Debug, Clone, PartialEq)]
pub enum Written {
    /// Done; AWS's request id (may be empty).
    Done(String),
    /// The target was gone when called, with why.
    Gone(String),
}

/// Where a typed action acts: its connection, STS session and region.
pub struct Aws<'a> {
    /// The `[connection.aws.NAME]`.
    pub connection: Arc<aws::Connection>,
    /// The STS session name (names the approval).
    pub session: String,
    /// The action's `region`, if it names one.
    pub region: Option<&'a str>,
}

impl Aws<'_> {
    /// Where an SDK (IAM) call of this action is made: its session and region.
    pub fn scope(&self) -> aws::Scope<'_> {
        aws::Scope {
            session: &self.session,
            region: self.region,
        }
    }

    /// A Query-protocol call of this action.
    pub async fn query(
        &self,
        service: &str,
        version: &str,
        action: &'static str,
        params: &[(String, String)],
    ) -> Result<aws::signed::Answer, aws::AwsError> {
        let call = aws::signed::QueryCall {
            service,
            version,
            action,
            params,
        };
        self.connection
            .query(&self.session, &call, self.region, action)
            .await
    }

    /// An S3 bucket subresource call of this action.
    pub async fn s3(
        &self,
        call: &aws::signed::S3Call<'_>,
    ) -> Result<aws::signed::Answer, aws::AwsError> {
        self.connection.s3(&self.session, call, self.region).await
    }
}

/// A typed AWS action: how it reads, compares and writes its target.
#[async_trait::async_trait]
pub trait ReadFirst: Send + Sync + 'static {
    /// Its `type`.
    fn name(&self) -> &'static str;

    /// Its parameters.
    fn params(&self) -> &'static [Param];

    /// Checks a parameter's value beyond its kind (see [`ActionType::check`]).
    fn check(&self, _name: &str, _value: &Value) -> Result<Option<Value>, String> {
        Ok(None)
    }

    /// The write it makes, in one line (`s3:PutBucketVersioning Bucket=b Status=Enabled`).
    fn call(&self, p: &Params<'_>) -> String;

    /// The write's operation name (`PutBucketVersioning`).
    fn operation(&self) -> &'static str;

    /// Reads the target.
    async fn read(&self, aws: &Aws<'_>, p: &Params<'_>) -> Result<Found, String>;

    /// What names the target in [`ReadFirst::read_many`] (a group's rule); `None`: this type
    /// reads one target at a time.
    fn target(&self, _p: &Params<'_>) -> Option<String> {
        None
    }

    /// Reads the targets of several actions of one connection and region in one call (at most
    /// [`READ_MANY`]): what it found for each, in order, `None` for a target it cannot tell.
    async fn read_many(
        &self,
        _aws: &Aws<'_>,
        _ps: &[Params<'_>],
    ) -> Result<Vec<Option<Found>>, String> {
        Ok(Vec::new())
    }

    /// Whether `state` is already as wanted: `Some(what it is, in words)`.
    fn as_wanted(&self, p: &Params<'_>, state: &Value) -> Result<Option<String>, String>;

    /// Writes, once; `before` is what [`ReadFirst::read`] found.
    async fn write(&self, aws: &Aws<'_>, p: &Params<'_>, before: &Value)
    -> Result<Written, String>;

    /// The type and parameters of the reversal, from the parameters and what was read before;
    /// the connection and region are carried over.
    fn undo(&self, _p: &Params<'_>, _before: &Value) -> Result<(&'static str, Value), String> {
        Err(format!("a {} action cannot be reversed", self.name()))
    }
}

/// How many targets one [`ReadFirst::read_many`] call reads at most.
pub const READ_MANY: usize = 100;

/// A [`ReadFirst`] type as an [`ActionType`].
pub struct Typed<T>(pub T);

impl<T: ReadFirst> Typed<T> {
    /// Where the action acts; the error fails it with nothing called.
    async fn aws<'a>(
        &self,
        targets: &Targets,
        action: &ActionRecord,
        p: &Params<'a>,
    ) -> Result<Aws<'a>, String> {
        let connection = targets
            .aws
            .get(p.connection()?)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Aws {
            connection,
            session: aws::session_name(action.approval_id, action.run_id),
            region: p.opt_text("region"),
        })
    }

    /// The fields every result carries: connection, region, account and caller.
    async fn result(&self, aws: &Aws<'_>, action: &ActionRecord) -> Value {
        let mut r = json!({"connection": aws.connection.name()});
        if let Some(region) = aws.region {
            r["region"] = json!(region);
        }
        match aws.connection.identity(&aws.session).await {
            Ok(id) => {
                r["account"] = json!(id.account);
                r["caller"] = json!(id.arn);
            }
            Err(e) => {
                tracing::warn!(action = action.id, error = %e, "could not tell which account and caller this action runs as");
            }
        }
        r
    }
}

#[async_trait::async_trait]
impl<T: ReadFirst> ActionType for Typed<T> {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn params(&self) -> &'static [Param] {
        self.0.params()
    }

    fn check(&self, name: &str, value: &Value) -> Result<Option<Value>, String> {
        self.0.check(name, value)
    }

    fn describe(
        &self,
        params: &Value,
        connections: &BTreeMap<String, AwsConnectionConfig>,
    ) -> String {
        let p = Params::new(self.0.name(), params);
        format!(
            "{} ({})",
            self.0.call(&p),
            super::connection_words(params, connections)
        )
    }

    async fn read_ahead(&self, targets: &Targets, actions: &[&ActionRecord]) -> Vec<(i64, Found)> {
        // (connection, region, target) → the actions naming it.
        let mut named: HashMap<(&str, &str, String), Vec<(&ActionRecord, Params<'_>)>> =
            HashMap::new();
        for &a in actions {
            let Ok(p) = checked(self, a) else { continue };
            let (Ok(connection), Some(target)) = (p.connection(), self.0.target(&p)) else {
                continue;
            };
            let region = p.opt_text("region").unwrap_or_default();
            named
                .entry((connection, region, target))
                .or_default()
                .push((a, p));
        }
        let mut batches: BTreeMap<(&str, &str), Vec<(&ActionRecord, Params<'_>)>> = BTreeMap::new();
        for ((connection, region, _), mut on_target) in named {
            if on_target.len() == 1 {
                batches
                    .entry((connection, region))
                    .or_default()
                    .extend(on_target.pop());
            }
        }
        let mut out = Vec::new();
        for ((name, _), batch) in batches.into_iter().filter(|(_, b)| b.len() > 1) {
            let Ok(connection) = targets.aws.get(name).await else {
                continue; // each action fails with why when it runs
            };
            if connection.config().role_arn.is_some() {
                continue;
            }
            for chunk in batch.chunks(READ_MANY) {
                let (first, p) = &chunk[0];
                let aws = Aws {
                    connection: connection.clone(),
                    session: aws::session_name(first.approval_id, first.run_id),
                    region: p.opt_text("region"),
                };
                let ps: Vec<Params<'_>> = chunk.iter().map(|(_, p)| *p).collect();
                match self.0.read_many(&aws, &ps).await {
                    Ok(found) => out.extend(
                        chunk
                            .iter()
                            .zip(found)
                            .filter_map(|((a, _), f)| Some((a.id, f?))),
                    ),
                    // Each action reads its own target then, and fails with why if it cannot.
                    Err(e) => {
                        tracing::debug!(connection = name, error = %e, "reading ahead failed")
                    }
                }
            }
        }
        out
    }

    async fn prepare(&self, targets: &Targets, action: &ActionRecord, pass: &mut Pass) -> Prepared {
        let fail = |e: String| Prepared::Done(ActionOutcome::Failed(e));
        let p = match checked(self, action) {
            Ok(p) => p,
            Err(e) => return fail(e),
        };
        let aws = match self.aws(targets, action, &p).await {
            Ok(a) => a,
            Err(e) => return fail(e),
        };
        let mut result = self.result(&aws, action).await;
        let ahead = pass.read_ahead(action.id).cloned();
        let read = match ahead {
            Some(found) => Ok(found),
            None => self.0.read(&aws, &p).await,
        };
        let state = match read {
            Ok(Found::Gone(why)) => {
                return Prepared::Done(ActionOutcome::Skipped(format!("{why}; nothing to do")));
            }
            Ok(Found::State(state)) => state,
            Err(e) => return fail(e),
        };
        let wanted = match self.0.as_wanted(&p, &state) {
            Ok(w) => w,
            Err(e) => return fail(e),
        };
        // What an earlier attempt of this action read before its call (kept when it failed).
        let earlier = action
            .result
            .as_ref()
            .and_then(|r| r.get("before"))
            .filter(|b| !b.is_null())
            .cloned();
        match (wanted, earlier) {
            (Some(now), Some(earlier)) => {
                result["before"] = earlier;
                result["settled"] = json!(format!(
                    "an earlier attempt took effect: {now}; {} was not called again",
                    self.0.operation()
                ));
                Prepared::Done(ActionOutcome::Succeeded(result))
            }
            (Some(now), None) => {
                result["before"] = state;
                result["no_change"] = json!(format!("no change needed: {now}"));
                Prepared::Done(ActionOutcome::Succeeded(result))
            }
            (None, _) => {
                result["before"] = state;
                Prepared::Call(Some(result))
            }
        }
    }

    async fn execute(
        &self,
        targets: &Targets,
        action: &ActionRecord,
        observed: Option<Value>,
    ) -> ActionOutcome {
        let p = match checked(self, action) {
            Ok(p) => p,
            Err(e) => return ActionOutcome::Failed(e),
        };
        let aws = match self.aws(targets, action, &p).await {
            Ok(a) => a,
            Err(e) => return ActionOutcome::Failed(e),
        };
        let mut result = observed.unwrap_or_else(|| json!({"connection": aws.connection.name()}));
        let before = result["before"].clone();
        match self.0.write(&aws, &p, &before).await {
            Ok(Written::Done(request_id)) => {
                result["operation"] = json!(self.0.operation());
                if !request_id.is_empty() {
                    result["request_id"] = json!(request_id);
                }
                ActionOutcome::Succeeded(result)
            }
            Ok(Written::Gone(why)) => {
                ActionOutcome::Skipped(format!("{}: {why}; nothing to do", self.0.operation()))
            }
            Err(e) => ActionOutcome::Failed(e),
        }
    }

    async fn settle(&self, targets: &Targets, action: &ActionRecord) -> Settlement {
        let unknown = |why: String| {
            Settlement::Outcome(ActionOutcome::Unknown(format!(
                "vigilo stopped after starting this {} action (attempt {}) and could not read its target to settle it: {why}. \
                 `vigilo retry {}` reads the target first and calls only if it is needed",
                action.kind, action.attempts, action.id
            )))
        };
        let p = match checked(self, action) {
            Ok(p) => p,
            Err(e) => return Settlement::Outcome(ActionOutcome::Failed(e)),
        };
        let aws = match self.aws(targets, action, &p).await {
            Ok(a) => a,
            Err(e) => return unknown(e),
        };
        let state = match self.0.read(&aws, &p).await {
            Ok(Found::State(state)) => state,
            Ok(Found::Gone(why)) => {
                return Settlement::Outcome(ActionOutcome::Skipped(format!(
                    "settled after a restart by reading: {why}"
                )));
            }
            Err(e) => return unknown(e),
        };
        match self.0.as_wanted(&p, &state) {
            Ok(Some(now)) => {
                let mut result = action
                    .result
                    .clone()
                    .unwrap_or_else(|| json!({"connection": aws.connection.name()}));
                result["settled"] = json!(format!(
                    "settled after a restart by reading: {now}; {} was not called again",
                    self.0.operation()
                ));
                Settlement::Outcome(ActionOutcome::Succeeded(result))
            }
            Ok(None) => Settlement::Rerun(format!(
                "vigilo stopped after starting this action; reading afterwards shows {state}, \
                 so the call did not take effect; it runs again"
            )),
            Err(e) => Settlement::Outcome(ActionOutcome::Failed(e)),
        }
    }

    fn undo(&self, original: &ActionRecord) -> Result<(&'static str, Value), String> {
        let id = original.id;
        let result = original.result.as_ref().unwrap_or(&Value::Null);
        if let Some(same) = result["no_change"].as_str() {
            return Err(format!(
                "action {id} changed nothing ({same}); there is nothing to undo"
            ));
        }
        let before = match result.get("before") {
            Some(b) if !b.is_null() => b,
            _ => {
                return Err(format!(
                    "action {id} did not record what it read before its call, so it cannot be reversed"
                ));
            }
        };
        let p = Params::new(&original.kind, &original.params);
        let (kind, mut params) = self
            .0
            .undo(&p, before)
            .map_err(|e| format!("action {id}: {e}"))?;
        for carried in ["connection", "region"] {
            if let Some(v) = original.params.get(carried) {
                params[carried] = v.clone();
            }
        }
        Ok((kind, params))
    }
}

/// `Key=value` pairs of a call, in one line.
pub fn pairs(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// An AWS error with this code (e.g. `NoSuchEntity`) as `Found::Gone`/`Written::Gone`, with why.
pub fn gone_on(e: &aws::AwsError, codes: &[&str]) -> bool {
    e.code().is_some_and(|c| codes.contains(&c))
}
