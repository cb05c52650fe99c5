#!/usr/bin/env python3
"""Federation benchmark: the time for a user to join a room of another server that holds
N members (N member state events, 5,000 by default), Myelin and a real Synapse as the joining
server, against the same resident room, in one run.

Four servers federate on loopback over TLS (a throwaway CA, bench/harness/tls.py), each named
localhost:<port>: Myelin M1 and M2, Synapse S1 and S2 (SQLite, its pinned venv). Two rooms
(version 10, public) are filled beforehand: one on M1, one on S1, each with N members
registered and joined through the client API (Synapse with bcrypt_rounds 4: filling is
set-up, not measured). Then:

  room on S1   a new user of M2 joins it (POST /join/{roomId}?via=S1), then one of S2
  room on M1   a new user of S2 joins it, then one of M2

Timed: from the POST /join until the joining server lists all the room's members
(GET /joined_members, polled): make_join, send_join (the resident's state and auth chain, N+
events), checking it (signatures, auth rules) and storing it. Myelin's join answers only then.
Synapse joining a Synapse room asks for partial state (`omit_members`, "faster joins"): its
join answers early and the rest of the state follows in the background, so the time until
the whole room is there is what compares; the answer time is shown beside it. Myelin
answers every send_join with the full state, so S2's join of M1's room is a full join. Each
join is one shot (a server joins a room once).

A benchmark program, not a test: it prints figures and the target (Myelin joins at least 5x
faster than Synapse) and exits 0 whatever they are. --quick: N = 300.

    python3 bench/federation.py [--myelin-bin PATH] [--markdown FILE] [--quick] [--members N]
"""

import concurrent.futures
import json
import os
import re
import secrets
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import common, myelin, synapse, tls  # noqa: E402
from harness.common import log  # noqa: E402

TARGET = 5.0  # Myelin's join at least this many times faster than Synapse's


def join_phases(log_file: str) -> str:
    """The phases of Myelin's last federated join, from its log line."""
    with open(log_file, encoding="utf-8", errors="replace") as f:
        lines = [line for line in f if "joined a room over federation" in line]
    if not lines:
        return "(not logged)"
    line = re.sub(r"\x1b\[[0-9;]*m", "", lines[-1])  # colour codes, if any
    fields = [word for word in line.split() if word.split("=")[0].endswith(("_ms", "events"))]
    return " ".join(fields)


def call(base: str, method: str, path: str, token: str | None = None, body: dict | None = None,
         timeout: float = 600) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{base}{path}", data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.load(e)
        except ValueError:
            return e.code, {}


def register(base: str, name: str) -> tuple[str, str]:
    """A user registered with m.login.dummy: (user ID, access token)."""
    body = {"username": name, "password": "bench password " + name}
    status, answer = call(base, "POST", "/_matrix/client/v3/register", body=body)
    if status == 401:
        body["auth"] = {"type": "m.login.dummy", "session": answer.get("session")}
        status, answer = call(base, "POST", "/_matrix/client/v3/register", body=body)
    if status != 200:
        raise RuntimeError(f"register {name} on {base}: {status} {answer}")
    return answer["user_id"], answer["access_token"]


def fill_room(base: str, members: int) -> str:
    """A public room of version 10 on `base` with `members` joined users; its ID."""
    _, owner = register(base, "owner" + secrets.token_hex(3))
    status, answer = call(base, "POST", "/_matrix/client/v3/createRoom", owner,
                          {"preset": "public_chat", "room_version": "10", "name": "Big room"})
    if status != 200:
        raise RuntimeError(f"createRoom: {status} {answer}")
    room = answer["room_id"]
    path = f"/_matrix/client/v3/join/{urllib.parse.quote(room)}"

    def one(i: int) -> None:
        _, token = register(base, f"m{i}x{secrets.token_hex(2)}")
        status, answer = call(base, "POST", path, token, {})
        if status != 200:
            raise RuntimeError(f"join {i}: {status} {answer}")

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for done, _ in enumerate(pool.map(one, range(members - 1)), 2):
            if done % 500 == 0:
                log(f"    {done}/{members} members ({time.monotonic() - started:.0f} s)")
    return room


def timed_join(joiner_base: str, room: str, via: str, expect: int) -> tuple[float, float]:
    """(seconds until the join answers, seconds until the joining server lists every member)."""
    _, token = register(joiner_base, "joiner" + secrets.token_hex(3))
    path = f"/_matrix/client/v3/join/{urllib.parse.quote(room)}?via={urllib.parse.quote(via)}"
    members_path = f"/_matrix/client/v3/rooms/{urllib.parse.quote(room)}/joined_members"
    started = time.monotonic()
    status, answer = call(joiner_base, "POST", path, token, {})
    joined = time.monotonic() - started
    if status != 200:
        raise RuntimeError(f"join: {status} {answer}")
    # Synapse joins a Synapse room with partial state (members omitted) and fetches the rest
    # in the background: the room is whole when the member list is.
    count = 0
    while time.monotonic() - started < 600:
        status, members = call(joiner_base, "GET", members_path, token)
        count = len(members.get("joined", {})) if status == 200 else 0
        if count >= expect:
            return joined, time.monotonic() - started
        time.sleep(0.05)
    raise RuntimeError(f"after the join the joining server lists {count} members, not {expect}")


