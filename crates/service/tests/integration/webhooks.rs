//! Webhooks end to end: a real receiver on a local port, the real API and a real SQLite file.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::serve_on_free_port;
use anomalyd_service::auth::AuthSettings;
use anomalyd_service::middleware::HttpSettings;
use anomalyd_service::pipeline::{ActiveBundle, PipelineSettings};
use anomalyd_service::webhooks::WebhookSettings;
use anomalyd_service::{AppState, ServiceSettings};
use anomalyd_store::{IngestBatch, NewAnomaly, Store, StoreOptions, TelemetryRow};
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::fleet::{bundle, sample};

/// What the receiver answers to the n-th request of one delivery (by `Idempotency-Key`).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Answer {
    Status(u16),
    /// 429 with `Retry-After: <secs>`.
    TooMany(u64),
    /// Hangs this long, then 200 (too late: the sender has given up).
    Hang(Duration),
}

struct Received {
    at: Instant,
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Default)]
struct Log {
    /// Requests by idempotency key, in arrival order.
    by_key: BTreeMap<String, Vec<Received>>,
}

/// The receiver's request log and script.
type ReceiverState = (Arc<Mutex<Log>>, Arc<Vec<Answer>>);

pub(crate) struct Receiver {
    pub(crate) url: String,
    log: Arc<Mutex<Log>>,
}

impl Receiver {
    fn requests(&self) -> usize {
        self.log.lock().unwrap().by_key.values().map(Vec::len).sum()
    }
}

/// A local HTTP server that answers each delivery by `script` (then 200 once it runs out),
/// recording every request.
pub(crate) async fn receiver(script: Vec<Answer>) -> Receiver {
    let log = Arc::new(Mutex::new(Log::default()));
    let state = (log.clone(), Arc::new(script));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            |axum::extract::State((log, script)): axum::extract::State<ReceiverState>,
             headers: HeaderMap,
             body: Bytes| async move {
                let at = Instant::now();
                let key = headers
                    .get("idempotency-key")
                    .map(|v| v.to_str().unwrap().to_string())
                    .unwrap_or_default();
                let n = {
                    let mut log = log.lock().unwrap();
                    let seen = log.by_key.entry(key).or_default();
                    seen.push(Received { at, headers, body });
                    seen.len() - 1
                };
                let answer: Response = match script.get(n).copied().unwrap_or(Answer::Status(200)) {
                    Answer::Status(s) => {
                        (StatusCode::from_u16(s).unwrap(), format!("answer {s}")).into_response()
                    }
                    Answer::TooMany(secs) => {
                        (StatusCode::TOO_MANY_REQUESTS, [("retry-after", secs.to_string())], "slow down")
                            .into_response()
                    }
                    Answer::Hang(d) => {
                        tokio::time::sleep(d).await;
                        StatusCode::OK.into_response()
                    }
                };
                answer
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app.with_state(state)).await });
    Receiver { url, log }
}

pub(crate) struct Server {
    pub(crate) base: String,
    pub(crate) store: Store,
    state: AppState,
    _dir: tempfile::TempDir,
}

pub(crate) async fn start(
    bundle: Option<anomalyd_engine::fleet::FleetBundle>,
    webhooks: WebhookSettings,
) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Store::open(dir.path().join("a.db").to_str().unwrap(), &StoreOptions::default()).await.unwrap();
    let settings = ServiceSettings {
        pipeline: PipelineSettings::default(),
        auth: AuthSettings::disabled(),
        http: HttpSettings { rate_per_sec: 0, ..Default::default() },
        webhooks,
        ..Default::default()
    };
    let active = bundle.map(|bundle| ActiveBundle { bundle, version: "t1".into(), model_id: None });
    let state = AppState::with_settings(store.clone(), active, settings);
    let base = serve_on_free_port(state.clone()).await;
    Server { base, store, state, _dir: dir }
}

/// Small delays so that a test runs in seconds.
pub(crate) fn fast(max_attempts: u32) -> WebhookSettings {
    WebhookSettings {
        max_attempts,
        timeout: Duration::from_millis(500),
        backoff_base: Duration::from_millis(200),
        backoff_max: Duration::from_secs(5),
        poll_interval: Duration::from_millis(100),
        concurrency: 4,
        public_url: "https://anomalyd.example/".into(),
        jitter_seed: Some(7),
    }
}

