#!/usr/bin/env bash
# Interop tests: drive a homeserver with real client libraries (matrix-nio, matrix-js-sdk),
# and federate it with a real Synapse (test_synapse_federation.py).
#
#   tests/interop/run.sh [pytest args]       # builds and tests target/debug/myelin
#   MYELIN_BIN=/path/to/myelin tests/interop/run.sh            # that binary, no build
#   INTEROP_HOMESERVER_URL=http://127.0.0.1:8008 tests/interop/run.sh   # any running server
#
# Self-installing: a venv at <repo>/.venv-interop with pinned packages, so a fresh
# machine (or CI) needs nothing but python3 and cargo (and Node.js 20+ for matrix-js-sdk,
# and openssl for test_synapse_federation.py, which installs a pinned Synapse into
# <repo>/.bench/synapse-venv on first use, as the benchmarks do).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$REPO/.venv-interop"
# Pinned: a client-library upgrade must be a reviewed change, not a surprise in CI.
# nio's e2e extra (end-to-end encryption, test_nio_e2ee.py) brings vodozemac, the Rust
# Olm/Megolm library as a binary wheel: no libolm or C toolchain needed. nio 0.26 imports
# python-olm only to migrate old libolm pickles, which fresh test stores never have.
REQUIREMENTS="matrix-nio[e2e]==0.26.0 vodozemac==0.10.0 pytest==9.2.0 pytest-asyncio==1.5.0"

if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
# Reinstall only when the pins change (a stamp file remembers the last install).
if [ "$(cat "$VENV/.requirements" 2>/dev/null)" != "$REQUIREMENTS" ]; then
    read -ra requirements <<< "$REQUIREMENTS"  # split on spaces, no globbing of "[e2e]"
    "$VENV/bin/pip" install -q --disable-pip-version-check "${requirements[@]}"
    echo "$REQUIREMENTS" > "$VENV/.requirements"
fi

# matrix-js-sdk (test_js_sdk.py, scripts in tests/interop/js): the versions pinned by the
# committed package-lock.json, installed by npm ci into js/node_modules (gitignored) only
# when the lock file changes (a stamp inside node_modules remembers its hash). No npm: the
# tests skip themselves if there is no node either.
JS_DIR="$REPO/tests/interop/js"
if command -v npm >/dev/null; then
    JS_LOCK="$(sha256sum "$JS_DIR/package-lock.json" | cut -d' ' -f1)"
    if [ "$(cat "$JS_DIR/node_modules/.installed-lock" 2>/dev/null)" != "$JS_LOCK" ]; then
        (cd "$JS_DIR" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
        echo "$JS_LOCK" > "$JS_DIR/node_modules/.installed-lock"
    fi
fi

# Test the current code, not a stale binary: cargo only rebuilds what changed.
if [ -z "${MYELIN_BIN:-}" ] && [ -z "${INTEROP_HOMESERVER_URL:-}" ]; then
    (cd "$REPO" && cargo build --locked --bin myelin)
fi

# A relative MYELIN_BIN means relative to where run.sh was called from.
if [ -n "${MYELIN_BIN:-}" ]; then export MYELIN_BIN="$(realpath "$MYELIN_BIN")"; fi

# -p no:cacheprovider: no .pytest_cache left in the repo.
cd "$REPO"
# The loop-scope option only silences a pytest-asyncio deprecation warning.
exec "$VENV/bin/python" -m pytest -p no:cacheprovider \
    -o asyncio_default_fixture_loop_scope=function "$REPO/tests/interop" "$@"
