-- The outbox of notifier messages. A message is queued in the same transaction
-- as the event it tells of (a new finding, an opened approval, a decision), one
-- row per notifier target, and delivered afterwards with retries and backoff:
-- a dead notifier never blocks or loses the event. Delivery is at least once.
-- A decision's [[message]]s are 'held' until the run's actions have all succeeded.
CREATE TABLE messages (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  event           text NOT NULL,   -- finding.opened | finding.reopened | approval.requested | remediation.message
  finding_id      bigint REFERENCES findings(id),
  approval_id     bigint REFERENCES approvals(id),
  run_id          bigint REFERENCES remediation_runs(id),
  notifier        text NOT NULL,
  integration     text NOT NULL,   -- KIND.NAME or console
  destination     text NOT NULL,   -- JSON {channel, to}
  text            text,            -- rendered [[message]] text
  state           text NOT NULL CHECK (state IN ('held', 'pending', 'sent', 'failed')),
  attempts        integer NOT NULL DEFAULT 0,
  next_attempt_at timestamptz NOT NULL,
  claimed_by      text,
  claim_expires   timestamptz,
  created_at      timestamptz NOT NULL,
  sent_at         timestamptz,
  result          text,            -- JSON: what the integration answered
  error           text,            -- the last failure
  CHECK ((state = 'sent') = (sent_at IS NOT NULL))
);
CREATE INDEX messages_due ON messages (next_attempt_at) WHERE state = 'pending';
