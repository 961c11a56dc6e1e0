//! Approval input types in Slack, through the binary and the Web API stand-in
//! (tests/common/slack.rs): a `select` is a `static_select` whose choice votes; a
//! `multiselect` is a `multi_static_select` whose selection votes only with its Submit button
//! (read from the payload's `state.values`) and decides on N identical sets; a `text` is an
//! Answer button that opens a modal with `views.open`, answered by a signed `view_submission`
//! whose text failing `pattern` is refused in the form (`response_action: errors`). The
//! decided values reach the `http` actions and the audit trail. Payloads are signed with
//! Slack's own SDK.

mod common;

use std::path::Path;
use std::time::Duration;

use common::recorder::Recorder;
use common::slack::{BOT_TOKEN, Slack};
use common::{free_port, show, vigilo};
use serde_json::{Value, json};

const SIGNING_SECRET: &str = "signing-secret-for-tests-0002";
const CHANNEL: &str = "C0SECURITY";
const WAIT: Duration = Duration::from_secs(10);

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = vigilo(dir, args);
    assert!(out.status.success(), "{args:?}: {}", show(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A project with one finding per input type: bucket `b1` (select), port `p1`
/// (multiselect, two identical sets decide) and key `k1` (text with a pattern).
fn project(state_url: &str, slack: &Slack, target: &Recorder, listen: u16) -> tempfile::TempDir {
    let config = format!(
        r#"[state]
url = "{state_url}"

[server]
listen = "127.0.0.1:{listen}"
secret = "link-secret-for-tests"

[database.src]
url = "sqlite://src.db"

[integration.slack.main]
token = "{BOT_TOKEN}"
signing_secret = "{SIGNING_SECRET}"
api_url = "{api}"
pace = "20ms"

[notifier.security]
notify = [{{ integration = "slack.main", channel = "{CHANNEL}" }}]

[approver.alice]
slack = "U0ALICE"

[approver.bob]
slack = "U0BOB"

[approver.carol]
slack = "U0CAROL"

[group.security]
members = ["alice", "bob", "carol"]
"#,
        api = slack.api_url(),
    );
    let port = target.port;
    let tag_owner = format!(
        r#"[approval]
type = "select"
notifier = "security"
subject = "Tag bucket {{{{ row.name }}}} with its owner"
prompt = "Bucket {{{{ row.name }}}} has no owner tag. Who owns it?"
approvers = ["security"]
placeholder = "Pick the owner team"
options = [
  {{ value = "team-payments", label = "Payments" }},
  {{ value = "team-data", label = "Data platform" }},
  {{ value = "ignore", label = "Accept the risk for 30 days", accept_for = "30d" }},
]

[[action]]
when = "team-payments"
type = "http"
url = "http://127.0.0.1:{port}/tag/{{{{ row.name }}}}"
body = "owner={{{{ approval.value }}}}"

[[action]]
when = "team-data"
type = "http"
url = "http://127.0.0.1:{port}/tag/{{{{ row.name }}}}"
body = "owner={{{{ approval.value }}}}"
"#
    );
    let close_ports = format!(
        r#"[approval]
type = "multiselect"
required = 2
notifier = "security"
subject = "Close ports on {{{{ row.id }}}}?"
prompt = "Host {{{{ row.id }}}} listens on the internet. Which ports should close?"
approvers = ["security"]
options = [
  {{ value = "ssh", label = "SSH" }},
  {{ value = "rdp", label = "RDP" }},
  {{ value = "db", label = "Database" }},
]

[[action]]
when = "ssh"
type = "http"
url = "http://127.0.0.1:{port}/close/{{{{ row.id }}}}"
body = "ports={{{{ approval.value }}}}"

[[action]]
when = "db"
type = "http"
url = "http://127.0.0.1:{port}/close-db/{{{{ row.id }}}}"
"#
    );
    let ticket = format!(
        r#"[approval]
type = "text"
notifier = "security"
subject = "Who owns key {{{{ row.id }}}}?"
prompt = "Key {{{{ row.id }}}} has no owner. Name the team."
approvers = ["security"]
placeholder = "owner team"
pattern = "^team-[a-z]+$"
options = [{{ value = "team-payments", label = "Payments" }}]

[[action]]
type = "http"
url = "http://127.0.0.1:{port}/ticket/{{{{ row.id }}}}"
body = "owner={{{{ approval.value }}}}"
"#
    );
    let query = |name: &str, key: &str, remediation: &str| {
        format!(
            "-- title: {name}\n-- primary_key: {key}\n-- remediation: {remediation}\nselect {key} from {name}\n"
        )
    };
    let dir = common::project(&[
        ("config/vigilo.toml", &config),
        (
            "queries/buckets.sql",
            &query("buckets", "name", "tag_owner"),
        ),
        ("queries/hosts.sql", &query("hosts", "id", "close_ports")),
        ("queries/keys.sql", &query("keys", "id", "ticket")),
        ("remediations/tag_owner.toml", &tag_owner),
        ("remediations/close_ports.toml", &close_ports),
        ("remediations/ticket.toml", &ticket),
    ]);
    let db = rusqlite::Connection::open(dir.path().join("src.db")).unwrap();
    db.execute_batch(
        "create table buckets (name text); insert into buckets values ('b1');
         create table hosts (id text); insert into hosts values ('p1');
         create table keys (id text); insert into keys values ('k1');",
    )
    .unwrap();
    dir
}

fn sqlite_state() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("state.db").display());
    (dir, url)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// POSTs `payload=<JSON>` to `/slack/interactions`, signed by Slack's SDK (`None`: unsigned);
/// returns the status and the answer's body.
async fn post(port: u16, payload: &Value, signed: bool) -> (u16, String) {
    let body = serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap();
    let mut request = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/slack/interactions"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.clone());
    if signed {
        let ts = now();
        request = request
            .header("x-slack-request-timestamp", ts.to_string())
            .header(
                "x-slack-signature",
                common::slack::sdk_signature(SIGNING_SECRET, ts, &body),
            );
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// A posted approval request.
struct Request {
    /// The approval's id.
    id: i64,
    /// Its actions block's `block_id`.
    block_id: String,
    /// Its actions block's elements.
    elements: Vec<Value>,
    /// Slack's `ts` of the message.
    ts: String,
}

/// The request whose text is `subject`, as the stand-in received it.
fn request(slack: &Slack, subject: &str) -> Request {
    let call = slack
        .calls()
        .into_iter()
        .find(|c| {
            c.method == "chat.postMessage" && c.answered == (200, true) && c.body["text"] == subject
        })
        .unwrap_or_else(|| panic!("no request {subject:?}: {:#?}", slack.calls()));
    let actions = call.body["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "actions")
        .expect("an actions block")
        .clone();
    let block_id = actions["block_id"].as_str().unwrap().to_string();
    Request {
        id: block_id
            .strip_prefix("vigilo:approval:")
            .unwrap()
            .parse()
            .unwrap(),
        block_id,
        elements: actions["elements"].as_array().unwrap().clone(),
        ts: call.reply["ts"].as_str().unwrap().to_string(),
    }
}

/// The options of menu `element` whose values are `values`, as Slack sends them back.
fn chosen(element: &Value, values: &[&str]) -> Vec<Value> {
    values
        .iter()
        .map(|v| {
            element["options"]
                .as_array()
                .unwrap()
                .iter()
                .find(|o| o["value"] == *v)
                .unwrap_or_else(|| panic!("no option {v} in {element}"))
                .clone()
        })
        .collect()
}

/// A `block_actions` payload as Slack sends it when `user` uses `action` in request `r`
/// whose inputs hold `state` (the message's `state.values`).
fn block_actions(user: &str, r: &Request, action: Value, state: Value, trigger: &str) -> Value {
    let mut action = action;
    action["block_id"] = r.block_id.clone().into();
    action["action_ts"] = "1700000001.000200".into();
    json!({
        "type": "block_actions",
        "user": {"id": user, "username": user.to_lowercase(), "name": user.to_lowercase(), "team_id": "T0TEAM"},
        "api_app_id": "A0VIGILO",
        "token": "verification-token-unused",
        "container": {"type": "message", "message_ts": r.ts, "channel_id": CHANNEL, "is_ephemeral": false},
        "trigger_id": trigger,
        "team": {"id": "T0TEAM", "domain": "test"},
        "enterprise": null,
        "is_enterprise_install": false,
        "channel": {"id": CHANNEL, "name": "security"},
        "message": {"type": "message", "ts": r.ts, "text": "…"},
        "state": {"values": state},
        "response_url": "",
        "actions": [action],
    })
}

/// The click of `element` (a button) in request `r` by `user`, the menus holding `state`.
fn press(slack: &Slack, user: &str, r: &Request, element: &Value, state: Value) -> Value {
    let action = json!({
        "type": "button",
        "action_id": element["action_id"],
        "text": element["text"],
        "value": element["value"],
    });
    block_actions(user, r, action, state, &slack.trigger_id())
}

/// `state.values` of request `r` whose multiselect `menu` holds `values`.
fn selection(r: &Request, menu: &Value, values: &[&str]) -> Value {
    json!({r.block_id.clone(): {menu["action_id"].as_str().unwrap(): {
        "type": "multi_static_select",
        "selected_options": chosen(menu, values),
    }}})
}

fn approval(dir: &Path, id: i64) -> Value {
    let all: Vec<Value> = serde_json::from_str(&ok(
        dir,
        &["approvals", "--status", "all", "--format", "json"],
    ))
    .unwrap();
    all.into_iter()
        .find(|a| a["id"] == id)
        .unwrap_or_else(|| panic!("no approval {id}"))
}

/// Ephemeral messages Slack was asked to show `user`.
fn ephemerals(slack: &Slack, user: &str) -> Vec<String> {
    slack
        .accepted("chat.postEphemeral")
        .iter()
        .filter(|b| b["user"] == user)
        .map(|b| b["text"].as_str().unwrap().to_string())
        .collect()
}

/// Waits for a new ephemeral message to `user` (after `before` of them) and returns it.
fn next_ephemeral(slack: &Slack, user: &str, before: usize) -> String {
    slack.wait_for(WAIT, &format!("an ephemeral message to {user}"), |_| {
        ephemerals(slack, user).len() > before
    });
    ephemerals(slack, user)[before].clone()
}

/// The `chat.update` of the request whose `ts` is `ts`, once it came.
fn update_of(slack: &Slack, ts: &str) -> String {
    slack.wait_for(WAIT, "the request's update", |_| {
        slack.accepted("chat.update").iter().any(|u| u["ts"] == ts)
    });
    slack
        .accepted("chat.update")
        .into_iter()
        .find(|u| u["ts"] == ts)
        .unwrap()["blocks"]
        .to_string()
}

/// The bodies the action target received on `path`, once there are `n`.
fn bodies(target: &Recorder, path: &str, n: usize) -> Vec<String> {
    let start = std::time::Instant::now();
    loop {
        let seen: Vec<String> = target
            .seen()
            .into_iter()
            .filter(|(_, p, _, _)| p == path)
            .map(|(_, _, _, body)| body)
            .collect();
        if seen.len() >= n || start.elapsed() > WAIT {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `data` of the audit entries of `kind` about approval `id`.
fn audit_data(dir: &Path, kind: &str, id: i64) -> Vec<Value> {
    let entries: Vec<Value> =
        serde_json::from_str(&ok(dir, &["audit", "--format", "json"])).unwrap();
    entries
        .into_iter()
        .filter(|e| e["kind"] == kind && e["approval_id"] == id)
        .map(|e| e["data"].clone())
        .collect()
}

async fn select_answers(port: u16, slack: &Slack, target: &Recorder, d: &Path) {
    let r = request(slack, "Tag bucket b1 with its owner");
    let [menu] = r.elements.as_slice() else {
        panic!("one menu: {:#?}", r.elements)
    };
    assert_eq!(menu["type"], "static_select");
    assert_eq!(menu["placeholder"]["text"], "Pick the owner team");
    let options: Vec<(&str, &str)> = menu["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["value"].as_str().unwrap(),
                o["text"]["text"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        options,
        [
            ("team-payments", "Payments"),
            ("team-data", "Data platform"),
            ("ignore", "Accept the risk for 30 days")
        ]
    );
    let choose = |user: &str, value: &str| {
        let [option] = chosen(menu, &[value]).try_into().unwrap();
        let action = json!({
            "type": "static_select",
            "action_id": menu["action_id"],
            "selected_option": option,
            "placeholder": menu["placeholder"],
        });
        let state = json!({r.block_id.clone(): {menu["action_id"].as_str().unwrap(): {
            "type": "static_select", "selected_option": option}}});
        block_actions(user, &r, action, state, &slack.trigger_id())
    };

    // Someone who is not an approver: told so, only them; nothing recorded.
    assert_eq!(
        post(port, &choose("U0MALLORY", "team-data"), true).await.0,
        200
    );
    assert!(next_ephemeral(slack, "U0MALLORY", 0).contains("not an approver"));
    assert_eq!(approval(d, r.id)["votes"], json!([]));

    // Alice's choice decides; the outcome names it; the chosen owner reaches the action.
    let before = ephemerals(slack, "U0ALICE").len();
    assert_eq!(
        post(port, &choose("U0ALICE", "team-data"), true).await.0,
        200
    );
    let outcome = update_of(slack, &r.ts);
    assert!(
        outcome.contains("Decided: Data platform* by alice") && !outcome.contains("\"actions\""),
        "{outcome}"
    );
    let a = approval(d, r.id);
    assert_eq!(
        (a["status"].as_str(), a["decision"].as_str()),
        (Some("decided"), Some("team-data"))
    );
    assert_eq!(a["values"], json!(["team-data"]));
    assert_eq!(a["votes"][0]["identity"], "slack:U0ALICE");
    assert_eq!(bodies(target, "/tag/b1", 1), ["owner=team-data"]);
    let vote = &audit_data(d, "approval.vote", r.id)[0];
    assert_eq!(vote["option"], "team-data");
    assert_eq!(vote["identity"], "slack:U0ALICE");
    assert_eq!(
        audit_data(d, "approval.decided", r.id)[0]["decision"],
        "team-data"
    );

    // One vote each: a second choice is refused, to alice only.
    assert_eq!(
        post(port, &choose("U0ALICE", "team-payments"), true)
            .await
            .0,
        200
    );
    let refusal = next_ephemeral(slack, "U0ALICE", before);
    assert!(refusal.contains("already decided"), "{refusal}");
    assert_eq!(approval(d, r.id)["votes"].as_array().unwrap().len(), 1);
}

async fn multiselect_answers(port: u16, slack: &Slack, target: &Recorder, d: &Path) {
    let r = request(slack, "Close ports on p1?");
    let [menu, submit] = r.elements.as_slice() else {
        panic!("a menu and a button: {:#?}", r.elements)
    };
    assert_eq!(menu["type"], "multi_static_select");
    assert_eq!(menu["options"].as_array().unwrap().len(), 3);
    assert_eq!(
        (submit["type"].as_str(), submit["text"]["text"].as_str()),
        (Some("button"), Some("Submit"))
    );

    // Changing the menu alone records nothing (Slack sends block_actions for each change).
    let change = json!({
        "type": "multi_static_select",
        "action_id": menu["action_id"],
        "selected_options": chosen(menu, &["ssh"]),
    });
    let state = selection(&r, menu, &["ssh"]);
    let trigger = slack.trigger_id();
    assert_eq!(
        post(
            port,
            &block_actions("U0ALICE", &r, change, state, &trigger),
            true
        )
        .await
        .0,
        200
    );
    // Submit with nothing selected: refused with the reason; then mallory, who is told.
    let before = ephemerals(slack, "U0ALICE").len();
    assert_eq!(
        post(port, &press(slack, "U0ALICE", &r, submit, json!({})), true)
            .await
            .0,
        200
    );
    let empty = next_ephemeral(slack, "U0ALICE", before);
    assert!(empty.contains("one or more options"), "{empty}");
    let sel = selection(&r, menu, &["ssh"]);
    post(port, &press(slack, "U0MALLORY", &r, submit, sel), true).await;
    assert!(next_ephemeral(slack, "U0MALLORY", 0).contains("not an approver"));
    assert_eq!(approval(d, r.id)["votes"], json!([]), "no vote yet");

    // Two identical sets decide (required = 2); a different set does not count with them.
    for (n, (user, values)) in [("U0ALICE", &["ssh", "rdp"][..]), ("U0BOB", &["ssh"][..])]
        .into_iter()
        .enumerate()
    {
        let state = selection(&r, menu, values);
        assert_eq!(
            post(port, &press(slack, user, &r, submit, state), true)
                .await
                .0,
            200
        );
        slack.wait_for(WAIT, &format!("vote {}", n + 1), |_| {
            approval(d, r.id)["votes"].as_array().unwrap().len() > n
        });
    }
    let a = approval(d, r.id);
    assert_eq!(a["status"], "pending", "{a}");
    assert_eq!(a["votes"][0]["values"], json!(["ssh", "rdp"]));
    assert_eq!(a["votes"][1]["values"], json!(["ssh"]));
    // Carol picks the same set as alice, in another order: it decides.
    let state = selection(&r, menu, &["rdp", "ssh"]);
    post(port, &press(slack, "U0CAROL", &r, submit, state), true).await;
    let outcome = update_of(slack, &r.ts);
    assert!(
        outcome.contains("Decided: SSH, RDP* by alice, carol"),
        "{outcome}"
    );
    let a = approval(d, r.id);
    assert_eq!(
        (a["decision"].as_str(), a["values"].clone()),
        (Some("ssh, rdp"), json!(["ssh", "rdp"]))
    );
    assert_eq!(bodies(target, "/close/p1", 1), ["ports=ssh, rdp"]);
    assert!(
        bodies(target, "/close-db/p1", 0).is_empty(),
        "db was not chosen"
    );
    let votes: Vec<String> = audit_data(d, "approval.vote", r.id)
        .iter()
        .map(|v| v["option"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(votes, ["ssh, rdp", "ssh", "ssh, rdp"]);
    let decided = &audit_data(d, "approval.decided", r.id)[0];
    assert_eq!(decided["decision"], "ssh, rdp");
    assert_eq!(decided["by"], json!(["alice", "carol"]));
}

/// A `view_submission` as Slack sends it when `user` submits `view` (as opened) with `text`.
fn view_submission(user: &str, view: &Value, text: &str) -> Value {
    let input = view["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "input")
        .expect("an input block");
    let mut submitted = view.clone();
    submitted["state"] = json!({"values": {input["block_id"].as_str().unwrap(): {
        input["element"]["action_id"].as_str().unwrap(): {"type": "plain_text_input", "value": text}}}});
    json!({
        "type": "view_submission",
        "team": {"id": "T0TEAM", "domain": "test"},
        "user": {"id": user, "username": user.to_lowercase(), "name": user.to_lowercase(), "team_id": "T0TEAM"},
        "api_app_id": "A0VIGILO",
        "token": "verification-token-unused",
        "trigger_id": "9.98765.abcdfeed",
        "view": submitted,
        "response_urls": [],
        "is_enterprise_install": false,
        "enterprise": null,
    })
}

async fn text_answers(port: u16, slack: &Slack, target: &Recorder, d: &Path) {
    let r = request(slack, "Who owns key k1?");
    let [answer] = r.elements.as_slice() else {
        panic!("one button: {:#?}", r.elements)
    };
    assert_eq!(
        (answer["type"].as_str(), answer["text"]["text"].as_str()),
        (Some("button"), Some("Answer"))
    );
    let opened = || slack.accepted("views.open");

    // Not an approver: told so; no form.
    post(
        port,
        &press(slack, "U0MALLORY", &r, answer, json!({})),
        true,
    )
    .await;
    assert!(next_ephemeral(slack, "U0MALLORY", 0).contains("not an approver"));
    // A click whose trigger expired before vigilo exchanged it: Slack says so; alice is told.
    let before = ephemerals(slack, "U0ALICE").len();
    let late = press(slack, "U0ALICE", &r, answer, json!({}));
    slack.expire_trigger(late["trigger_id"].as_str().unwrap());
    post(port, &late, true).await;
    let told = next_ephemeral(slack, "U0ALICE", before);
    assert!(told.contains("expired_trigger_id"), "{told}");
    assert!(opened().is_empty());

    // Alice's click opens the form with her click's trigger.
    let click = press(slack, "U0ALICE", &r, answer, json!({}));
    post(port, &click, true).await;
    slack.wait_for(WAIT, "views.open", |_| !opened().is_empty());
    let call = slack
        .calls()
        .into_iter()
        .find(|c| c.method == "views.open" && c.answered == (200, true))
        .unwrap();
    assert_eq!(call.body["trigger_id"], click["trigger_id"]);
    let view = call.reply["view"].clone();
    assert_eq!(view["type"], "modal");
    assert!(view["id"].as_str().unwrap().starts_with('V'));
    let metadata: Value = serde_json::from_str(view["private_metadata"].as_str().unwrap()).unwrap();
    assert_eq!(metadata["approval"], r.id);
    let shown = view["blocks"].to_string();
    assert!(shown.contains("Key k1 has no owner."), "{shown}");
    assert!(
        shown.contains("`team-payments` (Payments)"),
        "suggestions: {shown}"
    );
    let input = view["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "input")
        .unwrap()
        .clone();
    assert_eq!(input["element"]["type"], "plain_text_input");
    assert_eq!(input["element"]["placeholder"]["text"], "owner team");
    assert!(
        input["hint"]["text"]
            .as_str()
            .unwrap()
            .contains("^team-[a-z]+$")
    );

    // Not signed: 401, nothing recorded.
    let good = view_submission("U0ALICE", &view, "  team-ops ");
    assert_eq!(post(port, &good, false).await.0, 401);
    // A text that fails the pattern: the form shows why; nothing recorded.
    let (status, body) = post(port, &view_submission("U0ALICE", &view, "payments"), true).await;
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{body:?}"));
    assert_eq!(answer["response_action"], "errors", "{answer}");
    let why = answer["errors"][input["block_id"].as_str().unwrap()]
        .as_str()
        .unwrap_or_else(|| panic!("no error for the input: {answer}"));
    assert!(
        why.contains("\"payments\" does not match the pattern ^team-[a-z]+$"),
        "{why}"
    );
    assert_eq!(approval(d, r.id)["votes"], json!([]));
    assert!(audit_data(d, "approval.vote", r.id).is_empty());

    // A matching text (trimmed) decides: the form closes (an empty 200).
    let (status, body) = post(port, &good, true).await;
    assert_eq!((status, body.as_str()), (200, ""));
    let a = approval(d, r.id);
    assert_eq!(
        (a["status"].as_str(), a["decision"].as_str()),
        (Some("decided"), Some("team-ops"))
    );
    assert_eq!(a["votes"][0]["channel"], "slack");
    let outcome = update_of(slack, &r.ts);
    assert!(outcome.contains("Decided: team-ops* by alice"), "{outcome}");
    assert_eq!(bodies(target, "/ticket/k1", 1), ["owner=team-ops"]);
    assert_eq!(
        audit_data(d, "approval.vote", r.id)[0]["option"],
        "team-ops"
    );
    assert_eq!(
        audit_data(d, "approval.decided", r.id)[0]["decision"],
        "team-ops"
    );

    // Submitted again once decided: the form says so; still one vote.
    let (_, body) = post(port, &view_submission("U0BOB", &view, "team-data"), true).await;
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert!(
        answer["errors"].to_string().contains("already decided"),
        "{answer}"
    );
    assert_eq!(approval(d, r.id)["votes"].as_array().unwrap().len(), 1);
}

async fn inputs_in_slack(state_url: &str) {
    let slack = Slack::start(&[CHANNEL]);
    let target = Recorder::start();
    let port = free_port();
    let dir = project(state_url, &slack, &target, port);
    let d = dir.path();
    ok(d, &["scan"]);
    let _run = common::run(d);
    common::wait_healthy(port).await;
    slack.wait_for(WAIT, "three requests", |_| {
        slack.accepted("chat.postMessage").len() >= 3
    });

    select_answers(port, &slack, &target, d).await;
    multiselect_answers(port, &slack, &target, d).await;
    text_answers(port, &slack, &target, d).await;
    assert!(ok(d, &["audit", "verify"]).contains("intact"));
}

#[tokio::test]
async fn select_multiselect_and_text_answers_in_slack_on_sqlite() {
    let (_s, url) = sqlite_state();
    inputs_in_slack(&url).await;
}

#[tokio::test]
async fn select_multiselect_and_text_answers_in_slack_on_postgres() {
    let db = common::PgDb::new("slackinputs").await;
    inputs_in_slack(&db.url).await;
}
