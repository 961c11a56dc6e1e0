//! Moves remediation runs along: requested → pending approval, and due approvals to their timeout.
//!
//! A scan's commit creates a `requested` run for each new or reopened finding
//! of a query with a remediation. [`process_requested`] claims such runs (a
//! lease, so several processes never take the same one), renders the approval's
//! subject and prompt, and opens the approval; [`settle_due`] applies timeouts,
//! including those whose deadline passed while vigilo was stopped.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};

use crate::approval::{OptionSpec, Transition};
use crate::config::{ApprovalConfig, Project};
use crate::finding::Finding;
use crate::store::{ActionOutcome, NewApproval, RequestedRun, Store, StoreError};
use crate::template;
use crate::{action, notify};

/// How long a claim on a requested run lasts before another process may take it.
const CLAIM_LEASE: Duration = Duration::from_secs(60);

/// How many requested runs one pass claims.
const CLAIM_BATCH: usize = 100;

/// Why a remediation step failed.
#[derive(Debug, thiserror::Error)]
pub enum RemediateError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Approvals opened: (approval id, subject).
    pub opened: Vec<(i64, String)>,
    /// Runs that could not be opened, with why (they stay requested and are retried).
    pub failed: Vec<(i64, String)>,
}

/// The identity a process claims work under: host and pid.
pub fn owner() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
    format!("{host}:{}", std::process::id())
}

/// Opens the approval of every requested run whose remediation asks for one.
pub async fn process_requested(
    project: &Project,
    store: &dyn Store,
    owner: &str,
) -> Result<Progress, RemediateError> {
    let mut progress = Progress::default();
    for run in store
        .claim_requested(owner, CLAIM_LEASE, CLAIM_BATCH)
        .await?
    {
        let Some(remediation) =
            remediation_of(project, run.run_id, &run.remediation, &mut progress)
        else {
            continue;
        };
        let Some(approval) = &remediation.approval else {
            // Auto-remediation: the actions without `when` run at once.
            let ctx = context(project, &run.finding);
            match action::render(remediation, None, &ctx).and_then(|actions| {
                Ok((
                    actions,
                    notify::for_decision(project, remediation, None, &ctx)?,
                ))
            }) {
                Ok((actions, messages)) => {
                    store
                        .plan_actions(owner, run.run_id, actions, messages)
                        .await?;
                }
                Err(e) => progress.failed.push((run.run_id, e)),
            }
            continue;
        };
        match new_approval(project, &run, approval) {
            Ok(new) => {
                let subject = new.subject.clone();
                if let Some(id) = store.open_approval(owner, new).await? {
                    progress.opened.push((id, subject));
                }
            }
            Err(e) => {
                tracing::error!(run = run.run_id, remediation = %run.remediation, error = %e, "cannot open the approval");
                progress.failed.push((run.run_id, e));
            }
        }
    }
    Ok(progress)
}

/// Plans the actions of every decided run: the decision's actions, rendered, recorded as pending.
pub async fn plan_decided(
    project: &Project,
    store: &dyn Store,
    owner: &str,
) -> Result<Progress, RemediateError> {
    let mut progress = Progress::default();
    for run in store.claim_decided(owner, CLAIM_LEASE, CLAIM_BATCH).await? {
        let Some(remediation) =
            remediation_of(project, run.run_id, &run.remediation, &mut progress)
        else {
            continue;
        };
        let mut ctx = context(project, &run.finding);
        let decision = run.approval.as_ref().and_then(|a| a.decision.clone());
        if let Some(a) = &run.approval {
            ctx["approval"] = json!({
                "id": a.id,
                "decision": a.decision,
                "decided_by": a.decided_by.join(", "),
                "decided_at": a.decided_at.as_ref().map(crate::finding::rfc3339),
                "votes": a.votes,
                "subject": a.subject,
            });
        }
        let planned = action::render(remediation, decision.as_deref(), &ctx).and_then(|actions| {
            let messages = notify::for_decision(project, remediation, decision.as_deref(), &ctx)?;
            Ok((actions, messages))
        });
        match planned {
            Ok((actions, messages)) => {
                store
                    .plan_actions(owner, run.run_id, actions, messages)
                    .await?;
            }
            Err(e) => {
                tracing::error!(run = run.run_id, error = %e, "cannot render the actions");
                progress.failed.push((run.run_id, e));
            }
        }
    }
    Ok(progress)
}

/// Settles actions left `started` by a process that is gone: `unknown`, for a person to `vigilo retry`.
pub async fn settle_started(store: &dyn Store) -> Result<Vec<i64>, RemediateError> {
    let now = Utc::now();
    let mut settled = Vec::new();
    for a in store.started_actions().await? {
        let gone = a.claimed_by.as_deref().is_none_or(action::owner_is_gone)
            || a.claim_expires.is_some_and(|until| until < now);
        if gone {
            tracing::warn!(action = a.id, kind = %a.kind, "action was started by a process that is gone; outcome unknown");
            store
                .finish_action(a.id, action::settle_started(&a))
                .await?;
            settled.push(a.id);
        }
    }
    Ok(settled)
}

