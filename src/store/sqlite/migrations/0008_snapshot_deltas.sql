-- A run that changed a few keys appends what it changed to its query's stored snapshot
-- instead of rewriting every chunk: entries as in snapshot_chunks, a gone key's row hash
-- with its top bit set, applied in seq order after the chunks. `added` is the chunk's net
-- change in the number of keys. Once the deltas would hold more than a quarter of the
-- entries in the chunks, a changed run rewrites the chunks and drops the deltas.
CREATE TABLE snapshot_deltas (
  query_id INTEGER NOT NULL REFERENCES query_state(id) ON DELETE CASCADE,
  seq      INTEGER NOT NULL,
  added    INTEGER NOT NULL,
  entries  BLOB NOT NULL CHECK (length(entries) % 24 = 0),
  PRIMARY KEY (query_id, seq)
) WITHOUT ROWID;
