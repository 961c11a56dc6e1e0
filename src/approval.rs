//! The approval state machine: who may vote, when an option wins, when time runs out.
//!
//! Pure decisions over an [`Approval`] and its votes; the store applies the
//! resulting [`Transition`] in one transaction guarded by `status = 'pending'`,
//! with its audit entries. CLI, web, Slack and email handlers only *request* a
//! vote; this module decides what it does.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::finding::rfc3339;

/// An approval's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Waiting for votes.
    Pending,
    /// An option won (by votes, or `on_timeout`).
    Decided,
    /// Time ran out with no `on_timeout`: nothing runs.
    Expired,
}

impl Status {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Decided => "decided",
            Status::Expired => "expired",
        }
    }

    /// Parses a stored status.
    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "pending" => Some(Status::Pending),
            "decided" => Some(Status::Decided),
            "expired" => Some(Status::Expired),
            _ => None,
        }
    }
}

/// One option as requested (labels and thresholds are fixed when the approval opens).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct OptionSpec {
    /// The value votes carry.
    pub value: String,
    /// What people see.
    pub label: String,
    /// `primary`, `danger` or none.
    pub style: Option<String>,
    /// Distinct approvers needed.
    pub required: u32,
}

/// One vote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Vote {
    /// The approver's name.
    pub by: String,
    /// The option chosen.
    pub option: String,
    /// Why, if they said.
    pub reason: Option<String>,
    /// `cli`, `web`, `slack`, `email`.
    pub channel: String,
    /// When.
    #[serde(serialize_with = "ser_time")]
    pub at: DateTime<Utc>,
    /// Who on that channel (`slack:U0ALICE`, `unix:root`), when the channel tells (an addition).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
}

/// An approval with its votes (interface.md section 5 shape, plus a few fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Approval {
    /// Stable id.
    pub id: i64,
    /// The remediation's name.
    pub remediation: String,
    /// The finding it is about.
    pub finding_id: i64,
    /// Pending, decided or expired.
    pub status: Status,
    /// The winning option, once decided.
    pub decision: Option<String>,
    /// Rendered subject.
    pub subject: String,
    /// Rendered prompt.
    pub prompt: String,
    /// The options.
    pub options: Vec<OptionSpec>,
    /// Who may vote (groups expanded).
    pub approvers: Vec<String>,
    /// The ChatOps requester, who may not vote unless allowed.
    pub requested_by: Option<String>,
    /// May the requester vote.
    pub allow_self_approval: bool,
    /// When it was requested.
    #[serde(serialize_with = "ser_time")]
    pub requested_at: DateTime<Utc>,
    /// When time runs out.
    #[serde(serialize_with = "ser_opt_time")]
    pub deadline: Option<DateTime<Utc>>,
    /// Option taken when time runs out.
    pub on_timeout: Option<String>,
    /// When it was decided or expired.
    #[serde(serialize_with = "ser_opt_time")]
    pub decided_at: Option<DateTime<Utc>>,
    /// The approvers whose votes decided it (`vigilo` for `on_timeout`).
    pub decided_by: Vec<String>,
    /// Every vote, in order.
    pub votes: Vec<Vote>,
}

/// Why a vote is refused; nothing changes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No approval with that id.
    #[error("approval {0} does not exist")]
    NotFound(i64),
    /// Already decided.
    #[error("approval {id} was already decided ({decision}) at {at}; it takes no more votes")]
    Decided {
        /// The approval.
        id: i64,
        /// The winning option.
        decision: String,
        /// When.
        at: String,
    },
    /// Expired.
    #[error("approval {id} expired at {at}; it takes no more votes")]
    Expired {
        /// The approval.
        id: i64,
        /// When.
        at: String,
    },
    /// Not an allowed approver.
    #[error("{by} is not an approver of approval {id} (approvers: {approvers})")]
    NotAnApprover {
        /// The approval.
        id: i64,
        /// Who tried.
        by: String,
        /// Who may.
        approvers: String,
    },
    /// The requester may not approve their own request.
    #[error("{by} requested this remediation and may not vote on it (allow_self_approval = false)")]
    SelfApproval {
        /// Who tried.
        by: String,
    },
    /// Unknown option.
    #[error("approval {id} has no option {option:?} (options: {options})")]
    UnknownOption {
        /// The approval.
        id: i64,
        /// What was asked.
        option: String,
        /// What exists.
        options: String,
    },
    /// A second vote.
    #[error("{by} already voted {option} on approval {id} at {at}; each approver votes once")]
    AlreadyVoted {
        /// The approval.
        id: i64,
        /// Who.
        by: String,
        /// Their earlier choice.
        option: String,
        /// When.
        at: String,
    },
}

