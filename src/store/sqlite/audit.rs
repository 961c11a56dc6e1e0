//! SQLite's audit trail writes: [`append_in`] for the events of one change, and
//! [`FindingAudit`] for the many finding events of a run's commit, chained on a second
//! thread while the commit goes on writing findings.

use std::borrow::Cow;
use std::thread::{Scope, ScopedJoinHandle};

use chrono::Utc;
use rusqlite::{Transaction, params};

use crate::audit::{Chain, Event, Kind, Link};
use crate::store::{FindingEvent, StoreError, chain_findings, chaining_stopped};

/// Audit events the commit keeps in memory before appending them (PostgreSQL's go
/// `postgres::copy::ROWS_PER_COPY` at a time).
const EVENT_BATCH: usize = 5_000;

const INSERT: &str = "INSERT INTO audit (seq, at, kind, actor, channel, finding_id, approval_id, action_id, data, hash)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";

/// The chain's head as `audit_head` records it, and a chain from it stamping entries now.
fn chain_from_head(tx: &Transaction<'_>) -> Result<Chain, StoreError> {
    Ok(
        tx.query_row("SELECT seq, hash FROM audit_head WHERE id = 1", [], |r| {
            Ok(Chain::new(r.get(0)?, r.get(1)?, Utc::now()))
        })?,
    )
}

/// Writes `links` (chained at `at`) to the trail.
///
/// The time, and a kind, actor or channel the entry before had too, stay bound from one
/// row to the next: SQLite copies every text bound to it, and binding was a fifth of a
/// first run's commit, whose 900,000 entries share all four.
fn insert(tx: &Transaction<'_>, at: &str, links: &[Link<'_>]) -> Result<(), StoreError> {
    let mut insert = tx.prepare_cached(INSERT)?;
    insert.raw_bind_parameter(2, at)?;
    let mut last: Option<&Link<'_>> = None;
    for link in links {
        if last.is_none_or(|l| l.kind != link.kind) {
            insert.raw_bind_parameter(3, link.kind)?;
        }
        if last.is_none_or(|l| l.actor != link.actor) {
            insert.raw_bind_parameter(4, &*link.actor)?;
        }
        if last.is_none_or(|l| l.channel != link.channel) {
            insert.raw_bind_parameter(5, &*link.channel)?;
        }
        insert.raw_bind_parameter(1, link.seq)?;
        insert.raw_bind_parameter(6, link.finding_id)?;
        insert.raw_bind_parameter(7, link.approval_id)?;
        insert.raw_bind_parameter(8, link.action_id)?;
        insert.raw_bind_parameter(9, &link.data)?;
        insert.raw_bind_parameter(10, &link.digest[..])?;
        insert.raw_execute()?;
        last = Some(link);
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
    super::tx::done(crate::store::ops::audit::append(
        &mut super::tx::LiteTx::new(tx),
        events,
    ))
}

/// A batch being chained on a scoped thread, which hands the chain back with its entries.
type Chaining<'scope> = ScopedJoinHandle<'scope, (Chain, Vec<Link<'static>>)>;

/// The finding events of one run's commit, written to the audit trail in batches of
/// [`EVENT_BATCH`].
///
/// Building, masking and hashing an entry costs about as much CPU as SQLite's insert of it
/// (a sixth of a 900,000-finding first run's commit), so each full batch is chained on a
/// second thread while this one writes the batch chained before it and the next batch's
/// findings. Entries are written in the order pushed, with the `seq`s and hashes chaining
/// them in line would give; a commit with fewer events chains them itself. Every entry is
/// stamped with the time the first was chained (one transaction, one time). Nothing else
/// may append to the trail in `tx` until [`FindingAudit::finish`].
pub(super) struct FindingAudit<'scope, 'env, 'a> {
    scope: &'scope Scope<'scope, 'env>,
    query: &'a str,
    batch: Vec<FindingEvent<Cow<'a, str>>>,
    /// The chain while no batch is being chained (then the thread holds it); none until
    /// the first write.
    chain: Option<Chain>,
    /// The time of every entry, once the chain has started.
    at: String,
    chaining: Option<Chaining<'scope>>,
}

impl<'scope, 'env, 'a> FindingAudit<'scope, 'env, 'a>
where
    'a: 'scope,
{
    /// Finding events of `query`; a thread, once needed, runs in `scope`.
    pub(super) fn new(scope: &'scope Scope<'scope, 'env>, query: &'a str) -> Self {
        FindingAudit {
            scope,
            query,
            batch: Vec::new(),
            chain: None,
            at: String::new(),
            chaining: None,
        }
    }

    /// Adds the event `kind` of finding `id` with key `key` (JSON).
    pub(super) fn push(&mut self, kind: Kind, id: i64, key: impl Into<Cow<'a, str>>) {
        self.batch.push((kind, id, key.into()));
    }

    /// Once a batch is full: hands it to a thread and writes the batch chained before it.
    pub(super) fn flush(&mut self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        if self.batch.len() < EVENT_BATCH {
            return Ok(());
        }
        let chained = self.take_chained()?;
        let chain = self.take_chain(tx)?;
        let (query, batch) = (self.query, std::mem::take(&mut self.batch));
        self.chaining = Some(
            self.scope
                .spawn(move || chain_findings(chain, query, batch)),
        );
        if let Some(links) = chained {
            insert(tx, &self.at, &links)?;
        }
        Ok(())
    }

    /// Writes every event pushed and records the trail's new head.
    pub(super) fn finish(mut self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        if let Some(links) = self.take_chained()? {
            insert(tx, &self.at, &links)?;
        }
        if self.chain.is_none() && self.batch.is_empty() {
            return Ok(());
        }
        let chain = self.take_chain(tx)?;
        let (chain, links) = chain_findings(chain, self.query, std::mem::take(&mut self.batch));
        insert(tx, &self.at, &links)?;
        set_head(tx, &chain)
    }

    /// The chain: from the trail's head the first time.
    fn take_chain(&mut self, tx: &Transaction<'_>) -> Result<Chain, StoreError> {
        if let Some(chain) = self.chain.take() {
            return Ok(chain);
        }
        let chain = chain_from_head(tx)?;
        self.at = chain.at().to_string();
        Ok(chain)
    }

    /// The entries of the batch being chained, once chained (the chain is back in
    /// `self.chain`). A thread that panicked is joined here, so its panic is an error.
    fn take_chained(&mut self) -> Result<Option<Vec<Link<'static>>>, StoreError> {
        let Some(chaining) = self.chaining.take() else {
            return Ok(None);
        };
        let (chain, links) = chaining
            .join()
            .map_err(|_| chaining_stopped("it panicked"))?;
        self.chain = Some(chain);
        Ok(Some(links))
    }
}
