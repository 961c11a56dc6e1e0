//! The `vigilo` binary, end to end: the example project against the Steampipe fixture,
//! validate, findings formats, dry runs, state reset and the scheduler.

mod common;

use common::{show, vigilo_env};

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The table row of `query` in `vigilo scan`'s output, split on whitespace.
fn scan_row(out: &Output, query: &str) -> Vec<String> {
    stdout(out)
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .find(|cols| cols.first().map(String::as_str) == Some(query))
        .unwrap_or_else(|| panic!("no row for {query}\n{}", show(out)))
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `vigilo findings … --format json`, parsed; panics with the output if it fails.
fn findings_json(env: &[(&str, &str)], args: &[&str]) -> Vec<Value> {
    let mut all = vec!["findings", "--format", "json"];
    all.extend_from_slice(args);
    let out = vigilo_env(repo(), env, &all);
    assert!(out.status.success(), "{}", show(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&out)))
}

async fn fixture_db() -> common::PgDb {
    let db = common::PgDb::new("fixture").await;
    db.execute(&common::steampipe_fixture()).await;
    db.execute(
        &std::fs::read_to_string(repo().join("tests/fixtures/steampipe_more_tables.sql")).unwrap(),
    )
    .await;
    db
}

/// The "done means", on the repository's own example project, with either state store.
async fn example_project_against_fixture(state_url: &str) {
    let db = fixture_db().await;
    let env = [
        ("STEAMPIPE_URL", db.url.as_str()),
        ("VIGILO_STATE_URL", state_url),
    ];

    let v = vigilo_env(repo(), &env, &["validate"]);
    assert!(v.status.success(), "{}", show(&v));

    let first = vigilo_env(repo(), &env, &["scan"]);
    assert!(first.status.success(), "{}", show(&first));
    assert_eq!(
        scan_row(&first, "iam_access_key_stale")[1..6],
        ["ok", "5", "5", "0", "0"],
        "{}",
        show(&first)
    );
    assert_eq!(
        scan_row(&first, "iam_user_console_without_mfa")[3],
        "2",
        "{}",
        show(&first)
    );
    let s3 = scan_row(&first, "s3_bucket_versioning_disabled");
    assert_eq!(s3[3], "0", "baseline opens nothing: {}", show(&first));

    let list = findings_json(&env, &["--query", "iam_access_key_stale"]);
    let mut keys: Vec<&str> = list
        .iter()
        .map(|f| f["key"]["access_key_id"].as_str().unwrap())
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "AKIAEXAMPLE000000001",
            "AKIAEXAMPLE000000002",
            "AKIAEXAMPLE000000003",
            "AKIAEXAMPLE000000006",
            "AKIAEXAMPLE000000007"
        ]
    );
    let f = &list[0];
    for field in [
        "id",
        "query",
        "key",
        "status",
        "severity",
        "first_seen",
        "last_seen",
        "resolved_at",
        "row",
    ] {
        assert!(f.get(field).is_some(), "finding JSON lacks {field}: {f}");
    }
    assert_eq!(f["status"], "open");
    assert_eq!(f["severity"], "high");
    assert!(f["row"]["conn_name"].is_string(), "{f}");
    assert!(f["row"]["age_days"].is_number(), "{f}");

    let second = vigilo_env(repo(), &env, &["scan", "iam_access_key_stale"]);
    assert!(second.status.success(), "{}", show(&second));
    assert_eq!(
        scan_row(&second, "iam_access_key_stale")[1..6],
        ["ok", "5", "0", "0", "0"],
        "{}",
        show(&second)
    );

    db.execute("update aws_iam_access_key set status = 'Inactive' where access_key_id = 'AKIAEXAMPLE000000002'")
        .await;
    let dry = vigilo_env(repo(), &env, &["scan", "--dry-run", "iam_access_key_stale"]);
    assert!(dry.status.success(), "{}", show(&dry));
    assert!(
        stdout(&dry).contains("resolve") && stdout(&dry).contains("AKIAEXAMPLE000000002"),
        "{}",
        show(&dry)
    );
    let still = vigilo_env(
        repo(),
        &env,
        &[
            "findings",
            "--query",
            "iam_access_key_stale",
            "--format",
            "csv",
        ],
    );
    assert_eq!(
        stdout(&still).lines().count(),
        6,
        "dry run resolved nothing: {}",
        show(&still)
    );

    let third = vigilo_env(repo(), &env, &["scan", "iam_access_key_stale"]);
    assert_eq!(
        scan_row(&third, "iam_access_key_stale")[1..6],
        ["ok", "4", "0", "0", "1"],
        "{}",
        show(&third)
    );
    let list = findings_json(&env, &["--status", "resolved"]);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["key"]["access_key_id"], "AKIAEXAMPLE000000002");
    assert!(list[0]["resolved_at"].is_string());

    // CSV has a stable header and one row per finding.
    let csv = vigilo_env(
        repo(),
        &env,
        &["findings", "--status", "all", "--format", "csv"],
    );
    let out = stdout(&csv);
    assert!(
        out.starts_with(
            "id,query,status,severity,key,first_seen,last_seen,resolved_at,reopened,row\n"
        ),
        "{out}"
    );
    // 5 keys, 2 console users without MFA, 1 bucket without a public access block, 2 open
    // admin ports, 2 buckets without an owner tag.
    assert_eq!(out.lines().count(), 1 + 5 + 2 + 1 + 2 + 2, "{out}");
    let table = vigilo_env(repo(), &env, &["findings"]);
    assert!(
        stdout(&table).contains("AKIAEXAMPLE000000001"),
        "{}",
        show(&table)
    );

    // state reset: the next run is a first run; still-present keys keep their findings.
    let reset = vigilo_env(repo(), &env, &["state", "reset", "iam_access_key_stale"]);
    assert!(
        reset.status.success() && stdout(&reset).contains("forgot 4"),
        "{}",
        show(&reset)
    );
    let after = vigilo_env(repo(), &env, &["scan", "iam_access_key_stale"]);
    assert!(after.status.success(), "{}", show(&after));
    let list = findings_json(&env, &["--query", "iam_access_key_stale"]);
    assert_eq!(list.len(), 4, "{list:?}");
}

