-- Ticks claimed by `vigilo run` and the process's heartbeat row. SQLite is for one
-- process, but `vigilo run` goes through the same claims as on PostgreSQL (see
-- migrations/postgres/0014_fleet.sql for the meaning of each column).
CREATE TABLE ticks (
  query         TEXT NOT NULL,
  tick          TEXT NOT NULL,
  state         TEXT NOT NULL CHECK (state IN ('running', 'done', 'abandoned')),
  claimed_by    TEXT,
  claim_expires TEXT,
  attempts      INTEGER NOT NULL DEFAULT 1,
  claimed_at    TEXT NOT NULL,
  finished_at   TEXT,
  run_id        INTEGER,
  PRIMARY KEY (query, tick),
  CHECK ((state = 'running') = (finished_at IS NULL))
) WITHOUT ROWID;
CREATE INDEX ticks_running ON ticks (claim_expires) WHERE state = 'running';
CREATE INDEX ticks_finished ON ticks (finished_at) WHERE state <> 'running';

ALTER TABLE runs ADD COLUMN tick TEXT;
ALTER TABLE runs ADD COLUMN ran_by TEXT;

CREATE TABLE processes (
  id           TEXT PRIMARY KEY,
  host         TEXT NOT NULL,
  pid          INTEGER NOT NULL,
  version      TEXT NOT NULL,
  listen       TEXT,
  started_at   TEXT NOT NULL,
  heartbeat_at TEXT NOT NULL
);
