"""Small helpers shared by the benchmark harnesses (stdlib only).

Benchmarks run with the system python3; only Synapse itself lives in a venv,
so nothing here may import a third-party package.
"""

import http.client
import os
import socket
import subprocess
import time

# Repository root: bench/harness/common.py -> ../../
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(host: str, port: int, path: str, timeout: float = 1.0) -> int | None:
    """Status of one GET, or None if the server is not accepting yet.

    http.client on a fresh connection (not urllib) keeps a poll cheap, which
    matters when polling every 2 ms to time a start-up in milliseconds.
    """
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except OSError:  # refused, reset, timeout: not up yet
        return None
    finally:
        conn.close()


def wait_ready(proc: subprocess.Popen, host: str, port: int,
               path: str = "/_matrix/client/versions",
               interval: float = 0.002, timeout: float = 60.0) -> float:
    """Poll until GET path answers 200; return time.monotonic() of that answer.

    Raises if the process dies or the deadline passes, so a broken server
    never hangs a benchmark.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if http_status(host, port, path) == 200:
            return time.monotonic()
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before ready")
        time.sleep(interval)
    raise TimeoutError(f"no 200 on {path} within {timeout}s")


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    """VmRSS (or VmHWM, ...) of a process in KiB, from /proc/PID/status."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def stop_process(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; always reaps the child."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def tail(path: str, n: int = 40) -> str:
    """Last n lines of a log file, for error messages."""
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""
