//! To-device messages: queued per recipient device at a stream position, delivered through
//! `/sync`, and deleted once the device syncs past them.

use crate::{
    Result,
    db::{BeginWrite, Db, next_counter, on_db},
    sqlite_reads::read_all,
};

pub struct ToDevice<'a>(pub(crate) &'a Db);

/// One message for one device.
#[derive(Debug, Clone)]
pub struct NewToDevice {
    pub user_id: String,
    pub device_id: String,
    pub content: String,
}

/// A queued message: (stream position, sender, type, content).
pub type ToDeviceRow = (i64, String, String, String);

impl ToDevice<'_> {
    /// Queues the messages of one `PUT /sendToDevice` at one stream position. None when the
    /// sender's device already used `txn_id` (the messages were queued the first time).
    pub async fn send(
        &self,
        sender: &str,
        sender_device: &str,
        txn_id: &str,
        event_type: &str,
        messages: &[NewToDevice],
        now_ms: i64,
    ) -> Result<Option<i64>> {
        on_db!(self.0, write, |pool| {
            let mut tx = pool.begin_write().await?;
            let fresh = sqlx::query(
                "INSERT INTO to_device_txns (sender, device_id, txn_id, created_ts) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (sender, device_id, txn_id) DO NOTHING",
            )
            .bind(sender)
            .bind(sender_device)
            .bind(txn_id)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if fresh == 0 {
                return Ok(None);
            }
            let stream = next_counter!(tx, "stream");
            for m in messages {
                sqlx::query(
                    "INSERT INTO to_device_messages (stream_ordering, user_id, device_id, sender, event_type, content)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (user_id, device_id, stream_ordering) DO NOTHING",
                )
                .bind(stream)
                .bind(&m.user_id)
                .bind(&m.device_id)
                .bind(sender)
                .bind(event_type)
                .bind(&m.content)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(Some(stream))
        })
    }

    /// The device's messages up to `upto`, oldest first, at most `limit`.
    pub async fn pending(&self, user_id: &str, device_id: &str, upto: i64, limit: i64) -> Result<Vec<ToDeviceRow>> {
        let rows = read_all!(
            self.0,
            ToDeviceRow,
            "SELECT stream_ordering, sender, event_type, content FROM to_device_messages
             WHERE user_id = $1 AND device_id = $2 AND stream_ordering <= $3
             ORDER BY stream_ordering LIMIT $4",
            user_id,
            device_id,
            upto,
            limit
        );
        Ok(rows)
    }

    /// Deletes the device's messages up to `upto`: it has received them.
    pub async fn acknowledge(&self, user_id: &str, device_id: &str, upto: i64) -> Result<u64> {
        Ok(on_db!(self.0, write, |pool| {
            sqlx::query(
                "DELETE FROM to_device_messages WHERE user_id = $1 AND device_id = $2 AND stream_ordering <= $3",
            )
            .bind(user_id)
            .bind(device_id)
            .bind(upto)
            .execute(pool)
            .await?
            .rows_affected()
        }))
    }
}
