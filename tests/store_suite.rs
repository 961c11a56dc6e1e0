//! One suite, two state stores: SQLite and PostgreSQL must behave the same.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{Duration, Utc};
use serde_json::{Value, json};
use vigilo::config::{FirstRun, Query, Severity, StoreUrl};
use vigilo::diff::{Changes, Diff};
use vigilo::finding::Status;
use vigilo::store::{self, FindingFilter, RunCommit, RunRecord, RunStatus, Store, StoreError};

fn query(name: &str, first: FirstRun) -> Query {
    Query {
        name: name.into(),
        title: name.into(),
        database: "db".into(),
        schedule: None,
        primary_key: vec!["id".into()],
        ignore_columns: vec!["age".into()],
        remediation: None,
        notify: None,
        on_first_run: first,
        severity: Severity::High,
        enabled: true,
        sql: String::new(),
        path: PathBuf::from(format!("queries/{name}.sql")),
    }
}

fn row(id: &str, v: i64) -> Vec<Value> {
    vec![json!(id), json!(v), json!(1)]
}

/// Diffs `rows` against the store's current snapshot.
async fn diff(store: &dyn Store, q: &Query, rows: &[Vec<Value>]) -> Changes {
    let cols = vec!["id".to_string(), "v".to_string(), "age".to_string()];
    let snapshot = store.load_snapshot(&q.name).await.unwrap();
    let mut d = Diff::new(q, &cols, snapshot).unwrap();
    for r in rows {
        d.push(r.clone()).unwrap();
    }
    d.finish().unwrap()
}

fn record(q: &Query, c: &Changes, status: RunStatus, minutes_ago: i64) -> RunRecord {
    let started_at = Utc::now() - Duration::minutes(minutes_ago);
    RunRecord {
        id: 0,
        query: q.name.clone(),
        started_at,
        finished_at: started_at + Duration::seconds(1),
        status,
        rows: c.rows,
        inserted: c.inserted.len() as u64,
        updated: c.updated.len() as u64,
        deleted: c.deleted.len() as u64,
        baseline: c.baseline,
        error: (status == RunStatus::Failed).then(|| "boom".to_string()),
        tick: None,
    }
}

/// Commits `changes` as a successful run that started `minutes_ago`.
async fn try_commit(
    store: &dyn Store,
    q: &Query,
    changes: Changes,
    minutes_ago: i64,
) -> Result<store::CommitOutcome, StoreError> {
    let run = record(q, &changes, RunStatus::Succeeded, minutes_ago);
    store
        .commit_run(RunCommit {
            run,
            severity: q.severity,
            remediation: q.remediation.clone(),
            changes,
            notify: q.notify.iter().map(|n| message(n, None)).collect(),
        })
        .await
}

/// A message to `notifier`'s webhook (the event is set by whoever queues it).
fn message(notifier: &str, text: Option<&str>) -> store::NewMessage {
    store::NewMessage {
        event: "remediation.message".into(),
        notifier: notifier.into(),
        integration: "webhook.ops".into(),
        destination: json!({}),
        text: text.map(str::to_string),
    }
}

/// Diffs and commits `rows` as a run that started `minutes_ago`.
async fn commit(
    store: &dyn Store,
    q: &Query,
    rows: &[Vec<Value>],
    minutes_ago: i64,
) -> store::CommitOutcome {
    let changes = diff(store, q, rows).await;
    try_commit(store, q, changes, minutes_ago).await.unwrap()
}

async fn findings(
    store: &dyn Store,
    q: &Query,
    status: Option<Status>,
) -> Vec<vigilo::finding::Finding> {
    store
        .findings(&FindingFilter {
            query: Some(q.name.clone()),
            status,
        })
        .await
        .unwrap()
}

async fn lifecycle(store: &dyn Store) {
    let q = query("lifecycle", FirstRun::Insert);
    assert!(
        store.load_snapshot(&q.name).await.unwrap().is_none(),
        "no snapshot before the first run"
    );

    let out = commit(store, &q, &[row("a", 1), row("b", 1)], 50).await;
    assert_eq!(out.opened.len(), 2, "first run opens a finding per row");
    let snap = store.load_snapshot(&q.name).await.unwrap().unwrap();
    assert_eq!((snap.generation, snap.len()), (1, 2));
    let open = findings(store, &q, Some(Status::Open)).await;
    assert_eq!(open.len(), 2);
    assert_eq!(open[0].key, json!({"id": "a"}).as_object().unwrap().clone());
    assert_eq!(open[0].row["v"], json!(1));
    assert_eq!(open[0].severity, Severity::High);
    assert!(open[0].resolved_at.is_none());

    // Same rows: nothing opens, generation moves, last_seen follows the run.
    let out = commit(store, &q, &[row("a", 1), row("b", 1)], 40).await;
    assert!(out.opened.is_empty() && out.resolved.is_empty());
    assert_eq!(
        store
            .load_snapshot(&q.name)
            .await
            .unwrap()
            .unwrap()
            .generation,
        2
    );
    let a = &findings(store, &q, Some(Status::Open)).await[0];
    assert!(
        a.last_seen > a.first_seen,
        "last_seen follows the latest run that saw the key"
    );

    // b changes: updated in place.
    let out = commit(store, &q, &[row("a", 1), row("b", 2)], 30).await;
    assert_eq!(out.updated, 1);
    let b = findings(store, &q, None)
        .await
        .into_iter()
        .find(|f| f.key["id"] == "b")
        .unwrap();
    assert_eq!(b.row["v"], json!(2));

    // b leaves: resolved, with resolved_at; last_seen is the previous run.
    let out = commit(store, &q, &[row("a", 1)], 20).await;
    assert_eq!(out.resolved, vec![b.id]);
    let b2 = store.finding(b.id).await.unwrap().unwrap();
    assert_eq!(b2.status, Status::Resolved);
    let resolved_at = b2.resolved_at.expect("resolved_at");
    assert!(b2.last_seen < resolved_at);

    // b comes back: the same finding reopens.
    let out = commit(store, &q, &[row("a", 1), row("b", 3)], 10).await;
    assert_eq!(out.reopened, vec![b.id]);
    assert!(out.opened.is_empty());
    let b3 = store.finding(b.id).await.unwrap().unwrap();
    assert_eq!(
        (b3.status, b3.reopened, b3.resolved_at),
        (Status::Open, 1, None)
    );
    assert_eq!(b3.row["v"], json!(3));

    // Zero rows resolves everything.
    let out = commit(store, &q, &[], 5).await;
    assert_eq!(out.resolved.len(), 2);
    assert!(findings(store, &q, Some(Status::Open)).await.is_empty());
    assert_eq!(
        store.load_snapshot(&q.name).await.unwrap().unwrap().len(),
        0
    );

    let runs = store.runs(Some(&q.name), 10).await.unwrap();
    assert_eq!(runs.len(), 6);
    assert_eq!(runs[0].deleted, 2, "newest first");
    assert!(runs.iter().all(|r| r.status == RunStatus::Succeeded));
}

async fn baseline(store: &dyn Store) {
    let q = query("baseline", FirstRun::Baseline);
    let out = commit(store, &q, &[row("a", 1), row("b", 1)], 10).await;
    assert!(out.opened.is_empty(), "a baseline run opens nothing");
    assert_eq!(
        store.load_snapshot(&q.name).await.unwrap().unwrap().len(),
        2
    );
    assert!(findings(store, &q, None).await.is_empty());
    assert!(store.runs(Some(&q.name), 1).await.unwrap()[0].baseline);
    // After the baseline, a new key is a finding.
    let out = commit(store, &q, &[row("a", 1), row("b", 1), row("c", 1)], 5).await;
    assert_eq!(out.opened.len(), 1);
    // A baseline key leaving resolves nothing (it never was a finding).
    let out = commit(store, &q, &[row("b", 1), row("c", 1)], 1).await;
    assert!(out.resolved.is_empty());
}

