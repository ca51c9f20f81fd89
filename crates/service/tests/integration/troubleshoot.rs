//! Troubleshooting over real HTTP against a fake LLM: a real axum server on port 0 that
//! speaks chat completions and counts the calls it gets.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::serve_on_free_port;
use anomalyd_service::auth::AuthSettings;
use anomalyd_service::middleware::HttpSettings;
use anomalyd_service::troubleshoot::rules::builtin_rules;
use anomalyd_service::troubleshoot::{TroubleshootSettings, parse_endpoint};
use anomalyd_service::{AppState, ServiceSettings};
use anomalyd_store::{AnomalyFilter, IngestBatch, NewAnomaly, Store, StoreOptions};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// What the fake answers to one call.
#[derive(Debug, Clone, Copy)]
enum Reply {
    /// A chat completion whose content is the JSON object asked for.
    Answer,
    /// An error status.
    Status(u16),
    /// Nothing, for longer than any client waits.
    Hang,
}

#[derive(Default)]
struct Fake {
    calls: AtomicUsize,
    /// Replies to the next calls, in order; then `Answer`, or `Hang` while `hanging`.
    script: Mutex<VecDeque<Reply>>,
    hanging: Mutex<bool>,
    /// Wait before answering (to make calls overlap).
    delay: Mutex<Duration>,
    /// Authorization header and body of the last call.
    last: Mutex<Option<(Option<String>, Value)>>,
}

impl Fake {
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

async fn chat(State(fake): State<Arc<Fake>>, headers: HeaderMap, body: axum::Json<Value>) -> Response {
    let n = fake.calls.fetch_add(1, Ordering::SeqCst) + 1;
    let auth = headers.get("authorization").map(|v| v.to_str().unwrap().to_string());
    *fake.last.lock().unwrap() = Some((auth, body.0));
    let reply = fake
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| if *fake.hanging.lock().unwrap() { Reply::Hang } else { Reply::Answer });
    let delay = *fake.delay.lock().unwrap();
    tokio::time::sleep(delay).await;
    match reply {
        Reply::Answer => {
            let content = json!({"summary": format!("Answer {n}: the battery overheats."),
                                 "steps": ["Move the device out of the sun.", "Replace the battery."]});
            axum::Json(json!({
                "id": format!("chatcmpl-{n}"), "object": "chat.completion", "model": "fake",
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": content.to_string()}}],
            }))
            .into_response()
        }
        Reply::Status(s) => (StatusCode::from_u16(s).unwrap(), "fake failure").into_response(),
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
    }
}

/// The fake LLM and its base URL (`…/v1`).
async fn fake_llm() -> (Arc<Fake>, String) {
    let fake = Arc::new(Fake::default());
    let app =
        axum::Router::new().route("/v1/chat/completions", axum::routing::post(chat)).with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (fake, url)
}

const OVERHEAT: &str = "battery_overheat|battery_temp_c";

/// A stored anomaly as the pipeline writes one: the overheat rule fired, battery temperature
/// on top of the explanation.
fn overheat(device: &str, ts: i64, model_version: &str) -> NewAnomaly {
    NewAnomaly {
        device_id: device.into(),
        ts,
        cohort: Some("tc52/android-13".into()),
        anomaly_score: 0.71,
        grade: 0.998,
        severity: "high".into(),
        detectors: vec!["model".into(), "battery_overheat".into()],
        model_version: Some(model_version.into()),
        features: json!({"battery_temp_c.max": 71.0, "cpu_pct.mean": 22.0}),
        explanation: json!([
            {"feature": "cpu_pct.mean", "weight": 0.2, "direction": "above", "value": 22.0,
             "normal_low": 15.0, "normal_high": 30.0},
            {"feature": "battery_temp_c.max", "weight": 0.7, "direction": "above", "value": 71.0,
             "normal_low": 30.5, "normal_high": 41.0},
        ]),
        signature: OVERHEAT.into(),
        evidence_metrics: vec!["battery_temp_c".into()],
    }
}

struct Server {
    base: String,
    store: Store,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn id_of(&self, device: &str, ts: i64) -> i64 {
        let filter = AnomalyFilter { device_id: Some(device.into()), ..Default::default() };
        let page = self.store.list_anomalies(&filter, None, 100).await.unwrap();
        page.items.iter().find(|a| a.ts == ts).unwrap().id
    }

