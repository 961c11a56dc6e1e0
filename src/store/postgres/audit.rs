//! PostgreSQL's audit trail writes: [`append_in`] for the events of one change, and
//! [`FindingAudit`] for the many finding events of a run's commit, chained on a blocking
//! thread while the server writes findings.

use std::sync::Arc;

use chrono::Utc;
use deadpool_postgres::Transaction;
use tokio::task::JoinHandle;
use tokio_postgres::types::{ToSql, Type};

use super::copy::{CopyWriter, ROWS_PER_COPY};
use crate::audit::{Chain, Event, Kind, Link};
use crate::store::{FindingEvent, StoreError, chain_findings, chaining_stopped};

/// The trail's head, locked until the transaction ends, and a chain from it stamping entries now.
async fn chain_from_head(tx: &Transaction<'_>) -> Result<Chain, StoreError> {
    let head = tx
        .query_one(
            "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE",
            &[],
        )
        .await?;
    Ok(Chain::new(head.get(0), head.get(1), Utc::now()))
}

/// Writes `links` (chained at `at`) to the trail with one binary `COPY`.
///
/// `COPY` loads rows without the `unnest` path's materialization of each batch's arrays;
/// with new findings copied too ([`crate::store::postgres`]), a 900,000-finding first run's
/// commit took about four fifths of its time through `INSERT … SELECT FROM unnest(…)`
/// (BENCHMARKS.md).
async fn insert(tx: &Transaction<'_>, at: &str, links: &[Link<'_>]) -> Result<(), StoreError> {
    if links.is_empty() {
        return Ok(());
    }
    let mut writer = CopyWriter::start(
        tx,
        "COPY audit (seq, at, kind, actor, channel, finding_id, approval_id, action_id, data, hash)
         FROM STDIN (FORMAT binary)",
        &[
            Type::INT8,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::INT8,
            Type::INT8,
            Type::INT8,
            Type::TEXT,
            Type::BYTEA,
        ],
    )
    .await?;
    for l in links {
        let row: [&(dyn ToSql + Sync); 10] = [
            &l.seq,
            &at,
            &l.kind,
            &&*l.actor,
            &&*l.channel,
            &l.finding_id,
            &l.approval_id,
            &l.action_id,
            &l.data,
            &&l.digest[..],
        ];
        writer.write(&row).await?;
    }
    writer.finish().await?;
    Ok(())
}

/// Records `chain`'s last entry as the trail's head.
async fn set_head(tx: &Transaction<'_>, chain: &Chain) -> Result<(), StoreError> {
    let (seq, hash) = chain.head();
    tx.execute(
        "UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1",
        &[&seq, &hash],
    )
    .await?;
    Ok(())
}

/// Appends `events` to the chain inside `tx`, holding the head row's lock until commit; returns their `seq`s.
pub(super) async fn append_in(
    tx: &Transaction<'_>,
    events: &[Event],
) -> Result<Vec<i64>, StoreError> {
    crate::store::ops::audit::append(&mut super::tx::PgTx(tx), events).await
}

/// A batch being chained on a blocking thread, which hands the chain back with its entries.
type Chaining = JoinHandle<(Chain, Vec<Link<'static>>)>;

/// The finding events of one run's commit, written to the audit trail in batches of
/// [`ROWS_PER_COPY`].
///
/// Building, masking and hashing the entries of a 900,000-finding first run costs seconds
/// of CPU, which chained in line would leave the server idle. So each full batch is chained
/// on a blocking thread while this task writes the batch chained before it and the next
/// batch's findings: the server's work and the chaining overlap. Entries are written in the
/// order pushed, with the `seq`s and hashes chaining them in line would give, and every one
/// is stamped with the time the first was chained (one transaction, one time). The trail's
/// head row is locked from the first write to the end of the transaction, and a commit with
/// no events never locks it; nothing else may append to the trail in `tx` until
/// [`FindingAudit::finish`].
pub(super) struct FindingAudit {
    query: Arc<str>,
    batch: Vec<FindingEvent<String>>,
    /// The chain while no batch is being chained (then the blocking thread holds it); none
    /// until the first write.
    chain: Option<Chain>,
    /// The time of every entry, once the chain has started.
    at: String,
    chaining: Option<Chaining>,
}

impl FindingAudit {
    /// Finding events of `query`.
    pub(super) fn new(query: &str) -> Self {
        FindingAudit {
            query: query.into(),
            batch: Vec::new(),
            chain: None,
            at: String::new(),
            chaining: None,
        }
    }

    /// Adds the event `kind` of finding `id` with key `key` (JSON).
    pub(super) fn push(&mut self, kind: Kind, id: i64, key: impl Into<String>) {
        self.batch.push((kind, id, key.into()));
    }

    /// Once a batch is full: hands it to a blocking thread and writes the batch chained before it.
    pub(super) async fn flush(&mut self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        if self.batch.len() < ROWS_PER_COPY {
            return Ok(());
        }
        let chained = self.take_chained().await?;
        let chain = self.take_chain(tx).await?;
        let (query, batch) = (self.query.clone(), std::mem::take(&mut self.batch));
        self.chaining = Some(tokio::task::spawn_blocking(move || {
            chain_findings(chain, &query, batch)
        }));
        if let Some(links) = chained {
            insert(tx, &self.at, &links).await?;
        }
        Ok(())
    }

    /// Writes every event pushed and records the trail's new head.
    pub(super) async fn finish(mut self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        if let Some(links) = self.take_chained().await? {
            insert(tx, &self.at, &links).await?;
        }
        if self.chain.is_none() && self.batch.is_empty() {
            return Ok(());
        }
        let chain = self.take_chain(tx).await?;
        let (chain, links) = chain_findings(chain, &self.query, std::mem::take(&mut self.batch));
        insert(tx, &self.at, &links).await?;
        set_head(tx, &chain).await
    }

    /// The chain: from the trail's head, locking it, the first time.
    async fn take_chain(&mut self, tx: &Transaction<'_>) -> Result<Chain, StoreError> {
        if let Some(chain) = self.chain.take() {
            return Ok(chain);
        }
        let chain = chain_from_head(tx).await?;
        self.at = chain.at().to_string();
        Ok(chain)
    }

    /// The entries of the batch being chained, once chained (the chain is back in `self.chain`).
    async fn take_chained(&mut self) -> Result<Option<Vec<Link<'static>>>, StoreError> {
        let Some(chaining) = self.chaining.take() else {
            return Ok(None);
        };
        let (chain, links) = chaining
            .await
            .map_err(|e| chaining_stopped(&e.to_string()))?;
        self.chain = Some(chain);
        Ok(Some(links))
    }
}
