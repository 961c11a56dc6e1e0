//! Slack through the binary, against the Slack Web API stand-in (tests/common/slack.rs):
//! approval requests posted with buttons, never twice across restarts; votes threaded under
//! the request; the request updated when decided or expired; messages threaded; Slack's
//! errors and 429s retried and recorded; its pace kept; signed button clicks and ChatOps.

mod common;

use std::path::Path;
use std::time::Duration;

use common::recorder::Recorder;
use common::slack::{BOT_TOKEN, Fault, Slack};
use common::{free_port, show, vigilo};
use serde_json::Value;

const SIGNING_SECRET: &str = "signing-secret-for-tests-0001";
const CHANNEL: &str = "C0SECURITY";

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = vigilo(dir, args);
    assert!(out.status.success(), "{args:?}: {}", show(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A project whose `security` notifier posts to the stand-in; `keys` rows are findings.
fn project(
    state_url: &str,
    slack: &Slack,
    target: &Recorder,
    pace: &str,
    keys: usize,
) -> tempfile::TempDir {
    project_on(state_url, slack, target, pace, keys, free_port())
}

/// [`project`] with its server on `listen`.
fn project_on(
    state_url: &str,
    slack: &Slack,
    target: &Recorder,
    pace: &str,
    keys: usize,
    listen: u16,
) -> tempfile::TempDir {
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
pace = "{pace}"
confirm_ttl = "2s"

[notifier.security]
notify = [{{ integration = "slack.main", channel = "{CHANNEL}" }}]

[approver.alice]
slack = "U0ALICE"

[approver.bob]
slack = "U0BOB"

[group.security]
members = ["alice", "bob"]
"#,
        api = slack.api_url(),
    );
    let remediation = format!(
        r#"[approval]
notifier = "security"
subject = "Deactivate IAM access key {{{{ row.id }}}}?"
prompt = "Key {{{{ row.id }}}} of {{{{ row.owner }}}} is stale. Never shown: {BOT_TOKEN}."
approvers = ["security"]
allow_self_approval = false
options = [
  {{ value = "deactivate", label = "Deactivate", style = "danger" }},
  {{ value = "keep", label = "Keep key active" }},
]

[[action]]
when = "deactivate"
type = "http"
url = "http://127.0.0.1:{port}/deactivate/{{{{ row.id }}}}"

[[message]]
when = "deactivate"
notifier = "security"
text = "Deactivated {{{{ row.id }}}}; approved by {{{{ approval.decided_by }}}}."
"#,
        port = target.port
    );
    common::slack::stale_keys_project(&config, &remediation, keys)
}

fn sqlite_state() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("state.db").display());
    (dir, url)
}

fn audit(dir: &Path) -> Vec<Value> {
    serde_json::from_str(&ok(dir, &["audit", "--format", "json"])).unwrap()
}

/// The approval id of a posted request (from its actions block).
fn approval_of(post: &Value) -> i64 {
    let blocks = post["blocks"].as_array().unwrap();
    let actions = blocks
        .iter()
        .find(|b| b["type"] == "actions")
        .expect("an actions block");
    actions["block_id"]
        .as_str()
        .unwrap()
        .strip_prefix("vigilo:approval:")
        .unwrap()
        .parse()
        .unwrap()
}

