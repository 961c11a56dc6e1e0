//! Email through a real SMTP server (aiosmtpd, started per test on a free loopback port):
//! the repository's own stale-key query and remediation end to end by email (request with
//! one link per option to each approver, none to anyone else; a link's GET changes nothing;
//! the confirmation form's POST votes; a non-approver cannot vote; the decision and the
//! remediation's message follow by email; the audit names who decided), each TLS mode,
//! SMTP login, and failures recorded as `message.failed` with the server and its reply.

mod common;

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use common::recorder::Recorder;
use common::smtp::{Options, Received, Smtp};
use common::{free_port, show, vigilo_env};
use serde_json::Value;

const SECRET: &str = "email-links-secret-for-tests";
const FROM: &str = "vigilo@example.com";
const WAIT: Duration = Duration::from_secs(30);

fn ok(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> String {
    let out = vigilo_env(dir, env, args);
    assert!(out.status.success(), "{args:?}: {}", show(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Vec<Value> {
    serde_json::from_str(&ok(dir, env, args)).unwrap()
}

fn audit(dir: &Path, env: &[(&str, &str)]) -> Vec<Value> {
    json(dir, env, &["audit", "--format", "json"])
}

fn of_kind<'a>(entries: &'a [Value], kind: &str) -> Vec<&'a Value> {
    entries.iter().filter(|e| e["kind"] == kind).collect()
}

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

fn token_of(url: &str) -> String {
    let query = url.split_once('?').unwrap().1;
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("token="))
        .unwrap()
        .to_string()
}

fn by_recipient<'a>(mails: &'a [Received], to: &str) -> &'a Received {
    mails
        .iter()
        .find(|m| m.rcpt_tos == [to])
        .unwrap_or_else(|| panic!("no message to {to}"))
}