    async fn ask(&self, id: i64, body: Option<Value>) -> (u16, Value) {
        let mut r = reqwest::Client::new().post(format!("{}/api/v1/anomalies/{id}/troubleshoot", self.base));
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

/// Settings talking to `endpoint` quickly: short timeouts and backoff.
fn llm_settings(endpoint: &str) -> TroubleshootSettings {
    TroubleshootSettings {
        endpoint: Some(parse_endpoint(endpoint).unwrap()),
        model: "fake-model-1".into(),
        api_key: Some("sk-test-key".into()),
        timeout: Duration::from_secs(5),
        retries: 1,
        backoff: Duration::from_millis(10),
        cache_ttl: Duration::from_secs(3600),
        ..Default::default()
    }
}

async fn start(troubleshoot: TroubleshootSettings, anomalies: Vec<NewAnomaly>) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Store::open(dir.path().join("a.db").to_str().unwrap(), &StoreOptions::default()).await.unwrap();
    store.ingest(&IngestBatch { anomalies, ..Default::default() }, 1_000).await.unwrap();
    let settings = ServiceSettings {
        auth: AuthSettings::disabled(),
        http: HttpSettings { rate_per_sec: 0, ..Default::default() },
        troubleshoot,
        ..Default::default()
    };
    let base = serve_on_free_port(AppState::with_settings(store.clone(), None, settings)).await;
    Server { base, store, _dir: dir }
}

const HOUR: i64 = 3_600_000;

#[tokio::test]
async fn the_llm_is_asked_once_per_signature_and_model_version() {
    let (fake, url) = fake_llm().await;
    let s = start(
        llm_settings(&url),
        vec![
            overheat("dev-a", 0, "t1/global"),
            overheat("dev-b", HOUR, "t1/global"),
            overheat("dev-a", 2 * HOUR, "t2/global"),
        ],
    )
    .await;
    let (a, b, newer_model) =
        (s.id_of("dev-a", 0).await, s.id_of("dev-b", HOUR).await, s.id_of("dev-a", 2 * HOUR).await);

    // An empty body (no content type) is a plain request.
    let (status, first) = s.ask(a, None).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!((first["source"].as_str(), first["cached"].as_bool()), (Some("llm"), Some(false)), "{first}");
    assert_eq!(fake.calls(), 1);
    assert_eq!(first["anomaly_id"], a);
    assert_eq!(first["signature"], OVERHEAT);
    assert_eq!(first["model_version"], "t1/global");
    assert_eq!(first["summary"], "Answer 1: the battery overheats.");
    assert_eq!(first["steps"], json!(["Move the device out of the sun.", "Replace the battery."]));
    assert!(first["fallback_reason"].is_null());
    let created = first["created_at"].as_i64().unwrap();
    assert_eq!(first["expires_at"].as_i64(), Some(created + 3_600_000));

    // What the LLM was sent: the model, the key, and the anomaly's context.
    let (auth, request) = fake.last.lock().unwrap().clone().unwrap();
    assert_eq!(auth.as_deref(), Some("Bearer sk-test-key"));
    assert_eq!((request["model"].as_str(), request["temperature"].as_i64()), (Some("fake-model-1"), Some(0)));
    assert_eq!(request["messages"][0]["role"], "system");
    assert_eq!(request["messages"][1]["role"], "user");
    let context = request["messages"][1]["content"].as_str().unwrap();
    for needle in [
        "dev-a",
        "tc52/android-13",
        "severity high",
        OVERHEAT,
        "battery_overheat (on metric battery_temp_c)",
        "1. battery_temp_c.max = 71, above its normal range 30.5–41",
        "2. cpu_pct.mean = 22",
    ] {
        assert!(context.contains(needle), "`{needle}` missing from the prompt:\n{context}");
    }

    // The same anomaly again, then another one with the same signature and model version.
    let (_, again) = s.ask(a, Some(json!({}))).await;
    assert_eq!((again["source"].as_str(), again["cached"].as_bool()), (Some("llm"), Some(true)), "{again}");
    assert_eq!(
        (again["summary"].clone(), again["created_at"].as_i64()),
        (first["summary"].clone(), Some(created))
    );
    let (_, other) = s.ask(b, Some(json!({"refresh": false}))).await;
    assert_eq!((other["cached"].as_bool(), other["anomaly_id"].as_i64()), (Some(true), Some(b)), "{other}");
    assert_eq!(other["summary"], first["summary"]);
    assert_eq!(fake.calls(), 1, "served from the cache");

    // Another model version is another problem.
    let (_, newer) = s.ask(newer_model, None).await;
    assert_eq!(
        (newer["cached"].as_bool(), newer["model_version"].as_str()),
        (Some(false), Some("t2/global"))
    );
    assert_eq!(fake.calls(), 2);

    // A refresh asks again and replaces the cached answer for every anomaly of the kind.
    let (_, refreshed) = s.ask(a, Some(json!({"refresh": true}))).await;
    assert_eq!((refreshed["source"].as_str(), refreshed["cached"].as_bool()), (Some("llm"), Some(false)));
    assert_eq!(refreshed["summary"], "Answer 3: the battery overheats.");
    assert_eq!(fake.calls(), 3);
    let (_, other) = s.ask(b, None).await;
    assert_eq!(
        (other["cached"].as_bool(), other["summary"].as_str()),
        (Some(true), Some("Answer 3: the battery overheats."))
    );
    assert_eq!(fake.calls(), 3);

    let metrics = reqwest::get(format!("{}/metrics", s.base)).await.unwrap().text().await.unwrap();
    for source in ["llm", "cache"] {
        let line = format!("anomalyd_troubleshoot_total{{source=\"{source}\"}}");
        assert!(metrics.contains(&line), "{line} missing");
    }
}

#[tokio::test]
async fn an_expired_answer_is_asked_again() {
    let (fake, url) = fake_llm().await;
    let settings = TroubleshootSettings { cache_ttl: Duration::from_millis(300), ..llm_settings(&url) };
    let s = start(settings, vec![overheat("dev-a", 0, "t1/global")]).await;
    let id = s.id_of("dev-a", 0).await;
    let (_, first) = s.ask(id, None).await;
    assert_eq!((first["source"].as_str(), fake.calls()), (Some("llm"), 1), "{first}");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (_, second) = s.ask(id, None).await;
    assert_eq!(
        (second["source"].as_str(), second["cached"].as_bool()),
        (Some("llm"), Some(false)),
        "{second}"
    );
    assert_eq!(second["summary"], "Answer 2: the battery overheats.");
    assert_eq!(fake.calls(), 2, "the expired answer was not served");
}

#[tokio::test]
async fn an_llm_that_hangs_gets_the_rules_answer_which_is_not_cached() {
    let (fake, url) = fake_llm().await;
    *fake.hanging.lock().unwrap() = true;
    let settings = TroubleshootSettings { timeout: Duration::from_millis(300), ..llm_settings(&url) };
    let s = start(settings, vec![overheat("dev-a", 0, "t1/global")]).await;
    let id = s.id_of("dev-a", 0).await;

    let (status, answer) = s.ask(id, None).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (answer["source"].as_str(), answer["cached"].as_bool()),
        (Some("rules"), Some(false)),
        "{answer}"
    );
    assert_eq!(fake.calls(), 2, "one attempt and one retry");
    let reason = answer["fallback_reason"].as_str().unwrap();
    assert!(reason.contains("2 attempts") && reason.contains("timed out after 300 ms"), "{reason}");
    assert!(answer["expires_at"].is_null());
    assert!(answer["summary"].as_str().unwrap().contains("battery_temp_c.max = 71"), "{answer}");
    let overheat_rule =
        builtin_rules().into_iter().find(|r| r.metric.as_deref() == Some("battery_temp_c")).unwrap();
    assert_eq!(answer["steps"][0], overheat_rule.steps[0].as_str());

