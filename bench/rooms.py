#!/usr/bin/env python3
"""Rooms benchmark: message sending and /messages paging, Myelin vs a real Synapse, in one run.

Figures, in the order measured (each server fresh, in its own temp dir on 127.0.0.1, one
server after the other; 16 users registered through the client API with m.login.dummy; rate
limits off on both):
  sequential     one user, one private_chat room: N messages sent one after another with
                 PUT /rooms/{roomId}/send/m.room.message/{txnId} (a new txnId each) on one
                 keep-alive connection; messages/s = answered sends / time from the first
                 request to the last answer. N = 2000, time-boxed to 30 s (a slow server
                 sends what it can in the box, and its rate is counted on that)
  /messages      a new room holding 1000 messages (sent beforehand, one at a time), read back to
                 its start with GET /rooms/{roomId}/messages?dir=b&limit=50, `from` = the
                 previous page's `end` (no `from` on the first page); one unmeasured walk, then
                 5 measured: median and p95 of the per-page latency (request to last byte)
  16 in 1 room   16 users, all joined to one public_chat room, each on its own keep-alive
                 connection in its own process, released together by a barrier; up to 500
                 messages each, same time box; total messages/s = all answered sends / time
                 from the first request to the last answer
  16 in 8 rooms  the same with 8 public_chat rooms, 2 of the 16 senders in each (user k in
                 room k mod 8; user 0 created the rooms and is in all of them)
  durability     Myelin only: right after the last send of the 8-room phase is answered, the
                 process is killed with SIGKILL and restarted on the same data dir and
                 database; every event ID any send of the run was answered with (warm-ups and
                 the /messages room included) must be readable through /messages, walked back
                 to the start of every room by user 0

Each send phase starts with a few unmeasured warm-up sends on every connection (connection,
caches, first statements). Under each rate are shown the server's CPU time per measured message
(utime + stime from /proc) and the benchmark client's (getrusage of the sending processes): on
a machine with few cores the client can bound the rate of a fast server. --quick: 200
sequential, 16 x 25 concurrent, a 200-message room walked twice, 5 s time box.

A benchmark program, not a test: it prints figures and targets and exits 0 whatever they
are. Servers and this script share the machine's cores, so compare figures from the same run
only. Synapse runs from its pinned venv with SQLite (bench/harness/synapse.py).

    python3 bench/rooms.py [--myelin-bin PATH] [--markdown FILE] [--quick]
                           [--skip-synapse] [--skip-myelin]
"""

import multiprocessing
import os
import platform
import resource
import shutil
import statistics
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import common, myelin, synapse  # noqa: E402
from harness.common import attempt, log  # noqa: E402
from harness.http import Client, RequestFailed, room_path  # noqa: E402

SENDERS = 16
ROOMS_SPREAD = 8  # rooms for the "16 senders across 8 rooms" phase
PAGE = 50  # events per /messages page


class Plan:
    """What one run measures; --quick shrinks it to a smoke test of a minute or two."""

    def __init__(self, quick: bool):
        self.quick = quick
        self.sequential = 200 if quick else 2000  # messages
        self.per_sender = 25 if quick else 500  # messages per concurrent sender
        self.time_box = 5.0 if quick else 30.0  # seconds, per measured phase
        self.warmup = 3 if quick else 10  # unmeasured sends per connection first
        self.history = 200 if quick else 1000  # messages in the /messages room
        self.walks = 2 if quick else 5  # measured walks back through that room






# ---------------------------------------------------------------- client



def send_path(room_id: str, txn_id: str) -> str:
    return room_path(room_id, f"send/m.room.message/{txn_id}")


