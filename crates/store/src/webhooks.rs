//! Webhooks and their delivery outbox.
//!
//! A delivery row is written in the same transaction as the anomaly that opened an incident
//! (see [`enqueue_alerts`]), so an alert exists exactly when its anomaly does: a crash can
//! lose neither one without the other. Workers claim due rows with a lease; every state
//! change after a claim is fenced by the attempt number the claim returned, so a worker
//! whose lease ran out (and whose row another worker took over) changes nothing.

use std::fmt;

use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use crate::anomalies::Page;
use crate::cursor::Cursor;
use crate::error::StoreError;
use crate::{Result, Store};

/// The event of a delivery sent when an anomaly opens an incident.
pub const EVENT_INCIDENT_OPENED: &str = "incident.opened";

/// SQL rank of a severity column, matching [`crate::incidents`]' ordering.
const RANK_SQL: &str =
    "(CASE min_severity WHEN 'critical' THEN 3 WHEN 'high' THEN 2 WHEN 'medium' THEN 1 ELSE 0 END)";

/// A webhook to register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWebhook {
    /// Where deliveries are POSTed (http or https, validated by the caller).
    pub url: String,
    /// HMAC-SHA256 key of the signatures.
    pub secret: String,
    /// Least severity (`low`, `medium`, `high`, `critical`) of an incident that alerts.
    pub min_severity: String,
    /// Free text for operators.
    pub description: String,
}

/// A stored webhook. Not `Serialize` on purpose: it carries the secret.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct WebhookRecord {
    /// Id.
    pub id: i64,
    /// Target URL.
    pub url: String,
    /// Signing secret.
    pub secret: String,
    /// Least severity that alerts.
    pub min_severity: String,
    /// Free text.
    pub description: String,
    /// Created, Unix ms.
    pub created_at: i64,
    /// Deleted, Unix ms; a deleted hook gets no new deliveries.
    pub deleted_at: Option<i64>,
}

impl fmt::Debug for WebhookRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookRecord")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .field("min_severity", &self.min_severity)
            .field("deleted_at", &self.deleted_at)
            .finish_non_exhaustive()
    }
}

/// Where a delivery is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Waiting for its next attempt.
    Pending,
    /// An attempt is running (under a lease).
    Delivering,
    /// The target answered 2xx.
    Delivered,
    /// Given up: attempts used up, a permanent refusal, or the hook was deleted.
    Dead,
}

impl DeliveryStatus {
    /// Name as stored and served.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivering => "delivering",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
        }
    }
}

impl std::str::FromStr for DeliveryStatus {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        match s {
            "pending" => Ok(DeliveryStatus::Pending),
            "delivering" => Ok(DeliveryStatus::Delivering),
            "delivered" => Ok(DeliveryStatus::Delivered),
            "dead" => Ok(DeliveryStatus::Dead),
            other => Err(StoreError::Invalid(format!(
                "unknown delivery status `{other}` (pending, delivering, delivered, dead)"
            ))),
        }
    }
}

/// A row of the outbox.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DeliveryRecord {
    /// Id.
    pub id: i64,
    /// Webhook.
    pub webhook_id: i64,
    /// Incident that alerted.
    pub incident_id: i64,
    /// Anomaly that opened the incident.
    pub anomaly_id: i64,
    /// Event name, e.g. [`EVENT_INCIDENT_OPENED`].
    pub event: String,
    /// Sent as `Idempotency-Key`; the same on every attempt.
    pub idempotency_key: String,
    /// pending / delivering / delivered / dead.
    pub status: String,
    /// Attempts started.
    pub attempts: i64,
    /// When the next attempt is due (while delivering: when the lease ends), Unix ms.
    pub next_attempt_at: i64,
    /// End of the running attempt's lease, Unix ms.
    pub lease_until: Option<i64>,
    /// HTTP status of the last answer.
    pub last_status: Option<i64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// The body sent (fixed at the first attempt).
    pub payload: Option<String>,
    /// Created, Unix ms.
    pub created_at: i64,
    /// Last change, Unix ms.
    pub updated_at: i64,
    /// Delivered, Unix ms.
    pub delivered_at: Option<i64>,
}

/// A claimed delivery with its target.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    /// The row as claimed; `attempts` is this attempt's number, which fences later updates.
    pub delivery: DeliveryRecord,
    /// Its webhook (possibly deleted since).
    pub webhook: WebhookRecord,
}

/// An incident opened by an ingest batch, as the outbox needs it.
pub(crate) struct OpenedIncident<'a> {
    pub incident_id: i64,
    pub anomaly_id: i64,
    pub severity: &'a str,
}

