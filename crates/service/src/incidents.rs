//! `/api/v1/incidents`: deduplicated groups of anomalies with their evidence snapshots.

use anomalyd_engine::fleet::Timestamp;
use anomalyd_store::{AnomalyStatus, Cursor, IncidentFilter, IncidentRecord};
use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::anomalies::{page_limit, query_error};
use crate::error::ApiError;

/// Query string of the list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only this status.
    #[param(value_type = Option<crate::openapi::TriageStatus>)]
    status: Option<String>,
    /// Only this device.
    device_id: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Page size (default 50).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// An incident as served: times as RFC 3339, evidence as JSON.
#[derive(Debug, Serialize, ToSchema)]
pub struct IncidentView {
    /// Id.
    id: i64,
    /// Device + signature hash; the same for every incident of this kind on this device.
    incident_key: String,
    /// Device.
    device_id: String,
    /// Detectors and metrics that define it.
    signature: String,
    /// Triage status; a resolved incident takes no more anomalies.
    #[schema(value_type = crate::openapi::TriageStatus)]
    status: String,
    /// Highest severity of its anomalies.
    #[schema(value_type = crate::openapi::Severity)]
    severity: String,
    /// Sample time of the first anomaly, RFC 3339 UTC.
    opened_at: String,
    /// Sample time of the latest anomaly, RFC 3339 UTC.
    last_seen: String,
    /// Anomalies grouped.
    anomaly_count: i64,
    /// Snapshot taken when it opened: the first anomaly's score, detectors, features and
    /// explanation, and the device's last raw samples of the metrics involved.
    #[schema(value_type = Object)]
    evidence: Value,
}

pub(crate) fn view(i: &IncidentRecord) -> IncidentView {
    IncidentView {
        id: i.id,
        incident_key: i.incident_key.clone(),
        device_id: i.device_id.clone(),
        signature: i.signature.clone(),
        status: i.status.clone(),
        severity: i.severity.clone(),
        opened_at: Timestamp(i.opened_at).to_rfc3339(),
        last_seen: Timestamp(i.last_seen).to_rfc3339(),
        anomaly_count: i.anomaly_count,
        evidence: serde_json::from_str::<Value>(&i.evidence).unwrap_or(Value::Null),
    }
}

/// A page of incidents.
#[derive(Debug, Serialize, ToSchema)]
pub struct IncidentList {
    /// The incidents, newest first.
    items: Vec<IncidentView>,
    /// Cursor of the next page; `null` on the last page.
    next_cursor: Option<String>,
}

/// An incident with its latest anomaly ids.
#[derive(Debug, Serialize, ToSchema)]
pub struct IncidentDetail {
    #[serde(flatten)]
    incident: IncidentView,
    /// Ids of its latest 100 anomalies, newest first.
    anomaly_ids: Vec<i64>,
}

fn parse_status(s: &str) -> Result<AnomalyStatus, ApiError> {
    s.parse::<AnomalyStatus>().map_err(|e| ApiError::invalid("status", e.to_string()))
}

/// `GET /api/v1/incidents`: newest first, by status and device.
#[utoipa::path(
    get,
    path = "/api/v1/incidents",
    operation_id = "list_incidents",
    tag = "incidents",
    summary = "List incidents",
    description = "Newest first, by status and device; follow `next_cursor` until it is `null`.",
    params(ListParams),
    responses(
        (status = 200, description = "A page of incidents.", body = IncidentList),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 500, response = crate::openapi::Internal),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<IncidentList>, ApiError> {
    let Query(p) = params.map_err(|e| query_error(&e))?;
    let limit = page_limit(p.limit)?;
    let filter =
        IncidentFilter { status: p.status.as_deref().map(parse_status).transpose()?, device_id: p.device_id };
    let cursor = p.cursor.as_deref().map(str::parse::<Cursor>).transpose().map_err(ApiError::from)?;
    let page = state.store.list_incidents(&filter, cursor, limit).await?;
    Ok(Json(IncidentList { items: page.items.iter().map(view).collect(), next_cursor: page.next_cursor }))
}

fn id_param(id: Result<Path<i64>, PathRejection>) -> Result<i64, ApiError> {
    id.map(|Path(id)| id).map_err(|_| ApiError::invalid("id", "incident ids are integers"))
}

/// `GET /api/v1/incidents/{id}`: the incident, its evidence and its latest anomaly ids.
#[utoipa::path(
    get,
    path = "/api/v1/incidents/{id}",
    operation_id = "get_incident",
    tag = "incidents",
    summary = "Get one incident",
    description = "The incident, its evidence and its latest anomaly ids.",
    params(("id" = i64, Path, description = "Incident id.")),
    responses(
        (status = 200, description = "The incident.", body = IncidentDetail),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 404, response = crate::openapi::NotFound),
        (status = 500, response = crate::openapi::Internal),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn detail(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<IncidentDetail>, ApiError> {
    let id = id_param(id)?;
    let incident = view(&state.store.incident(id).await?);
    let anomaly_ids = state.store.incident_anomaly_ids(id, 100).await?;
    Ok(Json(IncidentDetail { incident, anomaly_ids }))
}

/// Body of `PATCH /api/v1/incidents/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncidentUpdate {
    /// The new status.
    #[schema(value_type = crate::openapi::TriageStatus)]
    status: String,
}

/// `PATCH /api/v1/incidents/{id}`: acknowledge, resolve or reopen. A resolved incident takes
/// no more anomalies: the next one with its signature opens a new incident.
#[utoipa::path(
    patch,
    path = "/api/v1/incidents/{id}",
    operation_id = "update_incident",
    tag = "incidents",
    summary = "Change an incident's status",
    description = "Acknowledge, resolve or reopen. A resolved incident takes no more anomalies: the next         one with its signature opens a new incident.",
    params(("id" = i64, Path, description = "Incident id.")),
    request_body = IncidentUpdate,
    responses(
        (status = 200, description = "The incident as changed.", body = IncidentView),
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
    body: Result<Json<IncidentUpdate>, JsonRejection>,
) -> Result<Json<IncidentView>, ApiError> {
    let id = id_param(id)?;
    let Json(body) = body.map_err(|e| ApiError::body_rejection(e.status(), e.body_text()))?;
    let status = parse_status(&body.status)?;
    Ok(Json(view(&state.store.set_incident_status(id, status).await?)))
}
