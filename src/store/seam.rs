//! The dialect seam: what a transition needs of a backend, so that each is written once.
//!
//! A transition is an `async fn` generic over [`Tx`], in `store/ops/`. Its SQL uses
//! PostgreSQL's `$1, $2, …` placeholders (SQLite's backend binds them as `?1, ?2, …`, by
//! number), `RETURNING` (both have it), and [`Tx::FOR_UPDATE`] / [`Tx::SKIP_LOCKED`] where
//! PostgreSQL must lock rows (SQLite's write transaction already holds the whole store).
//! Parameters are [`Value`]s, bound as each backend stores them (a time: `timestamptz` in
//! PostgreSQL, RFC 3339 text with microseconds in SQLite); rows come back as [`Row`]s read
//! by column index. What stays per backend: opening a transaction, announcing work, and a
//! run's bulk commit (findings and their audit entries, where the benchmarks live).

use chrono::{DateTime, Utc};

use super::StoreError;

/// A parameter or a column value, as both backends can carry it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// SQL `NULL`.
    Null,
    /// Any integer column (PostgreSQL's `int2`/`int4`/`int8`; SQLite's `INTEGER`).
    Int(i64),
    /// Text.
    Text(String),
    /// A time (PostgreSQL's `timestamptz`; SQLite stores text, read back through [`Row::get`]).
    Time(DateTime<Utc>),
    /// A boolean (SQLite: 0 or 1).
    Bool(bool),
    /// Bytes.
    Bytes(Vec<u8>),
    /// A floating-point number.
    Float(f64),
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}

impl From<i32> for Value {
    fn from(v: i32) -> Value {
        Value::Int(i64::from(v))
    }
}

/// A count (a `LIMIT`), as an integer; one past `i64::MAX` reads as `i64::MAX`: no limit.
impl From<usize> for Value {
    fn from(v: usize) -> Value {
        Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Bool(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_string())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Value {
        Value::Text(v.clone())
    }
}

impl From<DateTime<Utc>> for Value {
    fn from(v: DateTime<Utc>) -> Value {
        Value::Time(v)
    }
}

impl From<&DateTime<Utc>> for Value {
    fn from(v: &DateTime<Utc>) -> Value {
        Value::Time(*v)
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Value {
        Value::Bytes(v)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

impl<T: Clone + Into<Value>> From<&Option<T>> for Value {
    fn from(v: &Option<T>) -> Value {
        v.clone().map_or(Value::Null, Into::into)
    }
}

/// The parameters of a statement: `args![a, b, …]` is `[Value::from(a), Value::from(b), …]`.
macro_rules! args {
    ($($v:expr),* $(,)?) => {
        [$($crate::store::seam::Value::from($v)),*]
    };
}
pub(crate) use args;

/// One row of a result, read by column index.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row(pub(crate) Vec<Value>);

impl Row {
    /// Column `i` as a `T`; a column of another type is [`StoreError::Corrupt`].
    pub(crate) fn get<T: FromValue>(&self, i: usize) -> Result<T, StoreError> {
        let v = self
            .0
            .get(i)
            .ok_or_else(|| StoreError::Corrupt(format!("no column {i} in a row")))?;
        T::from_value(v).ok_or_else(|| StoreError::Corrupt(format!("column {i}: {v:?}")))
    }
}

/// A Rust type a [`Value`] can be read as.
pub(crate) trait FromValue: Sized {
    /// `v` as `Self`, if it is one.
    fn from_value(v: &Value) -> Option<Self>;
}

impl FromValue for i64 {
    fn from_value(v: &Value) -> Option<i64> {
        match v {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }
}

impl FromValue for i32 {
    fn from_value(v: &Value) -> Option<i32> {
        i64::from_value(v).and_then(|i| i32::try_from(i).ok())
    }
}

impl FromValue for bool {
    fn from_value(v: &Value) -> Option<bool> {
        match v {
            Value::Bool(b) => Some(*b),
            Value::Int(i) => Some(*i != 0),
            _ => None,
        }
    }
}

impl FromValue for String {
    fn from_value(v: &Value) -> Option<String> {
        match v {
            Value::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}

impl FromValue for Vec<u8> {
    fn from_value(v: &Value) -> Option<Vec<u8>> {
        match v {
            Value::Bytes(b) => Some(b.clone()),
            _ => None,
        }
    }
}

impl FromValue for f64 {
    fn from_value(v: &Value) -> Option<f64> {
        match v {
            Value::Float(f) => Some(*f),
            // Precision is not a concern for the counts and durations read this way.
            #[allow(clippy::cast_precision_loss)]
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }
}

impl FromValue for DateTime<Utc> {
    fn from_value(v: &Value) -> Option<DateTime<Utc>> {
        match v {
            Value::Time(t) => Some(*t),
            Value::Text(s) => DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
            _ => None,
        }
    }
}

impl FromValue for Value {
    fn from_value(v: &Value) -> Option<Value> {
        Some(v.clone())
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value) -> Option<Option<T>> {
        match v {
            Value::Null => Some(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// A connection or transaction of one backend: what every transition is written against.
///
/// The futures are `Send` when the backend's are (PostgreSQL's); SQLite's run to completion
/// at once, on the blocking thread holding its connection.
#[allow(async_fn_in_trait)]
pub(crate) trait Tx {
    /// `FOR UPDATE` where rows must be locked for the transaction (empty in SQLite, whose
    /// write transaction holds the whole store).
    const FOR_UPDATE: &'static str;

    /// `FOR UPDATE SKIP LOCKED`: a claim passes over rows another transaction holds (empty
    /// in SQLite, which serializes writers).
    const SKIP_LOCKED: &'static str;

    /// Runs a statement; returns how many rows it changed.
    async fn execute(&mut self, sql: &str, args: &[Value]) -> Result<u64, StoreError>;

    /// Runs a query (or a statement with `RETURNING`); returns its rows.
    async fn query(&mut self, sql: &str, args: &[Value]) -> Result<Vec<Row>, StoreError>;

    /// The first row of a query, if any.
    async fn query_opt(&mut self, sql: &str, args: &[Value]) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, args).await?.into_iter().next())
    }

    /// The one row of a query; none is [`StoreError::Corrupt`].
    async fn query_one(&mut self, sql: &str, args: &[Value]) -> Result<Row, StoreError> {
        self.query_opt(sql, args)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("no row from {sql}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_read_as_either_backend_returns_them() {
        let t = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.000006Z")
            .map(|t| t.with_timezone(&Utc))
            .expect("time");
        let row = Row(vec![
            Value::Int(1),
            Value::Text("2026-01-02T03:04:05.000006Z".into()),
            Value::Time(t),
            Value::Null,
            Value::Int(1),
        ]);
        assert_eq!(row.get::<i64>(0).ok(), Some(1));
        assert_eq!(row.get::<DateTime<Utc>>(1).ok(), Some(t));
        assert_eq!(row.get::<DateTime<Utc>>(2).ok(), Some(t));
        assert_eq!(row.get::<Option<String>>(3).ok(), Some(None));
        assert_eq!(row.get::<bool>(4).ok(), Some(true));
        assert!(row.get::<String>(0).is_err());
    }
}
