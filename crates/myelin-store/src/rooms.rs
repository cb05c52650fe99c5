//! Rooms, events and room state: persisting an event with everything it changes in one
//! transaction, and the reads the room APIs need.

use crate::{
    Result,
    db::{BeginWrite, Db, next_counter, on_db},
    sqlite_reads::{query, read_all},
};
use std::{collections::BTreeMap, sync::Arc};

pub struct Rooms<'a>(pub(crate) &'a Db);

/// A state key: (event type, state key).
pub type StateKey = (String, String);
/// A room state: which event holds each state key.
pub type StateMap = BTreeMap<StateKey, String>;

/// After how many deltas a state group is written as a full snapshot instead.
const MAX_CHAIN_LEN: i32 = 50;

#[derive(Debug, Clone)]
pub struct NewRoom {
    pub room_id: String,
    pub room_version: String,
    pub creator: String,
    pub created_ts: i64,
}

/// An event to persist, with what it changes.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_id: String,
    pub room_id: String,
    pub depth: i64,
    pub event_type: String,
    pub state_key: Option<String>,
    pub sender: String,
    pub origin_server_ts: i64,
    pub redacts: Option<String>,
    /// Canonical JSON of the PDU.
    pub json: String,
    /// The state group before the event (None only for the create event).
    pub state_before: Option<i64>,
    /// The events it builds on: they stop being forward extremities.
    pub prev_events: Vec<String>,
    /// The sending device and its transaction ID, if a client sent it (unique per room,
    /// sender, device and ID).
    pub txn: Option<(String, String)>,
    /// Set for the room's create event.
    pub new_room: Option<NewRoom>,
    /// `m.relates_to`: (the event related to, rel_type).
    pub relation: Option<(String, String)>,
    /// What the push rules of local members said about the event (those it notifies).
    pub push_actions: Vec<PushAction>,
    /// Set when the room's current state after this event is not simply the state before it
    /// plus the event (a remote event on a fork, state resolution, a join over federation).
    pub current_state: Option<StateReset>,
}

/// The room's whole current state after an event, replacing what is stored, and the
/// memberships that change with it.
#[derive(Debug, Clone, Default)]
pub struct StateReset {
    pub state: StateMap,
    /// (user ID, membership, event ID) of every member entry that changes.
    pub memberships: Vec<(String, String, String)>,
}

/// An event notifies a user: what their push rules said.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PushAction {
    #[serde(rename = "u")]
    pub user_id: String,
    #[serde(rename = "n")]
    pub notify: bool,
    #[serde(rename = "h")]
    pub highlight: bool,
    /// The thread root, for an event in a thread.
    #[serde(rename = "t")]
    pub thread_id: Option<String>,
    /// The actions, as JSON text.
    #[serde(rename = "a")]
    pub actions: String,
}

/// One event relating to another.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct RelationRow {
    pub event_id: String,
    pub rel_type: String,
    pub event_type: String,
    pub sender: String,
    pub stream_ordering: i64,
}

/// Where an event landed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Persisted {
    pub stream_ordering: i64,
    pub state_after: i64,
}

