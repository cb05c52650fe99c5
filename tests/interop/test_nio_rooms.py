"""Rooms and sync through matrix-nio: two real clients create, invite, join and talk.

nio drives everything the way a client app does: room_create, room_invite, join, room_send
(with its own transaction IDs) and sync loops with since tokens; the messages each client
receives come out of nio's own parsing of our /sync responses.
"""

import secrets

import pytest
from nio import (AsyncClient, AsyncClientConfig, JoinResponse, RegisterResponse, RoomMemberEvent,
                 RoomCreateResponse, RoomInviteResponse, RoomMessagesResponse, RoomMessageText,
                 RoomSendResponse, SyncResponse)

pytestmark = pytest.mark.asyncio

CONFIG = AsyncClientConfig(max_limit_exceeded=0, max_timeouts=0, request_timeout=30)
PASSWORD = "correct horse battery staple"


async def registered(url: str) -> AsyncClient:
    name = "nio_" + secrets.token_hex(4)
    client = AsyncClient(url, name, config=CONFIG)
    resp = await client.register(name, PASSWORD, device_name="nio rooms")
    assert isinstance(resp, RegisterResponse), f"register failed: {resp}"
    return client


async def sync_until(client: AsyncClient, predicate, attempts: int = 10):
    """Syncs (long-polling) until `predicate(response)` holds; returns that response."""
    for _ in range(attempts):
        resp = await client.sync(timeout=3000)
        assert isinstance(resp, SyncResponse), f"sync failed: {resp}"
        if predicate(resp):
            return resp
    raise AssertionError("the awaited sync never came")


async def test_two_clients_talk_in_a_room(homeserver_url):
    alice = await registered(homeserver_url)
    bob = await registered(homeserver_url)
    try:
        await alice.sync(timeout=0)
        await bob.sync(timeout=0)

        created = await alice.room_create(name="nio chat", topic="interop")
        assert isinstance(created, RoomCreateResponse), f"room_create failed: {created}"
        room_id = created.room_id

        invited = await alice.room_invite(room_id, bob.user_id)
        assert isinstance(invited, RoomInviteResponse), f"invite failed: {invited}"
        await sync_until(bob, lambda r: room_id in r.rooms.invite)
        invite_room = bob.invited_rooms[room_id]
        assert invite_room.name == "nio chat", invite_room.name

        joined = await bob.join(room_id)
        assert isinstance(joined, JoinResponse), f"join failed: {joined}"

        sent = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "hello bob"})
        assert isinstance(sent, RoomSendResponse), f"send failed: {sent}"

        def has_text(resp, body):
            room = resp.rooms.join.get(room_id)
            return room is not None and any(
                isinstance(e, RoomMessageText) and e.body == body for e in room.timeline.events)

        await sync_until(bob, lambda r: has_text(r, "hello bob"))
        assert bob.rooms[room_id].display_name == "nio chat"
        assert bob.user_id in bob.rooms[room_id].users and alice.user_id in bob.rooms[room_id].users

        reply = await bob.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "hi alice"})
        assert isinstance(reply, RoomSendResponse), f"send failed: {reply}"
        await sync_until(alice, lambda r: has_text(r, "hi alice"))

        # History, paged back with /messages from alice's latest sync token.
        history = await alice.room_messages(room_id, start=alice.next_batch, limit=50)
        assert isinstance(history, RoomMessagesResponse), f"messages failed: {history}"
        bodies = [e.body for e in history.chunk if isinstance(e, RoomMessageText)]
        assert bodies[:2] == ["hi alice", "hello bob"], bodies
        assert any(isinstance(e, RoomMemberEvent) and e.membership == "invite" and e.state_key == bob.user_id
                   for e in history.chunk), history.chunk
    finally:
        await alice.close()
        await bob.close()