/// The "done means" of the email part: the seed flow end to end by email.
#[tokio::test]
async fn seed_flow_end_to_end_by_email() {
    let smtp = Smtp::start();
    let tickets = Recorder::start();
    // bob's key exists in moto's account 111111111111, which the example's aws_prod role reaches.
    let moto = common::aws::Moto::start();
    let prod = moto.iam(Some("111111111111")).await;
    let key = common::aws::create_key(&prod, "bob").await;
    let db = common::PgDb::new("emailseed").await;
    db.execute(&common::steampipe_fixture()).await;
    db.execute(&format!(
        "update aws_iam_access_key set access_key_id = '{key}' where access_key_id = 'AKIAEXAMPLE000000002'"
    ))
    .await;
    // Every key inactive: the first scan finds nothing.
    db.execute("update aws_iam_access_key set status = 'Inactive'")
        .await;
    let listen = free_port();
    let config = format!(
        r#"[server]
listen = "127.0.0.1:{listen}"
secret = "{SECRET}"

[database.steampipe]
url = "{db_url}"

[integration.email.default]
host = "127.0.0.1"
port = {smtp_port}
tls = "none"
from = "{FROM}"

[notifier.security]
notify = [{{ integration = "email.default", to = ["alice@example.com", "bob@example.com", "security-team@example.com"] }}]

[approver.alice]
email = "alice@example.com"

[approver.bob]
email = "Bob <Bob@Example.com>"

[approver.carol]
email = "carol@example.com"

[group.security]
members = ["alice", "bob"]
"#,
        db_url = db.url,
        smtp_port = smtp.port,
    );
    let dir = common::project(&[
        ("config/vigilo.toml", &config),
        ("config/aws.toml", &repo_file("config/aws.toml")),
        (
            "queries/iam_access_key_stale.sql",
            &repo_file("queries/iam_access_key_stale.sql"),
        ),
        (
            "remediations/deactivate_iam_access_key.toml",
            &repo_file("remediations/deactivate_iam_access_key.toml"),
        ),
    ]);
    let d = dir.path();
    let tickets_url = format!("http://127.0.0.1:{}/tickets", tickets.port);
    let moto_url = moto.url();
    let env = [
        ("VIGILO_SECRET", SECRET),
        ("TICKETS_URL", tickets_url.as_str()),
        ("AWS_ENDPOINT_URL", moto_url.as_str()),
        ("AWS_ACCESS_KEY_ID", "AKIAEMAILTEST0000001"),
        ("AWS_SECRET_ACCESS_KEY", "email-test-secret"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];

    // No stale key yet: nothing is found, nobody is mailed.
    ok(d, &env, &["scan"]);
    assert!(smtp.received().is_empty());

    // A stale key row appears: one finding, one approval, one email per recipient.
    db.execute(&format!(
        "update aws_iam_access_key set status = 'Active' where access_key_id = '{key}'"
    ))
    .await;
    ok(d, &env, &["scan"]);
    let requests = smtp.wait_for(3, WAIT);
    assert_eq!(requests.len(), 3, "{requests:#?}");
    for m in &requests {
        assert_eq!(m.mail_from, FROM);
        assert_eq!(m.rcpt_tos.len(), 1, "one recipient per message");
        assert_eq!(m.to, m.rcpt_tos, "To: is the envelope recipient");
        assert_eq!(m.content_type, "multipart/alternative", "{}", m.raw);
        assert_eq!(m.subject, format!("Deactivate IAM access key {key}?"));
        for part in [&m.text, &m.html] {
            assert!(
                part.contains(&format!("Key {key} of bob [111111111111] is 120 days old.")),
                "the prompt: {part}"
            );
            assert!(
                part.contains("of query iam_access_key_stale (high)"),
                "the finding: {part}"
            );
            assert!(part.contains("111111111111"), "the finding's row: {part}");
        }
        assert!(
            m.header("Message-ID")
                .is_some_and(|id| id.starts_with("<vigilo-message-")),
            "{:?}",
            m.headers
        );
        assert!(
            m.header("References")
                .is_some_and(|r| r.contains("<vigilo-approval-1@example.com>")),
            "{:?}",
            m.headers
        );
        assert_eq!(m.header("Auto-Submitted"), Some("auto-generated"));
    }

    // Each approver gets one link per option, with a token of their own.
    let mut links = std::collections::BTreeMap::new();
    for (to, approver) in [("alice@example.com", "alice"), ("bob@example.com", "bob")] {
        let m = by_recipient(&requests, to);
        let html = m.html_links();
        assert_eq!(html, m.text_links(), "text and HTML carry the same links");
        assert_eq!(html.len(), 2, "{}", m.html);
        for (link, option) in html.iter().zip(["deactivate", "keep"]) {
            assert!(
                link.starts_with(&format!("http://127.0.0.1:{listen}/approvals/1?token=")),
                "{link}"
            );
            assert!(link.ends_with(&format!("&option={option}")), "{link}");
            let grant =
                vigilo::token::verify(SECRET, &token_of(link), 1, chrono::Utc::now()).unwrap();
            assert_eq!(grant.approver, approver, "{link}");
            links.insert((approver, option), link.clone());
        }
        assert!(m.html.contains(">Deactivate</a>") && m.html.contains(">Keep key active</a>"));
        assert!(m.text.contains("  Deactivate: http://"), "{}", m.text);
    }
    // Anyone else gets the message without links.
    let list = by_recipient(&requests, "security-team@example.com");
    assert!(list.html_links().is_empty() && list.text_links().is_empty());
    assert!(!list.raw.contains("token="), "{}", list.raw);
    assert!(list.text.contains("for information"), "{}", list.text);

    // Following a link (GET) shows the confirmation and changes nothing.
    let _server = common::run_env(d, &env, std::process::Stdio::null());
    common::wait_healthy(listen).await;
    let http = reqwest::Client::new();
    let deactivate = &links[&("alice", "deactivate")];
    let mut page = String::new();
    for _ in 0..2 {
        let r = http.get(deactivate).send().await.unwrap();
        assert_eq!(r.status(), 200);
        page = r.text().await.unwrap();
    }
    assert!(page.contains("Confirm: Deactivate"), "{page}");
    assert!(page.contains("voting as <strong>alice</strong>"), "{page}");
    let pending = |env: &[(&str, &str)]| {
        json(
            d,
            env,
            &["approvals", "--status", "all", "--format", "json"],
        )
        .into_iter()
        .next()
        .unwrap()
    };
    let a = pending(&env);
    assert_eq!(
        (a["status"].as_str(), a["votes"].as_array().unwrap().len()),
        (Some("pending"), 0),
        "GET voted: {a}"
    );

    // A non-approver cannot vote: a token for someone who is not an approver of this
    // approval is refused, and alice's link rewritten to name someone else is not valid.
    let base = format!("http://127.0.0.1:{listen}/approvals/1");
    let post = |token: String, option: &'static str| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let r = http
                .post(base)
                .form(&[
                    ("token", token.as_str()),
                    ("option", option),
                    ("reason", "stale"),
                ])
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let deadline = chrono::Utc::now() + chrono::Duration::hours(1);
    let carol = vigilo::token::issue(SECRET, 1, "carol", Some(deadline));
    let (status, body) = post(carol, "deactivate").await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("carol is not an approver"), "{body}");
    let alice_token = token_of(deactivate);
    let (payload, sig) = alice_token.split_once('.').unwrap();
    let payload = String::from_utf8(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    let forged = format!(
        "{}.{sig}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload.replacen(
            "alice",
            "security-team",
            1
        ))
    );
    let (status, body) = post(forged, "deactivate").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(pending(&env)["votes"].as_array().unwrap().len(), 0);

    // The confirmation form's POST votes, as alice, and decides.
    let fields = common::hidden_inputs(&page);
    assert_eq!(
        fields,
        [
            ("token".to_string(), alice_token.clone()),
            ("option".to_string(), "deactivate".to_string())
        ]
    );
    let mut form: Vec<(String, String)> = fields;
    form.push(("reason".into(), "key unused for months".into()));
    let r = http.post(&base).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert!(body.contains("Decided"), "{body}");
    let a = pending(&env);
    assert_eq!(a["status"], "decided", "{a}");
    assert_eq!(a["decision"], "deactivate", "{a}");
    assert_eq!(a["votes"][0]["by"], "alice", "{a}");
    // The link, forwarded and used again, cannot vote twice.
    let (status, body) = post(alice_token.clone(), "keep").await;
    assert_eq!(status, 409, "{body}");

    // The action runs; the decision notice and the confirmation follow by email.
    let all = smtp.wait_for(9, WAIT);
    let later = &all[3..];
    for to in [
        "alice@example.com",
        "bob@example.com",
        "security-team@example.com",
    ] {
        let mine: Vec<&Received> = later.iter().filter(|m| m.rcpt_tos == [to]).collect();
        let subjects: Vec<&str> = mine.iter().map(|m| m.subject.as_str()).collect();
        assert!(
            subjects.contains(
                &format!("Deactivate IAM access key {key}? — Decided: Deactivate (by alice)")
                    .as_str()
            ),
            "{to}: {subjects:?}"
        );
        let confirmation = mine
            .iter()
            .find(|m| m.subject.starts_with("Deactivated "))
            .unwrap_or_else(|| panic!("{to}: no confirmation in {subjects:?}"));
        assert_eq!(
            confirmation.subject,
            format!(
                "Deactivated {key} of bob in 111111111111 and filed a ticket; approved by alice."
            )
        );
        assert!(confirmation.text.contains("approved by alice"));
        assert!(confirmation.html_links().is_empty());
        assert!(
            confirmation
                .header("References")
                .is_some_and(|r| r.contains("<vigilo-approval-1@example.com>"))
        );
    }
    let calls = tickets.seen();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(calls[0].3.contains(&key), "{calls:?}");
    assert_eq!(
        common::aws::key_status(&prod, "bob", &key).await.as_deref(),
        Some("Inactive"),
        "the approved key is deactivated in moto"
    );

    // The audit trail names the approver who decided, and every email sent.
    let entries = audit(d, &env);
    let decided = of_kind(&entries, "approval.decided");
    assert_eq!(decided.len(), 1, "{decided:#?}");
    assert_eq!(decided[0]["actor"], "alice");
    assert_eq!(decided[0]["data"]["by"][0], "alice");
    let sent = of_kind(&entries, "message.sent");
    assert_eq!(sent.len(), 9, "{sent:#?}");
    assert!(sent.iter().all(|e| e["channel"] == "email.default"));
    assert!(of_kind(&entries, "message.failed").is_empty());
    let trail = serde_json::to_string(&entries).unwrap();
    assert!(
        !trail.contains(&alice_token) && !trail.contains(SECRET),
        "no link token or secret in the audit trail"
    );
    ok(d, &env, &["audit", "verify"]);
}

