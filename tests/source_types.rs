//! `vigilo::source` against a real PostgreSQL (127.0.0.1:5432, trust auth, user
//! `postgres`) and real SQLite files. PostgreSQL being unreachable fails the tests.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};
use vigilo::config::{DatabaseConfig, DatabaseUrl, Origin};
use vigilo::source::{Row, Source, SourceError};

const ADMIN: &str = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=5";

/// A fresh database, dropped (best effort) when this goes out of scope, even on panic.
struct TestDb {
    name: String,
}

impl TestDb {
    async fn create() -> TestDb {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "vigilo_src_{}_{}_{}",
            std::process::id(),
            nanos,
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        admin_execute(&format!("create database {name}")).await;
        TestDb { name }
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}", self.name)
    }

    fn source(&self, timeout: Option<Duration>, max_connections: usize) -> Source {
        Source::new(&config(
            "pg",
            DatabaseUrl::Postgres(self.url()),
            timeout,
            max_connections,
        ))
        .expect("source")
    }

    /// Runs setup SQL (DDL) in this database.
    async fn execute(&self, sql: &str) {
        let (client, connection) = tokio_postgres::connect(&self.url(), tokio_postgres::NoTls)
            .await
            .expect("connect to the test database");
        tokio::spawn(connection);
        client.batch_execute(sql).await.expect("setup SQL");
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let sql = format!("drop database if exists {} with (force)", self.name);
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(runtime) = runtime {
                runtime.block_on(async {
                    if let Ok((client, connection)) =
                        tokio_postgres::connect(ADMIN, tokio_postgres::NoTls).await
                    {
                        tokio::spawn(connection);
                        let _ = client.batch_execute(&sql).await;
                    }
                });
            }
        })
        .join();
    }
}

/// Runs SQL on the `postgres` database; panics with a clear message if PostgreSQL is down.
async fn admin_execute(sql: &str) {
    let (client, connection) = tokio_postgres::connect(ADMIN, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "these tests need PostgreSQL at 127.0.0.1:5432 (user postgres, trust auth); \
                 connecting failed: {e}"
            )
        });
    tokio::spawn(connection);
    client.batch_execute(sql).await.expect("admin SQL");
}

fn config(
    name: &str,
    url: DatabaseUrl,
    statement_timeout: Option<Duration>,
    max_connections: usize,
) -> DatabaseConfig {
    DatabaseConfig {
        name: name.to_owned(),
        url,
        max_connections,
        statement_timeout,
        origin: Origin {
            file: PathBuf::from("config/test.toml"),
            line: None,
        },
    }
}

/// All rows of a query, or the first error (from `query` or the stream).
async fn fetch(source: &Source, sql: &str) -> Result<(Vec<String>, Vec<Row>), SourceError> {
    let rows = source.query(sql).await?;
    let values = rows.stream.try_collect().await?;
    Ok((rows.columns, values))
}

