//! Relations: `/relations` (with `recurse`), `/threads`, and the aggregations every event
//! carries in `unsigned.m.relations` (thread summary, latest edit, references).

use crate::{
    pdu::Pdu,
    read::{Viewer, Visibility, make_token, parse_token},
    service::RoomService,
};
use myelin_core::{Error, Result};
use myelin_store::EventRow;
use ruma::RoomId;
use serde_json::{Value, json};

/// How deep `recurse=true` follows relations of relations (the spec lets servers cap it; 3 is
/// what it suggests).
pub const MAX_RECURSION_DEPTH: u64 = 3;

/// A page of related events.
#[derive(Debug, Default)]
pub struct RelationsPage {
    pub chunk: Vec<Value>,
    pub next_batch: Option<String>,
    pub prev_batch: Option<String>,
    pub recursion_depth: Option<u64>,
}

/// What `/relations` asks for.
#[derive(Debug, Clone, Default)]
pub struct RelationsQuery<'a> {
    pub rel_type: Option<&'a str>,
    pub event_type: Option<&'a str>,
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub forwards: bool,
    pub limit: usize,
    pub recurse: bool,
}

impl RoomService {
    /// The events relating to `parent` that the viewer may see.
    pub async fn relations_for(
        &self,
        viewer: Viewer<'_>,
        room_id: &RoomId,
        parent: &str,
        query: RelationsQuery<'_>,
    ) -> Result<RelationsPage> {
        // The parent must exist in this room and be visible.
        self.event_for(viewer, room_id, parent).await?;
        let limit = query.limit.clamp(1, 1000);
        // Exclusive store bounds from the tokens (see `parse_token`).
        let from = match query.from {
            Some(token) if query.forwards => parse_token(token)?,
            Some(token) => parse_token(token)? + 1,
            None if query.forwards => 0,
            None => i64::MAX,
        };
        let to = query.to.map(parse_token).transpose()?.map(|t| if query.forwards { t + 1 } else { t });
        let rooms = self.store.rooms();
        // Breadth-first through relations of relations, up to the cap, then one page of all.
        let mut parents = vec![parent.to_owned()];
        let mut depth = 0;
        let mut rows: Vec<EventRow> = Vec::new();
        loop {
            let mut next = Vec::new();
            for p in &parents {
                let found = rooms
                    .relating_events(p, query.rel_type, query.event_type, from, to, query.forwards, limit as i64 + 1)
                    .await?;
                next.extend(found.iter().map(|r| r.event_id.clone()));
                rows.extend(found);
            }
            depth += 1;
            if !query.recurse || next.is_empty() || depth >= MAX_RECURSION_DEPTH {
                break;
            }
            parents = next;
        }
        rows.retain(|row| row.room_id == room_id.as_str());
        rows.sort_by_key(|row| row.stream_ordering);
        if !query.forwards {
            rows.reverse();
        }
        rows.dedup_by(|a, b| a.event_id == b.event_id);
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next_batch = more
            .then(|| {
                rows.last()
                    .map(|row| make_token(if query.forwards { row.stream_ordering } else { row.stream_ordering - 1 }))
            })
            .flatten();
        let mut visibility = Visibility::new(self, room_id, viewer.user).await?;
        let mut chunk = Vec::with_capacity(rows.len());
        for row in rows {
            let (visible, membership) = visibility.check(&row).await?;
            if visible {
                let pdu = Pdu::from_stored(&row.event_id, &row.json)?;
                chunk.push(self.client_event(&row, &pdu, viewer, membership).await?);
            }
        }
        Ok(RelationsPage {
            chunk,
            next_batch,
            prev_batch: query.from.map(str::to_owned),
            recursion_depth: query.recurse.then_some(depth),
        })
    }

