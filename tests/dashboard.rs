//! The dashboard at `GET /` of `vigilo run`: filters, pending approvals with votes and
//! deadlines, each query's last and next run, recent actions and audit entries; behind
//! `api_token` a sign-in form (cookie) or bearer, and per-approver vote links that go
//! through the approval page's token-checked POST; rendered by headless Chromium.

mod common;

use common::recorder::Recorder;
use common::{free_port, show, vigilo};

const API_TOKEN: &str = "dashboard-api-token-0001";
const SECRET: &str = "dashboard-link-secret-0001";

/// A served project: keys (high, scheduled hourly, remediated) and buckets (low, notify only).
async fn served(with_token: bool, target: &Recorder) -> (tempfile::TempDir, common::Running, u16) {
    let port = free_port();
    let auth = if with_token {
        format!("secret = \"{SECRET}\"\napi_token = \"{API_TOKEN}\"\n")
    } else {
        String::new()
    };
    let config = format!(
        "[state]\nurl = \"sqlite://state.db\"\n\n[server]\nlisten = \"127.0.0.1:{port}\"\n{auth}\n\
         [database.src]\nurl = \"sqlite://src.db\"\n\n[notifier.ops]\nnotify = [{{ integration = \"console\" }}]\n\n\
         [approver.alice]\n[approver.bob]\n"
    );
    let remediation = format!(
        "[approval]\nnotifier = \"ops\"\napprovers = [\"alice\", \"bob\"]\nsubject = \"Deactivate {{{{ row.id }}}}?\"\n\
         prompt = \"p\"\ntimeout = \"24h\"\n\n[[action]]\nwhen = \"approve\"\ntype = \"http\"\n\
         url = \"http://127.0.0.1:{}/k/{{{{ row.id }}}}\"\n",
        target.port
    );
    let dir = common::project(&[
        ("config/vigilo.toml", &config),
        (
            "queries/keys.sql",
            "-- title: Stale keys\n-- severity: high\n-- schedule: hourly\n-- primary_key: id\n-- remediation: r\nselect id from keys",
        ),
        (
            "queries/buckets.sql",
            "-- title: Open buckets\n-- severity: low\n-- primary_key: name\n-- notify: ops\nselect name from buckets",
        ),
        ("remediations/r.toml", &remediation),
    ]);
    rusqlite::Connection::open(dir.path().join("src.db"))
        .unwrap()
        .execute_batch(
            "create table keys (id text); insert into keys values ('k1'), ('k2');
             create table buckets (name text); insert into buckets values ('b1'), ('b2');",
        )
        .unwrap();
    let scan = vigilo(dir.path(), &["scan"]);
    assert!(scan.status.success(), "{}", show(&scan));
    let run = common::run(dir.path());
    common::wait_healthy(port).await;
    (dir, run, port)
}

/// The `<table id="ID">…</table>` of a page.
fn table<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("<table id=\"{id}\""))
        .unwrap_or_else(|| panic!("no table {id} in:\n{html}"));
    let end = html[start..].find("</table>").unwrap() + start;
    &html[start..end]
}

