//! `${NAME}` and `${NAME:-fallback}` in config values (interface.md 1.1).
//!
//! - `${NAME}` is replaced by the environment variable `NAME`; unset is an error.
//! - `${NAME:-fallback}` uses `fallback` when `NAME` is unset or empty (as in a shell).
//! - `$$` is an escaped `$` (so `$${NAME}` is the literal text `${NAME}`), as in
//!   Docker Compose; a `$` not followed by `{` or `$` stays as it is.
//!
//! The environment is passed in as a lookup function so tests never touch the
//! process environment.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeString, DeValue};

/// Looks up an environment variable: `Some(value)` when set.
pub(crate) type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, as a [`Lookup`].
pub(crate) fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Why a value could not be interpolated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EnvError {
    /// `${NAME}` with `NAME` unset and no fallback.
    #[error("environment variable {0} is not set")]
    Unset(String),
    /// `${` without a closing `}`.
    #[error("unterminated `${{` (write `$${{` for a literal `${{`)")]
    Unterminated,
    /// `${...}` whose name is not `[A-Za-z_][A-Za-z0-9_]*`.
    #[error("invalid environment variable name {0:?} in `${{...}}`")]
    BadName(String),
}

/// Replaces every `${NAME}` / `${NAME:-fallback}` in `text`.
pub(crate) fn interpolate(text: &str, lookup: Lookup<'_>) -> Result<String, EnvError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner_and_tail) = after.strip_prefix('{') {
            let end = inner_and_tail.find('}').ok_or(EnvError::Unterminated)?;
            out.push_str(&expand(&inner_and_tail[..end], lookup)?);
            rest = &inner_and_tail[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Expands the inside of one `${...}`.
fn expand(inner: &str, lookup: Lookup<'_>) -> Result<String, EnvError> {
    let (name, fallback) = match inner.split_once(":-") {
        Some((name, fallback)) => (name, Some(fallback)),
        None => (inner, None),
    };
    if !is_identifier(name) {
        return Err(EnvError::BadName(name.to_string()));
    }
    match (lookup(name), fallback) {
        (Some(value), Some(fallback)) if value.is_empty() => Ok(fallback.to_string()),
        (Some(value), _) => Ok(value),
        (None, Some(fallback)) => Ok(fallback.to_string()),
        (None, None) => Err(EnvError::Unset(name.to_string())),
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`.
pub(crate) fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// One failed interpolation in a TOML tree: the value's span and the message
/// (`KEY.PATH: what is wrong`).
pub(crate) type TreeError = (Range<usize>, String);

/// Interpolates every string value in `value` (not keys), in place.
///
/// `path` is the dotted key path of `value` (empty at the document root).
pub(crate) fn interpolate_tree(
    value: &mut Spanned<DeValue<'_>>,
    path: &str,
    lookup: Lookup<'_>,
    errors: &mut Vec<TreeError>,
) {
    let span = value.span();
    match value.get_mut() {
        DeValue::String(s) => match interpolate(s, lookup) {
            Ok(new) if new != s.as_ref() => *s = DeString::Owned(new),
            Ok(_) => {}
            Err(e) => errors.push((span, format!("{path}: {e}"))),
        },
        DeValue::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_tree(item, &format!("{path}[{i}]"), lookup, errors);
            }
        }
        DeValue::Table(table) => {
            for (key, item) in table.iter_mut() {
                let key = key.get_ref();
                let child = if path.is_empty() {
                    key.to_string()
                } else {
                    format!("{path}.{key}")
                };
                interpolate_tree(item, &child, lookup, errors);
            }
        }
        DeValue::Integer(_) | DeValue::Float(_) | DeValue::Boolean(_) | DeValue::Datetime(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("xoxb-1".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn run(text: &str) -> Result<String, EnvError> {
        interpolate(text, &env)
    }

    #[test]
    fn replaces_set_variables() {
        assert_eq!(run("${TOKEN}").unwrap(), "xoxb-1");
        assert_eq!(run("a ${TOKEN} b ${TOKEN}").unwrap(), "a xoxb-1 b xoxb-1");
    }

    #[test]
    fn unset_without_fallback_is_an_error() {
        assert_eq!(run("x${NOPE}"), Err(EnvError::Unset("NOPE".into())));
        assert_eq!(
            EnvError::Unset("NOPE".into()).to_string(),
            "environment variable NOPE is not set"
        );
    }

    #[test]
    fn fallbacks_apply_when_unset_or_empty() {
        assert_eq!(run("${NOPE:-dflt}").unwrap(), "dflt");
        assert_eq!(run("${EMPTY:-dflt}").unwrap(), "dflt");
        assert_eq!(run("${TOKEN:-dflt}").unwrap(), "xoxb-1");
        assert_eq!(run("${NOPE:-}").unwrap(), "");
        assert_eq!(run("${NOPE:-a:-b}").unwrap(), "a:-b");
    }

    #[test]
    fn empty_set_variable_without_fallback_is_empty() {
        assert_eq!(run("<${EMPTY}>").unwrap(), "<>");
    }

    #[test]
    fn dollars_without_braces_stay_literal() {
        assert_eq!(run("cost $5 and $TOKEN").unwrap(), "cost $5 and $TOKEN");
        assert_eq!(run("trailing $").unwrap(), "trailing $");
        assert_eq!(run("$$").unwrap(), "$");
        assert_eq!(run("$${TOKEN}").unwrap(), "${TOKEN}");
        assert_eq!(run("$$$${TOKEN}").unwrap(), "$${TOKEN}");
    }

    #[test]
    fn malformed_references_are_errors() {
        assert_eq!(run("${TOKEN"), Err(EnvError::Unterminated));
        assert_eq!(run("${}"), Err(EnvError::BadName(String::new())));
        assert_eq!(run("${1X}"), Err(EnvError::BadName("1X".into())));
        assert_eq!(run("${A B}"), Err(EnvError::BadName("A B".into())));
    }

    #[test]
    fn tree_errors_name_the_key_path() {
        let text = "[a.b]\nc = \"${NOPE}\"\nd = [\"ok\", \"${NOPE2}\"]\ne = \"${TOKEN}\"\n";
        let (doc, errs) = toml::de::DeTable::parse_recoverable(text);
        assert!(errs.is_empty());
        let mut value = Spanned::new(doc.span(), DeValue::Table(doc.into_inner()));
        let mut errors = Vec::new();
        interpolate_tree(&mut value, "", &env, &mut errors);
        let messages: Vec<&str> = errors.iter().map(|(_, m)| m.as_str()).collect();
        assert_eq!(
            messages,
            [
                "a.b.c: environment variable NOPE is not set",
                "a.b.d[1]: environment variable NOPE2 is not set",
            ]
        );
        assert_eq!(&text[errors[0].0.clone()], "\"${NOPE}\"");
        let e = value.get_ref().get("a").and_then(|a| a.get_ref().get("b"));
        let e = e
            .and_then(|b| b.get_ref().get("e"))
            .map(|e| e.get_ref().as_str());
        assert_eq!(e, Some(Some("xoxb-1")));
    }
}
