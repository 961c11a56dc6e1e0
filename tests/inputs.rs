//! What a person can answer (interface.md section 8) and time-boxed risk acceptance (8.1),
//! through the real binary on both state stores: select, multiselect and text answered at the
//! CLI and on the web page's forms, the answer flowing into an `http` action's body (a real
//! local server records it) and into the audit trail; a text failing `pattern` refused with
//! the reason and nothing changed; a multiselect decided only by identical sets; `validate`
//! naming FILE:LINE of bad input settings. Acceptance: an accepted finding starts nothing while
//! its row stays, and with vigilo stopped across the deadline it is open again at the next
//! start, with a new approval; a row gone first resolves as usual; reports and the dashboard
//! (headless Chromium) list who accepted what, why and until when.

mod common;

use std::path::Path;
use std::time::Duration;

use common::recorder::Recorder;
use common::{show, vigilo};
use serde_json::Value;

const SECRET: &str = "inputs-test-secret";

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = vigilo(dir, args);
    assert!(out.status.success(), "{args:?}: {}", show(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command that must be refused (exit 1); returns its stderr.
fn refused(dir: &Path, args: &[&str]) -> String {
    let out = vigilo(dir, args);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {}", show(&out));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(dir: &Path, args: &[&str]) -> Value {
    serde_json::from_str(&ok(dir, args)).unwrap()
}

/// The approval of `remediation` that is pending.
fn pending_of(dir: &Path, remediation: &str) -> Value {
    let all = json(dir, &["approvals", "--status", "all", "--format", "json"]);
    all.as_array()
        .unwrap()
        .iter()
        .find(|a| a["remediation"] == remediation && a["status"] == "pending")
        .unwrap_or_else(|| panic!("no pending approval of {remediation}: {all:#}"))
        .clone()
}

fn approval(dir: &Path, id: i64) -> Value {
    let all = json(dir, &["approvals", "--status", "all", "--format", "json"]);
    all.as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id)
        .unwrap()
        .clone()
}

fn audit(dir: &Path) -> Vec<Value> {
    serde_json::from_value(json(dir, &["audit", "--format", "json"])).unwrap()
}

/// A project with one row and one query per input type, each with its remediation, whose
/// actions post `approval.value` and `approval.values` to `port`.
fn project(state_url: &str, port: u16, server_port: u16) -> tempfile::TempDir {
    let config = format!(
        "[state]\nurl = \"{state_url}\"\n\n[server]\nlisten = \"127.0.0.1:{server_port}\"\nsecret = \"{SECRET}\"\n\n\
         [database.src]\nurl = \"sqlite://src.db\"\n\n\
         [notifier.ops]\nnotify = [{{ integration = \"console\" }}]\n\n\
         [approver.alice]\n[approver.bob]\n[approver.carol]\n"
    );
    let post = |when: Option<&str>, path: &str| {
        let when = when
            .map(|w| format!("when = \"{w}\"\n"))
            .unwrap_or_default();
        format!(
            "\n[[action]]\n{when}type = \"http\"\nmethod = \"POST\"\n\
             url = \"http://127.0.0.1:{port}/{path}/{{{{ row.name }}}}\"\n\
             body = \"{{{{ approval.value }}}}|{{{{ approval.values | join(',') }}}}|{{{{ approval.decided_by }}}}\"\n"
        )
    };
    let select = format!(
        r#"[approval]
type = "select"
notifier = "ops"
subject = "Who owns {{{{ row.name }}}}?"
approvers = ["alice", "bob", "carol"]
placeholder = "Owning team"
options = [
  {{ value = "team-payments", label = "Payments" }},
  {{ value = "team-data", label = "Data <platform>" }},
  {{ value = "accept", label = "Accept the risk", accept_for = "3s" }},
  {{ value = "later", label = "Accept for an hour", accept_for = "1h" }},
]
{}{}"#,
        post(Some("team-payments"), "tag"),
        post(Some("team-data"), "tag")
    );
    let multi = format!(
        r#"[approval]
type = "multiselect"
notifier = "ops"
approvers = ["alice", "bob", "carol"]
required = 2
options = [
  {{ value = "versioning", label = "Enable versioning" }},
  {{ value = "block", label = "Block public access" }},
  {{ value = "tag", label = "Tag it" }},
]
{}{}"#,
        post(Some("versioning"), "versioning"),
        post(Some("block"), "block")
    );
    let text = format!(
        r#"[approval]
type = "text"
notifier = "ops"
approvers = ["alice", "bob"]
placeholder = "owner team"
pattern = "^team-[a-z]+$"
options = [{{ value = "team-web" }}]
{}"#,
        post(None, "owner")
    );
    let dir = common::project(&[
        ("config/vigilo.toml", &config),
        (
            "queries/pick.sql",
            "-- primary_key: name\n-- remediation: pick\nselect name from buckets where name like 'p%'\n",
        ),
        (
            "queries/multi.sql",
            "-- primary_key: name\n-- remediation: multi\nselect name from buckets where name like 'm%'\n",
        ),
        (
            "queries/free.sql",
            "-- primary_key: name\n-- remediation: free\nselect name from buckets where name like 't%'\n",
        ),
        ("remediations/pick.toml", &select),
        ("remediations/multi.toml", &multi),
        ("remediations/free.toml", &text),
    ]);
    rusqlite::Connection::open(dir.path().join("src.db"))
        .unwrap()
        .execute_batch(
            "create table buckets (name text); insert into buckets values ('p1'), ('p2'), ('m1'), ('t1');",
        )
        .unwrap();
    dir
}

/// The bodies the recorder saw at `path`.
fn bodies(server: &Recorder, path: &str) -> Vec<String> {
    server
        .seen()
        .iter()
        .filter(|s| s.1 == path)
        .map(|s| s.3.clone())
        .collect()
}

async fn each_type_answered_at_the_cli(state_url: &str) {
    let server = Recorder::start();
    let dir = project(state_url, server.port, common::free_port());
    let d = dir.path();
    ok(d, &["scan"]);

    // select: one value, or refused; the value reaches the action and the trail.
    let pick = pending_of(d, "pick");
    let id = pick["id"].as_i64().unwrap();
    assert_eq!(pick["type"], "select");
    assert_eq!(pick["placeholder"], "Owning team");
    assert_eq!(pick["options"][2]["accept_for"], "3s");
    let err = refused(
        d,
        &[
            "respond",
            &id.to_string(),
            "team-data",
            "team-payments",
            "--as",
            "alice",
        ],
    );
    assert!(err.contains("takes exactly one option"), "{err}");
    let err = refused(
        d,
        &["respond", &id.to_string(), "team-nope", "--as", "alice"],
    );
    assert!(err.contains("has no option \"team-nope\""), "{err}");
    let out = ok(d, &["respond", &id.to_string(), "team-data", "--as", "bob"]);
    assert!(out.contains("decided: team-data"), "{out}");
    let name = pick["subject"].as_str().unwrap().split(' ').nth(2).unwrap();
    let name = name.trim_end_matches('?');
    assert_eq!(
        bodies(&server, &format!("/tag/{name}")),
        vec!["team-data|team-data|bob".to_string()]
    );
    let decided = approval(d, id);
    assert_eq!(decided["values"], serde_json::json!(["team-data"]));
    assert_eq!(
        decided["votes"][0]["values"],
        serde_json::json!(["team-data"])
    );
    let trail = audit(d);
    let vote = trail
        .iter()
        .find(|e| e["kind"] == "approval.vote" && e["approval_id"] == id)
        .unwrap();
    assert_eq!(vote["data"]["option"], "team-data", "{vote}");
    assert_eq!(vote["data"]["values"], serde_json::json!(["team-data"]));

    // multiselect: identical sets decide; a different set does not count with them.
    let multi = pending_of(d, "multi");
    let mid = multi["id"].as_i64().unwrap().to_string();
    let out = ok(
        d,
        &["respond", &mid, "block", "versioning", "--as", "alice"],
    );
    assert!(
        out.contains("recorded alice's vote versioning, block"),
        "{out}"
    );
    assert!(out.contains("(1 of 2 needed)"), "{out}");
    ok(d, &["respond", &mid, "versioning", "--as", "bob"]);
    assert_eq!(approval(d, mid.parse().unwrap())["status"], "pending");
    let out = ok(
        d,
        &["respond", &mid, "versioning", "block", "--as", "carol"],
    );
    assert!(
        out.contains("decided: versioning, block (by alice, carol)"),
        "{out}"
    );
    for path in ["/versioning/m1", "/block/m1"] {
        assert_eq!(
            bodies(&server, path),
            vec!["versioning, block|versioning,block|alice, carol".to_string()],
            "{path}"
        );
    }

    // text: a pattern failure is refused with the reason and records nothing.
    let free = pending_of(d, "free");
    let tid = free["id"].as_i64().unwrap();
    let err = refused(
        d,
        &[
            "respond",
            &tid.to_string(),
            "--text",
            "Payments",
            "--as",
            "alice",
        ],
    );
    assert!(
        err.contains("\"Payments\" does not match the pattern ^team-[a-z]+$"),
        "{err}"
    );
    assert_eq!(approval(d, tid)["votes"], serde_json::json!([]));
    assert!(
        !audit(d)
            .iter()
            .any(|e| e["kind"] == "approval.vote" && e["approval_id"] == tid),
        "a refused answer leaves no trace but the refusal"
    );
    let out = ok(
        d,
        &[
            "respond",
            &tid.to_string(),
            "--text",
            " team-ops ",
            "--as",
            "alice",
        ],
    );
    assert!(out.contains("decided: team-ops"), "{out}");
    assert_eq!(
        bodies(&server, "/owner/t1"),
        vec!["team-ops|team-ops|alice".to_string()]
    );
    let out = ok(d, &["audit", "verify"]);
    assert!(out.contains("intact"), "{out}");
}

#[tokio::test]
async fn each_type_answered_at_the_cli_with_sqlite_state() {
    each_type_answered_at_the_cli("sqlite://state.db").await;
}

#[tokio::test]
async fn each_type_answered_at_the_cli_with_postgres_state() {
    let db = common::PgDb::new("vigilo_inputs").await;
    each_type_answered_at_the_cli(&db.url).await;
}

async fn risk_acceptance_lapses_and_asks_again(state_url: &str) {
    let server = Recorder::start();
    let port = common::free_port();
    let dir = project(state_url, server.port, port);
    let d = dir.path();
    ok(d, &["scan", "pick"]);
    let all = json(d, &["approvals", "--status", "all", "--format", "json"]);
    let by_row = |name: &str| -> i64 {
        all.as_array()
            .unwrap()
            .iter()
            .find(|a| a["subject"] == format!("Who owns {name}?"))
            .unwrap()["id"]
            .as_i64()
            .unwrap()
    };
    let (p1, p2) = (by_row("p1"), by_row("p2"));
    // p2 for an hour first, then p1 for 3 s (so no later command's pass ends p1's early).
    let out = ok(
        d,
        &[
            "respond",
            &p2.to_string(),
            "later",
            "--as",
            "bob",
            "--reason",
            "decommissioning next week",
        ],
    );
    assert!(out.contains("decided: later"), "{out}");
    let out = ok(
        d,
        &[
            "respond",
            &p1.to_string(),
            "accept",
            "--as",
            "alice",
            "--reason",
            "compensating control <WAF>",
        ],
    );
    assert!(out.contains("decided: accept"), "{out}");
    assert!(server.seen().is_empty(), "accepting runs no action");
    let accepted = json(d, &["findings", "--status", "accepted", "--format", "json"]);
    let accepted = accepted.as_array().unwrap();
    assert_eq!(accepted.len(), 2, "{accepted:#?}");
    let f1 = accepted
        .iter()
        .find(|f| f["key"]["name"] == "p1")
        .unwrap()
        .clone();
    assert_eq!(f1["status"], "accepted");
    assert_eq!(f1["accepted_by"], "alice");
    assert_eq!(f1["accepted_reason"], "compensating control <WAF>");
    assert!(f1["accepted_until"].is_string());
    let open = json(d, &["findings", "--status", "open", "--format", "json"]);
    assert!(
        open.as_array()
            .unwrap()
            .iter()
            .all(|f| f["query"] != "pick"),
        "accepted findings are not listed as open: {open:#}"
    );
    let events: Vec<Value> = audit(d)
        .into_iter()
        .filter(|e| e["kind"] == "finding.accepted")
        .collect();
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_eq!(events[1]["data"]["accept_for"], "3s");
    assert_eq!(events[1]["data"]["reason"], "compensating control <WAF>");
    assert_eq!(events[1]["actor"], "alice");

    // The rows stay: a scan starts nothing for an accepted finding.
    ok(d, &["scan", "pick"]);
    let approvals = json(d, &["approvals", "--status", "all", "--format", "json"]);
    assert_eq!(
        approvals
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["finding_id"]
                == accepted.iter().find(|f| f["key"]["name"] == "p2").unwrap()["id"])
            .count(),
        1,
        "no new remediation while accepted: {approvals:#}"
    );

    // vigilo is stopped across p1's deadline; its next start ends the acceptance.
    std::thread::sleep(Duration::from_millis(3500));
    ok(d, &["scan", "free"]);
    let pick = json(d, &["findings", "--query", "pick", "--format", "json"]);
    let now1 = pick
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["key"]["name"] == "p1")
        .unwrap();
    assert_eq!(now1["status"], "open", "{now1:#}");
    assert!(now1["accepted_until"].is_null());
    let again = pending_of(d, "pick");
    assert_eq!(again["finding_id"], f1["id"], "a new approval is requested");

    // Reports and the dashboard list p2's acceptance: who, why, until when.
    let md = ok(d, &["report", "--format", "md"]);
    assert!(md.contains("### Accepted risks"), "{md}");
    assert!(md.contains("decommissioning next week"), "{md}");
    let report = json(d, &["report", "--format", "json"]);
    let risks = report["summary"]["accepted"].as_array().unwrap();
    assert_eq!(risks.len(), 1, "{report:#}");
    assert_eq!(risks[0]["accepted_by"], "bob");
    assert!(risks[0]["accepted_until"].is_string());
    let csv = ok(d, &["report", "--format", "csv"]);
    assert!(
        csv.lines()
            .next()
            .unwrap()
            .ends_with("accepted_until,accepted_by,accepted_reason"),
        "{csv}"
    );
    assert!(
        csv.contains(",accepted,") && csv.contains("decommissioning next week"),
        "{csv}"
    );
    let html = ok(d, &["report", "--format", "html"]);
    assert!(html.contains("Accepted risks") && html.contains("decommissioning next week"));
    {
        let _server = common::run(d);
        common::wait_healthy(port).await;
        let dom = common::assert_renders_in_chromium(
            &format!("http://127.0.0.1:{port}/"),
            "Accepted risks",
        );
        assert!(dom.contains("id=\"accepted\""), "{dom}");
        assert!(dom.contains("decommissioning next week"), "{dom}");
    }

    // p2's row goes before its acceptance ends: it resolves as usual.
    rusqlite::Connection::open(d.join("src.db"))
        .unwrap()
        .execute_batch("delete from buckets where name = 'p2'")
        .unwrap();
    ok(d, &["scan", "pick"]);
    let resolved = json(d, &["findings", "--status", "resolved", "--format", "json"]);
    assert_eq!(resolved.as_array().unwrap().len(), 1, "{resolved:#}");
    assert_eq!(resolved[0]["key"]["name"], "p2");
    let expired: Vec<Value> = audit(d)
        .into_iter()
        .filter(|e| e["kind"] == "finding.acceptance_expired")
        .collect();
    assert_eq!(
        expired.len(),
        1,
        "only the finding whose row stayed: {expired:#?}"
    );
    assert_eq!(expired[0]["finding_id"], f1["id"]);
    assert_eq!(expired[0]["data"]["accepted_by"], "alice");
    let out = ok(d, &["audit", "verify"]);
    assert!(out.contains("intact"), "{out}");
}

