//! The pipeline end to end over HTTP with a trained bundle: incidents, queue limits, the
//! re-order timer, scoring, models, dashboard, correlations and metrics.

use std::sync::OnceLock;
use std::time::Duration;

use crate::serve_on_free_port;
use anomalyd_engine::fleet::{FleetBundle, FleetConfig, Sample, SimParams, extract_all, simulate};
use anomalyd_service::auth::AuthSettings;
use anomalyd_service::middleware::HttpSettings;
use anomalyd_service::pipeline::{ActiveBundle, PipelineSettings};
use anomalyd_service::{AppState, ServiceSettings};
use anomalyd_store::{DedupPolicy, Store, StoreOptions};
use serde_json::{Value, json};

fn config() -> FleetConfig {
    FleetConfig::from_toml(anomalyd_service::DEFAULT_FLEET_CONFIG).unwrap()
}

/// A bundle trained on a fault-free simulated fleet (shared by the tests of this file).
pub(crate) fn bundle() -> FleetBundle {
    static BUNDLE: OnceLock<FleetBundle> = OnceLock::new();
    BUNDLE
        .get_or_init(|| {
            let (samples, _) = simulate(&SimParams {
                devices: 40,
                samples: 200,
                seed: 2,
                fault_rate: 0.0,
                ..Default::default()
            });
            let (table, _) = extract_all(&config(), samples);
            FleetBundle::train(config(), &table).unwrap()
        })
        .clone()
}

struct Server {
    base: String,
    store: Store,
    dir: tempfile::TempDir,
}

async fn start(bundle: Option<FleetBundle>, pipeline: PipelineSettings) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Store::open(dir.path().join("a.db").to_str().unwrap(), &StoreOptions::default()).await.unwrap();
    // No per-key rate limit: these tests load the server on purpose.
    let http = HttpSettings { rate_per_sec: 0, ..Default::default() };
    let settings = ServiceSettings { pipeline, auth: AuthSettings::disabled(), http, ..Default::default() };
    let active = bundle.map(|bundle| ActiveBundle { bundle, version: "t1".into(), model_id: None });
    let state = AppState::with_settings(store.clone(), active, settings);
    let base = serve_on_free_port(state).await;
    Server { base, store, dir }
}