/// A project whose one query tells `[notifier.ops]` (email to `to`) of each new finding.
fn notice_project(email: &str, to: &str) -> tempfile::TempDir {
    let config = format!(
        "[state]\nurl = \"sqlite://state.db\"\n\n[database.src]\nurl = \"sqlite://src.db\"\n\n\
         [integration.email.default]\n{email}\nfrom = \"{FROM}\"\n\n\
         [notifier.ops]\nnotify = [{{ integration = \"email.default\", to = [\"{to}\"] }}]\n"
    );
    let dir = common::project(&[
        ("config/vigilo.toml", &config),
        (
            "queries/watched.sql",
            "-- title: Watched things\n-- primary_key: name\n-- notify: ops\n-- severity: high\nselect name, owner from watched\n",
        ),
    ]);
    rusqlite::Connection::open(dir.path().join("src.db"))
        .unwrap()
        .execute_batch(
            "create table watched (name text, owner text); insert into watched values ('w1', 'ann');",
        )
        .unwrap();
    dir
}

/// Scans once; the audit's message entries.
fn scan_and_audit(dir: &Path, env: &[(&str, &str)]) -> (Vec<Value>, Vec<Value>) {
    let out = vigilo_env(dir, env, &["scan"]);
    assert!(out.status.success(), "{}", show(&out));
    let entries = audit(dir, env);
    let sent = of_kind(&entries, "message.sent")
        .into_iter()
        .cloned()
        .collect();
    let failed = of_kind(&entries, "message.failed")
        .into_iter()
        .cloned()
        .collect();
    (sent, failed)
}