async fn conflict(store: &dyn Store) {
    let q = query("conflict", FirstRun::Insert);
    commit(store, &q, &[row("a", 1)], 10).await;
    // Two runs diff against the same snapshot; the second to commit loses and changes nothing.
    let first = diff(store, &q, &[row("a", 1), row("b", 1)]).await;
    let second = diff(store, &q, &[]).await;
    try_commit(store, &q, first, 2).await.unwrap();
    let err = try_commit(store, &q, second, 1).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    assert_eq!(
        findings(store, &q, Some(Status::Open)).await.len(),
        2,
        "the losing run resolved nothing"
    );
    assert_eq!(
        store
            .load_snapshot(&q.name)
            .await
            .unwrap()
            .unwrap()
            .generation,
        2
    );

    // Two racing first runs: one wins.
    let q2 = query("conflict_first", FirstRun::Insert);
    let a = diff(store, &q2, &[row("a", 1)]).await;
    let b = diff(store, &q2, &[row("b", 1)]).await;
    try_commit(store, &q2, a, 1).await.unwrap();
    let err = try_commit(store, &q2, b, 1).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
}

async fn failed_runs_change_nothing(store: &dyn Store) {
    let q = query("failing", FirstRun::Insert);
    commit(store, &q, &[row("a", 1)], 10).await;
    let before = store
        .load_snapshot(&q.name)
        .await
        .unwrap()
        .unwrap()
        .generation;
    let empty = Changes::default();
    let id = store
        .record_failed_run(&record(&q, &empty, RunStatus::Failed, 1))
        .await
        .unwrap();
    assert!(id > 0);
    let runs = store.runs(Some(&q.name), 10).await.unwrap();
    assert_eq!(runs[0].status, RunStatus::Failed);
    assert_eq!(runs[0].error.as_deref(), Some("boom"));
    assert_eq!(
        store
            .load_snapshot(&q.name)
            .await
            .unwrap()
            .unwrap()
            .generation,
        before
    );
    assert_eq!(findings(store, &q, Some(Status::Open)).await.len(), 1);
}

async fn reset(store: &dyn Store) {
    let q = query("reset", FirstRun::Insert);
    commit(store, &q, &[row("a", 1), row("b", 1)], 10).await;
    assert_eq!(store.reset_query(&q.name).await.unwrap(), 2);
    assert!(
        store.load_snapshot(&q.name).await.unwrap().is_none(),
        "next run is a first run"
    );
    assert_eq!(
        findings(store, &q, Some(Status::Open)).await.len(),
        2,
        "findings are kept"
    );
    // The first run after a reset: a still-present key keeps its open finding, an absent one resolves.
    let out = commit(store, &q, &[row("a", 1)], 1).await;
    assert!(out.opened.is_empty() && out.reopened.is_empty());
    assert_eq!(out.refreshed, 1);
    assert_eq!(out.resolved.len(), 1);
    assert_eq!(store.reset_query("never_ran").await.unwrap(), 0);
}

/// Commits with more finding events than one audit batch (5,000; both stores chain full
/// batches on a second thread): every event is in the trail once, in the order the commit
/// made them, and a run's new findings are numbered in key-hash order.
async fn large_commits(store: &dyn Store) {
    let q = query("large", FirstRun::Insert);
    let n = 11_234;
    let mut rows: Vec<Vec<Value>> = (0..n).map(|i| row(&format!("k{i}"), 0)).collect();
    let (seq_before, before) = store.audit_head().await.unwrap();
    let opened = commit(store, &q, &rows, 10).await;
    assert_eq!(opened.opened.len(), n);
    let all = findings(store, &q, None).await;
    assert_eq!(all.len(), n);
    let hashes: Vec<_> = all
        .iter()
        .map(|f| vigilo::diff::key_hash_of(&[f.key["id"].clone()]))
        .collect();
    assert!(
        hashes.windows(2).all(|w| w[0] < w[1]),
        "ids in key-hash order"
    );

    // 5,200 changed, 5,500 gone, 10 new: three kinds of event across batch boundaries.
    for r in &mut rows[..5_200] {
        r[1] = json!(1);
    }
    rows.truncate(n - 5_500);
    rows.extend((n..n + 10).map(|i| row(&format!("k{i}"), 0)));
    let churn = commit(store, &q, &rows, 5).await;
    assert_eq!(
        (churn.opened.len(), churn.updated, churn.resolved.len()),
        (10, 5_200, 5_500)
    );

    let entries = store.audit_page(seq_before, 100_000).await.unwrap();
    assert_eq!(
        entries.first().map(|e| e.prev_hash.as_str()),
        Some(before.as_str())
    );
    // The kinds in runs: (kind, how many in a row).
    let mut kinds: Vec<(&str, usize)> = Vec::new();
    for e in &entries {
        match kinds.last_mut() {
            Some((kind, count)) if *kind == e.kind => *count += 1,
            _ => kinds.push((&e.kind, 1)),
        }
    }
    assert_eq!(
        kinds,
        [
            ("finding.opened", n + 10),
            ("finding.updated", 5_200),
            ("finding.resolved", 5_500)
        ]
    );
    // Each entry names its finding, in the order the commit wrote them.
    let first_run: Vec<i64> = entries[..n].iter().map(|e| e.finding_id.unwrap()).collect();
    assert_eq!(first_run, all.iter().map(|f| f.id).collect::<Vec<_>>());
    let keys = |range: std::ops::Range<usize>| -> Vec<String> {
        entries[range]
            .iter()
            .map(|e| e.data["key"]["id"].as_str().unwrap().to_string())
            .collect()
    };
    let mut resolved = keys(n + 10 + 5_200..entries.len());
    resolved.sort();
    let mut gone: Vec<String> = (n - 5_500..n).map(|i| format!("k{i}")).collect();
    gone.sort();
    assert_eq!(resolved, gone);
    assert!(entries.iter().all(|e| e.data["query"] == "large"));
    let (head, _) = store.audit_head().await.unwrap();
    assert_eq!(head, seq_before + entries.len() as i64);

    // After a reset every key is new again, and every one has a finding: in key-hash order
    // too, each is matched to its own (the gone ones reopened, the rest refreshed).
    store.reset_query("large").await.unwrap();
    let rows: Vec<Vec<Value>> = (0..n + 10).map(|i| row(&format!("k{i}"), 0)).collect();
    let again = commit(store, &q, &rows, 1).await;
    assert_eq!(
        (again.opened.len(), again.reopened.len(), again.refreshed),
        (0, 5_500, (n + 10 - 5_500) as u64)
    );
    let (mut reopened, mut resolved) = (again.reopened.clone(), churn.resolved.clone());
    reopened.sort();
    resolved.sort();
    assert_eq!(reopened, resolved);
    let open = findings(store, &q, Some(Status::Open)).await;
    assert_eq!(open.len(), n + 10);
    assert!(open.iter().all(|f| f.row["v"] == 0), "every row refreshed");

    // One full batch and then a batch of gone keys that resolves nothing (they had no
    // findings: the query's first run was a baseline): the full batch is handed on when the
    // resolves begin and written at the end, with no event left after it, and the head
    // still moves to its last entry.
    let exact = query("exact", FirstRun::Baseline);
    let baseline: Vec<Vec<Value>> = (0..100).map(|i| row(&format!("b{i}"), 0)).collect();
    assert!(commit(store, &exact, &baseline, 2).await.opened.is_empty());
    let (seq_before, _) = store.audit_head().await.unwrap();
    let rows: Vec<Vec<Value>> = (0..5_000).map(|i| row(&format!("e{i}"), 0)).collect();
    let out = commit(store, &exact, &rows, 1).await;
    assert_eq!((out.opened.len(), out.resolved.len()), (5_000, 0));
    let entries = store.audit_page(seq_before, 100_000).await.unwrap();
    assert_eq!(entries.len(), 5_000);
    assert!(
        entries
            .iter()
            .all(|e| e.kind == "finding.opened" && e.data["query"] == "exact")
    );
    let last = &entries[4_999];
    assert_eq!(
        store.audit_head().await.unwrap(),
        (last.seq, last.hash.clone())
    );
}

