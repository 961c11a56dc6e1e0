//! The HTTP server of a real `vigilo run`: health, the approval page (GET changes nothing,
//! POST votes as the token's approver), every kind of bad token refused with 403, the API's
//! bearer token, and the dashboard.

mod common;

use common::chromium;

use common::{Running, free_port, show};
use serde_json::Value;

const SECRET: &str = "test-secret-do-not-use";
const API_TOKEN: &str = "api-token-for-tests";

/// Links printed by `vigilo scan`: (approval id, approver, url).
fn links(scan_output: &str) -> Vec<(i64, String, String)> {
    let mut out = Vec::new();
    let mut current = 0;
    for line in scan_output.lines() {
        if let Some(rest) = line.strip_prefix("approval ") {
            current = rest.split_whitespace().next().unwrap().parse().unwrap();
        } else if let Some((who, url)) = line.trim().split_once(": http") {
            out.push((current, who.to_string(), format!("http{url}")));
        }
    }
    out
}

fn token_of(url: &str) -> String {
    url.split("token=").nth(1).unwrap().to_string()
}

/// A project with two approvals, scanned, and `vigilo run` serving it.
struct Served {
    _dir: tempfile::TempDir,
    _server: Running,
    port: u16,
    links: Vec<(i64, String, String)>,
}

impl Served {
    fn link(&self, id: i64, who: &str) -> String {
        self.links
            .iter()
            .find(|l| l.0 == id && l.1 == who)
            .unwrap()
            .2
            .clone()
    }
}

async fn served() -> Served {
    let port = free_port();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nsecret = \"{SECRET}\"\napi_token = \"{API_TOKEN}\"\n\n\
         [database.src]\nurl = \"sqlite://src.db\"\n\n[notifier.ops]\nnotify = [{{ integration = \"console\" }}]\n\n\
         [approver.alice]\n[approver.bob]\n"
    );
    let remediation = r#"[approval]
notifier = "ops"
approvers = ["alice", "bob"]
subject = "Deactivate <{{ row.id }}>?"
prompt = "Key {{ row.id }} belongs to {{ row.owner }}."
options = [
  { value = "deactivate", label = "Deactivate now", style = "danger", required = 2 },
  { value = "keep", label = "Keep it" },
]
"#;
    let dir = common::project(&[
        ("config/vigilo.toml", &config),
        (
            "queries/keys.sql",
            "-- primary_key: id\n-- remediation: r\nselect id, owner from keys order by id\n",
        ),
        ("remediations/r.toml", remediation),
    ]);
    let d = dir.path();
    rusqlite::Connection::open(d.join("src.db"))
        .unwrap()
        .execute_batch("create table keys (id text, owner text); insert into keys values ('k1', '<script>alert(1)</script>'), ('k2', 'ben');")
        .unwrap();
    let scan = common::vigilo(d, &["scan"]);
    assert!(scan.status.success(), "{}", show(&scan));
    let links = links(&String::from_utf8_lossy(&scan.stdout));
    assert_eq!(links.len(), 4, "{links:?}");

    let _server = common::run(d);
    common::wait_healthy(port).await;
    Served {
        _dir: dir,
        _server,
        port,
        links,
    }
}

