//! `POST /api/v1/score`: score now, store nothing.
//!
//! The body is one item or a JSON array of items; each item is one of
//! * `{"features": {"cpu_pct.mean": 41.2, …}, "cohort": "…"}`: a feature vector by name
//!   (features left out are missing values, unknown names are refused);
//! * `{"values": [41.2, …], "cohort": "…"}`: a feature vector in the bundle's order;
//! * a raw telemetry sample (`device_id`, `ts`, `metrics`, …): its features are computed from
//!   the samples of the same device in this request only, in time order, so a single raw
//!   sample sees windows of one.
//!
//! `?explain=true` adds the top features (`top`, default 3).

use std::collections::HashMap;

use anomalyd_engine::fleet::json::{Interner, sample_from_json};
use anomalyd_engine::fleet::{DeviceState, FleetScore};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::anomalies::query_error;
use crate::error::ApiError;
use crate::pipeline::ActiveBundle;

/// Most items in one request.
const MAX_ITEMS: usize = 10_000;

/// Query string.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    explain: Option<bool>,
    top: Option<usize>,
}

fn item_json(s: &FleetScore, version: &str) -> Value {
    let mut v = json!({
        "anomaly_score": s.anomaly_score,
        "is_anomaly": s.is_anomaly(),
        "grade": s.grade,
        "severity": s.severity.as_str(),
        "detectors": s.detectors,
        "model_version": format!("{version}/{}", s.model),
    });
    if !s.explanation.is_empty() {
        v["explanation"] = s
            .explanation
            .iter()
            .map(|e| {
                json!({"feature": e.name, "weight": e.weight, "direction": e.direction.as_str(),
                       "value": e.value, "normal_low": e.normal_low, "normal_high": e.normal_high})
            })
            .collect();
    }
    v
}

fn cohort_of(item: &serde_json::Map<String, Value>, at: &str) -> Result<Option<String>, ApiError> {
    match item.get("cohort") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(c)) => Ok(Some(c.clone())),
        Some(_) => Err(ApiError::invalid(&format!("{at}cohort"), "must be a string")),
    }
}

fn number(v: &Value, field: &str) -> Result<f32, ApiError> {
    match v {
        Value::Null => Ok(f32::NAN),
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(f64::NAN) as f32;
            if x.is_finite() { Ok(x) } else { Err(ApiError::invalid(field, "must be a finite number")) }
        }
        _ => Err(ApiError::invalid(field, "must be a number or null")),
    }
}

/// A feature vector item → (cohort, values).
fn vector_item(
    active: &ActiveBundle,
    item: &serde_json::Map<String, Value>,
    at: &str,
) -> Result<(Option<String>, Vec<f32>), ApiError> {
    let config = &active.bundle.config;
    for key in item.keys() {
        if !["features", "values", "cohort"].contains(&key.as_str()) {
            return Err(ApiError::invalid(&format!("{at}{key}"), "unknown field (features, values, cohort)"));
        }
    }
    let cohort = cohort_of(item, at)?;
    let values = match (item.get("features"), item.get("values")) {
        (Some(Value::Object(named)), None) => {
            let mut values = vec![f32::NAN; config.features.len()];
            for (name, v) in named {
                let field = format!("{at}features.{name}");
                let k = config.feature_index(name).ok_or_else(|| {
                    ApiError::invalid(
                        &field,
                        format!("unknown feature; the model has {}", config.features.len()),
                    )
                })?;
                values[k] = number(v, &field)?;
            }
            values
        }
        (None, Some(Value::Array(list))) => {
            if list.len() != config.features.len() {
                return Err(ApiError::invalid(
                    &format!("{at}values"),
                    format!(
                        "expected {} values in the model's feature order, got {}",
                        config.features.len(),
                        list.len()
                    ),
                ));
            }
            list.iter()
                .enumerate()
                .map(|(i, v)| number(v, &format!("{at}values[{i}]")))
                .collect::<Result<_, _>>()?
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(&format!("{at}values"), "give `features` or `values`, not both"));
        }
        (Some(_), None) => {
            return Err(ApiError::invalid(&format!("{at}features"), "must be an object of numbers"));
        }
        (None, Some(_)) => {
            return Err(ApiError::invalid(&format!("{at}values"), "must be an array of numbers"));
        }
        // `{}` or `{"cohort": …}`: an item of no kind.
        (None, None) => {
            return Err(ApiError::invalid(
                &format!("{at}features"),
                "give `features`, `values`, or a raw sample with `device_id`, `ts` and `metrics`",
            ));
        }
    };
    Ok((cohort, values))
}

