//! The audit trail (interface.md section 7): append-only and hash-chained.
//!
//! Each entry's `hash` is the SHA-256 (hex) of its `prev_hash` followed by the
//! entry's canonical JSON without `hash`: keys sorted, no spaces, exactly the
//! text `serde_json` writes for a `serde_json::Map`. The first entry's
//! `prev_hash` is 64 zeros. The store appends entries in the same transaction
//! as the state change they record, and keeps the chain's head (last `seq` and
//! `hash`) in a row of its own, so a deleted last entry is caught too.

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use ring::digest::{Context, SHA256};
use serde::Serialize;
use serde_json::{Value, json};

/// `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What happened (the `kind` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A new key opened a finding.
    FindingOpened,
    /// An open finding's row changed.
    FindingUpdated,
    /// A finding's key left the result.
    FindingResolved,
    /// A resolved finding's key came back.
    FindingReopened,
    /// A decision accepted a finding's risk until a time (an option with `accept_for`).
    FindingAccepted,
    /// A finding's acceptance ran out while its row was still there: it is open again.
    FindingAcceptanceExpired,
    /// An approval was requested.
    ApprovalRequested,
    /// Someone voted.
    ApprovalVote,
    /// An option reached its threshold.
    ApprovalDecided,
    /// A vote was refused before the state machine saw it (a Slack user who is no approver).
    ApprovalRefused,
    /// Time ran out.
    ApprovalExpired,
    /// An action was about to call its target.
    ActionStarted,
    /// An action succeeded.
    ActionSucceeded,
    /// An action failed.
    ActionFailed,
    /// A person asked to reverse an executed action (`vigilo undo`); the reversal is its own action.
    ActionUndo,
    /// A message went out.
    MessageSent,
    /// A message could not be sent.
    MessageFailed,
    /// A remediation run could not go on (its templates did not render); nothing was done.
    RemediationFailed,
    /// Someone asked for a ChatOps command; it waits for their confirmation.
    CommandRequested,
    /// The requester confirmed a ChatOps command; it runs.
    CommandConfirmed,
    /// The requester cancelled a ChatOps command.
    CommandCancelled,
    /// vigilo loaded a project to act on it.
    ConfigLoaded,
}

impl Kind {
    /// As written in the trail.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::FindingOpened => "finding.opened",
            Kind::FindingUpdated => "finding.updated",
            Kind::FindingResolved => "finding.resolved",
            Kind::FindingReopened => "finding.reopened",
            Kind::FindingAccepted => "finding.accepted",
            Kind::FindingAcceptanceExpired => "finding.acceptance_expired",
            Kind::ApprovalRequested => "approval.requested",
            Kind::ApprovalVote => "approval.vote",
            Kind::ApprovalDecided => "approval.decided",
            Kind::ApprovalRefused => "approval.refused",
            Kind::ApprovalExpired => "approval.expired",
            Kind::ActionStarted => "action.started",
            Kind::ActionSucceeded => "action.succeeded",
            Kind::ActionFailed => "action.failed",
            Kind::ActionUndo => "action.undo",
            Kind::MessageSent => "message.sent",
            Kind::MessageFailed => "message.failed",
            Kind::RemediationFailed => "remediation.failed",
            Kind::CommandRequested => "command.requested",
            Kind::CommandConfirmed => "command.confirmed",
            Kind::CommandCancelled => "command.cancelled",
            Kind::ConfigLoaded => "config.loaded",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event to append; the store assigns `seq`, `prev_hash` and `hash`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// What happened.
    pub kind: Kind,
    /// Who did it (an approver name, or `vigilo`).
    pub actor: String,
    /// Where (`cli`, `web`, `slack`, `email`, `scheduler`, `scan`).
    pub channel: String,
    /// The finding concerned.
    pub finding_id: Option<i64>,
    /// The approval concerned.
    pub approval_id: Option<i64>,
    /// The action concerned.
    pub action_id: Option<i64>,
    /// Details; secrets are masked when the entry is chained.
    pub data: Value,
}

impl Event {
    /// An event by vigilo itself on `channel`.
    pub fn system(kind: Kind, channel: &str, data: Value) -> Event {
        Event {
            kind,
            actor: "vigilo".into(),
            channel: channel.into(),
            finding_id: None,
            approval_id: None,
            action_id: None,
            data,
        }
    }

