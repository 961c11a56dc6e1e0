//! A finding: one key of one query that matched, and its lifecycle.

use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use crate::config::Severity;
use crate::timestamp::{ser_opt_time, ser_time};

/// A finding's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The key is in the query's latest result.
    Open,
    /// The key left the result.
    Resolved,
    /// The key is in the result, and its risk is accepted until `accepted_until`.
    Accepted,
}

impl Status {
    /// As stored and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Resolved => "resolved",
            Status::Accepted => "accepted",
        }
    }

    /// Parses `open`, `resolved` or `accepted`.
    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "open" => Some(Status::Open),
            "resolved" => Some(Status::Resolved),
            "accepted" => Some(Status::Accepted),
            _ => None,
        }
    }
}

/// A finding as `vigilo findings --format json` and `/api/findings` show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// Stable id.
    pub id: i64,
    /// The query's name.
    pub query: String,
    /// The primary-key columns and values.
    pub key: Map<String, Value>,
    /// Open or resolved.
    pub status: Status,
    /// The query's severity when the finding was last opened.
    #[serde(serialize_with = "ser_severity")]
    pub severity: Severity,
    /// When the key first appeared.
    #[serde(serialize_with = "ser_time")]
    pub first_seen: DateTime<Utc>,
    /// The last run that saw the key.
    #[serde(serialize_with = "ser_time")]
    pub last_seen: DateTime<Utc>,
    /// When the key left the result (resolved findings only).
    #[serde(serialize_with = "ser_opt_time")]
    pub resolved_at: Option<DateTime<Utc>>,
    /// How many times it came back after being resolved.
    pub reopened: i64,
    /// The latest row.
    pub row: Map<String, Value>,
    /// Until when its risk is accepted (accepted findings only).
    #[serde(serialize_with = "ser_opt_time")]
    pub accepted_until: Option<DateTime<Utc>>,
    /// Who accepted it (accepted findings only).
    pub accepted_by: Option<String>,
    /// Why (accepted findings only).
    pub accepted_reason: Option<String>,
}

fn ser_severity<S: Serializer>(s: &Severity, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.as_str())
}
