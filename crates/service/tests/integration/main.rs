//! The API over real HTTP: server in-process on port 0, a real SQLite file.

mod auth;
mod dashboard;
mod fleet;
mod middleware;
mod openapi;
mod troubleshoot;
mod ui;
mod webhooks;

use anomalyd_engine::fleet::FleetBundle;
use anomalyd_service::{AppState, serve};
use anomalyd_store::{IngestBatch, NewAnomaly, Store, StoreOptions, TelemetryRow};
use serde_json::{Value, json};

struct Server {
    base: String,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Serves `state` on a free loopback port until the test ends; returns the base URL.
async fn serve_on_free_port(state: AppState) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(serve(listener, state, std::future::pending()));
    base
}

async fn server(anomalies: i64) -> Server {
    server_with(anomalies, None).await
}

/// `anomalies` stored anomalies (with their samples and incidents) over devices d0..d2, and
/// `bundle` scoring when given.
async fn server_with(anomalies: i64, bundle: Option<FleetBundle>) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Store::open(dir.path().join("a.db").to_str().unwrap(), &StoreOptions::default()).await.unwrap();
    let mut batch = IngestBatch::default();
    for i in 0..anomalies {
        let device = format!("d{}", i % 3);
        batch.telemetry.push(TelemetryRow {
            device_id: device.clone(),
            ts: i * 60_000,
            cohort: Some(format!("c{}", i % 2)),
            labels: json!({}).to_string(),
            metrics: json!({"cpu": i}).to_string(),
        });
        batch.anomalies.push(NewAnomaly {
            device_id: device,
            ts: i * 60_000,
            cohort: Some(format!("c{}", i % 2)),
            anomaly_score: 0.5 + (i % 10) as f64 / 100.0,
            grade: 0.99,
            severity: ["low", "medium", "high", "critical"][(i % 4) as usize].into(),
            detectors: vec!["model".into()],
            model_version: Some("v1".into()),
            features: json!({"cpu.mean": i}),
            explanation: json!([{"feature": "cpu.mean", "weight": 1.0, "direction": "above"}]),
            signature: "model|cpu".into(),
            evidence_metrics: vec!["cpu".into()],
        });
    }
    store.ingest(&batch, 1_000).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, AppState::new(store, bundle), async {
        let _ = stopped.await;
    }));
    Server { base, _dir: dir, _stop: stop }
}

