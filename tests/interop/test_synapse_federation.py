"""Federation with a real Synapse: Myelin and Synapse fetch each other's media over the
authenticated federation endpoints of Matrix v1.11 (/_matrix/federation/v1/media/*), read
each other's profiles and device keys, and share rooms: a user of each joins or is invited to
a room of the other, messages flow both ways through /sync, and Megolm-encrypted messages
between them decrypt (matrix-nio with vodozemac).

Both servers run on loopback, each named `localhost:<its federation port>` so that the other
connects straight to that port over TLS (no .well-known, no SRV). Both present one leaf
certificate for localhost from a throwaway CA made with openssl (bench/harness/tls.py), and
both trust that CA alone. A media fetch exercises the whole of server-to-server auth in both directions: the
fetching server signs its request (X-Matrix), and the serving server fetches the fetcher's
key from /_matrix/key/v2/server over TLS to check that signature.

Synapse comes from bench/harness/synapse.py (pinned, installed into .bench/synapse-venv on
first use, which takes a minute or two); Myelin is the binary the other interop tests use,
configured by a TOML file. Both are started once for this module.
"""

import dataclasses
import json
import os
import secrets
import shutil
import ssl
import struct
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from conftest import REPO, SERVER_LOGS, myelin_bin
from nio import (JoinResponse, KeysQueryResponse, KeysUploadResponse, RoomCreateResponse,
                 RoomKeyEvent, SyncResponse)
from nio.crypto import ENCRYPTION_ENABLED
from test_nio_e2ee import MEGOLM, RecordingClient, exchange, ok, registered
from test_nio_media import png

sys.path.insert(0, os.path.join(REPO, "bench"))
from harness import common, myelin, synapse, tls  # noqa: E402

# Server-side fetches can be slow on a loaded 2-core CI machine (Synapse's own federation
# timeout is 60 s): our timeout is longer, so a slow server shows up as its own error.
HTTP_TIMEOUT = 120
PASSWORD = "correct horse battery staple"

# That mode checks the client tests against a server given from outside; this test starts
# its own pair and is about Myelin, which it then has no binary for.
pytestmark = pytest.mark.skipif(bool(os.environ.get("INTEROP_HOMESERVER_URL")),
                                reason="federation needs a Myelin binary, not a given server")


@dataclasses.dataclass(frozen=True)
class Peer:
    name: str  # "Myelin" or "Synapse", for messages
    base_url: str  # client API, plain HTTP
    server_name: str  # localhost:<federation port>
    token: str  # access token of a user registered on it

    @property
    def federation_url(self) -> str:
        return f"https://{self.server_name}"


@dataclasses.dataclass(frozen=True)
class Answer:
    status: int
    headers: dict  # lower-case names
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


