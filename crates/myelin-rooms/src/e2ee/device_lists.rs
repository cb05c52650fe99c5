//! Device-list tracking: which users' keys a client must fetch again (`changed`) and which it
//! may stop tracking because no room is shared any more (`left`), between two stream positions.
//! Used by `/sync` (`device_lists`) and `/keys/changes`.

use crate::{read::parse_sync_token, service::RoomService};
use myelin_core::Result;
use ruma::UserId;
use std::collections::{BTreeSet, HashSet};

impl RoomService {
    /// (changed, left) for `user` after `since` up to `upto`.
    pub async fn device_list_updates(
        &self,
        user: &UserId,
        since: i64,
        upto: i64,
    ) -> Result<(BTreeSet<String>, BTreeSet<String>)> {
        let keys = self.store.keys();
        let mut changed: BTreeSet<String> =
            keys.device_list_changes(user.as_str(), since, upto).await?.into_iter().collect();
        let mut maybe_left = BTreeSet::new();
        let moves = keys.membership_changes_around(user.as_str(), since, upto).await?;
        if moves.is_empty() {
            return Ok((changed, BTreeSet::new()));
        }
        let sharing: HashSet<String> = keys.users_sharing_a_room(user.as_str()).await?.into_iter().collect();
        for (room_id, member, membership) in moves {
            match (member == user.as_str(), membership.as_str()) {
                // Someone new shares a room: their devices may be new to the client.
                (false, "join") => {
                    changed.insert(member);
                }
                // The user joined: every member of the room may be new to them.
                (true, "join") => changed.extend(keys.joined_members(&room_id).await?),
                (false, "leave" | "ban") => {
                    maybe_left.insert(member);
                }
                (true, "leave" | "ban") => maybe_left.extend(keys.joined_members(&room_id).await?),
                _ => {}
            }
        }
        let left: BTreeSet<String> =
            maybe_left.into_iter().filter(|u| u != user.as_str() && !sharing.contains(u)).collect();
        changed.retain(|u| !left.contains(u) && (u == user.as_str() || sharing.contains(u)));
        Ok((changed, left))
    }

    /// The user's devices changed outside the keys API (a local device renamed, a remote
    /// user's update): other clients refetch.
    pub async fn device_list_changed(&self, user: &UserId) -> Result<()> {
        self.changes.begin(crate::changes::DEVICE_LISTS_KEY);
        let written = self.store.keys().record_device_list_change(user.as_str()).await;
        self.changes.finish(crate::changes::DEVICE_LISTS_KEY, written.as_ref().ok().copied());
        let stream = written?;
        self.advance_stream(stream);
        Ok(())
    }

    /// A local device was renamed: also tells the servers sharing a room with the user.
    pub async fn device_renamed(&self, user: &UserId, device_id: &str) -> Result<()> {
        self.device_list_changed(user).await?;
        let stream = self.store.rooms().max_stream().await?;
        self.announce_device_change(user, Some(device_id), stream).await;
        Ok(())
    }

    /// Local devices were deleted (after `wake_syncs`): the servers sharing a room with the
    /// user are told.
    pub async fn devices_deleted(&self, user: &UserId, device_ids: &[String]) -> Result<()> {
        let stream = self.store.rooms().max_stream().await?;
        for device_id in device_ids {
            self.announce_device_change(user, Some(device_id), stream).await;
        }
        Ok(())
    }

    /// Call before the accounts service deletes devices (which records device-list changes in
    /// the store), then `wake_syncs` whatever the outcome.
    pub fn device_lists_changing(&self) {
        self.changes.begin(crate::changes::DEVICE_LISTS_KEY);
    }

    /// Ends what `device_lists_changing` began and wakes waiting syncs: they look at the latest
    /// position.
    pub async fn wake_syncs(&self) -> Result<()> {
        let stream = self.store.rooms().max_stream().await;
        self.changes.finish(crate::changes::DEVICE_LISTS_KEY, stream.as_ref().ok().copied());
        // Deleted devices' keys are gone; a new login may reuse a device ID, so its cached
        // counts must not outlive it (deletions are rare: drop them all).
        self.key_counts.lock().unwrap_or_else(|e| e.into_inner()).clear();
        let stream = stream?;
        self.advance_stream(stream);
        Ok(())
    }

    /// `GET /keys/changes?from=&to=`: both are `/sync` tokens.
    pub async fn key_changes(&self, user: &UserId, from: &str, to: &str) -> Result<(Vec<String>, Vec<String>)> {
        let (from, _) = parse_sync_token(from)?;
        let (to, _) = parse_sync_token(to)?;
        let (changed, left) = self.device_list_updates(user, from, to.max(from)).await?;
        Ok((changed.into_iter().collect(), left.into_iter().collect()))
    }
}
