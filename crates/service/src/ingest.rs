//! `POST /api/v1/telemetry`: parse and validate the batch, then hand it to the
//! [`crate::pipeline`] and answer once it is durable.
//!
//! Samples already stored for the same (device, time) are skipped, so a retried batch
//! stores nothing twice.

use anomalyd_engine::fleet::Sample;
use anomalyd_engine::fleet::json::{
    Interner, sample_from_json, sample_from_json_text, samples_from_json_array,
};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use serde_json::Value;

use crate::AppState;
use crate::error::ApiError;
use crate::pipeline::IngestSummary;

/// Most samples in one request.
pub const MAX_BATCH: usize = 10_000;

fn parse_body(headers: &HeaderMap, body: &[u8]) -> Result<Vec<Value>, ApiError> {
    let values = if is_ndjson(headers) {
        let text = std::str::from_utf8(body).map_err(|_| ApiError::bad_body("the body is not UTF-8"))?;
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l).map_err(|e| ApiError::bad_body(format!("line {}: {e}", i + 1)))
            })
            .collect::<Result<Vec<Value>, _>>()?
    } else {
        match serde_json::from_slice(body).map_err(|e| ApiError::bad_body(e.to_string()))? {
            Value::Array(items) => items,
            _ => {
                return Err(ApiError::bad_body(
                    "expected a JSON array of samples (or NDJSON with content-type application/x-ndjson)",
                ));
            }
        }
    };
    if values.is_empty() {
        return Err(ApiError::bad_body("the batch holds no samples"));
    }
    if values.len() > MAX_BATCH {
        return Err(ApiError::bad_body(format!(
            "at most {MAX_BATCH} samples per request, got {}",
            values.len()
        )));
    }
    Ok(values)
}

fn is_ndjson(headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("ndjson") || v.contains("jsonl"))
}

/// The batch decoded straight from the body, when every sample in it is valid and their
/// number is allowed; otherwise `None`, and the checked path (`parse_body` and
/// `sample_from_json`) finds the fault and names it.
fn decode_fast(headers: &HeaderMap, body: &[u8], interner: &mut Interner) -> Option<Vec<Sample>> {
    let samples = if is_ndjson(headers) {
        std::str::from_utf8(body)
            .ok()?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| sample_from_json_text(l, interner))
            .collect::<Option<Vec<Sample>>>()?
    } else {
        samples_from_json_array(body, interner)?
    };
    (!samples.is_empty() && samples.len() <= MAX_BATCH).then_some(samples)
}

/// `POST /api/v1/telemetry`.
#[utoipa::path(
    post,
    path = "/api/v1/telemetry",
    operation_id = "ingest_telemetry",
    tag = "telemetry",
    summary = "Ingest telemetry",
    description = "A batch of 1 to 10 000 samples, as a JSON array or as NDJSON (one sample object per \
        line, with a content type containing `ndjson` or `jsonl`). The batch is validated whole (a bad \
        sample refuses it, naming `items[i].field`), queued, scored, and answered once durable. Samples \
        already stored for the same (device, time) are skipped, so a retried batch stores nothing twice.",
    request_body(
        description = "The samples.",
        content(
            (crate::openapi::TelemetryBatch = "application/json"),
            (String = "application/x-ndjson"),
        ),
    ),
    responses(
        (status = 200, description = "Stored (and scored, with an active model).", body = IngestSummary),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 500, response = crate::openapi::Internal),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn ingest(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<IngestSummary>, ApiError> {
    let body = body.map_err(|e| ApiError::body_rejection(e.status(), e.body_text()))?;
    let mut interner = Interner::default();
    if let Some(samples) = decode_fast(&headers, &body, &mut interner) {
        return Ok(Json(IngestSummary::from(&state.pipeline.submit(samples).await?)));
    }
    let values = parse_body(&headers, &body)?;
    let mut samples = Vec::with_capacity(values.len());
    for (i, v) in values.into_iter().enumerate() {
        let s = sample_from_json(v, &mut interner).map_err(|e| {
            // "field `ts`: …" → field "items[i].ts".
            let field = e.split('`').nth(1).unwrap_or("").to_string();
            ApiError::invalid(&format!("items[{i}]{}{field}", if field.is_empty() { "" } else { "." }), e)
        })?;
        samples.push(s);
    }
    Ok(Json(IngestSummary::from(&state.pipeline.submit(samples).await?)))
}

/// Queues already validated samples and waits until they are durable (also used by
/// `anomalyd demo` to feed its simulated fleet).
pub async fn ingest_samples(state: &AppState, samples: Vec<Sample>) -> Result<Value, ApiError> {
    Ok(state.pipeline.submit(samples).await?.to_json())
}