def fetch(url: str, method: str = "GET", token: str | None = None, data: bytes | None = None,
          content_type: str | None = None, context: ssl.SSLContext | None = None) -> Answer:
    """One request; an error status is an Answer too, since the tests check error answers."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if content_type:
        headers["Content-Type"] = content_type
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT, context=context) as r:
            return Answer(r.status, {k.lower(): v for k, v in r.headers.items()}, r.read())
    except urllib.error.HTTPError as e:
        return Answer(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())


def describe(answer: Answer) -> str:
    return f"HTTP {answer.status} {answer.headers.get('content-type')}: {answer.body[:500]!r}"


def strict_tls(ca: str) -> ssl.SSLContext:
    """What a careful client does: verify chain and host name against our CA only, with
    X.509 strictness (the default from Python 3.13 on, set here for every version)."""
    context = ssl.create_default_context(cafile=ca)
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    return context


def upload(peer: Peer, data: bytes, content_type: str, filename: str) -> str:
    """Upload to `peer`; return the media ID (the server part of the mxc URI is checked)."""
    query = urllib.parse.urlencode({"filename": filename})
    answer = fetch(f"{peer.base_url}/_matrix/media/v3/upload?{query}", "POST", peer.token,
                   data, content_type)
    assert answer.status == 200, f"upload to {peer.name}: {describe(answer)}"
    server_name, media_id = answer.json()["content_uri"].removeprefix("mxc://").split("/", 1)
    assert server_name == peer.server_name
    return media_id


def media_url(via: Peer, kind: str, origin: Peer, media_id: str) -> str:
    """/_matrix/client/v1/media/<kind>/... of media on `origin`, asked of `via`."""
    return f"{via.base_url}/_matrix/client/v1/media/{kind}/{origin.server_name}/{media_id}"


# --- the servers -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def certificates():
    """A throwaway CA and one leaf signed by it, in a temp dir removed at the end."""
    if not shutil.which("openssl"):
        # A failure, not a skip: CI must run this test (apt-get install openssl).
        pytest.fail("the openssl command is needed to make the test certificates", pytrace=False)
    directory = tempfile.mkdtemp(prefix="interop-federation-tls-")
    try:
        yield tls.make_certificates(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def synapse_peer(certificates):
    federation = synapse.Federation(common.free_port(), certificates.certificate,
                                    certificates.private_key, certificates.ca)
    # INFO: the log then shows every request, federation ones included. The first start
    # also runs Synapse's background database updates: hence the long timeout.
    hs = synapse.Synapse(federation=federation, log_level="INFO", timeout=180, keep_dir=bool(os.environ.get("KEEP_SYNAPSE")),
                         extra_config={"dynamic_thumbnails": True})
    SERVER_LOGS["synapse_peer"] = {"Synapse log (end)": hs.log_file,
                                   "Synapse stdout/stderr (end)": hs.stdio_file}
    try:
        user = synapse.register_user(hs.base_url, "fed_synapse_" + secrets.token_hex(4), PASSWORD)
        yield Peer("Synapse", hs.base_url, hs.server_name, user["access_token"])
    finally:
        SERVER_LOGS.pop("synapse_peer", None)
        hs.stop()


@pytest.fixture(scope="module")
def myelin_peer(certificates):
    binary = myelin_bin()
    if not os.path.exists(binary):
        pytest.fail(f"no Myelin binary at {binary} (cargo build, or set MYELIN_BIN)")
    workdir = tempfile.mkdtemp(prefix="interop-myelin-federation-")
    port, federation_port = common.free_port(), common.free_port()
    config = tls.myelin_federation_config(workdir, port, federation_port, certificates)
    SERVER_LOGS["myelin_peer"] = {"Myelin log (end)": os.path.join(workdir, "myelin.log")}
    hs = None
    try:
        hs = myelin.Myelin(binary, port=port, workdir=workdir, config=config, timeout=60,
                           extra_env={"RUST_LOG": "info,ruma_state_res=warn", "NO_COLOR": "1"})
        user = synapse.register_user(hs.base_url, "fed_myelin_" + secrets.token_hex(4), PASSWORD)
        yield Peer("Myelin", hs.base_url, f"localhost:{federation_port}", user["access_token"])
    finally:
        SERVER_LOGS.pop("myelin_peer", None)
        if hs:
            hs.stop()  # removes workdir, as it does when the start fails
        shutil.rmtree(workdir, ignore_errors=True)  # in case the harness never got that far


@pytest.fixture(scope="module")
def peers(myelin_peer, synapse_peer) -> dict[str, Peer]:
    return {"myelin": myelin_peer, "synapse": synapse_peer}


@pytest.fixture(scope="module")
def photo() -> bytes:
    """A PNG of about 450 KB (random noise keeps it large): made once, it takes a second."""
    return png(480, 360, noise=True)


# Media on the first server, fetched through the second one's client API.
DIRECTIONS = [pytest.param("myelin", "synapse", id="synapse-fetches-from-myelin"),
              pytest.param("synapse", "myelin", id="myelin-fetches-from-synapse")]


# --- the tests ---------------------------------------------------------------------------

def check_server_keys(peer: Peer, certificates: tls.Certificates) -> None:
    """The key endpoint answers over TLS to a strict client that trusts only our CA: the
    certificate setup itself works (when the media tests fail, this tells where)."""
    answer = fetch(f"{peer.federation_url}/_matrix/key/v2/server",
                   context=strict_tls(certificates.ca))
    assert answer.status == 200, describe(answer)
    keys = answer.json()
    assert keys["server_name"] == peer.server_name
    assert keys["verify_keys"], keys
    assert peer.server_name in keys["signatures"], keys


def test_synapse_serves_its_keys_over_tls(synapse_peer, certificates):
    check_server_keys(synapse_peer, certificates)


def test_myelin_serves_its_keys_over_tls(myelin_peer, certificates):
    check_server_keys(myelin_peer, certificates)


@pytest.mark.parametrize("origin, via", DIRECTIONS)
def test_download_over_federation(peers, photo, origin, via):
    origin, via = peers[origin], peers[via]
    files = [(photo, "image/png", "photo.png"),
             (secrets.token_bytes(1_500_000), "application/octet-stream", "blob.bin")]
    for data, content_type, filename in files:
        media_id = upload(origin, data, content_type, filename)
        answer = fetch(media_url(via, "download", origin, media_id), token=via.token)
        assert answer.status == 200, (f"{via.name} fetching {filename} from {origin.name}: "
                                      f"{describe(answer)}")
        assert answer.body == data, f"{filename}: {len(answer.body)} bytes, not {len(data)}"
        assert answer.headers["content-type"].split(";")[0].strip() == content_type
        assert filename in answer.headers.get("content-disposition", ""), answer.headers


@pytest.mark.parametrize("origin, via", DIRECTIONS)
def test_thumbnail_over_federation(peers, photo, origin, via):
    # A fresh upload: the fetching server has no copy yet and must fetch it for the thumbnail
    # (Synapse downloads the whole file and thumbnails it itself).
    origin, via = peers[origin], peers[via]
    media_id = upload(origin, photo, "image/png", "photo.png")
    answer = fetch(media_url(via, "thumbnail", origin, media_id)
                   + "?width=64&height=64&method=scale", token=via.token)
    assert answer.status == 200, f"{via.name} thumbnail from {origin.name}: {describe(answer)}"
    content_type = answer.headers["content-type"]
    assert content_type.startswith("image/"), content_type
    # An image, and smaller than the original (not the original handed back).
    if content_type == "image/png":
        assert answer.body.startswith(b"\x89PNG\r\n\x1a\n")
        width, height = struct.unpack(">II", answer.body[16:24])
        assert width < 480 and height < 360, (width, height)
    elif content_type == "image/jpeg":
        assert answer.body.startswith(b"\xff\xd8\xff")
    assert len(answer.body) < len(photo)


@pytest.mark.parametrize("origin, via", DIRECTIONS)
def test_missing_remote_media_is_not_found(peers, origin, via):
    # The origin's 404 is passed on as a 404 M_NOT_FOUND: neither a 5xx (a proxy failure)
    # nor a fallback to other endpoints that ends in something else.
    origin, via = peers[origin], peers[via]
    missing = "doesNotExist" + secrets.token_hex(8)
    answer = fetch(media_url(via, "download", origin, missing), token=via.token)
    assert answer.status == 404, describe(answer)
    assert answer.json()["errcode"] == "M_NOT_FOUND", describe(answer)


# --- queries across servers --------------------------------------------------------------

def whoami(peer: Peer) -> str:
    answer = fetch(f"{peer.base_url}/_matrix/client/v3/account/whoami", token=peer.token)
    assert answer.status == 200, describe(answer)
    return answer.json()["user_id"]


def post_json(peer: Peer, path: str, body: dict, method: str = "POST") -> Answer:
    return fetch(f"{peer.base_url}{path}", method, peer.token, json.dumps(body).encode(),
                 "application/json")


@pytest.mark.parametrize("origin, via", DIRECTIONS)
def test_profile_over_federation(peers, origin, via):
    origin, via = peers[origin], peers[via]
    user = whoami(origin)
    name = f"{origin.name} user {secrets.token_hex(3)}"
    answer = post_json(origin, f"/_matrix/client/v3/profile/{user}/displayname",
                       {"displayname": name}, "PUT")
    assert answer.status == 200, describe(answer)
    answer = fetch(f"{via.base_url}/_matrix/client/v3/profile/{urllib.parse.quote(user)}",
                   token=via.token)
    assert answer.status == 200, f"{via.name} asking for {user}: {describe(answer)}"
    assert answer.json().get("displayname") == name, describe(answer)


def signed_device_keys(user: str, device: str) -> dict:
    """Device keys made and self-signed by a real Olm account (vodozemac), as clients do."""
    import vodozemac  # from matrix-nio's e2e extra, installed by run.sh

    account = vodozemac.Account()
    keys = {
        "user_id": user, "device_id": device,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {f"curve25519:{device}": account.curve25519_key.to_base64(),
                 f"ed25519:{device}": account.ed25519_key.to_base64()},
    }
    canonical = json.dumps(keys, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    signature = account.sign(canonical.encode()).to_base64()
    return dict(keys, signatures={user: {f"ed25519:{device}": signature}})


@pytest.mark.parametrize("origin, via", DIRECTIONS)
def test_device_keys_over_federation(peers, origin, via):
    origin, via = peers[origin], peers[via]
    user = whoami(origin)
    device = fetch(f"{origin.base_url}/_matrix/client/v3/account/whoami",
                   token=origin.token).json()["device_id"]
    keys = signed_device_keys(user, device)
    answer = post_json(origin, "/_matrix/client/v3/keys/upload", {"device_keys": keys})
    assert answer.status == 200, f"upload to {origin.name}: {describe(answer)}"
    answer = post_json(via, "/_matrix/client/v3/keys/query", {"device_keys": {user: []}})
    assert answer.status == 200, describe(answer)
    found = answer.json()
    assert not found.get("failures"), found
    assert found["device_keys"][user][device]["keys"] == keys["keys"], found


# --- rooms across servers ----------------------------------------------------------------

def wait_for(what: str, check, timeout: float = 60.0):
    """Polls `check` until it returns something truthy; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what} (last: {last!r})", pytrace=False)


