#!/usr/bin/env python3
"""Where an upload's CPU goes: Myelin's and curl's CPU time per MB over back-to-back uploads.

A diagnostic next to media.py, not a comparison: it starts Myelin alone, uploads `--reps`
files of new random content of `--mib` MiB each with curl (as media.py does), and prints the
rates, the server's CPU time (utime + stime from /proc) and curl's (getrusage of the
children) per MB, and how many of the machine's cores the two kept busy. With two cores,
server + curl CPU per MB bounds the upload rate whatever the pipeline does: 2 cores divided
by (server + curl) ms/MB. (The kernel's flusher threads, which write the page cache back,
are counted in neither.) `--pid-file F` writes the server's PID and waits 2 s before the
uploads, for `perf record -p $(cat F)`.

    python3 bench/upload_cpu.py [--myelin-bin PATH] [--mib 100] [--reps 10]
"""

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import common, curl, myelin, synapse  # noqa: E402
from harness.common import log  # noqa: E402

def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--myelin-bin", default=None)
    parser.add_argument("--mib", type=int, default=100)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--pid-file", default=None)
    args = parser.parse_args()
    size = args.mib * 1024 * 1024
    with tempfile.TemporaryDirectory(prefix="bench-upload-cpu-") as data:
        paths = []
        for i in range(args.reps + 1):  # one more for the warm-up
            path = os.path.join(data, f"f{i}")
            with open(path, "wb") as f:
                f.write(os.urandom(size))
            paths.append(path)
        env = {"MYELIN_REGISTRATION__ENABLED": "true", "MYELIN_RATE_LIMITS__ENABLED": "false",
               "MYELIN_MEDIA__MAX_UPLOAD_SIZE": str(2 * size)}
        with myelin.Myelin(args.myelin_bin, extra_env=env) as srv:
            token = synapse.register_user(srv.base_url, "bench", "bench-password")["access_token"]
            curl.upload(srv.base_url, token, paths[0])
            if args.pid_file:
                with open(args.pid_file, "w") as f:
                    f.write(str(srv.pid))
                time.sleep(2)
            rates = []
            server0, curl0, t0 = common.process_cpu(srv.pid), children_cpu(), time.monotonic()
            for path in paths[1:]:
                _, seconds = curl.upload(srv.base_url, token, path)
                rates.append(size / seconds / 1e6)
            wall = time.monotonic() - t0
            server, client = common.process_cpu(srv.pid) - server0, children_cpu() - curl0
    mb = size * args.reps / 1e6
    log(f"{args.reps} uploads of {args.mib} MiB: {', '.join(f'{r:.0f}' for r in rates)} MB/s, "
        f"median {statistics.median(rates):,.0f} MB/s")
    log(f"CPU per MB: server {server / mb * 1000:.3f} ms, curl {client / mb * 1000:.3f} ms "
        f"(curl's start-up included); cores busy {(server + client) / wall:.2f}")


if __name__ == "__main__":
    main()