    // The LLM recovers: the fallback was not cached, so it is asked.
    *fake.hanging.lock().unwrap() = false;
    let (_, answer) = s.ask(id, None).await;
    assert_eq!(
        (answer["source"].as_str(), answer["cached"].as_bool()),
        (Some("llm"), Some(false)),
        "{answer}"
    );
    assert_eq!(fake.calls(), 3);
}

#[tokio::test]
async fn transient_errors_are_retried_and_others_are_not() {
    let (fake, url) = fake_llm().await;
    let s =
        start(llm_settings(&url), vec![overheat("dev-a", 0, "t1/global"), overheat("dev-b", 0, "t9/global")])
            .await;
    let (a, b) = (s.id_of("dev-a", 0).await, s.id_of("dev-b", 0).await);

    fake.script.lock().unwrap().extend([Reply::Status(500)]);
    let (_, answer) = s.ask(a, None).await;
    assert_eq!((answer["source"].as_str(), fake.calls()), (Some("llm"), 2), "{answer}");
    assert_eq!(answer["summary"], "Answer 2: the battery overheats.");
    let (_, again) = s.ask(a, None).await;
    assert_eq!((again["cached"].as_bool(), fake.calls()), (Some(true), 2), "one answer, cached once");

    // A refused key is not retried, and its fallback says why.
    fake.script.lock().unwrap().extend([Reply::Status(401)]);
    let (_, answer) = s.ask(b, None).await;
    assert_eq!((answer["source"].as_str(), fake.calls()), (Some("rules"), 3), "{answer}");
    assert!(answer["fallback_reason"].as_str().unwrap().contains("HTTP 401"), "{answer}");
}