/// The single row of a query, as a JSON object keyed by column.
async fn one_row(source: &Source, sql: &str) -> Value {
    let (columns, rows) = fetch(source, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    assert_eq!(rows.len(), 1, "{sql}");
    Value::Object(columns.into_iter().zip(rows[0].clone()).collect())
}

#[tokio::test]
async fn pg_scalars() {
    let db = TestDb::create().await;
    let source = db.source(None, 2);
    let row = one_row(
        &source,
        "select true as b, false as b2, (-2)::int2 as i2, 2147483647::int4 as i4,
                9223372036854775807::int8 as i8, 12345::oid as o,
                1.5::float4 as f4, 0.1::float4 as f4b, 0.1::float8 as f8,
                'NaN'::float8 as fnan, 'Infinity'::float8 as finf, '-Infinity'::float4 as fninf,
                'héllo'::text as t, 'v'::varchar(5) as vc, 'ab'::char(4) as bp, 'nm'::name as nm,
                '2024-01-02 03:04:05+00'::timestamptz as tz,
                '2024-01-02 03:04:05.123456+00'::timestamptz as tz_frac,
                '2024-01-02 05:04:05.5+02'::timestamptz as tz_offset,
                'infinity'::timestamptz as tz_inf,
                '2024-01-02 03:04:05'::timestamp as ts,
                '2024-01-02 03:04:05.25'::timestamp as ts_frac,
                '2024-02-29'::date as d, '13:14:15'::time as tm, '13:14:15.25'::time as tm_frac,
                '{\"a\": [1, {\"b\": null}], \"c\": \"x\", \"d\": {\"e\": true}}'::jsonb as jb,
                '[1, \"two\", 3.5]'::json as js,
                'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid as u,
                '10.1.2.3'::inet as inet_host, '10.1.2.3/24'::inet as inet_net,
                '::1'::inet as inet6_host, '2001:db8::/32'::inet as inet6_net,
                '10.0.0.0/8'::cidr as cidr_net, '10.1.2.3/32'::cidr as cidr_host,
                '\\xdeadbeef'::bytea as by, ''::bytea as by_empty",
    )
    .await;
    assert_eq!(
        row,
        json!({
            "b": true, "b2": false, "i2": -2, "i4": 2147483647, "i8": 9223372036854775807i64,
            "o": 12345, "f4": 1.5, "f4b": 0.1, "f8": 0.1,
            "fnan": "NaN", "finf": "Infinity", "fninf": "-Infinity",
            "t": "héllo", "vc": "v", "bp": "ab  ", "nm": "nm",
            "tz": "2024-01-02T03:04:05Z",
            "tz_frac": "2024-01-02T03:04:05.123456Z",
            "tz_offset": "2024-01-02T03:04:05.500Z",
            "tz_inf": "infinity",
            "ts": "2024-01-02T03:04:05Z",
            "ts_frac": "2024-01-02T03:04:05.250Z",
            "d": "2024-02-29", "tm": "13:14:15", "tm_frac": "13:14:15.250000",
            "jb": {"a": [1, {"b": null}], "c": "x", "d": {"e": true}},
            "js": [1, "two", 3.5],
            "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "inet_host": "10.1.2.3", "inet_net": "10.1.2.3/24",
            "inet6_host": "::1", "inet6_net": "2001:db8::/32",
            "cidr_net": "10.0.0.0/8", "cidr_host": "10.1.2.3/32",
            "by": "3q2+7w==", "by_empty": ""
        })
    );
}

#[tokio::test]
async fn pg_nulls_of_every_type() {
    let db = TestDb::create().await;
    let source = db.source(None, 1);
    let types = [
        "bool",
        "int2",
        "int4",
        "int8",
        "oid",
        "float4",
        "float8",
        "numeric",
        "text",
        "varchar",
        "bpchar",
        "name",
        "timestamptz",
        "timestamp",
        "date",
        "time",
        "json",
        "jsonb",
        "uuid",
        "inet",
        "cidr",
        "bytea",
        "int4[]",
        "text[]",
    ];
    let select = types
        .iter()
        .enumerate()
        .map(|(i, t)| format!("null::{t} as c{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let (_, rows) = fetch(&source, &format!("select {select}")).await.unwrap();
    assert_eq!(rows, vec![vec![Value::Null; types.len()]]);
}

#[tokio::test]
async fn pg_numeric_precision() {
    let db = TestDb::create().await;
    let source = db.source(None, 1);
    let row = one_row(
        &source,
        "select 42::numeric as int, 1.50::numeric as one_fifty, 0.1::numeric as tenth,
                -3.25::numeric as neg, 1.000::numeric as one, 0::numeric as zero,
                0.000001::numeric as small, 9223372036854775807::numeric as i64max,
                12345678901234567890::numeric as u64,
                123456789012345678901234567890::numeric as huge,
                12345678901234567890.123456789::numeric as many_decimals,
                0.1000000000000000000001::numeric as long_fraction,
                'NaN'::numeric as nan, 'Infinity'::numeric as inf,
                '-Infinity'::numeric as ninf",
    )
    .await;
    assert_eq!(
        row,
        json!({
            "int": 42, "one_fifty": 1.5, "tenth": 0.1, "neg": -3.25, "one": 1, "zero": 0,
            "small": 0.000001, "i64max": 9223372036854775807i64,
            "u64": 12345678901234567890u64,
            "huge": "123456789012345678901234567890",
            "many_decimals": "12345678901234567890.123456789",
            "long_fraction": "0.1000000000000000000001",
            "nan": "NaN", "inf": "Infinity", "ninf": "-Infinity"
        })
    );
}

#[tokio::test]
async fn pg_arrays() {
    let db = TestDb::create().await;
    let source = db.source(None, 1);
    let row = one_row(
        &source,
        "select array[1, null, 3]::int4[] as ints, array[true, null]::bool[] as bools,
                array[1, 2]::int2[] as smalls, array[9007199254740993]::int8[] as bigs,
                array[1, 2]::oid[] as oids,
                array['a', null, 'c']::text[] as texts, array['x']::varchar[] as vcs,
                array['ab']::char(3)[] as bps, array['n']::name[] as names,
                array[1.50, null, 123456789012345678901234567890]::numeric[] as nums,
                array[0.5, 'NaN']::float8[] as f8s, array[0.1]::float4[] as f4s,
                array['{\"a\": 1}', null]::jsonb[] as jsonbs, array['[1]']::json[] as jsons,
                array['2024-01-02 03:04:05+00']::timestamptz[] as tzs,
                array['2024-01-02 03:04:05']::timestamp[] as tss,
                array['2024-02-29']::date[] as dates, array['01:02:03']::time[] as times,
                array['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11']::uuid[] as uuids,
                array['10.0.0.1', '10.0.0.0/8']::inet[] as inets,
                array['10.0.0.0/8']::cidr[] as cidrs,
                array['\\x00ff'::bytea, null] as bytes,
                '{}'::int4[] as empty, array[null]::text[] as only_null",
    )
    .await;
    assert_eq!(
        row,
        json!({
            "ints": [1, null, 3], "bools": [true, null], "smalls": [1, 2],
            "bigs": [9007199254740993i64], "oids": [1, 2],
            "texts": ["a", null, "c"], "vcs": ["x"], "bps": ["ab "], "names": ["n"],
            "nums": [1.5, null, "123456789012345678901234567890"],
            "f8s": [0.5, "NaN"], "f4s": [0.1],
            "jsonbs": [{"a": 1}, null], "jsons": [[1]],
            "tzs": ["2024-01-02T03:04:05Z"], "tss": ["2024-01-02T03:04:05Z"],
            "dates": ["2024-02-29"], "times": ["01:02:03"],
            "uuids": ["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"],
            "inets": ["10.0.0.1", "10.0.0.0/8"], "cidrs": ["10.0.0.0/8"],
            "bytes": ["AP8=", null],
            "empty": [], "only_null": [null]
        })
    );
}

#[tokio::test]
async fn pg_extension_and_domain_types() {
    let db = TestDb::create().await;
    db.execute(
        "create extension citext;
         create domain positive as int4 check (value > 0);
         create type mood as enum ('happy', 'sad');",
    )
    .await;
    let source = db.source(None, 1);
    let row = one_row(
        &source,
        "select 'MiXeD'::citext as ci, array['a']::citext[] as cis, 5::positive as dom",
    )
    .await;
    assert_eq!(row, json!({"ci": "MiXeD", "cis": ["a"], "dom": 5}));

    let err = fetch(&source, "select 1 as ok, 'happy'::mood as m")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SourceError::UnsupportedType { column, type_name, .. }
            if column == "m" && type_name == "mood"),
        "{err:?}"
    );
}

#[tokio::test]
async fn pg_unsupported_types() {
    let db = TestDb::create().await;
    let source = db.source(None, 1);
    let err = fetch(&source, "select point(1,2) as p").await.unwrap_err();
    match &err {
        SourceError::UnsupportedType {
            database,
            column,
            type_name,
        } => {
            assert_eq!(
                (database.as_str(), column.as_str(), type_name.as_str()),
                ("pg", "p", "point")
            );
        }
        other => panic!("expected UnsupportedType, got {other:?}"),
    }
    assert!(err.to_string().contains("p::text"), "{err}");

    for (sql, column, type_name) in [
        ("select 1::money as m", "m", "money"),
        ("select interval '1 day' as i", "i", "interval"),
        ("select array[point(1,2)] as ps", "ps", "point[]"),
    ] {
        match fetch(&source, sql).await.unwrap_err() {
            SourceError::UnsupportedType {
                column: c,
                type_name: t,
                ..
            } => {
                assert_eq!((c.as_str(), t.as_str()), (column, type_name));
            }
            other => panic!("{sql}: expected UnsupportedType, got {other:?}"),
        }
    }

    let err = fetch(&source, "select '{{1,2},{3,4}}'::int4[] as grid")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SourceError::Decode { column, message, .. }
            if column == "grid" && message.contains("dimensions")),
        "{err:?}"
    );
    // The connection is still usable afterwards.
    assert_eq!(one_row(&source, "select 1 as one").await, json!({"one": 1}));
}

