//! Byte offsets to lines, and errors that point at a file and line.

use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::DeValue;

use super::{ConfigError, Origin};

/// The start offset of every line of a text, for offset → line lookups.
#[derive(Debug, Clone)]
pub(crate) struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    /// Indexes `text`.
    pub(crate) fn new(text: &str) -> LineIndex {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { starts }
    }

    /// The 1-based line holding byte `offset`.
    pub(crate) fn line(&self, offset: usize) -> usize {
        match self.starts.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }
}

/// One file being loaded: its project-relative path and line index.
#[derive(Debug, Clone)]
pub(crate) struct FileCtx {
    /// The path relative to the project directory.
    pub(crate) rel: PathBuf,
    lines: LineIndex,
}

impl FileCtx {
    /// A file with the given relative path and contents.
    pub(crate) fn new(rel: &Path, text: &str) -> FileCtx {
        FileCtx {
            rel: rel.to_path_buf(),
            lines: LineIndex::new(text),
        }
    }

    /// The 1-based line of byte `offset`.
    pub(crate) fn line(&self, offset: usize) -> usize {
        self.lines.line(offset)
    }

    /// The origin of byte offset `span.start`.
    pub(crate) fn origin(&self, span: &Range<usize>) -> Origin {
        self.origin_line(self.lines.line(span.start))
    }

    /// The origin of a 1-based line.
    pub(crate) fn origin_line(&self, line: usize) -> Origin {
        Origin {
            file: self.rel.clone(),
            line: Some(line),
        }
    }

    /// An error at `span`.
    pub(crate) fn error(&self, span: &Range<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            origin: self.origin(span),
            message: message.into(),
        }
    }

    /// An error at a 1-based line.
    pub(crate) fn error_at_line(&self, line: usize, message: impl Into<String>) -> ConfigError {
        ConfigError {
            origin: self.origin_line(line),
            message: message.into(),
        }
    }
}

/// An error about a whole file (no line).
pub(crate) fn file_error(rel: &Path, message: impl Into<String>) -> ConfigError {
    ConfigError {
        origin: Origin {
            file: rel.to_path_buf(),
            line: None,
        },
        message: message.into(),
    }
}

/// Appends to `path` the keys leading from `value` to the innermost value
/// whose span contains `span` (`.url`, `[2].channel`): names the key of an
/// error that only has a span. Returns whether one was found.
///
/// A `[table]`'s span is its header only, so tables are searched through.
pub(crate) fn key_path_at(
    value: &Spanned<DeValue<'_>>,
    span: &Range<usize>,
    path: &mut String,
) -> bool {
    let children: Vec<(String, &Spanned<DeValue<'_>>)> = match value.get_ref() {
        DeValue::Table(table) => table
            .iter()
            .map(|(k, v)| {
                let sep = if path.is_empty() { "" } else { "." };
                (format!("{sep}{}", k.get_ref()), v)
            })
            .collect(),
        DeValue::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("[{i}]"), v))
            .collect(),
        _ => return contains(&value.span(), span),
    };
    for (step, child) in children {
        let len = path.len();
        path.push_str(&step);
        if key_path_at(child, span, path) {
            return true;
        }
        path.truncate(len);
    }
    contains(&value.span(), span)
}

/// Whether `outer` contains `inner`.
fn contains(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_map_to_one_based_lines() {
        let idx = LineIndex::new("ab\ncd\n\nef");
        assert_eq!(idx.line(0), 1);
        assert_eq!(idx.line(2), 1); // the newline itself
        assert_eq!(idx.line(3), 2);
        assert_eq!(idx.line(6), 3);
        assert_eq!(idx.line(7), 4);
        assert_eq!(idx.line(100), 4);
    }

    #[test]
    fn spans_map_back_to_key_paths() {
        let text = "[a]\nb = 1\nc = [{ d = 'x' }, { d = 'y' }]\n";
        let doc = toml::de::DeTable::parse(text).unwrap();
        let root = Spanned::new(doc.span(), DeValue::Table(doc.into_inner()));
        let at = text.find("'y'").unwrap();
        let mut path = String::new();
        key_path_at(&root, &(at..at + 3), &mut path);
        assert_eq!(path, "a.c[1].d");
    }
}
