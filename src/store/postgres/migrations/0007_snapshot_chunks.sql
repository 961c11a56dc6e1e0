-- Snapshots stored compactly: a query's key hash -> row hash entries in chunks of up to
-- 32,768 entries (24 bytes each: the 16-byte key hash, then the row hash as 8 bytes,
-- big-endian), written and read a chunk at a time instead of a row per key.
CREATE TABLE snapshot_chunks (
  query_id bigint NOT NULL REFERENCES query_state(id) ON DELETE CASCADE,
  seq      integer NOT NULL,
  entries  bytea NOT NULL CHECK (length(entries) % 24 = 0),
  PRIMARY KEY (query_id, seq)
);
-- Chunks are written whole and never updated; no need to compress random hashes.
ALTER TABLE snapshot_chunks ALTER COLUMN entries SET STORAGE EXTERNAL;

INSERT INTO snapshot_chunks (query_id, seq, entries)
SELECT query_id, (n / 32768)::integer, string_agg(key_hash || int8send(row_hash), ''::bytea ORDER BY key_hash)
  FROM (SELECT query_id, key_hash, row_hash,
               row_number() OVER (PARTITION BY query_id ORDER BY key_hash) - 1 AS n
          FROM snapshot) s
 GROUP BY query_id, n / 32768;

DROP TABLE snapshot;