async fn requests_votes_and_outcomes(state_url: &str) {
    let slack = Slack::start(&[CHANNEL]);
    let target = Recorder::start();
    let dir = project(state_url, &slack, &target, "50ms", 2);
    let d = dir.path();

    ok(d, &["scan"]);
    let posts = slack.accepted("chat.postMessage");
    assert_eq!(posts.len(), 2, "one request per finding: {posts:#?}");
    let request = posts.iter().find(|p| approval_of(p) == 1).unwrap();
    assert_eq!(request["channel"], CHANNEL);
    assert_eq!(request["text"], "Deactivate IAM access key AKIA0001?");
    let blocks = request["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    assert!(
        blocks[1]["text"]["text"]
            .as_str()
            .unwrap()
            .contains("Key AKIA0001 of user1 is stale.")
    );
    assert!(
        blocks
            .iter()
            .any(|b| b["fields"].to_string().contains("AKIA0001")),
        "the finding's key is shown: {blocks:#?}"
    );
    let buttons = blocks.iter().find(|b| b["type"] == "actions").unwrap()["elements"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(buttons.len(), 2);
    assert_eq!(buttons[0]["type"], "button");
    assert_eq!(buttons[0]["text"]["text"], "Deactivate");
    assert_eq!(buttons[0]["value"], "deactivate");
    assert_eq!(buttons[0]["style"], "danger");
    assert_eq!(buttons[1]["value"], "keep");
    assert!(buttons[1].get("style").is_none());
    let calls = slack.calls();
    assert!(calls.iter().all(|c| c.method == "chat.postMessage"));
    let posted = serde_json::to_string(&posts).unwrap();
    assert!(
        !posted.contains(BOT_TOKEN) && posted.contains("Never shown: ***."),
        "secrets are masked in what Slack gets: {posted}"
    );

    // Restarts post nothing twice.
    ok(d, &["scan"]);
    let run = common::run(d);
    std::thread::sleep(Duration::from_millis(1500));
    drop(run);
    assert_eq!(
        slack.accepted("chat.postMessage").len(),
        2,
        "no double post across restarts"
    );

    // A decision: the vote goes into the thread, the request is updated, the message follows.
    ok(
        d,
        &[
            "approve",
            "1",
            "--as",
            "alice",
            "--reason",
            "unused for a year",
        ],
    );
    let thread: Vec<Value> = slack
        .accepted("chat.postMessage")
        .into_iter()
        .filter(|p| p.get("thread_ts").is_some())
        .collect();
    let texts: Vec<&str> = thread.iter().map(|p| p["text"].as_str().unwrap()).collect();
    assert_eq!(
        texts,
        [
            "alice voted Deactivate: unused for a year",
            "Deactivated AKIA0001; approved by alice."
        ],
        "{thread:#?}"
    );
    let first_ts = first_request_ts(&slack, 1);
    assert!(
        thread
            .iter()
            .all(|p| p["thread_ts"] == first_ts.as_str() && p["channel"] == CHANNEL)
    );
    let updates = slack.accepted("chat.update");
    assert_eq!(updates.len(), 1, "{updates:#?}");
    assert_eq!(updates[0]["ts"], first_ts.as_str());
    let text = updates[0]["blocks"].to_string();
    assert!(
        text.contains("Decided: Deactivate") && text.contains("by alice"),
        "{text}"
    );
    assert!(
        !text.contains("\"actions\""),
        "the buttons are gone: {text}"
    );
    assert_eq!(target.seen().len(), 1, "the action ran");

    let entries = audit(d);
    let decided = entries
        .iter()
        .find(|e| e["kind"] == "approval.decided")
        .unwrap();
    assert_eq!(decided["actor"], "alice");
    let sent = entries
        .iter()
        .filter(|e| e["kind"] == "message.sent")
        .count();
    assert_eq!(sent, 5, "2 requests, the vote, the update and the message");
    assert!(ok(d, &["audit", "verify"]).contains("intact"));
}

/// The `ts` Slack gave the request of approval `id`.
fn first_request_ts(slack: &Slack, id: i64) -> String {
    slack
        .calls()
        .into_iter()
        .find(|c| {
            c.method == "chat.postMessage"
                && c.answered == (200, true)
                && c.body.get("blocks").is_some()
                && approval_of(&c.body) == id
        })
        .and_then(|c| c.reply["ts"].as_str().map(str::to_string))
        .expect("the request was posted")
}

#[tokio::test]
async fn slack_requests_votes_and_outcomes_on_sqlite() {
    let (_s, url) = sqlite_state();
    requests_votes_and_outcomes(&url).await;
}

#[tokio::test]
async fn slack_requests_votes_and_outcomes_on_postgres() {
    let db = common::PgDb::new("slack").await;
    requests_votes_and_outcomes(&db.url).await;
}

/// `vigilo run` on `dir`, once its server answers on `port`.
async fn serve(dir: &Path, port: u16) -> common::Running {
    let run = common::run(dir);
    common::wait_healthy(port).await;
    run
}

/// POSTs a form body to `path`, signed by Slack's SDK with `secret` at `ts` (None: unsigned).
async fn post_signed(port: u16, path: &str, body: &str, signed: Option<(&str, i64)>) -> u16 {
    let mut request = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}{path}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_string());
    if let Some((secret, ts)) = signed {
        request = request
            .header("x-slack-request-timestamp", ts.to_string())
            .header(
                "x-slack-signature",
                common::slack::sdk_signature(secret, ts, body),
            );
    }
    request.send().await.unwrap().status().as_u16()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A button click as Slack sends it: `payload=<JSON>`.
