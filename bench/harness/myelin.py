"""Run the Myelin binary on loopback, the same way synapse.Synapse runs Synapse,
so a benchmark can treat both servers alike (base_url, pid, startup_seconds, stop).
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

try:  # imported as bench/harness (the usual case) ...
    from . import common
except ImportError:  # ... or run as a script for a smoke test
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import common


def default_bin(profile: str = "release") -> str:
    """target/<profile>/myelin, honouring CARGO_TARGET_DIR like cargo does."""
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(common.REPO, "target")
    return os.path.join(target, profile, "myelin")


def build(profile: str = "release") -> None:
    """cargo build the binary (incremental: cheap when it is up to date)."""
    cmd = ["cargo", "build", "--locked", "--bin", "myelin"]
    if profile == "release":
        cmd.append("--release")
    subprocess.run(cmd, cwd=common.REPO, check=True)


class Myelin:
    """`myelin serve` in a fresh temp working dir, configured by environment only
    (the temp cwd also keeps a developer's ./myelin.toml out of the figures).

    Or, with `config` (a TOML file), by that file alone: `serve --config FILE` and no
    MYELIN_* settings in the environment, which would override the file. The file must
    then listen on 127.0.0.1:`port` and should keep its data_dir under workdir.

    To restart on the same data (after a crash, say): start the first server with
    keep_dir=True, end it with stop() or kill(), then pass its workdir to a new Myelin.
    The data dir (SQLite database, media) is workdir/data; the log is appended to."""

    def __init__(self, binary: str | None = None, port: int | None = None,
                 extra_env: dict | None = None, poll_interval: float = 0.002,
                 timeout: float = 30.0, keep_dir: bool = False, workdir: str | None = None,
                 config: str | None = None):
        self.binary = os.path.abspath(binary or default_bin())
        if not os.access(self.binary, os.X_OK):  # fail before making a temp dir
            raise FileNotFoundError(f"no Myelin binary at {self.binary}")
        self.port = port or common.free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.keep_dir = keep_dir
        self.workdir = workdir or tempfile.mkdtemp(prefix="bench-myelin-")
        self.log_file = os.path.join(self.workdir, "myelin.log")
        # Only our MYELIN_* settings: a developer's exports must not skew the figures.
        env = {k: v for k, v in os.environ.items() if not k.startswith("MYELIN_")}
        env["RUST_LOG"] = "warn"  # logging must not weigh on the figures
        command = [self.binary, "serve"]
        if config:
            command += ["--config", os.path.abspath(config)]
        else:
            env.update(MYELIN_LISTEN=f"127.0.0.1:{self.port}",
                       MYELIN_DATA_DIR=os.path.join(self.workdir, "data"),
                       MYELIN_FEDERATION__ENABLED="false")  # nothing to federate with here
        env.update(extra_env or {})
        self._log = open(self.log_file, "ab")
        self.spawn_time = time.monotonic()
        self.proc = subprocess.Popen(command, cwd=self.workdir, env=env,
                                     stdout=self._log, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        try:
            self.ready_time = common.wait_ready(self.proc, "127.0.0.1", self.port,
                                                interval=poll_interval, timeout=timeout)
        except Exception as e:
            log = common.tail(self.log_file)  # read before stop() removes the dir
            self.stop()
            raise RuntimeError(f"Myelin did not start: {e}\n{log}") from None
        self.startup_seconds = self.ready_time - self.spawn_time

    def stop(self) -> None:
        common.stop_process(self.proc)
        self._log.close()
        if not self.keep_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL, like a crash: no graceful shutdown. The dir stays, even without
        keep_dir, for a restart with workdir=self.workdir (whose stop() removes it)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()

    def __enter__(self) -> "Myelin":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
