//! Approvals through the binary, on both state stores: one per new finding, thresholds of
//! distinct approvers, refusals, timeouts that pass while vigilo is stopped, and the audit trail.

mod common;

use std::path::Path;

use common::{show, vigilo};

use serde_json::Value;

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = vigilo(dir, args);
    assert!(out.status.success(), "{args:?}: {}", show(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn refused(dir: &Path, args: &[&str], needle: &str) {
    let out = vigilo(dir, args);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(needle),
        "{args:?}: expected {needle:?}: {}",
        show(&out)
    );
}

fn approvals(dir: &Path) -> Vec<Value> {
    serde_json::from_str(&ok(
        dir,
        &["approvals", "--status", "all", "--format", "json"],
    ))
    .unwrap()
}

const CONFIG: &str = r#"
[database.src]
url = "sqlite://src.db"

[notifier.security]
notify = [{ integration = "console" }]

[approver.alice]
[approver.bob]
[approver.carol]
[approver.mallory]

[group.security]
members = ["alice", "bob"]
"#;

const REMEDIATION: &str = r#"
title = "Deactivate a stale key"

[approval]
notifier = "security"
subject = "Deactivate {{ row.id }} of {{ row.owner }}?"
prompt = "Key {{ row.id }} ({{ query.title }}) is stale."
approvers = ["security", "carol"]
timeout = "1h"
options = [
  { value = "deactivate", label = "Deactivate", style = "danger", required = 2 },
  { value = "keep", label = "Keep key active" },
]
"#;

fn project(state_url: &str, remediation: &str, timeout_remediations: bool) -> tempfile::TempDir {
    let config = format!("[state]\nurl = \"{state_url}\"\n{CONFIG}");
    let mut files = vec![
        ("config/vigilo.toml", config.as_str()),
        (
            "queries/keys.sql",
            "-- title: Stale keys\n-- primary_key: id\n-- remediation: deactivate\nselect id, owner from keys order by id\n",
        ),
        ("remediations/deactivate.toml", remediation),
    ];
    let timeouts = [
        (
            "queries/short.sql",
            "-- primary_key: id\n-- remediation: short_keep\nselect id from keys where id = 'k1'\n",
        ),
        (
            "remediations/short_keep.toml",
            "[approval]\nnotifier = \"security\"\napprovers = [\"alice\"]\ntimeout = \"1s\"\non_timeout = \"deny\"\n",
        ),
        (
            "queries/short2.sql",
            "-- primary_key: id\n-- remediation: short_expire\nselect id from keys where id = 'k1'\n",
        ),
        (
            "remediations/short_expire.toml",
            "[approval]\nnotifier = \"security\"\napprovers = [\"alice\"]\ntimeout = \"1s\"\n",
        ),
    ];
    if timeout_remediations {
        files.extend(timeouts);
    }
    let dir = common::project(&files);
    rusqlite::Connection::open(dir.path().join("src.db"))
        .unwrap()
        .execute_batch("create table keys (id text, owner text); insert into keys values ('k1', 'ann'), ('k2', 'ben');")
        .unwrap();
    dir
}

async fn decision_flow(state_url: &str) {
    let dir = project(state_url, REMEDIATION, false);
    let d = dir.path();
    let scan = ok(d, &["scan"]);
    assert!(
        scan.contains("approval 1 requested (deactivate): Deactivate k1 of ann?"),
        "{scan}"
    );
    assert!(scan.contains("2 approval(s) requested"), "{scan}");

    let list = approvals(d);
    assert_eq!(list.len(), 2);
    let a = &list[0];
    for field in [
        "id",
        "remediation",
        "finding_id",
        "status",
        "decision",
        "subject",
        "prompt",
        "options",
        "requested_at",
        "decided_at",
        "votes",
    ] {
        assert!(a.get(field).is_some(), "approval JSON lacks {field}: {a}");
    }
    assert_eq!(a["status"], "pending");
    assert_eq!(a["prompt"], "Key k1 (Stale keys) is stale.");
    assert_eq!(a["options"][0]["required"], 2);
    assert_eq!(a["approvers"], serde_json::json!(["alice", "bob", "carol"]));
    assert!(a["deadline"].is_string());

    // 2-of-N: alice, then a repeat, a non-approver and an unknown name, then bob decides.
    assert!(
        ok(
            d,
            &[
                "respond",
                "1",
                "deactivate",
                "--as",
                "alice",
                "--reason",
                "stale"
            ]
        )
        .contains("(1 of 2 needed)")
    );
    refused(
        d,
        &["respond", "1", "deactivate", "--as", "alice"],
        "alice already voted deactivate",
    );
    refused(
        d,
        &["respond", "1", "deactivate", "--as", "mallory"],
        "mallory is not an approver of approval 1",
    );
    refused(
        d,
        &["approve", "1", "--as", "bob"],
        "has no option \"approve\", and none of its options (deactivate, keep) run actions",
    );
    refused(
        d,
        &["deny", "1", "--as", "bob"],
        "choose one with `vigilo respond 1 OPTION`",
    );
    let nobody = vigilo(d, &["respond", "1", "deactivate", "--as", "nobody"]);
    assert_eq!(nobody.status.code(), Some(2), "{}", show(&nobody));
    assert!(
        ok(d, &["respond", "1", "deactivate", "--as", "bob"])
            .contains("approval 1 decided: deactivate (by alice, bob)")
    );
    refused(
        d,
        &["respond", "1", "keep", "--as", "carol"],
        "approval 1 was already decided (deactivate)",
    );

    // A keep (threshold 1) after a deactivate vote decides on its own threshold.
    ok(d, &["respond", "2", "deactivate", "--as", "carol"]);
    assert!(ok(d, &["respond", "2", "keep", "--as", "alice"]).contains("approval 2 decided: keep"));

    let list = approvals(d);
    assert_eq!(list[0]["status"], "decided");
    assert_eq!(list[0]["decision"], "deactivate");
    assert_eq!(list[0]["decided_by"], serde_json::json!(["alice", "bob"]));
    let votes = list[0]["votes"].as_array().unwrap();
    assert_eq!(votes.len(), 2);
    assert_eq!(votes[0]["by"], "alice");
    assert_eq!(votes[0]["reason"], "stale");
    assert_eq!(votes[0]["channel"], "cli");
    let pending = ok(d, &["approvals"]);
    assert!(pending.contains("no approvals"), "{pending}");

    // No new finding, no new approval.
    ok(d, &["scan"]);
    assert_eq!(approvals(d).len(), 2);

    // Every step is in the audit trail, and it verifies.
    let audit: Vec<Value> = serde_json::from_str(&ok(d, &["audit", "--format", "json"])).unwrap();
    let kinds: Vec<&str> = audit.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    for (kind, n) in [
        ("approval.requested", 2),
        ("approval.vote", 4),
        ("approval.decided", 2),
    ] {
        assert_eq!(
            kinds.iter().filter(|k| **k == kind).count(),
            n,
            "{kind}: {kinds:?}"
        );
    }
    let vote = audit.iter().find(|e| e["kind"] == "approval.vote").unwrap();
    assert_eq!(vote["actor"], "alice");
    assert_eq!(vote["approval_id"], 1);
    assert!(ok(d, &["audit", "verify"]).contains("intact"));
}

#[tokio::test]
async fn decisions_on_sqlite() {
    let state = tempfile::tempdir().unwrap();
    decision_flow(&format!(
        "sqlite://{}",
        state.path().join("state.db").display()
    ))
    .await;
}

#[tokio::test]
async fn decisions_on_postgres() {
    let db = common::PgDb::new("approvals").await;
    decision_flow(&db.url).await;
}

#[tokio::test]
async fn timeouts_settle_after_vigilo_was_stopped() {
    let state = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", state.path().join("state.db").display());
    let dir = project(&url, REMEDIATION, true);
    let d = dir.path();
    ok(d, &["scan", "short", "short2"]);
    // Nothing runs now; the deadlines pass while no vigilo process exists.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let list = approvals(d);
    let by_remediation = |r: &str| list.iter().find(|a| a["remediation"] == r).unwrap().clone();
    let keep = by_remediation("short_keep");
    assert_eq!(keep["status"], "decided", "{keep}");
    assert_eq!(keep["decision"], "deny", "on_timeout decided it");
    assert_eq!(keep["decided_by"], serde_json::json!(["vigilo"]));
    let expired = by_remediation("short_expire");
    assert_eq!(expired["status"], "expired", "{expired}");
    assert!(expired["decision"].is_null());
    refused(
        d,
        &["approve", &expired["id"].to_string(), "--as", "alice"],
        "expired at",
    );
    let audit = ok(d, &["audit", "--format", "json"]);
    assert!(
        audit.contains("approval.expired") && audit.contains("on_timeout"),
        "{audit}"
    );
    // Evidence: on_timeout chose an option that runs no action (DENIED); the other EXPIRED.
    let out = tempfile::tempdir().unwrap();
    ok(d, &["audit", "export", out.path().to_str().unwrap()]);
    let files = common::files_under(out.path());
    assert_eq!(files.len(), 2, "{files:?}");
    let keep_id = keep["id"].as_i64().unwrap();
    let expired_id = expired["id"].as_i64().unwrap();
    assert!(
        files
            .iter()
            .any(|f| common::is_export_name(f, "short_keep", keep_id, "DENIED")),
        "{files:?}"
    );
    assert!(
        files
            .iter()
            .any(|f| common::is_export_name(f, "short_expire", expired_id, "EXPIRED")),
        "{files:?}"
    );
    assert!(ok(d, &["audit", "verify"]).contains("intact"));
}
