//! Primary-key change detection, streaming (interface.md section 3).
//!
//! Rows are hashed as they arrive. What stays in memory per key is a 128-bit
//! hash of the key and a 64-bit hash of the row — never the row itself. Only
//! rows that changed (inserted or updated) are kept, serialized, because they
//! become findings. After the last row, every key of the previous snapshot
//! that was not seen is deleted.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Range;

use serde_json::{Map, Value};
use xxhash_rust::xxh3::{xxh3_64, xxh3_128};

use crate::config::{FirstRun, Query};
use crate::source::Row;

/// A key's identity: the xxh3-128 hash of its canonical JSON (`["AKIA…"]`).
pub type KeyHash = u128;

/// Marks a snapshot entry as seen in this run; row hashes keep the other 63 bits.
const SEEN: u64 = 1 << 63;

/// The row hash as stored: 63 bits, so the top bit is free for [`SEEN`] and [`GONE`].
fn row_hash(bytes: &[u8]) -> u64 {
    xxh3_64(bytes) & !SEEN
}

/// Key hashes are already uniformly distributed: hash them by taking their low bits.
#[derive(Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u128 keys are hashed here; fold whatever arrives.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(word);
        }
    }

    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }
}

/// The previous successful run of a query: key hash → row hash.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Bumped by every successful run; a commit checks it did not move (two runs never both commit).
    pub generation: i64,
    entries: HashMap<KeyHash, u64, BuildHasherDefault<KeyHasher>>,
    /// Stored deltas read but not yet merged: the latest entry of each key (see [`Snapshot::add_delta_chunk`]).
    pending: HashMap<KeyHash, u64, BuildHasherDefault<KeyHasher>>,
}

impl Snapshot {
    /// An empty snapshot at `generation`.
    pub fn new(generation: i64) -> Snapshot {
        Snapshot {
            generation,
            entries: HashMap::default(),
            pending: HashMap::default(),
        }
    }

    /// An empty snapshot sized for `capacity` keys.
    pub fn with_capacity(generation: i64, capacity: usize) -> Snapshot {
        Snapshot {
            generation,
            entries: HashMap::with_capacity_and_hasher(capacity, Default::default()),
            pending: HashMap::default(),
        }
    }

    /// Adds a stored entry (used by the store while loading).
    pub fn insert(&mut self, key: KeyHash, row_hash: u64) {
        self.entries.insert(key, row_hash & !SEEN);
    }

    /// How many keys it holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds no keys.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether it holds `key`.
    pub fn contains(&self, key: KeyHash) -> bool {
        self.entries.contains_key(&key)
    }

