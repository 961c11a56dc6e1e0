//! `vigilo::config::load` on whole projects written into temporary directories.

use std::path::{Path, PathBuf};
use std::time::Duration;

use vigilo::config::{
    DatabaseUrl, FirstRun, IntegrationConfig, Project, Severity, StoreUrl, TlsMode, load,
};

/// Writes `files` (relative path, contents) into a new temporary project.
fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (rel, text) in files {
        let path = dir.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

/// The errors of loading `files`, as `FILE:LINE: message`.
fn errors(files: &[(&str, &str)]) -> Vec<String> {
    let dir = project(files);
    match load(dir.path(), &vigilo::action::REGISTRY) {
        Ok(_) => panic!("expected errors"),
        Err(errors) => errors.0.iter().map(|e| e.to_string()).collect(),
    }
}

/// Loads `files`, panicking with the errors if any.
fn loaded(files: &[(&str, &str)]) -> (tempfile::TempDir, Project) {
    let dir = project(files);
    let project = load(dir.path(), &vigilo::action::REGISTRY).unwrap_or_else(|e| panic!("{e}"));
    (dir, project)
}

const ONE_DB: &str =
    "[database.steampipe]\nurl = \"postgres://steampipe@127.0.0.1:9193/steampipe\"\n";

#[test]
fn an_empty_project_loads_with_defaults() {
    let (dir, p) = loaded(&[]);
    assert_eq!(p.state.url, StoreUrl::Sqlite(dir.path().join("vigilo.db")));
    assert!(p.server.is_none());
    assert_eq!(p.scheduler.max_concurrent, 4);
    assert!(matches!(
        p.integrations.get("console"),
        Some(IntegrationConfig::Console)
    ));
    assert_eq!(p.integrations.len(), 1);
}

#[test]
fn malformed_toml_reports_its_line() {
    let got = errors(&[(
        "config/main.toml",
        "[state]\nurl = \"sqlite://x.db\"\n\n[server\nlisten = \"x\"\n",
    )]);
    assert_eq!(
        got,
        ["config/main.toml:4: invalid TOML: unclosed table, expected `]`"]
    );
}

#[test]
fn every_syntax_error_is_reported_and_earlier_problems_too() {
    let got = errors(&[
        (
            "config/a.toml",
            "[scheduler]\nmax_concurrent = 0\n\n[state\nurl = = 1\n",
        ),
        ("config/b.toml", "x = \"unclosed\n"),
    ]);
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(
        got[0],
        "config/a.toml:2: scheduler.max_concurrent: must be at least 1"
    );
    assert!(
        got[1].starts_with("config/a.toml:4: invalid TOML: "),
        "{got:?}"
    );
    assert!(
        got[2].starts_with("config/a.toml:5: invalid TOML: "),
        "{got:?}"
    );
    assert!(
        got[3].starts_with("config/b.toml:1: invalid TOML: "),
        "{got:?}"
    );
}

#[test]
fn unknown_keys_report_their_line() {
    let got = errors(&[(
        "config/main.toml",
        "[database.steampipe]\nurl = \"postgres://h/db\"\nmax_conections = 4\n",
    )]);
    assert_eq!(
        got,
        [
            "config/main.toml:3: database.steampipe: unknown key `max_conections`, expected one of `url`, `max_connections`, `statement_timeout`"
        ]
    );
}

#[test]
fn unknown_sections_and_integration_kinds_are_errors() {
    let got = errors(&[(
        "config/main.toml",
        "[databse.x]\nurl = \"sqlite://x.db\"\n\n[integration.teams.ops]\nurl = \"https://x\"\n",
    )]);
    assert_eq!(
        got,
        [
            "config/main.toml:1: unknown section [databse]; expected one of: state, server, scheduler, database, connection, integration, notifier, approver, group",
            "config/main.toml:4: unknown integration kind \"teams\" in [integration.teams]; expected one of: slack, email, webhook",
        ]
    );
}

#[test]
fn a_query_naming_an_unknown_database_points_at_its_setting() {
    let got = errors(&[
        ("config/main.toml", ONE_DB),
        (
            "queries/old_keys.sql",
            "-- title: Old keys\n-- database: steampipes\n-- primary_key: id\nselect 1 as id\n",
        ),
    ]);
    assert_eq!(
        got,
        [
            "queries/old_keys.sql:2: unknown database \"steampipes\" (configured databases: steampipe)"
        ]
    );
}

#[test]
fn a_bad_cron_reports_its_line() {
    let got = errors(&[
        ("config/main.toml", ONE_DB),
        (
            "queries/q.sql",
            "-- primary_key: id\n\n-- schedule: 0 25 * * *\nselect 1 as id\n",
        ),
    ]);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].starts_with("queries/q.sql:3: invalid schedule \"0 25 * * *\": "),
        "{got:?}"
    );
}