fn click(user: &str, block_id: &str, action_id: &str, value: &str, response_url: &str) -> String {
    let payload = serde_json::json!({
        "type": "block_actions",
        "user": {"id": user, "username": user.to_lowercase()},
        "channel": {"id": CHANNEL},
        "container": {"type": "message", "channel_id": CHANNEL},
        "response_url": response_url,
        "actions": [{"type": "button", "block_id": block_id, "action_id": action_id, "value": value}],
    });
    serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap()
}

fn vote_click(user: &str, approval: i64, option: &str) -> String {
    click(
        user,
        &format!("vigilo:approval:{approval}"),
        &format!("vote:{option}"),
        option,
        "",
    )
}

fn approvals(dir: &Path) -> Vec<Value> {
    serde_json::from_str(&ok(
        dir,
        &["approvals", "--status", "all", "--format", "json"],
    ))
    .unwrap()
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

async fn signed_clicks_decide(state_url: &str) {
    let slack = Slack::start(&[CHANNEL]);
    let target = Recorder::start();
    let port = free_port();
    let dir = project_on(state_url, &slack, &target, "20ms", 2, port);
    let d = dir.path();
    ok(d, &["scan"]);
    let _run = serve(d, port).await;

    // Not from Slack: 401, and nothing changes.
    let body = vote_click("U0ALICE", 1, "deactivate");
    let stale = now() - 6 * 60;
    let other = "not-the-signing-secret";
    for (what, status) in [
        (
            "unsigned",
            post_signed(port, "/slack/interactions", &body, None).await,
        ),
        (
            "wrong secret",
            post_signed(port, "/slack/interactions", &body, Some((other, now()))).await,
        ),
        (
            "six minutes old",
            post_signed(
                port,
                "/slack/interactions",
                &body,
                Some((SIGNING_SECRET, stale)),
            )
            .await,
        ),
    ] {
        assert_eq!(status, 401, "{what}");
    }
    // A body changed after signing.
    let ts = now();
    let signature = common::slack::sdk_signature(SIGNING_SECRET, ts, &body);
    let tampered = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/slack/interactions"))
        .header("x-slack-request-timestamp", ts.to_string())
        .header("x-slack-signature", signature)
        .body(vote_click("U0ALICE", 1, "keep"))
        .send()
        .await
        .unwrap();
    assert_eq!(tampered.status(), 401, "changed body");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        approvals(d)
            .iter()
            .all(|a| a["status"] == "pending" && a["votes"] == serde_json::json!([]))
    );

    // Someone who is not an approver: told so, only them; nothing recorded.
    let status = post_signed(
        port,
        "/slack/interactions",
        &vote_click("U0MALLORY", 1, "deactivate"),
        Some((SIGNING_SECRET, now())),
    )
    .await;
    assert_eq!(status, 200);
    slack.wait_for(Duration::from_secs(10), "the refusal to mallory", |_| {
        !ephemerals(&slack, "U0MALLORY").is_empty()
    });
    assert!(ephemerals(&slack, "U0MALLORY")[0].contains("not an approver"));

    // Alice decides with a signed click.
    let status = post_signed(
        port,
        "/slack/interactions",
        &vote_click("U0ALICE", 1, "deactivate"),
        Some((SIGNING_SECRET, now())),
    )
    .await;
    assert_eq!(status, 200);
    slack.wait_for(
        Duration::from_secs(10),
        "the update and the confirmation",
        |_| {
            !slack.accepted("chat.update").is_empty()
                && slack.accepted("chat.postMessage").iter().any(|p| {
                    p["text"]
                        .as_str()
                        .is_some_and(|t| t.starts_with("Deactivated AKIA0001"))
                })
        },
    );
    let a = approvals(d).into_iter().find(|a| a["id"] == 1).unwrap();
    assert_eq!(a["status"], "decided");
    assert_eq!(a["votes"][0]["by"], "alice");
    assert_eq!(a["votes"][0]["channel"], "slack");
    let update = &slack.accepted("chat.update")[0];
    assert_eq!(update["ts"], first_request_ts(&slack, 1).as_str());
    assert!(update["blocks"].to_string().contains("Decided: Deactivate"));
    assert_eq!(target.seen().len(), 1, "the action ran once");

    // A second vote on a decided approval: refused, said to alice only.
    post_signed(
        port,
        "/slack/interactions",
        &vote_click("U0ALICE", 1, "keep"),
        Some((SIGNING_SECRET, now())),
    )
    .await;
    slack.wait_for(Duration::from_secs(10), "the refusal to alice", |_| {
        !ephemerals(&slack, "U0ALICE").is_empty()
    });
    assert!(
        ephemerals(&slack, "U0ALICE")[0].contains("approval 1"),
        "{:?}",
        ephemerals(&slack, "U0ALICE")
    );
    assert_eq!(slack.accepted("chat.update").len(), 1);

    let entries = audit(d);
    let decided = entries
        .iter()
        .find(|e| e["kind"] == "approval.decided")
        .unwrap();
    assert_eq!(
        (decided["actor"].as_str(), decided["channel"].as_str()),
        (Some("alice"), Some("slack"))
    );
    assert!(ok(d, &["audit", "verify"]).contains("intact"));
}