/// Every change the suite made is in the audit trail, and the chain verifies up to the head.
async fn audit_chain_covers_every_change(store: &dyn Store) {
    let entries = store.audit_page(0, 100_000).await.unwrap();
    let mut verifier = vigilo::audit::Verifier::default();
    for e in &entries {
        verifier.check(e).unwrap();
    }
    let (head, hash) = store.audit_head().await.unwrap();
    assert_eq!(verifier.finish(head, &hash), Ok(entries.len() as i64));
    for kind in [
        "finding.opened",
        "finding.updated",
        "finding.resolved",
        "finding.reopened",
    ] {
        assert!(entries.iter().any(|e| e.kind == kind), "no {kind} entry");
    }
    let findings = store.findings(&FindingFilter::default()).await.unwrap();
    let opened = entries
        .iter()
        .filter(|e| e.kind == "finding.opened")
        .count();
    assert_eq!(opened, findings.len(), "one finding.opened per finding");
    // Losing a commit conflict appended nothing: every entry names a finding that exists.
    assert!(
        entries
            .iter()
            .all(|e| findings.iter().any(|f| Some(f.id) == e.finding_id))
    );
}

/// One append of events whose kind, actor and channel change from one to the next, and
/// return to an earlier value: each is stored as given (SQLite keeps a value bound while
/// the next entry shares it) and the trail still verifies.
async fn mixed_appends(store: &dyn Store) {
    use vigilo::audit::{Event, Kind};
    let (seq_before, _) = store.audit_head().await.unwrap();
    let event = |kind, actor: &str, channel: &str| Event {
        actor: actor.into(),
        approval_id: Some(7),
        ..Event::system(kind, channel, json!({"n": 1}))
    };
    let given = [
        (Kind::ApprovalVote, "alice", "slack"),
        (Kind::ApprovalVote, "bob", "slack"),
        (Kind::ApprovalVote, "bob", "web"),
        (Kind::ApprovalDecided, "bob", "web"),
        (Kind::ApprovalVote, "alice", "slack"),
    ];
    let events = given.iter().map(|&(k, a, c)| event(k, a, c)).collect();
    let seqs = store.append_audit(events).await.unwrap();
    assert_eq!(seqs.len(), given.len());
    let entries = store.audit_page(seq_before, 100).await.unwrap();
    let stored: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|e| (e.kind.as_str(), e.actor.as_str(), e.channel.as_str()))
        .collect();
    let expected: Vec<(&str, &str, &str)> =
        given.iter().map(|&(k, a, c)| (k.as_str(), a, c)).collect();
    assert_eq!(stored, expected);
    assert!(store::verify_audit(store).await.unwrap().is_ok());
}

/// Requested runs are claimed by one owner at a time; a lost claim opens nothing.
async fn claims(store: &dyn Store) {
    use std::time::Duration;
    let mut q = query("claims", FirstRun::Insert);
    q.remediation = Some("r".into());
    commit(store, &q, &[row("a", 1), row("b", 1)], 1).await;
    let a = store
        .claim_requested("host-a:1", Duration::from_secs(60), 10)
        .await
        .unwrap();
    assert_eq!(a.len(), 2, "one requested run per new finding");
    assert_eq!(a[0].remediation, "r");
    assert_eq!(a[0].finding.key["id"], "a");
    let b = store
        .claim_requested("host-b:2", Duration::from_secs(60), 10)
        .await
        .unwrap();
    assert!(
        b.is_empty(),
        "claimed runs are not handed out twice while the lease lasts"
    );
    let approval = |owner_run: i64| vigilo::store::NewApproval {
        run_id: owner_run,
        finding_id: a[0].finding.id,
        remediation: "r".into(),
        subject: "s".into(),
        prompt: "p".into(),
        options: vec![vigilo::approval::OptionSpec {
            value: "approve".into(),
            label: "Approve".into(),
            style: None,
            required: 1,
            accept_for: None,
        }],
        input: Default::default(),
        approvers: vec!["alice".into()],
        requested_by: None,
        allow_self_approval: false,
        requested_at: Utc::now(),
        deadline: None,
        on_timeout: None,
        messages: vec![message("security", None)],
    };
    assert_eq!(
        store
            .open_approval("host-b:2", approval(a[0].run_id))
            .await
            .unwrap(),
        None,
        "not b's claim"
    );
    let id = store
        .open_approval("host-a:1", approval(a[0].run_id))
        .await
        .unwrap()
        .expect("a's claim");
    assert_eq!(
        store
            .open_approval("host-a:1", approval(a[0].run_id))
            .await
            .unwrap(),
        None,
        "opened once"
    );
    // A claim lasts for its own lease, whatever lease another owner asks for.
    let taken = store
        .claim_requested("host-b:2", Duration::ZERO, 10)
        .await
        .unwrap();
    assert!(taken.is_empty(), "a's second run is still leased");
    let pending = store.approvals(true).await.unwrap();
    assert_eq!(pending.iter().filter(|p| p.id == id).count(), 1);
    let queued: Vec<_> = store
        .messages()
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.approval_id == Some(id))
        .collect();
    assert_eq!(queued.len(), 1, "the approval's message is queued with it");
    assert_eq!(queued[0].event, "remediation.message");
    assert_eq!(queued[0].run_id, Some(a[0].run_id));

    // Decided and planned: the approval's actions are read by the approval, one by id, and
    // the newest first.
    assert!(
        store.actions_of_approval(id).await.unwrap().is_empty(),
        "none before planning"
    );
    let vote = vigilo::approval::Vote::new("alice", vec!["approve".into()], "cli");
    assert!(store.vote(id, vote).await.unwrap().is_ok());
    let decided = store
        .claim_decided("host-a:1", Duration::from_secs(60), 10)
        .await
        .unwrap();
    assert!(
        decided.iter().any(|d| d.run_id == a[0].run_id),
        "{decided:?}"
    );
    let new = |position: i32| vigilo::store::NewAction {
        position,
        kind: "http".into(),
        params: serde_json::json!({"url": format!("http://127.0.0.1:9/{position}")}),
        skip: None,
    };
    assert!(
        store
            .plan_actions("host-a:1", a[0].run_id, vec![new(0), new(1)], vec![])
            .await
            .unwrap()
    );
    let planned = store.actions_of_approval(id).await.unwrap();
    assert_eq!(
        planned
            .iter()
            .map(|p| (p.position, p.approval_id))
            .collect::<Vec<_>>(),
        [(0, Some(id)), (1, Some(id))]
    );
    assert!(
        store
            .actions_of_approval(id + 1000)
            .await
            .unwrap()
            .is_empty()
    );
    let one = store.action(planned[1].id).await.unwrap().expect("by id");
    assert_eq!((one.id, one.position), (planned[1].id, 1));
    assert_eq!(store.action(planned[1].id + 1000).await.unwrap(), None);
    let newest = store.recent_actions(1).await.unwrap();
    assert_eq!(
        newest.iter().map(|n| n.id).collect::<Vec<_>>(),
        [planned[1].id]
    );
    let all = store.actions().await.unwrap();
    let recent: Vec<i64> = store
        .recent_actions(usize::MAX)
        .await
        .unwrap()
        .iter()
        .map(|n| n.id)
        .collect();
    assert_eq!(recent, all.iter().rev().map(|n| n.id).collect::<Vec<_>>());
}

