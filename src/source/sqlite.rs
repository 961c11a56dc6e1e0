//! SQLite through rusqlite, on a blocking thread; rows cross over in small batches.

use std::mem;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::Stream;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::{Row, Rows, SourceError, float_to_json, format_timeout};
use crate::config::DatabaseConfig;

/// Rows per batch sent from the blocking thread.
const BATCH_ROWS: usize = 256;

/// Batches in flight between the blocking thread and the stream.
const CHANNEL_BATCHES: usize = 4;

/// SQLite virtual-machine steps between two deadline checks.
const PROGRESS_STEPS: i32 = 1_000;

/// What the blocking thread sends: a batch of rows, or the error that ended the query.
type Batch = Result<Vec<Row>, SourceError>;

/// A SQLite file, opened read-only for each query.
#[derive(Debug, Clone)]
pub(crate) struct SqliteSource {
    /// The `[database.NAME]`.
    database: Arc<str>,
    /// The file.
    path: Arc<PathBuf>,
    /// Per-query time limit.
    statement_timeout: Option<Duration>,
}

impl SqliteSource {
    /// Remembers where the file is; it is opened on each query.
    pub(crate) fn new(config: &DatabaseConfig, path: PathBuf) -> SqliteSource {
        SqliteSource {
            database: Arc::from(config.name.as_str()),
            path: Arc::new(path),
            statement_timeout: config.statement_timeout,
        }
    }

    /// Runs `sql` on a blocking thread; returns once the columns are known.
    pub(crate) async fn query(&self, sql: &str) -> Result<Rows, SourceError> {
        let (columns_tx, columns_rx) = oneshot::channel();
        let (rows_tx, rows_rx) = mpsc::channel(CHANNEL_BATCHES);
        let job = Job {
            source: self.clone(),
            sql: sql.to_owned(),
            timed_out: Arc::new(AtomicBool::new(false)),
        };
        tokio::task::spawn_blocking(move || job.run(columns_tx, rows_tx));
        let columns = columns_rx.await.map_err(|_| SourceError::Query {
            database: self.database.to_string(),
            message: "the SQLite worker thread stopped unexpectedly".to_owned(),
        })??;
        Ok(Rows {
            columns,
            stream: Box::pin(SqliteRowStream {
                rows: rows_rx,
                batch: Vec::new().into_iter(),
                failed: false,
            }),
        })
    }
}

/// One query, run on a blocking thread.
struct Job {
    /// Where and what limits.
    source: SqliteSource,
    /// The statement.
    sql: String,
    /// Set by the progress handler when the deadline passes.
    timed_out: Arc<AtomicBool>,
}

impl Job {
    /// Opens, prepares, reports the columns, then sends the rows in batches.
    fn run(
        self,
        columns_tx: oneshot::Sender<Result<Vec<String>, SourceError>>,
        rows_tx: mpsc::Sender<Batch>,
    ) {
        let mut connection = match self.open() {
            Ok(connection) => connection,
            Err(e) => {
                let _ = columns_tx.send(Err(e));
                return;
            }
        };
        if let Err(e) = self.limit_time(&mut connection) {
            let _ = columns_tx.send(Err(e));
            return;
        }
        let mut statement = match connection.prepare(&self.sql) {
            Ok(statement) => statement,
            Err(e) => {
                let _ = columns_tx.send(Err(self.query_error(&e)));
                return;
            }
        };
        let columns: Vec<String> = statement.column_names().map(str::to_owned).collect();
        if columns_tx.send(Ok(columns.clone())).is_err() {
            return;
        }
        if let Err(e) = self.send_rows(&mut statement, &columns, &rows_tx) {
            let _ = rows_tx.blocking_send(Err(e));
        }
    }

