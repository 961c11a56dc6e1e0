//! A fleet of real `vigilo run` processes on one state store (interface section 10): every
//! scheduled tick runs once in the fleet, work is spread, a SIGKILLed process's tick is taken
//! over (at once on its host, after its lease elsewhere), nothing is lost or done twice, the
//! audit trail verifies. `vigilo status` lists the processes; SQLite refuses a second run.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::recorder::Recorder;
use common::{free_port, show};
use serde_json::Value;

/// Queries `q000`…: every tenth auto-remediated by an http action to `target`, every tenth
/// (offset 5) told to a console notifier; each reads its own rows of `items` in `src.db`.
fn fleet_project(state_url: &str, queries: usize, target: u16) -> tempfile::TempDir {
    let config = format!(
        "[state]\nurl = \"{state_url}\"\n\n[server]\nlisten = \"${{VIGILO_LISTEN}}\"\n\n\
         [scheduler]\nmax_concurrent = 4\nlease = \"3s\"\n\n\
         [database.src]\nurl = \"sqlite://src.db\"\n\n[notifier.ops]\nnotify = [{{ integration = \"console\" }}]\n"
    );
    let hit = format!(
        "[[action]]\ntype = \"http\"\nurl = \"http://127.0.0.1:{target}/hit/{{{{ query.name }}}}/{{{{ row.id }}}}\"\n"
    );
    let dir = common::project(&[
        ("config/vigilo.toml", &config),
        ("remediations/hit.toml", &hit),
    ]);
    std::fs::create_dir_all(dir.path().join("queries")).unwrap();
    let mut seed = String::from("create table items (q integer, id text, v integer);");
    for i in 0..queries {
        let extra = match i % 10 {
            0 => "-- remediation: hit\n",
            5 => "-- notify: ops\n",
            _ => "",
        };
        std::fs::write(
            dir.path().join(format!("queries/q{i:03}.sql")),
            format!(
                "-- schedule: 1s\n-- primary_key: id\n{extra}select id, v from items where q = {i} order by id\n"
            ),
        )
        .unwrap();
        seed.push_str(&format!(
            "insert into items values ({i}, 'a{i}', 0), ({i}, 'b{i}', 0);"
        ));
    }
    let src = rusqlite::Connection::open(dir.path().join("src.db")).unwrap();
    src.execute_batch(&format!("pragma journal_mode = wal; {seed}"))
        .unwrap();
    dir
}

/// A small deterministic generator (no test depends on a seed from outside).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> i64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n) as i64
    }
}

/// Changes the source while processes run: a new key, a changed value, a gone key.
/// New keys are never reused, so no finding reopens and each has one remediation run.
fn mutate(dir: &Path, rng: &mut Lcg, serial: &mut u64, queries: usize) {
    let src = rusqlite::Connection::open(dir.join("src.db")).unwrap();
    src.busy_timeout(Duration::from_secs(10)).unwrap();
    let q = rng.below(queries as u64);
    *serial += 1;
    src.execute(
        "insert into items values (?1, ?2, 0)",
        rusqlite::params![q, format!("n{serial}")],
    )
    .unwrap();
    let q2 = rng.below(queries as u64);
    src.execute("update items set v = v + 1 where q = ?1", [q2])
        .unwrap();
    if rng.below(3) == 0 {
        let q3 = rng.below(queries as u64);
        src.execute(
            "delete from items where rowid = (select min(rowid) from items where q = ?1)",
            [q3],
        )
        .unwrap();
    }
}

/// The source's keys per query.
fn source_keys(dir: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let src = rusqlite::Connection::open(dir.join("src.db")).unwrap();
    let mut stmt = src.prepare("select q, id from items").unwrap();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for row in stmt
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
        .unwrap()
    {
        let (q, id) = row.unwrap();
        out.entry(format!("q{q:03}")).or_default().insert(id);
    }
    out
}

