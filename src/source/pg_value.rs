//! PostgreSQL values (binary wire format) to JSON.
//!
//! A [`Converter`] is chosen once per column from the statement's column type
//! ([`Converter::for_type`]); each row then only dispatches on that enum and
//! decodes the raw bytes, so per-row work stays cheap.

use std::error::Error;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use base64::Engine as _;
use chrono::{DateTime, SecondsFormat};
use postgres_types::{FromSql, Kind, Type};
use serde_json::Value;

use super::{Row, SourceError, float_to_json};

/// Seconds between the Unix epoch and PostgreSQL's (2000-01-01T00:00:00Z).
const PG_EPOCH_UNIX_SECS: i64 = 946_684_800;

/// Days from 0001-01-01 (day 1 of the common era) to 2000-01-01.
const PG_EPOCH_DAYS_FROM_CE: i32 = 730_120;

/// Microseconds in one second.
const MICROS_PER_SEC: i64 = 1_000_000;

/// Built-in type OIDs vigilo converts (see `pg_type.dat`).
mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const OID: u32 = 26;
    pub const JSON: u32 = 114;
    pub const CIDR: u32 = 650;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const INET: u32 = 869;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIME: u32 = 1083;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const NUMERIC: u32 = 1700;
    pub const VOID: u32 = 2278;
    pub const UUID: u32 = 2950;
    pub const JSONB: u32 = 3802;
}

/// A scalar PostgreSQL type vigilo can turn into JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scalar {
    /// `bool`.
    Bool,
    /// `int2`.
    Int2,
    /// `int4`.
    Int4,
    /// `int8`.
    Int8,
    /// `oid`.
    Oid,
    /// `float4`.
    Float4,
    /// `float8`.
    Float8,
    /// `numeric`.
    Numeric,
    /// `text`, `varchar`, `bpchar`, `name`, `citext`.
    Text,
    /// `timestamptz`.
    Timestamptz,
    /// `timestamp` (read as UTC).
    Timestamp,
    /// `date`.
    Date,
    /// `time`.
    Time,
    /// `json`.
    Json,
    /// `jsonb`.
    Jsonb,
    /// `uuid`.
    Uuid,
    /// `inet`.
    Inet,
    /// `cidr`.
    Cidr,
    /// `bytea`.
    Bytea,
    /// `void` (what `select pg_sleep(1)` returns): always `null`.
    Void,
}

impl Scalar {
    /// The converter for a scalar type, looking through domains.
    fn for_type(ty: &Type) -> Option<Scalar> {
        match ty.kind() {
            Kind::Domain(base) => Scalar::for_type(base),
            Kind::Simple | Kind::Pseudo => {
                Scalar::for_oid(ty.oid()).or_else(|| Scalar::for_extension(ty))
            }
            _ => None,
        }
    }

    /// Built-in types, by OID.
    fn for_oid(type_oid: u32) -> Option<Scalar> {
        let scalar = match type_oid {
            oid::BOOL => Scalar::Bool,
            oid::INT2 => Scalar::Int2,
            oid::INT4 => Scalar::Int4,
            oid::INT8 => Scalar::Int8,
            oid::OID => Scalar::Oid,
            oid::FLOAT4 => Scalar::Float4,
            oid::FLOAT8 => Scalar::Float8,
            oid::NUMERIC => Scalar::Numeric,
            oid::TEXT | oid::VARCHAR | oid::BPCHAR | oid::NAME => Scalar::Text,
            oid::TIMESTAMPTZ => Scalar::Timestamptz,
            oid::TIMESTAMP => Scalar::Timestamp,
            oid::DATE => Scalar::Date,
            oid::TIME => Scalar::Time,
            oid::JSON => Scalar::Json,
            oid::JSONB => Scalar::Jsonb,
            oid::UUID => Scalar::Uuid,
            oid::INET => Scalar::Inet,
            oid::CIDR => Scalar::Cidr,
            oid::BYTEA => Scalar::Bytea,
            oid::VOID => Scalar::Void,
            _ => return None,
        };
        Some(scalar)
    }

