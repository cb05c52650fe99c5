#!/usr/bin/env python3
"""Sync benchmark: GET /sync latency, Myelin vs a real Synapse, in one run.

The workload (identical on both servers, each fresh, in its own temp dir on 127.0.0.1, one
server after the other; 5 users registered through the client API with m.login.dummy; rate
limits off on both):
  rooms      `owner` creates R public_chat rooms (createRoom with a name and a topic); `big`,
             `m1` and `m2` join every room, `small` joins the first 8; then 20 m.text messages
             are sent into each room, in turn by owner, m1 and m2. R = 200. The set-up runs 8
             rooms at a time (8 threads, one keep-alive connection per thread and user) and is
             not timed. `small` is thus in 8 rooms, `big` in R, every room with 5 or 4 members,
             11 state events and the messages as history
  filter     every /sync carries the inline filter {"room":{"timeline":{"limit":10}}} (the
             spec's and both servers' default limit, written out so both see the same
             request); no set_presence (the default: online)
Then, for `small` (8 rooms) and for `big` (R rooms), in this order:
  initial     GET /sync without `since`: warm-ups, then N timed (request to last byte of the
              answer, before JSON decoding). Synapse keeps a sync's answer for 2 minutes and
              gives it again to the same request (sync_response_cache_duration): that cache is
              set to 0 here, or every repetition after the first would be a lookup
  nothing new GET /sync?since=<next_batch>&timeout=0, each from the previous answer's
              next_batch, nothing sent meanwhile: warm-ups, then N timed
  one new     m1 sends one message into one of the user's rooms (the next one each time), and
              when that send is answered the user syncs with since=<the previous next_batch>
              and timeout=0; only the sync is timed. The answer must hold the message (counted)
  long-poll   the user has GET /sync?since=<next_batch>&timeout=30000 waiting (sent 200 ms
              before, on its own connection and thread); m1 sends a message into one of the
              user's rooms; the figure is from m1's send being answered to the user's sync
              answer that holds the message arriving (last byte). If a sync wakes for
              something else first (presence, say), the next long-poll is sent at once and
              the wait goes on; such extra wakes are counted. Negative values mean the
              sync answer arrived before the send's own answer: the server wakes the sync
              when the event is stored, and both answers are then written at once. The
              target ("29x faster") is judged as Myelin's median <= Synapse's / 29, which a
              value <= 0 meets; no ratio is printed for it. Shown beside it, with a ratio:
              from the send's request to the sync answer (the send's own time included)
Latencies: median and p90 (nearest rank) of N; ratio = Synapse / Myelin ("x faster").
--quick: 50 rooms with 10 messages each and small N, a smoke test of a few minutes.

The client is plain-socket Python on keep-alive HTTP/1.1 connections (TCP_NODELAY), as in
bench/rooms.py, on the same two cores as the server. A benchmark program, not a test: it prints
figures and targets and exits 0 whatever they are. Compare figures from the same run only.

    python3 bench/sync.py [--myelin-bin PATH] [--markdown FILE] [--quick]
                          [--skip-synapse] [--skip-myelin] [--myelin-only]
"""

import concurrent.futures
import itertools
import json
import math
import os
import platform
import statistics
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import common, myelin, synapse  # noqa: E402
from harness.common import attempt, log  # noqa: E402
from harness.http import Client, RequestFailed, room_path  # noqa: E402

SMALL_ROOMS = 8
SETUP_THREADS = 8
TIMELINE_LIMIT = 10
FILTER = json.dumps({"room": {"timeline": {"limit": TIMELINE_LIMIT}}}, separators=(",", ":"))
LONG_POLL_MS = 30000
LONG_POLL_HEAD_START = 0.2  # seconds between sending the long-poll and the message
MEMBERS = ["owner", "big", "small", "m1", "m2"]

# Targets: Synapse / Myelin on the median (None: reported, not judged).
TARGETS = {"initial": 17, "nothing": None, "one": 19, "longpoll": 29}


class Plan:
    """What one run measures; --quick shrinks it to a smoke test of a few minutes."""

    def __init__(self, quick: bool):
        self.quick = quick
        self.rooms = 50 if quick else 200
        self.history = 10 if quick else 20  # messages per room
        # (warm-ups, timed repetitions) per scenario
        self.initial_small = (1, 5) if quick else (3, 20)
        self.initial_big = (1, 3) if quick else (2, 10)
        self.nothing = (3, 10) if quick else (5, 50)
        self.one = (2, 10) if quick else (3, 30)
        self.longpoll = (1, 5) if quick else (3, 20)






