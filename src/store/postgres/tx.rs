//! PostgreSQL's side of the dialect seam ([`crate::store::seam`]): each [`Value`] bound as
//! the type the server inferred for its parameter, each column read by its type; statements
//! are prepared once per connection.

use bytes::BytesMut;
use chrono::{DateTime, NaiveDateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use crate::store::StoreError;
use crate::store::seam::{Row, Tx, Value};

/// A pooled connection or a transaction on one, that a transition runs on.
pub(crate) struct PgTx<'c, C>(pub(crate) &'c C);

type BoxError = Box<dyn std::error::Error + Sync + Send>;

impl ToSql for Value {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(i) => match *ty {
                Type::INT2 => i16::try_from(*i)?.to_sql_checked(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql_checked(ty, out),
                Type::BOOL => (*i != 0).to_sql_checked(ty, out),
                _ => i.to_sql_checked(ty, out),
            },
            Value::Text(s) => match *ty {
                Type::JSON | Type::JSONB => {
                    serde_json::from_str::<serde_json::Value>(s)?.to_sql_checked(ty, out)
                }
                _ => s.to_sql_checked(ty, out),
            },
            // A time where the server saw only text (a parameter in `INSERT … SELECT $n`'s
            // list): sent as RFC 3339 text, which PostgreSQL casts on assignment.
            Value::Time(t) if *ty == Type::TEXT => t
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .to_sql_checked(ty, out),
            Value::Time(t) => t.to_sql_checked(ty, out),
            Value::Bool(b) => b.to_sql_checked(ty, out),
            Value::Bytes(b) => b.to_sql_checked(ty, out),
            Value::Float(f) => f.to_sql_checked(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// Column `i` of `r` as a [`Value`], by its type.
fn value(r: &tokio_postgres::Row, i: usize) -> Result<Value, tokio_postgres::Error> {
    let ty = r.columns()[i].type_().clone();
    Ok(match ty {
        Type::INT2 => r
            .try_get::<_, Option<i16>>(i)?
            .map(|v| Value::Int(v.into())),
        Type::INT4 => r
            .try_get::<_, Option<i32>>(i)?
            .map(|v| Value::Int(v.into())),
        Type::INT8 => r.try_get::<_, Option<i64>>(i)?.map(Value::Int),
        Type::BOOL => r.try_get::<_, Option<bool>>(i)?.map(Value::Bool),
        Type::BYTEA => r.try_get::<_, Option<Vec<u8>>>(i)?.map(Value::Bytes),
        Type::FLOAT4 => r
            .try_get::<_, Option<f32>>(i)?
            .map(|v| Value::Float(v.into())),
        Type::FLOAT8 => r.try_get::<_, Option<f64>>(i)?.map(Value::Float),
        Type::TIMESTAMPTZ => r.try_get::<_, Option<DateTime<Utc>>>(i)?.map(Value::Time),
        Type::TIMESTAMP => r
            .try_get::<_, Option<NaiveDateTime>>(i)?
            .map(|t| Value::Time(t.and_utc())),
        Type::JSON | Type::JSONB => r
            .try_get::<_, Option<serde_json::Value>>(i)?
            .map(|v| Value::Text(v.to_string())),
        _ => r.try_get::<_, Option<String>>(i)?.map(Value::Text),
    }
    .unwrap_or(Value::Null))
}

fn params(args: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    args.iter().map(|a| a as &(dyn ToSql + Sync)).collect()
}

impl<C: GenericClient + Sync> Tx for PgTx<'_, C> {
    const FOR_UPDATE: &'static str = "FOR UPDATE";
    const SKIP_LOCKED: &'static str = "FOR UPDATE SKIP LOCKED";

    async fn execute(&mut self, sql: &str, args: &[Value]) -> Result<u64, StoreError> {
        let stmt = self.0.prepare_cached(sql).await?;
        Ok(self.0.execute(&stmt, &params(args)).await?)
    }

    async fn query(&mut self, sql: &str, args: &[Value]) -> Result<Vec<Row>, StoreError> {
        let stmt = self.0.prepare_cached(sql).await?;
        let rows = self.0.query(&stmt, &params(args)).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let row = (0..r.len())
                .map(|i| value(r, i))
                .collect::<Result<_, _>>()?;
            out.push(Row(row));
        }
        Ok(out)
    }
}
