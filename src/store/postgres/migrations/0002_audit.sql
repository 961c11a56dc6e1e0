-- The audit trail: append-only, hash-chained (interface.md section 7).
-- Text columns hold exactly the text that was hashed.
CREATE TABLE audit (
  seq         bigint PRIMARY KEY CHECK (seq > 0),
  at          text NOT NULL,
  kind        text NOT NULL,
  actor       text NOT NULL,
  channel     text NOT NULL,
  finding_id  bigint,
  approval_id bigint,
  action_id   bigint,
  data        text NOT NULL,
  prev_hash   text NOT NULL CHECK (length(prev_hash) = 64),
  hash        text NOT NULL CHECK (length(hash) = 64)
);
CREATE INDEX audit_by_finding ON audit (finding_id) WHERE finding_id IS NOT NULL;
CREATE INDEX audit_by_approval ON audit (approval_id) WHERE approval_id IS NOT NULL;

-- The chain's head, one row: appends lock it (FOR UPDATE), and verification compares with it.
CREATE TABLE audit_head (
  id   integer PRIMARY KEY CHECK (id = 1),
  seq  bigint NOT NULL,
  hash text NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