/// Queues one delivery per live webhook whose `min_severity` the incident meets. Runs inside
/// the ingest transaction; a batch that opened no incident does not call it, and with no
/// webhook registered it costs one indexed lookup.
pub(crate) async fn enqueue_alerts(
    conn: &mut SqliteConnection,
    opened: &[OpenedIncident<'_>],
    now_ms: i64,
) -> Result<u64> {
    if opened.is_empty() {
        return Ok(0);
    }
    let any: Option<i64> = sqlx::query_scalar("SELECT id FROM webhooks WHERE deleted_at IS NULL LIMIT 1")
        .fetch_optional(&mut *conn)
        .await?;
    if any.is_none() {
        return Ok(0);
    }
    // The idempotency key names the (webhook, incident) pair: `whd-<webhook>-<incident>`.
    let sql = format!(
        "INSERT INTO webhook_deliveries (webhook_id, incident_id, anomaly_id, event, idempotency_key,
                                         next_attempt_at, created_at, updated_at)
         SELECT id, ?, ?, ?, 'whd-' || id || '-' || ?, ?, ?, ? FROM webhooks
         WHERE deleted_at IS NULL AND {RANK_SQL} <= ?
         ON CONFLICT (idempotency_key) DO NOTHING"
    );
    let mut queued = 0;
    for o in opened {
        queued += sqlx::query(&sql)
            .bind(o.incident_id)
            .bind(o.anomaly_id)
            .bind(EVENT_INCIDENT_OPENED)
            .bind(o.incident_id)
            .bind(now_ms)
            .bind(now_ms)
            .bind(now_ms)
            .bind(i64::from(crate::incidents::severity_rank(o.severity)))
            .execute(&mut *conn)
            .await?
            .rows_affected();
    }
    Ok(queued)
}

const WEBHOOK_COLUMNS: &str = "id, url, secret, min_severity, description, created_at, deleted_at";

impl Store {
    /// Registers a webhook.
    pub async fn create_webhook(&self, w: &NewWebhook, now_ms: i64) -> Result<WebhookRecord> {
        Ok(sqlx::query_as(&format!(
            "INSERT INTO webhooks (url, secret, min_severity, description, created_at) VALUES (?, ?, ?, ?, ?)
             RETURNING {WEBHOOK_COLUMNS}"
        ))
        .bind(&w.url)
        .bind(&w.secret)
        .bind(&w.min_severity)
        .bind(&w.description)
        .bind(now_ms)
        .fetch_one(self.pool())
        .await?)
    }

