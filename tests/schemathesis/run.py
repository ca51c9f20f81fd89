"""Starts anomalyd with a key and a model, runs schemathesis against it, stops it with SIGTERM.

Called by run.sh, which prepares the venv and the binary. The server is seeded with a
few hundred anomalies and live telemetry so that list, detail and device operations reach
real rows, not only 404s. Operations whose path takes a training job, a model, or a webhook
and one of its deliveries get real ids through a generated `schemathesis.toml`: the script
trains a model through the API and dead-letters one alert before the run.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
from serving import free_port, wait_ready  # noqa: E402  (bench/serving.py)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def log(msg):
    print(f"schemathesis: {msg}", file=sys.stderr, flush=True)


def api(base, key, method, path, body=None):
    req = urllib.request.Request(
        base + path, method=method, data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def existing_ids(base, key):
    """Trains one model through the API and returns (job id, model id): operations that take
    them in their path would otherwise only ever see made-up ids and answer 404."""
    job = api(base, key, "POST", "/api/v1/models/train", {"version": "schemathesis"})
    for _ in range(300):
        job = api(base, key, "GET", f"/api/v1/models/train/{job['id']}")
        if job["phase"] in ("done", "failed"):
            break
        time.sleep(0.1)
    if job.get("model_id") is None:
        raise SystemExit(f"setup: the training job did not produce a model: {job}")
    return job["id"], job["model_id"]


def dead_delivery(base, key):
    """Registers a webhook whose target answers 404 (a path this server does not have), then
    sends telemetry that opens an incident: the alert is dead-lettered at its first attempt.
    Returns (webhook id, delivery id) for the retry operation."""
    hook = api(base, key, "POST", "/api/v1/webhooks",
               {"url": f"{base}/no-such-hook", "min_severity": "low", "description": "schemathesis"})
    hour = 3_600_000
    start = int(time.time() * 1000) // hour * hour - 48 * hour

    def sample(h, temp):
        return {"device_id": "schemathesis-hot", "ts": start + h * hour, "cohort": "tc52/android-13",
                "metrics": {"battery_pct": 80.0 - h % 7, "battery_temp_c": temp, "cpu_pct": 20.0 + h % 5,
                            "mem_pct": 50.0, "app_crashes": 0.0, "signal_dbm": -70.0}}

    # A steady day, one overheating hour, then samples that release it from re-ordering.
    samples = [sample(h, 33.0 + h % 3) for h in range(40)] + [sample(40, 71.0)]
    samples += [sample(h, 33.0) for h in range(41, 44)]
    api(base, key, "POST", "/api/v1/telemetry", samples)
    for _ in range(300):
        dead = api(base, key, "GET", f"/api/v1/webhooks/{hook['id']}/deliveries?status=dead")["items"]
        if dead:
            return hook["id"], dead[0]["id"]
        time.sleep(0.1)
    raise SystemExit("setup: no dead-lettered delivery appeared")


def write_config(work, job, model, hook, delivery):
    """schemathesis.toml in the run's directory (schemathesis reads it from there)."""
    with open(os.path.join(work, "schemathesis.toml"), "w") as f:
        f.write(f"""[[operations]]
include-name = "GET /api/v1/models/train/{{job}}"
parameters = {{ job = {job} }}

[[operations]]
include-name = "POST /api/v1/models/{{id}}/activate"
parameters = {{ id = {model} }}

[[operations]]
include-name = "POST /api/v1/webhooks/{{id}}/deliveries/{{delivery}}/retry"
parameters = {{ id = {hook}, delivery = {delivery} }}
""")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--anomalyd", required=True)
    p.add_argument("--schemathesis", required=True)
    p.add_argument("--long", action="store_true")
    a = p.parse_args()
    exe = a.anomalyd
    max_time = int(os.environ.get("SCHEMATHESIS_MAX_TIME", "900")) if a.long else 90

    def cli(*args):
        return subprocess.run([exe, *args], check=True, capture_output=True, text=True).stdout

    with tempfile.TemporaryDirectory(prefix="anomalyd-schemathesis-") as work:
        data = os.path.join(work, "db")
        sim = os.path.join(work, "sim.csv")
        bundle = os.path.join(work, "fleet.bundle")
        log("training a small model and seeding a database")
        cli("simulate", "--devices", "50", "--samples", "120", "--fault-rate", "0.02", "--output", sim)
        cli("train", "--telemetry", sim, "--config", os.path.join(ROOT, "config", "fleet.toml"),
            "--output", bundle)
        cli("bench-api", "seed", "--data-dir", data, "--anomalies", "300", "--devices", "40")
        key = cli("keys", "create", "--name", "schemathesis", "--scopes", "admin", "--data-dir", data)
        key = next(w for w in key.split() if w.startswith("adk_"))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        # Generated requests come fast from one key; the per-key limit is exercised by the
        # Rust tests, here it would only turn operations into 429s.
        env = dict(os.environ, ANOMALYD_HTTP_RATE_PER_SEC="0")
        server = subprocess.Popen(
            [exe, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", data, "--model", bundle],
            stderr=subprocess.PIPE, text=True, env=env)
        try:
            wait_ready(f"{base}/healthz")
            job, model = existing_ids(base, key)
            hook, delivery = dead_delivery(base, key)
            log(f"training job {job}, stored model {model}, webhook {hook} with dead delivery {delivery}: "
                "the operations that take them in their path get these ids")
            write_config(work, job, model, hook, delivery)
            cmd = [
                a.schemathesis, "run", f"{base}/api/v1/openapi.json",
                "--url", base,
                "-H", f"Authorization: Bearer {key}",
                "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                            "response_schema_conformance",
                "--phases", "examples,coverage,fuzzing",
                "--max-time", str(max_time),
                "--request-timeout", "10",
                # One worker: with two, runs failed now and then inside Hypothesis itself (a
                # "Runtime Error" while every generated case passed). Hypothesis keeps caches
                # that its strategies share across threads, a known source of such races
                # (schemathesis issues #860 and #2269).
                "--workers", "1",
                "--seed", "1",
                "--suppress-health-check", "all",
            ]
            # Training on random bodies would keep the server busy for the whole run.
            cmd += ["--exclude-path", "/api/v1/models/train"]
            log(" ".join(c if "Bearer" not in c else "Authorization: Bearer ***" for c in cmd))
            run = subprocess.run(cmd, cwd=work)
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                _, err = server.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
                _, err = server.communicate()
        if server.returncode != 0:
            sys.stderr.write(err[-4000:])
            raise SystemExit(f"anomalyd exited {server.returncode} after SIGTERM")
        if run.returncode != 0:
            sys.stderr.write(err[-4000:])
            raise SystemExit(f"schemathesis found problems (exit {run.returncode})")
        log("no 5xx; every response conformed to the schema; clean shutdown")


if __name__ == "__main__":
    main()