/// Runs every pending action this process can claim; returns (action id, outcome).
pub async fn execute_pending(
    store: &dyn Store,
    owner: &str,
    client: &reqwest::Client,
) -> Result<Vec<(i64, ActionOutcome)>, RemediateError> {
    let lease = action::HTTP_TIMEOUT + Duration::from_secs(30);
    let mut done = Vec::new();
    for a in store.claim_actions(owner, lease, CLAIM_BATCH).await? {
        // Committed before the call: a crash from here on leaves the action `started`, never silently repeated.
        if !store.start_action(owner, a.id, lease).await? {
            continue;
        }
        let outcome = action::execute(client, &a).await;
        match &outcome {
            ActionOutcome::Failed(e) => {
                tracing::error!(action = a.id, kind = %a.kind, error = %e, "action failed")
            }
            _ => tracing::info!(action = a.id, kind = %a.kind, "action finished"),
        }
        store.finish_action(a.id, outcome.clone()).await?;
        done.push((a.id, outcome));
    }
    Ok(done)
}

/// Everything that moves remediations along, in order: timeouts, crashed actions, new approvals,
/// decided runs' actions, running them, and delivering due messages.
pub async fn step(
    project: &Project,
    store: &dyn Store,
    owner: &str,
    client: &reqwest::Client,
) -> Result<(Progress, Vec<(i64, ActionOutcome)>), RemediateError> {
    settle_due(store).await?;
    settle_started(store).await?;
    let mut progress = process_requested(project, store, owner).await?;
    progress
        .failed
        .extend(plan_decided(project, store, owner).await?.failed);
    let ran = execute_pending(store, owner, client).await?;
    notify::deliver(project, store, owner, client).await?;
    Ok((progress, ran))
}

/// The remediation a run names, or a recorded failure when the project no longer has it.
fn remediation_of<'p>(
    project: &'p Project,
    run_id: i64,
    name: &str,
    progress: &mut Progress,
) -> Option<&'p crate::config::Remediation> {
    let found = project.remediations.get(name);
    if found.is_none() {
        progress.failed.push((
            run_id,
            format!("remediation {name} is no longer in the project"),
        ));
    }
    found
}

/// Applies the timeout of every pending approval whose deadline has passed.
pub async fn settle_due(store: &dyn Store) -> Result<Vec<(i64, Transition)>, RemediateError> {
    let settled = store.settle_due(Utc::now()).await?;
    for (id, t) in &settled {
        match t {
            Transition::TimeoutDecides { option } => {
                tracing::info!(approval = id, option = %option, "approval timed out; on_timeout decided it")
            }
            _ => tracing::info!(approval = id, "approval expired"),
        }
    }
    Ok(settled)
}

/// The template context of a finding: `row`, `finding`, `query` (and an empty `approval` until one exists).
pub fn context(project: &Project, finding: &Finding) -> Value {
    let query = project.queries.get(&finding.query);
    json!({
        "row": finding.row,
        "finding": finding,
        "query": {
            "name": finding.query,
            "title": query.map_or(finding.query.as_str(), |q| q.title.as_str()),
            "severity": finding.severity.as_str(),
        },
        "approval": {},
    })
}

fn new_approval(
    project: &Project,
    run: &RequestedRun,
    a: &ApprovalConfig,
) -> Result<NewApproval, String> {
    let ctx = context(project, &run.finding);
    let render = |what: &str, source: &str| {
        template::render(source, &ctx).map_err(|e| format!("{what}: {e}"))
    };
    let now = Utc::now();
    Ok(NewApproval {
        run_id: run.run_id,
        finding_id: run.finding.id,
        remediation: run.remediation.clone(),
        subject: render("approval.subject", &a.subject)?,
        prompt: render("approval.prompt", &a.prompt)?,
        options: a
            .options
            .iter()
            .map(|o| OptionSpec {
                value: o.value.clone(),
                label: o.label.clone(),
                style: o.style.clone(),
                required: o.required,
            })
            .collect(),
        approvers: expand_approvers(project, &a.approvers),
        requested_by: run.requested_by.clone(),
        allow_self_approval: a.allow_self_approval,
        requested_at: now,
        deadline: a
            .timeout
            .and_then(|t| chrono::Duration::from_std(t).ok())
            .map(|t| now + t),
        on_timeout: a.on_timeout.clone(),
        messages: notify::for_notifier(project, &a.notifier, notify::APPROVAL_REQUESTED, None),
    })
}

/// Approver names with groups replaced by their members, sorted and without repeats.
pub fn expand_approvers(project: &Project, names: &[String]) -> Vec<String> {
    let mut out = BTreeSet::new();
    for name in names {
        match project.groups.get(name) {
            Some(group) => out.extend(group.members.iter().cloned()),
            None => {
                out.insert(name.clone());
            }
        }
    }
    out.into_iter().collect()
}

/// Per-approver approval links, when `[server] secret` is set (base: `base_url`, else `http://LISTEN`).
pub fn links(
    project: &Project,
    id: i64,
    approvers: &[String],
    deadline: Option<chrono::DateTime<Utc>>,
) -> Vec<(String, String)> {
    let Some(server) = &project.server else {
        return Vec::new();
    };
    let Some(secret) = &server.secret else {
        return Vec::new();
    };
    let base = server
        .base_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", server.listen));
    approvers
        .iter()
        .map(|a| {
            let token = crate::token::issue(secret.expose(), id, a, deadline);
            (a.clone(), format!("{base}/approvals/{id}?token={token}"))
        })
        .collect()
}
