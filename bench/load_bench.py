#!/usr/bin/env python3
"""Load benchmark of the anomalyd service on loopback (see bench/README.md).

    python bench/load_bench.py --anomalyd PATH [--smoke] [--write bench/RESULTS.md]
        [--anchor-python VENV_PYTHON]

Steps, all against one release binary and one SQLite database:
 1. train a 300-tree fleet bundle on a simulated fleet (untimed);
 2. seed the database with 1 000 000 anomalies over 10 000 devices and 30 days
    (`anomalyd bench-api seed`);
 3. start `anomalyd serve` on it with the bundle;
 4. wrk (Debian's) drives `POST /api/v1/score` with one row, keep-alive, 16 connections;
    then each read endpoint from one connection (latency without queueing): the anomaly
    list with every indexed filter, dashboard stats, 30-day hourly trends, device detail;
 5. `anomalyd bench-api ingest` posts unique 1 000-sample batches from 4 connections for
    10 s (acknowledged = committed with synchronous=FULL) over 10 000 devices;
 6. the server's resident memory is read from /proc after that (10 000 devices hold
    rolling state, 300-tree models loaded);
 7. the anchor: the same single-row score request against FastAPI + uvicorn +
    scikit-learn (the stack of the seed fleet system), with the same model size
    (300 trees, 256 samples) trained on the same feature rows, driven by the same wrk
    command, when --anchor-python points to a Python with those packages.

Everything runs on loopback and is bounded in time: about 3 minutes for the full run,
20 seconds for --smoke (which checks the harness, not the targets).
"""

import argparse
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

from results_md import write_section  # bench/results_md.py: the script directory is on sys.path
from serving import free_port, wait_ready

MARK_BEGIN = "<!-- load-bench:begin -->"
MARK_END = "<!-- load-bench:end -->"

WRK_REPORT = r"""
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
                 + summary.errors.status + summary.errors.timeout
  io.write(string.format("RESULT %d %d %f %f %f %f %d\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max, errors))
end
"""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def wrk(url, seconds, connections, script, workdir, method="GET", body=None):
    lua = WRK_REPORT
    if method == "POST":
        path = os.path.join(workdir, "body.json")
        with open(path, "w") as f:
            f.write(body)
        lua = (
            'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
            f'local f = io.open("{path}")\nwrk.body = f:read("*a")\nf:close()\n' + lua
        )
    lua_path = os.path.join(workdir, f"{script}.lua")
    with open(lua_path, "w") as f:
        f.write(lua)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", lua_path, url],
        capture_output=True, text=True, check=True,
    ).stdout
    m = re.search(r"RESULT (\d+) (\d+) ([\d.]+) ([\d.]+) ([\d.]+) ([\d.]+) (\d+)", out)
    if not m:
        raise SystemExit(f"wrk printed no result:\n{out}")
    n, dur_us, p50, p95, p99, pmax, errors = m.groups()
    return {
        "requests": int(n),
        "rps": int(n) / (int(dur_us) / 1e6),
        "p50_ms": float(p50) / 1e3,
        "p95_ms": float(p95) / 1e3,
        "p99_ms": float(p99) / 1e3,
        "max_ms": float(pmax) / 1e3,
        "errors": int(errors),
    }


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
        model = re.search(r"model name\s*:\s*(.*)", text).group(1)
        flags = re.search(r"flags\s*:\s*(.*)", text).group(1).split()
        simd = [x for x in ("avx2", "avx512f", "fma") if x in flags]
        return f"{model} ({os.cpu_count()} cores; {', '.join(simd)})"
    except Exception:
        return "unknown"


ANCHOR_SERVER = r'''
import sys, numpy as np, uvicorn
from fastapi import FastAPI, Request
from sklearn.ensemble import IsolationForest
names = sys.argv[2].split(",")
X = np.load(sys.argv[3])
model = IsolationForest(n_estimators=300, max_samples=256, random_state=0).fit(X)
app = FastAPI()

@app.post("/api/v1/score")
async def score(request: Request):
    body = await request.json()
    row = np.array([[float(body["features"].get(n, np.nan)) for n in names]])
    s = -float(model.score_samples(row)[0])
    return {"items": [{"anomaly_score": s, "is_anomaly": bool(model.predict(row)[0] == -1)}]}

@app.get("/healthz")
async def healthz():
    return {"status": "ok"}

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
'''


