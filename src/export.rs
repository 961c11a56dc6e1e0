//! `vigilo audit export DIR`: one JSON file of evidence per decided or expired approval.
//!
//! Layout: `DIR/REMEDIATION/YYYY/MM/DD/APPROVAL_ID-APPROVED|DENIED|EXPIRED|ACCEPTED-HH-MM-SS.json`,
//! dated by the decision (UTC). APPROVED when the winning option runs actions,
//! DENIED when it runs none, EXPIRED when time ran out without `on_timeout`, ACCEPTED when
//! the winning option accepted the finding's risk for a while (`accept_for`).
//! Each file holds the approval with every vote, the finding, the actions'
//! results and the approval's audit entries.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::approval::Approval;
use crate::config::Project;
use crate::store::{Store, StoreError};

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

pub use crate::outcome::{outcome, outcome_of};

/// The file an approval is exported to, relative to the export directory.
pub fn file_name(a: &Approval, outcome: &str) -> PathBuf {
    let at = a.decided_at.unwrap_or(a.requested_at);
    Path::new(&a.remediation)
        .join(at.format("%Y").to_string())
        .join(at.format("%m").to_string())
        .join(at.format("%d").to_string())
        .join(format!("{}-{outcome}-{}.json", a.id, at.format("%H-%M-%S")))
}

/// Writes every settled approval under `dir`; returns the files written.
pub async fn export(
    project: &Project,
    store: &dyn Store,
    dir: &Path,
) -> Result<Vec<PathBuf>, ExportError> {
    let approvals = store.approvals(false).await?;
    let actions = store.actions().await?;
    let audit: Vec<_> = crate::store::audit_entries(store)
        .await?
        .into_iter()
        .filter(|e| e.approval_id.is_some())
        .collect();
    let mut written = Vec::new();
    for a in &approvals {
        let Some(word) = outcome(project, a) else {
            continue;
        };
        let finding = store.finding(a.finding_id).await?;
        let doc = crate::redact::json(json!({
            "outcome": word,
            "approval": a,
            "finding": finding,
            "actions": actions.iter().filter(|x| x.approval_id == Some(a.id)).collect::<Vec<_>>(),
            "audit": audit.iter().filter(|e| e.approval_id == Some(a.id)).collect::<Vec<_>>(),
        }));
        let path = dir.join(file_name(a, word));
        let write = |path: &Path| -> std::io::Result<()> {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(
                path,
                serde_json::to_vec_pretty(&doc).map_err(std::io::Error::other)?,
            )
        };
        write(&path).map_err(|source| ExportError::Write {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}
