//! How vigilo writes a time: RFC 3339 in UTC, in JSON, audit entries, reports and messages.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serializer;

/// Formats a time as RFC 3339 UTC, with fractional seconds only when present.
pub fn rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Serializes a time as [`rfc3339`] (`#[serde(serialize_with)]`).
pub fn ser_time<S: Serializer>(t: &DateTime<Utc>, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(&rfc3339(t))
}

/// Serializes an optional time as [`rfc3339`] or null (`#[serde(serialize_with)]`).
pub fn ser_opt_time<S: Serializer>(t: &Option<DateTime<Utc>>, ser: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => ser.serialize_str(&rfc3339(t)),
        None => ser.serialize_none(),
    }
}
