//! Moves remediation runs along: requested → pending approval, and due approvals to their timeout.
//!
//! A scan's commit creates a `requested` run for each new or reopened finding
//! of a query with a remediation. [`process_requested`] claims such runs (a
//! lease, so several processes never take the same one), renders the approval's
//! subject and prompt, and opens the approval; [`settle_due`] applies timeouts,
//! including those whose deadline passed while vigilo was stopped.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};

use crate::approval::{Approval, OptionSpec, Transition};
use crate::config::{ApprovalConfig, Project, Remediation};
use crate::finding::Finding;
use crate::scan::Scanner;
use crate::store::ActionRecord;
use crate::store::{
    ActionOutcome, NewAction, NewApproval, NewMessage, RequestedRun, Store, StoreError,
};
use crate::template;
use crate::{action, notify};

/// How long a claim on a requested run lasts before another process may take it.
const CLAIM_LEASE: Duration = Duration::from_secs(60);

/// How long a run whose recheck could not run waits before the next attempt.
const RECHECK_RETRY: Duration = Duration::from_secs(5);

/// How many requested runs one pass claims.
const CLAIM_BATCH: usize = 100;

/// How many actions (or AWS users' groups of actions) run at once: enough to keep a remote
/// API busy without flooding it; AWS answers throttling with retries.
const ACTION_CONCURRENCY: usize = 8;

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
    /// Runs that could not go on, with why: failed for good, or (a recheck that could not run) deferred.
    pub failed: Vec<(i64, String)>,
    /// Runs whose actions and messages were recorded (planned).
    pub planned: usize,
}

/// Frees the claims of processes on this machine that are gone (killed mid-pass), so their
/// work is taken up at once instead of when their leases run out.
pub async fn release_dead_claims(store: &dyn Store) -> Result<Vec<String>, RemediateError> {
    let mut released = Vec::new();
    for holder in store.claim_holders().await? {
        if crate::fleet::owner_is_gone(&holder) {
            let n = store.release_claims(&holder).await?;
            tracing::warn!(owner = %holder, claims = n, "released the claims of a process that is gone");
            released.push(holder);
        }
    }
    Ok(released)
}

