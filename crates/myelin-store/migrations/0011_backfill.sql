-- Events fetched from other servers' history (backfill) take stream positions below zero,
-- counting down: older than everything this server saw live, and never "new" to /sync.
INSERT INTO counters (name, value) VALUES ('backfill', 0);
