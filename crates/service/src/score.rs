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
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::anomalies::query_error;
use crate::error::ApiError;
use crate::pipeline::ActiveBundle;

/// Most items in one request.
pub(crate) const MAX_ITEMS: usize = 10_000;

/// Query string.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Params {
    /// Add the top features behind each score (default false).
    explain: Option<bool>,
    /// How many top features with `explain=true` (default 3; clamped to 1..=64).
    #[param(minimum = 0)]
    top: Option<usize>,
}

/// One feature's share in a row's anomaly score.
#[derive(Debug, Serialize, ToSchema)]
pub struct Attribution {
    /// Feature name.
    feature: String,
    /// Share of the isolation credited to this feature; a row's weights sum to 1.
    weight: f64,
    /// Where the value lies relative to the training median.
    #[schema(value_type = crate::openapi::Direction)]
    direction: &'static str,
    /// The row's value (`null` when missing).
    value: Option<f64>,
    /// Training p05 of the feature.
    normal_low: Option<f64>,
    /// Training p95 of the feature.
    normal_high: Option<f64>,
}

/// One scored item.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScoreResult {
    /// Anomaly score of the model used.
    anomaly_score: f64,
    /// Whether any detector fired.
    is_anomaly: bool,
    /// Grade under that model's calibration, in [0, 1].
    grade: f64,
    /// Severity from the grade (raised to `high` when only rules fired).
    #[schema(value_type = crate::openapi::Severity)]
    severity: &'static str,
    /// Detectors that fired: `model` and/or rule names.
    detectors: Vec<String>,
    /// `<model version>/<global|cohort:name>`.
    model_version: String,
    /// Top features, with `explain=true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    explanation: Option<Vec<Attribution>>,
}

/// What became of one item of the request.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ScoreOutcome {
    /// The item's score.
    Scored(ScoreResult),
    /// A raw sample the device's streaming state refused (e.g. out of order).
    Refused {
        /// Why.
        error: String,
    },
}

/// Scores in the order of the request's items; `null` for a raw sample that produced no row
/// of its own (a second sample of the same device and time).
#[derive(Debug, Serialize, ToSchema)]
pub struct ScoreResponse {
    /// One entry per item.
    items: Vec<Option<ScoreOutcome>>,
}

/// Finite `f32` as `f64`, `None` otherwise. Widening before serialisation keeps the digits
/// the service has always sent (`serde_json` writes an `f32` with fewer).
fn finite(x: f32) -> Option<f64> {
    x.is_finite().then_some(f64::from(x))
}

fn scored(s: &FleetScore, version: &str) -> ScoreOutcome {
    let explanation = (!s.explanation.is_empty()).then(|| {
        s.explanation
            .iter()
            .map(|e| Attribution {
                feature: e.name.clone(),
                weight: f64::from(e.weight),
                direction: e.direction.as_str(),
                value: finite(e.value),
                normal_low: finite(e.normal_low),
                normal_high: finite(e.normal_high),
            })
            .collect()
    });
    ScoreOutcome::Scored(ScoreResult {
        anomaly_score: f64::from(s.anomaly_score),
        is_anomaly: s.is_anomaly(),
        grade: f64::from(s.grade),
        severity: s.severity.as_str(),
        detectors: s.detectors.clone(),
        model_version: format!("{version}/{}", s.model),
        explanation,
    })
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
#[utoipa::path(
    post,
    path = "/api/v1/score",
    operation_id = "score",
    tag = "scoring",
    summary = "Score now, store nothing",
    description = "The body is one item or an array of 1 to 10 000 items; each is a feature vector by \
        name (`features`), a feature vector in the model's order (`values`) or a raw telemetry sample. \
        Raw samples' features are computed from the samples of the same device in this request only, \
        in time order, so a single raw sample sees windows of one. The answer always holds an array, \
        in the order of the items.",
    params(Params),
    request_body(content = crate::openapi::ScoreRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "One outcome per item.", body = ScoreResponse),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 409, description = "No model is active (`/problems/conflict`): train one and activate it.",
            body = ApiError, content_type = "application/problem+json"),
        (status = 413, response = crate::openapi::PayloadTooLarge),
    )
)]
pub async fn score(
    State(state): State<AppState>,
    params: Result<Query<Params>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ScoreResponse>, ApiError> {
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
    let mut out: Vec<Option<ScoreOutcome>> = (0..items.len()).map(|_| None).collect();
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
            out[i] = Some(scored(&s, &active.version));
        }
    }
    if !raw.is_empty() {
        score_raw(&active, raw, top, &mut out);
    }
    crate::telemetry_metrics::record_inference("forest", n_items, started.elapsed());
    Ok(Json(ScoreResponse { items: out }))
}

/// Raw samples: per device in time order through a fresh streaming state.
fn score_raw(
    active: &ActiveBundle,
    mut raw: Vec<(usize, anomalyd_engine::fleet::Sample)>,
    top: usize,
    out: &mut [Option<ScoreOutcome>],
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
            out[i] = Some(ScoreOutcome::Refused { error: reason.to_string() });
        }
    }
    for state in states.values_mut() {
        state.flush(config, &mut rows);
    }
    for row in rows {
        if let Some(&i) = index.get(&(row.device_id.clone(), row.ts.0)) {
            let s = active.bundle.score_one(row.cohort.as_deref(), &row.values, &row.rules_fired, true, top);
            out[i] = Some(scored(&s, &active.version));
        }
    }
}