    /// A finding event of `query` for finding `id`.
    pub fn finding(kind: Kind, channel: &str, query: &str, id: i64, key: Value) -> Event {
        Event {
            finding_id: Some(id),
            ..Event::system(kind, channel, json!({ "query": query, "key": key }))
        }
    }
}

/// An entry as stored and shown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// Position in the chain, from 1, without gaps.
    pub seq: i64,
    /// When, RFC 3339 UTC with microseconds (exactly the text that was hashed).
    pub at: String,
    /// `finding.opened`, …
    pub kind: String,
    /// Who.
    pub actor: String,
    /// Where.
    pub channel: String,
    /// The finding concerned.
    pub finding_id: Option<i64>,
    /// The approval concerned.
    pub approval_id: Option<i64>,
    /// The action concerned.
    pub action_id: Option<i64>,
    /// Details.
    pub data: Value,
    /// The previous entry's hash.
    pub prev_hash: String,
    /// SHA-256 of `prev_hash` and this entry's canonical JSON without `hash`.
    pub hash: String,
}

impl Entry {
    /// Builds the next entry after (`prev_seq`, `prev_hash`), hashing it; secrets in its
    /// actor and data are masked first (see [`crate::redact`]).
    pub fn chain(prev_seq: i64, prev_hash: &str, at: DateTime<Utc>, event: &Event) -> Entry {
        let mut chain = Chain::new(prev_seq, prev_hash.to_string(), at);
        let link = chain.next(event);
        Entry {
            seq: link.seq,
            at: chain.at().to_string(),
            kind: link.kind.to_string(),
            actor: link.actor.into_owned(),
            channel: link.channel.into_owned(),
            finding_id: link.finding_id,
            approval_id: link.approval_id,
            action_id: link.action_id,
            // The text was written from a Value a moment ago.
            data: serde_json::from_str(&link.data).unwrap_or(Value::Null),
            prev_hash: link.prev_hash,
            hash: hex::encode(link.digest),
        }
    }

    /// The canonical JSON of the entry without `hash`.
    pub fn canonical_json(&self) -> String {
        let mut out = Vec::new();
        self.canonical().write(&mut out, &self.data.to_string());
        // serde_json writes UTF-8, `data` is a str, and the rest is ASCII.
        String::from_utf8(out).unwrap_or_default()
    }

    /// What `hash` must be.
    pub fn compute_hash(&self) -> String {
        hex::encode(
            self.canonical()
                .hash(&mut Vec::new(), &self.data.to_string()),
        )
    }

    fn canonical(&self) -> Canonical<'_> {
        Canonical {
            seq: self.seq,
            at: &self.at,
            kind: &self.kind,
            actor: &self.actor,
            channel: &self.channel,
            finding_id: self.finding_id,
            approval_id: self.approval_id,
            action_id: self.action_id,
            prev_hash: &self.prev_hash,
        }
    }

    /// The canonical JSON the old way, through a `serde_json::Map` (tests compare the two).
    #[cfg(test)]
    fn canonical_json_by_map(&self) -> String {
        let mut m = serde_json::Map::new();
        m.insert("seq".into(), json!(self.seq));
        m.insert("at".into(), json!(self.at));
        m.insert("kind".into(), json!(self.kind));
        m.insert("actor".into(), json!(self.actor));
        m.insert("channel".into(), json!(self.channel));
        m.insert("finding_id".into(), json!(self.finding_id));
        m.insert("approval_id".into(), json!(self.approval_id));
        m.insert("action_id".into(), json!(self.action_id));
        m.insert("data".into(), self.data.clone());
        m.insert("prev_hash".into(), json!(self.prev_hash));
        // serde_json's Map is ordered by key (no preserve_order feature), so this is canonical.
        Value::Object(m).to_string()
    }
}

/// Fills in the `prev_hash` of entries read in `seq` order. Stores keep only an entry's
/// hash (its 32 bytes): its `prev_hash` is the hash of the entry before it in the trail,
/// and `before` is the hash of the entry before the first (`None` when there is none:
/// [`GENESIS`]). An edited, missing or reordered entry still fails [`Verifier::check`],
/// since its stored hash was computed over the `prev_hash` it followed.
pub fn link_read(entries: &mut [Entry], before: Option<&[u8]>) {
    let mut prev = before.map_or_else(|| GENESIS.to_string(), hex::encode);
    for e in entries {
        e.prev_hash = std::mem::replace(&mut prev, e.hash.clone());
    }
}

