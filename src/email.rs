//! Email through SMTP (lettre): approval requests with one link per option, and messages.
//!
//! The outbox hands over one message per recipient (`destination.to`), already
//! composed into a [`Content`]; this module turns it into a multipart
//! plain-text + HTML email and sends it. What each event says:
//!
//! - `approval.requested`: subject, prompt and the finding. A recipient whose
//!   address is the `email` of one of the approval's approvers gets one link per
//!   option, `BASE/approvals/ID?token=T&option=VALUE`, with a token issued to that
//!   approver. A link opens the confirmation page and changes nothing; only the
//!   page's form (POST) votes. Every other recipient (a list, a non-approver) gets
//!   the same message without links, and so does everyone when `[server] secret`
//!   is unset (the message then says how to decide with `vigilo respond`).
//! - `finding.opened` / `finding.reopened` and `remediation.message`: the text.
//! - `approval.decided` / `approval.expired`: a short notice, threaded under the
//!   request, that its links no longer take votes (the decision's `[[message]]`s
//!   follow on their own once its actions succeeded).
//! - Anything else (`approval.vote`, meant for Slack threads) is skipped: `Ok`
//!   with `{"skipped": …}`, nothing is sent.
//!
//! TLS: `required` is STARTTLS that must succeed (implicit TLS on port 465),
//! `opportunistic` upgrades when the server offers STARTTLS, `none` stays
//! plain. Certificates are checked against the system's trusted roots
//! (`SSL_CERT_FILE` or `SSL_CERT_DIR` replace them, e.g. for a private CA). A
//! failed attempt is an `Err` naming the integration, `host:port`, the TLS
//! mode and the SMTP reply (never the password); the outbox retries it with
//! backoff and audits `message.failed`.
//!
//! Each email has a stable `Message-ID` (`vigilo-message-ID@DOMAIN`, so a
//! repeated delivery can be recognised) and the messages of one approval share
//! a `References` anchor, so mail clients thread the request and its outcome.

use std::fmt::Write as _;
use std::time::Duration;

use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::{Value, json};

use crate::approval::{Approval, InputKind, Status};
use crate::config::{EmailConfig, Project, TlsMode};
use crate::finding::Finding;
use crate::message::Content;
use crate::store::MessageRecord;
use crate::store::events;

/// How long connecting to the SMTP server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// How long one whole delivery may take (lettre bounds only the connect): shorter
/// than the outbox's claim lease, so no other process takes the message meanwhile.
const SEND_TIMEOUT: Duration = Duration::from_secs(45);

/// The port where `tls = "required"` means implicit TLS (SMTPS) instead of STARTTLS.
const SMTPS_PORT: u16 = 465;

/// The longest subject line sent; longer ones are cut with an ellipsis.
const MAX_SUBJECT: usize = 200;

