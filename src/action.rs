//! Actions: rendering a remediation's `[[action]]`s for a decision, and running one.
//!
//! Only this module calls targets. The executor in `remediate` first lets
//! [`prepare_with`] read the target (an AWS key's status: already as wanted, or gone,
//! means nothing is called), marks the action started (committed, with what was
//! read) before calling [`execute`], and records the outcome after, so a crash in
//! between leaves evidence instead of a silent repeat. [`settle_started`] decides
//! what such evidence means after a restart: an AWS key is read again, an http
//! target cannot be asked.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use serde_json::{Value, json};

use crate::aws::{self, KeyState};
use crate::config::{ActionKind, AwsConnectionConfig, Remediation};
use crate::store::{ActionOutcome, ActionRecord, NewAction};
use crate::template;

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

/// What actions reach: an HTTP client and the AWS connections, each built once and reused.
pub struct Targets {
    /// For http actions, webhooks and chat APIs.
    pub http: reqwest::Client,
    /// `[connection.aws.NAME]`s.
    pub aws: aws::Connections,
}

impl Targets {
    /// The targets of a project's actions.
    pub fn new(http: reqwest::Client, aws: &BTreeMap<String, AwsConnectionConfig>) -> Targets {
        Targets {
            http,
            aws: aws::Connections::new(aws),
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

/// How long an http action may take.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// How much of a response body is kept in the record.
const BODY_EXCERPT: usize = 500;

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
        let (kind, params) = match &action.kind {
            ActionKind::Http {
                url,
                method,
                headers,
                body,
            } => {
                let mut rendered_headers = serde_json::Map::new();
                for (name, value) in headers {
                    rendered_headers.insert(
                        name.clone(),
                        Value::String(r(&format!("headers.{name}"), value)?),
                    );
                }
                (
                    "http",
                    json!({
                        "method": method,
                        "url": r("url", url)?,
                        "headers": rendered_headers,
                        "body": body.as_deref().map(|b| r("body", b)).transpose()?,
                    }),
                )
            }
            ActionKind::AwsUpdateAccessKey {
                connection,
                user_name,
                access_key_id,
                status,
                current_status,
            } => {
                let mut params = json!({
                    "connection": r("connection", connection)?,
                    "user_name": r("user_name", user_name)?,
                    "access_key_id": r("access_key_id", access_key_id)?,
                    "status": r("status", status)?,
                });
                if let Some(current) = current_status {
                    params[CURRENT_STATUS] = json!(r(CURRENT_STATUS, current)?);
                }
                ("aws.iam.update_access_key", params)
            }
            ActionKind::AwsDeleteAccessKey {
                connection,
                user_name,
                access_key_id,
            } => (
                "aws.iam.delete_access_key",
                json!({
                    "connection": r("connection", connection)?,
                    "user_name": r("user_name", user_name)?,
                    "access_key_id": r("access_key_id", access_key_id)?,
                }),
            ),
        };
        out.push(NewAction {
            position,
            kind: kind.to_string(),
            params,
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
    let s = |k: &str| params[k].as_str().unwrap_or_default().to_string();
    match kind {
        "http" => {
            let mut line = format!("{} {}", s("method"), s("url"));
            if let Some(h) = params["headers"].as_object().filter(|h| !h.is_empty()) {
                line.push_str(&format!(" headers {}", Value::Object(h.clone())));
            }
            if let Some(body) = params["body"].as_str() {
                line.push_str(&format!(" body {}", Value::String(body.to_string())));
            }
            line
        }
        UPDATE_ACCESS_KEY => format!(
            "iam:UpdateAccessKey UserName={} AccessKeyId={} Status={} ({})",
            s("user_name"),
            s("access_key_id"),
            s("status"),
            aws::describe_connection(connections.get(&s("connection")), &s("connection"))
        ),
        DELETE_ACCESS_KEY => format!(
            "iam:DeleteAccessKey UserName={} AccessKeyId={} ({})",
            s("user_name"),
            s("access_key_id"),
            aws::describe_connection(connections.get(&s("connection")), &s("connection"))
        ),
        other => format!("{other} {params}"),
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
}

impl<'a> KeyAction<'a> {
    fn of(action: &'a ActionRecord) -> Result<KeyAction<'a>, String> {
        let p = &action.params;
        let field = |k: &str| {
            p[k].as_str().filter(|v| !v.is_empty()).ok_or_else(|| {
                format!(
                    "{}: parameter {k} is missing or empty; nothing was called",
                    action.kind
                )
            })
        };
        let status = if action.kind == UPDATE_ACCESS_KEY {
            let s = field("status")?;
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
            connection: field("connection")?,
            user: field("user_name")?,
            key: field("access_key_id")?,
            status,
            session: aws::session_name(action.approval_id, action.run_id),
        })
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

    /// Which user an action is about, if it is a key action: actions of one user run in order.
    pub fn user_of(action: &ActionRecord) -> Option<(String, String)> {
        KeyAction::of(action).ok().map(|k| k.user_ref())
    }
}

/// Reads the target before an action starts. AWS key actions list the user's keys (once per
/// pass through `reads`): a key already as wanted succeeds with "no change needed", a key or
/// user that is gone is skipped, and nothing is called in either case. Other actions are
/// called as they are.
pub async fn prepare_with(
    targets: &Targets,
    action: &ActionRecord,
    reads: &mut KeyReads,
) -> Prepared {
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
        (None, None) => match connection.user_keys(&k.session, k.user).await {
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

/// Runs one action against its target (after [`prepare_with`] said to call it, with what it read).
pub async fn execute(
    targets: &Targets,
    action: &ActionRecord,
    observed: Option<Value>,
) -> ActionOutcome {
    match action.kind.as_str() {
        "http" => http(&targets.http, action).await,
        UPDATE_ACCESS_KEY | DELETE_ACCESS_KEY => key_call(targets, action, observed).await,
        other => ActionOutcome::Failed(format!("unknown action type {other}; nothing was called")),
    }
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
                .update_access_key(&k.session, k.user, k.key, status)
                .await,
        ),
        None => (
            "DeleteAccessKey",
            connection
                .delete_access_key(&k.session, k.user, k.key)
                .await,
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

/// How an action left `started` by a process that is gone is settled.
#[derive(Debug, Clone, PartialEq)]
pub enum Settlement {
    /// It ends so.
    Outcome(ActionOutcome),
    /// Reading the target showed the call did not take effect: it fails with this reason and runs again.
    Rerun(String),
}

/// Settles an action left started by a process that is gone. An AWS key action reads the key:
/// already as wanted means the call took effect (succeeded, not called again), still as before
/// means it did not (it runs again), unreadable means unknown. An http target cannot be asked:
/// unknown, for a person to check and `vigilo retry`.
pub async fn settle_started(targets: &Targets, action: &ActionRecord) -> Settlement {
    if action.kind == UPDATE_ACCESS_KEY || action.kind == DELETE_ACCESS_KEY {
        return settle_key(targets, action).await;
    }
    Settlement::Outcome(ActionOutcome::Unknown(format!(
        "vigilo stopped after starting this {} action (attempt {}); whether the target received it is unknown. \
         Check the target, then run `vigilo retry {}` if it did not happen (the retry sends the same Idempotency-Key {})",
        action.kind, action.attempts, action.id, action.idempotency_key
    )))
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
    let state = match connection.key_state(&k.session, k.user, k.key).await {
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

async fn http(client: &reqwest::Client, action: &ActionRecord) -> ActionOutcome {
    let p = &action.params;
    let method = p["method"].as_str().unwrap_or("POST");
    let Ok(method) = reqwest::Method::from_bytes(method.as_bytes()) else {
        return ActionOutcome::Failed(format!("invalid HTTP method {method:?}"));
    };
    let Some(url) = p["url"].as_str() else {
        return ActionOutcome::Failed("http action without a url".into());
    };
    let mut request = client
        .request(method.clone(), url)
        .timeout(HTTP_TIMEOUT)
        .header("Idempotency-Key", &action.idempotency_key)
        .header("User-Agent", concat!("vigilo/", env!("CARGO_PKG_VERSION")));
    if let Some(headers) = p["headers"].as_object() {
        for (name, value) in headers {
            request = request.header(name, value.as_str().unwrap_or_default());
        }
    }
    if let Some(body) = p["body"].as_str() {
        request = request.body(body.to_string());
    }
    match request.send().await {
        Err(e) => ActionOutcome::Failed(format!("http {method} {url}: {}", crate::cause::http(&e))),
        Ok(response) => {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            let excerpt: String = body.chars().take(BODY_EXCERPT).collect();
            if status.is_success() {
                ActionOutcome::Succeeded(json!({"status": status.as_u16(), "body": excerpt}))
            } else {
                ActionOutcome::Failed(format!("http {url}: HTTP {}: {excerpt}", status.as_u16()))
            }
        }
    }
}

/// Whether the process named by `owner` (`host:pid`) is certainly gone: same host, and no such process.
pub fn owner_is_gone(owner: &str) -> bool {
    let Some((host, pid)) = owner.rsplit_once(':') else {
        return false;
    };
    host == crate::remediate::hostname()
        && pid.parse::<u32>().is_ok_and(|pid| {
            pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        })
}