#[tokio::test]
async fn pg_sql_error_is_query_error() {
    let db = TestDb::create().await;
    let source = db.source(None, 1);
    let err = fetch(&source, "select * from no_such_table")
        .await
        .unwrap_err();
    match &err {
        SourceError::Query { database, message } => {
            assert_eq!(database, "pg");
            assert!(
                message.contains("no_such_table") && message.contains("42P01"),
                "{message}"
            );
        }
        other => panic!("expected Query, got {other:?}"),
    }
    let err = fetch(&source, "select 1/0 as x").await.unwrap_err();
    assert!(matches!(err, SourceError::Query { .. }), "{err:?}");
}

#[tokio::test]
async fn pg_connection_refused_is_a_quick_connect_error() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let source = Source::new(&config("steampipe", DatabaseUrl::Postgres(url), None, 2)).unwrap();
    let started = Instant::now();
    let err = fetch(&source, "select 1").await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    match &err {
        SourceError::Connect { database, message } => {
            assert_eq!(database, "steampipe");
            assert!(message.contains(&port.to_string()), "{message}");
        }
        other => panic!("expected Connect, got {other:?}"),
    }
    assert!(
        err.to_string()
            .starts_with("database steampipe: cannot connect"),
        "{err}"
    );
}

#[tokio::test]
async fn pg_invalid_url_is_a_connect_error() {
    let url = DatabaseUrl::Postgres("postgres://u@h:notaport/db".to_owned());
    let err = Source::new(&config("bad", url, None, 1)).unwrap_err();
    assert!(
        matches!(err, SourceError::Connect { ref database, .. } if database == "bad"),
        "{err:?}"
    );
}