#[test]
fn an_unset_env_var_names_the_file_and_key() {
    let got = errors(&[(
        "config/main.toml",
        "[server]\nlisten = \"127.0.0.1:7878\"\n\n[integration.slack.default]\n# the bot\ntoken = \"${VIGILO_TEST_UNSET_7D3F_SLACK_TOKEN}\"\napi_url = \"${VIGILO_TEST_UNSET_7D3F_API:-https://slack.example/api}\"\n",
    )]);
    assert_eq!(
        got,
        [
            "config/main.toml:6: integration.slack.default.token: environment variable VIGILO_TEST_UNSET_7D3F_SLACK_TOKEN is not set"
        ]
    );
}

#[test]
fn env_fallbacks_fill_values() {
    let (_dir, p) = loaded(&[(
        "config/main.toml",
        "[integration.slack.default]\ntoken = \"${VIGILO_TEST_UNSET_7D3F_T:-xoxb-fallback}\"\napi_url = \"${VIGILO_TEST_UNSET_7D3F_U:-https://slack.example/api}\"\n",
    )]);
    let Some(IntegrationConfig::Slack(slack)) = p.integrations.get("slack.default") else {
        panic!("no slack integration");
    };
    assert_eq!(slack.token.expose(), "xoxb-fallback");
    assert_eq!(slack.api_url, "https://slack.example/api");
}

#[test]
fn a_name_defined_in_two_files_names_both() {
    let got = errors(&[
        ("config/a.toml", ONE_DB),
        (
            "config/b.toml",
            "[state]\nurl = \"sqlite://s.db\"\n\n[database.steampipe]\nurl = \"sqlite://other.db\"\n",
        ),
        ("config/c.toml", "\n[state]\n"),
    ]);
    assert_eq!(
        got,
        [
            "config/b.toml:4: database \"steampipe\" is already defined in config/a.toml:1",
            "config/c.toml:2: [state] is already defined in config/b.toml:1",
        ]
    );
}

#[test]
fn several_errors_in_several_files_are_reported_at_once() {
    let got = errors(&[
        (
            "config/a.toml",
            "[database.steampipe]\nurl = \"mysql://h/db\"\n",
        ),
        (
            "config/b.toml",
            "[notifier.security]\nnotify = [{ integration = \"slack.nope\", channel = \"C1\" }]\n\n[group.admins]\nmembers = [\"alice\"]\n",
        ),
        (
            "queries/q.sql",
            "-- primary_key: id\n-- severity: urgent\nselect 1\n",
        ),
        (
            "remediations/r.toml",
            "title = \"R\"\n\n[approval]\nnotifier = \"security\"\napprovers = [\"admins\"]\non_timeout = \"keep\"\n\n[[action]]\nwhen = \"approve\"\ntype = \"aws.iam.update_access_key\"\nuser_name = \"u\"\naccess_key_id = \"k\"\nstatus = \"inactive\"\nprofile = \"x\"\n",
        ),
    ]);
    assert_eq!(
        got,
        [
            "config/a.toml:2: database.steampipe.url: unsupported URL \"mysql://h/db\"; expected postgres://…, postgresql://… or sqlite://FILE",
            "config/b.toml:2: notifier.security.notify[0]: unknown integration \"slack.nope\" (configured integrations: console)",
            "config/b.toml:5: unknown approver \"alice\" (no approvers are configured)",
            "queries/q.sql:2: severity: unknown value \"urgent\"; expected low, medium, high or critical",
            "remediations/r.toml:6: approval.on_timeout: unknown option \"keep\"; the options are: approve, deny",
            "remediations/r.toml:14: action[0]: unknown key `profile` for action type \"aws.iam.update_access_key\", expected one of `when`, `type`, `connection`, `region`, `user_name`, `access_key_id`, `status`, `current_status`",
        ]
    );
}

