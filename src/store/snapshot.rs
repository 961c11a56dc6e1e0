//! Snapshot algorithms shared by both stores: reading chunks and deltas, choosing how to
//! write a run's snapshot, the order new findings are inserted in, and dropping a large run aside.

use super::{RunCommit, StoreError};
use crate::diff::{Changed, Changes, KeyHash, Snapshot};

/// Reads a stored snapshot: its deltas (`true`), then its chunks, each in order, as (seq,
/// entries); see [`Snapshot::add_delta_chunk`]. Two queries, not one `UNION ALL … ORDER BY`,
/// which SQLite would sort in memory first.
pub(crate) const SNAPSHOT_ENTRIES: [(bool, &str); 2] = [
    (
        true,
        "SELECT seq, entries FROM snapshot_deltas WHERE query_id = $1 ORDER BY seq",
    ),
    (
        false,
        "SELECT seq, entries FROM snapshot_chunks WHERE query_id = $1 ORDER BY seq",
    ),
];

/// Adds one row of a [`SNAPSHOT_ENTRIES`] query to `snapshot`: a delta, or a chunk merged with them.
pub(crate) fn load_entries(
    snapshot: &mut Snapshot,
    query: &str,
    (delta, seq, entries): (bool, i64, &[u8]),
) -> Result<(), StoreError> {
    let loaded = if delta {
        snapshot.add_delta_chunk(entries)
    } else {
        snapshot.extend_from_chunk(entries)
    };
    loaded.map_err(|len| {
        StoreError::Corrupt(format!(
            "query {query}: snapshot {} {seq} has {len} bytes, not a multiple of {}",
            if delta { "delta" } else { "chunk" },
            crate::diff::ENTRY_BYTES
        ))
    })
}

/// How a run's snapshot is stored.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SnapshotWrite {
    /// Nothing changed: the stored snapshot stands.
    Keep,
    /// Every chunk rewritten and the deltas dropped: a first run, or deltas grown too large.
    Whole,
    /// The run's changes appended as deltas ([`Changes::delta_chunks`]).
    Delta,
}

/// Stored deltas may hold up to 1/`DELTA_SHARE` of the snapshot's chunk entries: loading
/// costs at most that much more, and a rewrite is paid for by the runs it was put off for.
const DELTA_SHARE: u64 = 4;

/// How to store `changes`, given the entries in the stored chunks and deltas.
pub(crate) fn snapshot_write(
    changes: &Changes,
    chunk_entries: u64,
    delta_entries: u64,
) -> SnapshotWrite {
    if changes.is_unchanged() {
        SnapshotWrite::Keep
    } else if changes.base_generation.is_none()
        || (delta_entries + changes.changed_keys() as u64) * DELTA_SHARE > chunk_entries
    {
        SnapshotWrite::Whole
    } else {
        SnapshotWrite::Delta
    }
}

/// From how many new keys on, a run's new findings are inserted in key-hash order.
pub(crate) const KEY_ORDER_FROM: usize = 10_000;

/// A run's new keys that carry their row (all but a baseline run's), in the order their
/// findings are inserted and numbered: the query's row order, or key-hash order for a run
/// with at least [`KEY_ORDER_FROM`] of them.
///
/// In key-hash order the `UNIQUE (query, key_hash)` index grows at one end instead of at a
/// random leaf per insert, while each table page is still written once: a first run of
/// 900,000 findings spends seconds less in PostgreSQL (BENCHMARKS.md). A run that small
/// keeps its order, which is what people read: notifications and approvals follow the query.
pub(crate) fn new_in_insert_order(changes: &Changes) -> Vec<&Changed> {
    // Each key beside its pointer: sorting through the pointers would read 900,000
    // scattered rows about twenty times each.
    let mut keyed: Vec<(KeyHash, &Changed)> = (changes.inserted.iter())
        .filter(|ch| ch.finding.is_some())
        .map(|ch| (ch.key_hash, ch))
        .collect();
    if keyed.len() >= KEY_ORDER_FROM {
        keyed.sort_unstable_by_key(|&(key, _)| key);
    }
    keyed.into_iter().map(|(_, ch)| ch).collect()
}

/// How many rows ahead of a commit's loop [`prefetch`] asks for a finding's text.
const PREFETCH_AHEAD: usize = 8;

/// Asks the CPU for what a commit's loop over `new` (in key-hash order, so scattered in
/// memory) reads `PREFETCH_AHEAD` rows from `i`: that finding's text, and the `Changed`
/// twice as far ahead, whose pointer to its text the next calls read. Without it, each
/// new finding of a first run waits for two cache misses on the one thread that writes.
pub(crate) fn prefetch(new: &[&Changed], i: usize) {
    if let Some(ch) = new.get(i + 2 * PREFETCH_AHEAD) {
        crate::diff::prefetch(*ch);
    }
    if let Some(f) = new
        .get(i + PREFETCH_AHEAD)
        .and_then(|ch| ch.finding.as_ref())
    {
        f.prefetch();
    }
}

/// From how many new and changed keys on, a committed run is dropped by [`drop_aside`].
const DROP_ASIDE_FROM: usize = 10_000;

/// Drops a committed run where its caller need not wait: freeing a large run's rows (two
/// strings for each of 900,000 new keys on a first run) takes a quarter of a second.
pub(crate) fn drop_aside(commit: RunCommit) {
    let c = &commit.changes;
    if c.inserted.len() + c.updated.len() < DROP_ASIDE_FROM {
        return;
    }
    // Should no thread start, the closure, and the run with it, is dropped here.
    let _ = std::thread::Builder::new()
        .name("vigilo-drop".into())
        .spawn(move || drop(commit));
}

/// The key and row of a changed key, as JSON text.
pub(crate) fn finding_json(ch: &Changed) -> Result<(&str, &str), StoreError> {
    let f = ch
        .finding
        .as_ref()
        .ok_or_else(|| StoreError::Corrupt("changed row without its data".into()))?;
    Ok((f.key(), f.row()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_are_written_until_they_would_outgrow_a_quarter_of_the_snapshot() {
        let mut c = Changes {
            base_generation: Some(3),
            ..Changes::default()
        };
        assert_eq!(snapshot_write(&c, 100, 0), SnapshotWrite::Keep);
        c.deleted = vec![1, 2, 3, 4, 5];
        assert_eq!(snapshot_write(&c, 100, 20), SnapshotWrite::Delta);
        assert_eq!(snapshot_write(&c, 100, 21), SnapshotWrite::Whole);
        assert_eq!(snapshot_write(&c, 0, 0), SnapshotWrite::Whole);
        c.base_generation = None;
        assert_eq!(snapshot_write(&c, 1_000_000, 0), SnapshotWrite::Whole);
        assert_eq!(
            snapshot_write(&Changes::default(), 0, 0),
            SnapshotWrite::Whole,
            "a first run stores its snapshot even with no rows"
        );
    }
}
