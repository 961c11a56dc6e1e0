//! Notifier messages through the binary: a query's `notify` tells a webhook of each new
//! finding, an approval request reaches the console and the webhook (with approval links),
//! a decision sends the remediation's `[[message]]`s; a dead or failing webhook is retried
//! with backoff by `vigilo run`, recorded as `message.failed`, and never blocks or loses the
//! decision. Both state stores.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::recorder::{Answer, Recorder};
use common::{free_port, show, vigilo};
use serde_json::Value;

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = vigilo(dir, args);
    assert!(out.status.success(), "{args:?}: {}", show(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn project(state_url: &str, hook_port: u16) -> tempfile::TempDir {
    let config = format!(
        r#"[state]
url = "{state_url}"

[server]
listen = "127.0.0.1:{listen}"
secret = "links-secret-for-tests"

[database.src]
url = "sqlite://src.db"

[integration.webhook.ops]
url = "http://127.0.0.1:{hook_port}/hook"

[notifier.ops]
notify = [{{ integration = "console" }}, {{ integration = "webhook.ops" }}]

[notifier.findings]
notify = [{{ integration = "webhook.ops" }}]

[approver.alice]
[approver.bob]
"#,
        listen = free_port()
    );
    let remediation = r#"[approval]
notifier = "ops"
approvers = ["alice", "bob"]
subject = "Deactivate {{ row.id }}?"
prompt = "Key {{ row.id }} of {{ row.owner }}."

[[message]]
when = "approve"
notifier = "ops"
text = "Deactivated {{ row.id }}; approved by {{ approval.decided_by }}."

[[message]]
when = "deny"
notifier = "ops"
text = "Kept {{ row.id }}."
"#;
    let dir = common::project(&[
        ("config/vigilo.toml", &config),
        (
            "queries/keys.sql",
            "-- primary_key: id\n-- remediation: deactivate\nselect id, owner from keys order by id\n",
        ),
        (
            "queries/watched.sql",
            "-- primary_key: name\n-- notify: findings\n-- severity: high\nselect name from watched order by name\n",
        ),
        ("remediations/deactivate.toml", remediation),
    ]);
    rusqlite::Connection::open(dir.path().join("src.db"))
        .unwrap()
        .execute_batch(
            "create table keys (id text, owner text); insert into keys values ('k1', 'ann'), ('k2', 'ben');
             create table watched (name text); insert into watched values ('w1'), ('w2');",
        )
        .unwrap();
    dir
}

fn audit(dir: &Path) -> Vec<Value> {
    serde_json::from_str(&ok(dir, &["audit", "--format", "json"])).unwrap()
}

fn of_kind<'a>(entries: &'a [Value], kind: &str) -> Vec<&'a Value> {
    entries.iter().filter(|e| e["kind"] == kind).collect()
}

/// The JSON bodies the webhook received, in order.
fn payloads(hook: &Recorder) -> Vec<Value> {
    hook.seen()
        .iter()
        .map(|(method, path, _, body)| {
            assert_eq!((method.as_str(), path.as_str()), ("POST", "/hook"));
            serde_json::from_str(body).unwrap()
        })
        .collect()
}

async fn messages_reach_console_and_webhook(state_url: &str) {
    let hook = Recorder::start();
    let dir = project(state_url, hook.port);
    let d = dir.path();

    let scan = ok(d, &["scan"]);
    assert!(
        scan.contains("approval 1 requested (deactivate): Deactivate k1?"),
        "{scan}"
    );
    assert!(
        scan.contains("  Key k2 of ben."),
        "the prompt is printed: {scan}"
    );
    assert!(
        scan.contains("  alice: http://"),
        "approval links are printed: {scan}"
    );
    let sent = payloads(&hook);
    let events: Vec<&str> = sent.iter().map(|p| p["event"].as_str().unwrap()).collect();
    let mut sorted = events.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            "approval.requested",
            "approval.requested",
            "finding.opened",
            "finding.opened"
        ],
        "one webhook call per approval and per watched finding: {sent:#?}"
    );
    let opened: Vec<&Value> = sent
        .iter()
        .filter(|p| p["event"] == "finding.opened")
        .collect();
    assert_eq!(opened[0]["finding"]["key"]["name"], "w1");
    assert_eq!(opened[0]["finding"]["severity"], "high");
    assert!(
        opened[0]["text"].as_str().unwrap().contains("New finding"),
        "{:?}",
        opened[0]
    );
    let request = sent
        .iter()
        .find(|p| p["event"] == "approval.requested")
        .unwrap();
    assert_eq!(request["approval"]["status"], "pending");
    assert_eq!(
        request["subject"],
        format!(
            "Deactivate {}?",
            request["finding"]["key"]["id"].as_str().unwrap()
        )
    );
    let approvers: Vec<&str> = request["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            assert!(l["url"].as_str().unwrap().contains("/approvals/"), "{l}");
            l["approver"].as_str().unwrap()
        })
        .collect();
    assert_eq!(approvers, ["alice", "bob"]);
    let keys: Vec<String> = hook.seen().iter().map(|s| s.2.clone()).collect();
    assert!(
        keys.iter().all(|k| k.starts_with("vigilo-message-")),
        "{keys:?}"
    );

    let approved = ok(d, &["approve", "1", "--as", "alice"]);
    assert!(
        approved.contains("Deactivated k1; approved by alice."),
        "console: {approved}"
    );
    ok(d, &["deny", "2", "--as", "bob"]);
    let texts: Vec<String> = payloads(&hook)
        .iter()
        .filter(|p| p["event"] == "remediation.message")
        .map(|p| p["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts, ["Deactivated k1; approved by alice.", "Kept k2."]);

    let entries = audit(d);
    // 2 approvals × 2 targets, 2 findings × 1 target, 2 decision messages × 2 targets,
    // and the webhook is told of the 2 decisions (the console printed them already).
    assert_eq!(of_kind(&entries, "message.sent").len(), 12);
    let failed = of_kind(&entries, "message.failed");
    assert!(failed.is_empty(), "{failed:#?}");
    let seen = hook.seen();
    let mut keys: Vec<&String> = seen.iter().map(|s| &s.2).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(
        (keys.len(), seen.len()),
        (8, 8),
        "each webhook message arrived once"
    );
    ok(d, &["audit", "verify"]);
}

#[tokio::test]
async fn messages_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("state.db").display());
    messages_reach_console_and_webhook(&url).await;
}