/// An entry's fields but `data` and `hash`, as hashed.
struct Canonical<'a> {
    seq: i64,
    at: &'a str,
    kind: &'a str,
    actor: &'a str,
    channel: &'a str,
    finding_id: Option<i64>,
    approval_id: Option<i64>,
    action_id: Option<i64>,
    prev_hash: &'a str,
}

impl Canonical<'_> {
    /// Writes the canonical JSON without `hash`, `data` given as JSON text.
    ///
    /// Field by field in key order, which is the text `serde_json` writes for the entry as
    /// a `Map` (a test keeps the two the same), without building the map.
    fn write(&self, out: &mut Vec<u8>, data: &str) {
        fn put<T: Serialize + ?Sized>(out: &mut Vec<u8>, key: &str, value: &T) {
            out.push(if out.is_empty() { b'{' } else { b',' });
            out.push(b'"');
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(b"\":");
            // Writing plain values into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, value);
        }
        out.reserve(256 + data.len());
        put(out, "action_id", &self.action_id);
        put(out, "actor", self.actor);
        put(out, "approval_id", &self.approval_id);
        put(out, "at", self.at);
        put(out, "channel", self.channel);
        out.extend_from_slice(b",\"data\":");
        out.extend_from_slice(data.as_bytes());
        put(out, "finding_id", &self.finding_id);
        put(out, "kind", self.kind);
        put(out, "prev_hash", self.prev_hash);
        put(out, "seq", &self.seq);
        out.push(b'}');
    }

    /// SHA-256 of `prev_hash` (as hex) and the canonical JSON, written into `buf` (cleared first).
    fn hash(&self, buf: &mut Vec<u8>, data: &str) -> [u8; 32] {
        buf.clear();
        self.write(buf, data);
        let mut h = Context::new(&SHA256);
        h.update(self.prev_hash.as_bytes());
        h.update(&buf[..]);
        let mut digest = [0; 32];
        digest.copy_from_slice(h.finish().as_ref());
        digest
    }
}

/// Chains one append's events onto the trail, from its head: every entry is stamped with
/// the same time (formatted once), and secrets in actors and data are masked first (see
/// [`crate::redact`]).
pub struct Chain {
    seq: i64,
    hash: String,
    at: String,
    buf: Vec<u8>,
}

/// One chained entry as a store writes it; its time is [`Chain::at`].
#[derive(Debug)]
pub struct Link<'e> {
    /// Position in the chain.
    pub seq: i64,
    /// `finding.opened`, …
    pub kind: &'static str,
    /// Who, masked.
    pub actor: Cow<'e, str>,
    /// Where.
    pub channel: Cow<'e, str>,
    /// The finding concerned.
    pub finding_id: Option<i64>,
    /// The approval concerned.
    pub approval_id: Option<i64>,
    /// The action concerned.
    pub action_id: Option<i64>,
    /// Details, masked, as the JSON text that was hashed (what the store keeps).
    pub data: String,
    /// The previous entry's hash.
    pub prev_hash: String,
    /// This entry's hash, as stored: its 32 bytes (shown as hex).
    pub digest: [u8; 32],
}

impl Link<'_> {
    /// Its fields as hashed, stamped `at`.
    fn canonical<'l>(&'l self, at: &'l str) -> Canonical<'l> {
        Canonical {
            seq: self.seq,
            at,
            kind: self.kind,
            actor: &self.actor,
            channel: &self.channel,
            finding_id: self.finding_id,
            approval_id: self.approval_id,
            action_id: self.action_id,
            prev_hash: &self.prev_hash,
        }
    }

    /// The same entry, owning its text.
    pub fn into_owned(self) -> Link<'static> {
        Link {
            seq: self.seq,
            kind: self.kind,
            actor: Cow::Owned(self.actor.into_owned()),
            channel: Cow::Owned(self.channel.into_owned()),
            finding_id: self.finding_id,
            approval_id: self.approval_id,
            action_id: self.action_id,
            data: self.data,
            prev_hash: self.prev_hash,
            digest: self.digest,
        }
    }
}