/// `POST /api/v1/score`.
pub async fn score(
    State(state): State<AppState>,
    params: Result<Query<Params>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(p) = params.map_err(|e| query_error(&e))?;
    let top = if p.explain.unwrap_or(false) { p.top.unwrap_or(3).clamp(1, 64) } else { 0 };
    let body = body.map_err(|e| ApiError::body_rejection(e.status(), e.body_text()))?;
    let active = state.pipeline.bundle().ok_or_else(|| {
        ApiError::conflict("no model is active; train one (POST /api/v1/models/train) and activate it")
    })?;
    let parsed: Value = serde_json::from_slice(&body).map_err(|e| ApiError::bad_body(e.to_string()))?;
    let (items, single) = match parsed {
        Value::Array(items) => (items, false),
        other @ Value::Object(_) => (vec![other], true),
        _ => return Err(ApiError::bad_body("expected an object or an array of objects")),
    };
    if items.is_empty() || items.len() > MAX_ITEMS {
        return Err(ApiError::bad_body(format!("send 1..={MAX_ITEMS} items, got {}", items.len())));
    }
    let started = std::time::Instant::now();
    let n_items = items.len();
    let mut out: Vec<Value> = vec![Value::Null; items.len()];
    let mut raw: Vec<(usize, anomalyd_engine::fleet::Sample)> = Vec::new();
    let mut interner = Interner::default();
    for (i, item) in items.into_iter().enumerate() {
        let at = if single { String::new() } else { format!("items[{i}].") };
        let Value::Object(map) = item else {
            return Err(ApiError::invalid(at.trim_end_matches('.'), "each item must be an object"));
        };
        if map.contains_key("metrics") || map.contains_key("device_id") {
            let s = sample_from_json(Value::Object(map), &mut interner).map_err(|e| {
                let field = e.split('`').nth(1).unwrap_or("").to_string();
                ApiError::invalid(&format!("{at}{field}"), e)
            })?;
            raw.push((i, s));
        } else {
            let (cohort, values) = vector_item(&active, &map, &at)?;
            let s = active.bundle.score_one(cohort.as_deref(), &values, &[], true, top);
            out[i] = item_json(&s, &active.version);
        }
    }
    if !raw.is_empty() {
        score_raw(&active, raw, top, &mut out);
    }
    crate::telemetry_metrics::record_inference("forest", n_items, started.elapsed());
    Ok(Json(json!({"items": out})))
}

/// Raw samples: per device in time order through a fresh streaming state.
fn score_raw(
    active: &ActiveBundle,
    mut raw: Vec<(usize, anomalyd_engine::fleet::Sample)>,
    top: usize,
    out: &mut [Value],
) {
    let config = &active.bundle.config;
    raw.sort_by(|a, b| a.1.device_id.cmp(&b.1.device_id).then(a.1.ts.cmp(&b.1.ts)));
    let mut states: HashMap<std::sync::Arc<str>, DeviceState> = HashMap::new();
    let mut index: HashMap<(std::sync::Arc<str>, i64), usize> = HashMap::new();
    let mut rows = Vec::new();
    for (i, s) in raw {
        index.insert((s.device_id.clone(), s.ts.0), i);
        let state = states.entry(s.device_id.clone()).or_insert_with(|| DeviceState::new(config));
        if let Err(reason) = state.push(config, s, &mut rows) {
            out[i] = json!({"error": reason.to_string()});
        }
    }
    for state in states.values_mut() {
        state.flush(config, &mut rows);
    }
    for row in rows {
        if let Some(&i) = index.get(&(row.device_id.clone(), row.ts.0)) {
            let s = active.bundle.score_one(row.cohort.as_deref(), &row.values, &row.rules_fired, true, top);
            out[i] = item_json(&s, &active.version);
        }
    }
}
