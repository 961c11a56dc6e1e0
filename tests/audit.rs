//! The audit trail through the binary, on both state stores: entries for every finding event,
//! `audit verify` intact, and every kind of tampering named by its first bad seq.

mod common;

use std::path::Path;
use std::process::Output;

use common::{show, vigilo};

use serde_json::Value;

/// Where the state lives, and how to run SQL against it.
enum State {
    Sqlite,
    Postgres(common::PgDb),
}

impl State {
    async fn url(&self, dir: &Path) -> String {
        match self {
            State::Sqlite => format!("sqlite://{}", dir.join("state.db").display()),
            State::Postgres(db) => db.url.clone(),
        }
    }

    async fn exec(&self, dir: &Path, sql: &str) {
        match self {
            State::Sqlite => rusqlite::Connection::open(dir.join("state.db"))
                .unwrap()
                .execute_batch(sql)
                .unwrap_or_else(|e| panic!("{sql}: {e}")),
            State::Postgres(db) => db.execute(sql).await,
        }
    }
}

/// A project on a SQLite source with three rows, scanned twice with changes in between.
async fn scanned(state: &State) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[state]\nurl = \"{}\"\n\n[database.src]\nurl = \"sqlite://src.db\"\n",
        state.url(dir.path()).await
    );
    std::fs::create_dir_all(dir.path().join("config")).unwrap();
    std::fs::create_dir_all(dir.path().join("queries")).unwrap();
    std::fs::write(dir.path().join("config/vigilo.toml"), config).unwrap();
    std::fs::write(
        dir.path().join("queries/items.sql"),
        "-- primary_key: id\nselect id, name from items\n",
    )
    .unwrap();
    let src = rusqlite::Connection::open(dir.path().join("src.db")).unwrap();
    src.execute_batch("create table items (id text, name text); insert into items values ('a', 'x'), ('b', 'y'), ('c', 'z');")
        .unwrap();
    let out = vigilo(dir.path(), &["scan"]);
    assert!(out.status.success(), "{}", show(&out));
    src.execute_batch(
        "update items set name = 'yy' where id = 'b'; delete from items where id = 'c';",
    )
    .unwrap();
    let out = vigilo(dir.path(), &["scan"]);
    assert!(out.status.success(), "{}", show(&out));
    dir
}

fn verify(dir: &Path) -> Output {
    vigilo(dir, &["audit", "verify"])
}

async fn trail_records_every_event_and_verifies(state: State) {
    let dir = scanned(&state).await;
    let out = vigilo(dir.path(), &["audit", "--format", "json"]);
    assert!(out.status.success(), "{}", show(&out));
    let entries: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<&str> = entries
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "config.loaded",
            "finding.opened",
            "finding.opened",
            "finding.opened",
            "config.loaded",
            "finding.updated",
            "finding.resolved"
        ]
    );
    for (i, e) in entries.iter().enumerate() {
        for field in [
            "seq",
            "at",
            "kind",
            "actor",
            "channel",
            "finding_id",
            "approval_id",
            "action_id",
            "data",
            "prev_hash",
            "hash",
        ] {
            assert!(e.get(field).is_some(), "entry lacks {field}: {e}");
        }
        assert_eq!(e["seq"], i as i64 + 1);
        if i > 0 {
            assert_eq!(e["prev_hash"], entries[i - 1]["hash"]);
        }
    }
    assert_eq!(entries[6]["data"]["key"]["id"], "c");
    assert!(entries[6]["finding_id"].is_i64());
    assert!(entries[0]["data"]["files"]["queries/items.sql"].is_string());

    let ok = verify(dir.path());
    assert_eq!(ok.status.code(), Some(0), "{}", show(&ok));
    assert!(
        String::from_utf8_lossy(&ok.stdout).contains("intact: 7 entries"),
        "{}",
        show(&ok)
    );
    let table = vigilo(dir.path(), &["audit"]);
    assert!(
        String::from_utf8_lossy(&table.stdout).contains("finding.resolved"),
        "{}",
        show(&table)
    );
}

async fn tampering_is_named(state: impl Fn() -> futures::future::BoxFuture<'static, State>) {
    let cases: [(&str, &str, i64); 5] = [
        (
            "edited",
            "update audit set actor = 'mallory' where seq = 3",
            3,
        ),
        (
            "edited data",
            "update audit set data = '{\"query\":\"items\"}' where seq = 4",
            4,
        ),
        ("deleted", "delete from audit where seq = 2", 2),
        (
            "reordered",
            "update audit set seq = 1000 where seq = 2; update audit set seq = 2 where seq = 3; update audit set seq = 3 where seq = 1000",
            2,
        ),
        ("truncated", "delete from audit where seq = 7", 7),
    ];
    for (what, sql, seq) in cases {
        let state = state().await;
        let dir = scanned(&state).await;
        state.exec(dir.path(), sql).await;
        let out = verify(dir.path());
        assert_eq!(out.status.code(), Some(1), "{what}: {}", show(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("BROKEN at seq {seq}:")),
            "{what}: {}",
            show(&out)
        );
    }
}

#[tokio::test]
async fn sqlite_trail_records_every_event_and_verifies() {
    trail_records_every_event_and_verifies(State::Sqlite).await;
}

#[tokio::test]
async fn postgres_trail_records_every_event_and_verifies() {
    trail_records_every_event_and_verifies(State::Postgres(common::PgDb::new("audit").await)).await;
}

#[tokio::test]
async fn sqlite_tampering_is_named() {
    tampering_is_named(|| Box::pin(async { State::Sqlite })).await;
}

#[tokio::test]
async fn postgres_tampering_is_named() {
    tampering_is_named(|| Box::pin(async { State::Postgres(common::PgDb::new("tamper").await) }))
        .await;
}
