#!/usr/bin/env bash
# Side-by-side benchmark: anomalyd vs scikit-learn vs isotree (see bench/README.md).
#
#   bench/side_by_side.sh            full run, markdown table on stdout (~10 min)
#   bench/side_by_side.sh --smoke    tiny sizes, well under a minute (CI)
#   bench/side_by_side.sh --write    full run, also writes bench/RESULTS.md
#   (each run ends with bench/fleet_bench.py: rolling features vs pandas, fleet training)
#
# Any other argument is passed to side_by_side.py (e.g. --json FILE, --workdir DIR).
# Environment:
#   ANOMALYD_BENCH_VENV    venv to create or reuse (default /var/cache/anomalyd/bench-venv)
#   ANOMALYD_BENCH_PYTHON  interpreter that creates the venv (default python3; 3.11 is the reference)
#   CARGO_BUILD_JOBS       cargo's own variable; set it to 1 on a busy 2-core machine
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
venv=${ANOMALYD_BENCH_VENV:-/var/cache/anomalyd/bench-venv}
python=${ANOMALYD_BENCH_PYTHON:-python3}

# Pinned anchors (PERFORMANCE.md). isotree 0.6.1 imports pandas, so pandas is pinned too.
pins=(scikit-learn==1.9.1 isotree==0.6.1 numpy==2.4.6 pandas==3.1.1)

py_args=()
fleet_args=()
smoke=0
for arg in "$@"; do
    case $arg in
        --write) py_args+=(--write "$here/RESULTS.md"); fleet_args+=(--write "$here/RESULTS.md") ;;
        --smoke) smoke=1; py_args+=(--smoke); fleet_args+=(--smoke) ;;
        -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) py_args+=("$arg") ;;
    esac
done

venv_ok() {
    [ -x "$venv/bin/python" ] && "$venv/bin/python" - "${pins[@]}" <<'EOF' 2>/dev/null
import sys, importlib.metadata as m
for pin in sys.argv[1:]:
    name, version = pin.split("==")
    assert m.version(name) == version, pin
import sklearn, isotree, numpy, joblib, threadpoolctl  # noqa: F401  (isotree needs pandas)
EOF
}

if ! venv_ok; then
    echo "side_by_side: preparing venv $venv (${pins[*]})" >&2
    [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${pins[@]}"
    venv_ok || { echo "side_by_side: venv $venv does not hold ${pins[*]}" >&2; exit 1; }
fi

echo "side_by_side: building anomalyd (release)" >&2
(cd "$root" && cargo build --release -p anomalyd --quiet)
target_dir=$(cd "$root" && cargo metadata --format-version 1 --no-deps |
    "$venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
bin="$target_dir/release/anomalyd"
[ -x "$bin" ] || { echo "side_by_side: $bin not found after the build" >&2; exit 1; }

if [ "$smoke" = 1 ]; then
    echo "side_by_side: smoke run" >&2
fi
"$venv/bin/python" "$here/side_by_side.py" --anomalyd "$bin" "${py_args[@]}"
# The fleet pipeline against pandas (appends its own section to RESULTS.md with --write).
(cd "$root" && "$venv/bin/python" "$here/fleet_bench.py" --anomalyd "$bin" "${fleet_args[@]}")
