//! `aws.iam.update_access_key` and `aws.iam.delete_access_key`: an IAM user's access key.
//!
//! Both read the user's keys first (`ListAccessKeys`, once per user and pass through
//! [`KeyReads`]): a key already as wanted succeeds with "no change needed", a key or user that
//! is gone is skipped. After a crash the key is read again. An update is undone by setting the
//! status read before it; a deletion cannot be undone.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use serde_json::{Value, json};

use super::{ActionType, Kind, Need, Param, Pass, Prepared, Settlement, Targets, params};
use crate::aws::{self, KeyState};
use crate::config::AwsConnectionConfig;
use crate::store::{ActionOutcome, ActionRecord};

/// The `aws.iam.update_access_key` action type.
pub const UPDATE_ACCESS_KEY: &str = "aws.iam.update_access_key";

/// The `aws.iam.delete_access_key` action type.
pub const DELETE_ACCESS_KEY: &str = "aws.iam.delete_access_key";

/// The `update_access_key` parameter with the key's status as the finding's row shows it.
pub const CURRENT_STATUS: &str = "current_status";

/// The parameter stamped when a recheck confirmed the row behind [`CURRENT_STATUS`] (RFC 3339).
pub const CURRENT_STATUS_AT: &str = "current_status_at";

/// How long after its recheck a row's [`CURRENT_STATUS`] is taken instead of reading the key.
pub const CURRENT_STATUS_FOR: Duration = Duration::from_secs(60);

/// `aws.iam.update_access_key` (sets a key's status) or `aws.iam.delete_access_key`.
pub struct KeyActionType {
    /// Update (true) or delete.
    update: bool,
}

/// `aws.iam.update_access_key`.
pub const UPDATE: KeyActionType = KeyActionType { update: true };

/// `aws.iam.delete_access_key`.
pub const DELETE: KeyActionType = KeyActionType { update: false };

const UPDATE_PARAMS: &[Param] = &[
    params::CONNECTION,
    params::REGION,
    Param::text("user_name"),
    Param::text("access_key_id"),
    Param::text("status"),
    Param::new(CURRENT_STATUS, Kind::Text, Need::Optional),
];

const DELETE_PARAMS: &[Param] = &[
    params::CONNECTION,
    params::REGION,
    Param::text("user_name"),
    Param::text("access_key_id"),
];

#[async_trait::async_trait]
impl ActionType for KeyActionType {
    fn name(&self) -> &'static str {
        if self.update {
            UPDATE_ACCESS_KEY
        } else {
            DELETE_ACCESS_KEY
        }
    }

    fn params(&self) -> &'static [Param] {
        if self.update {
            UPDATE_PARAMS
        } else {
            DELETE_PARAMS
        }
    }

    fn check(&self, name: &str, value: &Value) -> Result<Option<Value>, String> {
        let status = value.as_str().unwrap_or_default();
        if name == "status" && status != "Active" && status != "Inactive" {
            return Err(format!(
                "must be Active or Inactive (or a template), not {status:?}"
            ));
        }
        Ok(None)
    }

    fn describe(
        &self,
        params: &Value,
        connections: &BTreeMap<String, AwsConnectionConfig>,
    ) -> String {
        let s = |k: &str| params[k].as_str().unwrap_or_default().to_string();
        let call = if self.update {
            format!(
                "iam:UpdateAccessKey UserName={} AccessKeyId={} Status={}",
                s("user_name"),
                s("access_key_id"),
                s("status")
            )
        } else {
            format!(
                "iam:DeleteAccessKey UserName={} AccessKeyId={}",
                s("user_name"),
                s("access_key_id")
            )
        };
        format!("{call} ({})", super::connection_words(params, connections))
    }

    fn group(&self, params: &Value) -> Option<String> {
        let connection = params["connection"].as_str()?;
        let user = params["user_name"].as_str()?;
        Some(format!("{connection}/{user}"))
    }

    async fn prepare(&self, targets: &Targets, action: &ActionRecord, pass: &mut Pass) -> Prepared {
        prepare_with(targets, action, pass.get::<KeyReads>()).await
    }

    async fn execute(
        &self,
        targets: &Targets,
        action: &ActionRecord,
        observed: Option<Value>,
    ) -> ActionOutcome {
        key_call(targets, action, observed).await
    }

    fn note(&self, pass: &mut Pass, action: &ActionRecord, outcome: &ActionOutcome) {
        pass.get::<KeyReads>().note(action, outcome);
    }

    async fn settle(&self, targets: &Targets, action: &ActionRecord) -> Settlement {
        settle_key(targets, action).await
    }

    fn undo(&self, original: &ActionRecord) -> Result<(&'static str, Value), String> {
        let id = original.id;
        if !self.update {
            return Err(format!(
                "action {id} is a {DELETE_ACCESS_KEY} action; a deleted key cannot be restored, so it is not reversible"
            ));
        }
        let result = original.result.as_ref().unwrap_or(&Value::Null);
        let status = original.params["status"].as_str().unwrap_or_default();
        let previous = match result["previous_status"].as_str() {
            Some(p) if !p.is_empty() => p,
            _ => {
                return Err(format!(
                    "action {id} did not record the key's previous status, so it cannot be reversed"
                ));
            }
        };
        if result.get("no_change").is_some() || previous == status {
            return Err(format!(
                "action {id} changed nothing (the key was already {status}); there is nothing to undo"
            ));
        }
        let mut params = original.params.clone();
        // What the finding's row said before the original action is not the key's status now.
        if let Some(p) = params.as_object_mut() {
            p.remove(CURRENT_STATUS);
            p.remove(CURRENT_STATUS_AT);
        }
        params["status"] = Value::String(previous.to_string());
        Ok((UPDATE_ACCESS_KEY, params))
    }
}