    /// Opens the file read-only; a missing file is a connection error naming it.
    fn open(&self) -> Result<Connection, SourceError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        Connection::open_with_flags(self.source.path.as_path(), flags).map_err(|e| {
            SourceError::Connect {
                database: self.source.database.to_string(),
                message: format!("{}: {e}", self.source.path.display()),
            }
        })
    }

    /// Interrupts the statement once `statement_timeout` has passed.
    fn limit_time(&self, connection: &mut Connection) -> Result<(), SourceError> {
        let Some(timeout) = self.source.statement_timeout else {
            return Ok(());
        };
        let deadline = Instant::now() + timeout;
        let timed_out = Arc::clone(&self.timed_out);
        connection
            .progress_handler(
                PROGRESS_STEPS,
                Some(move || {
                    let expired = Instant::now() >= deadline;
                    if expired {
                        timed_out.store(true, Ordering::Relaxed);
                    }
                    expired
                }),
            )
            .map_err(|e| self.query_error(&e))
    }

    /// Steps through the rows, sending full batches; stops early if nobody listens.
    fn send_rows(
        &self,
        statement: &mut rusqlite::Statement<'_>,
        columns: &[String],
        rows_tx: &mpsc::Sender<Batch>,
    ) -> Result<(), SourceError> {
        let mut rows = statement.query([]).map_err(|e| self.query_error(&e))?;
        let mut batch = Vec::with_capacity(BATCH_ROWS);
        loop {
            let row = match rows.next() {
                Ok(Some(row)) => row,
                Ok(None) => break,
                Err(e) => {
                    self.flush(&mut batch, rows_tx);
                    return Err(self.query_error(&e));
                }
            };
            batch.push(self.convert_row(row, columns)?);
            if batch.len() == BATCH_ROWS && !self.flush(&mut batch, rows_tx) {
                return Ok(());
            }
        }
        self.flush(&mut batch, rows_tx);
        Ok(())
    }

    /// Sends the batch if it has rows; `false` when the receiver is gone.
    fn flush(&self, batch: &mut Vec<Row>, rows_tx: &mpsc::Sender<Batch>) -> bool {
        if batch.is_empty() {
            return true;
        }
        let full = mem::replace(batch, Vec::with_capacity(BATCH_ROWS));
        rows_tx.blocking_send(Ok(full)).is_ok()
    }

    /// One row, by storage class.
    fn convert_row(&self, row: &rusqlite::Row<'_>, columns: &[String]) -> Result<Row, SourceError> {
        (0..columns.len())
            .map(|index| {
                row.get_ref(index)
                    .map(value_to_json)
                    .map_err(|e| SourceError::Decode {
                        database: self.source.database.to_string(),
                        column: columns[index].clone(),
                        message: e.to_string(),
                    })
            })
            .collect()
    }

    /// A SQLite error: a timeout if the deadline interrupted it, else a query error.
    fn query_error(&self, error: &rusqlite::Error) -> SourceError {
        let interrupted =
            error.sqlite_error_code() == Some(rusqlite::ErrorCode::OperationInterrupted);
        match self.source.statement_timeout {
            Some(timeout) if interrupted && self.timed_out.load(Ordering::Relaxed) => {
                SourceError::Timeout {
                    database: self.source.database.to_string(),
                    timeout: format_timeout(timeout),
                }
            }
            _ => SourceError::Query {
                database: self.source.database.to_string(),
                message: error.to_string(),
            },
        }
    }
}

/// A SQLite value by storage class; invalid UTF-8 in TEXT is replaced, not fatal.
fn value_to_json(value: ValueRef<'_>) -> Value {
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::from(i),
        ValueRef::Real(f) => float_to_json(f),
        ValueRef::Text(bytes) => Value::String(String::from_utf8_lossy(bytes).into_owned()),
        ValueRef::Blob(bytes) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
    }
}

/// The async side: batches from the channel, flattened into rows.
struct SqliteRowStream {
    /// Batches from the blocking thread; dropping this stops it.
    rows: mpsc::Receiver<Batch>,
    /// The rest of the current batch.
    batch: std::vec::IntoIter<Row>,
    /// An error was yielded; the stream ends.
    failed: bool,
}

impl Stream for SqliteRowStream {
    type Item = Result<Row, SourceError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if self.failed {
                return Poll::Ready(None);
            }
            if let Some(row) = self.batch.next() {
                return Poll::Ready(Some(Ok(row)));
            }
            match self.rows.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some(Ok(batch))) => self.batch = batch.into_iter(),
                Poll::Ready(Some(Err(e))) => {
                    self.failed = true;
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn storage_classes() {
        assert_eq!(value_to_json(ValueRef::Null), Value::Null);
        assert_eq!(value_to_json(ValueRef::Integer(-7)), json!(-7));
        assert_eq!(value_to_json(ValueRef::Real(2.5)), json!(2.5));
        assert_eq!(
            value_to_json(ValueRef::Real(f64::INFINITY)),
            json!("Infinity")
        );
        assert_eq!(value_to_json(ValueRef::Text(b"hi")), json!("hi"));
        assert_eq!(
            value_to_json(ValueRef::Blob(&[0xde, 0xad, 0xbe, 0xef])),
            json!("3q2+7w==")
        );
    }
}
