//! The approval state machine: who may vote, when an option wins, when time runs out.
//!
//! Pure decisions over an [`Approval`] and its votes; the store applies the
//! resulting [`Transition`] in one transaction guarded by `status = 'pending'`,
//! with its audit entries. CLI, web, Slack and email handlers only *request* a
//! vote; this module decides what it does.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::timestamp::{rfc3339, ser_opt_time, ser_time};

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
    /// Choosing it accepts the finding's risk for this long (`30d`) instead of fixing it.
    #[serde(default)]
    pub accept_for: Option<String>,
}

/// What kind of answer an approval takes (interface.md section 8).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputKind {
    /// One option, as buttons.
    #[default]
    Button,
    /// One option, from a list.
    Select,
    /// A set of options.
    Multiselect,
    /// Free text (options are only suggestions).
    Text,
}

impl InputKind {
    /// As written in `[approval] type`.
    pub fn as_str(self) -> &'static str {
        match self {
            InputKind::Button => "button",
            InputKind::Select => "select",
            InputKind::Multiselect => "multiselect",
            InputKind::Text => "text",
        }
    }

    /// Parses `button`, `select`, `multiselect` or `text`.
    pub fn parse(s: &str) -> Option<InputKind> {
        match s {
            "button" => Some(InputKind::Button),
            "select" => Some(InputKind::Select),
            "multiselect" => Some(InputKind::Multiselect),
            "text" => Some(InputKind::Text),
            _ => None,
        }
    }
}

/// The answer settings of an approval beside its options, fixed when it opens.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Input {
    /// What kind of answer it takes.
    #[serde(rename = "type", default)]
    pub kind: InputKind,
    /// Hint shown in an empty text field.
    #[serde(default)]
    pub placeholder: Option<String>,
    /// A text answer must match this regular expression.
    #[serde(default)]
    pub pattern: Option<String>,
    /// For `text` and `multiselect`: distinct approvers who must give the identical answer.
    #[serde(default)]
    pub required: Option<u32>,
}

/// Separates the values of a multiselect answer in its one-string form (`approval.value`).
pub const VALUE_SEPARATOR: &str = ", ";

/// The values an answer of an approval of `kind` carries: the option, the text, or the set.
pub fn answer_values(kind: InputKind, answer: &str) -> Vec<String> {
    match kind {
        InputKind::Multiselect => answer
            .split(VALUE_SEPARATOR)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .collect(),
        _ => vec![answer.to_string()],
    }
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
    /// The value(s) answered: the option, the text, or a multiselect's set (in option order).
    pub values: Vec<String>,
}