/// A pause for crash tests: when `VIGILO_PAUSE_AT` names `point`, say so on stderr and stop
/// here for good, so a test can SIGKILL the process at exactly this point.
pub fn pause_point(point: &str) {
    static AT: std::sync::LazyLock<Option<String>> =
        std::sync::LazyLock::new(|| std::env::var("VIGILO_PAUSE_AT").ok());
    if AT.as_deref() == Some(point) {
        eprintln!("vigilo: paused at {point} (VIGILO_PAUSE_AT)");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

/// Opens the approval of every requested run whose remediation asks for one, and plans the
/// actions of those that need none (auto-remediation).
pub async fn process_requested(scanner: &Scanner, owner: &str) -> Result<Progress, RemediateError> {
    let (project, store) = (scanner.project().as_ref(), scanner.store().as_ref());
    let mut progress = Progress::default();
    let mut plans = Vec::new();
    for run in store
        .claim_requested(owner, CLAIM_LEASE, CLAIM_BATCH)
        .await?
    {
        let Some(remediation) = project.remediations.get(&run.remediation) else {
            let why = format!(
                "remediation {} is no longer in the project",
                run.remediation
            );
            give_up(store, owner, run.run_id, why, &mut progress).await?;
            continue;
        };
        let Some(approval) = &remediation.approval else {
            // Auto-remediation: the actions without `when` run at once.
            let ctx = context(project, &run.finding);
            match Plan::render(project, remediation, None, &ctx, run.run_id, run.finding) {
                Ok(plan) => plans.push(plan),
                Err((id, e)) => give_up(store, owner, id, e, &mut progress).await?,
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
            Err(e) => give_up(store, owner, run.run_id, e, &mut progress).await?,
        }
    }
    record_plans(scanner, owner, plans, &mut progress).await?;
    Ok(progress)
}

/// Plans the actions of every decided run: the decision's actions and messages, rendered and
/// recorded (after `recheck`, and as skipped under `dry_run`).
pub async fn plan_decided(scanner: &Scanner, owner: &str) -> Result<Progress, RemediateError> {
    let (project, store) = (scanner.project().as_ref(), scanner.store().as_ref());
    let mut progress = Progress::default();
    let mut plans = Vec::new();
    for run in store.claim_decided(owner, CLAIM_LEASE, CLAIM_BATCH).await? {
        let Some(remediation) = project.remediations.get(&run.remediation) else {
            let why = format!(
                "remediation {} is no longer in the project",
                run.remediation
            );
            give_up(store, owner, run.run_id, why, &mut progress).await?;
            continue;
        };
        let mut ctx = context(project, &run.finding);
        let decision = run
            .approval
            .as_ref()
            .filter(|a| a.decision.is_some())
            .map(|a| a.values.clone());
        if let Some(a) = &run.approval {
            ctx["approval"] = json!({
                "id": a.id,
                "decision": a.decision,
                "value": a.decision,
                "values": a.values,
                "decided_by": a.decided_by.join(", "),
                "decided_at": a.decided_at.as_ref().map(crate::timestamp::rfc3339),
                "votes": a.votes,
                "subject": a.subject,
            });
        }
        match Plan::render(
            project,
            remediation,
            decision.as_deref(),
            &ctx,
            run.run_id,
            run.finding,
        ) {
            Ok(plan) => plans.push(plan),
            Err((id, e)) => give_up(store, owner, id, e, &mut progress).await?,
        }
    }
    record_plans(scanner, owner, plans, &mut progress).await?;
    Ok(progress)
}

/// A claimed run's rendered actions and messages, before they are recorded.
struct Plan<'p> {
    run_id: i64,
    finding: Finding,
    remediation: &'p Remediation,
    actions: Vec<NewAction>,
    messages: Vec<NewMessage>,
}

impl<'p> Plan<'p> {
    /// Renders what `decision` triggers; the error names the run.
    fn render(
        project: &Project,
        remediation: &'p Remediation,
        decision: Option<&[String]>,
        ctx: &Value,
        run_id: i64,
        finding: Finding,
    ) -> Result<Plan<'p>, (i64, String)> {
        let actions = action::render(remediation, decision, ctx).map_err(|e| (run_id, e))?;
        let messages = crate::outbox::for_decision(project, remediation, decision, ctx)
            .map_err(|e| (run_id, e))?;
        Ok(Plan {
            run_id,
            finding,
            remediation,
            actions,
            messages,
        })
    }
}

/// Applies `recheck` and `dry_run` to the plans, then records each (a run whose recheck
/// could not run stays claimed until its lease ends, and is tried again).
async fn record_plans(
    scanner: &Scanner,
    owner: &str,
    mut plans: Vec<Plan<'_>>,
    progress: &mut Progress,
) -> Result<(), RemediateError> {
    let gone = recheck(scanner, &plans).await;
    for plan in &mut plans {
        match gone.get(&plan.run_id) {
            Some(Err(e)) => {
                tracing::error!(run = plan.run_id, error = %e, "recheck failed; the run is tried again later");
                let again =
                    Utc::now() + chrono::Duration::from_std(RECHECK_RETRY).unwrap_or_default();
                scanner.store().defer_run(owner, plan.run_id, again).await?;
                progress.failed.push((
                    plan.run_id,
                    format!(
                        "recheck failed, tried again in {}s: {e}",
                        RECHECK_RETRY.as_secs()
                    ),
                ));
                continue;
            }
            Some(Ok(Rechecked::Gone(why))) => {
                tracing::info!(
                    run = plan.run_id,
                    finding = plan.finding.id,
                    "{why}; actions skipped"
                );
                for a in &mut plan.actions {
                    a.skip = Some(json!({"skipped": why, "recheck": "gone"}));
                }
                // The messages speak of acting; nothing was done.
                plan.messages.clear();
            }
            Some(Ok(Rechecked::Unchanged)) => {
                // The row the actions were rendered from is the row as it is now.
                let at = crate::timestamp::rfc3339(&Utc::now());
                for a in &mut plan.actions {
                    if a.params.get(action::CURRENT_STATUS).is_some() {
                        a.params[action::CURRENT_STATUS_AT] = json!(at);
                    }
                }
            }
            Some(Ok(Rechecked::Changed)) | None => {}
        }
        if plan.remediation.dry_run {
            for a in plan.actions.iter_mut().filter(|a| a.skip.is_none()) {
                let call = crate::redact::text(&action::describe(
                    &a.kind,
                    &a.params,
                    &scanner.project().aws_connections,
                ));
                println!(
                    "dry run: remediation {} (run {}), action {}: would call {call}",
                    plan.remediation.name, plan.run_id, a.position
                );
                a.skip = Some(
                    json!({"skipped": "dry run", "dry_run": true, "would_call": call, "params": a.params}),
                );
            }
            for m in &mut plan.messages {
                m.text = m.text.as_ref().map(|t| format!("[dry run] {t}"));
            }
        }
        let (actions, messages) = (
            std::mem::take(&mut plan.actions),
            std::mem::take(&mut plan.messages),
        );
        if scanner
            .store()
            .plan_actions(owner, plan.run_id, actions, messages)
            .await?
        {
            progress.planned += 1;
        }
    }
    Ok(())
}

/// What a recheck found of a finding.
enum Rechecked {
    /// No longer in its query's result, with why.
    Gone(String),
    /// In the result, with the row the finding holds.
    Unchanged,
    /// In the result, with a row that differs from the finding's.
    Changed,
}

/// For each plan of a `recheck = true` remediation with actions: whether its finding is still
/// in its query's result, and with the same row, or `Err` when the query could not run. One
/// query run per query, however many findings it checks.
async fn recheck(scanner: &Scanner, plans: &[Plan<'_>]) -> HashMap<i64, Result<Rechecked, String>> {
    let mut by_query: BTreeMap<&str, Vec<&Plan<'_>>> = BTreeMap::new();
    for p in plans
        .iter()
        .filter(|p| p.remediation.recheck && !p.actions.is_empty())
    {
        by_query
            .entry(p.finding.query.as_str())
            .or_default()
            .push(p);
    }
    let mut out = HashMap::new();
    for (name, plans) in by_query {
        let Some(query) = scanner.project().queries.get(name) else {
            let why = format!(
                "recheck: query {name} is no longer in the project, so the finding cannot be confirmed"
            );
            out.extend(
                plans
                    .iter()
                    .map(|p| (p.run_id, Ok(Rechecked::Gone(why.clone())))),
            );
            continue;
        };
        let keys: Vec<&serde_json::Map<String, Value>> =
            plans.iter().map(|p| &p.finding.key).collect();
        match scanner.present(query, &keys).await {
            Ok(present) => {
                let at = crate::timestamp::rfc3339(&Utc::now());
                for (p, row) in plans.iter().zip(present) {
                    let found = match row {
                        None => Rechecked::Gone(format!(
                            "recheck: finding {} is no longer in the result of query {name} (checked {at})",
                            p.finding.id
                        )),
                        Some(row) if row == p.finding.row => Rechecked::Unchanged,
                        Some(_) => Rechecked::Changed,
                    };
                    out.insert(p.run_id, Ok(found));
                }
            }
            Err(e) => out.extend(plans.iter().map(|p| (p.run_id, Err(e.to_string())))),
        }
    }
    out
}

/// Settles actions left `started` by a process that is gone (see [`action::settle_started`]):
/// an AWS key is read, not called again; an http action becomes `unknown`, for a person to
/// `vigilo retry`. Returns the settled action ids.
pub async fn settle_started(
    store: &dyn Store,
    owner: &str,
    targets: &action::Targets,
) -> Result<Vec<i64>, RemediateError> {
    let now = Utc::now();
    let mut settled = Vec::new();
    for a in store.started_actions().await? {
        let gone = a
            .claimed_by
            .as_deref()
            .is_none_or(crate::fleet::owner_is_gone)
            || a.claim_expires.is_some_and(|until| until < now);
        // One process settles it: the one whose claim on it lands first.
        if !gone || !store.claim_started(owner, &a, action_lease()).await? {
            continue;
        }
        tracing::warn!(action = a.id, kind = %a.kind, "action was started by a process that is gone; settling it");
        match action::settle_started(targets, &a).await {
            action::Settlement::Outcome(outcome) => {
                store.finish_action(a.id, outcome.redacted()).await?;
            }
            action::Settlement::Rerun(why) => {
                tracing::warn!(action = a.id, "{why}");
                store.rerun_started(owner, a.id, &why).await?;
            }
        }
        settled.push(a.id);
    }
    Ok(settled)
}

/// How long a process holds an action it started: every call it may make, with the SDK's retries.
fn action_lease() -> Duration {
    action::HTTP_TIMEOUT.max(crate::aws::OPERATION_TIMEOUT) * 3 + Duration::from_secs(30)
}

/// Runs every pending action this process can claim; returns (action id, outcome).
pub async fn execute_pending(
    store: &dyn Store,
    owner: &str,
    targets: &action::Targets,
) -> Result<Vec<(i64, ActionOutcome)>, RemediateError> {
    use futures::StreamExt;
    let lease = action_lease();
    // Actions of one group (an AWS user's keys) run in order, sharing one read; different
    // groups (and every other action) run side by side, at most ACTION_CONCURRENCY.
    let claimed = store.claim_actions(owner, lease, CLAIM_BATCH).await?;
    // Targets that one call can read for many actions (security groups) are read before any
    // action of the batch starts; each action takes its target's read as its own.
    let ahead = std::sync::Arc::new(action::read_ahead(targets, &claimed).await);
    if !ahead.is_empty() {
        tracing::debug!(actions = ahead.len(), "targets read ahead");
    }
    let mut groups: Vec<Vec<ActionRecord>> = Vec::new();
    let mut group_index: HashMap<String, usize> = HashMap::new();
    for a in claimed {
        match action::group_of(&a) {
            Some(group) => match group_index.get(&group) {
                Some(&g) => groups[g].push(a),
                None => {
                    group_index.insert(group, groups.len());
                    groups.push(vec![a]);
                }
            },
            None => groups.push(vec![a]),
        }
    }
    let results: Vec<Result<Vec<(i64, ActionOutcome)>, RemediateError>> =
        futures::stream::iter(groups)
            .map(|group| execute_group(store, owner, targets, lease, group, ahead.clone()))
            .buffer_unordered(ACTION_CONCURRENCY)
            .collect()
            .await;
    let mut done = Vec::new();
    for r in results {
        done.extend(r?);
    }
    done.sort_by_key(|(id, _)| *id);
    Ok(done)
}

/// Runs claimed actions one after another (the actions of one group, or a single action).
async fn execute_group(
    store: &dyn Store,
    owner: &str,
    targets: &action::Targets,
    lease: Duration,
    group: Vec<ActionRecord>,
    ahead: std::sync::Arc<action::ReadAhead>,
) -> Result<Vec<(i64, ActionOutcome)>, RemediateError> {
    let mut pass = action::Pass::with(ahead);
    let mut done = Vec::new();
    for a in group {
        pause_point("action.before_start");
        // Read first (an AWS key's status): what is already done or gone is not called.
        let prepared = action::prepare(targets, &a, &mut pass).await;
        let observed = match &prepared {
            action::Prepared::Call(observed) => observed.clone().map(crate::redact::json),
            action::Prepared::Done(_) => None,
        };
        // Committed before the call: a crash from here on leaves the action `started`, never silently repeated.
        if !store.start_action(owner, a.id, lease, observed).await? {
            continue;
        }
        pause_point("action.after_start");
        let outcome = match prepared {
            action::Prepared::Done(outcome) => outcome,
            action::Prepared::Call(observed) => action::execute(targets, &a, observed).await,
        }
        .redacted();
        pause_point("action.after_call");
        match &outcome {
            ActionOutcome::Failed(e) => {
                tracing::error!(action = a.id, kind = %a.kind, error = %e, "action failed")
            }
            _ => tracing::info!(action = a.id, kind = %a.kind, "action finished"),
        }
        action::note(&mut pass, &a, &outcome);
        store.finish_action(a.id, outcome.clone()).await?;
        done.push((a.id, outcome));
    }
    Ok(done)
}

/// Everything that moves remediations along, in order: timeouts, crashed actions, new approvals,
/// decided runs' actions, running them, and delivering due messages.
pub async fn step(
    scanner: &Scanner,
    owner: &str,
    targets: &action::Targets,
) -> Result<(Progress, Vec<(i64, ActionOutcome)>), RemediateError> {
    let (project, store) = (scanner.project().as_ref(), scanner.store().as_ref());
    let progress = plan_step(scanner, owner, targets).await?;
    let ran = execute_pending(store, owner, targets).await?;
    notify::deliver(project, store, owner, &targets.http).await?;
    Ok((progress, ran))
}

/// [`step`] up to running actions: timeouts, due acceptances, crashed actions settled, new
/// approvals opened, decided runs' actions planned. `vigilo run` calls it and
/// [`execute_pending`] in loops of their own, so that a batch of calls never waits for
/// planning or message delivery, nor they for it.
pub async fn plan_step(
    scanner: &Scanner,
    owner: &str,
    targets: &action::Targets,
) -> Result<Progress, RemediateError> {
    let (project, store) = (scanner.project().as_ref(), scanner.store().as_ref());
    release_dead_claims(store).await?;
    settle_due(store).await?;
    expire_acceptances(project, store).await?;
    settle_started(store, owner, targets).await?;
    let mut progress = process_requested(scanner, owner).await?;
    let decided = plan_decided(scanner, owner).await?;
    progress.failed.extend(decided.failed);
    progress.planned += decided.planned;
    Ok(progress)
}

/// [`step`] again and again until one finds nothing to do (a step takes a batch of runs and
/// actions), so every new finding's remediation has started and auto-remediations have run.
pub async fn step_until_idle(
    scanner: &Scanner,
    owner: &str,
    targets: &action::Targets,
) -> Result<(Progress, Vec<(i64, ActionOutcome)>), RemediateError> {
    let (mut progress, mut ran) = (Progress::default(), Vec::new());
    loop {
        let (more, more_ran) = step(scanner, owner, targets).await?;
        if more.opened.is_empty() && more.failed.is_empty() && more_ran.is_empty() {
            return Ok((progress, ran));
        }
        progress.opened.extend(more.opened);
        progress.failed.extend(more.failed);
        progress.planned += more.planned;
        ran.extend(more_ran);
    }
}

/// Ends a run that cannot go on (its templates do not render, its remediation is gone) as
/// `failed`, with `remediation.failed` in the audit trail; nothing was done.
async fn give_up(
    store: &dyn Store,
    owner: &str,
    run_id: i64,
    error: String,
    progress: &mut Progress,
) -> Result<(), RemediateError> {
    tracing::error!(run = run_id, error = %error, "remediation run failed; nothing was done");
    if store.fail_run(owner, run_id, &error).await? {
        progress.failed.push((run_id, error));
    }
    Ok(())
}

/// How many due acceptances one pass ends.
const ACCEPTANCE_BATCH: usize = 100;

/// Ends every acceptance whose time is up: the finding is open again (its row was in the
/// query's latest result, or it would have resolved) and its query's remediation starts anew.
/// Returns (finding id, new run id).
pub async fn expire_acceptances(
    project: &Project,
    store: &dyn Store,
) -> Result<Vec<(i64, Option<i64>)>, RemediateError> {
    let now = Utc::now();
    let mut out = Vec::new();
    for due in store.due_acceptances(now, ACCEPTANCE_BATCH).await? {
        let remediation = project
            .queries
            .get(&due.query)
            .and_then(|q| q.remediation.as_deref());
        if let Some(run) = store
            .end_acceptance(due.finding_id, remediation, now)
            .await?
        {
            tracing::info!(
                finding = due.finding_id,
                until = %crate::timestamp::rfc3339(&due.until),
                "risk acceptance ended; the finding is open again"
            );
            out.push((due.finding_id, run));
        }
    }
    Ok(out)
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
        subject: crate::redact::text(&render("approval.subject", &a.subject)?),
        prompt: crate::redact::text(&render("approval.prompt", &a.prompt)?),
        options: a
            .options
            .iter()
            .map(|o| OptionSpec {
                value: o.value.clone(),
                label: o.label.clone(),
                style: o.style.clone(),
                required: o.required,
                accept_for: o.accept_for.clone(),
            })
            .collect(),
        input: a.input.clone(),
        approvers: expand_approvers(project, &a.approvers),
        requested_by: run.requested_by.clone(),
        allow_self_approval: a.allow_self_approval,
        requested_at: now,
        deadline: a
            .timeout
            .and_then(|t| chrono::Duration::from_std(t).ok())
            .map(|t| now + t),
        on_timeout: a.on_timeout.clone(),
        messages: crate::outbox::for_notifier(
            project,
            &a.notifier,
            crate::store::events::APPROVAL_REQUESTED,
            None,
        ),
    })
}