def send_text(peer: Peer, room: str, body: str) -> str:
    txn = secrets.token_hex(8)
    answer = post_json(peer, f"/_matrix/client/v3/rooms/{urllib.parse.quote(room)}/send/m.room.message/{txn}",
                       {"msgtype": "m.text", "body": body}, "PUT")
    assert answer.status == 200, f"{peer.name} sending: {describe(answer)}"
    return answer.json()["event_id"]


def synced_bodies(peer: Peer, room: str) -> list[str]:
    """The text bodies of the room's timeline in a fresh /sync of `peer`'s user."""
    # A filter of its own each time: Synapse answers identical initial syncs from a cache
    # for a while, which would hide what arrived since.
    fresh = {"not_types": [f"interop.nonce.{secrets.token_hex(4)}"]}
    sync_filter = urllib.parse.quote(json.dumps({"room": {"timeline": {"limit": 50}}, "presence": fresh}))
    answer = fetch(f"{peer.base_url}/_matrix/client/v3/sync?filter={sync_filter}", token=peer.token)
    assert answer.status == 200, describe(answer)
    joined = answer.json().get("rooms", {}).get("join", {})
    events = joined.get(room, {}).get("timeline", {}).get("events", [])
    return [e["content"].get("body") for e in events if e.get("type") == "m.room.message"]


