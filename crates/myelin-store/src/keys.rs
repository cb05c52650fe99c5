//! End-to-end encryption keys: device keys, one-time and fallback keys, cross-signing keys,
//! uploaded signatures, and the device-list change stream that tells other users' clients to
//! fetch keys again. Every change of what `/keys/query` returns records a device-list change in
//! the same transaction.

use crate::{
    Result,
    db::{BeginWrite, Db, next_counter, on_db},
};

pub struct Keys<'a>(pub(crate) &'a Db);

/// A one-time or fallback key as uploaded: (`algorithm:key_id`, algorithm, JSON).
#[derive(Debug, Clone)]
pub struct OneTimeKeyRow {
    pub key_id: String,
    pub algorithm: String,
    pub key_json: String,
}

/// A signature one user made of a key (a device's or a cross-signing key).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KeySignatureRow {
    pub target_user_id: String,
    pub target_key_id: String,
    pub signer_user_id: String,
    pub signer_key_id: String,
    pub signature: String,
}

/// Records that `$user`'s keys changed, at a new stream position, inside `$tx`; evaluates to
/// the position.
macro_rules! record_change {
    ($tx:ident, $user:expr) => {{
        let stream = next_counter!($tx, "stream");
        sqlx::query("INSERT INTO device_list_changes (stream_ordering, user_id) VALUES ($1, $2)")
            .bind(stream)
            .bind($user)
            .execute(&mut *$tx)
            .await?;
        stream
    }};
}