impl NewEvent {
    /// The row this event is once persisted where `persisted` says: what reading it back
    /// gives (the columns `persist_event` and the SQLite message writer write).
    pub fn row(&self, persisted: Persisted) -> EventRow {
        EventRow {
            event_id: self.event_id.clone(),
            room_id: self.room_id.clone(),
            stream_ordering: persisted.stream_ordering,
            depth: self.depth,
            event_type: self.event_type.clone(),
            state_key: self.state_key.clone(),
            sender: self.sender.clone(),
            origin_server_ts: self.origin_server_ts,
            state_before: self.state_before.unwrap_or(persisted.state_after),
            state_after: persisted.state_after,
            json: self.json.clone(),
        }
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EventRow {
    pub event_id: String,
    pub room_id: String,
    pub stream_ordering: i64,
    pub depth: i64,
    pub event_type: String,
    pub state_key: Option<String>,
    pub sender: String,
    pub origin_server_ts: i64,
    pub state_before: i64,
    pub state_after: i64,
    pub json: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RoomRow {
    pub room_id: String,
    pub room_version: String,
    pub creator: String,
    pub published: bool,
    pub created_ts: i64,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct MembershipRow {
    pub room_id: String,
    pub user_id: String,
    pub membership: String,
    pub event_id: String,
    pub stream_ordering: i64,
    pub forgotten: bool,
}

/// The columns of an `EventRow`, in a `concat!` for static SQL.
macro_rules! event_columns {
    () => {
        "event_id, room_id, stream_ordering, depth, event_type, state_key, sender, origin_server_ts, state_before, \
         state_after, json"
    };
}
pub(crate) use event_columns;

/// Writes every entry of `$state` (a `&StateMap`) into state group `$id`, in `$tx`.
macro_rules! insert_group_entries {
    ($tx:ident, $id:expr, $state:expr) => {
        let entries: Vec<_> = $state.iter().collect();
        for part in entries.chunks(ROWS_PER_INSERT) {
            let mut insert = sqlx::QueryBuilder::new(
                "INSERT INTO state_group_entries (state_group, event_type, state_key, event_id) ",
            );
            insert.push_values(part, |mut row, ((event_type, key), event_id)| {
                row.push_bind($id).push_bind(event_type).push_bind(key).push_bind(event_id);
            });
            insert.build().execute(&mut *$tx).await?;
        }
    };
}

/// Rows per multi-row `INSERT` of the big writes (a join's state): few round trips, and far
/// below either engine's limit of bound parameters.
pub(crate) const ROWS_PER_INSERT: usize = 500;

/// Inserts the row of event `$e` (a `NewEvent`) at `$stream` with its state groups, in `$tx`.
macro_rules! insert_event_row {
    ($tx:ident, $e:expr, $stream:expr, $before:expr, $after:expr) => {
        sqlx::query(concat!(
            "INSERT INTO events (",
            event_columns!(),
            ", redacts, txn_device, txn_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        ))
        .bind(&$e.event_id)
        .bind(&$e.room_id)
        .bind($stream)
        .bind($e.depth)
        .bind(&$e.event_type)
        .bind(&$e.state_key)
        .bind(&$e.sender)
        .bind($e.origin_server_ts)
        .bind($before)
        .bind($after)
        .bind(&$e.json)
        .bind(&$e.redacts)
        .bind($e.txn.as_ref().map(|(device, _)| device))
        .bind($e.txn.as_ref().map(|(_, txn)| txn))
        .execute(&mut *$tx)
        .await?
    };
}

/// Records `$e`'s `m.relates_to` (if any) at `$stream`, in `$tx`.
macro_rules! insert_relation {
    ($tx:ident, $e:expr, $stream:expr) => {
        if let Some((relates_to, rel_type)) = &$e.relation {
            sqlx::query(
                "INSERT INTO event_relations (event_id, relates_to, rel_type, room_id, event_type, sender, stream_ordering)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_id) DO NOTHING",
            )
            .bind(&$e.event_id)
            .bind(relates_to)
            .bind(rel_type)
            .bind(&$e.room_id)
            .bind(&$e.event_type)
            .bind(&$e.sender)
            .bind($stream)
            .execute(&mut *$tx)
            .await?;
        }
    };
}

/// Sets a user's membership of a room (event and stream position; not forgotten), in `$tx`.
macro_rules! upsert_membership {
    ($tx:ident, $room:expr, $user:expr, $membership:expr, $event_id:expr, $stream:expr) => {
        sqlx::query(
            "INSERT INTO memberships (room_id, user_id, membership, event_id, stream_ordering, forgotten)
             VALUES ($1, $2, $3, $4, $5, FALSE)
             ON CONFLICT (room_id, user_id) DO UPDATE SET membership = excluded.membership,
               event_id = excluded.event_id, stream_ordering = excluded.stream_ordering, forgotten = FALSE",
        )
        .bind($room)
        .bind($user)
        .bind($membership)
        .bind($event_id)
        .bind($stream)
        .execute(&mut *$tx)
        .await?
    };
}
pub(crate) use upsert_membership;

/// Keeps an event as an outlier (left alone when known), in `$tx`.
macro_rules! insert_outlier {
    ($tx:ident, $event_id:expr, $room:expr, $json:expr) => {
        sqlx::query(
            "INSERT INTO outlier_events (event_id, room_id, json) VALUES ($1, $2, $3)
             ON CONFLICT (event_id) DO NOTHING",
        )
        .bind($event_id)
        .bind($room)
        .bind($json)
        .execute(&mut *$tx)
        .await?
    };
}
pub(crate) use insert_outlier;

/// An event's push actions as `event_push_staging` holds them; None when it notifies no one.
pub(crate) fn staged_push_actions(actions: &[PushAction]) -> Option<String> {
    if actions.is_empty() {
        return None;
    }
    serde_json::to_string(actions).ok()
}

/// Reads a state group inside the caller's connection or transaction: its entries and those
/// of the groups it is a delta of, the newest entry of each key winning.
macro_rules! load_state {
    ($conn:expr, $group:expr) => {{
        let mut state = StateMap::new();
        let mut next = Some($group);
        while let Some(group) = next {
            let rows: Vec<(String, String, String)> =
                sqlx::query_as(STATE_GROUP_ENTRIES).bind(group).fetch_all(&mut *$conn).await?;
            for (event_type, state_key, event_id) in rows {
                state.entry((event_type, state_key)).or_insert(event_id);
            }
            next = sqlx::query_scalar::<_, Option<i64>>(STATE_GROUP_PREV)
                .bind(group)
                .fetch_optional(&mut *$conn)
                .await?
                .flatten();
        }
        state
    }};
}

/// A state group's own entries, and the group it is a delta of.
const STATE_GROUP_ENTRIES: &str =
    "SELECT event_type, state_key, event_id FROM state_group_entries WHERE state_group = $1";
const STATE_GROUP_PREV: &str = "SELECT prev_group FROM state_groups WHERE id = $1";

/// How many rooms one multi-room query covers (each brings a few parameters).
const ROOMS_PER_QUERY: usize = 50;

/// Runs a query for many IDs, 100 at a time (`IN` lists stay short on both engines), and
/// gathers the rows. `$sql` gets the placeholders of one chunk as `$list`; `$pre` are bound
/// before the IDs (so the list starts after them).
macro_rules! fetch_in_chunks {
    ($db:expr, $ids:expr, |$list:ident| $sql:expr $(, $pre:expr)*) => {{
        let mut rows = Vec::new();
        for chunk in $ids.chunks(100) {
            let first = 1 $(+ { let _ = &$pre; 1 })*;
            let $list = (first..first + chunk.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
            let sql: String = $sql;
            let found: Vec<_> = match $db {
                $crate::db::Db::Sqlite { reads, .. } => {
                    let mut params: Vec<&dyn rusqlite::ToSql> = vec![$(&$pre as &dyn rusqlite::ToSql),*];
                    params.extend(chunk.iter().map(|id| id as &dyn rusqlite::ToSql));
                    reads.fetch_all(&sql, &params)?
                }
                $crate::db::Db::Postgres(pool) => {
                    let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()));
                    $(query = query.bind($pre);)*
                    for id in chunk {
                        query = query.bind(id);
                    }
                    query.fetch_all(pool).await?
                }
            };
            rows.extend(found);
        }
        rows
    }};
}

/// Writes the state group after a state event inside the caller's transaction: a delta of
/// the group before it (one entry), or a full snapshot when the chain of deltas is long (or
/// there is no group before); its ID.
macro_rules! insert_state_group_after {
    ($tx:ident, $room:expr, $before:expr, $kind:expr, $state_key:expr, $event_id:expr) => {{
        let id = next_counter!($tx, "state_group");
        let chain_len = match $before {
            Some(prev) => sqlx::query_scalar::<_, i32>("SELECT chain_len FROM state_groups WHERE id = $1")
                .bind(prev)
                .fetch_optional(&mut *$tx)
                .await?
                .map(|len| len + 1),
            None => None,
        };
        if let (Some(prev), Some(len)) = ($before, chain_len.filter(|len| *len <= MAX_CHAIN_LEN)) {
            // A delta: the one entry this event changes.
            sqlx::query("INSERT INTO state_groups (id, room_id, prev_group, chain_len) VALUES ($1, $2, $3, $4)")
                .bind(id)
                .bind($room)
                .bind(prev)
                .bind(len)
                .execute(&mut *$tx)
                .await?;
        } else {
            // A full snapshot: everything of the state before, then this event.
            sqlx::query("INSERT INTO state_groups (id, room_id, prev_group, chain_len) VALUES ($1, $2, NULL, 0)")
                .bind(id)
                .bind($room)
                .execute(&mut *$tx)
                .await?;
            if let Some(prev) = $before {
                let state = load_state!($tx, prev);
                insert_group_entries!($tx, id, &state);
            }
        }
        sqlx::query(
            "INSERT INTO state_group_entries (state_group, event_type, state_key, event_id)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (state_group, event_type, state_key) DO UPDATE SET event_id = excluded.event_id",
        )
        .bind(id)
        .bind($kind)
        .bind($state_key)
        .bind($event_id)
        .execute(&mut *$tx)
        .await?;
        id
    }};
}

/// A message queued for SQLite's message writer (see `Rooms::queue_on_head`).
pub struct QueuedWrite {
    messages: std::sync::Arc<crate::sqlite_messages::SqliteMessages>,
    answer: crate::sqlite_messages::Answer,
}

impl QueuedWrite {
    /// Writes the message (with whatever queued with it) and answers once it has committed.
    pub async fn written(self) -> Result<Persisted> {
        self.messages.written(self.answer).await
    }
}

impl std::fmt::Debug for QueuedWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueuedWrite").finish_non_exhaustive()
    }
}

impl Rooms<'_> {
    /// Queues a non-state event built on its room's forward extremities for SQLite's message
    /// writer, now and in call order: the room's next event may then be built on it while it
    /// waits, and the messages of one room commit together (group commit within a room, not
    /// only across rooms). Its write fails with `Error::StaleHead`, changing nothing, if its
    /// prev events are by then not all extremities of the room (an event it was built on
    /// failed). Gives the event back where there is no such writer (PostgreSQL) or it is not a
    /// plain message of a known room: `persist_event` then.
    pub fn queue_on_head(&self, event: NewEvent) -> std::result::Result<QueuedWrite, Box<NewEvent>> {
        match (self.0, &event.state_key, &event.new_room, event.state_before, &event.current_state) {
            (Db::Sqlite { messages, .. }, None, None, Some(state), None) => {
                let answer = messages.enqueue_on_head(event, state);
                Ok(QueuedWrite { messages: messages.clone(), answer })
            }
            _ => Err(Box::new(event)),
        }
    }

    /// Persists an event and everything it changes, in one transaction: its row, a new state
    /// group when it is a state event, the current state and memberships, the forward
    /// extremities and the client's transaction ID. The caller has checked it against the
    /// auth rules and holds the room's lock.
    pub async fn persist_event(&self, event: &NewEvent) -> Result<Persisted> {
        let e = event;
        if let (Db::Sqlite { messages, .. }, None, None, Some(state), None) =
            (self.0, &e.state_key, &e.new_room, e.state_before, &e.current_state)
        {
            return messages.persist(e, state).await;
        }
        // A state event may be a membership, a state reset rewrites them.
        let _memberships = self.0.memberships_changing();
        on_db!(self.0, write, |pool| {
            let mut tx = pool.begin_write().await?;
            if let Some(room) = &e.new_room {
                sqlx::query(
                    "INSERT INTO rooms (room_id, room_version, creator, published, created_ts)
                     VALUES ($1, $2, $3, FALSE, $4) ON CONFLICT (room_id) DO NOTHING",
                )
                .bind(&room.room_id)
                .bind(&room.room_version)
                .bind(&room.creator)
                .bind(room.created_ts)
                .execute(&mut *tx)
                .await?;
            }
            let stream_ordering = next_counter!(tx, "stream");
            let state_after = match (&e.state_key, e.state_before) {
                (Some(state_key), before) => {
                    let id = insert_state_group_after!(tx, &e.room_id, before, &e.event_type, state_key, &e.event_id);
                    sqlx::query(
                        "INSERT INTO current_state (room_id, event_type, state_key, event_id) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (room_id, event_type, state_key) DO UPDATE SET event_id = excluded.event_id",
                    )
                    .bind(&e.room_id)
                    .bind(&e.event_type)
                    .bind(state_key)
                    .bind(&e.event_id)
                    .execute(&mut *tx)
                    .await?;
                    if e.event_type == "m.room.member" {
                        let membership = serde_json::from_str::<serde_json::Value>(&e.json)
                            .ok()
                            .and_then(|v| v["content"]["membership"].as_str().map(str::to_owned))
                            .unwrap_or_else(|| "leave".to_owned());
                        upsert_membership!(tx, &e.room_id, state_key, &membership, &e.event_id, stream_ordering);
                    }
                    id
                }
                (None, Some(before)) => before,
                (None, None) => return Err(crate::Error::Corrupt("a non-state event needs a state before it".into())),
            };
            insert_event_row!(tx, e, stream_ordering, e.state_before.unwrap_or(state_after), state_after);
            for prev in &e.prev_events {
                sqlx::query("DELETE FROM forward_extremities WHERE room_id = $1 AND event_id = $2")
                    .bind(&e.room_id)
                    .bind(prev)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query("INSERT INTO forward_extremities (room_id, event_id) VALUES ($1, $2)")
                .bind(&e.room_id)
                .bind(&e.event_id)
                .execute(&mut *tx)
                .await?;
            insert_relation!(tx, e, stream_ordering);
            if let Some(reset) = &e.current_state {
                sqlx::query("DELETE FROM current_state WHERE room_id = $1").bind(&e.room_id).execute(&mut *tx).await?;
                let entries: Vec<_> = reset.state.iter().collect();
                for part in entries.chunks(ROWS_PER_INSERT) {
                    let mut insert = sqlx::QueryBuilder::new(
                        "INSERT INTO current_state (room_id, event_type, state_key, event_id) ",
                    );
                    insert.push_values(part, |mut row, ((event_type, state_key), event_id)| {
                        row.push_bind(&e.room_id).push_bind(event_type).push_bind(state_key).push_bind(event_id);
                    });
                    insert.build().execute(&mut *tx).await?;
                }
                for part in reset.memberships.chunks(ROWS_PER_INSERT) {
                    let mut upsert = sqlx::QueryBuilder::new(
                        "INSERT INTO memberships (room_id, user_id, membership, event_id, stream_ordering, forgotten) ",
                    );
                    upsert.push_values(part, |mut row, (user_id, membership, event_id)| {
                        row.push_bind(&e.room_id)
                            .push_bind(user_id)
                            .push_bind(membership)
                            .push_bind(event_id)
                            .push_bind(stream_ordering)
                            .push_bind(false);
                    });
                    upsert.push(
                        " ON CONFLICT (room_id, user_id) DO UPDATE SET membership = excluded.membership,
                          event_id = excluded.event_id, stream_ordering = excluded.stream_ordering, forgotten = FALSE",
                    );
                    upsert.build().execute(&mut *tx).await?;
                }
            }
            if let Some(actions) = staged_push_actions(&e.push_actions) {
                sqlx::query(
                    "INSERT INTO event_push_staging (stream_ordering, room_id, event_id, actions) VALUES ($1, $2, $3, $4)",
                )
                .bind(stream_ordering)
                .bind(&e.room_id)
                .bind(&e.event_id)
                .bind(actions)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(Persisted { stream_ordering, state_after })
        })
    }

    pub async fn room(&self, room_id: &str) -> Result<Option<RoomRow>> {
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_as("SELECT room_id, room_version, creator, published, created_ts FROM rooms WHERE room_id = $1")
                .bind(room_id)
                .fetch_optional(pool)
                .await?
        }))
    }

    pub async fn set_published(&self, room_id: &str, published: bool) -> Result<()> {
        on_db!(self.0, write, |pool| {
            sqlx::query("UPDATE rooms SET published = $2 WHERE room_id = $1")
                .bind(room_id)
                .bind(published)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// The published rooms, for the public room directory.
    pub async fn published_rooms(&self) -> Result<Vec<String>> {
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_scalar("SELECT room_id FROM rooms WHERE published ORDER BY room_id").fetch_all(pool).await?
        }))
    }

    pub async fn event(&self, event_id: &str) -> Result<Option<EventRow>> {
        let rows = read_all!(
            self.0,
            EventRow,
            concat!("SELECT ", event_columns!(), " FROM events WHERE event_id = $1"),
            event_id
        );
        Ok(rows.into_iter().next())
    }

    /// The events with these IDs that exist (in no particular order).
    pub async fn events(&self, event_ids: &[String]) -> Result<Vec<EventRow>> {
        Ok(fetch_in_chunks!(self.0, event_ids, |list| format!(
            "SELECT {} FROM events WHERE event_id IN ({list})",
            event_columns!()
        )))
    }

    /// Stores an event of the room's history fetched from another server (backfill): a
    /// stream position below zero, below every earlier one; nothing of the room's current
    /// state or extremities changes. A known event is left alone (false).
    pub async fn persist_backfilled(&self, e: &NewEvent, state_before: i64, state_after: i64) -> Result<bool> {
        on_db!(self.0, write, |pool| {
            let mut tx = pool.begin_write().await?;
            let known: Option<i64> = sqlx::query_scalar("SELECT stream_ordering FROM events WHERE event_id = $1")
                .bind(&e.event_id)
                .fetch_optional(&mut *tx)
                .await?;
            if known.is_some() {
                return Ok(false);
            }
            let stream_ordering = -next_counter!(tx, "backfill");
            insert_event_row!(tx, e, stream_ordering, state_before, state_after);
            insert_relation!(tx, e, stream_ordering);
            tx.commit().await?;
            Ok(true)
        })
    }

    /// The room's earliest event in this server's timeline.
    pub async fn earliest_event(&self, room_id: &str) -> Result<Option<EventRow>> {
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {} FROM events WHERE room_id = $1 ORDER BY stream_ordering ASC LIMIT 1",
                event_columns!()
            )))
            .bind(room_id)
            .fetch_optional(pool)
            .await?
        }))
    }

    /// The JSON of events by ID, timeline events and outliers alike: (event ID, room ID, JSON).
    pub async fn pdu_jsons(&self, event_ids: &[String]) -> Result<Vec<(String, String, String)>> {
        Ok(fetch_in_chunks!(self.0, event_ids, |list| format!(
            "SELECT event_id, room_id, json FROM events WHERE event_id IN ({list})
             UNION ALL SELECT event_id, room_id, json FROM outlier_events WHERE event_id IN ({list})"
        )))
    }

    /// Stores events that are not (yet) part of the timeline: state and auth events learned
    /// from other servers. Ones already known are left alone.
    pub async fn save_outliers(&self, room_id: &str, events: &[(String, String)]) -> Result<()> {
        on_db!(self.0, write, |pool| {
            let mut tx = pool.begin_write().await?;
            for part in events.chunks(ROWS_PER_INSERT) {
                let mut insert = sqlx::QueryBuilder::new("INSERT INTO outlier_events (event_id, room_id, json) ");
                insert.push_values(part, |mut row, (event_id, json)| {
                    row.push_bind(event_id).push_bind(room_id).push_bind(json);
                });
                insert.push(" ON CONFLICT (event_id) DO NOTHING");
                insert.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Stores a soft-failed event: an outlier, with the state group after it (see
    /// `soft_failed_states`). An outlier stored before (an auth event) gets its state.
    pub async fn save_soft_failed(&self, room_id: &str, event_id: &str, json: &str, state_after: i64) -> Result<()> {
        on_db!(self.0, write, |pool| {
            sqlx::query(
                "INSERT INTO outlier_events (event_id, room_id, json, state_after) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (event_id) DO UPDATE SET state_after = excluded.state_after",
            )
            .bind(event_id)
            .bind(room_id)
            .bind(json)
            .bind(state_after)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// For soft-failed events of the room among `event_ids`: (event ID, state group after it).
    pub async fn soft_failed_states(&self, room_id: &str, event_ids: &[String]) -> Result<Vec<(String, i64)>> {
        Ok(fetch_in_chunks!(
            self.0,
            event_ids,
            |list| format!(
                "SELECT event_id, state_after FROM outlier_events
                 WHERE room_id = $1 AND event_id IN ({list}) AND state_after IS NOT NULL"
            ),
            room_id
        ))
    }

    /// Writes the state group after a state event whose state before is group `before` (a
    /// delta of it, as for persisted events); its ID. For events worked out before they are
    /// stored (backfill).
    pub async fn save_state_after(
        &self,
        room_id: &str,
        before: i64,
        event_type: &str,
        state_key: &str,
        event_id: &str,
    ) -> Result<i64> {
        on_db!(self.0, write, |pool| {
            let mut tx = pool.begin_write().await?;
            let id = insert_state_group_after!(tx, room_id, Some(before), event_type, state_key, event_id);
            tx.commit().await?;
            Ok(id)
        })
    }

    /// Writes a whole room state as a new state group (a snapshot): the state before an event
    /// whose state is not another group plus one entry (a join over federation, a merge).
    pub async fn save_state_group(&self, room_id: &str, state: &StateMap) -> Result<i64> {
        on_db!(self.0, write, |pool| {
            let mut tx = pool.begin_write().await?;
            let id = next_counter!(tx, "state_group");
            sqlx::query("INSERT INTO state_groups (id, room_id, prev_group, chain_len) VALUES ($1, $2, NULL, 0)")
                .bind(id)
                .bind(room_id)
                .execute(&mut *tx)
                .await?;
            insert_group_entries!(tx, id, state);
            tx.commit().await?;
            Ok(id)
        })
    }

    /// For many events at once: the redactions of any of them, oldest first.
    pub async fn redactions_of_many(&self, event_ids: &[String]) -> Result<Vec<EventRow>> {
        Ok(fetch_in_chunks!(self.0, event_ids, |list| format!(
            "SELECT {} FROM events WHERE redacts IN ({list}) AND event_type = 'm.room.redaction' ORDER BY stream_ordering",
            event_columns!()
        )))
    }

    /// For many events at once: (the event related to, the relation), oldest first.
    pub async fn relations_of_many(&self, event_ids: &[String]) -> Result<Vec<(String, RelationRow)>> {
        let rows: Vec<(String, String, String, String, String, i64)> =
            fetch_in_chunks!(self.0, event_ids, |list| format!(
                "SELECT relates_to, event_id, rel_type, event_type, sender, stream_ordering FROM event_relations
             WHERE relates_to IN ({list}) ORDER BY stream_ordering"
            ));
        Ok(rows
            .into_iter()
            .map(|(to, event_id, rel_type, event_type, sender, stream_ordering)| {
                (to, RelationRow { event_id, rel_type, event_type, sender, stream_ordering })
            })
            .collect())
    }

    /// For many events at once: the transaction IDs this user's device sent them with.
    pub async fn txns_of_events(
        &self,
        event_ids: &[String],
        user_id: &str,
        device_id: &str,
    ) -> Result<Vec<(String, String)>> {
        Ok(fetch_in_chunks!(
            self.0,
            event_ids,
            |list| format!(
                "SELECT event_id, txn_id FROM events WHERE sender = $1 AND txn_device = $2 AND event_id IN ({list})"
            ),
            user_id,
            device_id
        ))
    }

    /// For each (room, below, above): the room's latest `limit` events with stream positions
    /// strictly between `above` and `below`, newest first — a sync's timelines, one query for
    /// many rooms (each part reads only its room's newest rows from the index).
    pub async fn latest_events_of_rooms(&self, windows: &[(String, i64, i64)], limit: i64) -> Result<Vec<EventRow>> {
        let mut rows = Vec::new();
        for chunk in windows.chunks(ROOMS_PER_QUERY) {
            let sql = (0..chunk.len())
                .map(|i| {
                    format!(
                        "SELECT * FROM (SELECT {} FROM events WHERE room_id = ${} AND stream_ordering < ${}
                         AND stream_ordering > ${} ORDER BY stream_ordering DESC LIMIT $1) AS w{i}",
                        event_columns!(),
                        3 * i + 2,
                        3 * i + 3,
                        3 * i + 4
                    )
                })
                .collect::<Vec<_>>()
                .join(" UNION ALL ");
            let found: Vec<EventRow> = match self.0 {
                Db::Sqlite { reads, .. } => {
                    let mut params: Vec<&dyn rusqlite::ToSql> = vec![&limit];
                    for (room_id, below, above) in chunk {
                        params.extend([room_id as &dyn rusqlite::ToSql, below, above]);
                    }
                    reads.fetch_all(&sql, &params)?
                }
                Db::Postgres(pool) => {
                    let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone())).bind(limit);
                    for (room_id, below, above) in chunk {
                        query = query.bind(room_id).bind(below).bind(above);
                    }
                    query.fetch_all(pool).await?
                }
            };
            rows.extend(found);
        }
        Ok(rows)
    }

    /// A room's events in stream order, after `from` (exclusive) going forwards or before it
    /// going backwards, at most `limit`, stopping at `to` (exclusive) when given.
    pub async fn events_in_room(
        &self,
        room_id: &str,
        from: i64,
        to: Option<i64>,
        forwards: bool,
        limit: i64,
    ) -> Result<Vec<EventRow>> {
        let sql = if forwards {
            format!(
                "SELECT {} FROM events WHERE room_id = $1 AND stream_ordering > $2 AND stream_ordering < $3
                 ORDER BY stream_ordering ASC LIMIT $4",
                event_columns!()
            )
        } else {
            format!(
                "SELECT {} FROM events WHERE room_id = $1 AND stream_ordering < $2 AND stream_ordering > $3
                 ORDER BY stream_ordering DESC LIMIT $4",
                event_columns!()
            )
        };
        // Backfilled history sits below zero.
        let bound = to.unwrap_or(if forwards { i64::MAX } else { i64::MIN });
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .bind(room_id)
                .bind(from)
                .bind(bound)
                .bind(limit)
                .fetch_all(pool)
                .await?
        }))
    }

    /// The room's last event at or before a stream position.
    pub async fn event_at_or_before(&self, room_id: &str, stream: i64) -> Result<Option<EventRow>> {
        let rows = read_all!(
            self.0,
            EventRow,
            concat!(
                "SELECT ",
                event_columns!(),
                " FROM events WHERE room_id = $1 AND stream_ordering <= $2 ORDER BY stream_ordering DESC LIMIT 1"
            ),
            room_id,
            stream
        );
        Ok(rows.into_iter().next())
    }

    /// The latest stream position handed out.
    pub async fn max_stream(&self) -> Result<i64> {
        let rows = read_all!(self.0, (i64,), "SELECT value FROM counters WHERE name = 'stream'");
        rows.first().map(|row| row.0).ok_or_else(|| crate::Error::Corrupt("no stream counter".into()))
    }

    /// The first event of the room at or after (forwards) / at or before (backwards) `ts`.
    pub async fn event_near_ts(&self, room_id: &str, ts: i64, forwards: bool) -> Result<Option<EventRow>> {
        let sql = if forwards {
            format!(
                "SELECT {} FROM events WHERE room_id = $1 AND origin_server_ts >= $2
                 ORDER BY origin_server_ts ASC, stream_ordering ASC LIMIT 1",
                event_columns!()
            )
        } else {
            format!(
                "SELECT {} FROM events WHERE room_id = $1 AND origin_server_ts <= $2
                 ORDER BY origin_server_ts DESC, stream_ordering DESC LIMIT 1",
                event_columns!()
            )
        };
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.clone())).bind(room_id).bind(ts).fetch_optional(pool).await?
        }))
    }

    pub async fn current_state(&self, room_id: &str) -> Result<StateMap> {
        let rows = read_all!(
            self.0,
            (String, String, String),
            "SELECT event_type, state_key, event_id FROM current_state WHERE room_id = $1",
            room_id
        );
        Ok(rows.into_iter().map(|(t, k, id)| ((t, k), id)).collect())
    }

    pub async fn current_state_event_id(
        &self,
        room_id: &str,
        event_type: &str,
        state_key: &str,
    ) -> Result<Option<String>> {
        let rows = read_all!(
            self.0,
            (String,),
            "SELECT event_id FROM current_state WHERE room_id = $1 AND event_type = $2 AND state_key = $3",
            room_id,
            event_type,
            state_key
        );
        Ok(rows.into_iter().next().map(|row| row.0))
    }

    /// The state in a state group, following its deltas back to a snapshot.
    pub async fn state_at_group(&self, group: i64) -> Result<StateMap> {
        match self.0 {
            // Groups never change once written: no transaction needed across the chain.
            Db::Sqlite { reads, .. } => reads.with(|conn| {
                let mut state = StateMap::new();
                let mut next = Some(group);
                while let Some(group) = next {
                    let entries: Vec<(String, String, String)> = query(conn, STATE_GROUP_ENTRIES, &[&group])?;
                    for (event_type, state_key, event_id) in entries {
                        state.entry((event_type, state_key)).or_insert(event_id);
                    }
                    let prev: Vec<(Option<i64>,)> = query(conn, STATE_GROUP_PREV, &[&group])?;
                    next = prev.first().and_then(|row| row.0);
                }
                Ok(state)
            }),
            Db::Postgres(pool) => {
                let mut conn = pool.acquire().await?;
                Ok(load_state!(conn, group))
            }
        }
    }

    pub async fn forward_extremities(&self, room_id: &str) -> Result<Vec<String>> {
        let rows = read_all!(
            self.0,
            (String,),
            "SELECT event_id FROM forward_extremities WHERE room_id = $1 ORDER BY event_id",
            room_id
        );
        Ok(rows.into_iter().map(|row| row.0).collect())
    }

    pub async fn txn_event(
        &self,
        room_id: &str,
        user_id: &str,
        device_id: &str,
        txn_id: &str,
    ) -> Result<Option<String>> {
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_scalar(
                "SELECT event_id FROM events WHERE room_id = $4 AND sender = $1 AND txn_device = $2 AND txn_id = $3",
            )
            .bind(user_id)
            .bind(device_id)
            .bind(txn_id)
            .bind(room_id)
            .fetch_optional(pool)
            .await?
        }))
    }

    pub async fn membership(&self, room_id: &str, user_id: &str) -> Result<Option<MembershipRow>> {
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_as(
                "SELECT room_id, user_id, membership, event_id, stream_ordering, forgotten FROM memberships
                 WHERE room_id = $1 AND user_id = $2",
            )
            .bind(room_id)
            .bind(user_id)
            .fetch_optional(pool)
            .await?
        }))
    }

    /// Every membership the user has (forgotten ones too; the caller decides).
    pub async fn memberships_of_user(&self, user_id: &str) -> Result<Arc<Vec<MembershipRow>>> {
        let cached = match self.0 {
            Db::Sqlite { memberships, .. } => match memberships.get(user_id) {
                Ok(rows) => return Ok(rows),
                Err(generation) => generation.map(|generation| (memberships, generation)),
            },
            Db::Postgres(_) => None,
        };
        let rows = Arc::new(read_all!(
            self.0,
            MembershipRow,
            "SELECT room_id, user_id, membership, event_id, stream_ordering, forgotten FROM memberships
             WHERE user_id = $1 ORDER BY room_id",
            user_id
        ));
        if let Some((cache, generation)) = cached {
            cache.fill(user_id, generation, rows.clone());
        }
        Ok(rows)
    }

    /// Sets a piece of account data (`room_id` "" for global); returns its new stream position.
    pub async fn set_account_data(&self, user_id: &str, room_id: &str, data_type: &str, content: &str) -> Result<i64> {
        on_db!(self.0, write, |pool| {
            let mut tx = pool.begin_write().await?;
            let stream = next_counter!(tx, "stream");
            sqlx::query(
                "INSERT INTO account_data (user_id, room_id, data_type, content, stream_ordering) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (user_id, room_id, data_type) DO UPDATE SET content = excluded.content,
                   stream_ordering = excluded.stream_ordering",
            )
            .bind(user_id)
            .bind(room_id)
            .bind(data_type)
            .bind(content)
            .bind(stream)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(stream)
        })
    }

    pub async fn account_data(&self, user_id: &str, room_id: &str, data_type: &str) -> Result<Option<String>> {
        let rows = read_all!(
            self.0,
            (String,),
            "SELECT content FROM account_data WHERE user_id = $1 AND room_id = $2 AND data_type = $3",
            user_id,
            room_id,
            data_type
        );
        Ok(rows.into_iter().next().map(|row| row.0))
    }

    /// (room_id, type, content) of the user's account data changed after `since`, up to `upto`.
    pub async fn account_data_between(
        &self,
        user_id: &str,
        since: i64,
        upto: i64,
    ) -> Result<Vec<(String, String, String)>> {
        let rows = read_all!(
            self.0,
            (String, String, String),
            "SELECT room_id, data_type, content FROM account_data
             WHERE user_id = $1 AND stream_ordering > $2 AND stream_ordering <= $3 ORDER BY stream_ordering",
            user_id,
            since,
            upto
        );
        Ok(rows)
    }

    /// Records a receipt (replacing the user's previous one of that type and thread); returns
    /// its stream position.
    #[allow(clippy::too_many_arguments)]
    pub async fn set_receipt(
        &self,
        room_id: &str,
        user_id: &str,
        receipt_type: &str,
        thread_id: &str,
        event_id: &str,
        ts: i64,
    ) -> Result<i64> {
        on_db!(self.0, write, |pool| {
            let mut tx = pool.begin_write().await?;
            let stream = next_counter!(tx, "stream");
            sqlx::query(
                "INSERT INTO receipts (room_id, user_id, receipt_type, thread_id, event_id, ts, stream_ordering)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (room_id, user_id, receipt_type, thread_id) DO UPDATE SET event_id = excluded.event_id,
                   ts = excluded.ts, stream_ordering = excluded.stream_ordering",
            )
            .bind(room_id)
            .bind(user_id)
            .bind(receipt_type)
            .bind(thread_id)
            .bind(event_id)
            .bind(ts)
            .bind(stream)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(stream)
        })
    }

    /// Rooms with new events or receipts after `since` up to `upto`: an incremental sync looks
    /// at these rooms only, not at every room of the user.
    pub async fn rooms_changed_between(&self, since: i64, upto: i64) -> Result<Vec<String>> {
        let rows = read_all!(
            self.0,
            (String,),
            "SELECT room_id FROM events WHERE stream_ordering > $1 AND stream_ordering <= $2
             UNION SELECT room_id FROM receipts WHERE stream_ordering > $1 AND stream_ordering <= $2",
            since,
            upto
        );
        Ok(rows.into_iter().map(|row| row.0).collect())
    }

    /// The receipts of rooms that changed after `since` up to `upto` (all of them when `since`
    /// is None), oldest first: (room ID, user ID, type, thread ID, event ID, ts).
    #[allow(clippy::type_complexity)]
    pub async fn receipts_of_rooms(
        &self,
        room_ids: &[String],
        since: Option<i64>,
        upto: i64,
    ) -> Result<Vec<(String, String, String, String, String, i64)>> {
        let since = since.unwrap_or(-1);
        Ok(fetch_in_chunks!(
            self.0,
            room_ids,
            |list| format!(
                "SELECT room_id, user_id, receipt_type, thread_id, event_id, ts FROM receipts
                 WHERE stream_ordering > $1 AND stream_ordering <= $2 AND room_id IN ({list}) ORDER BY stream_ordering"
            ),
            since,
            upto
        ))
    }

    /// Sets a user's presence; returns its stream position.
    pub async fn set_presence(
        &self,
        user_id: &str,
        state: &str,
        status_msg: Option<&str>,
        last_active_ts: i64,
    ) -> Result<i64> {
        on_db!(self.0, write, |pool| {
            let mut tx = pool.begin_write().await?;
            let stream = next_counter!(tx, "stream");
            sqlx::query(
                "INSERT INTO presence (user_id, state, status_msg, last_active_ts, stream_ordering) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (user_id) DO UPDATE SET state = excluded.state, status_msg = excluded.status_msg,
                   last_active_ts = excluded.last_active_ts, stream_ordering = excluded.stream_ordering",
            )
            .bind(user_id)
            .bind(state)
            .bind(status_msg)
            .bind(last_active_ts)
            .bind(stream)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(stream)
        })
    }

    /// (state, status_msg, last_active_ts) of a user.
    pub async fn presence(&self, user_id: &str) -> Result<Option<(String, Option<String>, i64)>> {
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_as("SELECT state, status_msg, last_active_ts FROM presence WHERE user_id = $1")
                .bind(user_id)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// Presence changes after `since` up to `upto` of users who share a joined room with
    /// `viewer` (and the viewer's own): (user, state, status_msg, last_active_ts).
    pub async fn presence_between(
        &self,
        viewer: &str,
        since: i64,
        upto: i64,
    ) -> Result<Vec<(String, String, Option<String>, i64)>> {
        let rows = read_all!(
            self.0,
            (String, String, Option<String>, i64),
            "SELECT p.user_id, p.state, p.status_msg, p.last_active_ts FROM presence p
             WHERE p.stream_ordering > $2 AND p.stream_ordering <= $3
               AND (p.user_id = $1 OR p.user_id IN (
                    SELECT o.user_id FROM memberships o JOIN memberships me ON me.room_id = o.room_id
                    WHERE me.user_id = $1 AND me.membership = 'join' AND o.membership = 'join'))
             ORDER BY p.stream_ordering",
            viewer,
            since,
            upto
        );
        Ok(rows)
    }

    /// The user directory: active users who share a joined room with `searcher` or are in a
    /// published room, whose ID or display name contains `term` (lowercase); (user, name,
    /// avatar), at most `limit`.
    pub async fn search_users(
        &self,
        searcher: &str,
        term: &str,
        limit: i64,
    ) -> Result<Vec<(String, Option<String>, Option<String>)>> {
        let pattern = format!("%{}%", term.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_as(
                "SELECT DISTINCT u.user_id, u.displayname, u.avatar_url FROM users u
                 JOIN memberships m ON m.user_id = u.user_id AND m.membership = 'join'
                 WHERE NOT u.deactivated
                   AND (m.room_id IN (SELECT room_id FROM memberships WHERE user_id = $1 AND membership = 'join')
                        OR m.room_id IN (SELECT room_id FROM rooms WHERE published))
                   AND (LOWER(u.user_id) LIKE $2 ESCAPE '\\' OR LOWER(COALESCE(u.displayname, '')) LIKE $2 ESCAPE '\\')
                 ORDER BY u.user_id LIMIT $3",
            )
            .bind(searcher)
            .bind(pattern)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Stores a filter; false if the user has one with this ID already.
    pub async fn add_filter(&self, user_id: &str, filter_id: &str, json: &str) -> Result<bool> {
        Ok(on_db!(self.0, write, |pool| {
            sqlx::query("INSERT INTO filters (user_id, filter_id, json) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                .bind(user_id)
                .bind(filter_id)
                .bind(json)
                .execute(pool)
                .await?
                .rows_affected()
                == 1
        }))
    }

    pub async fn filter(&self, user_id: &str, filter_id: &str) -> Result<Option<String>> {
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_scalar("SELECT json FROM filters WHERE user_id = $1 AND filter_id = $2")
                .bind(user_id)
                .bind(filter_id)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// The rooms the user has this membership in (forgotten rooms left out).
    pub async fn rooms_of_user(&self, user_id: &str, membership: &str) -> Result<Vec<String>> {
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_scalar(
                "SELECT room_id FROM memberships WHERE user_id = $1 AND membership = $2 AND NOT forgotten
                 ORDER BY room_id",
            )
            .bind(user_id)
            .bind(membership)
            .fetch_all(pool)
            .await?
        }))
    }

    /// For each room: its member counts by membership, joined and invited only, in one
    /// query: (room ID, membership, count).
    pub async fn member_counts_of_rooms(&self, room_ids: &[String]) -> Result<Vec<(String, String, i64)>> {
        Ok(fetch_in_chunks!(self.0, room_ids, |list| format!(
            "SELECT room_id, membership, COUNT(*) FROM memberships
             WHERE room_id IN ({list}) AND membership IN ('join', 'invite') GROUP BY room_id, membership"
        )))
    }

    /// For each room: the first `per_room` joined or invited members by user ID (a sync's
    /// heroes), in one query: (room ID, user ID).
    pub async fn first_members_of_rooms(&self, room_ids: &[String], per_room: i64) -> Result<Vec<(String, String)>> {
        let mut rows = Vec::new();
        for chunk in room_ids.chunks(ROOMS_PER_QUERY) {
            let sql = (0..chunk.len())
                .map(|i| {
                    format!(
                        "SELECT * FROM (SELECT room_id, user_id FROM memberships
                         WHERE room_id = ${} AND membership IN ('join', 'invite') ORDER BY user_id LIMIT $1) AS r{i}",
                        i + 2
                    )
                })
                .collect::<Vec<_>>()
                .join(" UNION ALL ");
            let found: Vec<(String, String)> = match self.0 {
                Db::Sqlite { reads, .. } => {
                    let mut params: Vec<&dyn rusqlite::ToSql> = vec![&per_room];
                    params.extend(chunk.iter().map(|room_id| room_id as &dyn rusqlite::ToSql));
                    reads.fetch_all(&sql, &params)?
                }
                Db::Postgres(pool) => {
                    let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone())).bind(per_room);
                    for room_id in chunk {
                        query = query.bind(room_id);
                    }
                    query.fetch_all(pool).await?
                }
            };
            rows.extend(found);
        }
        Ok(rows)
    }

    pub async fn members(&self, room_id: &str) -> Result<Vec<MembershipRow>> {
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_as(
                "SELECT room_id, user_id, membership, event_id, stream_ordering, forgotten FROM memberships
                 WHERE room_id = $1 ORDER BY user_id",
            )
            .bind(room_id)
            .fetch_all(pool)
            .await?
        }))
    }

    /// The room's joined members with the JSON of their member events (timeline events or
    /// outliers, as a federated join stores the state), in one query: (user ID, event JSON).
    pub async fn joined_member_events(&self, room_id: &str) -> Result<Vec<(String, String)>> {
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_as(
                "SELECT m.user_id, COALESCE(e.json, o.json, '{}') FROM memberships m
                 LEFT JOIN events e ON e.event_id = m.event_id
                 LEFT JOIN outlier_events o ON o.event_id = m.event_id AND e.event_id IS NULL
                 WHERE m.room_id = $1 AND m.membership = 'join' ORDER BY m.user_id",
            )
            .bind(room_id)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Whether a user whose ID ends with `:server_name` is joined to the room.
    pub async fn has_joined_member_of(&self, room_id: &str, server_name: &str) -> Result<bool> {
        // `_` and `%` cannot occur in server names, so the pattern is the suffix itself.
        let pattern = format!("%:{server_name}");
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_scalar::<_, String>(
                "SELECT user_id FROM memberships WHERE room_id = $1 AND membership = 'join' AND user_id LIKE $2 LIMIT 1",
            )
            .bind(room_id)
            .bind(&pattern)
            .fetch_optional(pool)
            .await?
            .is_some()
        }))
    }

    /// Marks a room forgotten for a user who has left it; false if they have not left.
    pub async fn forget(&self, room_id: &str, user_id: &str) -> Result<bool> {
        let _memberships = self.0.memberships_changing();
        Ok(on_db!(self.0, write, |pool| {
            sqlx::query(
                "UPDATE memberships SET forgotten = TRUE
                 WHERE room_id = $1 AND user_id = $2 AND membership IN ('leave', 'ban')",
            )
            .bind(room_id)
            .bind(user_id)
            .execute(pool)
            .await?
            .rows_affected()
                == 1
        }))
    }

    // ---- relations ----

    /// A page of the events relating to `parent`, optionally of one rel_type and event type,
    /// in stream order from `from` (exclusive) towards `to` (exclusive).
    #[allow(clippy::too_many_arguments)]
    pub async fn relating_events(
        &self,
        parent: &str,
        rel_type: Option<&str>,
        event_type: Option<&str>,
        from: i64,
        to: Option<i64>,
        forwards: bool,
        limit: i64,
    ) -> Result<Vec<EventRow>> {
        let (cmp, cmp_to, order) = if forwards { (">", "<", "ASC") } else { ("<", ">", "DESC") };
        let sql = format!(
            "SELECT {} FROM events e JOIN event_relations r ON r.event_id = e.event_id
             WHERE r.relates_to = $1 AND ($2 IS NULL OR r.rel_type = $2) AND ($3 IS NULL OR r.event_type = $3)
               AND r.stream_ordering {cmp} $4 AND r.stream_ordering {cmp_to} $5
             ORDER BY r.stream_ordering {order} LIMIT $6",
            event_columns!().split(", ").map(|c| format!("e.{}", c.trim())).collect::<Vec<_>>().join(", ")
        );
        // Backfilled history sits below zero.
        let bound = to.unwrap_or(if forwards { i64::MAX } else { i64::MIN });
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .bind(parent)
                .bind(rel_type)
                .bind(event_type)
                .bind(from)
                .bind(bound)
                .bind(limit)
                .fetch_all(pool)
                .await?
        }))
    }

    /// Thread roots of a room with the stream position of their latest reply, latest first,
    /// below `before`; only threads `participant` took part in when given.
    pub async fn thread_roots(
        &self,
        room_id: &str,
        before: i64,
        participant: Option<&str>,
        limit: i64,
    ) -> Result<Vec<(String, i64)>> {
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_as(
                "SELECT r.relates_to, MAX(r.stream_ordering) AS latest FROM event_relations r
                 WHERE r.room_id = $1 AND r.rel_type = 'm.thread'
                   AND ($3 IS NULL OR r.relates_to IN (
                         SELECT relates_to FROM event_relations WHERE rel_type = 'm.thread' AND sender = $3
                         UNION SELECT event_id FROM events WHERE room_id = $1 AND sender = $3))
                 GROUP BY r.relates_to HAVING MAX(r.stream_ordering) < $2
                 ORDER BY latest DESC LIMIT $4",
            )
            .bind(room_id)
            .bind(before)
            .bind(participant)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }

    // ---- aliases ----

    /// Adds an alias; false if it exists already.
    pub async fn add_alias(&self, alias: &str, room_id: &str, creator: &str) -> Result<bool> {
        Ok(on_db!(self.0, write, |pool| {
            sqlx::query("INSERT INTO room_aliases (alias, room_id, creator) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                .bind(alias)
                .bind(room_id)
                .bind(creator)
                .execute(pool)
                .await?
                .rows_affected()
                == 1
        }))
    }

    /// (room ID, creator) of an alias.
    pub async fn alias(&self, alias: &str) -> Result<Option<(String, String)>> {
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_as("SELECT room_id, creator FROM room_aliases WHERE alias = $1")
                .bind(alias)
                .fetch_optional(pool)
                .await?
        }))
    }

    pub async fn remove_alias(&self, alias: &str) -> Result<bool> {
        Ok(on_db!(self.0, write, |pool| {
            sqlx::query("DELETE FROM room_aliases WHERE alias = $1").bind(alias).execute(pool).await?.rows_affected()
                == 1
        }))
    }

    /// Points every alias of one room at another (room upgrades).
    pub async fn move_aliases(&self, from_room: &str, to_room: &str) -> Result<()> {
        on_db!(self.0, write, |pool| {
            sqlx::query("UPDATE room_aliases SET room_id = $2 WHERE room_id = $1")
                .bind(from_room)
                .bind(to_room)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    pub async fn aliases_of_room(&self, room_id: &str) -> Result<Vec<String>> {
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_scalar("SELECT alias FROM room_aliases WHERE room_id = $1 ORDER BY alias")
                .bind(room_id)
                .fetch_all(pool)
                .await?
        }))
    }
}
