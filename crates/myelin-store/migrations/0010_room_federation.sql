-- Federation of rooms.

-- Events known but not part of the room's timeline: the state and auth chain a resident
-- server sends on a join, auth events fetched to check a remote event. They are never served
-- to clients as timeline events, only used (auth, state) and served to other servers.
CREATE TABLE outlier_events (
    event_id TEXT PRIMARY KEY,
    room_id  TEXT NOT NULL,
    json     TEXT NOT NULL
);

-- PDUs and EDUs waiting to be sent to another server, in order; deleted once delivered.
CREATE TABLE federation_outbox (
    id          BIGINT PRIMARY KEY,
    destination TEXT NOT NULL,
    -- 'pdu' or 'edu'
    kind        TEXT NOT NULL,
    json        TEXT NOT NULL
);
CREATE INDEX federation_outbox_by_destination ON federation_outbox (destination, id);
INSERT INTO counters (name, value) VALUES ('outbox', 0);

-- Transactions received from other servers: a retried transaction gets the same answer
-- without being processed again.
CREATE TABLE federation_transactions_in (
    origin      TEXT NOT NULL,
    txn_id      TEXT NOT NULL,
    response    TEXT NOT NULL,
    received_ts BIGINT NOT NULL,
    PRIMARY KEY (origin, txn_id)
);

-- Invites of local users to rooms on other servers: the stripped state the inviting server
-- sent, shown to the invitee in /sync.
CREATE TABLE remote_invites (
    room_id      TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    room_version TEXT NOT NULL,
    stripped     TEXT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);
