//! `/api/v1/incidents`: deduplicated groups of anomalies with their evidence snapshots.

use anomalyd_engine::fleet::Timestamp;
use anomalyd_store::{AnomalyStatus, Cursor, IncidentFilter, IncidentRecord};
use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::anomalies::query_error;
use crate::error::ApiError;

/// Query string of the list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    status: Option<String>,
    device_id: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

/// An incident as served: times as RFC 3339, evidence as JSON.
pub(crate) fn view(i: &IncidentRecord) -> Value {
    json!({
        "id": i.id,
        "incident_key": i.incident_key,
        "device_id": i.device_id,
        "signature": i.signature,
        "status": i.status,
        "severity": i.severity,
        "opened_at": Timestamp(i.opened_at).to_rfc3339(),
        "last_seen": Timestamp(i.last_seen).to_rfc3339(),
        "anomaly_count": i.anomaly_count,
        "evidence": serde_json::from_str::<Value>(&i.evidence).unwrap_or(Value::Null),
    })
}

fn parse_status(s: &str) -> Result<AnomalyStatus, ApiError> {
    s.parse::<AnomalyStatus>().map_err(|e| ApiError::invalid("status", e.to_string()))
}

/// `GET /api/v1/incidents`: newest first, by status and device.
pub async fn list(
    State(state): State<AppState>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(p) = params.map_err(|e| query_error(&e))?;
    let limit = p.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", format!("must be 1..=1000, got {limit}")));
    }
    let filter =
        IncidentFilter { status: p.status.as_deref().map(parse_status).transpose()?, device_id: p.device_id };
    let cursor = p.cursor.as_deref().map(str::parse::<Cursor>).transpose().map_err(ApiError::from)?;
    let page = state.store.list_incidents(&filter, cursor, limit).await?;
    Ok(Json(
        json!({"items": page.items.iter().map(view).collect::<Vec<_>>(), "next_cursor": page.next_cursor}),
    ))
}

fn id_param(id: Result<Path<i64>, PathRejection>) -> Result<i64, ApiError> {
    id.map(|Path(id)| id).map_err(|_| ApiError::invalid("id", "incident ids are integers"))
}

/// `GET /api/v1/incidents/{id}`: the incident, its evidence and its latest anomaly ids.
pub async fn detail(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = id_param(id)?;
    let mut body = view(&state.store.incident(id).await?);
    body["anomaly_ids"] = json!(state.store.incident_anomaly_ids(id, 100).await?);
    Ok(Json(body))
}

/// Body of `PATCH /api/v1/incidents/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateBody {
    status: String,
}

/// `PATCH /api/v1/incidents/{id}`: acknowledge, resolve or reopen. A resolved incident takes
/// no more anomalies: the next one with its signature opens a new incident.
pub async fn update(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
    body: Result<Json<UpdateBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = id_param(id)?;
    let Json(body) = body.map_err(|e| ApiError::body_rejection(e.status(), e.body_text()))?;
    let status = parse_status(&body.status)?;
    Ok(Json(view(&state.store.set_incident_status(id, status).await?)))
}