#[tokio::test]
async fn approval_pages_vote_only_with_the_right_token() {
    let served = served().await;
    let port = served.port;
    let link = |id: i64, who: &str| served.link(id, who);
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    // GET renders the finding and the options, escaped, and changes nothing.
    for _ in 0..2 {
        let page = http.get(link(1, "alice")).send().await.unwrap();
        assert_eq!(page.status(), 200);
        let html = page.text().await.unwrap();
        for needle in [
            "Deactivate &lt;k1&gt;?",
            "Deactivate now",
            "Keep it",
            "<form method=\"post\"",
            "&lt;script&gt;",
        ] {
            assert!(html.contains(needle), "page lacks {needle:?}:\n{html}");
        }
        assert!(!html.contains("<script>alert"), "row values are escaped");
    }
    let votes = |approvals: &Value, id: i64| {
        approvals.as_array().unwrap()[id as usize - 1]["votes"]
            .as_array()
            .unwrap()
            .len()
    };
    let api = |http: reqwest::Client| async move {
        let r = http
            .get(format!("http://127.0.0.1:{port}/api/approvals"))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()
    };
    assert_eq!(votes(&api(http.clone()).await, 1), 0, "GET voted");

    // Bad tokens: another approval's, tampered, expired, missing, never issued.
    let post = |url: String, token: String, option: &str| {
        let http = http.clone();
        let option = option.to_string();
        async move {
            let r = http
                .post(url)
                .form(&[
                    ("token", token.as_str()),
                    ("option", option.as_str()),
                    ("reason", "checked"),
                ])
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let one = format!("{base}/approvals/1");
    let alice = token_of(&link(1, "alice"));
    let mut tampered = alice.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == '0' { '1' } else { '0' });
    let expired = vigilo::token::issue(
        SECRET,
        1,
        "alice",
        Some(chrono::Utc::now() - chrono::Duration::minutes(1)),
    );
    let foreign_secret = vigilo::token::issue("another-secret", 1, "alice", None);
    for (what, token) in [
        ("another approval's token", token_of(&link(2, "alice"))),
        ("a tampered token", tampered),
        ("an expired token", expired),
        ("no token", String::new()),
        ("a token signed with another secret", foreign_secret),
    ] {
        let (status, body) = post(one.clone(), token.clone(), "deactivate").await;
        assert_eq!(status, 403, "{what}: {body}");
        let page = http
            .get(format!("{one}?token={token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 403, "GET with {what}");
    }
    assert_eq!(
        votes(&api(http.clone()).await, 1),
        0,
        "refused tokens changed nothing"
    );

    // The right tokens vote, as their approvers, once each.
    let (status, body) = post(one.clone(), alice.clone(), "deactivate").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Vote recorded"), "{body}");
    let (status, body) = post(one.clone(), alice.clone(), "deactivate").await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("already voted"), "{body}");
    let (status, body) = post(one.clone(), token_of(&link(1, "bob")), "deactivate").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Decided"), "{body}");
    let approvals = api(http.clone()).await;
    let first = &approvals.as_array().unwrap()[0];
    assert_eq!(first["status"], "decided");
    assert_eq!(first["votes"][0]["by"], "alice");
    assert_eq!(first["votes"][0]["channel"], "web");
    assert_eq!(first["votes"][0]["reason"], "checked");
    assert_eq!(first["votes"][1]["by"], "bob");

    // The API needs the bearer token.
    for auth in [None, Some("wrong")] {
        let mut r = http.get(format!("{base}/api/findings"));
        if let Some(t) = auth {
            r = r.bearer_auth(t);
        }
        assert_eq!(r.send().await.unwrap().status(), 401, "{auth:?}");
    }
    for path in ["findings", "approvals", "audit"] {
        let r = http
            .get(format!("{base}/api/{path}"))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert!(r.json::<Value>().await.unwrap().is_array(), "{path}");
    }
    let audit: Value = http
        .get(format!("{base}/api/audit"))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = audit.to_string();
    assert!(
        !text.contains(SECRET) && !text.contains(API_TOKEN),
        "no secret in the audit trail"
    );

    // The dashboard (behind the API token here) lists what is pending.
    assert_eq!(http.get(&base).send().await.unwrap().status(), 401);
    let dash = http.get(&base).bearer_auth(API_TOKEN).send().await.unwrap();
    assert_eq!(dash.status(), 200);
    let html = dash.text().await.unwrap();
    assert!(
        html.contains("Pending approvals") && html.contains("Deactivate &lt;k2&gt;?"),
        "{html}"
    );
}

#[tokio::test]
async fn approval_page_renders_in_headless_chromium() {
    let served = served().await;
    let url = served.link(1, "alice");
    let tmp = tempfile::tempdir().unwrap();
    let dom = chromium(&tmp.path().join("profile-dom"), &["--dump-dom", &url]);
    let html = String::from_utf8_lossy(&dom.stdout);
    assert!(
        html.contains("Deactivate now") && html.contains("Keep it"),
        "options not rendered:\n{html}\n{}",
        show(&dom)
    );
    assert!(html.contains("<form method=\"post\""), "{html}");

    let shot = tmp.path().join("approval.png");
    let out = chromium(
        &tmp.path().join("profile-shot"),
        &[&format!("--screenshot={}", shot.display()), &url],
    );
    assert!(shot.exists(), "no screenshot: {}", show(&out));
    common::assert_not_blank(&shot);
    // Rendering the page in a browser voted nothing.
    let approvals = common::vigilo(served._dir.path(), &["approvals", "--format", "json"]);
    let list: Value = serde_json::from_slice(&approvals.stdout).unwrap();
    assert_eq!(list[0]["votes"].as_array().unwrap().len(), 0, "{list}");
}

#[tokio::test]
async fn an_option_link_asks_to_confirm_and_only_the_form_votes() {
    let served = served().await;
    let http = reqwest::Client::new();
    let link = served.link(1, "alice");
    let votes = || {
        let out = common::vigilo(served._dir.path(), &["approvals", "--format", "json"]);
        let list: Value = serde_json::from_slice(&out.stdout).unwrap();
        list[0]["votes"].as_array().unwrap().len()
    };

    // The option's link preselects it: one Confirm button, still a plain form.
    let page = http
        .get(format!("{link}&option=deactivate"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    for needle in [
        "<h2>Confirm: Deactivate now</h2>",
        ">Confirm: Deactivate now</button>",
        "voting as <strong>alice</strong>",
        "which needs 2 approvers",
        "Choose another option",
    ] {
        assert!(html.contains(needle), "page lacks {needle:?}:\n{html}");
    }
    assert!(
        !html.contains(">Keep it</button>"),
        "only the chosen option: {html}"
    );
    let fields = common::hidden_inputs(&html);
    assert_eq!(
        fields,
        [
            ("token".to_string(), token_of(&link)),
            ("option".to_string(), "deactivate".to_string())
        ]
    );
    // In a browser too, and rendering it voted nothing.
    let tmp = tempfile::tempdir().unwrap();
    let dom = chromium(
        &tmp.path().join("profile"),
        &["--dump-dom", &format!("{link}&option=deactivate")],
    );
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.contains("Confirm: Deactivate now"), "{dom}");
    assert_eq!(votes(), 0, "GET voted");

    // An option the approval does not have: said so, and the usual buttons.
    let html = http
        .get(format!("{link}&option=nuke"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("option <code>nuke</code>, which this approval does not have"),
        "{html}"
    );
    assert!(html.contains(">Keep it</button>") && html.contains(">Deactivate now</button>"));
    assert_eq!(votes(), 0);

    // Submitting the confirmation form votes, as alice, for the preselected option.
    let mut form = fields;
    form.push(("reason".into(), "confirmed".into()));
    let r = http
        .post(format!("http://127.0.0.1:{}/approvals/1", served.port))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Vote recorded"));
    let out = common::vigilo(served._dir.path(), &["approvals", "--format", "json"]);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let vote = &list[0]["votes"][0];
    assert_eq!(
        (&vote["by"], &vote["option"], &vote["reason"]),
        (&"alice".into(), &"deactivate".into(), &"confirmed".into()),
        "{list}"
    );
}
