-- Soft-failed events (allowed by the state before them, not by the room's current state) stay
-- outliers: out of the timeline and the forward extremities. But they are part of the DAG, and
-- a later event may name one as a previous event; the state after it is kept so that event's
-- state can be worked out. NULL for the other outliers (auth and state events fetched).
ALTER TABLE outlier_events ADD COLUMN state_after BIGINT;