/// What remediation `name` would do for a new finding of `query` (`vigilo scan --dry-run`): the approval it would ask for, and per option the exact calls it would make
/// (the actions without `when`, when it asks for none). Secrets are masked.
pub fn preview(
    project: &Project,
    name: &str,
    query: &str,
    new: &crate::scan::DryFinding,
) -> Vec<String> {
    let Some(remediation) = project.remediations.get(name) else {
        return vec![format!("remediation {name} is not in the project")];
    };
    let now = Utc::now();
    let finding = Finding {
        id: new.id.unwrap_or(0),
        query: query.to_string(),
        key: new.key.clone(),
        status: crate::finding::Status::Open,
        severity: project
            .queries
            .get(query)
            .map(|q| q.severity)
            .unwrap_or_default(),
        first_seen: now,
        last_seen: now,
        resolved_at: None,
        reopened: 0,
        row: new.row.clone(),
        accepted_until: None,
        accepted_by: None,
        accepted_reason: None,
    };
    let ctx = context(project, &finding);
    let calls = |decision: Option<&[String]>| -> Vec<String> {
        match action::render(remediation, decision, &ctx) {
            Err(e) => vec![format!("cannot render its actions: {e}")],
            Ok(actions) if actions.is_empty() => vec!["nothing is called".into()],
            Ok(actions) => actions
                .iter()
                .map(|a| {
                    format!(
                        "would call {}",
                        action::describe(&a.kind, &a.params, &project.aws_connections)
                    )
                })
                .collect(),
        }
    };
    let mut lines = Vec::new();
    match &remediation.approval {
        None => lines.extend(calls(None)),
        Some(a) => {
            let subject = template::render(&a.subject, &ctx)
                .unwrap_or_else(|e| format!("(subject does not render: {e})"));
            lines.push(format!(
                "ask {} for approval: {subject}",
                expand_approvers(project, &a.approvers).join(", ")
            ));
            for o in &a.options {
                lines.extend(
                    calls(Some(std::slice::from_ref(&o.value)))
                        .into_iter()
                        .map(|c| format!("if {}: {c}", o.value)),
                );
            }
            if a.input.kind == crate::approval::InputKind::Text {
                // Actions without `when` run on any text; `approval.value` is the answer.
                let any = remediation.actions.iter().any(|x| x.when.is_none());
                if any {
                    lines.push("on any text answer: the actions without `when` run".into());
                }
            }
        }
    }
    if remediation.dry_run {
        lines.push(
            "(the remediation has dry_run = true: it records these calls and makes none)".into(),
        );
    }
    lines.into_iter().map(|l| crate::redact::text(&l)).collect()
}

pub use crate::outcome::runs_actions;

/// The option `vigilo approve` (`word` = "approve") or `vigilo deny` ("deny") votes on `a`:
/// the option of that name, else the one option that runs actions (approve) or runs none (deny).
pub fn shorthand_option(project: &Project, a: &Approval, word: &str) -> Result<String, String> {
    if a.options.iter().any(|o| o.value == word) {
        return Ok(word.to_string());
    }
    let acting = word == "approve";
    let candidates: Vec<&str> = a
        .options
        .iter()
        .map(|o| o.value.as_str())
        .filter(|o| runs_actions(project, &a.remediation, o) == acting)
        .collect();
    match candidates[..] {
        [one] => Ok(one.to_string()),
        _ => {
            let all: Vec<&str> = a.options.iter().map(|o| o.value.as_str()).collect();
            Err(format!(
                "approval {} has no option {word:?}, and {} of its options ({}) {} actions; choose one with `vigilo respond {} OPTION`",
                a.id,
                if candidates.is_empty() {
                    "none".to_string()
                } else {
                    format!("{}", candidates.len())
                },
                all.join(", "),
                if acting { "run" } else { "run no" },
                a.id
            ))
        }
    }
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
