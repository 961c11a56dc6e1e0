-- The outbox of notifier messages. A message is queued in the same transaction
-- as the event it tells of (a new finding, an opened approval, a decision), one
-- row per notifier target, and delivered afterwards with retries and backoff:
-- a dead notifier never blocks or loses the event. Delivery is at least once.
-- A decision's [[message]]s are 'held' until the run's actions have all succeeded.
CREATE TABLE messages (
  id              INTEGER PRIMARY KEY,
  event           TEXT NOT NULL,   -- finding.opened | finding.reopened | approval.requested | remediation.message
  finding_id      INTEGER REFERENCES findings(id),
  approval_id     INTEGER REFERENCES approvals(id),
  run_id          INTEGER REFERENCES remediation_runs(id),
  notifier        TEXT NOT NULL,
  integration     TEXT NOT NULL,   -- KIND.NAME or console
  destination     TEXT NOT NULL,   -- JSON {channel, to}
  text            TEXT,            -- rendered [[message]] text
  state           TEXT NOT NULL CHECK (state IN ('held', 'pending', 'sent', 'failed')),
  attempts        INTEGER NOT NULL DEFAULT 0,
  next_attempt_at TEXT NOT NULL,
  claimed_by      TEXT,
  claim_expires   TEXT,
  created_at      TEXT NOT NULL,
  sent_at         TEXT,
  result          TEXT,            -- JSON: what the integration answered
  error           TEXT,            -- the last failure
  CHECK ((state = 'sent') = (sent_at IS NOT NULL))
);
CREATE INDEX messages_due ON messages (next_attempt_at) WHERE state = 'pending';