# ---------------------------------------------------------------- client



_txn = itertools.count()
_txn_prefix = f"b{os.getpid()}x{int(time.time())}"


def send(client: Client, room_id: str, body: str) -> str:
    path = room_path(room_id, f"send/m.room.message/{_txn_prefix}-{next(_txn)}")
    return client.call("PUT", path, {"msgtype": "m.text", "body": body})["event_id"]


def sync_path(since: str | None = None, timeout: int | None = None) -> str:
    query = {"filter": FILTER}
    if since is not None:
        query["since"] = since
    if timeout is not None:
        query["timeout"] = str(timeout)
    return "/_matrix/client/v3/sync?" + urllib.parse.urlencode(query)


def timed_sync(client: Client, since: str | None = None,
               timeout: int | None = None) -> tuple[float, dict]:
    """(seconds from the request to the last byte of the answer, the answer)."""
    t0 = time.perf_counter()
    answer = client.call("GET", sync_path(since, timeout))
    return client.last_byte - t0, answer


def timeline_bodies(answer: dict) -> set[str]:
    return {e.get("content", {}).get("body")
            for room in answer.get("rooms", {}).get("join", {}).values()
            for e in room.get("timeline", {}).get("events", [])}


def summary(samples: list[float], **extra) -> dict:
    ordered = sorted(samples)
    return dict({"median": statistics.median(ordered),
                 "p90": ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)],
                 "min": ordered[0], "max": ordered[-1], "n": len(ordered)}, **extra)


def ms_list(s: dict) -> str:
    return (f"median {s['median'] * 1000:.2f} ms, p90 {s['p90'] * 1000:.2f} ms, "
            f"min {s['min'] * 1000:.2f}, max {s['max'] * 1000:.2f} (N = {s['n']})")


# ---------------------------------------------------------------- set-up

def set_up(srv, plan: Plan) -> dict:
    """Register the users and build the rooms (untimed). Returns {"users": name -> login,
    "rooms": [room IDs], "seconds": set-up time}."""
    t0 = time.monotonic()
    users = {name: synapse.register_user(srv.base_url, name, f"bench-password-{name}")
             for name in MEMBERS}
    local = threading.local()
    opened: list[Client] = []
    lock = threading.Lock()

    def client_of(name: str) -> Client:
        per_thread = getattr(local, "clients", None)
        if per_thread is None:
            per_thread = local.clients = {}
        if name not in per_thread:
            c = Client(srv.port, users[name]["access_token"])
            with lock:
                opened.append(c)
            per_thread[name] = c
        return per_thread[name]

    def build(i: int) -> str:
        room = client_of("owner").call("POST", "/_matrix/client/v3/createRoom", {
            "preset": "public_chat", "name": f"Bench room {i}",
            "topic": f"The topic of bench room {i}, for the sync benchmark"})["room_id"]
        joiners = ["big", "m1", "m2"] + (["small"] if i < SMALL_ROOMS else [])
        for name in joiners:
            client_of(name).call("POST", room_path(room, "join"), {})
        senders = ["owner", "m1", "m2"]
        for k in range(plan.history):
            send(client_of(senders[k % 3]), room, f"history message {k} of room {i}")
        return room

    try:
        with concurrent.futures.ThreadPoolExecutor(SETUP_THREADS) as pool:
            rooms = list(pool.map(build, range(plan.rooms)))
    finally:
        for c in opened:
            c.close()
    seconds = time.monotonic() - t0
    log(f"    set-up: {len(users)} users, {len(rooms)} rooms x {plan.history} messages "
        f"in {seconds:.1f} s")
    return {"users": users, "rooms": rooms, "seconds": seconds}


# ---------------------------------------------------------------- scenarios