    /// Types from extensions, which have no fixed OID.
    fn for_extension(ty: &Type) -> Option<Scalar> {
        (ty.name() == "citext").then_some(Scalar::Text)
    }

    /// Decodes one non-NULL value.
    fn to_json(self, raw: &[u8]) -> Result<Value, String> {
        match self {
            Scalar::Bool => Ok(Value::Bool(read::<1>(raw)?[0] != 0)),
            Scalar::Int2 => Ok(i16::from_be_bytes(read(raw)?).into()),
            Scalar::Int4 => Ok(i32::from_be_bytes(read(raw)?).into()),
            Scalar::Int8 => Ok(i64::from_be_bytes(read(raw)?).into()),
            Scalar::Oid => Ok(u32::from_be_bytes(read(raw)?).into()),
            Scalar::Float4 => Ok(float4_to_json(f32::from_be_bytes(read(raw)?))),
            Scalar::Float8 => Ok(float_to_json(f64::from_be_bytes(read(raw)?))),
            Scalar::Numeric => Ok(PgNumeric::from_wire(raw)?.to_json()),
            Scalar::Text => text(raw).map(|s| Value::String(s.to_owned())),
            Scalar::Timestamptz | Scalar::Timestamp => {
                timestamp_text(i64::from_be_bytes(read(raw)?)).map(Value::String)
            }
            Scalar::Date => date_text(i32::from_be_bytes(read(raw)?)).map(Value::String),
            Scalar::Time => Ok(Value::String(time_text(i64::from_be_bytes(read(raw)?)))),
            Scalar::Json => json(raw),
            Scalar::Jsonb => jsonb(raw),
            Scalar::Uuid => Ok(Value::String(
                uuid::Uuid::from_bytes(read(raw)?).to_string(),
            )),
            Scalar::Inet => inet_text(raw, false).map(Value::String),
            Scalar::Cidr => inet_text(raw, true).map(Value::String),
            Scalar::Bytea => Ok(Value::String(
                base64::engine::general_purpose::STANDARD.encode(raw),
            )),
            Scalar::Void => Ok(Value::Null),
        }
    }
}

/// How one column's values become JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Converter {
    /// A scalar column.
    Scalar(Scalar),
    /// A one-dimensional array of a scalar type.
    Array(Scalar),
}

impl Converter {
    /// The converter for a column type, or `None` when vigilo cannot convert it.
    pub(crate) fn for_type(ty: &Type) -> Option<Converter> {
        match ty.kind() {
            Kind::Array(member) => Scalar::for_type(member).map(Converter::Array),
            Kind::Domain(base) => Converter::for_type(base),
            _ => Scalar::for_type(ty).map(Converter::Scalar),
        }
    }

    /// Decodes one non-NULL value.
    pub(crate) fn to_json(self, raw: &[u8]) -> Result<Value, String> {
        match self {
            Converter::Scalar(scalar) => scalar.to_json(raw),
            Converter::Array(scalar) => array_to_json(scalar, raw),
        }
    }
}

/// The name of a type as a user would write it (`point`, `point[]`).
pub(crate) fn type_display_name(ty: &Type) -> String {
    match ty.kind() {
        Kind::Array(member) => format!("{}[]", member.name()),
        _ => ty.name().to_owned(),
    }
}

/// Turns whole rows into JSON with one precomputed converter per column.
#[derive(Debug)]
pub(crate) struct RowDecoder {
    /// The `[database.NAME]`, for errors.
    database: String,
    /// Column names, for errors.
    columns: Vec<String>,
    /// One converter per column.
    converters: Vec<Converter>,
}

