//! An action's rendered parameters ([`Params`]), read with the type each one has. What a
//! type takes and what a remediation file wrote ([`Param`], [`ParamValue`]) are the config's
//! vocabulary (`config::params`), re-exported here for the components.

use std::collections::BTreeMap;

use serde_json::Value;

pub use crate::config::params::{CONNECTION, Kind, Need, Param, ParamValue, REGION, coerce};

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
