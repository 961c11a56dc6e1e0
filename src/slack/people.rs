//! Which approver a Slack user is: by the `slack` id in `[approver.NAME]`, or, for an approver
//! known only by `email`, by the user `users.lookupByEmail` finds for that address. Found ids
//! are cached per bot token; a user that matches no approver makes vigilo look every such
//! address up again (someone may have joined, or changed address), so the cache never hides a
//! new approver.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use serde_json::{Value, json};

use super::{Api, SlackError};
use crate::config::{Project, SlackConfig};

/// (bot token, email) → the Slack user id found for it.
static FOUND: LazyLock<Mutex<HashMap<(String, String), String>>> = LazyLock::new(Mutex::default);

/// An approver's address that names no Slack user, or could not be looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unresolved {
    /// The approver.
    pub approver: String,
    /// Their configured address.
    pub email: String,
    /// Why (`users_not_found`, or the failed call).
    pub error: String,
}

impl Unresolved {
    /// As recorded in the audit trail.
    pub fn to_json(&self) -> Value {
        json!({"approver": self.approver, "email": self.email, "error": self.error})
    }
}

impl std::fmt::Display for Unresolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "approver.{}: email {} is no Slack user of this workspace ({})",
            self.approver, self.email, self.error
        )
    }
}

/// Who a Slack user is to vigilo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Person {
    /// The approver of that name.
    Approver(String),
    /// Nobody vigilo knows; these approvers' addresses could not be matched to a user.
    Stranger(Vec<Unresolved>),
}

/// The Slack user id of `email` (`None`: no such user), asking Slack.
pub async fn lookup(
    http: &reqwest::Client,
    cfg: &SlackConfig,
    email: &str,
) -> Result<Option<String>, SlackError> {
    match Api::new(http, cfg)
        .call_form("users.lookupByEmail", &[("email", email)])
        .await
    {
        Ok(answer) => {
            let id = answer["user"]["id"].as_str().map(str::to_string);
            if let Some(id) = &id {
                let key = (cfg.token.expose().to_string(), email.to_string());
                FOUND
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key, id.clone());
            }
            Ok(id)
        }
        Err(SlackError::Api { error, .. }) if error == "users_not_found" => Ok(None),
        Err(e) => Err(e),
    }
}

/// The approvers known only by email: (name, address).
fn by_email(project: &Project) -> impl Iterator<Item = (&str, &str)> {
    project
        .approvers
        .values()
        .filter_map(|a| match (&a.slack, &a.email) {
            (None, Some(email)) => Some((a.name.as_str(), email.as_str())),
            _ => None,
        })
}

/// Who Slack user `user` is: an approver by configured id, by a cached address, or by an
/// address looked up again now.
pub async fn person(project: &Project, cfg: &SlackConfig, user: &str) -> Person {
    if let Some(a) = project
        .approvers
        .values()
        .find(|a| a.slack.as_deref() == Some(user))
    {
        return Person::Approver(a.name.clone());
    }
    let token = cfg.token.expose().to_string();
    {
        let found = FOUND.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((name, _)) = by_email(project).find(|(_, email)| {
            found
                .get(&(token.clone(), email.to_string()))
                .map(String::as_str)
                == Some(user)
        }) {
            return Person::Approver(name.to_string());
        }
    }
    let http = reqwest::Client::new();
    let mut unresolved = Vec::new();
    for (name, email) in by_email(project) {
        match lookup(&http, cfg, email).await {
            Ok(Some(id)) if id == user => return Person::Approver(name.to_string()),
            Ok(Some(_)) => {}
            Ok(None) => unresolved.push(Unresolved {
                approver: name.to_string(),
                email: email.to_string(),
                error: "users_not_found".into(),
            }),
            Err(e) => unresolved.push(Unresolved {
                approver: name.to_string(),
                email: email.to_string(),
                error: e.to_string(),
            }),
        }
    }
    Person::Stranger(unresolved)
}

/// Looks up every email-only approver; returns those that name no Slack user.
pub async fn unresolved(
    project: &Project,
    http: &reqwest::Client,
    cfg: &SlackConfig,
) -> Vec<Unresolved> {
    let mut out = Vec::new();
    for (name, email) in by_email(project) {
        let error = match lookup(http, cfg, email).await {
            Ok(Some(_)) => continue,
            Ok(None) => "users_not_found".to_string(),
            Err(e) => e.to_string(),
        };
        out.push(Unresolved {
            approver: name.to_string(),
            email: email.to_string(),
            error,
        });
    }
    out
}
