"""Fixtures for the interop tests: a homeserver for real client libraries to talk to.

By default a Myelin binary is started on a free loopback port in a temp dir
($MYELIN_BIN, else $CARGO_TARGET_DIR|target /debug/myelin) and killed at the end.
With INTEROP_HOMESERVER_URL set, nothing is started and the tests run against
that server instead: this is how the tests themselves are checked against a
real Synapse (bench/harness/synapse.py).
"""

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_LOG = {}  # path of the running server's log, for failure reports


def _myelin_bin() -> str:
    if os.environ.get("MYELIN_BIN"):  # absolute: the server runs in a temp cwd
        return os.path.abspath(os.environ["MYELIN_BIN"])
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPO, "target")
    return os.path.join(target, "debug", "myelin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _versions_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/_matrix/client/versions", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _read_log() -> str:
    try:
        with open(_LOG["path"], errors="replace") as f:
            return f.read()[-20000:]  # the end is what explains a failure
    except (KeyError, OSError):
        return ""


@pytest.fixture(scope="session")
def homeserver_url():
    """Base URL of the homeserver under test (no trailing slash)."""
    if os.environ.get("INTEROP_HOMESERVER_URL"):
        url = os.environ["INTEROP_HOMESERVER_URL"].rstrip("/")
        assert _versions_ok(url), f"{url} does not answer /_matrix/client/versions"
        yield url
        return

    binary = _myelin_bin()
    if not os.path.exists(binary):
        pytest.fail(f"no Myelin binary at {binary} (cargo build, or set MYELIN_BIN)")
    workdir = tempfile.mkdtemp(prefix="interop-myelin-")
    port = _free_port()
    # Inherited MYELIN_* (a developer's shell, MYELIN_BIN) must not change the test's meaning.
    env = dict({k: v for k, v in os.environ.items() if not k.startswith("MYELIN_")},
               MYELIN_LISTEN=f"127.0.0.1:{port}",
               MYELIN_DATA_DIR=os.path.join(workdir, "data"),
               MYELIN_REGISTRATION__ENABLED="true",   # the tests register their users
               MYELIN_RATE_LIMITS__ENABLED="false")   # tests must not wait on 429s
    env.setdefault("RUST_LOG", "info")
    env.setdefault("NO_COLOR", "1")  # plain log text in failure reports
    _LOG["path"] = os.path.join(workdir, "myelin.log")
    url, proc = f"http://127.0.0.1:{port}", None
    try:
        # cwd = workdir, so a developer's ./myelin.toml does not leak into the tests.
        with open(_LOG["path"], "wb") as log:  # the child keeps its own copy of the fd
            proc = subprocess.Popen([binary, "serve"], cwd=workdir, env=env,
                                    stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not _versions_ok(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Myelin did not come up on {url} (exit code {proc.poll()}):\n"
                            f"{_read_log()}")
            time.sleep(0.02)
        yield url
    finally:  # always: no stray server, no temp dir left behind
        if proc:
            proc.kill()
            proc.wait()
        _LOG.clear()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the server's log to a failed test's report (shown under the failure)."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and _LOG.get("path"):
        report.sections.append(("homeserver log (end)", _read_log()))
