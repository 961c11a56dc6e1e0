//! What an approval's outcome means: APPROVED when the winning option runs actions, DENIED
//! when it runs none, EXPIRED when time ran out without `on_timeout`, ACCEPTED when the
//! option accepted the finding's risk; the one reading for exports, reports and `/metrics`.

use crate::approval::{Approval, Status};
use crate::config::Project;

/// The outcome word of a settled approval, or `None` while it is pending: ACCEPTED when the
/// decision accepted the finding's risk (an option with `accept_for`), else [`outcome_of`].
pub fn outcome(project: &Project, a: &Approval) -> Option<&'static str> {
    if a.status == Status::Decided && a.decided_option().is_some_and(|o| o.accept_for.is_some()) {
        return Some("ACCEPTED");
    }
    outcome_of(project, &a.remediation, a.status, a.decision.as_deref())
}

/// The outcome word of an approval of `remediation` in `status` with `decision`: APPROVED when
/// the winning option runs actions, DENIED when it runs none, EXPIRED; `None` while pending.
pub fn outcome_of(
    project: &Project,
    remediation: &str,
    status: Status,
    decision: Option<&str>,
) -> Option<&'static str> {
    match status {
        Status::Pending => None,
        Status::Expired => Some("EXPIRED"),
        Status::Decided => {
            let runs = decision.is_some_and(|d| runs_actions(project, remediation, d));
            Some(if runs { "APPROVED" } else { "DENIED" })
        }
    }
}

/// [`outcome`]'s word in lower case, `pending` for none.
pub fn word(outcome: Option<&str>) -> &'static str {
    match outcome {
        None => "pending",
        Some("APPROVED") => "approved",
        Some("DENIED") => "denied",
        Some("ACCEPTED") => "accepted",
        Some(_) => "expired",
    }
}

/// Whether the answer `decision` (an option, a text, or a multiselect's values joined) runs
/// any action of `remediation`.
pub fn runs_actions(project: &Project, remediation: &str, decision: &str) -> bool {
    project.remediations.get(remediation).is_some_and(|r| {
        let kind = r
            .approval
            .as_ref()
            .map(|a| a.input.kind)
            .unwrap_or_default();
        let values = crate::approval::answer_values(kind, decision);
        r.actions
            .iter()
            .any(|a| r.runs_for(a.when.as_deref(), Some(&values)))
    })
}
