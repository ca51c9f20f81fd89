//! `/api/v1/dashboard`: counters and trends read from maintained roll-ups, so both answer in
//! milliseconds whatever the size of the anomalies table.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use anomalyd_engine::fleet::Timestamp;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::anomalies::{query_error, time_param};
use crate::error::ApiError;
use crate::system::SystemStatus;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// Anomaly counters.
#[derive(Debug, Serialize, ToSchema)]
pub struct AnomalyCounts {
    /// All anomalies.
    total: i64,
    /// By status.
    by_status: BTreeMap<String, i64>,
    /// By severity.
    by_severity: BTreeMap<String, i64>,
    /// By cohort (`""` for none).
    by_cohort: BTreeMap<String, i64>,
}

/// Incident counters.
#[derive(Debug, Serialize, ToSchema)]
pub struct IncidentCounts {
    /// Incidents not resolved.
    open: i64,
    /// By status.
    by_status: BTreeMap<String, i64>,
}

/// Device counters.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceCounts {
    /// Devices ever seen.
    seen: i64,
    /// Devices with at least one unresolved incident.
    with_open_incidents: i64,
}

/// Ingest counters since the process started.
#[derive(Debug, Serialize, ToSchema)]
pub struct IngestCounts {
    /// Samples stored.
    samples_stored: u64,
    /// Samples skipped as already stored.
    samples_duplicate: u64,
    /// Samples stored per second over the last measurement interval.
    samples_per_sec: f64,
    /// Samples waiting in the ingest queue.
    queue_depth: usize,
    /// Capacity of the ingest queue in samples.
    queue_capacity: usize,
}

/// The model bundle scoring telemetry.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActiveModel {
    /// Version label (`file` for a bundle given on the command line).
    version: String,
    /// Id in the model registry, when it came from there.
    id: Option<i64>,
}

/// Fleet counters for the dashboard.
#[derive(Debug, Serialize, ToSchema)]
pub struct DashboardStats {
    /// Anomaly counters.
    anomalies: AnomalyCounts,
    /// Incident counters.
    incidents: IncidentCounts,
    /// Device counters.
    devices: DeviceCounts,
    /// Ingest counters.
    ingest: IngestCounts,
    /// The active model; `null` when none is.
    model: Option<ActiveModel>,
    /// Latest measurement of the machine and the process.
    system: SystemStatus,
}

/// `GET /api/v1/dashboard/stats`.
#[utoipa::path(
    get,
    path = "/api/v1/dashboard/stats",
    operation_id = "dashboard_stats",
    tag = "dashboard",
    summary = "Fleet counters",
    description = "Read from maintained roll-ups: answers in milliseconds whatever the size of the \
        anomalies table.",
    responses(
        (status = 200, description = "The counters.", body = DashboardStats),
        (status = 500, response = crate::openapi::Internal),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn stats(State(state): State<AppState>) -> Result<Json<DashboardStats>, ApiError> {
    let s = state.store.dashboard_stats().await?;
    let open_incidents =
        s.incidents_by_status.iter().filter(|(k, _)| k.as_str() != "resolved").map(|(_, n)| n).sum::<i64>();
    let c = state.pipeline.counters();
    let system = state.system.latest();
    let model = state.pipeline.bundle().map(|b| ActiveModel { version: b.version.clone(), id: b.model_id });
    Ok(Json(DashboardStats {
        anomalies: AnomalyCounts {
            total: s.anomalies_by_status.values().sum::<i64>(),
            by_status: s.anomalies_by_status,
            by_severity: s.anomalies_by_severity,
            by_cohort: s.anomalies_by_cohort,
        },
        incidents: IncidentCounts { open: open_incidents, by_status: s.incidents_by_status },
        devices: DeviceCounts { seen: s.devices, with_open_incidents: s.devices_with_open_incidents },
        ingest: IngestCounts {
            samples_stored: c.samples_stored.load(Ordering::Relaxed),
            samples_duplicate: c.samples_duplicate.load(Ordering::Relaxed),
            samples_per_sec: system.ingest_samples_per_sec,
            queue_depth: state.pipeline.queued(),
            queue_capacity: state.pipeline.capacity(),
        },
        model,
        system,
    }))
}

/// Query string of the trends.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TrendParams {
    /// Bucket width (default `hour`).
    #[param(value_type = Option<crate::openapi::BucketWidth>)]
    bucket: Option<String>,
    /// Range start: RFC 3339 or Unix milliseconds (default: 30 days before `to`).
    #[param(value_type = Option<crate::openapi::TimeParam>)]
    from: Option<String>,
    /// Range end: RFC 3339 or Unix milliseconds (default: just after the latest anomaly, or now).
    #[param(value_type = Option<crate::openapi::TimeParam>)]
    to: Option<String>,
}

