"""matrix-js-sdk against the homeserver: Node scripts in tests/interop/js, one per scenario.

Each script (`node js/<name>.mjs <homeserver_url>`) drives two real matrix-js-sdk clients the
way an app does (startClient sync loops; initRustCrypto for encryption), prints its steps, and
exits 0 with a last line "OK", 1 on a failed check (the step, the error, the HTTP status and
body of a refused request, the end of the SDK's log on stderr), or 2 when it times out.
run.sh installs the pinned packages (npm ci) into js/node_modules.
"""

import os
import shutil
import subprocess

import pytest

JS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "js")
SCRIPT_TIMEOUT_S = 60  # each script gives up by itself after this long


def run_script(name: str, homeserver_url: str) -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the matrix-js-sdk tests need Node.js 20 or newer")
    if not os.path.isdir(os.path.join(JS_DIR, "node_modules", "matrix-js-sdk")):
        pytest.fail(f"no {JS_DIR}/node_modules: run the tests through tests/interop/run.sh (it runs npm ci)")
    env = dict(os.environ, INTEROP_JS_TIMEOUT=str(SCRIPT_TIMEOUT_S), NODE_NO_WARNINGS="1")
    try:
        proc = subprocess.run([node, os.path.join(JS_DIR, name), homeserver_url], cwd=JS_DIR, env=env,
                              capture_output=True, text=True, timeout=SCRIPT_TIMEOUT_S + 30)
    except subprocess.TimeoutExpired as e:  # only if the script's own watchdog failed
        pytest.fail(f"{name} did not exit within {SCRIPT_TIMEOUT_S + 30}s\n"
                    f"--- stdout ---\n{e.stdout}\n--- stderr ---\n{e.stderr}")
    report = f"{name} exited {proc.returncode}\n--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    assert proc.returncode == 0, report
    assert proc.stdout.rstrip().endswith("OK"), report
    return proc.stdout


def test_js_chat(homeserver_url):
    """Register, log in, sync; create, invite, join; messages both ways, typing, a read receipt."""
    run_script("chat.mjs", homeserver_url)


def test_js_e2ee_messages(homeserver_url):
    """Rust crypto: an encrypted room, each client decrypts the other's message."""
    run_script("e2ee.mjs", homeserver_url)


def test_js_cross_signing_bootstrap(homeserver_url):
    """Rust crypto: a first cross-signing bootstrap without UIA; the other client sees the device signed."""
    run_script("cross_signing.mjs", homeserver_url)