    /// Adds the entries of one stored chunk ([`Snapshot::chunks`]), merged with any deltas
    /// read before it; until [`Snapshot::finish_load`], deltas no chunk has met are not in
    /// `len`, `contains` or `chunks`. `Err` names a bad length.
    pub fn extend_from_chunk(&mut self, chunk: &[u8]) -> Result<(), usize> {
        if !chunk.len().is_multiple_of(ENTRY_BYTES) {
            return Err(chunk.len());
        }
        for (key, row) in entries_of(chunk) {
            match self.pending.remove(&key) {
                None => self.insert(key, row),
                Some(delta) if delta & GONE == 0 => self.insert(key, delta),
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Takes one stored delta chunk ([`Changes::delta_chunks`]), read in order and before
    /// the chunks: an entry whose row hash has the top bit set removes its key, any other
    /// sets it. Chunks that follow are merged with the deltas as they arrive, so a key is
    /// never inserted only to be removed (which would leave the full map its tombstones
    /// and make it grow); [`Snapshot::finish_load`] merges the rest. `Err` names a bad length.
    pub fn add_delta_chunk(&mut self, chunk: &[u8]) -> Result<(), usize> {
        if !chunk.len().is_multiple_of(ENTRY_BYTES) {
            return Err(chunk.len());
        }
        self.pending.extend(entries_of(chunk));
        Ok(())
    }

    /// Merges the deltas no chunk has met: new keys set, gone keys removed.
    pub fn finish_load(&mut self) {
        for (key, row) in std::mem::take(&mut self.pending) {
            if row & GONE != 0 {
                self.entries.remove(&key);
            } else {
                self.entries.insert(key, row);
            }
        }
    }

    /// The snapshot as stored: chunks of up to [`CHUNK_ENTRIES`] entries, each entry the
    /// key hash (16 bytes) and the row hash (8 bytes), big-endian. One chunk is built at a
    /// time, so storing a snapshot costs one chunk of memory, not a copy of it.
    pub fn chunks(&self) -> impl Iterator<Item = Vec<u8>> + '_ {
        let mut entries = self.entries.iter().peekable();
        std::iter::from_fn(move || {
            entries.peek()?;
            let mut chunk = Vec::with_capacity(CHUNK_ENTRIES.min(self.len()) * ENTRY_BYTES);
            for (&key, row) in entries.by_ref().take(CHUNK_ENTRIES) {
                put_entry(&mut chunk, key, row & !SEEN);
            }
            Some(chunk)
        })
    }
}

/// Bytes of one stored snapshot entry: key hash and row hash.
pub const ENTRY_BYTES: usize = 24;

/// In a stored delta, marks an entry whose key is gone (row hashes keep the other 63 bits).
const GONE: u64 = 1 << 63;

/// The (key hash, row hash) entries of a stored chunk whose length is a multiple of [`ENTRY_BYTES`].
fn entries_of(chunk: &[u8]) -> impl Iterator<Item = (KeyHash, u64)> + '_ {
    chunk.chunks_exact(ENTRY_BYTES).map(|entry| {
        let (key, row) = entry.split_at(16);
        // Both splits have exactly the sizes converted to.
        let key = KeyHash::from_be_bytes(key.try_into().unwrap_or_default());
        let row = u64::from_be_bytes(row.try_into().unwrap_or_default());
        (key, row)
    })
}

/// Appends one stored entry to `chunk`.
fn put_entry(chunk: &mut Vec<u8>, key: KeyHash, row: u64) {
    chunk.extend_from_slice(&key.to_be_bytes());
    chunk.extend_from_slice(&row.to_be_bytes());
}

/// Entries per stored snapshot chunk (768 KiB).
pub const CHUNK_ENTRIES: usize = 32 * 1024;

/// Why a run's rows cannot be diffed; the run fails and nothing changes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DiffError {
    /// A primary-key or ignored column is not in the result.
    #[error("query {query}: {setting} column {column:?} is not in the result (columns: {columns})")]
    MissingColumn {
        /// The query.
        query: String,
        /// `primary_key` or `ignore_columns`.
        setting: &'static str,
        /// The column.
        column: String,
        /// The result's columns, comma-separated.
        columns: String,
    },
    /// A primary-key column is NULL.
    #[error("query {query}: primary key column {column:?} is NULL in row {row_number}")]
    NullKey {
        /// The query.
        query: String,
        /// The column.
        column: String,
        /// 1-based row number in the result.
        row_number: u64,
    },
    /// Two rows have the same key.
    #[error(
        "query {query}: two rows have the same primary key ({key}); row {row_number} repeats it"
    )]
    DuplicateKey {
        /// The query.
        query: String,
        /// `column = value` pairs.
        key: String,
        /// 1-based row number of the repeat.
        row_number: u64,
    },
    /// The result has two columns with the same name.
    #[error("query {query}: the result has two columns named {column:?}; alias one of them")]
    DuplicateColumn {
        /// The query.
        query: String,
        /// The column.
        column: String,
    },
}

/// The finding-worthy data of an inserted or updated row, as compact JSON text.
///
/// Text, not `serde_json::Map`: a first run can change every row, and a row as
/// text costs its length; as a map it costs several times that. The key and the row share
/// one allocation of exactly their length: a first run holds 900,000 of them until its
/// commit, and each allocation and each string's capacity word cost memory the process
/// touches for the first time.
#[derive(Debug, Clone, PartialEq)]
pub struct FindingRow {
    /// The key's JSON, then the row's.
    text: Box<str>,
    /// Where the key ends and the row begins in `text`.
    key_len: u32,
}

impl FindingRow {
    /// The key's JSON followed by the row's in `text`, the key `key_len` bytes long.
    fn joined(text: String, key_len: usize) -> FindingRow {
        // A key longer than 4 GiB cannot come from a row PostgreSQL or SQLite returns
        // (their values stop at 1 GiB and 2 GiB); the clamp only keeps the split on a
        // character boundary should one appear.
        let key_len = u32::try_from(key_len).unwrap_or(0);
        FindingRow {
            text: text.into_boxed_str(),
            key_len,
        }
    }

    /// The key as a JSON object (`{"access_key_id":"AKIA…"}`), columns in primary-key order.
    pub fn key(&self) -> &str {
        &self.text[..self.key_len as usize]
    }

    /// The whole row as a JSON object, columns in result order.
    pub fn row(&self) -> &str {
        &self.text[self.key_len as usize..]
    }

    /// The key as a map.
    pub fn key_map(&self) -> Map<String, Value> {
        // Written by `Diff::json_object` from a column list and values, so always an object.
        serde_json::from_str(self.key()).unwrap_or_default()
    }

    /// The row as a map.
    pub fn row_map(&self) -> Map<String, Value> {
        serde_json::from_str(self.row()).unwrap_or_default()
    }

    /// Asks the CPU to start loading the text into its cache, for a loop that will read it
    /// a few rows from now (see [`crate::store::prefetch`]).
    pub(crate) fn prefetch(&self) {
        for line in self.text.as_bytes().chunks(64) {
            prefetch(line.as_ptr());
        }
    }
}

/// Asks the CPU to load the cache line at `p`; a hint that changes no result.
pub(crate) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing the program sees and cannot fault, whatever the
    // address; SSE, which it needs, is part of every x86_64 CPU.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// One inserted or updated key.
