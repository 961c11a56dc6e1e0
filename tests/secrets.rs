//! Secrets never leave the process: configured secret values and values of `*TOKEN*`,
//! `*SECRET*`, `*PASSWORD*` variables are masked in command output, logs, the audit trail,
//! exports, API answers and pages, while the action itself still sends the real value and
//! identifiers stay visible.

mod common;

use std::path::Path;
use std::time::Duration;

use common::recorder::{Answer, Recorder};
use common::{free_port, show, vigilo_env};
use serde_json::Value;

const SERVER_SECRET: &str = "server-secret-0123456789";
const API_TOKEN: &str = "api-token-0123456789";
const TARGET_TOKEN: &str = "target-token-abcdef123456";
const HOOK_PASSWORD: &str = "hook-password-zyxwvu987";
/// Not used by the config at all: masked because of its name in the process environment.
const AWS_SECRET: &str = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY";
const SECRETS: [&str; 5] = [
    SERVER_SECRET,
    API_TOKEN,
    TARGET_TOKEN,
    HOOK_PASSWORD,
    AWS_SECRET,
];

fn env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("VIGILO_SECRET", SERVER_SECRET),
        ("VIGILO_API_TOKEN", API_TOKEN),
        ("TARGET_TOKEN", TARGET_TOKEN),
        ("HOOK_PASSWORD", HOOK_PASSWORD),
        ("AWS_SECRET_ACCESS_KEY", AWS_SECRET),
    ]
}

fn assert_clean(what: &str, text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "{what} leaks {secret}:\n{text}");
    }
}

/// Runs vigilo with the secrets in its environment; asserts success and clean stdout/stderr.
fn clean_run(dir: &Path, args: &[&str]) -> String {
    let out = vigilo_env(dir, &env(), &[&["-v"], args].concat());
    assert!(out.status.success(), "{args:?}: {}", show(&out));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert_clean(&format!("stdout of {args:?}"), &stdout);
    assert_clean(&format!("log of {args:?}"), &stderr);
    stdout
}

#[tokio::test]
async fn secrets_are_masked_wherever_text_leaves() {
    let target = Recorder::start();
    target.answer(Answer::FailEcho);
    let listen = free_port();
    let config = format!(
        r#"[server]
listen = "127.0.0.1:{listen}"
secret = "${{VIGILO_SECRET}}"
api_token = "${{VIGILO_API_TOKEN}}"

[database.src]
url = "sqlite://src.db"

[integration.webhook.ops]
url = "http://127.0.0.1:{dead}/hook?password=${{HOOK_PASSWORD}}"

[notifier.ops]
notify = [{{ integration = "console" }}, {{ integration = "webhook.ops" }}]

[approver.alice]
"#,
        dead = free_port()
    );
    let remediation = format!(
        r#"[approval]
notifier = "ops"
approvers = ["alice"]
subject = "Deactivate {{{{ row.id }}}}?"
prompt = "Key {{{{ row.id }}}}; the target is called with ${{TARGET_TOKEN}}."

[[action]]
when = "approve"
type = "http"
url = "http://127.0.0.1:{port}/deactivate/{{{{ row.id }}}}?key=${{TARGET_TOKEN}}"
headers = {{ Authorization = "Bearer ${{TARGET_TOKEN}}" }}
body = "note: {{{{ row.note }}}}"
"#,
        port = target.port
    );
    let dir = common::project(&[
        ("config/vigilo.toml", &config),
        (
            "queries/keys.sql",
            "-- primary_key: id\n-- remediation: deactivate\nselect id, note from keys\n",
        ),
        ("remediations/deactivate.toml", &remediation),
    ]);
    let d = dir.path();
    let src = rusqlite::Connection::open(d.join("src.db")).unwrap();
    src.execute_batch("create table keys (id text, note text)")
        .unwrap();
    src.execute(
        "insert into keys values ('AKIAEXAMPLE1', ?1)",
        [format!("leaked {AWS_SECRET}")],
    )
    .unwrap();
    let out = clean_run(d, &["scan"]);
    assert!(out.contains("the target is called with ***."), "{out}");
    let link = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("alice: "))
        .expect("an approval link")
        .to_string();

    let out = clean_run(d, &["approve", "1", "--as", "alice"]);
    assert!(out.contains("action 1 FAILED"), "{out}");
    assert!(out.contains("key=***"), "the error is kept, masked: {out}");
    let seen = target.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].1,
        format!("/deactivate/AKIAEXAMPLE1?key={TARGET_TOKEN}"),
        "the target itself gets the real value"
    );

    let audit = clean_run(d, &["audit", "--format", "json"]);
    assert!(audit.contains("AKIAEXAMPLE1"), "identifiers stay visible");
    assert!(audit.contains("Bearer ***"), "{audit}");
    clean_run(d, &["audit"]);
    clean_run(d, &["approvals", "--status", "all", "--format", "json"]);
    let findings = clean_run(d, &["findings", "--format", "json"]);
    assert!(findings.contains("leaked ***"), "{findings}");
    clean_run(d, &["audit", "verify"]);
    let export = tempfile::tempdir().unwrap();
    clean_run(d, &["audit", "export", export.path().to_str().unwrap()]);
    let files = common::files_under(export.path());
    assert_eq!(files.len(), 1);
    assert_clean(
        "export",
        &std::fs::read_to_string(export.path().join(&files[0])).unwrap(),
    );

    // The server: API answers and the approval page.
    let log = tempfile::NamedTempFile::new().unwrap();
    let _run = common::run_env(d, &env(), log.reopen().unwrap().into());
    common::wait_healthy(listen).await;
    let http = reqwest::Client::new();
    for route in ["findings", "approvals", "audit"] {
        let body = http
            .get(format!("http://127.0.0.1:{listen}/api/{route}"))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(body.starts_with('['), "{route}: {body}");
        assert_clean(&format!("/api/{route}"), &body);
    }
    let page = http
        .get(format!("http://127.0.0.1:{listen}/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_clean("dashboard", &page);
    let page = http.get(&link).send().await.unwrap().text().await.unwrap();
    assert!(
        page.contains("AKIAEXAMPLE1") && page.contains("called with ***"),
        "{page}"
    );
    assert_clean("approval page", &page);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    drop(_run);
    let log = std::fs::read_to_string(log.path()).unwrap();
    assert!(log.contains("INFO"), "the log was written: {log}");
    assert_clean("vigilo run's log", &log);
    let entries: Vec<Value> =
        serde_json::from_str(&clean_run(d, &["audit", "--format", "json"])).unwrap();
    assert!(
        entries.iter().any(|e| e["kind"] == "message.failed"),
        "the dead webhook was tried: {entries:#?}"
    );
}
