//! SQLite's audit trail writes: [`append_in`] for the events of one change, and
//! [`FindingAudit`] for the many finding events of a run's commit, chained on a second
//! thread while the commit goes on writing findings.

use std::borrow::Cow;
use std::sync::mpsc;
use std::thread::{Scope, ScopedJoinHandle};

use chrono::Utc;
use rusqlite::{Transaction, params};

use super::{EVENT_BATCH, StoreError, key_value};
use crate::audit::{Chain, Event, Kind, Link};

const INSERT: &str = "INSERT INTO audit (seq, at, kind, actor, channel, finding_id, approval_id, action_id, data, prev_hash, hash)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";

/// The chain's head as `audit_head` records it, and a chain from it stamping entries now.
fn chain_from_head(tx: &Transaction<'_>) -> Result<Chain, StoreError> {
    Ok(
        tx.query_row("SELECT seq, hash FROM audit_head WHERE id = 1", [], |r| {
            Ok(Chain::new(r.get(0)?, r.get(1)?, Utc::now()))
        })?,
    )
}

/// Writes `links` (chained at `at`) to the trail.
fn insert(tx: &Transaction<'_>, at: &str, links: &[Link<'_>]) -> Result<(), StoreError> {
    let mut insert = tx.prepare_cached(INSERT)?;
    for link in links {
        insert.execute(params![
            link.seq,
            at,
            link.kind,
            link.actor,
            link.channel,
            link.finding_id,
            link.approval_id,
            link.action_id,
            link.data,
            link.prev_hash,
            link.hash
        ])?;
    }
    Ok(())
}

/// Records `chain`'s last entry as the trail's head.
fn set_head(tx: &Transaction<'_>, chain: &Chain) -> Result<(), StoreError> {
    let (seq, hash) = chain.head();
    tx.execute(
        "UPDATE audit_head SET seq = ?1, hash = ?2 WHERE id = 1",
        params![seq, hash],
    )?;
    Ok(())
}

/// Appends `events` to the chain inside `tx` (which holds SQLite's write lock); returns their `seq`s.
pub(super) fn append_in(tx: &Transaction<'_>, events: &[Event]) -> Result<Vec<i64>, StoreError> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let mut chain = chain_from_head(tx)?;
    let links: Vec<Link<'_>> = events.iter().map(|e| chain.next(e)).collect();
    insert(tx, chain.at(), &links)?;
    set_head(tx, &chain)?;
    Ok(links.iter().map(|l| l.seq).collect())
}

/// One finding event of a commit: (kind, finding id, key JSON).
type FindingEvent<'a> = (Kind, i64, Cow<'a, str>);

/// The chaining thread: its batches in, their entries out, and the chain when it is done.
struct Chainer<'scope, 'a> {
    batches: mpsc::SyncSender<Vec<FindingEvent<'a>>>,
    chained: mpsc::Receiver<Vec<Link<'static>>>,
    thread: ScopedJoinHandle<'scope, Chain>,
    /// Batches sent and not yet received back: at most one between calls.
    in_flight: bool,
}

/// The finding events of one run's commit, written to the audit trail in batches of
/// [`EVENT_BATCH`].
///
/// Building, masking and hashing an entry costs about as much CPU as SQLite's insert of it
/// (a sixth of a 900,000-finding first run's commit), so once a commit has a full batch, a
/// second thread chains each batch while this one writes the next batch's findings and then
/// the entries chained. Entries are written in the order pushed, with the `seq`s and hashes
/// chaining them alone would give; a commit with fewer events chains them itself. Every
/// entry is stamped with the time the commit began (one transaction, one time). Nothing
/// else may append to the trail in `tx` between [`FindingAudit::new`] and
/// [`FindingAudit::finish`].
pub(super) struct FindingAudit<'scope, 'env, 'a> {
    scope: &'scope Scope<'scope, 'env>,
    query: &'a str,
    at: String,
    batch: Vec<FindingEvent<'a>>,
    /// The chain until the thread starts (then the thread holds it).
    chain: Option<Chain>,
    chainer: Option<Chainer<'scope, 'a>>,
}

