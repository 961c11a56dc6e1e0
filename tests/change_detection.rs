//! interface.md section 3, row by row and bullet by bullet, on both sources (PostgreSQL and SQLite).

mod common;

use std::sync::Arc;

use serde_json::json;
use vigilo::config;
use vigilo::finding::Status;
use vigilo::scan::{QueryRun, ScanError, Scanner};
use vigilo::store::{self, FindingFilter, RunStatus, Store};

/// A source database the test can change between runs.
enum Backend {
    Postgres(common::PgDb),
    Sqlite(std::path::PathBuf),
}

impl Backend {
    async fn exec(&self, sql: &str) {
        match self {
            Backend::Postgres(db) => db.execute(sql).await,
            Backend::Sqlite(path) => {
                let conn = rusqlite::Connection::open(path).unwrap();
                conn.execute_batch(sql)
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
        }
    }

    fn url(&self) -> String {
        match self {
            Backend::Postgres(db) => db.url.clone(),
            Backend::Sqlite(path) => format!("sqlite://{}", path.display()),
        }
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    backend: Backend,
    scanner: Scanner,
    store: Arc<dyn Store>,
}

const QUERIES: &[(&str, &str)] = &[
    (
        "queries/items.sql",
        "-- primary_key: id\n-- ignore_columns: age\n-- severity: high\nselect id, name, age from items order by id\n",
    ),
    (
        "queries/items_baseline.sql",
        "-- primary_key: id\n-- on_first_run: baseline\nselect id, name from items\n",
    ),
    (
        "queries/items_composite.sql",
        "-- primary_key: account, id\nselect account, id, name from items\n",
    ),
    (
        "queries/broken.sql",
        "-- primary_key: id\nselect id from no_such_table\n",
    ),
    (
        "queries/dup.sql",
        "-- primary_key: name\nselect id, name from items\n",
    ),
    (
        "queries/nullkey.sql",
        "-- primary_key: id\nselect nullif(id, 'b') as id, name from items\n",
    ),
];

async fn fixture(backend: Backend) -> Fixture {
    backend
        .exec("drop table if exists items; create table items (account text, id text, name text, age integer);")
        .await;
    let config = format!(
        "[state]\nurl = \"sqlite://state.db\"\n\n[database.src]\nurl = \"{}\"\nstatement_timeout = \"10s\"\n",
        backend.url()
    );
    let mut files: Vec<(&str, &str)> = QUERIES.to_vec();
    files.push(("config/vigilo.toml", &config));
    let dir = common::project(&files);
    let project = Arc::new(
        config::load(dir.path(), &vigilo::action::REGISTRY).unwrap_or_else(|e| panic!("{e}")),
    );
    let store = store::open(&project.state.url).await.unwrap();
    let scanner = Scanner::new(Arc::clone(&project), Arc::clone(&store)).unwrap();
    Fixture {
        _dir: dir,
        backend,
        scanner,
        store,
    }
}

impl Fixture {
    async fn run(&self, name: &str) -> QueryRun {
        let q = &self.scanner.project().queries[name];
        self.scanner.run(q).await
    }

    /// Runs `name` and returns (inserted, updated, deleted).
    async fn counts(&self, name: &str) -> (u64, u64, u64) {
        let r = self.run(name).await;
        let s = r.result.unwrap_or_else(|e| panic!("{name}: {e}"));
        (s.inserted, s.updated, s.deleted)
    }

    async fn open(&self, name: &str) -> Vec<String> {
        self.findings(name, Some(Status::Open)).await
    }

    async fn findings(&self, name: &str, status: Option<Status>) -> Vec<String> {
        let list = self
            .store
            .findings(&FindingFilter {
                query: Some(name.into()),
                status,
            })
            .await
            .unwrap();
        list.iter()
            .map(|f| {
                f.key
                    .values()
                    .map(|v| v.as_str().unwrap_or("?").to_string())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .collect()
    }
}

async fn section_3(backend: Backend) {
    let f = fixture(backend).await;
    f.backend
        .exec("insert into items values ('111', 'a', 'alice', 10), ('111', 'b', 'bob', 20);")
        .await;

    // Not there before: inserted, a new open finding.
    assert_eq!(f.counts("items").await, (2, 0, 0), "first run inserts");
    assert_eq!(f.open("items").await, ["a", "b"]);
    // Same rows again: nothing.
    assert_eq!(
        f.counts("items").await,
        (0, 0, 0),
        "second run changes nothing"
    );
    // An ignore_columns change is not an update.
    f.backend.exec("update items set age = age + 1;").await;
    assert_eq!(f.counts("items").await, (0, 0, 0), "ignored column");
    // Row changed outside ignore_columns: updated, the finding's row follows.
    f.backend
        .exec("update items set name = 'bobby' where id = 'b';")
        .await;
    assert_eq!(f.counts("items").await, (0, 1, 0), "update");
    let list = f.store.findings(&FindingFilter::default()).await.unwrap();
    let b = list.iter().find(|x| x.key["id"] == "b").unwrap();
    assert_eq!(b.row["name"], json!("bobby"));
    assert_eq!(b.severity.as_str(), "high");
    // Gone: deleted, the finding resolved with resolved_at.
    f.backend.exec("delete from items where id = 'b';").await;
    assert_eq!(f.counts("items").await, (0, 0, 1), "delete");
    assert_eq!(f.open("items").await, ["a"]);
    let b = f.store.finding(b.id).await.unwrap().unwrap();
    assert_eq!(b.status, Status::Resolved);
    assert!(b.resolved_at.is_some());
    // Back after being resolved: open again (same finding, reopened).
    f.backend
        .exec("insert into items values ('111', 'b', 'bob', 1);")
        .await;
    let run = f.run("items").await.result.unwrap();
    assert_eq!(run.outcome.reopened, vec![b.id], "reopen");
    assert_eq!(f.open("items").await, ["a", "b"]);

    // A failed run changes nothing: SQL error (its own query) ...
    let broken = f.run("broken").await;
    assert!(
        matches!(broken.result, Err(ScanError::Source(_))),
        "{:?}",
        broken.result
    );
    let runs = f.store.runs(Some("broken"), 5).await.unwrap();
    assert_eq!(runs[0].status, RunStatus::Failed);
    assert!(
        runs[0].error.as_deref().unwrap().contains("no_such_table"),
        "{:?}",
        runs[0].error
    );
    // ... and the table vanishing (a SQL error on a query with findings) resolves nothing.
    f.backend
        .exec("alter table items rename to items_gone;")
        .await;
    assert!(f.run("items").await.result.is_err());
    assert_eq!(
        f.open("items").await,
        ["a", "b"],
        "a failed run resolves nothing"
    );
    f.backend
        .exec("alter table items_gone rename to items;")
        .await;

    // Duplicate keys fail naming the column, and change nothing.
    f.backend
        .exec("insert into items values ('222', 'c', 'bob', 1);")
        .await;
    let dup = f.run("dup").await;
    let err = dup.result.unwrap_err().to_string();
    assert!(err.contains("name = \"bob\""), "{err}");
    assert!(f.findings("dup", None).await.is_empty());
    // A NULL key fails naming the column.
    let null = f.run("nullkey").await;
    let err = null.result.unwrap_err().to_string();
    assert!(err.contains("primary key column \"id\" is NULL"), "{err}");
    assert!(f.findings("nullkey", None).await.is_empty());

    // Composite keys: the same id in two accounts is two findings.
    f.backend
        .exec("insert into items values ('222', 'a', 'alice2', 1);")
        .await;
    assert_eq!(f.counts("items_composite").await, (4, 0, 0));
    assert!(
        f.open("items_composite")
            .await
            .contains(&"222/a".to_string())
    );
    f.backend
        .exec("delete from items where account = '222' and id = 'a';")
        .await;
    assert_eq!(f.counts("items_composite").await, (0, 0, 1));

    // on_first_run = baseline: the first run records, opens nothing; later new keys are findings.
    let run = f.run("items_baseline").await.result.unwrap();
    assert!(run.baseline && run.outcome.opened.is_empty());
    assert!(f.findings("items_baseline", None).await.is_empty());
    f.backend
        .exec("insert into items values ('111', 'd', 'dan', 1);")
        .await;
    assert_eq!(f.counts("items_baseline").await, (1, 0, 0));
    assert_eq!(f.open("items_baseline").await, ["d"]);

    // Zero rows is a real result: it resolves every open finding.
    f.backend.exec("delete from items;").await;
    assert_eq!(f.counts("items").await, (0, 0, 2));
    assert!(f.open("items").await.is_empty());
}

#[tokio::test]
async fn section_3_on_postgres() {
    section_3(Backend::Postgres(common::PgDb::new("cd").await)).await;
}

#[tokio::test]
async fn section_3_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("src.db");
    section_3(Backend::Sqlite(path)).await;
    drop(dir);
}

#[tokio::test]
async fn connection_refused_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.db");
    let backend = Backend::Sqlite(src.clone());
    let f = fixture(backend).await;
    f.backend
        .exec("insert into items values ('1', 'a', 'x', 1);")
        .await;
    assert_eq!(f.counts("items").await, (1, 0, 0));

    // Point the same project's query at a closed PostgreSQL port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = format!(
        "[state]\nurl = \"sqlite://{}\"\n\n[database.src]\nurl = \"postgres://postgres@127.0.0.1:{port}/none\"\n",
        f._dir.path().join("state.db").display()
    );
    let dir2 = common::project(&[("config/vigilo.toml", &config), QUERIES[0]]);
    let project = Arc::new(config::load(dir2.path(), &vigilo::action::REGISTRY).unwrap());
    let scanner = Scanner::new(Arc::clone(&project), Arc::clone(&f.store)).unwrap();
    let started = std::time::Instant::now();
    let run = scanner.run(&project.queries["items"]).await;
    let err = run.result.unwrap_err().to_string();
    assert!(err.contains("cannot connect"), "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "connection refused is quick"
    );
    assert_eq!(f.open("items").await, ["a"], "nothing resolved");
    assert_eq!(
        f.store.runs(Some("items"), 1).await.unwrap()[0].status,
        RunStatus::Failed
    );
}
