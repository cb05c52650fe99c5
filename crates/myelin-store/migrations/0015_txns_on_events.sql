-- Client transaction IDs move onto their events. In a table of their own (with its primary
-- key and an index by event) they cost every message three more B-tree pages, some four WAL
-- frames of the thirteen a message's commit wrote on SQLite; as two columns of the event with
-- one partial unique index, about one. The index keeps a retried transaction from making a
-- second event, per room as before (the event's sender is the user who sent it).
ALTER TABLE events ADD COLUMN txn_device TEXT;
ALTER TABLE events ADD COLUMN txn_id TEXT;
UPDATE events
   SET txn_device = (SELECT t.device_id FROM event_txns t WHERE t.event_id = events.event_id),
       txn_id = (SELECT t.txn_id FROM event_txns t WHERE t.event_id = events.event_id)
 WHERE event_id IN (SELECT event_id FROM event_txns);
CREATE UNIQUE INDEX events_by_txn ON events (room_id, sender, txn_device, txn_id) WHERE txn_id IS NOT NULL;
DROP TABLE event_txns;
