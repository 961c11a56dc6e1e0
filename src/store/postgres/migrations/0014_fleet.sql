-- A fleet of `vigilo run` processes on one store (interface section 10).
--
-- ticks: one row per scheduled tick of a query that a process claimed, so each
-- tick runs once in the whole fleet. The claim is the row itself (INSERT … ON
-- CONFLICT DO NOTHING); its lease (claim_expires) is renewed by the claimant's
-- heartbeat while the run goes on. A tick whose claimant is gone (lease passed,
-- or released as dead) is taken over by one other process (attempts + 1); its
-- run commits only while its claim holds, in the same transaction that marks
-- the tick done, so a tick never has two runs.
CREATE TABLE ticks (
  query         text NOT NULL,
  tick          timestamptz NOT NULL,
  state         text NOT NULL CHECK (state IN ('running', 'done', 'abandoned')),
  claimed_by    text,            -- HOST:PID; NULL once released (its owner is gone)
  claim_expires timestamptz,
  attempts      integer NOT NULL DEFAULT 1,
  claimed_at    timestamptz NOT NULL,
  finished_at   timestamptz,
  run_id        bigint,
  PRIMARY KEY (query, tick),
  CHECK ((state = 'running') = (finished_at IS NULL))
);
CREATE INDEX ticks_running ON ticks (claim_expires) WHERE state = 'running';
CREATE INDEX ticks_finished ON ticks (finished_at) WHERE state <> 'running';

-- The tick a scheduled run was for, and the process that ran it.
ALTER TABLE runs ADD COLUMN tick timestamptz;
ALTER TABLE runs ADD COLUMN ran_by text;

-- One row per live `vigilo run` process, refreshed by its heartbeat.
CREATE TABLE processes (
  id           text PRIMARY KEY, -- HOST:PID, the name its claims go by
  host         text NOT NULL,
  pid          bigint NOT NULL,
  version      text NOT NULL,
  listen       text,             -- [server] listen, when it serves HTTP
  started_at   timestamptz NOT NULL,
  heartbeat_at timestamptz NOT NULL
);
