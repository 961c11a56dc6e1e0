-- ChatOps commands waiting for their requester's confirmation (/vigilo scan, /vigilo
-- remediate), and who a vote came from on its channel (a Slack user id, an email address).
CREATE TABLE commands (
  id           INTEGER PRIMARY KEY,
  kind         TEXT NOT NULL CHECK (kind IN ('scan', 'remediate')),
  argument     TEXT NOT NULL,
  requested_by TEXT NOT NULL,   -- the approver
  user_ref     TEXT NOT NULL,   -- the only user who may confirm (a Slack user id)
  channel      TEXT,
  response_url TEXT,
  state        TEXT NOT NULL CHECK (state IN ('pending', 'confirmed', 'cancelled')),
  created_at   TEXT NOT NULL,
  expires_at   TEXT NOT NULL,
  decided_at   TEXT
);

ALTER TABLE votes ADD COLUMN identity TEXT;