def initial(srv, token: str, expect_rooms: int, reps: tuple[int, int]) -> dict:
    warm, n = reps
    client = Client(srv.port, token)
    try:
        samples, sizes = [], []
        for i in range(warm + n):
            seconds, answer = timed_sync(client)
            joined = answer.get("rooms", {}).get("join", {})
            if len(joined) != expect_rooms:
                raise RuntimeError(f"initial sync has {len(joined)} joined rooms, "
                                   f"{expect_rooms} expected")
            if i >= warm:
                samples.append(seconds)
                sizes.append(client.last_size)
        events = sum(len(r.get("timeline", {}).get("events", [])) for r in joined.values())
        state = sum(len(r.get("state", {}).get("events", [])) for r in joined.values())
    finally:
        client.close()
    s = summary(samples, size=statistics.median(sizes), rooms=len(joined), timeline=events,
                state=state)
    log(f"    {ms_list(s)}; {s['size'] / 1000:,.0f} kB, {len(joined)} rooms, "
        f"{events} timeline + {state} state events")
    return s


def nothing_new(srv, token: str, reps: tuple[int, int]) -> dict:
    warm, n = reps
    client = Client(srv.port, token)
    try:
        since = client.call("GET", sync_path())["next_batch"]
        samples, non_empty = [], 0
        for i in range(warm + n):
            seconds, answer = timed_sync(client, since, 0)
            since = answer["next_batch"]
            if i >= warm:
                samples.append(seconds)
                non_empty += bool(answer.get("rooms", {}).get("join"))
    finally:
        client.close()
    s = summary(samples, non_empty=non_empty)
    log(f"    {ms_list(s)}; {non_empty} of {n} answers had room updates")
    return s


def one_new(srv, token: str, sender_token: str, rooms: list[str],
            reps: tuple[int, int]) -> dict:
    warm, n = reps
    client = Client(srv.port, token)
    sender = Client(srv.port, sender_token)
    try:
        since = client.call("GET", sync_path())["next_batch"]
        samples, seen = [], 0
        for i in range(warm + n):
            since = client.call("GET", sync_path(since, 0))["next_batch"]  # drain, untimed
            body = f"one new event {i} {time.time_ns()}"
            send(sender, rooms[i % len(rooms)], body)
            seconds, answer = timed_sync(client, since, 0)
            since = answer["next_batch"]
            if i >= warm:
                samples.append(seconds)
                seen += body in timeline_bodies(answer)
    finally:
        client.close()
        sender.close()
    s = summary(samples, seen=seen)
    log(f"    {ms_list(s)}; the new event was in {seen} of {n} answers")
    return s


def long_poll(srv, token: str, sender_token: str, rooms: list[str],
              reps: tuple[int, int]) -> dict:
    warm, n = reps
    client = Client(srv.port, token)
    sender = Client(srv.port, sender_token)
    try:
        since = client.call("GET", sync_path())["next_batch"]
        samples, sends, whole, extra_wakes = [], [], [], 0
        for i in range(warm + n):
            since = client.call("GET", sync_path(since, 0))["next_batch"]  # drain, untimed
            body = f"long-poll event {i} {time.time_ns()}"
            out: dict = {}

            def wait(since=since, body=body, out=out):
                try:
                    wakes = 0
                    while True:
                        answer = client.call("GET", sync_path(since, LONG_POLL_MS))
                        out["arrived"] = client.last_byte
                        since = answer["next_batch"]
                        if body in timeline_bodies(answer):
                            break
                        wakes += 1
                        if time.perf_counter() - out.get("sent", time.perf_counter()) > 60:
                            raise TimeoutError("no sync answer held the message in 60 s")
                    out["since"], out["wakes"] = since, wakes
                except Exception as e:  # noqa: BLE001 - re-raised by the main thread
                    out["error"] = e

            waiter = threading.Thread(target=wait, daemon=True)
            waiter.start()
            time.sleep(LONG_POLL_HEAD_START)  # let the long-poll reach the server and park
            t_send = time.perf_counter()
            send(sender, rooms[i % len(rooms)], body)
            t_answered = sender.last_byte
            out["sent"] = t_answered
            waiter.join(LONG_POLL_MS / 1000 + 90)
            if waiter.is_alive():
                raise TimeoutError("the long-polling sync never answered")
            if "error" in out:
                raise out["error"]
            since = out["since"]
            if i >= warm:
                samples.append(out["arrived"] - t_answered)
                sends.append(t_answered - t_send)
                whole.append(out["arrived"] - t_send)
                extra_wakes += out["wakes"]
    finally:
        client.close()
        sender.close()
    s = summary(samples, extra_wakes=extra_wakes, send=statistics.median(sends),
                whole=statistics.median(whole))
    log(f"    {ms_list(s)}; send answered in {s['send'] * 1000:.2f} ms (median); "
        f"{extra_wakes} wakes without the message")
    return s