#[derive(Debug, Clone, PartialEq)]
pub struct Changed {
    /// The key's hash.
    pub key_hash: KeyHash,
    /// The row's hash.
    pub row_hash: u64,
    /// The row, except for baseline runs (which record hashes only).
    pub finding: Option<FindingRow>,
}

/// What one run changed relative to the previous snapshot.
#[derive(Debug, Default)]
pub struct Changes {
    /// The snapshot generation this diff was made against (`None`: first run).
    pub base_generation: Option<i64>,
    /// A first run with `on_first_run = baseline`: keys recorded, no findings.
    pub baseline: bool,
    /// Rows read.
    pub rows: u64,
    /// Keys not there before.
    pub inserted: Vec<Changed>,
    /// Keys whose row changed outside `ignore_columns`.
    pub updated: Vec<Changed>,
    /// Keys there before and gone now.
    pub deleted: Vec<KeyHash>,
    /// The run's snapshot, to be stored: every key seen, with its row hash.
    pub snapshot: Snapshot,
}

impl Changes {
    /// Whether the run changed no key: the stored snapshot stays as it is.
    pub fn is_unchanged(&self) -> bool {
        self.base_generation.is_some()
            && self.inserted.is_empty()
            && self.updated.is_empty()
            && self.deleted.is_empty()
    }

    /// How many keys changed: inserted, updated and deleted.
    pub fn changed_keys(&self) -> usize {
        self.inserted.len() + self.updated.len() + self.deleted.len()
    }

    /// What this run changed in the snapshot, as stored deltas: chunks of up to
    /// [`CHUNK_ENTRIES`] entries (a new or changed key with its row hash, a gone key marked
    /// [`GONE`]), each with its net change in the number of keys. Applied in order to the
    /// previous snapshot ([`Snapshot::add_delta_chunk`]) they give [`Changes::snapshot`].
    pub fn delta_chunks(&self) -> impl Iterator<Item = (Vec<u8>, i64)> + '_ {
        let mut entries = self
            .inserted
            .iter()
            .map(|c| (c.key_hash, c.row_hash, 1))
            .chain(self.updated.iter().map(|c| (c.key_hash, c.row_hash, 0)))
            .chain(self.deleted.iter().map(|&k| (k, GONE, -1)))
            .peekable();
        let size = self.changed_keys().min(CHUNK_ENTRIES) * ENTRY_BYTES;
        std::iter::from_fn(move || {
            entries.peek()?;
            let (mut chunk, mut added) = (Vec::with_capacity(size), 0);
            for (key, row, net) in entries.by_ref().take(CHUNK_ENTRIES) {
                put_entry(&mut chunk, key, row);
                added += net;
            }
            Some((chunk, added))
        })
    }
}

/// Diffs one run's rows, as they stream in, against the previous snapshot.
pub struct Diff {
    query: String,
    columns: Vec<String>,
    /// Each column's name as a JSON object's member name: `"name":`, written once.
    members: Vec<String>,
    key_columns: Vec<usize>,
    hashed_columns: Vec<usize>,
    /// Key hash → row hash (| SEEN once seen this run); starts as the previous snapshot.
    entries: HashMap<KeyHash, u64, BuildHasherDefault<KeyHasher>>,
    changes: Changes,
    buf: Vec<u8>,
    /// Rows hashed but not yet looked up: they are looked up [`PROBE_BATCH`] at a time.
    hashed: Vec<Hashed>,
    /// The values of the rows in `hashed` as JSON, each written once: the key's hash, the
    /// row's hash, a new finding's text and an error's description are all made of them.
    encoded: Encoded,
}

/// Rows' values as JSON, one after another, and where each lies.
struct Encoded {
    bytes: Vec<u8>,
    spans: Vec<Range<usize>>,
}

impl Encoded {
    /// Appends `row`'s values; returns where its spans start (its first value's index).
    fn push(&mut self, row: &Row) -> usize {
        let first = self.spans.len();
        for value in row {
            let start = self.bytes.len();
            write_json(&mut self.bytes, value);
            self.spans.push(start..self.bytes.len());
        }
        first
    }

    /// Value `i` of the row whose spans start at `first`.
    fn value(&self, first: usize, i: usize) -> &[u8] {
        &self.bytes[self.spans[first + i].clone()]
    }

    /// Values `i` to `j` (inclusive) of that row, as they lie one after the other.
    fn values(&self, first: usize, i: usize, j: usize) -> &[u8] {
        &self.bytes[self.spans[first + i].start..self.spans[first + j].end]
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.spans.clear();
    }
}

/// How many rows [`Diff`] hashes before it looks their keys up in the snapshot. A lookup in
/// a map of a million keys misses the CPU caches twice; independent lookups issued back to
/// back overlap those misses instead of waiting for each in turn.
const PROBE_BATCH: usize = 32;

/// A row with its key and row hashes, waiting for its lookup.
struct Hashed {
    key_hash: KeyHash,
    row_hash: u64,
    /// Where its values' spans start in [`Diff::encoded`].
    first: usize,
    number: u64,
}

