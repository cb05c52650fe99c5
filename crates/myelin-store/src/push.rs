//! Push: the users' pushers, and the push actions stored with events, read back as unread
//! counts (per room, per thread) and as the `/notifications` list.

use std::collections::HashMap;

use crate::{
    PushAction, Result,
    db::{BeginWrite, Db, on_db},
    rooms::ROWS_PER_INSERT,
    sqlite_reads::query,
};

pub struct Push<'a>(pub(crate) &'a Db);

/// The thread whose receipts an action is read by: 'main' for the main timeline (and, when
/// threads are not counted apart, for every event).
fn thread_key(by_thread: bool, action: &PushAction) -> String {
    match &action.thread_id {
        Some(root) if by_thread => root.clone(),
        _ => "main".to_owned(),
    }
}

/// Unread counts of one room (and thread) for a user: (room, thread or None, notify, highlight).
pub type UnreadRow = (String, Option<String>, i64, i64);

/// One notification: (stream position, room, event ID, actions JSON, highlight, read).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct NotificationRow {
    pub stream_ordering: i64,
    pub room_id: String,
    pub event_id: String,
    pub actions: String,
    pub read: bool,
}

/// The stream position up to which the user has read room `$room`: their latest read receipt
/// (`m.read` or `m.read.private`) for the threads in `$threads` (an SQL list), or their join
/// when later (what came before they joined is not unread); SQL text.
macro_rules! read_up_to {
    ($room:expr, $user:expr, $threads:expr) => {
        concat!(
            "COALESCE((SELECT MAX(up.s) FROM (
               SELECT e.stream_ordering AS s FROM receipts r JOIN events e ON e.event_id = r.event_id
               WHERE r.room_id = ",
            $room,
            " AND r.user_id = ",
            $user,
            " AND r.receipt_type IN ('m.read', 'm.read.private') AND r.thread_id IN ",
            $threads,
            " UNION ALL SELECT m.stream_ordering AS s FROM memberships m WHERE m.room_id = ",
            $room,
            " AND m.user_id = ",
            $user,
            " AND m.membership = 'join') AS up), 0)"
        )
    };
}

/// Staged events moved into `event_push_actions` per transaction: small enough that a room of
/// thousands of members stays a few MB of rows in memory, large enough that each member's page
/// takes many events' rows at once.
const ROTATE_BATCH: i64 = 50;

/// A staged row: (stream position, room, event ID, actions JSON).
type StagedRow = (i64, String, String, String);

const SELECT_STAGED: &str = "SELECT stream_ordering, room_id, event_id, actions FROM event_push_staging
     WHERE stream_ordering <= $1 ORDER BY stream_ordering LIMIT $2";
const DELETE_STAGED: &str = "DELETE FROM event_push_staging WHERE stream_ordering <= $1";

/// The columns of `event_push_actions` a move fills, in a `concat!` for static SQL.
macro_rules! push_action_columns {
    () => {
        "(user_id, room_id, event_id, stream_ordering, notify, highlight, thread_id, actions)"
    };
}

/// One row per member and event, sorted so that the rows of one member and room land side by
/// side. Rows are written by this store from `PushAction`s: one that does not parse is
/// dropped rather than blocking every later one.
fn expand_staged(staged: &[StagedRow]) -> Vec<(i64, &str, &str, PushAction)> {
    let mut rows: Vec<(i64, &str, &str, PushAction)> = Vec::new();
    for (stream_ordering, room_id, event_id, actions) in staged {
        let Ok(actions) = serde_json::from_str::<Vec<PushAction>>(actions) else { continue };
        rows.extend(actions.into_iter().map(|a| (*stream_ordering, room_id.as_str(), event_id.as_str(), a)));
    }
    rows.sort_by(|x, y| (&x.3.user_id, x.1, x.0).cmp(&(&y.3.user_id, y.1, y.0)));
    rows
}

