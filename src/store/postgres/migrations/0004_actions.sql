-- Actions of decided remediation runs. An action is marked started (with an
-- idempotency key) in its own committed transaction before vigilo calls out, so a
-- crash after the call leaves it 'started', to be settled, never silently repeated.
CREATE TABLE actions (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  run_id          bigint NOT NULL REFERENCES remediation_runs(id),
  approval_id     bigint REFERENCES approvals(id),
  finding_id      bigint NOT NULL REFERENCES findings(id),
  position        integer NOT NULL,
  kind            text NOT NULL,
  params          text NOT NULL,   -- rendered parameters, JSON
  state           text NOT NULL CHECK (state IN ('pending', 'started', 'succeeded', 'failed', 'skipped', 'unknown')),
  idempotency_key text NOT NULL UNIQUE,
  attempts        integer NOT NULL DEFAULT 0,
  claimed_by      text,
  claim_expires   timestamptz,
  started_at      timestamptz,
  finished_at     timestamptz,
  result          text,            -- JSON
  error           text,
  UNIQUE (run_id, position)
);
CREATE INDEX actions_by_state ON actions (state);
