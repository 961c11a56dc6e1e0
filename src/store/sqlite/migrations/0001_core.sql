-- Core: per-query snapshots, findings with their lifecycle, query runs.
CREATE TABLE query_state (
  id              INTEGER PRIMARY KEY,
  name            TEXT NOT NULL UNIQUE,
  -- bumped by every successful run; a commit is guarded by the value it read
  generation      INTEGER NOT NULL CHECK (generation > 0),
  -- when the latest successful run observed its rows
  last_success_at TEXT NOT NULL
);

-- key hash (xxh3-128 of the key's canonical JSON) -> row hash, per query
CREATE TABLE snapshot (
  query_id INTEGER NOT NULL REFERENCES query_state(id) ON DELETE CASCADE,
  key_hash BLOB NOT NULL CHECK (length(key_hash) = 16),
  row_hash INTEGER NOT NULL,
  PRIMARY KEY (query_id, key_hash)
) WITHOUT ROWID;

CREATE TABLE findings (
  id          INTEGER PRIMARY KEY,
  query       TEXT NOT NULL,
  key_hash    BLOB NOT NULL CHECK (length(key_hash) = 16),
  key_json    TEXT NOT NULL,
  status      TEXT NOT NULL CHECK (status IN ('open', 'resolved')),
  severity    TEXT NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
  row_json    TEXT NOT NULL,
  row_hash    INTEGER NOT NULL,
  first_seen  TEXT NOT NULL,
  last_seen   TEXT NOT NULL,
  resolved_at TEXT,
  reopened    INTEGER NOT NULL DEFAULT 0,
  UNIQUE (query, key_hash),
  CHECK ((status = 'resolved') = (resolved_at IS NOT NULL))
);
CREATE INDEX findings_by_status ON findings (status, query);

CREATE TABLE runs (
  id          INTEGER PRIMARY KEY,
  query       TEXT NOT NULL,
  started_at  TEXT NOT NULL,
  finished_at TEXT NOT NULL,
  status      TEXT NOT NULL CHECK (status IN ('succeeded', 'failed')),
  rows        INTEGER NOT NULL,
  inserted    INTEGER NOT NULL,
  updated     INTEGER NOT NULL,
  deleted     INTEGER NOT NULL,
  baseline    INTEGER NOT NULL CHECK (baseline IN (0, 1)),
  error       TEXT,
  CHECK ((status = 'failed') = (error IS NOT NULL))
);
CREATE INDEX runs_by_query ON runs (query, id);
