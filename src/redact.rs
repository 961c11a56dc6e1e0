//! Secret redaction: every configured secret value is replaced by `***` wherever
//! text leaves the process (logs, the audit trail, stored errors, API answers,
//! pages, exports, messages).
//!
//! The secrets are the values of the `token`, `password`, `secret`,
//! `signing_secret` and `api_token` settings, every value that came into the
//! config from an environment variable whose name contains `TOKEN`, `SECRET`
//! or `PASSWORD`, and such variables of the process environment (for example
//! `AWS_SECRET_ACCESS_KEY`). Identifiers (access key IDs, user names) are not
//! secrets and stay visible.
//!
//! The redactor is process-wide: [`install`] sets it once the project is
//! loaded, and the writers of text call [`text`] and [`json`].

use std::borrow::Cow;
use std::sync::{Arc, LazyLock, RwLock};

use serde_json::Value;

/// What a secret is replaced by.
pub const MASK: &str = "***";

/// Values of secret-named variables of the process environment must be at least
/// this long to be masked (so `FOO_TOKEN=1` does not mask every `1`).
const MIN_AMBIENT_LEN: usize = 6;

/// The shortest configured secret that is redacted (shorter ones would mask common text).
const MIN_CONFIGURED_LEN: usize = 4;

/// Whether an environment variable's name marks its value as a secret.
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["TOKEN", "SECRET", "PASSWORD"]
        .iter()
        .any(|word| upper.contains(word))
}

/// Replaces known secret values in text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redactor {
    /// Longest first, so a secret that contains another is masked whole.
    secrets: Vec<String>,
}

impl Redactor {
    /// A redactor for `configured` secrets plus the secret-named variables of the process environment.
    pub fn new<I: IntoIterator<Item = String>>(configured: I) -> Redactor {
        let ambient = std::env::vars()
            .filter(|(name, value)| is_secret_name(name) && value.len() >= MIN_AMBIENT_LEN)
            .map(|(_, value)| value);
        Redactor::only(configured.into_iter().chain(ambient))
    }

    /// A redactor for exactly these values (no process environment).
    pub fn only<I: IntoIterator<Item = String>>(values: I) -> Redactor {
        let mut secrets: Vec<String> = values
            .into_iter()
            .filter(|s| s.len() >= MIN_CONFIGURED_LEN)
            .collect();
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        Redactor { secrets }
    }

    /// How many distinct secrets it masks.
    pub fn len(&self) -> usize {
        self.secrets.len()
    }

    /// Whether it masks nothing.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// `s` with every secret replaced by [`MASK`].
    pub fn text<'a>(&self, s: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(s);
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), MASK));
            }
        }
        out
    }

    /// `html` with every secret masked, raw or HTML-escaped (as pages escape it).
    pub fn html<'a>(&self, html: &'a str) -> Cow<'a, str> {
        let mut out = self.text(html);
        for secret in &self.secrets {
            let escaped = minijinja::HtmlEscape(secret).to_string();
            if escaped != *secret && out.contains(escaped.as_str()) {
                out = Cow::Owned(out.replace(escaped.as_str(), MASK));
            }
        }
        out
    }

    /// Whether [`Redactor::json`] would change `v`: a secret in one of its strings or keys.
    pub fn would_mask(&self, v: &Value) -> bool {
        if self.secrets.is_empty() {
            return false;
        }
        let hit = |s: &str| {
            self.secrets
                .iter()
                .any(|secret| s.contains(secret.as_str()))
        };
        match v {
            Value::String(s) => hit(s),
            Value::Array(items) => items.iter().any(|i| self.would_mask(i)),
            Value::Object(map) => map.iter().any(|(k, i)| hit(k) || self.would_mask(i)),
            _ => false,
        }
    }

    /// Masks secrets in every string (and object key) of `v`.
    pub fn json(&self, v: &mut Value) {
        if self.secrets.is_empty() {
            return;
        }
        match v {
            Value::String(s) => {
                if let Cow::Owned(masked) = self.text(s) {
                    *s = masked;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| self.json(i)),
            Value::Object(map) => {
                let needs_key = map.keys().any(|k| matches!(self.text(k), Cow::Owned(_)));
                if needs_key {
                    let old = std::mem::take(map);
                    for (k, mut item) in old {
                        self.json(&mut item);
                        map.insert(self.text(&k).into_owned(), item);
                    }
                } else {
                    map.values_mut().for_each(|i| self.json(i));
                }
            }
            _ => {}
        }
    }
}

/// How many secrets learned at run time (credentials vigilo obtained) are kept; the oldest go first.
const MAX_LEARNED: usize = 512;

/// The process-wide redaction state: the installed redactor, the secrets learned since, and both combined.
#[derive(Default)]
struct Global {
    installed: Redactor,
    learned: std::collections::VecDeque<String>,
    combined: Arc<Redactor>,
}

impl Global {
    fn combine(&mut self) {
        self.combined = Arc::new(Redactor::only(
            self.installed
                .secrets
                .iter()
                .chain(self.learned.iter())
                .cloned(),
        ));
    }
}

static GLOBAL: LazyLock<RwLock<Global>> = LazyLock::new(RwLock::default);

/// Makes `r` the process-wide redactor (secrets learned through [`also`] stay masked).
pub fn install(r: Redactor) {
    if let Ok(mut g) = GLOBAL.write() {
        g.installed = r;
        g.combine();
    }
}

/// Adds secrets that became known at run time (credentials obtained from AWS or a profile) to
/// the process-wide redactor.
pub fn also<I: IntoIterator<Item = String>>(values: I) {
    let Ok(mut g) = GLOBAL.write() else {
        return;
    };
    let mut changed = false;
    for v in values {
        if v.len() >= MIN_CONFIGURED_LEN
            && !g.combined.secrets.contains(&v)
            && !g.learned.contains(&v)
        {
            g.learned.push_back(v);
            changed = true;
        }
    }
    while g.learned.len() > MAX_LEARNED {
        g.learned.pop_front();
    }
    if changed {
        g.combine();
    }
}

