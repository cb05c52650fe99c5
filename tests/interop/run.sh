#!/usr/bin/env bash
# Interop tests: drive a homeserver with real client libraries (matrix-nio).
#
#   tests/interop/run.sh [pytest args]       # builds and tests target/debug/myelin
#   MYELIN_BIN=/path/to/myelin tests/interop/run.sh            # that binary, no build
#   INTEROP_HOMESERVER_URL=http://127.0.0.1:8008 tests/interop/run.sh   # any running server
#
# Self-installing: a venv at <repo>/.venv-interop with pinned packages, so a fresh
# machine (or CI) needs nothing but python3 and cargo.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$REPO/.venv-interop"
# Pinned: a client-library upgrade must be a reviewed change, not a surprise in CI.
REQUIREMENTS="matrix-nio==0.26.0 pytest==9.2.0 pytest-asyncio==1.5.0"

if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
# Reinstall only when the pins change (a stamp file remembers the last install).
if [ "$(cat "$VENV/.requirements" 2>/dev/null)" != "$REQUIREMENTS" ]; then
    "$VENV/bin/pip" install -q --disable-pip-version-check $REQUIREMENTS
    echo "$REQUIREMENTS" > "$VENV/.requirements"
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
