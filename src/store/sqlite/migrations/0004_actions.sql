-- Actions of decided remediation runs. An action is marked started (with an
-- idempotency key) in its own committed transaction before vigilo calls out, so a
-- crash after the call leaves it 'started', to be settled, never silently repeated.
CREATE TABLE actions (
  id              INTEGER PRIMARY KEY,
  run_id          INTEGER NOT NULL REFERENCES remediation_runs(id),
  approval_id     INTEGER REFERENCES approvals(id),
  finding_id      INTEGER NOT NULL REFERENCES findings(id),
  position        INTEGER NOT NULL,
  kind            TEXT NOT NULL,
  params          TEXT NOT NULL,   -- rendered parameters, JSON
  state           TEXT NOT NULL CHECK (state IN ('pending', 'started', 'succeeded', 'failed', 'skipped', 'unknown')),
  idempotency_key TEXT NOT NULL UNIQUE,
  attempts        INTEGER NOT NULL DEFAULT 0,
  claimed_by      TEXT,
  claim_expires   TEXT,
  started_at      TEXT,
  finished_at     TEXT,
  result          TEXT,            -- JSON
  error           TEXT,
  UNIQUE (run_id, position)
);
CREATE INDEX actions_by_state ON actions (state);
