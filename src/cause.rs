//! What lies underneath an error, in a few words: the network failure at the bottom of a
//! client library's error chain, or its innermost message on one line.
//!
//! Client libraries (the AWS SDK, reqwest, tokio-postgres, lettre) wrap an operating-system
//! error in layers whose top says only "dispatch failure" or "error sending request"; the
//! words a person can act on ("connection refused") are at the bottom. The full chain goes to
//! the debug log; messages people read take the bottom from here.

use std::error::Error;

/// How long a one-line message may grow before it is cut.
const MAX_LINE: usize = 300;

/// Every error of the chain, outermost first.
pub fn chain<'a>(e: &'a (dyn Error + 'static)) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(e), |&e| e.source())
}

/// The network failure under `e`, in words (`connection refused`, `host not found`, …), if the
/// chain holds an operating-system I/O error or a DNS failure.
pub fn network(e: &(dyn Error + 'static)) -> Option<String> {
    use std::io::ErrorKind;
    for layer in chain(e) {
        if let Some(io) = layer.downcast_ref::<std::io::Error>() {
            let words = match io.kind() {
                ErrorKind::ConnectionRefused => "connection refused",
                ErrorKind::ConnectionReset => "connection reset by the server",
                ErrorKind::ConnectionAborted => "connection aborted",
                ErrorKind::TimedOut => "timed out",
                ErrorKind::HostUnreachable => "host unreachable",
                ErrorKind::NetworkUnreachable => "network unreachable",
                ErrorKind::AddrNotAvailable => "address not available",
                ErrorKind::UnexpectedEof => "the server closed the connection",
                _ => return Some(one_line(&strip_os_error(&io.to_string()))),
            };
            return Some(words.to_string());
        }
        let text = layer.to_string();
        if text.contains("failed to lookup address") || text.contains("dns error") {
            return Some("host not found (DNS)".to_string());
        }
    }
    None
}

/// Why an HTTP request got no answer, in words, with what to check (`connection refused; is
/// the server up, and is the URL right?`).
pub fn http(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "no answer in time; is the server up, and is the URL right?".to_string();
    }
    match network(e) {
        Some(words) => format!("{words}; is the server up, and is the URL right?"),
        None => summary(e),
    }
}

/// The innermost message of `e`'s chain on one line, cut at a few hundred characters.
pub fn root(e: &(dyn Error + 'static)) -> String {
    let last = chain(e).last().unwrap_or(e);
    one_line(&strip_os_error(&last.to_string()))
}

/// Every distinct message of `e`'s chain joined with `: ` on one line, cut at a few hundred
/// characters: what a generic failure says when nothing more specific is known.
pub fn summary(e: &(dyn Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    for layer in chain(e) {
        let text = one_line(&strip_os_error(&layer.to_string()));
        if text.is_empty() || parts.iter().any(|p| p.contains(&text)) {
            continue;
        }
        parts.push(text);
    }
    one_line(&parts.join(": "))
}

/// `text` with its line breaks and runs of blanks made single spaces and its secrets masked,
/// then cut at [`MAX_LINE`] characters (`…` marks the cut). Masking comes first: a cut through
/// a secret would leave a piece the redactor no longer recognises.
pub fn one_line(text: &str) -> String {
    let flat = crate::redact::text(&text.split_whitespace().collect::<Vec<_>>().join(" "));
    if flat.chars().count() <= MAX_LINE {
        return flat;
    }
    let mut cut: String = flat.chars().take(MAX_LINE).collect();
    cut.push('…');
    cut
}

/// `Connection refused (os error 111)` without the ` (os error 111)`, which helps nobody.
fn strip_os_error(text: &str) -> String {
    match text.find(" (os error ") {
        Some(at) if text.ends_with(')') => text[..at].to_string(),
        _ => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("dispatch failure")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn the_network_failure_is_found_under_the_wrappers() {
        let e = Outer(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(network(&e).as_deref(), Some("connection refused"));
        assert_eq!(network(&std::fmt::Error), None);
    }

    #[test]
    fn summaries_are_one_line_without_repeats_or_os_error_numbers() {
        let e = Outer(std::io::Error::other("Connection refused (os error 111)"));
        assert_eq!(summary(&e), "dispatch failure: Connection refused");
        assert_eq!(root(&e), "Connection refused");
        assert_eq!(one_line("a\n  b\tc"), "a b c");
        assert_eq!(one_line(&"x".repeat(400)).chars().count(), MAX_LINE + 1);
    }
}