#[tokio::test]
async fn tls_none_and_opportunistic_send_in_plain_to_a_server_without_starttls() {
    for mode in ["none", "opportunistic"] {
        let smtp = Smtp::start();
        let dir = notice_project(
            &format!(
                "host = \"127.0.0.1\"\nport = {}\ntls = \"{mode}\"",
                smtp.port
            ),
            "ops@example.com",
        );
        let (sent, failed) = scan_and_audit(dir.path(), &[]);
        assert!(failed.is_empty(), "{mode}: {failed:#?}");
        assert_eq!(sent.len(), 1, "{mode}");
        let reply = sent[0]["data"]["result"]["reply"].as_str().unwrap();
        assert!(reply.starts_with("250 "), "{mode}: {reply}");
        let mail = smtp.wait_for(1, WAIT);
        assert!(!mail[0].tls, "{mode}");
        assert_eq!(mail[0].rcpt_tos, ["ops@example.com"]);
        assert_eq!(mail[0].subject, "New finding: Watched things");
        assert!(mail[0].text.contains("name: w1"), "{}", mail[0].text);
        assert!(mail[0].html.contains("<td>ann</td>"), "{}", mail[0].html);
    }
}

#[tokio::test]
async fn tls_required_fails_without_starttls_and_is_recorded() {
    let smtp = Smtp::start();
    let dir = notice_project(
        &format!(
            "host = \"127.0.0.1\"\nport = {}\ntls = \"required\"\nusername = \"ann\"\npassword = \"${{SMTP_PASSWORD}}\"",
            smtp.port
        ),
        "ops@example.com",
    );
    let password = "smtp-password-never-shown";
    let env = [("SMTP_PASSWORD", password)];
    let (sent, failed) = scan_and_audit(dir.path(), &env);
    assert!(sent.is_empty(), "{sent:#?}");
    assert_eq!(failed.len(), 1, "{failed:#?}");
    let error = failed[0]["data"]["error"].as_str().unwrap();
    assert!(
        error.contains(&format!(
            "email email.default: SMTP 127.0.0.1:{} (tls required)",
            smtp.port
        )) && error.contains("STARTTLS"),
        "{error}"
    );
    assert!(
        failed[0]["data"]["retry_at"].is_string(),
        "retried later: {}",
        failed[0]
    );
    assert_eq!(failed[0]["channel"], "email.default");
    assert!(smtp.received().is_empty(), "nothing was sent in plain text");
    let trail = serde_json::to_string(&audit(dir.path(), &env)).unwrap();
    assert!(!trail.contains(password), "{trail}");
}

#[tokio::test]
async fn tls_required_uses_starttls_and_checks_the_certificate() {
    let smtp = Smtp::start_with(&Options {
        starttls: true,
        ..Options::default()
    });
    let other = Smtp::start_with(&Options {
        starttls: true,
        ..Options::default()
    });
    let email = format!(
        "host = \"127.0.0.1\"\nport = {}\ntls = \"required\"",
        smtp.port
    );

    // Its certificate's CA trusted (SSL_CERT_FILE): delivered over TLS.
    let dir = notice_project(&email, "ops@example.com");
    let ca = smtp.ca_file();
    let (sent, failed) = scan_and_audit(dir.path(), &[("SSL_CERT_FILE", ca.to_str().unwrap())]);
    assert!(failed.is_empty(), "{failed:#?}");
    assert_eq!(sent.len(), 1);
    let mail = smtp.wait_for(1, WAIT);
    assert!(mail[0].tls, "sent after STARTTLS");

    // A certificate from a CA nobody trusts: refused, nothing sent.
    let dir = notice_project(&email, "ops@example.com");
    let untrusted = other.ca_file();
    let (sent, failed) = scan_and_audit(
        dir.path(),
        &[("SSL_CERT_FILE", untrusted.to_str().unwrap())],
    );
    assert!(sent.is_empty(), "{sent:#?}");
    let error = failed[0]["data"]["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("SMTP 127.0.0.1:{} (tls required)", smtp.port))
            && error.contains("certificate"),
        "{error}"
    );
    assert_eq!(smtp.received().len(), 1, "nothing more arrived");
}