impl RowDecoder {
    /// Chooses the converters for a statement's columns; fails on the first unsupported type.
    pub(crate) fn new(
        database: &str,
        columns: &[tokio_postgres::Column],
    ) -> Result<RowDecoder, SourceError> {
        let converters = columns
            .iter()
            .map(|column| {
                Converter::for_type(column.type_()).ok_or_else(|| SourceError::UnsupportedType {
                    database: database.to_owned(),
                    column: column.name().to_owned(),
                    type_name: type_display_name(column.type_()),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RowDecoder {
            database: database.to_owned(),
            columns: columns.iter().map(|c| c.name().to_owned()).collect(),
            converters,
        })
    }

    /// The column names, in order.
    pub(crate) fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Converts one row.
    pub(crate) fn decode(&self, row: &tokio_postgres::Row) -> Result<Row, SourceError> {
        // Sized up front: collecting `Result`s gives no size hint, and the row would grow.
        let mut values = Vec::with_capacity(self.converters.len());
        for (index, converter) in self.converters.iter().enumerate() {
            values.push(self.decode_value(row, index, *converter)?);
        }
        Ok(values)
    }

    /// Converts one value of a row.
    fn decode_value(
        &self,
        row: &tokio_postgres::Row,
        index: usize,
        converter: Converter,
    ) -> Result<Value, SourceError> {
        let raw = row
            .try_get::<_, RawValue<'_>>(index)
            .map_err(|e| self.decode_error(index, e.to_string()))?;
        match raw.0 {
            None => Ok(Value::Null),
            Some(bytes) => converter
                .to_json(bytes)
                .map_err(|message| self.decode_error(index, message)),
        }
    }

    /// A [`SourceError::Decode`] for column `index`.
    fn decode_error(&self, index: usize, message: String) -> SourceError {
        SourceError::Decode {
            database: self.database.clone(),
            column: self.columns.get(index).cloned().unwrap_or_default(),
            message,
        }
    }
}

/// A value's raw bytes (`None` for NULL), accepted for every type.
struct RawValue<'a>(Option<&'a [u8]>);

impl<'a> FromSql<'a> for RawValue<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        Ok(RawValue(Some(raw)))
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn Error + Sync + Send>> {
        Ok(RawValue(None))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Exactly `N` bytes, or an error naming the length.
fn read<const N: usize>(raw: &[u8]) -> Result<[u8; N], String> {
    raw.try_into()
        .map_err(|_| format!("expected {N} bytes, got {}", raw.len()))
}

/// A `f32`, through its shortest decimal form so `0.1::float4` stays `0.1`.
fn float4_to_json(value: f32) -> Value {
    if !value.is_finite() {
        return float_to_json(f64::from(value));
    }
    match value.to_string().parse::<f64>() {
        Ok(widened) => float_to_json(widened),
        Err(_) => float_to_json(f64::from(value)),
    }
}

/// UTF-8 text.
fn text(raw: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(raw).map_err(|e| format!("invalid UTF-8: {e}"))
}

/// `json`: the document as text.
fn json(raw: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(raw).map_err(|e| format!("invalid JSON: {e}"))
}

/// `jsonb`: a version byte (1), then the document as text.
fn jsonb(raw: &[u8]) -> Result<Value, String> {
    match raw.split_first() {
        Some((1, rest)) => json(rest),
        Some((version, _)) => Err(format!("unsupported jsonb version {version}")),
        None => Err("empty jsonb value".to_owned()),
    }
}

/// `timestamp`/`timestamptz`: microseconds since 2000-01-01, as RFC 3339 UTC.
fn timestamp_text(micros: i64) -> Result<String, String> {
    match micros {
        i64::MAX => return Ok("infinity".to_owned()),
        i64::MIN => return Ok("-infinity".to_owned()),
        _ => {}
    }
    let secs = micros.div_euclid(MICROS_PER_SEC) + PG_EPOCH_UNIX_SECS;
    let nanos = micros.rem_euclid(MICROS_PER_SEC) * 1_000;
    let nanos = u32::try_from(nanos).map_err(|e| e.to_string())?;
    DateTime::from_timestamp(secs, nanos)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        .ok_or_else(|| format!("timestamp out of range ({micros} µs after 2000-01-01)"))
}

/// `date`: days since 2000-01-01, as `YYYY-MM-DD`.
fn date_text(days: i32) -> Result<String, String> {
    match days {
        i32::MAX => return Ok("infinity".to_owned()),
        i32::MIN => return Ok("-infinity".to_owned()),
        _ => {}
    }
    days.checked_add(PG_EPOCH_DAYS_FROM_CE)
        .and_then(chrono::NaiveDate::from_num_days_from_ce_opt)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .ok_or_else(|| format!("date out of range ({days} days after 2000-01-01)"))
}

/// `time`: microseconds since midnight, as `HH:MM:SS[.ffffff]`.
fn time_text(micros: i64) -> String {
    let secs = micros / MICROS_PER_SEC;
    let fraction = micros % MICROS_PER_SEC;
    let mut out = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    if fraction != 0 {
        let _ = write!(out, ".{fraction:06}");
    }
    out
}

/// `inet`/`cidr`: family, prefix length, is-cidr flag, address length, address.
///
/// Like PostgreSQL's text output, an `inet` host address has no `/32` or `/128`.
fn inet_text(raw: &[u8], is_cidr: bool) -> Result<String, String> {
    let [family, bits, _, len, address @ ..] = raw else {
        return Err(format!("inet value too short ({} bytes)", raw.len()));
    };
    if usize::from(*len) != address.len() {
        return Err(format!(
            "inet address of {} bytes, expected {len}",
            address.len()
        ));
    }
    let (address, max_bits) = match family {
        2 => (Ipv4Addr::from(read::<4>(address)?).to_string(), 32),
        3 => (Ipv6Addr::from(read::<16>(address)?).to_string(), 128),
        other => return Err(format!("unknown inet address family {other}")),
    };
    if !is_cidr && *bits == max_bits {
        Ok(address)
    } else {
        Ok(format!("{address}/{bits}"))
    }
}

/// A one-dimensional array: header, one dimension, then length-prefixed elements.
fn array_to_json(element: Scalar, raw: &[u8]) -> Result<Value, String> {
    let mut reader = Reader(raw);
    let dimensions = reader.i32()?;
    let _has_nulls = reader.i32()?;
    let _element_oid = reader.i32()?;
    match dimensions {
        0 => return Ok(Value::Array(Vec::new())),
        1 => {}
        n => {
            return Err(format!(
                "arrays with {n} dimensions are not supported, only one-dimensional arrays"
            ));
        }
    }
    let length = usize::try_from(reader.i32()?).map_err(|e| e.to_string())?;
    let _lower_bound = reader.i32()?;
    let mut values = Vec::with_capacity(length.min(reader.0.len() / 4));
    for _ in 0..length {
        let value = match reader.element()? {
            None => Value::Null,
            Some(bytes) => element.to_json(bytes)?,
        };
        values.push(value);
    }
    Ok(Value::Array(values))
}

/// Reads big-endian fields off the front of a byte slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// The next `n` bytes.
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err(format!(
                "value truncated: needed {n} bytes, {} left",
                self.0.len()
            ));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    /// The next `i32`.
    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_be_bytes(read(self.take(4)?)?))
    }

