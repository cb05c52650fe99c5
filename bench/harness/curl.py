"""Timed HTTP transfers with the curl command-line tool, for throughput figures.

curl (C, libcurl) rather than Python: a Python client copying 100 MiB through its own
buffers can be slower than the server it measures. Uploads stream from a file with -T (not
--data-binary @file, which reads the whole file into memory first); downloads go to
/dev/null. The figures are curl's own clock (time_total: connect to last byte, which for an
upload includes the server's answer), so process start-up is not counted. Stdlib only.
"""

import json
import os
import subprocess
import sys
import tempfile

try:  # imported as bench/harness (the usual case) ...
    from . import common
except ImportError:  # ... or run as a script
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import common


def ensure_installed() -> str:
    return common.ensure_apt("curl")


def version() -> str:
    out = subprocess.run(["curl", "--version"], capture_output=True, text=True).stdout
    return out.split()[1] if out else "?"


class TransferError(RuntimeError):
    """A transfer that did not end in a 2xx (status 0: no HTTP answer at all)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _run(args: list[str], max_time: float) -> tuple[dict, bytes]:
    """Run curl with `args`; return (curl's %{json} write-out, response body)."""
    with tempfile.NamedTemporaryFile(prefix="bench-curl-") as body:
        cmd = ["curl", "-sS", "--http1.1", "--max-time", str(max_time),
               "-o", body.name, "-w", "%{json}", *args]
        done = subprocess.run(cmd, capture_output=True, timeout=max_time + 30)
        info = json.loads(done.stdout or b"{}")
        if done.returncode != 0 or not 200 <= info.get("http_code", 0) < 300:
            text = body.read(500).decode(errors="replace")
            raise TransferError(info.get("http_code", 0),
                                f"curl exit {done.returncode}, HTTP {info.get('http_code')}: "
                                f"{done.stderr.decode(errors='replace').strip()} {text}".strip())
        return info, body.read()


def upload(base_url: str, token: str, path: str, content_type: str = "application/octet-stream",
           filename: str = "bench.bin", max_time: float = 600) -> tuple[str, float]:
    """POST a file to /_matrix/media/v3/upload; return (mxc URI, seconds)."""
    body, seconds = post_file(f"{base_url}/_matrix/media/v3/upload?filename={filename}", path,
                              content_type, ["-H", f"Authorization: Bearer {token}"], max_time)
    return json.loads(body)["content_uri"], seconds


def post_file(url: str, path: str, content_type: str = "application/octet-stream",
              extra_args: list[str] | None = None, max_time: float = 600) -> tuple[bytes, float]:
    """POST a file, streamed; return (response body, seconds).

    `Expect:` is emptied because curl otherwise sends `Expect: 100-continue` for large
    bodies and, from a server that does not answer it, waits a whole second before sending.
    """
    info, body = _run(["-X", "POST", "-T", path, "-H", "Expect:",
                       "-H", f"Content-Type: {content_type}", *(extra_args or []), url], max_time)
    return body, info["time_total"]


def download(url: str, token: str | None = None, max_time: float = 600) -> tuple[int, float]:
    """GET url into /dev/null; return (bytes received, seconds)."""
    args = ["-H", f"Authorization: Bearer {token}"] if token else []
    cmd = ["curl", "-sS", "--http1.1", "--max-time", str(max_time), "-o", "/dev/null",
           "-w", "%{json}", *args, url]
    done = subprocess.run(cmd, capture_output=True, timeout=max_time + 30)
    info = json.loads(done.stdout or b"{}")
    if done.returncode != 0 or not 200 <= info.get("http_code", 0) < 300:
        raise TransferError(info.get("http_code", 0),
                            f"curl exit {done.returncode}, HTTP {info.get('http_code')}: "
                            f"{done.stderr.decode(errors='replace').strip()}")
    return info["size_download"], info["time_total"]


def media_download_url(base_url: str, mxc: str) -> str:
    """The authenticated download URL (Matrix v1.11) of an mxc:// URI."""
    server, media_id = mxc.removeprefix("mxc://").split("/", 1)
    return f"{base_url}/_matrix/client/v1/media/download/{server}/{media_id}"
