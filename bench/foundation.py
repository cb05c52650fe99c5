#!/usr/bin/env python3
"""Foundation benchmark: Myelin vs a real Synapse, on this machine, in one run.

Figures (each server in a fresh temp dir, both on 127.0.0.1):
  start  time from process spawn to the first 200 on GET /_matrix/client/versions
         (median of 5 Myelin runs, polled every 2 ms; 3 Synapse runs, every 10 ms)
  RSS    VmRSS ~3 s after ready (median over the same runs)
  rps    /_matrix/client/versions with wrk, 64 connections, after a 2 s warm-up

A benchmark program, not a test: it prints figures and targets, and exits 0
whatever they are. Both servers and wrk share the machine's cores, so compare
figures from the same run only.

    python3 bench/foundation.py [--myelin-bin PATH] [--markdown FILE]
"""

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import common, myelin, synapse  # noqa: E402

PATH = "/_matrix/client/versions"
IDLE_WAIT = 3.0  # seconds after ready before reading idle RSS


def ensure_wrk() -> str:
    """wrk from Debian's packages; install it on a fresh machine."""
    if not shutil.which("wrk"):
        print("[bench] installing wrk with apt-get ...", file=sys.stderr)
        if subprocess.run(["apt-get", "install", "-y", "-q", "wrk"]).returncode != 0:
            subprocess.run(["apt-get", "update"], check=True)  # package lists may be empty
            subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True)
    return shutil.which("wrk")


def run_wrk(base_url: str, seconds: int, connections: int) -> dict:
    """One bounded wrk run; returns rps and the error counts wrk reports."""
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", base_url + PATH],
        capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
              "non2xx": 0, "socket_errors": 0, "p99": None}
    if m := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out):
        result["non2xx"] = int(m.group(1))  # a 429 or 500 would inflate rps
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        result["socket_errors"] = sum(int(g) for g in m.groups())
    if m := re.search(r"^\s+99%\s+(\S+)", out, re.M):
        result["p99"] = m.group(1)
    return result


def measure(name: str, start_server, runs: int, seconds: int, connections: int) -> dict:
    """Start `runs` fresh servers for start-up/RSS; load the last one with wrk."""
    starts, rss, srv = [], [], None
    try:
        for i in range(runs):
            srv = start_server()
            starts.append(srv.startup_seconds)
            time.sleep(IDLE_WAIT)
            rss.append(common.rss_kib(srv.pid))
            print(f"  {name} run {i + 1}/{runs}: start {srv.startup_seconds * 1000:.1f} ms, "
                  f"idle RSS {rss[-1] / 1024:.1f} MiB", file=sys.stderr)
            if i < runs - 1:
                srv.stop()
        # The last server stays up for the load figures.
        run_wrk(srv.base_url, 2, connections)  # warm-up: connection setup, allocator, caches
        load = run_wrk(srv.base_url, seconds, connections)
        load["rss_after"] = common.rss_kib(srv.pid)
    finally:  # never leave a server running, even on Ctrl-C or a failed run
        if srv:
            srv.stop()
    print(f"  {name} load: {load}", file=sys.stderr)
    return {"start": statistics.median(starts), "starts": starts,
            "rss": statistics.median(rss), **load}


def fmt_row(label, m, s, ratio, target, ok):
    return [label, m, s, ratio, target, "" if ok is None else ("PASS" if ok else "MISS")]


def build_rows(my: dict | None, sy: dict | None, conns: int) -> list[list[str]]:
    """Metric | Myelin | Synapse | ratio | target | verdict."""
    def g(d, k, f):
        return f(d[k]) if d else "-"
    both = bool(my and sy)
    rows = [
        fmt_row("start to first 200 (median)",
                g(my, "start", lambda v: f"{v * 1000:.1f} ms"),
                g(sy, "start", lambda v: f"{v * 1000:.0f} ms"),
                f"{sy['start'] / my['start']:.0f}x faster" if both else "-",
                "< 100 ms", my["start"] < 0.1 if my else None),
        fmt_row("idle RSS (~3 s after ready)",
                g(my, "rss", lambda v: f"{v / 1024:.1f} MiB"),
                g(sy, "rss", lambda v: f"{v / 1024:.1f} MiB"),
                f"{sy['rss'] / my['rss']:.1f}x smaller" if both else "-",
                "< 30 MiB", my["rss"] < 30 * 1024 if my else None),
        fmt_row(f"/versions req/s ({conns} conns)",
                g(my, "rps", lambda v: f"{v:,.0f}"), g(sy, "rps", lambda v: f"{v:,.0f}"),
                f"{my['rps'] / sy['rps']:.1f}x" if both else "-",
                ">= 10x Synapse", my["rps"] >= 10 * sy["rps"] if both else None),
        fmt_row("  p99 latency under load", g(my, "p99", str), g(sy, "p99", str),
                "", "", None),
        fmt_row("  RSS after load",
                g(my, "rss_after", lambda v: f"{v / 1024:.1f} MiB"),
                g(sy, "rss_after", lambda v: f"{v / 1024:.1f} MiB"), "", "", None),
        # Errors make rps meaningless (a fast 429/500 is not a served request).
        fmt_row("  non-2xx / socket errors",
                g(my, "non2xx", str) + (f" / {my['socket_errors']}" if my else ""),
                g(sy, "non2xx", str) + (f" / {sy['socket_errors']}" if sy else ""),
                "", "0 / 0", None),
    ]
    return rows


def render(rows, markdown: bool) -> str:
    head = ["metric", "Myelin", f"Synapse {synapse.SYNAPSE_VERSION}", "ratio", "target",
            "verdict"]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
                     for r in [head] + rows)


def machine_line() -> str:
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), platform.machine())
    commit = subprocess.run(["git", "-C", common.REPO, "describe", "--always", "--dirty"],
                            capture_output=True, text=True).stdout.strip() or "?"
    return (f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores ({cpu}), "
            f"Linux {platform.release()}, Myelin @ {commit}, wrk on the same cores")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--myelin-bin", help="default: $CARGO_TARGET_DIR|target /release/myelin "
                    "(built with cargo if missing)")
    ap.add_argument("--markdown", metavar="FILE", help="also write the table as markdown")
    ap.add_argument("--duration", type=int, default=10, help="wrk seconds (default 10)")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--skip-myelin", action="store_true")
    ap.add_argument("--skip-synapse", action="store_true")
    args = ap.parse_args()

    ensure_wrk()
    my = sy = None
    if not args.skip_myelin:
        binary = args.myelin_bin or myelin.default_bin("release")
        if not os.path.exists(binary):
            if args.myelin_bin:
                sys.exit(f"no Myelin binary at {binary}")
            print(f"[bench] {binary} missing: cargo build --release", file=sys.stderr)
            myelin.build("release")
        print(f"Myelin: {binary}", file=sys.stderr)
        my = measure("Myelin", lambda: myelin.Myelin(binary, poll_interval=0.002),
                     5, args.duration, args.connections)
    if not args.skip_synapse:
        synapse.ensure_installed()  # install time is not start-up time
        sy = measure("Synapse", lambda: synapse.Synapse(poll_interval=0.01),
                     3, args.duration, args.connections)

    rows = build_rows(my, sy, args.connections)
    print("\n" + machine_line() + "\n" + render(rows, markdown=False))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(f"Foundation benchmark ({machine_line()}):\n\n{render(rows, True)}\n")
        print(f"\nmarkdown written to {args.markdown}")


if __name__ == "__main__":
    main()
