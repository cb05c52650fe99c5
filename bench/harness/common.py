"""Small helpers shared by the benchmark harnesses (stdlib only).

Benchmarks run with the system python3; only Synapse and the image generator
(harness/images.py) live in venvs, so nothing here may import a third-party package.
"""

import http.client
import os
import shutil
import socket
import subprocess
import sys
import threading
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


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()  # after the command name
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


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


def ensure_apt(package: str, binary: str | None = None) -> str:
    """Path of `binary` (default: the package name), installing the Debian package if missing.

    A fresh machine may have empty package lists, so a failed install is retried once after
    `apt-get update`. Where no /usr/sbin/policy-rc.d exists, one that denies every start is put
    in place for the install: packages such as nginx would otherwise start a system-wide daemon
    listening on all interfaces, and benchmarks only ever run their own servers on loopback.
    """
    binary = binary or package
    found = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/sbin")
    if found:
        return found
    print(f"[bench] installing {package} with apt-get ...", file=sys.stderr)
    policy = "/usr/sbin/policy-rc.d"
    made_policy = not os.path.exists(policy)
    if made_policy:
        with open(policy, "w") as f:
            f.write("#!/bin/sh\n# put here by bench/harness for one apt-get install\nexit 101\n")
        os.chmod(policy, 0o755)
    try:
        cmd = ["apt-get", "install", "-y", "-q", package]
        if subprocess.run(cmd, stdout=subprocess.DEVNULL).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], stdout=subprocess.DEVNULL, check=True)
            subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
    finally:
        if made_policy:
            os.remove(policy)
    found = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/sbin")
    if not found:
        raise FileNotFoundError(f"apt-get installed {package} but no {binary} is on PATH")
    return found


class RssSampler:
    """Peak resident memory of a process while a block of code runs.

        with RssSampler(server.pid) as rss:
            do_the_transfer()
        print(rss.growth_kib)       # sampled peak minus the value just before

    A daemon thread reads VmRSS from /proc/PID/status every `interval` seconds (20 ms by
    default: a transfer of a second or more gets dozens of samples, and one read costs a few
    microseconds). As a cross-check that a short spike between two samples was not missed,
    the kernel's own high-water mark VmHWM is reset on entry (writing 5 to
    /proc/PID/clear_refs, which needs the process to be ours or root) and read on exit:
    `hwm_growth_kib` is None where that reset is not allowed.
    """

    def __init__(self, pid: int, interval: float = 0.02):
        self.pid = pid
        self.interval = interval
        self.samples = 0
        self.hwm_growth_kib: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "RssSampler":
        try:
            with open(f"/proc/{self.pid}/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS
            self._hwm_reset = True
        except OSError:
            self._hwm_reset = False
        self.baseline_kib = rss_kib(self.pid)
        self.peak_kib = self.baseline_kib
        self._thread.start()
        return self

    def _sample(self) -> None:
        try:
            self.peak_kib = max(self.peak_kib, rss_kib(self.pid))
            self.samples += 1
        except (OSError, KeyError):  # the process went away: keep what was seen
            pass

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()  # one last look, after the transfer ended
        if self._hwm_reset:
            try:
                self.hwm_growth_kib = rss_kib(self.pid, "VmHWM") - self.baseline_kib
            except (OSError, KeyError):
                pass

    @property
    def growth_kib(self) -> int:
        return self.peak_kib - self.baseline_kib


def bench_arguments(doc: str, quick_help: str):
    """The options every benchmark takes: the Myelin binary, a markdown copy, --quick and
    which servers to skip. Returns the parser, for a benchmark's own extra options."""
    import argparse
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--myelin-bin", help="default: $CARGO_TARGET_DIR|target /release/myelin "
                    "(built with cargo if missing)")
    ap.add_argument("--markdown", metavar="FILE", help="also write the table as markdown")
    ap.add_argument("--quick", action="store_true", help=quick_help)
    ap.add_argument("--skip-myelin", action="store_true")
    ap.add_argument("--skip-synapse", action="store_true")
    return ap


def prepare_servers(args, log) -> str | None:
    """The Myelin binary to measure (built if missing) and Synapse installed, as asked."""
    from harness import myelin, synapse
    binary = None
    if not args.skip_myelin:
        binary = args.myelin_bin or myelin.default_bin("release")
        if not os.path.exists(binary):
            if args.myelin_bin:
                sys.exit(f"no Myelin binary at {binary}")
            log(f"[bench] {binary} missing: cargo build --release")
            myelin.build("release")
    if not args.skip_synapse:
        synapse.ensure_installed()
    return binary


def load_note(load: list[float]) -> str:
    return ("Load average (1 min) at start / end: " + " / ".join(f"{v:.2f}" for v in load)
            + " (other work on the machine skews every figure)")


def render_table(head: list[str], rows: list[list[str]], markdown: bool) -> str:
    """The benchmarks' result table, as markdown or aligned plain text."""
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
                     for r in [head] + rows)


def machine_line(binary: str | None, quick: bool) -> str:
    """Date, machine, commit and Myelin binary of a run, for the head of its figures."""
    import platform
    import time
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.machine())
    commit = subprocess.run(["git", "-C", REPO, "describe", "--always", "--dirty"],
                            capture_output=True, text=True).stdout.strip() or "?"
    built = (time.strftime("%Y-%m-%d %H:%M", time.localtime(os.path.getmtime(binary)))
             if binary and os.path.exists(binary) else "-")
    return (f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores ({cpu}), Linux {platform.release()}, "
            f"repo @ {commit}, Myelin binary {binary or '-'} (built {built})"
            + (" -- QUICK smoke-test sizes" if quick else ""))


def log(msg: str) -> None:
    """Progress to stderr (the figures go to stdout)."""
    print(msg, file=sys.stderr, flush=True)


def attempt(results: dict, key, fn, *args):
    """results[key] = fn(*args), or an error string: one failed part must not cost the
    figures of the others."""
    try:
        results[key] = fn(*args)
    except Exception as e:  # noqa: BLE001 - reported in the table, never hidden
        results[key] = {"error": f"{type(e).__name__}: {e}"[:600]}
        log(f"    ERROR {key}: {results[key]['error']}")
