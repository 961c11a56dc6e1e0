-- ChatOps commands waiting for their requester's confirmation (/vigilo scan, /vigilo
-- remediate), and who a vote came from on its channel (a Slack user id, an email address).
CREATE TABLE commands (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  kind         text NOT NULL CHECK (kind IN ('scan', 'remediate')),
  argument     text NOT NULL,
  requested_by text NOT NULL,   -- the approver
  user_ref     text NOT NULL,   -- the only user who may confirm (a Slack user id)
  channel      text,
  response_url text,
  state        text NOT NULL CHECK (state IN ('pending', 'confirmed', 'cancelled')),
  created_at   timestamptz NOT NULL,
  expires_at   timestamptz NOT NULL,
  decided_at   timestamptz
);

ALTER TABLE votes ADD COLUMN identity text;
