//! `vigilo init [DIR] [--example]`: a project to start from, which `vigilo validate` accepts as
//! it is written.
//!
//! The plain scaffold is one commented config file, one AWS connection, one query and one
//! remediation; `--example` writes the repository's own example project (config/, queries/,
//! remediations/), embedded in the binary file by file. Both add a `.gitignore` for the state
//! file. Nothing that exists is overwritten: a file in the way stops `init` before it writes.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The scaffold's `config/vigilo.toml`.
const VIGILO_TOML: &str = r#"# vigilo's settings. Every string may use ${VAR} or ${VAR:-fallback}; secrets come in that way.

# vigilo's own state: snapshots of each query's result, findings, approvals, the audit trail.
# A path is relative to the project; a postgres:// URL lets several vigilo processes share it.
[state]
url = "sqlite://vigilo.db"

# Where queries run. Steampipe serves its tables over the PostgreSQL protocol
# (`steampipe service start` prints the URL); SQLite files and PostgreSQL work too.
[database.steampipe]
url = "${STEAMPIPE_URL:-postgres://steampipe@127.0.0.1:9193/steampipe}"
statement_timeout = "60s"

# Who is told, and where. `console` prints to the terminal (and the log of `vigilo run`);
# Slack, email and webhooks are integrations: see README.md.
[notifier.security]
notify = [{ integration = "console" }]

# The people who may decide. Add `slack = "U0…"` or `email = "…"` to reach them there.
[approver.alice]
[approver.bob]

[group.security]
members = ["alice", "bob"]
"#;

/// The scaffold's `config/aws.toml`.
const AWS_TOML: &str = r#"# AWS accounts the remediation actions act in, one [connection.aws.NAME] each.
# An action names its connection (default "default"); a name with no section here fails the
# action: vigilo never falls back to another account.
#
# This one uses the standard credential chain, as the aws CLI does: AWS_PROFILE or
# AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws/config and credentials, SSO, instance roles.
[connection.aws.default]
# profile = "security-audit"                                 # a profile of ~/.aws/config
# role_arn = "arn:aws:iam::111111111111:role/vigilo-remediator"   # assumed through STS
# endpoint_url = "http://127.0.0.1:5000"                     # moto or LocalStack, for trying it out
"#;

/// The scaffold's query.
const QUERY_SQL: &str = r#"-- title: IAM access keys active for more than 90 days
-- database: steampipe
-- schedule: 0 * * * *
-- primary_key: access_key_id
-- ignore_columns: age_days
-- remediation: deactivate_iam_access_key
-- severity: high
--
-- A query is plain SQL (it runs as it is in psql); its settings are the comments above.
-- Each row is a finding until it is gone; the primary key tells rows apart between runs.
select access_key_id, user_name, account_id,
       date_part('day', now() - create_date) as age_days
from aws_iam_access_key
where create_date < now() - interval '90 days' and status = 'Active'
"#;

/// The scaffold's remediation.
const REMEDIATION_TOML: &str = r#"# Started for each new finding of queries/iam_access_key_stale.sql.
title = "Deactivate a stale IAM access key"
recheck = true        # run the query again just before acting: act only if the key is still stale
dry_run = true        # print and record the exact AWS call, make none; set false when you trust it

[approval]
notifier = "security"
subject = "Deactivate IAM access key {{ row.access_key_id }}?"
prompt = "Key {{ row.access_key_id }} of {{ row.user_name }} [{{ row.account_id }}] is {{ row.age_days | int }} days old."
approvers = ["security"]
timeout = "24h"       # no decision within a day: the approval expires and nothing runs
options = [
  { value = "deactivate", label = "Deactivate", style = "danger" },
  { value = "keep", label = "Keep key active" },
]

# Runs when "deactivate" wins. The key is read first: already Inactive means nothing is called.
[[action]]
when = "deactivate"
type = "aws.iam.update_access_key"
connection = "default"
user_name = "{{ row.user_name }}"
access_key_id = "{{ row.access_key_id }}"
status = "Inactive"

[[message]]
when = "deactivate"
notifier = "security"
text = "Deactivated {{ row.access_key_id }} of {{ row.user_name }}; approved by {{ approval.decided_by }}."
"#;

/// The `.gitignore` of either project: the SQLite state store and its journal files.
const GITIGNORE: &str = "# vigilo's state store (config/vigilo.toml [state])\nvigilo.db\nvigilo.db-wal\nvigilo.db-shm\n";