    /// The next `i16`.
    fn i16(&mut self) -> Result<i16, String> {
        Ok(i16::from_be_bytes(read(self.take(2)?)?))
    }

    /// The next `u16`.
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_be_bytes(read(self.take(2)?)?))
    }

    /// A length-prefixed array element; a length of -1 is NULL.
    fn element(&mut self) -> Result<Option<&'a [u8]>, String> {
        let length = self.i32()?;
        if length < 0 {
            return Ok(None);
        }
        let length = usize::try_from(length).map_err(|e| e.to_string())?;
        self.take(length).map(Some)
    }
}

/// `numeric` sign word: positive.
const NUMERIC_POS: u16 = 0x0000;
/// `numeric` sign word: negative.
const NUMERIC_NEG: u16 = 0x4000;
/// `numeric` sign word: NaN.
const NUMERIC_NAN: u16 = 0xC000;
/// `numeric` sign word: +Infinity (PostgreSQL 14+).
const NUMERIC_PINF: u16 = 0xD000;
/// `numeric` sign word: -Infinity (PostgreSQL 14+).
const NUMERIC_NINF: u16 = 0xF000;

/// A `numeric` value as PostgreSQL sends it: base-10000 digits with a weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PgNumeric {
    /// `NaN`.
    NaN,
    /// `Infinity`.
    Infinity,
    /// `-Infinity`.
    NegInfinity,
    /// A finite value, as its exact decimal text (`-12.340`).
    Finite(String),
}