impl Vote {
    /// A vote by `by` on `channel` now, answering `values` (one option, one text, or a set).
    pub fn new(by: &str, values: Vec<String>, channel: &str) -> Vote {
        Vote {
            by: by.to_string(),
            option: values.join(VALUE_SEPARATOR),
            reason: None,
            channel: channel.to_string(),
            at: chrono::Utc::now(),
            identity: None,
            values,
        }
    }
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
    /// The options (for `text`, suggestions).
    pub options: Vec<OptionSpec>,
    /// The kind of answer and its settings (`type`, `placeholder`, `pattern`, `required`).
    #[serde(flatten)]
    pub input: Input,
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
    /// The decision's values (`approval.values`): one option, the text, or a multiselect's set.
    pub values: Vec<String>,
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
    /// A text answer that does not match the approval's `pattern`.
    #[error(
        "{answer:?} does not match the pattern {pattern} that approval {id} requires; answer again"
    )]
    PatternMismatch {
        /// The approval.
        id: i64,
        /// The required pattern.
        pattern: String,
        /// What was answered.
        answer: String,
    },
    /// An answer of the wrong shape: none, several for a single choice, or empty text.
    #[error("approval {id} {why}")]
    BadAnswer {
        /// The approval.
        id: i64,
        /// What is wrong and what it takes.
        why: String,
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

    /// Whether `by` may vote on it now, whatever the answer: it is pending, `by` is an
    /// approver, not the requester of their own remediation, and has not voted yet (the
    /// checks [`Approval::vote`] makes besides the answer's).
    pub fn may_vote(&self, by: &str) -> Result<(), Refusal> {
        self.takes_votes_from(by)?;
        self.not_voted_yet(by)
    }

    /// Refuses a vote by `by` unless it is pending, `by` is an approver, and not the
    /// requester of their own remediation.
    fn takes_votes_from(&self, by: &str) -> Result<(), Refusal> {
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
        if !self.approvers.iter().any(|a| a == by) {
            return Err(Refusal::NotAnApprover {
                id,
                by: by.to_string(),
                approvers: self.approvers.join(", "),
            });
        }
        if self.requested_by.as_deref() == Some(by) && !self.allow_self_approval {
            return Err(Refusal::SelfApproval { by: by.to_string() });
        }
        Ok(())
    }

    /// Refuses a second vote by `by`.
    fn not_voted_yet(&self, by: &str) -> Result<(), Refusal> {
        match self.votes.iter().find(|v| v.by == by) {
            Some(earlier) => Err(Refusal::AlreadyVoted {
                id: self.id,
                by: by.to_string(),
                option: earlier.option.clone(),
                at: rfc3339(&earlier.at),
            }),
            None => Ok(()),
        }
    }

    /// Decides what `vote` does, or why it is refused. A due approval must be timed out first.
    pub fn vote(&self, vote: Vote) -> Result<Transition, Refusal> {
        self.takes_votes_from(&vote.by)?;
        let (vote, required) = self.normalize(vote)?;
        self.not_voted_yet(&vote.by)?;
        // Identical answers count together: the same option, the same text, the same set.
        let mut by: Vec<String> = self
            .votes
            .iter()
            .filter(|v| v.option == vote.option)
            .map(|v| v.by.clone())
            .collect();
        by.push(vote.by.clone());
        if by.len() as u32 >= required {
            Ok(Transition::VoteDecides {
                option: vote.option.clone(),
                vote,
                by,
            })
        } else {
            Ok(Transition::Vote(vote))
        }
    }

    /// The option list as `a, b`.
    fn option_list(&self) -> String {
        self.options
            .iter()
            .map(|o| o.value.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Checks a vote's answer against the approval's input type and puts it in its one form
    /// (a multiselect's values deduplicated and in option order; a text trimmed); returns it
    /// with the number of identical answers that decide.
    fn normalize(&self, mut vote: Vote) -> Result<(Vote, u32), Refusal> {
        let id = self.id;
        if vote.values.is_empty() && !vote.option.is_empty() {
            vote.values = answer_values(self.input.kind, &vote.option);
        }
        let unknown = |option: &str| Refusal::UnknownOption {
            id,
            option: option.to_string(),
            options: self.option_list(),
        };
        match self.input.kind {
            InputKind::Button | InputKind::Select => {
                let [value] = vote.values.as_slice() else {
                    return Err(Refusal::BadAnswer {
                        id,
                        why: format!("takes exactly one option (one of: {})", self.option_list()),
                    });
                };
                if !self.options.iter().any(|o| &o.value == value) {
                    return Err(unknown(value));
                }
            }
            InputKind::Multiselect => {
                if vote.values.is_empty() {
                    return Err(Refusal::BadAnswer {
                        id,
                        why: format!("takes one or more options (of: {})", self.option_list()),
                    });
                }
                if let Some(bad) = vote
                    .values
                    .iter()
                    .find(|v| !self.options.iter().any(|o| &o.value == *v))
                {
                    return Err(unknown(bad));
                }
                let chosen: Vec<&OptionSpec> = self
                    .options
                    .iter()
                    .filter(|o| vote.values.contains(&o.value))
                    .collect();
                vote.values = chosen.iter().map(|o| o.value.clone()).collect();
            }
            InputKind::Text => {
                let text = match vote.values.as_slice() {
                    [one] => one.trim().to_string(),
                    _ => {
                        return Err(Refusal::BadAnswer {
                            id,
                            why: "takes one text answer".into(),
                        });
                    }
                };
                if text.is_empty() {
                    return Err(Refusal::BadAnswer {
                        id,
                        why: "needs a non-empty text answer".into(),
                    });
                }
                if let Some(pattern) = &self.input.pattern {
                    // The pattern was checked when the project loaded; one that no longer
                    // compiles refuses every answer rather than accepting any.
                    let matches = regex::Regex::new(pattern).is_ok_and(|re| re.is_match(&text));
                    if !matches {
                        return Err(Refusal::PatternMismatch {
                            id,
                            pattern: pattern.clone(),
                            answer: text,
                        });
                    }
                }
                vote.values = vec![text];
            }
        }
        vote.option = vote.values.join(VALUE_SEPARATOR);
        let required = self.threshold(&vote.values);
        Ok((vote, required))
    }

    /// How many identical answers of `values` decide: the option's `required` for a single
    /// choice; for a multiselect the larger of `[approval] required` and its options'; for a
    /// text, `[approval] required`.
    pub fn threshold(&self, values: &[String]) -> u32 {
        let per_option = self
            .options
            .iter()
            .filter(|o| values.contains(&o.value))
            .map(|o| o.required)
            .max();
        let need = match self.input.kind {
            InputKind::Button | InputKind::Select => per_option.unwrap_or(1),
            InputKind::Multiselect => per_option
                .unwrap_or(1)
                .max(self.input.required.unwrap_or(1)),
            InputKind::Text => self.input.required.unwrap_or(1),
        };
        need.max(1)
    }

    /// The option the decision chose, when it is one option (button, select).
    pub fn decided_option(&self) -> Option<&OptionSpec> {
        let decision = self.decision.as_deref()?;
        match self.input.kind {
            InputKind::Button | InputKind::Select => {
                self.options.iter().find(|o| o.value == decision)
            }
            InputKind::Multiselect | InputKind::Text => None,
        }
    }

    /// Fills the derived `values` of the approval and its votes from their one-string answers.
    pub fn fill_values(&mut self) {
        let kind = self.input.kind;
        self.values = self
            .decision
            .as_deref()
            .map(|d| answer_values(kind, d))
            .unwrap_or_default();
        for v in &mut self.votes {
            v.values = answer_values(kind, &v.option);
        }
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
                    accept_for: None,
                },
                OptionSpec {
                    value: "keep".into(),
                    label: "Keep".into(),
                    style: None,
                    required: 1,
                    accept_for: None,
                },
            ],
            input: Input::default(),
            approvers: vec!["alice".into(), "bob".into(), "carol".into()],
            requested_by: None,
            allow_self_approval: false,
            requested_at: Utc::now(),
            deadline: None,
            on_timeout: None,
            decided_at: None,
            decided_by: vec![],
            values: vec![],
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
            values: vec![],
        }
    }

    fn answer(by: &str, values: &[&str]) -> Vote {
        Vote::new(by, values.iter().map(|v| v.to_string()).collect(), "cli")
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

    #[test]
    fn may_vote_says_what_vote_would_refuse_whatever_the_answer() {
        let mut a = approval(2);
        assert_eq!(a.may_vote("alice"), Ok(()));
        assert!(matches!(
            a.may_vote("mallory"),
            Err(Refusal::NotAnApprover { .. })
        ));
        let t = a.vote(vote("alice", "deactivate")).unwrap();
        apply(&mut a, t);
        assert!(matches!(
            a.may_vote("alice"),
            Err(Refusal::AlreadyVoted { .. })
        ));
        a.status = Status::Expired;
        assert!(matches!(a.may_vote("bob"), Err(Refusal::Expired { .. })));
    }

    #[test]
    fn a_multiselect_decides_only_on_identical_sets() {
        let mut a = approval(1);
        a.input.kind = InputKind::Multiselect;
        a.input.required = Some(2);
        // Order and duplicates do not matter: the set is kept in option order.
        let t = a
            .vote(answer("alice", &["keep", "deactivate", "keep"]))
            .unwrap();
        let Transition::Vote(v) = &t else {
            panic!("{t:?}")
        };
        assert_eq!(v.values, vec!["deactivate", "keep"]);
        assert_eq!(v.option, "deactivate, keep");
        apply(&mut a, t);
        // A different set does not add to it.
        let t = a.vote(answer("bob", &["deactivate"])).unwrap();
        assert!(matches!(t, Transition::Vote(_)), "{t:?}");
        apply(&mut a, t);
        let t = a.vote(answer("carol", &["keep", "deactivate"])).unwrap();
        assert!(
            matches!(&t, Transition::VoteDecides { option, by, .. }
                if option == "deactivate, keep" && by == &["alice", "carol"]),
            "{t:?}"
        );
        let err = a.vote(answer("bob", &["nuke"])).unwrap_err();
        assert!(matches!(err, Refusal::UnknownOption { .. }), "{err}");
        let err = approval(1).vote(answer("bob", &[])).unwrap_err();
        assert!(
            matches!(
                err,
                Refusal::UnknownOption { .. } | Refusal::BadAnswer { .. }
            ),
            "{err}"
        );
    }

    #[test]
    fn a_text_answer_must_match_the_pattern_and_agree() {
        let mut a = approval(1);
        a.input.kind = InputKind::Text;
        a.input.pattern = Some("^team-[a-z]+$".into());
        a.input.required = Some(2);
        let err = a.vote(answer("alice", &["Payments"])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"Payments\" does not match the pattern ^team-[a-z]+$ that approval 7 requires; answer again"
        );
        let err = a.vote(answer("alice", &["   "])).unwrap_err();
        assert!(matches!(err, Refusal::BadAnswer { .. }), "{err}");
        let t = a.vote(answer("alice", &[" team-data "])).unwrap();
        assert!(
            matches!(&t, Transition::Vote(v) if v.option == "team-data"),
            "{t:?}"
        );
        apply(&mut a, t);
        let t = a.vote(answer("bob", &["team-payments"])).unwrap();
        assert!(
            matches!(t, Transition::Vote(_)),
            "a different text is another answer"
        );
        apply(&mut a, t);
        let t = a.vote(answer("carol", &["team-data"])).unwrap();
        assert!(
            matches!(&t, Transition::VoteDecides { option, .. } if option == "team-data"),
            "{t:?}"
        );
    }

    #[test]
    fn a_single_choice_takes_exactly_one_value() {
        let a = approval(1);
        let err = a
            .vote(answer("alice", &["keep", "deactivate"]))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "approval 7 takes exactly one option (one of: deactivate, keep)"
        );
        let mut decided = approval(1);
        decided.input.kind = InputKind::Multiselect;
        decided.decision = Some("deactivate, keep".into());
        decided.votes.push(vote("alice", "deactivate, keep"));
        decided.fill_values();
        assert_eq!(decided.values, vec!["deactivate", "keep"]);
        assert_eq!(decided.votes[0].values, vec!["deactivate", "keep"]);
    }
}
