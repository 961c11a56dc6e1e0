//! Slack without an inbound URL, through the binary: Socket Mode against the stand-in's
//! WebSocket server (tests/common/slack_socket.rs), the app manifest, token checks, approvers
//! known only by email, and posts that are never made twice.

mod common;

use std::path::Path;
use std::time::Duration;

use common::recorder::Recorder;
use common::slack::{APP_TOKEN, BOT_TOKEN, Slack};
use common::{show, vigilo};
use serde_json::{Value, json};

const CHANNEL: &str = "C0SECURITY";

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = vigilo(dir, args);
    assert!(out.status.success(), "{args:?}: {}", show(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A project on SQLite with no `[server]`: Slack reaches it only over Socket Mode. Deactivating
/// needs two votes; `approvers` is the config of `[approver.alice]` and `[approver.bob]`.
fn project(slack: &Slack, target: &Recorder, approvers: &str, keys: usize) -> tempfile::TempDir {
    let config = format!(
        r#"[state]
url = "sqlite://state.db"

[database.src]
url = "sqlite://src.db"

[integration.slack.main]
token = "{BOT_TOKEN}"
app_token = "{APP_TOKEN}"
api_url = "{api}"
pace = "20ms"
confirm_ttl = "30s"

[notifier.security]
notify = [{{ integration = "slack.main", channel = "{CHANNEL}" }}]

{approvers}

[group.security]
members = ["alice", "bob"]
"#,
        api = slack.api_url(),
    );
    let remediation = format!(
        r#"[approval]
notifier = "security"
subject = "Deactivate IAM access key {{{{ row.id }}}}?"
prompt = "Key {{{{ row.id }}}} of {{{{ row.owner }}}} is stale."
approvers = ["security"]
options = [
  {{ value = "deactivate", label = "Deactivate", style = "danger", required = 2 }},
  {{ value = "keep", label = "Keep key active" }},
]

[[action]]
when = "deactivate"
type = "http"
url = "http://127.0.0.1:{port}/deactivate/{{{{ row.id }}}}"
"#,
        port = target.port
    );
    let dir = common::project(&[
        ("config/vigilo.toml", &config),
        (
            "queries/keys.sql",
            "-- title: Stale keys\n-- primary_key: id\n-- remediation: deactivate\nselect id, owner from keys order by id\n",
        ),
        ("remediations/deactivate.toml", &remediation),
    ]);
    let db = rusqlite::Connection::open(dir.path().join("src.db")).unwrap();
    db.execute_batch("create table keys (id text, owner text)")
        .unwrap();
    for i in 1..=keys {
        db.execute(
            "insert into keys values (?1, ?2)",
            [format!("AKIA{i:04}"), format!("user{i}")],
        )
        .unwrap();
    }
    dir
}

const BY_ID: &str = "[approver.alice]\nslack = \"U0ALICE\"\n\n[approver.bob]\nslack = \"U0BOB\"\n";

/// A button click as Slack puts it in an `interactive` envelope.
fn click(user: &str, approval: i64, option: &str) -> Value {
    json!({
        "type": "block_actions",
        "user": {"id": user, "username": user.to_lowercase()},
        "channel": {"id": CHANNEL},
        "container": {"type": "message", "channel_id": CHANNEL},
        "trigger_id": format!("trigger-{user}-{approval}-{option}"),
        "actions": [{
            "type": "button",
            "block_id": format!("vigilo:approval:{approval}"),
            "action_id": format!("vote:{option}"),
            "value": option,
            "action_ts": "1700000000.000100",
        }],
    })
}

fn approval(dir: &Path, id: i64) -> Value {
    let all: Vec<Value> = serde_json::from_str(&ok(
        dir,
        &["approvals", "--status", "all", "--format", "json"],
    ))
    .unwrap();
    all.into_iter().find(|a| a["id"] == id).unwrap()
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

/// Waits until `pred` holds of the project's state, or panics after 20 s.
fn wait_until(what: &str, pred: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    while !pred() {
        assert!(start.elapsed() < Duration::from_secs(20), "never: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn socket_mode_carries_the_seed_flow_without_an_inbound_url() {
    let slack = Slack::start(&[CHANNEL]);
    let target = Recorder::start();
    let dir = project(&slack, &target, BY_ID, 2);
    let d = dir.path();
    ok(d, &["scan"]);
    assert_eq!(slack.accepted("chat.postMessage").len(), 2, "two requests");

    let _run = common::run(d);
    slack.wait_connections(1);
    let opens = slack.accepted("apps.connections.open").len();
    assert_eq!(opens, 1, "one URL asked for one connection");

    // A click from someone who is not an approver: told so, only them; nothing recorded.
    slack.send_envelope("interactive", click("U0MALLORY", 1, "deactivate"));
    slack.wait_for(Duration::from_secs(20), "the refusal to mallory", |_| {
        !ephemerals(&slack, "U0MALLORY").is_empty()
    });
    assert!(ephemerals(&slack, "U0MALLORY")[0].contains("not an approver"));

    // Alice's click votes; Slack delivers it again (its ack was lost): still one vote, and
    // alice is told nothing about the repeat.
    let alice = slack.send_envelope("interactive", click("U0ALICE", 1, "deactivate"));
    wait_until("alice's vote", || {
        approval(d, 1)["votes"].as_array().unwrap().len() == 1
    });
    assert!(slack.socket().redeliver(&alice));
    std::thread::sleep(Duration::from_millis(1000));
    let a = approval(d, 1);
    assert_eq!(a["status"], "pending", "deactivate needs two votes");
    assert_eq!(a["votes"].as_array().unwrap().len(), 1, "{a}");
    assert_eq!(a["votes"][0]["by"], "alice");
    assert_eq!(a["votes"][0]["channel"], "slack");
    assert!(
        ephemerals(&slack, "U0ALICE").is_empty(),
        "a re-delivered click is no error to its author: {:?}",
        ephemerals(&slack, "U0ALICE")
    );

    // Slack asks for a new connection, then the network drops it: vigilo reconnects each time,
    // with a new URL.
    assert!(slack.socket().disconnect("refresh_requested"));
    slack.wait_connections(2);
    assert!(slack.socket().drop_connection());
    slack.wait_connections(3);
    assert_eq!(slack.accepted("apps.connections.open").len(), 3);
    assert_eq!(slack.socket().refused, 0, "each URL used once");

    // Bob's click over the new connection decides; the action runs once.
    slack.send_envelope("interactive", click("U0BOB", 1, "deactivate"));
    wait_until("the decision", || approval(d, 1)["status"] == "decided");
    slack.wait_for(Duration::from_secs(20), "the request's update", |_| {
        !slack.accepted("chat.update").is_empty()
    });
    wait_until("the action", || target.seen().len() == 1);
    let a = approval(d, 1);
    assert_eq!(a["decision"], "deactivate");
    assert_eq!(a["votes"].as_array().unwrap().len(), 2);

    // A slash command over the socket: the Confirm prompt comes back in the acknowledgement.
    let command = slack.send_envelope(
        "slash_commands",
        json!({"command": "/vigilo", "text": "scan keys", "user_id": "U0ALICE",
               "channel_id": CHANNEL, "response_url": slack.response_url("s"), "team_id": "T0TEAM"}),
    );
    wait_until("the command's acknowledgement", || {
        slack.socket().acks.iter().any(|a| a.envelope_id == command)
    });
    let prompt = slack
        .socket()
        .acks
        .iter()
        .find(|a| a.envelope_id == command)
        .and_then(|a| a.payload.clone())
        .expect("the command's answer rides on its acknowledgement");
    assert_eq!(prompt["response_type"], "ephemeral", "{prompt}");
    assert!(
        prompt["blocks"][1]["block_id"]
            .as_str()
            .is_some_and(|b| b.starts_with("vigilo:command:")),
        "{prompt}"
    );

    // An event vigilo does not subscribe to is acknowledged all the same.
    let event = slack.send_envelope(
        "events_api",
        json!({"type": "event_callback", "event": {"type": "app_mention", "text": "hi"}}),
    );
    wait_until("the event's acknowledgement", || {
        slack.socket().acks.iter().any(|a| a.envelope_id == event)
    });

    // Every delivery was acknowledged, in Slack's window (nothing was delivered again for
    // lack of an ack), and the acks came back in the order of the deliveries.
    let s = slack.socket();
    assert!(s.late.is_empty(), "not acknowledged in time: {:?}", s.late);
    for delivery in &s.deliveries {
        assert!(
            s.acked(delivery),
            "never acknowledged: {}",
            delivery.envelope
        );
    }
    let acked: Vec<&str> = s.acks.iter().map(|a| a.envelope_id.as_str()).collect();
    let sent: Vec<&str> = s
        .deliveries
        .iter()
        .map(|d| d.envelope["envelope_id"].as_str().unwrap())
        .collect();
    assert_eq!(acked, sent, "one ack per delivery, in order");
    drop(s);

    let entries: Vec<Value> = serde_json::from_str(&ok(d, &["audit", "--format", "json"])).unwrap();
    let votes = entries
        .iter()
        .filter(|e| e["kind"] == "approval.vote")
        .count();
    assert_eq!(votes, 2, "alice's click counted once, bob's once");
    assert!(ok(d, &["audit", "verify"]).contains("intact"));
}
