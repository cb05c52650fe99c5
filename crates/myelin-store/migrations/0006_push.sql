-- Push: what each event's push rules said for each local member it notifies (written with the
-- event, in its transaction), for unread counts and GET /notifications; and the users' pushers.

CREATE TABLE event_push_actions (
    user_id         TEXT NOT NULL,
    room_id         TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    notify          BOOLEAN NOT NULL,
    highlight       BOOLEAN NOT NULL,
    -- The thread root when the event is in a thread, else NULL (the main timeline).
    thread_id       TEXT,
    -- The push rule's actions, as JSON.
    actions         TEXT NOT NULL,
    PRIMARY KEY (user_id, event_id)
);
CREATE INDEX event_push_actions_by_room ON event_push_actions (user_id, room_id, stream_ordering);
CREATE INDEX event_push_actions_by_stream ON event_push_actions (user_id, stream_ordering);

CREATE TABLE pushers (
    user_id    TEXT NOT NULL,
    app_id     TEXT NOT NULL,
    pushkey    TEXT NOT NULL,
    -- The pusher as the client set it (kind, data, names, lang, profile_tag).
    json       TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (app_id, pushkey, user_id)
);
CREATE INDEX pushers_by_user ON pushers (user_id);

-- Incremental syncs ask which rooms have new receipts in a stream window.
CREATE INDEX receipts_by_position ON receipts (stream_ordering);