    /// Live webhooks, oldest first (a deployment has a handful; at most 1000 are listed).
    pub async fn list_webhooks(&self) -> Result<Vec<WebhookRecord>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE deleted_at IS NULL ORDER BY id LIMIT 1000"
        ))
        .fetch_all(self.pool())
        .await?)
    }

    /// One webhook, deleted or not.
    pub async fn webhook(&self, id: i64) -> Result<WebhookRecord> {
        sqlx::query_as(&format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = ?"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or(StoreError::NotFound { what: "webhook", id: id.to_string() })
    }

    /// Deletes a live webhook: it gets no new deliveries, and its pending ones are
    /// dead-lettered with the reason (an attempt already running finishes and records its
    /// outcome). Its deliveries stay readable.
    pub async fn delete_webhook(&self, id: i64, now_ms: i64) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        let done = sqlx::query("UPDATE webhooks SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL")
            .bind(now_ms)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound { what: "webhook", id: id.to_string() });
        }
        sqlx::query(
            "UPDATE webhook_deliveries SET status = 'dead', last_error = 'webhook deleted', updated_at = ?
             WHERE webhook_id = ? AND status = 'pending'",
        )
        .bind(now_ms)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// One page of a webhook's deliveries, newest first.
    pub async fn list_deliveries(
        &self,
        webhook_id: i64,
        status: Option<DeliveryStatus>,
        cursor: Option<Cursor>,
        limit: u32,
    ) -> Result<Page<DeliveryRecord>> {
        let limit = limit.clamp(1, 1000);
        let mut q: QueryBuilder<Sqlite> =
            QueryBuilder::new("SELECT * FROM webhook_deliveries WHERE webhook_id = ");
        q.push_bind(webhook_id);
        if let Some(s) = status {
            q.push(" AND status = ").push_bind(s.as_str());
        }
        crate::cursor::push_id_after(&mut q, cursor)?;
        q.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(limit) + 1);
        let items: Vec<DeliveryRecord> = q.build_query_as().fetch_all(self.pool()).await?;
        Ok(crate::cursor::id_page(items, limit, |r| r.id))
    }

    /// One delivery of a webhook.
    pub async fn delivery(&self, webhook_id: i64, id: i64) -> Result<DeliveryRecord> {
        sqlx::query_as("SELECT * FROM webhook_deliveries WHERE id = ? AND webhook_id = ?")
            .bind(id)
            .bind(webhook_id)
            .fetch_optional(self.pool())
            .await?
            .ok_or(StoreError::NotFound { what: "delivery", id: id.to_string() })
    }

    /// Deliveries not finished yet (pending or delivering), for metrics.
    pub async fn unfinished_deliveries(&self) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM webhook_deliveries WHERE status IN ('pending', 'delivering')",
        )
        .fetch_one(self.pool())
        .await?)
    }

    /// Claims up to `limit` due deliveries (pending ones whose time has come, and running
    /// ones whose lease ran out) for an attempt leased until `lease_until_ms`. Each claim
    /// counts as an attempt.
    pub async fn claim_deliveries(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> Result<Vec<ClaimedDelivery>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut tx = self.pool().begin().await?;
        let claimed: Vec<DeliveryRecord> = sqlx::query_as(
            "UPDATE webhook_deliveries
             SET status = 'delivering', attempts = attempts + 1, lease_until = ?1, next_attempt_at = ?1,
                 updated_at = ?2
             WHERE id IN (SELECT id FROM webhook_deliveries
                          WHERE status IN ('pending', 'delivering') AND next_attempt_at <= ?2
                          ORDER BY next_attempt_at LIMIT ?3)
             RETURNING *",
        )
        .bind(lease_until_ms)
        .bind(now_ms)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let mut out = Vec::with_capacity(claimed.len());
        for delivery in claimed {
            let webhook: WebhookRecord =
                sqlx::query_as(&format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = ?"))
                    .bind(delivery.webhook_id)
                    .fetch_one(&mut *tx)
                    .await?;
            out.push(ClaimedDelivery { delivery, webhook });
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Fixes the body of a delivery unless an earlier attempt already did; returns the body
    /// stored (the earlier one, if any, so every attempt sends the same bytes).
    pub async fn set_delivery_payload(&self, id: i64, payload: &str) -> Result<String> {
        Ok(sqlx::query_scalar(
            "UPDATE webhook_deliveries SET payload = COALESCE(payload, ?) WHERE id = ? RETURNING payload",
        )
        .bind(payload)
        .bind(id)
        .fetch_one(self.pool())
        .await?)
    }

    /// Records a 2xx answer to attempt `attempt`. False when the attempt no longer holds the
    /// row (its lease ran out and another attempt took over).
    pub async fn delivery_succeeded(
        &self,
        id: i64,
        attempt: i64,
        http_status: u16,
        now_ms: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE webhook_deliveries
             SET status = 'delivered', delivered_at = ?1, updated_at = ?1, lease_until = NULL,
                 last_status = ?2, last_error = NULL
             WHERE id = ?3 AND attempts = ?4 AND status = 'delivering'",
        )
        .bind(now_ms)
        .bind(i64::from(http_status))
        .bind(id)
        .bind(attempt)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a failed attempt: pending again from `retry_at_ms`, or dead when `retry_at_ms`
    /// is `None`. False when the attempt no longer holds the row.
    pub async fn delivery_failed(
        &self,
        id: i64,
        attempt: i64,
        http_status: Option<u16>,
        error: &str,
        retry_at_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE webhook_deliveries
             SET status = CASE WHEN ?1 IS NULL THEN 'dead' ELSE 'pending' END,
                 next_attempt_at = COALESCE(?1, next_attempt_at), lease_until = NULL,
                 last_status = ?2, last_error = ?3, updated_at = ?4
             WHERE id = ?5 AND attempts = ?6 AND status = 'delivering'",
        )
        .bind(retry_at_ms)
        .bind(http_status.map(i64::from))
        .bind(error)
        .bind(now_ms)
        .bind(id)
        .bind(attempt)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives a claimed delivery back without an outcome (the attempt was cut short by a
    /// shutdown): pending and due at once, the attempt not counted.
    pub async fn release_delivery(&self, id: i64, attempt: i64, now_ms: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE webhook_deliveries
             SET status = 'pending', attempts = attempts - 1, next_attempt_at = ?1, lease_until = NULL,
                 updated_at = ?1
             WHERE id = ?2 AND attempts = ?3 AND status = 'delivering'",
        )
        .bind(now_ms)
        .bind(id)
        .bind(attempt)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Queues a dead delivery again with a fresh attempt budget (the same body and
    /// idempotency key). Refused unless it is dead and its webhook is live.
    pub async fn requeue_delivery(&self, webhook_id: i64, id: i64, now_ms: i64) -> Result<DeliveryRecord> {
        let current = self.delivery(webhook_id, id).await?;
        if self.webhook(webhook_id).await?.deleted_at.is_some() {
            return Err(StoreError::Conflict(format!("webhook {webhook_id} is deleted")));
        }
        let requeued: Option<DeliveryRecord> = sqlx::query_as(
            "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, next_attempt_at = ?1, updated_at = ?1
             WHERE id = ?2 AND webhook_id = ?3 AND status = 'dead' RETURNING *",
        )
        .bind(now_ms)
        .bind(id)
        .bind(webhook_id)
        .fetch_optional(self.pool())
        .await?;
        requeued.ok_or_else(|| {
            StoreError::Conflict(format!(
                "delivery {id} is {}; only a dead delivery can be retried",
                current.status
            ))
        })
    }
}