async fn call(method: &str, url: &str, body: Option<Value>) -> (u16, Value) {
    let mut r = reqwest::Client::new().request(method.parse().unwrap(), url);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

pub(crate) async fn register(base: &str, url: &str, secret: Option<&str>) -> (i64, String) {
    let mut body = json!({"url": url, "min_severity": "low", "description": "test receiver"});
    if let Some(s) = secret {
        body["secret"] = json!(s);
    }
    let (status, created) = call("POST", &format!("{base}/api/v1/webhooks"), Some(body)).await;
    assert_eq!(status, 201, "{created}");
    (created["id"].as_i64().unwrap(), created["secret"].as_str().unwrap().to_string())
}

/// Polls the delivery list until `done` holds for it (or fails after 20 s).
pub(crate) async fn wait_for(
    base: &str,
    hook: i64,
    query: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, page) =
            call("GET", &format!("{base}/api/v1/webhooks/{hook}/deliveries?{query}"), None).await;
        assert_eq!(status, 200, "{page}");
        let items = page["items"].as_array().unwrap().clone();
        if done(&items) {
            return items;
        }
        assert!(Instant::now() < deadline, "gave up waiting; deliveries: {items:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn hmac_hex(secret: &str, text: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(text);
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// Stores a critical anomaly at `ts` for each of devices `dev-0..n` through the store's
/// ingest (the transaction the pipeline commits); returns the deliveries it queued.
pub(crate) async fn store_anomalies(store: &Store, n: usize, ts: i64) -> u64 {
    let mut batch = IngestBatch::default();
    for d in 0..n {
        let device = format!("dev-{d}");
        batch.telemetry.push(TelemetryRow {
            device_id: device.clone(),
            ts,
            cohort: Some("tc52".into()),
            labels: json!({"site": "berlin"}).to_string(),
            metrics: json!({"cpu": 99.0}).to_string(),
        });
        batch.anomalies.push(NewAnomaly {
            device_id: device,
            ts,
            cohort: Some("tc52".into()),
            anomaly_score: 0.8,
            grade: 0.999,
            severity: "critical".into(),
            detectors: vec!["model".into()],
            model_version: Some("v1".into()),
            features: json!({"cpu.mean": 99.0}),
            explanation: json!([{"feature": "cpu.mean", "weight": 1.0, "direction": "above", "value": 99.0,
                                 "normal_low": 10.0, "normal_high": 40.0}]),
            signature: "model|cpu".into(),
            evidence_metrics: vec!["cpu".into()],
        });
    }
    store.ingest(&batch, anomalyd_service::now_ms()).await.unwrap().webhook_deliveries
}

#[tokio::test]
async fn an_alert_survives_500_429_and_a_hang_and_is_delivered_once_signed() {
    let settings = fast(6);
    let (timeout, base_backoff) = (settings.timeout, settings.backoff_base);
    let rx = receiver(vec![
        Answer::Status(500),
        Answer::TooMany(1),
        Answer::Hang(timeout + Duration::from_secs(1)),
        Answer::Status(200),
    ])
    .await;
    let s = start(Some(bundle()), settings).await;
    let secret = "receiver-secret-0123456789";
    let (hook, returned) = register(&s.base, &rx.url, Some(secret)).await;
    assert_eq!(returned, secret);

    // A healthy day, then the battery overheats: the rule fires and opens an incident. (The
    // pipeline holds samples for re-ordering; the later samples release the hot one.)
    let mut samples: Vec<Value> = (0..40).map(|h| sample("dev-x", h, 33.0 + (h % 3) as f64)).collect();
    samples.push(sample("dev-x", 40, 71.0));
    samples.extend((41..44).map(|h| sample("dev-x", h, 33.0)));
    let (status, body) =
        call("POST", &format!("{}/api/v1/telemetry", s.base), Some(Value::Array(samples))).await;
    assert_eq!((status, body["anomalies"].as_u64().is_some_and(|n| n >= 1)), (200, true), "{body}");
    let (_, incidents) = call("GET", &format!("{}/api/v1/incidents?device_id=dev-x", s.base), None).await;
    let incidents = incidents["items"].as_array().unwrap().clone();
    assert!(!incidents.is_empty());

    let delivered = wait_for(&s.base, hook, "status=delivered", |d| d.len() == incidents.len()).await;
    // No attempt after the successful one.
    tokio::time::sleep(Duration::from_millis(400)).await;
    {
        let log = rx.log.lock().unwrap();
        assert_eq!(log.by_key.len(), incidents.len(), "one delivery per incident");
        for d in &delivered {
            assert_eq!((d["attempts"].as_i64(), d["last_status"].as_i64()), (Some(4), Some(200)), "{d}");
            assert!(
                d["last_error"].is_null() && d["next_attempt_at"].is_null() && d["delivered_at"].is_string()
            );
            let key = d["idempotency_key"].as_str().unwrap();
            let seen = &log.by_key[key];
            assert_eq!(seen.len(), 4, "500, 429, the hang, 200: {key}");
            // Every attempt sends the same bytes, the same key and delivery id, validly signed.
            for r in seen {
                assert_eq!(r.body, seen[0].body, "a retry changed the body");
                assert_eq!(r.headers["content-type"], "application/json");
                assert_eq!(r.headers["x-anomalyd-delivery"], d["id"].to_string().as_str());
                assert_eq!(r.headers["x-anomalyd-event"], "incident.opened");
                let ts = r.headers["x-anomalyd-timestamp"].to_str().unwrap();
                let ts_secs: i64 = ts.parse().unwrap();
                assert!((ts_secs - anomalyd_service::now_ms() / 1000).abs() < 60);
                let mut signed = format!("{ts}.").into_bytes();
                signed.extend_from_slice(&r.body);
                let expected = format!("sha256={}", hmac_hex(secret, &signed));
                assert_eq!(r.headers["x-anomalyd-signature"].to_str().unwrap(), expected);
                assert_ne!(expected, format!("sha256={}", hmac_hex("another-secret-000000", &signed)));
            }
            // Backoff: the first retry waits at least half of base (equal jitter), the second at
            // least Retry-After's 1 s, the third the hang's timeout plus half of base·4.
            let gap = |i: usize| seen[i].at - seen[i - 1].at;
            let slack = Duration::from_millis(5);
            assert!(gap(1) + slack >= base_backoff / 2, "{:?}", gap(1));
            assert!(gap(2) + slack >= Duration::from_secs(1), "Retry-After not honoured: {:?}", gap(2));
            assert!(gap(3) + slack >= timeout + base_backoff * 4 / 2, "{:?}", gap(3));

            let payload: Value = serde_json::from_slice(&seen[0].body).unwrap();
            assert_eq!(d["payload"], payload, "the API shows the body sent");
            let incident = incidents.iter().find(|i| i["id"] == payload["incident"]["id"]).unwrap();
            assert_eq!(payload["event"], "incident.opened");
            assert_eq!(payload["idempotency_key"], key);
            assert_eq!(payload["incident"]["incident_key"], incident["incident_key"]);
            assert_eq!(payload["incident"]["severity"], incident["severity"]);
            assert_eq!(payload["device"]["id"], "dev-x");
            assert_eq!(payload["device"]["labels"]["site"], "berlin");
            let anomaly = payload["anomaly"]["id"].as_i64().unwrap();
            assert_eq!(d["anomaly_id"].as_i64(), Some(anomaly));
            assert_eq!(payload["dashboard_url"], format!("https://anomalyd.example/#/anomalies/{anomaly}"));
            let top = &payload["anomaly"]["explanation"][0];
            assert!(top["feature"].is_string() && top["normal_low"].is_number(), "{payload:#}");
            assert!(payload["summary"].as_str().unwrap().contains("dev-x"), "{payload:#}");
        }
    }

    // Only a dead letter can be retried.
    let id = delivered[0]["id"].as_i64().unwrap();
    let (status, problem) =
        call("POST", &format!("{}/api/v1/webhooks/{hook}/deliveries/{id}/retry", s.base), None).await;
    assert_eq!((status, problem["type"].as_str()), (409, Some("/problems/conflict")), "{problem}");

    let metrics = reqwest::get(format!("{}/metrics", s.base)).await.unwrap().text().await.unwrap();
    for outcome in ["delivered", "retry"] {
        let line = format!("anomalyd_webhook_deliveries_total{{outcome=\"{outcome}\"}}");
        let n: f64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .unwrap_or_else(|| panic!("{line} missing"))
            .trim()
            .parse()
            .unwrap();
        assert!(n >= 1.0, "{line} {n}");
    }
    assert!(metrics.contains("anomalyd_webhook_deliveries_unfinished"), "{metrics}");
}

#[tokio::test]
async fn a_target_that_always_fails_ends_dead_lettered_and_can_be_retried() {
    let rx = receiver(vec![Answer::Status(500); 100]).await;
    let mut settings = fast(3);
    settings.backoff_base = Duration::from_millis(50);
    let s = start(None, settings).await;
    let (hook, secret) = register(&s.base, &rx.url, None).await;
    assert!(secret.starts_with("whsec_"), "a secret is generated: {secret}");
    assert_eq!(store_anomalies(&s.store, 1, 60_000).await, 1);

    let dead = wait_for(&s.base, hook, "status=dead", |d| d.len() == 1).await;
    let d = &dead[0];
    assert_eq!((d["attempts"].as_i64(), d["last_status"].as_i64()), (Some(3), Some(500)), "{d}");
    assert_eq!(d["last_error"], "HTTP 500: answer 500");
    assert!(d["next_attempt_at"].is_null());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.requests(), 3, "no attempt after the last one");
    let (_, pending) =
        call("GET", &format!("{}/api/v1/webhooks/{hook}/deliveries?status=pending", s.base), None).await;
    assert_eq!(pending["items"].as_array().unwrap().len(), 0);

    // Re-queued by hand: three more attempts, same key, then dead again.
    let id = d["id"].as_i64().unwrap();
    let (status, requeued) =
        call("POST", &format!("{}/api/v1/webhooks/{hook}/deliveries/{id}/retry", s.base), None).await;
    assert_eq!(status, 200, "{requeued}");
    assert_eq!(requeued["idempotency_key"], d["idempotency_key"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while rx.requests() < 6 {
        assert!(Instant::now() < deadline, "the re-queued delivery was not attempted again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dead = wait_for(&s.base, hook, "status=dead", |d| d.len() == 1).await;
    assert_eq!(dead[0]["attempts"], 3);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.requests(), 6);
    assert_eq!(rx.log.lock().unwrap().by_key.len(), 1, "every attempt carried the same Idempotency-Key");
    let (status, problem) =
        call("POST", &format!("{}/api/v1/webhooks/{hook}/deliveries/999/retry", s.base), None).await;
    assert_eq!((status, problem["type"].as_str()), (404, Some("/problems/not-found")));
}

#[tokio::test]
async fn webhooks_are_validated_listed_without_secrets_and_deleted() {
    let s = start(None, fast(3)).await;
    let url = format!("{}/api/v1/webhooks", s.base);
    for (body, field) in [
        (json!({"url": "ftp://files.example/x"}), "url"),
        (json!({"url": "not a url"}), "url"),
        (json!({"url": "http://a.example", "secret": "short"}), "secret"),
        (json!({"url": "http://a.example", "min_severity": "extreme"}), "min_severity"),
    ] {
        let (status, problem) = call("POST", &url, Some(body.clone())).await;
        assert_eq!((status, problem["field"].as_str()), (400, Some(field)), "{body}: {problem}");
        assert_eq!(problem["type"], "/problems/invalid-field");
    }
    let (status, problem) = call("POST", &url, Some(json!({"url": "http://a.example", "colour": 1}))).await;
    assert_eq!((status, problem["type"].as_str()), (400, Some("/problems/malformed-body")));

    let (a, secret_a) = register(&s.base, "http://a.example/hook", None).await;
    let (b, _) = register(&s.base, "https://b.example/hook", Some("b-secret-0123456789")).await;
    let r = reqwest::get(&url).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let text = r.text().await.unwrap();
    assert!(!text.contains("secret") && !text.contains(&secret_a), "{text}");
    let list: Value = serde_json::from_str(&text).unwrap();
    let ids: Vec<i64> = list["items"].as_array().unwrap().iter().map(|w| w["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [a, b]);
    assert_eq!(list["items"][0]["min_severity"], "low");

    let (status, _) = call("DELETE", &format!("{url}/{a}"), None).await;
    assert_eq!(status, 204);
    let (status, problem) = call("DELETE", &format!("{url}/{a}"), None).await;
    assert_eq!((status, problem["type"].as_str()), (404, Some("/problems/not-found")));
    let (status, _) = call("DELETE", &format!("{url}/424242"), None).await;
    assert_eq!(status, 404);
    let (status, problem) = call("DELETE", &format!("{url}/abc"), None).await;
    assert_eq!((status, problem["field"].as_str()), (400, Some("id")));
    let (_, list) = call("GET", &url, None).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);

    // A deleted hook's deliveries stay readable; an unknown hook has none.
    let (status, _) = call("GET", &format!("{url}/{a}/deliveries"), None).await;
    assert_eq!(status, 200);
    let (status, _) = call("GET", &format!("{url}/424242/deliveries"), None).await;
    assert_eq!(status, 404);
    for (query, field) in [("status=lost", "status"), ("limit=0", "limit"), ("cursor=zz", "cursor")] {
        let (status, problem) = call("GET", &format!("{url}/{b}/deliveries?{query}"), None).await;
        assert_eq!((status, problem["field"].as_str()), (400, Some(field)), "{query}: {problem}");
    }
}

#[tokio::test]
async fn the_outbox_row_commits_with_the_incident_even_when_nothing_delivers() {
    // Concurrency 0: this process delivers nothing, so what the commit wrote stays visible.
    let settings = WebhookSettings { concurrency: 0, ..fast(3) };
    let s = start(None, settings).await;
    let (hook, _) = register(&s.base, "http://127.0.0.1:9/never", None).await;
    assert_eq!(store_anomalies(&s.store, 2, 60_000).await, 2);
    let pending = wait_for(&s.base, hook, "status=pending", |d| !d.is_empty()).await;
    assert_eq!(pending.len(), 2);
    for d in &pending {
        assert_eq!((d["attempts"].as_i64(), d["event"].as_str()), (Some(0), Some("incident.opened")));
        assert!(d["payload"].is_null() && d["next_attempt_at"].is_string(), "{d}");
    }
    // The same devices and signature a minute later: the anomalies join the open incidents,
    // no new alert. The first batch re-sent stores nothing and alerts nothing.
    assert_eq!(store_anomalies(&s.store, 2, 120_000).await, 0);
    assert_eq!(store_anomalies(&s.store, 2, 60_000).await, 0);
    let (_, incidents) = call("GET", &format!("{}/api/v1/incidents", s.base), None).await;
    let counts: Vec<i64> =
        incidents["items"].as_array().unwrap().iter().map(|i| i["anomaly_count"].as_i64().unwrap()).collect();
    assert_eq!(counts, [2, 2]);
    let (_, all) = call("GET", &format!("{}/api/v1/webhooks/{hook}/deliveries", s.base), None).await;
    assert_eq!(all["items"].as_array().unwrap().len(), 2);
    let (_, page) = call("GET", &format!("{}/api/v1/webhooks/{hook}/deliveries?limit=1", s.base), None).await;
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, next) =
        call("GET", &format!("{}/api/v1/webhooks/{hook}/deliveries?limit=1&cursor={cursor}", s.base), None)
            .await;
    assert!(next["items"][0]["id"].as_i64() < page["items"][0]["id"].as_i64());
    assert!(next["next_cursor"].is_null());
}

#[tokio::test]
async fn shutdown_gives_unfinished_attempts_back_to_the_outbox() {
    let rx = receiver(vec![Answer::Hang(Duration::from_secs(30))]).await;
    let settings = WebhookSettings { timeout: Duration::from_secs(20), ..fast(3) };
    let s = start(None, settings).await;
    let (hook, _) = register(&s.base, &rx.url, None).await;
    store_anomalies(&s.store, 1, 60_000).await;
    wait_for(&s.base, hook, "status=delivering", |d| d.len() == 1).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while rx.requests() == 0 {
        assert!(Instant::now() < deadline, "no attempt reached the receiver");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    s.state.webhooks.shutdown(Duration::from_millis(200)).await;
    assert!(started.elapsed() < Duration::from_secs(5), "shutdown waited for the hung attempt");
    let (_, page) = call("GET", &format!("{}/api/v1/webhooks/{hook}/deliveries", s.base), None).await;
    let d = &page["items"][0];
    assert_eq!((d["status"].as_str(), d["attempts"].as_i64()), (Some("pending"), Some(0)), "{d}");
    // Stopped: nothing is claimed any more.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.requests(), 1);
    s.state.webhooks.shutdown(Duration::ZERO).await;
}
