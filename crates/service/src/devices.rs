//! `/api/v1/devices`: list (keyset by id, optional cohort) and detail with recent metrics
//! and anomalies.

use anomalyd_engine::fleet::Timestamp;
use anomalyd_store::{AnomalyFilter, DeviceRecord};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::anomalies::{AnomalyView, query_error};
use crate::error::ApiError;

/// Query string of the device list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    cohort: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

fn view(d: &DeviceRecord) -> Value {
    json!({
        "id": d.id,
        "cohort": d.cohort,
        "labels": serde_json::from_str::<Value>(&d.labels).unwrap_or(Value::Null),
        "first_seen": Timestamp(d.first_seen).to_rfc3339(),
        "last_seen": Timestamp(d.last_seen).to_rfc3339(),
    })
}

/// `GET /api/v1/devices`.
pub async fn list(
    State(state): State<AppState>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(p) = params.map_err(|e| query_error(&e))?;
    let limit = p.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", format!("must be 1..=1000, got {limit}")));
    }
    let page = state.store.list_devices(p.cohort.as_deref(), p.cursor.as_deref(), limit).await?;
    Ok(Json(
        json!({"items": page.items.iter().map(view).collect::<Vec<_>>(), "next_cursor": page.next_cursor}),
    ))
}

/// `GET /api/v1/devices/{id}`: the device, its current features (computed by the running
/// pipeline), its latest 48 samples and latest 20 anomalies.
pub async fn detail(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let device = state.store.device(&id).await?;
    let recent: Vec<Value> = state
        .store
        .recent_telemetry(&id, 48)
        .await?
        .into_iter()
        .map(|t| json!({"ts": Timestamp(t.ts).to_rfc3339(), "metrics": serde_json::from_str::<Value>(&t.metrics).unwrap_or(Value::Null)}))
        .collect();
    let filter = AnomalyFilter { device_id: Some(id), ..Default::default() };
    let anomalies: Vec<AnomalyView> = state
        .store
        .list_anomalies(&filter, None, 20)
        .await?
        .items
        .into_iter()
        .map(AnomalyView::from)
        .collect();
    let mut body = view(&device);
    body["current_features"] = match (state.pipeline.current_features(&device.id), state.pipeline.bundle()) {
        (Some(cur), Some(active)) if cur.version == active.version => {
            let values: serde_json::Map<String, Value> = active
                .bundle
                .config
                .features
                .iter()
                .zip(&cur.values)
                .map(|(f, v)| (f.name.clone(), if v.is_finite() { json!(v) } else { Value::Null }))
                .collect();
            json!({"ts": Timestamp(cur.ts).to_rfc3339(), "model_version": cur.version, "values": values})
        }
        _ => Value::Null,
    };
    body["recent_metrics"] = Value::Array(recent);
    body["anomalies"] = serde_json::to_value(anomalies).unwrap_or(Value::Null);
    Ok(Json(body))
}
