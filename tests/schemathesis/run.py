"""Starts anomalyd with a key and a model, runs schemathesis against it, stops it with SIGTERM.

Called by run.sh, which prepares the venv and the binary. The server is seeded with a
few hundred anomalies and live telemetry so that list, detail and device operations reach
real rows, not only 404s.
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
from serving import free_port, wait_ready  # noqa: E402  (bench/serving.py)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def log(msg):
    print(f"schemathesis: {msg}", file=sys.stderr, flush=True)


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
