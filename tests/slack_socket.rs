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
    common::slack::stale_keys_project(&config, &remediation, keys)
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

/// The manifest of `dir`'s project, parsed; its note on stderr.
fn manifest(dir: &Path) -> (Value, String) {
    let out = vigilo(dir, &["slack", "manifest"]);
    assert!(out.status.success(), "{}", show(&out));
    let manifest = serde_json::from_slice(&out.stdout).expect("the manifest is JSON");
    (manifest, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn the_manifest_names_exactly_the_scopes_of_the_calls_vigilo_makes() {
    let slack = Slack::start(&[CHANNEL]);
    let target = Recorder::start();
    let dir = project(&slack, &target, BY_ID, 1);
    let d = dir.path();

    // With an app token: Socket Mode, no URL anywhere.
    let (m, note) = manifest(d);
    assert!(note.contains("Socket Mode"), "{note}");
    let scopes: std::collections::BTreeSet<&str> = m["oauth_config"]["scopes"]["bot"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    // The stand-in answers only the methods of METHOD_SCOPES (anything else is
    // unknown_method, which fails the other tests), so these are the scopes of every call.
    assert_eq!(scopes, common::slack::bot_scopes());
    assert_eq!(m["settings"]["socket_mode_enabled"], true);
    assert_eq!(m["settings"]["interactivity"]["is_enabled"], true);
    assert!(m["settings"]["interactivity"].get("request_url").is_none());
    let command = &m["features"]["slash_commands"][0];
    assert_eq!(command["command"], "/vigilo");
    assert!(command.get("url").is_none());
    assert_eq!(m["features"]["bot_user"]["display_name"], "vigilo");

    // Without one, and with a base_url: Slack's requests go to vigilo's routes.
    let path = d.join("config/vigilo.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        &format!("app_token = \"{APP_TOKEN}\"\n"),
        "signing_secret = \"s\"\n",
    ) + "\n[server]\nlisten = \"127.0.0.1:7878\"\nbase_url = \"https://vigilo.example.com/\"\n";
    std::fs::write(&path, text).unwrap();
    let (m, note) = manifest(d);
    assert!(note.contains("https://vigilo.example.com"), "{note}");
    assert_eq!(m["settings"]["socket_mode_enabled"], false);
    assert_eq!(
        m["settings"]["interactivity"]["request_url"],
        "https://vigilo.example.com/slack/interactions"
    );
    assert_eq!(
        m["features"]["slash_commands"][0]["url"],
        "https://vigilo.example.com/slack/commands"
    );
}

#[test]
fn token_kinds_are_checked_and_validate_online_says_what_is_missing() {
    let slack = Slack::start(&[CHANNEL]);
    let target = Recorder::start();
    let by_email = "[approver.alice]\nemail = \"alice@example.com\"\n\n[approver.bob]\nemail = \"bob@nowhere.example\"\n";
    let dir = project(&slack, &target, by_email, 1);
    let d = dir.path();
    slack.add_users(&[("alice@example.com", "U0ALICE")]);
    slack.grant_scopes(&["chat:write", "commands"]);

    let out = vigilo(d, &["validate", "--online"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    for expected in [
        "ok: slack.main: bot token of vigilo in Test",
        "error: slack.main: the bot token lacks channels:history, groups:history, users:read, users:read.email",
        "ok: slack.main: app_token opens Socket Mode connections",
        "error: slack.main: approver.bob: email bob@nowhere.example is no Slack user of this workspace (users_not_found)",
    ] {
        assert!(stdout.contains(expected), "{expected:?} in:\n{stdout}");
    }
    assert!(!stdout.contains("approver.alice"), "{stdout}");
    assert!(!stdout.contains(BOT_TOKEN) && !stdout.contains(APP_TOKEN));
    // Offline, the same project is valid: nothing was asked of Slack.
    let before = slack.calls().len();
    ok(d, &["validate"]);
    assert_eq!(slack.calls().len(), before);

    // Tokens of the wrong kind.
    let path = d.join("config/vigilo.toml");
    let good = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        good.replace(
            &format!("token = \"{BOT_TOKEN}\""),
            &format!("token = \"{APP_TOKEN}\""),
        ),
    )
    .unwrap();
    let out = vigilo(d, &["validate"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        show(&out).contains("config/vigilo.toml:8: integration.slack.main.token: this is an app-level token (xapp-…); it goes in app_token"),
        "{}",
        show(&out)
    );
    std::fs::write(
        &path,
        good.replace(
            &format!("app_token = \"{APP_TOKEN}\""),
            &format!("app_token = \"{BOT_TOKEN}\""),
        ),
    )
    .unwrap();
    let out = vigilo(d, &["validate"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        show(&out)
            .contains("integration.slack.main.app_token: expected an app-level token (xapp-…"),
        "{}",
        show(&out)
    );
    assert!(!show(&out).contains(BOT_TOKEN), "the token is not shown");
}

#[test]
fn approvers_known_by_email_vote_as_their_slack_user() {
    let slack = Slack::start(&[CHANNEL]);
    let target = Recorder::start();
    let by_email = "[approver.alice]\nemail = \"alice@example.com\"\n\n[approver.bob]\nemail = \"bob@example.com\"\n";
    let dir = project(&slack, &target, by_email, 1);
    let d = dir.path();
    slack.add_users(&[("alice@example.com", "U0ALICE")]);
    ok(d, &["scan"]);
    let _run = common::run(d);
    slack.wait_connections(1);

    slack.send_envelope("interactive", click("U0ALICE", 1, "deactivate"));
    wait_until("alice's vote", || {
        approval(d, 1)["votes"].as_array().unwrap().len() == 1
    });
    assert_eq!(approval(d, 1)["votes"][0]["by"], "alice");
    let lookups = slack.accepted("users.lookupByEmail").len();

    // Bob is not in the workspace yet: his click is refused, and the audit says why.
    slack.send_envelope("interactive", click("U0BOB", 1, "deactivate"));
    slack.wait_for(Duration::from_secs(20), "the refusal to bob", |_| {
        !ephemerals(&slack, "U0BOB").is_empty()
    });
    assert!(ephemerals(&slack, "U0BOB")[0].contains("not an approver"));
    let entries: Vec<Value> = serde_json::from_str(&ok(d, &["audit", "--format", "json"])).unwrap();
    let refused = entries
        .iter()
        .find(|e| e["kind"] == "approval.refused")
        .expect("the refused click is audited");
    assert_eq!(refused["actor"], "slack:U0BOB");
    assert_eq!(refused["approval_id"], 1);
    assert_eq!(
        refused["data"]["unresolved"],
        json!([{"approver": "bob", "email": "bob@example.com", "error": "users_not_found"}])
    );

    // Alice's command: her id is cached, nothing is looked up again.
    let before = slack
        .calls()
        .iter()
        .filter(|c| c.method == "users.lookupByEmail")
        .count();
    slack.send_envelope(
        "slash_commands",
        json!({"command": "/vigilo", "text": "scan keys", "user_id": "U0ALICE",
               "channel_id": CHANNEL, "response_url": slack.response_url("s")}),
    );
    wait_until("the command's answer", || {
        slack.socket().acks.iter().any(|a| a.payload.is_some())
    });
    let after = slack
        .calls()
        .iter()
        .filter(|c| c.method == "users.lookupByEmail")
        .count();
    assert_eq!(after, before, "alice's id came from the cache");
    assert!(lookups >= 1);

    // Bob joins: his next click is looked up again and counts, and decides.
    slack.add_users(&[("bob@example.com", "U0BOB")]);
    slack.send_envelope("interactive", click("U0BOB", 1, "deactivate"));
    wait_until("the decision", || approval(d, 1)["status"] == "decided");
    let a = approval(d, 1);
    let voters: Vec<&str> = a["votes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["by"].as_str().unwrap())
        .collect();
    assert_eq!(voters, ["alice", "bob"]);
    wait_until("the action", || target.seen().len() == 1);
}

#[test]
fn a_post_slack_took_before_a_crash_is_adopted_not_posted_again() {
    let slack = Slack::start(&[CHANNEL]);
    let target = Recorder::start();
    let dir = project(&slack, &target, BY_ID, 2);
    let d = dir.path();
    let query = d.join("queries/keys.sql");
    let text = std::fs::read_to_string(&query).unwrap();
    std::fs::write(&query, format!("-- schedule: 1s\n{text}")).unwrap();

    // vigilo run posts the first request; Slack takes it, and vigilo dies before the answer.
    slack.hold_next_post();
    let mut first = common::run(d);
    slack.wait_held();
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    let held = slack.posts();
    assert_eq!(held.len(), 1, "{held:#?}");
    let held_ts = held[0]["ts"].as_str().unwrap().to_string();
    let held_id = held[0]["metadata"]["event_payload"]["message_id"]
        .as_i64()
        .expect("every post carries its message id");
    assert_eq!(held[0]["metadata"]["event_type"], "vigilo_message");

    // Restarted, vigilo finds that post and keeps it; the other request is posted once.
    let _second = common::run(d);
    slack.wait_for(Duration::from_secs(30), "both requests", |_| {
        slack.posts().len() >= 2
    });
    std::thread::sleep(Duration::from_millis(1500));
    let posts = slack.posts();
    let mut ids: Vec<i64> = posts
        .iter()
        .map(|p| {
            p["metadata"]["event_payload"]["message_id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(posts.len(), 2, "one post per message: {posts:#?}");
    assert_eq!(ids.len(), 2, "{posts:#?}");
    let lookups = slack.accepted("conversations.history");
    assert_eq!(
        lookups.len(),
        1,
        "only the message that may have gone out is looked for"
    );
    assert_eq!(lookups[0]["include_all_metadata"], "true");
    assert!(lookups[0]["oldest"].as_str().is_some() && lookups[0]["latest"].as_str().is_some());

    let entries: Vec<Value> = serde_json::from_str(&ok(d, &["audit", "--format", "json"])).unwrap();
    let sent = entries
        .iter()
        .find(|e| e["kind"] == "message.sent" && e["data"]["message_id"] == held_id)
        .expect("the held message is recorded as sent");
    assert_eq!(
        sent["data"]["result"]["ts"],
        held_ts.as_str(),
        "the stored ts is Slack's"
    );
    assert_eq!(sent["data"]["result"]["adopted"], true);
    assert!(ok(d, &["audit", "verify"]).contains("intact"));
}
