//! PostgreSQL and Steampipe through tokio-postgres and a deadpool-postgres pool.

use std::fmt::Write as _;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use futures::Stream;
use tokio_postgres::error::{ErrorPosition, SqlState};
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, RowStream};

use super::pg_value::RowDecoder;
use super::{Row, Rows, SourceError, format_timeout};
use crate::config::DatabaseConfig;

/// How long to wait for a TCP connection when the URL does not say (`connect_timeout`).
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Extra time, beyond the TCP connect timeout, for the startup handshake.
const HANDSHAKE_ALLOWANCE: Duration = Duration::from_secs(5);

/// What every query and row stream of one source needs to report errors.
#[derive(Debug)]
struct PgContext {
    /// The `[database.NAME]`.
    database: String,
    /// Where it connects, without the password (`user@host:port/db`).
    target: String,
    /// Per-query time limit.
    statement_timeout: Option<Duration>,
}

impl PgContext {
    /// A [`SourceError::Connect`].
    fn connect_error(&self, message: impl std::fmt::Display) -> SourceError {
        SourceError::Connect {
            database: self.database.clone(),
            message: format!("{}: {message}", self.target),
        }
    }

    /// A pool checkout failure, as [`SourceError::Connect`], with what to check.
    fn pool_error(&self, error: PoolError) -> SourceError {
        let database = &self.database;
        match error {
            PoolError::Backend(e) => {
                let fix = match e.code() {
                    Some(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION)
                    | Some(&SqlState::INVALID_PASSWORD) => {
                        format!("check the user and password in the url of [database.{database}]")
                    }
                    Some(&SqlState::INVALID_CATALOG_NAME) => {
                        format!("check the database name in the url of [database.{database}]")
                    }
                    Some(_) => format!("check the url of [database.{database}]"),
                    None => format!(
                        "is the server running, and is the url of [database.{database}] right?"
                    ),
                };
                self.connect_error(format!("{}; {fix}", driver_message(&e)))
            }
            PoolError::Timeout(_) => self.connect_error(format!(
                "timed out connecting; is the server running, and is the url of [database.{database}] right?"
            )),
            other => self.connect_error(other),
        }
    }

    /// A driver error while running a query: a timeout, a lost connection, or a query error.
    fn query_error(&self, error: &tokio_postgres::Error) -> SourceError {
        if let (Some(&SqlState::QUERY_CANCELED), Some(timeout)) =
            (error.code(), self.statement_timeout)
        {
            return SourceError::Timeout {
                database: self.database.clone(),
                timeout: format_timeout(timeout),
            };
        }
        if error.is_closed() {
            return self.connect_error(driver_message(error));
        }
        SourceError::Query {
            database: self.database.clone(),
            message: driver_message(error),
        }
    }
}

/// A driver error as a one-line message; server errors carry severity, SQLSTATE,
/// position, detail and hint.
fn driver_message(error: &tokio_postgres::Error) -> String {
    let Some(db) = error.as_db_error() else {
        // tokio-postgres says only "error connecting to server"; the reason is underneath.
        return crate::cause::network(error).unwrap_or_else(|| crate::cause::summary(error));
    };
    let mut message = format!(
        "{}: {} (SQLSTATE {})",
        db.severity(),
        db.message(),
        db.code().code()
    );
    if let Some(ErrorPosition::Original(position)) = db.position() {
        let _ = write!(message, " at character {position}");
    }
    if let Some(detail) = db.detail() {
        let _ = write!(message, "; DETAIL: {detail}");
    }
    if let Some(hint) = db.hint() {
        let _ = write!(message, "; HINT: {hint}");
    }
    message
}

/// `user@host:port/dbname`, for messages; never includes the password.
fn describe_target(config: &tokio_postgres::Config) -> String {
    let hosts = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let host = match host {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            };
            match config.get_ports().get(i).or(config.get_ports().first()) {
                Some(port) => format!("{host}:{port}"),
                None => host,
            }
        })
        .collect::<Vec<_>>()
        .join(",");
    let user = config
        .get_user()
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    let dbname = config
        .get_dbname()
        .map(|d| format!("/{d}"))
        .unwrap_or_default();
    format!("postgres://{user}{hosts}{dbname}")
}