def main() -> None:
    ap = common.bench_arguments(__doc__, "N = 300 members")
    ap.add_argument("--members", type=int, help="members of each room (default 5000)")
    args = ap.parse_args()
    members = args.members or (300 if args.quick else 5000)
    binary = common.prepare_servers(args, log)
    load = [os.getloadavg()[0]]
    directory = tempfile.mkdtemp(prefix="bench-federation-")
    servers = []
    results: dict[str, object] = {}
    try:
        certs = tls.make_certificates(directory)

        def start_myelin(label: str):
            port, fed_port = common.free_port(), common.free_port()
            workdir = tempfile.mkdtemp(prefix=f"bench-{label}-")
            config = tls.myelin_federation_config(workdir, port, fed_port, certs)
            # The join's own timing line (remote, verify, auth, store) is logged at info.
            server = myelin.Myelin(binary, port=port, workdir=workdir, config=config, timeout=60,
                                   extra_env={"RUST_LOG": "warn,myelin_rooms::federation::join=info"})
            servers.append(server)
            return server, f"localhost:{fed_port}"

        def start_synapse():
            fed = synapse.Federation(common.free_port(), certs.certificate, certs.private_key, certs.ca)
            server = synapse.Synapse(federation=fed, timeout=180, extra_config={"bcrypt_rounds": 4})
            servers.append(server)
            return server, fed.server_name

        log("[bench] starting M1, M2, S1, S2")
        m1, m1_name = start_myelin("m1")
        m2, _ = start_myelin("m2")
        s1, s1_name = start_synapse()
        s2, _ = start_synapse()
        # A fresh Synapse runs background database updates for about a minute.
        time.sleep(10 if args.quick else 60)
        log(f"[bench] filling a room of {members} on S1")
        room_s1 = fill_room(s1.base_url, members)
        log(f"[bench] filling a room of {members} on M1")
        room_m1 = fill_room(m1.base_url, members)
        load.append(os.getloadavg()[0])
        # The second joiner of a room finds the first one in it too.
        for label, base, room, via, expect in [
                ("Myelin joins S1's room", m2.base_url, room_s1, s1_name, members + 1),
                ("Synapse joins S1's room", s2.base_url, room_s1, s1_name, members + 2),
                ("Synapse joins M1's room", s2.base_url, room_m1, m1_name, members + 1),
                ("Myelin joins M1's room", m2.base_url, room_m1, m1_name, members + 2)]:
            log(f"[bench] {label}")
            try:
                results[label] = timed_join(base, room, via, expect)
                log(f"    answered in {results[label][0]:.2f} s, whole room in {results[label][1]:.2f} s")
                if label.startswith("Myelin"):
                    log(f"    phases: {join_phases(m2.log_file)}")
            except Exception as e:  # noqa: BLE001 - reported in the table
                results[label] = f"error: {e}"[:300]
                log(f"    ERROR {results[label]}")
        load.append(os.getloadavg()[0])
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(directory, ignore_errors=True)

    def seconds(label: str) -> str:
        value = results.get(label)
        if isinstance(value, tuple):
            answered, whole = value
            return f"{whole:.2f} s" if whole - answered < 0.05 else f"{whole:.2f} s (answered {answered:.2f} s)"
        return str(value)

    def ratio(mine: str, theirs: str) -> str:
        a, b = results.get(mine), results.get(theirs)
        if not (isinstance(a, tuple) and isinstance(b, tuple)) or a[1] <= 0:
            return "-"
        verdict = "met" if b[1] / a[1] >= TARGET else "missed"
        return f"{b[1] / a[1]:.1f}x ({verdict}: >= {TARGET:.0f}x)"

    head = ["room (resident)", "members", "Myelin joins", "Synapse joins", "Myelin faster by"]
    rows = [
        ["on Synapse S1", str(members), seconds("Myelin joins S1's room"), seconds("Synapse joins S1's room"),
         ratio("Myelin joins S1's room", "Synapse joins S1's room")],
        ["on Myelin M1", str(members), seconds("Myelin joins M1's room"), seconds("Synapse joins M1's room"),
         ratio("Myelin joins M1's room", "Synapse joins M1's room")],
    ]
    print(common.machine_line(binary, args.quick))
    print(common.render_table(head, rows, markdown=False))
    print(common.load_note(load))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(common.machine_line(binary, args.quick) + "\n\n")
            f.write(common.render_table(head, rows, markdown=True) + "\n\n" + common.load_note(load) + "\n")


if __name__ == "__main__":
    main()
