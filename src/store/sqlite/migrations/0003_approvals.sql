-- Remediation runs and approvals (interface.md section 4).
-- A run is created in the scan's commit (requested), claimed by one process with
-- a lease, and moved on by guarded updates: requested -> pending -> decided | expired.
CREATE TABLE remediation_runs (
  id            INTEGER PRIMARY KEY,
  finding_id    INTEGER NOT NULL REFERENCES findings(id),
  remediation   TEXT NOT NULL,
  state         TEXT NOT NULL CHECK (state IN ('requested', 'pending', 'decided', 'expired', 'running', 'done', 'failed')),
  requested_at  TEXT NOT NULL,
  requested_by  TEXT,
  claimed_by    TEXT,
  claim_expires TEXT,
  updated_at    TEXT NOT NULL
);
CREATE INDEX remediation_runs_by_state ON remediation_runs (state);

CREATE TABLE approvals (
  id                  INTEGER PRIMARY KEY,
  run_id              INTEGER NOT NULL UNIQUE REFERENCES remediation_runs(id),
  finding_id          INTEGER NOT NULL REFERENCES findings(id),
  remediation         TEXT NOT NULL,
  status              TEXT NOT NULL CHECK (status IN ('pending', 'decided', 'expired')),
  decision            TEXT,
  subject             TEXT NOT NULL,
  prompt              TEXT NOT NULL,
  options             TEXT NOT NULL,   -- JSON [{value, label, style, required}]
  approvers           TEXT NOT NULL,   -- JSON ["alice", …], groups expanded
  requested_by        TEXT,
  allow_self_approval INTEGER NOT NULL CHECK (allow_self_approval IN (0, 1)),
  requested_at        TEXT NOT NULL,
  deadline            TEXT,
  on_timeout          TEXT,
  decided_at          TEXT,
  decided_by          TEXT NOT NULL DEFAULT '[]',  -- JSON ["alice", "bob"]
  CHECK ((status = 'pending') = (decided_at IS NULL)),
  CHECK ((status = 'decided') = (decision IS NOT NULL))
);
CREATE INDEX approvals_pending ON approvals (deadline) WHERE status = 'pending';

CREATE TABLE votes (
  approval_id INTEGER NOT NULL REFERENCES approvals(id),
  approver    TEXT NOT NULL,
  option      TEXT NOT NULL,
  reason      TEXT,
  channel     TEXT NOT NULL,
  at          TEXT NOT NULL,
  PRIMARY KEY (approval_id, approver)
);
