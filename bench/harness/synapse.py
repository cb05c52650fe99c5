"""Run a real Synapse on loopback, as the reference for Myelin's benchmarks.

Usage (from a script in bench/):

    from harness import synapse
    with synapse.Synapse() as hs:          # installs on first use, starts, waits
        print(hs.base_url, hs.pid, hs.startup_seconds)
        token = synapse.register_user(hs.base_url, "alice", "pw")["access_token"]

For federation (tests/interop/test_synapse_federation.py), pass
`federation=synapse.Federation(port, certificate, private_key, ca_file)`: Synapse is then
named localhost:<port> and federates over TLS on that port with loopback peers.

Stdlib only: benchmarks run with the system python3 and Synapse runs from its
own venv at <repo>/.bench/synapse-venv, created and filled on first use.
Run this file directly for a quick smoke test.
"""

import dataclasses
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

try:  # imported as bench/harness (the usual case) ...
    from . import common
except ImportError:  # ... or run as a script for a smoke test
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import common

# Pinned so that figures from different days compare the same Synapse.
SYNAPSE_VERSION = "1.163.2"
VENV = os.path.join(common.REPO, ".bench", "synapse-venv")
PYTHON = os.path.join(VENV, "bin", "python")

# Every rc_* limiter Synapse 1.163 reads (synapse/config/ratelimiting.py).
# Benchmarks hammer register/login/send, and the defaults (e.g. 0.17/s for
# registration) would turn figures into a measure of the rate limiter.
_RC_FLAT = ["rc_message", "rc_registration", "rc_registration_token_validity",
            "rc_admin_redaction", "rc_joins_per_room", "rc_key_requests",
            "rc_3pid_validation", "rc_third_party_invite", "rc_media_create",
            "rc_delayed_event_mgmt", "rc_room_creation", "rc_reports",
            "rc_user_directory", "rc_profile"]
_RC_NESTED = {"rc_login": ["address", "account", "failed_attempts"],
              "rc_joins": ["local", "remote"],
              "rc_invites": ["per_room", "per_user", "per_issuer"],
              "rc_presence": ["per_user"]}
_UNLIMITED = {"per_second": 1_000_000, "burst_count": 1_000_000}