#[tokio::test]
async fn pg_statement_timeout() {
    let db = TestDb::create().await;
    let source = db.source(Some(Duration::from_millis(200)), 1);
    let started = Instant::now();
    let err = fetch(&source, "select pg_sleep(2)").await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        started.elapsed()
    );
    match &err {
        SourceError::Timeout { database, timeout } => {
            assert_eq!((database.as_str(), timeout.as_str()), ("pg", "200ms"));
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    // `void` (what pg_sleep returns) reads as null.
    assert_eq!(
        one_row(&source, "select pg_sleep(0) as s").await,
        json!({"s": null})
    );
    // Fast queries still work on the same (pooled) connection.
    assert_eq!(one_row(&source, "select 1 as one").await, json!({"one": 1}));

    // Without a limit, the pooled connection runs with statement_timeout = 0.
    let unlimited = db.source(None, 1);
    assert_eq!(
        one_row(
            &unlimited,
            "select current_setting('statement_timeout') as t"
        )
        .await,
        json!({"t": "0"})
    );
}

#[tokio::test]
async fn pg_streams_many_rows() {
    let db = TestDb::create().await;
    let source = db.source(None, 1);
    let rows = source
        .query("select g, 'row ' || g as label from generate_series(1, 100000) g")
        .await
        .unwrap();
    assert_eq!(rows.columns, ["g", "label"]);
    let (count, last) = rows
        .stream
        .try_fold((0usize, None), |(count, _), row| async move {
            Ok((count + 1, Some(row)))
        })
        .await
        .unwrap();
    assert_eq!(count, 100_000);
    assert_eq!(last, Some(vec![json!(100000), json!("row 100000")]));
}

#[tokio::test]
async fn pg_dropping_a_stream_early_frees_the_pool() {
    let db = TestDb::create().await;
    let source = db.source(None, 1);
    let rows = source
        .query("select generate_series(1, 100000000) as g")
        .await
        .unwrap();
    let first: Vec<_> = rows.stream.take(10).collect().await;
    assert_eq!(first.len(), 10);
    let started = Instant::now();
    assert_eq!(one_row(&source, "select 2 as two").await, json!({"two": 2}));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn pg_source_is_shared_across_tasks() {
    let db = TestDb::create().await;
    let source = std::sync::Arc::new(db.source(None, 2));
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let source = source.clone();
            tokio::spawn(async move { fetch(&source, &format!("select {i} as n")).await })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        let (_, rows) = task.await.unwrap().unwrap();
        assert_eq!(rows, vec![vec![json!(i)]]);
    }
}

/// A SQLite file with one row of each storage class.
fn sqlite_fixture() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inventory.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "create table t (i integer, r real, s text, b blob, n);
         insert into t values (42, 1.5, 'héllo', x'deadbeef', null);
         insert into t values (-1, 9e999, '', x'', null);",
    )
    .unwrap();
    (dir, path)
}

