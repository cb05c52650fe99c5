"""Run Debian's nginx on loopback as a static file server: the yardstick for how fast a
file can leave this machine's disk over HTTP (sendfile, no copies through user space).

Usage (from a script in bench/):

    from harness import nginx
    with nginx.Nginx("/tmp/some-dir") as web:    # serves that directory, read-only
        url = f"{web.base_url}/file.bin"

One foreground process (`daemon off; master_process off;`) with its config, logs and
temp dirs in a fresh temp dir: nothing under /etc/nginx or /var is read or written, and
stopping the process (SIGTERM) stops all of nginx. Root is fine (nginx then keeps root:
with no master process the `user` directive does not apply). Stdlib only.
Run this file directly for a quick smoke test.
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

READY_PATH = "/__bench_ready"

# sendfile on: the file goes from the page cache to the socket inside the kernel, which is
# what "as fast as a file can be served" means here. tcp_nopush sends full packets.
# Every *_temp_path points into the temp dir, so nginx never touches /var/lib/nginx.
CONFIG = """\
daemon off;
master_process off;
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    client_body_temp_path {workdir}/tmp/client_body;
    proxy_temp_path {workdir}/tmp/proxy;
    fastcgi_temp_path {workdir}/tmp/fastcgi;
    uwsgi_temp_path {workdir}/tmp/uwsgi;
    scgi_temp_path {workdir}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location = {ready} {{ return 200 "ready\\n"; }}
    }}
}}
"""


def ensure_installed() -> str:
    """Path of the nginx binary, installing Debian's package if missing (never starts it)."""
    return common.ensure_apt("nginx")


def version(binary: str) -> str:
    out = subprocess.run([binary, "-v"], capture_output=True, text=True)
    return (out.stderr or out.stdout).strip().split("/")[-1]  # "nginx version: nginx/1.22.1"


class Nginx:
    """nginx serving `root` on 127.0.0.1, ready when constructed/entered.

    Attributes: base_url, port, pid, proc, workdir, version.
    """

    def __init__(self, root: str, port: int | None = None, timeout: float = 10.0,
                 keep_dir: bool = False):
        self.binary = ensure_installed()
        self.version = version(self.binary)
        self.root = os.path.abspath(root)
        self.port = port or common.free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.keep_dir = keep_dir
        self.workdir = tempfile.mkdtemp(prefix="bench-nginx-")
        os.makedirs(os.path.join(self.workdir, "tmp"))
        self.config_path = os.path.join(self.workdir, "nginx.conf")
        with open(self.config_path, "w") as f:
            f.write(CONFIG.format(workdir=self.workdir, port=self.port, root=self.root,
                                  ready=READY_PATH))
        self.log_file = os.path.join(self.workdir, "error.log")
        self._stdio = open(os.path.join(self.workdir, "stdio.log"), "wb")
        # -e: the error log used before the config is read (else /var/log/nginx/error.log).
        self.proc = subprocess.Popen(
            [self.binary, "-p", self.workdir, "-c", self.config_path, "-e", self.log_file],
            cwd=self.workdir, stdout=self._stdio, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        try:
            common.wait_ready(self.proc, "127.0.0.1", self.port, path=READY_PATH,
                              interval=0.01, timeout=timeout)
        except Exception as e:
            log = common.tail(self._stdio.name) + common.tail(self.log_file)
            self.stop()
            raise RuntimeError(f"nginx did not start: {e}\n{log}") from None

    def stop(self) -> None:
        common.stop_process(self.proc)  # SIGTERM: fast shutdown of the single process
        self._stdio.close()
        if not self.keep_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "Nginx":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as root:
        with open(os.path.join(root, "hello.txt"), "w") as f:
            f.write("hello\n")
        with Nginx(root) as web:
            t = time.monotonic()
            status = common.http_status("127.0.0.1", web.port, "/hello.txt")
            print(f"nginx {web.version} at {web.base_url}, pid {web.pid}: GET /hello.txt -> "
                  f"{status} in {(time.monotonic() - t) * 1000:.1f} ms")