def ensure_installed() -> str:
    """Create the venv and install the pinned Synapse if needed; return python."""
    if os.path.exists(PYTHON):
        # Package metadata, not synapse.__version__ (that one appends the git
        # branch of the current directory: "1.163.2 (b=main,...)").
        probe = subprocess.run(
            [PYTHON, "-c", "import importlib.metadata as m; print(m.version('matrix-synapse'))"],
            capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.strip() == SYNAPSE_VERSION:
            return PYTHON
    else:
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
    print(f"[synapse] installing matrix-synapse=={SYNAPSE_VERSION} into {VENV} ...",
          file=sys.stderr)
    subprocess.run([PYTHON, "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
    subprocess.run([PYTHON, "-m", "pip", "install", "-q",
                    f"matrix-synapse=={SYNAPSE_VERSION}"], check=True)
    return PYTHON


@dataclasses.dataclass(frozen=True)
class Federation:
    """A TLS federation listener on 127.0.0.1:`port`, and trust in `ca_file` alone.

    The server is then named `localhost:<port>`: with an explicit port, peers connect
    straight to it, with no .well-known or SRV look-up, and Synapse refuses IP-literal
    names in private ranges. `certificate` must be valid for DNS:localhost."""
    port: int
    certificate: str  # PEM leaf certificate (the chain, if any, after it)
    private_key: str  # PEM private key of the leaf
    ca_file: str  # PEM CA(s) that peers' certificates must chain to

    @property
    def server_name(self) -> str:
        return f"localhost:{self.port}"


def _federation_config(fed: Federation) -> dict:
    return {
        "tls_certificate_path": fed.certificate,
        "tls_private_key_path": fed.private_key,
        # Replaces the system's trusted CAs for outgoing federation (verification stays on).
        "federation_custom_ca_list": [fed.ca_file],
        # The default blocklist covers 127.0.0.0/8; the allowlist wins over it, for
        # federation requests and for remote media alike.
        "ip_range_whitelist": ["127.0.0.0/8"],
        "federation": {
            # After one failed request Synapse stops talking to a destination for this long
            # (default 10 minutes, then doubling): a peer still starting up, or one failure
            # in a test, must not wedge the tests that follow.
            "destination_min_retry_interval": "1s",
            "destination_retry_multiplier": 1,
            "destination_max_retry_interval": "2s",
            "max_short_retry_delay": 500,  # ms (an int is ms): retries within one request
            "max_long_retry_delay": "2s",
        },
    }


def make_config(workdir: str, port: int, extra_config: dict | None = None,
                federation: Federation | None = None, log_level: str = "WARNING") -> str:
    """Write homeserver.yaml (as JSON, which is YAML) and its log config.

    `extra_config` keys replace the defaults below (top-level keys, e.g.
    {"max_upload_size": 2 * 1024**3}); None keeps the defaults as they are.
    `federation` adds a TLS federation listener (see Federation); without it the
    server is "localhost" and talks to no one. `log_level` is the root logger's:
    INFO logs every request (the synapse.access.* loggers), for a test's failure report."""
    log_file = os.path.join(workdir, "homeserver.log")
    log_config = {  # stdlib logging dictConfig; WARNING keeps the log (and I/O) small
        "version": 1,
        "formatters": {"f": {"format": "%(asctime)s %(name)s %(levelname)s %(message)s"}},
        "handlers": {"file": {"class": "logging.FileHandler", "formatter": "f",
                              "filename": log_file}},
        "root": {"level": log_level, "handlers": ["file"]},
        "disable_existing_loggers": False,
    }
    log_config_path = os.path.join(workdir, "log.yaml")
    with open(log_config_path, "w") as f:
        json.dump(log_config, f)

    config = {
        "server_name": federation.server_name if federation else "localhost",
        "pid_file": os.path.join(workdir, "homeserver.pid"),
        "listeners": [{  # client API only, plain HTTP, loopback only
            "port": port, "bind_addresses": ["127.0.0.1"], "type": "http",
            "tls": False, "x_forwarded": False,
            "resources": [{"names": ["client"], "compress": False}],
        }],
        "database": {"name": "sqlite3",
                     "args": {"database": os.path.join(workdir, "homeserver.db")}},
        "log_config": log_config_path,
        "media_store_path": os.path.join(workdir, "media_store"),
        "signing_key_path": os.path.join(workdir, "localhost.signing.key"),
        "macaroon_secret_key": secrets.token_hex(32),
        "form_secret": secrets.token_hex(32),
        "registration_shared_secret": secrets.token_hex(32),
        "enable_registration": True,
        "enable_registration_without_verification": True,
        "report_stats": False,
        "trusted_key_servers": [],  # no network: never fetch matrix.org's keys
        "suppress_key_server_warning": True,
        "rc_federation": {"window_size": 1000, "sleep_limit": 1_000_000,
                          "sleep_delay": 0, "reject_limit": 1_000_000,
                          "concurrent": 1_000_000},
    }
    if federation:
        config["listeners"].append({  # federation and server keys, TLS, loopback only
            "port": federation.port, "bind_addresses": ["127.0.0.1"], "type": "http",
            "tls": True, "x_forwarded": False,
            "resources": [{"names": ["federation"], "compress": False}],
        })
        config.update(_federation_config(federation))
    for key in _RC_FLAT:
        config[key] = dict(_UNLIMITED)
    for key, subs in _RC_NESTED.items():
        config[key] = {sub: dict(_UNLIMITED) for sub in subs}
    config.update(extra_config or {})

    path = os.path.join(workdir, "homeserver.yaml")
    with open(path, "w") as f:
        json.dump(config, f, indent=1)
    return path


class Synapse:
    """One Synapse process in a fresh temp dir, ready when constructed/entered.

    Attributes: base_url, port, pid, proc, workdir, log_file, stdio_file, server_name,
    spawn_time / ready_time (time.monotonic()), startup_seconds.
    `extra_config` overrides top-level homeserver.yaml keys; `federation` and
    `log_level` are make_config's.
    """

    def __init__(self, port: int | None = None, poll_interval: float = 0.01,
                 timeout: float = 120.0, keep_dir: bool = False,
                 extra_config: dict | None = None, federation: Federation | None = None,
                 log_level: str = "WARNING"):
        self.python = ensure_installed()
        self.port = port or common.free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.keep_dir = keep_dir
        self.workdir = tempfile.mkdtemp(prefix="bench-synapse-")
        self.server_name = federation.server_name if federation else "localhost"
        self.config_path = make_config(self.workdir, self.port, extra_config, federation,
                                       log_level)
        self.log_file = os.path.join(self.workdir, "homeserver.log")
        self.stdio_file = os.path.join(self.workdir, "stdio.log")  # start-up errors land here
        # The signing key is made before the clock starts: it is set-up, not start-up.
        keygen = subprocess.run([self.python, "-m", "synapse.app.homeserver", "-c",
                                 self.config_path, "--generate-keys"], cwd=self.workdir,
                                capture_output=True, text=True)
        if keygen.returncode != 0:
            shutil.rmtree(self.workdir, ignore_errors=True)
            raise RuntimeError(f"Synapse --generate-keys failed:\n{keygen.stderr}")
        self._stdio = open(self.stdio_file, "wb")
        self.spawn_time = time.monotonic()
        self.proc = subprocess.Popen(
            [self.python, "-m", "synapse.app.homeserver", "-c", self.config_path],
            cwd=self.workdir, stdout=self._stdio, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        try:
            self.ready_time = common.wait_ready(self.proc, "127.0.0.1", self.port,
                                                interval=poll_interval, timeout=timeout)
        except Exception as e:
            log = common.tail(self._stdio.name) + common.tail(self.log_file)
            self.stop()  # removes the dir, so the logs are read first
            raise RuntimeError(f"Synapse did not start: {e}\n{log}") from None
        self.startup_seconds = self.ready_time - self.spawn_time

    def stop(self) -> None:
        common.stop_process(self.proc)
        self._stdio.close()
        if not self.keep_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "Synapse":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _post_json(url: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as e:  # 401 is the normal first UIA step
        return e.code, json.load(e)


def register_user(base_url: str, username: str, password: str,
                  device_id: str | None = None) -> dict:
    """Register via the UIA m.login.dummy flow; return the 200 body
    (user_id, access_token, device_id). Works on any homeserver, Myelin too."""
    url = f"{base_url}/_matrix/client/v3/register"
    body = {"username": username, "password": password}
    if device_id:
        body["device_id"] = device_id
    status, resp = _post_json(url, body)  # step 1: learn the session id
    if status == 401:
        body["auth"] = {"type": "m.login.dummy", "session": resp.get("session")}
        status, resp = _post_json(url, body)
    if status != 200:
        raise RuntimeError(f"register {username}: HTTP {status} {resp}")
    return resp


if __name__ == "__main__":
    with Synapse() as hs:
        print(f"Synapse {SYNAPSE_VERSION} at {hs.base_url}, pid {hs.pid}, "
              f"ready in {hs.startup_seconds:.2f}s, RSS {common.rss_kib(hs.pid)} KiB")
        user = register_user(hs.base_url, "smoke", "smoke-password")
        print("registered", user["user_id"], "device", user["device_id"])
