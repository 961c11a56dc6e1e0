-- The audit trail: append-only, hash-chained (interface.md section 7).
CREATE TABLE audit (
  seq         INTEGER PRIMARY KEY CHECK (seq > 0),
  at          TEXT NOT NULL,
  kind        TEXT NOT NULL,
  actor       TEXT NOT NULL,
  channel     TEXT NOT NULL,
  finding_id  INTEGER,
  approval_id INTEGER,
  action_id   INTEGER,
  data        TEXT NOT NULL,
  prev_hash   TEXT NOT NULL CHECK (length(prev_hash) = 64),
  hash        TEXT NOT NULL CHECK (length(hash) = 64)
);
CREATE INDEX audit_by_finding ON audit (finding_id) WHERE finding_id IS NOT NULL;
CREATE INDEX audit_by_approval ON audit (approval_id) WHERE approval_id IS NOT NULL;

-- The chain's head, one row: appends lock it, and verification compares with it.
CREATE TABLE audit_head (
  id   INTEGER PRIMARY KEY CHECK (id = 1),
  seq  INTEGER NOT NULL,
  hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
