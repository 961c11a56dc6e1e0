-- `CHECK (severity IN ('low', 'medium', 'high', 'critical'))` made every finding insert
-- build and drop a temporary b-tree: SQLite evaluates an IN list of more than two values
-- through an ephemeral index, opened per row (about 4 µs, a third of an insert's cost on
-- a 900,000-finding first run). The same rule as comparisons needs none. SQLite cannot
-- change a CHECK in place, so the table is rebuilt (ids, rows and the key index as they
-- were); foreign keys are off while migrations run and checked after them.
CREATE TABLE findings_rebuilt (
  id          INTEGER PRIMARY KEY,
  query       TEXT NOT NULL,
  key_hash    BLOB NOT NULL CHECK (length(key_hash) = 16),
  key_json    TEXT NOT NULL,
  status      TEXT NOT NULL CHECK (status = 'open' OR status = 'resolved'),
  severity    TEXT NOT NULL
              CHECK (severity = 'low' OR severity = 'medium' OR severity = 'high' OR severity = 'critical'),
  row_json    TEXT NOT NULL,
  row_hash    INTEGER NOT NULL,
  first_seen  TEXT NOT NULL,
  last_seen   TEXT NOT NULL,
  resolved_at TEXT,
  reopened    INTEGER NOT NULL DEFAULT 0,
  UNIQUE (query, key_hash),
  CHECK ((status = 'resolved') = (resolved_at IS NOT NULL))
);

INSERT INTO findings_rebuilt
       (id, query, key_hash, key_json, status, severity, row_json, row_hash, first_seen,
        last_seen, resolved_at, reopened)
SELECT id, query, key_hash, key_json, status, severity, row_json, row_hash, first_seen,
       last_seen, resolved_at, reopened
  FROM findings ORDER BY id;

DROP TABLE findings;
ALTER TABLE findings_rebuilt RENAME TO findings;
