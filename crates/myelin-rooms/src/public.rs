//! The public room directory: which rooms are published, and their summaries.

use crate::service::RoomService;
use myelin_core::{Error, Result};
use ruma::{
    RoomAliasId, RoomId, UInt, UserId,
    directory::{PublicRoomsChunk, PublicRoomsChunkInit, RoomTypeFilter},
    room::{JoinRuleKind, RoomType},
};
use serde_json::Value;

/// A page of the directory: rooms, next and previous tokens, and the total.
#[derive(Debug, Default)]
pub struct DirectoryPage {
    pub chunk: Vec<PublicRoomsChunk>,
    pub next_batch: Option<String>,
    pub prev_batch: Option<String>,
    pub total: u64,
}

fn parse_since(since: Option<&str>) -> Result<usize> {
    match since {
        None => Ok(0),
        Some(token) => token
            .strip_prefix('o')
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| Error::invalid_param(format!("`{token}` is not a directory token of this server"))),
    }
}

impl RoomService {
    /// Published rooms matching the search term and room types, largest first.
    pub async fn public_rooms(
        &self,
        search: Option<&str>,
        room_types: &[RoomTypeFilter],
        since: Option<&str>,
        limit: Option<usize>,
    ) -> Result<DirectoryPage> {
        let offset = parse_since(since)?;
        let mut rooms = Vec::new();
        for room_id in self.store.rooms().published_rooms().await? {
            let room_id = RoomId::parse(room_id).map_err(Error::internal)?;
            let summary = self.room_summary(&room_id).await?;
            let term = search.map(str::to_lowercase);
            let matches_term = term.as_ref().is_none_or(|term| {
                [
                    summary.name.as_deref(),
                    summary.topic.as_deref(),
                    summary.canonical_alias.as_ref().map(|a| a.as_str()),
                ]
                .into_iter()
                .flatten()
                .any(|field| field.to_lowercase().contains(term.as_str()))
            });
            let matches_type = room_types.is_empty()
                || room_types.iter().any(|filter| match (filter, &summary.room_type) {
                    (RoomTypeFilter::Default, None) => true,
                    (RoomTypeFilter::Space, Some(RoomType::Space)) => true,
                    (other, Some(kind)) => other.as_str() == Some(kind.as_str()),
                    _ => false,
                });
            if matches_term && matches_type {
                rooms.push(summary);
            }
        }
        rooms.sort_by(|a, b| b.num_joined_members.cmp(&a.num_joined_members).then(a.room_id.cmp(&b.room_id)));
        let total = rooms.len() as u64;
        let limit = limit.unwrap_or(usize::MAX).max(1);
        let next_batch = (offset.saturating_add(limit) < rooms.len()).then(|| format!("o{}", offset + limit));
        let prev_batch = (offset > 0).then(|| format!("o{}", offset.saturating_sub(limit)));
        let chunk = rooms.into_iter().skip(offset).take(limit).collect();
        Ok(DirectoryPage { chunk, next_batch, prev_batch, total })
    }

    /// A room as the directory shows it, from its current state.
    async fn room_summary(&self, room_id: &RoomId) -> Result<PublicRoomsChunk> {
        let content = async |kind: &str| -> Result<Value> {
            Ok(self.current_state_event(room_id, kind, "").await?.map(|p| p.content_value()).unwrap_or_default())
        };
        let joined =
            self.store.rooms().members(room_id.as_str()).await?.iter().filter(|m| m.membership == "join").count();
        let history = content("m.room.history_visibility").await?;
        let guest = content("m.room.guest_access").await?;
        let mut chunk: PublicRoomsChunk = PublicRoomsChunkInit {
            num_joined_members: UInt::new(joined as u64).unwrap_or_default(),
            room_id: room_id.to_owned(),
            world_readable: history["history_visibility"] == "world_readable",
            guest_can_join: guest["guest_access"] == "can_join",
        }
        .into();
        chunk.name = content("m.room.name").await?["name"].as_str().map(str::to_owned);
        chunk.topic = content("m.room.topic").await?["topic"].as_str().map(str::to_owned);
        chunk.canonical_alias =
            content("m.room.canonical_alias").await?["alias"].as_str().and_then(|a| RoomAliasId::parse(a).ok());
        chunk.avatar_url = content("m.room.avatar").await?["url"].as_str().map(Into::into);
        chunk.join_rule = content("m.room.join_rules").await?["join_rule"]
            .as_str()
            .map(JoinRuleKind::from)
            .unwrap_or(JoinRuleKind::Invite);
        chunk.room_type = content("m.room.create").await?["type"].as_str().map(RoomType::from);
        Ok(chunk)
    }

    /// Whether the room is in the directory.
    pub async fn is_published(&self, room_id: &RoomId) -> Result<bool> {
        let row = self.store.rooms().room(room_id.as_str()).await?;
        Ok(row.ok_or_else(|| Error::not_found("this server knows no such room"))?.published)
    }

    /// Publishes or hides a room: members with the power to set its canonical alias may, and
    /// server admins.
    pub async fn set_published(&self, user: &UserId, is_admin: bool, room_id: &RoomId, published: bool) -> Result<()> {
        self.known_room(room_id).await?;
        if !is_admin {
            if self.membership_of(room_id, user).await?.as_deref() != Some("join") {
                return Err(Error::forbidden("you are not joined to this room"));
            }
            let power = self.power_levels(room_id).await?;
            let mine = power["users"][user.as_str()].as_i64().or(power["users_default"].as_i64()).unwrap_or(0);
            let needed =
                power["events"]["m.room.canonical_alias"].as_i64().or(power["state_default"].as_i64()).unwrap_or(50);
            if mine < needed {
                return Err(Error::forbidden("you lack the power to publish this room"));
            }
        }
        self.store.rooms().set_published(room_id.as_str(), published).await?;
        Ok(())
    }
}

impl RoomService {
    /// `POST /user_directory/search`: users who share a room with the searcher or are in a
    /// public room, matching the term; and whether there were more than `limit`.
    pub async fn search_users(
        &self,
        searcher: &UserId,
        term: &str,
        limit: usize,
    ) -> Result<(Vec<(String, Option<String>, Option<String>)>, bool)> {
        let limit = limit.clamp(1, 100);
        let term = term.trim().to_lowercase();
        let mut users = self.store.rooms().search_users(searcher.as_str(), &term, limit as i64 + 1).await?;
        let limited = users.len() > limit;
        users.truncate(limit);
        Ok((users, limited))
    }
}
