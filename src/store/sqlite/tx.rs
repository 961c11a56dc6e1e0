//! SQLite's side of the dialect seam ([`crate::store::seam`]): `$n` bound as `?n`, times as
//! RFC 3339 text, every statement prepared once and cached.

use std::borrow::Cow;
use std::future::Future;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, params_from_iter};

use super::ts;
use crate::store::StoreError;
use crate::store::seam::{Row, Tx, Value};

/// The connection (or its open transaction) a transition runs on.
pub(crate) struct LiteTx<'c> {
    conn: &'c Connection,
}

impl<'c> LiteTx<'c> {
    /// Transitions on `conn` (a `Transaction` derefs to its connection).
    pub(crate) fn new(conn: &'c Connection) -> LiteTx<'c> {
        LiteTx { conn }
    }
}

/// The result of `f`, a transition over the seam on SQLite, which runs to its end at once:
/// none of SQLite's calls waits (the thread holds the connection).
pub(crate) fn done<T>(f: impl Future<Output = T>) -> T {
    futures::executor::block_on(f)
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Owned(rusqlite::types::Value::Null),
            Value::Int(i) => ToSqlOutput::from(*i),
            Value::Text(s) => ToSqlOutput::from(s.as_str()),
            Value::Time(t) => ToSqlOutput::from(ts(t)),
            Value::Bool(b) => ToSqlOutput::from(*b),
            Value::Bytes(b) => ToSqlOutput::from(b.as_slice()),
            Value::Float(f) => ToSqlOutput::from(*f),
        })
    }
}

/// `sql` with PostgreSQL's `$n` placeholders as SQLite's `?n` (bound by number, so a
/// statement may use them in any order); quoted text is left alone.
fn numbered(sql: &str) -> Cow<'_, str> {
    if !sql.contains('$') {
        return Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' {
            quoted = !quoted;
        }
        if c == '$' && !quoted && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn value(v: ValueRef<'_>) -> Result<Value, StoreError> {
    Ok(match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(f) => Value::Float(f),
        ValueRef::Text(t) => Value::Text(
            std::str::from_utf8(t)
                .map_err(|e| StoreError::Corrupt(format!("text column: {e}")))?
                .to_string(),
        ),
        ValueRef::Blob(b) => Value::Bytes(b.to_vec()),
    })
}

impl Tx for LiteTx<'_> {
    const FOR_UPDATE: &'static str = "";
    const SKIP_LOCKED: &'static str = "";

    async fn execute(&mut self, sql: &str, args: &[Value]) -> Result<u64, StoreError> {
        let mut stmt = self.conn.prepare_cached(&numbered(sql))?;
        let n = stmt.execute(params_from_iter(args))?;
        Ok(u64::try_from(n).unwrap_or(u64::MAX))
    }

    async fn query(&mut self, sql: &str, args: &[Value]) -> Result<Vec<Row>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&numbered(sql))?;
        let columns = stmt.column_count();
        let mut rows = stmt.query(params_from_iter(args))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let mut row = Vec::with_capacity(columns);
            for i in 0..columns {
                row.push(value(r.get_ref(i)?)?);
            }
            out.push(Row(row));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::numbered;

    #[test]
    fn placeholders_become_numbered_outside_quotes() {
        assert_eq!(
            numbered("UPDATE t SET a = $2, b = 'x$1' WHERE id = $1"),
            "UPDATE t SET a = ?2, b = 'x$1' WHERE id = ?1"
        );
    }
}
