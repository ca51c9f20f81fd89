//! train → inspect → score → evaluate, as a user runs them.

use crate::common::*;

#[test]
fn train_inspect_score_explain() {
    let dir = tempfile::tempdir().unwrap();
    let model = small_model(dir.path());
    let info: serde_json::Value =
        serde_json::from_str(&ok(&["inspect", &model, "--format", "json"])).unwrap();
    assert_eq!(info["trees"], 50);
    assert_eq!(info["max_samples"], 256);
    assert_eq!(info["features"].as_array().unwrap().len(), 9);
    assert_eq!(info["format_version"], 2);
    assert_eq!(info["random_stream"], "anomalyd");
    // A file of the first format version still loads and says which version it is.
    let golden = testdata().join("golden/breastw_v1.adm");
    let old: serde_json::Value =
        serde_json::from_str(&ok(&["inspect", golden.to_str().unwrap(), "--format", "json"])).unwrap();
    assert_eq!((old["format_version"].as_u64(), old["random_stream"].as_str()), (Some(1), Some("anomalyd")));
    let text = ok(&["inspect", &model]);
    assert!(text.contains("trees        50"), "{text}");

    let input = testdata().join("odds/breastw.csv");
    let out = ok(&["score", "-m", &model, "-i", input.to_str().unwrap(), "--explain", "--top", "2"]);
    let mut lines = out.lines();
    assert_eq!(lines.next().unwrap(), "anomaly_score,is_anomaly,grade,severity,top_features");
    let labels: Vec<bool> =
        std::fs::read_to_string(&input).unwrap().lines().skip(1).map(|l| l.ends_with(",1")).collect();
    let mut scores = Vec::new();
    for line in lines {
        let cols: Vec<&str> = line.split(',').collect();
        assert_eq!(cols.len(), 5, "{line}");
        let s: f32 = cols[0].parse().unwrap();
        assert_eq!(cols[1] == "1", s > 0.5, "label follows the 0.5 threshold: {line}");
        let grade: f32 = cols[2].parse().unwrap();
        assert!((0.0..=1.0).contains(&grade));
        assert!(["low", "medium", "high", "critical"].contains(&cols[3]));
        let top: Vec<&str> = cols[4].split(';').collect();
        assert!(top.len() <= 2 && !top.is_empty(), "{line}");
        for t in top {
            let parts: Vec<&str> = t.split(':').collect();
            assert_eq!(parts.len(), 3, "{t}");
            assert!(parts[0].starts_with('f'));
            assert!(["above", "below"].contains(&parts[2]));
        }
        scores.push(s);
    }
    // Independent check of the output: it ranks breastw's labelled anomalies first.
    let auc = anomalyd_engine::metrics::roc_auc(&scores, &labels).unwrap();
    assert!(auc > 0.97, "AUC {auc}");
}