impl Chain {
    /// A chain whose last entry is (`seq`, `hash`) (0 and [`GENESIS`] for an empty trail),
    /// stamping entries with `at`.
    pub fn new(seq: i64, hash: String, at: DateTime<Utc>) -> Chain {
        Chain {
            seq,
            hash,
            at: at.to_rfc3339_opts(SecondsFormat::Micros, true),
            buf: Vec::with_capacity(512),
        }
    }

    /// The time every entry gets: RFC 3339 UTC with microseconds (the text that is hashed).
    pub fn at(&self) -> &str {
        &self.at
    }

    /// The last entry chained (or the head the chain started from): (seq, hash).
    pub fn head(&self) -> (i64, &str) {
        (self.seq, &self.hash)
    }

    /// Chains `event` as the next entry.
    pub fn next<'e>(&mut self, event: &'e Event) -> Link<'e> {
        // Per entry: a secret learned while a long commit chains is masked from then on.
        let redactor = crate::redact::global();
        let data = if redactor.would_mask(&event.data) {
            let mut masked = event.data.clone();
            redactor.json(&mut masked);
            json_text(&masked)
        } else {
            json_text(&event.data)
        };
        let mut link = Link {
            seq: self.seq + 1,
            kind: event.kind.as_str(),
            actor: redactor.text(&event.actor),
            channel: Cow::Borrowed(&event.channel),
            finding_id: event.finding_id,
            approval_id: event.approval_id,
            action_id: event.action_id,
            data,
            prev_hash: std::mem::take(&mut self.hash),
            digest: [0; 32],
        };
        link.digest = link.canonical(&self.at).hash(&mut self.buf, &link.data);
        (self.seq, self.hash) = (link.seq, hex::encode(link.digest));
        link
    }
}

/// `v` as compact JSON.
fn json_text(v: &Value) -> String {
    // Serializing a Value into a String cannot fail.
    serde_json::to_string(v).unwrap_or_default()
}

/// Why the chain does not verify, naming the first bad entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Broken {
    /// An entry is missing before `seq` (deleted, or the trail was reordered).
    #[error(
        "audit entry {seq}: expected seq {expected} here; an entry was deleted or the trail reordered"
    )]
    Gap {
        /// The seq found.
        seq: i64,
        /// The seq expected.
        expected: i64,
    },
    /// The entry does not follow its predecessor.
    #[error(
        "audit entry {seq}: prev_hash does not match the previous entry's hash (entries reordered or replaced)"
    )]
    Link {
        /// The bad entry.
        seq: i64,
    },
    /// The entry was edited.
    #[error("audit entry {seq}: hash does not match its contents (the entry was edited)")]
    Content {
        /// The bad entry.
        seq: i64,
    },
    /// The chain ends before the head the store recorded.
    #[error(
        "audit entry {seq}: missing; the trail ends at {last} but the store recorded entries up to {seq}"
    )]
    Truncated {
        /// The first missing seq.
        seq: i64,
        /// The last entry present.
        last: i64,
    },
    /// The last entry is not the recorded head.
    #[error("audit entry {seq}: its hash is not the head the store recorded")]
    Head {
        /// The last entry.
        seq: i64,
    },
}

impl Broken {
    /// The first bad `seq`.
    pub fn seq(&self) -> i64 {
        match self {
            Broken::Gap { seq, .. }
            | Broken::Link { seq }
            | Broken::Content { seq }
            | Broken::Truncated { seq, .. }
            | Broken::Head { seq } => *seq,
        }
    }
}

/// Checks entries in `seq` order, page by page; [`Verifier::finish`] compares the end with the recorded head.
#[derive(Debug)]
pub struct Verifier {
    last_seq: i64,
    last_hash: String,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier {
            last_seq: 0,
            last_hash: GENESIS.to_string(),
        }
    }
}

impl Verifier {
    /// The last entry checked (0 before the first).
    pub fn last_seq(&self) -> i64 {
        self.last_seq
    }