fn sqlite_source(path: PathBuf, timeout: Option<Duration>) -> Source {
    Source::new(&config("inventory", DatabaseUrl::Sqlite(path), timeout, 1)).unwrap()
}

#[tokio::test]
async fn sqlite_storage_classes() {
    let (_dir, path) = sqlite_fixture();
    let source = sqlite_source(path, None);
    assert_eq!(source.name(), "inventory");
    let (columns, rows) = fetch(&source, "select i, r, s, b, n from t order by i desc")
        .await
        .unwrap();
    assert_eq!(columns, ["i", "r", "s", "b", "n"]);
    assert_eq!(
        rows,
        vec![
            vec![
                json!(42),
                json!(1.5),
                json!("héllo"),
                json!("3q2+7w=="),
                Value::Null
            ],
            vec![
                json!(-1),
                json!("Infinity"),
                json!(""),
                json!(""),
                Value::Null
            ],
        ]
    );
}

#[tokio::test]
async fn sqlite_missing_file_is_a_connect_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.db");
    let source = sqlite_source(path.clone(), None);
    match fetch(&source, "select 1").await.unwrap_err() {
        SourceError::Connect { database, message } => {
            assert_eq!(database, "inventory");
            assert!(message.contains(&path.display().to_string()), "{message}");
        }
        other => panic!("expected Connect, got {other:?}"),
    }
    assert!(!path.exists(), "a read-only open must not create the file");
}

#[tokio::test]
async fn sqlite_sql_error_is_query_error() {
    let (_dir, path) = sqlite_fixture();
    let source = sqlite_source(path, None);
    match fetch(&source, "select * from no_such_table")
        .await
        .unwrap_err()
    {
        SourceError::Query { message, .. } => {
            assert!(message.contains("no_such_table"), "{message}")
        }
        other => panic!("expected Query, got {other:?}"),
    }
    let err = fetch(&source, "insert into t (i) values (1)")
        .await
        .unwrap_err();
    assert!(
        matches!(err, SourceError::Query { .. }),
        "read-only: {err:?}"
    );
}

#[tokio::test]
async fn sqlite_statement_timeout() {
    let (_dir, path) = sqlite_fixture();
    let source = sqlite_source(path, Some(Duration::from_millis(100)));
    let started = Instant::now();
    let err = fetch(
        &source,
        "with recursive c(x) as (select 1 union all select x + 1 from c where x < 1000000000)
         select count(*) from c",
    )
    .await
    .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    match &err {
        SourceError::Timeout { database, timeout } => {
            assert_eq!(
                (database.as_str(), timeout.as_str()),
                ("inventory", "100ms")
            );
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
}

#[tokio::test]
async fn sqlite_streams_many_rows() {
    let (_dir, path) = sqlite_fixture();
    let source = sqlite_source(path, None);
    let rows = source
        .query(
            "with recursive c(x) as (select 1 union all select x + 1 from c where x < 100000)
             select x from c",
        )
        .await
        .unwrap();
    assert_eq!(rows.columns, ["x"]);
    let count = rows
        .stream
        .try_fold(0usize, |n, _| async move { Ok(n + 1) })
        .await
        .unwrap();
    assert_eq!(count, 100_000);

    // Dropping a stream early stops the worker; the source keeps working.
    let rows = source
        .query("with recursive c(x) as (select 1 union all select x + 1 from c) select x from c")
        .await
        .unwrap();
    let first: Vec<_> = rows.stream.take(3).collect().await;
    assert_eq!(first.len(), 3);
    assert_eq!(
        fetch(&source, "select 7").await.unwrap().1,
        vec![vec![json!(7)]]
    );
}
