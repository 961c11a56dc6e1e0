//! Runs a user's SQL against a source database and streams the rows as JSON values.
//!
//! PostgreSQL (and Steampipe, which speaks its protocol) goes through
//! tokio-postgres with one deadpool-postgres pool per `[database.NAME]`;
//! SQLite goes through rusqlite on a blocking thread. Either way rows arrive
//! one at a time as a stream, already converted to JSON as interface.md
//! section 3 says, so nothing holds a whole result set.

use futures::stream::BoxStream;

use crate::config::DatabaseConfig;

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

/// A configured source database, ready to run queries (pools are created lazily).
pub struct Source {
    /// Placeholder until the implementation lands.
    _config: DatabaseConfig,
}

impl Source {
    /// Prepares a source for `[database.NAME]`; connects on first use.
    pub fn new(config: &DatabaseConfig) -> Result<Source, SourceError> {
        let _ = config;
        todo!()
    }

    /// The `[database.NAME]` this source serves.
    pub fn name(&self) -> &str {
        todo!()
    }

    /// Runs `sql` and streams its rows.
    pub async fn query(&self, sql: &str) -> Result<Rows, SourceError> {
        let _ = sql;
        todo!()
    }
}