#[test]
fn remediation_references_and_options_are_checked() {
    let got = errors(&[
        ("config/main.toml", "[approver.alice]\nslack = \"U1\"\n"),
        (
            "remediations/r.toml",
            "[approval]\nnotifier = \"ops\"\napprovers = [\"alice\", \"bob\"]\noptions = [{ value = \"go\" }, { value = \"go\", style = \"loud\" }]\n\n[[action]]\ntype = \"http\"\nurl = \"https://x\"\n\n[[message]]\nwhen = \"stop\"\nnotifier = \"ops\"\ntext = \"t\"\n",
        ),
        (
            "remediations/auto.toml",
            "[[action]]\nwhen = \"approve\"\ntype = \"aws.iam.delete_access_key\"\nuser_name = \"u\"\naccess_key_id = \"k\"\n",
        ),
    ]);
    assert_eq!(
        got,
        [
            "remediations/auto.toml:2: action[0].when: \"approve\" names an approval option, but this remediation has no [approval]",
            "remediations/r.toml:4: approval.options[1].value: duplicate option \"go\"",
            "remediations/r.toml:4: approval.options[1].style: unknown style \"loud\"; expected primary or danger",
            "remediations/r.toml:6: action[0]: missing key `when`; this remediation has an [approval], so name the option that triggers it (one of: go)",
            "remediations/r.toml:11: message[0].when: unknown option \"stop\"; the options are: go",
        ]
    );
}

const FULL_CONFIG: &str = r#"
[state]
url = "sqlite://state/vigilo.db"

[server]
listen = "0.0.0.0:8080"
base_url = "https://vigilo.example.com/"
secret = "${VIGILO_TEST_UNSET_7D3F_SECRET:-s3cret}"

[scheduler]
max_concurrent = 2

[database.steampipe]
url = "postgres://steampipe@127.0.0.1:9193/steampipe"
max_connections = 8
statement_timeout = "60s"

[database.inventory]
url = "sqlite://inventory.db"

[connection.aws.default]
[connection.aws.prod]
profile = "prod"
region = "us-east-1"
ttl = "10m"

[integration.slack.default]
token = "xoxb-1"
signing_secret = "sign"

[integration.email.default]
host = "smtp.example.com"
tls = "opportunistic"
from = "vigilo@example.com"

[integration.webhook.ops]
url = "https://hooks.example.com/vigilo"
"#;

const FULL_PEOPLE: &str = r#"
[notifier.security]
notify = [
  { integration = "slack.default", channel = "C0SECURITY" },
  { integration = "email.default", to = ["security@example.com"] },
  { integration = "console" },
]

[approver.alice]
slack = "U0ALICE"
email = "alice@example.com"

[approver.bob]
email = "bob@example.com"

[group.security]
members = ["alice", "bob"]
"#;

const FULL_QUERY: &str = "-- title: IAM access keys active for more than 90 days
-- A free-text comment line.
-- database: steampipe
-- schedule: 0 * * * *
-- primary_key: account_id, access_key_id
-- ignore_columns: age_days
-- remediation: deactivate_iam_access_key
-- severity: high
select access_key_id, account_id, age_days from aws_iam_access_key
";