impl Diff {
    /// Starts a diff of `query`'s result with `columns` against `previous` (`None`: first run).
    pub fn new(
        query: &Query,
        columns: &[String],
        previous: Option<Snapshot>,
    ) -> Result<Diff, DiffError> {
        let index_of = |setting: &'static str, column: &String| {
            columns
                .iter()
                .position(|c| c == column)
                .ok_or_else(|| DiffError::MissingColumn {
                    query: query.name.clone(),
                    setting,
                    column: column.clone(),
                    columns: columns.join(", "),
                })
        };
        for (i, c) in columns.iter().enumerate() {
            if columns[..i].contains(c) {
                return Err(DiffError::DuplicateColumn {
                    query: query.name.clone(),
                    column: c.clone(),
                });
            }
        }
        let key_columns = query
            .primary_key
            .iter()
            .map(|c| index_of("primary_key", c))
            .collect::<Result<Vec<_>, _>>()?;
        let ignored = query
            .ignore_columns
            .iter()
            .map(|c| index_of("ignore_columns", c))
            .collect::<Result<Vec<_>, _>>()?;
        let hashed_columns = (0..columns.len())
            .filter(|i| !ignored.contains(i))
            .collect();
        let baseline = previous.is_none() && query.on_first_run == FirstRun::Baseline;
        let (base_generation, entries) = match previous {
            Some(mut s) => {
                s.finish_load();
                (Some(s.generation), s.entries)
            }
            None => (None, HashMap::default()),
        };
        Ok(Diff {
            query: query.name.clone(),
            columns: columns.to_vec(),
            members: columns
                .iter()
                .map(|c| format!("{}:", Value::from(c.as_str())))
                .collect(),
            key_columns,
            hashed_columns,
            entries,
            changes: Changes {
                base_generation,
                baseline,
                ..Changes::default()
            },
            buf: Vec::with_capacity(256),
            hashed: Vec::with_capacity(PROBE_BATCH),
            encoded: Encoded {
                bytes: Vec::with_capacity(PROBE_BATCH * 256),
                spans: Vec::with_capacity(PROBE_BATCH * columns.len()),
            },
        })
    }

    /// Takes one row.
    pub fn push(&mut self, row: Row) -> Result<(), DiffError> {
        self.changes.rows += 1;
        if let Some(&i) = self.key_columns.iter().find(|&&i| row[i].is_null()) {
            // A duplicate among the rows before this one is the first error.
            self.flush()?;
            return Err(DiffError::NullKey {
                query: self.query.clone(),
                column: self.columns[i].clone(),
                row_number: self.changes.rows,
            });
        }
        let first = self.encoded.push(&row);
        drop(row);
        let key_hash = self.key_hash(first);
        let row_hash = self.row_hash(first);
        self.hashed.push(Hashed {
            key_hash,
            row_hash,
            first,
            number: self.changes.rows,
        });
        if self.hashed.len() == PROBE_BATCH {
            self.flush()?;
        }
        Ok(())
    }

    /// Looks the rows pushed so far up in the snapshot, in the order they came, so that an
    /// error found among them (a repeated key) comes before one on a later row.
    pub fn flush(&mut self) -> Result<(), DiffError> {
        let mut hashed = std::mem::take(&mut self.hashed);
        // First only read the map for every row, so the CPU has the lookups' cache misses in
        // flight together; the loop below then finds the same entries in cache.
        let mut warm = 0;
        for h in &hashed {
            warm ^= self.entries.get(&h.key_hash).copied().unwrap_or(0);
        }
        std::hint::black_box(warm);
        let result = hashed.drain(..).try_for_each(|h| self.apply(h));
        self.hashed = hashed;
        self.encoded.clear();
        result
    }

    /// Compares one row with the snapshot and records what changed.
    fn apply(&mut self, hashed: Hashed) -> Result<(), DiffError> {
        let Hashed {
            key_hash,
            row_hash,
            first,
            number,
        } = hashed;
        match self.entries.get_mut(&key_hash) {
            Some(entry) if *entry & SEEN != 0 => Err(DiffError::DuplicateKey {
                query: self.query.clone(),
                key: self.describe_key(first),
                row_number: number,
            }),
            Some(entry) => {
                let changed = *entry != row_hash;
                *entry = row_hash | SEEN;
                if changed {
                    let finding = Some(self.finding_row(first));
                    self.changes.updated.push(Changed {
                        key_hash,
                        row_hash,
                        finding,
                    });
                }
                Ok(())
            }
            None => {
                self.entries.insert(key_hash, row_hash | SEEN);
                let finding = (!self.changes.baseline).then(|| self.finding_row(first));
                self.changes.inserted.push(Changed {
                    key_hash,
                    row_hash,
                    finding,
                });
                Ok(())
            }
        }
    }

    /// Ends the run: every key of the previous snapshot not seen is deleted, and what is
    /// left is the new snapshot (the same map, not a copy). Fails on a duplicate key among
    /// the last rows pushed.
    pub fn finish(mut self) -> Result<Changes, DiffError> {
        self.flush()?;
        let deleted = &mut self.changes.deleted;
        self.entries.retain(|key, hash| {
            if *hash & SEEN == 0 {
                deleted.push(*key);
                false
            } else {
                *hash &= !SEEN;
                true
            }
        });
        self.changes.snapshot = Snapshot {
            generation: self.changes.base_generation.map_or(1, |g| g + 1),
            entries: self.entries,
            pending: HashMap::default(),
        };
        Ok(self.changes)
    }

    /// The key's hash: xxh3-128 of `[value,…]`, the key's values in primary-key order.
    fn key_hash(&mut self, first: usize) -> KeyHash {
        self.buf.clear();
        self.buf.push(b'[');
        for (n, &i) in self.key_columns.iter().enumerate() {
            if n > 0 {
                self.buf.push(b',');
            }
            self.buf.extend_from_slice(self.encoded.value(first, i));
        }
        self.buf.push(b']');
        xxh3_128(&self.buf)
    }

    /// The row's hash: of its hashed columns' values, one after the other (JSON values
    /// delimit themselves, so concatenation is unambiguous).
    fn row_hash(&mut self, first: usize) -> u64 {
        if self.hashed_columns.len() == self.columns.len() {
            // Every column, in order: the row's values as they lie in `encoded`.
            return row_hash(self.encoded.values(first, 0, self.columns.len() - 1));
        }
        self.buf.clear();
        for &i in &self.hashed_columns {
            self.buf.extend_from_slice(self.encoded.value(first, i));
        }
        row_hash(&self.buf)
    }

    fn describe_key(&self, first: usize) -> String {
        self.key_columns
            .iter()
            .map(|&i| {
                let value = String::from_utf8_lossy(self.encoded.value(first, i));
                format!("{} = {value}", self.columns[i])
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn finding_row(&mut self, first: usize) -> FindingRow {
        self.buf.clear();
        self.json_object(first, false);
        let key_len = self.buf.len();
        self.json_object(first, true);
        // serde_json writes UTF-8 only, and the braces and separators are ASCII.
        let text = std::str::from_utf8(&self.buf).map_or_else(|_| String::new(), str::to_owned);
        FindingRow::joined(text, key_len)
    }

    /// Appends `{"column":value,…}` for the key's columns, or every column when `whole`, to
    /// `buf`, from the row's values as written once.
    fn json_object(&mut self, first: usize, whole: bool) {
        let (buf, members, encoded) = (&mut self.buf, &self.members, &self.encoded);
        buf.push(b'{');
        let mut member = |n: usize, i: usize| {
            if n > 0 {
                buf.push(b',');
            }
            buf.extend_from_slice(members[i].as_bytes());
            buf.extend_from_slice(encoded.value(first, i));
        };
        if whole {
            (0..self.columns.len()).for_each(|i| member(i, i));
        } else {
            (self.key_columns.iter().enumerate()).for_each(|(n, &i)| member(n, i));
        }
        buf.push(b'}');
    }
}

fn write_json(buf: &mut Vec<u8>, value: &Value) {
    // Writing a Value into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *buf, value);
}

/// The hash of a key given as its values in primary-key order (as the diff computes it).
pub fn key_hash_of(values: &[Value]) -> KeyHash {
    let mut buf = Vec::with_capacity(64);
    buf.push(b'[');
    for (n, v) in values.iter().enumerate() {
        if n > 0 {
            buf.push(b',');
        }
        write_json(&mut buf, v);
    }
    buf.push(b']');
    xxh3_128(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Severity;
    use serde_json::json;
    use std::path::PathBuf;

    fn query(pk: &[&str], ignore: &[&str], first: FirstRun) -> Query {
        Query {
            name: "q".into(),
            title: "q".into(),
            database: "db".into(),
            schedule: None,
            primary_key: pk.iter().map(|s| s.to_string()).collect(),
            ignore_columns: ignore.iter().map(|s| s.to_string()).collect(),
            remediation: None,
            notify: None,
            on_first_run: first,
            severity: Severity::Medium,
            enabled: true,
            sql: String::new(),
            path: PathBuf::from("queries/q.sql"),
        }
    }

    const COLS: [&str; 3] = ["id", "name", "age"];

    /// Runs `rows` against the snapshot left by `before` (None: first run).
    fn run(q: &Query, before: Option<&[Row]>, rows: &[Row]) -> Result<Changes, DiffError> {
        let cols: Vec<String> = COLS.iter().map(|s| s.to_string()).collect();
        let previous = match before {
            None => None,
            Some(before) => {
                let mut d = Diff::new(q, &cols, Some(Snapshot::new(1)))?;
                for r in before {
                    d.push(r.clone())?;
                }
                let c = d.finish()?;
                let mut s = Snapshot::new(1);
                for ch in c.inserted {
                    s.insert(ch.key_hash, ch.row_hash);
                }
                Some(s)
            }
        };
        let mut d = Diff::new(q, &cols, previous)?;
        for r in rows {
            d.push(r.clone())?;
        }
        d.finish()
    }

    #[test]
    fn prefetching_a_commits_rows_reads_nothing_past_their_end_and_changes_nothing() {
        let q = query(&["id"], &[], FirstRun::Insert);
        let rows: Vec<Row> = (0..20).map(|i| r(i, "n", i)).collect();
        let c = run(&q, None, &rows).unwrap();
        let new = crate::store::new_in_insert_order(&c);
        let before: Vec<String> = new
            .iter()
            .map(|ch| ch.finding.as_ref().unwrap().row().to_string())
            .collect();
        // Every index a commit's loop passes, and past its end.
        for i in 0..new.len() + 20 {
            crate::store::prefetch(&new, i);
        }
        let after: Vec<String> = new
            .iter()
            .map(|ch| ch.finding.as_ref().unwrap().row().to_string())
            .collect();
        assert_eq!(before, after);
        assert_eq!(after.len(), 20);
    }

    fn r(id: i64, name: &str, age: i64) -> Row {
        vec![json!(id), json!(name), json!(age)]
    }

    fn counts(c: &Changes) -> (usize, usize, usize) {
        (c.inserted.len(), c.updated.len(), c.deleted.len())
    }

    #[test]
    fn table_of_changes() {
        let q = query(&["id"], &["age"], FirstRun::Insert);
        #[rustfmt::skip]
        type Case = (&'static str, Option<Vec<Row>>, Vec<Row>, (usize, usize, usize));
        let cases: Vec<Case> = vec![
            (
                "first run inserts all",
                None,
                vec![r(1, "a", 1), r(2, "b", 1)],
                (2, 0, 0),
            ),
            (
                "same rows change nothing",
                Some(vec![r(1, "a", 1)]),
                vec![r(1, "a", 1)],
                (0, 0, 0),
            ),
            (
                "new key is inserted",
                Some(vec![r(1, "a", 1)]),
                vec![r(1, "a", 1), r(2, "b", 1)],
                (1, 0, 0),
            ),
            (
                "changed row is updated",
                Some(vec![r(1, "a", 1)]),
                vec![r(1, "z", 1)],
                (0, 1, 0),
            ),
            (
                "ignored column is no update",
                Some(vec![r(1, "a", 1)]),
                vec![r(1, "a", 99)],
                (0, 0, 0),
            ),
            (
                "gone key is deleted",
                Some(vec![r(1, "a", 1), r(2, "b", 1)]),
                vec![r(1, "a", 1)],
                (0, 0, 1),
            ),
            (
                "zero rows deletes all",
                Some(vec![r(1, "a", 1), r(2, "b", 1)]),
                vec![],
                (0, 0, 2),
            ),
            (
                "row order does not matter",
                Some(vec![r(1, "a", 1), r(2, "b", 1)]),
                vec![r(2, "b", 1), r(1, "a", 1)],
                (0, 0, 0),
            ),
        ];
        for (name, before, after, want) in cases {
            let c = run(&q, before.as_deref(), &after).unwrap();
            assert_eq!(counts(&c), want, "{name}");
        }
    }

    #[test]
    fn baseline_first_run_records_hashes_only() {
        let q = query(&["id"], &[], FirstRun::Baseline);
        let c = run(&q, None, &[r(1, "a", 1)]).unwrap();
        assert!(c.baseline);
        assert_eq!(c.inserted.len(), 1);
        assert!(c.inserted[0].finding.is_none());
    }

    #[test]
    fn composite_keys_distinguish_each_part() {
        let q = query(&["id", "name"], &[], FirstRun::Insert);
        let c = run(&q, Some(&[r(1, "a", 1)]), &[r(1, "a", 1), r(1, "b", 1)]).unwrap();
        assert_eq!(counts(&c), (1, 0, 0));
        let f = c.inserted[0].finding.as_ref().unwrap();
        assert_eq!(f.key(), r#"{"id":1,"name":"b"}"#);
        assert_eq!(Value::Object(f.key_map()), json!({"id": 1, "name": "b"}));
        assert_eq!(f.row_map()["age"], json!(1));
        assert_eq!(f.row(), r#"{"id":1,"name":"b","age":1}"#);
    }

    #[test]
    fn key_type_matters() {
        // "1" and 1 are different keys; a query that changes a key's type makes new findings.
        assert_ne!(key_hash_of(&[json!(1)]), key_hash_of(&[json!("1")]));
        // ["a,b"] is not ["a","b"].
        assert_ne!(
            key_hash_of(&[json!("a,b")]),
            key_hash_of(&[json!("a"), json!("b")])
        );
    }

    /// Stored snapshots hold these hashes: a diff that computed them differently would see
    /// every row of every query as changed after an upgrade. The values were taken from
    /// the diff as released; the rows mix escapes, non-ASCII text, numbers and NULL, a
    /// composite key, and a column left out of the row hash.
    #[test]
    fn hashes_and_finding_text_are_stable() {
        let q = query(&["name", "id"], &["age"], FirstRun::Insert);
        let rows = [
            vec![json!(7), json!("a\"b\\c\u{e9}\n"), json!(null)],
            vec![json!(-1.5), json!("x"), json!([1, {"k": "v"}])],
        ];
        let c = run(&q, None, &rows).unwrap();
        let got: Vec<(u128, u64, &str, &str)> = (c.inserted.iter())
            .map(|ch| {
                let f = ch.finding.as_ref().unwrap();
                (ch.key_hash, ch.row_hash, f.key(), f.row())
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    0xad3619bb643c34efb33c08bc2264d34d,
                    0x7ff1ce211e489dc2,
                    r#"{"name":"a\"b\\cé\n","id":7}"#,
                    r#"{"id":7,"name":"a\"b\\cé\n","age":null}"#
                ),
                (
                    0x65526d7bf5fff45489c024e95063e0,
                    0x62684bd206a7bb79,
                    r#"{"name":"x","id":-1.5}"#,
                    r#"{"id":-1.5,"name":"x","age":[1,{"k":"v"}]}"#
                ),
            ]
        );
        assert_eq!(
            got[0].0,
            key_hash_of(&[rows[0][1].clone(), rows[0][0].clone()])
        );
    }

    #[test]
    fn null_key_fails_naming_the_column() {
        let q = query(&["id"], &[], FirstRun::Insert);
        let err = run(&q, None, &[vec![json!(null), json!("a"), json!(1)]]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "query q: primary key column \"id\" is NULL in row 1"
        );
    }

    #[test]
    fn duplicate_key_fails_naming_the_column() {
        let q = query(&["id"], &[], FirstRun::Insert);
        let err = run(&q, None, &[r(7, "a", 1), r(7, "b", 1)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "query q: two rows have the same primary key (id = 7); row 2 repeats it"
        );
        // Also when the key was in the previous snapshot.
        let err = run(&q, Some(&[r(7, "a", 1)]), &[r(7, "a", 1), r(7, "a", 1)]).unwrap_err();
        assert!(matches!(err, DiffError::DuplicateKey { .. }));
        // Rows are looked up in batches: a repeat is found across batches, inside the last
        // partial one, and before a later row's NULL key, each with its own row number.
        let many = |n: i64| (0..n).map(|i| r(i, "a", 1)).collect::<Vec<_>>();
        for (rows, repeat) in [(100, 70), (100, 97), (40, 33)] {
            let mut rows = many(rows);
            rows[repeat - 1] = r(10, "b", 1);
            let err = run(&q, Some(&many(5)), &rows).unwrap_err();
            assert!(
                matches!(err, DiffError::DuplicateKey { row_number, .. } if row_number == repeat as u64),
                "{err}"
            );
        }
        let mut rows = many(40);
        rows[20] = r(3, "b", 1);
        rows[30] = vec![json!(null), json!("a"), json!(1)];
        let err = run(&q, None, &rows).unwrap_err();
        assert!(
            matches!(err, DiffError::DuplicateKey { row_number: 21, .. }),
            "{err}"
        );
        // And before the source's error on a later row: the scan flushes first.
        let cols: Vec<String> = COLS.iter().map(|s| s.to_string()).collect();
        let mut d = Diff::new(&q, &cols, None).unwrap();
        for r in &rows[..25] {
            d.push(r.clone()).unwrap();
        }
        let err = d.flush().unwrap_err();
        assert!(
            matches!(err, DiffError::DuplicateKey { row_number: 21, .. }),
            "{err}"
        );
    }

    #[test]
    fn missing_key_column_fails() {
        let q = query(&["account_id"], &[], FirstRun::Insert);
        let err = run(&q, None, &[r(1, "a", 1)]).unwrap_err();
        assert!(
            matches!(err, DiffError::MissingColumn { ref column, .. } if column == "account_id"),
            "{err}"
        );
    }

    #[test]
    fn finish_leaves_the_new_snapshot_which_round_trips_through_chunks() {
        let q = query(&["id"], &["age"], FirstRun::Insert);
        let c = run(
            &q,
            Some(&[r(1, "a", 1), r(2, "b", 1)]),
            &[r(2, "c", 1), r(3, "d", 1)],
        )
        .unwrap();
        assert_eq!(counts(&c), (1, 1, 1));
        assert_eq!(c.snapshot.generation, 2);
        assert_eq!(c.snapshot.len(), 2);
        let hash_of = |id: i64| key_hash_of(&[json!(id)]);
        assert!(c.snapshot.contains(hash_of(2)) && c.snapshot.contains(hash_of(3)));
        assert!(!c.snapshot.contains(hash_of(1)));
        // No SEEN bit survives into what is stored.
        assert!(c.snapshot.entries.values().all(|h| h & SEEN == 0));
        assert!(!c.is_unchanged());

        let mut big = Snapshot::new(7);
        for i in 0..(CHUNK_ENTRIES as u128 * 2 + 5) {
            big.insert(xxh3_128(&i.to_le_bytes()), i as u64 * 3);
        }
        let chunks: Vec<Vec<u8>> = big.chunks().collect();
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[2].len(), 5 * ENTRY_BYTES);
        let mut back = Snapshot::new(7);
        for chunk in &chunks {
            back.extend_from_chunk(chunk).unwrap();
        }
        assert_eq!(back.entries, big.entries);
        assert_eq!(back.extend_from_chunk(&[0; 25]), Err(25));
        assert_eq!(Snapshot::new(1).chunks().count(), 0);
    }

    #[test]
    fn delta_chunks_applied_to_the_previous_snapshot_give_the_new_one() {
        let q = query(&["id"], &[], FirstRun::Insert);
        let cols: Vec<String> = COLS.iter().map(|s| s.to_string()).collect();
        // Enough changes for two chunks: ids 0..n before; after, the first quarter gone,
        // the second changed, the rest unchanged, and as many new keys as gone ones.
        let n = CHUNK_ENTRIES as i64;
        // Ids 0..n, as a snapshot (the diff below consumes one, the deltas apply to another).
        let first_run = || {
            let mut d = Diff::new(&q, &cols, Some(Snapshot::new(3))).unwrap();
            for i in 0..n {
                d.push(r(i, "a", 1)).unwrap();
            }
            let mut s = Snapshot::new(3);
            for ch in d.finish().unwrap().inserted {
                s.insert(ch.key_hash, ch.row_hash);
            }
            s
        };
        let mut d = Diff::new(&q, &cols, Some(first_run())).unwrap();
        for i in n / 4..n {
            d.push(r(i, if i < n / 2 { "b" } else { "a" }, 1)).unwrap();
        }
        for i in n..n + n / 4 {
            d.push(r(i, "new", 1)).unwrap();
        }
        let c = d.finish().unwrap();
        assert_eq!(counts(&c), (n as usize / 4, n as usize / 4, n as usize / 4));
        assert_eq!(c.changed_keys(), 3 * n as usize / 4);

        // The previous snapshot with the deltas applied.
        let mut previous = first_run();
        let stored: Vec<Vec<u8>> = previous.chunks().collect();
        let deltas: Vec<(Vec<u8>, i64)> = c.delta_chunks().collect();
        assert_eq!(deltas.len(), 1, "{} entries fit in one chunk", 3 * n / 4);
        let before = previous.len() as i64;
        let mut added = 0;
        for (chunk, net) in &deltas {
            previous.add_delta_chunk(chunk).unwrap();
            added += net;
        }
        previous.finish_load();
        assert_eq!(added, 0, "as many keys came as went");
        assert_eq!(previous.len() as i64, before + added);
        assert_eq!(previous.entries, c.snapshot.entries);
        assert_eq!(previous.add_delta_chunk(&[0; 23]), Err(23));

        // As the stores load: the deltas first, then the chunks merged with them.
        let mut loaded = Snapshot::with_capacity(3, c.snapshot.len());
        for (chunk, _) in &deltas {
            loaded.add_delta_chunk(chunk).unwrap();
        }
        for chunk in &stored {
            loaded.extend_from_chunk(chunk).unwrap();
        }
        loaded.finish_load();
        assert_eq!(loaded.entries, c.snapshot.entries);
        assert!(loaded.pending.is_empty());

        // More changes than a chunk holds are split, each chunk counting its own keys.
        let mut many = Changes::default();
        for i in 0..(CHUNK_ENTRIES as u128 + 3) {
            many.inserted.push(Changed {
                key_hash: xxh3_128(&i.to_le_bytes()),
                row_hash: 7,
                finding: None,
            });
        }
        many.deleted.push(1);
        let chunks: Vec<(Vec<u8>, i64)> = many.delta_chunks().collect();
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].1, CHUNK_ENTRIES as i64);
        assert_eq!((chunks[1].0.len(), chunks[1].1), (4 * ENTRY_BYTES, 3 - 1));
        let mut s = Snapshot::new(1);
        s.insert(1, 9);
        for (chunk, _) in &chunks {
            s.add_delta_chunk(chunk).unwrap();
        }
        s.finish_load();
        assert_eq!(s.len(), CHUNK_ENTRIES + 3);
        assert!(!s.contains(1), "a gone key is removed");
    }

    #[test]
    fn an_unchanged_rerun_says_so() {
        let q = query(&["id"], &["age"], FirstRun::Insert);
        let c = run(&q, Some(&[r(1, "a", 1)]), &[r(1, "a", 9)]).unwrap();
        assert!(c.is_unchanged());
        let first = run(&q, None, &[]).unwrap();
        assert!(
            !first.is_unchanged(),
            "a first run always stores its snapshot"
        );
    }

    #[test]
    fn key_hasher_uses_the_low_bits() {
        let mut h = KeyHasher::default();
        h.write_u128(0xdead_beef_0000_0000_0000_0000_1234_5678);
        assert_eq!(h.finish(), 0x0000_0000_1234_5678);
    }
}
