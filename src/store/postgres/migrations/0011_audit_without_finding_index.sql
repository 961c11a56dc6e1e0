-- audit_by_finding served no query: the trail is read in seq order (pages, verification,
-- export), and an approval's entries come from audit_by_approval. Each finding event added
-- an entry on a random leaf of it (finding ids of a run's changes are scattered): 27,000
-- entries on a 1%-churn commit over 900,000 findings (its commit took 821-875 ms without
-- the index, 831-1100 ms with it), and 900,000 on a first run that opens them all.
DROP INDEX audit_by_finding;
