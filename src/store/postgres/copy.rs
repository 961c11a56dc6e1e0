//! Binary `COPY … FROM STDIN` into PostgreSQL, the rows encoded into large pieces.
//!
//! tokio-postgres' `BinaryCopyInWriter` hands its sink a piece every 4 KiB and waits until
//! the connection's task has taken it: a 900,000-finding first run sends about 500 MB, so
//! some 130,000 hand-overs between two threads (vigilo's system time 1.8-2.1 s of such a
//! run). [`CopyWriter`] writes the same format (PostgreSQL's "Binary Format" of `COPY`) and
//! hands over [`PIECE`] bytes at a time (0.46 s). In that run the server's backend still
//! waited on vigilo for a third of the commit, most of it between one `COPY` and the next:
//! [`ROWS_PER_COPY`] sets how many new findings, and audit entries, go in one.

use std::pin::Pin;

use bytes::{BufMut, Bytes, BytesMut};
use deadpool_postgres::Transaction;
use futures::SinkExt;
use tokio_postgres::CopyInSink;
use tokio_postgres::types::{IsNull, ToSql, Type};

use crate::store::StoreError;

/// How many encoded bytes [`CopyWriter`] gathers before it hands them to the connection
/// (64 KiB and 256 KiB were alike, 64 KiB a little ahead in two rounds).
const PIECE: usize = 64 * 1024;

/// How many new findings, and how many finding audit entries, one `COPY` carries.
///
/// A 900,000-finding first run alternating 5,000 and 50,000 a `COPY` on this project's
/// benchmark machine: commit 8.8-10.9 s against 6.9-8.2 s. Each `COPY` costs the server
/// milliseconds to begin and end, with nothing to do while the client starts the next.
/// Beyond 50,000 (200,000; all in one) the commit was no faster and a batch's rows and
/// entries held more memory (peak 360 MB, 500 MB, 735 MB).
pub(super) const ROWS_PER_COPY: usize = 50_000;

/// The binary format's signature, then flags and header extension length (both zero).
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// Rows being copied into one table in binary format, inside a transaction.
pub(super) struct CopyWriter {
    sink: Pin<Box<CopyInSink<Bytes>>>,
    types: &'static [Type],
    buf: BytesMut,
}

impl CopyWriter {
    /// Starts `copy` (`COPY table (columns) FROM STDIN (FORMAT binary)`), whose columns
    /// have `types`, in `tx`.
    pub(super) async fn start(
        tx: &Transaction<'_>,
        copy: &str,
        types: &'static [Type],
    ) -> Result<CopyWriter, StoreError> {
        let statement = tx.prepare_cached(copy).await?;
        let sink = tx.copy_in(&statement).await?;
        let mut buf = BytesMut::with_capacity(PIECE + PIECE / 4);
        buf.put_slice(HEADER);
        Ok(CopyWriter {
            sink: Box::pin(sink),
            types,
            buf,
        })
    }

    /// Adds one row: a value for each column, in order.
    pub(super) async fn write(&mut self, values: &[&(dyn ToSql + Sync)]) -> Result<(), StoreError> {
        if values.len() != self.types.len() {
            return Err(StoreError::Database(format!(
                "COPY: a row of {} values for {} columns",
                values.len(),
                self.types.len()
            )));
        }
        // The column count fits: the callers' tables have a dozen columns at most.
        self.buf.put_i16(values.len() as i16);
        for (i, (value, ty)) in values.iter().zip(self.types).enumerate() {
            let at = self.buf.len();
            self.buf.put_i32(0);
            let len = match value.to_sql_checked(ty, &mut self.buf) {
                Ok(IsNull::Yes) => -1,
                Ok(IsNull::No) => i32::try_from(self.buf.len() - at - 4).map_err(|_| {
                    StoreError::Database(format!("COPY: column {} holds over 2 GiB", i + 1))
                })?,
                Err(e) => {
                    return Err(StoreError::Database(format!("COPY: column {}: {e}", i + 1)));
                }
            };
            self.buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
        }
        if self.buf.len() >= PIECE {
            let piece = self.buf.split().freeze();
            self.sink.as_mut().send(piece).await?;
        }
        Ok(())
    }

    /// Ends the data and waits for the server; returns how many rows it copied.
    pub(super) async fn finish(mut self) -> Result<u64, StoreError> {
        self.buf.put_i16(-1);
        let rest = self.buf.split().freeze();
        self.sink.as_mut().send(rest).await?;
        Ok(self.sink.as_mut().finish().await?)
    }
}