/// Sends one message to its recipient (`destination.to`); `Ok` says what the server answered.
pub async fn send(
    project: &Project,
    cfg: &EmailConfig,
    m: &MessageRecord,
    content: &Content,
) -> Result<Value, String> {
    if !sends(&m.event, content) {
        return Ok(json!({
            "skipped": format!("email does not send {} messages", m.event)
        }));
    }
    let name = &m.integration;
    let recipients: Vec<&str> = m
        .destination
        .get("to")
        .and_then(Value::as_array)
        .map(|to| to.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if recipients.is_empty() {
        return Err(format!(
            "email {name}: message {} has no recipient (`to`); nothing was sent",
            m.id
        ));
    }
    let from: Mailbox = cfg.from.parse().map_err(|e| {
        format!(
            "email {name}: the sender address {:?} is not valid ({e}); nothing was sent",
            cfg.from
        )
    })?;
    let transport = transport(cfg).map_err(|e| smtp_error(name, cfg, &e))?;
    let mut sent = Vec::new();
    for to in recipients {
        let to_box: Mailbox = to.parse().map_err(|e| {
            format!(
                "email {name}: the recipient address {to:?} is not valid ({e}); nothing was sent"
            )
        })?;
        let reader = if m.event == events::APPROVAL_REQUESTED {
            reader(project, content.approval.as_ref(), &to_box, &content.links)
        } else {
            Reader::Other
        };
        let mail = compose(project, m, content, &reader);
        let email = build(&from, to_box, m, &mail)
            .map_err(|e| format!("email {name}: cannot build the message to {to}: {e}"))?;
        let response = tokio::time::timeout(SEND_TIMEOUT, transport.send(email))
            .await
            .map_err(|_| {
                format!(
                    "email {name}: SMTP {}:{}: no answer within {} s; the message may or may not have been delivered",
                    cfg.host,
                    cfg.port,
                    SEND_TIMEOUT.as_secs()
                )
            })?
            .map_err(|e| smtp_error(name, cfg, &e))?;
        let reply = format!(
            "{} {}",
            response.code(),
            response.message().next().unwrap_or_default()
        );
        let mut result = json!({
            "to": to,
            "smtp": format!("{}:{}", cfg.host, cfg.port),
            "reply": reply.trim_end(),
            "message_id": message_id(m, &from),
            "links": mail.body.choices.len(),
        });
        if let Reader::Approver { name, .. } = &reader {
            result["approver"] = name.clone().into();
        }
        sent.push(result);
    }
    Ok(match <[Value; 1]>::try_from(sent) {
        Ok([one]) => one,
        Err(many) => json!({ "sent": many }),
    })
}

/// Whether email sends anything for this event.
fn sends(event: &str, content: &Content) -> bool {
    match event {
        events::APPROVAL_REQUESTED | events::APPROVAL_DECIDED | events::APPROVAL_EXPIRED => {
            content.approval.is_some()
        }
        events::FINDING_OPENED | events::FINDING_REOPENED | events::REMEDIATION_MESSAGE => true,
        _ => false,
    }
}

/// The SMTP transport for `cfg`: TLS mode, optional credentials, timeouts.
fn transport(
    cfg: &EmailConfig,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, lettre::transport::smtp::Error> {
    let tls = match cfg.tls {
        TlsMode::None => Tls::None,
        TlsMode::Opportunistic => Tls::Opportunistic(TlsParameters::new(cfg.host.clone())?),
        TlsMode::Required if cfg.port == SMTPS_PORT => {
            Tls::Wrapper(TlsParameters::new(cfg.host.clone())?)
        }
        TlsMode::Required => Tls::Required(TlsParameters::new(cfg.host.clone())?),
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(cfg.host.as_str())
        .port(cfg.port)
        .tls(tls)
        .timeout(Some(CONNECT_TIMEOUT));
    if let Some(user) = &cfg.username {
        let password = cfg
            .password
            .as_ref()
            .map(|p| p.expose().to_string())
            .unwrap_or_default();
        builder = builder.credentials(Credentials::new(user.clone(), password));
    }
    Ok(builder.build())
}

/// A failed attempt's text: integration, server, TLS mode and what went wrong, secrets masked.
fn smtp_error(name: &str, cfg: &EmailConfig, e: &lettre::transport::smtp::Error) -> String {
    let mode = match cfg.tls {
        TlsMode::Required if cfg.port == SMTPS_PORT => "required, implicit TLS",
        TlsMode::Required => "required",
        TlsMode::Opportunistic => "opportunistic",
        TlsMode::None => "none",
    };
    let mut text = format!(
        "email {name}: SMTP {}:{} (tls {mode}): ",
        cfg.host, cfg.port
    );
    let connecting = e.status().is_none() && !e.is_tls() && !e.is_timeout();
    match crate::cause::network(e).filter(|_| connecting) {
        // lettre says "Connection error: Connection refused (os error 111)".
        Some(words) => text.push_str(&format!(
            "cannot connect ({words}); is the mail server running, and are host and port of [integration.{name}] right?"
        )),
        None => text.push_str(&e.to_string()),
    }
    if e.to_string().contains("STARTTLS is not supported") {
        text.push_str(
            "; the server does not offer STARTTLS, and tls = \"required\" never sends in plain text",
        );
    } else if e.is_timeout() {
        text.push_str(&format!(
            "; no connection within {} s",
            CONNECT_TIMEOUT.as_secs()
        ));
    }
    if let Some(password) = &cfg.password {
        text = text.replace(password.expose(), crate::redact::MASK);
    }
    crate::redact::text(&text)
}

/// Who reads one email, as far as the approval is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reader {
    /// An approver of the approval; `link` is their page link (none without `[server] secret`).
    Approver {
        /// The approver's name.
        name: String,
        /// `BASE/approvals/ID?token=T`, issued to them.
        link: Option<String>,
    },
    /// The approver who requested it (ChatOps) and may not approve it.
    Requester(String),
    /// Anyone else: no links.
    Other,
}

/// Whose address `to` is: an approver of `approval` (by their configured `email`) or nobody.
fn reader(
    project: &Project,
    approval: Option<&Approval>,
    to: &Mailbox,
    links: &[(String, String)],
) -> Reader {
    let Some(a) = approval else {
        return Reader::Other;
    };
    let address = to.email.to_string().to_lowercase();
    let matches = |name: &String| {
        project
            .approvers
            .get(name)
            .and_then(|c| c.email.as_deref())
            .and_then(|e| e.parse::<Mailbox>().ok())
            .is_some_and(|mb| mb.email.to_string().to_lowercase() == address)
    };
    let Some(name) = a.approvers.iter().find(|n| matches(n)) else {
        return Reader::Other;
    };
    if a.requested_by.as_ref() == Some(name) && !a.allow_self_approval {
        return Reader::Requester(name.clone());
    }
    Reader::Approver {
        name: name.clone(),
        link: links
            .iter()
            .find(|(who, _)| who == name)
            .map(|(_, link)| link.clone()),
    }
}

/// What one email says: its subject and body, and the approval it threads under.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mail {
    subject: String,
    body: Body,
    thread: Option<i64>,
}

/// The body, rendered both as plain text and as HTML.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Body {
    heading: String,
    paragraphs: Vec<String>,
    finding: Option<FindingView>,
    choices: Vec<Choice>,
    notes: Vec<String>,
}

