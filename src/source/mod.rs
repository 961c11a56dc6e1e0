//! Runs a user's SQL against a source database and streams the rows as JSON values.
//!
//! PostgreSQL (and Steampipe, which speaks its protocol) goes through
//! tokio-postgres with one deadpool-postgres pool per `[database.NAME]`;
//! SQLite goes through rusqlite on a blocking thread. Either way rows arrive
//! one at a time as a stream, already converted to JSON as interface.md
//! section 3 says, so nothing holds a whole result set.
//!
//! # JSON mapping
//! - PostgreSQL: `bool` → boolean; `int2`/`int4`/`int8`/`oid` → integer;
//!   `float4`/`float8` → number (NaN and ±Infinity → `"NaN"`, `"Infinity"`,
//!   `"-Infinity"`); `numeric` → integer when it fits i64/u64, a float when the
//!   float is numerically the same decimal, else the exact decimal text (NaN and
//!   ±Infinity as strings); `text`/`varchar`/`bpchar`/`name`/`citext` → string;
//!   `timestamptz` and `timestamp` (read as UTC) → RFC 3339 UTC
//!   (`2024-01-02T03:04:05Z`, fraction only when non-zero) or
//!   `"infinity"`/`"-infinity"`; `date` → `YYYY-MM-DD`; `time` →
//!   `HH:MM:SS[.ffffff]`; `json`/`jsonb` → the JSON; `uuid` → string; `inet` →
//!   `addr` for a host, else `addr/len`; `cidr` → `addr/len`; `bytea` → base64;
//!   `void` → null; domains as their base type; one-dimensional arrays of all
//!   of these → arrays. Any other type fails the query before the first row
//!   with [`SourceError::UnsupportedType`] (arrays named like `point[]`).
//! - SQLite, by storage class: INTEGER → integer, REAL → number (non-finite as
//!   above), TEXT → string (invalid UTF-8 replaced), BLOB → base64, NULL → null.
//!
//! PostgreSQL connections are plain TCP (no TLS); a stream dropped before its
//! last row closes its connection rather than pooling it, which also stops
//! the query on the server.

mod pg_value;
mod postgres;
mod sqlite;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;

use crate::config::{DatabaseConfig, DatabaseUrl};
use postgres::PgSource;
use sqlite::SqliteSource;

/// One row: a JSON value per column, in column order.
pub type Row = Vec<serde_json::Value>;

/// The result of a query: column names, then the rows as they arrive.
pub struct Rows {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// The rows; an `Err` ends the run.
    pub stream: BoxStream<'static, Result<Row, SourceError>>,
}

/// Why a query could not be run or read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Could not connect or get a pooled connection.
    #[error("database {database}: cannot connect: {message}")]
    Connect {
        /// The `[database.NAME]`.
        database: String,
        /// The driver's message.
        message: String,
    },
    /// The database rejected or aborted the query.
    #[error("database {database}: query failed: {message}")]
    Query {
        /// The `[database.NAME]`.
        database: String,
        /// The driver's message (SQL errors carry their code and position).
        message: String,
    },
    /// The statement ran longer than `statement_timeout`.
    #[error("database {database}: query exceeded statement_timeout of {timeout}")]
    Timeout {
        /// The `[database.NAME]`.
        database: String,
        /// The limit, human-readable.
        timeout: String,
    },
    /// A column has a type vigilo cannot turn into JSON.
    #[error(
        "database {database}: column {column:?} has type {type_name}, which vigilo cannot convert to JSON; cast it in the query (for example {column}::text)"
    )]
    UnsupportedType {
        /// The `[database.NAME]`.
        database: String,
        /// The column.
        column: String,
        /// The database's name for its type.
        type_name: String,
    },
    /// A value could not be decoded.
    #[error("database {database}: column {column:?}: cannot read value: {message}")]
    Decode {
        /// The `[database.NAME]`.
        database: String,
        /// The column.
        column: String,
        /// What went wrong.
        message: String,
    },
}

/// A configured source database, ready to run queries.
///
/// Cheap to clone and to share between tasks: a PostgreSQL source holds one
/// connection pool (created without connecting), a SQLite source only the path.
#[derive(Clone)]
pub struct Source {
    /// The `[database.NAME]`.
    name: Arc<str>,
    /// The driver behind it.
    backend: Backend,
}

/// The driver behind a [`Source`].
#[derive(Clone)]
enum Backend {
    /// PostgreSQL or Steampipe.
    Postgres(PgSource),
    /// A SQLite file.
    Sqlite(SqliteSource),
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may hold a password, so only the name and the kind are shown.
        f.debug_struct("Source")
            .field("name", &self.name)
            .field("kind", &self.kind())
            .finish()
    }
}

impl Source {
    /// Prepares a source for `[database.NAME]`; connects on first use.
    ///
    /// Fails only when the PostgreSQL URL cannot be parsed ([`SourceError::Connect`]).
    pub fn new(config: &DatabaseConfig) -> Result<Source, SourceError> {
        let backend = match &config.url {
            DatabaseUrl::Postgres(url) => Backend::Postgres(PgSource::new(config, url)?),
            DatabaseUrl::Sqlite(path) => Backend::Sqlite(SqliteSource::new(config, path.clone())),
        };
        Ok(Source {
            name: Arc::from(config.name.as_str()),
            backend,
        })
    }

    /// The `[database.NAME]` this source serves.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The kind of database: `"postgres"` or `"sqlite"`.
    pub fn kind(&self) -> &'static str {
        match self.backend {
            Backend::Postgres(_) => "postgres",
            Backend::Sqlite(_) => "sqlite",
        }
    }

    /// Runs `sql` and streams its rows.
    ///
    /// Errors found before the first row (connection, SQL, unsupported column
    /// types) come back here; later ones arrive as an `Err` item in the stream.
    pub async fn query(&self, sql: &str) -> Result<Rows, SourceError> {
        match &self.backend {
            Backend::Postgres(pg) => pg.query(sql).await,
            Backend::Sqlite(sqlite) => sqlite.query(sql).await,
        }
    }
}

/// A float as JSON; NaN and the infinities, which JSON lacks, become
/// `"NaN"`, `"Infinity"` and `"-Infinity"`.
pub(crate) fn float_to_json(value: f64) -> serde_json::Value {
    match serde_json::Number::from_f64(value) {
        Some(number) => serde_json::Value::Number(number),
        None if value.is_nan() => serde_json::Value::String("NaN".to_owned()),
        None if value > 0.0 => serde_json::Value::String("Infinity".to_owned()),
        None => serde_json::Value::String("-Infinity".to_owned()),
    }
}

/// A timeout for messages (`200ms`, `1m 30s`).
pub(crate) fn format_timeout(timeout: Duration) -> String {
    humantime::format_duration(timeout).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}

    #[test]
    fn source_is_shareable() {
        assert_send_sync::<Source>();
    }

    #[test]
    fn floats_without_json_counterparts() {
        assert_eq!(float_to_json(1.5), serde_json::json!(1.5));
        assert_eq!(float_to_json(f64::NAN), serde_json::json!("NaN"));
        assert_eq!(float_to_json(f64::INFINITY), serde_json::json!("Infinity"));
        assert_eq!(
            float_to_json(f64::NEG_INFINITY),
            serde_json::json!("-Infinity")
        );
    }

    #[test]
    fn timeouts_read_well() {
        assert_eq!(format_timeout(Duration::from_millis(200)), "200ms");
        assert_eq!(format_timeout(Duration::from_secs(60)), "1m");
    }
}
