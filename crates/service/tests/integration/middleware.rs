//! The middleware stack over real HTTP: rate limits, load shedding, headers, request ids,
//! compression, CORS.

use std::time::Duration;

use crate::serve_on_free_port;
use anomalyd_service::auth::AuthSettings;
use anomalyd_service::middleware::HttpSettings;
use anomalyd_service::{AppState, ServiceSettings};
use anomalyd_store::{Store, StoreOptions};
use serde_json::json;

async fn start(http: HttpSettings) -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Store::open(dir.path().join("a.db").to_str().unwrap(), &StoreOptions::default()).await.unwrap();
    let settings = ServiceSettings { auth: AuthSettings::disabled(), http, ..Default::default() };
    let base = serve_on_free_port(AppState::with_settings(store, None, settings)).await;
    (base, dir)
}

#[tokio::test]
async fn each_key_has_its_own_rate_budget() {
    let http = HttpSettings { rate_per_sec: 1, rate_burst: 5, ..Default::default() };
    let (base, _dir) = start(http).await;
    let client = reqwest::Client::new();
    let get = |key: &'static str| client.get(format!("{base}/api/v1/anomalies")).bearer_auth(key).send();
    for _ in 0..5 {
        assert_eq!(get("key-a").await.unwrap().status(), 200);
    }
    let r = get("key-a").await.unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["type"], "/problems/rate-limited");
    // Another key is not affected.
    assert_eq!(get("key-b").await.unwrap().status(), 200);
}

#[tokio::test]
async fn requests_beyond_the_in_flight_limit_are_shed_with_503() {
    let http = HttpSettings { max_in_flight: 1, rate_per_sec: 0, ..Default::default() };
    let (base, dir) = start(http).await;
    // An ingest request waits on a locked database: it holds the only slot.
    let blocker =
        Store::open(dir.path().join("a.db").to_str().unwrap(), &StoreOptions::default()).await.unwrap();
    let lock = blocker.hold_write_lock().await.unwrap();
    let url = format!("{base}/api/v1/telemetry");
    let slow = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .json(&json!([{"device_id": "d", "ts": 0, "metrics": {"x": 1.0}}]))
            .send()
            .await
            .unwrap()
            .status()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = reqwest::get(format!("{base}/api/v1/anomalies")).await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains("in flight"), "{body}");
    drop(lock);
    assert_eq!(slow.await.unwrap(), 200, "the request holding the slot completes");
    assert_eq!(reqwest::get(format!("{base}/api/v1/anomalies")).await.unwrap().status(), 200);
}

#[tokio::test]
async fn responses_carry_request_ids_security_headers_compression_and_cors() {
    let http = HttpSettings { cors_origins: vec!["https://ops.example".into()], ..Default::default() };
    let (base, _dir) = start(http).await;
    let client = reqwest::Client::new();
    let r = client.get(format!("{base}/healthz")).send().await.unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(!id.is_empty());
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    let r2 = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_ne!(r2.headers()["x-request-id"].to_str().unwrap(), id, "ids are unique");
    // A client's own request id is kept.
    let r = client.get(format!("{base}/healthz")).header("x-request-id", "trace-42").send().await.unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-42");
    // Large bodies are compressed when the client accepts it.
    let r = client
        .get(format!("{base}/api/v1/openapi.json"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
    // CORS: the configured origin is allowed, others are not.
    let pre = |origin: &'static str| {
        client
            .request(reqwest::Method::OPTIONS, format!("{base}/api/v1/anomalies"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .send()
    };
    let r = pre("https://ops.example").await.unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "https://ops.example");
    let r = pre("https://evil.example").await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
}
