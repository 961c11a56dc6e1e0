-- Remediation runs and approvals (interface.md section 4).
-- A run is created in the scan's commit (requested), claimed with FOR UPDATE SKIP
-- LOCKED and a lease, and moved on by guarded updates:
-- requested -> pending -> decided | expired.
CREATE TABLE remediation_runs (
  id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  finding_id    bigint NOT NULL REFERENCES findings(id),
  remediation   text NOT NULL,
  state         text NOT NULL CHECK (state IN ('requested', 'pending', 'decided', 'expired', 'running', 'done', 'failed')),
  requested_at  timestamptz NOT NULL,
  requested_by  text,
  claimed_by    text,
  claim_expires timestamptz,
  updated_at    timestamptz NOT NULL
);
CREATE INDEX remediation_runs_by_state ON remediation_runs (state);

CREATE TABLE approvals (
  id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  run_id              bigint NOT NULL UNIQUE REFERENCES remediation_runs(id),
  finding_id          bigint NOT NULL REFERENCES findings(id),
  remediation         text NOT NULL,
  status              text NOT NULL CHECK (status IN ('pending', 'decided', 'expired')),
  decision            text,
  subject             text NOT NULL,
  prompt              text NOT NULL,
  options             text NOT NULL,   -- JSON [{value, label, style, required}]
  approvers           text NOT NULL,   -- JSON ["alice", …], groups expanded
  requested_by        text,
  allow_self_approval boolean NOT NULL,
  requested_at        timestamptz NOT NULL,
  deadline            timestamptz,
  on_timeout          text,
  decided_at          timestamptz,
  decided_by          text NOT NULL DEFAULT '[]',  -- JSON ["alice", "bob"]
  CHECK ((status = 'pending') = (decided_at IS NULL)),
  CHECK ((status = 'decided') = (decision IS NOT NULL))
);
CREATE INDEX approvals_pending ON approvals (deadline) WHERE status = 'pending';

CREATE TABLE votes (
  approval_id bigint NOT NULL REFERENCES approvals(id),
  approver    text NOT NULL,
  option      text NOT NULL,
  reason      text,
  channel     text NOT NULL,
  at          timestamptz NOT NULL,
  PRIMARY KEY (approval_id, approver)
);