async fn get(url: &str) -> (u16, String, Value) {
    let r = reqwest::get(url).await.unwrap();
    let status = r.status().as_u16();
    let ctype = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    (status, ctype, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn health_and_readiness() {
    let s = server(0).await;
    assert_eq!(get(&format!("{}/healthz", s.base)).await.0, 200);
    let (status, _, body) = get(&format!("{}/readyz", s.base)).await;
    assert_eq!((status, body["database"].as_str()), (200, Some("ok")));
}

#[tokio::test]
async fn list_filters_and_pages() {
    let s = server(60).await;
    let (status, _, body) = get(&format!("{}/api/v1/anomalies?limit=25", s.base)).await;
    assert_eq!(status, 200);
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), 25);
    for k in [
        "id",
        "device_id",
        "ts",
        "anomaly_score",
        "grade",
        "severity",
        "detectors",
        "model_version",
        "status",
        "incident_id",
        "explanation",
        "created_at",
        "updated_at",
    ] {
        assert!(items[0].get(k).is_some(), "{k} missing");
    }
    let mut ids: Vec<i64> = items.iter().map(|a| a["id"].as_i64().unwrap()).collect();
    let mut cursor = body["next_cursor"].as_str().unwrap().to_string();
    loop {
        let (_, _, page) = get(&format!("{}/api/v1/anomalies?limit=25&cursor={cursor}", s.base)).await;
        ids.extend(page["items"].as_array().unwrap().iter().map(|a| a["id"].as_i64().unwrap()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    assert_eq!(ids.len(), 60);
    assert!(ids.windows(2).all(|w| w[0] > w[1]));
    let (_, _, body) =
        get(&format!("{}/api/v1/anomalies?device_id=d1&severity=critical&limit=100", s.base)).await;
    let items = body["items"].as_array().unwrap();
    assert!(!items.is_empty());
    assert!(items.iter().all(|a| a["device_id"] == "d1" && a["severity"] == "critical"));
    let (_, _, body) =
        get(&format!("{}/api/v1/anomalies?sort=score&limit=5&from=1970-01-01T00:10:00Z", s.base)).await;
    let scores: Vec<f64> =
        body["items"].as_array().unwrap().iter().map(|a| a["anomaly_score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]) && scores[0] == 0.59, "{scores:?}");
}

#[tokio::test]
async fn bad_requests_are_problem_json_naming_the_field() {
    let s = server(5).await;
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=many", "limit"),
        ("status=closed", "status"),
        ("severity=extreme", "severity"),
        ("cursor=garbage", "cursor"),
        ("sort=random", "sort"),
        ("from=yesterday", "from"),
        ("colour=red", "colour"),
    ] {
        let (status, ctype, body) = get(&format!("{}/api/v1/anomalies?{query}", s.base)).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(ctype, "application/problem+json", "{query}");
        assert_eq!(body["field"], field, "{query}: {body}");
        assert_eq!(body["status"], 400);
        assert!(body["type"].as_str().unwrap().starts_with("/problems/"));
    }
    let (status, ctype, body) = get(&format!("{}/api/v1/anomalies/999999", s.base)).await;
    assert_eq!((status, ctype.as_str()), (404, "application/problem+json"));
    assert!(body["detail"].as_str().unwrap().contains("999999"));
    let (status, _, body) = get(&format!("{}/api/v1/anomalies/abc", s.base)).await;
    assert_eq!((status, body["field"].as_str()), (400, Some("id")));
}

#[tokio::test]
async fn acknowledge_and_resolve_persist() {
    let s = server(3).await;
    let client = reqwest::Client::new();
    let (_, _, list) = get(&format!("{}/api/v1/anomalies", s.base)).await;
    let id = list["items"][0]["id"].as_i64().unwrap();
    let url = format!("{}/api/v1/anomalies/{id}", s.base);
    let r =
        client.patch(&url).json(&json!({"status": "acknowledged", "note": "on it"})).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (_, _, a) = get(&url).await;
    assert_eq!((a["status"].as_str(), a["note"].as_str()), (Some("acknowledged"), Some("on it")));
    let r = client.patch(&url).json(&json!({"status": "resolved"})).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (_, _, a) = get(&url).await;
    assert_eq!(a["status"], "resolved");
    for (body, field) in
        [(json!({"status": "gone"}), Some("status")), (json!({"status": "open", "extra": 1}), None)]
    {
        let r = client.patch(&url).json(&body).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 400);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["field"].as_str(), field, "{v}");
    }
    let r =
        client.patch(&url).header("content-type", "application/json").body("{not json").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "/problems/malformed-body");
}

async fn post(url: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new().post(url).json(&body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn sample(device: &str, minute: i64, temp: f64) -> Value {
    json!({"device_id": device, "ts": minute * 60_000, "cohort": "tc52/android-13", "labels": {"site": "berlin"},
           "metrics": {"battery_pct": 80.0 - (minute % 7) as f64, "battery_temp_c": temp, "cpu_pct": 20.0 + (minute % 5) as f64,
                       "mem_pct": 50.0, "app_crashes": 0.0, "signal_dbm": -70.0}})
}

#[tokio::test]
async fn ingest_is_idempotent_and_validates_every_field() {
    let s = server(0).await;
    let url = format!("{}/api/v1/telemetry", s.base);
    let batch = json!([sample("a", 0, 30.0), sample("a", 1, 31.0), sample("b", 0, 29.0)]);
    let (status, body) = post(&url, batch.clone()).await;
    assert_eq!((status, body["accepted"].as_u64(), body["duplicates"].as_u64()), (200, Some(3), Some(0)));
    let (status, body) = post(&url, batch).await;
    assert_eq!(
        (status, body["accepted"].as_u64(), body["duplicates"].as_u64()),
        (200, Some(0), Some(3)),
        "a retried batch is stored once"
    );
    let mut bad = sample("a", 2, 30.0);
    bad["colour"] = json!("red");
    let (status, body) = post(&url, json!([sample("a", 3, 30.0), bad])).await;
    assert_eq!((status, body["field"].as_str()), (400, Some("items[1].colour")), "{body}");
    let mut bad = sample("a", 2, 30.0);
    bad["metrics"]["cpu_pct"] = json!("high");
    let (status, body) = post(&url, json!([bad])).await;
    assert_eq!((status, body["field"].as_str()), (400, Some("items[0].metrics.cpu_pct")), "{body}");
    let mut bad = sample("a", 2, 30.0);
    bad["ts"] = json!("yesterday");
    let (status, body) = post(&url, json!([bad])).await;
    assert_eq!((status, body["field"].as_str()), (400, Some("items[0].ts")), "{body}");
    let (status, body) = post(&url, json!({"device_id": "a"})).await;
    assert_eq!((status, body["type"].as_str()), (400, Some("/problems/malformed-body")));
    let r = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .body("[{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // Nothing from the refused batches was stored.
    let (_, body) = post(&url, json!([sample("a", 3, 30.0)])).await;
    assert_eq!(body["accepted"].as_u64(), Some(1));
}

#[tokio::test]
async fn ingested_telemetry_is_scored_with_the_bundle() {
    use anomalyd_engine::fleet::{FleetBundle, FleetConfig, SimParams, extract_all, simulate};
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/fleet.toml")).unwrap();
    let cfg = FleetConfig::from_toml(&text).unwrap();
    let (samples, _) =
        simulate(&SimParams { devices: 40, samples: 200, seed: 2, fault_rate: 0.0, ..Default::default() });
    let (table, _) = extract_all(&cfg, samples);
    let bundle = FleetBundle::train(cfg, &table).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let store =
        Store::open(dir.path().join("a.db").to_str().unwrap(), &StoreOptions::default()).await.unwrap();
    let base = serve_on_free_port(AppState::new(store, Some(bundle))).await;

    let url = format!("{base}/api/v1/telemetry");
    let normal: Vec<Value> = (0..30).map(|m| sample("dev-x", m * 60, 33.0 + (m % 3) as f64)).collect();
    let (status, body) = post(&url, Value::Array(normal)).await;
    assert_eq!(status, 200, "{body}");
    // The battery overheats: the threshold rule fires and the anomaly is stored with it. The
    // pipeline holds each sample for the re-order tolerance (10 minutes in fleet.toml), so
    // the anomaly lands with the next sample's request.
    let (status, _) = post(&url, json!([sample("dev-x", 30 * 60, 71.0)])).await;
    assert_eq!(status, 200);
    let (status, body) = post(&url, json!([sample("dev-x", 31 * 60, 34.0)])).await;
    assert_eq!((status, body["anomalies"].as_u64()), (200, Some(1)), "{body}");
    let (_, _, list) = get(&format!("{base}/api/v1/anomalies?device_id=dev-x")).await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{list}");
    let detectors: Vec<&str> =
        items[0]["detectors"].as_array().unwrap().iter().map(|d| d.as_str().unwrap()).collect();
    assert!(detectors.contains(&"battery_overheat"), "{detectors:?}");
    assert!(items[0]["explanation"].as_array().is_some_and(|e| !e.is_empty()));
    assert_eq!(items[0]["ts"], "1970-01-02T06:00:00.000Z");
}

#[tokio::test]
async fn an_oversized_body_is_refused_as_problem_json() {
    let s = server(0).await;
    let big = "x".repeat(anomalyd_service::MAX_BODY_BYTES + 1);
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/telemetry", s.base))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "/problems/body-too-large");
}

#[tokio::test]
async fn devices_list_and_detail() {
    let s = server(12).await;
    let (status, _, page) = get(&format!("{}/api/v1/devices?limit=2", s.base)).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> =
        page["items"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["d0", "d1"]);
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, _, page) = get(&format!("{}/api/v1/devices?limit=2&cursor={cursor}", s.base)).await;
    assert_eq!(page["items"][0]["id"], "d2");
    assert!(page["next_cursor"].is_null());
    let (status, _, d) = get(&format!("{}/api/v1/devices/d1", s.base)).await;
    assert_eq!(status, 200);
    assert_eq!(d["recent_metrics"].as_array().unwrap().len(), 4);
    assert_eq!(d["anomalies"].as_array().unwrap().len(), 4);
    assert!(d["anomalies"].as_array().unwrap().iter().all(|a| a["device_id"] == "d1"));
    let (status, ctype, _) = get(&format!("{}/api/v1/devices/nope", s.base)).await;
    assert_eq!((status, ctype.as_str()), (404, "application/problem+json"));
    let (status, _, body) = get(&format!("{}/api/v1/devices?cursor=zz", s.base)).await;
    assert_eq!((status, body["field"].as_str()), (400, Some("cursor")));
}
