-- SQLite only (see 0016 for why some migrations are).
--
-- Two of the B-trees an event row goes into were in the same order: the table itself, by a
-- rowid that grows with each insert, and the UNIQUE index on stream_ordering, which grows with
-- each insert too. Here stream_ordering becomes the rowid (INTEGER PRIMARY KEY): the rows are
-- kept in stream order and that index goes, one page (one WAL frame) fewer for every message
-- written. The event ID keeps a unique index of its own; the other indexes are made again as
-- they were.

CREATE TABLE events_keyed (
    stream_ordering  INTEGER PRIMARY KEY,
    event_id         TEXT NOT NULL UNIQUE,
    room_id          TEXT NOT NULL,
    depth            BIGINT NOT NULL,
    event_type       TEXT NOT NULL,
    state_key        TEXT,
    sender           TEXT NOT NULL,
    origin_server_ts BIGINT NOT NULL,
    redacts          TEXT,
    state_before     BIGINT NOT NULL,
    state_after      BIGINT NOT NULL,
    json             TEXT NOT NULL,
    txn_device       TEXT,
    txn_id           TEXT
);
INSERT INTO events_keyed (stream_ordering, event_id, room_id, depth, event_type, state_key, sender,
                          origin_server_ts, redacts, state_before, state_after, json, txn_device, txn_id)
    SELECT stream_ordering, event_id, room_id, depth, event_type, state_key, sender,
           origin_server_ts, redacts, state_before, state_after, json, txn_device, txn_id
      FROM events;
DROP TABLE events;
ALTER TABLE events_keyed RENAME TO events;
CREATE INDEX events_by_room ON events (room_id, stream_ordering);
CREATE INDEX events_by_room_ts ON events (room_id, origin_server_ts);
CREATE INDEX events_by_redacts ON events (redacts) WHERE redacts IS NOT NULL;
CREATE UNIQUE INDEX events_by_txn ON events (room_id, sender, txn_device, txn_id) WHERE txn_id IS NOT NULL;