#[tokio::test]
async fn signed_clicks_decide_on_sqlite() {
    let (_s, url) = sqlite_state();
    signed_clicks_decide(&url).await;
}

#[tokio::test]
async fn signed_clicks_decide_on_postgres() {
    let db = common::PgDb::new("slackclick").await;
    signed_clicks_decide(&db.url).await;
}

/// A slash command as Slack sends it.
fn slash(user: &str, text: &str, response_url: &str) -> String {
    serde_urlencoded::to_string([
        ("command", "/vigilo"),
        ("text", text),
        ("user_id", user),
        ("channel_id", CHANNEL),
        ("response_url", response_url),
        ("team_id", "T0TEAM"),
    ])
    .unwrap()
}

/// Sends `/vigilo TEXT` as `user`; returns Slack's JSON answer.
async fn command(port: u16, user: &str, text: &str, response_url: &str) -> Value {
    let body = slash(user, text, response_url);
    let ts = now();
    reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/slack/commands"))
        .header("x-slack-request-timestamp", ts.to_string())
        .header(
            "x-slack-signature",
            common::slack::sdk_signature(SIGNING_SECRET, ts, &body),
        )
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The command id in a Confirm / Cancel prompt.
fn command_id(answer: &Value) -> String {
    answer["blocks"][1]["block_id"]
        .as_str()
        .and_then(|b| b.strip_prefix("vigilo:command:"))
        .unwrap_or_else(|| panic!("no prompt: {answer}"))
        .to_string()
}

async fn press(port: u16, user: &str, id: &str, action: &str, response_url: &str) {
    let body = click(
        user,
        &format!("vigilo:command:{id}"),
        action,
        id,
        response_url,
    );
    assert_eq!(
        post_signed(
            port,
            "/slack/interactions",
            &body,
            Some((SIGNING_SECRET, now()))
        )
        .await,
        200
    );
}

fn responses(slack: &Slack, id: &str) -> Vec<String> {
    slack
        .calls()
        .iter()
        .filter(|c| c.method == format!("response/{id}"))
        .map(|c| c.body["text"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn chatops_runs_only_what_its_requester_confirms() {
    let slack = Slack::start(&[CHANNEL]);
    let target = Recorder::start();
    let port = free_port();
    let (_s, url) = sqlite_state();
    let dir = project_on(&url, &slack, &target, "20ms", 2, port);
    let d = dir.path();
    let _run = serve(d, port).await;
    let findings = |d: &Path| -> usize {
        serde_json::from_str::<Vec<Value>>(&ok(d, &["findings", "--format", "json"]))
            .unwrap()
            .len()
    };

    let refused = command(port, "U0MALLORY", "scan keys", &slack.response_url("m")).await;
    assert!(
        refused["text"].as_str().unwrap().contains("not one"),
        "{refused}"
    );
    let usage = command(
        port,
        "U0ALICE",
        "delete everything",
        &slack.response_url("u"),
    )
    .await;
    assert!(
        usage["text"].as_str().unwrap().starts_with("Usage"),
        "{usage}"
    );

    // Asked by alice; bob cannot confirm it; alice cancels; a cancelled command stays cancelled.
    let prompt = command(port, "U0ALICE", "scan keys", &slack.response_url("c1")).await;
    assert_eq!(prompt["response_type"], "ephemeral");
    let id = command_id(&prompt);
    press(port, "U0BOB", &id, "confirm", &slack.response_url("c1")).await;
    slack.wait_for(Duration::from_secs(10), "bob's refusal", |_| {
        !ephemerals(&slack, "U0BOB").is_empty()
    });
    assert!(
        ephemerals(&slack, "U0BOB")[0].contains("only <@U0ALICE>"),
        "{:?}",
        ephemerals(&slack, "U0BOB")
    );
    press(port, "U0ALICE", &id, "cancel", &slack.response_url("c1")).await;
    slack.wait_for(Duration::from_secs(10), "the cancellation", |_| {
        !responses(&slack, "c1").is_empty()
    });
    assert!(responses(&slack, "c1")[0].starts_with("Cancelled"));
    press(port, "U0ALICE", &id, "confirm", &slack.response_url("c1")).await;
    slack.wait_for(Duration::from_secs(10), "the refusal to confirm", |_| {
        !ephemerals(&slack, "U0ALICE").is_empty()
    });
    assert!(ephemerals(&slack, "U0ALICE")[0].contains("already cancelled"));
    assert_eq!(findings(d), 0, "nothing ran");

    // Too late: the confirmation expires after confirm_ttl (2 s here).
    let late =
        command_id(&command(port, "U0ALICE", "scan keys", &slack.response_url("late")).await);
    tokio::time::sleep(Duration::from_millis(2300)).await;
    press(
        port,
        "U0ALICE",
        &late,
        "confirm",
        &slack.response_url("late"),
    )
    .await;
    slack.wait_for(Duration::from_secs(10), "the expiry", |_| {
        ephemerals(&slack, "U0ALICE").len() >= 2
    });
    assert!(
        ephemerals(&slack, "U0ALICE")[1].contains("expired"),
        "{:?}",
        ephemerals(&slack, "U0ALICE")
    );
    assert_eq!(findings(d), 0, "nothing ran");

    // Confirmed by alice in time: it runs, and the answer replaces the prompt.
    let scan = command_id(&command(port, "U0ALICE", "scan keys", &slack.response_url("s")).await);
    press(port, "U0ALICE", &scan, "confirm", &slack.response_url("s")).await;
    slack.wait_for(Duration::from_secs(10), "the scan's answer", |_| {
        !responses(&slack, "s").is_empty()
    });
    assert!(
        responses(&slack, "s")[0].contains("2 inserted"),
        "{:?}",
        responses(&slack, "s")
    );
    assert_eq!(findings(d), 2);

    // /vigilo remediate: refused while a run is active; after bob keeps the key, alice asks
    // again; she may not approve her own request, bob may.
    slack.wait_for(Duration::from_secs(10), "the two requests", |_| {
        slack.accepted("chat.postMessage").len() >= 2
    });
    let busy =
        command_id(&command(port, "U0ALICE", "remediate 1", &slack.response_url("r0")).await);
    press(port, "U0ALICE", &busy, "confirm", &slack.response_url("r0")).await;
    slack.wait_for(Duration::from_secs(10), "the refusal", |_| {
        !responses(&slack, "r0").is_empty()
    });
    assert!(
        responses(&slack, "r0")[0].contains("already has remediation run"),
        "{:?}",
        responses(&slack, "r0")
    );
    post_signed(
        port,
        "/slack/interactions",
        &vote_click("U0BOB", 1, "keep"),
        Some((SIGNING_SECRET, now())),
    )
    .await;
    slack.wait_for(Duration::from_secs(10), "bob's decision", |_| {
        !slack.accepted("chat.update").is_empty()
    });
    let again =
        command_id(&command(port, "U0ALICE", "remediate 1", &slack.response_url("r1")).await);
    press(
        port,
        "U0ALICE",
        &again,
        "confirm",
        &slack.response_url("r1"),
    )
    .await;
    slack.wait_for(Duration::from_secs(10), "the remediation's answer", |_| {
        !responses(&slack, "r1").is_empty()
    });
    assert!(
        responses(&slack, "r1")[0].contains("requested by alice"),
        "{:?}",
        responses(&slack, "r1")
    );
    slack.wait_for(Duration::from_secs(10), "the new request", |_| {
        slack
            .accepted("chat.postMessage")
            .iter()
            .any(|p| p.get("blocks").is_some() && approval_of(p) == 3)
    });
    let before = ephemerals(&slack, "U0ALICE").len();
    post_signed(
        port,
        "/slack/interactions",
        &vote_click("U0ALICE", 3, "deactivate"),
        Some((SIGNING_SECRET, now())),
    )
    .await;
    slack.wait_for(Duration::from_secs(10), "the self-approval refusal", |_| {
        ephemerals(&slack, "U0ALICE").len() > before
    });
    assert!(
        ephemerals(&slack, "U0ALICE")[before].contains("requested this remediation"),
        "{:?}",
        ephemerals(&slack, "U0ALICE")
    );
    post_signed(
        port,
        "/slack/interactions",
        &vote_click("U0BOB", 3, "deactivate"),
        Some((SIGNING_SECRET, now())),
    )
    .await;
    slack.wait_for(Duration::from_secs(10), "bob's approval", |_| {
        slack.accepted("chat.update").len() >= 2
    });
    let a = approvals(d).into_iter().find(|a| a["id"] == 3).unwrap();
    assert_eq!(
        (a["status"].as_str(), a["decision"].as_str()),
        (Some("decided"), Some("deactivate"))
    );

    let entries = audit(d);
    let kinds: Vec<&str> = entries
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "command.requested",
        "command.confirmed",
        "command.cancelled",
    ] {
        assert!(kinds.contains(&kind), "{kind}: {kinds:?}");
    }
    let requested = entries
        .iter()
        .find(|e| e["kind"] == "approval.requested" && e["approval_id"] == 3)
        .unwrap();
    assert_eq!(requested["actor"], "alice", "the requester is recorded");
    assert!(ok(d, &["audit", "verify"]).contains("intact"));
}

/// Fifty findings to one channel: Slack's errors (`ok:false`, 500, 429) are recorded and
/// retried, `Retry-After` is waited out, vigilo keeps its pace, and every request is
/// posted exactly once.
#[tokio::test]
async fn errors_retries_and_pace_lose_nothing() {
    let slack = Slack::start(&[CHANNEL]);
    // The stand-in refuses (429) a post that follows the last one to the channel within 20 ms.
    slack.limit_channels(Duration::from_millis(20));
    slack.fail_next(&[
        Fault::Error("not_in_channel"),
        Fault::ServerError,
        Fault::RateLimited(1),
    ]);
    let target = Recorder::start();
    let (_s, url) = sqlite_state();
    let dir = project(&url, &slack, &target, "60ms", 50);
    let d = dir.path();
    ok(d, &["scan"]);
    let run = common::run(d);
    slack.wait_for(Duration::from_secs(60), "fifty requests", |_| {
        slack.accepted("chat.postMessage").len() >= 50
    });
    std::thread::sleep(Duration::from_millis(500));
    drop(run);

    let mut ids: Vec<i64> = slack
        .accepted("chat.postMessage")
        .iter()
        .map(approval_of)
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        (1..=50).collect::<Vec<_>>(),
        "each request posted exactly once"
    );

    let calls = slack.calls();
    let refused_for_pace = calls.iter().filter(|c| c.answered.0 == 429).count() - 1;
    assert_eq!(refused_for_pace, 0, "vigilo kept the channel's pace");
    let limited = calls.iter().position(|c| c.answered.0 == 429).unwrap();
    let next = calls[limited + 1..]
        .iter()
        .find(|c| c.method == "chat.postMessage")
        .unwrap();
    assert!(
        next.at.duration_since(calls[limited].at) >= Duration::from_millis(950),
        "Retry-After was waited out"
    );

    let entries = audit(d);
    let failed: Vec<String> = entries
        .iter()
        .filter(|e| e["kind"] == "message.failed")
        .map(|e| e["data"]["error"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(failed.len(), 3, "{failed:?}");
    assert!(failed[0].contains("not_in_channel"), "{failed:?}");
    assert!(failed[1].contains("HTTP 500"), "{failed:?}");
    assert!(
        failed[2].contains("rate limited (HTTP 429, Retry-After 1s)"),
        "{failed:?}"
    );
    let sent = entries
        .iter()
        .filter(|e| e["kind"] == "message.sent")
        .count();
    assert_eq!(sent, 50);
    assert!(ok(d, &["audit", "verify"]).contains("intact"));
}

/// An approval that expires: its request is updated to say so, without buttons.
#[tokio::test]
async fn an_expired_request_is_updated() {
    let slack = Slack::start(&[CHANNEL]);
    let target = Recorder::start();
    let (_s, url) = sqlite_state();
    let dir = project(&url, &slack, &target, "20ms", 1);
    let d = dir.path();
    let path = d.join("remediations/deactivate.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "allow_self_approval = false",
        "allow_self_approval = false\ntimeout = \"1s\"",
    );
    std::fs::write(&path, text).unwrap();
    ok(d, &["scan"]);
    assert_eq!(slack.accepted("chat.postMessage").len(), 1);
    std::thread::sleep(Duration::from_millis(1200));
    ok(d, &["scan"]);
    let updates = slack.accepted("chat.update");
    assert_eq!(updates.len(), 1, "{:#?}", slack.calls());
    let blocks = updates[0]["blocks"].to_string();
    assert!(
        blocks.contains("Expired") && blocks.contains("nothing was done"),
        "{blocks}"
    );
    assert!(!blocks.contains("\"actions\""), "{blocks}");
    assert!(target.seen().is_empty());
}

/// Slack's answers to a setup that is not right yet read as what failed, on which integration,
/// and the fix: a token Slack does not accept (`invalid_auth`), and a channel it does not know.
#[tokio::test]
async fn a_wrong_token_or_channel_says_how_to_fix_it() {
    let slack = Slack::start(&[CHANNEL]);
    let target = Recorder::start();
    let failures = |from: &str, to: &str| {
        let (_state, url) = sqlite_state();
        let dir = project(&url, &slack, &target, "1ms", 1);
        let config = dir.path().join("config/vigilo.toml");
        let text = std::fs::read_to_string(&config).unwrap().replace(from, to);
        std::fs::write(&config, text).unwrap();
        ok(dir.path(), &["scan"]);
        audit(dir.path())
            .iter()
            .filter(|e| e["kind"] == "message.failed")
            .map(|e| e["data"]["error"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        failures(BOT_TOKEN, "xoxb-a-token-slack-does-not-know"),
        [
            "slack.main: slack chat.postMessage: invalid_auth; Slack refused the token: set the integration's `token` to the app's bot token (xoxb-…, under OAuth & Permissions)"
        ]
    );
    assert_eq!(
        failures(
            &format!("channel = \"{CHANNEL}\""),
            "channel = \"C0NOSUCH\""
        ),
        [
            "slack.main: slack chat.postMessage: channel_not_found; no such channel, or the bot cannot see it: use the channel's ID (C0…) and invite the bot (/invite @APP)"
        ]
    );
}