/// An action left started by a dead process is settled by one process only; sending it back to
/// pending is one step with its audit entry; what was read before the call outlives a failure.
async fn settling(store: &dyn Store) {
    use std::time::Duration;
    use store::{ActionOutcome, ActionState, NewAction};
    let mut q = query("settling", FirstRun::Insert);
    q.remediation = Some("auto".into());
    commit(store, &q, &[row("k", 1)], 1).await;
    let lease = Duration::from_secs(60);
    let runs = store.claim_requested("host-a:1", lease, 10).await.unwrap();
    let run = runs.iter().find(|r| r.finding.query == "settling").unwrap();
    let new = NewAction {
        position: 0,
        kind: "aws.iam.update_access_key".into(),
        params: json!({"connection": "c", "user_name": "u", "access_key_id": "AKIA1", "status": "Inactive"}),
        skip: None,
    };
    assert!(
        store
            .plan_actions("host-a:1", run.run_id, vec![new], vec![])
            .await
            .unwrap()
    );
    let claimed = store.claim_actions("host-a:1", lease, 10).await.unwrap();
    let id = claimed.iter().find(|a| a.run_id == run.run_id).unwrap().id;
    let observed = json!({"previous_status": "Active"});
    assert!(
        store
            .start_action("host-a:1", id, lease, Some(observed.clone()))
            .await
            .unwrap()
    );

    // host-a dies here. Two processes see the action; only the first claim lands.
    let stale = store.started_actions().await.unwrap();
    let stale = stale.iter().find(|a| a.id == id).unwrap();
    assert_eq!(
        stale.result.as_ref(),
        Some(&observed),
        "what was read is kept with the start"
    );
    assert!(store.claim_started("host-b:2", stale, lease).await.unwrap());
    assert!(
        !store.claim_started("host-c:3", stale, lease).await.unwrap(),
        "settled once"
    );
    assert!(
        !store.rerun_started("host-c:3", id, "no").await.unwrap(),
        "not c's claim"
    );
    assert!(
        store
            .rerun_started("host-b:2", id, "the call did not take effect")
            .await
            .unwrap()
    );
    let a = store
        .actions()
        .await
        .unwrap()
        .into_iter()
        .find(|a| a.id == id)
        .unwrap();
    assert_eq!(a.state, ActionState::Pending);
    assert_eq!(a.claimed_by, None);
    let entries = store::audit_entries(store).await.unwrap();
    let rerun = entries
        .iter()
        .rev()
        .find(|e| e.action_id == Some(id))
        .unwrap();
    assert_eq!(
        (rerun.kind.as_str(), rerun.data["outcome"].as_str()),
        ("action.failed", Some("rerun"))
    );

    // Attempt 2 fails: the observation of its start is kept for the next attempt (and undo).
    store.claim_actions("host-b:2", lease, 10).await.unwrap();
    assert!(
        store
            .start_action("host-b:2", id, lease, Some(observed.clone()))
            .await
            .unwrap()
    );
    store
        .finish_action(id, ActionOutcome::Failed("timeout".into()))
        .await
        .unwrap();
    let a = store
        .actions()
        .await
        .unwrap()
        .into_iter()
        .find(|a| a.id == id)
        .unwrap();
    assert_eq!((a.state, a.attempts), (ActionState::Failed, 2));
    assert_eq!(a.result.as_ref(), Some(&observed));
    assert_eq!(a.error.as_deref(), Some("timeout"));
}

/// The outbox: queued with the event, claimed once, retried after a failure, audited per attempt.
async fn outbox(store: &dyn Store) {
    use std::time::Duration as Std;
    use store::{MessageOutcome, MessageState};
    let mut q = query("outbox", FirstRun::Insert);
    q.notify = Some("ops".into());
    let out = commit(store, &q, &[row("a", 1), row("b", 1)], 1).await;
    let mine = |all: Vec<store::MessageRecord>| -> Vec<store::MessageRecord> {
        all.into_iter().filter(|m| m.notifier == "ops").collect()
    };
    let queued = mine(store.messages().await.unwrap());
    assert_eq!(queued.len(), 2, "one message per new finding");
    assert_eq!(
        queued
            .iter()
            .map(|m| m.finding_id.unwrap())
            .collect::<Vec<_>>(),
        out.opened
    );
    assert!(
        queued
            .iter()
            .all(|m| m.event == "finding.opened" && m.state == MessageState::Pending)
    );

    let a = mine(
        store
            .claim_messages("host-a:1", Std::from_secs(60), 10)
            .await
            .unwrap(),
    );
    assert_eq!(a.len(), 2);
    assert!(
        mine(
            store
                .claim_messages("host-b:2", Std::from_secs(60), 10)
                .await
                .unwrap()
        )
        .is_empty(),
        "a claimed message is not handed out twice"
    );
    let retry_at = Utc::now() + Duration::seconds(2);
    let failed = MessageOutcome::Failed {
        error: "HTTP 503".into(),
        retry_at: Some(retry_at),
    };
    assert!(
        !store
            .finish_message("host-b:2", a[0].id, failed.clone())
            .await
            .unwrap(),
        "not b's claim"
    );
    assert!(
        store
            .finish_message("host-a:1", a[0].id, failed)
            .await
            .unwrap()
    );
    assert!(
        store
            .finish_message(
                "host-a:1",
                a[1].id,
                MessageOutcome::Sent(json!({"status": 200}))
            )
            .await
            .unwrap()
    );
    assert!(
        !store
            .finish_message("host-a:1", a[1].id, MessageOutcome::Sent(json!({})))
            .await
            .unwrap(),
        "a sent message is finished once"
    );
    assert!(
        mine(
            store
                .claim_messages("host-b:2", Std::from_secs(60), 10)
                .await
                .unwrap()
        )
        .is_empty(),
        "a failed message waits for its retry time"
    );
    tokio::time::sleep(Std::from_millis(2100)).await;
    let again = mine(
        store
            .claim_messages("host-b:2", Std::from_secs(60), 10)
            .await
            .unwrap(),
    );
    assert_eq!(again.iter().map(|m| m.id).collect::<Vec<_>>(), [a[0].id]);
    assert_eq!(
        (again[0].attempts, again[0].error.as_deref()),
        (1, Some("HTTP 503"))
    );
    let given_up = MessageOutcome::Failed {
        error: "HTTP 500".into(),
        retry_at: None,
    };
    assert!(
        store
            .finish_message("host-b:2", a[0].id, given_up)
            .await
            .unwrap()
    );
    let done = mine(store.messages().await.unwrap());
    assert_eq!(
        done.iter()
            .map(|m| (m.state, m.attempts))
            .collect::<Vec<_>>(),
        [(MessageState::Failed, 2), (MessageState::Sent, 1)]
    );
    assert!(done[1].sent_at.is_some() && done[1].result == Some(json!({"status": 200})));

    let audit = store::audit_entries(store).await.unwrap();
    let about = |id: i64| -> Vec<(String, Value)> {
        audit
            .iter()
            .filter(|e| e.data["message_id"] == id)
            .map(|e| (e.kind.clone(), e.data["retry_at"].clone()))
            .collect()
    };
    let first = about(a[0].id);
    assert_eq!(first.len(), 2, "one entry per attempt: {first:?}");
    assert_eq!(first[0].0, "message.failed");
    assert!(first[0].1.is_string(), "the retry time is recorded");
    assert_eq!(
        first[1],
        ("message.failed".to_string(), Value::Null),
        "given up: no retry"
    );
    assert_eq!(about(a[1].id), [("message.sent".to_string(), Value::Null)]);
    // A lapsed claim taken by another process cannot be renewed: its first owner must not send.
    let mut q2 = query("outbox2", FirstRun::Insert);
    q2.notify = Some("ops2".into());
    commit(store, &q2, &[row("z", 1)], 1).await;
    let ops2 = |all: Vec<store::MessageRecord>| -> Vec<store::MessageRecord> {
        all.into_iter().filter(|m| m.notifier == "ops2").collect()
    };
    let lapsed = ops2(
        store
            .claim_messages("host-a:1", Std::ZERO, 10)
            .await
            .unwrap(),
    );
    assert_eq!(lapsed.len(), 1);
    tokio::time::sleep(Std::from_millis(5)).await;
    let taken = ops2(
        store
            .claim_messages("host-b:2", Std::from_secs(60), 10)
            .await
            .unwrap(),
    );
    assert_eq!(taken.len(), 1, "a lapsed claim is free");
    assert!(
        !store
            .renew_message_claim("host-a:1", lapsed[0].id, Std::from_secs(60))
            .await
            .unwrap()
    );
    assert!(
        store
            .renew_message_claim("host-b:2", lapsed[0].id, Std::from_secs(60))
            .await
            .unwrap()
    );
    assert!(store::verify_audit(store).await.unwrap().is_ok());
}