const FULL_REMEDIATION: &str = r#"
title = "Deactivate an expired IAM access key"
dry_run = true

[approval]
notifier = "security"
subject = "Deactivate IAM access key {{ row.access_key_id }}?"
approvers = ["security"]
timeout = "24h"
on_timeout = "keep"
options = [
  { value = "deactivate", label = "Deactivate", style = "danger", required = 2 },
  { value = "keep", label = "Keep key active" },
]

[[action]]
when = "deactivate"
type = "aws.iam.update_access_key"
connection = "{{ row.conn_name }}"
user_name = "{{ row.user_name }}"
access_key_id = "{{ row.access_key_id }}"
status = "Inactive"

[[action]]
when = "deactivate"
type = "http"
url = "https://hooks.example.com/{{ row.access_key_id }}"
headers = { Authorization = "Bearer x" }

[[message]]
when = "deactivate"
notifier = "security"
text = "Deactivated {{ row.access_key_id }}."
"#;

#[test]
fn a_full_project_loads_with_its_values_and_defaults() {
    let (dir, p) = loaded(&[
        ("config/main.toml", FULL_CONFIG),
        ("config/people.toml", FULL_PEOPLE),
        ("queries/old_keys.sql", FULL_QUERY),
        (
            "queries/inventory.sql",
            "-- primary_key: id\n-- database: inventory\n-- on_first_run: baseline\n-- enabled: false\nselect id from hosts\n",
        ),
        (
            "remediations/deactivate_iam_access_key.toml",
            FULL_REMEDIATION,
        ),
        (
            "remediations/notify_only.toml",
            "[[message]]\nnotifier = \"security\"\ntext = \"x\"\n",
        ),
        ("queries/README.md", "not a query"),
    ]);
    let root = dir.path();
    assert_eq!(p.dir, root);
    assert_eq!(p.state.url, StoreUrl::Sqlite(root.join("state/vigilo.db")));
    let server = p.server.as_ref().unwrap();
    assert_eq!(server.listen, "0.0.0.0:8080");
    assert_eq!(
        server.base_url.as_deref(),
        Some("https://vigilo.example.com")
    );
    assert_eq!(server.secret.as_ref().map(|s| s.expose()), Some("s3cret"));
    assert!(server.api_token.is_none());
    assert_eq!(p.scheduler.max_concurrent, 2);

    let sp = &p.databases["steampipe"];
    assert_eq!(
        sp.url,
        DatabaseUrl::Postgres("postgres://steampipe@127.0.0.1:9193/steampipe".into())
    );
    assert_eq!(
        (sp.max_connections, sp.statement_timeout),
        (8, Some(Duration::from_secs(60)))
    );
    assert_eq!(sp.origin.to_string(), "config/main.toml:13");
    let inv = &p.databases["inventory"];
    assert_eq!(inv.url, DatabaseUrl::Sqlite(root.join("inventory.db")));
    assert_eq!((inv.max_connections, inv.statement_timeout), (4, None));

    assert_eq!(p.aws_connections["default"].ttl, Duration::from_secs(300));
    assert_eq!(p.aws_connections["default"].profile, None);
    assert_eq!(p.aws_connections["prod"].ttl, Duration::from_secs(600));
    assert_eq!(
        p.aws_connections["prod"].region.as_deref(),
        Some("us-east-1")
    );

    let kinds: Vec<(&str, &str)> = p
        .integrations
        .iter()
        .map(|(k, v)| (k.as_str(), v.kind()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("console", "console"),
            ("email.default", "email"),
            ("slack.default", "slack"),
            ("webhook.ops", "webhook")
        ]
    );
    let Some(IntegrationConfig::Slack(slack)) = p.integrations.get("slack.default") else {
        panic!()
    };
    assert_eq!(slack.api_url, "https://slack.com/api");
    assert_eq!(slack.confirm_ttl, Duration::from_secs(60));
    let Some(IntegrationConfig::Email(email)) = p.integrations.get("email.default") else {
        panic!()
    };
    assert_eq!((email.port, email.tls), (587, TlsMode::Opportunistic));

    let security = &p.notifiers["security"];
    assert_eq!(security.notify.len(), 3);
    assert_eq!(security.notify[0].channel.as_deref(), Some("C0SECURITY"));
    assert_eq!(security.notify[1].to, ["security@example.com"]);
    assert_eq!(p.groups["security"].members, ["alice", "bob"]);
    assert_eq!(p.approvers["bob"].slack, None);

    let q = &p.queries["old_keys"];
    assert_eq!(q.title, "IAM access keys active for more than 90 days");
    assert_eq!(q.database, "steampipe");
    assert_eq!(
        q.schedule.as_ref().map(|s| s.to_string()).as_deref(),
        Some("0 * * * *")
    );
    assert_eq!(q.primary_key, ["account_id", "access_key_id"]);
    assert_eq!(q.ignore_columns, ["age_days"]);
    assert_eq!(q.remediation.as_deref(), Some("deactivate_iam_access_key"));
    assert_eq!(
        (q.severity, q.on_first_run, q.enabled),
        (Severity::High, FirstRun::Insert, true)
    );
    assert_eq!(q.sql, FULL_QUERY);
    assert_eq!(q.path, PathBuf::from("queries/old_keys.sql"));
    let inv_q = &p.queries["inventory"];
    assert_eq!(
        (inv_q.title.as_str(), inv_q.on_first_run, inv_q.enabled),
        ("inventory", FirstRun::Baseline, false)
    );
    assert!(inv_q.schedule.is_none());
    assert_eq!(p.enabled_queries().count(), 1);
    assert_eq!(p.queries.len(), 2);

    let r = &p.remediations["deactivate_iam_access_key"];
    assert_eq!(r.title, "Deactivate an expired IAM access key");
    assert!(r.recheck && r.dry_run);
    let a = r.approval.as_ref().unwrap();
    assert_eq!(a.timeout, Some(Duration::from_secs(86_400)));
    assert_eq!(a.on_timeout.as_deref(), Some("keep"));
    assert!(!a.allow_self_approval);
    assert_eq!(a.prompt, "");
    assert_eq!(a.options[0].required, 2);
    assert_eq!(
        (
            a.options[1].label.as_str(),
            a.options[1].style.as_deref(),
            a.options[1].required
        ),
        ("Keep key active", None, 1)
    );
    assert_eq!(r.actions.len(), 2);
    let (update, http) = (&r.actions[0], &r.actions[1]);
    assert_eq!(update.kind, "aws.iam.update_access_key");
    assert_eq!(
        (update.text("connection"), update.text("status")),
        (Some("{{ row.conn_name }}"), Some("Inactive"))
    );
    assert_eq!(http.kind, "http");
    assert_eq!(http.text("method"), Some("POST"));
    let headers = http.params["headers"].as_table().unwrap();
    assert_eq!(headers["Authorization"], "Bearer x");
    assert!(http.text("body").is_none());
    assert_eq!(r.messages[0].when.as_deref(), Some("deactivate"));
    assert_eq!(
        r.path,
        Path::new("remediations/deactivate_iam_access_key.toml")
    );

    let auto = &p.remediations["notify_only"];
    assert_eq!(auto.title, "notify_only");
    assert!(auto.approval.is_none() && auto.recheck && !auto.dry_run);
}

