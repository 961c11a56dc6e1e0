//! The AWS actions against moto_server (a real IAM and STS API on loopback, started per
//! test), through the `vigilo` binary: the seed workflow end to end on the example
//! project, idempotency (calls counted by a proxy in front of moto), settling after a
//! SIGKILL by reading the key, one account per connection, role_arn through STS, undo,
//! AWS errors and retries, dry runs, and secrets that never appear anywhere.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::aws::{Moto, Proxy, create_key, key_status, set_status};
use common::{PgDb, last_entry, show, vigilo_env};
use serde_json::Value;

/// Known secrets the tests set; none may appear in any output.
const SECRET_KEY: &str = "vigilo-test-aws-secret-access-key-6f1c";
const SESSION_TOKEN: &str = "vigilo-test-aws-session-token-93ab";

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The environment every vigilo run gets: known credentials, no host AWS config, no IMDS.
struct AwsEnv {
    _dir: tempfile::TempDir,
    vars: Vec<(String, String)>,
}

impl AwsEnv {
    fn new(extra: &[(&str, &str)]) -> AwsEnv {
        let dir = tempfile::tempdir().unwrap();
        let none = |f: &str| dir.path().join(f).display().to_string();
        let mut vars: Vec<(String, String)> = [
            ("AWS_ACCESS_KEY_ID", "AKIAVIGILOTEST000001".to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_string()),
            ("AWS_SESSION_TOKEN", SESSION_TOKEN.to_string()),
            ("AWS_CONFIG_FILE", none("no-aws-config")),
            ("AWS_SHARED_CREDENTIALS_FILE", none("no-aws-credentials")),
            ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        AwsEnv { _dir: dir, vars }
    }

    fn remove(&mut self, k: &str) {
        self.vars.retain(|(name, _)| name != k);
    }

    fn set(&mut self, k: &str, v: &str) {
        self.vars.retain(|(name, _)| name != k);
        self.vars.push((k.into(), v.into()));
    }

    fn pairs(&self) -> Vec<(&str, &str)> {
        self.vars
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    fn run(&self, project: &Path, args: &[&str]) -> Output {
        vigilo_env(project, &self.pairs(), args)
    }

    /// Runs and asserts success; returns stdout.
    fn ok(&self, project: &Path, args: &[&str]) -> String {
        let out = self.run(project, args);
        assert!(out.status.success(), "{args:?}: {}", show(&out));
        stdout(&out)
    }
}

/// A PostgreSQL database with Steampipe's `aws_iam_access_key` table (the shared fixture's
/// shape), holding only the rows the test inserts.
async fn steampipe_db() -> PgDb {
    let db = PgDb::new("steampipe_aws").await;
    db.execute(&common::steampipe_fixture()).await;
    db.execute("delete from aws_iam_access_key").await;
    db
}

/// Inserts a stale active key row as Steampipe would show it.
async fn insert_row(db: &PgDb, key: &str, user: &str, account: &str, conn: &str) {
    db.execute(&format!(
        "insert into aws_iam_access_key (access_key_id, user_name, status, create_date, account_id, sp_connection_name, _ctx)
         values ('{key}', '{user}', 'Active', now() - interval '200 days', '{account}', '{conn}',
                 jsonb_build_object('connection_name', '{conn}'))"
    ))
    .await;
}

const QUERY: &str = "-- database: steampipe
-- primary_key: account_id, access_key_id
-- remediation: deactivate
select access_key_id, user_name, account_id, _ctx ->> 'connection_name' as conn_name
from aws_iam_access_key
where status = 'Active' and create_date < now() - interval '90 days'
";

const PEOPLE: &str = "[database.steampipe]
url = \"${STEAMPIPE_URL}\"

[notifier.security]
notify = [{ integration = \"console\" }]

[approver.alice]
[approver.bob]
[approver.mallory]

[group.security]
members = [\"alice\", \"bob\"]
";

/// The test remediation: Deactivate (the AWS action) or Keep; `extra` goes at the top.
fn remediation(extra: &str) -> String {
    format!(
        "title = \"Deactivate a stale key\"
{extra}
[approval]
notifier = \"security\"
subject = \"Deactivate {{{{ row.access_key_id }}}} of {{{{ row.user_name }}}}?\"
prompt = \"Stale key in {{{{ row.account_id }}}}.\"
approvers = [\"security\"]
options = [
  {{ value = \"deactivate\", label = \"Deactivate\" }},
  {{ value = \"keep\", label = \"Keep\" }},
]

[[action]]
when = \"deactivate\"
type = \"aws.iam.update_access_key\"
connection = \"{{{{ row.conn_name }}}}\"
user_name = \"{{{{ row.user_name }}}}\"
access_key_id = \"{{{{ row.access_key_id }}}}\"
status = \"Inactive\"

[[message]]
when = \"deactivate\"
notifier = \"security\"
text = \"Deactivated {{{{ row.access_key_id }}}} of {{{{ row.user_name }}}}; approved by {{{{ approval.decided_by }}}}.\"
"
    )
}

/// A project with the test query and remediation and these AWS connections.
fn project(connections: &str, remediation_extra: &str, state_url: &str) -> tempfile::TempDir {
    common::project(&[
        (
            "config/vigilo.toml",
            &format!("[state]\nurl = \"{state_url}\"\n\n{PEOPLE}"),
        ),
        ("config/aws.toml", connections),
        ("queries/stale_keys.sql", QUERY),
        (
            "remediations/deactivate.toml",
            &remediation(remediation_extra),
        ),
    ])
}

/// `vigilo approvals --format json`.
fn approvals(env: &AwsEnv, dir: &Path) -> Vec<Value> {
    serde_json::from_str(&env.ok(dir, &["approvals", "--status", "all", "--format", "json"]))
        .unwrap()
}

/// The id of the approval whose subject names `key`.
fn approval_for(env: &AwsEnv, dir: &Path, key: &str) -> String {
    approvals(env, dir)
        .iter()
        .find(|a| a["subject"].as_str().unwrap().contains(key))
        .unwrap_or_else(|| panic!("no approval for {key}"))["id"]
        .as_i64()
        .unwrap()
        .to_string()
}

/// Approves the approval of each of `keys` in turn as bob; the outputs of `vigilo approve`.
fn approve_each(env: &AwsEnv, dir: &Path, keys: &[String]) -> Vec<String> {
    keys.iter()
        .map(|key| {
            let id = approval_for(env, dir, key);
            env.ok(dir, &["approve", &id, "--as", "bob"])
        })
        .collect()
}

/// The id in the first `action ID WORD…` line of a command's output (WORD: `succeeded`, `FAILED`).
fn action_id(out: &str, word: &str) -> String {
    out.lines()
        .find_map(|l| {
            let (id, rest) = l.strip_prefix("action ")?.split_once(' ')?;
            rest.starts_with(word).then(|| id.to_string())
        })
        .unwrap_or_else(|| panic!("no `action ID {word}` line in:\n{out}"))
}

/// The audit trail as JSON.
fn audit(env: &AwsEnv, dir: &Path) -> Vec<Value> {
    serde_json::from_str(&env.ok(dir, &["audit", "--format", "json"])).unwrap()
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("state.db").display())
}

/// One moto account behind a recording proxy, keys for `users` in it, those keys listed as
/// stale in a Steampipe-shaped table, and a project whose connection reaches the account.
struct World {
    _moto: Moto,
    proxy: Proxy,
    iam: aws_sdk_iam::Client,
    _db: PgDb,
    keys: Vec<String>,
    dir: tempfile::TempDir,
    env: AwsEnv,
    _state: tempfile::TempDir,
}

/// Builds a [`World`]: `account` (None: moto's default) reached by `[connection.aws.CONN]` with
/// `settings` plus the proxy's endpoint; `extra` goes into the remediation; state in SQLite
/// unless `state_url` says otherwise. Nothing is scanned yet.
async fn world(
    account: Option<&str>,
    conn: &str,
    settings: &str,
    users: &[&str],
    extra: &str,
    state_url: Option<&str>,
) -> World {
    let moto = Moto::start();
    let proxy = Proxy::start(&moto.url());
    let iam = moto.iam(account).await;
    let db = steampipe_db().await;
    let mut keys = Vec::new();
    for user in users {
        let key = create_key(&iam, user).await;
        let row_account = account.unwrap_or(common::aws::DEFAULT_ACCOUNT);
        insert_row(&db, &key, user, row_account, conn).await;
        keys.push(key);
    }
    let state = tempfile::tempdir().unwrap();
    let sqlite = sqlite_url(state.path());
    let dir = project(
        &format!(
            "[connection.aws.{conn}]\n{settings}endpoint_url = \"{}\"\n",
            proxy.url()
        ),
        extra,
        state_url.unwrap_or(&sqlite),
    );
    let env = AwsEnv::new(&[("STEAMPIPE_URL", db.url.as_str())]);
    World {
        _moto: moto,
        proxy,
        iam,
        _db: db,
        keys,
        dir,
        env,
        _state: state,
    }
}

/// The seed workflow on the repository's example project: the Steampipe-shaped table lists
/// keys that exist in moto (two accounts, reached by assuming each connection's role), `vigilo
/// scan` asks for approval, `vigilo run` is SIGKILLed while they are pending, `vigilo approve`
/// deactivates exactly the approved key in its own account, once; a restart calls nothing
/// again; the audit trail names who approved and what AWS answered, and verifies.
async fn example_project_end_to_end(state_url: &str) {
    let moto = Moto::start();
    let proxy = Proxy::start(&moto.url());
    let prod = moto.iam(Some("111111111111")).await;
    let dev = moto.iam(Some("222222222222")).await;
    let db = steampipe_db().await;
    let mut keys = Vec::new();
    for (iam, user, account, conn) in [
        (&prod, "alice", "111111111111", "aws_prod"),
        (&prod, "bob", "111111111111", "aws_prod"),
        (&dev, "frank", "222222222222", "aws_dev"),
    ] {
        let key = create_key(iam, user).await;
        insert_row(&db, &key, user, account, conn).await;
        keys.push((key, user));
    }
    let tickets = common::recorder::Recorder::start();
    let tickets_url = format!("http://127.0.0.1:{}/tickets", tickets.port);
    let listen = format!("127.0.0.1:{}", common::free_port());
    let env = AwsEnv::new(&[
        ("STEAMPIPE_URL", db.url.as_str()),
        ("VIGILO_STATE_URL", state_url),
        ("TICKETS_URL", tickets_url.as_str()),
        ("VIGILO_LISTEN", listen.as_str()),
        ("AWS_ENDPOINT_URL", proxy.url().as_str()),
    ]);

    let scan = env.ok(repo(), &["scan", "iam_access_key_stale"]);
    assert!(scan.contains("3 approval(s) requested"), "{scan}");

    // A crash in the middle: `vigilo run` is killed while the approvals are pending.
    let run = common::run_env(repo(), &env.pairs(), Stdio::null());
    std::thread::sleep(Duration::from_millis(1500));
    Command::new("kill")
        .args(["-KILL", &run.0.id().to_string()])
        .status()
        .unwrap();
    drop(run);
    assert!(
        proxy.calls_of("UpdateAccessKey").is_empty(),
        "nothing is called before a decision"
    );

    let (frank_key, _) = &keys[2];
    let id = approval_for(&env, repo(), frank_key);
    let decided = env.ok(
        repo(),
        &[
            "approve",
            &id,
            "--as",
            "alice",
            "--reason",
            "left the company",
        ],
    );
    assert!(
        decided.contains(&format!("approval {id} decided: deactivate")),
        "{decided}"
    );
    assert!(
        decided.contains(&format!(
            "Deactivated {frank_key} of frank in 222222222222 and filed a ticket; approved by alice."
        )),
        "{decided}"
    );
    assert_eq!(
        key_status(&dev, "frank", frank_key).await.as_deref(),
        Some("Inactive")
    );
    for (key, user) in &keys[..2] {
        assert_eq!(
            key_status(&prod, user, key).await.as_deref(),
            Some("Active"),
            "only the approved key changes"
        );
    }
    let updates = proxy.calls_of("UpdateAccessKey");
    assert_eq!(updates.len(), 1, "{updates:#?}");
    assert_eq!(updates[0].params["AccessKeyId"], *frank_key);
    assert_eq!(updates[0].params["Status"], "Inactive");
    // Through the aws_dev role, in a session named for vigilo and the approval.
    let assumed = proxy.calls_of("AssumeRole");
    let session = format!("vigilo-approval-{id}");
    let role = assumed
        .iter()
        .find(|c| c.params["RoleSessionName"] == session)
        .unwrap_or_else(|| panic!("no AssumeRole for {session}: {assumed:#?}"));
    assert_eq!(
        role.params["RoleArn"],
        "arn:aws:iam::222222222222:role/vigilo-remediator"
    );
    let role_akid = common::aws::between(&role.response, "<AccessKeyId>", "</AccessKeyId>")
        .unwrap()
        .to_string();
    assert_eq!(
        updates[0].akid, role_akid,
        "the call is signed by the assumed role"
    );
    assert_eq!(tickets.seen().len(), 1);
    let ticket: Value = serde_json::from_str(&tickets.seen()[0].3).unwrap();
    assert_eq!(ticket["approved_by"], "alice");

    // Keep: nothing is called; a decided approval takes no more votes.
    let (bob_key, _) = &keys[1];
    let kept_id = approval_for(&env, repo(), bob_key);
    let kept = env.ok(repo(), &["respond", &kept_id, "keep", "--as", "bob"]);
    assert!(
        kept.contains("decided: keep") && kept.contains(&format!("Kept {bob_key} of bob active")),
        "{kept}"
    );
    let refused = env.run(repo(), &["deny", &id, "--as", "bob"]);
    assert_eq!(refused.status.code(), Some(1), "{}", show(&refused));
    let table = env.ok(repo(), &["approvals", "--status", "all"]);
    assert!(table.contains("Deactivate IAM access key"), "{table}");

    // Restarted, nothing runs again.
    let run = common::run_env(repo(), &env.pairs(), Stdio::null());
    std::thread::sleep(Duration::from_millis(2500));
    drop(run);
    env.ok(repo(), &["scan", "iam_access_key_stale"]);
    assert_eq!(proxy.calls_of("UpdateAccessKey").len(), 1, "exactly once");
    assert_eq!(tickets.seen().len(), 1);

    let entries = audit(&env, repo());
    let vote = last_entry(&entries, "approval.vote", &id);
    assert_eq!(vote["actor"], "alice");
    let done = entries
        .iter()
        .find(|e| {
            e["kind"] == "action.succeeded"
                && e["approval_id"].as_i64() == id.parse().ok()
                && e["data"]["type"] == "aws.iam.update_access_key"
        })
        .unwrap_or_else(|| panic!("{entries:#?}"));
    let result = &done["data"]["result"];
    assert_eq!(result["account"], "222222222222", "{result}");
    assert_eq!(result["previous_status"], "Active");
    assert_eq!(result["status"], "Inactive");
    assert_eq!(result["operation"], "UpdateAccessKey");
    assert!(
        result["caller"]
            .as_str()
            .unwrap()
            .ends_with(&format!("assumed-role/vigilo-remediator/{session}")),
        "{result}"
    );
    assert!(env.ok(repo(), &["audit", "verify"]).contains("intact"));

    // The report an auditor gets: what was found, what was done, who approved it, how fast.
    let out = tempfile::tempdir().unwrap();
    let page = out.path().join("report.html");
    env.ok(repo(), &["report", "-o", &page.display().to_string()]);
    let html = std::fs::read_to_string(&page)
        .unwrap()
        .replace("&#x2f;", "/");
    for part in [
        frank_key.as_str(),
        "Deactivate IAM access key",
        "left the company",
        "aws.iam.update_access_key",
        "UpdateAccessKey",
        "Active → Inactive (connection aws_dev, account 222222222222 as arn:aws:sts::222222222222:assumed-role/vigilo-remediator/vigilo-approval-",
        "time to decision",
    ] {
        assert!(html.contains(part), "the report names {part:?}");
    }
    let json: Value =
        serde_json::from_str(&env.ok(repo(), &["report", "--format", "json"])).unwrap();
    assert_eq!(json["summary"]["remediations"]["approved"], 1);
    assert_eq!(json["summary"]["remediations"]["denied"], 1);
    assert_eq!(
        json["summary"]["actions"]["succeeded"], 2,
        "the key and the ticket"
    );
}

#[tokio::test]
async fn example_project_deactivates_the_approved_key_in_moto_with_sqlite_state() {
    let dir = tempfile::tempdir().unwrap();
    example_project_end_to_end(&sqlite_url(dir.path())).await;
}

#[tokio::test]
async fn example_project_deactivates_the_approved_key_in_moto_with_postgres_state() {
    let state = PgDb::new("aws_state").await;
    example_project_end_to_end(&state.url).await;
}

/// One moto account, one connection: a key already inactive is not called ("no change
/// needed"), a key deleted meanwhile and a user deleted meanwhile are skipped.
#[tokio::test]
async fn actions_read_the_key_first_and_call_only_when_needed() {
    let w = world(
        None,
        "acct",
        "",
        &["ann", "ben", "cat", "dan"],
        "recheck = false",
        None,
    )
    .await;
    let (proxy, iam, keys, dir, env) = (&w.proxy, &w.iam, &w.keys, &w.dir, &w.env);
    env.ok(dir.path(), &["scan"]);

    // Meanwhile, outside vigilo: ben's key is deactivated, cat's deleted, dan deleted.
    set_status(iam, "ben", &keys[1], "Inactive").await;
    iam.delete_access_key()
        .user_name("cat")
        .access_key_id(&keys[2])
        .send()
        .await
        .unwrap();
    iam.delete_access_key()
        .user_name("dan")
        .access_key_id(&keys[3])
        .send()
        .await
        .unwrap();
    iam.delete_user().user_name("dan").send().await.unwrap();
    proxy.clear();

    let outputs = approve_each(env, dir.path(), keys);
    assert!(outputs[0].contains("succeeded"), "{}", outputs[0]);
    assert!(
        outputs[1].contains("no change needed: the key is already Inactive"),
        "{}",
        outputs[1]
    );
    assert!(
        outputs[2].contains(&format!(
            "skipped: access key {} of user cat no longer exists in connection acct",
            keys[2]
        )),
        "{}",
        outputs[2]
    );
    assert!(
        outputs[3].contains("skipped: user dan no longer exists in connection acct"),
        "{}",
        outputs[3]
    );
    let updates = proxy.calls_of("UpdateAccessKey");
    assert_eq!(
        updates.len(),
        1,
        "only ann's key needed a call: {updates:#?}"
    );
    assert_eq!(updates[0].params["AccessKeyId"], keys[0]);
    assert_eq!(proxy.calls_of("ListAccessKeys").len(), 4);
    assert_eq!(
        key_status(iam, "ann", &keys[0]).await.as_deref(),
        Some("Inactive")
    );

    // The decisions' records say so; "no change needed" and the skips are in the audit trail.
    let entries = audit(env, dir.path());
    let ben = approval_for(env, dir.path(), &keys[1]);
    let e = last_entry(&entries, "action.succeeded", &ben);
    assert_eq!(
        e["data"]["result"]["no_change"],
        "no change needed: the key is already Inactive"
    );
    let cat = approval_for(env, dir.path(), &keys[2]);
    let e = last_entry(&entries, "action.succeeded", &cat);
    assert!(
        e["data"].to_string().contains("no longer exists"),
        "skips are recorded: {e}"
    );
    // A second pass calls nothing.
    proxy.clear();
    env.ok(dir.path(), &["scan"]);
    assert!(proxy.calls_of("UpdateAccessKey").is_empty());
}

/// `current_status = "{{ row.status }}"` with `recheck = true`: the row the recheck has just
/// confirmed stands in for reading the key. An Active key is deactivated with one call and no
/// ListAccessKeys, a row already Inactive calls nothing, and a row that changed since the scan
/// is not trusted: the key is read. Undo restores the status the row showed.
#[tokio::test]
async fn a_rechecked_row_stands_in_for_reading_the_key() {
    let w = world(None, "acct", "", &["ann", "ben", "cat"], "", None).await;
    let (proxy, iam, keys, dir, env) = (&w.proxy, &w.iam, &w.keys, &w.dir, &w.env);
    std::fs::write(
        dir.path().join("queries/stale_keys.sql"),
        "-- database: steampipe
-- primary_key: account_id, access_key_id
-- remediation: deactivate
select access_key_id, user_name, account_id, status, _ctx ->> 'connection_name' as conn_name
from aws_iam_access_key
where create_date < now() - interval '90 days'
",
    )
    .unwrap();
    let path = dir.path().join("remediations/deactivate.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "status = \"Inactive\"",
        "status = \"Inactive\"\ncurrent_status = \"{{ row.status }}\"",
    );
    std::fs::write(&path, text).unwrap();
    // ben's key is Inactive already, and Steampipe shows it so.
    set_status(iam, "ben", &keys[1], "Inactive").await;
    let set_row = |key: &str, status: &str| {
        format!("update aws_iam_access_key set status = '{status}' where access_key_id = '{key}'")
    };
    w._db.execute(&set_row(&keys[1], "Inactive")).await;
    env.ok(dir.path(), &["scan"]);
    // After the scan, cat's key is deactivated outside vigilo: the recheck sees a new row.
    set_status(iam, "cat", &keys[2], "Inactive").await;
    w._db.execute(&set_row(&keys[2], "Inactive")).await;
    proxy.clear();

    let outputs = approve_each(env, dir.path(), keys);
    assert!(outputs[0].contains("succeeded"), "{}", outputs[0]);
    for out in &outputs[1..] {
        assert!(
            out.contains("no change needed: the key is already Inactive"),
            "{out}"
        );
    }
    let updates = proxy.calls_of("UpdateAccessKey");
    assert_eq!(
        updates.len(),
        1,
        "only ann's key needed a call: {updates:#?}"
    );
    assert_eq!(updates[0].params["AccessKeyId"], keys[0]);
    let reads = proxy.calls_of("ListAccessKeys");
    assert_eq!(reads.len(), 1, "only cat's changed row is read: {reads:#?}");
    assert_eq!(reads[0].params["UserName"], "cat");
    assert_eq!(
        key_status(iam, "ann", &keys[0]).await.as_deref(),
        Some("Inactive")
    );

    let entries = audit(env, dir.path());
    let ann = approval_for(env, dir.path(), &keys[0]);
    let result = &last_entry(&entries, "action.succeeded", &ann)["data"]["result"];
    assert_eq!(result["previous_status"], "Active", "{result}");
    assert!(
        result["previous_status_from"]
            .as_str()
            .is_some_and(|s| s.contains("confirmed by the recheck")),
        "{result}"
    );
    let cat = approval_for(env, dir.path(), &keys[2]);
    let result = &last_entry(&entries, "action.succeeded", &cat)["data"]["result"];
    assert!(result.get("previous_status_from").is_none(), "{result}");

    // Undo sets the key to what the row showed, and reads it first (the row is not the key now).
    proxy.clear();
    let action = action_id(&outputs[0], "succeeded");
    env.ok(
        dir.path(),
        &["undo", &action, "--as", "alice", "--reason", "still in use"],
    );
    assert_eq!(
        key_status(iam, "ann", &keys[0]).await.as_deref(),
        Some("Active")
    );
    assert_eq!(proxy.calls_of("ListAccessKeys").len(), 1);
    assert_eq!(proxy.calls_of("UpdateAccessKey").len(), 1);
}

/// A vigilo SIGKILLed after UpdateAccessKey returned, before the outcome was recorded: the next
/// process reads the key (Inactive), records the action succeeded and calls nothing again.
/// Killed after `started` but before the call: the read shows the key still Active, so the
/// action runs again, once. Both state stores.
async fn crash_is_settled_by_reading(state_url: &str) {
    let mut w = world(None, "acct", "", &["ann", "ben"], "", Some(state_url)).await;
    let (proxy, iam, dir) = (&w.proxy, &w.iam, &w.dir);
    let (k1, k2) = (w.keys[0].clone(), w.keys[1].clone());
    let env = &mut w.env;
    env.ok(dir.path(), &["scan"]);

    let calls_for = |key: &str| {
        proxy
            .calls_of("UpdateAccessKey")
            .into_iter()
            .filter(|c| c.params["AccessKeyId"] == key)
            .count()
    };
    for (key, user, point, calls_before) in [
        (&k1, "ann", "action.after_call", 1),
        (&k2, "ben", "action.after_start", 0),
    ] {
        let id = approval_for(env, dir.path(), key);
        env.set("VIGILO_PAUSE_AT", point);
        let child = Command::new(env!("CARGO_BIN_EXE_vigilo"))
            .arg("--dir")
            .arg(dir.path())
            .args(["approve", &id, "--as", "alice"])
            .envs(env.pairs())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        common::kill_when_paused(child, point);
        env.vars.retain(|(k, _)| k != "VIGILO_PAUSE_AT");
        assert_eq!(
            calls_for(key),
            calls_before,
            "{point}: calls before the restart"
        );

        // The next vigilo settles it.
        env.ok(dir.path(), &["scan"]);
        assert_eq!(
            key_status(iam, user, key).await.as_deref(),
            Some("Inactive")
        );
        assert_eq!(calls_for(key), 1, "{point}: exactly one UpdateAccessKey");
        let entries = audit(env, dir.path());
        let done = last_entry(&entries, "action.succeeded", &id);
        if point == "action.after_call" {
            assert!(
                done["data"]["result"]["settled"]
                    .as_str()
                    .unwrap()
                    .contains(
                        "by reading the key: it is Inactive; UpdateAccessKey was not called again"
                    ),
                "{done}"
            );
            assert_eq!(done["data"]["result"]["previous_status"], "Active");
        } else {
            let failed = last_entry(&entries, "action.failed", &id);
            assert!(
                failed["data"]["error"]
                    .as_str()
                    .unwrap()
                    .contains("still Active, so the call did not take effect"),
                "{failed}"
            );
            assert_eq!(done["data"]["attempt"], 2, "{done}");
        }
    }
    assert!(env.ok(dir.path(), &["audit", "verify"]).contains("intact"));
}

#[tokio::test]
async fn a_crash_around_the_call_is_settled_by_reading_with_sqlite_state() {
    let state = tempfile::tempdir().unwrap();
    crash_is_settled_by_reading(&sqlite_url(state.path())).await;
}

#[tokio::test]
async fn a_crash_around_the_call_is_settled_by_reading_with_postgres_state() {
    let state = PgDb::new("aws_crash").await;
    crash_is_settled_by_reading(&state.url).await;
}

/// Two connections pointing at two moto servers (two accounts): each row's action lands in its
/// own account only; a row naming an unconfigured connection fails clearly and touches neither.
#[tokio::test]
async fn each_row_acts_in_its_own_account_and_an_unknown_connection_touches_none() {
    let (moto_a, moto_b) = (Moto::start(), Moto::start());
    let (proxy_a, proxy_b) = (Proxy::start(&moto_a.url()), Proxy::start(&moto_b.url()));
    let (iam_a, iam_b) = (moto_a.iam(None).await, moto_b.iam(None).await);
    let db = steampipe_db().await;
    // The same user name in both accounts, each with its own key.
    let ka = create_key(&iam_a, "deploy").await;
    let kb = create_key(&iam_b, "deploy").await;
    let kc = create_key(&iam_a, "other").await;
    insert_row(&db, &ka, "deploy", "111111111111", "acct_a").await;
    insert_row(&db, &kb, "deploy", "222222222222", "acct_b").await;
    insert_row(&db, &kc, "other", "333333333333", "acct_c").await;
    let state = tempfile::tempdir().unwrap();
    let dir = project(
        &format!(
            "[connection.aws.acct_a]\nendpoint_url = \"{}\"\n\n[connection.aws.acct_b]\nendpoint_url = \"{}\"\n",
            proxy_a.url(),
            proxy_b.url()
        ),
        "",
        &sqlite_url(state.path()),
    );
    let env = AwsEnv::new(&[("STEAMPIPE_URL", db.url.as_str())]);
    env.ok(dir.path(), &["scan"]);
    proxy_a.clear();
    proxy_b.clear();

    let b = approval_for(&env, dir.path(), &kb);
    env.ok(dir.path(), &["approve", &b, "--as", "alice"]);
    assert_eq!(
        key_status(&iam_b, "deploy", &kb).await.as_deref(),
        Some("Inactive")
    );
    assert_eq!(
        key_status(&iam_a, "deploy", &ka).await.as_deref(),
        Some("Active")
    );
    assert!(
        proxy_a.calls().is_empty(),
        "account A untouched: {:#?}",
        proxy_a.calls()
    );
    assert_eq!(proxy_b.calls_of("UpdateAccessKey").len(), 1);

    let a = approval_for(&env, dir.path(), &ka);
    env.ok(dir.path(), &["approve", &a, "--as", "alice"]);
    assert_eq!(
        key_status(&iam_a, "deploy", &ka).await.as_deref(),
        Some("Inactive")
    );
    assert_eq!(proxy_b.calls_of("UpdateAccessKey").len(), 1);

    proxy_a.clear();
    proxy_b.clear();
    let c = approval_for(&env, dir.path(), &kc);
    let out = env.run(dir.path(), &["approve", &c, "--as", "alice"]);
    let text = stdout(&out);
    assert!(
        text.contains(
            "FAILED: no [connection.aws.acct_c] is configured (configured: acct_a, acct_b): add it to config/aws.toml or correct the action's connection; vigilo never falls back to another account, so nothing was called"
        ),
        "{}",
        show(&out)
    );
    assert!(proxy_a.calls().is_empty() && proxy_b.calls().is_empty());
    assert_eq!(
        key_status(&iam_a, "other", &kc).await.as_deref(),
        Some("Active")
    );

    // A literal connection name that is not configured is a configuration error.
    let bad = project("[connection.aws.acct_a]\n", "", &sqlite_url(state.path()));
    let text = remediation("").replace("{{ row.conn_name }}", "acct_z");
    std::fs::write(bad.path().join("remediations/deactivate.toml"), text).unwrap();
    let out = env.run(bad.path(), &["validate"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("remediations/deactivate.toml:")
            && err
                .contains("unknown AWS connection \"acct_z\" (configured AWS connections: acct_a)"),
        "{err}"
    );
}

/// `role_arn`: credentials come from STS AssumeRole with a session per approval, are cached
/// per session, and sign the IAM calls; the result names the assumed role's session.
#[tokio::test]
async fn role_arn_is_assumed_through_sts_per_approval() {
    let settings = "role_arn = \"arn:aws:iam::444455556666:role/remediator\"\nregion = \"eu-west-1\"\nttl = \"10m\"\n";
    let w = world(
        Some("444455556666"),
        "prod",
        settings,
        &["ann", "ben"],
        "",
        None,
    )
    .await;
    let (proxy, iam, dir, env) = (&w.proxy, &w.iam, &w.dir, &w.env);
    let (k1, k2) = (&w.keys[0], &w.keys[1]);
    env.ok(dir.path(), &["scan"]);
    for key in [&k1, &k2] {
        let id = approval_for(env, dir.path(), key);
        env.ok(dir.path(), &["approve", &id, "--as", "alice"]);
        let session = format!("vigilo-approval-{id}");
        let roles: Vec<_> = proxy
            .calls_of("AssumeRole")
            .into_iter()
            .filter(|c| c.params["RoleSessionName"] == session)
            .collect();
        assert_eq!(roles.len(), 1, "one AssumeRole per approval session");
        assert_eq!(
            roles[0].params["RoleArn"],
            "arn:aws:iam::444455556666:role/remediator"
        );
        let akid =
            common::aws::between(&roles[0].response, "<AccessKeyId>", "</AccessKeyId>").unwrap();
        // Every IAM call of this action was signed with the session's key.
        for c in proxy
            .calls()
            .iter()
            .filter(|c| c.params.get("AccessKeyId") == Some(key))
        {
            assert_eq!(c.akid, akid, "{c:#?}");
        }
        let entries = audit(env, dir.path());
        let done = last_entry(&entries, "action.succeeded", &id);
        assert_eq!(
            done["data"]["result"]["caller"],
            format!("arn:aws:sts::444455556666:assumed-role/remediator/{session}")
        );
        let user = if key.as_str() == k1.as_str() {
            "ann"
        } else {
            "ben"
        };
        assert_eq!(
            key_status(iam, user, key).await.as_deref(),
            Some("Inactive")
        );
    }
}

/// `vigilo undo`: an approver reverses a deactivation (the key is Active again), recorded as
/// its own action with `action.undo`; a second undo, a non-approver, and an action that
/// changed nothing are refused.
#[tokio::test]
async fn undo_restores_the_previous_status() {
    let state = PgDb::new("aws_undo").await;
    let w = world(
        None,
        "acct",
        "",
        &["ann", "ben"],
        "recheck = false",
        Some(&state.url),
    )
    .await;
    let (proxy, iam, dir, env) = (&w.proxy, &w.iam, &w.dir, &w.env);
    let (k1, k2) = (&w.keys[0], &w.keys[1]);
    env.ok(dir.path(), &["scan"]);
    let id = approval_for(env, dir.path(), k1);
    let out = env.ok(dir.path(), &["approve", &id, "--as", "alice"]);
    let action = action_id(&out, "succeeded");
    assert_eq!(
        key_status(iam, "ann", k1).await.as_deref(),
        Some("Inactive")
    );

    let refused = env.run(
        dir.path(),
        &["undo", &action, "--as", "mallory", "--reason", "x"],
    );
    assert_eq!(refused.status.code(), Some(1), "{}", show(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("mallory is not an approver of remediation deactivate"),
        "{}",
        show(&refused)
    );
    let missing_reason = env.run(dir.path(), &["undo", &action, "--as", "bob"]);
    assert_eq!(
        missing_reason.status.code(),
        Some(2),
        "{}",
        show(&missing_reason)
    );

    let undone = env.ok(
        dir.path(),
        &[
            "undo",
            &action,
            "--as",
            "bob",
            "--reason",
            "the key is still needed by CI",
        ],
    );
    assert!(
        undone.contains(&format!("undoes action {action}")),
        "{undone}"
    );
    assert_eq!(key_status(iam, "ann", k1).await.as_deref(), Some("Active"));
    let updates = proxy.calls_of("UpdateAccessKey");
    assert_eq!(updates.len(), 2);
    assert_eq!(updates[1].params["Status"], "Active");

    let entries = audit(env, dir.path());
    let undo = last_entry(&entries, "action.undo", &id);
    assert_eq!(undo["actor"], "bob");
    assert_eq!(undo["data"]["undo_of"].to_string(), action);
    assert_eq!(undo["data"]["reason"], "the key is still needed by CI");
    assert_eq!(undo["data"]["from"], "Inactive");
    assert_eq!(undo["data"]["to"], "Active");
    let undo_action = undo["action_id"].clone();
    assert!(
        entries.iter().any(|e| e["kind"] == "action.succeeded"
            && e["action_id"] == undo_action
            && e["data"]["result"]["status"] == "Active"),
        "{entries:#?}"
    );

    let again = env.run(
        dir.path(),
        &["undo", &action, "--as", "bob", "--reason", "again"],
    );
    assert_eq!(again.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already has an undo"),
        "{}",
        show(&again)
    );
    // The undo changed the key, so it can in turn be undone once: the key is deactivated again.
    let re = env.ok(
        dir.path(),
        &[
            "undo",
            &undo_action.to_string(),
            "--as",
            "alice",
            "--reason",
            "CI moved to OIDC",
        ],
    );
    assert!(re.contains("succeeded"), "{re}");
    assert_eq!(
        key_status(iam, "ann", k1).await.as_deref(),
        Some("Inactive")
    );

    // An action that changed nothing cannot be undone.
    set_status(iam, "ben", k2, "Inactive").await;
    let id2 = approval_for(env, dir.path(), k2);
    let out = env.ok(dir.path(), &["approve", &id2, "--as", "alice"]);
    let noop = action_id(&out, "succeeded");
    let refused = env.run(dir.path(), &["undo", &noop, "--as", "bob", "--reason", "x"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("changed nothing"),
        "{}",
        show(&refused)
    );
    assert!(env.ok(dir.path(), &["audit", "verify"]).contains("intact"));
}

/// AWS errors: AccessDenied is recorded with its code and not retried; throttling and 5xx are
/// retried by the SDK and then succeed; NoSuchEntity on the call itself is a skip.
#[tokio::test]
async fn aws_errors_are_recorded_with_their_code_and_throttling_is_retried() {
    let w = world(
        None,
        "acct",
        "",
        &["ann", "ben", "cat"],
        "recheck = false",
        None,
    )
    .await;
    let (proxy, iam, keys, dir, env) = (&w.proxy, &w.iam, &w.keys, &w.dir, &w.env);
    env.ok(dir.path(), &["scan"]);

    proxy.clear();
    proxy.fail("UpdateAccessKey", 403, "AccessDenied", 1);
    let id = approval_for(env, dir.path(), &keys[0]);
    let out = env.run(dir.path(), &["approve", &id, "--as", "alice"]);
    let text = stdout(&out);
    assert!(
        text.contains("FAILED: AWS UpdateAccessKey (connection acct): AccessDenied: injected by the test proxy"),
        "{}",
        show(&out)
    );
    assert_eq!(
        proxy.calls_of("UpdateAccessKey").len(),
        1,
        "AccessDenied is not retried"
    );
    let entries = audit(env, dir.path());
    let failed = last_entry(&entries, "action.failed", &id);
    assert!(
        failed["data"]["error"]
            .as_str()
            .unwrap()
            .contains("AccessDenied")
    );
    assert_eq!(
        key_status(iam, "ann", &keys[0]).await.as_deref(),
        Some("Active")
    );
    // Once permitted, `vigilo retry` reads the key again and runs it.
    proxy.clear();
    let action = failed["action_id"].to_string();
    let retried = env.ok(dir.path(), &["retry", &action]);
    assert!(retried.contains("succeeded"), "{retried}");
    assert_eq!(proxy.calls_of("UpdateAccessKey").len(), 1);
    assert_eq!(
        key_status(iam, "ann", &keys[0]).await.as_deref(),
        Some("Inactive")
    );

    proxy.clear();
    proxy.fail("UpdateAccessKey", 400, "Throttling", 2);
    let id = approval_for(env, dir.path(), &keys[1]);
    let text = env.ok(dir.path(), &["approve", &id, "--as", "alice"]);
    assert!(text.contains("succeeded"), "{text}");
    let calls = proxy.calls_of("UpdateAccessKey");
    assert_eq!(calls.len(), 3, "two throttled, then through: {calls:#?}");
    assert_eq!(
        key_status(iam, "ben", &keys[1]).await.as_deref(),
        Some("Inactive")
    );

    proxy.clear();
    proxy.fail("UpdateAccessKey", 503, "ServiceUnavailable", 1);
    let id = approval_for(env, dir.path(), &keys[2]);
    let text = env.ok(dir.path(), &["approve", &id, "--as", "alice"]);
    assert!(text.contains("succeeded"), "{text}");
    assert_eq!(
        proxy.calls_of("UpdateAccessKey").len(),
        2,
        "a 5xx is retried"
    );
}

/// What a person reads when an AWS action fails, on the terminal and in the audit trail: one
/// line saying what failed, for which connection, and the fix; no SDK dump anywhere. No
/// credentials, AWS's AccessDenied (who may not do what), and an endpoint nobody answers.
#[tokio::test]
async fn aws_failures_read_as_what_failed_where_and_the_fix() {
    let mut w = world(None, "acct", "", &["ann", "ben", "cat"], "", None).await;
    w.env.ok(w.dir.path(), &["scan"]);
    let check = |env: &AwsEnv, key: &str, expected: &str| {
        let id = approval_for(env, w.dir.path(), key);
        let out = env.run(w.dir.path(), &["approve", &id, "--as", "alice"]);
        let text = stdout(&out);
        let line = text
            .lines()
            .find(|l| l.contains("FAILED"))
            .unwrap_or_else(|| panic!("no FAILED line: {}", show(&out)));
        let action = action_id(&text, "FAILED");
        assert_eq!(
            line,
            format!("action {action} FAILED: {expected} (vigilo retry {action} runs it again)")
        );
        let failed = last_entry(&audit(env, w.dir.path()), "action.failed", &id);
        assert_eq!(failed["data"]["error"], expected);
        let stderr = String::from_utf8_lossy(&out.stderr);
        for dump in ["DispatchFailure", "ConnectorError", "Some(", " { "] {
            assert!(!stderr.contains(dump), "{dump} in {stderr}");
        }
    };

    let mut bare = AwsEnv::new(&[("STEAMPIPE_URL", w._db.url.as_str())]);
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    ] {
        bare.remove(var);
    }
    w.proxy.clear();
    check(
        &bare,
        &w.keys[0],
        "no AWS credentials for connection acct: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or `profile` in [connection.aws.acct]; nothing was called",
    );
    assert!(w.proxy.calls().is_empty(), "{:#?}", w.proxy.calls());

    w.proxy.deny(
        "UpdateAccessKey",
        "User: arn:aws:iam::123456789012:user/vigilo is not authorized to perform: iam:UpdateAccessKey on resource: user ben because no identity-based policy allows the iam:UpdateAccessKey action",
    );
    check(
        &w.env,
        &w.keys[1],
        "AWS UpdateAccessKey (connection acct): AccessDenied: arn:aws:iam::123456789012:user/vigilo may not perform iam:UpdateAccessKey on user ben (no identity-based policy allows the iam:UpdateAccessKey action); allow iam:UpdateAccessKey to arn:aws:iam::123456789012:user/vigilo in IAM",
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let aws = w.dir.path().join("config/aws.toml");
    let moved = std::fs::read_to_string(&aws)
        .unwrap()
        .replace(&w.proxy.url(), &format!("http://127.0.0.1:{closed}"));
    std::fs::write(&aws, moved).unwrap();
    w.env.set("AWS_MAX_ATTEMPTS", "1");
    check(
        &w.env,
        &w.keys[2],
        &format!(
            "AWS ListAccessKeys (connection acct): cannot reach http://127.0.0.1:{closed} (connection refused); is the endpoint up? check endpoint_url of [connection.aws.acct]"
        ),
    );
}

/// `vigilo scan --dry-run` and `dry_run = true` print the exact AWS calls (operation,
/// connection, parameters) and make none.
#[tokio::test]
async fn dry_runs_print_the_exact_aws_calls_and_make_none() {
    let settings = "role_arn = \"arn:aws:iam::111111111111:role/remediator\"\n";
    let w = world(
        Some("111111111111"),
        "acct",
        settings,
        &["ann"],
        "dry_run = true",
        None,
    )
    .await;
    let (proxy, iam, dir, env) = (&w.proxy, &w.iam, &w.dir, &w.env);
    let key = &w.keys[0];

    let dry = env.ok(dir.path(), &["scan", "--dry-run"]);
    let call = format!(
        "iam:UpdateAccessKey UserName=ann AccessKeyId={key} Status=Inactive (connection acct, account 111111111111 as arn:aws:iam::111111111111:role/remediator, endpoint {})",
        proxy.url()
    );
    assert!(
        dry.contains(&format!("if deactivate: would call {call}")),
        "{dry}"
    );
    assert!(dry.contains("if keep: nothing is called"), "{dry}");
    assert!(
        dry.contains("ask alice, bob for approval: Deactivate"),
        "{dry}"
    );
    assert!(proxy.calls().is_empty(), "{:#?}", proxy.calls());

    env.ok(dir.path(), &["scan"]);
    let id = approval_for(env, dir.path(), key);
    let out = env.ok(dir.path(), &["approve", &id, "--as", "alice"]);
    assert!(out.contains(&format!("would call {call}")), "{out}");
    assert!(proxy.calls().is_empty(), "{:#?}", proxy.calls());
    assert_eq!(key_status(iam, "ann", key).await.as_deref(), Some("Active"));
}

/// Every log line, audit entry, listing and export of a run with known AWS secrets set
/// (environment credentials, and the session credentials STS hands out) holds none of them;
/// the access key ids stay visible.
#[tokio::test]
async fn aws_secrets_never_appear_in_logs_audit_or_reports() {
    let settings = "role_arn = \"arn:aws:iam::111111111111:role/remediator\"\n";
    let mut w = world(Some("111111111111"), "prod", settings, &["ann"], "", None).await;
    let key = w.keys[0].clone();
    let (proxy, dir) = (&w.proxy, &w.dir);
    let env = &mut w.env;
    env.set("RUST_LOG", "trace");
    let mut seen = Vec::new();
    let mut run = |args: &[&str]| {
        let out = env.run(dir.path(), args);
        seen.push(format!(
            "{args:?}\n{}\n{}",
            stdout(&out),
            String::from_utf8_lossy(&out.stderr)
        ));
        out
    };
    run(&["scan"]);
    let id = approval_for(env, dir.path(), &key);
    // Refused once, with an error text that echoes the assumed role's session token.
    proxy.fail("UpdateAccessKey", 403, "AccessDenied", 1);
    let out = run(&["approve", &id, "--as", "alice"]);
    let failed = stdout(&out);
    assert!(
        failed
            .contains("AccessDenied: injected by the test proxy: AccessDenied (session token ***)"),
        "{}",
        show(&out)
    );
    let action = action_id(&failed, "FAILED");
    let out = run(&["retry", &action]);
    assert!(out.status.success(), "{}", show(&out));
    run(&["audit", "--format", "json"]);
    run(&["audit"]);
    run(&["approvals", "--status", "all", "--format", "json"]);
    run(&["findings", "--status", "all", "--format", "json"]);
    let export = tempfile::tempdir().unwrap();
    run(&["audit", "export", &export.path().display().to_string()]);
    for f in common::files_under(export.path()) {
        seen.push(std::fs::read_to_string(export.path().join(&f)).unwrap());
    }
    let all = seen.join("\n");
    let issued = proxy.issued_secrets();
    assert_eq!(
        issued.len(),
        4,
        "STS handed a secret key and a session token to each of the two processes that acted"
    );
    for secret in [SECRET_KEY, SESSION_TOKEN]
        .into_iter()
        .chain(issued.iter().map(String::as_str))
    {
        assert!(
            !all.contains(secret),
            "secret {secret} leaked:\n{}",
            all.lines()
                .filter(|l| l.contains(secret))
                .take(5)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    assert!(all.contains(&key), "access key ids stay visible");
}

/// The seed workflow decided in Slack: the example project's query, remediation and AWS
/// connections, its notifier posting to the Slack stand-in; alice's signed click on
/// Deactivate deactivates the key in moto (in the row's account, through its role), once,
/// and the confirmation is posted to the channel.
#[tokio::test]
async fn seed_flow_decided_in_slack_deactivates_the_key_in_moto() {
    const SIGNING_SECRET: &str = "aws-slack-signing-secret-0001";
    const CHANNEL: &str = "C0SECURITY";
    let slack = common::slack::Slack::start(&[CHANNEL]);
    let moto = Moto::start();
    let proxy = Proxy::start(&moto.url());
    let prod = moto.iam(Some("111111111111")).await;
    let key = create_key(&prod, "bob").await;
    let db = steampipe_db().await;
    insert_row(&db, &key, "bob", "111111111111", "aws_prod").await;
    let tickets = common::recorder::Recorder::start();
    let port = common::free_port();
    let state = tempfile::tempdir().unwrap();
    let config = format!(
        r#"[state]
url = "{state}"

[server]
listen = "127.0.0.1:{port}"

[database.steampipe]
url = "{db}"

[integration.slack.main]
token = "{token}"
signing_secret = "{SIGNING_SECRET}"
api_url = "{api}"
pace = "20ms"

[notifier.security]
notify = [{{ integration = "slack.main", channel = "{CHANNEL}" }}]

[approver.alice]
slack = "U0ALICE"

[approver.bob]
slack = "U0BOB"

[group.security]
members = ["alice", "bob"]
"#,
        state = sqlite_url(state.path()),
        db = db.url,
        token = common::slack::BOT_TOKEN,
        api = slack.api_url(),
    );
    let file = |p: &str| std::fs::read_to_string(repo().join(p)).unwrap();
    let dir = common::project(&[
        ("config/vigilo.toml", &config),
        ("config/aws.toml", &file("config/aws.toml")),
        (
            "queries/iam_access_key_stale.sql",
            &file("queries/iam_access_key_stale.sql"),
        ),
        (
            "remediations/deactivate_iam_access_key.toml",
            &file("remediations/deactivate_iam_access_key.toml"),
        ),
    ]);
    let tickets_url = format!("http://127.0.0.1:{}/tickets", tickets.port);
    let proxy_url = proxy.url();
    let env = AwsEnv::new(&[
        ("TICKETS_URL", tickets_url.as_str()),
        ("AWS_ENDPOINT_URL", proxy_url.as_str()),
    ]);
    env.ok(dir.path(), &["scan"]);
    let id = approval_for(&env, dir.path(), &key);
    let _run = common::run_env(dir.path(), &env.pairs(), Stdio::null());
    common::wait_healthy(port).await;
    slack.wait_for(Duration::from_secs(15), "the approval request", |_| {
        !slack.accepted("chat.postMessage").is_empty()
    });

    let payload = serde_json::json!({
        "type": "block_actions",
        "user": {"id": "U0ALICE", "username": "alice"},
        "channel": {"id": CHANNEL},
        "container": {"type": "message", "channel_id": CHANNEL},
        "response_url": "",
        "actions": [{"type": "button", "block_id": format!("vigilo:approval:{id}"),
                     "action_id": "vote:deactivate", "value": "deactivate"}],
    });
    let body = serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap();
    let ts = chrono::Utc::now().timestamp();
    let status = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/slack/interactions"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", ts.to_string())
        .header(
            "x-slack-signature",
            common::slack::sdk_signature(SIGNING_SECRET, ts, &body),
        )
        .body(body)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    let confirmation =
        format!("Deactivated {key} of bob in 111111111111 and filed a ticket; approved by alice.");
    slack.wait_for(Duration::from_secs(20), "the confirmation", |_| {
        slack
            .accepted("chat.postMessage")
            .iter()
            .any(|p| p["text"] == confirmation.as_str())
    });
    assert_eq!(
        key_status(&prod, "bob", &key).await.as_deref(),
        Some("Inactive")
    );
    assert_eq!(proxy.calls_of("UpdateAccessKey").len(), 1);
    assert_eq!(tickets.seen().len(), 1);
    let entries = audit(&env, dir.path());
    let vote = last_entry(&entries, "approval.vote", &id);
    assert_eq!(
        (vote["actor"].as_str(), vote["channel"].as_str()),
        (Some("alice"), Some("slack"))
    );
}

/// A connection naming a `profile` takes its credentials from the shared credentials file,
/// even with AWS_* credential variables set (as `aws --profile` does); the profile's secret
/// and session token never appear, even when an error text echoes the token.
#[tokio::test]
async fn a_profile_connection_uses_the_profiles_credentials() {
    const PROFILE_SECRET: &str = "profile-secret-access-key-never-shown-77";
    const PROFILE_TOKEN: &str = "profile-session-token-never-shown-78";
    let mut w = world(
        None,
        "ops",
        "profile = \"ops\"\n",
        &["ann"],
        "recheck = false",
        None,
    )
    .await;
    let creds = w.dir.path().join("aws-credentials");
    std::fs::write(
        &creds,
        format!(
            "[default]\naws_access_key_id = AKIADEFAULTPROFILE01\naws_secret_access_key = default-profile-secret-01\n\n\
             [ops]\naws_access_key_id = AKIAPROFILEOPS000001\naws_secret_access_key = {PROFILE_SECRET}\naws_session_token = {PROFILE_TOKEN}\n"
        ),
    )
    .unwrap();
    w.env
        .set("AWS_SHARED_CREDENTIALS_FILE", &creds.display().to_string());
    let (proxy, dir, env) = (&w.proxy, &w.dir, &w.env);
    let key = &w.keys[0];
    env.ok(dir.path(), &["scan"]);
    let id = approval_for(env, dir.path(), key);
    proxy.fail("UpdateAccessKey", 403, "AccessDenied", 1);
    let failed = env.run(dir.path(), &["approve", &id, "--as", "alice"]);
    let mut all = format!(
        "{}{}",
        stdout(&failed),
        String::from_utf8_lossy(&failed.stderr)
    );
    assert!(
        all.contains("AccessDenied: injected by the test proxy: AccessDenied (session token ***)"),
        "{all}"
    );
    let action = action_id(&stdout(&failed), "FAILED");
    all.push_str(&env.ok(dir.path(), &["retry", &action]));
    all.push_str(&env.ok(dir.path(), &["audit", "--format", "json"]));
    assert_eq!(
        key_status(&w.iam, "ann", key).await.as_deref(),
        Some("Inactive")
    );
    let calls = proxy.calls();
    assert!(!calls.is_empty());
    for c in &calls {
        assert_eq!(
            c.akid, "AKIAPROFILEOPS000001",
            "signed with the profile's key: {c:#?}"
        );
    }
    for secret in [PROFILE_SECRET, PROFILE_TOKEN] {
        assert!(!all.contains(secret), "{secret} leaked:\n{all}");
    }
}

/// The answer to UpdateAccessKey is lost (an error comes back although AWS made the change):
/// the action fails, `vigilo retry` reads the key, sees the earlier attempt took effect, calls
/// nothing, and keeps the status from before it, so the action can still be undone.
#[tokio::test]
async fn a_lost_answer_is_settled_by_the_retry_and_can_be_undone() {
    let w = world(None, "acct", "", &["ann"], "recheck = false", None).await;
    let (proxy, iam, dir, env) = (&w.proxy, &w.iam, &w.dir, &w.env);
    let key = &w.keys[0];
    env.ok(dir.path(), &["scan"]);
    let id = approval_for(env, dir.path(), key);
    proxy.fail_after_forwarding("UpdateAccessKey", 400, "ValidationError");
    let out = env.run(dir.path(), &["approve", &id, "--as", "alice"]);
    let action = action_id(&stdout(&out), "FAILED");
    assert_eq!(
        key_status(iam, "ann", key).await.as_deref(),
        Some("Inactive")
    );

    let retried = env.ok(dir.path(), &["retry", &action]);
    assert!(
        retried.contains("an earlier attempt took effect: the key was Active before it and is Inactive now; not called again"),
        "{retried}"
    );
    assert_eq!(
        proxy.calls_of("UpdateAccessKey").len(),
        1,
        "not called again"
    );
    env.ok(
        dir.path(),
        &["undo", &action, "--as", "bob", "--reason", "lost answer"],
    );
    assert_eq!(key_status(iam, "ann", key).await.as_deref(), Some("Active"));
}

/// Messages a run still holds (another of its actions failed) tell of what an undo reverses:
/// the undo cancels them, so finishing the run later sends none of them.
#[tokio::test]
async fn undo_cancels_the_messages_the_run_still_holds() {
    let tickets = common::recorder::Recorder::start();
    tickets.answer(common::recorder::Answer::Fail);
    let ticket_action = format!(
        "[[action]]\nwhen = \"deactivate\"\ntype = \"http\"\nurl = \"http://127.0.0.1:{}/tickets\"\n",
        tickets.port
    );
    let w = world(
        None,
        "acct",
        "",
        &["ann"],
        &format!("recheck = false\n{ticket_action}"),
        None,
    )
    .await;
    let (iam, dir, env) = (&w.iam, &w.dir, &w.env);
    let key = &w.keys[0];
    env.ok(dir.path(), &["scan"]);
    let id = approval_for(env, dir.path(), key);
    let out = stdout(&env.run(dir.path(), &["approve", &id, "--as", "alice"]));
    let ticket = action_id(&out, "FAILED");
    let deactivated = action_id(&out, "succeeded");
    assert!(
        !out.contains("Deactivated"),
        "held while the ticket failed: {out}"
    );
    assert_eq!(
        key_status(iam, "ann", key).await.as_deref(),
        Some("Inactive")
    );

    env.ok(
        dir.path(),
        &["undo", &deactivated, "--as", "bob", "--reason", "wrong key"],
    );
    assert_eq!(key_status(iam, "ann", key).await.as_deref(), Some("Active"));
    tickets.answer(common::recorder::Answer::Ok);
    let retried = env.ok(dir.path(), &["retry", &ticket]);
    assert!(retried.contains("succeeded"), "{retried}");
    assert!(!retried.contains("Deactivated"), "never told: {retried}");
    let entries = audit(env, dir.path());
    let undo = last_entry(&entries, "action.undo", &id);
    assert_eq!(undo["data"]["messages_cancelled"], 1, "{undo}");
    assert!(
        !entries
            .iter()
            .any(|e| e["kind"] == "message.sent" && e["data"].to_string().contains("Deactivated")),
        "{entries:#?}"
    );
}