#[tokio::test]
async fn concurrent_requests_for_one_problem_share_one_call() {
    let (fake, url) = fake_llm().await;
    *fake.delay.lock().unwrap() = Duration::from_millis(500);
    let devices = ["d0", "d1", "d2", "d3", "d4", "d5"];
    let s = start(llm_settings(&url), devices.iter().map(|d| overheat(d, 0, "t1/global")).collect()).await;
    let mut ids = Vec::new();
    for d in devices {
        ids.push(s.id_of(d, 0).await);
    }
    let answers = futures_join(&s, &ids).await;
    assert_eq!(fake.calls(), 1, "{answers:?}");
    assert!(
        answers.iter().all(|a| a["source"] == "llm" && a["summary"] == "Answer 1: the battery overheats.")
    );
    assert_eq!(answers.iter().filter(|a| a["cached"] == false).count(), 1, "one request made the call");
}

async fn futures_join(s: &Server, ids: &[i64]) -> Vec<Value> {
    let tasks: Vec<_> = ids
        .iter()
        .map(|&id| {
            let url = format!("{}/api/v1/anomalies/{id}/troubleshoot", s.base);
            tokio::spawn(async move {
                let r = reqwest::Client::new().post(url).send().await.unwrap();
                assert_eq!(r.status().as_u16(), 200);
                r.json::<Value>().await.unwrap()
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test]
async fn without_an_endpoint_the_answer_comes_from_the_explanation_and_rules() {
    let s = start(TroubleshootSettings::default(), vec![overheat("dev-a", 0, "t1/global")]).await;
    let id = s.id_of("dev-a", 0).await;
    let (status, first) = s.ask(id, None).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(
        (first["source"].as_str(), first["cached"].as_bool()),
        (Some("rules"), Some(false)),
        "{first}"
    );
    assert!(first["fallback_reason"].is_null() && first["expires_at"].is_null(), "{first}");
    assert_eq!(first["signature"], OVERHEAT);
    let summary = first["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("High anomaly on device dev-a (cohort tc52/android-13): battery_temp_c.max = 71, above its normal range 30.5–41."),
        "{summary}"
    );
    // The top feature's metric is battery_temp_c, above its median: the overheat rule's steps
    // come first, then the CPU rule's.
    let rules = builtin_rules();
    let rule = |metric: &str| rules.iter().find(|r| r.metric.as_deref() == Some(metric)).unwrap();
    assert!(summary.ends_with(&rule("battery_temp_c").summary), "{summary}");
    let steps: Vec<&str> = first["steps"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    let mut expected: Vec<&str> = rule("battery_temp_c").steps.iter().map(String::as_str).collect();
    expected.extend(rule("cpu_pct").steps.iter().map(String::as_str));
    assert_eq!(steps, expected);

    let (_, second) = s.ask(id, Some(json!({"refresh": true}))).await;
    assert_eq!((&second["summary"], &second["steps"]), (&first["summary"], &first["steps"]), "deterministic");

    // Unknown anomaly, bad id, bad body: problem+json naming what is wrong.
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/anomalies/999999/troubleshoot", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let problem: Value = r.json().await.unwrap();
    assert!(problem["detail"].as_str().unwrap().contains("999999"), "{problem}");
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/anomalies/abc/troubleshoot", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["field"], "id");
    let (status, problem) = s.ask(id, Some(json!({"refresh": "yes"}))).await;
    assert_eq!((status, problem["type"].as_str()), (400, Some("/problems/malformed-body")), "{problem}");
    let (status, _) = s.ask(id, Some(json!({"refresh": true, "colour": 1}))).await;
    assert_eq!(status, 400);
}