#[test]
fn default_approval_options_are_approve_and_deny() {
    let (_dir, p) = loaded(&[
        (
            "config/main.toml",
            "[approver.alice]\n[notifier.n]\nnotify = [{ integration = \"console\" }]\n[connection.aws.default]\n",
        ),
        (
            "remediations/r.toml",
            "[approval]\nnotifier = \"n\"\napprovers = [\"alice\"]\n\n[[action]]\nwhen = \"approve\"\ntype = \"aws.iam.delete_access_key\"\nuser_name = \"u\"\naccess_key_id = \"k\"\n",
        ),
    ]);
    let r = &p.remediations["r"];
    let a = r.approval.as_ref().unwrap();
    let options: Vec<(&str, &str, Option<&str>, u32)> = a
        .options
        .iter()
        .map(|o| {
            (
                o.value.as_str(),
                o.label.as_str(),
                o.style.as_deref(),
                o.required,
            )
        })
        .collect();
    assert_eq!(
        options,
        [
            ("approve", "Approve", Some("primary"), 1),
            ("deny", "Deny", Some("danger"), 1)
        ]
    );
    assert_eq!(a.subject, "r");
    assert_eq!(r.actions[0].kind, "aws.iam.delete_access_key");
    assert_eq!(r.actions[0].text("connection"), Some("default"));
}

