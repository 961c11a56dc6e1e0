-- An entry's hash is kept as its 32 bytes instead of 64 hex characters, and its prev_hash
-- is no longer kept: it is the hash of the entry before it (the genesis hash before the
-- first), read back from that entry. The two hex columns were 128 of an entry's 273 bytes,
-- and every byte of a 900,000-entry first run is written twice (the WAL, then the
-- database). Verification loses nothing: a stored hash was computed over the prev_hash it
-- followed, so an edited or reordered entry fails its hash check as before. Two kinds of
-- tampering only the dropped column or the hex text could show are kept as evidence: an
-- entry whose prev_hash is not its predecessor's hash, and a hash that is not 64
-- lowercase hex characters, get 32 zero bytes as their hash, which fail that check at the
-- same seq (instead of failing the upgrade). SQLite cannot change a column's type in
-- place, so the table is rebuilt.
CREATE TABLE audit_rebuilt (
  seq         INTEGER PRIMARY KEY CHECK (seq > 0),
  at          TEXT NOT NULL,
  kind        TEXT NOT NULL,
  actor       TEXT NOT NULL,
  channel     TEXT NOT NULL,
  finding_id  INTEGER,
  approval_id INTEGER,
  action_id   INTEGER,
  data        TEXT NOT NULL,
  hash        BLOB NOT NULL CHECK (length(hash) = 32)
);

INSERT INTO audit_rebuilt
       (seq, at, kind, actor, channel, finding_id, approval_id, action_id, data, hash)
SELECT seq, at, kind, actor, channel, finding_id, approval_id, action_id, data,
       CASE WHEN length(hash) = 64 AND hash NOT GLOB '*[^0-9a-f]*'
                 AND prev_hash = coalesce(lag(hash) OVER (ORDER BY seq),
                                          '0000000000000000000000000000000000000000000000000000000000000000')
            THEN unhex(hash)
            ELSE zeroblob(32) END
  FROM audit ORDER BY seq;

DROP TABLE audit;
ALTER TABLE audit_rebuilt RENAME TO audit;
CREATE INDEX audit_by_approval ON audit (approval_id) WHERE approval_id IS NOT NULL;