async fn suite(store: Arc<dyn Store>) {
    store.ping().await.unwrap();
    lifecycle(&*store).await;
    baseline(&*store).await;
    conflict(&*store).await;
    failed_runs_change_nothing(&*store).await;
    reset(&*store).await;
    claims(&*store).await;
    settling(&*store).await;
    outbox(&*store).await;
    large_commits(&*store).await;
    audit_chain_covers_every_change(&*store).await;
    mixed_appends(&*store).await;
    let all = store.findings(&FindingFilter::default()).await.unwrap();
    assert!(
        all.windows(2).all(|w| w[0].id < w[1].id),
        "findings list in id order"
    );
}

/// Runs the suite on the store at `url`, then reopens it: no migration twice, the data kept.
async fn suite_and_reopen(url: StoreUrl) {
    suite(store::open(&url).await.unwrap()).await;
    let again = store::open(&url).await.unwrap();
    let findings = again.findings(&FindingFilter::default()).await.unwrap();
    assert!(!findings.is_empty());
}

#[tokio::test]
async fn sqlite_store_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    suite_and_reopen(StoreUrl::Sqlite(dir.path().join("state/vigilo.db"))).await;
}

#[tokio::test]
async fn postgres_store_passes_the_suite() {
    let db = common::PgDb::new("store").await;
    suite_and_reopen(StoreUrl::Postgres(db.url.clone())).await;
}

#[tokio::test]
async fn postgres_store_unreachable_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = StoreUrl::Postgres(format!("postgres://u:hunter2@127.0.0.1:{port}/x"));
    let err = match store::open(&url).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("opened a store on a closed port"),
    };
    assert!(err.contains("cannot open"), "{err}");
    assert!(!err.contains("hunter2"), "password leaked: {err}");
}

/// SQL that builds the schema of the migrations before number `before` (and records them
/// as applied), as a store of that age has it.
/// (name, data type) of those of `columns` that `table` has in `db`, by name.
async fn column_types(db: &common::PgDb, table: &str, columns: &[&str]) -> Vec<(String, String)> {
    let columns: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
    db.client()
        .await
        .query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns
              WHERE table_name = $1 AND column_name = ANY($2) ORDER BY 1",
            &[&table, &columns],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// Every row of `sql` on `conn`, each read by `read`.
fn sqlite_all<T>(
    conn: &rusqlite::Connection,
    sql: &str,
    read: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Vec<T> {
    conn.prepare(sql)
        .unwrap()
        .query_map([], read)
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// The number of the last migration of `dialect` (its files are numbered from 1, no gaps).
fn latest_migration(dialect: &str) -> i64 {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/store")
        .join(dialect)
        .join("migrations");
    // Versions are the files' numbers, which may have gaps.
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            e.unwrap().file_name().to_str().unwrap()[..4]
                .parse::<i64>()
                .unwrap()
        })
        .max()
        .unwrap()
}

fn schema_before(dialect: &str, before: usize) -> String {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/store")
        .join(dialect)
        .join("migrations");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap() < format!("{before:04}").as_str())
        .collect();
    files.sort();
    assert_eq!(files.len(), before - 1, "{files:?}");
    let mut sql =
        "CREATE TABLE schema_migrations (version bigint PRIMARY KEY, applied_at text NOT NULL);\n"
            .to_string();
    for (n, f) in files.iter().enumerate() {
        sql += &std::fs::read_to_string(f).unwrap();
        sql += &format!(
            ";\nINSERT INTO schema_migrations VALUES ({}, '2026-01-01T00:00:00Z');\n",
            n + 1
        );
    }
    sql
}

/// 40,000 keys (more than one chunk) stored a row per key, migrated, then diffed again.
async fn legacy_snapshot_migrates(dialect: &str, url: StoreUrl, run_sql: impl AsyncFnOnce(String)) {
    let q = query("legacy", FirstRun::Insert);
    let rows: Vec<Vec<Value>> = (0..40_000).map(|i| row(&format!("k{i}"), i)).collect();
    let cols = vec!["id".to_string(), "v".to_string(), "age".to_string()];
    let mut d = Diff::new(&q, &cols, None).unwrap();
    for r in &rows {
        d.push(r.clone()).unwrap();
    }
    let first = d.finish().unwrap();
    let values: Vec<String> = first
        .inserted
        .iter()
        .map(|c| {
            let key = hex::encode(c.key_hash.to_be_bytes());
            match dialect {
                "sqlite" => format!("(1, x'{key}', {})", c.row_hash as i64),
                _ => format!("(1, '\\x{key}'::bytea, {})", c.row_hash as i64),
            }
        })
        .collect();
    // The schema before compact snapshots, then a snapshot stored the old way, a row per key.
    let mut sql = schema_before(dialect, 7);
    sql += "INSERT INTO query_state (name, generation, last_success_at) VALUES ('legacy', 3, '2026-01-01T00:00:00Z');\n";
    sql += &format!(
        "INSERT INTO snapshot (query_id, key_hash, row_hash) VALUES {};\n",
        values.join(",")
    );
    run_sql(sql).await;

    let store = store::open(&url).await.unwrap();
    let snapshot = store.load_snapshot("legacy").await.unwrap().unwrap();
    assert_eq!((snapshot.generation, snapshot.len()), (3, 40_000));
    // The same rows again: nothing changed. One row changed, one gone: exactly that.
    let same = diff(&*store, &q, &rows).await;
    assert!(
        same.is_unchanged(),
        "{:?}",
        (same.inserted.len(), same.updated.len(), same.deleted.len())
    );
    let mut changed = rows.clone();
    changed[7] = row("k7", -1);
    changed.pop();
    let c = diff(&*store, &q, &changed).await;
    assert_eq!(
        (c.inserted.len(), c.updated.len(), c.deleted.len()),
        (0, 1, 1)
    );
    // And what the migrated store commits loads back the same.
    try_commit(&*store, &q, c, 0).await.unwrap();
    let again = diff(&*store, &q, &changed).await;
    assert!(again.is_unchanged());
    assert_eq!(store.reset_query("legacy").await.unwrap(), 39_999);
    assert!(store.load_snapshot("legacy").await.unwrap().is_none());
}

#[tokio::test]
async fn sqlite_snapshot_stored_a_row_per_key_migrates_to_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vigilo.db");
    let p = path.clone();
    legacy_snapshot_migrates("sqlite", StoreUrl::Sqlite(path), async move |sql| {
        rusqlite::Connection::open(&p)
            .unwrap()
            .execute_batch(&sql)
            .unwrap();
    })
    .await;
}

#[tokio::test]
async fn postgres_snapshot_stored_a_row_per_key_migrates_to_chunks() {
    let db = common::PgDb::new("legacy").await;
    let url = StoreUrl::Postgres(db.url.clone());
    legacy_snapshot_migrates("postgres", url, async |sql| db.execute(&sql).await).await;
}