#[test]
fn a_query_without_database_needs_exactly_one() {
    let (_dir, p) = loaded(&[
        ("config/main.toml", ONE_DB),
        ("queries/q.sql", "-- primary_key: id\nselect 1 as id\n"),
    ]);
    assert_eq!(p.queries["q"].database, "steampipe");
    let two = format!("{ONE_DB}[database.inv]\nurl = \"sqlite://i.db\"\n");
    let got = errors(&[
        ("config/main.toml", &two),
        ("queries/q.sql", "-- primary_key: id\nselect 1 as id\n"),
    ]);
    assert_eq!(
        got,
        [
            "queries/q.sql:1: missing setting `-- database: NAME`, required when several databases are configured (inv, steampipe)"
        ]
    );
}

#[test]
fn notifier_targets_need_channel_or_recipients() {
    let got = errors(&[(
        "config/main.toml",
        "[integration.slack.default]\ntoken = \"t\"\n[integration.email.default]\nhost = \"h\"\nfrom = \"f@x\"\n\n[notifier.n]\nnotify = [\n  { integration = \"slack.default\" },\n  { integration = \"email.default\", to = [] },\n]\n",
    )]);
    assert_eq!(
        got,
        [
            "config/main.toml:9: notifier.n.notify[0]: slack.default is a slack integration; give it a channel",
            "config/main.toml:10: notifier.n.notify[1]: email.default is an email integration; give it a non-empty `to` list",
        ]
    );
}

#[test]
fn templates_that_do_not_parse_or_use_unknown_names_are_errors_with_their_line() {
    let remediation = r#"title = "T"

[approval]
notifier = "ops"
approvers = ["alice"]
subject = "Deactivate {{ row.access_key_id }?"
prompt = """
Key {{ row.access_key_id }}
of {{ rows.user_name }}"""

[[action]]
when = "approve"
type = "http"
url = "https://hooks.example.com/{{ finding.id }}"
headers = { "X-Key" = "{{ row.id ", "X-Ok" = "{{ query.name }}" }
body = "{% if approval.decided_by %}ok{% endif %}"

[[message]]
when = "approve"
notifier = "ops"
text = "{{ approval.decided_by }} {% for %}"
"#;
    let got = errors(&[
        (
            "config/main.toml",
            "[database.db]\nurl = \"sqlite://x.db\"\n\n[notifier.ops]\nnotify = [{ integration = \"console\" }]\n\n[approver.alice]\n",
        ),
        ("remediations/r.toml", remediation),
    ]);
    assert_eq!(got.len(), 4, "{got:#?}");
    assert!(
        got[0].starts_with("remediations/r.toml:6: approval.subject: template does not parse"),
        "{got:#?}"
    );
    assert_eq!(
        got[1],
        "remediations/r.toml:7: approval.prompt: template uses undefined name rows; templates see row, finding, query, approval"
    );
    assert!(
        got[2].starts_with(
            "remediations/r.toml:15: action[0].headers.X-Key: template does not parse"
        ),
        "{got:#?}"
    );
    assert!(
        got[3].starts_with("remediations/r.toml:21: message[0].text: template does not parse"),
        "{got:#?}"
    );
}