impl<'a> FromSql<'a> for PgNumeric {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        Ok(PgNumeric::from_wire(raw)?)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }
}

impl PgNumeric {
    /// Decodes the binary format: ndigits, weight, sign, dscale, then the digits.
    pub(crate) fn from_wire(raw: &[u8]) -> Result<PgNumeric, String> {
        let mut reader = Reader(raw);
        let ndigits = reader.i16()?;
        let weight = reader.i16()?;
        let sign = reader.u16()?;
        let dscale = reader.u16()?;
        let negative = match sign {
            NUMERIC_POS => false,
            NUMERIC_NEG => true,
            NUMERIC_NAN => return Ok(PgNumeric::NaN),
            NUMERIC_PINF => return Ok(PgNumeric::Infinity),
            NUMERIC_NINF => return Ok(PgNumeric::NegInfinity),
            other => return Err(format!("invalid numeric sign word {other:#06x}")),
        };
        let ndigits = usize::try_from(ndigits).map_err(|_| "negative numeric digit count")?;
        let digits = (0..ndigits)
            .map(|_| reader.i16())
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(bad) = digits.iter().find(|d| !(0..10_000).contains(*d)) {
            return Err(format!("invalid numeric digit {bad}"));
        }
        Ok(PgNumeric::Finite(decimal_text(
            negative,
            i32::from(weight),
            dscale,
            &digits,
        )))
    }

    /// JSON: a number when it round-trips exactly, else the exact text.
    pub(crate) fn to_json(&self) -> Value {
        match self {
            PgNumeric::NaN => Value::String("NaN".to_owned()),
            PgNumeric::Infinity => Value::String("Infinity".to_owned()),
            PgNumeric::NegInfinity => Value::String("-Infinity".to_owned()),
            PgNumeric::Finite(text) => decimal_to_json(text),
        }
    }
}

/// The decimal text of base-10000 `digits`, the first worth 10000^`weight`,
/// with exactly `dscale` fractional digits (as PostgreSQL prints it).
fn decimal_text(negative: bool, weight: i32, dscale: u16, digits: &[i16]) -> String {
    let digit_at = |position: i32| -> i16 {
        usize::try_from(position)
            .ok()
            .and_then(|i| digits.get(i))
            .copied()
            .unwrap_or(0)
    };
    let mut out = String::with_capacity(digits.len() * 4 + usize::from(dscale) + 3);
    if negative {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    }
    for position in 0..=weight {
        let digit = digit_at(position);
        if position == 0 {
            let _ = write!(out, "{digit}");
        } else {
            let _ = write!(out, "{digit:04}");
        }
    }
    if dscale > 0 {
        out.push('.');
        let start = out.len();
        let mut position = weight + 1;
        while out.len() - start < usize::from(dscale) {
            let _ = write!(out, "{:04}", digit_at(position));
            position += 1;
        }
        out.truncate(start + usize::from(dscale));
    }
    out
}

/// A decimal as JSON: an integer when it fits i64/u64, a float when the float's
/// shortest form is numerically equal to the decimal, else the text itself.
pub(crate) fn decimal_to_json(text: &str) -> Value {
    let canonical = canonical_decimal(text);
    if !canonical.contains('.') {
        if let Ok(i) = canonical.parse::<i64>() {
            return Value::from(i);
        }
        if let Ok(u) = canonical.parse::<u64>() {
            return Value::from(u);
        }
    }
    match canonical.parse::<f64>() {
        Ok(f) if f.is_finite() && canonical_decimal(&f.to_string()) == canonical => {
            serde_json::Number::from_f64(f)
                .map_or_else(|| Value::String(text.to_owned()), Value::Number)
        }
        _ => Value::String(text.to_owned()),
    }
}

