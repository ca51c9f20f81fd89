//! Durable batch writes: telemetry, devices and anomalies in one transaction.

use crate::anomalies::{NewAnomaly, insert_anomaly};
use crate::{Result, Store};

/// One telemetry sample as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryRow {
    /// Device.
    pub device_id: String,
    /// Unix milliseconds.
    pub ts: i64,
    /// Cohort reported with the sample.
    pub cohort: Option<String>,
    /// Device labels as a JSON object.
    pub labels: serde_json::Value,
    /// Metrics as a JSON object.
    pub metrics: serde_json::Value,
}

/// Everything one ingest batch writes.
#[derive(Debug, Clone, Default)]
pub struct IngestBatch {
    /// Samples.
    pub telemetry: Vec<TelemetryRow>,
    /// Anomalies found (each tied to one sample by device and time, possibly a sample of an
    /// earlier batch that the pipeline held back for re-ordering).
    pub anomalies: Vec<NewAnomaly>,
}

/// What a committed batch changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IngestOutcome {
    /// Samples newly stored.
    pub inserted: u64,
    /// Samples already stored (a retried batch): skipped, not duplicated.
    pub duplicates: u64,
    /// Anomalies stored.
    pub anomalies: u64,
}

impl Store {
    /// Writes a batch in one transaction; when this returns `Ok` the batch is durable.
    /// Idempotent on (device, time): samples already stored are skipped, and a sample never
    /// gets a second anomaly, so a retried batch stores nothing twice.
    pub async fn ingest(&self, batch: &IngestBatch, now_ms: i64) -> Result<IngestOutcome> {
        let mut tx = self.pool().begin().await?;
        let mut out = IngestOutcome::default();
        for t in &batch.telemetry {
            let done =
                sqlx::query("INSERT OR IGNORE INTO telemetry (device_id, ts, metrics) VALUES (?, ?, ?)")
                    .bind(&t.device_id)
                    .bind(t.ts)
                    .bind(t.metrics.to_string())
                    .execute(&mut *tx)
                    .await?;
            if done.rows_affected() == 1 {
                out.inserted += 1;
            } else {
                out.duplicates += 1;
            }
            sqlx::query(
                "INSERT INTO devices (id, cohort, labels, first_seen, last_seen) VALUES (?, ?, ?, ?, ?)
                 ON CONFLICT (id) DO UPDATE SET
                   cohort = COALESCE(excluded.cohort, devices.cohort),
                   labels = CASE WHEN excluded.labels = '{}' THEN devices.labels ELSE excluded.labels END,
                   first_seen = MIN(devices.first_seen, excluded.first_seen),
                   last_seen = MAX(devices.last_seen, excluded.last_seen)",
            )
            .bind(&t.device_id)
            .bind(&t.cohort)
            .bind(t.labels.to_string())
            .bind(t.ts)
            .bind(t.ts)
            .execute(&mut *tx)
            .await?;
        }
        for a in &batch.anomalies {
            if insert_anomaly(&mut tx, a, now_ms).await?.is_some() {
                out.anomalies += 1;
            }
        }
        tx.commit().await?;
        Ok(out)
    }
}