/// The AWS parameters of a key action, checked.
struct KeyAction<'a> {
    connection: &'a str,
    user: &'a str,
    key: &'a str,
    /// The status wanted (`update_access_key` only).
    status: Option<&'a str>,
    session: String,
    /// The action's `region`, if it names one.
    region: Option<&'a str>,
}

impl<'a> KeyAction<'a> {
    fn of(action: &'a ActionRecord) -> Result<KeyAction<'a>, String> {
        let p = params::Params::new(&action.kind, &action.params);
        let status = if action.kind == UPDATE_ACCESS_KEY {
            let s = p.text("status")?;
            if s != "Active" && s != "Inactive" {
                return Err(format!(
                    "{UPDATE_ACCESS_KEY}: status must be Active or Inactive, not {s:?}; nothing was called"
                ));
            }
            Some(s)
        } else {
            None
        };
        Ok(KeyAction {
            connection: p.text("connection")?,
            user: p.text("user_name")?,
            key: p.text("access_key_id")?,
            status,
            session: aws::session_name(action.approval_id, action.run_id),
            region: p.opt_text("region"),
        })
    }

    /// Where its IAM calls are made.
    fn scope(&self) -> aws::Scope<'_> {
        aws::Scope {
            session: &self.session,
            region: self.region,
        }
    }

    /// The (connection, user) whose keys it acts on.
    fn user_ref(&self) -> (String, String) {
        (self.connection.to_string(), self.user.to_string())
    }

    /// The (connection, user, key) it acts on.
    fn key_ref(&self) -> (String, String, String) {
        let (connection, user) = self.user_ref();
        (connection, user, self.key.to_string())
    }

    /// The fields every result of this action carries.
    fn result(&self, identity: Option<&aws::Identity>) -> Value {
        let mut r = json!({
            "connection": self.connection,
            "user_name": self.user,
            "access_key_id": self.key,
        });
        if let Some(status) = self.status {
            r["status"] = json!(status);
        }
        if let Some(id) = identity {
            r["account"] = json!(id.account);
            r["caller"] = json!(id.arn);
        }
        r
    }
}

/// Reads of users' keys shared by the actions of one pass, kept in step with what those
/// actions did: two keys of one user cost one `ListAccessKeys`, and an action never acts on
/// a read that an earlier action of the pass made stale.
#[derive(Debug, Default)]
pub struct KeyReads {
    /// (connection, user) → what was read, as changed since by this pass's actions.
    reads: HashMap<(String, String), aws::UserKeys>,
    /// (connection, user, key) of every key an action of this pass acted on or tried to.
    acted: HashSet<(String, String, String)>,
}