/// The process-wide redactor (masks nothing until [`install`] or [`also`]).
pub fn global() -> Arc<Redactor> {
    GLOBAL
        .read()
        .map(|g| Arc::clone(&g.combined))
        .unwrap_or_default()
}

/// `s` with the process-wide redactor applied.
pub fn text(s: &str) -> String {
    global().text(s).into_owned()
}

/// `v` with the process-wide redactor applied.
pub fn json(mut v: Value) -> Value {
    global().json(&mut v);
    v
}

/// Standard output through the process-wide redactor, a line at a time.
pub fn stdout() -> LineRedacted<std::io::Stdout> {
    lines(std::io::stdout())
}

/// `inner` through the process-wide redactor, a line at a time (reports, exports).
pub fn lines<W: std::io::Write>(inner: W) -> LineRedacted<W> {
    LineRedacted {
        inner,
        pending: Vec::new(),
    }
}

/// Writes whole lines through the process-wide redactor; the rest on flush or drop.
#[derive(Debug)]
pub struct LineRedacted<W: std::io::Write> {
    inner: W,
    pending: Vec<u8>,
}

impl<W: std::io::Write> LineRedacted<W> {
    fn emit(&mut self, upto: usize) -> std::io::Result<()> {
        let chunk: Vec<u8> = self.pending.drain(..upto).collect();
        let masked = global().text(&String::from_utf8_lossy(&chunk)).into_owned();
        self.inner.write_all(masked.as_bytes())
    }
}

impl<W: std::io::Write> std::io::Write for LineRedacted<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(buf);
        if let Some(last) = self.pending.iter().rposition(|b| *b == b'\n') {
            self.emit(last + 1)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.emit(self.pending.len())?;
        self.inner.flush()
    }
}

impl<W: std::io::Write> Drop for LineRedacted<W> {
    fn drop(&mut self) {
        let _ = std::io::Write::flush(self);
    }
}

/// A `tracing` writer that masks secrets in each formatted event before it reaches stderr.
#[derive(Debug, Clone, Copy, Default)]
pub struct StderrRedacted;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for StderrRedacted {
    type Writer = RedactingWriter;

    fn make_writer(&'a self) -> RedactingWriter {
        RedactingWriter
    }
}

/// Writes to stderr through the process-wide redactor.
#[derive(Debug)]
pub struct RedactingWriter;

impl std::io::Write for RedactingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The fmt layer writes one whole event per call, so a secret is never split across calls.
        let masked = global().text(&String::from_utf8_lossy(buf)).into_owned();
        std::io::stderr().write_all(masked.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_that_mark_secrets() {
        for name in [
            "SLACK_TOKEN",
            "aws_secret_access_key",
            "SMTP_PASSWORD",
            "VIGILO_SECRET",
        ] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in ["SMTP_USER", "HOME", "AWS_ACCESS_KEY_ID", "PATH"] {
            assert!(!is_secret_name(name), "{name}");
        }
    }

    #[test]
    fn masks_every_occurrence_longest_first_and_leaves_the_rest() {
        let r = Redactor::only(["hunter2".into(), "hunter2-extra".into(), "abc".into()]);
        assert_eq!(r.len(), 2, "too-short values are not masked");
        assert_eq!(
            r.text("pw hunter2-extra and hunter2, abc, AKIAEXAMPLE"),
            "pw *** and ***, abc, AKIAEXAMPLE"
        );
        assert!(matches!(r.text("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn masks_escaped_forms_in_html() {
        let r = Redactor::only(["a&b<c>/d".into()]);
        let page = format!(
            "<p>{}</p><p>a&b<c>/d</p>",
            minijinja::HtmlEscape("a&b<c>/d")
        );
        assert_eq!(r.html(&page), "<p>***</p><p>***</p>");
    }

    #[test]
    fn line_writer_masks_secrets_split_across_writes() {
        use std::io::Write;
        install(Redactor::only(["split-secret".into()]));
        let mut buf = Vec::new();
        {
            let mut w = LineRedacted {
                inner: &mut buf,
                pending: Vec::new(),
            };
            write!(w, "a split-").unwrap();
            write!(w, "secret here\nand split-secret at the end").unwrap();
        }
        install(Redactor::default());
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "a *** here\nand *** at the end"
        );
    }

    #[test]
    fn would_mask_says_whether_json_changes_the_value() {
        let r = Redactor::only(["s3cr3t-value".into()]);
        for v in [
            json!({"a": {"b": ["x", "in s3cr3t-value here"]}}),
            json!({"s3cr3t-value": 1}),
            json!("s3cr3t-value"),
            json!({"a": {"b": ["x", "clean"]}, "n": 1.5, "t": true, "z": null}),
            json!([]),
        ] {
            let mut masked = v.clone();
            r.json(&mut masked);
            assert_eq!(r.would_mask(&v), masked != v, "{v}");
        }
        assert!(!Redactor::default().would_mask(&json!("s3cr3t-value")));
    }

    #[test]
    fn masks_inside_json_strings_and_keys() {
        let r = Redactor::only(["s3cr3t-value".into()]);
        let mut v = json!({"headers": {"Authorization": "Bearer s3cr3t-value"}, "list": ["x s3cr3t-value"], "s3cr3t-value": 1, "n": 5});
        r.json(&mut v);
        assert_eq!(
            v,
            json!({"headers": {"Authorization": "Bearer ***"}, "list": ["x ***"], "***": 1, "n": 5})
        );
    }
}