/// Starts `vigilo run` serving on a free port, its log in `dir/NAME.log`.
fn start(dir: &Path, name: &str, env: &[(&str, &str)]) -> (common::Running, u16) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut all = vec![("VIGILO_LISTEN", listen.as_str())];
    all.extend_from_slice(env);
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    (common::run_env(dir, &all, Stdio::from(log)), port)
}

fn log_of(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default()
}

/// Waits (at most `limit`) until `done` holds, polling; panics naming `what` otherwise.
async fn until<F, Fut>(what: &str, limit: Duration, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !done().await {
        assert!(start.elapsed() < limit, "gave up waiting: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn status(dir: &Path) -> Vec<Value> {
    let out = vigilo_env_listen(dir, &["status", "--format", "json"]);
    assert!(out.status.success(), "{}", show(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A one-shot command on a project whose config names `${VIGILO_LISTEN}`.
fn vigilo_env_listen(dir: &Path, args: &[&str]) -> std::process::Output {
    common::vigilo_env(dir, &[("VIGILO_LISTEN", "127.0.0.1:0")], args)
}

/// The state store as the tests read it, in SQL both dialects understand.
enum State {
    Pg(tokio_postgres::Client),
    Sqlite(std::path::PathBuf),
}

impl State {
    /// The rows of `sql`, each column as text (NULL as "").
    async fn rows(&self, sql: &str) -> Vec<Vec<String>> {
        match self {
            State::Pg(client) => client
                .simple_query(sql)
                .await
                .unwrap()
                .into_iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                        (0..r.len())
                            .map(|i| r.get(i).unwrap_or("").to_string())
                            .collect(),
                    ),
                    _ => None,
                })
                .collect(),
            State::Sqlite(path) => {
                let conn = rusqlite::Connection::open(path).unwrap();
                conn.busy_timeout(Duration::from_secs(10)).unwrap();
                let mut stmt = conn.prepare(sql).unwrap();
                let n = stmt.column_count();
                stmt.query_map([], |r| {
                    Ok((0..n)
                        .map(|i| match r.get_ref(i).unwrap() {
                            rusqlite::types::ValueRef::Null => String::new(),
                            rusqlite::types::ValueRef::Integer(v) => v.to_string(),
                            rusqlite::types::ValueRef::Text(t) => {
                                String::from_utf8_lossy(t).into_owned()
                            }
                            other => format!("{other:?}"),
                        })
                        .collect())
                })
                .unwrap()
                .map(Result::unwrap)
                .collect()
            }
        }
    }

    async fn count(&self, sql: &str) -> i64 {
        self.rows(sql).await[0][0].parse().unwrap()
    }
}

/// Every scheduled run in the store went with its own tick: no tick has two runs, every done
/// tick has its run, and every run with a tick has its done tick.
async fn assert_each_tick_ran_once(state: &State) {
    let twice = state
        .count(
            "select count(*) from (select query, tick from runs where tick is not null
                                    group by query, tick having count(*) > 1) t",
        )
        .await;
    assert_eq!(twice, 0, "ticks with two runs");
    let orphans = state
        .count(
            "select count(*) from ticks t where state = 'done' and not exists
               (select 1 from runs r where r.id = t.run_id and r.query = t.query and r.tick = t.tick)",
        )
        .await;
    assert_eq!(orphans, 0, "done ticks without their run");
    let strays = state
        .count(
            "select count(*) from runs r where tick is not null and not exists
               (select 1 from ticks t where t.query = r.query and t.tick = r.tick
                                        and t.state = 'done' and t.run_id = r.id)",
        )
        .await;
    assert_eq!(strays, 0, "runs whose tick is not done by them");
}

/// What a fleet (or a chaos run) must leave behind, once settled.
async fn assert_nothing_lost_or_twice(dir: &Path, state: &State, target: &Recorder) {
    assert_each_tick_ran_once(state).await;
    // Findings: the open ones are exactly the source's rows, one finding per key.
    let mut open: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in state
        .rows("select query, key_json from findings where status = 'open'")
        .await
    {
        let key: Value = serde_json::from_str(&r[1]).unwrap();
        let id = key["id"].as_str().unwrap().to_string();
        assert!(
            open.entry(r[0].clone()).or_default().insert(id),
            "a key with two open findings"
        );
    }
    assert_eq!(open, source_keys(dir), "open findings = source rows");
    let opened_twice = state
        .count(
            "select count(*) from (select finding_id from audit where kind = 'finding.opened'
                                    group by finding_id having count(*) > 1) t",
        )
        .await;
    assert_eq!(opened_twice, 0, "a finding opened twice in the audit trail");
    // Remediations: one run and one action per finding of q..0; each http call made at most once.
    let remediated = state
        .count("select count(*) from findings where query like '%0'")
        .await;
    assert_eq!(
        state.count("select count(*) from remediation_runs").await,
        remediated
    );
    assert_eq!(
        state.count("select count(*) from actions").await,
        remediated
    );
    let mut calls: HashMap<String, usize> = HashMap::new();
    for (_, path, _, _) in target.seen() {
        *calls.entry(path).or_default() += 1;
    }
    for (path, n) in &calls {
        assert_eq!(*n, 1, "{path} was called {n} times");
    }
    for r in state
        .rows(
            "select a.state, a.params, f.status from actions a join findings f on f.id = a.finding_id order by a.id",
        )
        .await
    {
        let params: Value = serde_json::from_str(&r[1]).unwrap();
        let url = params["url"].as_str().unwrap();
        let path = &url[url.find("/hit/").unwrap()..];
        match r[0].as_str() {
            "succeeded" => assert_eq!(calls.get(path), Some(&1), "{path} succeeded once"),
            // Cut off by a kill between its start and its record: nobody knows; not called again.
            "unknown" => assert!(calls.get(path).copied().unwrap_or(0) <= 1),
            // Its key went (`mutate`) between the finding opening and the action's recheck:
            // not called, and the finding resolved.
            "skipped" => {
                assert_eq!(calls.get(path), None, "{path} skipped but called");
                assert_eq!(r[2], "resolved", "{path} skipped, its finding still {}", r[2]);
            }
            other => panic!("action for {path} left {other}"),
        }
    }
    // Messages: one per opened finding of q..5, each sent.
    let told = state
        .count("select count(*) from findings where query like '%5'")
        .await;
    assert_eq!(state.count("select count(*) from messages").await, told);
    assert_eq!(
        state
            .count("select count(*) from messages where state = 'sent'")
            .await,
        told
    );
    let out = vigilo_env_listen(dir, &["audit", "verify"]);
    assert!(out.status.success(), "audit verify: {}", show(&out));
}

