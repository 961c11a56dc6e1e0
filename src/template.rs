//! Templates in remediation files: minijinja with strict undefined.
//!
//! Templates see four names: `row`, `finding`, `query` and `approval`. An
//! undefined name or attribute is an error, never an empty string, so a typo
//! cannot send "Deactivate key ?" to an approver or call AWS with an empty id.
//! Output is plain text (no HTML escaping); the web page escapes on its own.

use minijinja::{Environment, UndefinedBehavior};

/// The names a template may use.
pub const NAMES: [&str; 4] = ["row", "finding", "query", "approval"];

/// minijinja's own global functions, which templates may call.
const BUILTINS: [&str; 4] = ["range", "dict", "namespace", "debug"];

/// Why a template is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    /// 1-based line inside the template, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

/// The environment every template is compiled and rendered in.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env
}

/// Checks that `source` parses and uses only [`NAMES`] (and minijinja's builtins).
pub fn check(source: &str) -> Result<(), TemplateError> {
    let env = environment();
    let template = env.template_from_str(source).map_err(|e| TemplateError {
        line: e.line(),
        message: format!(
            "template does not parse: {}",
            e.detail().unwrap_or(&e.to_string())
        ),
    })?;
    let mut unknown: Vec<String> = template
        .undeclared_variables(false)
        .into_iter()
        .filter(|v| !NAMES.contains(&v.as_str()) && !BUILTINS.contains(&v.as_str()))
        .collect();
    unknown.sort();
    match unknown.first() {
        None => Ok(()),
        Some(_) => Err(TemplateError {
            line: None,
            message: format!(
                "template uses undefined name{} {}; templates see {}",
                if unknown.len() == 1 { "" } else { "s" },
                unknown.join(", "),
                NAMES.join(", ")
            ),
        }),
    }
}

/// Renders `source` with `context` (an object with the [`NAMES`]).
pub fn render(source: &str, context: &serde_json::Value) -> Result<String, TemplateError> {
    environment()
        .render_str(
            source,
            minijinja::Value::from(minijinja::value::Serde(context)),
        )
        .map_err(|e| TemplateError {
            line: e.line(),
            message: format!("template failed: {}", e.detail().unwrap_or(&e.to_string())),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn valid_templates_pass() {
        for ok in [
            "plain text",
            "Key {{ row.access_key_id }} of {{ row.user_name }}",
            "{% for k in row %}{{ k }}{% endfor %} {{ approval.decided_by }} {{ finding.id }} {{ query.title }}",
            "{{ row.age_days | int }} {{ row | tojson }}",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn syntax_errors_give_their_line() {
        let err = check("line one\n{{ row.x ").unwrap_err();
        assert_eq!(err.line, Some(2), "{err:?}");
        assert!(err.message.starts_with("template does not parse"), "{err}");
    }

    #[test]
    fn unknown_names_are_errors() {
        let err = check("{{ rows.id }} {{ findng }}").unwrap_err();
        assert_eq!(
            err.message,
            "template uses undefined names findng, rows; templates see row, finding, query, approval"
        );
    }

    #[test]
    fn rendering_is_strict() {
        let ctx = json!({"row": {"id": "AKIA1"}, "finding": {}, "query": {}, "approval": {}});
        assert_eq!(render("key {{ row.id }}", &ctx).unwrap(), "key AKIA1");
        assert!(
            render("key {{ row.missing }}", &ctx).is_err(),
            "an undefined attribute is an error"
        );
        assert_eq!(
            render("<{{ row.id }}>", &ctx).unwrap(),
            "<AKIA1>",
            "no HTML escaping"
        );
    }
}
