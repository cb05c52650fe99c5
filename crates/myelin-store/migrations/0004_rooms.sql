-- Rooms and events. Events are stored once, as canonical JSON; the columns beside the JSON are
-- what queries filter and sort on.

-- Monotonic counters shared by every process on the database: taken inside the writing
-- transaction, so positions become visible in the order they were handed out.
CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO counters (name, value) VALUES ('stream', 0), ('state_group', 0);

CREATE TABLE rooms (
    room_id      TEXT PRIMARY KEY,
    room_version TEXT NOT NULL,
    creator      TEXT NOT NULL,
    -- Listed in the public room directory.
    published    BOOLEAN NOT NULL DEFAULT FALSE,
    created_ts   BIGINT NOT NULL
);

CREATE TABLE events (
    event_id         TEXT PRIMARY KEY,
    room_id          TEXT NOT NULL,
    -- The order this server learned of events in (sync, /messages tokens).
    stream_ordering  BIGINT NOT NULL UNIQUE,
    -- The depth in the room's DAG (topological pagination).
    depth            BIGINT NOT NULL,
    event_type       TEXT NOT NULL,
    state_key        TEXT,
    sender           TEXT NOT NULL,
    origin_server_ts BIGINT NOT NULL,
    -- The event this one redacts (m.room.redaction), to find redactions of an event.
    redacts          TEXT,
    -- State groups: the room state before this event and after it (equal for non-state events).
    state_before     BIGINT NOT NULL,
    state_after      BIGINT NOT NULL,
    json             TEXT NOT NULL
);
CREATE INDEX events_by_room ON events (room_id, stream_ordering);
CREATE INDEX events_by_room_ts ON events (room_id, origin_server_ts);
CREATE INDEX events_by_redacts ON events (redacts);

-- Room state as deduplicated snapshots: a group either holds the whole state (prev_group NULL)
-- or only what changed since prev_group. Chains are cut with a full snapshot now and then, so
-- reading any state walks a bounded number of groups.
CREATE TABLE state_groups (
    id          BIGINT PRIMARY KEY,
    room_id     TEXT NOT NULL,
    prev_group  BIGINT,
    -- How many deltas lead back to a full snapshot (0 for a snapshot).
    chain_len   INTEGER NOT NULL
);
CREATE TABLE state_group_entries (
    state_group BIGINT NOT NULL,
    event_type  TEXT NOT NULL,
    state_key   TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    PRIMARY KEY (state_group, event_type, state_key)
);

-- The room's state after its latest event, kept current for fast reads.
CREATE TABLE current_state (
    room_id    TEXT NOT NULL,
    event_type TEXT NOT NULL,
    state_key  TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    PRIMARY KEY (room_id, event_type, state_key)
);

-- Every user's current membership of every room they have one in (from current_state).
CREATE TABLE memberships (
    room_id         TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    membership      TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    -- Set by /forget once the user has left: the room no longer shows for them.
    forgotten       BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX memberships_by_user ON memberships (user_id, membership);

-- The events that have no children yet: the prev_events of the next event.
CREATE TABLE forward_extremities (
    room_id  TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id)
);

-- Client transaction IDs, so a retried send returns the same event (per room, as Synapse
-- scopes them: the same ID in another room is another request).
CREATE TABLE event_txns (
    room_id   TEXT NOT NULL,
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    txn_id    TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    PRIMARY KEY (room_id, user_id, device_id, txn_id)
);

CREATE TABLE room_aliases (
    alias   TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    creator TEXT NOT NULL
);
CREATE INDEX room_aliases_by_room ON room_aliases (room_id);
CREATE INDEX event_txns_by_event ON event_txns (event_id);

-- Relations between events (`m.relates_to`): threads, edits, references, annotations.
CREATE TABLE event_relations (
    event_id        TEXT PRIMARY KEY,
    relates_to      TEXT NOT NULL,
    rel_type        TEXT NOT NULL,
    room_id         TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    sender          TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL
);
CREATE INDEX event_relations_by_parent ON event_relations (relates_to, stream_ordering);
CREATE INDEX event_relations_threads ON event_relations (room_id, rel_type, stream_ordering);

-- Filters clients upload for /sync and /messages (`POST /user/{userId}/filter`).
CREATE TABLE filters (
    user_id   TEXT NOT NULL,
    filter_id TEXT NOT NULL,
    json      TEXT NOT NULL,
    PRIMARY KEY (user_id, filter_id)
);

-- Account data of users, global (room_id '') or per room, at the stream position of its last
-- change (the same counter as events, so one /sync token covers both).
CREATE TABLE account_data (
    user_id         TEXT NOT NULL,
    room_id         TEXT NOT NULL,
    data_type       TEXT NOT NULL,
    content         TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, data_type)
);
CREATE INDEX account_data_by_stream ON account_data (user_id, stream_ordering);

-- Read receipts: the latest of each type (and thread) per user and room.
CREATE TABLE receipts (
    room_id         TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    receipt_type    TEXT NOT NULL,
    -- '' for an unthreaded receipt, 'main' or a thread root's event ID.
    thread_id       TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    ts              BIGINT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_id, receipt_type, thread_id)
);
CREATE INDEX receipts_by_stream ON receipts (room_id, stream_ordering);

-- Presence of local users, at the stream position of its last change.
CREATE TABLE presence (
    user_id         TEXT PRIMARY KEY,
    state           TEXT NOT NULL,
    status_msg      TEXT,
    last_active_ts  BIGINT NOT NULL,
    stream_ordering BIGINT NOT NULL
);
CREATE INDEX presence_by_stream ON presence (stream_ordering);
