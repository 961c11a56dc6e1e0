-- Core: per-query snapshots, findings with their lifecycle, query runs.
CREATE TABLE query_state (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name            text NOT NULL UNIQUE,
  -- bumped by every successful run; a commit is guarded by the value it read
  generation      bigint NOT NULL CHECK (generation > 0),
  -- when the latest successful run observed its rows
  last_success_at timestamptz NOT NULL
);

-- key hash (xxh3-128 of the key's canonical JSON) -> row hash, per query
CREATE TABLE snapshot (
  query_id bigint NOT NULL REFERENCES query_state(id) ON DELETE CASCADE,
  key_hash bytea NOT NULL CHECK (length(key_hash) = 16),
  row_hash bigint NOT NULL,
  PRIMARY KEY (query_id, key_hash)
);

CREATE TABLE findings (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  query       text NOT NULL,
  key_hash    bytea NOT NULL CHECK (length(key_hash) = 16),
  key_json    jsonb NOT NULL,
  status      text NOT NULL CHECK (status IN ('open', 'resolved')),
  severity    text NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
  row_json    jsonb NOT NULL,
  row_hash    bigint NOT NULL,
  first_seen  timestamptz NOT NULL,
  last_seen   timestamptz NOT NULL,
  resolved_at timestamptz,
  reopened    bigint NOT NULL DEFAULT 0,
  UNIQUE (query, key_hash),
  CHECK ((status = 'resolved') = (resolved_at IS NOT NULL))
);
CREATE INDEX findings_by_status ON findings (status, query);

CREATE TABLE runs (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  query       text NOT NULL,
  started_at  timestamptz NOT NULL,
  finished_at timestamptz NOT NULL,
  status      text NOT NULL CHECK (status IN ('succeeded', 'failed')),
  rows        bigint NOT NULL,
  inserted    bigint NOT NULL,
  updated     bigint NOT NULL,
  deleted     bigint NOT NULL,
  baseline    boolean NOT NULL,
  error       text,
  CHECK ((status = 'failed') = (error IS NOT NULL))
);
CREATE INDEX runs_by_query ON runs (query, id);