#[tokio::test]
async fn risk_acceptance_lapses_and_asks_again_with_sqlite_state() {
    risk_acceptance_lapses_and_asks_again("sqlite://state.db").await;
}

#[tokio::test]
async fn risk_acceptance_lapses_and_asks_again_with_postgres_state() {
    let db = common::PgDb::new("vigilo_inputs").await;
    risk_acceptance_lapses_and_asks_again(&db.url).await;
}

/// Posts the approval page's form as `who`, with `fields` besides the token.
async fn post_form(port: u16, id: i64, who: &str, fields: &[(&str, &str)]) -> (u16, String) {
    let token = vigilo::token::issue(SECRET, id, who, None);
    let mut form: Vec<(&str, &str)> = vec![("token", &token)];
    form.extend_from_slice(fields);
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/approvals/{id}"))
        .form(&form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn web_forms_answer_each_type(state_url: &str) {
    let server = Recorder::start();
    let port = common::free_port();
    let dir = project(state_url, server.port, port);
    let d = dir.path();
    ok(d, &["scan", "pick", "multi", "free"]);
    let _running = common::run(d);
    common::wait_healthy(port).await;
    let http = reqwest::Client::new();
    let page = |id: i64| {
        let token = vigilo::token::issue(SECRET, id, "alice", None);
        let http = http.clone();
        async move {
            http.get(format!(
                "http://127.0.0.1:{port}/approvals/{id}?token={token}"
            ))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
        }
    };

    let pick = pending_of(d, "pick")["id"].as_i64().unwrap();
    let html = page(pick).await;
    assert!(
        html.contains("<select id=\"option\" name=\"option\" required>"),
        "{html}"
    );
    assert!(
        html.contains("Data &lt;platform&gt;"),
        "labels are escaped: {html}"
    );
    assert!(html.contains("(accepts the risk for 3s)"), "{html}");
    let (status, body) = post_form(port, pick, "alice", &[("option", "team-payments")]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("decided it: team-payments"), "{body}");

    let multi = pending_of(d, "multi")["id"].as_i64().unwrap();
    let html = page(multi).await;
    assert!(
        html.contains("type=\"checkbox\" name=\"option\" value=\"block\""),
        "{html}"
    );
    let both = [("option", "block"), ("option", "tag")];
    let (status, body) = post_form(port, multi, "alice", &both).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("alice answered block, tag"), "{body}");
    let (_, body) = post_form(
        port,
        multi,
        "bob",
        &[("option", "tag"), ("option", "block")],
    )
    .await;
    assert!(body.contains("decided it: block, tag"), "{body}");

    let free = pending_of(d, "free")["id"].as_i64().unwrap();
    let html = page(free).await;
    assert!(html.contains("<input type=\"text\" id=\"text\" name=\"text\" required placeholder=\"owner team\" list=\"suggestions\">"), "{html}");
    assert!(html.contains("<code>^team-[a-z]+$</code>"), "{html}");
    let (status, body) = post_form(port, free, "alice", &[("text", "not a team")]).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("does not match the pattern"), "{body}");
    assert_eq!(approval(d, free)["votes"], serde_json::json!([]));
    let (status, body) = post_form(port, free, "bob", &[("text", "team-web")]).await;
    assert_eq!(status, 200, "{body}");

    // The decisions' actions run in `vigilo run` within its next passes.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while bodies(&server, "/owner/t1").is_empty() || bodies(&server, "/block/m1").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "actions never ran: {:?}",
            server.seen()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        bodies(&server, "/owner/t1"),
        vec!["team-web|team-web|bob".to_string()]
    );
    assert_eq!(
        bodies(&server, "/block/m1"),
        vec!["block, tag|block,tag|alice, bob".to_string()]
    );
    assert!(
        bodies(&server, "/versioning/m1").is_empty(),
        "versioning was not chosen"
    );
}