impl KeyReads {
    /// Notes what a finished action did to its key, so later actions of the pass read it right.
    pub fn note(&mut self, action: &ActionRecord, outcome: &ActionOutcome) {
        let Ok(k) = KeyAction::of(action) else {
            return;
        };
        self.acted.insert(k.key_ref());
        let user = k.user_ref();
        let Some(Some(keys)) = self.reads.get_mut(&user) else {
            return;
        };
        match (outcome, k.status) {
            (ActionOutcome::Succeeded(_), Some(status)) => {
                keys.insert(k.key.to_string(), status.to_string());
            }
            (ActionOutcome::Succeeded(_) | ActionOutcome::Skipped(_), None) => {
                keys.remove(k.key);
            }
            (ActionOutcome::Skipped(_), Some(_)) => {}
            // What a failed call did is not known: read again.
            (ActionOutcome::Failed(_) | ActionOutcome::Unknown(_), _) => {
                self.reads.remove(&user);
            }
        }
    }
}

/// Reads the target before an action starts. AWS key actions list the user's keys (once per
/// pass through `reads`): a key already as wanted succeeds with "no change needed", a key or
/// user that is gone is skipped, and nothing is called in either case. Other actions are
/// called as they are.
async fn prepare_with(targets: &Targets, action: &ActionRecord, reads: &mut KeyReads) -> Prepared {
    if action.kind != UPDATE_ACCESS_KEY && action.kind != DELETE_ACCESS_KEY {
        return Prepared::Call(None);
    }
    let k = match KeyAction::of(action) {
        Ok(k) => k,
        Err(e) => return Prepared::Done(ActionOutcome::Failed(e)),
    };
    let connection = match targets.aws.get(k.connection).await {
        Ok(c) => c,
        Err(e) => return Prepared::Done(ActionOutcome::Failed(e.to_string())),
    };
    // Who acts, for the record; an STS that cannot be reached does not stop an IAM call.
    let identity = match connection.identity(&k.session).await {
        Ok(id) => Some(id),
        Err(e) => {
            tracing::warn!(action = action.id, error = %e, "could not tell which account and caller this action runs as");
            None
        }
    };
    let user = k.user_ref();
    let rechecked = rechecked_status(action, &k, reads);
    let state = match (&rechecked, reads.reads.get(&user)) {
        (Some(current), _) => KeyState::Present(current.clone()),
        (None, Some(keys)) => aws::key_state_in(keys, k.key),
        (None, None) => match connection.user_keys(k.scope(), k.user).await {
            Ok(keys) => {
                let state = aws::key_state_in(&keys, k.key);
                reads.reads.insert(user, keys);
                state
            }
            Err(e) => return Prepared::Done(ActionOutcome::Failed(e.to_string())),
        },
    };
    let mut result = k.result(identity.as_ref());
    match state {
        KeyState::UserGone => Prepared::Done(ActionOutcome::Skipped(format!(
            "user {} no longer exists in connection {} (ListAccessKeys: NoSuchEntity); nothing to do",
            k.user, k.connection
        ))),
        KeyState::KeyGone => Prepared::Done(ActionOutcome::Skipped(format!(
            "access key {} of user {} no longer exists in connection {}; nothing to do",
            k.key, k.user, k.connection
        ))),
        KeyState::Present(current) => {
            result["previous_status"] = json!(current);
            if rechecked.is_some() {
                result["previous_status_from"] = json!(format!(
                    "the finding's row ({CURRENT_STATUS}), confirmed by the recheck at {}; the key was not read again",
                    action.params[CURRENT_STATUS_AT]
                        .as_str()
                        .unwrap_or_default()
                ));
            }
            // What an earlier attempt of this action read before its call (kept when it failed).
            let earlier = action
                .result
                .as_ref()
                .and_then(|r| r["previous_status"].as_str())
                .filter(|e| Some(*e) != k.status)
                .map(str::to_string);
            match (k.status, earlier) {
                (Some(wanted), Some(earlier)) if wanted == current => {
                    result["previous_status"] = json!(earlier);
                    result["settled"] = json!(format!(
                        "an earlier attempt took effect: the key was {earlier} before it and is {current} now; not called again"
                    ));
                    Prepared::Done(ActionOutcome::Succeeded(result))
                }
                (Some(wanted), None) if wanted == current => {
                    result["no_change"] =
                        json!(format!("no change needed: the key is already {current}"));
                    Prepared::Done(ActionOutcome::Succeeded(result))
                }
                _ => Prepared::Call(Some(result)),
            }
        }
    }
}

