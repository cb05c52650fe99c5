-- Only redaction events have `redacts`; the index held a NULL entry for every other event too,
-- and so cost every message one more B-tree page in its commit (a WAL frame on SQLite). Lookups
-- (`redacts IN (...)`) imply `redacts IS NOT NULL`, so both engines use the partial index.
DROP INDEX events_by_redacts;
CREATE INDEX events_by_redacts ON events (redacts) WHERE redacts IS NOT NULL;
