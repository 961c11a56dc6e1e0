-- audit_by_finding served no query: the trail is read in seq order (pages, verification,
-- export), and an approval's entries come from audit_by_approval. Each finding event added
-- an entry on a random leaf of it (finding ids of a run's changes are scattered): 3,000 of
-- the 26,800 pages a 1%-churn commit wrote over 900,000 findings, and 900,000 entries on a
-- first run that opens them all.
DROP INDEX audit_by_finding;
