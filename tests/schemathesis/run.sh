#!/usr/bin/env bash
# Property-based API tests with schemathesis against a running `anomalyd serve`.
#
#   tests/schemathesis/run.sh             about 2 minutes (CI)
#   tests/schemathesis/run.sh --long      a longer run (SCHEMATHESIS_MAX_TIME, default 900 s)
#
# Creates a venv with a pinned schemathesis when missing, builds anomalyd (release), starts
# it on a small seeded database with a model and an admin API key, and runs every operation
# of /api/v1/openapi.json with generated requests. Fails on any 5xx, any response that does
# not conform to the documented schema, status code or content type, and on a server that
# does not exit 0 after SIGTERM.
# Environment:
#   ANOMALYD_SCHEMATHESIS_VENV   venv (default /var/cache/anomalyd/schema-venv)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
venv=${ANOMALYD_SCHEMATHESIS_VENV:-/var/cache/anomalyd/schema-venv}
pin=schemathesis==4.32.5

if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "${pin#*==}"; then
    echo "schemathesis: preparing venv $venv ($pin)" >&2
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$pin"
fi

echo "schemathesis: building anomalyd (release)" >&2
(cd "$root" && cargo build --release -p anomalyd --quiet)
target_dir=$(cd "$root" && cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
exec python3 "$here/run.py" --anomalyd "$target_dir/release/anomalyd" \
    --schemathesis "$venv/bin/schemathesis" "$@"