#[tokio::test]
async fn messages_on_postgres() {
    let db = common::PgDb::new("messages").await;
    messages_reach_console_and_webhook(&db.url).await;
}

async fn dead_webhook_is_retried_and_never_blocks(state_url: &str) {
    let port = free_port();
    let dir = project(state_url, port);
    let d = dir.path();

    // Nobody listens: the scan and the decision go through, the webhook's messages wait.
    let scan = ok(d, &["scan"]);
    assert!(
        scan.contains("approval 1 requested"),
        "console still works: {scan}"
    );
    ok(d, &["approve", "1", "--as", "alice"]);
    let approvals: Vec<Value> = serde_json::from_str(&ok(
        d,
        &["approvals", "--status", "all", "--format", "json"],
    ))
    .unwrap();
    assert_eq!(
        approvals[0]["status"], "decided",
        "the decision is not held up"
    );
    let entries = audit(d);
    let failed = of_kind(&entries, "message.failed");
    assert_eq!(
        failed.len(),
        6,
        "2 requests, 2 findings, 1 decision and its message: {failed:#?}"
    );
    for f in &failed {
        assert_eq!(f["channel"], "webhook.ops");
        assert!(
            f["data"]["error"]
                .as_str()
                .unwrap()
                .contains("webhook webhook.ops"),
            "{f}"
        );
        assert!(f["data"]["retry_at"].is_string(), "a retry is planned: {f}");
        assert_eq!(f["data"]["attempt"], 1);
    }

    // Up, but failing: the next attempt is recorded with the answer.
    let hook = Recorder::start_on(port);
    hook.answer(Answer::Fail);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    ok(d, &["scan"]);
    let second: Vec<Value> = of_kind(&audit(d), "message.failed")
        .into_iter()
        .filter(|f| f["data"]["attempt"] == 2)
        .cloned()
        .collect();
    assert_eq!(second.len(), 6, "every due message was tried again");
    assert!(
        second[0]["data"]["error"]
            .as_str()
            .unwrap()
            .contains("HTTP 500: boom"),
        "{}",
        second[0]
    );

    // Healthy again: the scheduler's next attempts deliver everything, once.
    hook.answer(Answer::Ok);
    let _run = common::run(d);
    let start = Instant::now();
    loop {
        let delivered = of_kind(&audit(d), "message.sent")
            .iter()
            .filter(|e| e["channel"] == "webhook.ops")
            .count();
        if delivered == 6 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "only {delivered} of 6 delivered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ok_calls: Vec<String> = payloads(&hook)
        .iter()
        .skip(6)
        .map(|p| p["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ok_calls.len(), 6, "{ok_calls:?}");
    assert!(ok_calls.contains(&"approval.decided".to_string()));
    assert!(ok_calls.contains(&"remediation.message".to_string()));
    ok(d, &["audit", "verify"]);
}

#[tokio::test]
async fn dead_webhook_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("state.db").display());
    dead_webhook_is_retried_and_never_blocks(&url).await;
}

#[tokio::test]
async fn dead_webhook_on_postgres() {
    let db = common::PgDb::new("deadhook").await;
    dead_webhook_is_retried_and_never_blocks(&db.url).await;
}