/// A finding as the email shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FindingView {
    line: String,
    fields: Vec<(String, String)>,
}

/// One option's link.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Choice {
    label: String,
    url: String,
    style: Option<String>,
}

/// Puts one recipient's email together.
fn compose(project: &Project, m: &MessageRecord, content: &Content, reader: &Reader) -> Mail {
    let finding = content
        .finding
        .as_ref()
        .map(|f| finding_view(f, query_title(project, f)));
    match (m.event.as_str(), &content.approval) {
        (events::APPROVAL_REQUESTED, Some(a)) => request(a, finding, reader),
        (events::APPROVAL_DECIDED | events::APPROVAL_EXPIRED, Some(a)) => {
            outcome(a, content, m.text.as_deref())
        }
        _ => notice(m, content, finding),
    }
}

fn query_title<'a>(project: &'a Project, f: &'a Finding) -> &'a str {
    project
        .queries
        .get(&f.query)
        .map_or(f.query.as_str(), |q| q.title.as_str())
}

fn finding_view(f: &Finding, title: &str) -> FindingView {
    let fields = if f.row.is_empty() { &f.key } else { &f.row };
    FindingView {
        line: format!(
            "Finding {} of query {} ({}): {title}",
            f.id,
            f.query,
            f.severity.as_str()
        ),
        fields: fields
            .iter()
            .map(|(k, v)| (k.clone(), value_text(v)))
            .collect(),
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// An approval request: links for the approver it is addressed to, none for anyone else.
fn request(a: &Approval, finding: Option<FindingView>, reader: &Reader) -> Mail {
    let mut notes = Vec::new();
    let mut choices = Vec::new();
    let respond = |who: &str| match a.input.kind {
        InputKind::Text => format!("vigilo respond {} --text \"ANSWER\" --as {who}", a.id),
        kind => format!(
            "vigilo respond {} {} --as {who} (options: {})",
            a.id,
            if kind == InputKind::Multiselect {
                "OPTION..."
            } else {
                "OPTION"
            },
            a.options
                .iter()
                .map(|o| o.value.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let voted = match reader {
        Reader::Approver { name, .. } => a.votes.iter().find(|v| &v.by == name),
        _ => None,
    };
    if a.status != Status::Pending {
        notes.push(format!(
            "This approval was already {}{} when this message was sent; it takes no more votes.",
            a.status.as_str(),
            a.decision
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        ));
    } else if let Some(v) = voted {
        notes.push(format!(
            "You ({}) voted {} already; each approver votes once.",
            v.by, v.option
        ));
    } else {
        match reader {
            Reader::Approver {
                name,
                link: Some(link),
            } => {
                let sep = if link.contains('?') { '&' } else { '?' };
                if matches!(a.input.kind, InputKind::Button | InputKind::Select) {
                    choices = a
                        .options
                        .iter()
                        .map(|o| Choice {
                            label: o.label.clone(),
                            url: format!("{link}{sep}option={}", percent_encode(&o.value)),
                            style: o.style.clone(),
                        })
                        .collect();
                    notes.push(
                        "Each link opens a page where you confirm your choice; opening it changes nothing."
                            .to_string(),
                    );
                } else {
                    // Several choices or free text are given on the web page's form.
                    choices = vec![Choice {
                        label: if a.input.kind == InputKind::Text {
                            "Answer on the approval page".into()
                        } else {
                            "Choose on the approval page".into()
                        },
                        url: link.clone(),
                        style: Some("primary".into()),
                    }];
                    notes.push(
                        "The link opens a page with the form; opening it changes nothing."
                            .to_string(),
                    );
                }
                notes.push(format!(
                    "These links vote as {name}: do not forward this message."
                ));
                if let Some(deadline) = &a.deadline {
                    notes.push(format!(
                        "They stop working at {}.",
                        deadline.format("%Y-%m-%d %H:%M UTC")
                    ));
                }
            }
            Reader::Approver { name, link: None } => notes.push(format!(
                "Decide with: {} (this vigilo has no [server] secret, so it sends no approval links).",
                respond(name)
            )),
            Reader::Requester(name) => notes.push(format!(
                "You ({name}) requested this remediation, so you may not approve it yourself."
            )),
            Reader::Other => notes.push(format!(
                "You receive this for information. The approvers ({}) decide through their own links or with {}.",
                a.approvers.join(", "),
                respond("NAME")
            )),
        }
    }
    let thresholds: Vec<String> = a
        .options
        .iter()
        .filter(|o| o.required > 1)
        .map(|o| format!("{} needs {} approvers.", o.label, o.required))
        .collect();
    if !thresholds.is_empty() {
        notes.push(thresholds.join(" "));
    }
    notes.push(format!(
        "Approval {} of remediation {}.",
        a.id, a.remediation
    ));
    Mail {
        subject: a.subject.clone(),
        body: Body {
            heading: a.subject.clone(),
            paragraphs: vec![a.prompt.clone()],
            finding,
            choices,
            notes,
        },
        thread: Some(a.id),
    }
}

/// The notice that an approval was decided or expired: its links no longer take votes.
fn outcome(a: &Approval, content: &Content, line: Option<&str>) -> Mail {
    let line = line.map_or_else(|| a.status.as_str().to_string(), str::to_string);
    Mail {
        subject: content.subject.clone(),
        body: Body {
            heading: a.subject.clone(),
            paragraphs: vec![line],
            finding: None,
            choices: Vec::new(),
            notes: vec![format!(
                "Approval {} of remediation {}: its links no longer take votes.",
                a.id, a.remediation
            )],
        },
        thread: Some(a.id),
    }
}

/// A finding notice or a remediation's `[[message]]`: the outbox's words as they are.
fn notice(m: &MessageRecord, content: &Content, finding: Option<FindingView>) -> Mail {
    let text = content.text.trim_end();
    let (heading, rest) = match text.split_once('\n') {
        Some((first, rest)) => (first.to_string(), rest.trim().to_string()),
        None => (text.to_string(), String::new()),
    };
    let mut paragraphs = Vec::new();
    if !rest.is_empty() {
        paragraphs.push(rest);
    }
    let finding = if m.event == events::REMEDIATION_MESSAGE {
        None
    } else {
        finding
    };
    Mail {
        subject: content.subject.clone(),
        body: Body {
            heading,
            paragraphs,
            finding,
            choices: Vec::new(),
            notes: Vec::new(),
        },
        thread: m.approval_id,
    }
}

impl Body {
    /// The plain-text part.
    fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{}", self.heading);
        for p in &self.paragraphs {
            let _ = write!(out, "\n{p}\n");
        }
        if let Some(f) = &self.finding {
            let _ = write!(out, "\n{}\n", f.line);
            for (k, v) in &f.fields {
                let _ = writeln!(out, "  {k}: {v}");
            }
        }
        if !self.choices.is_empty() {
            out.push_str("\nChoose one:\n");
            for c in &self.choices {
                let _ = writeln!(out, "  {}: {}", c.label, c.url);
            }
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for n in &self.notes {
                let _ = writeln!(out, "{n}");
            }
        }
        out.push_str("\n-- \nvigilo\n");
        out
    }

    /// The HTML part; every value is escaped.
    fn html(&self) -> String {
        let mut out = String::from(
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"></head>\n\
             <body style=\"font-family: system-ui, sans-serif; font-size: 15px; line-height: 1.45; color: #1b1f24;\">\n",
        );
        let _ = writeln!(
            out,
            "<h1 style=\"font-size: 18px;\">{}</h1>",
            escape(&self.heading)
        );
        for p in &self.paragraphs {
            let _ = writeln!(out, "<p style=\"white-space: pre-wrap;\">{}</p>", escape(p));
        }
        if let Some(f) = &self.finding {
            let _ = writeln!(
                out,
                "<h2 style=\"font-size: 15px;\">{}</h2>\n<table style=\"border-collapse: collapse;\">",
                escape(&f.line)
            );
            for (k, v) in &f.fields {
                let _ = writeln!(
                    out,
                    "<tr><th style=\"text-align: left; padding: 2px 12px 2px 0;\">{}</th><td>{}</td></tr>",
                    escape(k),
                    escape(v)
                );
            }
            out.push_str("</table>\n");
        }
        if !self.choices.is_empty() {
            out.push_str("<p>");
            for c in &self.choices {
                let (bg, fg) = match c.style.as_deref() {
                    Some("danger") => ("#cf222e", "#ffffff"),
                    Some("primary") => ("#1f6feb", "#ffffff"),
                    _ => ("#f6f8fa", "#1b1f24"),
                };
                let _ = writeln!(
                    out,
                    "<a href=\"{}\" style=\"display: inline-block; margin: 0 8px 8px 0; padding: 8px 16px; border: 1px solid #888; border-radius: 6px; background: {bg}; color: {fg}; text-decoration: none;\">{}</a>",
                    escape(&c.url),
                    escape(&c.label)
                );
            }
            out.push_str("</p>\n");
        }
        for n in &self.notes {
            let _ = writeln!(out, "<p style=\"color: #57606a;\">{}</p>", escape(n));
        }
        out.push_str("<p style=\"color: #57606a;\">vigilo</p>\n</body></html>\n");
        out
    }
}

/// The email itself: headers, and the text and HTML parts, secrets masked.
fn build(
    from: &Mailbox,
    to: Mailbox,
    m: &MessageRecord,
    mail: &Mail,
) -> Result<Message, lettre::error::Error> {
    let mut builder = Message::builder()
        .from(from.clone())
        .to(to)
        .subject(subject_line(&crate::redact::text(&mail.subject)))
        .date_now()
        .message_id(Some(message_id(m, from)))
        .user_agent(concat!("vigilo/", env!("CARGO_PKG_VERSION")).to_string())
        // RFC 3834: machine-made, so vacation responders stay quiet.
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("Auto-Submitted"),
            "auto-generated".to_string(),
        ));
    if let Some(id) = mail.thread {
        let anchor = format!("<vigilo-approval-{id}@{}>", from.email.domain());
        builder = builder.in_reply_to(anchor.clone()).references(anchor);
    }
    builder.multipart(
        MultiPart::alternative()
            .singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_PLAIN)
                    .body(crate::redact::text(&mail.body.text())),
            )
            .singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_HTML)
                    .body(crate::redact::text(&mail.body.html())),
            ),
    )
}

