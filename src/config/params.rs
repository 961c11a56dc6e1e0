//! What an `[[action]]` of a remediation file may write: each action type's parameters
//! ([`Param`]: name, [`Kind`], [`Need`]), the values as written ([`ParamValue`], templates
//! unrendered), and the [`Catalog`] of types that loading checks them against. The catalog
//! itself is `action`'s registry, handed to [`super::load`]; config names no action type.

use std::collections::BTreeMap;

use serde_json::Value;

/// The action types a project may name, as loading checks them (`action::REGISTRY`).
pub trait Catalog: Sync {
    /// The parameters of action type `type_name`; `None` when there is no such type.
    fn params(&self, type_name: &str) -> Option<&'static [Param]>;

    /// Checks one literal value of parameter `param` of `type_name`: an error in words, or
    /// the value normalized (`Some`) or as given (`None`).
    fn check(&self, type_name: &str, param: &str, value: &Value) -> Result<Option<Value>, String>;

    /// Every type name, comma-separated, for errors.
    fn names(&self) -> String;
}

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
