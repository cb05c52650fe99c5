-- event_push_actions gets one row per notified member and event, in the event's transaction:
-- with three B-trees (the primary key and two indexes) a message in a room of 16 cost 48 index
-- inserts and made sending several times slower. One primary key (user, room, position) serves
-- both the per-room unread counts and the /notifications list (by user, sorted by position).
CREATE TABLE event_push_actions_new (
    user_id         TEXT NOT NULL,
    room_id         TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    notify          BOOLEAN NOT NULL,
    highlight       BOOLEAN NOT NULL,
    thread_id       TEXT,
    actions         TEXT NOT NULL,
    PRIMARY KEY (user_id, room_id, stream_ordering)
);
INSERT INTO event_push_actions_new (user_id, room_id, event_id, stream_ordering, notify, highlight, thread_id, actions)
    SELECT user_id, room_id, event_id, stream_ordering, notify, highlight, thread_id, actions FROM event_push_actions;
DROP TABLE event_push_actions;
ALTER TABLE event_push_actions_new RENAME TO event_push_actions;
