//! The one table of the Slack Web API methods vigilo calls, with the token each takes and
//! the scopes Slack requires for it. `Api` refuses a method that is not here, the app
//! manifest asks for exactly these bot scopes, and `vigilo validate --online` compares a
//! token's scopes with them.

use std::collections::BTreeSet;

/// Which token a method is called with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    /// The bot token (`token`, `xoxb-`).
    Bot,
    /// The app-level token (`app_token`, `xapp-`).
    App,
}

/// A Web API method vigilo calls.
#[derive(Debug)]
pub struct Method {
    /// As Slack names it (`chat.postMessage`).
    pub name: &'static str,
    /// The token it is called with.
    pub token: Token,
    /// The scopes Slack requires for it (any of them may be needed, depending on the channel).
    pub scopes: &'static [&'static str],
    /// What vigilo calls it for.
    pub why: &'static str,
}

/// Every Web API method vigilo calls.
pub const METHODS: &[Method] = &[
    Method {
        name: "chat.postMessage",
        token: Token::Bot,
        scopes: &["chat:write"],
        why: "post approval requests, votes and messages",
    },
    Method {
        name: "chat.update",
        token: Token::Bot,
        scopes: &["chat:write"],
        why: "show a request's outcome in place of its buttons",
    },
    Method {
        name: "chat.postEphemeral",
        token: Token::Bot,
        scopes: &["chat:write"],
        why: "tell one person why their click changed nothing",
    },
    Method {
        name: "conversations.history",
        token: Token::Bot,
        scopes: &["channels:history", "groups:history"],
        why: "find a post whose earlier attempt may have reached Slack, so it is never posted twice (public and private channels)",
    },
    Method {
        name: "conversations.replies",
        token: Token::Bot,
        scopes: &["channels:history", "groups:history"],
        why: "the same, for a post in a request's thread",
    },
    Method {
        name: "users.lookupByEmail",
        token: Token::Bot,
        scopes: &["users:read", "users:read.email"],
        why: "find the Slack user of an approver configured by email (Slack grants users:read.email only with users:read)",
    },
    Method {
        name: "views.open",
        token: Token::Bot,
        scopes: &[],
        why: "open the answer form of a text approval from a click",
    },
    Method {
        name: "auth.test",
        token: Token::Bot,
        scopes: &[],
        why: "vigilo validate --online: check the bot token and list its scopes",
    },
    Method {
        name: "apps.connections.open",
        token: Token::App,
        scopes: &["connections:write"],
        why: "open a Socket Mode connection",
    },
];

/// Bot scopes needed for something other than a method call.
pub const OTHER_BOT_SCOPES: &[(&str, &str)] = &[("commands", "the /vigilo slash command")];

/// The table entry of `name`.
pub fn method(name: &str) -> Option<&'static Method> {
    METHODS.iter().find(|m| m.name == name)
}

/// Every bot scope vigilo needs: those of its bot-token methods and of the slash command.
pub fn bot_scopes() -> BTreeSet<&'static str> {
    METHODS
        .iter()
        .filter(|m| m.token == Token::Bot)
        .flat_map(|m| m.scopes.iter().copied())
        .chain(OTHER_BOT_SCOPES.iter().map(|(scope, _)| *scope))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_method_is_listed_once() {
        let names: BTreeSet<&str> = METHODS.iter().map(|m| m.name).collect();
        assert_eq!(names.len(), METHODS.len());
    }

    #[test]
    fn app_level_scopes_are_not_bot_scopes() {
        assert!(!bot_scopes().contains("connections:write"));
        assert!(bot_scopes().contains("commands"));
    }
}
