//! Federation of rooms, what the transport keeps: PDUs and EDUs waiting for each destination,
//! transactions received (so a retry is answered the same), and local users' invites to rooms
//! on other servers.

use crate::{
    Result,
    db::{BeginWrite, next_counter, on_db},
    federation::Federation,
    rooms::{insert_outlier, upsert_membership},
};

/// A PDU or EDU waiting for its destination.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct OutboxRow {
    pub id: i64,
    pub destination: String,
    /// "pdu" or "edu".
    pub kind: String,
    pub json: String,
}

/// A local user's invite to a room on another server.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct RemoteInviteRow {
    pub room_id: String,
    pub user_id: String,
    pub event_id: String,
    pub room_version: String,
    /// The stripped state the inviting server sent (a JSON list).
    pub stripped: String,
}

impl Federation<'_> {
    /// Queues one PDU or EDU for several destinations, in one transaction.
    pub async fn enqueue(&self, destinations: &[String], kind: &str, json: &str) -> Result<()> {
        if destinations.is_empty() {
            return Ok(());
        }
        on_db!(self.0, write, |pool| {
            let mut tx = pool.begin_write().await?;
            for destination in destinations {
                let id = next_counter!(tx, "outbox");
                sqlx::query("INSERT INTO federation_outbox (id, destination, kind, json) VALUES ($1, $2, $3, $4)")
                    .bind(id)
                    .bind(destination)
                    .bind(kind)
                    .bind(json)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// The oldest queued items of a destination: up to `pdus` PDUs and `edus` EDUs.
    pub async fn queued(&self, destination: &str, pdus: i64, edus: i64) -> Result<Vec<OutboxRow>> {
        let mut rows: Vec<OutboxRow> = Vec::new();
        for (kind, limit) in [("pdu", pdus), ("edu", edus)] {
            let found: Vec<OutboxRow> = on_db!(self.0, read, |pool| {
                sqlx::query_as(
                    "SELECT id, destination, kind, json FROM federation_outbox
                     WHERE destination = $1 AND kind = $2 ORDER BY id LIMIT $3",
                )
                .bind(destination)
                .bind(kind)
                .bind(limit)
                .fetch_all(pool)
                .await?
            });
            rows.extend(found);
        }
        Ok(rows)
    }

    /// Removes delivered items.
    pub async fn dequeue(&self, ids: &[i64]) -> Result<()> {
        on_db!(self.0, write, |pool| {
            let mut tx = pool.begin_write().await?;
            for id in ids {
                sqlx::query("DELETE FROM federation_outbox WHERE id = $1").bind(id).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Destinations with something queued.
    pub async fn queued_destinations(&self) -> Result<Vec<String>> {
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_scalar("SELECT DISTINCT destination FROM federation_outbox").fetch_all(pool).await?
        }))
    }

    /// The answer given to a transaction already processed.
    pub async fn transaction_response(&self, origin: &str, txn_id: &str) -> Result<Option<String>> {
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_scalar("SELECT response FROM federation_transactions_in WHERE origin = $1 AND txn_id = $2")
                .bind(origin)
                .bind(txn_id)
                .fetch_optional(pool)
                .await?
        }))
    }

    pub async fn save_transaction_response(&self, origin: &str, txn_id: &str, response: &str, now: i64) -> Result<()> {
        on_db!(self.0, write, |pool| {
            sqlx::query(
                "INSERT INTO federation_transactions_in (origin, txn_id, response, received_ts) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (origin, txn_id) DO NOTHING",
            )
            .bind(origin)
            .bind(txn_id)
            .bind(response)
            .bind(now)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Forgets received transactions older than `before` (ms): senders retry within minutes.
    pub async fn purge_transactions(&self, before: i64) -> Result<u64> {
        Ok(on_db!(self.0, write, |pool| {
            sqlx::query("DELETE FROM federation_transactions_in WHERE received_ts < $1")
                .bind(before)
                .execute(pool)
                .await?
                .rows_affected()
        }))
    }

    /// Records a local user's invite to (or knock on) a remote room, with the membership row
    /// (`membership`: "invite" or "knock") that makes it show in /sync, in one transaction.
    pub async fn save_remote_invite(
        &self,
        invite: &RemoteInviteRow,
        membership: &str,
        event_json: &str,
    ) -> Result<i64> {
        let _memberships = self.0.memberships_changing();
        on_db!(self.0, write, |pool| {
            let mut tx = pool.begin_write().await?;
            let stream_ordering = next_counter!(tx, "stream");
            insert_outlier!(tx, &invite.event_id, &invite.room_id, event_json);
            sqlx::query(
                "INSERT INTO remote_invites (room_id, user_id, event_id, room_version, stripped)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (room_id, user_id) DO UPDATE SET event_id = excluded.event_id,
                   room_version = excluded.room_version, stripped = excluded.stripped",
            )
            .bind(&invite.room_id)
            .bind(&invite.user_id)
            .bind(&invite.event_id)
            .bind(&invite.room_version)
            .bind(&invite.stripped)
            .execute(&mut *tx)
            .await?;
            upsert_membership!(tx, &invite.room_id, &invite.user_id, membership, &invite.event_id, stream_ordering);
            tx.commit().await?;
            Ok(stream_ordering)
        })
    }

    pub async fn remote_invite(&self, room_id: &str, user_id: &str) -> Result<Option<RemoteInviteRow>> {
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_as(
                "SELECT room_id, user_id, event_id, room_version, stripped FROM remote_invites
                 WHERE room_id = $1 AND user_id = $2",
            )
            .bind(room_id)
            .bind(user_id)
            .fetch_optional(pool)
            .await?
        }))
    }

    /// A local user rejected an invite to a remote room: the leave event is kept, the invite
    /// dropped and the membership becomes "leave", in one transaction.
    pub async fn reject_remote_invite(&self, room_id: &str, user_id: &str, event_id: &str, json: &str) -> Result<i64> {
        let _memberships = self.0.memberships_changing();
        on_db!(self.0, write, |pool| {
            let mut tx = pool.begin_write().await?;
            let stream_ordering = next_counter!(tx, "stream");
            insert_outlier!(tx, event_id, room_id, json);
            sqlx::query("DELETE FROM remote_invites WHERE room_id = $1 AND user_id = $2")
                .bind(room_id)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE memberships SET membership = 'leave', event_id = $3, stream_ordering = $4
                 WHERE room_id = $1 AND user_id = $2",
            )
            .bind(room_id)
            .bind(user_id)
            .bind(event_id)
            .bind(stream_ordering)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(stream_ordering)
        })
    }

    /// The invite (or knock) is over: the user joined the room.
    pub async fn forget_remote_invite(&self, room_id: &str, user_id: &str) -> Result<()> {
        on_db!(self.0, write, |pool| {
            sqlx::query("DELETE FROM remote_invites WHERE room_id = $1 AND user_id = $2")
                .bind(room_id)
                .bind(user_id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }
}