def joined_members(peer: Peer, room: str) -> set[str]:
    answer = fetch(f"{peer.base_url}/_matrix/client/v3/rooms/{urllib.parse.quote(room)}/joined_members",
                   token=peer.token)
    return set(answer.json().get("joined", {})) if answer.status == 200 else set()


# The room lives on the first server; the second one's user joins it.
ROOM_DIRECTIONS = [pytest.param("myelin", "synapse", id="synapse-user-joins-myelin-room"),
                   pytest.param("synapse", "myelin", id="myelin-user-joins-synapse-room")]


@pytest.mark.parametrize("host, guest", ROOM_DIRECTIONS)
def test_room_across_servers(peers, host, guest):
    host, guest = peers[host], peers[guest]
    host_user, guest_user = whoami(host), whoami(guest)
    name = f"Room on {host.name} {secrets.token_hex(3)}"
    # Room version 10, v1.11's default: Synapse's own default is now 12, beyond Matrix v1.11
    # and so beyond what Myelin implements.
    answer = post_json(host, "/_matrix/client/v3/createRoom",
                       {"preset": "public_chat", "name": name, "room_version": "10"})
    assert answer.status == 200, describe(answer)
    room = answer.json()["room_id"]
    send_text(host, room, "before the guest")

    answer = post_json(guest, f"/_matrix/client/v3/join/{urllib.parse.quote(room)}?via={host.server_name}", {})
    assert answer.status == 200, f"{guest.name} joining {host.name}'s room: {describe(answer)}"
    assert answer.json()["room_id"] == room
    wait_for(f"{host.name} to see the join", lambda: guest_user in joined_members(host, room))
    assert {host_user, guest_user} <= joined_members(guest, room)
    answer = fetch(f"{guest.base_url}/_matrix/client/v3/rooms/{urllib.parse.quote(room)}/state/m.room.name/",
                   token=guest.token)
    assert answer.status == 200 and answer.json()["name"] == name, describe(answer)

    from_host, from_guest = f"hello from {host.name}", f"hello from {guest.name}"
    send_text(host, room, from_host)
    wait_for(f"{guest.name}'s /sync to show {host.name}'s message",
             lambda: from_host in synced_bodies(guest, room))
    send_text(guest, room, from_guest)
    wait_for(f"{host.name}'s /sync to show {guest.name}'s message",
             lambda: from_guest in synced_bodies(host, room))
    # The same order on both sides.
    on_host = [b for b in synced_bodies(host, room) if b in (from_host, from_guest)]
    on_guest = [b for b in synced_bodies(guest, room) if b in (from_host, from_guest)]
    assert on_host == on_guest == [from_host, from_guest], (on_host, on_guest)

    answer = post_json(guest, f"/_matrix/client/v3/rooms/{urllib.parse.quote(room)}/leave", {})
    assert answer.status == 200, describe(answer)
    wait_for(f"{host.name} to see the leave", lambda: guest_user not in joined_members(host, room))


