//! An action type's parameters: what each takes (its [`Param`] spec), what a remediation file
//! wrote ([`ParamValue`], templates unrendered), and the rendered parameters an action runs
//! with ([`Params`]), read with the type each one has.

use std::collections::BTreeMap;

use serde_json::Value;

/// What kind of value a parameter takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string (a template).
    Text,
    /// `true`/`false`, or a template that renders as one.
    Bool,
    /// An integer, or a template that renders as one.
    Int,
    /// A table of strings (each a template).
    Table,
}

/// Whether a parameter must be given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// It must be given.
    Required,
    /// It may be left out.
    Optional,
    /// Left out, it takes this value (read as its kind).
    Default(&'static str),
}

/// One parameter of an action type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param {
    /// Its key in `[[action]]`.
    pub name: &'static str,
    /// What it takes.
    pub kind: Kind,
    /// Whether it must be given.
    pub need: Need,
}

impl Param {
    /// A required string.
    pub const fn text(name: &'static str) -> Param {
        Param {
            name,
            kind: Kind::Text,
            need: Need::Required,
        }
    }

    /// A parameter of `kind` with `need`.
    pub const fn new(name: &'static str, kind: Kind, need: Need) -> Param {
        Param { name, kind, need }
    }
}

/// `connection`: a `[connection.aws.NAME]`, default `default`.
pub const CONNECTION: Param = Param::new("connection", Kind::Text, Need::Default("default"));

/// `region`: the region to act in; default the connection's.
pub const REGION: Param = Param::new("region", Kind::Text, Need::Optional);

/// A parameter's value as a remediation file wrote it (strings are templates).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamValue {
    /// A string (a template).
    Text(String),
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A table of strings (each a template).
    Table(BTreeMap<String, String>),
}

impl ParamValue {
    /// The string, if it is one.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            ParamValue::Text(s) => Some(s),
            _ => None,
        }
    }

    /// The table, if it is one.
    pub fn as_table(&self) -> Option<&BTreeMap<String, String>> {
        match self {
            ParamValue::Table(t) => Some(t),
            _ => None,
        }
    }
}

/// A rendered string read as `kind`: `"true"`/`"false"` as a boolean, digits as an integer,
/// empty or `none` (a null column) as no value; anything else stays a string (and the action
/// fails, naming it, when it runs).
pub fn coerce(kind: Kind, text: &str) -> Value {
    let t = text.trim();
    match kind {
        Kind::Bool | Kind::Int if t.is_empty() || t == "none" => Value::Null,
        Kind::Bool if t.eq_ignore_ascii_case("true") => Value::Bool(true),
        Kind::Bool if t.eq_ignore_ascii_case("false") => Value::Bool(false),
        Kind::Int => t
            .parse::<i64>()
            .map_or_else(|_| Value::String(text.to_string()), Value::from),
        _ => Value::String(text.to_string()),
    }
}

/// An action's rendered parameters, read by type; every error ends "nothing was called".
#[derive(Debug, Clone, Copy)]
pub struct Params<'a> {
    /// The action type, for errors.
    pub kind: &'a str,
    /// The rendered parameters.
    pub values: &'a Value,
}

impl<'a> Params<'a> {
    /// The parameters of an action of type `kind`.
    pub fn new(kind: &'a str, values: &'a Value) -> Params<'a> {
        Params { kind, values }
    }

    fn error(&self, name: &str, what: &str) -> String {
        format!("{}: parameter {name} {what}; nothing was called", self.kind)
    }

    /// A required, non-empty string.
    pub fn text(&self, name: &str) -> Result<&'a str, String> {
        self.values[name]
            .as_str()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| self.error(name, "is missing or empty"))
    }

    /// An optional string (absent or empty: `None`).
    pub fn opt_text(&self, name: &str) -> Option<&'a str> {
        self.values[name].as_str().filter(|v| !v.is_empty())
    }

    /// A boolean (`true`, or the text `"true"`).
    pub fn bool(&self, name: &str) -> Result<bool, String> {
        match &self.values[name] {
            Value::Bool(b) => Ok(*b),
            Value::String(s) => match coerce(Kind::Bool, s) {
                Value::Bool(b) => Ok(b),
                _ => Err(self.error(name, &format!("must be true or false, not {s:?}"))),
            },
            Value::Null => Err(self.error(name, "is missing")),
            other => Err(self.error(name, &format!("must be true or false, not {other}"))),
        }
    }

    /// An optional integer (`443`, or the text `"443"`).
    pub fn opt_int(&self, name: &str) -> Result<Option<i64>, String> {
        match &self.values[name] {
            Value::Null => Ok(None),
            Value::Number(n) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| self.error(name, &format!("must be an integer, not {n}"))),
            Value::String(s) if s.trim().is_empty() => Ok(None),
            Value::String(s) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| self.error(name, &format!("must be an integer, not {s:?}"))),
            other => Err(self.error(name, &format!("must be an integer, not {other}"))),
        }
    }

    /// A table of strings (absent: empty).
    pub fn table(&self, name: &str) -> Result<BTreeMap<String, String>, String> {
        match &self.values[name] {
            Value::Null => Ok(BTreeMap::new()),
            Value::Object(m) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    other => Ok((k.clone(), other.to_string())),
                })
                .collect(),
            other => Err(self.error(name, &format!("must be a table, not {other}"))),
        }
    }

    /// The `connection` parameter.
    pub fn connection(&self) -> Result<&'a str, String> {
        self.text("connection")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn templated_booleans_and_integers_are_read_as_such() {
        assert_eq!(coerce(Kind::Bool, "true"), json!(true));
        assert_eq!(coerce(Kind::Bool, " False "), json!(false));
        assert_eq!(coerce(Kind::Bool, "yes"), json!("yes"));
        assert_eq!(coerce(Kind::Int, "443"), json!(443));
        assert_eq!(coerce(Kind::Int, "4x"), json!("4x"));
        assert_eq!(coerce(Kind::Int, "none"), Value::Null);
        assert_eq!(coerce(Kind::Text, "443"), json!("443"));
        let v = json!({"a": "true", "p": "22", "bad": "maybe", "q": "x"});
        let p = Params::new("t", &v);
        assert_eq!(p.bool("a"), Ok(true));
        assert_eq!(p.opt_int("p"), Ok(Some(22)));
        assert_eq!(p.opt_int("none"), Ok(None));
        assert_eq!(
            p.bool("bad"),
            Err("t: parameter bad must be true or false, not \"maybe\"; nothing was called".into())
        );
        assert!(p.opt_int("q").is_err());
        assert_eq!(
            p.text("none"),
            Err("t: parameter none is missing or empty; nothing was called".into())
        );
    }
}