/// A plain decimal (`-0012.3400`) without leading or trailing zeros (`-12.34`);
/// zero is `0`.
fn canonical_decimal(text: &str) -> String {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (integer, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let integer = integer.trim_start_matches('0');
    let fraction = fraction.trim_end_matches('0');
    if integer.is_empty() && fraction.is_empty() {
        return "0".to_owned();
    }
    let mut out = String::with_capacity(text.len() + 1);
    if negative {
        out.push('-');
    }
    out.push_str(if integer.is_empty() { "0" } else { integer });
    if !fraction.is_empty() {
        out.push('.');
        out.push_str(fraction);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The wire form of a numeric.
    fn numeric_wire(weight: i16, sign: u16, dscale: u16, digits: &[i16]) -> Vec<u8> {
        let mut raw = Vec::new();
        raw.extend_from_slice(&i16::try_from(digits.len()).unwrap().to_be_bytes());
        raw.extend_from_slice(&weight.to_be_bytes());
        raw.extend_from_slice(&sign.to_be_bytes());
        raw.extend_from_slice(&dscale.to_be_bytes());
        for d in digits {
            raw.extend_from_slice(&d.to_be_bytes());
        }
        raw
    }

    fn numeric(weight: i16, sign: u16, dscale: u16, digits: &[i16]) -> PgNumeric {
        PgNumeric::from_wire(&numeric_wire(weight, sign, dscale, digits)).unwrap()
    }

    #[test]
    fn numeric_text_from_wire() {
        let finite = |s: &str| PgNumeric::Finite(s.to_owned());
        assert_eq!(numeric(0, NUMERIC_POS, 2, &[1, 5000]), finite("1.50"));
        assert_eq!(numeric(-1, NUMERIC_POS, 1, &[1000]), finite("0.1"));
        assert_eq!(numeric(-2, NUMERIC_POS, 5, &[1000]), finite("0.00001"));
        assert_eq!(numeric(1, NUMERIC_NEG, 0, &[12, 3456]), finite("-123456"));
        assert_eq!(numeric(2, NUMERIC_POS, 0, &[1]), finite("100000000"));
        assert_eq!(numeric(0, NUMERIC_POS, 0, &[]), finite("0"));
        assert_eq!(numeric(0, NUMERIC_POS, 3, &[]), finite("0.000"));
        assert_eq!(numeric(0, NUMERIC_NAN, 0, &[]), PgNumeric::NaN);
        assert_eq!(numeric(0, NUMERIC_PINF, 0, &[]), PgNumeric::Infinity);
        assert_eq!(numeric(0, NUMERIC_NINF, 0, &[]), PgNumeric::NegInfinity);
    }

    #[test]
    fn numeric_wire_errors() {
        assert!(PgNumeric::from_wire(&[0, 1]).is_err());
        assert!(PgNumeric::from_wire(&numeric_wire(0, 0x1234, 0, &[])).is_err());
        assert!(PgNumeric::from_wire(&numeric_wire(0, NUMERIC_POS, 0, &[10_000])).is_err());
    }

    #[test]
    fn decimals_to_json() {
        assert_eq!(decimal_to_json("42"), json!(42));
        assert_eq!(decimal_to_json("-42.000"), json!(-42));
        assert_eq!(decimal_to_json("1.50"), json!(1.5));
        assert_eq!(decimal_to_json("0.1"), json!(0.1));
        assert_eq!(decimal_to_json("0.000"), json!(0));
        assert_eq!(
            decimal_to_json("18446744073709551615"),
            json!(18446744073709551615u64)
        );
        assert_eq!(
            decimal_to_json("123456789012345678901234567890"),
            json!("123456789012345678901234567890")
        );
        assert_eq!(
            decimal_to_json("12345678901234567890.123456789"),
            json!("12345678901234567890.123456789")
        );
        assert_eq!(
            decimal_to_json("0.1000000000000000000001"),
            json!("0.1000000000000000000001")
        );
    }

    #[test]
    fn canonical_decimals() {
        assert_eq!(canonical_decimal("-0012.3400"), "-12.34");
        assert_eq!(canonical_decimal("-0.000"), "0");
        assert_eq!(canonical_decimal(".5"), "0.5");
    }

    #[test]
    fn times_and_dates() {
        assert_eq!(time_text(0), "00:00:00");
        assert_eq!(
            time_text(((13 * 60 + 14) * 60 + 15) * MICROS_PER_SEC + 250_000),
            "13:14:15.250000"
        );
        assert_eq!(time_text(24 * 3600 * MICROS_PER_SEC), "24:00:00");
        assert_eq!(date_text(0).unwrap(), "2000-01-01");
        assert_eq!(date_text(-1).unwrap(), "1999-12-31");
        assert_eq!(date_text(i32::MAX).unwrap(), "infinity");
        assert_eq!(timestamp_text(0).unwrap(), "2000-01-01T00:00:00Z");
        assert_eq!(timestamp_text(-1).unwrap(), "1999-12-31T23:59:59.999999Z");
        assert_eq!(timestamp_text(i64::MIN).unwrap(), "-infinity");
    }

    #[test]
    fn inet_and_cidr() {
        assert_eq!(
            inet_text(&[2, 32, 0, 4, 10, 1, 2, 3], false).unwrap(),
            "10.1.2.3"
        );
        assert_eq!(
            inet_text(&[2, 24, 0, 4, 10, 1, 2, 3], false).unwrap(),
            "10.1.2.3/24"
        );
        assert_eq!(
            inet_text(&[2, 32, 1, 4, 10, 1, 2, 3], true).unwrap(),
            "10.1.2.3/32"
        );
        assert!(inet_text(&[2, 32, 0, 3, 10, 1, 2], false).is_err());
        assert!(inet_text(&[9, 32, 0, 0], false).is_err());
    }

    #[test]
    fn arrays() {
        let mut raw = Vec::new();
        for field in [1i32, 1, 23, 3, 1, 4, 7, -1, 4, -2] {
            raw.extend_from_slice(&field.to_be_bytes());
        }
        assert_eq!(
            array_to_json(Scalar::Int4, &raw).unwrap(),
            json!([7, null, -2])
        );
        let empty: Vec<u8> = [0i32, 0, 23].iter().flat_map(|f| f.to_be_bytes()).collect();
        assert_eq!(array_to_json(Scalar::Int4, &empty).unwrap(), json!([]));
        let two_dim: Vec<u8> = [2i32, 0, 23].iter().flat_map(|f| f.to_be_bytes()).collect();
        assert!(
            array_to_json(Scalar::Int4, &two_dim)
                .unwrap_err()
                .contains("2 dimensions")
        );
        assert!(array_to_json(Scalar::Int4, &raw[..raw.len() - 2]).is_err());
    }

    #[test]
    fn floats() {
        assert_eq!(float4_to_json(0.1), json!(0.1));
        assert_eq!(float4_to_json(f32::NAN), json!("NaN"));
        assert_eq!(float4_to_json(f32::NEG_INFINITY), json!("-Infinity"));
    }

    #[test]
    fn converters_for_types() {
        assert_eq!(
            Converter::for_type(&Type::INT4),
            Some(Converter::Scalar(Scalar::Int4))
        );
        assert_eq!(
            Converter::for_type(&Type::TEXT_ARRAY),
            Some(Converter::Array(Scalar::Text))
        );
        assert_eq!(Converter::for_type(&Type::POINT), None);
        assert_eq!(Converter::for_type(&Type::INTERVAL_ARRAY), None);
        assert_eq!(type_display_name(&Type::POINT_ARRAY), "point[]");
    }
}