/// Waits until every query has a successful run that started after `since` and no remediation
/// work is left: the processes have seen the source as it is and acted on it.
async fn settled(state: &State, queries: usize, since: chrono::DateTime<chrono::Utc>) {
    let since = since.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    let fresh = format!(
        "select count(distinct query) from runs where status = 'succeeded' and started_at > '{since}'"
    );
    until(
        "every query ran after the last change, all work done",
        Duration::from_secs(120),
        || async {
            let busy = state
                .count(
                    "select (select count(*) from remediation_runs where state in ('requested', 'decided', 'running'))
                          + (select count(*) from actions where state in ('pending', 'started'))
                          + (select count(*) from messages where state in ('held', 'pending'))",
                )
                .await;
            state.count(&fresh).await == queries as i64 && busy == 0
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_share_the_ticks_and_survive_a_kill() {
    const QUERIES: usize = 200;
    let db = common::PgDb::new("fleet").await;
    let target = Recorder::start();
    let dir = fleet_project(&db.url, QUERIES, target.port);
    let d = dir.path();
    // `c` stops at its first claimed tick, holding it, until it is killed.
    let (a, port_a) = start(d, "a", &[]);
    let (b, port_b) = start(d, "b", &[]);
    let (mut c, port_c) = start(d, "c", &[("VIGILO_PAUSE_AT", "tick.claimed")]);
    for port in [port_a, port_b, port_c] {
        common::wait_healthy(port).await;
    }
    let state = State::Pg(db.client().await);
    until(
        "three processes in vigilo status",
        Duration::from_secs(20),
        || async { status(d).len() == 3 },
    )
    .await;
    let listed = status(d);
    for p in &listed {
        for field in ["id", "host", "pid", "version", "started_at", "heartbeat_at"] {
            assert!(!p[field].is_null(), "{field} in {p}");
        }
    }
    until(
        "c paused holding a tick",
        Duration::from_secs(30),
        || async { log_of(d, "c").contains("paused at tick.claimed") },
    )
    .await;
    let c_id = format!("{}:{}", listed[0]["host"].as_str().unwrap(), c.0.id());
    assert!(
        listed.iter().any(|p| p["id"] == c_id.as_str()),
        "{listed:?}"
    );
    let held = state
        .count(&format!(
            "select count(*) from ticks where claimed_by = '{c_id}' and state = 'running'"
        ))
        .await;
    assert!(held >= 1, "c holds the tick it paused on");

    let (mut rng, mut serial) = (Lcg(27), 0);
    let until_kill = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until_kill {
        mutate(d, &mut rng, &mut serial, QUERIES);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    c.0.kill().unwrap(); // SIGKILL, holding a claimed tick
    c.0.wait().unwrap();
    let until_end = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until_end {
        mutate(d, &mut rng, &mut serial, QUERIES);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let last_change = chrono::Utc::now();
    settled(&state, QUERIES, last_change).await;
    until(
        "the killed process gone from vigilo status",
        Duration::from_secs(10),
        || async { status(d).len() == 2 },
    )
    .await;
    drop((a, b));

    // c's claimed tick was taken over by a or b, once, and run there.
    let taken = state
        .rows("select state, attempts, claimed_by from ticks where attempts > 1")
        .await;
    assert!(!taken.is_empty(), "no tick was taken over");
    for t in &taken {
        assert_eq!((t[0].as_str(), t[1].as_str()), ("done", "2"), "{taken:?}");
        assert_ne!(t[2], c_id, "{taken:?}");
    }
    // The work was shared: both survivors ran scheduled ticks.
    let runners = state
        .count("select count(distinct ran_by) from runs where tick is not null")
        .await;
    assert!(runners >= 2, "ticks ran in {runners} process(es)");
    assert_nothing_lost_or_twice(d, &state, &target).await;
}

/// A tick held by a process on another host is taken over only once its lease has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_held_elsewhere_is_taken_over_once_its_lease_passed() {
    let db = common::PgDb::new("fleetlease").await;
    let target = Recorder::start();
    let dir = fleet_project(&db.url, 2, target.port);
    let d = dir.path();
    // Start once so the schema exists, then plant two claims of processes on another host.
    let out = vigilo_env_listen(d, &["scan"]);
    assert!(out.status.success(), "{}", show(&out));
    db.execute(
        "insert into ticks (query, tick, state, claimed_by, claim_expires, claimed_at) values
           ('q000', '2030-01-01T00:00:00Z', 'running', 'elsewhere:1', now() - interval '1 second', now()),
           ('q001', '2030-01-01T00:00:00Z', 'running', 'elsewhere:2', now() + interval '1 hour', now())",
    )
    .await;
    let (run, port) = start(d, "a", &[]);
    common::wait_healthy(port).await;
    let state = State::Pg(db.client().await);
    until("the expired claim taken over and run", Duration::from_secs(30), || async {
        state
            .count("select count(*) from ticks where query = 'q000' and tick = '2030-01-01T00:00:00Z' and state = 'done'")
            .await
            == 1
    })
    .await;
    drop(run);
    let rows = state
        .rows(
            "select query, state, attempts, claimed_by from ticks
             where tick = '2030-01-01T00:00:00Z' order by query",
        )
        .await;
    assert_eq!(rows[0][1..3], ["done", "2"], "{rows:?}");
    assert_ne!(rows[0][3], "elsewhere:1");
    assert_eq!(
        rows[1][1..],
        ["running", "1", "elsewhere:2"],
        "a live claim stays with its holder"
    );
    assert_each_tick_ran_once(&state).await;
}

/// SQLite is for one process: a second `vigilo run` on the same file is refused, naming the
/// first one's pid; the first goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_refuses_a_second_run_on_one_file() {
    let target = Recorder::start();
    let dir = fleet_project("sqlite://state.db", 2, target.port);
    let d = dir.path();
    let (first, port) = start(d, "a", &[]);
    common::wait_healthy(port).await;
    let out = common::vigilo_env(d, &[("VIGILO_LISTEN", "127.0.0.1:0")], &["run"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "in use by another `vigilo run` (pid {})",
            first.0.id()
        )),
        "{err}"
    );
    assert!(err.contains("SQLite is for one process"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    let listed = status(d);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["pid"], first.0.id());
}

/// `vigilo run` SIGKILLed at random points while rows change, again and again: the audit trail
/// verifies after every kill, and at the end nothing is lost or done twice.
async fn killed_again_and_again(state_url: &str, state: State, processes: usize) {
    const QUERIES: usize = 20;
    let target = Recorder::start();
    let dir = fleet_project(state_url, QUERIES, target.port);
    let d = dir.path();
    let (mut rng, mut serial) = (Lcg(2027), 0);
    for cycle in 0..8 {
        let mut running: Vec<common::Running> = (0..processes)
            .map(|i| start(d, &format!("p{cycle}-{i}"), &[]).0)
            .collect();
        let stop = Instant::now() + Duration::from_millis(300 + 150 * rng.below(10) as u64);
        while Instant::now() < stop {
            mutate(d, &mut rng, &mut serial, QUERIES);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for r in &mut running {
            r.0.kill().unwrap(); // SIGKILL, wherever it is
            r.0.wait().unwrap();
        }
        let out = vigilo_env_listen(d, &["audit", "verify"]);
        assert!(
            out.status.success(),
            "audit verify after kill {cycle}: {}",
            show(&out)
        );
    }
    let last_change = chrono::Utc::now();
    let (last, port) = start(d, "last", &[]);
    common::wait_healthy(port).await;
    settled(&state, QUERIES, last_change).await;
    drop(last);
    assert_nothing_lost_or_twice(d, &state, &target).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_again_and_again_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let url = format!("sqlite://{}", path.display());
    killed_again_and_again(&url, State::Sqlite(path), 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_again_and_again_on_postgres() {
    let db = common::PgDb::new("fleetchaos").await;
    let state = State::Pg(db.client().await);
    killed_again_and_again(&db.url, state, 2).await;
}

/// Faults under `vigilo run` on PostgreSQL: the source database dropped mid-run, every state
/// store connection terminated (`pg_terminate_backend`), the action target answering 500 then
/// recovering. Nothing is resolved wrongly, the failures are recorded, work resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_leave_nothing_resolved_wrongly_and_work_resumes() {
    let state_db = common::PgDb::new("fleetfaults").await;
    let source = common::PgDb::new("fleetsource").await;
    let seed = "create table items (id text primary key);
                insert into items values ('k1'), ('k2');";
    source.execute(seed).await;
    let target = Recorder::start();
    let config = format!(
        "[state]\nurl = \"{}\"\n\n[server]\nlisten = \"${{VIGILO_LISTEN}}\"\n\n\
         [scheduler]\nlease = \"3s\"\n\n[database.src]\nurl = \"{}\"\n",
        state_db.url, source.url
    );
    let hit = format!(
        "[[action]]\ntype = \"http\"\nurl = \"http://127.0.0.1:{}/hit/{{{{ row.id }}}}\"\n",
        target.port
    );
    let dir = common::project(&[
        ("config/vigilo.toml", &config),
        (
            "queries/keys.sql",
            "-- schedule: 1s\n-- primary_key: id\n-- remediation: hit\nselect id from items",
        ),
        ("remediations/hit.toml", &hit),
    ]);
    let d = dir.path();
    let (run, port) = start(d, "a", &[]);
    common::wait_healthy(port).await;
    let state = State::Pg(state_db.client().await);
    let open = "select count(*) from findings where status = 'open'";
    until(
        "both keys found and acted on",
        Duration::from_secs(30),
        || async {
            state
                .count("select count(*) from actions where state = 'succeeded'")
                .await
                == 2
        },
    )
    .await;

    // The source database goes away: runs fail, nothing is resolved.
    let admin = tokio_postgres::connect(&common::pg_admin_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(admin.1);
    let admin = admin.0;
    admin
        .batch_execute(&format!("drop database {} with (force)", source.name))
        .await
        .unwrap();
    until("a failed run recorded", Duration::from_secs(30), || async {
        state
            .count("select count(*) from runs where status = 'failed'")
            .await
            >= 2
    })
    .await;
    assert_eq!(
        state.count(open).await,
        2,
        "nothing resolved by a failed run"
    );

    // Every state store connection is cut; the target fails; the source comes back with a new key.
    target.answer(common::recorder::Answer::Fail);
    admin
        .batch_execute(&format!(
            "select pg_terminate_backend(pid) from pg_stat_activity
             where datname = '{}' and pid <> pg_backend_pid()",
            state_db.name
        ))
        .await
        .unwrap();
    let state = State::Pg(state_db.client().await);
    admin
        .batch_execute(&format!("create database {}", source.name))
        .await
        .unwrap();
    source
        .execute(&format!("{seed} insert into items values ('k3');"))
        .await;
    until(
        "the new key's action failed",
        Duration::from_secs(60),
        || async {
            state
                .count("select count(*) from actions where state = 'failed'")
                .await
                == 1
        },
    )
    .await;
    assert_eq!(state.count(open).await, 3);
    common::wait_healthy(port).await;
    // The LISTEN connection was cut too: noticed, and listened again (meanwhile the poll acts).
    until(
        "the cut listening connection noticed",
        Duration::from_secs(30),
        || async { log_of(d, "a").contains("listening for work from other processes stopped") },
    )
    .await;

    // The target recovers; a retry runs the failed action, with its key, once.
    target.answer(common::recorder::Answer::Ok);
    let out = vigilo_env_listen(d, &["retry", "3"]);
    // The running process, woken by the retry's NOTIFY, may run the action before this
    // command's own step does; the command then says so and still succeeds.
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("action 3 queued again"),
        "{}",
        show(&out)
    );
    until(
        "the retried action succeeded",
        Duration::from_secs(30),
        || async {
            state
                .count("select count(*) from actions where state = 'succeeded'")
                .await
                == 3
        },
    )
    .await;
    drop(run);
    let seen = target.seen();
    let k3: Vec<_> = seen.iter().filter(|s| s.1 == "/hit/k3").collect();
    assert_eq!(k3.len(), 2, "one failed call, one retry: {seen:?}");
    assert_eq!(k3[0].2, k3[1].2, "the retry has the same Idempotency-Key");
    assert_eq!(
        state
            .count("select count(*) from audit where kind = 'action.failed'")
            .await,
        1
    );
    assert_each_tick_ran_once(&state).await;
    let out = vigilo_env_listen(d, &["audit", "verify"]);
    assert!(out.status.success(), "{}", show(&out));
}