/// The plain scaffold, path by path.
const SCAFFOLD: &[(&str, &str)] = &[
    ("config/vigilo.toml", VIGILO_TOML),
    ("config/aws.toml", AWS_TOML),
    ("queries/iam_access_key_stale.sql", QUERY_SQL),
    (
        "remediations/deactivate_iam_access_key.toml",
        REMEDIATION_TOML,
    ),
    (".gitignore", GITIGNORE),
];

/// The repository's example project, path by path.
const EXAMPLE: &[(&str, &str)] = &[
    ("config/vigilo.toml", include_str!("../config/vigilo.toml")),
    (
        "config/databases.toml",
        include_str!("../config/databases.toml"),
    ),
    ("config/people.toml", include_str!("../config/people.toml")),
    ("config/aws.toml", include_str!("../config/aws.toml")),
    (
        "queries/iam_access_key_stale.sql",
        include_str!("../queries/iam_access_key_stale.sql"),
    ),
    (
        "queries/iam_user_console_without_mfa.sql",
        include_str!("../queries/iam_user_console_without_mfa.sql"),
    ),
    (
        "queries/s3_bucket_public_access_not_blocked.sql",
        include_str!("../queries/s3_bucket_public_access_not_blocked.sql"),
    ),
    (
        "queries/s3_bucket_versioning_disabled.sql",
        include_str!("../queries/s3_bucket_versioning_disabled.sql"),
    ),
    (
        "queries/s3_bucket_without_owner_tag.sql",
        include_str!("../queries/s3_bucket_without_owner_tag.sql"),
    ),
    (
        "queries/vpc_security_group_open_admin_ports.sql",
        include_str!("../queries/vpc_security_group_open_admin_ports.sql"),
    ),
    (
        "remediations/README.md",
        include_str!("../remediations/README.md"),
    ),
    (
        "remediations/block_bucket_public_access.toml",
        include_str!("../remediations/block_bucket_public_access.toml"),
    ),
    (
        "remediations/deactivate_iam_access_key.toml",
        include_str!("../remediations/deactivate_iam_access_key.toml"),
    ),
    (
        "remediations/enable_bucket_versioning.toml",
        include_str!("../remediations/enable_bucket_versioning.toml"),
    ),
    (
        "remediations/remove_console_password.toml",
        include_str!("../remediations/remove_console_password.toml"),
    ),
    (
        "remediations/revoke_open_admin_port.toml",
        include_str!("../remediations/revoke_open_admin_port.toml"),
    ),
    (
        "remediations/tag_bucket_owner.toml",
        include_str!("../remediations/tag_bucket_owner.toml"),
    ),
    (".gitignore", GITIGNORE),
];

/// Which project `init` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Template {
    /// One config, one connection, one query, one remediation.
    Scaffold,
    /// The repository's example project.
    Example,
}

/// A file `init` will not overwrite.
#[derive(Debug, thiserror::Error)]
#[error(
    "{} already exists; vigilo init never overwrites a file: choose a new or empty directory (vigilo init DIR)",
    .0.display()
)]
pub struct Exists(pub PathBuf);

/// Writes `template` into `dir` (created if needed) and returns the files written, relative to
/// `dir`. Fails with [`Exists`] before writing anything when one of them exists.
pub fn write(dir: &Path, template: Template) -> Result<Vec<&'static str>> {
    let files = match template {
        Template::Scaffold => SCAFFOLD,
        Template::Example => EXAMPLE,
    };
    if let Some((path, _)) = files.iter().find(|(path, _)| dir.join(path).exists()) {
        return Err(Exists(dir.join(path)).into());
    }
    for (path, text) in files {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&target, text)
            .with_context(|| format!("cannot write {}", target.display()))?;
    }
    Ok(files.iter().map(|(path, _)| *path).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_overwritten_and_nothing_written_when_a_file_is_in_the_way() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("queries")).unwrap();
        std::fs::write(dir.path().join("queries/iam_access_key_stale.sql"), "mine").unwrap();
        let err = write(dir.path(), Template::Scaffold).unwrap_err();
        assert!(err.downcast_ref::<Exists>().is_some(), "{err}");
        assert!(!dir.path().join("config").exists());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("queries/iam_access_key_stale.sql")).unwrap(),
            "mine"
        );
    }
}