/// What a vote or a tick does to an approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// Record the vote; the approval stays pending.
    Vote(Vote),
    /// Record the vote; `option` reached its threshold with these voters.
    VoteDecides {
        /// The vote.
        vote: Vote,
        /// The winning option.
        option: String,
        /// The voters for it.
        by: Vec<String>,
    },
    /// Time ran out: take `on_timeout`.
    TimeoutDecides {
        /// The option.
        option: String,
    },
    /// Time ran out with no `on_timeout`.
    Expire,
}

impl Approval {
    /// Whether its deadline has passed at `now` while it is still pending.
    pub fn is_due(&self, now: DateTime<Utc>) -> bool {
        self.status == Status::Pending && self.deadline.is_some_and(|d| d <= now)
    }

    /// What running out of time does.
    pub fn timeout(&self) -> Transition {
        match &self.on_timeout {
            Some(option) => Transition::TimeoutDecides {
                option: option.clone(),
            },
            None => Transition::Expire,
        }
    }

    /// Decides what `vote` does, or why it is refused. A due approval must be timed out first.
    pub fn vote(&self, vote: Vote) -> Result<Transition, Refusal> {
        let id = self.id;
        match self.status {
            Status::Decided => {
                return Err(Refusal::Decided {
                    id,
                    decision: self.decision.clone().unwrap_or_default(),
                    at: self.decided_at.as_ref().map(rfc3339).unwrap_or_default(),
                });
            }
            Status::Expired => {
                return Err(Refusal::Expired {
                    id,
                    at: self.decided_at.as_ref().map(rfc3339).unwrap_or_default(),
                });
            }
            Status::Pending => {}
        }
        if !self.approvers.contains(&vote.by) {
            return Err(Refusal::NotAnApprover {
                id,
                by: vote.by,
                approvers: self.approvers.join(", "),
            });
        }
        if self.requested_by.as_deref() == Some(vote.by.as_str()) && !self.allow_self_approval {
            return Err(Refusal::SelfApproval { by: vote.by });
        }
        let Some(option) = self.options.iter().find(|o| o.value == vote.option) else {
            return Err(Refusal::UnknownOption {
                id,
                option: vote.option,
                options: self
                    .options
                    .iter()
                    .map(|o| o.value.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        if let Some(earlier) = self.votes.iter().find(|v| v.by == vote.by) {
            return Err(Refusal::AlreadyVoted {
                id,
                by: vote.by,
                option: earlier.option.clone(),
                at: rfc3339(&earlier.at),
            });
        }
        let mut by: Vec<String> = self
            .votes
            .iter()
            .filter(|v| v.option == option.value)
            .map(|v| v.by.clone())
            .collect();
        by.push(vote.by.clone());
        if by.len() as u32 >= option.required {
            Ok(Transition::VoteDecides {
                option: option.value.clone(),
                vote,
                by,
            })
        } else {
            Ok(Transition::Vote(vote))
        }
    }
}

fn ser_time<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(t))
}

fn ser_opt_time<S: serde::Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&rfc3339(t)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approval(required: u32) -> Approval {
        Approval {
            id: 7,
            remediation: "r".into(),
            finding_id: 1,
            status: Status::Pending,
            decision: None,
            subject: "s".into(),
            prompt: "p".into(),
            options: vec![
                OptionSpec {
                    value: "deactivate".into(),
                    label: "Deactivate".into(),
                    style: Some("danger".into()),
                    required,
                },
                OptionSpec {
                    value: "keep".into(),
                    label: "Keep".into(),
                    style: None,
                    required: 1,
                },
            ],
            approvers: vec!["alice".into(), "bob".into(), "carol".into()],
            requested_by: None,
            allow_self_approval: false,
            requested_at: Utc::now(),
            deadline: None,
            on_timeout: None,
            decided_at: None,
            decided_by: vec![],
            votes: vec![],
        }
    }

    fn vote(by: &str, option: &str) -> Vote {
        Vote {
            by: by.into(),
            option: option.into(),
            reason: None,
            channel: "cli".into(),
            at: Utc::now(),
            identity: None,
        }
    }

    /// Applies a transition the way the store does.
    fn apply(a: &mut Approval, t: Transition) {
        match t {
            Transition::Vote(v) => a.votes.push(v),
            Transition::VoteDecides { vote, option, by } => {
                a.votes.push(vote);
                a.status = Status::Decided;
                a.decision = Some(option);
                a.decided_by = by;
                a.decided_at = Some(Utc::now());
            }
            Transition::TimeoutDecides { option } => {
                a.status = Status::Decided;
                a.decision = Some(option);
                a.decided_at = Some(Utc::now());
            }
            Transition::Expire => {
                a.status = Status::Expired;
                a.decided_at = Some(Utc::now());
            }
        }
    }

    #[test]
    fn two_of_n_needs_two_distinct_approvers() {
        let mut a = approval(2);
        let t = a.vote(vote("alice", "deactivate")).unwrap();
        assert!(matches!(t, Transition::Vote(_)));
        apply(&mut a, t);
        // A second vote by the same approver is refused, naming the first.
        let err = a.vote(vote("alice", "deactivate")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("alice already voted deactivate on approval 7"),
            "{err}"
        );
        // A non-approver cannot tip it.
        let err = a.vote(vote("mallory", "deactivate")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "mallory is not an approver of approval 7 (approvers: alice, bob, carol)"
        );
        let t = a.vote(vote("bob", "deactivate")).unwrap();
        assert_eq!(
            t,
            Transition::VoteDecides {
                vote: match &t {
                    Transition::VoteDecides { vote, .. } => vote.clone(),
                    _ => unreachable!(),
                },
                option: "deactivate".into(),
                by: vec!["alice".into(), "bob".into()],
            }
        );
        apply(&mut a, t);
        let err = a.vote(vote("carol", "keep")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("approval 7 was already decided (deactivate)"),
            "{err}"
        );
    }

    #[test]
    fn a_deny_after_an_approve_can_win_on_its_own_threshold() {
        let mut a = approval(2);
        let t = a.vote(vote("alice", "deactivate")).unwrap();
        apply(&mut a, t);
        let t = a.vote(vote("bob", "keep")).unwrap();
        assert!(
            matches!(t, Transition::VoteDecides { ref option, .. } if option == "keep"),
            "{t:?}"
        );
    }

    #[test]
    fn unknown_options_and_self_approval_are_refused() {
        let mut a = approval(1);
        let err = a.vote(vote("alice", "nuke")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "approval 7 has no option \"nuke\" (options: deactivate, keep)"
        );
        a.requested_by = Some("alice".into());
        assert!(matches!(
            a.vote(vote("alice", "keep")),
            Err(Refusal::SelfApproval { .. })
        ));
        a.allow_self_approval = true;
        assert!(a.vote(vote("alice", "keep")).is_ok());
    }

    #[test]
    fn timeouts_take_on_timeout_or_expire() {
        let mut a = approval(1);
        let now = Utc::now();
        assert!(!a.is_due(now), "no deadline, never due");
        a.deadline = Some(now - chrono::Duration::seconds(1));
        assert!(a.is_due(now));
        assert_eq!(a.timeout(), Transition::Expire);
        a.on_timeout = Some("keep".into());
        assert_eq!(
            a.timeout(),
            Transition::TimeoutDecides {
                option: "keep".into()
            }
        );
        apply(&mut a, Transition::Expire);
        assert!(!a.is_due(now), "settled approvals are not due");
        assert!(matches!(
            a.vote(vote("bob", "keep")),
            Err(Refusal::Expired { .. })
        ));
    }
}
