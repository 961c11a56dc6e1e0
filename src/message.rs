//! What a notifier hands its transports (console, webhook, Slack, email) and what they
//! answer: a message's words ([`Content`]) and how one delivery attempt went ([`Delivery`]).
//! Below `notify`, which composes and delivers, so the transports need not import it.

use std::time::Duration;

use serde_json::Value;

use crate::approval::Approval;
use crate::finding::Finding;

/// How one delivery attempt went.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// Delivered; what the integration answered.
    Sent(Value),
    /// Not delivered; `retry_after` is the wait the target asked for (HTTP 429).
    Failed {
        /// Why.
        error: String,
        /// The target's `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// Not attempted: the integration's pace allows the next message after this wait.
    Deferred(Duration),
}

impl Delivery {
    /// A failure with no wait asked for.
    pub fn failed(error: String) -> Delivery {
        Delivery::Failed {
            error,
            retry_after: None,
        }
    }
}

impl From<Result<Value, String>> for Delivery {
    fn from(r: Result<Value, String>) -> Delivery {
        match r {
            Ok(v) => Delivery::Sent(v),
            Err(e) => Delivery::failed(e),
        }
    }
}

/// What a message says, in the forms the integrations need.
#[derive(Debug, Clone)]
pub struct Content {
    /// A one-line subject.
    pub subject: String,
    /// The text, several lines.
    pub text: String,
    /// The finding it is about.
    pub finding: Option<Finding>,
    /// The approval it is about.
    pub approval: Option<Approval>,
    /// Per-approver approval links (approval requests only).
    pub links: Vec<(String, String)>,
}
