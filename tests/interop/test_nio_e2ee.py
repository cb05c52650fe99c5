"""End-to-end encryption through matrix-nio's e2e extra: two real Olm/Megolm clients.

nio (with vodozemac, the Rust Olm/Megolm library) does the cryptography the way a client app
does, so this checks that our key and to-device endpoints carry what real clients need, not
just that they answer: the signed device keys from /keys/upload must come back out of
/keys/query byte-exact (nio verifies their signatures), a one-time key from /keys/claim must
open an Olm session, the room key travels by /sendToDevice and /sync's to_device, and only then
does the Megolm-encrypted m.room.message decrypt. On the way: one-time-key counts in the
/keys/upload response and in /sync's device_one_time_keys_count, and device_lists.changed once
the two users share an encrypted room (spec v1.11, end-to-end encryption module).

nio's share_group_session drops the error of a failed /sendToDevice, so every client here
records each request that the server refused: a failure names the request and the answer.
"""

import secrets
import time

import pytest
from nio import (AsyncClient, AsyncClientConfig, EncryptionError, ErrorResponse, JoinResponse,
                 KeysClaimResponse, KeysQueryResponse, KeysUploadResponse, MegolmEvent,
                 RegisterResponse, RoomCreateResponse, RoomInviteResponse, RoomKeyEvent,
                 RoomMemberEvent, RoomMessageText, RoomSendResponse, ShareGroupSessionResponse,
                 SyncResponse)
from nio.crypto import ENCRYPTION_ENABLED

pytestmark = pytest.mark.asyncio

CONFIG = AsyncClientConfig(max_limit_exceeded=0, max_timeouts=0, request_timeout=30,
                           encryption_enabled=True)
PASSWORD = "correct horse battery staple"
MEGOLM = "m.megolm.v1.aes-sha2"