/// One bucket of the trend.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrendBucket {
    /// Bucket start, RFC 3339 UTC.
    start: String,
    /// Anomalies whose sample time falls in the bucket.
    count: i64,
    /// Their mean score; `null` for an empty bucket.
    mean_score: Option<f64>,
}

/// Anomalies over time.
#[derive(Debug, Serialize, ToSchema)]
pub struct Trends {
    /// Bucket width.
    #[schema(value_type = crate::openapi::BucketWidth)]
    bucket: &'static str,
    /// Start of the first bucket, RFC 3339 UTC.
    from: String,
    /// End of the range, RFC 3339 UTC.
    to: String,
    /// Every bucket of the range, empty ones included.
    buckets: Vec<TrendBucket>,
}

/// `GET /api/v1/dashboard/trends?bucket=hour|day&from&to`: anomalies and mean score per
/// bucket of sample time, empty buckets included. Without `to`, the range ends after the
/// latest anomaly (a replayed or simulated fleet may live in the past); without `from`, it
/// spans 30 days.
#[utoipa::path(
    get,
    path = "/api/v1/dashboard/trends",
    operation_id = "dashboard_trends",
    tag = "dashboard",
    summary = "Anomalies over time",
    description = "Anomalies and mean score per bucket of sample time, empty buckets included. Without \
        `to`, the range ends after the latest anomaly (a replayed or simulated fleet may live in the past); \
        without `from`, it spans 30 days. At most 5000 buckets.",
    params(TrendParams),
    responses(
        (status = 200, description = "The buckets.", body = Trends),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 500, response = crate::openapi::Internal),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn trends(
    State(state): State<AppState>,
    params: Result<Query<TrendParams>, QueryRejection>,
) -> Result<Json<Trends>, ApiError> {
    let Query(p) = params.map_err(|e| query_error(&e))?;
    let step = match p.bucket.as_deref() {
        None | Some("hour") => HOUR_MS,
        Some("day") => DAY_MS,
        Some(other) => return Err(ApiError::invalid("bucket", format!("`{other}` is not `hour` or `day`"))),
    };
    let from = time_param("from", &p.from)?;
    let to = match time_param("to", &p.to)? {
        Some(t) => t,
        None => match state.store.latest_anomaly_hour().await? {
            Some(h) => (h + HOUR_MS + step - 1).div_euclid(step) * step,
            None => crate::now_ms(),
        },
    };
    let from = from.unwrap_or(to - 30 * DAY_MS);
    if from >= to {
        return Err(ApiError::invalid("from", "must be before `to`"));
    }
    if (to - from) / step > 5_000 {
        return Err(ApiError::invalid(
            "from",
            "the range holds more than 5000 buckets; use bucket=day or a shorter range",
        ));
    }
    let start = from.div_euclid(step) * step;
    let n = usize::try_from((to - start + step - 1) / step).unwrap_or(0);
    let mut counts = vec![(0i64, 0f64); n];
    for b in state.store.hourly_trend(start, to).await? {
        let k = usize::try_from((b.start - start) / step).unwrap_or(usize::MAX);
        if let Some(slot) = counts.get_mut(k) {
            slot.0 += b.count;
            slot.1 += b.score_sum;
        }
    }
    let buckets = counts
        .iter()
        .enumerate()
        .map(|(k, &(count, sum))| TrendBucket {
            start: Timestamp(start + k as i64 * step).to_rfc3339(),
            count,
            mean_score: if count > 0 { Some(sum / count as f64) } else { None },
        })
        .collect();
    Ok(Json(Trends {
        bucket: if step == HOUR_MS { "hour" } else { "day" },
        from: Timestamp(start).to_rfc3339(),
        to: Timestamp(to).to_rfc3339(),
        buckets,
    }))
}
