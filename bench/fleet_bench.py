"""Fleet pipeline benchmark: anomalyd's rolling features against pandas, and a whole fleet
training run (raw samples -> features -> global + cohort models -> calibration -> saved).

Usage (from bench/side_by_side.sh, which prepares the venv and builds anomalyd):
    python bench/fleet_bench.py --anomalyd PATH [--smoke] [--write bench/RESULTS.md]

The rolling workload follows PERFORMANCE.md: 10 000 devices x 720 hourly samples x 5 float64
metrics, window 24 (min_periods=1), mean and standard deviation, joined back to the frame.
pandas: df.groupby("device")[metrics].rolling(24, min_periods=1).mean() / .std().
anomalyd: the pipeline's own streaming window (`Window`, O(1) per sample), devices in
parallel, on the same values (written to a raw f64 file), timed in-process, results stored as
f32 (the pipeline's feature type). The sums of all
means and all standard deviations are compared between the two as a correctness check.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd

from results_md import write_section  # bench/results_md.py: the script directory is on sys.path

MARK_BEGIN = "<!-- fleet-bench:begin -->"
MARK_END = "<!-- fleet-bench:end -->"


def run_anomalyd(binary, args, threads):
    out = subprocess.run([binary, "--threads", str(threads), "bench-fleet", *args],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--anomalyd", required=True)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--write")
    ap.add_argument("--config", default=os.path.join(os.path.dirname(__file__), "..", "config", "fleet.toml"))
    a = ap.parse_args()
    devices, samples, metrics, window = (200, 720, 5, 24) if a.smoke else (10_000, 720, 5, 24)
    repeat = 1 if a.smoke else 3

    rng = np.random.default_rng(7)
    offsets = rng.normal(50, 10, size=(devices, 1, metrics))
    values = offsets + rng.normal(0, 3, size=(devices, samples, metrics))
    cols = [f"m{i}" for i in range(metrics)]
    df = pd.DataFrame(values.reshape(-1, metrics), columns=cols)
    df.insert(0, "device", np.repeat(np.arange(devices), samples))

    pandas_times = []
    for _ in range(repeat):
        t = time.perf_counter()
        g = df.groupby("device", sort=False)[cols].rolling(window, min_periods=1)
        mean = g.mean().reset_index(level=0, drop=True)
        std = g.std().reset_index(level=0, drop=True)
        joined = df.join(mean.add_suffix("_mean")).join(std.add_suffix("_std"))
        pandas_times.append(time.perf_counter() - t)
    pandas_s = float(np.median(pandas_times))
    pd_sum_mean = float(np.nansum(joined[[c + "_mean" for c in cols]].to_numpy()))
    pd_sum_std = float(np.nansum(joined[[c + "_std" for c in cols]].to_numpy()))

    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "metrics.f64")
        values.astype("<f8").tofile(raw)
        common = ["--rolling", raw, "--devices", str(devices), "--samples", str(samples),
                  "--metrics", str(metrics), "--window", str(window), "--repeat", str(5 if not a.smoke else 2)]
        ours = {t: run_anomalyd(a.anomalyd, common, t)["rolling"] for t in (1, 2)}
    for t, r in ours.items():
        for ours_sum, theirs in ((r["sum_mean"], pd_sum_mean), (r["sum_std"], pd_sum_std)):
            if abs(ours_sum - theirs) > 1e-6 * abs(theirs):
                sys.exit(f"fleet_bench: rolling results differ from pandas: {ours_sum} vs {theirs}")

    train_devices = 200 if a.smoke else 10_000
    train = run_anomalyd(a.anomalyd, ["--train", "--devices", str(train_devices), "--samples", "720",
                                      "--config", a.config, "--repeat", str(repeat),
                                      "--output", os.path.join(tempfile.gettempdir(), "anomalyd-bench.bundle")], 2)["train"]
    run = sorted(train["runs"], key=lambda r: r["total_s"])[len(train["runs"]) // 2]

    # End to end from a telemetry file: `anomalyd train --telemetry fleet.csv` (file written
    # untimed by `anomalyd simulate`), wall clock of the whole command, 2 threads.
    end_to_end = None
    if not a.smoke:
        with tempfile.TemporaryDirectory() as tmp:
            csv_path = os.path.join(tmp, "fleet.csv")
            subprocess.run([a.anomalyd, "simulate", "--devices", str(train_devices), "--samples", "720",
                            "--seed", "1", "--output", csv_path], check=True, capture_output=True)
            size = os.path.getsize(csv_path)
            t = time.perf_counter()
            out = subprocess.run([a.anomalyd, "--threads", "2", "train", "--telemetry", csv_path, "--config", a.config,
                                  "--output", os.path.join(tmp, "fleet.bundle")], check=True, capture_output=True, text=True)
            end_to_end = (time.perf_counter() - t, size, out.stderr.strip().splitlines()[-1])

    r2 = ours[2]["median_s"]
    lines = [
        MARK_BEGIN,
        "## Fleet pipeline" + (" (smoke run)" if a.smoke else ""),
        "",
        f"* **Date:** {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; CPU `{cpu_model()}`, {os.cpu_count()} cores; "
        f"pandas {pd.__version__}, numpy {np.__version__}, Python {platform.python_version()}.",
        f"* **Rolling features:** {devices:,} devices × {samples} samples × {metrics} float64 metrics, window {window}, "
        "mean and std (min_periods 1), joined back to the frame. Sums of all means and stds agree with pandas to 1e-6 (anomalyd keeps features as f32).",
        f"* **Fleet training:** simulated fleet of {train_devices:,} devices × 720 samples ({run['samples']:,} raw samples, "
        f"10 cohorts), `config/fleet.toml` ({run['rows']:,} feature rows), 2 threads; timed from parsed samples to the saved bundle "
        "(file parsing is not included).",
        "",
        "| workload | anomalyd 1 thr | anomalyd 2 thr | pandas | pandas / anomalyd (2 thr) | target | met? |",
        "|:--|--:|--:|--:|--:|:--|:--|",
        f"| rolling mean+std | {ours[1]['median_s']*1e3:.0f} ms | {r2*1e3:.0f} ms | {pandas_s:.2f} s | {pandas_s / r2:.1f}× | ≥ 40× pandas | "
        f"{'yes' if pandas_s / r2 >= 40 else '**NO**'} |",
        f"| fleet training: features | — | {run['features_s']:.2f} s | — | — | | |",
        f"| fleet training: global + {run['cohort_models']} cohort models, calibration | — | {run['train_s']:.2f} s | — | — | | |",
        f"| fleet training: bundle saved ({run['bundle_bytes']/1024:.0f} KiB) | — | {run['save_s']*1e3:.1f} ms | — | — | | |",
        f"| fleet training: total | — | {run['total_s']:.2f} s | — | — | ≤ 10 s | {'yes' if run['total_s'] <= 10 else '**NO**'} |",
    ]
    if end_to_end:
        secs, size, line = end_to_end
        lines.append(f"| fleet training from a {size / 2**20:.0f} MiB telemetry CSV, whole `anomalyd train --telemetry` command | — | "
                     f"{secs:.2f} s | — | — | ≤ 10 s | {'yes' if secs <= 10 else '**NO**'} |")
        lines += ["", f"`train --telemetry` reported: {line}"]
    lines += [
        "",
        "Reproduce: `bench/side_by_side.sh` (runs `bench/fleet_bench.py` after the scoring benchmark).",
        MARK_END,
    ]
    section = "\n".join(lines) + "\n"
    print(section)
    if a.write:
        write_section(a.write, MARK_BEGIN, MARK_END, section)


if __name__ == "__main__":
    main()