@pytest.mark.parametrize("host, guest", ROOM_DIRECTIONS)
def test_invite_across_servers(peers, host, guest):
    host, guest = peers[host], peers[guest]
    guest_user = whoami(guest)
    answer = post_json(host, "/_matrix/client/v3/createRoom",
                       {"preset": "private_chat", "name": "Invite only", "invite": [guest_user],
                        "room_version": "10"})
    assert answer.status == 200, f"{host.name} inviting {guest.name}'s user: {describe(answer)}"
    room = answer.json()["room_id"]

    def invited():
        answer = fetch(f"{guest.base_url}/_matrix/client/v3/sync", token=guest.token)
        return answer.json().get("rooms", {}).get("invite", {}).get(room)

    invite = wait_for(f"{guest.name}'s /sync to show the invite", invited)
    kinds = {e["type"] for e in invite["invite_state"]["events"]}
    assert "m.room.member" in kinds, invite
    answer = post_json(guest, f"/_matrix/client/v3/rooms/{urllib.parse.quote(room)}/join", {})
    assert answer.status == 200, f"{guest.name} accepting: {describe(answer)}"
    wait_for(f"{host.name} to see the join", lambda: guest_user in joined_members(host, room))


# --- end-to-end encryption across servers ------------------------------------------------

# Anything that crosses servers: Synapse's federation sender batches with small delays, and
# a remote /keys/query or /keys/claim waits on the other server.
E2EE_TIMEOUT = 60.0