class RecordingClient(AsyncClient):
    """An AsyncClient that remembers what the server refused and what /sync brought."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.refused = []           # "METHOD /path -> status errcode: error", in order
        self.changed_users = set()  # every device_lists.changed entry seen so far
        self.to_device = []         # to-device events from /sync, as nio decrypted them

    async def receive_response(self, response):
        if isinstance(response, ErrorResponse):
            sent = getattr(response, "transport_response", None)
            where = f"{sent.method} {sent.url.path} -> {sent.status}" if sent is not None else "?"
            self.refused.append(f"{where} {response.status_code}: {response.message}")
        await super().receive_response(response)  # decrypts to-device and timeline events
        if isinstance(response, SyncResponse):
            self.changed_users.update(response.device_list.changed)
            self.to_device.extend(response.to_device_events)

    def report(self) -> str:
        return f"{self.user_id}: requests the server refused: {self.refused or 'none'}"


def ok(client: RecordingClient, resp, expected: type, what: str):
    assert isinstance(resp, expected), f"{what} failed: {resp!r}\n{client.report()}"
    return resp


async def registered(url: str, store_dir) -> RecordingClient:
    name = "nio_e2ee_" + secrets.token_hex(4)
    store = store_dir / name
    store.mkdir()
    client = RecordingClient(url, name, store_path=str(store), config=CONFIG)
    ok(client, await client.register(name, PASSWORD, device_name="nio e2ee"),
       RegisterResponse, "register")
    assert client.olm is not None, "nio did not open its Olm account after register"
    return client


async def sync_until(client: RecordingClient, predicate, what: str, attempts: int = 10):
    """Syncs (long-polling) until `predicate(response)` holds; returns that response."""
    for _ in range(attempts):
        resp = ok(client, await client.sync(timeout=3000), SyncResponse, "sync")
        if predicate(resp):
            return resp
    raise AssertionError(f"{what}: never came\n{client.report()}")


async def exchange(sender: RecordingClient, receiver: RecordingClient, room_id: str, body: str,
                   timeout: float = 30.0):
    """`sender` sends an encrypted text to the room; `receiver` must decrypt it, from the
    sender's verified device, with the room key that came by to-device, within `timeout` s.
    (test_synapse_federation.py runs it with the two clients on different servers.)"""
    # An Olm session to each of the receiver's devices needs one of its one-time keys, unless
    # one exists already (the receiver of an earlier pre-key message reuses that session).
    missing = sender.get_missing_sessions(room_id)
    if missing:
        assert missing == {receiver.user_id: [receiver.device_id]}, missing
        claimed = ok(sender, await sender.keys_claim(missing), KeysClaimResponse, "/keys/claim")
        assert not claimed.failures, f"/keys/claim could not reach a server: {claimed!r}"
        otk = claimed.one_time_keys.get(receiver.user_id, {}).get(receiver.device_id)
        assert otk and len(otk) == 1 and next(iter(otk)).startswith("signed_curve25519:"), (
            f"/keys/claim gave no signed_curve25519 key for {receiver.device_id}: {claimed!r}")
        assert not sender.get_missing_sessions(room_id), (
            f"nio opened no Olm session from the claimed key (bad signature?): {claimed!r}")

    # The Megolm room key goes out Olm-encrypted by /sendToDevice.
    shared = ok(sender, await sender.share_group_session(room_id),
                ShareGroupSessionResponse, "share_group_session")
    assert (receiver.user_id, receiver.device_id) in shared.users_shared_with, (
        f"the room key did not reach {receiver.device_id} by /sendToDevice\n{sender.report()}")

    sent = ok(sender, await sender.room_send(room_id, "m.room.message",
                                              {"msgtype": "m.text", "body": body}),
              RoomSendResponse, "send (encrypted)")

    # The key may come in the same /sync as the event (nio reads to_device first) or, since
    # nothing orders the two streams, in a later one: then the held event is decrypted again.
    event = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        resp = ok(receiver, await receiver.sync(timeout=1000), SyncResponse, "sync")
        room = resp.rooms.join.get(room_id)
        for e in room.timeline.events if room else []:
            if e.event_id == sent.event_id:
                event = e
        if isinstance(event, MegolmEvent):
            try:
                event = receiver.decrypt_event(event)
            except EncryptionError:
                pass
        if event is not None and not isinstance(event, MegolmEvent):
            break
    assert event is not None, (f"{sent.event_id} never came down {receiver.user_id}'s /sync "
                               f"within {timeout:.0f} s\n{receiver.report()}")
    room_keys = [e for e in receiver.to_device if isinstance(e, RoomKeyEvent)]
    assert isinstance(event, RoomMessageText), (
        f"{sent.event_id} did not decrypt to a text message: {event!r}\n"
        f"room keys received by to-device: {room_keys}\n"
        f"all to-device events received: {receiver.to_device}\n{receiver.report()}")
    assert event.body == body and event.sender == sender.user_id, event
    assert event.decrypted and event.session_id, event
    assert event.verified, f"decrypted, but not from the verified device: {event!r}"
    assert any(k.sender == sender.user_id and k.room_id == room_id and k.algorithm == MEGOLM
               and k.session_id == event.session_id for k in room_keys), room_keys
    return event


async def test_two_nio_clients_exchange_encrypted_messages(homeserver_url, tmp_path):
    assert ENCRYPTION_ENABLED, "matrix-nio's e2e extra (vodozemac) is not installed"
    alice = await registered(homeserver_url, tmp_path)
    bob = await registered(homeserver_url, tmp_path)
    try:
        # Device keys and a full set of one-time keys; the server counts them back.
        one_time_keys = alice.olm.account.max_one_time_keys  # nio's first upload: a full set
        for client in (alice, bob):
            assert client.should_upload_keys
            uploaded = ok(client, await client.keys_upload(), KeysUploadResponse, "/keys/upload")
            assert uploaded.signed_curve25519_count == one_time_keys, uploaded
            assert not client.should_upload_keys
            synced = ok(client, await client.sync(timeout=0), SyncResponse, "initial sync")
            assert synced.device_key_count.signed_curve25519 == one_time_keys, (
                f"device_one_time_keys_count in /sync: {synced.device_key_count}")

        created = ok(alice, await alice.room_create(name="nio e2ee", initial_state=[
            {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": MEGOLM}}]),
            RoomCreateResponse, "room_create")
        room_id = created.room_id
        ok(alice, await alice.room_invite(room_id, bob.user_id), RoomInviteResponse, "invite")
        await sync_until(bob, lambda r: room_id in r.rooms.invite, "bob's invite")
        ok(bob, await bob.join(room_id), JoinResponse, "join")
        await sync_until(bob, lambda r: room_id in r.rooms.join, "bob's joined room")
        assert bob.rooms[room_id].encrypted, "m.room.encryption did not reach bob's /sync"

        def bob_joined(resp):
            room = resp.rooms.join.get(room_id)
            return room is not None and any(
                isinstance(e, RoomMemberEvent) and e.state_key == bob.user_id
                and e.membership == "join" for e in room.timeline.events)

        await sync_until(alice, bob_joined, "bob's join in alice's /sync")
        assert alice.rooms[room_id].encrypted

        # Sharing an encrypted room now, each must see the other in device_lists.changed
        # (in the /sync that brought the join, or a later one).
        for me, other in ((alice, bob), (bob, alice)):
            if other.user_id not in me.changed_users:
                await sync_until(me, lambda r: other.user_id in me.changed_users,
                                 f"{other.user_id} in {me.user_id}'s device_lists.changed")

        # /keys/query gives each the other's device, its signed keys intact: nio checks the
        # signature before storing the device; then each trusts the other's device.
        for me, other in ((alice, bob), (bob, alice)):
            assert other.user_id in me.users_for_key_query
            queried = ok(me, await me.keys_query(), KeysQueryResponse, "/keys/query")
            device = queried.device_keys.get(other.user_id, {}).get(other.device_id)
            assert device is not None, f"/keys/query lacks {other.device_id}: {queried!r}"
            identity = other.olm.account.identity_keys
            assert device["keys"] == {f"ed25519:{other.device_id}": identity["ed25519"],
                                      f"curve25519:{other.device_id}": identity["curve25519"]}, device
            assert MEGOLM in device["algorithms"], device
            assert not queried.failures, queried.failures
            stored = me.device_store[other.user_id].get(other.device_id)
            assert stored is not None, f"nio rejected {other.device_id}'s keys (signature): {device}"
            assert stored.ed25519 == identity["ed25519"]
            me.verify_device(stored)

        await exchange(alice, bob, room_id, "hello bob, in secret")
        # Alice's claim used up one of bob's one-time keys; bob's /sync says so, and an
        # upload of one-time keys alone (no device keys this time) tops the count up again.
        synced = ok(bob, await bob.sync(timeout=0), SyncResponse, "sync")
        assert synced.device_key_count.signed_curve25519 == one_time_keys - 1, (
            f"device_one_time_keys_count after a claim: {synced.device_key_count}")
        assert bob.should_upload_keys
        topped = ok(bob, await bob.keys_upload(), KeysUploadResponse, "/keys/upload (top-up)")
        assert topped.signed_curve25519_count == one_time_keys, topped

        await exchange(bob, alice, room_id, "hi alice, secretly")

        # A to-device message is deleted once a later /sync acknowledges it: one room key each.
        for client in (alice, bob):
            ok(client, await client.sync(timeout=0), SyncResponse, "sync")
            keys = [e for e in client.to_device if isinstance(e, RoomKeyEvent)]
            assert len(keys) == 1, f"{client.user_id} got the room key {len(keys)} times: {keys}"
        assert not alice.refused and not bob.refused, f"{alice.report()}\n{bob.report()}"
    finally:
        await alice.close()
        await bob.close()
