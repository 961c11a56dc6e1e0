//! Actions through the binary against a real local HTTP server that records what it is asked:
//! an approved `http` action runs exactly once; failures are kept and `vigilo retry` runs them
//! again with the same Idempotency-Key; a vigilo SIGKILLed before, during or after the call
//! runs the action once or leaves it `unknown`, never silently repeated; recheck, dry runs,
//! render failures; auto-remediation runs at once. Both state stores.

mod common;

use std::path::Path;
use std::time::Duration;

use common::recorder::{Answer, Recorder};
use common::{show, vigilo};
use serde_json::Value;

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = vigilo(dir, args);
    assert!(out.status.success(), "{args:?}: {}", show(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn project(state_url: &str, port: u16) -> tempfile::TempDir {
    let config = format!(
        "[state]\nurl = \"{state_url}\"\n\n[database.src]\nurl = \"sqlite://src.db\"\n\n\
         [notifier.ops]\nnotify = [{{ integration = \"console\" }}]\n\n[approver.alice]\n[approver.bob]\n"
    );
    let remediation = format!(
        r#"[approval]
notifier = "ops"
approvers = ["alice", "bob"]
subject = "Deactivate {{{{ row.id }}}}?"

[[action]]
when = "approve"
type = "http"
method = "POST"
url = "http://127.0.0.1:{port}/deactivate/{{{{ row.id }}}}"
headers = {{ "X-Finding" = "{{{{ finding.id }}}}" }}
body = "{{{{ row.owner }}}} by {{{{ approval.decided_by }}}}"
"#
    );
    let auto = format!(
        "[[action]]\ntype = \"http\"\nurl = \"http://127.0.0.1:{port}/auto/{{{{ row.id }}}}\"\n"
    );
    let dir = common::project(&[
        ("config/vigilo.toml", &config),
        (
            "queries/keys.sql",
            "-- primary_key: id\n-- remediation: deactivate\nselect id, owner from keys order by id\n",
        ),
        ("remediations/deactivate.toml", &remediation),
    ]);
    rusqlite::Connection::open(dir.path().join("src.db"))
        .unwrap()
        .execute_batch("create table keys (id text, owner text); insert into keys values ('k1', 'ann'), ('k2', 'ben');")
        .unwrap();
    std::fs::write(dir.path().join("remediations/auto.toml"), auto).unwrap();
    dir
}

fn audit_kinds(dir: &Path) -> Vec<String> {
    let entries: Vec<Value> =
        serde_json::from_str(&ok(dir, &["audit", "--format", "json"])).unwrap();
    entries
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect()
}

async fn approved_action_runs_once_and_failures_retry(state_url: &str) {
    let server = Recorder::start();
    let dir = project(state_url, server.port);
    let d = dir.path();
    ok(d, &["scan"]);
    assert!(server.seen().is_empty(), "nothing runs before a decision");

    let out = ok(d, &["approve", "1", "--as", "alice"]);
    assert!(out.contains("approval 1 decided: approve"), "{out}");
    assert!(out.contains("action 1 succeeded"), "{out}");
    let seen = server.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].0, "POST");
    assert_eq!(seen[0].1, "/deactivate/k1");
    assert_eq!(seen[0].2, "vigilo-run1-action0");
    assert_eq!(seen[0].3, "ann by alice");

    // Nothing runs it again: more scans, more commands.
    ok(d, &["scan"]);
    ok(d, &["approvals", "--status", "all"]);
    refused_retry(d, 1, "action 1 is succeeded");
    assert_eq!(server.seen().len(), 1, "exactly once");

    // A failing target: recorded with status and body, then retried with the same key.
    server.answer(Answer::Fail);
    let out = ok(d, &["approve", "2", "--as", "bob"]);
    assert!(
        out.contains("action 2 FAILED") && out.contains("HTTP 500: boom"),
        "{out}"
    );
    server.answer(Answer::Ok);
    let out = ok(d, &["retry", "2"]);
    assert!(out.contains("action 2 succeeded"), "{out}");
    let seen = server.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(
        seen[1].2, seen[2].2,
        "a retry sends the same Idempotency-Key"
    );

    // Evidence: one file per decided approval, APPROVED because the decision ran actions.
    let out_dir = tempfile::tempdir().unwrap();
    assert!(
        ok(d, &["audit", "export", out_dir.path().to_str().unwrap()])
            .contains("exported 2 approval(s)")
    );
    let files = common::files_under(out_dir.path());
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(
        common::is_export_name(&files[0], "deactivate", 1, "APPROVED"),
        "{files:?}"
    );
    let doc: Value =
        serde_json::from_slice(&std::fs::read(out_dir.path().join(&files[0])).unwrap()).unwrap();
    assert_eq!(doc["approval"]["votes"][0]["by"], "alice");
    assert_eq!(doc["approval"]["decision"], "approve");
    assert_eq!(doc["finding"]["key"]["id"], "k1");
    assert_eq!(doc["actions"][0]["state"], "succeeded");
    assert!(
        doc["audit"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "approval.decided")
    );

    let kinds = audit_kinds(d);
    for (kind, n) in [
        ("action.started", 3),
        ("action.succeeded", 2),
        ("action.failed", 1),
    ] {
        assert_eq!(
            kinds.iter().filter(|k| *k == kind).count(),
            n,
            "{kind}: {kinds:?}"
        );
    }
    assert!(ok(d, &["audit", "verify"]).contains("intact"));
}