impl Keys<'_> {
    pub async fn device_keys(&self, user_id: &str, device_id: &str) -> Result<Option<String>> {
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_scalar("SELECT key_json FROM device_keys WHERE user_id = $1 AND device_id = $2")
                .bind(user_id)
                .bind(device_id)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// (device ID, keys) of every device of the user that uploaded keys.
    pub async fn device_keys_of_user(&self, user_id: &str) -> Result<Vec<(String, String)>> {
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_as("SELECT device_id, key_json FROM device_keys WHERE user_id = $1 ORDER BY device_id")
                .bind(user_id)
                .fetch_all(pool)
                .await?
        }))
    }

    /// Stores a device's keys, and the one-time and fallback keys uploaded with them, in one
    /// transaction. One-time keys already stored under the same ID are kept as they are.
    /// Returns the stream position of the device-list change when the device keys changed.
    pub async fn upload(
        &self,
        user_id: &str,
        device_id: &str,
        device_keys: Option<&str>,
        one_time_keys: &[OneTimeKeyRow],
        fallback_keys: &[OneTimeKeyRow],
    ) -> Result<Option<i64>> {
        on_db!(self.0, write, |pool| {
            let mut tx = pool.begin_write().await?;
            let mut changed = None;
            if let Some(json) = device_keys {
                let old: Option<String> =
                    sqlx::query_scalar("SELECT key_json FROM device_keys WHERE user_id = $1 AND device_id = $2")
                        .bind(user_id)
                        .bind(device_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                if old.as_deref() != Some(json) {
                    sqlx::query(
                        "INSERT INTO device_keys (user_id, device_id, key_json) VALUES ($1, $2, $3)
                         ON CONFLICT (user_id, device_id) DO UPDATE SET key_json = excluded.key_json",
                    )
                    .bind(user_id)
                    .bind(device_id)
                    .bind(json)
                    .execute(&mut *tx)
                    .await?;
                    changed = Some(record_change!(tx, user_id));
                }
            }
            for key in one_time_keys {
                sqlx::query(
                    "INSERT INTO one_time_keys (user_id, device_id, key_id, algorithm, key_json)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, device_id, key_id) DO NOTHING",
                )
                .bind(user_id)
                .bind(device_id)
                .bind(&key.key_id)
                .bind(&key.algorithm)
                .bind(&key.key_json)
                .execute(&mut *tx)
                .await?;
            }
            for key in fallback_keys {
                // The same key uploaded again keeps its `used` mark; a new key starts unused.
                sqlx::query(
                    "INSERT INTO fallback_keys (user_id, device_id, algorithm, key_id, key_json, used)
                     VALUES ($1, $2, $3, $4, $5, FALSE)
                     ON CONFLICT (user_id, device_id, algorithm) DO UPDATE SET key_id = excluded.key_id,
                       key_json = excluded.key_json, used = FALSE
                     WHERE fallback_keys.key_id <> excluded.key_id OR fallback_keys.key_json <> excluded.key_json",
                )
                .bind(user_id)
                .bind(device_id)
                .bind(&key.algorithm)
                .bind(&key.key_id)
                .bind(&key.key_json)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(changed)
        })
    }

    /// The stored JSON of those of `key_ids` the device already has.
    pub async fn one_time_keys_stored(
        &self,
        user_id: &str,
        device_id: &str,
        key_ids: &[String],
    ) -> Result<Vec<(String, String)>> {
        let mut found = Vec::new();
        for key_id in key_ids {
            let json: Option<String> = on_db!(self.0, read, |pool| {
                sqlx::query_scalar(
                    "SELECT key_json FROM one_time_keys WHERE user_id = $1 AND device_id = $2 AND key_id = $3",
                )
                .bind(user_id)
                .bind(device_id)
                .bind(key_id)
                .fetch_optional(pool)
                .await?
            });
            if let Some(json) = json {
                found.push((key_id.clone(), json));
            }
        }
        Ok(found)
    }

    /// (algorithm, count) of the device's unclaimed one-time keys.
    pub async fn one_time_key_counts(&self, user_id: &str, device_id: &str) -> Result<Vec<(String, i64)>> {
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_as(
                "SELECT algorithm, COUNT(*) FROM one_time_keys WHERE user_id = $1 AND device_id = $2
                 GROUP BY algorithm",
            )
            .bind(user_id)
            .bind(device_id)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Algorithms of the device's fallback keys not handed out yet.
    pub async fn unused_fallback_key_types(&self, user_id: &str, device_id: &str) -> Result<Vec<String>> {
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_scalar(
                "SELECT algorithm FROM fallback_keys WHERE user_id = $1 AND device_id = $2 AND NOT used
                 ORDER BY algorithm",
            )
            .bind(user_id)
            .bind(device_id)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Claims one key of `algorithm` of a device: a one-time key, removed so that no one else
    /// gets it, else the fallback key (marked used, kept). (key ID, JSON), or None.
    pub async fn claim(&self, user_id: &str, device_id: &str, algorithm: &str) -> Result<Option<(String, String)>> {
        // Concurrent claims may pick the same candidate: the DELETE decides who gets it, and
        // the loser tries the next one.
        loop {
            let candidate: Option<String> = on_db!(self.0, write, |pool| {
                sqlx::query_scalar(
                    "SELECT key_id FROM one_time_keys WHERE user_id = $1 AND device_id = $2 AND algorithm = $3
                     ORDER BY key_id LIMIT 1",
                )
                .bind(user_id)
                .bind(device_id)
                .bind(algorithm)
                .fetch_optional(pool)
                .await?
            });
            let Some(key_id) = candidate else { break };
            let claimed: Option<String> = on_db!(self.0, write, |pool| {
                sqlx::query_scalar(
                    "DELETE FROM one_time_keys WHERE user_id = $1 AND device_id = $2 AND key_id = $3
                     RETURNING key_json",
                )
                .bind(user_id)
                .bind(device_id)
                .bind(&key_id)
                .fetch_optional(pool)
                .await?
            });
            if let Some(json) = claimed {
                return Ok(Some((key_id, json)));
            }
        }
        Ok(on_db!(self.0, write, |pool| {
            sqlx::query_as(
                "UPDATE fallback_keys SET used = TRUE WHERE user_id = $1 AND device_id = $2 AND algorithm = $3
                 RETURNING key_id, key_json",
            )
            .bind(user_id)
            .bind(device_id)
            .bind(algorithm)
            .fetch_optional(pool)
            .await?
        }))
    }

    /// The user's cross-signing key of a type ("master", "self_signing", "user_signing").
    pub async fn cross_signing_key(&self, user_id: &str, key_type: &str) -> Result<Option<String>> {
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_scalar("SELECT key_json FROM cross_signing_keys WHERE user_id = $1 AND key_type = $2")
                .bind(user_id)
                .bind(key_type)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// Stores cross-signing keys, (type, JSON), and records the change; returns its position.
    /// A new master key voids the signatures made of the user's old keys.
    pub async fn set_cross_signing_keys(&self, user_id: &str, keys: &[(&str, String)]) -> Result<i64> {
        on_db!(self.0, write, |pool| {
            let mut tx = pool.begin_write().await?;
            for (key_type, json) in keys {
                sqlx::query(
                    "INSERT INTO cross_signing_keys (user_id, key_type, key_json) VALUES ($1, $2, $3)
                     ON CONFLICT (user_id, key_type) DO UPDATE SET key_json = excluded.key_json",
                )
                .bind(user_id)
                .bind(key_type)
                .bind(json)
                .execute(&mut *tx)
                .await?;
            }
            let stream = record_change!(tx, user_id);
            tx.commit().await?;
            Ok(stream)
        })
    }

    /// Adds signatures (replacing one by the same signer key of the same target) and records a
    /// change of every target user; returns the last position.
    pub async fn add_signatures(&self, signatures: &[KeySignatureRow]) -> Result<Option<i64>> {
        if signatures.is_empty() {
            return Ok(None);
        }
        on_db!(self.0, write, |pool| {
            let mut tx = pool.begin_write().await?;
            let mut targets: Vec<&str> = Vec::new();
            for s in signatures {
                sqlx::query(
                    "INSERT INTO key_signatures (target_user_id, target_key_id, signer_user_id, signer_key_id, signature)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (target_user_id, target_key_id, signer_user_id, signer_key_id)
                     DO UPDATE SET signature = excluded.signature",
                )
                .bind(&s.target_user_id)
                .bind(&s.target_key_id)
                .bind(&s.signer_user_id)
                .bind(&s.signer_key_id)
                .bind(&s.signature)
                .execute(&mut *tx)
                .await?;
                if !targets.contains(&s.target_user_id.as_str()) {
                    targets.push(&s.target_user_id);
                }
            }
            let mut last = None;
            for target in targets {
                last = Some(record_change!(tx, target));
            }
            tx.commit().await?;
            Ok(last)
        })
    }

    /// The uploaded signatures of a user's keys.
    pub async fn signatures_of(&self, target_user_id: &str) -> Result<Vec<KeySignatureRow>> {
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_as(
                "SELECT target_user_id, target_key_id, signer_user_id, signer_key_id, signature
                 FROM key_signatures WHERE target_user_id = $1",
            )
            .bind(target_user_id)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Records that the user's devices changed (renamed, say); returns the position.
    pub async fn record_device_list_change(&self, user_id: &str) -> Result<i64> {
        on_db!(self.0, write, |pool| {
            let mut tx = pool.begin_write().await?;
            let stream = record_change!(tx, user_id);
            tx.commit().await?;
            Ok(stream)
        })
    }

    /// The position of the user's latest device list change (0 if none): the `stream_id`
    /// other servers see in `/user/devices`.
    pub async fn latest_device_list_change(&self, user_id: &str) -> Result<i64> {
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_scalar::<_, Option<i64>>(
                "SELECT MAX(stream_ordering) FROM device_list_changes WHERE user_id = $1",
            )
            .bind(user_id)
            .fetch_one(pool)
            .await?
            .unwrap_or(0)
        }))
    }

    /// Users whose keys changed after `since` up to `upto`, among `user_id` and the users
    /// sharing a joined room with them.
    pub async fn device_list_changes(&self, user_id: &str, since: i64, upto: i64) -> Result<Vec<String>> {
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_scalar(
                "SELECT DISTINCT c.user_id FROM device_list_changes c
                 WHERE c.stream_ordering > $2 AND c.stream_ordering <= $3
                   AND (c.user_id = $1 OR c.user_id IN (
                     SELECT other.user_id FROM memberships mine
                     JOIN memberships other ON other.room_id = mine.room_id AND other.membership = 'join'
                     WHERE mine.user_id = $1 AND mine.membership = 'join'))
                 ORDER BY c.user_id",
            )
            .bind(user_id)
            .bind(since)
            .bind(upto)
            .fetch_all(pool)
            .await?
        }))
    }

    /// (user, membership) of memberships that changed after `since` up to `upto` in rooms the
    /// user is or was a member of, the user's own included.
    pub async fn membership_changes_around(
        &self,
        user_id: &str,
        since: i64,
        upto: i64,
    ) -> Result<Vec<(String, String, String)>> {
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_as(
                "SELECT other.room_id, other.user_id, other.membership FROM memberships mine
                 JOIN memberships other ON other.room_id = mine.room_id
                 WHERE mine.user_id = $1 AND mine.membership IN ('join', 'leave', 'ban')
                   AND other.stream_ordering > $2 AND other.stream_ordering <= $3",
            )
            .bind(user_id)
            .bind(since)
            .bind(upto)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Users sharing a joined room with the user (the user included when in a room).
    pub async fn users_sharing_a_room(&self, user_id: &str) -> Result<Vec<String>> {
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_scalar(
                "SELECT DISTINCT other.user_id FROM memberships mine
                 JOIN memberships other ON other.room_id = mine.room_id AND other.membership = 'join'
                 WHERE mine.user_id = $1 AND mine.membership = 'join'",
            )
            .bind(user_id)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Joined members of a room.
    pub async fn joined_members(&self, room_id: &str) -> Result<Vec<String>> {
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_scalar("SELECT user_id FROM memberships WHERE room_id = $1 AND membership = 'join'")
                .bind(room_id)
                .fetch_all(pool)
                .await?
        }))
    }
}
