//! The audit trail: appending the entries of one transition to the hash chain, and reading
//! it back page by page.

use chrono::Utc;

use crate::audit::{Chain, Entry, Event, Link, link_read};
use crate::store::seam::{Tx, args};
use crate::store::{StoreError, parse_json};

/// Appends `events` to the chain inside `tx`, which holds the trail's head until it ends
/// (PostgreSQL: `FOR UPDATE`; SQLite: its write lock); returns their `seq`s.
pub(crate) async fn append<T: Tx>(tx: &mut T, events: &[Event]) -> Result<Vec<i64>, StoreError> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let head = tx
        .query_one(
            &format!(
                "SELECT seq, hash FROM audit_head WHERE id = 1 {}",
                T::FOR_UPDATE
            ),
            &[],
        )
        .await?;
    let mut chain = Chain::new(head.get(0)?, head.get(1)?, Utc::now());
    let links: Vec<Link<'_>> = events.iter().map(|e| chain.next(e)).collect();
    for l in &links {
        tx.execute(
            "INSERT INTO audit (seq, at, kind, actor, channel, finding_id, approval_id, action_id, data, hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            &args![
                l.seq,
                chain.at(),
                l.kind,
                &*l.actor,
                &*l.channel,
                l.finding_id,
                l.approval_id,
                l.action_id,
                &l.data,
                l.digest.to_vec(),
            ],
        )
        .await?;
    }
    let (seq, hash) = chain.head();
    tx.execute(
        "UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1",
        &args![seq, hash],
    )
    .await?;
    Ok(links.iter().map(|l| l.seq).collect())
}

/// Audit entries with `seq > after`, in order, at most `limit`, each linked to the hash of
/// the entry before it.
pub(crate) async fn page<T: Tx>(
    tx: &mut T,
    after: i64,
    limit: usize,
) -> Result<Vec<Entry>, StoreError> {
    let rows = tx
        .query(
            "SELECT seq, at, kind, actor, channel, finding_id, approval_id, action_id, data, hash
             FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2",
            &args![after, limit],
        )
        .await?;
    let mut entries = rows
        .iter()
        .map(|r| {
            let data: String = r.get(8)?;
            Ok(Entry {
                seq: r.get(0)?,
                at: r.get(1)?,
                kind: r.get(2)?,
                actor: r.get(3)?,
                channel: r.get(4)?,
                finding_id: r.get(5)?,
                approval_id: r.get(6)?,
                action_id: r.get(7)?,
                data: parse_json("audit data", &data)?,
                prev_hash: String::new(),
                hash: hex::encode(r.get::<Vec<u8>>(9)?),
            })
        })
        .collect::<Result<Vec<Entry>, StoreError>>()?;
    let before: Option<Vec<u8>> = match entries.first() {
        Some(first) => match tx
            .query_opt(
                "SELECT hash FROM audit WHERE seq < $1 ORDER BY seq DESC LIMIT 1",
                &args![first.seq],
            )
            .await?
        {
            Some(r) => Some(r.get(0)?),
            None => None,
        },
        None => None,
    };
    link_read(&mut entries, before.as_deref());
    Ok(entries)
}

/// The chain's recorded head: last `seq` and its `hash`.
pub(crate) async fn head<T: Tx>(tx: &mut T) -> Result<(i64, String), StoreError> {
    let row = tx
        .query_one("SELECT seq, hash FROM audit_head WHERE id = 1", &[])
        .await?;
    Ok((row.get(0)?, row.get(1)?))
}