# ---------------------------------------------------------------- one server

def measure_server(name: str, srv, plan: Plan) -> dict:
    res: dict = {}
    log(f"  {name}: set-up")
    world = set_up(srv, plan)
    res["setup"] = {"seconds": world["seconds"]}
    users, rooms = world["users"], world["rooms"]
    m1 = users["m1"]["access_token"]
    for who, count, rooms_of, init_reps in (
            ("small", SMALL_ROOMS, rooms[:SMALL_ROOMS], plan.initial_small),
            ("big", plan.rooms, rooms, plan.initial_big)):
        token = users[who]["access_token"]
        log(f"  {name}: initial sync, {count} rooms")
        attempt(res, ("initial", count), initial, srv, token, count, init_reps)
        log(f"  {name}: incremental sync, nothing new, {count} rooms")
        attempt(res, ("nothing", count), nothing_new, srv, token, plan.nothing)
        log(f"  {name}: incremental sync, one new event, {count} rooms")
        attempt(res, ("one", count), one_new, srv, token, m1, rooms_of, plan.one)
        log(f"  {name}: long-poll delivery, {count} rooms")
        attempt(res, ("longpoll", count), long_poll, srv, token, m1, rooms_of, plan.longpoll)
    return res


# ---------------------------------------------------------------- the table

def ms(v: float) -> str:
    return f"{v * 1000:.2f} ms"


def ratio_cell(m: float | None, s: float | None) -> str:
    if m is None or s is None:
        return "-"
    if m <= 0:
        return "no ratio: Myelin <= 0"
    return f"{s / m:.1f}x faster" if s >= m else f"{m / s:.1f}x slower"


def build_rows(my: dict | None, sy: dict | None, plan: Plan) -> list[list[str]]:
    """Metric | Myelin | Synapse | ratio | target | verdict."""

    def entry(res, key):
        e = (res or {}).get(key)
        return None if e is None or "error" in e else e

    def cell(res, key, fmt):
        e = (res or {}).get(key)
        if e is None:
            return "-"
        return "error" if "error" in e else fmt(e)

    rows = []
    labels = {
        "initial": "initial sync (no since), {rooms} rooms, reps = {n}",
        "nothing": "incremental, nothing new (timeout=0), {rooms} rooms, reps = {n}",
        "one": "incremental, one new event (timeout=0), {rooms} rooms, reps = {n}",
        "longpoll": "long-poll delivery (send answered -> sync answer), {rooms} rooms, reps = {n}",
    }
    reps = {("initial", SMALL_ROOMS): plan.initial_small, ("initial", plan.rooms): plan.initial_big,
            "nothing": plan.nothing, "one": plan.one, "longpoll": plan.longpoll}
    for kind in ("initial", "nothing", "one", "longpoll"):
        for count in (SMALL_ROOMS, plan.rooms):
            key = (kind, count)
            n = reps.get(key, reps.get(kind))[1]
            m, s = entry(my, key), entry(sy, key)
            target = TARGETS[kind]
            ok = None
            if target and m and s:
                # "target x faster" is Myelin's median at most Synapse's / target; said so,
                # a Myelin figure at or below zero (the sync's answer arriving before the
                # send's own, which long-poll delivery can do) is judged too.
                ok = m["median"] <= s["median"] / target
            rows.append([labels[kind].format(rooms=count, n=n) + ": median",
                         cell(my, key, lambda e: ms(e["median"])),
                         cell(sy, key, lambda e: ms(e["median"])),
                         ratio_cell(m and m["median"], s and s["median"]),
                         f">= {target}x Synapse" if target else "(no target)",
                         "" if ok is None else ("PASS" if ok else "MISS")])
            rows.append(["  p90", cell(my, key, lambda e: ms(e["p90"])),
                         cell(sy, key, lambda e: ms(e["p90"])),
                         ratio_cell(m and m["p90"], s and s["p90"]), "", ""])
            if kind == "initial":
                rows.append(["  answer: size / rooms / timeline + state events",
                             cell(my, key, lambda e: f"{e['size'] / 1000:,.0f} kB / {e['rooms']}"
                                  f" / {e['timeline']} + {e['state']}"),
                             cell(sy, key, lambda e: f"{e['size'] / 1000:,.0f} kB / {e['rooms']}"
                                  f" / {e['timeline']} + {e['state']}"), "", "", ""])
            elif kind == "nothing":
                rows.append(["  answers with room updates",
                             cell(my, key, lambda e: f"{e['non_empty']} of {e['n']}"),
                             cell(sy, key, lambda e: f"{e['non_empty']} of {e['n']}"),
                             "", "", ""])
            elif kind == "one":
                rows.append(["  answers holding the new event",
                             cell(my, key, lambda e: f"{e['seen']} of {e['n']}"),
                             cell(sy, key, lambda e: f"{e['seen']} of {e['n']}"), "", "", ""])
            else:
                rows.append(["  the send itself (median) / wakes without the message",
                             cell(my, key, lambda e: f"{ms(e['send'])} / {e['extra_wakes']}"),
                             cell(sy, key, lambda e: f"{ms(e['send'])} / {e['extra_wakes']}"),
                             "", "", ""])
                rows.append(["  from the send's request to the sync answer (median)",
                             cell(my, key, lambda e: ms(e["whole"]) if "whole" in e else "-"),
                             cell(sy, key, lambda e: ms(e["whole"]) if "whole" in e else "-"),
                             ratio_cell(m and m.get("whole"), s and s.get("whole")), "", ""])
    rows.append(["set-up (untimed in the figures above)",
                 cell(my, "setup", lambda e: f"{e['seconds']:.1f} s"),
                 cell(sy, "setup", lambda e: f"{e['seconds']:.1f} s"), "", "", ""])
    return rows


