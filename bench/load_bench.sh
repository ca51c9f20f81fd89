#!/usr/bin/env bash
# Service load benchmark on loopback (see bench/README.md and bench/load_bench.py).
#
#   bench/load_bench.sh            full run, markdown table on stdout (~4 min)
#   bench/load_bench.sh --smoke    small database, short runs (~30 s; CI)
#   bench/load_bench.sh --write    full run, also writes its section of bench/RESULTS.md
#
# Installs Debian's wrk when missing, and a venv with the anchor (FastAPI + uvicorn +
# scikit-learn) for the full run.
# Environment:
#   ANOMALYD_LOAD_VENV   venv for the anchor (default /var/cache/anomalyd/load-venv)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
venv=${ANOMALYD_LOAD_VENV:-/var/cache/anomalyd/load-venv}
pins=(fastapi==0.121.3 uvicorn==0.38.0 scikit-learn==1.9.1 numpy==2.4.6)

args=()
smoke=0
for arg in "$@"; do
    case $arg in
        --write) args+=(--write "$here/RESULTS.md") ;;
        --smoke) smoke=1; args+=(--smoke) ;;
        -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) args+=("$arg") ;;
    esac
done

if ! command -v wrk >/dev/null; then
    echo "load_bench: installing wrk" >&2
    if [ "$(id -u)" = 0 ]; then apt-get install -y -q wrk >/dev/null; else sudo apt-get install -y -q wrk >/dev/null; fi
fi

if [ "$smoke" = 0 ]; then
    if ! "$venv/bin/python" -c 'import fastapi, uvicorn, sklearn, numpy' 2>/dev/null; then
        echo "load_bench: preparing venv $venv (${pins[*]})" >&2
        [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${pins[@]}"
    fi
    args+=(--anchor-python "$venv/bin/python")
fi

echo "load_bench: building anomalyd (release)" >&2
(cd "$root" && cargo build --release -p anomalyd --quiet)
target_dir=$(cd "$root" && cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
cd "$root"
python3 "$here/load_bench.py" --anomalyd "$target_dir/release/anomalyd" "${args[@]}"
