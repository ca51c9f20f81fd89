//! `/api/v1/dashboard`: counters and trends read from maintained roll-ups, so both answer in
//! milliseconds whatever the size of the anomalies table.

use std::sync::atomic::Ordering;

use anomalyd_engine::fleet::Timestamp;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::anomalies::query_error;
use crate::error::ApiError;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// `GET /api/v1/dashboard/stats`.
pub async fn stats(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let s = state.store.dashboard_stats().await?;
    let open_incidents =
        s.incidents_by_status.iter().filter(|(k, _)| k.as_str() != "resolved").map(|(_, n)| n).sum::<i64>();
    let c = state.pipeline.counters();
    let system = state.system.latest();
    let model = state.pipeline.bundle().map(|b| json!({"version": b.version, "id": b.model_id}));
    Ok(Json(json!({
        "anomalies": {
            "total": s.anomalies_by_status.values().sum::<i64>(),
            "by_status": s.anomalies_by_status,
            "by_severity": s.anomalies_by_severity,
            "by_cohort": s.anomalies_by_cohort,
        },
        "incidents": {"open": open_incidents, "by_status": s.incidents_by_status},
        "devices": {"seen": s.devices, "with_open_incidents": s.devices_with_open_incidents},
        "ingest": {
            "samples_stored": c.samples_stored.load(Ordering::Relaxed),
            "samples_duplicate": c.samples_duplicate.load(Ordering::Relaxed),
            "samples_per_sec": system.ingest_samples_per_sec,
            "queue_depth": state.pipeline.queued(),
            "queue_capacity": state.pipeline.capacity(),
        },
        "model": model,
        "system": system,
    })))
}

/// Query string of the trends.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrendParams {
    bucket: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// `GET /api/v1/dashboard/trends?bucket=hour|day&from&to`: anomalies and mean score per
/// bucket of sample time, empty buckets included. Without `to`, the range ends after the
/// latest anomaly (a replayed or simulated fleet may live in the past); without `from`, it
/// spans 30 days.
pub async fn trends(
    State(state): State<AppState>,
    params: Result<Query<TrendParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(p) = params.map_err(|e| query_error(&e))?;
    let step = match p.bucket.as_deref() {
        None | Some("hour") => HOUR_MS,
        Some("day") => DAY_MS,
        Some(other) => return Err(ApiError::invalid("bucket", format!("`{other}` is not `hour` or `day`"))),
    };
    let parse = |field: &str, v: &Option<String>| -> Result<Option<i64>, ApiError> {
        v.as_deref()
            .map(|t| {
                Timestamp::parse(t).map(|t| t.0).map_err(|_| {
                    ApiError::invalid(field, format!("`{t}` is not an RFC 3339 time or Unix milliseconds"))
                })
            })
            .transpose()
    };
    let from = parse("from", &p.from)?;
    let to = match parse("to", &p.to)? {
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
    let buckets: Vec<Value> = counts
        .iter()
        .enumerate()
        .map(|(k, &(count, sum))| {
            json!({
                "start": Timestamp(start + k as i64 * step).to_rfc3339(),
                "count": count,
                "mean_score": if count > 0 { Some(sum / count as f64) } else { None },
            })
        })
        .collect();
    Ok(Json(json!({
        "bucket": if step == HOUR_MS { "hour" } else { "day" },
        "from": Timestamp(start).to_rfc3339(),
        "to": Timestamp(to).to_rfc3339(),
        "buckets": buckets,
    })))
}