def run_anchor(python, body, workdir, seconds, connections, rows_path, names):
    port = free_port()
    script = os.path.join(workdir, "anchor_server.py")
    with open(script, "w") as f:
        f.write(ANCHOR_SERVER)
    proc = subprocess.Popen([python, script, str(port), ",".join(names), rows_path],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_ready(f"http://127.0.0.1:{port}/healthz", 120)
        return wrk(f"http://127.0.0.1:{port}/api/v1/score", seconds, connections, "anchor", workdir, "POST", body)
    finally:
        proc.terminate()
        proc.wait(10)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--anomalyd", required=True)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--write")
    ap.add_argument("--anchor-python", help="a Python with fastapi, uvicorn, scikit-learn, numpy")
    ap.add_argument("--workdir")
    ap.add_argument("--seeded-db", help="reuse a database seeded by an earlier run (skips the slow seeding)")
    a = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is required (apt-get install wrk)")
    exe = os.path.abspath(a.anomalyd)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    work = a.workdir or tempfile.mkdtemp(prefix="anomalyd-load-")
    os.makedirs(work, exist_ok=True)
    anomalies, devices = (20_000, 1_000) if a.smoke else (1_000_000, 10_000)
    secs = 2 if a.smoke else 10
    read_secs = 1 if a.smoke else 5
    ingest_devices = 1_000 if a.smoke else 10_000

    def cli(*args, **kw):
        return subprocess.run([exe, *args], check=True, capture_output=True, text=True, **kw).stdout

    log("load: training a 300-tree bundle on a simulated fleet (untimed)")
    sim = os.path.join(work, "sim.csv")
    bundle = os.path.join(work, "fleet.bundle")
    config = os.path.join(work, "fleet.toml")
    with open(os.path.join(root, "config", "fleet.toml")) as f:
        text = f.read()
    # The benchmark's model size is PERFORMANCE.md's: 300 trees.
    text = re.sub(r"(?m)^trees\s*=.*$", "trees = 300", text) if re.search(r"(?m)^trees\s*=", text) \
        else text + "\n[model]\ntrees = 300\n"
    with open(config, "w") as f:
        f.write(text)
    cli("simulate", "--devices", "200", "--samples", "200", "--fault-rate", "0", "--output", sim)
    cli("train", "--telemetry", sim, "--config", config, "--output", bundle)
    body = cli("bench-api", "score-body", "--model", bundle).strip()

    if a.seeded_db:
        db = a.seeded_db
        seed_secs = float("nan")
    else:
        db = os.path.join(work, "db")
        shutil.rmtree(db, ignore_errors=True)
        log(f"load: seeding {anomalies} anomalies over {devices} devices")
        t = time.time()
        subprocess.run([exe, "bench-api", "seed", "--data-dir", db, "--anomalies", str(anomalies),
                        "--devices", str(devices)], check=True)
        seed_secs = time.time() - t

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # The benchmark measures capacity, so the per-key rate limit is off (one client, no key).
    env = dict(os.environ, ANOMALYD_HTTP_RATE_PER_SEC="0", ANOMALYD_HTTP_MAX_IN_FLIGHT="100000")
    server = subprocess.Popen([exe, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", db, "--model", bundle,
                               "--insecure-no-auth"],
                              stderr=subprocess.PIPE, text=True, env=env)
    results = {}
    try:
        wait_ready(f"{base}/readyz")
        log("load: POST /api/v1/score, one row, 16 connections")
        wrk(f"{base}/api/v1/score", 1, 16, "warm", work, "POST", body)
        results["score"] = wrk(f"{base}/api/v1/score", secs, 16, "score", work, "POST", body)
        end = 1_767_225_600_000
        reads = [
            ("list, newest", "/api/v1/anomalies?limit=50"),
            ("list, status=open", "/api/v1/anomalies?status=open&limit=50"),
            ("list, severity=critical", "/api/v1/anomalies?severity=critical&limit=50"),
            ("list, cohort", "/api/v1/anomalies?cohort=mc93/android-13&limit=50"),
            ("list, device", "/api/v1/anomalies?device_id=dev-00042&limit=50"),
            ("list, last day", f"/api/v1/anomalies?from={end - 86_400_000}&to={end}&limit=50"),
            ("list, min_score=0.79", "/api/v1/anomalies?min_score=0.79&limit=50"),
            ("list, by score", "/api/v1/anomalies?sort=score&limit=50"),
            ("dashboard stats", "/api/v1/dashboard/stats"),
            ("trends, 30 days hourly", "/api/v1/dashboard/trends?bucket=hour"),
            ("device detail", "/api/v1/devices/dev-00042"),
            ("incidents, open", "/api/v1/incidents?status=open&limit=50"),
            ("correlations", "/api/v1/insights/correlations"),
        ]
        for name, path in reads:
            log(f"load: GET {path}")
            results[name] = wrk(base + path, read_secs, 1, "read", work)
        log("load: ingest, unique 1000-sample batches, 4 connections")
        # Sample times after everything stored (the seeded range and any earlier run on the
        # same database, even one earlier in the same hour), so every sample is new and none
        # is counted as a duplicate.
        start = max(int(time.time() // 3600 * 3600 * 1000), latest_sample_ms(db) + 3_600_000)
        out = cli("bench-api", "ingest", "--url", base, "--batch", "1000", "--connections", "4",
                  "--seconds", str(secs), "--devices", str(ingest_devices), "--start", str(start))
        results["ingest"] = json.loads(out)
        if results["ingest"]["samples_acknowledged"] == 0:
            raise SystemExit(f"load: the ingest run stored no sample (all duplicates?): {out}")
        time.sleep(0.5)
        results["rss_bytes"] = rss_bytes(server.pid)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
    results["seed_secs"] = seed_secs
    if a.anchor_python:
        log("load: anchor, FastAPI + scikit-learn, same request")
        names = list(json.loads(body)["features"].keys())
        rows_path = os.path.join(work, "rows.npy")
        subprocess.run([a.anchor_python, "-c", (
            "import json,sys,numpy as np\n"
            "names=sys.argv[1].split(',')\n"
            "f=json.loads(open(sys.argv[2]).read())['features']\n"
            "rng=np.random.default_rng(0)\n"
            "base=np.array([f[n] for n in names])\n"
            "X=base+rng.normal(0,1,(20000,len(names)))*np.maximum(np.abs(base)*0.1,0.1)\n"
            "np.save(sys.argv[3],X)\n"), ",".join(names), os.path.join(work, "body.json"), rows_path], check=True)
        results["anchor_score"] = run_anchor(a.anchor_python, body, work, secs, 16, rows_path, names)
    report(results, a, anomalies, devices, ingest_devices)


def latest_sample_ms(db):
    """The newest telemetry time in the database (0 when empty); read-only, before the run."""
    path = os.path.join(db, "anomalyd.db")
    if not os.path.exists(path):
        return 0
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return con.execute("SELECT COALESCE(MAX(ts), 0) FROM telemetry").fetchone()[0]
    finally:
        con.close()


def report(r, a, anomalies, devices, ingest_devices):
    mode = "smoke run (harness check, not the targets)" if a.smoke else "full run"
    seed = r["seed_secs"]
    seed_note = "reused from an earlier run" if seed != seed else f"{seed:.0f} s to seed"
    s = r["score"]
    lines = [
        MARK_BEGIN,
        f"## Service under load ({mode})",
        "",
        f"`bench/load_bench.py`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, CPU: {cpu_model()}. "
        f"Server and load generator share the machine; loopback, keep-alive. "
        f"Database: SQLite (WAL, synchronous=FULL) seeded with {anomalies:,} anomalies over {devices:,} devices "
        f"and 30 days ({seed_note}). Model: fleet bundle, 300 trees per model.",
        "",
        "| measure | anomalyd | target | anchor (same run) |",
        "|---|---|---|---|",
    ]
    anchor = r.get("anchor_score")
    anchor_txt = (f"FastAPI + scikit-learn: {anchor['rps']:,.0f} req/s, P99 {anchor['p99_ms']:.1f} ms "
                  f"→ anomalyd {s['rps'] / anchor['rps']:.0f}× the throughput") if anchor else "not run"
    lines.append(f"| `POST /api/v1/score`, one row, 16 connections | {s['rps']:,.0f} req/s, P50 {s['p50_ms']:.2f} ms, "
                 f"P99 {s['p99_ms']:.2f} ms, {s['errors']} errors | ≥ 20 000 req/s, P99 ≤ 5 ms | {anchor_txt} |")
    ing = r["ingest"]
    lines.append(f"| `POST /api/v1/telemetry`, unique batches of {ing['batch']}, {ing['connections']} connections, "
                 f"{ingest_devices:,} devices | {ing['samples_per_sec']:,.0f} samples/s acknowledged (durable), "
                 f"request P50 {ing['latency_p50_ms']:.0f} ms, P99 {ing['latency_p99_ms']:.0f} ms, {ing['errors']} errors "
                 f"| ≥ 200 000 samples/s | — |")
    lines.append(f"| resident memory after ingest ({ingest_devices:,} devices with rolling state) | "
                 f"{r['rss_bytes'] / 2**20:.0f} MiB | ≤ 150 MB | — |")
    lines += ["", "Reads, one connection (so latency is service time, not queueing):", "",
              "| endpoint | P50 ms | P95 ms | P99 ms | req/s | target |", "|---|---|---|---|---|---|"]
    targets = {"dashboard stats": "P95 ≤ 5 ms", "trends, 30 days hourly": "≤ 10 ms", "device detail": "P95 ≤ 5 ms"}
    for name, v in r.items():
        if not isinstance(v, dict) or "p95_ms" not in v or name in ("score", "anchor_score"):
            continue
        target = targets.get(name, "P95 ≤ 5 ms" if name.startswith("list") else "—")
        lines.append(f"| {name} | {v['p50_ms']:.2f} | {v['p95_ms']:.2f} | {v['p99_ms']:.2f} | {v['rps']:,.0f} | {target} |")
    lines += ["", MARK_END]
    section = "\n".join(lines) + "\n"
    print(section)
    if a.write:
        write_section(a.write, MARK_BEGIN, MARK_END, section)


if __name__ == "__main__":
    main()