/// A store from before migration 10, with findings a remediation run refers to: the rebuilt
/// `findings` keeps every finding, its id and the references to it; foreign keys are
/// enforced again afterwards; and a finding insert no longer builds a temporary b-tree for
/// the severity CHECK (an `IN` list of four values did, once per row).
#[tokio::test]
async fn sqlite_findings_rebuilt_for_the_severity_check_keep_ids_and_references() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vigilo.db");
    let mut sql = schema_before("sqlite", 10);
    sql += "INSERT INTO findings (id, query, key_hash, key_json, status, severity, row_json, row_hash, first_seen, last_seen, resolved_at, reopened)
            VALUES (7, 'q', x'00112233445566778899aabbccddeeff', '{\"id\":\"a\"}', 'open', 'high', '{\"id\":\"a\",\"v\":1}', 5,
                    '2026-01-01T00:00:00.000000Z', '2026-01-02T00:00:00.000000Z', NULL, 2),
                   (9, 'q', x'ffeeddccbbaa99887766554433221100', '{\"id\":\"b\"}', 'resolved', 'low', '{\"id\":\"b\",\"v\":2}', 6,
                    '2026-01-01T00:00:00.000000Z', '2026-01-02T00:00:00.000000Z', '2026-01-03T00:00:00.000000Z', 0);
            INSERT INTO remediation_runs (id, finding_id, remediation, state, requested_at, updated_at)
            VALUES (1, 7, 'r', 'requested', '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z');";
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(&sql)
        .unwrap();
    let dump = |conn: &rusqlite::Connection| -> Vec<String> {
        let mut st = conn
            .prepare("SELECT id, query, hex(key_hash), key_json, status, severity, row_json, row_hash, first_seen, last_seen, resolved_at, reopened FROM findings ORDER BY id")
            .unwrap();
        st.query_map([], |r| {
            Ok((0..12)
                .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                .collect::<Vec<_>>()
                .join("|"))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    };
    let before = dump(&rusqlite::Connection::open(&path).unwrap());
    assert_eq!(before.len(), 2);

    let store = store::open(&StoreUrl::Sqlite(path.clone())).await.unwrap();
    let found = store.findings(&FindingFilter::default()).await.unwrap();
    assert_eq!(found.iter().map(|f| f.id).collect::<Vec<_>>(), [7, 9]);
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    assert_eq!(dump(&conn), before);
    let version: i64 = conn
        .query_row("SELECT max(version) FROM schema_migrations", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(version, latest_migration("sqlite"));
    let table: String = conn
        .query_row(
            "SELECT sql FROM sqlite_schema WHERE name = 'findings'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(table.contains("severity = 'critical'"), "{table}");
    // The remediation run still refers to finding 7, and the reference is still a foreign key.
    let refs: Vec<(String, String)> = sqlite_all(
        &conn,
        "SELECT \"table\", \"from\" FROM pragma_foreign_key_list('remediation_runs')",
        |r| Ok((r.get(0)?, r.get(1)?)),
    );
    assert_eq!(refs, [("findings".to_string(), "finding_id".to_string())]);
    // A plain insert plan opens no ephemeral table for the CHECKs.
    let plan: Vec<String> = conn
        .prepare("EXPLAIN INSERT INTO findings (query, key_hash, key_json, status, severity, row_json, row_hash, first_seen, last_seen)
                  VALUES ('q', x'000102030405060708090a0b0c0d0e0f', '{}', 'open', 'medium', '{}', 1, 't', 't')")
        .unwrap()
        .query_map([], |r| r.get::<_, String>(1))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(plan.iter().any(|op| op == "Insert"), "{plan:?}");
    assert!(!plan.iter().any(|op| op == "OpenEphemeral"), "{plan:?}");
    // The CHECKs still hold.
    let bad = conn.execute(
        "INSERT INTO findings (query, key_hash, key_json, status, severity, row_json, row_hash, first_seen, last_seen)
         VALUES ('q', x'000102030405060708090a0b0c0d0e0f', '{}', 'open', 'urgent', '{}', 1, 't', 't')",
        [],
    );
    assert!(bad.unwrap_err().to_string().contains("CHECK"));

    // A reference that dangles after the migrations fails the open, naming the table, and
    // leaves the store as it was.
    let path = dir.path().join("dangling.db");
    let sql = "PRAGMA foreign_keys = OFF;".to_string()
        + &schema_before("sqlite", 10)
        + "INSERT INTO remediation_runs (id, finding_id, remediation, state, requested_at, updated_at)
           VALUES (1, 8, 'r', 'requested', '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z');";
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(&sql)
        .unwrap();
    let err = match store::open(&StoreUrl::Sqlite(path.clone())).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("opened a store whose remediation run refers to no finding"),
    };
    assert!(
        err.contains("remediation_runs") && err.contains("findings"),
        "{err}"
    );
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("SELECT max(version) FROM schema_migrations", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(version, 9);
}

/// A PostgreSQL store from before migration 10 kept a finding's key and row as jsonb: once
/// they are text, the finding reads back the same JSON (numbers, escapes and non-ASCII
/// text included), and the next run updates it as usual.
#[tokio::test]
async fn postgres_findings_json_becomes_text_keeping_values() {
    let db = common::PgDb::new("json_text").await;
    let q = query("legacy", FirstRun::Insert);
    let cols = vec!["id".to_string(), "v".to_string(), "age".to_string()];
    let rows = vec![row("a", 1)];
    let mut d = Diff::new(&q, &cols, None).unwrap();
    d.push(rows[0].clone()).unwrap();
    let key_hash = d.finish().unwrap().inserted[0].key_hash;
    let stored_row = json!({"id": "a", "v": 1.25, "age": "x", "note": "é \"quoted\"\n", "big": 12345678901234567u64});
    let mut sql = schema_before("postgres", 10);
    sql += &format!(
        "INSERT INTO findings (query, key_hash, key_json, status, severity, row_json, row_hash, first_seen, last_seen)
         VALUES ('legacy', '\\x{}'::bytea, '{{\"id\": \"a\"}}', 'open', 'high', $json${}$json$, 5,
                 '2026-01-01T00:00:00Z', '2026-01-02T00:00:00Z');",
        hex::encode(key_hash.to_be_bytes()),
        stored_row
    );
    db.execute(&sql).await;

    let store = store::open(&StoreUrl::Postgres(db.url.clone()))
        .await
        .unwrap();
    let found = store.findings(&FindingFilter::default()).await.unwrap();
    assert_eq!(found.len(), 1);
    let object = |v: Value| v.as_object().unwrap().clone();
    assert_eq!(
        (&found[0].key, &found[0].row),
        (&object(json!({"id": "a"})), &object(stored_row))
    );
    let types = column_types(&db, "findings", &["key_json", "row_json"]).await;
    assert_eq!(
        types,
        [
            ("key_json".to_string(), "text".to_string()),
            ("row_json".to_string(), "text".to_string())
        ]
    );
    // The key the migrated finding was stored under is the key the diff computes: a run
    // that sees the row refreshes that finding rather than opening another.
    let c = diff(&*store, &q, &rows).await;
    let outcome = try_commit(&*store, &q, c, 0).await.unwrap();
    assert_eq!((outcome.opened.len(), outcome.refreshed), (0, 1));
    let found = store.findings(&FindingFilter::default()).await.unwrap();
    assert_eq!(
        (found.len(), found[0].id, &found[0].row),
        (1, 1, &object(json!({"id": "a", "v": 1, "age": 1})))
    );
}

/// A store from before migration 11 drops `audit_by_finding`, which no query read and every
/// finding event wrote to: afterwards `audit` keeps only its primary key and the approval
/// index, and a finding's audit entries read back and verify as before.
async fn audit_by_finding_dropped(
    dialect: &str,
    url: StoreUrl,
    run_sql: impl AsyncFnOnce(String),
    audit_indexes: impl AsyncFnOnce() -> Vec<String>,
    expected: &[&str],
) {
    let before = schema_before(dialect, 11);
    assert!(before.contains("CREATE INDEX audit_by_finding"));
    run_sql(before).await;
    let store = store::open(&url).await.unwrap();
    let q = query("dropped", FirstRun::Insert);
    commit(&*store, &q, &[row("a", 1), row("b", 2)], 1).await;
    commit(&*store, &q, &[row("a", 3)], 0).await;
    let kinds: Vec<(String, Option<i64>)> = store::audit_entries(&*store)
        .await
        .unwrap()
        .iter()
        .map(|e| (e.kind.to_string(), e.finding_id))
        .collect();
    assert_eq!(
        kinds,
        [
            ("finding.opened".to_string(), Some(1)),
            ("finding.opened".to_string(), Some(2)),
            ("finding.updated".to_string(), Some(1)),
            ("finding.resolved".to_string(), Some(2)),
        ]
    );
    assert_eq!(store::verify_audit(&*store).await.unwrap(), Ok(4));
    drop(store);
    assert_eq!(audit_indexes().await, expected);
}

#[tokio::test]
async fn sqlite_audit_by_finding_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vigilo.db");
    audit_by_finding_dropped(
        "sqlite",
        StoreUrl::Sqlite(path.clone()),
        async |sql| {
            rusqlite::Connection::open(&path)
                .unwrap()
                .execute_batch(&sql)
                .unwrap()
        },
        async || {
            let conn = rusqlite::Connection::open(&path).unwrap();
            let mut st = conn
                .prepare("SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'audit' ORDER BY name")
                .unwrap();
            st.query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        },
        &["audit_by_approval"],
    )
    .await;
}

#[tokio::test]
async fn postgres_audit_by_finding_is_dropped() {
    let db = common::PgDb::new("audit_index").await;
    audit_by_finding_dropped(
        "postgres",
        StoreUrl::Postgres(db.url.clone()),
        async |sql| db.execute(&sql).await,
        async || {
            db.client()
                .await
                .query(
                    "SELECT indexname::text FROM pg_indexes WHERE tablename = 'audit' ORDER BY 1",
                    &[],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect()
        },
        &["audit_by_approval", "audit_pkey"],
    )
    .await;
}

/// Runs that change a few keys store them as deltas on the snapshot, applied in order when
/// it loads; once the deltas would outgrow a quarter of the snapshot, a run rewrites it whole.
/// `deltas` counts the stored delta rows.
async fn snapshot_deltas(store: &dyn Store, deltas: impl AsyncFn() -> i64) {
    let q = query("deltas", FirstRun::Insert);
    let mut rows: Vec<Vec<Value>> = (0..100).map(|i| row(&format!("k{i}"), 0)).collect();
    commit(store, &q, &rows, 30).await;
    assert_eq!(deltas().await, 0, "a first run stores whole chunks");
    for run in 1..=7_i64 {
        // Four changed keys: the first gone, one new, two rows changed.
        rows.remove(0);
        rows.push(row(&format!("k{}", 99 + run), 0));
        rows[10] = row(rows[10][0].as_str().unwrap(), run);
        rows[20] = row(rows[20][0].as_str().unwrap(), run);
        let out = commit(store, &q, &rows, 30 - run).await;
        assert_eq!(
            (out.opened.len(), out.updated, out.resolved.len()),
            (1, 2, 1)
        );
        let loaded = store.load_snapshot(&q.name).await.unwrap().unwrap();
        assert_eq!(
            (loaded.generation, loaded.len()),
            (run + 1, 100),
            "run {run}"
        );
        assert!(
            diff(store, &q, &rows).await.is_unchanged(),
            "run {run}: the stored snapshot is the one the run saw"
        );
        // Six runs' 24 changes fit in a quarter of 100 keys; the seventh's would not.
        assert_eq!(deltas().await, if run < 7 { run } else { 0 }, "run {run}");
    }
    rows.truncate(50);
    let out = commit(store, &q, &rows, 20).await;
    assert_eq!(out.resolved.len(), 50);
    assert_eq!(deltas().await, 0, "half the keys gone: rewritten whole");
    commit(store, &q, &rows[..49], 19).await;
    assert_eq!(deltas().await, 1);
    // One key gone and back, another changed twice: each in two deltas, the latest wins.
    let mut rows = rows[..49].to_vec();
    let (gone, twice) = (rows[0].clone(), rows[1][0].as_str().unwrap().to_string());
    rows.remove(0);
    rows[0] = row(&twice, 100);
    commit(store, &q, &rows, 18).await;
    rows.push(gone);
    rows[0] = row(&twice, 101);
    let out = commit(store, &q, &rows, 17).await;
    assert_eq!((out.reopened.len(), out.updated), (1, 1));
    assert_eq!(deltas().await, 3);
    assert!(diff(store, &q, &rows).await.is_unchanged());
    assert_eq!(
        store.load_snapshot(&q.name).await.unwrap().unwrap().len(),
        49
    );
    assert_eq!(
        store.reset_query(&q.name).await.unwrap(),
        49,
        "keys counted through the deltas"
    );
    assert_eq!(deltas().await, 0, "a reset drops the deltas");
}

#[tokio::test]
async fn sqlite_snapshot_changes_are_stored_as_deltas() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vigilo.db");
    let store = store::open(&StoreUrl::Sqlite(path.clone())).await.unwrap();
    snapshot_deltas(&*store, async || {
        rusqlite::Connection::open(&path)
            .unwrap()
            .query_row("SELECT count(*) FROM snapshot_deltas", [], |r| r.get(0))
            .unwrap()
    })
    .await;
}

#[tokio::test]
async fn postgres_snapshot_changes_are_stored_as_deltas() {
    let db = common::PgDb::new("deltas").await;
    let store = store::open(&StoreUrl::Postgres(db.url.clone()))
        .await
        .unwrap();
    let client = db.client().await;
    snapshot_deltas(&*store, async || {
        client
            .query_one("SELECT count(*) FROM snapshot_deltas", &[])
            .await
            .unwrap()
            .get(0)
    })
    .await;
}

/// `pg_class.reltuples` of the store's findings table (-1: never analyzed).
async fn findings_reltuples(db: &common::PgDb) -> f64 {
    db.client()
        .await
        .query_one(
            "SELECT reltuples::float8 FROM pg_class WHERE oid = 'findings'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// A commit that changes more of the findings table than PostgreSQL's autovacuum threshold
/// renews the planner's statistics at once (the next run's lookups are planned for the table
/// as it is); a small commit does not.
#[tokio::test]
async fn postgres_statistics_follow_a_large_commit() {
    let db = common::PgDb::new("stats").await;
    let store = store::open(&StoreUrl::Postgres(db.url.clone()))
        .await
        .unwrap();
    let q = query("big", FirstRun::Insert);
    let small: Vec<Vec<Value>> = (0..500).map(|i| row(&format!("k{i}"), 1)).collect();
    commit(store.as_ref(), &q, &small, 3).await;
    assert!(
        findings_reltuples(&db).await < 0.0,
        "500 findings: not analyzed"
    );
    let large: Vec<Vec<Value>> = (0..3_000).map(|i| row(&format!("k{i}"), 1)).collect();
    let outcome = commit(store.as_ref(), &q, &large, 2).await;
    assert_eq!(outcome.opened.len(), 2_500);
    assert_eq!(findings_reltuples(&db).await, 3_000.0);
}

/// Changed and gone keys' findings are updated in place: PostgreSQL keeps the new row
/// version on its page and touches no index (a HOT update), because no index holds a column
/// a finding update writes and findings pages keep a tenth free. An index on `status`, say,
/// would make every resolve write a new version and an entry in every index.
#[tokio::test]
async fn postgres_finding_updates_and_resolves_touch_no_index() {
    let db = common::PgDb::new("hot").await;
    let store = store::open(&StoreUrl::Postgres(db.url.clone()))
        .await
        .unwrap();
    let q = query("hot", FirstRun::Insert);
    // A scan changes a few keys spread over the table: here one in 25 changed, then another
    // one in 25 gone.
    let rows = |changed: usize, gone: usize| -> Vec<Vec<Value>> {
        (0..1_000)
            .filter(|i| i % 25 != gone)
            .map(|i| row(&format!("k{i}"), i64::from(i % 25 == changed)))
            .collect()
    };
    commit(store.as_ref(), &q, &rows(99, 99), 3).await;
    let out = commit(store.as_ref(), &q, &rows(0, 99), 2).await;
    assert_eq!(out.updated, 40);
    let out = commit(store.as_ref(), &q, &rows(0, 12), 1).await;
    assert_eq!(out.resolved.len(), 40);
    let client = db.client().await;
    // A backend reports its statistics when it ends (or idle, within 10 s): close the store's.
    drop(store);
    let mut counts = (0, 0);
    for _ in 0..150 {
        let r = client
            .query_one(
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'findings'",
                &[],
            )
            .await
            .unwrap();
        counts = (r.get::<_, i64>(0), r.get::<_, i64>(1));
        if counts.0 >= 80 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (updates, hot) = counts;
    assert!(updates >= 80, "{updates} updates counted");
    // A page can run out of its free tenth; nearly all updates must still be HOT.
    assert!(
        hot * 10 >= updates * 9,
        "{hot} of {updates} finding updates were HOT"
    );
}

/// New findings are loaded with `COPY`, which writes the ids it is given: they are taken
/// from the identity's sequence, so two commits opening findings at once never share one,
/// and an id the identity hands out later is past all of them. Each commit opens more than
/// one `COPY` carries (50,000), so each takes ids, copies findings and chains entries in
/// two rounds while the other does the same.
#[tokio::test]
async fn postgres_copied_findings_take_their_ids_from_the_identity() {
    const N: usize = 55_000;
    let db = common::PgDb::new("copyids").await;
    let store = store::open(&StoreUrl::Postgres(db.url.clone()))
        .await
        .unwrap();
    let (a, b) = (
        query("left", FirstRun::Insert),
        query("right", FirstRun::Insert),
    );
    let rows =
        |p: &str| -> Vec<Vec<Value>> { (0..N).map(|i| row(&format!("{p}{i}"), 0)).collect() };
    let (left, right) = (rows("l"), rows("r"));
    let (ca, cb) = tokio::join!(
        diff(store.as_ref(), &a, &left),
        diff(store.as_ref(), &b, &right)
    );
    let (oa, ob) = tokio::join!(
        try_commit(store.as_ref(), &a, ca, 1),
        try_commit(store.as_ref(), &b, cb, 1)
    );
    let (oa, ob) = (oa.unwrap(), ob.unwrap());
    assert_eq!((oa.opened.len(), ob.opened.len()), (N, N));
    let mut ids: Vec<i64> = oa.opened.iter().chain(&ob.opened).copied().collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 2 * N, "no id given twice");
    for (q, opened) in [(&a, &oa.opened), (&b, &ob.opened)] {
        let mut stored: Vec<i64> = findings(store.as_ref(), q, None)
            .await
            .iter()
            .map(|f| f.id)
            .collect();
        let mut opened = opened.clone();
        opened.sort();
        stored.sort();
        assert_eq!(
            stored, opened,
            "{}: the ids reported are the ids stored",
            q.name
        );
    }
    let next: i64 = db
        .client()
        .await
        .query_one(
            "INSERT INTO findings (query, key_hash, key_json, status, severity, row_json, row_hash, first_seen, last_seen)
             VALUES ('later', '\\x00000000000000000000000000000000', '{}', 'open', 'low', '{}', 0, now(), now())
             RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let last = ids[ids.len() - 1];
    assert!(
        next > last,
        "identity gave {next}, not past the last id copied, {last}"
    );
    assert_eq!(
        store::verify_audit(store.as_ref()).await.unwrap(),
        Ok(2 * N as i64),
        "both commits' entries chained"
    );
}

/// How a trail written before migration 12 was tampered with, if at all.
#[derive(Clone, Copy, Debug)]
enum OldTrail {
    Intact,
    /// Entry 2's kept `prev_hash` replaced: it no longer follows entry 1.
    Relinked,
    /// Entry 3's hash replaced by text that is not hex.
    NotHex,
}

/// Three entries as a store before migration 12 kept them (hex `prev_hash` and `hash`),
/// tampered with as `how` says, after the schema of `dialect` before that migration.
fn old_trail(dialect: &str, how: OldTrail) -> (String, Vec<vigilo::audit::Entry>) {
    use vigilo::audit::{Entry, Event, GENESIS, Kind};
    let at = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let events = [
        Event::system(Kind::ConfigLoaded, "cli", json!({"files": 3})),
        Event::finding(Kind::FindingOpened, "scan", "q", 7, json!({"id": "a'b"})),
        Event::finding(Kind::FindingResolved, "scan", "q", 7, json!({"id": "a'b"})),
    ];
    let mut entries: Vec<Entry> = Vec::new();
    for e in &events {
        let (seq, prev) = entries
            .last()
            .map_or((0, GENESIS.to_string()), |l| (l.seq, l.hash.clone()));
        entries.push(Entry::chain(seq, &prev, at, e));
    }
    let mut sql = schema_before(dialect, 12);
    let text = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let id = |v: Option<i64>| v.map_or("NULL".to_string(), |v| v.to_string());
    for e in &entries {
        let prev_hash = match how {
            OldTrail::Relinked if e.seq == 2 => "ab".repeat(32),
            _ => e.prev_hash.clone(),
        };
        let hash = match how {
            OldTrail::NotHex if e.seq == 3 => "z".repeat(64),
            _ => e.hash.clone(),
        };
        sql += &format!(
            "INSERT INTO audit (seq, at, kind, actor, channel, finding_id, approval_id, action_id, data, prev_hash, hash)
             VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {});\n",
            e.seq,
            text(&e.at),
            text(&e.kind),
            text(&e.actor),
            text(&e.channel),
            id(e.finding_id),
            id(e.approval_id),
            id(e.action_id),
            text(&e.data.to_string()),
            text(&prev_hash),
            text(&hash),
        );
    }
    sql += &format!(
        "UPDATE audit_head SET seq = 3, hash = {} WHERE id = 1;\n",
        text(&entries[2].hash)
    );
    (sql, entries)
}

/// After migration 12 an intact trail reads back entry for entry as it was shown before
/// (each `prev_hash` now the hash of the entry before it, read from that entry, also across
/// a page boundary) and verifies; a trail tampered with before the upgrade, in the column
/// the upgrade drops or in the hex text, upgrades, and verification still names the
/// tampered entry.
async fn check_upgraded_trail(url: &StoreUrl, how: OldTrail, entries: &[vigilo::audit::Entry]) {
    let store = store::open(url).await.unwrap();
    let verified = store::verify_audit(&*store).await.unwrap();
    match how {
        OldTrail::Intact => {
            assert_eq!(store::audit_entries(&*store).await.unwrap(), entries);
            assert_eq!(store.audit_page(2, 5).await.unwrap(), entries[2..]);
            assert_eq!(store.audit_page(1, 1).await.unwrap(), entries[1..2]);
            assert_eq!(verified, Ok(3));
        }
        OldTrail::Relinked => assert_eq!(verified.map_err(|b| b.seq()), Err(2), "{how:?}"),
        OldTrail::NotHex => assert_eq!(verified.map_err(|b| b.seq()), Err(3), "{how:?}"),
    }
    // New entries chain on from the upgraded head and are kept as bytes.
    if let OldTrail::Intact = how {
        let q = query("after_upgrade", FirstRun::Insert);
        commit(&*store, &q, &[row("a", 1)], 1).await;
        assert_eq!(store::verify_audit(&*store).await.unwrap(), Ok(4));
    }
}

const OLD_TRAILS: [OldTrail; 3] = [OldTrail::Intact, OldTrail::Relinked, OldTrail::NotHex];

#[tokio::test]
async fn sqlite_audit_hashes_become_bytes_and_old_trails_verify_as_before() {
    for how in OLD_TRAILS {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vigilo.db");
        let (sql, entries) = old_trail("sqlite", how);
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch(&sql)
            .unwrap();
        check_upgraded_trail(&StoreUrl::Sqlite(path.clone()), how, &entries).await;
        let conn = rusqlite::Connection::open(&path).unwrap();
        let columns: Vec<String> = sqlite_all(
            &conn,
            "SELECT name FROM pragma_table_info('audit') ORDER BY cid",
            |r| r.get(0),
        );
        assert!(!columns.contains(&"prev_hash".to_string()), "{columns:?}");
        let kept: Vec<(String, i64)> = sqlite_all(
            &conn,
            "SELECT typeof(hash), length(hash) FROM audit ORDER BY seq",
            |r| Ok((r.get(0)?, r.get(1)?)),
        );
        assert!(
            kept.iter().all(|(t, n)| t == "blob" && *n == 32),
            "{how:?}: {kept:?}"
        );
    }
}

#[tokio::test]
async fn postgres_audit_hashes_become_bytes_and_old_trails_verify_as_before() {
    for how in OLD_TRAILS {
        let db = common::PgDb::new("audit_bytes").await;
        let (sql, entries) = old_trail("postgres", how);
        db.execute(&sql).await;
        check_upgraded_trail(&StoreUrl::Postgres(db.url.clone()), how, &entries).await;
        let columns = column_types(&db, "audit", &["prev_hash", "hash"]).await;
        assert_eq!(columns, [("hash".to_string(), "bytea".to_string())]);
    }
}