#[tokio::test]
async fn smtp_login_and_refusals_are_recorded_with_the_reply() {
    let password = "right-smtp-password";
    let smtp = Smtp::start_with(&Options {
        auth: Some(("vigilo".into(), password.into())),
        ..Options::default()
    });
    let email = |user: &str| {
        format!(
            "host = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nusername = \"{user}\"\npassword = \"${{SMTP_PASSWORD}}\"",
            smtp.port
        )
    };

    // The right login: delivered, as that user.
    let dir = notice_project(&email("vigilo"), "ops@example.com");
    let (sent, failed) = scan_and_audit(dir.path(), &[("SMTP_PASSWORD", password)]);
    assert!(failed.is_empty(), "{failed:#?}");
    assert_eq!(sent.len(), 1);
    assert_eq!(smtp.wait_for(1, WAIT)[0].user.as_deref(), Some("vigilo"));

    // A wrong password: the server's 535 is recorded, the password is not.
    let wrong = "wrong-smtp-password";
    let dir = notice_project(&email("vigilo"), "ops@example.com");
    let (sent, failed) = scan_and_audit(dir.path(), &[("SMTP_PASSWORD", wrong)]);
    assert!(sent.is_empty());
    let error = failed[0]["data"]["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("SMTP 127.0.0.1:{}", smtp.port)) && error.contains("535"),
        "{error}"
    );
    let trail = serde_json::to_string(&audit(dir.path(), &[("SMTP_PASSWORD", wrong)])).unwrap();
    assert!(!trail.contains(wrong), "{trail}");

    // A recipient the server refuses: its 550 reply is recorded.
    let dir = notice_project(&email("vigilo"), "reject-me@example.com");
    let (sent, failed) = scan_and_audit(dir.path(), &[("SMTP_PASSWORD", password)]);
    assert!(sent.is_empty());
    let error = failed[0]["data"]["error"].as_str().unwrap();
    assert!(
        error.contains("550") && error.contains("mailbox unavailable"),
        "{error}"
    );
    assert_eq!(smtp.received().len(), 1, "only the first message arrived");
}

#[tokio::test]
async fn without_a_secret_approvers_are_told_how_to_decide() {
    let smtp = Smtp::start();
    let config = format!(
        "[state]\nurl = \"sqlite://state.db\"\n\n[database.src]\nurl = \"sqlite://src.db\"\n\n\
         [integration.email.default]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nfrom = \"{FROM}\"\n\n\
         [notifier.ops]\nnotify = [{{ integration = \"email.default\", to = [\"alice@example.com\"] }}]\n\n\
         [approver.alice]\nemail = \"alice@example.com\"\n",
        smtp.port
    );
    let remediation = "[approval]\nnotifier = \"ops\"\napprovers = [\"alice\"]\n\
                       subject = \"Remove {{ row.name }}?\"\nprompt = \"{{ row.name }} is unused.\"\n";
    let dir = common::project(&[
        ("config/vigilo.toml", &config),
        (
            "queries/things.sql",
            "-- primary_key: name\n-- remediation: remove\nselect name from things\n",
        ),
        ("remediations/remove.toml", remediation),
    ]);
    rusqlite::Connection::open(dir.path().join("src.db"))
        .unwrap()
        .execute_batch("create table things (name text); insert into things values ('t1');")
        .unwrap();
    ok(dir.path(), &[], &["scan"]);
    let mail = smtp.wait_for(1, WAIT);
    assert_eq!(mail[0].subject, "Remove t1?");
    assert!(mail[0].html_links().is_empty() && mail[0].text_links().is_empty());
    assert!(
        mail[0]
            .text
            .contains("vigilo respond 1 OPTION --as alice (options: approve, deny)"),
        "{}",
        mail[0].text
    );
}

/// An SMTP server nobody answers: the failure names the integration, the server, what happened
/// and what to check, on one line.
#[tokio::test]
async fn an_smtp_server_refusing_connections_is_named_with_the_fix() {
    let port = common::free_port();
    let dir = notice_project(
        &format!("host = \"127.0.0.1\"\nport = {port}\ntls = \"none\""),
        "ops@example.com",
    );
    let (sent, failed) = scan_and_audit(dir.path(), &[]);
    assert!(sent.is_empty(), "{sent:#?}");
    assert_eq!(
        failed[0]["data"]["error"],
        format!(
            "email email.default: SMTP 127.0.0.1:{port} (tls none): cannot connect (connection refused); is the mail server running, and are host and port of [integration.email.default] right?"
        )
    );
}