fn refused_retry(dir: &Path, id: i64, needle: &str) {
    let out = vigilo(dir, &["retry", &id.to_string()]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(needle),
        "{}",
        show(&out)
    );
}

#[tokio::test]
async fn actions_on_sqlite() {
    let state = tempfile::tempdir().unwrap();
    approved_action_runs_once_and_failures_retry(&format!(
        "sqlite://{}",
        state.path().join("s.db").display()
    ))
    .await;
}

#[tokio::test]
async fn actions_on_postgres() {
    let db = common::PgDb::new("actions").await;
    approved_action_runs_once_and_failures_retry(&db.url).await;
}

/// SIGKILL while the http call is in flight: after a restart the action is `unknown`, not repeated.
async fn killed_mid_call_is_unknown_never_repeated(state_url: &str) {
    let server = Recorder::start();
    let dir = project(state_url, server.port);
    let d = dir.path();
    ok(d, &["scan"]);
    server.answer(Answer::Hang);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vigilo"))
        .arg("--dir")
        .arg(d)
        .args(["approve", "1", "--as", "alice"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while server.seen().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the action never called the server"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL: no chance to record anything
    child.wait().unwrap();
    assert!(
        ok(d, &["audit", "verify"]).contains("intact"),
        "the chain survives a kill"
    );

    server.answer(Answer::Ok);
    let out = ok(d, &["scan"]);
    assert!(!out.contains("action 1 succeeded"), "{out}");
    assert_eq!(server.seen().len(), 1, "the restart did not call again");
    let kinds = audit_kinds(d);
    assert!(kinds.contains(&"action.failed".to_string()), "{kinds:?}");
    let entries: Vec<Value> = serde_json::from_str(&ok(d, &["audit", "--format", "json"])).unwrap();
    let failed = entries
        .iter()
        .find(|e| e["kind"] == "action.failed")
        .unwrap();
    assert_eq!(failed["data"]["outcome"], "unknown", "{failed}");
    assert!(ok(d, &["audit", "verify"]).contains("intact"));

    // A person checks and retries: it runs, with the same key.
    let out = ok(d, &["retry", "1"]);
    assert!(out.contains("action 1 succeeded"), "{out}");
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].2, seen[1].2);
}

#[tokio::test]
async fn killed_mid_call_on_sqlite() {
    let state = tempfile::tempdir().unwrap();
    killed_mid_call_is_unknown_never_repeated(&format!(
        "sqlite://{}",
        state.path().join("s.db").display()
    ))
    .await;
}

#[tokio::test]
async fn killed_mid_call_on_postgres() {
    let db = common::PgDb::new("killed").await;
    killed_mid_call_is_unknown_never_repeated(&db.url).await;
}

#[tokio::test]
async fn auto_remediation_runs_at_once() {
    let server = Recorder::start();
    let (_state, dir) = sqlite_project(server.port);
    let d = dir.path();
    std::fs::write(
        d.join("queries/auto.sql"),
        "-- primary_key: id\n-- remediation: auto\nselect id from keys where id = 'k2'\n",
    )
    .unwrap();
    let out = ok(d, &["scan", "auto"]);
    assert!(out.contains("succeeded"), "{out}");
    let seen = server.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].1, "/auto/k2");
    ok(d, &["scan", "auto"]);
    assert_eq!(server.seen().len(), 1, "no new finding, no new action");
}

/// The test project with its state in a SQLite file of its own: (state dir, project dir).
fn sqlite_project(port: u16) -> (tempfile::TempDir, tempfile::TempDir) {
    let state = tempfile::tempdir().unwrap();
    let dir = project(
        &format!("sqlite://{}", state.path().join("s.db").display()),
        port,
    );
    (state, dir)
}

/// Rewrites the `deactivate` remediation: `top` lines go before its tables, `tail` after.
fn remediation_with(dir: &Path, top: &str, tail: &str) {
    let path = dir.join("remediations/deactivate.toml");
    let body = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{top}\n{body}\n{tail}")).unwrap();
}

