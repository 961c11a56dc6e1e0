//! How values are stored: key hashes, statuses, severities, JSON columns.

use super::{RunStatus, StoreError};
use crate::approval::OptionSpec;
use crate::config::Severity;
use crate::diff::KeyHash;
use crate::finding::Status;

/// A key hash as stored: 16 bytes, big-endian.
pub(crate) fn key_bytes(k: KeyHash) -> [u8; 16] {
    k.to_be_bytes()
}

/// Reads a stored key hash.
pub(crate) fn key_from_bytes(b: &[u8]) -> Result<KeyHash, StoreError> {
    let arr: [u8; 16] = b
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("key hash of {} bytes", b.len())))?;
    Ok(KeyHash::from_be_bytes(arr))
}

/// Parses a stored status.
pub(crate) fn parse_status(s: &str) -> Result<Status, StoreError> {
    Status::parse(s).ok_or_else(|| StoreError::Corrupt(format!("finding status {s:?}")))
}

/// Parses a stored severity.
pub(crate) fn parse_severity(s: &str) -> Result<Severity, StoreError> {
    Severity::parse(s).ok_or_else(|| StoreError::Corrupt(format!("severity {s:?}")))
}

/// Parses stored JSON text; `what` names the column in the error.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    what: &str,
    s: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// Serializes a value to store as JSON text.
/// An approval's `options` column: a plain list for buttons (as stored before input types),
/// or the list with the input settings of the other types.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
enum StoredOptions {
    /// Buttons.
    Plain(Vec<OptionSpec>),
    /// Select, multiselect, text.
    WithInput {
        /// Type, placeholder, pattern, required.
        input: crate::approval::Input,
        /// The options (for text, suggestions).
        options: Vec<OptionSpec>,
    },
}

/// The `options` column of an approval with `input` and `options`.
pub(crate) fn options_json(
    input: &crate::approval::Input,
    options: &[OptionSpec],
) -> Result<String, StoreError> {
    if *input == crate::approval::Input::default() {
        return to_json(options);
    }
    to_json(&StoredOptions::WithInput {
        input: input.clone(),
        options: options.to_vec(),
    })
}

/// An approval's input settings and options from its `options` column.
pub(crate) fn parse_options(
    json: &str,
) -> Result<(crate::approval::Input, Vec<OptionSpec>), StoreError> {
    Ok(
        match parse_json::<StoredOptions>("approval options", json)? {
            StoredOptions::Plain(options) => (Default::default(), options),
            StoredOptions::WithInput { input, options } => (input, options),
        },
    )
}

pub(crate) fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(format!("JSON: {e}")))
}

/// Parses a stored run status.
pub(crate) fn parse_run_status(s: &str) -> Result<RunStatus, StoreError> {
    match s {
        "succeeded" => Ok(RunStatus::Succeeded),
        "failed" => Ok(RunStatus::Failed),
        _ => Err(StoreError::Corrupt(format!("run status {s:?}"))),
    }
}

/// Parses a stored key object for an audit event (`null` if it is not JSON, which the schema prevents).
pub(crate) fn key_value(key_json: &str) -> serde_json::Value {
    serde_json::from_str(key_json).unwrap_or(serde_json::Value::Null)
}