async def sync_until(client: RecordingClient, done, what: str, timeout: float = E2EE_TIMEOUT):
    """Syncs with short long-polls until `done()` holds (nio keeps the since token between
    them, so Synapse's cache of initial syncs never answers); fails after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s\n{client.report()}")
        ok(client, await client.sync(timeout=1000), SyncResponse, "sync")


@pytest.mark.asyncio
@pytest.mark.parametrize("host, guest", ROOM_DIRECTIONS)
async def test_encrypted_messages_across_servers(peers, tmp_path, host, guest):
    """test_nio_e2ee's two real Olm/Megolm clients, one on each server: everything a client
    needs for end-to-end encryption with a remote user has to cross the federation, each way.
    The guest's server learns of the host's devices and back through device-list updates
    and a federated /keys/query (nio checks the signatures of what comes back); the Olm
    session starts from a one-time key claimed over federation, the room key goes by to-device
    EDU, and a Megolm-encrypted message each way must decrypt on the other server."""
    assert ENCRYPTION_ENABLED, "matrix-nio's e2e extra (vodozemac) is not installed"
    host, guest = peers[host], peers[guest]
    alice = await registered(host.base_url, tmp_path)  # on the room's server
    bob = await registered(guest.base_url, tmp_path)
    clients = ((alice, host), (bob, guest))
    try:
        one_time_keys = alice.olm.account.max_one_time_keys  # nio's first upload: a full set
        for client, peer in clients:
            uploaded = ok(client, await client.keys_upload(), KeysUploadResponse,
                          f"/keys/upload to {peer.name}")
            assert uploaded.signed_curve25519_count == one_time_keys, uploaded
            ok(client, await client.sync(timeout=0), SyncResponse, "initial sync")

        # Room version 10 (see test_room_across_servers); invited, the guest joins without
        # a via: its server asks the inviting one.
        created = ok(alice, await alice.room_create(
            name=f"E2EE on {host.name}", room_version="10", invite=[bob.user_id],
            initial_state=[{"type": "m.room.encryption", "state_key": "",
                            "content": {"algorithm": MEGOLM}}]),
            RoomCreateResponse, f"room_create on {host.name}")
        room_id = created.room_id
        await sync_until(bob, lambda: room_id in bob.invited_rooms,
                         f"{host.name}'s invite in {guest.name}'s /sync")
        ok(bob, await bob.join(room_id), JoinResponse, f"join on {guest.name}")
        await sync_until(bob, lambda: room_id in bob.rooms,
                         f"the joined room in {guest.name}'s /sync")
        assert bob.rooms[room_id].encrypted, f"m.room.encryption did not reach {guest.name}"

        def bob_joined() -> bool:
            room = alice.rooms.get(room_id)
            return (room is not None and bob.user_id in room.users
                    and bob.user_id not in room.invited_users)

        await sync_until(alice, bob_joined, f"{guest.name}'s join in {host.name}'s /sync")
        assert alice.rooms[room_id].encrypted

        # Sharing an encrypted room now, each server must list the other's user in
        # device_lists.changed, so that clients query the remote user's keys.
        for me, other in ((alice, bob), (bob, alice)):
            await sync_until(me, lambda: other.user_id in me.changed_users,
                             f"{other.user_id} in {me.user_id}'s device_lists.changed")

        # /keys/query for a remote user: the server asks the other one over federation, and
        # the signed device keys must come back intact (nio rejects a bad signature).
        for me, other in ((alice, bob), (bob, alice)):
            assert other.user_id in me.users_for_key_query
            queried = ok(me, await me.keys_query(), KeysQueryResponse, "/keys/query")
            assert not queried.failures, f"/keys/query could not reach a server: {queried!r}"
            device = queried.device_keys.get(other.user_id, {}).get(other.device_id)
            assert device is not None, f"/keys/query lacks {other.device_id}: {queried!r}"
            identity = other.olm.account.identity_keys
            assert device["keys"] == {f"ed25519:{other.device_id}": identity["ed25519"],
                                      f"curve25519:{other.device_id}": identity["curve25519"]}, device
            stored = me.device_store[other.user_id].get(other.device_id)
            assert stored is not None, f"nio rejected {other.device_id}'s keys (signature): {device}"
            me.verify_device(stored)

        # Each request naming the receiver goes over federation here: /keys/claim takes a
        # one-time key from its server, the room key travels as an m.direct_to_device EDU,
        # the Megolm event in a transaction, in either order.
        await exchange(alice, bob, room_id, f"hello from {host.name}, in secret", E2EE_TIMEOUT)
        # The claim over federation took one of bob's one-time keys on his own server.
        synced = ok(bob, await bob.sync(timeout=0), SyncResponse, "sync")
        assert synced.device_key_count.signed_curve25519 == one_time_keys - 1, (
            f"device_one_time_keys_count after a claim from {host.name}: {synced.device_key_count}")

        await exchange(bob, alice, room_id, f"hi from {guest.name}, secretly", E2EE_TIMEOUT)

        # Each room key came once: a to-device EDU is delivered once, however the sending
        # server batches or retries its transactions.
        for client in (alice, bob):
            ok(client, await client.sync(timeout=0), SyncResponse, "sync")
            keys = [e for e in client.to_device if isinstance(e, RoomKeyEvent)]
            assert len(keys) == 1, f"{client.user_id} got the room key {len(keys)} times: {keys}"
        assert not alice.refused and not bob.refused, f"{alice.report()}\n{bob.report()}"
    finally:
        await alice.close()
        await bob.close()