fn keys_db(dir: &Path, sql: &str) {
    rusqlite::Connection::open(dir.join("src.db"))
        .unwrap()
        .execute_batch(sql)
        .unwrap();
}

fn audit_of(dir: &Path, kind: &str) -> Vec<Value> {
    let entries: Vec<Value> =
        serde_json::from_str(&ok(dir, &["audit", "--format", "json"])).unwrap();
    entries.into_iter().filter(|e| e["kind"] == kind).collect()
}

const DONE_MESSAGE: &str =
    "[[message]]\nwhen = \"approve\"\nnotifier = \"ops\"\ntext = \"Deactivated {{ row.id }}.\"\n";

/// `recheck = true` (the default) skips, and records, the actions of a finding that left the
/// result before the decision; a recheck that cannot run holds the run back instead of acting.
async fn recheck_before_acting(state_url: &str) {
    let server = Recorder::start();
    let dir = project(state_url, server.port);
    let d = dir.path();
    remediation_with(d, "", DONE_MESSAGE);
    ok(d, &["scan"]);

    keys_db(d, "delete from keys where id = 'k1'");
    let out = ok(d, &["approve", "1", "--as", "alice"]);
    assert!(out.contains("approval 1 decided"), "{out}");
    assert!(
        server.seen().is_empty(),
        "nothing is called for a finding that is gone"
    );
    assert!(
        !out.contains("Deactivated k1"),
        "no message about acting: {out}"
    );
    let skipped = audit_of(d, "action.succeeded");
    assert_eq!(skipped.len(), 1, "{skipped:#?}");
    let why = skipped[0]["data"]["skipped"].as_str().unwrap();
    assert!(
        why.contains("recheck: finding 1 is no longer in the result of query keys"),
        "{why}"
    );

    // The source is unreachable: nothing runs, nothing is lost; the run is tried again.
    std::fs::rename(d.join("src.db"), d.join("src.db.away")).unwrap();
    let out = ok(d, &["approve", "2", "--as", "alice"]);
    assert!(
        out.contains("could not go on: recheck failed, tried again in 5s"),
        "{out}"
    );
    assert!(server.seen().is_empty());
    std::fs::rename(d.join("src.db.away"), d.join("src.db")).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5200)).await;
    let out = ok(d, &["scan", "--dry-run"]);
    assert!(
        !out.contains("succeeded"),
        "a dry-run scan acts on nothing: {out}"
    );
    let out = ok(d, &["scan"]);
    assert!(out.contains("action 2 succeeded"), "{out}");
    assert!(
        out.contains("Deactivated k2."),
        "the message follows the action: {out}"
    );
    assert_eq!(server.seen().len(), 1);
    assert_eq!(server.seen()[0].1, "/deactivate/k2");
    assert!(ok(d, &["audit", "verify"]).contains("intact"));
}

#[tokio::test]
async fn recheck_on_sqlite() {
    let state = tempfile::tempdir().unwrap();
    recheck_before_acting(&format!("sqlite://{}", state.path().join("s.db").display())).await;
}

#[tokio::test]
async fn recheck_on_postgres() {
    let db = common::PgDb::new("recheck").await;
    recheck_before_acting(&db.url).await;
}

/// `recheck = false` acts on the decision even when the finding has left the result.
#[tokio::test]
async fn without_recheck_the_decision_is_acted_on() {
    let server = Recorder::start();
    let (_state, dir) = sqlite_project(server.port);
    let d = dir.path();
    remediation_with(d, "recheck = false", "");
    ok(d, &["scan"]);
    keys_db(d, "delete from keys where id = 'k1'");
    let out = ok(d, &["approve", "1", "--as", "alice"]);
    assert!(out.contains("action 1 succeeded"), "{out}");
    assert_eq!(server.seen().len(), 1);
}

/// `dry_run = true` prints and records the exact call, makes none, and marks its messages.
#[tokio::test]
async fn dry_run_records_the_exact_call_and_makes_none() {
    let server = Recorder::start();
    let (_state, dir) = sqlite_project(server.port);
    let d = dir.path();
    remediation_with(d, "dry_run = true", DONE_MESSAGE);
    ok(d, &["scan"]);
    let out = ok(d, &["approve", "1", "--as", "alice"]);
    let call = format!(
        "would call POST http://127.0.0.1:{}/deactivate/k1 headers {{\"X-Finding\":\"1\"}} body \"ann by alice\"",
        server.port
    );
    assert!(out.contains(&call), "{out}");
    assert!(out.contains("[dry run] Deactivated k1."), "{out}");
    assert!(server.seen().is_empty(), "a dry run calls nothing");
    let recorded = audit_of(d, "action.succeeded");
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0]["data"]["dry_run"], true);
    assert!(
        recorded[0]["data"]["would_call"]
            .as_str()
            .unwrap()
            .contains("/deactivate/k1")
    );
    assert!(audit_of(d, "action.started").is_empty());
}