    /// Checks the next entry.
    pub fn check(&mut self, e: &Entry) -> Result<(), Broken> {
        let expected = self.last_seq + 1;
        if e.seq != expected {
            return Err(Broken::Gap {
                seq: e.seq.min(expected),
                expected,
            });
        }
        if e.prev_hash != self.last_hash {
            return Err(Broken::Link { seq: e.seq });
        }
        if e.compute_hash() != e.hash {
            return Err(Broken::Content { seq: e.seq });
        }
        self.last_seq = e.seq;
        self.last_hash = e.hash.clone();
        Ok(())
    }

    /// Compares the last entry checked with the head the store recorded; returns how many entries verified.
    pub fn finish(self, head_seq: i64, head_hash: &str) -> Result<i64, Broken> {
        if head_seq > self.last_seq {
            return Err(Broken::Truncated {
                seq: self.last_seq + 1,
                last: self.last_seq,
            });
        }
        if head_seq < self.last_seq || head_hash != self.last_hash {
            return Err(Broken::Head { seq: self.last_seq });
        }
        Ok(self.last_seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    // RustCrypto's SHA-256, independent of the ring implementation the chain uses.
    use sha2::{Digest, Sha256};

    fn chain(n: i64) -> Vec<Entry> {
        let mut out: Vec<Entry> = Vec::new();
        for i in 0..n {
            let (seq, prev) = out
                .last()
                .map_or((0, GENESIS.to_string()), |e| (e.seq, e.hash.clone()));
            let ev = Event::finding(Kind::FindingOpened, "scan", "q", i, json!({"id": i}));
            out.push(Entry::chain(seq, &prev, Utc::now(), &ev));
        }
        out
    }

    fn verify(entries: &[Entry], head: (i64, &str)) -> Result<i64, Broken> {
        let mut v = Verifier::default();
        for e in entries {
            v.check(e)?;
        }
        v.finish(head.0, head.1)
    }

    #[test]
    fn an_intact_chain_verifies() {
        let c = chain(5);
        let head = (c[4].seq, c[4].hash.as_str());
        assert_eq!(verify(&c, head), Ok(5));
        assert_eq!(verify(&[], (0, GENESIS)), Ok(0));
    }

    #[test]
    fn canonical_json_is_what_serde_json_writes_for_the_map() {
        let mut entries = chain(3);
        let mut odd = entries[2].clone();
        odd.actor = "ünïcode \"quoted\" \u{1}".into();
        odd.finding_id = None;
        odd.approval_id = Some(-4);
        odd.data = json!({"z": [1, 2.5, null], "a": {"y": "\n", "b": true}, "é": ""});
        entries.push(odd);
        for e in &entries {
            assert_eq!(e.canonical_json(), e.canonical_json_by_map());
        }
    }

    #[test]
    fn the_hash_covers_prev_hash_and_canonical_json() {
        let c = chain(2);
        let mut h = Sha256::new();
        h.update(c[1].prev_hash.as_bytes());
        h.update(c[1].canonical_json().as_bytes());
        assert_eq!(hex::encode(h.finalize()), c[1].hash);
        let json = c[1].canonical_json();
        assert!(
            json.starts_with("{\"action_id\":null,\"actor\":\"vigilo\""),
            "{json}"
        );
        assert!(!json.contains("\"hash\""), "{json}");
    }

    #[test]
    fn each_kind_of_tampering_names_the_first_bad_seq() {
        let c = chain(5);
        let head = (5, c[4].hash.clone());
        let mut edited = c.clone();
        edited[2].actor = "mallory".into();
        assert_eq!(
            verify(&edited, (head.0, &head.1)),
            Err(Broken::Content { seq: 3 })
        );

        let mut deleted = c.clone();
        deleted.remove(1);
        assert_eq!(verify(&deleted, (head.0, &head.1)).unwrap_err().seq(), 2);

        // Reordered: the rows swapped places, seq numbers rewritten to look continuous.
        let mut reordered = c.clone();
        reordered.swap(1, 2);
        reordered[1].seq = 2;
        reordered[2].seq = 3;
        assert_eq!(verify(&reordered, (head.0, &head.1)).unwrap_err().seq(), 2);

        let truncated = &c[..4];
        assert_eq!(
            verify(truncated, (head.0, &head.1)),
            Err(Broken::Truncated { seq: 5, last: 4 })
        );
    }
}