impl<'scope, 'env, 'a> FindingAudit<'scope, 'env, 'a>
where
    'a: 'scope,
{
    /// Finding events of `query`, chained from the trail's head in `tx`; a thread, once
    /// needed, runs in `scope`.
    pub(super) fn new(
        scope: &'scope Scope<'scope, 'env>,
        tx: &Transaction<'_>,
        query: &'a str,
    ) -> Result<Self, StoreError> {
        let chain = chain_from_head(tx)?;
        Ok(FindingAudit {
            scope,
            query,
            at: chain.at().to_string(),
            batch: Vec::new(),
            chain: Some(chain),
            chainer: None,
        })
    }

    /// Adds the event `kind` of finding `id` with key `key` (JSON).
    pub(super) fn push(&mut self, kind: Kind, id: i64, key: impl Into<Cow<'a, str>>) {
        self.batch.push((kind, id, key.into()));
    }

    /// Writes what has been chained once a batch is full, and hands the batch on.
    pub(super) fn flush(&mut self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        if self.batch.len() < EVENT_BATCH {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        let chainer = match self.chainer.take() {
            Some(c) => c,
            None => self.start()?,
        };
        let chainer = self.chainer.insert(chainer);
        let received = if chainer.in_flight {
            chainer.chained.recv().ok()
        } else {
            None
        };
        if chainer.in_flight && received.is_none() || chainer.batches.send(batch).is_err() {
            // The thread is gone: joined here, so its panic is an error, not a second panic.
            return Err(self.chainer.take().map_or_else(stopped, Chainer::stopped));
        }
        chainer.in_flight = true;
        if let Some(links) = received {
            insert(tx, &self.at, &links)?;
        }
        Ok(())
    }

    /// Writes every event pushed and records the trail's new head.
    pub(super) fn finish(mut self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        let batch = std::mem::take(&mut self.batch);
        let chain = match self.chainer.take() {
            None => {
                let Some(mut chain) = self.chain.take() else {
                    return Err(stopped());
                };
                if batch.is_empty() {
                    return Ok(());
                }
                let events: Vec<Event> = (batch.into_iter())
                    .map(|e| finding_event(self.query, e))
                    .collect();
                let links: Vec<Link<'_>> = events.iter().map(|e| chain.next(e)).collect();
                insert(tx, &self.at, &links)?;
                chain
            }
            Some(chainer) => chainer.finish(batch, |links| insert(tx, &self.at, links))?,
        };
        set_head(tx, &chain)
    }

    /// Starts the chaining thread with the chain.
    fn start(&mut self) -> Result<Chainer<'scope, 'a>, StoreError> {
        let mut chain = self.chain.take().ok_or_else(stopped)?;
        let (batches, to_chain) = mpsc::sync_channel::<Vec<FindingEvent<'a>>>(1);
        let (done, chained) = mpsc::sync_channel(1);
        let query = self.query;
        let thread = self.scope.spawn(move || {
            for batch in to_chain {
                let links: Vec<Link<'static>> = batch
                    .into_iter()
                    .map(|e| chain.next(&finding_event(query, e)).into_owned())
                    .collect();
                if done.send(links).is_err() {
                    break;
                }
            }
            chain
        });
        Ok(Chainer {
            batches,
            chained,
            thread,
            in_flight: false,
        })
    }
}

/// The audit event of one finding event of `query`.
fn finding_event(query: &str, (kind, id, key): FindingEvent<'_>) -> Event {
    Event::finding(kind, "scan", query, id, key_value(&key))
}

impl<'a> Chainer<'_, 'a> {
    /// Hands the thread its `last` batch, `write`s every batch chained and not yet written,
    /// in order, and returns the chain once the thread is done. A thread that stopped early
    /// is joined here, so its panic is an error, not a second panic.
    fn finish(
        self,
        last: Vec<FindingEvent<'a>>,
        mut write: impl FnMut(&[Link<'_>]) -> Result<(), StoreError>,
    ) -> Result<Chain, StoreError> {
        let Chainer {
            batches,
            chained,
            thread,
            in_flight,
        } = self;
        let mut pending = usize::from(in_flight);
        let mut gone = false;
        if !last.is_empty() {
            gone = batches.send(last).is_err();
            pending += 1;
        }
        drop(batches);
        for _ in 0..pending {
            let Ok(links) = chained.recv() else {
                gone = true;
                break;
            };
            write(&links)?;
        }
        let chain = thread.join().map_err(|_| stopped())?;
        if gone {
            return Err(stopped());
        }
        Ok(chain)
    }

    /// Waits for the thread, which stopped early, so its panic ends here.
    fn stopped(self) -> StoreError {
        drop((self.batches, self.chained));
        let _ = self.thread.join();
        stopped()
    }
}

fn stopped() -> StoreError {
    StoreError::Database(
        "the audit chaining thread stopped; nothing of this run was committed".into(),
    )
}