def render(rows, markdown: bool) -> str:
    head = ["metric", "Myelin", f"Synapse {synapse.SYNAPSE_VERSION}", "ratio", "target",
            "verdict"]
    return common.render_table(head, rows, markdown)


def header_lines(binary: str | None, plan: Plan, load: list) -> list[str]:
    return [
        common.machine_line(binary, plan.quick),
        f"Client: Python {platform.python_version()}, plain sockets, keep-alive HTTP/1.1 "
        "(TCP_NODELAY), one connection per user; the long-poll waits on its own thread.",
        f"Workload: {plan.rooms} public_chat rooms (name, topic, 4-5 members, {plan.history} "
        f"messages each); user 'small' in {SMALL_ROOMS} of them, 'big' in all; filter "
        f"{FILTER}. Latency = request to last byte (before JSON decoding).",
        "Both servers: SQLite, rate limits off (Synapse every rc_* at 10^6/s and "
        "caches.sync_response_cache_duration 0; Myelin rate_limits.enabled=false).",
        common.load_note(load),
    ]


# ---------------------------------------------------------------- main

def main() -> None:
    ap = common.bench_arguments(__doc__, "50 rooms of 10 messages, few repetitions: a smoke test")
    ap.add_argument("--myelin-only", action="store_true", help="the same as --skip-synapse")
    args = ap.parse_args()
    args.skip_synapse = args.skip_synapse or args.myelin_only
    plan = Plan(args.quick)

    binary = common.prepare_servers(args, log)

    my = sy = None
    load = [os.getloadavg()[0]]
    if not args.skip_myelin:
        log(f"Myelin: {binary}")
        env = {"MYELIN_REGISTRATION__ENABLED": "true",
               "MYELIN_RATE_LIMITS__ENABLED": "false"}
        with myelin.Myelin(binary, extra_env=env) as srv:
            my = measure_server("Myelin", srv, plan)
    if not args.skip_synapse:
        log(f"Synapse {synapse.SYNAPSE_VERSION}")
        # The harness sets every rc_* limiter to 10^6/s; the sync answer cache must go too,
        # or repeated identical syncs would be answered from it.
        with synapse.Synapse(extra_config={
                "caches": {"sync_response_cache_duration": 0}}) as srv:
            sy = measure_server("Synapse", srv, plan)

    load.append(os.getloadavg()[0])
    rows = build_rows(my, sy, plan)
    head = header_lines(binary, plan, load)
    print("\n" + "\n".join(head) + "\n\n" + render(rows, False))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("Sync benchmark (" + head[0] + "):\n\n"
                    + "\n".join(f"- {h}" for h in head[1:]) + "\n\n"
                    + render(rows, True) + "\n")
        print(f"\nmarkdown written to {args.markdown}")


if __name__ == "__main__":
    main()
