//! `/api/v1/devices`: list (keyset by id, optional cohort) and detail with recent metrics
//! and anomalies.

use anomalyd_engine::fleet::Timestamp;
use anomalyd_store::{AnomalyFilter, DeviceRecord};
use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::anomalies::{AnomalyView, page_limit, query_error};
use crate::error::ApiError;

/// Query string of the device list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only devices of this cohort.
    cohort: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Page size (default 50).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// A device as listed.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceView {
    /// Id.
    id: String,
    /// Latest cohort reported.
    cohort: Option<String>,
    /// Latest labels reported.
    #[schema(value_type = BTreeMap<String, String>)]
    labels: Value,
    /// First sample, RFC 3339 UTC.
    first_seen: String,
    /// Latest sample, RFC 3339 UTC.
    last_seen: String,
}

fn view(d: &DeviceRecord) -> DeviceView {
    DeviceView {
        id: d.id.clone(),
        cohort: d.cohort.clone(),
        labels: serde_json::from_str::<Value>(&d.labels).unwrap_or(Value::Null),
        first_seen: Timestamp(d.first_seen).to_rfc3339(),
        last_seen: Timestamp(d.last_seen).to_rfc3339(),
    }
}

/// A page of devices.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceList {
    /// The devices, by id.
    items: Vec<DeviceView>,
    /// Cursor of the next page; `null` on the last page.
    next_cursor: Option<String>,
}

/// `GET /api/v1/devices`.
#[utoipa::path(
    get,
    path = "/api/v1/devices",
    operation_id = "list_devices",
    tag = "devices",
    summary = "List devices",
    description = "By id, keyset-paginated: follow `next_cursor` until it is `null`.",
    params(ListParams),
    responses(
        (status = 200, description = "A page of devices.", body = DeviceList),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 500, response = crate::openapi::Internal),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<DeviceList>, ApiError> {
    let Query(p) = params.map_err(|e| query_error(&e))?;
    let limit = page_limit(p.limit)?;
    let page = state.store.list_devices(p.cohort.as_deref(), p.cursor.as_deref(), limit).await?;
    Ok(Json(DeviceList { items: page.items.iter().map(view).collect(), next_cursor: page.next_cursor }))
}

/// The device's latest feature row, computed by the running pipeline.
#[derive(Debug, Serialize, ToSchema)]
pub struct CurrentFeatures {
    /// Sample time of the row, RFC 3339 UTC.
    ts: String,
    /// Version of the model bundle that computed it.
    model_version: String,
    /// Values by feature name, in the model's order (`null` when missing).
    #[schema(value_type = BTreeMap<String, Option<f64>>)]
    values: serde_json::Map<String, Value>,
}

/// One stored sample.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecentSample {
    /// Sample time, RFC 3339 UTC.
    ts: String,
    /// Metric values by name.
    #[schema(value_type = BTreeMap<String, f64>)]
    metrics: Value,
}

/// A device with its current features, latest samples and latest anomalies.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceDetail {
    #[serde(flatten)]
    device: DeviceView,
    /// `null` until the pipeline has computed features with the active model.
    current_features: Option<CurrentFeatures>,
    /// Latest 48 samples, newest first.
    recent_metrics: Vec<RecentSample>,
    /// Latest 20 anomalies, newest first.
    anomalies: Vec<AnomalyView>,
}

/// `GET /api/v1/devices/{id}`: the device, its current features (computed by the running
/// pipeline), its latest 48 samples and latest 20 anomalies.
#[utoipa::path(
    get,
    path = "/api/v1/devices/{id}",
    operation_id = "get_device",
    tag = "devices",
    summary = "Get one device",
    description = "The device, its current features (computed by the running pipeline), its latest 48 \
        samples and latest 20 anomalies.",
    params(("id" = String, Path, description = "Device id.")),
    responses(
        (status = 200, description = "The device.", body = DeviceDetail),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 404, response = crate::openapi::NotFound),
        (status = 500, response = crate::openapi::Internal),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn detail(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<DeviceDetail>, ApiError> {
    let Path(id) = id.map_err(|e| ApiError::invalid("id", e.body_text()))?;
    let device = state.store.device(&id).await?;
    let recent_metrics = state
        .store
        .recent_telemetry(&id, 48)
        .await?
        .into_iter()
        .map(|t| RecentSample {
            ts: Timestamp(t.ts).to_rfc3339(),
            metrics: serde_json::from_str::<Value>(&t.metrics).unwrap_or(Value::Null),
        })
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
    let current_features = match (state.pipeline.current_features(&device.id), state.pipeline.bundle()) {
        (Some(cur), Some(active)) if cur.version == active.version => {
            let values = crate::pipeline::feature_values(&active.bundle.config, &cur.values);
            Some(CurrentFeatures { ts: Timestamp(cur.ts).to_rfc3339(), model_version: cur.version, values })
        }
        _ => None,
    };
    Ok(Json(DeviceDetail { device: view(&device), current_features, recent_metrics, anomalies }))
}
