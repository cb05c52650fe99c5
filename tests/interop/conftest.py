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
# Logs of the running servers, by the name of the fixture that started them: a failed test
# gets the logs of the servers it used (pytest_runtest_makereport). Fixtures in test modules
# fill it too (`from conftest import SERVER_LOGS`): {fixture name: {title: log path}}.
SERVER_LOGS: dict[str, dict[str, str]] = {}


def myelin_bin() -> str:
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


def read_log(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()[-20000:]  # the end is what explains a failure
    except OSError:
        return ""


@pytest.fixture(scope="session")
def homeserver_url():
    """Base URL of the homeserver under test (no trailing slash)."""
    if os.environ.get("INTEROP_HOMESERVER_URL"):
        url = os.environ["INTEROP_HOMESERVER_URL"].rstrip("/")
        assert _versions_ok(url), f"{url} does not answer /_matrix/client/versions"
        yield url
        return

    binary = myelin_bin()
    if not os.path.exists(binary):
        pytest.fail(f"no Myelin binary at {binary} (cargo build, or set MYELIN_BIN)")
    workdir = tempfile.mkdtemp(prefix="interop-myelin-")
    port = _free_port()
    # Inherited MYELIN_* (a developer's shell, MYELIN_BIN) must not change the test's meaning.
    env = dict({k: v for k, v in os.environ.items() if not k.startswith("MYELIN_")},
               MYELIN_LISTEN=f"127.0.0.1:{port}",
               MYELIN_DATA_DIR=os.path.join(workdir, "data"),
               MYELIN_REGISTRATION__ENABLED="true",   # the tests register their users
               MYELIN_RATE_LIMITS__ENABLED="false",   # tests must not wait on 429s
               # Its default listener, 127.0.0.1:8448, would collide with any other Myelin
               # on the machine, and these tests use no federation.
               MYELIN_FEDERATION__ENABLED="false")
    env.setdefault("RUST_LOG", "info")
    env.setdefault("NO_COLOR", "1")  # plain log text in failure reports
    log_path = os.path.join(workdir, "myelin.log")
    SERVER_LOGS["homeserver_url"] = {"homeserver log (end)": log_path}
    url, proc = f"http://127.0.0.1:{port}", None
    try:
        # cwd = workdir, so a developer's ./myelin.toml does not leak into the tests.
        with open(log_path, "wb") as log:  # the child keeps its own copy of the fd
            proc = subprocess.Popen([binary, "serve"], cwd=workdir, env=env,
                                    stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not _versions_ok(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Myelin did not come up on {url} (exit code {proc.poll()}):\n"
                            f"{read_log(log_path)}")
            time.sleep(0.02)
        yield url
    finally:  # always: no stray server, no temp dir left behind
        if proc:
            proc.kill()
            proc.wait()
        SERVER_LOGS.pop("homeserver_url", None)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the logs of the servers a failed test used to its report (shown under the
    failure). fixturenames includes fixtures used through other fixtures. Failed set-ups are
    left out: a server that fails to start says why itself, and the logs of the others,
    repeated under every test of the module, would only bury that."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.when == "call":
        for fixture in item.fixturenames:
            for title, path in SERVER_LOGS.get(fixture, {}).items():
                report.sections.append((title, read_log(path)))