#[tokio::test]
async fn web_forms_answer_each_type_with_sqlite_state() {
    web_forms_answer_each_type("sqlite://state.db").await;
}

#[tokio::test]
async fn web_forms_answer_each_type_with_postgres_state() {
    let db = common::PgDb::new("vigilo_inputs").await;
    web_forms_answer_each_type(&db.url).await;
}

#[test]
fn validate_names_the_line_of_bad_input_settings() {
    let bad = r#"[approval]
type = "text"
notifier = "ops"
approvers = ["alice"]
pattern = "^team-(["
options = [
  { value = "team-a", required = 2 },
]

[[action]]
type = "http"
url = "http://127.0.0.1:1/x"
"#;
    let accept = r#"[approval]
type = "select"
notifier = "ops"
approvers = ["alice"]
required = 2
options = [
  { value = "fix" },
  { value = "later", accept_for = "a while" },
]
"#;
    let dir = common::project(&[
        (
            "config/vigilo.toml",
            "[database.src]\nurl = \"sqlite://src.db\"\n\n[notifier.ops]\nnotify = [{ integration = \"console\" }]\n\n[approver.alice]\n",
        ),
        ("remediations/bad.toml", bad),
        ("remediations/accept.toml", accept),
    ]);
    let out = vigilo(dir.path(), &["validate"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "remediations/bad.toml:5: approval.pattern: \"^team-([\" is not a valid regular expression",
        "remediations/bad.toml:7: approval.options[0].required: the options of a text input are suggestions",
        "remediations/accept.toml:5: approval.required: applies to text and multiselect inputs",
        "remediations/accept.toml:8: approval.options[1].accept_for: invalid duration \"a while\"",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}