/// A stable id per outbox message, so a repeated delivery is recognisable.
fn message_id(m: &MessageRecord, from: &Mailbox) -> String {
    format!("<vigilo-message-{}@{}>", m.id, from.email.domain())
}

/// One line, at most [`MAX_SUBJECT`] characters.
fn subject_line(s: &str) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() <= MAX_SUBJECT {
        return one;
    }
    let mut cut: String = one.chars().take(MAX_SUBJECT - 1).collect();
    cut.push('…');
    cut
}

/// Escapes text for HTML content and attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a query-string value (everything but RFC 3986 unreserved characters).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approval::OptionSpec;

    fn approval() -> Approval {
        Approval {
            id: 7,
            remediation: "deactivate".into(),
            finding_id: 3,
            status: Status::Pending,
            decision: None,
            subject: "Deactivate <k1>?".into(),
            prompt: "Key k1 of ann.".into(),
            options: vec![
                OptionSpec {
                    value: "deactivate".into(),
                    label: "Deactivate".into(),
                    style: Some("danger".into()),
                    required: 2,
                    accept_for: None,
                },
                OptionSpec {
                    value: "keep it".into(),
                    label: "Keep".into(),
                    style: None,
                    required: 1,
                    accept_for: None,
                },
            ],
            input: Default::default(),
            values: vec![],
            approvers: vec!["alice".into(), "bob".into()],
            requested_by: None,
            allow_self_approval: false,
            requested_at: chrono::Utc::now(),
            deadline: None,
            on_timeout: None,
            decided_at: None,
            decided_by: Vec::new(),
            votes: Vec::new(),
        }
    }

    fn alice(link: Option<&str>) -> Reader {
        Reader::Approver {
            name: "alice".into(),
            link: link.map(str::to_string),
        }
    }

    #[test]
    fn several_choices_and_text_link_to_the_page_and_a_select_per_option() {
        let link = "http://v/approvals/7?token=T";
        let mut select = approval();
        select.input.kind = InputKind::Select;
        let mail = request(&select, None, &alice(Some(link)));
        assert_eq!(mail.body.choices.len(), 2, "one link per option");
        assert!(mail.body.choices[0].url.ends_with("&option=deactivate"));
        for kind in [InputKind::Multiselect, InputKind::Text] {
            let mut a = approval();
            a.input.kind = kind;
            let mail = request(&a, None, &alice(Some(link)));
            assert_eq!(mail.body.choices.len(), 1, "{kind:?}");
            assert_eq!(
                mail.body.choices[0].url, link,
                "the page's form, no option preset"
            );
            let text = request(&a, None, &alice(None)).body.text();
            let expected = match kind {
                InputKind::Text => "vigilo respond 7 --text \"ANSWER\" --as alice",
                _ => "vigilo respond 7 OPTION... --as alice",
            };
            assert!(text.contains(expected), "{text}");
        }
    }

    #[test]
    fn an_approver_gets_one_link_per_option() {
        let mail = request(
            &approval(),
            None,
            &alice(Some("http://v/approvals/7?token=T")),
        );
        let urls: Vec<&str> = mail.body.choices.iter().map(|c| c.url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "http://v/approvals/7?token=T&option=deactivate",
                "http://v/approvals/7?token=T&option=keep%20it"
            ]
        );
        let text = mail.body.text();
        assert!(text.contains("  Deactivate: http://v/approvals/7?token=T&option=deactivate"));
        assert!(text.contains("Deactivate needs 2 approvers."), "{text}");
        let html = mail.body.html();
        assert!(
            html.contains("href=\"http://v/approvals/7?token=T&amp;option=deactivate\""),
            "{html}"
        );
        assert!(html.contains("Deactivate &lt;k1&gt;?"), "{html}");
        assert_eq!(mail.thread, Some(7));
    }

    #[test]
    fn others_get_no_links() {
        for reader in [
            Reader::Other,
            Reader::Requester("alice".into()),
            alice(None),
        ] {
            let mail = request(&approval(), None, &reader);
            assert!(mail.body.choices.is_empty(), "{reader:?}");
            let all = format!("{}{}", mail.body.text(), mail.body.html());
            assert!(!all.contains("token="), "{reader:?}: {all}");
        }
        let text = request(&approval(), None, &alice(None)).body.text();
        assert!(
            text.contains("vigilo respond 7 OPTION --as alice"),
            "{text}"
        );
        let mut voted = approval();
        voted.votes.push(crate::approval::Vote {
            by: "alice".into(),
            option: "deactivate".into(),
            reason: None,
            channel: "web".into(),
            at: chrono::Utc::now(),
            identity: None,
            values: vec![],
        });
        let mail = request(&voted, None, &alice(Some("http://v/approvals/7?token=T")));
        assert!(mail.body.choices.is_empty());
        assert!(
            mail.body
                .text()
                .contains("You (alice) voted deactivate already")
        );
        let mut decided = approval();
        decided.status = Status::Decided;
        decided.decision = Some("keep it".into());
        let mail = request(&decided, None, &alice(Some("http://v/approvals/7?token=T")));
        assert!(mail.body.choices.is_empty());
        assert!(mail.body.text().contains("already decided (keep it)"));
    }

    #[test]
    fn subjects_are_one_bounded_line() {
        assert_eq!(subject_line("a\r\n  b\tc"), "a b c");
        let long = "x".repeat(500);
        assert_eq!(subject_line(&long).chars().count(), MAX_SUBJECT);
    }

    #[test]
    fn escaping_and_encoding() {
        assert_eq!(
            escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(percent_encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }
}