def own_cpu() -> float:
    """CPU seconds (user + system) this process has used."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ---------------------------------------------------------------- sending

def send_loop(client: Client, room_id: str, count: int, time_box: float, tag: str,
              warmup: int) -> dict:
    """`warmup` unmeasured sends, then up to `count` measured ones (until `time_box` seconds
    have passed), one after another on this connection. Returns the measured count, the
    monotonic clock at the first request and the last answer, the CPU time this process spent
    on the measured sends, every event ID answered (warm-up too, for the durability check) and
    the first failure, if any."""
    acked = []
    for i in range(warmup):
        body = {"msgtype": "m.text", "body": f"warm-up {i} ({tag})"}
        acked.append(client.call("PUT", send_path(room_id, f"{tag}-w{i}"), body)["event_id"])
    sent, error = 0, None
    cpu0 = own_cpu()
    t0 = time.monotonic()
    deadline = t0 + time_box
    t1 = t0
    for i in range(count):
        body = {"msgtype": "m.text", "body": f"message {i} ({tag})"}
        try:
            acked.append(client.call("PUT", send_path(room_id, f"{tag}-{i}"), body)["event_id"])
        except Exception as e:  # noqa: BLE001 - the first failure ends this sender
            error = f"{type(e).__name__}: {e}"
            break
        sent += 1
        t1 = time.monotonic()
        if t1 >= deadline:
            break
    return {"sent": sent, "t0": t0, "t1": t1, "acked": acked, "error": error,
            "cpu": own_cpu() - cpu0}


def _sender_process(port, token, room_id, count, time_box, tag, warmup, barrier, results):
    """One concurrent sender (a forked process): warm up, wait for the others (and the
    parent, which reads the server's CPU clock when the barrier opens), send."""
    try:
        client = Client(port, token)
        # The warm-up runs before the barrier, so the measured sends all start together.
        warm = send_loop(client, room_id, 0, 0, tag, warmup)
        barrier.wait(timeout=300)
        out = send_loop(client, room_id, count, time_box, tag + "m", 0)
        out["acked"] = warm["acked"] + out["acked"]
        client.close()
    except Exception as e:  # noqa: BLE001 - reported by the parent
        barrier.abort()  # the others must not wait for this one
        out = {"sent": 0, "t0": None, "t1": None, "acked": [], "cpu": 0.0,
               "error": f"{type(e).__name__}: {e}"}
    out["room"] = room_id
    results.put(out)


def rate_of(parts: list[dict], cpu_server: float, ledger: dict) -> dict:
    """Sum the senders' parts into one figure (`cpu_server`: the server's CPU seconds over
    the measured sends); record every acknowledged event ID in `ledger`."""
    for part in parts:
        ledger.setdefault(part["room"], []).extend(part["acked"])
    cpu_client = sum(p["cpu"] for p in parts)
    errors = [p["error"] for p in parts if p["error"]]
    if errors:
        log(f"    {len(errors)} sender(s) failed; first: {errors[0]}")
    sent = sum(p["sent"] for p in parts)
    if not sent:
        raise RuntimeError(errors[0] if errors else "no message sent")
    seconds = (max(p["t1"] for p in parts if p["sent"])
               - min(p["t0"] for p in parts if p["t0"] is not None))
    result = {"rate": sent / seconds, "sent": sent, "seconds": seconds,
              "cpu_server": cpu_server / sent, "cpu_client": cpu_client / sent,
              "errors": len(errors)}
    log(f"    {sent} messages in {seconds:.2f} s = {result['rate']:,.0f} msg/s; CPU per message: "
        f"server {result['cpu_server'] * 1e6:,.0f} us, bench client "
        f"{result['cpu_client'] * 1e6:,.0f} us")
    return result


def create_room(client: Client, preset: str, name: str) -> str:
    return client.call("POST", "/_matrix/client/v3/createRoom",
                       {"preset": preset, "name": name})["room_id"]


def sequential(srv, user: dict, plan: Plan, ledger: dict) -> dict:
    """One user sends plan.sequential messages into a new private_chat room, one at a time."""
    client = Client(srv.port, user["access_token"])
    try:
        room = create_room(client, "private_chat", "sequential")
        warm = send_loop(client, room, 0, 0, "seq", plan.warmup)
        cpu0 = common.process_cpu(srv.pid)
        out = send_loop(client, room, plan.sequential, plan.time_box, "seqm", 0)
        cpu_server = common.process_cpu(srv.pid) - cpu0
    finally:
        client.close()
    out["acked"] = warm["acked"] + out["acked"]
    out["room"] = room
    return rate_of([out], cpu_server, ledger)


def concurrent(srv, users: list[dict], n_rooms: int, plan: Plan, ledger: dict,
               tag: str) -> dict:
    """All users send at once, each from its own process and connection: user k into
    public_chat room k % n_rooms (created by user 0, joined by the others)."""
    creator = Client(srv.port, users[0]["access_token"])
    try:
        rooms = [create_room(creator, "public_chat", f"{tag} {r}") for r in range(n_rooms)]
    finally:
        creator.close()
    room_of = [rooms[k % n_rooms] for k in range(len(users))]
    for k, user in enumerate(users[1:], start=1):
        c = Client(srv.port, user["access_token"])
        try:
            c.call("POST", room_path(room_of[k], "join"), {})
        finally:
            c.close()

    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(len(users) + 1)  # the senders and this process
    results = ctx.Queue()
    procs = [ctx.Process(target=_sender_process,
                         args=(srv.port, user["access_token"], room_of[k], plan.per_sender,
                               plan.time_box, f"{tag}-s{k}", plan.warmup, barrier, results))
             for k, user in enumerate(users)]
    for p in procs:
        p.start()
    try:
        barrier.wait(timeout=300)  # every sender connected and warmed up
    except threading.BrokenBarrierError:
        pass  # a sender failed: its part says why
    cpu0 = common.process_cpu(srv.pid)
    # Read every part before joining: a child whose queue pipe is full would never exit.
    parts = [results.get(timeout=plan.time_box + 600) for _ in procs]
    cpu_server = common.process_cpu(srv.pid) - cpu0
    for p in procs:
        p.join()
    return rate_of(parts, cpu_server, ledger)


# ---------------------------------------------------------------- reading

def walk_back(client: Client, room_id: str, timed: list[float] | None = None) -> list[dict]:
    """Every event of the room, newest first, in pages of PAGE read backwards from the end,
    `from` = the previous page's `end`, until a page has no `end` (or no events). With
    `timed`, each page's latency (request to last byte, JSON decoded) is appended to it."""
    events, token = [], None
    for _ in range(100_000):  # a bound, so a server that never ends a walk cannot hang it
        query = {"dir": "b", "limit": str(PAGE)}
        if token:
            query["from"] = token
        t0 = time.perf_counter()
        page = client.call("GET", room_path(room_id, "messages?" + urllib.parse.urlencode(query)))
        if timed is not None:
            timed.append(time.perf_counter() - t0)
        events.extend(page.get("chunk", []))
        token = page.get("end")
        if not token or not page.get("chunk"):
            return events
    raise RuntimeError(f"/messages walk of {room_id} did not end after 100000 pages")


def messages_latency(srv, user: dict, plan: Plan, ledger: dict) -> dict:
    """Fill a private_chat room with plan.history messages (unmeasured), then time pages of
    PAGE walking back to its start: one warm-up walk, plan.walks measured."""
    client = Client(srv.port, user["access_token"])
    try:
        room = create_room(client, "private_chat", "history")
        filled = send_loop(client, room, plan.history, 3600, "hist", 0)
        if filled["error"]:
            raise RuntimeError(filled["error"])
        ledger.setdefault(room, []).extend(filled["acked"])
        events = walk_back(client, room)
        found = sum(e.get("type") == "m.room.message" for e in events)
        if found != plan.history:
            raise RuntimeError(f"the walk found {found} messages of {plan.history} sent")
        latencies: list[float] = []
        for _ in range(plan.walks):
            walk_back(client, room, latencies)
    finally:
        client.close()
    ordered = sorted(latencies)
    result = {"median": statistics.median(ordered),
              "p95": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
              "pages": len(ordered) // plan.walks, "events": len(events)}
    log(f"    {len(events)} events in {result['pages']} pages per walk, {plan.walks} walks: "
        f"median {result['median'] * 1000:.2f} ms, p95 {result['p95'] * 1000:.2f} ms, "
        f"max {ordered[-1] * 1000:.2f} ms")
    return result


def durability(srv, reader: dict, ledger: dict, binary: str, env: dict) -> dict:
    """SIGKILL the server right now, restart it on the same data dir and database, and look
    for every acknowledged event ID through /messages (read as `reader`, in every room)."""
    acked = sum(len(ids) for ids in ledger.values())
    srv.kill()
    log(f"    killed with SIGKILL; restarting on {srv.workdir}/data")
    with myelin.Myelin(binary, extra_env=env, workdir=srv.workdir) as again:
        client = Client(again.port, reader["access_token"])
        try:
            found = extra = 0
            for room, ids in ledger.items():
                seen = {e["event_id"] for e in walk_back(client, room)
                        if e.get("type") == "m.room.message"}
                found += len(seen & set(ids))
                extra += len(seen - set(ids))
        finally:
            client.close()
    line = (f"durability after kill -9: {acked} acknowledged, {found} found "
            f"-> {'PASS' if found == acked else 'MISS'}")
    log("    " + line + (f" ({extra} unacknowledged messages also there)" if extra else ""))
    return {"acked": acked, "found": found, "extra": extra, "line": line}


# ---------------------------------------------------------------- one server

def measure_server(name: str, srv, plan: Plan, durable: tuple | None = None) -> dict:
    """Every figure of one running server. `durable` = (binary, env) for the kill -9 check,
    which ends the server (Myelin only)."""
    res: dict = {}
    log(f"  {name}: registering {SENDERS} users")
    users = [synapse.register_user(srv.base_url, f"sender{k}", f"bench-password-{k}")
             for k in range(SENDERS)]
    ledger: dict[str, list[str]] = {}  # room ID -> event IDs of every answered send

    log(f"  {name}: sequential sends, 1 user, 1 room")
    attempt(res, "seq", sequential, srv, users[0], plan, ledger)
    log(f"  {name}: /messages pages of {PAGE} in a room of {plan.history} messages")
    attempt(res, "pages", messages_latency, srv, users[0], plan, ledger)
    log(f"  {name}: {SENDERS} concurrent senders, 1 room")
    attempt(res, "one", concurrent, srv, users, 1, plan, ledger, "one")
    log(f"  {name}: {SENDERS} concurrent senders, {ROOMS_SPREAD} rooms")
    attempt(res, "spread", concurrent, srv, users, ROOMS_SPREAD, plan, ledger, "spread")
    if durable:  # straight after the last answered send: nothing else may flush first
        log(f"  {name}: kill -9 and restart")
        attempt(res, "durability", durability, srv, users[0], ledger, *durable)
    return res


# ---------------------------------------------------------------- the table

def build_rows(my: dict | None, sy: dict | None, plan: Plan) -> list[list[str]]:
    """Metric | Myelin | Synapse | ratio | target | verdict."""

    def get(res, key, field):
        entry = (res or {}).get(key)
        if entry is None or "error" in entry:
            return None
        return entry.get(field)

    def cell(res, key, field, fmt):
        entry = (res or {}).get(key)
        if entry is None:
            return "-"
        if "error" in entry:
            return "error"
        return fmt(entry[field])

    def row(label, m, s, ratio="", target="", ok=None):
        return [label, m, s, ratio, target, "" if ok is None else ("PASS" if ok else "MISS")]

    rate = lambda v: f"{v:,.0f} msg/s"  # noqa: E731
    ms = lambda v: f"{v * 1000:.2f} ms"  # noqa: E731

    def cpu(res, key):
        entry = (res or {}).get(key)
        if entry is None or "error" in entry:
            return "-"
        return f"{entry['cpu_server'] * 1e6:,.0f} / {entry['cpu_client'] * 1e6:,.0f} us"

    def amount(res, key):
        entry = (res or {}).get(key)
        if entry is None or "error" in entry:
            return "-"
        return (f"{entry['sent']:,} in {entry['seconds']:.2f} s"
                + (f", {entry['errors']} failed" if entry["errors"] else ""))

    rows = []
    phases = [("seq", f"sequential send, 1 user, 1 room (N = {plan.sequential:,})", 65),
              ("one", f"{SENDERS} senders, 1 room (up to {plan.per_sender} each)", 40),
              ("spread", f"{SENDERS} senders, {ROOMS_SPREAD} rooms (up to {plan.per_sender} each)",
               120)]
    for key, label, target in phases:
        m, s = get(my, key, "rate"), get(sy, key, "rate")
        rows.append(row(label, cell(my, key, "rate", rate), cell(sy, key, "rate", rate),
                        f"{m / s:.1f}x" if m and s else "-", f">= {target}x Synapse",
                        (m / s >= target) if m and s else None))
        rows.append(row("  messages sent in the time", amount(my, key), amount(sy, key)))
        rows.append(row("  CPU per message: server / client", cpu(my, key), cpu(sy, key)))

    for field, label in (("median", "median"), ("p95", "p95")):
        m, s = get(my, "pages", field), get(sy, "pages", field)
        rows.append(row(f"/messages page of {PAGE}, {label} ({plan.history} msgs, "
                        f"{plan.walks} walks)",
                        cell(my, "pages", field, ms), cell(sy, "pages", field, ms),
                        latency_ratio(m, s), "(lower is better)"))

    d = (my or {}).get("durability")
    if d is not None:
        ok = None if "error" in d else d["found"] == d["acked"]
        rows.append(row("durability after kill -9: acknowledged, found",
                        "error" if "error" in d else f"{d['acked']:,}, {d['found']:,}", "n/a",
                        "", "all found", ok))
    return rows


def latency_ratio(m: float | None, s: float | None) -> str:
    """Myelin's latency against Synapse's, in words (either way round)."""
    if not (m and s):
        return "-"
    return f"{s / m:.1f}x faster" if m <= s else f"{m / s:.1f}x slower"


def render(rows, markdown: bool) -> str:
    head = ["metric", "Myelin", f"Synapse {synapse.SYNAPSE_VERSION}", "ratio", "target",
            "verdict"]
    return common.render_table(head, rows, markdown)


def header_lines(binary: str | None, plan: Plan, load: list) -> list[str]:
    return [
        common.machine_line(binary, plan.quick),
        f"Client: Python {platform.python_version()}, plain sockets, one keep-alive HTTP/1.1 "
        f"connection per user (TCP_NODELAY); the concurrent senders are {SENDERS} forked "
        "processes on the same cores as the server.",
        f"Sends: m.text messages, each phase time-boxed to {plan.time_box:g} s after "
        f"{plan.warmup} warm-up sends per connection; rate = answered sends / (last answer - "
        "first request); ratio = Myelin / Synapse.",
        "CPU per message: over the measured sends, the server's utime+stime (/proc) and the "
        "sum of the sending processes' (getrusage).",
        "Both servers: SQLite, rate limits off (Synapse every rc_* at 10^6/s; Myelin "
        "rate_limits.enabled=false), registration open.",
        common.load_note(load),
    ]


# ---------------------------------------------------------------- main

def main() -> None:
    ap = common.bench_arguments(__doc__, f"small counts (200 sequential, {SENDERS}x25 concurrent, "
                                "200-message history, 5 s time box): a smoke test")
    args = ap.parse_args()
    plan = Plan(args.quick)

    binary = common.prepare_servers(args, log)

    my = sy = None
    load = [os.getloadavg()[0]]
    if not args.skip_myelin:
        log(f"Myelin: {binary}")
        env = {"MYELIN_REGISTRATION__ENABLED": "true",
               "MYELIN_RATE_LIMITS__ENABLED": "false"}  # 16 registrations at once
        # keep_dir: the durability check restarts Myelin on this dir (and removes it then).
        srv = myelin.Myelin(binary, extra_env=env, keep_dir=True)
        try:
            my = measure_server("Myelin", srv, plan, durable=(binary, env))
        finally:
            srv.stop()
            shutil.rmtree(srv.workdir, ignore_errors=True)
    if not args.skip_synapse:
        log(f"Synapse {synapse.SYNAPSE_VERSION}")
        # The harness already sets every rc_* limiter (rc_message, rc_joins,
        # rc_joins_per_room, rc_room_creation, rc_registration, ...) to 10^6/s.
        with synapse.Synapse() as srv:
            sy = measure_server("Synapse", srv, plan)

    load.append(os.getloadavg()[0])
    rows = build_rows(my, sy, plan)
    head = header_lines(binary, plan, load)
    d = (my or {}).get("durability")
    if d and "line" in d:
        head.append(d["line"])
    print("\n" + "\n".join(head) + "\n\n" + render(rows, False))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("Rooms benchmark (" + head[0] + "):\n\n"
                    + "\n".join(f"- {h}" for h in head[1:]) + "\n\n"
                    + render(rows, True) + "\n")
        print(f"\nmarkdown written to {args.markdown}")


if __name__ == "__main__":
    main()
