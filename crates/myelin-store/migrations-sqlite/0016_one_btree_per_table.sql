-- SQLite only. Version numbers are shared with `migrations/` (both engines): the two lists are
-- run as one, in order, and a number is never used in both.
--
-- On SQLite a table whose primary key is not a single INTEGER column is two B-trees, the rows
-- by rowid and the key's index, and every insert or delete writes a page of each. Every message
-- replaces its room's forward extremity and stages its push actions: two pages (two WAL frames)
-- of the eleven its commit wrote went to these second B-trees. Here the forward extremities
-- become one B-tree keyed by (room, event) and the staged actions are keyed by their stream
-- position as the rowid. (PostgreSQL stores a table apart from its indexes whatever it is
-- declared as; nothing to change there.)

CREATE TABLE forward_extremities_keyed (
    room_id  TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id)
) WITHOUT ROWID;
INSERT INTO forward_extremities_keyed (room_id, event_id)
    SELECT room_id, event_id FROM forward_extremities;
DROP TABLE forward_extremities;
ALTER TABLE forward_extremities_keyed RENAME TO forward_extremities;

CREATE TABLE event_push_staging_keyed (
    stream_ordering INTEGER PRIMARY KEY,
    room_id         TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    -- [{"u": user, "n": notify, "h": highlight, "t": thread root or null, "a": actions JSON}]
    actions         TEXT NOT NULL
);
INSERT INTO event_push_staging_keyed (stream_ordering, room_id, event_id, actions)
    SELECT stream_ordering, room_id, event_id, actions FROM event_push_staging;
DROP TABLE event_push_staging;
ALTER TABLE event_push_staging_keyed RENAME TO event_push_staging;