/// A PostgreSQL or Steampipe source: one pool, created without connecting.
#[derive(Clone)]
pub(crate) struct PgSource {
    /// Names and limits for errors.
    context: Arc<PgContext>,
    /// Connections, at most `max_connections`.
    pool: Pool,
}

impl std::fmt::Debug for PgSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSource")
            .field("database", &self.context.database)
            .field("target", &self.context.target)
            .finish_non_exhaustive()
    }
}

impl PgSource {
    /// Parses `url` and builds the pool; nothing connects yet.
    pub(crate) fn new(config: &DatabaseConfig, url: &str) -> Result<PgSource, SourceError> {
        let mut pg_config =
            tokio_postgres::Config::from_str(url).map_err(|e| SourceError::Connect {
                database: config.name.clone(),
                message: format!("invalid PostgreSQL URL: {e}"),
            })?;
        let connect_timeout = *pg_config
            .get_connect_timeout()
            .unwrap_or(&DEFAULT_CONNECT_TIMEOUT);
        pg_config.connect_timeout(connect_timeout);
        let context = Arc::new(PgContext {
            database: config.name.clone(),
            target: describe_target(&pg_config),
            statement_timeout: config.statement_timeout,
        });
        let manager = Manager::from_config(
            pg_config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.max_connections.max(1))
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(connect_timeout + HANDSHAKE_ALLOWANCE))
            .build()
            .map_err(|e| context.connect_error(e))?;
        Ok(PgSource { context, pool })
    }

    /// Checks out a connection, sets the timeout, prepares `sql` and starts streaming.
    pub(crate) async fn query(&self, sql: &str) -> Result<Rows, SourceError> {
        let context = &self.context;
        let client = self.pool.get().await.map_err(|e| context.pool_error(e))?;
        let timeout_ms = context
            .statement_timeout
            .map_or(0, |t| t.as_millis().max(1));
        client
            .batch_execute(&format!("SET statement_timeout = {timeout_ms}"))
            .await
            .map_err(|e| context.query_error(&e))?;
        let statement = client
            .prepare(sql)
            .await
            .map_err(|e| context.query_error(&e))?;
        let decoder = RowDecoder::new(&context.database, statement.columns())?;
        let rows = client
            .query_raw(&statement, std::iter::empty::<&(dyn ToSql + Sync)>())
            .await
            .map_err(|e| context.query_error(&e))?;
        Ok(Rows {
            columns: decoder.columns().to_vec(),
            stream: Box::pin(PgRowStream {
                rows: Box::pin(rows),
                client: Some(client),
                context: Arc::clone(context),
                decoder,
                server_done: false,
                failed: false,
            }),
        })
    }
}

/// Rows of one query, converted as they arrive; owns its pooled connection.
struct PgRowStream {
    /// The driver's stream.
    rows: Pin<Box<RowStream>>,
    /// The connection the rows come over; back to the pool when dropped.
    client: Option<Object>,
    /// For errors.
    context: Arc<PgContext>,
    /// One converter per column.
    decoder: RowDecoder,
    /// The server has sent everything (or an error): the connection is idle again.
    server_done: bool,
    /// An error was yielded; the stream ends.
    failed: bool,
}

impl Stream for PgRowStream {
    type Item = Result<Row, SourceError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.server_done || self.failed {
            return Poll::Ready(None);
        }
        let item = match ready!(self.rows.as_mut().poll_next(cx)) {
            None => {
                self.server_done = true;
                return Poll::Ready(None);
            }
            Some(Err(e)) => {
                self.server_done = true;
                Err(self.context.query_error(&e))
            }
            Some(Ok(row)) => self.decoder.decode(&row),
        };
        self.failed = item.is_err();
        Poll::Ready(Some(item))
    }
}

impl Drop for PgRowStream {
    /// A stream dropped before the server finished still has a query running on
    /// its connection: the connection is closed (not pooled), which ends the query.
    fn drop(&mut self) {
        if !self.server_done
            && let Some(client) = self.client.take()
        {
            drop(Object::take(client));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_has_no_password() {
        let config =
            tokio_postgres::Config::from_str("postgres://alice:secret@db.example:6432/app")
                .unwrap();
        assert_eq!(
            describe_target(&config),
            "postgres://alice@db.example:6432/app"
        );
    }
}