/// A template that fails on the finding's data ends the run as `failed`, recorded, once.
#[tokio::test]
async fn a_template_that_fails_to_render_fails_the_run() {
    let server = Recorder::start();
    let (_state, dir) = sqlite_project(server.port);
    let d = dir.path();
    let path = d.join("remediations/deactivate.toml");
    let body = std::fs::read_to_string(&path).unwrap().replace(
        "Deactivate {{ row.id }}?",
        "Deactivate {{ row.no_such_column }}?",
    );
    std::fs::write(&path, body).unwrap();
    let out = ok(d, &["scan"]);
    assert!(
        out.contains("remediation run 1 could not go on: approval.subject"),
        "{out}"
    );
    assert!(out.contains("no_such_column"), "{out}");
    let failed = audit_of(d, "remediation.failed");
    assert_eq!(failed.len(), 2, "one per run: {failed:#?}");
    assert_eq!(failed[0]["data"]["remediation"], "deactivate");
    ok(d, &["scan"]);
    assert_eq!(
        audit_of(d, "remediation.failed").len(),
        2,
        "recorded once, not retried forever"
    );
    let approvals: Vec<Value> = serde_json::from_str(&ok(
        d,
        &["approvals", "--status", "all", "--format", "json"],
    ))
    .unwrap();
    assert!(approvals.is_empty());
    assert!(ok(d, &["audit", "verify"]).contains("intact"));
}

/// Starts `vigilo approve 1 --as alice` paused at `point` (`VIGILO_PAUSE_AT`) and SIGKILLs it there.
fn approve_killed_at(dir: &Path, point: &str) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vigilo"))
        .arg("--dir")
        .arg(dir)
        .args(["approve", "1", "--as", "alice"])
        .env("VIGILO_PAUSE_AT", point)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let marker = format!("paused at {point}");
    loop {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) if line.contains(&marker) => break,
            Ok(_) => {}
            Err(e) => panic!("vigilo never reached {point}: {e}"),
        }
    }
    child.kill().unwrap(); // SIGKILL, at exactly that point
    child.wait().unwrap();
}

/// SIGKILL at each point around an action, then a restart: the action runs exactly once, or
/// is `unknown` (for a person to retry) and never silently repeated; the chain verifies.
async fn killed_around_the_call(state_url: &str, point: &str) {
    let server = Recorder::start();
    let dir = project(state_url, server.port);
    let d = dir.path();
    ok(d, &["scan"]);
    approve_killed_at(d, point);
    assert!(ok(d, &["audit", "verify"]).contains("intact"), "{point}");
    let calls_before_restart = server.seen().len();

    let out = ok(d, &["scan"]); // a restart: settles what the dead process left
    let actions: Vec<Value> = audit_of(d, "action.succeeded")
        .into_iter()
        .chain(audit_of(d, "action.failed"))
        .collect();
    match point {
        "action.before_start" => {
            assert_eq!(calls_before_restart, 0);
            assert!(
                out.contains("action 1 succeeded"),
                "claimed, never started: it runs now: {out}"
            );
            assert_eq!(server.seen().len(), 1);
        }
        "action.after_start" | "action.after_call" => {
            let expected = usize::from(point == "action.after_call");
            assert_eq!(calls_before_restart, expected, "{point}");
            assert_eq!(
                server.seen().len(),
                expected,
                "{point}: the restart called nothing"
            );
            assert_eq!(actions.len(), 1, "{actions:#?}");
            assert_eq!(actions[0]["data"]["outcome"], "unknown", "{point}");
            ok(d, &["scan"]);
            assert_eq!(
                server.seen().len(),
                expected,
                "{point}: still never repeated"
            );
        }
        other => panic!("no such point {other}"),
    }
    assert!(ok(d, &["audit", "verify"]).contains("intact"), "{point}");
}

#[tokio::test]
async fn killed_around_the_call_on_sqlite() {
    for point in [
        "action.before_start",
        "action.after_start",
        "action.after_call",
    ] {
        let state = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", state.path().join("k.db").display());
        killed_around_the_call(&url, point).await;
    }
}

#[tokio::test]
async fn killed_around_the_call_on_postgres() {
    for point in [
        "action.before_start",
        "action.after_start",
        "action.after_call",
    ] {
        let db = common::PgDb::new("killpoint").await;
        killed_around_the_call(&db.url, point).await;
    }
}