#[test]
fn score_writes_ndjson_files() {
    let dir = tempfile::tempdir().unwrap();
    let model = small_model(dir.path());
    let input = testdata().join("odds/breastw.csv");
    let out = dir.path().join("scores.ndjson");
    ok(&["score", "-m", &model, "-i", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--explain"]);
    let text = std::fs::read_to_string(out).unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let keys: Vec<&String> = first.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["anomaly_score", "is_anomaly", "grade", "severity", "top_features"]);
    let top = first["top_features"].as_array().unwrap();
    assert_eq!(top.len(), 3);
    for k in ["feature", "weight", "direction", "value", "normal_low", "normal_high"] {
        assert!(top[0].get(k).is_some(), "{k} missing");
    }
    assert_eq!(text.lines().count(), 683);
}

#[test]
fn same_seed_same_model_on_one_and_two_threads() {
    let dir = tempfile::tempdir().unwrap();
    let input = testdata().join("odds/cardio.csv");
    let mut models = Vec::new();
    for threads in ["1", "2"] {
        let m = dir.path().join(format!("m{threads}.adm"));
        ok(&[
            "--threads",
            threads,
            "train",
            "-i",
            input.to_str().unwrap(),
            "--label-column",
            "label",
            "--trees",
            "300",
            "--seed",
            "11",
            "-o",
            m.to_str().unwrap(),
        ]);
        models.push(std::fs::read(m).unwrap());
    }
    assert_eq!(models[0], models[1]);
}

#[test]
fn evaluate_reports_auc_ap_and_timings_per_seed() {
    let input = testdata().join("odds/breastw.csv");
    let out = ok(&[
        "evaluate",
        "-i",
        input.to_str().unwrap(),
        "--label-column",
        "label",
        "--seeds",
        "0..2",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let seeds = v["seeds"].as_array().unwrap();
    assert_eq!(seeds.len(), 3);
    for s in seeds {
        let auc = s["roc_auc"].as_f64().unwrap();
        assert!(auc > 0.97 && auc <= 1.0, "{auc}");
        assert!(s["average_precision"].as_f64().unwrap() > 0.9);
        assert!(s["fit_ms"].as_f64().unwrap() > 0.0 && s["score_ms"].as_f64().unwrap() > 0.0);
    }
    let mean = v["mean"]["roc_auc"].as_f64().unwrap();
    let by_hand = seeds.iter().map(|s| s["roc_auc"].as_f64().unwrap()).sum::<f64>() / 3.0;
    assert!((mean - by_hand).abs() < 1e-12);
    assert_eq!(v["rows"], 683);
    assert_eq!(v["anomalies"], 239);
    let text = ok(&["evaluate", "-i", input.to_str().unwrap(), "--label-column", "label", "--seeds", "4"]);
    assert!(text.contains("roc_auc") && text.contains("mean"), "{text}");
}

#[test]
fn migrate_creates_the_database_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    for _ in 0..2 {
        let o = run(&["migrate", "--data-dir", data], None);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stderr(&o).contains("schema up to date"));
    }
    assert!(dir.path().join("data/anomalyd.db").exists());
    input_error(
        &["migrate", "--database-url", "postgres://localhost/x"],
        None,
        &["PostgreSQL is not supported"],
    );
}

#[test]
fn serve_answers_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let listen = free_address();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_anomalyd"))
        .args(["serve", "--listen", &listen, "--data-dir", dir.path().to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut body = String::new();
    for _ in 0..100 {
        if let Some(b) = http_get(&listen, "/readyz") {
            body = b;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(body.starts_with("HTTP/1.1 200") && body.contains("\"ready\""), "{body}");
    let (code, err) = stop(child, "-TERM");
    assert_eq!(code, Some(0));
    assert!(err.contains("listening on") && err.contains("stopped"), "{err}");
}

#[test]
fn demo_serves_anomalies_from_a_streaming_simulated_fleet() {
    let dir = tempfile::tempdir().unwrap();
    let listen = free_address();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_anomalyd"))
        .args(["demo", "--listen", &listen, "--data-dir", dir.path().to_str().unwrap()])
        .args(["--devices", "60", "--history", "100", "--live", "20", "--tick-ms", "50"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut anomalies = String::new();
    for _ in 0..300 {
        if let Some(body) = http_get(&listen, "/api/v1/anomalies?limit=1")
            && body.contains("\"device_id\"")
        {
            anomalies = body;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (code, err) = stop(child, "-INT");
    assert!(anomalies.contains("\"detectors\""), "no anomaly served within 30 s\n{err}");
    assert!(err.contains("anomalyd demo is running: http://"), "{err}");
    assert_eq!(code, Some(0), "{err}");
}

/// A GET with a bearer key; returns the status line and body.
fn http_get_with_key(address: &str, path: &str, key: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(address).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn keys_are_shown_once_listed_without_secrets_and_revocable() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let key = ok(&["keys", "create", "--name", "ci-reader", "--scopes", "read", "--data-dir", data]);
    let key = key.trim().to_string();
    assert!(key.starts_with("adk_") && key.len() == 68, "{key}");
    let list = ok(&["keys", "list", "--data-dir", data]);
    assert!(list.contains("ci-reader") && list.contains("read") && !list.contains(&key), "{list}");
    input_error(
        &["keys", "create", "--name", "x", "--scopes", "root", "--data-dir", data],
        None,
        &["unknown scope `root`"],
    );

    // The server takes the key; without it the API answers 401.
    let listen = free_address();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_anomalyd"))
        .args(["serve", "--listen", &listen, "--data-dir", data])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if http_get(&listen, "/readyz").is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let anonymous = http_get(&listen, "/api/v1/anomalies").unwrap();
    assert!(anonymous.starts_with("HTTP/1.1 401"), "{anonymous}");
    let with_key = http_get_with_key(&listen, "/api/v1/anomalies", &key);
    assert!(with_key.starts_with("HTTP/1.1 200"), "{with_key}");
    let (code, _) = stop(child, "-TERM");
    assert_eq!(code, Some(0));

    let id = list
        .lines()
        .find(|l| l.contains("ci-reader"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    ok(&["keys", "revoke", &id, "--data-dir", data]);
    let list = ok(&["keys", "list", "--data-dir", data]);
    let line = list.lines().find(|l| l.contains("ci-reader")).unwrap();
    assert!(!line.trim_end().ends_with('-'), "revocation time shown: {line}");
    input_error(&["keys", "revoke", "999", "--data-dir", data], None, &["no API key with id 999"]);
}

#[test]
fn serving_without_keys_is_refused_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    input_error(
        &["serve", "--insecure-no-auth", "--listen", "0.0.0.0:0", "--data-dir", dir.path().to_str().unwrap()],
        None,
        &["only allowed on loopback"],
    );
}

/// `--random-stream scikit-learn` from the command line: the model remembers its stream and
/// scores breastw as scikit-learn 1.9.1 does with the same seed (reference scores committed by
/// `bench/sklearn_reference_scores.py`).
#[test]
fn scikit_learn_random_stream_scores_like_scikit_learn() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("sk.adm");
    let input = testdata().join("odds/breastw.csv");
    let (input, model) = (input.to_str().unwrap(), model.to_str().unwrap());
    let train = ["train", "-i", input, "--label-column", "label", "--trees", "100", "--seed", "3"];
    ok(&[&train[..], &["--random-stream", "scikit-learn", "--output", model]].concat());
    let info: serde_json::Value = serde_json::from_str(&ok(&["inspect", model, "--format", "json"])).unwrap();
    assert_eq!(info["random_stream"], "scikit-learn");

    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(testdata().join("odds/sklearn_scores.json")).unwrap())
            .unwrap();
    let expected = reference["sets"]["breastw"]["3"].as_array().unwrap();
    let out = ok(&["score", "-m", model, "-i", input]);
    let scores: Vec<f64> =
        out.lines().skip(1).map(|l| l.split(',').next().unwrap().parse().unwrap()).collect();
    assert_eq!(scores.len(), expected.len());
    for (row, (ours, sk)) in scores.iter().zip(expected).enumerate() {
        let sk = sk.as_f64().unwrap();
        assert!((ours - sk).abs() < 1e-5, "row {row}: anomalyd {ours}, scikit-learn {sk}");
    }

    // `evaluate` over seeds 0..4 reproduces scikit-learn's mean ROC-AUC in baseline.json.
    let eval: serde_json::Value = serde_json::from_str(&ok(&[
        "evaluate",
        "-i",
        input,
        "--label-column",
        "label",
        "--seeds",
        "0..4",
        "--random-stream",
        "scikit-learn",
        "--format",
        "json",
    ]))
    .unwrap();
    let baseline: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(testdata().join("odds/baseline.json")).unwrap())
            .unwrap();
    let sk = baseline["datasets"]["breastw"]["sk100"]["roc_auc_mean"].as_f64().unwrap();
    let ours = eval["mean"]["roc_auc"].as_f64().unwrap();
    assert_eq!(eval["random_stream"], "scikit-learn");
    assert!((ours - sk).abs() < 1e-4, "evaluate {ours} against scikit-learn's {sk}");

    // numpy's seeds stop at 2^32 - 1; the error says so instead of wrapping around.
    input_error(
        &[&train[..7], &["--seed", "4294967296", "--random-stream", "sklearn", "--output", model]].concat(),
        None,
        &["seed", "2^32"],
    );
}
