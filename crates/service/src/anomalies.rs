//! `/api/v1/anomalies`: filtered keyset-paginated list, detail, status changes.

use anomalyd_engine::fleet::Timestamp;
use anomalyd_store::{AnomalyFilter, AnomalyRecord, AnomalySort, AnomalyStatus, Cursor};
use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;
use crate::{AppState, now_ms};

/// Query string of the list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only this device.
    device_id: Option<String>,
    /// Only this cohort.
    cohort: Option<String>,
    /// Only this status.
    #[param(value_type = Option<crate::openapi::TriageStatus>)]
    status: Option<String>,
    /// Only this severity.
    #[param(value_type = Option<crate::openapi::Severity>)]
    severity: Option<String>,
    /// Sample time from (inclusive): RFC 3339 or Unix milliseconds.
    #[param(value_type = Option<crate::openapi::TimeParam>)]
    from: Option<String>,
    /// Sample time up to (exclusive): RFC 3339 or Unix milliseconds.
    #[param(value_type = Option<crate::openapi::TimeParam>)]
    to: Option<String>,
    /// Least anomaly score.
    min_score: Option<f64>,
    /// Newest first (`time`, the default) or highest score first (`score`).
    #[param(value_type = Option<crate::openapi::AnomalySort>)]
    sort: Option<String>,
    /// `next_cursor` of the previous page (valid with the same filters and sort).
    cursor: Option<String>,
    /// Page size (default 50).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// An anomaly as the API serves it (SPEC §10).
#[derive(Debug, Serialize, ToSchema)]
pub struct AnomalyView {
    /// Id.
    id: i64,
    /// Device.
    device_id: String,
    /// Sample time, RFC 3339 UTC.
    ts: String,
    /// Cohort of the sample.
    cohort: Option<String>,
    /// Anomaly score of the model that scored the row.
    anomaly_score: f64,
    /// Grade under that model's calibration, in [0, 1].
    grade: f64,
    /// `low`, `medium`, `high` or `critical`.
    #[schema(value_type = crate::openapi::Severity)]
    severity: String,
    /// Detectors that fired: `model` and/or rule names.
    #[schema(value_type = Vec<String>)]
    detectors: Value,
    /// `<model version>/<global|cohort:name>`.
    model_version: Option<String>,
    /// Triage status.
    #[schema(value_type = crate::openapi::TriageStatus)]
    status: String,
    /// Operator note.
    note: Option<String>,
    /// Incident the anomaly belongs to.
    incident_id: Option<i64>,
    /// Feature values by name (`null` when missing).
    #[schema(value_type = BTreeMap<String, Option<f64>>)]
    features: Value,
    /// Top features behind the score.
    #[schema(value_type = Vec<crate::score::Attribution>)]
    explanation: Value,
    /// Stored, RFC 3339 UTC.
    created_at: String,
    /// Last changed, RFC 3339 UTC.
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
#[derive(Debug, Serialize, ToSchema)]
pub struct AnomalyList {
    /// The anomalies.
    items: Vec<AnomalyView>,
    /// Cursor of the next page; `null` on the last page.
    next_cursor: Option<String>,
}

/// The `limit` of a list: 50 when absent, else 1..=1000.
pub(crate) fn page_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    let limit = limit.unwrap_or(50);
    if (1..=1000).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::invalid("limit", format!("must be 1..=1000, got {limit}")))
    }
}

/// An optional time parameter (RFC 3339 or Unix ms) as Unix ms.
pub(crate) fn time_param(field: &str, v: &Option<String>) -> Result<Option<i64>, ApiError> {
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
    if let Some(s) = &p.severity
        && !["low", "medium", "high", "critical"].contains(&s.as_str())
    {
        return Err(ApiError::invalid(
            "severity",
            format!("`{s}` is not one of low, medium, high, critical"),
        ));
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
    let limit = page_limit(p.limit)?;
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
#[utoipa::path(
    get,
    path = "/api/v1/anomalies",
    operation_id = "list_anomalies",
    tag = "anomalies",
    summary = "List anomalies",
    description = "Filtered, keyset-paginated: follow `next_cursor` until it is `null`.",
    params(ListParams),
    responses(
        (status = 200, description = "A page of anomalies.", body = AnomalyList),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 500, response = crate::openapi::Internal),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<AnomalyList>, ApiError> {
    let Query(params) = params.map_err(|e| query_error(&e))?;
    let (f, cursor, limit) = filter(&params)?;
    let page = state.store.list_anomalies(&f, cursor, limit).await?;
    Ok(Json(AnomalyList {
        items: page.items.into_iter().map(AnomalyView::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

pub(crate) fn id_param(id: Result<Path<i64>, PathRejection>) -> Result<i64, ApiError> {
    id.map(|Path(id)| id).map_err(|_| ApiError::invalid("id", "anomaly ids are integers"))
}

/// `GET /api/v1/anomalies/{id}`.
#[utoipa::path(
    get,
    path = "/api/v1/anomalies/{id}",
    operation_id = "get_anomaly",
    tag = "anomalies",
    summary = "Get one anomaly",
    params(("id" = i64, Path, description = "Anomaly id.")),
    responses(
        (status = 200, description = "The anomaly.", body = AnomalyView),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 404, response = crate::openapi::NotFound),
        (status = 500, response = crate::openapi::Internal),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn detail(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<AnomalyView>, ApiError> {
    Ok(Json(state.store.anomaly(id_param(id)?).await?.into()))
}

/// Body of `PATCH /api/v1/anomalies/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnomalyUpdate {
    /// The new status.
    #[schema(value_type = crate::openapi::TriageStatus)]
    status: String,
    /// Operator note, at most 4000 bytes; `null` or left out keeps the current one.
    #[schema(max_length = 4000)]
    note: Option<String>,
}

/// `PATCH /api/v1/anomalies/{id}`: acknowledge, resolve or reopen, with a note.
#[utoipa::path(
    patch,
    path = "/api/v1/anomalies/{id}",
    operation_id = "update_anomaly",
    tag = "anomalies",
    summary = "Change an anomaly's status",
    description = "Acknowledge, resolve or reopen, with a note.",
    params(("id" = i64, Path, description = "Anomaly id.")),
    request_body = AnomalyUpdate,
    responses(
        (status = 200, description = "The anomaly as changed.", body = AnomalyView),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 404, response = crate::openapi::NotFound),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 500, response = crate::openapi::Internal),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn update(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
    body: Result<Json<AnomalyUpdate>, JsonRejection>,
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
