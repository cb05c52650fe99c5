-- Push actions are written with their event as one row (all the members it notifies, as a JSON
-- array), appended to this table, instead of one row per member in event_push_actions: those
-- land on as many B-tree pages as there are members, and in a room of 16 writing them halved
-- the rate of sending. They are moved into event_push_actions in batches (many events per
-- member's page) shortly after, and before anything reads event_push_actions.
CREATE TABLE event_push_staging (
    stream_ordering BIGINT PRIMARY KEY,
    room_id         TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    -- [{"u": user, "n": notify, "h": highlight, "t": thread root or null, "a": actions JSON}]
    actions         TEXT NOT NULL
);
