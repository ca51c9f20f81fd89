//! `/api/v1/webhooks`: alert destinations and their deliveries.
//!
//! When an anomaly opens an incident whose severity reaches a webhook's `min_severity`, a
//! delivery is written to the outbox in the transaction that stores the anomaly, and the
//! [`WebhookWorker`] POSTs it, signed, until the target answers 2xx or the attempts run out
//! (then it is dead-lettered and listed with its last error). Anomalies that join an open
//! incident do not alert again.
//!
//! Every route needs the `admin` scope: targets and secrets are sensitive. A secret is
//! returned once, by the `POST` that created it.

mod payload;
mod worker;

use anomalyd_engine::fleet::Timestamp;
use anomalyd_store::{Cursor, DeliveryRecord, DeliveryStatus, NewWebhook, WebhookRecord};
use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

pub use payload::build_payload;
pub use worker::{Verdict, WebhookSettings, WebhookWorker, backoff, parse_retry_after, signature, verdict};

use crate::anomalies::{page_limit, query_error};
use crate::error::ApiError;
use crate::{AppState, now_ms};

const SEVERITIES: [&str; 4] = ["low", "medium", "high", "critical"];
/// Longest target URL accepted.
const MAX_URL_LEN: usize = 2048;

/// A webhook as served (never with its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    /// Id.
    id: i64,
    /// Where alerts are POSTed.
    url: String,
    /// Least incident severity that alerts.
    #[schema(value_type = crate::openapi::Severity)]
    min_severity: String,
    /// Free text.
    description: String,
    /// Created, RFC 3339 UTC.
    created_at: String,
}

fn view(w: &WebhookRecord) -> WebhookView {
    WebhookView {
        id: w.id,
        url: w.url.clone(),
        min_severity: w.min_severity.clone(),
        description: w.description.clone(),
        created_at: Timestamp(w.created_at).to_rfc3339(),
    }
}

/// A webhook just created, with its signing secret (shown this once).
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookCreated {
    #[serde(flatten)]
    webhook: WebhookView,
    /// Key of the `X-Anomalyd-Signature` HMAC. Store it now: it is never shown again.
    secret: String,
}

/// The live webhooks.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    /// Oldest first.
    items: Vec<WebhookView>,
}

/// Body of `POST /api/v1/webhooks`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhookRequest {
    /// `http` or `https` URL that alerts are POSTed to (at most 2048 bytes).
    #[schema(example = "https://hooks.example.com/anomalyd")]
    url: String,
    /// Signing secret, 16 to 256 printable ASCII characters; generated when absent.
    #[schema(min_length = 16, max_length = 256)]
    secret: Option<String>,
    /// Least incident severity that alerts (default `high`).
    #[schema(value_type = Option<crate::openapi::Severity>)]
    min_severity: Option<String>,
    /// Free text for operators, at most 500 characters.
    #[schema(max_length = 500)]
    description: Option<String>,
}