    /// Thread roots of the room, latest activity first; `participated` keeps those the viewer
    /// started or replied in.
    pub async fn threads_for(
        &self,
        viewer: Viewer<'_>,
        room_id: &RoomId,
        participated: bool,
        from: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Value>, Option<String>)> {
        self.known_room(room_id).await?;
        let limit = limit.clamp(1, 100);
        // Roots whose latest reply is at or before the token's position.
        let before = match from {
            Some(token) => parse_token(token)? + 1,
            None => i64::MAX,
        };
        let participant = participated.then_some(viewer.user.as_str());
        let roots = self.store.rooms().thread_roots(room_id.as_str(), before, participant, limit as i64).await?;
        let next_batch =
            (roots.len() == limit).then(|| roots.last().map(|(_, latest)| make_token(*latest - 1))).flatten();
        let mut visibility = Visibility::new(self, room_id, viewer.user).await?;
        let mut chunk = Vec::new();
        for (root, _) in roots {
            let Some((row, pdu)) = self.pdu(&root).await? else { continue };
            if row.room_id != room_id.as_str() {
                continue;
            }
            let (visible, membership) = visibility.check(&row).await?;
            if visible {
                chunk.push(self.client_event(&row, &pdu, viewer, membership).await?);
            }
        }
        Ok((chunk, next_batch))
    }

    /// `unsigned.m.relations` of an event: the thread summary, the latest edit by the original
    /// sender, and the references. None when nothing relates to it.
    pub(crate) async fn aggregations(
        &self,
        pdu: &Pdu,
        viewer: Viewer<'_>,
        relations: &[myelin_store::RelationRow],
    ) -> Result<Option<Value>> {
        if relations.is_empty() {
            return Ok(None);
        }
        let mut out = serde_json::Map::new();
        let thread: Vec<_> = relations.iter().filter(|r| r.rel_type == "m.thread").collect();
        if let Some(latest) = thread.last() {
            let participated = pdu.sender == viewer.user || thread.iter().any(|r| r.sender == viewer.user.as_str());
            let latest_event = match self.pdu(&latest.event_id).await? {
                Some((row, latest_pdu)) => self.plain_event_with_age(&row, &latest_pdu),
                None => Value::Null,
            };
            out.insert(
                "m.thread".into(),
                json!({ "latest_event": latest_event, "count": thread.len(), "current_user_participated": participated }),
            );
        }
        // Edits count only from the original sender; the latest one wins.
        if let Some(edit) = relations
            .iter()
            .filter(|r| r.rel_type == "m.replace" && r.sender == pdu.sender.as_str())
            .max_by_key(|r| r.stream_ordering)
            && let Some((row, edit_pdu)) = self.pdu(&edit.event_id).await?
        {
            out.insert("m.replace".into(), self.plain_event_with_age(&row, &edit_pdu));
        }
        let references: Vec<Value> = relations
            .iter()
            .filter(|r| r.rel_type == "m.reference")
            .map(|r| json!({ "event_id": r.event_id }))
            .collect();
        if !references.is_empty() {
            out.insert("m.reference".into(), json!({ "chunk": references }));
        }
        Ok((!out.is_empty()).then_some(Value::Object(out)))
    }
}

/// Checks a relation a client is about to send: it must point to an event of the same room,
/// and a thread may not start from an event that is itself in a thread or an edit.
pub(crate) async fn check_relation(service: &RoomService, room_id: &RoomId, content: &Value) -> Result<()> {
    let Some((parent, rel_type)) = crate::service::relation_of(content) else {
        return Ok(());
    };
    let Some((row, parent_pdu)) = service.pdu(&parent).await? else {
        // Relations to unknown events are allowed (they may arrive over federation later).
        return Ok(());
    };
    if row.room_id != room_id.as_str() {
        return Err(Error::bad_json("the related event is in another room"));
    }
    if rel_type == "m.thread"
        && crate::service::relation_of(&parent_pdu.content_value())
            .is_some_and(|(_, t)| t == "m.thread" || t == "m.replace")
    {
        return Err(Error::bad_json("a thread cannot start from an event in a thread or an edit"));
    }
    Ok(())
}
