//! Dashboard counters and trends against counts made independently from the rows written.

use std::collections::BTreeMap;

use crate::serve_on_free_port;
use anomalyd_service::AppState;
use anomalyd_store::{IngestBatch, NewAnomaly, Store, StoreOptions, TelemetryRow};
use serde_json::{Value, json};

const HOUR: i64 = 3_600_000;
const SEVERITIES: [&str; 4] = ["low", "medium", "high", "critical"];

async fn get(url: &str) -> (u16, Value) {
    let r = reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn stats_and_trends_count_exactly_what_was_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Store::open(dir.path().join("a.db").to_str().unwrap(), &StoreOptions::default()).await.unwrap();
    // 250 anomalies every 20 minutes on 7 devices in 3 cohorts, in two batches; the second
    // repeats 50 of the first (a retry), which must not be counted twice.
    let make = |i: i64| {
        let device = format!("d{}", i % 7);
        let cohort = ["a", "b", "c"][(i % 3) as usize].to_string();
        let telemetry = TelemetryRow {
            device_id: device.clone(),
            ts: i * 20 * 60_000,
            cohort: Some(cohort.clone()),
            labels: json!({"firmware": format!("f{}", i % 7 % 2)}).to_string(),
            metrics: json!({"x": i}).to_string(),
        };
        let anomaly = NewAnomaly {
            device_id: device,
            ts: i * 20 * 60_000,
            cohort: Some(cohort),
            anomaly_score: 0.5 + (i % 10) as f64 / 100.0,
            grade: 0.99,
            severity: SEVERITIES[(i % 4) as usize].into(),
            detectors: vec!["model".into()],
            model_version: Some("v1".into()),
            features: json!({}),
            explanation: json!([]),
            signature: format!("model|x{}", i % 5),
            evidence_metrics: vec!["x".into()],
        };
        (telemetry, anomaly)
    };
    for range in [0..150i64, 100..250] {
        let mut batch = IngestBatch::default();
        for i in range {
            let (t, a) = make(i);
            batch.telemetry.push(t);
            batch.anomalies.push(a);
        }
        store.ingest(&batch, 1_000).await.unwrap();
    }
    let mut by_severity: BTreeMap<&str, i64> = BTreeMap::new();
    let mut by_cohort: BTreeMap<&str, i64> = BTreeMap::new();
    let mut by_hour: BTreeMap<i64, (i64, f64)> = BTreeMap::new();
    for i in 0..250i64 {
        *by_severity.entry(SEVERITIES[(i % 4) as usize]).or_default() += 1;
        *by_cohort.entry(["a", "b", "c"][(i % 3) as usize]).or_default() += 1;
        let e = by_hour.entry(i * 20 * 60_000 / HOUR).or_default();
        e.0 += 1;
        e.1 += 0.5 + (i % 10) as f64 / 100.0;
    }

    let base = serve_on_free_port(AppState::new(store, None)).await;

    let (status, stats) = get(&format!("{base}/api/v1/dashboard/stats")).await;
    assert_eq!(status, 200);
    assert_eq!(stats["anomalies"]["total"], 250, "{stats}");
    assert_eq!(stats["anomalies"]["by_status"]["open"], 250);
    for (sev, n) in &by_severity {
        assert_eq!(stats["anomalies"]["by_severity"][sev].as_i64(), Some(*n), "{sev}");
    }
    for (c, n) in &by_cohort {
        assert_eq!(stats["anomalies"]["by_cohort"][c].as_i64(), Some(*n), "{c}");
    }
    assert_eq!(stats["devices"]["seen"], 7);
    // A (device, signature) pair recurs every 7 × 5 anomalies = 11.7 h, beyond the 6-hour
    // dedup window, so every anomaly opened its own incident.
    assert_eq!(stats["incidents"]["open"], 250);
    assert_eq!(stats["devices"]["with_open_incidents"], 7);

    // Resolving moves one anomaly between status counts.
    let (_, page) = get(&format!("{base}/api/v1/anomalies?limit=1")).await;
    let id = page["items"][0]["id"].as_i64().unwrap();
    let r = reqwest::Client::new()
        .patch(format!("{base}/api/v1/anomalies/{id}"))
        .json(&json!({"status": "resolved"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, stats) = get(&format!("{base}/api/v1/dashboard/stats")).await;
    assert_eq!(
        (
            stats["anomalies"]["by_status"]["open"].as_i64(),
            stats["anomalies"]["by_status"]["resolved"].as_i64()
        ),
        (Some(249), Some(1))
    );

    // Hourly trend over the whole range: every hour present, counts and means exact.
    let last_hour = *by_hour.keys().last().unwrap();
    let (status, trend) =
        get(&format!("{base}/api/v1/dashboard/trends?bucket=hour&from=0&to={}", (last_hour + 1) * HOUR))
            .await;
    assert_eq!(status, 200, "{trend}");
    let buckets = trend["buckets"].as_array().unwrap();
    assert_eq!(buckets.len() as i64, last_hour + 1);
    for (k, b) in buckets.iter().enumerate() {
        let (n, sum) = by_hour.get(&(k as i64)).copied().unwrap_or_default();
        assert_eq!(b["count"].as_i64(), Some(n), "hour {k}");
        if n > 0 {
            assert!((b["mean_score"].as_f64().unwrap() - sum / n as f64).abs() < 1e-9);
        } else {
            assert!(b["mean_score"].is_null());
        }
    }
    // Without a range it ends after the latest anomaly; daily buckets sum the hours.
    let (_, trend) = get(&format!("{base}/api/v1/dashboard/trends?bucket=day")).await;
    let days = trend["buckets"].as_array().unwrap();
    assert_eq!(days.len(), 30);
    assert_eq!(days.iter().map(|b| b["count"].as_i64().unwrap()).sum::<i64>(), 250);
    let (status, body) = get(&format!("{base}/api/v1/dashboard/trends?bucket=week")).await;
    assert_eq!((status, body["field"].as_str()), (400, Some("bucket")));
    let (status, body) = get(&format!("{base}/api/v1/dashboard/trends?from=10&to=5")).await;
    assert_eq!((status, body["field"].as_str()), (400, Some("from")));
}