/// One batch of `Push::rotate_staged` on SQLite, in a transaction of its own; how many events
/// it moved.
fn rotate_batch_sqlite(conn: &rusqlite::Connection, up_to: i64) -> rusqlite::Result<usize> {
    // Immediate: it writes, and a deferred one could not wait to upgrade its read lock.
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    let staged: Vec<StagedRow> = tx
        .prepare_cached(&SELECT_STAGED.replace('$', "?"))?
        .query_map(rusqlite::params![up_to, ROTATE_BATCH], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let Some(last) = staged.last().map(|row| row.0) else { return Ok(0) };
    let mut insert = tx.prepare_cached(concat!(
        "INSERT INTO event_push_actions ",
        push_action_columns!(),
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (user_id, room_id, stream_ordering) DO NOTHING"
    ))?;
    for (stream_ordering, room_id, event_id, a) in expand_staged(&staged) {
        insert.execute(rusqlite::params![
            a.user_id,
            room_id,
            event_id,
            stream_ordering,
            a.notify,
            a.highlight,
            a.thread_id,
            a.actions
        ])?;
    }
    drop(insert);
    tx.prepare_cached(&DELETE_STAGED.replace('$', "?"))?.execute([last])?;
    tx.commit()?;
    Ok(staged.len())
}

/// The position up to which user `$2` has read room `$1` in thread `$3` (see `read_up_to!`).
const READ_POSITION: &str = concat!("SELECT ", read_up_to!("$1", "$2", "('', $3)"));

/// A user's actions among staged rows (room, position, actions JSON), parsed once:
/// (room, position, action, thread). Written by this store; a row that does not parse is
/// skipped, as the move does.
fn staged_for(
    staged: Vec<(String, i64, String)>,
    user_id: &str,
    by_thread: bool,
) -> Vec<(String, i64, PushAction, String)> {
    // A row that does not name the user (as JSON writes it: unescaped when it holds no
    // quote or backslash, as local user IDs never do) holds no action of theirs: not parsed.
    let plain = !user_id.contains(['"', '\\']);
    staged
        .into_iter()
        .filter(|(_, _, actions)| !plain || actions.contains(user_id))
        .filter_map(|(room_id, position, actions)| {
            Some((room_id, position, serde_json::from_str::<Vec<PushAction>>(&actions).ok()?))
        })
        .flat_map(|(room_id, position, actions)| {
            actions.into_iter().filter(|a| a.user_id == user_id).map(move |action| {
                let thread = thread_key(by_thread, &action);
                (room_id.clone(), position, action, thread)
            })
        })
        .collect()
}

/// The staged actions after the user's read position of their room and thread.
fn unread_staged(
    mine: Vec<(String, i64, PushAction, String)>,
    read: &HashMap<(String, String), i64>,
) -> Vec<(String, PushAction)> {
    mine.into_iter()
        .filter(|(room_id, position, _, thread)| {
            read.get(&(room_id.clone(), thread.clone())).is_some_and(|up_to| position > up_to)
        })
        .map(|(room_id, _, action, _)| (room_id, action))
        .collect()
}

impl Push<'_> {
    /// Moves the push actions staged with their events (`event_push_staging`, one row per
    /// event) into `event_push_actions` (one row per member), oldest first, in batches: the
    /// rows of one member and room land side by side. Only what was staged when it started
    /// (under a steady stream of events it still ends). Safe to run concurrently: a row moved
    /// twice is kept once, and staged rows are committed in stream order (their position comes
    /// from the `stream` counter, whose row each writer locks), so none is skipped. How many
    /// events were moved.
    pub async fn rotate_staged(&self) -> Result<usize> {
        let up_to: Option<i64> = on_db!(self.0, read, |pool| {
            sqlx::query_scalar("SELECT MAX(stream_ordering) FROM event_push_staging").fetch_one(pool).await?
        });
        let Some(up_to) = up_to else { return Ok(0) };
        let mut moved = 0;
        loop {
            let batch = match self.0 {
                // On the connection messages are written on: the two take turns in process
                // instead of one sleeping in SQLite's busy handler until the other is done.
                Db::Sqlite { messages, .. } => {
                    messages.with_connection(move |conn| rotate_batch_sqlite(conn, up_to)).await?
                }
                Db::Postgres(pool) => {
                    let mut tx = pool.begin_write().await?;
                    let staged: Vec<StagedRow> =
                        sqlx::query_as(SELECT_STAGED).bind(up_to).bind(ROTATE_BATCH).fetch_all(&mut *tx).await?;
                    let Some(last) = staged.last().map(|row| row.0) else { return Ok(moved) };
                    for part in expand_staged(&staged).chunks(ROWS_PER_INSERT) {
                        let mut insert = sqlx::QueryBuilder::new(concat!(
                            "INSERT INTO event_push_actions ",
                            push_action_columns!(),
                            " "
                        ));
                        insert.push_values(part, |mut row, (stream_ordering, room_id, event_id, a)| {
                            row.push_bind(&a.user_id)
                                .push_bind(*room_id)
                                .push_bind(*event_id)
                                .push_bind(*stream_ordering)
                                .push_bind(a.notify)
                                .push_bind(a.highlight)
                                .push_bind(&a.thread_id)
                                .push_bind(&a.actions);
                        });
                        insert.push(" ON CONFLICT (user_id, room_id, stream_ordering) DO NOTHING");
                        insert.build().execute(&mut *tx).await?;
                    }
                    sqlx::query(DELETE_STAGED).bind(last).execute(&mut *tx).await?;
                    tx.commit().await?;
                    staged.len()
                }
            };
            moved += batch;
            if batch < ROTATE_BATCH as usize {
                return Ok(moved);
            }
        }
    }

    /// Moves the staged push actions first (one read when there are none): what reads
    /// `event_push_actions` then sees every event committed before it started. Should that
    /// fail, the read goes on with the counts as they are (a later read moves them).
    async fn rotate_if_staged(&self) {
        if let Err(e) = self.rotate_staged().await {
            tracing::warn!("moving staged push actions before a read: {e}");
        }
    }

    /// Adds or replaces the user's pusher for (app ID, pushkey); unless `append`, the same
    /// pushkey is removed from every other user (a device belongs to one account at a time).
    pub async fn set_pusher(
        &self,
        user_id: &str,
        app_id: &str,
        pushkey: &str,
        json: &str,
        append: bool,
        now_ms: i64,
    ) -> Result<()> {
        on_db!(self.0, write, |pool| {
            let mut tx = pool.begin_write().await?;
            if !append {
                sqlx::query("DELETE FROM pushers WHERE app_id = $1 AND pushkey = $2 AND user_id <> $3")
                    .bind(app_id)
                    .bind(pushkey)
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(
                "INSERT INTO pushers (user_id, app_id, pushkey, json, created_ts) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (app_id, pushkey, user_id) DO UPDATE SET json = excluded.json",
            )
            .bind(user_id)
            .bind(app_id)
            .bind(pushkey)
            .bind(json)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    pub async fn delete_pusher(&self, user_id: &str, app_id: &str, pushkey: &str) -> Result<()> {
        on_db!(self.0, write, |pool| {
            sqlx::query("DELETE FROM pushers WHERE user_id = $1 AND app_id = $2 AND pushkey = $3")
                .bind(user_id)
                .bind(app_id)
                .bind(pushkey)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// The user's pushers, as set.
    pub async fn pushers(&self, user_id: &str) -> Result<Vec<String>> {
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_scalar("SELECT json FROM pushers WHERE user_id = $1 ORDER BY created_ts, app_id, pushkey")
                .bind(user_id)
                .fetch_all(pool)
                .await?
        }))
    }

    /// Unread notification counts in `room_ids` (those with any), after the user's read
    /// receipts. `by_thread`: events in threads count apart, each after the receipts of its
    /// thread (or unthreaded ones); else every event counts after the unthreaded or main
    /// receipt.
    ///
    /// Actions still staged (`event_push_staging`, moved in batches shortly after their event)
    /// are counted from their rows, in the same snapshot as the moved ones: a read never waits
    /// for the move, a write (it made a long-poll woken by a message a millisecond slower).
    pub async fn unread_counts(&self, user_id: &str, by_thread: bool, room_ids: &[String]) -> Result<Vec<UnreadRow>> {
        let (thread, threads, group) = if by_thread {
            ("a.thread_id", "('', COALESCE(a.thread_id, 'main'))", "a.room_id, a.thread_id")
        } else {
            ("NULL", "('', 'main')", "a.room_id")
        };
        let mut rows = Vec::new();
        for chunk in room_ids.chunks(100) {
            let list = (2..chunk.len() + 2).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
            let up_to = format!(read_up_to!("a.room_id", "$1", "{threads}"), threads = threads);
            let sql = format!(
                "SELECT a.room_id, {thread}, SUM(CASE WHEN a.notify THEN 1 ELSE 0 END),
                   SUM(CASE WHEN a.highlight THEN 1 ELSE 0 END)
                 FROM event_push_actions a WHERE a.user_id = $1 AND a.room_id IN ({list}) AND a.stream_ordering > {up_to}
                 GROUP BY {group}"
            );
            // In no order: with `ORDER BY stream_ordering` SQLite walked the key's index and
            // looked up every staged row of every room in the table (no index on room_id, which
            // would cost each message one more B-tree); a plain scan reads the few table pages.
            let staged_sql = format!(
                "SELECT room_id, stream_ordering, actions FROM event_push_staging WHERE room_id IN ({})",
                (1..chunk.len() + 1).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
            );
            let (found, staged): (Vec<UnreadRow>, Vec<(String, PushAction)>) = match self.0 {
                Db::Sqlite { reads, .. } => reads.with(|conn| {
                    // One snapshot for both tables (see below): a read transaction.
                    let tx = conn.unchecked_transaction()?;
                    let rooms = chunk.iter().map(|room| room as &dyn rusqlite::ToSql);
                    let found: Vec<UnreadRow> = query(
                        &tx,
                        &sql,
                        &std::iter::once(&user_id as &dyn rusqlite::ToSql).chain(rooms.clone()).collect::<Vec<_>>(),
                    )?;
                    let staged: Vec<(String, i64, String)> = query(&tx, &staged_sql, &rooms.collect::<Vec<_>>())?;
                    let mine = staged_for(staged, user_id, by_thread);
                    let mut read: HashMap<(String, String), i64> = HashMap::new();
                    for (room_id, _, _, thread) in &mine {
                        let key = (room_id.clone(), thread.clone());
                        if let std::collections::hash_map::Entry::Vacant(entry) = read.entry(key) {
                            let position: Vec<(i64,)> = query(&tx, READ_POSITION, &[room_id, &user_id, thread])?;
                            entry.insert(position.first().map_or(0, |p| p.0));
                        }
                    }
                    tx.commit()?;
                    Ok((found, unread_staged(mine, &read)))
                })?,
                Db::Postgres(pool) => {
                    // One snapshot for both tables: a move between the two reads would otherwise
                    // count an action twice or not at all.
                    let mut tx = pool.begin().await?;
                    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").execute(&mut *tx).await?;
                    let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone())).bind(user_id);
                    for room in chunk {
                        query = query.bind(room);
                    }
                    let found: Vec<UnreadRow> = query.fetch_all(&mut *tx).await?;
                    let mut query = sqlx::query_as(sqlx::AssertSqlSafe(staged_sql.clone()));
                    for room in chunk {
                        query = query.bind(room);
                    }
                    let staged: Vec<(String, i64, String)> = query.fetch_all(&mut *tx).await?;
                    let mine = staged_for(staged, user_id, by_thread);
                    // The user's read positions of the rooms (and threads) with staged actions.
                    let mut read: HashMap<(String, String), i64> = HashMap::new();
                    for (room_id, _, _, thread) in &mine {
                        let key = (room_id.clone(), thread.clone());
                        if read.contains_key(&key) {
                            continue;
                        }
                        let position: i64 = sqlx::query_scalar(READ_POSITION)
                            .bind(room_id)
                            .bind(user_id)
                            .bind(thread)
                            .fetch_one(&mut *tx)
                            .await?;
                        read.insert(key, position);
                    }
                    tx.commit().await?;
                    (found, unread_staged(mine, &read))
                }
            };
            rows.extend(found);
            for (room_id, action) in staged {
                let thread = if by_thread { action.thread_id.clone() } else { None };
                let i = match rows.iter().position(|row| row.0 == room_id && row.1 == thread) {
                    Some(i) => i,
                    None => {
                        rows.push((room_id, thread, 0, 0));
                        rows.len() - 1
                    }
                };
                rows[i].2 += i64::from(action.notify);
                rows[i].3 += i64::from(action.highlight);
            }
        }
        Ok(rows)
    }

    /// The user's notifications before stream position `before` (newest first), `limit` of
    /// them, only highlights when `highlights_only`, each marked read or not.
    pub async fn notifications(
        &self,
        user_id: &str,
        before: i64,
        limit: i64,
        highlights_only: bool,
    ) -> Result<Vec<NotificationRow>> {
        let sql = concat!(
            "SELECT a.stream_ordering, a.room_id, a.event_id, a.actions, a.stream_ordering <= ",
            read_up_to!("a.room_id", "$1", "('', 'main', COALESCE(a.thread_id, 'main'))"),
            " AS read FROM event_push_actions a WHERE a.user_id = $1 AND a.stream_ordering < $2
               AND (a.highlight OR NOT $3) ORDER BY a.stream_ordering DESC LIMIT $4"
        );
        self.rotate_if_staged().await;
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_as(sql).bind(user_id).bind(before).bind(highlights_only).bind(limit).fetch_all(pool).await?
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::staged_for;
    use crate::PushAction;

    fn row(position: i64, users: &[&str]) -> (String, i64, String) {
        let actions: Vec<PushAction> = users
            .iter()
            .map(|u| PushAction {
                user_id: (*u).to_owned(),
                notify: true,
                highlight: false,
                thread_id: None,
                actions: r#"["notify"]"#.to_owned(),
            })
            .collect();
        ("!room:example.org".to_owned(), position, serde_json::to_string(&actions).unwrap())
    }

    #[test]
    fn staged_actions_of_one_user() {
        let staged = vec![
            row(1, &["@a:example.org", "@b:example.org"]),
            row(2, &["@b:example.org"]),
            // A user whose ID is a prefix of another's is not matched by the other's action.
            row(3, &["@a:example.org.uk"]),
            row(4, &["@a:example.org"]),
        ];
        let mine = staged_for(staged.clone(), "@a:example.org", false);
        assert_eq!(mine.iter().map(|m| m.1).collect::<Vec<_>>(), vec![1, 4]);
        assert!(mine.iter().all(|m| m.2.user_id == "@a:example.org"));
        assert!(staged_for(staged.clone(), "@c:example.org", false).is_empty());
        // An ID JSON would escape is looked for by parsing every row.
        let odd = "@\"odd:example.org";
        let staged = vec![row(5, &[odd]), row(6, &["@b:example.org"])];
        assert_eq!(staged_for(staged, odd, false).iter().map(|m| m.1).collect::<Vec<_>>(), vec![5]);
    }
}