async fn get(port: u16, path: &str) -> (u16, String) {
    let r = reqwest::get(format!("http://127.0.0.1:{port}{path}"))
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn the_dashboard_filters_findings_and_shows_runs_approvals_and_actions() {
    let target = Recorder::start();
    let (dir, _run, port) = served(false, &target).await;
    let approve = vigilo(
        dir.path(),
        &["approve", "1", "--as", "alice", "--reason", "stale"],
    );
    assert!(approve.status.success(), "{}", show(&approve));

    let (status, page) = get(port, "/").await;
    assert_eq!(status, 200);
    let findings = table(&page, "findings");
    for key in ["id=k1", "id=k2", "name=b1", "name=b2"] {
        assert!(findings.contains(key), "{key} in {findings}");
    }
    let (_, high) = get(port, "/?severity=high").await;
    let high = table(&high, "findings");
    assert!(
        high.contains("id=k1") && !high.contains("name=b1"),
        "{high}"
    );
    let (_, buckets) = get(port, "/?query=buckets&status=all").await;
    let buckets = table(&buckets, "findings");
    assert!(
        buckets.contains("name=b2") && !buckets.contains("id=k2"),
        "{buckets}"
    );
    let (_, resolved) = get(port, "/?status=resolved").await;
    assert!(resolved.contains("None."), "nothing resolved yet");

    let pending = table(&page, "pending");
    assert!(pending.contains("Deactivate k2?"), "{pending}");
    assert!(
        !pending.contains("Deactivate k1?"),
        "decided ones are not pending: {pending}"
    );
    assert!(
        !pending.contains("vote as"),
        "no vote links without a signed-in viewer"
    );
    let queries = table(&page, "queries");
    assert!(
        queries.contains("Stale keys") && queries.contains("succeeded"),
        "{queries}"
    );
    assert!(queries.contains("2 rows"), "{queries}");
    // Hourly: on the hour, shifted by the query's own offset (under a minute).
    let offset = "hourly"
        .parse::<vigilo::schedule::Schedule>()
        .unwrap()
        .offset_for("keys");
    let shifted = chrono::DateTime::from_timestamp_millis(offset.as_millis() as i64).unwrap();
    let minute_second = &vigilo::timestamp::rfc3339(&shifted)[13..];
    assert!(
        queries.contains(minute_second),
        "the next hourly run, at {minute_second} past the hour: {queries}"
    );
    let actions = table(&page, "actions");
    assert!(
        actions.contains("http") && actions.contains("succeeded"),
        "{actions}"
    );
    let audit = table(&page, "audit");
    assert!(
        audit.contains("approval.decided") && audit.contains("alice"),
        "{audit}"
    );
    assert!(page.contains("http-equiv=\"refresh\""));

    // Headless Chromium renders it: no console errors, a screenshot that is not blank.
    common::assert_renders_in_chromium(&format!("http://127.0.0.1:{port}/"), "Pending approvals");
}

#[tokio::test]
async fn behind_the_api_token_the_dashboard_signs_in_and_votes_through_the_approval_page() {
    let target = Recorder::start();
    let (dir, _run, port) = served(true, &target).await;
    let (status, page) = get(port, "/").await;
    assert_eq!(status, 401);
    assert!(
        page.contains("name=\"token\"") && !page.contains("Pending approvals"),
        "{page}"
    );

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = |token: &'static str| {
        http.post(format!("http://127.0.0.1:{port}/login"))
            .form(&[("token", token)])
            .send()
    };
    let wrong = login("not-the-token").await.unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());
    let right = login(API_TOKEN).await.unwrap();
    assert_eq!(right.status(), 303);
    let cookie = right.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        !cookie.contains(API_TOKEN),
        "the cookie is not the token: {cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_string();

    let page = http
        .get(format!("http://127.0.0.1:{port}/"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    let bearer = http
        .get(format!("http://127.0.0.1:{port}/"))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 200);
    let forged = http
        .get(format!("http://127.0.0.1:{port}/"))
        .header("cookie", "vigilo_session=00")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);

    // The signed-in viewer gets per-approver links; voting goes through the approval page.
    let pending = table(&page, "pending");
    let href = pending
        .split("href=\"")
        .nth(1)
        .and_then(|h| h.split('"').next())
        .unwrap_or_else(|| panic!("no vote link in {pending}"))
        .replace("&amp;", "&")
        .replace("&#x2f;", "/");
    assert!(
        href.contains("/approvals/") && href.contains("token="),
        "{href}"
    );
    let (id, token) = {
        let rest = href.split("/approvals/").nth(1).unwrap();
        let (id, query) = rest.split_once('?').unwrap();
        (
            id.to_string(),
            query.strip_prefix("token=").unwrap().to_string(),
        )
    };
    let vote = http
        .post(format!("http://127.0.0.1:{port}/approvals/{id}"))
        .form(&[
            ("token", token.as_str()),
            ("option", "approve"),
            ("reason", "from the dashboard"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(vote.status(), 200, "{}", vote.text().await.unwrap());
    let list = vigilo(
        dir.path(),
        &["approvals", "--status", "all", "--format", "json"],
    );
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let a = list
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"].as_i64() == id.parse().ok())
        .unwrap();
    assert_eq!(a["status"], "decided", "{a}");
    assert_eq!(a["votes"][0]["reason"], "from the dashboard");
    // A forged token is refused by the same POST.
    let refused = http
        .post(format!("http://127.0.0.1:{port}/approvals/{id}"))
        .form(&[("token", "forged.token"), ("option", "deny")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
}
