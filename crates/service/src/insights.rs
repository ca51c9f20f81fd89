//! `GET /api/v1/insights/correlations`: which device attributes go with open incidents.
//!
//! Counts come live from the store's attribute index (every device's cohort and labels, kept
//! current by triggers); the statistics (prevalence, lift, hypergeometric p-value) are the
//! engine's [`anomalyd_engine::enrichment`]. Values are ranked by p-value, then lift, so a
//! value carried by many affected devices beats one carried by a single unlucky device.

use anomalyd_engine::enrichment::enrichment;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::anomalies::query_error;
use crate::error::ApiError;

/// Query string.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Params {
    /// Least affected devices for a value to be listed (default 2).
    min_affected: Option<u32>,
    /// Most values listed (default 20).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// At-risk device ids listed per value (default 10).
    #[param(minimum = 0, maximum = 1000)]
    at_risk: Option<u32>,
}

/// One attribute value and how it goes with open incidents.
#[derive(Debug, Serialize, ToSchema)]
pub struct Correlation {
    /// `cohort` or a label name.
    attribute: String,
    /// The value.
    value: String,
    /// Devices with this value that have an unresolved incident.
    affected_devices: i64,
    /// Devices with this value.
    devices_with_value: i64,
    /// Share of all affected devices that have this value.
    share_of_affected: f64,
    /// Affected share of the devices with this value.
    prevalence: f64,
    /// `prevalence / base_rate` (1 = no association).
    lift: f64,
    /// Chance of this many or more affected devices with the value if incidents were random.
    p_value: f64,
    /// Devices with this value and no unresolved incident.
    at_risk_devices: i64,
    /// Some of those devices' ids.
    at_risk_sample: Vec<String>,
    /// One sentence for people.
    summary: String,
}

/// Attribute values ranked by p-value, then lift.
#[derive(Debug, Serialize, ToSchema)]
pub struct Correlations {
    /// Devices in the fleet.
    fleet_devices: i64,
    /// Devices with an unresolved incident.
    affected_devices: i64,
    /// `affected_devices / fleet_devices`.
    base_rate: f64,
    /// The values, most significant first.
    items: Vec<Correlation>,
}

/// `GET /api/v1/insights/correlations`.
#[utoipa::path(
    get,
    path = "/api/v1/insights/correlations",
    operation_id = "attribute_correlations",
    tag = "insights",
    summary = "Attributes that go with open incidents",
    description = "For every device attribute value (cohort and labels): prevalence, lift and \
        hypergeometric p-value of unresolved incidents, ranked by p-value then lift, with devices that \
        carry the value but have no incident yet.",
    params(Params),
    responses(
        (status = 200, description = "The ranked values.", body = Correlations),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 500, response = crate::openapi::Internal),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn correlations(
    State(state): State<AppState>,
    params: Result<Query<Params>, QueryRejection>,
) -> Result<Json<Correlations>, ApiError> {
    let Query(p) = params.map_err(|e| query_error(&e))?;
    let limit = p.limit.unwrap_or(20);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid("limit", format!("must be 1..=500, got {limit}")));
    }
    let at_risk = p.at_risk.unwrap_or(10);
    if at_risk > 1000 {
        return Err(ApiError::invalid("at_risk", format!("must be at most 1000, got {at_risk}")));
    }
    let (fleet, affected) = state.store.fleet_totals().await?;
    let rows = state.store.attribute_correlations(i64::from(p.min_affected.unwrap_or(2)), at_risk).await?;
    let mut items: Vec<(f64, f64, Correlation)> = rows
        .into_iter()
        .map(|r| {
            let e = enrichment(fleet as u64, affected as u64, r.devices as u64, r.affected as u64);
            let at_risk_count = r.devices - r.affected;
            let summary = format!(
                "{} of {} affected devices have {} = {}; {} more devices have it",
                r.affected, affected, r.attribute, r.value, at_risk_count
            );
            let v = Correlation {
                attribute: r.attribute,
                value: r.value,
                affected_devices: r.affected,
                devices_with_value: r.devices,
                share_of_affected: if affected > 0 { r.affected as f64 / affected as f64 } else { 0.0 },
                prevalence: e.prevalence,
                lift: e.lift,
                p_value: e.p_value,
                at_risk_devices: at_risk_count,
                at_risk_sample: r.at_risk_sample,
                summary,
            };
            (e.p_value, e.lift, v)
        })
        .collect();
    items.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
    items.truncate(limit as usize);
    Ok(Json(Correlations {
        fleet_devices: fleet,
        affected_devices: affected,
        base_rate: if fleet > 0 { affected as f64 / fleet as f64 } else { 0.0 },
        items: items.into_iter().map(|(_, _, v)| v).collect(),
    }))
}