/// The key's status as the finding's row shows it (`current_status`), when that row is as good
/// as a read: a recheck confirmed it at most [`CURRENT_STATUS_FOR`] ago, this is the action's
/// first attempt, and no earlier action of the pass touched the key. Otherwise the key is read.
fn rechecked_status(action: &ActionRecord, k: &KeyAction<'_>, reads: &KeyReads) -> Option<String> {
    let current = action.params[CURRENT_STATUS]
        .as_str()
        .filter(|s| *s == "Active" || *s == "Inactive")?;
    let at = action.params[CURRENT_STATUS_AT]
        .as_str()
        .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok())?;
    let age = (chrono::Utc::now() - at.with_timezone(&chrono::Utc))
        .to_std()
        .ok()?;
    let acted = reads.acted.contains(&k.key_ref());
    (age <= CURRENT_STATUS_FOR && action.attempts == 0 && action.result.is_none() && !acted)
        .then(|| current.to_string())
}

/// UpdateAccessKey or DeleteAccessKey, once.
async fn key_call(
    targets: &Targets,
    action: &ActionRecord,
    observed: Option<Value>,
) -> ActionOutcome {
    let k = match KeyAction::of(action) {
        Ok(k) => k,
        Err(e) => return ActionOutcome::Failed(e),
    };
    let connection = match targets.aws.get(k.connection).await {
        Ok(c) => c,
        Err(e) => return ActionOutcome::Failed(e.to_string()),
    };
    let (operation, answer) = match k.status {
        Some(status) => (
            "UpdateAccessKey",
            connection
                .update_access_key(k.scope(), k.user, k.key, status)
                .await,
        ),
        None => (
            "DeleteAccessKey",
            connection.delete_access_key(k.scope(), k.user, k.key).await,
        ),
    };
    match answer {
        Ok(Some(request_id)) => {
            let mut result = observed.unwrap_or_else(|| k.result(None));
            result["operation"] = json!(operation);
            if !request_id.is_empty() {
                result["request_id"] = json!(request_id);
            }
            ActionOutcome::Succeeded(result)
        }
        Ok(None) => ActionOutcome::Skipped(format!(
            "{operation}: access key {} of user {} no longer exists in connection {} (NoSuchEntity); nothing to do",
            k.key, k.user, k.connection
        )),
        Err(e) => ActionOutcome::Failed(e.to_string()),
    }
}

async fn settle_key(targets: &Targets, action: &ActionRecord) -> Settlement {
    let unknown = |why: String| {
        Settlement::Outcome(ActionOutcome::Unknown(format!(
            "vigilo stopped after starting this {} action (attempt {}) and could not read the key to settle it: {why}. \
             `vigilo retry {}` reads the key first and calls only if it is needed",
            action.kind, action.attempts, action.id
        )))
    };
    let k = match KeyAction::of(action) {
        Ok(k) => k,
        Err(e) => return Settlement::Outcome(ActionOutcome::Failed(e)),
    };
    let connection = match targets.aws.get(k.connection).await {
        Ok(c) => c,
        Err(e) => return unknown(e.to_string()),
    };
    let state = match connection.key_state(k.scope(), k.user, k.key).await {
        Ok(s) => s,
        Err(e) => return unknown(e.to_string()),
    };
    let mut result = action.result.clone().unwrap_or_else(|| k.result(None));
    let settled = |what: String| format!("settled after a restart by reading the key: {what}");
    match (k.status, state) {
        (Some(wanted), KeyState::Present(now)) if now == wanted => {
            result["settled"] = json!(settled(format!(
                "it is {now}; UpdateAccessKey was not called again"
            )));
            Settlement::Outcome(ActionOutcome::Succeeded(result))
        }
        (Some(_), KeyState::Present(now)) => Settlement::Rerun(format!(
            "vigilo stopped after starting this action; reading the key afterwards shows it still {now}, \
             so the call did not take effect; it runs again"
        )),
        (None, KeyState::Present(_)) => Settlement::Rerun(
            "vigilo stopped after starting this action; the key still exists, so the call did not take effect; it runs again"
                .into(),
        ),
        (None, KeyState::KeyGone | KeyState::UserGone) => {
            result["settled"] = json!(settled(
                "it no longer exists; DeleteAccessKey was not called again".into()
            ));
            Settlement::Outcome(ActionOutcome::Succeeded(result))
        }
        (Some(_), KeyState::KeyGone | KeyState::UserGone) => {
            Settlement::Outcome(ActionOutcome::Skipped(settled(format!(
                "access key {} of user {} no longer exists in connection {}",
                k.key, k.user, k.connection
            ))))
        }
    }
}