async fn post(url: &str, body: &Value) -> (u16, Value) {
    let r = reqwest::Client::new().post(url).json(body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn get(url: &str) -> (u16, Value) {
    let r = reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn patch(url: &str, body: &Value) -> (u16, Value) {
    let r = reqwest::Client::new().patch(url).json(body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

const HOUR: i64 = 3_600_000;

/// One hourly sample of a healthy device (cohort tc52/android-13, as the bundle knows it).
pub(crate) fn sample(device: &str, hour: i64, temp: f64) -> Value {
    json!({"device_id": device, "ts": hour * HOUR, "cohort": "tc52/android-13", "labels": {"site": "berlin"},
           "metrics": {"battery_pct": 80.0 - (hour % 7) as f64, "battery_temp_c": temp,
                       "cpu_pct": 20.0 + (hour % 5) as f64, "mem_pct": 50.0, "app_crashes": 0.0, "signal_dbm": -70.0}})
}

fn sample_json(s: &Sample) -> Value {
    json!({
        "device_id": &*s.device_id,
        "ts": s.ts.0,
        "cohort": s.cohort.as_deref(),
        "labels": &*s.labels,
        "metrics": s.metrics().filter(|(_, v)| v.is_finite()).map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
    })
}

async fn ingest(base: &str, samples: &[Value]) {
    for chunk in samples.chunks(2_000) {
        let (status, body) = post(&format!("{base}/api/v1/telemetry"), &Value::Array(chunk.to_vec())).await;
        assert_eq!(status, 200, "{body}");
    }
}

#[tokio::test]
async fn repeated_anomalies_join_one_incident_with_an_evidence_snapshot() {
    let settings = PipelineSettings {
        dedup: DedupPolicy { window_ms: 3 * HOUR, evidence_samples: 6 },
        ..Default::default()
    };
    let s = start(Some(bundle()), settings).await;
    let mut batch: Vec<Value> = (0..40).map(|h| sample("dev-x", h, 33.0 + (h % 3) as f64)).collect();
    // Five hours of overheating, a pause, then overheating again 10 hours later (beyond
    // the 3-hour window): two incidents, not seven alerts.
    batch.extend((40..45).map(|h| sample("dev-x", h, 71.0)));
    batch.extend((45..55).map(|h| sample("dev-x", h, 33.0 + (h % 3) as f64)));
    batch.extend((55..57).map(|h| sample("dev-x", h, 72.0)));
    batch.extend((57..60).map(|h| sample("dev-x", h, 33.0)));
    ingest(&s.base, &batch).await;

    let (_, anomalies) = get(&format!("{}/api/v1/anomalies?device_id=dev-x&limit=100", s.base)).await;
    let overheats: Vec<&Value> = anomalies["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["detectors"].as_array().unwrap().iter().any(|d| d == "battery_overheat"))
        .collect();
    assert_eq!(overheats.len(), 7, "{anomalies}");
    let (status, incidents) = get(&format!("{}/api/v1/incidents?device_id=dev-x", s.base)).await;
    assert_eq!(status, 200);
    let overheat_incidents: Vec<&Value> = incidents["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["signature"].as_str().unwrap().contains("battery_overheat"))
        .collect();
    assert_eq!(overheat_incidents.len(), 2, "{incidents}");
    let (later, first) = (overheat_incidents[0], overheat_incidents[1]);
    assert_eq!((first["anomaly_count"].as_i64(), later["anomaly_count"].as_i64()), (Some(5), Some(2)));
    assert_eq!(first["incident_key"], later["incident_key"], "same device and signature, same key");
    assert!(first["incident_key"].as_str().unwrap().starts_with("dev-x:"));
    // Every overheat anomaly points at one of the two incidents.
    let ids = [first["id"].as_i64().unwrap(), later["id"].as_i64().unwrap()];
    assert!(overheats.iter().all(|a| ids.contains(&a["incident_id"].as_i64().unwrap())));

    // The evidence was taken when the first incident opened: the raw samples up to the first
    // overheat, restricted to the metrics involved.
    let (status, detail) = get(&format!("{}/api/v1/incidents/{}", s.base, ids[0])).await;
    assert_eq!(status, 200);
    let ev = &detail["evidence"];
    assert_eq!(ev["ts"].as_i64(), Some(40 * HOUR), "{ev}");
    let recent = ev["recent_samples"].as_array().unwrap();
    assert_eq!(recent.len(), 6);
    assert_eq!(recent.last().unwrap()["ts"].as_i64(), Some(40 * HOUR));
    assert_eq!(recent.last().unwrap()["metrics"]["battery_temp_c"], 71.0);
    assert!(ev["metrics"].as_array().unwrap().iter().any(|m| m == "battery_temp_c"));
    assert!(recent.iter().all(|r| r["metrics"].get("signal_dbm").is_none()
        || ev["metrics"].as_array().unwrap().iter().any(|m| m == "signal_dbm")));
    assert!(ev["explanation"].as_array().is_some_and(|e| !e.is_empty()));
    assert_eq!(detail["anomaly_ids"].as_array().unwrap().len(), 5);

    // A resolved incident takes no more anomalies: the next overheat opens a new one.
    let (status, resolved) =
        patch(&format!("{}/api/v1/incidents/{}", s.base, ids[1]), &json!({"status": "resolved"})).await;
    assert_eq!((status, resolved["status"].as_str()), (200, Some("resolved")));
    ingest(&s.base, &[sample("dev-x", 60, 73.0), sample("dev-x", 61, 33.0)]).await;
    let (_, incidents) = get(&format!("{}/api/v1/incidents?device_id=dev-x&status=open", s.base)).await;
    let open: Vec<&Value> = incidents["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["signature"].as_str().unwrap().contains("battery_overheat"))
        .collect();
    assert_eq!(open.len(), 2, "the first (still open) and a new one: {incidents}");
    assert!(open[0]["id"].as_i64().unwrap() > ids[1]);

    let (status, body) = get(&format!("{}/api/v1/incidents/999999", s.base)).await;
    assert_eq!((status, body["type"].as_str()), (404, Some("/problems/not-found")));
    let (status, body) = get(&format!("{}/api/v1/incidents?status=lost", s.base)).await;
    assert_eq!((status, body["field"].as_str()), (400, Some("status")));
}

#[tokio::test]
async fn a_full_queue_answers_503_with_retry_after_and_loses_nothing() {
    let settings = PipelineSettings { queue_samples: 1_500, batch_samples: 1_000, ..Default::default() };
    let s = start(None, settings).await;
    // Another connection holds SQLite's write lock, so the worker's first transaction waits
    // and the queue fills up behind it.
    let blocker =
        Store::open(s.dir.path().join("a.db").to_str().unwrap(), &StoreOptions::default()).await.unwrap();
    let lock = blocker.hold_write_lock().await.unwrap();
    let batch =
        |k: i64| -> Value { Value::Array((0..1_000).map(|i| sample(&format!("q{k}"), i, 30.0)).collect()) };
    let url = format!("{}/api/v1/telemetry", s.base);
    let mut tasks = Vec::new();
    for k in 0..6 {
        let (url, body) = (url.clone(), batch(k));
        tasks.push(tokio::spawn(async move {
            let r = reqwest::Client::new().post(&url).json(&body).send().await.unwrap();
            let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
            (r.status().as_u16(), retry, r.json::<Value>().await.unwrap())
        }));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(lock);
    let mut accepted = 0;
    let mut refused = 0;
    for t in tasks {
        let (status, retry, body) = t.await.unwrap();
        match status {
            200 => accepted += body["accepted"].as_u64().unwrap(),
            503 => {
                refused += 1;
                assert_eq!(retry.as_deref(), Some("1"));
                assert!(body["detail"].as_str().unwrap().contains("queue is full"), "{body}");
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(refused >= 4, "a 1500-sample queue admits at most two 1000-sample requests at a time");
    assert!(accepted >= 1_000);
    // What was acknowledged is stored, and nothing else.
    let (_, stats) = get(&format!("{}/api/v1/dashboard/stats", s.base)).await;
    assert_eq!(stats["ingest"]["samples_stored"].as_u64(), Some(accepted), "{stats}");
    assert_eq!(s.store.count_telemetry(i64::MIN, i64::MAX).await.unwrap() as u64, accepted);
    let (_, metrics) = (0, reqwest::get(format!("{}/metrics", s.base)).await.unwrap().text().await.unwrap());
    assert!(metrics.contains("anomalyd_ingest_rejected_queue_full_total"), "{metrics}");
}

#[tokio::test]
async fn held_back_samples_are_scored_by_the_timer() {
    let settings = PipelineSettings { flush_after: Duration::from_millis(200), ..Default::default() };
    let s = start(Some(bundle()), settings).await;
    let mut batch: Vec<Value> = (0..30).map(|h| sample("dev-t", h, 33.0)).collect();
    batch.push(sample("dev-t", 30, 75.0));
    ingest(&s.base, &batch).await;
    // The overheat is the newest sample, held for the re-order tolerance; no later sample
    // comes, so only the timer can score it.
    let mut found = false;
    for _ in 0..50 {
        let (_, list) = get(&format!("{}/api/v1/anomalies?device_id=dev-t", s.base)).await;
        if list["items"].as_array().unwrap().iter().any(|a| a["ts"] == "1970-01-02T06:00:00.000Z") {
            found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(found, "the held-back overheat was never scored");
    let (_, device) = get(&format!("{}/api/v1/devices/dev-t", s.base)).await;
    let current = &device["current_features"];
    assert_eq!(current["ts"], "1970-01-02T06:00:00.000Z", "{device}");
    assert_eq!(current["values"]["battery_temp_c.last"], 75.0);
}

#[tokio::test]
async fn score_takes_vectors_and_raw_samples_and_names_bad_fields() {
    let s = start(Some(bundle()), PipelineSettings::default()).await;
    let url = format!("{}/api/v1/score", s.base);
    let cfg = config();
    let names: Vec<String> = cfg.features.iter().map(|f| f.name.clone()).collect();
    // A typical row of the training data and a wild one, scored by name and by position.
    let (samples, _) =
        simulate(&SimParams { devices: 5, samples: 60, seed: 9, fault_rate: 0.0, ..Default::default() });
    let (table, _) = extract_all(&cfg, samples);
    let row = table.row(table.len() - 1);
    let typical: serde_json::Map<String, Value> =
        names.iter().zip(row.values).map(|(n, v)| (n.clone(), json!(v))).collect();
    // Far outside the training range on every feature: isolated at the root of every tree.
    let wild: serde_json::Map<String, Value> = names.iter().map(|n| (n.clone(), json!(1e4))).collect();
    let body = json!([
        {"features": typical, "cohort": row.cohort},
        {"features": wild, "cohort": row.cohort},
        {"values": row.values, "cohort": row.cohort},
    ]);
    let (status, out) = post(&format!("{url}?explain=true"), &body).await;
    assert_eq!(status, 200, "{out}");
    let items = out["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    let score = |i: usize| items[i]["anomaly_score"].as_f64().unwrap();
    assert!(score(1) > score(0), "{out}");
    assert_eq!(score(0), score(2), "by name and by position give the same score");
    assert_eq!(items[1]["is_anomaly"], true, "{out}");
    assert!(items[1]["explanation"].as_array().is_some_and(|e| !e.is_empty() && e.len() <= 3));
    // The engine scores the same row identically in-process.
    let direct = bundle().score_one(row.cohort, row.values, &[], true, 0);
    assert!((score(0) - f64::from(direct.anomaly_score)).abs() < 1e-6);

    // Raw samples: one device's samples in one request form its windows.
    let raw: Vec<Value> = (0..30).map(|h| sample("dev-r", h, if h == 29 { 80.0 } else { 33.0 })).collect();
    let (status, out) = post(&url, &Value::Array(raw)).await;
    assert_eq!(status, 200, "{out}");
    let items = out["items"].as_array().unwrap();
    assert_eq!(items.len(), 30);
    assert!(
        items[29]["detectors"].as_array().unwrap().iter().any(|d| d == "battery_overheat"),
        "{}",
        items[29]
    );
    assert!(
        items[..29].iter().all(|i| !i["detectors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d == "battery_overheat"))
    );
    // Nothing was stored.
    assert!(s.store.device("dev-r").await.is_err());

    for (body, field) in [
        (json!({"features": {"nope": 1.0}}), "features.nope"),
        (json!({"features": {"cpu_pct.max": "high"}}), "features.cpu_pct.max"),
        (json!({"values": [1.0, 2.0]}), "values"),
        (json!([{"values": row.values}, {"features": {}, "colour": 1}]), "items[1].colour"),
        (json!({"device_id": "x", "ts": "soon", "metrics": {}}), "ts"),
    ] {
        let (status, out) = post(&url, &body).await;
        assert_eq!((status, out["field"].as_str()), (400, Some(field)), "{body} → {out}");
    }
    let no_model = start(None, PipelineSettings::default()).await;
    let (status, out) = post(&format!("{}/api/v1/score", no_model.base), &json!({"values": []})).await;
    assert_eq!((status, out["type"].as_str()), (409, Some("/problems/conflict")));
}

#[tokio::test]
async fn models_train_from_stored_telemetry_and_swap_without_failing_requests() {
    let s = start(None, PipelineSettings::default()).await;
    let (_, ready) = get(&format!("{}/readyz", s.base)).await;
    assert!(ready["model"].is_null(), "{ready}");
    let (samples, _) =
        simulate(&SimParams { devices: 30, samples: 120, seed: 4, fault_rate: 0.0, ..Default::default() });
    let n = samples.len();
    ingest(&s.base, &samples.iter().map(sample_json).collect::<Vec<_>>()).await;

    let train = |version: &'static str| {
        let base = s.base.clone();
        async move {
            let (status, job) =
                post(&format!("{base}/api/v1/models/train"), &json!({"version": version})).await;
            assert_eq!(status, 202, "{job}");
            let id = job["id"].as_u64().unwrap();
            for _ in 0..600 {
                let (_, j) = get(&format!("{base}/api/v1/models/train/{id}")).await;
                match j["phase"].as_str().unwrap() {
                    "done" => return j,
                    "failed" => panic!("training failed: {j}"),
                    _ => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
            panic!("training did not finish");
        }
    };
    let m1 = train("m1").await;
    assert_eq!(m1["samples"].as_u64(), Some(n as u64));
    assert!(m1["rows"].as_u64().unwrap() > 0);
    let m2 = train("m2").await;
    let (_, list) = get(&format!("{}/api/v1/models", s.base)).await;
    let versions: Vec<&str> =
        list["items"].as_array().unwrap().iter().map(|m| m["version"].as_str().unwrap()).collect();
    assert_eq!(versions, ["m2", "m1"]);
    assert!(list["items"].as_array().unwrap().iter().all(|m| m["active"] == false));
    assert_eq!(list["training"].as_array().unwrap().len(), 2);
    // The same version twice is refused by the job, not silently overwritten.
    let (_, job) = post(&format!("{}/api/v1/models/train", s.base), &json!({"version": "m1"})).await;
    let id = job["id"].as_u64().unwrap();
    let mut failed = Value::Null;
    for _ in 0..600 {
        let (_, j) = get(&format!("{}/api/v1/models/train/{id}", s.base)).await;
        if j["phase"] == "failed" {
            failed = j;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(failed["error"].as_str().is_some_and(|e| e.contains("m1")), "{failed}");

    let activate = |id: i64| {
        let base = s.base.clone();
        async move { post(&format!("{base}/api/v1/models/{id}/activate"), &json!(null)).await }
    };
    let (status, body) = activate(m1["model_id"].as_i64().unwrap()).await;
    assert_eq!((status, body["active"].as_bool()), (200, Some(true)), "{body}");

    // Score continuously from four clients while the active model flips ten times.
    let names: Vec<String> = config().features.iter().map(|f| f.name.clone()).collect();
    let vector: serde_json::Map<String, Value> = names.iter().map(|n| (n.clone(), json!(1.0))).collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (url, body, stop) =
            (format!("{}/api/v1/score", s.base), json!({"features": vector}), stop.clone());
        clients.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let (mut ok, mut failed, mut versions) = (0, 0, std::collections::BTreeSet::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = client.post(&url).json(&body).send().await.unwrap();
                if r.status() == 200 {
                    ok += 1;
                    let v: Value = r.json().await.unwrap();
                    versions.insert(
                        v["items"][0]["model_version"]
                            .as_str()
                            .unwrap()
                            .split('/')
                            .next()
                            .unwrap()
                            .to_string(),
                    );
                } else {
                    failed += 1;
                }
            }
            (ok, failed, versions)
        }));
    }
    for k in 0..10 {
        let id = if k % 2 == 0 { m2["model_id"].as_i64().unwrap() } else { m1["model_id"].as_i64().unwrap() };
        assert_eq!(activate(id).await.0, 200);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut seen = std::collections::BTreeSet::new();
    for c in clients {
        let (ok, failed, versions) = c.await.unwrap();
        assert_eq!(failed, 0, "requests failed during the swaps");
        assert!(ok > 0);
        seen.extend(versions);
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["m1", "m2"]);
    let (_, list) = get(&format!("{}/api/v1/models", s.base)).await;
    let active: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["active"] == true)
        .map(|m| m["version"].as_str().unwrap())
        .collect();
    assert_eq!(active, ["m1"], "exactly one active model, the last activated");
    let (status, ready) = get(&format!("{}/readyz", s.base)).await;
    assert_eq!((status, ready["model"].as_str()), (200, Some("m1")));
    let (status, _) = activate(424242).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn correlations_put_the_faulty_firmware_on_top() {
    let s = start(Some(bundle()), PipelineSettings::default()).await;
    let (mut samples, _) =
        simulate(&SimParams { devices: 120, samples: 60, seed: 11, fault_rate: 0.0, ..Default::default() });
    let firmware_of = |s: &Sample| s.labels.get("firmware").cloned().unwrap();
    let target = firmware_of(&samples[0]);
    let mut with_target: Vec<String> =
        samples.iter().filter(|s| firmware_of(s) == target).map(|s| s.device_id.to_string()).collect();
    with_target.sort();
    with_target.dedup();
    // Two thirds of the devices on the target firmware overheat from hour 40; one device on
    // another firmware too, as noise.
    let faulty: Vec<String> = with_target.iter().take(with_target.len() * 2 / 3).cloned().collect();
    let other = samples.iter().find(|s| firmware_of(s) != target).unwrap().device_id.to_string();
    let start_ms = SimParams::default().start_ms;
    for smp in &mut samples {
        let hour = (smp.ts.0 - start_ms) / HOUR;
        let id = smp.device_id.to_string();
        if hour >= 40 && (faulty.contains(&id) || id == other) {
            let k = smp.layout.names().iter().position(|n| &**n == "battery_temp_c").unwrap();
            smp.values[k] = 70.0;
        }
    }
    ingest(&s.base, &samples.iter().map(sample_json).collect::<Vec<_>>()).await;

    let (status, out) = get(&format!("{}/api/v1/insights/correlations?at_risk=100", s.base)).await;
    assert_eq!(status, 200, "{out}");
    let top = &out["items"][0];
    assert_eq!(
        (top["attribute"].as_str(), top["value"].as_str()),
        (Some("firmware"), Some(target.as_str())),
        "{out}"
    );
    assert_eq!(top["affected_devices"].as_u64(), Some(faulty.len() as u64));
    assert_eq!(top["devices_with_value"].as_u64(), Some(with_target.len() as u64));
    let at_risk: Vec<&str> =
        top["at_risk_sample"].as_array().unwrap().iter().map(|d| d.as_str().unwrap()).collect();
    let expected: Vec<&str> =
        with_target.iter().filter(|d| !faulty.contains(d)).map(String::as_str).collect();
    assert_eq!(at_risk, expected, "the healthy devices on the faulty firmware are the ones at risk");
    assert!(top["lift"].as_f64().unwrap() > 2.0 && top["p_value"].as_f64().unwrap() < 1e-4, "{top}");
    assert!(top["summary"].as_str().unwrap().contains(&format!("firmware = {target}")));
    assert_eq!(out["affected_devices"].as_u64(), Some(faulty.len() as u64 + 1));
    assert_eq!(out["fleet_devices"].as_u64(), Some(120));
    let (status, out) = get(&format!("{}/api/v1/insights/correlations?limit=0", s.base)).await;
    assert_eq!((status, out["field"].as_str()), (400, Some("limit")));
}

#[tokio::test]
async fn metrics_expose_latency_by_route_and_pipeline_state() {
    let s = start(Some(bundle()), PipelineSettings::default()).await;
    ingest(&s.base, &[sample("m", 0, 30.0)]).await;
    let _ = get(&format!("{}/api/v1/anomalies", s.base)).await;
    let _ = get(&format!("{}/api/v1/anomalies/12345", s.base)).await;
    let text = reqwest::get(format!("{}/metrics", s.base)).await.unwrap().text().await.unwrap();
    for needle in [
        "anomalyd_http_request_duration_seconds_bucket{route=\"/api/v1/anomalies\",method=\"GET\",status=\"200\"",
        "anomalyd_http_request_duration_seconds_bucket{route=\"/api/v1/anomalies/{id}\",method=\"GET\",status=\"404\"",
        "anomalyd_inference_duration_seconds_bucket{engine=\"features+forest\",batch=\"1\"",
        "anomalyd_ingest_samples_stored_total",
        "anomalyd_ingest_queue_depth",
        "anomalyd_db_pool_connections",
    ] {
        assert!(text.contains(needle), "missing {needle}\n{text}");
    }
}

#[tokio::test]
async fn shutdown_scores_held_back_samples_and_commits_them() {
    // The re-order timer never fires here: only the shutdown drain can score the overheat.
    let settings = PipelineSettings { flush_after: Duration::from_secs(3600), ..Default::default() };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let store = Store::open(path.to_str().unwrap(), &StoreOptions::default()).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let service =
        ServiceSettings { pipeline: settings, auth: AuthSettings::disabled(), ..Default::default() };
    let active = ActiveBundle { bundle: bundle(), version: "t1".into(), model_id: None };
    let state = AppState::with_settings(store.clone(), Some(active), service);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(anomalyd_service::serve_until(listener, state, async move {
        let _ = stopped.await;
    }));
    let mut batch: Vec<Value> = (0..30).map(|h| sample("dev-s", h, 33.0)).collect();
    batch.push(sample("dev-s", 30, 75.0));
    ingest(&base, &batch).await;
    let overheat_ts = 30 * HOUR;
    let stored = |store: Store| async move {
        let filter = anomalyd_store::AnomalyFilter { device_id: Some("dev-s".into()), ..Default::default() };
        store
            .list_anomalies(&filter, None, 100)
            .await
            .unwrap()
            .items
            .iter()
            .map(|a| a.ts)
            .collect::<Vec<i64>>()
    };
    assert!(!stored(store.clone()).await.contains(&overheat_ts), "held back, so not scored yet");

    stop.send(()).unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(30), server).await.unwrap().unwrap().unwrap();
    assert_eq!(outcome, anomalyd_service::Shutdown::Clean);
    store.close().await;
    // A fresh connection sees what the drain committed.
    let reopened = Store::open(path.to_str().unwrap(), &StoreOptions::default()).await.unwrap();
    assert!(stored(reopened).await.contains(&overheat_ts), "the drain scored and stored the overheat");
}
