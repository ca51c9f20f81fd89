//! `/api/v1/anomalies`: filtered keyset-paginated list, detail, status changes.

use anomalyd_engine::fleet::Timestamp;
use anomalyd_store::{AnomalyFilter, AnomalyRecord, AnomalySort, AnomalyStatus, Cursor};
use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ApiError;
use crate::{AppState, now_ms};

/// Query string of the list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    device_id: Option<String>,
    cohort: Option<String>,
    status: Option<String>,
    severity: Option<String>,
    from: Option<String>,
    to: Option<String>,
    min_score: Option<f64>,
    sort: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

/// An anomaly as the API serves it (SPEC §10).
#[derive(Debug, Serialize)]
pub struct AnomalyView {
    id: i64,
    device_id: String,
    ts: String,
    cohort: Option<String>,
    anomaly_score: f64,
    grade: f64,
    severity: String,
    detectors: Value,
    model_version: Option<String>,
    status: String,
    note: Option<String>,
    incident_id: Option<i64>,
    features: Value,
    explanation: Value,
    created_at: String,
    updated_at: String,
}

impl From<AnomalyRecord> for AnomalyView {
    fn from(a: AnomalyRecord) -> Self {
        let json = |s: &str| serde_json::from_str(s).unwrap_or(Value::Null);
        AnomalyView {
            id: a.id,
            device_id: a.device_id,
            ts: Timestamp(a.ts).to_rfc3339(),
            cohort: a.cohort,
            anomaly_score: a.anomaly_score,
            grade: a.grade,
            severity: a.severity,
            detectors: json(&a.detectors),
            model_version: a.model_version,
            status: a.status,
            note: a.note,
            incident_id: a.incident_id,
            features: json(&a.features),
            explanation: json(&a.explanation),
            created_at: Timestamp(a.created_at).to_rfc3339(),
            updated_at: Timestamp(a.updated_at).to_rfc3339(),
        }
    }
}

/// A page of the list.
#[derive(Debug, Serialize)]
pub struct ListResponse {
    items: Vec<AnomalyView>,
    next_cursor: Option<String>,
}

fn time_param(field: &str, v: &Option<String>) -> Result<Option<i64>, ApiError> {
    v.as_deref()
        .map(|t| {
            Timestamp::parse(t).map(|t| t.0).map_err(|_| {
                ApiError::invalid(field, format!("`{t}` is not an RFC 3339 time or Unix milliseconds"))
            })
        })
        .transpose()
}

/// Validates the query string into a store filter.
fn filter(p: &ListParams) -> Result<(AnomalyFilter, Option<Cursor>, u32), ApiError> {
    let status = p
        .status
        .as_deref()
        .map(|s| s.parse::<AnomalyStatus>().map_err(|e| ApiError::invalid("status", e.to_string())))
        .transpose()?;
    if let Some(s) = &p.severity {
        if !["low", "medium", "high", "critical"].contains(&s.as_str()) {
            return Err(ApiError::invalid(
                "severity",
                format!("`{s}` is not one of low, medium, high, critical"),
            ));
        }
    }
    if p.min_score.is_some_and(|m| !m.is_finite()) {
        return Err(ApiError::invalid("min_score", "must be a finite number"));
    }
    let sort = match p.sort.as_deref() {
        None | Some("time") => AnomalySort::Newest,
        Some("score") => AnomalySort::Score,
        Some(other) => return Err(ApiError::invalid("sort", format!("`{other}` is not `time` or `score`"))),
    };
    let cursor = p.cursor.as_deref().map(|c| c.parse::<Cursor>()).transpose().map_err(ApiError::from)?;
    let limit = p.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", format!("must be 1..=1000, got {limit}")));
    }
    let f = AnomalyFilter {
        device_id: p.device_id.clone(),
        cohort: p.cohort.clone(),
        status,
        severity: p.severity.clone(),
        from_ts: time_param("from", &p.from)?,
        to_ts: time_param("to", &p.to)?,
        min_score: p.min_score,
        sort,
    };
    Ok((f, cursor, limit))
}

pub(crate) fn query_error(e: &QueryRejection) -> ApiError {
    // serde names the offending parameter in its message: "limit: invalid digit …" for a bad
    // value, "unknown field `colour`, expected …" for an unknown one.
    let text = e.body_text();
    let rest = text.strip_prefix("Failed to deserialize query string: ").unwrap_or(&text);
    let field = match rest.split_once(": ") {
        Some((name, _)) if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => name.to_string(),
        _ => rest.split('`').nth(1).unwrap_or("query").to_string(),
    };
    ApiError::invalid(&field, text)
}

/// `GET /api/v1/anomalies`.
pub async fn list(
    State(state): State<AppState>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<ListResponse>, ApiError> {
    let Query(params) = params.map_err(|e| query_error(&e))?;
    let (f, cursor, limit) = filter(&params)?;
    let page = state.store.list_anomalies(&f, cursor, limit).await?;
    Ok(Json(ListResponse {
        items: page.items.into_iter().map(AnomalyView::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

fn id_param(id: Result<Path<i64>, PathRejection>) -> Result<i64, ApiError> {
    id.map(|Path(id)| id).map_err(|_| ApiError::invalid("id", "anomaly ids are integers"))
}

/// `GET /api/v1/anomalies/{id}`.
pub async fn detail(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<AnomalyView>, ApiError> {
    Ok(Json(state.store.anomaly(id_param(id)?).await?.into()))
}

/// Body of `PATCH /api/v1/anomalies/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateBody {
    status: String,
    note: Option<String>,
}

/// `PATCH /api/v1/anomalies/{id}`: acknowledge, resolve or reopen, with a note.
pub async fn update(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
    body: Result<Json<UpdateBody>, JsonRejection>,
) -> Result<Json<AnomalyView>, ApiError> {
    let id = id_param(id)?;
    let Json(body) = body.map_err(|e| ApiError::body_rejection(e.status(), e.body_text()))?;
    let status =
        body.status.parse::<AnomalyStatus>().map_err(|e| ApiError::invalid("status", e.to_string()))?;
    if body.note.as_ref().is_some_and(|n| n.len() > 4000) {
        return Err(ApiError::invalid("note", "at most 4000 bytes"));
    }
    Ok(Json(state.store.set_anomaly_status(id, status, body.note.as_deref(), now_ms()).await?.into()))
}
