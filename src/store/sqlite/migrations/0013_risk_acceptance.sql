-- Time-boxed risk acceptance (interface.md section 8.1). An open finding whose
-- accepted_until is set is accepted: no remediation starts for it until then. When the
-- time is up, remediate::step reopens it (guarded by status = 'open' AND accepted_until
-- <= now) and requests a new run; a finding that resolves first keeps the columns as
-- history (its status says it is resolved) and a reopen clears them.
-- Nullable columns without a default: no rewrite of the table; the partial index holds
-- only accepted findings, and no scan writes these columns, so updates of the others
-- stay HOT in PostgreSQL.
ALTER TABLE findings ADD COLUMN accepted_until TEXT;
ALTER TABLE findings ADD COLUMN accepted_by TEXT;
ALTER TABLE findings ADD COLUMN accepted_reason TEXT;
CREATE INDEX findings_accepted ON findings (accepted_until) WHERE accepted_until IS NOT NULL;
