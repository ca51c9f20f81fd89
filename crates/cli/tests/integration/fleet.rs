//! Fleet commands: simulate → train a bundle → score raw telemetry; NAB stream evaluation.

use std::collections::HashSet;

use crate::common::*;

fn config() -> String {
    testdata().join("../config/fleet.toml").to_str().unwrap().to_string()
}

#[test]
fn simulate_train_and_score_telemetry_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    ok(&[
        "simulate",
        "--devices",
        "120",
        "--samples",
        "300",
        "--seed",
        "5",
        "--output",
        &p("fleet.csv"),
        "--labels",
        &p("faults.csv"),
    ]);
    ok(&["simulate", "--devices", "120", "--samples", "300", "--seed", "5", "--output", &p("fleet.ndjson")]);
    ok(&["simulate", "--devices", "120", "--samples", "300", "--seed", "5", "--output", &p("fleet.parquet")]);
    let labels = std::fs::read_to_string(p("faults.csv")).unwrap();
    assert!(labels.starts_with("device_id,kind,start,end\n"));
    let faulty: HashSet<String> =
        labels.lines().skip(1).map(|l| l.split(',').next().unwrap().to_string()).collect();
    assert!(!faulty.is_empty());

    let small_config = dir.path().join("fleet.toml");
    std::fs::write(
        &small_config,
        std::fs::read_to_string(config()).unwrap().replace("min_rows = 5000", "min_rows = 2000"),
    )
    .unwrap();
    let cfg = small_config.to_str().unwrap();
    ok(&["train", "--telemetry", &p("fleet.csv"), "--config", cfg, "--output", &p("csv.bundle")]);
    ok(&["train", "--telemetry", &p("fleet.ndjson"), "--config", cfg, "--output", &p("nd.bundle")]);
    ok(&["train", "--telemetry", &p("fleet.parquet"), "--config", cfg, "--output", &p("pq.bundle")]);
    // CSV and NDJSON carry values rounded to 3 decimals, Parquet full precision: the CSV and
    // NDJSON bundles are identical.
    assert_eq!(std::fs::read(p("csv.bundle")).unwrap(), std::fs::read(p("nd.bundle")).unwrap());

    let out = ok(&["score", "--model", &p("csv.bundle"), "--telemetry", &p("fleet.csv")]);
    let mut flagged = HashSet::new();
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        for k in
            ["device_id", "ts", "anomaly_score", "grade", "severity", "detectors", "model", "explanation"]
        {
            assert!(v.get(k).is_some(), "{k} missing in {line}");
        }
        assert!(!v["detectors"].as_array().unwrap().is_empty());
        flagged.insert(v["device_id"].as_str().unwrap().to_string());
    }
    let true_flags = flagged.iter().filter(|d| faulty.contains(*d)).count();
    assert!(
        true_flags * 10 >= flagged.len() * 8,
        "{true_flags} of {} flagged devices are faulty",
        flagged.len()
    );
    assert!(true_flags * 10 >= faulty.len() * 7, "{true_flags} of {} faulty devices flagged", faulty.len());
    let info = ok(&["inspect", &p("csv.bundle")]);
    assert!(info.contains("fleet bundle") && info.contains("cohort"), "{info}");
}

#[test]
fn telemetry_and_config_errors_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "t.csv", b"device_id,ts,cpu\nd1,2026-11-26T10:00:00Z,5\nd1,not-a-time,6\n");
    let cfg = write(dir.path(), "c.toml", b"[[metrics]]\nname = \"cpu\"\nwindow = 3\nstats = [\"mean\"]\n");
    input_error(
        &["train", "--telemetry", &f, "--config", &cfg, "-o", "/dev/null"],
        None,
        &["t.csv", "row 2", "field `ts`", "not-a-time"],
    );
    let f = write(
        dir.path(),
        "t.ndjson",
        b"{\"device_id\":\"d\",\"ts\":0,\"metrics\":{\"cpu\":1},\"colour\":\"red\"}\n",
    );
    input_error(
        &["train", "--telemetry", &f, "--config", &cfg, "-o", "/dev/null"],
        None,
        &["t.ndjson", "row 1", "colour"],
    );
    let f = write(dir.path(), "v.ndjson", b"{\"device_id\":\"d\",\"ts\":0,\"metrics\":{\"cpu\":\"hot\"}}\n");
    input_error(
        &["train", "--telemetry", &f, "--config", &cfg, "-o", "/dev/null"],
        None,
        &["row 1", "metrics.cpu"],
    );
    let cyc = write(
        dir.path(),
        "cycle.toml",
        b"[[metrics]]\nname = \"cpu\"\nwindow = 3\nstats = [\"mean\"]\n[[groups]]\nname = \"a\"\nmetrics = [\"cpu\"]\ndepends_on = [\"b\"]\n[[groups]]\nname = \"b\"\ndepends_on = [\"a\"]\n",
    );
    let good = write(dir.path(), "g.csv", b"device_id,ts,cpu\nd1,2026-11-26T10:00:00Z,5\n");
    input_error(
        &["train", "--telemetry", &good, "--config", &cyc, "-o", "/dev/null"],
        None,
        &["cycle.toml", "cycle: a -> b -> a"],
    );
    let o = run(&["train", "--telemetry", &good, "-o", "/dev/null"], None);
    assert_eq!(o.status.code(), Some(2), "--telemetry without --config is a usage error");
}

/// The six shared NAB series: at least 8 of their 16 labelled windows found, and fewer than 5
/// false alarms per 1 000 points outside the windows on every series.
#[test]
fn nab_series_windows_and_false_alarms() {
    let series = [
        "nyc_taxi",
        "machine_temperature_system_failure",
        "ec2_cpu_utilization_825cc2",
        "speed_7578",
        "exchange-2_cpc_results",
        "art_daily_jumpsup",
    ];
    let (mut detected, mut total) = (0, 0);
    let mut report = String::new();
    for s in series {
        let input = testdata().join(format!("nab/{s}.csv"));
        let windows = testdata().join(format!("nab/{s}.windows.json"));
        let out = ok(&[
            "evaluate-stream",
            "--input",
            input.to_str().unwrap(),
            "--windows",
            windows.to_str().unwrap(),
            "--format",
            "json",
        ]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        for k in
            ["series", "points", "windows_total", "windows_detected", "false_alarms", "false_alarms_per_1000"]
        {
            assert!(v.get(k).is_some(), "{k} missing");
        }
        detected += v["windows_detected"].as_u64().unwrap();
        total += v["windows_total"].as_u64().unwrap();
        let fa = v["false_alarms_per_1000"].as_f64().unwrap();
        report.push_str(&out);
        assert!(fa < 5.0, "{s}: {fa} false alarms per 1000 points\n{report}");
    }
    println!("{report}");
    assert_eq!(total, 16);
    assert!(detected >= 8, "{detected}/16 windows\n{report}");
}