#[tokio::test]
async fn example_project_finds_the_five_fixture_keys_with_sqlite_state() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("vigilo.db").display());
    example_project_against_fixture(&url).await;
}

#[tokio::test]
async fn example_project_finds_the_five_fixture_keys_with_postgres_state() {
    let state = common::PgDb::new("state").await;
    example_project_against_fixture(&state.url).await;
}

#[test]
fn scan_exits_1_when_a_query_fails_and_2_for_an_unknown_query() {
    let dir = common::project(&[
        (
            "config/vigilo.toml",
            "[database.src]\nurl = \"sqlite://src.db\"\n",
        ),
        ("queries/good.sql", "-- primary_key: id\nselect 1 as id\n"),
        (
            "queries/bad.sql",
            "-- primary_key: id\nselect id from missing\n",
        ),
    ]);
    rusqlite::Connection::open(dir.path().join("src.db"))
        .unwrap()
        .execute_batch("create table t (x)")
        .unwrap();
    let out = vigilo_env(dir.path(), &[], &["scan"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert_eq!(scan_row(&out, "good")[1], "ok");
    assert_eq!(scan_row(&out, "bad")[1], "FAILED");
    assert!(
        stdout(&out).contains("no such table: missing"),
        "{}",
        show(&out)
    );
    let out = vigilo_env(dir.path(), &[], &["scan", "nope"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown query nope"),
        "{}",
        show(&out)
    );
}

#[test]
fn validate_reports_every_error_with_file_and_line_and_exits_2() {
    let dir = common::project(&[
        (
            "config/a.toml",
            "[database.src]\nurl = \"sqlite://src.db\"\n",
        ),
        (
            "config/b.toml",
            "[database.src]\nurl = \"sqlite://other.db\"\n\n[databse.typo]\nurl = \"x\"\n",
        ),
        ("config/c.toml", "[state\nurl = 1\n"),
        (
            "queries/q.sql",
            "-- primary_key: id\n-- database: nowhere\n-- schedule: 61 * * * *\nselect 1 as id\n",
        ),
        (
            "queries/r.sql",
            "-- primary_key: id\n-- title: ${VIGILO_TEST_SURELY_UNSET}\nselect 1 as id\n",
        ),
    ]);
    let out = vigilo_env(dir.path(), &[], &["validate"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "config/b.toml:1:",
        "config/a.toml",
        "config/b.toml:4:",
        "config/c.toml:1:",
        "queries/q.sql:2:",
        "nowhere",
        "queries/q.sql:3:",
        "queries/r.sql:2:",
        "VIGILO_TEST_SURELY_UNSET",
    ] {
        assert!(err.contains(needle), "stderr lacks {needle:?}:\n{err}");
    }
    // The repository's own example project validates.
    let ok = vigilo_env(repo(), &[], &["validate"]);
    assert!(ok.status.success(), "{}", show(&ok));
    assert!(stdout(&ok).contains("queries: 6"), "{}", show(&ok));
}

/// Reads the runs table of a SQLite state store: (started_at, finished_at, status).
fn runs(db: &Path) -> Vec<(String, String, String)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("select started_at, finished_at, status from runs order by started_at")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn sigterm(child: &std::process::Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -TERM failed");
}

fn wait_with_timeout(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("vigilo run did not stop within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn run_schedules_repeatedly_never_overlaps_and_stops_cleanly_on_sigterm() {
    let src = common::PgDb::new("sched").await;
    src.execute("create table t (id int); insert into t values (1), (2);")
        .await;
    let config = format!(
        "[database.src]\nurl = \"{}\"\n\n[scheduler]\nmax_concurrent = 2\n",
        src.url
    );
    let dir = common::project(&[
        ("config/vigilo.toml", &config),
        // Every second; takes ~1.5 s, so ticks overlap a running run.
        (
            "queries/slow.sql",
            "-- schedule: * * * * * *\n-- primary_key: id\nselect id from t, pg_sleep(0.75)\n",
        ),
        (
            "queries/fast.sql",
            "-- schedule: 1s\n-- primary_key: id\nselect id from t\n",
        ),
        (
            "queries/manual.sql",
            "-- primary_key: id\nselect id from t\n",
        ),
        // Fails every time: retried on its schedule, and the others go on.
        (
            "queries/failing.sql",
            "-- schedule: 1s\n-- primary_key: id\nselect id from missing_table\n",
        ),
    ]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_vigilo"))
        .arg("--dir")
        .arg(dir.path())
        .arg("run")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(4500));
    sigterm(&child);
    let status = wait_with_timeout(&mut child, Duration::from_secs(20));
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "exit {status:?}\n{stderr}");
    assert!(stderr.contains("shutting down"), "{stderr}");

    let all = runs(&dir.path().join("vigilo.db"));
    let conn = rusqlite::Connection::open(dir.path().join("vigilo.db")).unwrap();
    let per_query = |q: &str| -> Vec<(String, String)> {
        let mut stmt = conn
            .prepare("select started_at, finished_at from runs where query = ?1 and status = 'succeeded' order by started_at")
            .unwrap();
        stmt.query_map([q], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let slow = per_query("slow");
    let fast = per_query("fast");
    assert!(slow.len() >= 2, "slow ran repeatedly: {all:?}");
    assert!(fast.len() >= 3, "fast ran repeatedly: {all:?}");
    assert!(
        per_query("manual").is_empty(),
        "unscheduled queries do not run"
    );
    for w in slow.windows(2) {
        assert!(w[0].1 <= w[1].0, "two runs of one query overlapped: {w:?}");
    }
    let failing: Vec<_> = all.iter().filter(|r| r.2 == "failed").collect();
    assert!(
        failing.len() >= 3,
        "a failing query is retried on its schedule: {all:?}"
    );
    assert_eq!(
        all.len(),
        slow.len() + fast.len() + failing.len(),
        "only the failing query fails: {all:?}"
    );
    // The store is consistent: one generation per successful run, the snapshot holds the two keys.
    for (q, n) in [("slow", slow.len()), ("fast", fast.len())] {
        let (generation, keys): (i64, i64) = conn
            .query_row(
                "select generation, (select sum(length(entries)) / 24 from snapshot_chunks s where s.query_id = q.id) from query_state q where name = ?1",
                [q],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((generation, keys), (n as i64, 2), "{q}");
    }
}

/// `vigilo init DIR` writes a project that `vigilo validate` accepts as it is, whose query
/// finds the Steampipe fixture's five stale keys and asks for each (its action a dry run);
/// `--example` writes the repository's example project byte for byte; neither overwrites.
#[tokio::test]
async fn init_writes_a_project_that_validates_at_once() {
    let db = fixture_db().await;
    let root = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_vigilo"))
            .args(args)
            .current_dir(root.path())
            .env("STEAMPIPE_URL", &db.url)
            .env_remove("VIGILO_DIR")
            .output()
            .unwrap()
    };

    let out = run(&["init", "mine"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(stdout(&out).contains("vigilo validate"), "{}", show(&out));
    let mine = root.path().join("mine");
    let validated = run(&["--dir", "mine", "validate"]);
    assert!(validated.status.success(), "{}", show(&validated));
    let ignored = std::fs::read_to_string(mine.join(".gitignore")).unwrap();
    assert!(ignored.lines().any(|l| l == "vigilo.db"), "{ignored}");
    let scan = run(&["--dir", "mine", "scan"]);
    assert!(scan.status.success(), "{}", show(&scan));
    assert_eq!(
        scan_row(&scan, "iam_access_key_stale")[1..4],
        ["ok", "5", "5"]
    );
    assert!(
        stdout(&scan).contains("5 approval(s) requested"),
        "{}",
        show(&scan)
    );
    assert!(
        mine.join("vigilo.db").exists(),
        "the state file .gitignore names"
    );

    let again = run(&["init", "mine"]);
    assert_eq!(again.status.code(), Some(2), "{}", show(&again));
    assert!(
        String::from_utf8_lossy(&again.stderr)
            .contains("already exists; vigilo init never overwrites a file"),
        "{}",
        show(&again)
    );

    let out = run(&["init", "--example", "example"]);
    assert!(out.status.success(), "{}", show(&out));
    let example = root.path().join("example");
    for dir in ["config", "queries", "remediations"] {
        for f in common::files_under(&repo().join(dir)) {
            assert_eq!(
                std::fs::read(example.join(dir).join(&f)).ok(),
                std::fs::read(repo().join(dir).join(&f)).ok(),
                "{dir}/{f}"
            );
        }
    }
    let validated = run(&["--dir", "example", "validate"]);
    assert!(validated.status.success(), "{}", show(&validated));
}

/// A source database nobody answers fails its query with one line: which database, where, what
/// happened and what to check; the other queries run on.
#[test]
fn an_unreachable_database_names_itself_and_the_fix() {
    let port = common::free_port();
    let dir = common::project(&[
        (
            "config/vigilo.toml",
            &format!(
                "[state]\nurl = \"sqlite://state.db\"\n\n[database.inventory]\nurl = \"postgres://postgres@127.0.0.1:{port}/inventory\"\n"
            ),
        ),
        ("queries/keys.sql", "-- primary_key: id\nselect 1 as id\n"),
    ]);
    let out = vigilo_env(dir.path(), &[], &["scan"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let expected = format!(
        "database inventory: cannot connect: postgres://postgres@127.0.0.1:{port}/inventory: connection refused; is the server running, and is the url of [database.inventory] right?"
    );
    assert!(stdout(&out).contains(&expected), "{}", show(&out));
}

#[test]
fn demo_runs_the_loop() {
    for args in [vec!["demo", "--yes"], vec!["demo"]] {
        // Without --yes and without a terminal, the demo approves everything too.
        let out = Command::new(env!("CARGO_BIN_EXE_vigilo"))
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", show(&out));
        let s = stdout(&out);
        assert_eq!(scan_row(&out, "stale_keys")[1..4], ["ok", "5", "5"], "{s}");
        assert!(s.contains("approval 5 requested"), "{s}");
        assert!(
            s.contains("approval 1: deactivate decided by alice, bob"),
            "{s}"
        );
        for id in 1..=5 {
            assert!(s.contains(&format!("action {id} succeeded")), "{s}");
        }
        // The production action, through the SDK, against the IAM stand-in: each key read, then
        // deactivated once, in the account of its connection.
        assert_eq!(s.matches("IAM received: UpdateAccessKey").count(), 5, "{s}");
        assert!(
            s.contains("IAM received: UpdateAccessKey UserName=ci-bot AccessKeyId=AKIAEXAMPLE000000006 Status=Inactive"),
            "{s}"
        );
        assert_eq!(s.matches("IAM received: ListAccessKeys").count(), 5, "{s}");
        assert!(
            s.contains(
                "AKIAEXAMPLE000000006 of ci-bot in 222222222222 (aws_dev): Active -> Inactive"
            ),
            "{s}"
        );
        assert!(s.contains("5 resolved"), "{s}");
        assert!(s.contains("audit trail intact"), "{s}");
        let wide: Vec<&str> = s.lines().filter(|l| l.chars().count() > 100).collect();
        assert!(wide.is_empty(), "lines wider than 100 columns: {wide:#?}");
    }
}

/// `vigilo scan` shows per-query progress on a terminal (a pty from `script`), and none in a
/// pipe or under CI.
#[test]
fn scan_shows_progress_only_on_a_terminal_outside_ci() {
    let dir = common::project(&[
        (
            "config/vigilo.toml",
            "[state]\nurl = \"sqlite://state.db\"\n\n[database.src]\nurl = \"sqlite://src.db\"\n",
        ),
        (
            "queries/keys.sql",
            "-- primary_key: id\nselect 'a' as id union all select 'b'",
        ),
    ]);
    rusqlite::Connection::open(dir.path().join("src.db"))
        .unwrap()
        .execute_batch("create table t (x)")
        .unwrap();
    let piped = common::vigilo(dir.path(), &["scan"]);
    assert!(piped.status.success(), "{}", show(&piped));
    let all = format!(
        "{}{}",
        stdout(&piped),
        String::from_utf8_lossy(&piped.stderr)
    );
    assert!(
        !all.contains('✓') && !all.contains("\u{1b}["),
        "quiet in a pipe: {all}"
    );

    let command = format!(
        "{} --dir {} scan",
        env!("CARGO_BIN_EXE_vigilo"),
        dir.path().display()
    );
    let on_tty = |ci: bool| {
        let mut cmd = Command::new("script");
        cmd.args(["-qefc", &command, "/dev/null"]);
        if ci {
            cmd.env("CI", "true");
        } else {
            cmd.env_remove("CI");
        }
        let out = cmd
            .output()
            .expect("`script` (util-linux) gives the test a terminal");
        assert!(out.status.success(), "{}", show(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let tty = on_tty(false);
    assert!(
        tty.contains("✓ keys: 2 rows, +0 ~0 -0"),
        "progress on a terminal: {tty}"
    );
    let ci = on_tty(true);
    assert!(!ci.contains('✓'), "quiet under CI: {ci}");
}
