//! `POST /api/v1/telemetry`: validate → per-device features and rules → score with the
//! active bundle → one transaction (samples, devices, anomalies) → acknowledge.
//!
//! The reply comes only after the transaction committed: an acknowledged sample is durable.
//! Samples already stored for the same (device, time) are skipped, so a retried batch
//! stores nothing twice.

use std::collections::HashMap;
use std::sync::Arc;

use anomalyd_engine::fleet::json::{Interner, sample_from_json};
use anomalyd_engine::fleet::{DeviceState, FeatureRow, FleetBundle, Sample};
use anomalyd_store::{IngestBatch, NewAnomaly, TelemetryRow};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::error::ApiError;
use crate::{AppState, now_ms};

/// Samples a device sends before the model may flag it (its windows are filling).
const WARMUP: usize = 24;
/// Most samples in one request.
pub const MAX_BATCH: usize = 10_000;

/// Streaming state of every device, and the bundle that scores them.
pub struct Pipeline {
    inner: Mutex<Inner>,
}

struct Inner {
    bundle: Option<Arc<FleetBundle>>,
    devices: HashMap<Arc<str>, (DeviceState, usize)>,
}

impl Pipeline {
    /// A pipeline scoring with `bundle` (telemetry is only stored when there is none).
    pub fn new(bundle: Option<FleetBundle>) -> Self {
        Self { inner: Mutex::new(Inner { bundle: bundle.map(Arc::new), devices: HashMap::new() }) }
    }
}

fn parse_body(headers: &HeaderMap, body: &[u8]) -> Result<Vec<Value>, ApiError> {
    let ndjson = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("ndjson") || v.contains("jsonl"));
    let values = if ndjson {
        let text = std::str::from_utf8(body).map_err(|_| ApiError::bad_body("the body is not UTF-8"))?;
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l).map_err(|e| ApiError::bad_body(format!("line {}: {e}", i + 1)))
            })
            .collect::<Result<Vec<Value>, _>>()?
    } else {
        match serde_json::from_slice(body).map_err(|e| ApiError::bad_body(e.to_string()))? {
            Value::Array(items) => items,
            _ => {
                return Err(ApiError::bad_body(
                    "expected a JSON array of samples (or NDJSON with content-type application/x-ndjson)",
                ));
            }
        }
    };
    if values.is_empty() {
        return Err(ApiError::bad_body("the batch holds no samples"));
    }
    if values.len() > MAX_BATCH {
        return Err(ApiError::bad_body(format!(
            "at most {MAX_BATCH} samples per request, got {}",
            values.len()
        )));
    }
    Ok(values)
}

/// `POST /api/v1/telemetry`.
pub async fn ingest(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body.map_err(|e| ApiError::body_rejection(e.status(), e.body_text()))?;
    let values = parse_body(&headers, &body)?;
    let mut interner = Interner::default();
    let mut samples = Vec::with_capacity(values.len());
    for (i, v) in values.into_iter().enumerate() {
        let s = sample_from_json(v, &mut interner).map_err(|e| {
            // "field `ts`: …" → field "items[i].ts".
            let field = e.split('`').nth(1).unwrap_or("").to_string();
            ApiError::invalid(&format!("items[{i}]{}{field}", if field.is_empty() { "" } else { "." }), e)
        })?;
        samples.push(s);
    }
    Ok(Json(ingest_samples(&state, samples).await?))
}

/// The pipeline behind `POST /api/v1/telemetry` for already validated samples (also used by
/// `anomalyd demo` to feed its simulated fleet): features, rules, scoring, one transaction.
pub async fn ingest_samples(state: &AppState, samples: Vec<Sample>) -> Result<Value, ApiError> {
    let mut batch = IngestBatch::default();
    let mut refused = Vec::new();
    {
        let mut inner = state.pipeline.inner.lock().await;
        let bundle = inner.bundle.clone();
        for (i, s) in samples.into_iter().enumerate() {
            batch.telemetry.push(TelemetryRow {
                device_id: s.device_id.to_string(),
                ts: s.ts.0,
                cohort: s.cohort.as_deref().map(str::to_string),
                labels: serde_json::to_value(&*s.labels).unwrap_or(Value::Null),
                metrics: Value::Object(s.metrics().map(|(k, v)| (k.to_string(), json!(v))).collect()),
            });
            let Some(bundle) = &bundle else { continue };
            let (device, seen) = inner
                .devices
                .entry(s.device_id.clone())
                .or_insert_with(|| (DeviceState::new(&bundle.config), 0));
            let mut rows: Vec<FeatureRow> = Vec::new();
            if let Err(reason) = device.push(&bundle.config, s, &mut rows) {
                refused.push(json!({"index": i, "reason": reason.to_string()}));
            }
            for row in rows {
                *seen += 1;
                let score =
                    bundle.score_one(row.cohort.as_deref(), &row.values, &row.rules_fired, *seen > WARMUP, 3);
                if !score.is_anomaly() {
                    continue;
                }
                let features: serde_json::Map<String, Value> = bundle
                    .config
                    .features
                    .iter()
                    .zip(&row.values)
                    .map(|(f, v)| (f.name.clone(), if v.is_finite() { json!(v) } else { Value::Null }))
                    .collect();
                let explanation: Vec<Value> = score
                    .explanation
                    .iter()
                    .map(|e| json!({"feature": e.name, "weight": e.weight, "direction": e.direction.as_str(),
                                    "value": e.value, "normal_low": e.normal_low, "normal_high": e.normal_high}))
                    .collect();
                batch.anomalies.push(NewAnomaly {
                    device_id: row.device_id.to_string(),
                    ts: row.ts.0,
                    cohort: row.cohort.as_deref().map(str::to_string),
                    anomaly_score: f64::from(score.anomaly_score),
                    grade: f64::from(score.grade),
                    severity: score.severity.as_str().to_string(),
                    detectors: score.detectors.clone(),
                    model_version: Some(score.model.clone()),
                    features: Value::Object(features),
                    explanation: Value::Array(explanation),
                });
            }
        }
    }
    let outcome = state.store.ingest(&batch, now_ms()).await?;
    Ok(json!({
        "accepted": outcome.inserted,
        "duplicates": outcome.duplicates,
        "anomalies": outcome.anomalies,
        "refused": refused,
    }))
}