/// A validated [`NewWebhookRequest`].
fn validate(body: NewWebhookRequest) -> Result<NewWebhook, ApiError> {
    let url = body.url.trim().to_string();
    if url.len() > MAX_URL_LEN {
        return Err(ApiError::invalid("url", format!("at most {MAX_URL_LEN} bytes")));
    }
    let parsed =
        reqwest::Url::parse(&url).map_err(|e| ApiError::invalid("url", format!("not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ApiError::invalid("url", format!("must be http or https, not `{}`", parsed.scheme())));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(ApiError::invalid("url", "has no host"));
    }
    let secret = match body.secret {
        None => generate_secret(),
        Some(s) if (16..=256).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic()) => s,
        Some(_) => {
            return Err(ApiError::invalid(
                "secret",
                "must be 16 to 256 printable ASCII characters, no spaces",
            ));
        }
    };
    let min_severity = body.min_severity.unwrap_or_else(|| "high".into());
    if !SEVERITIES.contains(&min_severity.as_str()) {
        return Err(ApiError::invalid(
            "min_severity",
            format!("unknown severity `{min_severity}` (low, medium, high, critical)"),
        ));
    }
    let description = body.description.unwrap_or_default();
    if description.chars().count() > 500 {
        return Err(ApiError::invalid("description", "at most 500 characters"));
    }
    Ok(NewWebhook { url, secret, min_severity, description })
}

/// 32 random bytes as hex, prefixed `whsec_`.
fn generate_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let mut s = String::from("whsec_");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn id_param(id: Result<Path<i64>, PathRejection>) -> Result<i64, ApiError> {
    id.map(|Path(id)| id).map_err(|_| ApiError::invalid("id", "webhook ids are integers"))
}

/// `GET /api/v1/webhooks`.
#[utoipa::path(
    get,
    path = "/api/v1/webhooks",
    operation_id = "list_webhooks",
    tag = "webhooks",
    summary = "List webhooks",
    description = "The live webhooks, oldest first. Secrets are never listed.",
    responses(
        (status = 200, description = "The webhooks.", body = WebhookList),
        (status = 500, response = crate::openapi::Internal),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn list(State(state): State<AppState>) -> Result<Json<WebhookList>, ApiError> {
    let items = state.store.list_webhooks().await?.iter().map(view).collect();
    Ok(Json(WebhookList { items }))
}

/// `POST /api/v1/webhooks`.
#[utoipa::path(
    post,
    path = "/api/v1/webhooks",
    operation_id = "create_webhook",
    tag = "webhooks",
    summary = "Register a webhook",
    description = "Alerts for incidents of at least `min_severity` are POSTed to `url` from now on. \
        The answer carries the signing secret, the only time it is shown.\n\n\
        Each delivery is a JSON body (`event` `incident.opened`, `summary`, `incident`, `anomaly` \
        with its explanation, `device`, `dashboard_url`) with the headers `Idempotency-Key` (the \
        same on every attempt of a delivery), `X-Anomalyd-Delivery`, `X-Anomalyd-Event`, \
        `X-Anomalyd-Timestamp` (Unix seconds of this attempt) and `X-Anomalyd-Signature: \
        sha256=<hex>`, the HMAC-SHA256 keyed with the secret of `<timestamp>.<body>`. To verify, \
        compute it over the raw body bytes, compare in constant time, and refuse timestamps far \
        from your clock.\n\n\
        A 2xx answer delivers. A 4xx other than 408, 425 and 429 is final (dead-lettered at once). \
        Other failures and timeouts are retried with exponential backoff and jitter; `Retry-After` \
        on 429 and 503 is honoured. After the configured attempts the delivery is dead-lettered \
        and listed under `GET /api/v1/webhooks/{id}/deliveries?status=dead` with its last error.",
    request_body = NewWebhookRequest,
    responses(
        (status = 201, description = "Registered; the secret is in this answer only.", body = WebhookCreated),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 500, response = crate::openapi::Internal),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    body: Result<Json<NewWebhookRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<WebhookCreated>), ApiError> {
    let Json(body) = body.map_err(|e| ApiError::body_rejection(e.status(), e.body_text()))?;
    let new = validate(body)?;
    let record = state.store.create_webhook(&new, now_ms()).await?;
    Ok((StatusCode::CREATED, Json(WebhookCreated { webhook: view(&record), secret: record.secret })))
}

/// `DELETE /api/v1/webhooks/{id}`.
#[utoipa::path(
    delete,
    path = "/api/v1/webhooks/{id}",
    operation_id = "delete_webhook",
    tag = "webhooks",
    summary = "Delete a webhook",
    description = "No new deliveries go to it; its pending deliveries are dead-lettered with the error \
        `webhook deleted` (an attempt already running finishes). Its deliveries stay readable.",
    params(("id" = i64, Path, description = "Webhook id.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 404, response = crate::openapi::NotFound),
        (status = 500, response = crate::openapi::Internal),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = id_param(id)?;
    state.store.delete_webhook(id, now_ms()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Query string of the delivery list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveryParams {
    /// Only this status.
    #[param(value_type = Option<DeliveryState>)]
    status: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Page size (default 50).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// Where a delivery is in its life.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Waiting for its next attempt.
    Pending,
    /// An attempt is running.
    Delivering,
    /// The target answered 2xx.
    Delivered,
    /// Given up (attempts used up, a final 4xx, or the webhook was deleted); see `last_error`.
    Dead,
}

/// A delivery as served.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    /// Id (also sent as `X-Anomalyd-Delivery`).
    id: i64,
    /// Webhook.
    webhook_id: i64,
    /// Incident that alerted.
    incident_id: i64,
    /// Anomaly that opened the incident.
    anomaly_id: i64,
    /// Event, `incident.opened`.
    event: String,
    /// Sent as `Idempotency-Key` on every attempt.
    idempotency_key: String,
    /// Status.
    #[schema(value_type = DeliveryState)]
    status: String,
    /// Attempts made.
    attempts: i64,
    /// When the next attempt is due, RFC 3339 UTC; `null` once delivered or dead.
    next_attempt_at: Option<String>,
    /// HTTP status of the last answer (`null`: none yet, or no answer).
    last_status: Option<i64>,
    /// Why the last attempt failed.
    last_error: Option<String>,
    /// The body sent (`null` before the first attempt).
    #[schema(value_type = Option<Object>)]
    payload: Option<Value>,
    /// Queued, RFC 3339 UTC.
    created_at: String,
    /// Delivered, RFC 3339 UTC.
    delivered_at: Option<String>,
}

fn delivery_view(d: &DeliveryRecord) -> DeliveryView {
    let unfinished = matches!(d.status.as_str(), "pending" | "delivering");
    DeliveryView {
        id: d.id,
        webhook_id: d.webhook_id,
        incident_id: d.incident_id,
        anomaly_id: d.anomaly_id,
        event: d.event.clone(),
        idempotency_key: d.idempotency_key.clone(),
        status: d.status.clone(),
        attempts: d.attempts,
        next_attempt_at: unfinished.then(|| Timestamp(d.next_attempt_at).to_rfc3339()),
        last_status: d.last_status,
        last_error: d.last_error.clone(),
        payload: d.payload.as_deref().and_then(|p| serde_json::from_str(p).ok()),
        created_at: Timestamp(d.created_at).to_rfc3339(),
        delivered_at: d.delivered_at.map(|t| Timestamp(t).to_rfc3339()),
    }
}

/// A page of deliveries.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    /// Newest first.
    items: Vec<DeliveryView>,
    /// Cursor of the next page; `null` on the last page.
    next_cursor: Option<String>,
}

/// `GET /api/v1/webhooks/{id}/deliveries`.
#[utoipa::path(
    get,
    path = "/api/v1/webhooks/{id}/deliveries",
    operation_id = "list_webhook_deliveries",
    tag = "webhooks",
    summary = "List a webhook's deliveries",
    description = "Newest first, optionally one status (`dead` lists the dead letters with their last \
        error); follow `next_cursor` until it is `null`. Deliveries of a deleted webhook stay listed.",
    params(("id" = i64, Path, description = "Webhook id."), DeliveryParams),
    responses(
        (status = 200, description = "A page of deliveries.", body = DeliveryList),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 404, response = crate::openapi::NotFound),
        (status = 500, response = crate::openapi::Internal),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn deliveries(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
    params: Result<Query<DeliveryParams>, QueryRejection>,
) -> Result<Json<DeliveryList>, ApiError> {
    let id = id_param(id)?;
    let Query(p) = params.map_err(|e| query_error(&e))?;
    let limit = page_limit(p.limit)?;
    let status = p
        .status
        .as_deref()
        .map(str::parse::<DeliveryStatus>)
        .transpose()
        .map_err(|e| ApiError::invalid("status", e.to_string()))?;
    let cursor = p.cursor.as_deref().map(str::parse::<Cursor>).transpose().map_err(ApiError::from)?;
    state.store.webhook(id).await?;
    let page = state.store.list_deliveries(id, status, cursor, limit).await?;
    Ok(Json(DeliveryList {
        items: page.items.iter().map(delivery_view).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// `POST /api/v1/webhooks/{id}/deliveries/{delivery}/retry`.
#[utoipa::path(
    post,
    path = "/api/v1/webhooks/{id}/deliveries/{delivery}/retry",
    operation_id = "retry_webhook_delivery",
    tag = "webhooks",
    summary = "Retry a dead letter",
    description = "Queues a dead delivery again, due now, with a fresh attempt budget; it sends the \
        same body with the same `Idempotency-Key`. Only a dead delivery of a live webhook can be \
        retried (`409` otherwise).",
    params(
        ("id" = i64, Path, description = "Webhook id."),
        ("delivery" = i64, Path, description = "Delivery id."),
    ),
    responses(
        (status = 200, description = "The delivery, pending again.", body = DeliveryView),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 404, response = crate::openapi::NotFound),
        (status = 409, description = "The delivery is not dead, or its webhook is deleted \
            (`/problems/conflict`).", body = ApiError, content_type = "application/problem+json"),
        (status = 500, response = crate::openapi::Internal),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn retry(
    State(state): State<AppState>,
    ids: Result<Path<(i64, i64)>, PathRejection>,
) -> Result<Json<DeliveryView>, ApiError> {
    let Path((id, delivery)) =
        ids.map_err(|_| ApiError::invalid("id", "webhook and delivery ids are integers"))?;
    let record = state.store.requeue_delivery(id, delivery, now_ms()).await?;
    state.webhooks.wake();
    Ok(Json(delivery_view(&record)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(url: &str) -> NewWebhookRequest {
        NewWebhookRequest { url: url.into(), secret: None, min_severity: None, description: None }
    }

    #[test]
    fn urls_must_be_http_with_a_host() {
        for bad in
            ["", "not a url", "ftp://x.example/a", "file:///etc/passwd", "http://", "javascript:alert(1)"]
        {
            let e = validate(req(bad)).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("url"), "{bad}: {e:?}");
        }
        let ok = validate(req(" https://hooks.example.com/a?b=c ")).unwrap();
        assert_eq!(ok.url, "https://hooks.example.com/a?b=c");
        assert_eq!(ok.min_severity, "high");
        assert!(ok.secret.starts_with("whsec_") && ok.secret.len() == 6 + 64);
        assert_ne!(ok.secret, validate(req("http://a.example")).unwrap().secret);
    }

    #[test]
    fn secrets_severities_and_descriptions_are_checked() {
        let mut r = req("http://a.example");
        r.secret = Some("short".into());
        assert_eq!(validate(r).unwrap_err().field.as_deref(), Some("secret"));
        let mut r = req("http://a.example");
        r.secret = Some("has a space in it!".into());
        assert_eq!(validate(r).unwrap_err().field.as_deref(), Some("secret"));
        let mut r = req("http://a.example");
        r.min_severity = Some("extreme".into());
        assert_eq!(validate(r).unwrap_err().field.as_deref(), Some("min_severity"));
        let mut r = req("http://a.example");
        r.description = Some("x".repeat(501));
        assert_eq!(validate(r).unwrap_err().field.as_deref(), Some("description"));
    }
}
